"""The main job's report: one Markdown page with the figures, tables and plots of a run."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import polars as pl

from xrec.artifacts import atomic_file


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows], ""]


def _image(out: Path, name: str, caption: str) -> list[str]:
    return [f"![{caption}]({name})", ""] if (out / name).is_file() else []


def write_report(out: Path, *, config: dict[str, Any], engine: str, encoder: Any,
                 summaries: dict[str, dict[str, Any]], timings: list[tuple[str, float, bool | None]],
                 total_s: float) -> Path:
    """Write ``<out>/report.md`` and return its path."""
    lines = ["# xrec main job report", "",
             f"- engine: {engine}; encoder: {encoder.name} (`{encoder.fingerprint[:23]}…`, dim {encoder.dim})",
             f"- machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
             f"- config: `{config.get('_source')}`; total time {total_s:.1f} s", ""]
    rows = [[n, round(s, 1), "-" if r is None else "yes" if r else "no"] for n, s, r in timings]
    rest = total_s - sum(s for _, s, _ in timings)  # encoder load, publishing: the whole run is accounted for
    lines += ["## Stages", ""] + _table(["stage", "seconds", "from cache"], [
        *rows, ["other (loading the encoder, copying results)", round(rest, 1), "-"],
        ["**total**", round(total_s, 1), ""]])

    rec = summaries.get("recommendations", {})
    lines += ["## Recommendations", "",
              f"Top-{rec.get('k')} for {rec.get('users')} users in `recommendations.parquet` "
              f"(`user_id, rank, item_id, score` and each component's score); fusion: {rec.get('fusion')}.", ""]
    recs_file = out / "recommendations.parquet"
    if recs_file.is_file():
        sample = pl.read_parquet(recs_file).filter(pl.col("rank") <= 5).head(10)
        lines += _table(list(sample.columns[:5]), [list(r[:5]) for r in sample.iter_rows()])

    evaluation = summaries.get("evaluation") or {}
    if evaluation:
        lines += ["## Recommendation quality", "",
                  "Protocol: last 20% of each user's ratings by time held out; every rated test item is a "
                  "positive; full ranking over all unrated catalogue items (details in "
                  "`stages/evaluation/evaluation.txt`).", ""]
        lines += _table(["model", "NDCG@10", "Recall@20", "cold-item AUC"],
                        [[n, m["ndcg@10"], m["recall@20"], m["cold_auc"]] for n, m in evaluation.items()])
        lines += _image(out, "metrics_by_model.png", "metrics by model")

    topics = summaries.get("topics", {})
    if topics:
        lines += ["## Topic tags", "",
                  f"Head trained on `{topics.get('train_lang')}` labels only ({topics.get('method')}); every "
                  f"test item of every language tagged in `topic_tags.parquet`.", ""]
        per_lang = topics.get("accuracy_by_lang", {})
        lines += _table(["language", "accuracy"], [[lang, acc] for lang, acc in sorted(per_lang.items())])
        lines += [f"Mean over the other languages: {topics.get('mean_accuracy', float('nan')):.3f}", ""]
        lines += _image(out, "accuracy_by_language.png", "topic accuracy by language")

    nb = summaries.get("neighbours", {})
    if nb:
        lines += ["## Cross-language neighbours", "",
                  f"The {nb.get('k')} nearest items in other languages for each of {nb.get('items')} items in "
                  f"{nb.get('languages')} languages (`neighbours.parquet`). Share whose nearest other-language "
                  f"item is a translation of it: {nb.get('top1_is_translation', float('nan')):.3f}.", ""]
        nb_file = out / "neighbours.parquet"
        if nb_file.is_file():
            example = pl.read_parquet(nb_file).filter(pl.col("rank") <= 3).head(3)
            lines += _table(["query", "neighbour", "score"],
                            [[f"{r['lang']}: {r['text'][:60]}", f"{r['neighbour_lang']}: {r['neighbour_text'][:60]}",
                              round(float(r["score"]), 3)] for r in example.iter_rows(named=True)])

    lat = summaries.get("latency", {})
    if lat:
        lines += ["## Retrieval latency", "",
                  f"{lat.get('n')} real item vectors (dim {lat.get('dim')}), {lat.get('queries')} queries; "
                  "single-query p50/p99, batched throughput and recall@10 against exact search.", ""]
        lines += _table(["index", "build s", "p50 ms", "p99 ms", "queries/s", "recall@10", "memory MB"],
                        [[r["name"], r["build_s"], r["p50_ms"], r["p99_ms"], round(r["qps"]),
                          r["recall_at_10"], r["memory_mb"]] for r in lat.get("results", [])])
        summary = lat.get("summary", {})
        if "p50_vs_hnswlib_interleaved" in summary:
            pair = summary["interleaved"]
            lines += [f"Timed query by query in alternating order (so load hits both alike): "
                      f"{pair['ours']} p50 {pair['ours_p50_ms']:.3f} ms against {pair['hnswlib']} "
                      f"{pair['hnswlib_p50_ms']:.3f} ms, ratio {summary['p50_vs_hnswlib_interleaved']:.2f}x; "
                      f"exact batched throughput {summary.get('exact_qps_vs_numpy_interleaved', float('nan')):.2f}x "
                      "numpy's.", ""]
        lines += _image(out, "latency_vs_recall.png", "latency against recall")

    path = out / "report.md"
    with atomic_file(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
