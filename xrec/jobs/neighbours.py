"""The main job's cross-language neighbours stage, and the examples its report shows.

Each item's ``k`` nearest items in *other* languages (items with a text and a language code). How
often the nearest one shares a metadata value (``author``, ``brand``...) says how often xrec finds
another edition or translation of the same work; the examples are chosen by that evidence (a
shared metadata value, and lexical with embedding agreement), not by position in the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

#: Examples shown in the report, and at most this many per pair of languages.
EXAMPLES, PER_PAIR = 8, 2


def neighbours_stage(out: Path, items: pl.DataFrame, vectors: np.ndarray, metadata: dict[str, list], k: int,
                     fingerprint: str) -> dict[str, Any]:
    """``neighbours.parquet`` (``item_id, lang, text, rank, neighbour_id, neighbour_lang,
    neighbour_text, score``), the saved index in ``index/``, and a summary: per metadata field the
    share of items whose nearest other-language item shares its value, overall and per language,
    and the report's examples."""
    from xrec.index import VectorIndex
    from xrec.index.neighbours import cross_language_neighbours
    from xrec.ranking.graphs import normalise_key

    keep = (items["has_text"] & items["lang"].is_not_null()).to_numpy()
    ids = items["item_id"].filter(pl.Series(keep)).to_list()
    langs = items["lang"].filter(pl.Series(keep)).to_list()
    index = VectorIndex.build(vectors[keep], ids, languages=langs, kind="exact", fingerprint=fingerprint)
    index.save(out / "index")
    table = cross_language_neighbours(index, k=k)
    texts = items.select("item_id", "text")
    table = (table.with_columns(pl.col("item_id").cast(items["item_id"].dtype),
                                pl.col("neighbour_id").cast(items["item_id"].dtype))
             .join(texts, on="item_id", how="left")
             .join(texts.rename({"item_id": "neighbour_id", "text": "neighbour_text"}), on="neighbour_id",
                   how="left")
             .select("item_id", "lang", "text", "rank", "neighbour_id", "neighbour_lang", "neighbour_text", "score"))
    table.write_parquet(out / "neighbours.parquet")

    row_of = {item: row for row, item in enumerate(items["item_id"].to_list())}
    first = table.filter(pl.col("rank") == 1)
    rows = np.array([row_of[i] for i in first["item_id"].to_list()], dtype=np.int64)
    near = np.array([row_of[i] for i in first["neighbour_id"].to_list()], dtype=np.int64)
    same: dict[str, np.ndarray] = {}
    keys = {name: np.array([normalise_key(v) for v in values], dtype=object) for name, values in metadata.items()}
    for name, key in keys.items():
        same[name] = (key[rows] == key[near]) & (key[rows] != "")
    summary: dict[str, Any] = {"items": len(ids), "languages": len(set(langs)), "k": k,
                               "without_language": int((items["has_text"] & items["lang"].is_null()).sum()),
                               "metadata": list(metadata), "top1_same": {}, "top1_same_by_lang": {}}
    lang_of_first = first["lang"].to_numpy()
    for name, hits in same.items():
        summary["top1_same"][name] = float(hits.mean()) if len(hits) else None
        summary["top1_same_by_lang"][name] = {
            lang: {"share": float(hits[lang_of_first == lang].mean()), "items": int((lang_of_first == lang).sum())}
            for lang in sorted(set(lang_of_first.tolist()))}
    summary["examples"] = examples(items, first, rows, near, same, keys)
    return summary


def examples(items: pl.DataFrame, first: pl.DataFrame, rows: np.ndarray, near: np.ndarray,
             same: dict[str, np.ndarray], keys: dict[str, np.ndarray], n: int = EXAMPLES) -> list[dict[str, Any]]:
    """The nearest-neighbour pairs with the most evidence of being one work in two languages:
    a shared metadata value first, then lexical (character n-gram TF-IDF) plus embedding
    similarity; pairs whose two texts are the same (one edition under two language codes) last;
    each unordered pair and each shared value once, at most :data:`PER_PAIR` per pair of
    languages. ``keys``: each metadata field's normalised values, catalogue order."""
    from xrec.ranking.lexical import char_tfidf

    if not len(rows):
        return []
    tfidf = char_tfidf(items["text"].to_list())
    lexical = np.asarray(tfidf[rows].multiply(tfidf[near]).sum(axis=1)).ravel()
    shared = np.zeros(len(rows), dtype=bool)
    for hits in same.values():
        shared |= hits
    score = first["score"].to_numpy().astype(np.float64)
    texts, langs = items["text"].to_list(), items["lang"].to_list()
    # the same text under two language codes shows nothing the embedding adds: such pairs come last
    same_text = np.array([_plain(texts[a]) == _plain(texts[b]) for a, b in zip(rows, near)], dtype=bool)
    order = np.lexsort((-(score + lexical), same_text, ~shared))  # shared metadata first, then the most agreement
    chosen: list[dict[str, Any]] = []
    seen_pairs: set[tuple[int, int]] = set()
    seen_keys: set[str] = set()  # one example per shared metadata value (not five books of one author)
    per_pair: dict[tuple[str, str], int] = {}
    for j in order:
        a, b = int(rows[j]), int(near[j])
        pair = tuple(sorted((langs[a], langs[b])))
        key = next((keys[name][a] for name, hits in same.items() if hits[j]), None)
        if ((min(a, b), max(a, b)) in seen_pairs or per_pair.get(pair, 0) >= PER_PAIR
                or (key is not None and key in seen_keys)):
            continue
        seen_pairs.add((min(a, b), max(a, b)))
        if key is not None:
            seen_keys.add(key)
        per_pair[pair] = per_pair.get(pair, 0) + 1
        chosen.append({"lang": langs[a], "text": texts[a], "neighbour_lang": langs[b], "neighbour_text": texts[b],
                       "score": float(score[j]), "lexical": float(lexical[j]),
                       "same": [name for name, hits in same.items() if hits[j]]})
        if len(chosen) == n:
            break
    return chosen


def _plain(text: str) -> str:
    """``text`` folded for comparison: case, accents and punctuation ignored."""
    from xrec.ranking.graphs import normalise_key

    return normalise_key(text)
