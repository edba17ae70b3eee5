"""The learned fusion: one weight per feature, fitted by the softmax likelihood of held-out items.

Features are standardised for the fit (mean and scale measured on the fit's own sample), so the
L2 penalty treats them alike and the weights read as "nats per standard deviation"; the raw
weights that scoring uses are ``weights / scale``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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
              log_weight: np.ndarray | None = None, l2: float = 1e-2, max_iter: int = 300) -> Fusion:
        """Softmax likelihood of the positives over each user's items, L2-penalised, by L-BFGS.

        ``features`` ``[users, items, len(names)]``; ``positives`` and ``excluded`` (seen items)
        ``[users, items]`` bool; ``log_weight`` ``[items]`` is added to the logits (the log of
        how many catalogue items each sampled item stands for). The penalty pulls a
        cross-language edge's weight toward its same-language twin's raw weight rather than to 0
        (:func:`prior_twins`): where the data says nothing about crossing languages (a catalogue
        read in one language, a new-language catalogue), crossing costs nothing."""
        from scipy.optimize import minimize

        u, n, f = features.shape
        flat = features.reshape(-1, f)
        scale = _scale(flat)
        twin = prior_twins(names)
        has_twin = twin >= 0
        ratio = np.where(has_twin, scale / scale[np.maximum(twin, 0)], 0.0)  # equal raw weights
        x = np.divide(features, scale.astype(np.float32), dtype=np.float32)  # the one scaled copy
        pos = positives.astype(np.float32)
        pos /= np.maximum(pos.sum(axis=1, keepdims=True), 1.0)
        offset = np.where(excluded, -np.inf, 0.0 if log_weight is None else log_weight[None]).astype(np.float32)
        xf = x.reshape(-1, f)
        has = pos.sum(axis=1) > 0
        n_users = max(int(has.sum()), 1)

        def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
            s = (xf @ w.astype(np.float32)).reshape(u, n) + offset
            top = s.max(axis=1, keepdims=True)
            e = np.exp(s - top)
            z = e.sum(axis=1, keepdims=True)
            s_pos = np.where(pos > 0, s, 0.0)
            nll = (np.log(z[:, 0]) + top[:, 0] - (s_pos * pos).sum(axis=1)) * has
            grad = xf.T @ (((e / z) * has[:, None] - pos) / n_users).reshape(-1)
            gap = w - ratio * w[np.maximum(twin, 0)]  # w itself where a feature has no twin
            penalty_grad = 2 * l2 * gap
            np.add.at(penalty_grad, twin[has_twin], -2 * l2 * ratio[has_twin] * gap[has_twin])
            return float(nll.sum() / n_users) + l2 * float(gap @ gap), grad.astype(np.float64) + penalty_grad

        res = minimize(loss, np.zeros(f), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
        return cls(tuple(names), res.x.astype(np.float32), scale.astype(np.float32), "learned")

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


def prior_twins(names: Sequence[str]) -> np.ndarray:
    """For each feature, the index of its same-language twin (``embedding_same`` for
    ``embedding_cross``, ``lexical_same_to_cold`` for ``lexical_cross_to_cold``), -1 where none."""
    index = {n: j for j, n in enumerate(names)}
    return np.array([index.get(n.replace("_cross", "_same", 1), -1) if "_cross" in n else -1 for n in names],
                    dtype=np.int64)


def _scale(flat: np.ndarray) -> np.ndarray:
    """Per-feature standard deviation (1 where a feature is constant)."""
    std = flat.std(axis=0, dtype=np.float64)
    return np.where(std > 1e-8, std, 1.0)
