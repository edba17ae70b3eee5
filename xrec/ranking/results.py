"""The ranker's results: a :class:`~xrec.index.topk.TopK` padded to ``k``, the popular-items
result (users without history), and the long ``user_id, rank, item_id, score`` table that
:meth:`~xrec.ranking.HybridRanker.recommend` and ``rerank`` return."""

from __future__ import annotations

import numpy as np
import polars as pl

from xrec.catalogue.interactions import IdMap
from xrec.index.topk import TopK
from xrec.ranking.config import COMPONENTS


def padded(recs: TopK, k: int) -> TopK:
    """``recs`` with ``k`` columns: missing ones padded (item -1, score -inf, components NaN)."""
    missing = k - recs.ids.shape[1]
    if missing <= 0:
        return recs
    pad = ((0, 0), (0, missing))
    return TopK(
        np.pad(recs.ids, pad, constant_values=-1),
        np.pad(recs.scores, pad, constant_values=-np.inf),
        {n: np.pad(v, pad, constant_values=np.nan) for n, v in recs.components.items()})


def popular(popularity: np.ndarray, retired: np.ndarray, n_users: int, k: int,
            allowed: np.ndarray | None = None) -> TopK:
    """The ``k`` most popular items not ``retired`` (among ``allowed``), the same for ``n_users``
    rows: scores and the ``popularity`` component are ``popularity``, other components NaN."""
    order = np.argsort(-popularity, kind="stable")
    order = order[~retired[order]]
    order = (order if allowed is None else order[allowed[order]])[:k]
    items = np.broadcast_to(order, (n_users, len(order))).copy()
    scores = np.broadcast_to(popularity[order], items.shape).astype(np.float32).copy()
    comps = {name: np.full(items.shape, np.nan, dtype=np.float32) for name in COMPONENTS}
    comps["popularity"] = scores.copy()
    return padded(TopK(items, scores, comps), k)


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
