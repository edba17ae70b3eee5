"""CF factors: implicit ALS/BPR and LightFM (pure and with content features) behind FactorModel."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from xrec.catalogue.interactions import IdMap, Interactions
from xrec.errors import DataError, ModelError
from xrec.ranking.cf import FactorModel, fit_als, fit_bpr, fit_lightfm, from_implicit, from_lightfm


def _sample(data_dir, users: int):
    """Ratings of the first ``users`` real MovieLens users over their items plus 60 never-rated (cold) items."""
    from xrec.datasets.movielens import load_movielens

    ml = load_movielens(data_dir / "movielens")
    ratings = ml.ratings.filter(pl.col("user_id") <= users)
    rated = ratings["item_id"].unique().sort()
    cold = ml.movies.filter(~pl.col("item_id").is_in(rated.implode()))["item_id"].head(60)
    items = ml.items().filter(pl.col("item_id").is_in(pl.concat([rated, cold]).implode()))
    return items, Interactions.build(ratings, items["item_id"])


@pytest.fixture(scope="module")
def sample(data_dir):
    """Ratings of 30 real MovieLens users over their items (about 2,000) plus 60 cold items."""
    return _sample(data_dir, 30)


def _train_rank(model: FactorModel, inter: Interactions) -> float:
    """Mean percentile rank of users' own training items (0 = top); random is 0.5."""
    s = model.scores(np.arange(len(inter.users)))
    ranks = (-s).argsort(axis=1).argsort(axis=1) / s.shape[1]
    m = inter.matrix.tocoo()
    return float(ranks[m.row, m.col].mean())


def test_als_and_bpr_learn_the_histories(sample):
    _, inter = sample
    cold = inter.item_counts() == 0
    for model, _ in (fit_als(inter.matrix, factors=16), fit_bpr(inter.matrix, factors=16, iterations=50)):
        assert model.user_factors.shape[0] == len(inter.users)
        assert model.item_factors.shape[0] == len(inter.items)
        assert not model.item_factors[cold].any()  # cold items carry no CF signal
        assert _train_rank(model, inter) < 0.2


def test_pretrained_implicit_model_is_used_as_is(sample):
    _, inter = sample
    _, raw = fit_als(inter.matrix, factors=16, weighting="linear")
    wrapped = from_implicit(raw)
    users = np.arange(10)
    ids, _ = raw.recommend(users, inter.matrix[users], N=10, filter_already_liked_items=True)
    s = wrapped.scores(users)
    s[inter.matrix[users].nonzero()] = -np.inf
    ours = np.argsort(-s, axis=1)[:, :10]
    assert np.mean([len(np.intersect1d(a, b)) for a, b in zip(ours, ids)]) >= 9.5
    with pytest.raises(ModelError, match="not fitted"):
        import implicit.cpu.als
        from_implicit(implicit.cpu.als.AlternatingLeastSquares(factors=4))


def test_align_and_fold_in(sample):
    _, inter = sample
    model, raw = fit_als(inter.matrix, factors=16, weighting="binary")
    rev_items = inter.items.ids.reverse()
    wrapped = from_implicit(raw, user_ids=inter.users.ids, item_ids=inter.items.ids)
    other_users = IdMap(pl.concat([inter.users.ids.head(5), pl.Series([10_000])]), "user_id")
    aligned = wrapped.align(other_users, IdMap(rev_items, "item_id"))
    np.testing.assert_allclose(aligned.item_factors[0], raw.item_factors[-1])
    assert not aligned.user_factors[-1].any()  # unknown user: zero vector
    # fold-in reproduces the ALS user solution from the history alone
    binary = inter.matrix.copy()
    binary.data[:] = 1.0
    folded = model.fold_in(binary[:5], confidence=1.0)
    cos = (folded * model.user_factors[:5]).sum(1) / (
        np.linalg.norm(folded, axis=1) * np.linalg.norm(model.user_factors[:5], axis=1))
    assert cos.min() > 0.95
    with pytest.raises(DataError, match="pass the model's item ids"):
        FactorModel(raw.user_factors, raw.item_factors[:5]).align(inter.users, inter.items)


def test_lightfm_matches_its_own_predict(sample):
    _, inter = sample
    model, raw, features = fit_lightfm(inter.matrix, components=8, epochs=5)
    assert features is None
    wrapped = from_lightfm(raw)
    user_bias, _ = raw.get_user_representations()
    items = np.arange(len(inter.items), dtype=np.int32)
    for u in (0, 7):
        pred = raw.predict(np.full(len(items), u, dtype=np.int32), items)
        np.testing.assert_allclose(wrapped.scores([u])[0] + user_bias[u], pred, rtol=1e-4, atol=1e-4)
    assert _train_rank(model, inter) < 0.3
    with pytest.raises(DataError, match="loss='hinge'"):
        fit_lightfm(inter.matrix, loss="hinge")


@pytest.mark.slow
def test_lightfm_content_scores_cold_items(data_dir, encoder):
    items, inter = _sample(data_dir, 10)  # about 840 items to embed, not 2,100
    vectors = encoder.encode(items["text"].to_list(), kind="passage")
    model, raw, features = fit_lightfm(inter.matrix, components=8, epochs=5, item_vectors=vectors)
    assert sp.issparse(features) and features.shape == (len(items), len(items) + 32)
    cold = inter.item_counts() == 0
    assert cold.sum() == 60
    assert np.abs(model.item_factors[cold]).sum() > 0  # reached through their content features
    assert _train_rank(model, inter) < 0.3
