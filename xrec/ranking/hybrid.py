"""The hybrid ranker: CF factors and content vectors fused into one factorised linear score.

Every feature of the fusion (:data:`FEATURES`) is a dot product of a *user view* and an *item
view*: CF user factors with CF item factors and with content-predicted CF factors, the user's
recent-items profile with item vectors (reduced once, at construction, to ``content_dims``
principal components; the long-term profile is reported as ``content_score`` but did not pay its
way as a feature), popularity, predicted popularity and item recency ``r``
(when the item was first seen, or predicted from content for cold items; user view = 1), and
``t * r`` with the time ``t`` of the user's latest interaction (with the ``r**2`` bias this is a
learned preference for items from around the user's time, ``-(t - r)**2`` up to a per-user shift).
Cold-item and history-length variants multiply the item or user view. A weighted sum of such
features is itself one dot product, so the fused scores of a batch of users over the *whole*
catalogue are a single matrix product of a folded user matrix and a folded item matrix, and
top-k runs through implicit's own ``topk`` (the same blocked GEMM + heap selection as implicit's
``recommend``, with the users' histories filtered). No candidate step: ranking is exact.

Fusion. :meth:`HybridRanker.fit` cuts a validation slice by time out of the training data (the
last ``validation_fraction`` of each user's interactions), fits the CF model on the rest and
learns one weight per feature by maximising the softmax likelihood of the validation items over
the catalogue (L-BFGS; a uniform sample of items stands for the catalogue above
``max_fit_items``). The CF model is then refitted on all the training data and served with those
weights. **Fallback** (no timestamps, fewer than ``min_validation_positives`` validation
positives, or a pre-trained CF model without ``cf_fit``): fixed weights (:data:`FALLBACK`): the
CF score plus half the recent-items content score, cold items (CF score 0) by content only.

Cold items have a zero CF score and are reached through content; users the CF model has not
seen get a least-squares fold-in of their history; users with no history get the most popular
items (``score`` = log(1 + interactions), component scores NaN). Seen items are never returned.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from xrec.artifacts import atomic_dir, read_manifest, write_manifest
from xrec.errors import ArtifactError, DataError
from xrec.ranking.cf import FactorModel, fit_als
from xrec.ranking.interactions import IdMap, Interactions, temporal_split
from xrec.ranking.profiles import history_weights, user_profiles

log = logging.getLogger(__name__)

#: Features of the fusion, in order: ``name -> (user view, item view)``; each is a dot product.
FEATURE_VIEWS = {
    "cf": ("cf", "cf"), "cf_content": ("cf", "cf_content"), "cold_cf_content": ("cf", "cold_cf_content"),
    "recent_content": ("recent", "content"), "cold_recent_content": ("recent", "cold_content"),
    "cf_recent": ("cf_recent", "cf_unit"),
    "popularity": ("one", "popularity"), "cold": ("one", "cold"),
    "popularity_content": ("one", "popularity_content"), "cold_popularity_content": ("one", "cold_popularity_content"),
    "recency": ("one", "recency"), "recency_sq": ("one", "recency_sq"), "time_x_recency": ("time", "recency"),
    "cold_recency_content": ("one", "cold_recency_content"),
    "cold_recency_content_sq": ("one", "cold_recency_content_sq"),
    "time_x_cold_recency_content": ("time", "cold_recency_content"),
    "len_x_cf": ("cf_len", "cf"), "len_x_cf_content": ("cf_len", "cf_content"),
    "len_x_popularity": ("one_len", "popularity"), "len_x_cold": ("one_len", "cold"),
}
FEATURES = tuple(FEATURE_VIEWS)
#: ``recent_content`` / ``cf_recent`` use the user's last few items.
RECENT_ITEMS = 5
#: Fallback weights on the raw features (see module docstring).
FALLBACK = {"cf": 1.0, "recent_content": 0.5, "cold_recent_content": 1.0}
#: Saved rankers: artifact kind and format version.
KIND, FORMAT_VERSION = "hybrid-ranker", 1


@dataclass
class Fusion:
    """One weight per feature of :data:`FEATURES`: ``score = features @ weights``."""

    weights: np.ndarray
    kind: str = "fallback"  #: "learned" or "fallback"

    @classmethod
    def fallback(cls) -> Fusion:
        return cls(np.array([FALLBACK.get(n, 0.0) for n in FEATURES], dtype=np.float32))

    @classmethod
    def learn(cls, features: np.ndarray, positives: np.ndarray, excluded: np.ndarray, *,
              log_weight: np.ndarray | None = None, l2: float = 1e-2, max_iter: int = 200) -> Fusion:
        """Softmax likelihood of the positives over each user's items, L2-penalised, by L-BFGS.

        ``features`` ``[users, items, len(FEATURES)]``; ``positives`` and ``excluded`` (seen
        items) ``[users, items]`` bool; ``log_weight`` ``[items]`` is added to the logits (the
        log of how many catalogue items each sampled item stands for). Features are standardised
        for the fit; the returned weights apply to the raw features.
        """
        from scipy.optimize import minimize

        u, n, f = features.shape
        flat = features.reshape(-1, f)
        mean = flat.mean(axis=0, dtype=np.float64)
        scale = flat.std(axis=0, dtype=np.float64) + 1e-6
        x = ((features - mean.astype(np.float32)) / scale.astype(np.float32)).astype(np.float32)
        pos = positives.astype(np.float32)
        pos /= np.maximum(pos.sum(axis=1, keepdims=True), 1.0)
        offset = np.where(excluded, -np.inf, 0.0 if log_weight is None else log_weight[None]).astype(np.float32)
        xf = x.reshape(-1, f)

        def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
            s = (xf @ w.astype(np.float32)).reshape(u, n) + offset
            top = s.max(axis=1, keepdims=True)
            e = np.exp(s - top)
            z = e.sum(axis=1, keepdims=True)
            s_pos = np.where(pos > 0, s, 0.0)
            value = float(np.mean(np.log(z[:, 0]) + top[:, 0] - (s_pos * pos).sum(axis=1))) + l2 * float(w @ w)
            grad = xf.T @ ((e / z - pos) / u).reshape(-1)
            return value, grad.astype(np.float64) + 2 * l2 * w

        res = minimize(loss, np.zeros(f), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
        return cls((res.x / scale).astype(np.float32), "learned")

    def as_dict(self) -> dict:
        return {"kind": self.kind, "weights": dict(zip(FEATURES, map(float, self.weights)))}


@dataclass
class HybridConfig:
    """Knobs of the hybrid ranker (defaults tuned on a validation slice of MovieLens training data)."""

    content_dims: int | None = 32  #: principal components of the item vectors (None: keep all)
    max_history: int = 50  #: most recent history items kept per user
    half_life_days: float | None = 365.0
    validation_fraction: float = 0.2
    min_validation_positives: int = 50
    l2: float = 1e-2  #: L2 penalty of the fusion fit (on standardised features)
    max_fit_users: int = 1000  #: validation users sampled for the fusion fit
    max_fit_items: int = 5000  #: catalogue sample of the fusion fit's softmax
    threads: int = 0  #: threads of the top-k search (0: all cores)
    seed: int = 0


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


def _unit(a: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return np.divide(a, norms, out=np.zeros_like(a, dtype=np.float32), where=norms > 0).astype(np.float32)


def content_basis(item_vectors: np.ndarray, dims: int | None, sample: int = 20000) -> np.ndarray | None:
    """``[dim, dims]`` top principal directions of the item vectors (None when not reducing)."""
    if dims is None or dims >= item_vectors.shape[1] or item_vectors.shape[0] <= dims:
        return None
    x = item_vectors[:: max(1, len(item_vectors) // sample)].astype(np.float64)
    _, _, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    return np.ascontiguousarray(vt[:dims].T, dtype=np.float32)


class HybridRanker:
    """Fuses a :class:`FactorModel` with content vectors; see the module docstring."""

    def __init__(self, interactions: Interactions, item_vectors: np.ndarray, cf: FactorModel | None,
                 fusion: Fusion | None = None, config: HybridConfig | None = None):
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
        self.history.sort_indices()
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
        self.cf = self._prepare_cf(cf)
        self._content_projections()
        self._views()
        self._fold()

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
            data = cls.validation_data(interactions, item_vectors, cf_fit, config)
            if data is not None:
                fusion = Fusion.learn(*data[:3], log_weight=data[3], l2=config.l2)
        if cf is None:
            cf = cf_fit(interactions.matrix)
        return cls(interactions, item_vectors, cf, fusion, config)

    @classmethod
    def validation_data(cls, interactions: Interactions, item_vectors: np.ndarray, cf_fit: CFFit,
                        config: HybridConfig
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None] | None:
        """Features ``[users, items, f]``, positives, seen items and item log-weights of the fit.

        Users: (up to ``max_fit_users`` of) those with validation items; items: the whole
        catalogue, or above ``max_fit_items`` every validation item plus a uniform sample."""
        train, val = temporal_split(interactions.frame, config.validation_fraction, min_test=0)
        sub = Interactions.build(train, interactions.items.ids, user_ids=interactions.users.ids)
        ranker = cls(sub, item_vectors, cf_fit(sub.matrix), None, config)
        rows = sub.users.index(val["user_id"])
        cols = sub.items.index(val["item_id"])
        truth = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=sub.matrix.shape)
        truth = truth - truth.multiply(sub.matrix != 0)  # items seen in training are no positives
        truth.eliminate_zeros()
        if truth.nnz < config.min_validation_positives:
            log.warning("%d validation positives (< %d): fallback fusion", truth.nnz,
                        config.min_validation_positives)
            return None
        rng = np.random.default_rng(config.seed)
        users = np.flatnonzero(np.diff(truth.indptr) > 0)
        if len(users) > config.max_fit_users:
            users = np.sort(rng.choice(users, config.max_fit_users, replace=False))
        n = len(ranker.items)
        items, log_weight = np.arange(n), None
        if n > config.max_fit_items:
            positive = np.unique(truth[users].indices)
            others = np.setdiff1d(np.arange(n), positive)
            sample = np.sort(rng.choice(others, min(config.max_fit_items, len(others)), replace=False))
            items = np.concatenate([positive, sample])
            log_weight = np.concatenate([np.zeros(len(positive)),
                                         np.full(len(sample), np.log(len(others) / len(sample)))])
        x = np.concatenate([ranker.features(batch, np.broadcast_to(items, (len(batch), len(items))))
                            for batch in np.array_split(users, max(1, -(-len(users) // 256)))])
        pos = truth[users][:, items].toarray() > 0
        seen = sub.matrix.tocsr()[users][:, items].toarray() != 0
        return x, pos, seen, None if log_weight is None else log_weight.astype(np.float32)

    def _prepare_cf(self, cf: FactorModel | None) -> FactorModel | None:
        if cf is None:
            return None
        if cf.users is not None or cf.items is not None:
            cf = cf.align(self.users, self.items)
        elif cf.item_factors.shape[0] != len(self.items) or cf.user_factors.shape[0] != len(self.users):
            raise DataError(f"CF model has {cf.user_factors.shape[0]} users x {cf.item_factors.shape[0]} "
                            f"items, the data {len(self.users)} x {len(self.items)}; pass the model's ids")
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
        y_mean = y.mean(axis=0) if len(warm) else np.zeros(y.shape[1])
        gram = x.T @ x + ridge * np.eye(x.shape[1])
        w = np.linalg.solve(gram, x.T @ (y - y_mean)) if len(warm) else np.zeros((x.shape[1], y.shape[1]))
        pred = (self.item_vectors @ w + y_mean).astype(np.float32)
        self._pop_content = pred[:, 0]
        self._first_content = pred[:, 1] if self._user_last is not None else None
        self._cf_content = np.ascontiguousarray(pred[:, -self.cf.dim:]) if self.cf is not None else None

    def _time_index(self, ts: sp.csr_matrix | None) -> None:
        """Per-user latest timestamp and per-item first one."""
        self._user_last = None
        if ts is None or not ts.nnz:
            return
        coo = ts.tocoo()
        t0 = float(coo.data.min())
        self._t0 = t0
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
        key = (ts if ts is not None else self.history).tocsr()
        key.sort_indices()
        for row in range(self.history.shape[0]):
            lo, hi = key.indptr[row], key.indptr[row + 1]
            idx = key.indices[lo:hi]
            if len(idx) > 1:
                idx = idx[np.argsort(-key.data[lo:hi], kind="stable")[:m]]
            out[row, :len(idx)] = idx
        return out

    def _views(self) -> None:
        """User views ``[n_users, d]`` and item views ``[n_items, d]`` of :data:`FEATURE_VIEWS`."""
        n_users, n_items = len(self.users), len(self.items)
        basis = content_basis(self.item_vectors, self.config.content_dims)
        self.content_basis = basis
        x = _unit(self.item_vectors @ basis) if basis is not None else self.item_vectors
        profile = _unit(self.profiles @ basis) if basis is not None else self.profiles
        cold = self.cold.astype(np.float32)[:, None]
        if self.cf is not None:
            u, v, c = self.cf.user_factors, self.cf.item_factors, self._cf_content
        else:
            u, v, c = np.zeros((n_users, 1), np.float32), np.zeros((n_items, 1), np.float32), \
                np.zeros((n_items, 1), np.float32)
        v_unit = _unit(v)
        recent = self._recent[:, :RECENT_ITEMS]
        r = np.zeros((n_users, x.shape[1]), np.float32)
        rc = np.zeros((n_users, v.shape[1]), np.float32)
        for j in range(recent.shape[1]):
            ok = recent[:, j] >= 0
            r[ok] += x[recent[ok, j]]
            rc[ok] += v_unit[recent[ok, j]]
        rc /= np.maximum((recent >= 0).sum(axis=1), 1)[:, None]
        n_hist = np.diff(self.history.indptr)
        length = np.log1p(n_hist).astype(np.float32)
        has = n_hist > 0
        if has.any():
            length = np.where(has, (length - length[has].mean()) / (length[has].std() + 1e-6), 0.0)
        length = length.astype(np.float32)[:, None]
        recency, recency_content, time = self._recency()
        ones = np.ones((n_users, 1), np.float32)
        self._user_views = {"cf": u, "profile": profile, "recent": _unit(r), "cf_recent": rc, "one": ones,
                            "time": time[:, None], "cf_len": u * length, "one_len": length}
        self._item_views = {"cf": v, "cf_content": c, "cold_cf_content": c * cold, "content": x,
                            "cold_content": x * cold, "cf_unit": v_unit, "popularity": self.popularity[:, None],
                            "cold": cold, "popularity_content": self._pop_content[:, None],
                            "cold_popularity_content": (self._pop_content * self.cold)[:, None],
                            "recency": recency[:, None], "recency_sq": recency[:, None] ** 2,
                            "cold_recency_content": (recency_content * self.cold)[:, None],
                            "cold_recency_content_sq": (recency_content ** 2 * self.cold)[:, None]}

    def _recency(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Years from the latest interaction back to each item's first one (0 for cold items),
        the same predicted from content, and back to each user's latest one (zeros without
        timestamps)."""
        n = len(self.items)
        if self._user_last is None:
            return np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros(len(self.users), np.float32)
        latest = (self._user_last.max() - self._t0) / 86400.0
        first = np.where(self.cold, latest, (self._item_first - self._t0) / 86400.0)
        years = lambda days: ((days - latest) / 365.0).astype(np.float32)  # noqa: E731
        return years(first), years(self._first_content), years((self._user_last - self._t0) / 86400.0)

    def _fold(self) -> None:
        """``query [n_users, d]`` and ``keys [n_items, d]``: ``query @ keys.T`` = fused scores."""
        queries, keys = [], []
        w = dict(zip(FEATURES, self.fusion.weights))
        for user_view, vectors in self._user_views.items():
            used = [(w[name], item_view) for name, (uv, item_view) in FEATURE_VIEWS.items()
                    if uv == user_view and w[name] != 0]
            if not used:
                continue
            queries.append(vectors)
            keys.append(sum(weight * self._item_views[item_view] for weight, item_view in used))
        if not queries:
            queries, keys = [np.zeros((len(self.users), 1))], [np.zeros((len(self.items), 1))]
        self.query = np.ascontiguousarray(np.hstack(queries), dtype=np.float32)
        self.keys = np.ascontiguousarray(np.hstack(keys), dtype=np.float32)

    def fingerprint(self) -> str:
        """Hash of everything that determines the output (data shapes, config, fusion, factors)."""
        import hashlib

        h = hashlib.sha256(json.dumps({"config": self.config.__dict__, "fusion": self.fusion.as_dict(),
                                       "shape": list(self.history.shape), "nnz": int(self.history.nnz)},
                                      sort_keys=True, default=str).encode())
        for arr in (self.item_vectors, self.history.data, self.history.indices, self.query, self.keys):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:32]

    # ------------------------------------------------------------------ artifact
    def save(self, path: str | os.PathLike[str], *, encoder_fingerprint: str | None = None) -> Path:
        """Write the ranker as an artifact directory (atomically, no pickle).

        Holds the interactions (parquet), user and item ids (parquet), item vectors and CF factors
        (``.npy``), the fusion weights and config (JSON) and a manifest; :meth:`load` rebuilds the
        same ranker from them without refitting anything."""
        with atomic_dir(path) as tmp:
            self.interactions.frame.write_parquet(tmp / "interactions.parquet")
            pl.DataFrame({"user_id": self.users.ids}).write_parquet(tmp / "users.parquet")
            pl.DataFrame({"item_id": self.items.ids}).write_parquet(tmp / "items.parquet")
            np.save(tmp / "item_vectors.npy", self.item_vectors, allow_pickle=False)
            cf = None
            if self.cf is not None:
                np.save(tmp / "cf_user_factors.npy", self.cf.user_factors, allow_pickle=False)
                np.save(tmp / "cf_item_factors.npy", self.cf.item_factors, allow_pickle=False)
                cf = {"name": self.cf.name, "regularization": self.cf.regularization}
            (tmp / "ranker.json").write_text(json.dumps(
                {"fusion": self.fusion.as_dict(), "config": asdict(self.config), "cf": cf}, indent=2) + "\n",
                encoding="utf-8")
            write_manifest(tmp, KIND, FORMAT_VERSION, {
                "encoder_fingerprint": encoder_fingerprint, "dim": int(self.item_vectors.shape[1]),
                "users": len(self.users), "items": len(self.items), "interactions": int(self.history.nnz),
                "features": list(FEATURES)})
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, encoder_fingerprint: str | None = None) -> HybridRanker:
        """Read a ranker written by :meth:`save`; :class:`ArtifactError` names what is wrong."""
        root = Path(path)
        manifest = read_manifest(root, KIND, FORMAT_VERSION, expect={"encoder_fingerprint": encoder_fingerprint})
        if manifest.get("features") != list(FEATURES):
            raise ArtifactError(f"{root}: saved with features {manifest.get('features')}, this xrec uses "
                                f"{list(FEATURES)}; refit the ranker")
        meta = json.loads((root / "ranker.json").read_text(encoding="utf-8"))
        weights = np.array([meta["fusion"]["weights"][n] for n in FEATURES], dtype=np.float32)
        config = HybridConfig(**meta["config"])
        inter = Interactions.build(pl.read_parquet(root / "interactions.parquet"),
                                   pl.read_parquet(root / "items.parquet")["item_id"], source=str(root),
                                   user_ids=pl.read_parquet(root / "users.parquet")["user_id"])
        vectors = np.load(root / "item_vectors.npy", allow_pickle=False)
        cf = None
        if meta["cf"] is not None:
            cf = FactorModel(np.load(root / "cf_user_factors.npy", allow_pickle=False),
                             np.load(root / "cf_item_factors.npy", allow_pickle=False),
                             name=meta["cf"]["name"], regularization=meta["cf"]["regularization"])
        for what, n in (("users", len(inter.users)), ("items", len(inter.items)),
                        ("interactions", int(inter.matrix.nnz))):
            if manifest.get(what) != n:
                raise ArtifactError(f"{root}: manifest says {manifest.get(what)} {what}, the files hold {n}")
        return cls(inter, vectors, cf, Fusion(weights, meta["fusion"]["kind"]), config)

    # ------------------------------------------------------------------ scoring
    def features(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``[len(rows), c, len(FEATURES)]`` float32 features of ``items`` ``[len(rows), c]``."""
        rows = np.asarray(rows, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        out = np.empty(items.shape + (len(FEATURES),), dtype=np.float32)
        for k, (user_view, item_view) in enumerate(FEATURE_VIEWS.values()):
            out[..., k] = self._view_scores(user_view, item_view, rows, items)
        return out

    def _view_scores(self, user_view: str, item_view: str, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Dot products of a user view and an item view for ``items`` ``[len(rows), c]``."""
        return np.einsum("bd,bcd->bc", self._user_views[user_view][rows], self._item_views[item_view][items])

    def score_items(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Fused scores of given items ``[len(rows), c]`` (no exclusion)."""
        rows = np.asarray(rows, dtype=np.int64)
        return np.einsum("bd,bcd->bc", self.query[rows], self.keys[np.asarray(items, dtype=np.int64)])

    def recommend_rows(self, rows: np.ndarray, k: int, *, components: bool = True) -> Recommendations:
        """Top-``k`` unseen items for user rows (indices into ``self.users``).

        ``components=False`` skips the per-item component scores (the ranking is the same)."""
        from implicit.cpu.topk import topk

        rows = np.asarray(rows, dtype=np.int64)
        kk = min(k, len(self.items))
        items, scores = topk(self.keys, self.query[rows], kk, filter_query_items=self.history[rows],
                             num_threads=self.config.threads)
        items = np.asarray(items, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float32)
        pad = (items < 0) | ~np.isfinite(scores) | (scores <= np.finfo(np.float32).min)
        items[pad], scores[pad] = -1, -np.inf
        comps: dict[str, np.ndarray] = {}
        if components:
            safe = np.where(pad, 0, items)
            comps = {"cf_score": self._view_scores("cf", "cf", rows, safe) if self.cf is not None
                     else np.full(items.shape, np.nan, np.float32),
                     "content_score": self._view_scores("profile", "content", rows, safe),
                     "history_score": self._view_scores("recent", "content", rows, safe),
                     "popularity": self.popularity[safe]}
            for v in comps.values():
                v[pad] = np.nan
        return self._pad(Recommendations(items, scores, comps), k)

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
        k = min(k, len(self.items))  # what can be returned: memory is users x min(k, catalogue)
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
