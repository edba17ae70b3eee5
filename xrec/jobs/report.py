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


def write_report(out: Path, *, config: dict[str, Any], engine: str, encoder: Any, items: pl.DataFrame,
                 summaries: dict[str, dict[str, Any]], timings: list[tuple[str, float, bool | None]],
                 total_s: float) -> Path:
    """Write ``<out>/report.md`` and return its path."""
    lines = ["# xrec main job report", "",
             f"- engine: {engine}; encoder: {encoder.name} (`{encoder.fingerprint[:23]}…`, dim {encoder.dim})",
             f"- machine: {platform.machine()} ({_cpu()}), {os.cpu_count()} cores, Python {platform.python_version()}",
             f"- config: `{config.get('_source')}`; total time {total_s:.1f} s", ""]
    rows = [[n, round(s, 1), "-" if r is None else "yes" if r else "no"] for n, s, r in timings]
    rest = total_s - sum(s for _, s, _ in timings)  # encoder load, publishing: the whole run is accounted for
    lines += ["## Stages", ""] + _table(["stage", "seconds", "from cache"], [
        *rows, ["other (loading the encoder, copying results)", round(rest, 1), "-"],
        ["**total**", round(total_s, 1), ""]])
    lines += _recommendations(out, summaries.get("recommendations", {}), items)
    lines += _evaluation(out, summaries.get("evaluation") or {}, summaries.get("new_language") or {})
    lines += _topics(out, summaries.get("topics", {}))
    lines += _book_topics(summaries.get("book_topics", {}))
    lines += _neighbours(out, summaries.get("neighbours", {}))
    lines += _latency(out, summaries.get("latency", {}))
    path = out / "report.md"
    with atomic_file(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _recommendations(out: Path, rec: dict[str, Any], items: pl.DataFrame) -> list[str]:
    from xrec.ranking.fusion import Fusion

    if not rec:
        return []
    fusion = rec.get("fusion", {})
    lines = ["## Recommendations", "",
             f"Top-{rec.get('k')} for {rec.get('users')} users in `recommendations.parquet` "
             f"(`user_id, rank, item_id, score` and each component's share of the score); fusion: "
             f"{Fusion.from_dict(fusion).summary() if fusion else 'unknown'}.", ""]
    recs_file, examples_file = out / "recommendations.parquet", out / "recommendation_examples.parquet"
    if not recs_file.is_file():
        return lines
    recs = pl.read_parquet(recs_file).join(items.select("item_id", "text", "lang"), on="item_id", how="left")
    if examples_file.is_file():
        lines += ["A few readers whose lists span the most languages; *because* is the book of the reader's "
                  "history nearest to the recommended one in the shared space (`recommendation_examples.parquet`).",
                  ""]
        title = dict(zip(items["item_id"].to_list(), items["text"].to_list()))
        examples = pl.read_parquet(examples_file)
        for user in examples["user_id"].unique(maintain_order=True).to_list():
            rows = examples.filter(pl.col("user_id") == user).sort("rank")
            lines += [f"User {user}:", ""] + _table(
                ["rank", "lang", "title", "score", "cf", "content", "lexical", "because"],
                [[r["rank"], r["lang"], str(title.get(r["item_id"]))[:60], r["score"], r.get("cf_score"),
                  r.get("content_score"), r.get("lexical_score"),
                  f"{r['because_lang'][0]}: {str(title.get(r['because_item_id'][0]))[:40]}"
                  if r["because_item_id"] else ""] for r in rows.iter_rows(named=True)])
    shares = recs.group_by("lang").len().with_columns(pl.col("len") / recs.height).sort("len", descending=True)
    catalogue = items.group_by("lang").len().with_columns(pl.col("len") / items.height)
    lines += ["Language exposure (share of recommendation slots vs share of the catalogue):", ""] + _table(
        ["language", "slots", "catalogue"],
        [[r["lang"], r["len"], float(catalogue.filter(pl.col("lang") == r["lang"])["len"].sum())]
         for r in shares.head(8).iter_rows(named=True)])
    return lines


def _evaluation(out: Path, evaluation: dict[str, Any], new_language: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if evaluation:
        models = evaluation["models"]
        slices = sorted({s for m in models.values() for s in m["slices"]})
        lines += ["## Recommendation quality", "",
                  f"Protocol: {evaluation['protocol']['split']}; every held-out interaction is a positive; full "
                  "ranking over all unseen catalogue items; NDCG@10 overall and per slice (details in "
                  "`stages/evaluation/evaluation.txt`).", ""]
        lines += _table(["model", "NDCG@10", "Recall@20", "cold AUC", "cold in top-10"] + slices,
                        [[n, m["ndcg@10"], m["recall@20"], m["cold"]["auc"], m["cold"]["share_of_top10"]]
                         + [m["slices"].get(s, float("nan")) for s in slices] for n, m in models.items()])
        ratios = evaluation.get("ratios", {})
        if ratios:
            lines += ["Hybrid against the best other model: " + "; ".join(
                f"{name} {r['ratio']:.2f}x ({r['best_other']})" for name, r in ratios.items()
                if name == "all" or name in slices), ""]
        lines += _image(out, "metrics_by_model.png", "metrics by model")
    if new_language:
        models = new_language["models"]
        lines += ["## New-language protocol", "",
                  f"{new_language['protocol']['split']}: nobody has interacted with that language's books; "
                  "each user's held-out books in it are ranked among that language's books only.", ""]
        lines += _table(["model", "NDCG@10", "Recall@20", "AUC"],
                        [[n, m["ndcg@10"], m["recall@20"], m["auc"]] for n, m in models.items()])
        lines += _image(out, "new_language_metrics_by_model.png", "new-language protocol")
    return lines


def _topics(out: Path, topics: dict[str, Any]) -> list[str]:
    if not topics:
        return []
    lines = ["## Topic tags", "",
             f"Head trained on `{topics.get('train_lang')}` labels only ({topics.get('method')}); every "
             f"test sentence of every language tagged in `topic_tags.parquet`.", ""]
    per_lang = topics.get("accuracy_by_lang", {})
    lines += _table(["language", "accuracy"], [[lang, acc] for lang, acc in sorted(per_lang.items())])
    lines += [f"Mean over the other languages: {topics.get('mean_accuracy', float('nan')):.3f}", ""]
    return lines + _image(out, "accuracy_by_language.png", "topic accuracy by language")


def _book_topics(bt: dict[str, Any]) -> list[str]:
    if not bt:
        return []
    lines = ["## Topics at work", "",
             f"The topic head tags the {bt.get('items')} books (`book_topics.parquet`: `item_id, topic, "
             "topic_score`; feed it to `HybridRanker.fit(..., topics=)` for the `topics=` filter, "
             "`diversity_by=\"topics\"` and the opt-in `topic` affinity features). Each topic's share of the "
             "catalogue, of the interactions and of the recommendation slots (ratio: slots / interactions); "
             "what the affinity feature does to NDCG and exposure is in `benchmarks/README.md`, "
             "\"Topics at work\" (`scripts/topic_affinity.py`).", ""]
    return lines + _table(["topic", "catalogue", "interactions", "slots", "slots / interactions"],
                          [[r["topic"], r["catalogue"], r["positives"], r["slots"], r["ratio"]]
                           for r in bt.get("exposure", [])])


def _neighbours(out: Path, nb: dict[str, Any]) -> list[str]:
    if not nb:
        return []
    lines = ["## Cross-language neighbours", "",
             f"The {nb.get('k')} nearest books in other languages for each of {nb.get('items')} books in "
             f"{nb.get('languages')} languages (`neighbours.parquet`). Share whose nearest other-language book "
             f"has the same author: {nb.get('top1_same_author', float('nan')):.3f}.", ""]
    nb_file = out / "neighbours.parquet"
    if nb_file.is_file():
        table = pl.read_parquet(nb_file).filter((pl.col("rank") == 1) & (pl.col("lang") != pl.col("neighbour_lang")))
        minority = table.group_by("lang").len().sort("len")["lang"].head(3).to_list()
        example = table.filter(pl.col("lang").is_in(minority)).sort("score", descending=True).head(8)
        lines += _table(["book", "nearest in another language", "score"],
                        [[f"{r['lang']}: {r['text'][:60]}", f"{r['neighbour_lang']}: {r['neighbour_text'][:60]}",
                          round(float(r["score"]), 3)] for r in example.iter_rows(named=True)])
    return lines


def _latency(out: Path, lat: dict[str, Any]) -> list[str]:
    if not lat:
        return []
    lines = ["## Retrieval latency", "",
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
    return lines + _image(out, "latency_vs_recall.png", "latency against recall")
