"""Diversifying a top-k list: maximal marginal relevance (MMR) over the shared item vectors.

From a pool of the best-scored items, items are picked one at a time by
``(1 - diversity) * relevance - diversity * redundancy``: relevance is the item's fused score
scaled to [0, 1] within the pool, redundancy its highest cosine similarity to the items already
picked, scaled to [0, 1] over the pool's pairs (in a multilingual e5 space every cosine is high:
unscaled, redundancy would hardly vary). Items of the same work (in
any language) sit close in the shared space, so a higher ``diversity`` spreads the list over
works at some cost in score. It does not spread languages (the space is built to be
language-agnostic; benchmarks/README.md): ``language_boost`` does. ``diversity=0`` keeps the score order.

With ``groups`` (item topic codes, -1: none), redundancy is 1 where an item shares the group of an
item already picked and 0 otherwise: the list spreads over topics instead of works.
"""

from __future__ import annotations

import numpy as np


def mmr(scores: np.ndarray, items: np.ndarray, vectors: np.ndarray, k: int, diversity: float, *,
        groups: np.ndarray | None = None) -> np.ndarray:
    """``[b, min(k, pool)]`` positions into each row of the pool ``items`` ``[b, pool]`` (score
    order, -1 = padding) chosen by MMR (module docstring); ``groups`` ``[n_items]``: redundancy
    by shared group instead of by vector."""
    b, pool = items.shape
    k = min(k, pool)
    out = np.full((b, k), -1, dtype=np.int64)
    for j in range(b):
        valid = (items[j] >= 0) & np.isfinite(scores[j])
        n = int(valid.sum())
        if not n:
            continue
        s = scores[j, :n].astype(np.float64)  # the pool is in score order: valid entries come first
        spread = s.max() - s.min()
        relevance = (s - s.min()) / spread if spread > 0 else np.ones(n)
        if groups is not None:
            g = groups[items[j, :n]]
            sims = ((g[:, None] == g[None, :]) & (g[:, None] >= 0)).astype(np.float64)
        else:
            v = vectors[items[j, :n]]
            sims = v @ v.T
        if n > 1 and groups is None:  # e5-like spaces: every cosine is high; scale the pool's own range to [0, 1]
            off = sims[~np.eye(n, dtype=bool)]
            lo, hi = float(off.min()), float(off.max())
            sims = np.clip((sims - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(sims)
        redundancy = np.zeros(n)
        free = np.ones(n, dtype=bool)
        for t in range(min(k, n)):
            value = np.where(free, (1.0 - diversity) * relevance - diversity * redundancy, -np.inf)
            pick = int(np.argmax(value))
            out[j, t] = pick
            free[pick] = False
            redundancy = np.maximum(redundancy, sims[pick])
    return out
