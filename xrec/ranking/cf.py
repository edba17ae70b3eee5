"""Collaborative-filtering factors behind one small interface.

Every CF model becomes a :class:`FactorModel`: a user matrix and an item matrix whose dot product
ranks items (biases folded in as an extra column). ALS and BPR come from implicit (its GPU build
where CUDA is present), WARP/BPR from LightFM, optionally with content vectors as item features.
A model the user already trained (implicit or LightFM) is wrapped without retraining by
:func:`from_implicit` / :func:`from_lightfm`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from xrec.catalogue.interactions import IdMap
from xrec.errors import DataError, ModelError

log = logging.getLogger(__name__)


@dataclass
class FactorModel:
    """``score(u, i) = user_factors[u] @ item_factors[i]``; rows follow ``users`` / ``items`` when set.

    ``regularization`` is used by :meth:`fold_in` to compute vectors of users the model has not seen.
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    name: str = "cf"
    regularization: float = 0.1
    users: IdMap | None = None
    items: IdMap | None = None

    def __post_init__(self) -> None:
        self.user_factors = np.ascontiguousarray(self.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(self.item_factors, dtype=np.float32)
        if self.user_factors.ndim != 2 or self.item_factors.ndim != 2 or \
                self.user_factors.shape[1] != self.item_factors.shape[1]:
            raise ModelError(f"{self.name}: factor shapes {self.user_factors.shape} and "
                             f"{self.item_factors.shape} do not match")

    @property
    def dim(self) -> int:
        return int(self.item_factors.shape[1])

    def scores(self, user_rows: np.ndarray) -> np.ndarray:
        """Dense ``[len(user_rows), n_items]`` scores."""
        return self.user_factors[np.asarray(user_rows)] @ self.item_factors.T

    def fold_in(self, history: sp.csr_matrix, confidence: float = 1.0) -> np.ndarray:
        """Least-squares user vectors from histories (rows of ``history``), as ALS would fit them.

        For users the model has never seen: ``u = (V'V + V_h'(c-1)V_h + reg I)^-1 V_h' c``.
        """
        v = self.item_factors
        gram = v.T @ v + self.regularization * np.eye(self.dim, dtype=np.float32)
        out = np.zeros((history.shape[0], self.dim), dtype=np.float32)
        for row in range(history.shape[0]):
            lo, hi = history.indptr[row], history.indptr[row + 1]
            if lo == hi:
                continue
            idx = history.indices[lo:hi]
            c = 1.0 + confidence * history.data[lo:hi].astype(np.float32)
            vh = v[idx]
            a = gram + (vh * (c - 1.0)[:, None]).T @ vh
            out[row] = np.linalg.solve(a, vh.T @ c)
        return out

    def align(self, users: IdMap, items: IdMap) -> FactorModel:
        """Rows reordered to ``users`` / ``items``; ids the model lacks get zero vectors."""
        def pick(factors: np.ndarray, own: IdMap | None, target: IdMap, what: str) -> np.ndarray:
            if own is None:
                if factors.shape[0] != len(target):
                    raise DataError(f"{self.name}: model has {factors.shape[0]} {what}s, data has "
                                    f"{len(target)}; pass the model's {what} ids to align them")
                return factors
            idx = own.index(target.ids)
            out = np.zeros((len(target), factors.shape[1]), dtype=np.float32)
            out[idx >= 0] = factors[idx[idx >= 0]]
            return out
        return replace(self, user_factors=pick(self.user_factors, self.users, users, "user"),
                       item_factors=pick(self.item_factors, self.items, items, "item"),
                       users=users, items=items)


def _ids(ids: Sequence | None, name: str) -> IdMap | None:
    return None if ids is None else IdMap(ids, name)


def _implicit_factors(model) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(model, "to_cpu") and not isinstance(getattr(model, "item_factors", None), np.ndarray):
        model = model.to_cpu()
    if getattr(model, "item_factors", None) is None:
        raise ModelError(f"{type(model).__name__}: not fitted (no item_factors)")
    return np.asarray(model.user_factors), np.asarray(model.item_factors)


def from_implicit(model, *, user_ids: Sequence | None = None, item_ids: Sequence | None = None,
                  name: str = "implicit") -> FactorModel:
    """Wrap a fitted implicit ``MatrixFactorizationBase`` (ALS, BPR, LMF; CPU or GPU) without retraining.

    ``user_ids`` / ``item_ids`` give the external id of each factor row; without them the rows
    must already follow the data's order.
    """
    users, items = _implicit_factors(model)
    reg = float(getattr(model, "regularization", 0.1))
    return FactorModel(users, items, name=name, regularization=reg,
                       users=_ids(user_ids, "user_id"), items=_ids(item_ids, "item_id"))


def from_lightfm(model, *, item_features: sp.spmatrix | None = None,
                 user_features: sp.spmatrix | None = None, user_ids: Sequence | None = None,
                 item_ids: Sequence | None = None, name: str = "lightfm") -> FactorModel:
    """Wrap a fitted ``lightfm.LightFM`` without retraining; item biases become an extra column."""
    if getattr(model, "item_embeddings", None) is None:
        raise ModelError("LightFM model is not fitted (no item_embeddings)")
    item_bias, item_emb = model.get_item_representations(item_features)
    user_bias, user_emb = model.get_user_representations(user_features)
    users = np.hstack([user_emb, np.ones((user_emb.shape[0], 1), dtype=np.float32)])
    items = np.hstack([item_emb, item_bias[:, None]])
    return FactorModel(users, items, name=name, regularization=float(model.item_alpha or 0.1) + 0.1,
                       users=_ids(user_ids, "user_id"), items=_ids(item_ids, "item_id"))


def confidence(matrix: sp.csr_matrix, weighting: str = "bm25", alpha: float = 1.0) -> sp.csr_matrix:
    """Confidence weights for implicit models: ``"bm25"``, ``"tfidf"``, ``"linear"`` (alpha*w) or ``"binary"``."""
    from implicit.nearest_neighbours import bm25_weight, tfidf_weight

    m = matrix.astype(np.float32).tocsr()
    if weighting == "binary":
        m = m.copy()
        m.data[:] = 1.0
    elif weighting == "bm25":
        m = bm25_weight(m, K1=100, B=0.8).tocsr()
    elif weighting == "tfidf":
        m = tfidf_weight(m).tocsr()
    elif weighting != "linear":
        raise DataError(f"weighting={weighting!r}: use bm25, tfidf, linear or binary")
    m = (alpha * m).astype(np.float32).tocsr()
    m.eliminate_zeros()
    return m


def fit_als(matrix: sp.csr_matrix, *, factors: int = 32, regularization: float = 5.0,
            alpha: float = 1.0, iterations: int = 15, weighting: str = "binary", threads: int = 2,
            seed: int = 0, use_gpu: bool | None = None) -> tuple[FactorModel, Any]:
    """Fit implicit's ALS on a user x item matrix; returns ``(FactorModel, implicit model)``."""
    import implicit.als
    import implicit.gpu
    from threadpoolctl import threadpool_limits

    gpu = implicit.gpu.HAS_CUDA if use_gpu is None else use_gpu
    with threadpool_limits(1, "blas"):  # implicit parallelises itself; nested BLAS threads slow it
        model = implicit.als.AlternatingLeastSquares(
            factors=factors, regularization=regularization, alpha=alpha, iterations=iterations,
            num_threads=threads, random_state=seed, use_gpu=gpu, calculate_training_loss=False)
        model.fit(confidence(matrix, weighting), show_progress=False)
    out = from_implicit(model, name="als")
    _zero_cold(out, matrix)
    return out, model


def fit_bpr(matrix: sp.csr_matrix, *, factors: int = 32, learning_rate: float = 0.01,
            regularization: float = 0.01, iterations: int = 100, threads: int = 2, seed: int = 0,
            use_gpu: bool | None = None) -> tuple[FactorModel, Any]:
    """Fit implicit's BPR (binary feedback); returns ``(FactorModel, implicit model)``."""
    import implicit.bpr
    import implicit.gpu

    gpu = implicit.gpu.HAS_CUDA if use_gpu is None else use_gpu
    model = implicit.bpr.BayesianPersonalizedRanking(
        factors=factors, learning_rate=learning_rate, regularization=regularization,
        iterations=iterations, num_threads=threads, random_state=seed, use_gpu=gpu)
    model.fit(confidence(matrix, "binary"), show_progress=False)
    out = from_implicit(model, name="bpr")
    _zero_cold(out, matrix)
    return out, model


def principal_basis(vectors: np.ndarray, dims: int, sample: int = 20000) -> np.ndarray:
    """``[dim, dims]`` top principal directions of ``vectors`` (identity when ``dims`` keeps all)."""
    x = np.asarray(vectors, dtype=np.float32)
    if dims >= x.shape[1] or x.shape[0] <= dims:
        return np.eye(x.shape[1], dtype=np.float32)
    part = x[:: max(1, len(x) // sample)].astype(np.float64)
    _, _, vt = np.linalg.svd(part - part.mean(axis=0), full_matrices=False)
    return np.ascontiguousarray(vt[:dims].T, dtype=np.float32)


def content_features(item_vectors: np.ndarray, identity: bool = True, scale: float = 1.0,
                     dims: int | None = 32) -> sp.csr_matrix:
    """LightFM item features: an identity block (per-item embedding) next to the content vectors.

    ``dims``: the content vectors are first reduced to their top principal components (LightFM's
    cost grows with the number of non-zero features per item; 384 dense ones make WARP ~10x
    slower for no measurable gain); each reduced row is L2-normalised. ``None`` keeps them whole.
    """
    x = np.asarray(item_vectors, dtype=np.float32)
    if dims is not None and dims < x.shape[1] and x.shape[0] > dims:
        x = (x - x.mean(axis=0)) @ principal_basis(x, dims)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    content = sp.csr_matrix(x * scale)
    if not identity:
        return content
    return sp.hstack([sp.identity(content.shape[0], dtype=np.float32, format="csr"), content]).tocsr()


def fit_lightfm(matrix: sp.csr_matrix, *, loss: str = "warp", components: int = 64,
                epochs: int = 30, learning_rate: float = 0.05, item_alpha: float = 1e-6,
                user_alpha: float = 1e-6, item_vectors: np.ndarray | None = None,
                content_scale: float = 1.0, content_dims: int | None = 32, threads: int = 2,
                seed: int = 0,
                ) -> tuple[FactorModel, object, sp.csr_matrix | None]:
    """Fit LightFM (``warp`` or ``bpr``), with ``item_vectors`` as item features when given.

    Returns ``(FactorModel, lightfm model, item_features)``. Without content, cold items get zero
    vectors (they have no signal); with content they are scored through their features.
    """
    from lightfm import LightFM

    if loss not in ("warp", "bpr", "warp-kos", "logistic"):
        raise DataError(f"loss={loss!r}: use warp, bpr, warp-kos or logistic")
    features = None if item_vectors is None else content_features(
        item_vectors, scale=content_scale, dims=content_dims)
    model = LightFM(no_components=components, loss=loss, learning_rate=learning_rate,
                    item_alpha=item_alpha, user_alpha=user_alpha, random_state=seed)
    binary = confidence(matrix, "binary").tocoo()
    model.fit(binary, item_features=features, epochs=epochs, num_threads=threads)
    name = "lightfm" if features is None else "lightfm_content"
    out = from_lightfm(model, item_features=features, name=name)
    if features is None:
        _zero_cold(out, matrix)
    return out, model, features


def _zero_cold(model: FactorModel, matrix: sp.csr_matrix) -> None:
    """Items without interactions carry no CF signal: give them zero vectors (score 0)."""
    cold = np.diff(matrix.tocsc().indptr) == 0
    model.item_factors[cold] = 0.0


def align_cf(cf: FactorModel | None, users: IdMap, items: IdMap, history: sp.csr_matrix) -> FactorModel | None:
    """The CF model aligned to the data's users and items; unseen users with history folded in."""
    if cf is None:
        return None
    if cf.users is not None or cf.items is not None:
        cf = cf.align(users, items)
    elif cf.item_factors.shape[0] != len(items) or cf.user_factors.shape[0] != len(users):
        raise DataError(f"CF model has {cf.user_factors.shape[0]} users x {cf.item_factors.shape[0]} "
                        f"items, the data {len(users)} x {len(items)}; pass the model's ids")
    missing = ~cf.user_factors.any(axis=1) & (np.diff(history.indptr) > 0)
    if missing.any():
        cf.user_factors[missing] = cf.fold_in(history[np.flatnonzero(missing)])
    return cf
