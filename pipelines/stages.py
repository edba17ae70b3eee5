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
        n, width = found.shape  # width: k, or fewer when the index holds fewer items
        frames.append(pl.DataFrame({
            "item_id": np.repeat(np.asarray(ids, dtype=object)[rows], width).tolist(),
            "lang": [lang] * (n * width),
            "rank": np.tile(np.arange(1, width + 1, dtype=np.int32), n),
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


def latency_stage(out: Path, vectors: np.ndarray, kinds: list[str], n_queries: int,
                  seed: int = 0) -> dict[str, Any]:
    """Retrieval latency and recall of ``kinds`` against numpy and hnswlib on real vectors.

    ``n_queries`` random rows are held out of ``vectors`` as queries; the rest is the corpus.
    Writes ``latency.json`` and ``latency_vs_recall.png``.
    """
    from xrec.bench.retrieval import run_retrieval_bench

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(vectors))
    n_queries = min(n_queries, len(vectors) // 10)
    np.save(out / "queries.npy", vectors[order[:n_queries]], allow_pickle=False)
    np.save(out / "corpus.npy", vectors[order[n_queries:]], allow_pickle=False)
    payload = run_retrieval_bench(vectors=str(out / "corpus.npy"), query_vectors=str(out / "queries.npy"),
                                  kinds=kinds, n_single=min(200, n_queries), json_path=out / "latency.json",
                                  plot_path=out / "latency_vs_recall.png")
    (out / "queries.npy").unlink()
    (out / "corpus.npy").unlink()
    return {"n": payload["n"], "dim": payload["dim"], "queries": payload["queries"],
            "results": [{key: r[key] for key in ("name", "build_s", "p50_ms", "p99_ms", "qps", "recall_at_10",
                                                 "memory_mb")} for r in payload["results"]],
            "summary": payload["summary"]}


def topics_stage(out: Path, sib_dir: Path, train_lang: str, encoder: Any, items: pl.DataFrame,
                 cache: Path) -> dict[str, Any]:
    """Train a topic head on ``train_lang`` labels only, tag ``items`` of every language, and
    measure per-language accuracy on the test split -> ``tags.parquet``, ``topics.json``,
    ``accuracy_by_language.png`` and the saved model in ``model/``."""
    import json

    from xrec.datasets.sib200 import load_labels, load_split
    from xrec.evaluation.topics import evaluate_topics, plot_accuracy
    from xrec.topics.data import sample_per_language
    from xrec.topics.tagging import tag_items, train_topics

    labels = load_labels(sib_dir)
    train = load_split(sib_dir, "train")
    classifier = train_topics(
        encoder, train.filter(pl.col("lang") == train_lang), labels,
        dev=load_split(sib_dir, "dev", [train_lang]),
        unlabelled=sample_per_language(train.filter(pl.col("lang") != train_lang), 100).select("lang", "text"),
        source=f"{sib_dir}/train ({train_lang})", progress=True)
    classifier.save(out / "model")
    tagged = tag_items(classifier, encoder, items.drop("category"), progress=True)
    tagged.write_parquet(out / "tags.parquet")
    result = evaluate_topics(sib_dir, train_lang, encoder, cache_dir=cache)
    (out / "topics.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    plot_accuracy(result, out / "accuracy_by_language.png")
    return {"train_lang": train_lang, "method": result["method"], "mean_accuracy": result["mean_accuracy"],
            "train_lang_accuracy": result["train_lang_accuracy"],
            "accuracy_by_lang": {lang: v["accuracy"] for lang, v in result["languages"].items()}}
