"""The main job's stage bodies that are more than one library call: each writes into the folder
it is given and returns a small JSON-able summary for the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl


def neighbours_stage(out: Path, items: pl.DataFrame, ids: list[str], vectors: np.ndarray, k: int,
                     fingerprint: str) -> dict[str, Any]:
    """Each item's ``k`` nearest items in *other* languages -> ``neighbours.parquet``.

    ``items`` has ``lang``, ``index_id`` and ``text``; items sharing an ``index_id`` are
    translations of each other (SIB-200), so the summary reports how often the nearest
    other-language item is a translation of the query.
    """
    from xrec.index import VectorIndex

    langs = items["lang"].to_list()
    index = VectorIndex.build(vectors, ids, languages=langs, kind="exact", fingerprint=fingerprint)
    index.save(out / "index")
    lang_arr = np.asarray(langs, dtype=object)
    frames = []
    for lang in sorted(set(langs)):
        rows = np.flatnonzero(lang_arr == lang)
        found, scores = index.search(vectors[rows], k, exclude_languages=[lang])
        n = len(rows)
        frames.append(pl.DataFrame({
            "item_id": np.repeat(np.asarray(ids, dtype=object)[rows], k).tolist(),
            "lang": [lang] * (n * k),
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), n),
            "neighbour_id": found.reshape(-1).tolist(),
            "score": scores.reshape(-1).astype(np.float32),
        }))
    table = pl.concat(frames)
    lookup = pl.DataFrame({"neighbour_id": ids, "neighbour_lang": langs,
                           "neighbour_text": items["text"].to_list()})
    texts = pl.DataFrame({"item_id": ids, "text": items["text"].to_list()})
    table = table.join(texts, on="item_id", how="left").join(lookup, on="neighbour_id", how="left")
    table = table.select("item_id", "lang", "text", "rank", "neighbour_id", "neighbour_lang",
                         "neighbour_text", "score")
    table.write_parquet(out / "neighbours.parquet")
    top1 = table.filter(pl.col("rank") == 1).with_columns(
        (pl.col("item_id").str.split(":").list.last()
         == pl.col("neighbour_id").str.split(":").list.last()).alias("is_translation"))
    per_lang = top1.group_by("lang").agg(pl.col("is_translation").mean()).sort("lang")
    return {"items": len(ids), "languages": len(set(langs)), "k": k,
            "top1_is_translation": float(top1["is_translation"].mean()),
            "top1_is_translation_by_lang": dict(zip(per_lang["lang"], per_lang["is_translation"]))}
