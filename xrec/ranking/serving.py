"""The serving kernel: a fitted ranker's top-``k`` unseen items for user rows, over the whole catalogue.

The fused score is one matrix product plus one sparse product per user
(:class:`~xrec.ranking.views.Folded`), so the kernel is exact, with no candidate step; seen,
removed and filtered-out items are masked, and ``diversity`` re-picks from a longer list by MMR
(:mod:`xrec.ranking.diversify`). :meth:`~xrec.ranking.HybridRanker.recommend_rows` documents
the arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from xrec.errors import DataError
from xrec.index.topk import TopK, top_k
from xrec.ranking.languages import boost_change, lifted
from xrec.ranking.results import padded

if TYPE_CHECKING:
    from xrec.ranking.fitted import FittedRanker


def recommend_rows(ranker: FittedRanker, rows: np.ndarray, k: int, *, components: bool = True,
                   allowed: np.ndarray | None = None, diversity: float = 0.0,
                   language_boost: float | None = None, diversity_by: str = "works") -> TopK:
    """:meth:`HybridRanker.recommend_rows <xrec.ranking.HybridRanker.recommend_rows>`."""
    from xrec.ranking.topical import diversity_groups

    if not 0.0 <= diversity <= 1.0:
        raise DataError(f"diversity={diversity}: must be within [0, 1]")
    groups = diversity_groups(ranker.content, diversity_by)
    rows = np.asarray(rows, dtype=np.int64)
    want = k
    if diversity > 0:
        k = max(5 * k, 50)
    kk = min(k, len(ranker.items))
    scores = ranker.folded.scores(rows)
    delta = boost_change(ranker, language_boost)
    if delta:
        scores += delta * lifted(ranker, rows)
    seen = ranker.history[rows]
    scores[seen.nonzero()] = -np.inf
    scores[:, ranker.retired] = -np.inf
    if allowed is not None:
        scores[~np.broadcast_to(allowed, scores.shape)] = -np.inf
    items, scores = top_k(scores, kk)
    scores = scores.astype(np.float32, copy=False)
    pad = ~np.isfinite(scores)
    items[pad], scores[pad] = -1, -np.inf
    if diversity > 0:
        from xrec.ranking.diversify import mmr

        picked = mmr(scores, items, ranker.item_vectors, want, diversity, groups=groups)
        items = np.where(picked >= 0, np.take_along_axis(items, np.maximum(picked, 0), 1), -1)
        scores = np.where(picked >= 0, np.take_along_axis(scores, np.maximum(picked, 0), 1), -np.inf
                          ).astype(np.float32)
        pad = items < 0
        k = want
    comps: dict[str, np.ndarray] = {}
    if components:
        comps = ranker.components(rows, np.where(pad, 0, items))
        if delta:
            comps["prior_score"] += delta * np.take_along_axis(lifted(ranker, rows), np.where(pad, 0, items), 1)
        comps["popularity"] = ranker.popularity[np.where(pad, 0, items)].copy()
        for v in comps.values():
            v[pad] = np.nan
    return padded(TopK(items, scores, comps), k)
