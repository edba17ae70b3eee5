"""Neighbours across languages, batched: every lookup of several items' nearest items in *other*
languages (``xrec similar --other-languages``, the main job's neighbours) goes through
:func:`search_by_language`, one index search per language and batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from xrec.index.topk import TopK
from xrec.index.vector_index import VectorIndex


def search_by_language(index: VectorIndex, vectors: np.ndarray, query_langs: Sequence[str | None], k: int, *,
                       other_languages: bool = True, languages: Sequence[str] | None = None,
                       exclude_languages: Sequence[str] | None = None,
                       exclude_ids: Sequence[Sequence[Any]] | None = None,
                       only_ids: Sequence[Any] | None = None, batch: int = 4096) -> TopK:
    """:class:`~xrec.index.topk.TopK` ``ids`` and ``scores`` of the ``k`` nearest items of each row
    of ``vectors``, in row order (as :meth:`VectorIndex.search`). With ``other_languages``, row ``i`` skips items in
    ``query_langs[i]`` and items of unknown language; a row of unknown language gets no neighbours
    (all padding: no other language can be told from its own); rows are searched in
    batches of one language. ``languages`` keeps only items in those, ``exclude_languages`` drops
    items in those for every row; ``exclude_ids``: one sequence of ids per row to leave out;
    ``only_ids``: the only items any row may get."""
    query_langs = list(query_langs)
    groups: dict[str | None, list[int]] = {}
    for row, lang in enumerate(query_langs):
        groups.setdefault(lang if other_languages else None, []).append(row)
    width = min(k, len(index))
    out_ids = np.full((len(query_langs), width), index.pad_id, dtype=index.ids.dtype)
    out_scores = np.full((len(query_langs), width), -np.inf, dtype=np.float32)
    for lang, rows in groups.items():
        if other_languages and lang is None:
            continue  # other languages than an unknown one: left as padding
        excluded = sorted(set(exclude_languages or ()) | ({lang} if lang is not None else set())) or None
        for start in range(0, len(rows), batch):
            part = np.asarray(rows[start:start + batch])
            found, scores = index.search(
                vectors[part], k, languages=languages, exclude_languages=excluded,
                exclude_ids=None if exclude_ids is None else [list(exclude_ids[r]) for r in part],
                only_ids=only_ids)
            out_ids[part], out_scores[part] = found, scores
    return TopK(out_ids, out_scores)


def cross_language_neighbours(index: VectorIndex, ids: Sequence[Any] | None = None, k: int = 5, *,
                              batch: int = 4096) -> pl.DataFrame:
    """``item_id, lang, rank, neighbour_id, neighbour_lang, score``: for each of ``ids`` (default:
    every item of the index with a language), its ``k`` nearest items whose language differs from
    its own (exact language filter). Items without a language are skipped; padding rows (fewer
    than ``k`` items in other languages) are left out."""
    ids = list(index.ids) if ids is None else list(ids)
    langs = index.language_of(ids)
    keep = [row for row, lang in enumerate(langs) if lang is not None]
    empty = pl.DataFrame(schema={"item_id": pl.Object, "lang": pl.String, "rank": pl.Int32,
                                 "neighbour_id": pl.Object, "neighbour_lang": pl.String, "score": pl.Float32})
    if not keep:
        return empty
    # one language after another (sorted), as the table lists them
    keep.sort(key=lambda row: str(langs[row]))
    kept_ids = [ids[row] for row in keep]
    kept_langs = [langs[row] for row in keep]
    found, scores = search_by_language(index, index.vectors_of(kept_ids), kept_langs, k, batch=batch)
    kk = found.shape[1]
    table = pl.DataFrame({
        "item_id": np.repeat(np.asarray(kept_ids, dtype=object), kk).tolist(),
        "lang": np.repeat(np.asarray(kept_langs, dtype=object), kk).tolist(),
        "rank": np.tile(np.arange(1, kk + 1, dtype=np.int32), len(keep)),
        "neighbour_id": found.reshape(-1).tolist(), "score": scores.reshape(-1).astype(np.float32)})
    table = table.filter(pl.col("score").is_finite())
    table = table.with_columns(pl.Series("neighbour_lang", index.language_of(table["neighbour_id"].to_list()),
                                         dtype=pl.String))
    return table.select("item_id", "lang", "rank", "neighbour_id", "neighbour_lang", "score")
