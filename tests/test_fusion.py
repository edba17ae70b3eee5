"""The fusion fit (xrec.ranking.fusion) and the cold-item bias (xrec.ranking.training.calibrate_cold)
on a synthetic softmax sample whose true weights are known."""

from __future__ import annotations

import numpy as np
import pytest
from xrec.ranking.fusion import Fusion, _scale, _Softmax, penalty_matrix
from xrec.ranking.training import calibrate_cold


@pytest.fixture(scope="module")
def sample():
    """60 users x 300 items x 4 features; each user's positives drawn from the softmax of known weights."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 300, 4)).astype(np.float32) * np.array([1.0, 3.0, 0.5, 2.0], np.float32)
    true = np.array([1.5, -0.3, 2.0, 0.0], np.float32)
    logits = x @ true
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    positives = np.zeros((60, 300), bool)
    for u in range(60):
        positives[u, rng.choice(300, 3, replace=False, p=p[u])] = True
    excluded = (rng.random((60, 300)) < 0.05) & ~positives
    return x, positives, excluded


def test_scale_is_the_standard_deviation(sample):
    x = sample[0].reshape(-1, 4)
    np.testing.assert_allclose(_scale(x, chunk=1000), x.std(axis=0, dtype=np.float64), rtol=1e-9)
    assert _scale(np.ones((10, 2), np.float32))[0] == 1.0  # a constant feature is left unscaled


def test_learn_recovers_the_weights_and_reads_only_its_rows_and_columns(sample):
    x, positives, excluded = sample
    names = ("a", "b", "c", "d")
    fit = Fusion.learn(names, x, positives, excluded, l2=1e-4)
    raw = np.array([fit.raw[n] for n in names])
    np.testing.assert_allclose(raw, [1.5, -0.3, 2.0, 0.0], atol=0.35)  # 180 positives: roughly
    # rows and columns select exactly what a copy of them would
    rows, cols = np.arange(0, 60, 2), [2, 0]
    picked = Fusion.learn(("c", "a"), x, positives[rows], excluded[rows], rows=rows, columns=cols)
    copied = Fusion.learn(("c", "a"), np.ascontiguousarray(x[rows][..., cols]), positives[rows], excluded[rows])
    np.testing.assert_array_equal(picked.weights, copied.weights)
    np.testing.assert_array_equal(picked.scale, copied.scale)


def test_the_fit_ends_at_the_minimum_of_its_objective(sample):
    """Newton's steps use the exact gradient and Hessian: both checked against finite differences,
    and the gradient vanishes at the fitted weights."""
    x, positives, excluded = sample
    names = ("a", "b_same", "b_cross", "d")  # a twin pair: the penalty pulls the cross weight to its twin's
    log_weight = np.linspace(-1, 1, 300).astype(np.float32)
    fit = Fusion.learn(names, x, positives, excluded, log_weight=log_weight, l2=1e-2)
    scaled = (x / fit.scale).astype(np.float32)
    objective = _Softmax(scaled, positives, excluded, log_weight, 1e-2, penalty_matrix(names, fit.scale))
    w = fit.weights.astype(np.float64)
    _, grad, hessian = objective.derivatives(w)
    assert np.abs(grad).max() < 1e-5
    rng = np.random.default_rng(2)
    w = rng.normal(size=4)
    _, grad, hessian = objective.derivatives(w)
    eps = 1e-3
    for j in range(4):
        d = np.eye(4)[j] * eps
        assert (objective.value(w + d) - objective.value(w - d)) / (2 * eps) == pytest.approx(grad[j], abs=2e-3)
        np.testing.assert_allclose((objective.derivatives(w + d)[1] - objective.derivatives(w - d)[1]) / (2 * eps),
                                   hessian[j], atol=2e-3)


def test_a_warm_start_ends_where_a_cold_start_does(sample):
    """The guard's cross-fits start from the all-user fit: the minimum is the same (strictly convex)."""
    x, positives, excluded = sample
    names = ("a", "b", "c", "d")
    rows = np.arange(1, 60, 2)
    start = Fusion.learn(names, x, positives, excluded).weights
    cold = Fusion.learn(names, x, positives[rows], excluded[rows], rows=rows)
    warm = Fusion.learn(names, x, positives[rows], excluded[rows], rows=rows, start=start)
    np.testing.assert_allclose(warm.weights, cold.weights, atol=2e-3)


def test_calibrate_cold_gives_cold_items_their_share_of_the_softmax(sample):
    x, positives, excluded = sample
    cold = np.zeros(300, bool)
    cold[:40] = True
    names = ("a", "b", "c", "d", "cold")
    full = np.concatenate([x, np.broadcast_to(cold[None, :, None], (60, 300, 1)).astype(np.float32)], axis=-1)
    fusion = Fusion.from_raw(names, {"a": 1.0, "b": -0.2, "c": 1.5, "cold": 0.0}, np.ones(5), "learned")
    log_weight = np.random.default_rng(1).normal(size=300).astype(np.float32)
    rows = np.arange(10, 60)
    calibrated = calibrate_cold(fusion, full, names, positives[rows], excluded[rows], log_weight, cold, rows=rows)
    # the cold items' softmax mass, averaged over users, computed directly
    scores = full[rows] @ np.array([calibrated.raw[n] for n in names], np.float32)
    scores = np.where(excluded[rows], -np.inf, scores + log_weight)
    p = np.exp(scores - scores.max(axis=1, keepdims=True))
    share = (p[:, cold].sum(axis=1) / p.sum(axis=1)).mean()
    target = positives[rows][:, cold].sum() / positives[rows].sum()
    assert share == pytest.approx(target, rel=1e-4)
    assert {n: calibrated.raw[n] for n in names if n != "cold"} == pytest.approx(
        {n: fusion.raw[n] for n in names if n != "cold"})


def test_gathered_dot_of_one_item_row_for_every_user_equals_the_general_case():
    """A fit sample scores the same items for every user (a broadcast row): a shortcut, same numbers."""
    import scipy.sparse as sp
    from xrec.ranking.views import gathered_dot

    rng = np.random.default_rng(3)
    users, item_view = rng.normal(size=(5, 8)).astype(np.float32), rng.normal(size=(30, 8)).astype(np.float32)
    items = rng.choice(30, 12, replace=False)
    shared = np.broadcast_to(items, (5, 12))
    for u, v in ((users, item_view), (sp.csr_matrix(users * (users > 0)), sp.csr_matrix(item_view * (item_view > 0)))):
        np.testing.assert_allclose(gathered_dot(u, v, shared), gathered_dot(u, v, shared.copy()), rtol=1e-5, atol=1e-6)
