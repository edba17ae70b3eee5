"""Explanations: for each recommended item, the user's history items nearest to it in the shared space."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from xrec.errors import DataError
from xrec.index.topk import top_k

if TYPE_CHECKING:
    from xrec.ranking.fitted import FittedRanker


def explain(ranker: FittedRanker, frame: pl.DataFrame, n: int = 3) -> pl.DataFrame:
    """``frame`` (``user_id, item_id, ...``, e.g. from ``recommend`` or ``rerank``) with the item's
    language (``lang``) and, for each row, the ``n`` items of the user's history
    nearest to the item in the shared embedding space (cosine), most similar first:
    ``because_item_id``, ``because_lang``, ``because_similarity`` (lists; empty for users
    without history and items without a vector). The component scores already in the frame say
    how much collaborative, content, lexical and prior evidence made the score."""
    if n < 1:
        raise DataError(f"explain n={n}: must be at least 1")
    rows = ranker.users.index(frame["user_id"])
    items = ranker.items.index(frame["item_id"])
    codes, names = ranker.content.language_codes, ranker.content.languages
    lang_of = np.array([None, *names], dtype=object)[codes + 1] if len(names) else \
        np.full(len(codes), None, dtype=object)
    ids = ranker.items.ids.to_list()
    because_ids: list[list] = [[] for _ in range(frame.height)]
    because_langs: list[list] = [[] for _ in range(frame.height)]
    because_sims: list[list[float]] = [[] for _ in range(frame.height)]
    ok = (rows >= 0) & (items >= 0)
    order = np.argsort(np.where(ok, rows, -1), kind="stable")
    order = order[ok[order]]
    bounds = np.flatnonzero(np.diff(rows[order])) + 1
    for group in np.split(order, bounds) if len(order) else []:
        row = rows[group[0]]
        hist = ranker.history.indices[ranker.history.indptr[row]:ranker.history.indptr[row + 1]]
        if not len(hist):
            continue
        sims = ranker.item_vectors[items[group]] @ ranker.item_vectors[hist].T  # [m, len(hist)]
        m = min(n, len(hist))
        top = top_k(sims, m)[0]
        for j, line in enumerate(group):
            if not ranker.item_vectors[items[line]].any():
                continue
            picked = hist[top[j]]
            because_ids[line] = [ids[h] for h in picked]
            because_langs[line] = lang_of[picked].tolist()
            because_sims[line] = sims[j, top[j]].astype(float).tolist()
    lang = [lang_of[i] if i >= 0 else None for i in items]
    return frame.with_columns(
        pl.Series("lang", lang, dtype=pl.String),
        pl.Series("because_item_id", because_ids, dtype=pl.List(ranker.items.ids.dtype)),
        pl.Series("because_lang", because_langs, dtype=pl.List(pl.String)),
        pl.Series("because_similarity", because_sims, dtype=pl.List(pl.Float32)))
