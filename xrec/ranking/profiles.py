"""User profiles in the shared content space, built from interaction histories.

A profile is a weighted mean of the vectors of the items a user interacted with, L2-normalised.
Weights combine the interaction weight (for ratings: stars above the user's own mean count more)
and recency (exponential decay with a half-life, relative to the user's last interaction). Users
with no history get a zero profile (and are served by popularity, see :class:`~xrec.ranking.HybridRanker`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def history_weights(history: sp.csr_matrix, timestamps: sp.csr_matrix | None = None, *,
                    centre: bool = True, half_life_days: float | None = 365.0) -> sp.csr_matrix:
    """Per-interaction profile weights, same sparsity as ``history``.

    ``centre``: weight ``1 + (w - mean_w(user)) / (std_w(user) + 1)`` clipped to [0.1, 3], so that
    a user's above-average ratings dominate (all weights equal gives 1). ``half_life_days``: each
    interaction is down-weighted by ``0.5 ** (age / half_life)``, age measured from the user's
    latest interaction (needs ``timestamps``; ``None`` switches recency off).
    """
    out = history.astype(np.float32).tocsr(copy=True)
    out.sort_indices()
    counts = np.diff(out.indptr)
    rows = np.repeat(np.arange(out.shape[0]), counts)
    if centre and out.nnz:
        sums = np.bincount(rows, out.data, minlength=out.shape[0])
        mean = sums / np.maximum(counts, 1)
        var = np.bincount(rows, (out.data - mean[rows]) ** 2, minlength=out.shape[0]) / np.maximum(counts, 1)
        out.data = np.clip(1.0 + (out.data - mean[rows]) / (np.sqrt(var[rows]) + 1.0), 0.1, 3.0).astype(np.float32)
    else:
        out.data = np.ones_like(out.data)
    if half_life_days is not None and timestamps is not None and out.nnz:
        ts = timestamps.tocsr(copy=True)
        ts.sort_indices()
        latest = np.maximum.reduceat(ts.data, ts.indptr[:-1][counts > 0]) if ts.nnz else np.zeros(0)
        last = np.zeros(out.shape[0])
        last[counts > 0] = latest
        age_days = (last[rows] - ts.data) / 86400.0
        out.data = (out.data * 0.5 ** (np.maximum(age_days, 0.0) / half_life_days)).astype(np.float32)
    return out


def user_profiles(weights: sp.csr_matrix, item_vectors: np.ndarray) -> np.ndarray:
    """L2-normalised weighted means of item vectors, one row per user (zeros without history)."""
    prof = np.asarray(weights @ item_vectors, dtype=np.float32)
    norms = np.linalg.norm(prof, axis=1, keepdims=True)
    np.divide(prof, norms, out=prof, where=norms > 0)
    return prof
