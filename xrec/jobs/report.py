"""The main job's report: one Markdown page with the figures, tables and plots of a run."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import polars as pl

from xrec.artifacts import atomic_file

#: How the report shows an item without a language code.
NO_LANG = "(none)"
#: Languages with fewer items get no column of their own in the neighbours' table.
MIN_SHOWN = 20


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows], ""]


def _image(out: Path, name: str, caption: str) -> list[str]:
    return [f"![{caption}]({name})", ""] if (out / name).is_file() else []


def write_report(out: Path, *, config: dict[str, Any], engine: str, encoder: Any, catalogue: Any,
                 summaries: dict[str, dict[str, Any]], skipped: dict[str, str],
                 timings: list[tuple[str, float, bool | None]], total_s: float) -> Path:
    """Write ``<out>/report.md`` and return its path. ``catalogue``: the job's
    :class:`~xrec.jobs.catalogue.Catalogue`; ``skipped``: each stage that did not run, and why."""
    items = catalogue.items.with_columns(pl.col("lang").fill_null(NO_LANG))
    lines = ["# xrec main job report", "",
             f"- engine: {engine}; encoder: {encoder.name} (`{encoder.fingerprint[:23]}…`, dim {encoder.dim}, "
             f"path {getattr(encoder, 'path', None) or 'not recorded'})",
             f"- machine: {platform.machine()} ({_cpu()}), {os.cpu_count()} cores, Python {platform.python_version()}",
             f"- config: `{config.get('_source')}`; total time {total_s:.1f} s", ""]
    lines += _catalogue(catalogue, config)
    rows = [[n, round(s, 1), "-" if r is None else "yes" if r else "no"] for n, s, r in timings]
    rest = total_s - sum(s for _, s, _ in timings)  # encoder load, publishing: the whole run is accounted for
    lines += ["## Stages", ""] + _table(["stage", "seconds", "from cache"], [
        *rows, ["other (loading the encoder, copying results)", round(rest, 1), "-"],
        ["**total**", round(total_s, 1), ""]])
    if skipped:
        lines += ["Stages not run:", ""] + [f"- `{name}`: {why}" for name, why in skipped.items()] + [""]
    lines += _recommendations(out, summaries.get("recommendations", {}), items)
    lines += _evaluation(out, summaries.get("evaluation") or {}, summaries.get("new_language") or {})
    lines += _topics(out, summaries.get("topics", {}))
    lines += _book_topics(summaries.get("book_topics", {}))
    lines += _neighbours(summaries.get("neighbours", {}))
    lines += _latency(out, summaries.get("latency", {}))
    topic_codes = list(summaries.get("topics", {}).get("accuracy_by_lang", {}))
    lines += _codes(catalogue.languages + ([NO_LANG] if catalogue.unknown_language else []), topic_codes)
    path = out / "report.md"
    with atomic_file(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _catalogue(catalogue: Any, config: dict[str, Any]) -> list[str]:
    """What the job ran on, and what the catalogue lacks (what that changes)."""
    items, inter = catalogue.items, catalogue.interactions
    langs = items["lang"].fill_null(NO_LANG).value_counts(sort=True)
    shown = ", ".join(f"{code} {n:,}" for code, n in langs.head(10).iter_rows())
    more = f" and {langs.height - 10} more" if langs.height > 10 else ""
    template = config["items"]["template"] or "{text}"
    fields = ", ".join(config["items"]["metadata"]) or "none"
    lines = ["## Catalogue", "",
             f"- items: `{catalogue.files[0]}`, {_n(items.height, 'item')}, text `{template}`, metadata fields: "
             f"{fields}",
             f"- languages (items): {shown}{more}",
             f"- interactions: `{catalogue.files[1]}`, {_n(inter.height, '(user, item) pair')} of "
             f"{_n(inter['user_id'].n_unique(), 'user')} on {_n(inter['item_id'].n_unique(), 'item')}; weights: "
             f"{'yes' if catalogue.has_weight else 'no'}; timestamps: {'yes' if catalogue.has_timestamp else 'no'}"]
    return lines + [f"- {note}" for note in catalogue.notes] + [""]


def _n(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


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
             f"Top-{rec.get('k')} for {_n(rec.get('users', 0), 'user')} in `recommendations.parquet` "
             f"(`user_id, rank, item_id, score` and each component's share of the score); fusion: "
             f"{Fusion.from_dict(fusion).summary() if fusion else 'unknown'}.", ""]
    recs_file, examples_file = out / "recommendations.parquet", out / "recommendation_examples.parquet"
    if not recs_file.is_file():
        return lines
    recs = pl.read_parquet(recs_file).join(items.select("item_id", "text", "lang"), on="item_id", how="left")
    if recs.height == 0:
        return lines + ["No recommendations: every user has already interacted with every item.", ""]
    if examples_file.is_file():
        lines += ["A few users whose lists span the most languages; *because* is the item of the user's "
                  "history nearest to the recommended one in the shared space (`recommendation_examples.parquet`).",
                  ""]
        title = dict(zip(items["item_id"].to_list(), items["text"].to_list()))
        examples = pl.read_parquet(examples_file)
        for user in examples["user_id"].unique(maintain_order=True).to_list():
            rows = examples.filter(pl.col("user_id") == user).sort("rank")
            lines += [f"User {user}:", ""] + _table(
                ["rank", "lang", "item", "score", "cf", "content", "lexical", "because"],
                [[r["rank"], r["lang"] or NO_LANG, str(title.get(r["item_id"]))[:60], r["score"], r.get("cf_score"),
                  r.get("content_score"), r.get("lexical_score"),
                  f"{r['because_lang'][0] or NO_LANG}: {str(title.get(r['because_item_id'][0]))[:40]}"
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
                  f"{new_language['protocol']['split']}: nobody has interacted with that language's items; "
                  "each user's held-out items in it are ranked among that language's items only.", ""]
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
             f"The topic head tags the {bt.get('items')} items (`book_topics.parquet`: `item_id, topic, "
             "topic_score`; feed it to `HybridRanker.fit(..., topics=)` for the `topics=` filter, "
             "`diversity_by=\"topics\"` and the opt-in `topic` affinity features). Each topic's share of the "
             "catalogue, of the interactions and of the recommendation slots (ratio: slots / interactions); "
             "what the affinity feature does to NDCG and exposure is in `benchmarks/README.md`, "
             "\"Topics at work\" (`scripts/topic_affinity.py`).", ""]
    return lines + _table(["topic", "catalogue", "interactions", "slots", "slots / interactions"],
                          [[r["topic"], r["catalogue"], r["positives"], r["slots"], r["ratio"]]
                           for r in bt.get("exposure", [])])


def _neighbours(nb: dict[str, Any]) -> list[str]:
    if not nb:
        return []
    lines = ["## Cross-language neighbours", "",
             f"The {nb.get('k')} nearest items in other languages for each of {nb.get('items')} items in "
             f"{nb.get('languages')} languages (`neighbours.parquet`)."
             + (f" {nb['without_language']} items without a language code are left out." if nb.get("without_language")
                else ""), ""]
    same = nb.get("top1_same", {})
    if same:
        lines += ["How often the nearest item in another language shares a metadata value (another edition or "
                  "translation of the same work, or the same maker), overall and by the item's language:", ""]
        by_lang = nb.get("top1_same_by_lang", {})
        langs = sorted({lang for field in by_lang.values() for lang, v in field.items() if v["items"] >= MIN_SHOWN})
        if len(langs) < len({lang for field in by_lang.values() for lang in field}):
            lines += [f"(languages with at least {MIN_SHOWN} items; all in `stages/neighbours/manifest.json`)", ""]
        lines += _table(["field", "all"] + langs,
                        [[field, share] + [by_lang[field].get(lang, {}).get("share", "-") for lang in langs]
                         for field, share in same.items()])
    else:
        lines += ["No metadata fields (`[items] metadata`, e.g. author or brand): no figure of how often the "
                  "nearest item is another edition of the same work.", ""]
    examples = nb.get("examples", [])
    if examples:
        lines += ["Examples chosen by evidence that the two items are one work in two languages: a shared "
                  "metadata value first (*same*), then the sum of the embedding similarity (*score*) and the "
                  "character n-gram TF-IDF similarity of the texts (*lexical*); at most two per pair of languages "
                  "and one per shared value:", ""]
        lines += _table(["item", "nearest in another language", "score", "lexical", "same"],
                        [[f"{e['lang']}: {e['text'][:60]}", f"{e['neighbour_lang']}: {e['neighbour_text'][:60]}",
                          round(e["score"], 3), round(e["lexical"], 3), ", ".join(e["same"]) or "-"]
                         for e in examples])
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
    lines += _latency_text(lat)
    return lines + _image(out, "latency_vs_recall.png", "latency against recall")


def _latency_text(lat: dict[str, Any]) -> list[str]:
    """The ratios against the peers, first as the table gives them, then as timed alternately."""
    results = {r["name"]: r for r in lat.get("results", [])}
    summary = lat.get("summary", {})
    numpy_row = next((r for name, r in results.items() if name.startswith("numpy")), None)
    exact_row = results.get("xrec exact")
    sentences = []
    if numpy_row and exact_row:
        ratio = exact_row["qps"] / numpy_row["qps"]
        sentences.append(f"In the table, exact search answers {ratio:.2f}x as many batched queries per second as "
                         f"numpy ({'faster' if ratio > 1 else 'slower'}).")
        alternating = summary.get("exact_qps_vs_numpy_interleaved")
        if alternating is not None:
            agree = (alternating > 1) == (ratio > 1)
            sentences.append(f"Timed alternately with numpy (best of 3 each, so that load from other processes "
                             f"hits both alike) it is {alternating:.2f}x"
                             + ("." if agree else "; the two disagree because the table's rows are timed one "
                                "after another on a shared machine: the alternating figure is the fairer one."))
    pair = summary.get("interleaved")
    if pair:
        ratio = summary["p50_vs_hnswlib_interleaved"]
        sentences.append(f"Single-query p50 timed query by query in alternating order: {pair['ours']} "
                         f"{pair['ours_p50_ms']:.3f} ms, {pair['hnswlib']} {pair['hnswlib_p50_ms']:.3f} ms "
                         f"({ratio:.2f}x the time: {'slower' if ratio > 1 else 'faster'}).")
    return [" ".join(sentences), ""] if sentences else []


#: Codes the registries call "unknown", explained for a reader.
_SPECIAL = {"und": "undetermined: the catalogue's code for items whose single language it does not name (in the "
                   "bundled Book-Crossing sample: ISBN registration groups shared by several languages)",
            NO_LANG: "no language code given for the item", "mul": "several languages",
            "zxx": "no linguistic content", "mis": "a language without a code"}


def _codes(catalogue: list[str], topics: list[str]) -> list[str]:
    """Every language code of the report, with its name."""
    codes = list(dict.fromkeys([*catalogue, *topics]))
    if not codes:
        return []
    rows = [[f"`{code}`", _SPECIAL.get(code) or _language_name(code),
             ", ".join(where for where, group in (("catalogue", catalogue), ("topic sentences", topics))
                       if code in group)] for code in codes]
    return ["## Language codes", "",
            "The catalogue's codes are its own `lang` values (a proxy where the data derives them, e.g. from ISBN "
            "groups)" + ("; the topic sentences use SIB-200's language_Script codes." if topics else "."), ""] + _table(
        ["code", "language", "in"], rows)


def _language_name(code: str) -> str:
    """The English name of a language code (BCP 47, ISO 639 or language_Script), or a note that none is known."""
    try:
        import langcodes
    except ImportError:  # pragma: no cover - a dependency
        return "(langcodes is not installed)"
    try:
        tag = langcodes.Language.get(code.replace("_", "-"))
        if tag.is_valid() and tag.language and tag.language != "und":
            return tag.display_name()
    except (ValueError, LookupError, ImportError):  # LanguageTagError is a ValueError; names need language_data
        pass
    return "not a code the language registries know"
