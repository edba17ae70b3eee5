"""Cross-language neighbours: each item's nearest items in *other* languages, batched per language."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from xrec.index.vector_index import VectorIndex


def cross_language_neighbours(index: VectorIndex, ids: Sequence[Any] | None = None, k: int = 5, *,
                              batch: int = 4096) -> pl.DataFrame:
    """``item_id, lang, rank, neighbour_id, neighbour_lang, score``: for each of ``ids`` (default:
    every item of the index with a language), its ``k`` nearest items whose language differs from
    its own (exact language filter). Items without a language are skipped; padding rows (fewer
    than ``k`` items in other languages) are left out."""
    ids = list(index.ids) if ids is None else list(ids)
    langs = np.asarray(index.language_of(ids), dtype=object)
    vectors = index.vectors_of(ids)
    id_array = np.asarray(ids, dtype=object)
    frames = []
    for lang in sorted({x for x in langs if x is not None}):
        rows = np.flatnonzero(langs == lang)
        for start in range(0, len(rows), batch):
            part = rows[start:start + batch]
            found, scores = index.search(vectors[part], k, exclude_languages=[lang])
            kk = found.shape[1]
            frames.append(pl.DataFrame({
                "item_id": np.repeat(id_array[part], kk).tolist(), "lang": [lang] * (len(part) * kk),
                "rank": np.tile(np.arange(1, kk + 1, dtype=np.int32), len(part)),
                "neighbour_id": found.reshape(-1).tolist(), "score": scores.reshape(-1).astype(np.float32)}))
    if not frames:
        return pl.DataFrame(schema={"item_id": pl.Object, "lang": pl.String, "rank": pl.Int32,
                                    "neighbour_id": pl.Object, "neighbour_lang": pl.String, "score": pl.Float32})
    table = pl.concat(frames).filter(pl.col("score").is_finite())
    table = table.with_columns(pl.Series("neighbour_lang", index.language_of(table["neighbour_id"].to_list()),
                                         dtype=pl.String))
    return table.select("item_id", "lang", "rank", "neighbour_id", "neighbour_lang", "score")
