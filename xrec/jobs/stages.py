"""The main job's stage bodies that are more than one library call: each writes into the folder
it is given and returns a small JSON-able summary for the report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from xrec.artifacts import write_json

if TYPE_CHECKING:
    from xrec.encoders.base import TextKind


def evaluation_stage(out: Path, split: Any, vectors: np.ndarray, models: list[str] | None,
                     content: Any = None) -> dict[str, Any]:
    """Every model side by side on a held-out ``split`` of the catalogue (or the new-language
    protocol) -> ``evaluation.json``, ``evaluation.txt``, ``metrics_by_model.png``. ``content``:
    the catalogue's content graphs when already built (:func:`xrec.evaluation.recs.build_models`)."""
    from xrec.evaluation.recs import evaluate_recs, format_report, plot_report

    report = evaluate_recs(split, vectors, models, progress=True, content=content)
    write_json(out / "evaluation.json", report)
    (out / "evaluation.txt").write_text(format_report(report) + "\n", encoding="utf-8")
    plot_report(report, out / "metrics_by_model.png")
    keep = ("ndcg@10", "recall@20", "coverage@10")
    return {"protocol": {k: report["protocol"][k] for k in ("split", "users_evaluated", "positives")},
            "models": {name: {**{k: m[k] for k in keep}, "auc": m.get("auc"), "cold": m["cold_items"],
                              "slices": {s: v["ndcg@10"] for s, v in m["slices"].items() if v["n"] >= 20}}
                       for name, m in report["models"].items()},
            "ratios": report.get("hybrid_vs_best_other", {})}


def latency_stage(out: Path, vectors: np.ndarray, kinds: list[str], n_queries: int,
                  seed: int = 0) -> dict[str, Any]:
    """Retrieval latency and recall of ``kinds`` against numpy and hnswlib on real vectors.

    ``n_queries`` random rows are held out of ``vectors`` as queries; the rest is the corpus.
    Writes ``latency.json`` and ``latency_vs_recall.png``.
    """
    from xrec.bench.retrieval import run_retrieval_bench, write_outputs

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(vectors))
    n_queries = min(n_queries, len(vectors) // 10)
    payload = run_retrieval_bench(vectors[order[n_queries:]], vectors[order[:n_queries]], kinds=kinds,
                                  n_single=min(200, n_queries),
                                  source="the job's catalogue and topic-sentence vectors")
    write_outputs(payload, out / "latency.json", out / "latency_vs_recall.png")
    return {"n": payload["n"], "dim": payload["dim"], "queries": payload["queries"],
            "results": [{key: r[key] for key in ("name", "build_s", "p50_ms", "p99_ms", "qps", "recall_at_10",
                                                 "memory_mb")} for r in payload["results"]],
            "summary": payload["summary"]}


def topics_stage(encoder: Any, out: Path, sib_dir: Path, train_lang: str, items: pl.DataFrame,
                 cache: Path, vectors: np.ndarray | None = None, text_kind: TextKind = "query") -> dict[str, Any]:
    """Train a topic head on ``train_lang`` labels only (texts embedded as ``text_kind``), tag
    ``items`` of every language, and measure per-language accuracy on the test split ->
    ``tags.parquet``, ``topics.json``, ``accuracy_by_language.png`` and the saved model in
    ``model/``. ``vectors``: ``items``' vectors (``text_kind``) when already embedded; the test
    split's are looked up in ``cache``."""

    from xrec.evaluation.topics import evaluate_classifier, plot_accuracy
    from xrec.topics.data import topic_tables
    from xrec.topics.tagging import tag_items, train_topics

    tables = topic_tables(sib_dir, train_lang)
    classifier = train_topics(encoder, tables.train, tables.labels, dev=tables.dev,
                              unlabelled=tables.unlabelled.select("lang", "text"),
                              source=f"{sib_dir}/train ({train_lang})", progress=True, text_kind=text_kind)
    classifier.save(out / "model")
    tagged = tag_items(classifier, encoder, items.drop("category"), progress=True, vectors=vectors)
    tagged.write_parquet(out / "tags.parquet")
    result = evaluate_classifier(classifier, encoder, sib_dir, train_lang, cache_dir=cache)
    write_json(out / "topics.json", result)
    plot_accuracy(result, out / "accuracy_by_language.png")
    return {"train_lang": train_lang, "method": result["method"], "mean_accuracy": result["mean_accuracy"],
            "train_lang_accuracy": result["train_lang_accuracy"],
            "accuracy_by_lang": {lang: v["accuracy"] for lang, v in result["languages"].items()}}


def book_topics_stage(out: Path, model_dir: Path, encoder: Any, items: pl.DataFrame, vectors: np.ndarray,
                      history: Any, recommendations: Path) -> dict[str, Any]:
    """Tag the catalogue's ``vectors`` (passages, catalogue order) with the topics stage's classifier
    (trained on passage vectors) -> ``book_topics.parquet`` (``item_id, topic, topic_score``), and
    each topic's share of the catalogue, of the interactions and of the recommendation slots."""
    from xrec.errors import ArtifactError
    from xrec.evaluation.metrics import topic_exposure
    from xrec.topics.classifier import TopicClassifier

    classifier = TopicClassifier.load(model_dir, encoder_fingerprint=encoder.fingerprint)
    if classifier.text_kind != "passage":
        raise ArtifactError(f"{model_dir}: a topic model of {classifier.text_kind} vectors cannot tag the "
                            "catalogue's passage vectors; run the topics stage again")
    books = items.filter(pl.col("has_text"))
    # languages identified by the classifier (ISBN groups are not SIB codes)
    found = classifier.predict(vectors[items["has_text"].to_numpy()])
    tags = pl.DataFrame({"item_id": books["item_id"], "topic": found.topics,
                         "topic_score": pl.Series(found.scores, dtype=pl.Float32)})
    tags.write_parquet(out / "book_topics.parquet")
    names = list(classifier.labels)
    codes = np.full(items.height, -1, dtype=np.int64)
    codes[np.flatnonzero(items["has_text"].to_numpy())] = [names.index(t) for t in found.topics]
    index = dict(zip(items["item_id"].to_list(), range(items.height)))
    shown = np.array([index[i] for i in pl.read_parquet(recommendations, columns=["item_id"])["item_id"].to_list()],
                     dtype=np.int64)
    read = history.tocsr().indices
    table = topic_exposure(shown, read, codes, names)
    catalogue = np.bincount(codes[codes >= 0], minlength=len(names)) / max(int((codes >= 0).sum()), 1)
    return {"items": tags.height, "labels": names,
            "exposure": [{**row, "catalogue": float(catalogue[names.index(row["topic"])])}
                         for row in table.to_dicts()]}
