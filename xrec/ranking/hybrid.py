"""The hybrid ranker: CF and content candidates, fused by a small learned model.

For each user, candidates are the CF model's top ``n_cf`` items, the content search's top
``n_content`` items (profile vector -> item vectors) and the top ``n_cold`` cold items (no
interactions) by content. Every candidate gets features (see :data:`FEATURES`) and one fused
score. Items the user has already seen are never returned.

Fusion. :meth:`HybridRanker.fit` cuts a validation slice by time out of the training data (the
last ``validation_fraction`` of each user's interactions), fits the CF model on the rest, and
learns the fusion there: gradient-boosted trees (scikit-learn's HistGradientBoostingClassifier)
that tell the validation items apart from the other candidates, plus a second model that ranks
cold items among themselves, mapped onto the first one's scale (``fusion_model="linear"``: a
logistic regression on per-user-centred features instead). The CF model is then refitted on all
the training data and served with that fusion. **Fallback** (no timestamps, fewer than
``min_validation_positives`` validation positives, or a pre-trained CF model without ``cf_fit``):
a fixed sum of the CF score and content scores (:data:`FALLBACK`), where cold items, whose CF
score is 0, are scored by content only.

Cold items have a zero CF score and are reached through content; users the CF model has not
seen get a least-squares fold-in of their history; users with no history get the most popular
items (``score`` = log(1 + interactions), component scores NaN).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sp

from xrec.errors import DataError
from xrec.ranking.cf import FactorModel, fit_als
from xrec.ranking.interactions import IdMap, Interactions, temporal_split
from xrec.ranking.profiles import history_weights, user_profiles

log = logging.getLogger(__name__)

#: Per-candidate features of the fusion, in order.
FEATURES = ("cf", "cf_gap", "content", "history_max", "history_top", "popularity", "cold",
            "cold_x_content", "cold_x_history", "history_len", "cf_recent", "popularity_recent",
            "item_age", "cf_content", "cold_x_cf_content", "popularity_content", "cold_x_popularity_content",
            "age_content", "cold_x_age_content", "cf_rank", "content_rank")
#: Window of ``popularity_recent``: interactions in the 90 days up to the user's latest one.
RECENT_DAYS = 90.0
#: ``cf_recent`` compares candidates with the user's last few items in CF item space.
RECENT_ITEMS = 5
#: Fallback weights on the raw features (see module docstring).
FALLBACK = {"cf": 1.0, "content": 0.5, "history_max": 0.5, "cold_x_content": 1.0, "cold_x_history": 1.0}


@dataclass
class Fusion:
    """Linear fusion on standardised features: ``((x - mean) / scale) @ coef``."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    kind: str = "fallback"  #: "learned", "learned-trees" or "fallback"
    model: object | None = None  #: the fitted trees of "learned-trees"
    cold_model: object | None = None  #: trees that rank cold items among themselves

    @classmethod
    def fallback(cls) -> Fusion:
        coef = np.array([FALLBACK.get(n, 0.0) for n in FEATURES], dtype=np.float32)
        return cls(np.zeros(len(FEATURES), np.float32), np.ones(len(FEATURES), np.float32), coef)

    @classmethod
    def learn(cls, features: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None,
              c: float = 1.0, seed: int = 0) -> Fusion:
        """Logistic regression of ``labels`` (0/1) on ``features`` ``[n, len(FEATURES)]``.

        With ``groups`` (user of each row) features are centred per user before fitting, so the
        model learns what ranks items within a user rather than which users have positives
        (scoring needs no centring: a per-user shift does not change a user's ranking).
        """
        from sklearn.linear_model import LogisticRegression

        x = features.astype(np.float64)
        if groups is not None:
            _, inv = np.unique(groups, return_inverse=True)
            sums = np.zeros((inv.max() + 1, x.shape[1]))
            np.add.at(sums, inv, x)
            x = x - (sums / np.bincount(inv)[:, None])[inv]
        mean = x.mean(axis=0)
        scale = x.std(axis=0) + 1e-6
        model = LogisticRegression(C=c, max_iter=1000, random_state=seed)
        model.fit((x - mean) / scale, labels)
        return cls(mean.astype(np.float32), scale.astype(np.float32),
                   model.coef_[0].astype(np.float32), "learned")

    @classmethod
    def learn_trees(cls, features: np.ndarray, labels: np.ndarray, cold_rows: np.ndarray | None = None,
                    seed: int = 0) -> Fusion:
        """Gradient-boosted trees (scikit-learn's HistGradientBoostingClassifier).

        One model ranks the candidates (rows where ``cold_rows`` is False). With enough cold rows
        (every cold item of users with a cold validation positive), a second model ranks cold
        items among themselves: per user, the cold candidates keep the main model's set of scores
        (so how many reach the top is the main model's call) re-assigned in the cold model's order.
        """
        from sklearn.ensemble import HistGradientBoostingClassifier

        def trees(x: np.ndarray, y: np.ndarray):
            return HistGradientBoostingClassifier(max_iter=150, learning_rate=0.1, max_leaf_nodes=31,
                                                  min_samples_leaf=50, random_state=seed).fit(x, y)

        cold_rows = np.zeros(len(labels), dtype=bool) if cold_rows is None else cold_rows
        n = len(FEATURES)
        out = cls(np.zeros(n, np.float32), np.ones(n, np.float32), np.zeros(n, np.float32),
                  "learned-trees", trees(features[~cold_rows], labels[~cold_rows]))
        yc = labels[cold_rows]
        if yc.sum() >= 20 and yc.sum() < len(yc):
            out.cold_model = trees(features[cold_rows], yc)
        return out

    def score(self, features: np.ndarray) -> np.ndarray:
        """Fused score of each feature row (any leading shape)."""
        if self.model is not None:
            shape = features.shape[:-1]
            flat = features.reshape(-1, features.shape[-1])
            out = self.model.decision_function(flat).reshape(shape)
            if self.cold_model is not None and features.ndim == 3:
                cold = features[..., FEATURES.index("cold")] > 0
                if cold.any():
                    cs = np.zeros(shape)
                    cs[cold] = self.cold_model.decision_function(features[cold])
                    for j in np.flatnonzero(cold.sum(axis=1) > 1):
                        # the user's cold candidates keep the main model's scores as a set (so
                        # their place among warm items is unchanged) in the cold model's order
                        idx = np.flatnonzero(cold[j])
                        out[j, idx[np.argsort(cs[j, idx], kind="stable")]] = np.sort(out[j, idx])
            return out.reshape(shape).astype(np.float32)
        w = self.coef / self.scale
        return features @ w - float(self.mean @ w)

    def as_dict(self) -> dict:
        if self.model is not None:
            return {"kind": self.kind, "features": list(FEATURES),
                    "cold_trees": None if self.cold_model is None else self.cold_model.n_iter_,
                    "trees": self.model.n_iter_}
        return {"kind": self.kind, "features": list(FEATURES), "mean": self.mean.tolist(),
                "scale": self.scale.tolist(), "coef": self.coef.tolist()}


@dataclass
class HybridConfig:
    """Knobs of the hybrid ranker (defaults tuned on a validation slice of MovieLens training data)."""

    n_cf: int = 200
    n_content: int = 50
    n_cold: int = 50
    max_history: int = 50  #: most recent history items used for item-item content similarity
    half_life_days: float | None = 365.0
    validation_fraction: float = 0.2
    min_validation_positives: int = 50
    fusion_c: float = 1.0
    cold_rows: bool = True  #: add all cold items of users with a cold validation positive
    fusion_model: str = "hgb"  #: "hgb" (gradient-boosted trees) or "linear" (logistic regression)
    index_kind: str = "auto"  #: kind of the content indexes (xrec.index kinds; auto = exact when small)


@dataclass
class Recommendations:
    """Top-k per user: item indices (-1 = padding), fused scores (-inf = padding), component scores."""

    items: np.ndarray
    scores: np.ndarray
    components: dict[str, np.ndarray] = field(default_factory=dict)


CFFit = Callable[[sp.csr_matrix], FactorModel]


def default_cf_fit(matrix: sp.csr_matrix) -> FactorModel:
    """ALS with the defaults of :func:`fit_als` (the default CF component)."""
    return fit_als(matrix)[0]


class HybridRanker:
    """Fuses a :class:`FactorModel` with content vectors; see the module docstring."""

    def __init__(self, interactions: Interactions, item_vectors: np.ndarray, cf: FactorModel | None,
                 fusion: Fusion | None = None, config: HybridConfig | None = None, *,
                 content_index=None):
        """``content_index``: a :class:`~xrec.index.VectorIndex` over ``item_vectors`` whose ids are
        item row numbers (default: an exact one is built); cold items get their own exact index."""
        n_items = len(interactions.items)
        item_vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        if item_vectors.ndim != 2 or item_vectors.shape[0] != n_items:
            raise DataError(f"item vectors of shape {item_vectors.shape}; expected ({n_items}, dim), "
                            "one row per catalogue item in catalogue order")
        self.config = config or HybridConfig()
        self.interactions = interactions
        self.users: IdMap = interactions.users
        self.items: IdMap = interactions.items
        self.history = interactions.matrix.tocsr()
        self.item_vectors = item_vectors
        self.fusion = fusion or Fusion.fallback()
        counts = interactions.item_counts()
        self.popularity = np.log1p(counts).astype(np.float32)
        self.cold = counts == 0
        self.cold_items = np.flatnonzero(self.cold)
        ts = interactions.timestamp_matrix() if interactions.has_timestamps else None
        weights = history_weights(self.history, ts, half_life_days=self.config.half_life_days)
        self.profiles = user_profiles(weights, item_vectors)
        self._recent = self._recent_history(ts)
        self._time_index(ts)
        kind = self.config.index_kind
        self.content_index = content_index if content_index is not None else _index(
            item_vectors, np.arange(n_items), kind)
        self.cold_index = _index(item_vectors[self.cold_items], self.cold_items, kind) \
            if len(self.cold_items) else None
        self.cf = self._prepare_cf(cf)
        self._content_projections()

    # ------------------------------------------------------------------ construction
    @classmethod
    def fit(cls, interactions: Interactions, item_vectors: np.ndarray, *,
            cf: FactorModel | None = None, cf_fit: CFFit | None = None,
            config: HybridConfig | None = None) -> HybridRanker:
        """Fit CF (unless ``cf`` is given) and the learned fusion on a time-cut validation slice."""
        config = config or HybridConfig()
        if cf is None and cf_fit is None:
            cf_fit = default_cf_fit
        fusion = None
        if cf_fit is None:
            log.info("pre-trained CF model and no cf_fit: fallback fusion")
        elif not interactions.has_timestamps:
            log.warning("interactions have no timestamps: no validation slice, fallback fusion")
        else:
            fusion = cls._fit_fusion(interactions, item_vectors, cf_fit, config)
        if cf is None:
            cf = cf_fit(interactions.matrix)
        return cls(interactions, item_vectors, cf, fusion, config)

    @classmethod
    def _fit_fusion(cls, interactions: Interactions, item_vectors: np.ndarray, cf_fit: CFFit,
                    config: HybridConfig) -> Fusion | None:
        data = cls.validation_data(interactions, item_vectors, cf_fit, config)
        if data is None:
            return None
        x, y, groups, cold_rows = data
        if config.fusion_model == "hgb":
            return Fusion.learn_trees(x, y, cold_rows)
        return Fusion.learn(x[~cold_rows], y[~cold_rows], groups[~cold_rows], c=config.fusion_c)

    @classmethod
    def validation_data(cls, interactions: Interactions, item_vectors: np.ndarray, cf_fit: CFFit,
                        config: HybridConfig
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """Features, 0/1 labels, user of each row and a cold-rows mask on the validation slice.

        Rows are every candidate of every validation user, plus (``cold_rows``) every cold item
        of the users with a cold validation positive (mask True)."""
        train, val = temporal_split(interactions.frame, config.validation_fraction, min_test=0)
        sub = Interactions.build(train, interactions.items.ids, user_ids=interactions.users.ids)
        ranker = cls(sub, item_vectors, cf_fit(sub.matrix), None, config)
        rows = sub.users.index(val["user_id"])
        cols = sub.items.index(val["item_id"])
        truth = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=sub.matrix.shape)
        users = np.flatnonzero(np.diff(truth.indptr) > 0)
        if truth.nnz < config.min_validation_positives:
            log.warning("%d validation positives (< %d): fallback fusion", truth.nnz,
                        config.min_validation_positives)
            return None
        feats, labels, groups, extra = [], [], [], []
        for start in range(0, len(users), 256):
            batch = users[start:start + 256]
            cand = ranker.candidates(batch)
            x = ranker.features(batch, cand)
            valid = cand >= 0
            dense = truth[batch].toarray()
            y = np.take_along_axis(dense, np.where(valid, cand, 0), 1) > 0
            feats.append(x[valid])
            labels.append(y[valid])
            groups.append(np.broadcast_to(batch[:, None], cand.shape)[valid])
            extra.append(np.zeros(int(valid.sum()), dtype=bool))
            if config.cold_rows and len(ranker.cold_items):
                # every cold item for users with a cold validation positive: teaches cold ranking
                has_cold = dense[:, ranker.cold_items].any(axis=1)
                cu = batch[has_cold]
                if len(cu):
                    ci = np.broadcast_to(ranker.cold_items, (len(cu), len(ranker.cold_items)))
                    feats.append(ranker.features(cu, ci).reshape(-1, len(FEATURES)))
                    labels.append((dense[has_cold][:, ranker.cold_items] > 0).reshape(-1))
                    groups.append(np.repeat(cu, len(ranker.cold_items)))
                    extra.append(np.ones(len(cu) * len(ranker.cold_items), dtype=bool))
        x, y = np.concatenate(feats), np.concatenate(labels).astype(np.int8)
        if y.sum() < config.min_validation_positives or y.sum() == len(y):
            log.warning("%d validation positives among candidates: fallback fusion", int(y.sum()))
            return None
        return x, y, np.concatenate(groups), np.concatenate(extra)

    def _prepare_cf(self, cf: FactorModel | None) -> FactorModel | None:
        if cf is None:
            return None
        if cf.users is not None or cf.items is not None:
            cf = cf.align(self.users, self.items)
        elif cf.item_factors.shape[0] != len(self.items) or cf.user_factors.shape[0] != len(self.users):
            raise DataError(f"CF model has {cf.user_factors.shape[0]} users x {cf.item_factors.shape[0]} "
                            f"items, the data {len(self.users)} x {len(self.items)}; pass the model's ids")
        norms = np.linalg.norm(cf.item_factors, axis=1, keepdims=True)
        self._cf_item_unit = np.divide(cf.item_factors, norms, out=np.zeros_like(cf.item_factors),
                                       where=norms > 0)
        missing = ~cf.user_factors.any(axis=1) & (np.diff(self.history.indptr) > 0)
        if missing.any():  # users the model has not seen: fold their history in
            cf.user_factors[missing] = cf.fold_in(self.history[np.flatnonzero(missing)])
        return cf

    def _content_projections(self, ridge: float = 1.0) -> None:
        """Ridge maps from content vectors to CF item factors, popularity and first-seen time,
        fitted on warm items: they give cold items a CF-like score, an expected popularity and an
        expected age."""
        warm = np.flatnonzero(~self.cold)
        x = self.item_vectors[warm].astype(np.float64)
        targets = [self.popularity[warm][:, None].astype(np.float64)]
        if self._user_last is not None:
            targets.append(((self._item_first[warm] - self._t0) / 86400.0)[:, None])
        if self.cf is not None:
            targets.append(self.cf.item_factors[warm].astype(np.float64))
        y = np.hstack(targets)
        y_mean = y.mean(axis=0)
        gram = x.T @ x + ridge * np.eye(x.shape[1])
        w = np.linalg.solve(gram, x.T @ (y - y_mean)) if len(warm) else np.zeros((x.shape[1], y.shape[1]))
        pred = (self.item_vectors @ w + y_mean).astype(np.float32)
        self._pop_content = pred[:, 0]
        self._first_content = pred[:, 1] if self._user_last is not None else None
        self._cf_content = pred[:, -self.cf.dim:] if self.cf is not None else None

    def _time_index(self, ts: sp.csr_matrix | None) -> None:
        """Per-user latest timestamp and item event keys for ``popularity_recent`` / ``item_age``."""
        self._user_last = None
        if ts is None or not ts.nnz:
            return
        coo = ts.tocoo()
        t0 = float(coo.data.min())
        self._span = float(coo.data.max()) - t0 + 2 * RECENT_DAYS * 86400 + 2
        self._t0 = t0
        self._events = np.sort(coo.col.astype(np.float64) * self._span + (coo.data - t0))
        last = np.full(ts.shape[0], t0)
        np.maximum.at(last, coo.row, coo.data)
        self._user_last = last
        first = np.full(ts.shape[1], np.inf)
        np.minimum.at(first, coo.col, coo.data)
        self._item_first = first

    def _recent_history(self, ts: sp.csr_matrix | None) -> np.ndarray:
        """``[n_users, max_history]`` most recent (or heaviest) history items, -1 padded."""
        m = self.config.max_history
        out = np.full((self.history.shape[0], m), -1, dtype=np.int64)
        key = ts if ts is not None else self.history
        key = key.tocsr()
        key.sort_indices()
        for row in range(self.history.shape[0]):
            lo, hi = key.indptr[row], key.indptr[row + 1]
            idx = key.indices[lo:hi]
            if len(idx) > m:
                idx = idx[np.argsort(-key.data[lo:hi], kind="stable")[:m]]
            out[row, :len(idx)] = idx
        return out

    def fingerprint(self) -> str:
        """Hash of everything that determines the output (data shapes, config, fusion, factors)."""
        import hashlib
        import json

        h = hashlib.sha256(json.dumps({"config": self.config.__dict__, "fusion": self.fusion.as_dict(),
                                       "shape": list(self.history.shape), "nnz": int(self.history.nnz)},
                                      sort_keys=True, default=str).encode())
        for arr in (self.item_vectors, self.history.data, self.history.indices,
                    *(() if self.cf is None else (self.cf.user_factors, self.cf.item_factors))):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:32]

    # ------------------------------------------------------------------ scoring
    def _seen(self, rows: np.ndarray, cand: np.ndarray) -> np.ndarray:
        sub = self.history[rows]
        out = np.zeros(cand.shape, dtype=bool)
        for j in range(len(rows)):
            seen = sub.indices[sub.indptr[j]:sub.indptr[j + 1]]
            if len(seen):
                out[j] = np.isin(cand[j], seen)
        return out

    @staticmethod
    def _top(scores: np.ndarray, k: int) -> np.ndarray:
        k = min(k, scores.shape[1])
        if k <= 0:
            return np.zeros((scores.shape[0], 0), dtype=np.int64)
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        return part

    def candidates(self, rows: np.ndarray) -> np.ndarray:
        """``[len(rows), c]`` unseen candidate item indices, -1 padded (deduplicated)."""
        rows = np.asarray(rows, dtype=np.int64)
        c = self.config
        parts = []
        seen = self.history[rows]
        if self.cf is not None and c.n_cf:
            s = self.cf.user_factors[rows] @ self.cf.item_factors.T
            s[:, self.cold] = -np.inf  # cold items come from content
            s[seen.nonzero()] = -np.inf
            top = self._top(s, c.n_cf)
            parts.append(np.where(np.isfinite(np.take_along_axis(s, top, 1)), top, -1))
        prof = self.profiles[rows]
        if c.n_content:
            excl = [seen.indices[seen.indptr[j]:seen.indptr[j + 1]] for j in range(len(rows))]
            ids, _ = self.content_index.search(prof, c.n_content, exclude_ids=excl)
            parts.append(np.asarray(ids, dtype=np.int64))
        if c.n_cold and self.cold_index is not None:
            ids, _ = self.cold_index.search(prof, min(c.n_cold, len(self.cold_items)))
            parts.append(np.asarray(ids, dtype=np.int64))
        cand = np.sort(np.concatenate(parts, axis=1), axis=1)
        dup = np.zeros(cand.shape, dtype=bool)
        dup[:, 1:] = cand[:, 1:] == cand[:, :-1]
        cand[dup] = -1
        return cand

    def features(self, rows: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """``[len(rows), c, len(FEATURES)]`` float32 features of candidates (-1 entries ignored)."""
        rows = np.asarray(rows, dtype=np.int64)
        safe = np.where(cand >= 0, cand, 0)
        out = np.zeros(cand.shape + (len(FEATURES),), dtype=np.float32)
        if self.cf is not None:
            cf = np.einsum("bd,bcd->bc", self.cf.user_factors[rows], self.cf.item_factors[safe])
            cf_valid = np.where(cand >= 0, cf, -np.inf)
            best = cf_valid.max(axis=1, keepdims=True)
            out[..., 0] = cf
            out[..., 1] = np.where(np.isfinite(best), cf - best, 0.0)
        vecs = self.item_vectors[safe]  # [b, c, d]
        out[..., 2] = np.einsum("bd,bcd->bc", self.profiles[rows], vecs)
        hist = self._recent[rows]  # [b, m]
        hv = self.item_vectors[np.where(hist >= 0, hist, 0)]  # [b, m, d]
        sims = np.matmul(hv, vecs.transpose(0, 2, 1))  # [b, m, c]
        sims[np.broadcast_to((hist < 0)[:, :, None], sims.shape)] = -1.0
        has = (hist >= 0).any(axis=1)[:, None]
        top = np.sort(np.partition(sims, sims.shape[1] - 3, axis=1)[:, -3:, :], axis=1) \
            if sims.shape[1] > 3 else np.sort(sims, axis=1)
        out[..., 3] = np.where(has, top[:, -1, :], 0.0)
        out[..., 4] = np.where(has, np.where(top > -1.0, top, 0).mean(axis=1), 0.0)
        out[..., 5] = self.popularity[safe]
        cold = self.cold[safe].astype(np.float32)
        out[..., 6] = cold
        out[..., 7] = cold * out[..., 2]
        out[..., 8] = cold * out[..., 3]
        out[..., 9] = np.log1p(np.diff(self.history.indptr)[rows])[:, None]
        if self.cf is not None:
            recent = hist[:, :RECENT_ITEMS]
            norms = self._cf_item_unit
            rv = norms[np.where(recent >= 0, recent, 0)]  # [b, r, d]
            sims = np.matmul(rv, norms[safe].transpose(0, 2, 1))  # [b, r, c]
            sims[np.broadcast_to((recent < 0)[:, :, None], sims.shape)] = -1.0
            out[..., 10] = np.where(has, sims.max(axis=1), 0.0)
        if self._user_last is not None:
            last = (self._user_last[rows] - self._t0)[:, None]
            base = safe.astype(np.float64) * self._span
            hi = np.searchsorted(self._events, base + last, side="right")
            lo = np.searchsorted(self._events, base + last - RECENT_DAYS * 86400, side="left")
            out[..., 11] = np.log1p(hi - lo)
            age = (self._user_last[rows][:, None] - self._item_first[safe]) / 86400.0
            out[..., 12] = np.log1p(np.clip(np.nan_to_num(age, neginf=0.0, posinf=0.0), 0.0, None))
            age_c = (self._user_last[rows] - self._t0)[:, None] / 86400.0 - self._first_content[safe]
            out[..., 17] = np.sign(age_c) * np.log1p(np.abs(age_c))
        if self._cf_content is not None:
            out[..., 13] = np.einsum("bd,bcd->bc", self.cf.user_factors[rows], self._cf_content[safe])
        out[..., 15] = self._pop_content[safe]
        out[..., 14] = cold * out[..., 13]
        out[..., 16] = cold * out[..., 15]
        out[..., 18] = cold * out[..., 17]
        for src, dst in ((0, 19), (2, 20)):
            v = np.where(cand >= 0, out[..., src], -np.inf)
            out[..., dst] = np.argsort(np.argsort(-v, axis=1), axis=1) / max(cand.shape[1], 1)
        out[cand < 0] = 0.0
        return out

    def score_items(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Fused scores of given items ``[len(rows), c]`` (no exclusion, no candidate step)."""
        return self.fusion.score(self.features(rows, np.asarray(items, dtype=np.int64)))

    def recommend_rows(self, rows: np.ndarray, k: int) -> Recommendations:
        """Top-``k`` unseen items for user rows (indices into ``self.users``)."""
        rows = np.asarray(rows, dtype=np.int64)
        cand = self.candidates(rows)
        x = self.features(rows, cand)
        fused = self.fusion.score(x)
        fused[cand < 0] = -np.inf
        kk = min(k, cand.shape[1])
        order = np.argsort(-fused, axis=1, kind="stable")[:, :kk]
        items = np.take_along_axis(cand, order, 1)
        scores = np.take_along_axis(fused, order, 1)
        items[~np.isfinite(scores)] = -1
        comps = {name: np.take_along_axis(x[..., FEATURES.index(f)], order, 1)
                 for name, f in (("cf_score", "cf"), ("content_score", "content"),
                                 ("history_score", "history_max"), ("popularity", "popularity"))}
        if self.cf is None:
            comps["cf_score"][:] = np.nan
        return self._pad(Recommendations(items, scores.astype(np.float32), comps), k)

    def recommend_popular(self, n_users: int, k: int) -> Recommendations:
        """Most popular items (the documented result for users with no history)."""
        order = np.argsort(-self.popularity, kind="stable")[:k]
        items = np.broadcast_to(order, (n_users, len(order))).copy()
        scores = np.broadcast_to(self.popularity[order], items.shape).astype(np.float32).copy()
        nan = np.full(items.shape, np.nan, dtype=np.float32)
        comps = {"cf_score": nan, "content_score": nan.copy(), "history_score": nan.copy(),
                 "popularity": scores.copy()}
        return self._pad(Recommendations(items, scores, comps), k)

    @staticmethod
    def _pad(recs: Recommendations, k: int) -> Recommendations:
        missing = k - recs.items.shape[1]
        if missing <= 0:
            return recs
        pad = ((0, 0), (0, missing))
        return Recommendations(
            np.pad(recs.items, pad, constant_values=-1),
            np.pad(recs.scores, pad, constant_values=-np.inf),
            {n: np.pad(v, pad, constant_values=np.nan) for n, v in recs.components.items()})

    def recommend(self, user_ids: Sequence | np.ndarray, k: int = 10) -> pl.DataFrame:
        """Long table ``user_id, rank, item_id, score`` + component scores for the given users.

        Unknown users and users without history get the popular items. Fewer than ``k`` rows
        come back for a user when fewer than ``k`` unseen items exist.
        """
        if k < 1:
            raise DataError(f"k={k}: must be at least 1")
        ids = pl.Series("user_id", user_ids)
        rows = self.users.index(ids)
        has_hist = np.zeros(len(rows), dtype=bool)
        known = rows >= 0
        has_hist[known] = np.diff(self.history.indptr)[rows[known]] > 0
        items = np.full((len(rows), k), -1, dtype=np.int64)
        scores = np.full((len(rows), k), -np.inf, dtype=np.float32)
        comps = {n: np.full((len(rows), k), np.nan, dtype=np.float32)
                 for n in ("cf_score", "content_score", "history_score", "popularity")}
        for mask, recs in ((has_hist, self.recommend_rows(rows[has_hist], k) if has_hist.any() else None),
                           (~has_hist, self.recommend_popular(int((~has_hist).sum()), k)
                            if (~has_hist).any() else None)):
            if recs is None:
                continue
            items[mask], scores[mask] = recs.items, recs.scores
            for n in comps:
                comps[n][mask] = recs.components[n]
        return to_frame(ids, items, scores, comps, self.items)


def _index(vectors: np.ndarray, ids: np.ndarray, kind: str = "auto"):
    from xrec.index import VectorIndex

    return VectorIndex.build(vectors, ids.astype(np.int64), kind=kind, normalize=False)


def to_frame(user_ids: pl.Series, items: np.ndarray, scores: np.ndarray,
             components: dict[str, np.ndarray], item_map: IdMap) -> pl.DataFrame:
    """Long ``user_id, rank, item_id, score, <components>`` table; padding (-1) rows dropped."""
    b, k = items.shape
    valid = (items >= 0).reshape(-1)
    flat_items = items.reshape(-1)[valid]
    data = {
        "user_id": user_ids.gather(np.repeat(np.arange(b), k)[valid]),
        "rank": pl.Series("rank", np.tile(np.arange(1, k + 1, dtype=np.int32), b)[valid]),
        "item_id": item_map.ids.gather(flat_items),
        "score": pl.Series("score", scores.reshape(-1)[valid].astype(np.float32)),
    }
    for name, values in components.items():
        data[name] = pl.Series(name, values.reshape(-1)[valid].astype(np.float32))
    return pl.DataFrame(data)
