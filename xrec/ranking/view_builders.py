"""How the hybrid ranker's user and item views are computed from the data: each user's recent
items, language shares and the other languages read, item age, ridge-predicted views of cold
items, and unit-length rows. :class:`~xrec.ranking.views.FeatureViews` assembles them into
features (:mod:`xrec.ranking.views`)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def unit_rows(a: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    a = np.asarray(a, dtype=np.float32)
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return np.divide(a, norms, out=np.zeros_like(a), where=norms > 0)


def _recent_items(timestamps: sp.csr_matrix, m: int) -> np.ndarray:
    """``[n_users, m]`` each user's latest ``m`` items by time, -1 padded."""
    ts = timestamps.tocsr()
    out = np.full((ts.shape[0], m), -1, dtype=np.int64)
    for row in range(ts.shape[0]):
        lo, hi = ts.indptr[row], ts.indptr[row + 1]
        idx = ts.indices[lo:hi][np.argsort(-ts.data[lo:hi], kind="stable")[:m]]
        out[row, :len(idx)] = idx
    return out


def _sum_rows(view: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """``[n_users, d]``: the sum of ``view``'s rows at each user's ``picks`` (-1: none)."""
    out = np.zeros((picks.shape[0], view.shape[1]), np.float32)
    for j in range(picks.shape[1]):
        ok = picks[:, j] >= 0
        out[ok] += view[picks[ok, j]]
    return out


def _ridge_views(item: dict[str, np.ndarray], vectors: np.ndarray, cold: np.ndarray, popularity: np.ndarray,
                 ridge: float = 1.0) -> None:
    """Cold items' CF factors, popularity and age predicted from their content vectors by ridge
    maps fitted on warm items (``cold_*_ridge`` item views)."""
    warm = np.flatnonzero(~cold)
    if not len(warm):
        return
    targets = {"cold_popularity_ridge": popularity[:, None]}
    if "cf" in item:
        targets["cold_cf_ridge"] = item["cf"]
    if "recency" in item:
        targets["cold_recency_ridge"] = item["recency"]
    y = np.hstack([t[warm] for t in targets.values()]).astype(np.float64)
    x = vectors[warm].astype(np.float64)
    mean = y.mean(axis=0)
    w = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ (y - mean))
    pred = ((vectors @ w + mean) * cold[:, None]).astype(np.float32)
    start = 0
    for name, t in targets.items():
        item[name] = np.ascontiguousarray(pred[:, start:start + t.shape[1]])
        start += t.shape[1]
    if "cold_recency_ridge" in item:
        item["cold_recency_ridge_sq"] = item["cold_recency_ridge"] ** 2


def _language_views(history: sp.csr_matrix, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """User view: share of the user's history in each language; item view: one-hot language."""
    n_lang = int(codes.max()) + 1
    onehot = np.zeros((len(codes), n_lang), np.float32)
    known = codes >= 0
    onehot[np.flatnonzero(known), codes[known]] = 1.0
    counts = np.asarray(history @ onehot, dtype=np.float32)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    return share.astype(np.float32), onehot


def _other_languages_read(share: np.ndarray) -> np.ndarray:
    """1 for each language a user has read other than their most-read one (the user view of
    ``language_other_read``, whose weight is ``HybridConfig.language_boost``)."""
    other = (share > 0).astype(np.float32)
    other[np.arange(len(share)), share.argmax(axis=1)] = 0.0
    return other


def _time_views(timestamps: sp.csr_matrix, cold: np.ndarray, neighbours: sp.csr_matrix
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Item age in years back from the latest interaction (cold items: carried over from their
    warm content neighbours), its square, and each user's latest time (for ``time_x_recency``)."""
    coo = timestamps.tocoo()
    latest = float(coo.data.max())
    first = np.full(timestamps.shape[1], latest)
    np.minimum.at(first, coo.col, coo.data)
    user_last = np.full(timestamps.shape[0], latest)
    has = np.diff(timestamps.tocsr().indptr) > 0
    last = np.full(timestamps.shape[0], -np.inf)
    np.maximum.at(last, coo.row, coo.data)
    user_last[has] = last[has]
    years = lambda t: ((t - latest) / (365.0 * 86400.0)).astype(np.float32)  # noqa: E731
    recency = np.where(cold, 0.0, years(first)).astype(np.float32)
    cold_recency = (cold * (neighbours @ recency)).astype(np.float32)
    return ({"time": years(user_last)[:, None]},
            {"recency": recency[:, None], "recency_sq": (recency ** 2)[:, None],
             "cold_recency": cold_recency[:, None]})
