"""The learned fusion: one weight per feature, fitted by the softmax likelihood of held-out items.

Features are standardised for the fit (mean and scale measured on the fit's own sample), so the
L2 penalty treats them alike and the weights read as "nats per standard deviation"; the raw
weights that scoring uses are ``weights / scale``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Newton's method stops after a step whose predicted decrease of the objective is below this (nats).
NEWTON_TOL = 1e-7


@dataclass
class Fusion:
    """Weights of named features: ``score = sum(raw_weights[f] * feature[f])``.

    ``kind`` is ``"learned"`` (fitted on a validation slice), ``"default"`` (standardised
    default weights applied with the data's own feature scales; see :meth:`default`), or the
    candidate the guard chose instead (a part such as ``"content"``, or ``"learned+content x2"``;
    :mod:`xrec.ranking.guard`), whose figures are in ``decision``.
    """

    names: tuple[str, ...]
    weights: np.ndarray  #: standardised weights
    scale: np.ndarray  #: feature standard deviations of the fit sample
    kind: str = "learned"
    #: the guard's decision: the chosen candidate and every candidate's validation NDCG@10
    decision: dict | None = None

    @property
    def raw(self) -> dict[str, float]:
        """Weights on the raw features (what scoring uses)."""
        return {n: float(w / s) for n, w, s in zip(self.names, self.weights, self.scale)}

    @classmethod
    def learn(cls, names: Sequence[str], features: np.ndarray, positives: np.ndarray, excluded: np.ndarray, *,
              rows: np.ndarray | None = None, columns: Sequence[int] | None = None,
              log_weight: np.ndarray | None = None, l2: float = 1e-2, max_iter: int = 50,
              start: np.ndarray | None = None) -> Fusion:
        """Softmax likelihood of the positives over each user's items, L2-penalised, by Newton's method.

        ``features`` ``[users, items, F]``, of which the fit reads rows ``rows`` (all: None) and
        the features ``columns`` (all: None), which are named ``names``; ``positives`` and
        ``excluded`` (seen items) ``[len(rows), items]`` bool; ``log_weight`` ``[items]`` is added
        to the logits (the log of how many catalogue items each sampled item stands for). The
        penalty pulls a cross-language edge's weight toward its same-language twin's raw weight
        rather than to 0 (:func:`prior_twins`): where the data says nothing about crossing languages
        (a catalogue read in one language, a new-language catalogue), crossing costs nothing.

        The penalised likelihood is strictly convex in a few dozen weights, so Newton steps with
        the exact Hessian (damped by a backtracking line search far from the minimum) reach it in
        a handful of passes over the sample, where a quasi-Newton search took hundreds; ``start``
        (standardised weights, e.g. of a fit on more users) shortens the search, not its end."""
        x = _selected(features, rows, columns)  # the one copy of the sample: scaled in place below
        xf = x.reshape(-1, x.shape[-1])
        scale = _scale(xf)
        xf /= scale.astype(np.float32)
        objective = _Softmax(x, positives, excluded, log_weight, l2, penalty_matrix(names, scale))
        w = np.zeros(x.shape[-1]) if start is None else np.asarray(start, np.float64)
        for _ in range(max_iter):
            value, grad, hessian = objective.derivatives(w)
            step = -np.linalg.solve(hessian, grad)
            decrement = float(-grad @ step)  # twice the predicted decrease of the objective
            t = 1.0
            if decrement > 1e-3:  # far from the minimum: damped (near it the full step is safe)
                while t > 1e-6 and objective.value(w + t * step) > value - 0.25 * t * decrement:
                    t /= 2
            w = w + t * step
            if decrement / 2 <= NEWTON_TOL:  # a full step this close leaves about the square of it
                break
        return cls(tuple(names), w.astype(np.float32), scale.astype(np.float32), "learned")

    @classmethod
    def from_raw(cls, names: Sequence[str], raw: dict[str, float], scale: np.ndarray, kind: str) -> Fusion:
        """A fusion of raw weights ``raw`` (missing names: 0) at feature scales ``scale``."""
        scale = np.asarray(scale, dtype=np.float32)
        weights = np.array([raw.get(n, 0.0) for n in names], dtype=np.float32) * scale
        return cls(tuple(names), weights.astype(np.float32), scale, kind)

    @classmethod
    def default(cls, names: Sequence[str], features: np.ndarray, defaults: dict[str, float]) -> Fusion:
        """Standardised ``defaults`` applied with the scales of ``features`` ``[..., len(names)]``."""
        scale = _scale(features.reshape(-1, len(names)))
        weights = np.array([defaults.get(n, 0.0) for n in names], dtype=np.float32)
        return cls(tuple(names), weights, scale.astype(np.float32), "default")

    def with_raw_weight(self, name: str, raw: float) -> Fusion:
        """A copy with feature ``name``'s raw weight set to ``raw`` (a weight set by a rule, not fitted)."""
        j = self.names.index(name)
        weights = self.weights.copy()
        weights[j] = np.float32(raw) * self.scale[j]
        return Fusion(self.names, weights, self.scale, self.kind, self.decision)

    def summary(self) -> str:
        """One line for people: the kind and, where the guard decided, the validation figures."""
        out = self.kind
        if self.decision and "validation" in self.decision:
            figures = self.decision["validation"]
            shown = ", ".join(f"{name} {value:.4f}" for name, value in figures.items() if " x" not in name)
            out += (f" (chosen on {self.decision['validation_users']} validation users; "
                    f"NDCG@10 {figures[self.decision['chosen']]:.4f}; {shown})")
        return out

    def as_dict(self) -> dict:
        out = {"kind": self.kind, "names": list(self.names), "weights": [float(w) for w in self.weights],
               "scale": [float(s) for s in self.scale]}
        if self.decision is not None:
            out["decision"] = self.decision
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Fusion:
        return cls(tuple(data["names"]), np.asarray(data["weights"], dtype=np.float32),
                   np.asarray(data["scale"], dtype=np.float32), data["kind"], data.get("decision"))


def penalty_matrix(names: Sequence[str], scale: np.ndarray) -> np.ndarray:
    """``A`` with ``A @ w`` the penalised gap of standardised weights ``w`` (scales ``scale``): ``w``
    itself, or for a cross-language feature its distance to its twin's raw weight (:func:`prior_twins`)."""
    twin = prior_twins(names)
    has_twin = np.flatnonzero(twin >= 0)
    a = np.eye(len(names))
    a[has_twin, twin[has_twin]] -= scale[has_twin] / scale[twin[has_twin]]  # equal raw weights
    return a


class _Softmax:
    """The fit's objective: mean over users (with positives) of the softmax negative log-likelihood
    of their positives, plus ``l2 * |A w|^2``; with its gradient and Hessian."""

    def __init__(self, x: np.ndarray, positives: np.ndarray, excluded: np.ndarray,
                 log_weight: np.ndarray | None, l2: float, a: np.ndarray):
        self.x, self.xf = x, x.reshape(-1, x.shape[-1])
        pos = positives.astype(np.float32)
        pos /= np.maximum(pos.sum(axis=1, keepdims=True), 1.0)
        has = pos.sum(axis=1) > 0
        self.user_weight = (has / max(int(has.sum()), 1)).astype(np.float32)
        self.pos = pos * self.user_weight[:, None]
        self.offset = np.where(excluded, -np.inf, 0.0 if log_weight is None else log_weight[None]).astype(np.float32)
        self.l2, self.a = l2, a

    def value(self, w: np.ndarray) -> float:
        """The objective at standardised weights ``w``."""
        return self._evaluate(w, False)[0]

    def derivatives(self, w: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """The objective, its gradient and its Hessian at ``w``."""
        value, grad, hessian = self._evaluate(w, True)
        assert grad is not None and hessian is not None
        return value, grad, hessian

    def _evaluate(self, w: np.ndarray, derivatives: bool) -> tuple[float, np.ndarray | None, np.ndarray | None]:
        u, n, f = self.x.shape
        s = (self.xf @ w.astype(np.float32)).reshape(u, n) + self.offset
        top = s.max(axis=1, keepdims=True)
        e = np.exp(s - top)
        z = e.sum(axis=1, keepdims=True)
        nll = (np.log(z[:, 0]) + top[:, 0]) * self.user_weight - (np.where(self.pos > 0, s, 0.0) * self.pos).sum(axis=1)
        gap = self.a @ w
        value = float(nll.sum(dtype=np.float64)) + self.l2 * float(gap @ gap)
        if not derivatives:
            return value, None, None
        p = e / z
        p *= self.user_weight[:, None]  # each user's softmax, weighted as the user counts in the mean
        grad = (self.xf.T @ (p - self.pos).reshape(-1)).astype(np.float64) + 2 * self.l2 * (self.a.T @ gap)
        # Hessian: sum over users of X_u' diag(p_u) X_u - (X_u' p_u)(X_u' p_u)', a chunk of rows at a time
        hessian = 2 * self.l2 * (self.a.T @ self.a)
        pf, chunk = p.reshape(-1), 4096  # rows that stay in cache
        for start in range(0, len(pf), chunk):
            xc = self.xf[start:start + chunk]
            hessian += (xc * pf[start:start + chunk, None]).T @ xc
        mean = np.matmul(p[:, None, :], self.x)[:, 0, :].astype(np.float64)  # weight * X_u' p_u
        hessian -= mean.T @ (mean / np.where(self.user_weight > 0, self.user_weight, 1.0)[:, None])
        return value, grad, hessian


def prior_twins(names: Sequence[str]) -> np.ndarray:
    """For each feature, the index of its same-language twin (``embedding_same`` for
    ``embedding_cross``, ``lexical_same_to_cold`` for ``lexical_cross_to_cold``), -1 where none."""
    index = {n: j for j, n in enumerate(names)}
    return np.array([index.get(n.replace("_cross", "_same", 1), -1) if "_cross" in n else -1 for n in names],
                    dtype=np.int64)


def _selected(features: np.ndarray, rows: np.ndarray | None, columns: Sequence[int] | None,
              chunk: int = 64) -> np.ndarray:
    """A float32 copy of ``features[rows][..., columns]`` (None: all), gathered a few rows at a time
    (one copy of the sample, never two)."""
    picked = np.arange(features.shape[0]) if rows is None else np.asarray(rows)
    kept = np.arange(features.shape[-1]) if columns is None else np.asarray(columns)
    out = np.empty((len(picked), features.shape[1], len(kept)), np.float32)
    for s in range(0, len(picked), chunk):
        out[s:s + chunk] = features[picked[s:s + chunk]][..., kept]
    return out


def _scale(flat: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
    """Per-feature standard deviation (1 where a feature is constant), in float64 a chunk of rows at
    a time (a float64 copy of a whole fit sample would be twice its size)."""
    n = max(len(flat), 1)
    mean = sum((flat[s:s + chunk].sum(axis=0, dtype=np.float64) for s in range(0, len(flat), chunk)),
               np.zeros(flat.shape[1]))
    mean = mean / n
    var = sum((np.square(flat[s:s + chunk] - mean).sum(axis=0) for s in range(0, len(flat), chunk)),
              np.zeros(flat.shape[1]))
    std = np.sqrt(var / n)
    return np.where(std > 1e-8, std, 1.0)
