"""Cross-language lookup on real bitext (Tatoeba, LASER/XTREME protocol), through VectorIndex.

For each language, every sentence searches the English sides of that language's pairs (xx->en)
and every English sentence searches the language's sentences (en->xx); top-1 accuracy is the
share whose nearest neighbour is its own translation (same ``pair_id``; a duplicate sentence
with another ``pair_id`` counts as an error, as in LASER and MTEB). MTEB's "Tatoeba accuracy"
is the xx->en direction.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence

import numpy as np
import polars as pl

from xrec.encoders.base import Encoder, TextKind
from xrec.index import VectorIndex


def embed_unique(encoder: Encoder, texts: Sequence[str], *, kind: TextKind = "query",
                 cache: str | os.PathLike[str] | None = None, batch_size: int | None = None,
                 progress: bool | None = None) -> tuple[np.ndarray, dict[str, int]]:
    """Embed each distinct text once; returns ``(vectors, row_of_text)``.

    ``cache`` is an embedding store file (:mod:`xrec.store`) keyed by a hash of each text, so a
    second run (or another tool) reuses the vectors.
    """
    from xrec.store import embed_items

    unique = list(dict.fromkeys(texts))
    row_of = {text: row for row, text in enumerate(unique)}
    ids = [hashlib.sha256(t.encode("utf-8")).hexdigest()[:20] for t in unique]
    vectors = embed_items(encoder, ids, unique, store=cache, kind=kind, batch_size=batch_size,
                          progress=progress)
    return vectors, row_of


def top1_accuracy(queries: np.ndarray, targets: np.ndarray, kind: str = "exact") -> float:
    """Share of rows ``i`` of ``queries`` whose nearest row of ``targets`` is row ``i``."""
    index = VectorIndex.build(targets, np.arange(len(targets)), kind=kind)
    ids, _ = index.search(queries, 1)
    return float(np.mean(ids[:, 0] == np.arange(len(queries))))


def evaluate_bitext(encoder: Encoder, pairs: pl.DataFrame, *, kind: TextKind = "query",
                    cache: str | os.PathLike[str] | None = None, batch_size: int | None = None,
                    progress: bool | None = None, languages: Sequence[str] | None = None,
                    on_language: Callable[[dict], object] | None = None) -> dict:
    """Per-language top-1 accuracy both ways; the JSON of ``xrec evaluate bitext``.

    ``pairs``: columns ``lang, pair_id, text, eng`` (see :mod:`xrec.datasets.tatoeba`).
    Languages are evaluated one at a time, in the order of ``languages`` (default: as they
    appear); ``on_language`` receives the partial result after each (for long runs). Sentences
    shared between languages (English sides) are embedded once. With ``cache`` (an embedding
    store file) all vectors are read from and written back to it.
    Returns ``{"model", "languages": {lang: {"xx2en", "en2xx", "n"[, "flores_code"]}}, "mean_xx2en",
    "mean_en2xx"}`` plus ``encoder_fingerprint``, ``text_kind`` and ``complete``.
    """
    order = list(dict.fromkeys(languages or pairs["lang"].to_list()))
    known: dict[str, np.ndarray] = {}
    if cache is not None:
        vectors, row_of = embed_unique(encoder, pairs["text"].to_list() + pairs["eng"].to_list(),
                                       kind=kind, cache=cache, batch_size=batch_size,
                                       progress=progress)
        known = {text: vectors[row] for text, row in row_of.items()}
    result = {"model": encoder.name, "encoder_fingerprint": encoder.fingerprint, "text_kind": kind,
              "languages": {}, "mean_xx2en": 0.0, "mean_en2xx": 0.0, "complete": False}
    for lang in order:
        group = pairs.filter(pl.col("lang") == lang)
        texts, eng = group["text"].to_list(), group["eng"].to_list()
        todo = [t for t in dict.fromkeys(texts + eng) if t not in known]
        if todo:
            known.update(zip(todo, encoder.encode(todo, kind=kind, batch_size=batch_size,
                                                  progress=progress)))
        xx = np.stack([known[t] for t in texts])
        en = np.stack([known[t] for t in eng])
        result["languages"][lang] = {"xx2en": top1_accuracy(xx, en), "en2xx": top1_accuracy(en, xx),
                                     "n": len(group)}
        if "flores_code" in group.columns and group["flores_code"][0] is not None:
            result["languages"][lang]["flores_code"] = group["flores_code"][0]
        scores = result["languages"].values()
        result["mean_xx2en"] = float(np.mean([v["xx2en"] for v in scores]))
        result["mean_en2xx"] = float(np.mean([v["en2xx"] for v in scores]))
        if on_language is not None:
            on_language(result)
    result["complete"] = True
    return result
