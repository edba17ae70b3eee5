"""Cross-language lookup on a sentence-aligned corpus (SIB-200 / Flores-200), through VectorIndex.

Every sentence of every language goes into one pool (one :class:`~xrec.index.VectorIndex`,
items tagged with their language); sentences with the same ``index_id`` are translations.

* Per language ``xx``: top-1 accuracy xx->pivot (an ``xx`` sentence searches the pool with
  ``languages=[pivot]``; correct when it finds its own translation) and pivot->xx.
* Language bias: each sentence searches the whole pool (itself excluded) for its top-k; the
  share of those neighbours in the query's own language, next to the share an unbiased space
  would give: a space that ignores language draws neighbours from the other ``N - 1``
  sentences regardless of language, so the expected share is ``(n_lang - 1) / (N - 1)``,
  averaged over queries. Also reported: the share of the top-k that are translations of the
  query (same ``index_id``).
"""

from __future__ import annotations

import os

import numpy as np
import polars as pl

from xrec.encoders.base import Encoder, TextKind
from xrec.errors import DataError
from xrec.evaluation.bitext import embed_unique
from xrec.index import VectorIndex


def evaluate_parallel(encoder: Encoder, frame: pl.DataFrame, *, pivot: str = "eng_Latn",
                      kind: TextKind = "query", k_bias: int = 10,
                      cache: str | os.PathLike[str] | None = None, batch_size: int | None = None,
                      progress: bool | None = None) -> dict:
    """The JSON of ``xrec evaluate parallel`` for ``frame`` (``lang, index_id, text``)."""
    vectors, row_of = embed_unique(encoder, frame["text"].to_list(), kind=kind, cache=cache,
                                   batch_size=batch_size, progress=progress)
    result = parallel_scores(vectors[[row_of[t] for t in frame["text"].to_list()]],
                             frame["lang"].to_list(), frame["index_id"].to_numpy(),
                             pivot=pivot, k_bias=k_bias)
    return {"model": encoder.name, "encoder_fingerprint": encoder.fingerprint,
            "text_kind": kind, **result}


def parallel_scores(vectors: np.ndarray, langs: list[str], index_ids: np.ndarray, *,
                    pivot: str, k_bias: int = 10) -> dict:
    """Accuracy against ``pivot`` per language, and the language-bias figure, from vectors."""
    from xrec.catalogue.languages import normalise

    pivot = normalise(pivot, "pivot")
    langs_arr = np.asarray(langs, dtype=object)
    index_ids = np.asarray(index_ids, dtype=np.int64)
    if pivot not in set(langs):
        raise DataError(f"pivot language {pivot!r} has no sentences; languages here: "
                        f"{sorted(set(langs))[:20]}")
    rows = np.arange(len(vectors))
    pool = VectorIndex.build(vectors, rows, langs, kind="exact")
    pivot_rows = rows[langs_arr == pivot]
    pivot_of = {int(i): int(r) for i, r in zip(index_ids[pivot_rows], pivot_rows)}
    per_lang: dict[str, dict] = {}
    for lang in sorted(set(langs) - {pivot}):
        lang_rows = rows[langs_arr == lang]
        aligned = np.array([int(i) in pivot_of for i in index_ids[lang_rows]])
        lang_rows = lang_rows[aligned]
        if not len(lang_rows):
            continue
        gold_pivot = np.array([pivot_of[int(i)] for i in index_ids[lang_rows]])
        found, _ = pool.search(vectors[lang_rows], 1, languages=[pivot])
        back, _ = pool.search(vectors[gold_pivot], 1, languages=[lang])
        per_lang[lang] = {"xx2pivot": float(np.mean(found[:, 0] == gold_pivot)),
                          "pivot2xx": float(np.mean(back[:, 0] == lang_rows)),
                          "n": int(len(lang_rows))}
    return {"pivot": pivot, "languages": per_lang,
            "mean_xx2pivot": _mean(v["xx2pivot"] for v in per_lang.values()),
            "mean_pivot2xx": _mean(v["pivot2xx"] for v in per_lang.values()),
            "language_bias": language_bias(pool, vectors, langs_arr, index_ids, k_bias)}


def language_bias(pool: VectorIndex, vectors: np.ndarray, langs: np.ndarray,
                  index_ids: np.ndarray, k: int = 10, batch: int = 2048) -> dict:
    """Own-language share of each sentence's top-``k`` in the whole pool, vs an unbiased space."""
    n = len(vectors)
    if n < 2:
        raise DataError("language bias needs at least two sentences")
    k = min(k, n - 1)
    own = np.empty(n)
    same = np.empty(n)
    for start in range(0, n, batch):
        rows = np.arange(start, min(start + batch, n))
        found, _ = pool.search(vectors[rows], k, exclude_ids=[[int(r)] for r in rows])
        own[rows] = (langs[found] == langs[rows, None]).mean(axis=1)
        same[rows] = (index_ids[found] == index_ids[rows, None]).mean(axis=1)
    names, inverse, counts = np.unique(langs.astype(str), return_inverse=True, return_counts=True)
    unbiased = (counts[inverse] - 1) / (n - 1)
    return {"k": k, "own_language_share": float(own.mean()), "unbiased_share": float(unbiased.mean()),
            "ratio": float(own.mean() / unbiased.mean()) if unbiased.mean() > 0 else None,
            "translation_share": float(same.mean()),
            "per_language": {str(name): float(own[inverse == i].mean()) for i, name in enumerate(names)}}


def _mean(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else 0.0
