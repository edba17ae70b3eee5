"""What item topics do in the hybrid ranker, on one evaluation split: NDCG@10 and per-topic
exposure of the hybrid without topic features, with the user-topic affinity features (``topic``,
``cold_topic``), and with ``diversity`` spread over topics.

Ratios are against the plain hybrid measured in the same run, with 95% paired-bootstrap intervals
over users (:func:`~xrec.evaluation.metrics.ratio_interval`).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from xrec.evaluation.metrics import SliceMap, evaluate_scorer, positives, ratio_interval, topic_exposure
from xrec.evaluation.recs import RankerScorer
from xrec.evaluation.splits import Split
from xrec.progress import track

#: The topic features of the fusion (off by default).
TOPIC_FEATURES = ("topic", "cold_topic")


def compare_affinity(split: Split, vectors: np.ndarray, topics: pl.DataFrame, *, diversity: float = 0.3
                     ) -> dict:
    """Fit the hybrid on ``split.train`` with and without :data:`TOPIC_FEATURES` (``topics``: a
    table ``item_id, topic[, topic_score]`` of the split's catalogue) and evaluate it, and the
    plain one with ``diversity`` by topics; returns the JSON-ready comparison."""
    from xrec.ranking.config import HybridConfig
    from xrec.ranking.hybrid import HybridRanker

    languages = split.items["lang"].to_list() if "lang" in split.items.columns else None
    plain = HybridRanker.fit(split.train, vectors, texts=split.items["text"].to_list(), languages=languages,
                             metadata=split.metadata, topics=topics)
    config = HybridConfig(features=tuple(plain.fusion.names) + TOPIC_FEATURES)
    with_affinity = HybridRanker.fit(split.train, vectors, config=config, content=plain.content)
    variants = {"hybrid": RankerScorer(plain),
                "hybrid + topic affinity": RankerScorer(with_affinity),
                f"hybrid, diversity {diversity} by topics": RankerScorer(plain, diversity=diversity,
                                                                         diversity_by="topics")}
    pos, slices = positives(split), SliceMap(split)
    codes, names = plain.content.topic_codes, plain.content.topic_names
    assert codes is not None  # fitted with topics=
    all_pos = np.concatenate(pos.items) if pos.items else np.zeros(0, np.int64)
    results, per_user = {}, {}
    for name, scorer in track(variants.items(), "topic variants", "models"):
        mine: dict[str, np.ndarray] = {}
        shown: list[np.ndarray] = []
        metrics = evaluate_scorer(scorer, split, pos, slices=slices, per_user=mine, shown=shown)
        per_user[name] = mine["all"]
        exposure = topic_exposure(np.concatenate(shown) if shown else np.zeros(0, np.int64), all_pos, codes, names)
        results[name] = {"ndcg@10": metrics["ndcg@10"], "recall@20": metrics["recall@20"],
                         "coverage@10": metrics["coverage@10"],
                         "topics_per_list": _topics_per_list(shown, codes),
                         "exposure": exposure.to_dicts()}
    base = per_user["hybrid"]
    for name, entry in results.items():
        interval = ratio_interval(per_user[name], base) if name != "hybrid" else None
        entry["ratio_vs_hybrid"] = float(per_user[name].mean() / base.mean()) if base.mean() > 0 else None
        entry["ci95"] = list(interval) if interval is not None else None
    raw = with_affinity.fusion
    weights = {n: float(w) for n, w in zip(raw.names, raw.weights) if n in TOPIC_FEATURES}
    tagged = codes >= 0
    return {"protocol": split.info, "users": len(pos.users), "diversity": diversity,
            "topic_weights_standardised": weights,
            "catalogue_share": dict(zip(names, (np.bincount(codes[tagged], minlength=len(names))
                                                / max(int(tagged.sum()), 1)).tolist())),
            "variants": results}


def _topics_per_list(shown: list[np.ndarray], codes: np.ndarray) -> float:
    """Mean number of distinct topics in a top-10 list."""
    counts = [len(np.unique(codes[row[row >= 0]][codes[row[row >= 0]] >= 0])) for row in shown]
    return float(np.mean(counts)) if counts else float("nan")


def format_comparison(result: dict) -> str:
    """Markdown tables: NDCG@10 with ratios, and per-topic exposure of each variant."""
    lines = ["| variant | NDCG@10 | vs hybrid (95% CI) | topics per top-10 |", "| --- | --- | --- | --- |"]
    for name, v in result["variants"].items():
        ci = f" ({v['ci95'][0]:.3f}-{v['ci95'][1]:.3f})" if v.get("ci95") else ""
        lines.append(f"| {name} | {v['ndcg@10']:.4f} | {v['ratio_vs_hybrid']:.3f}x{ci} | {v['topics_per_list']:.2f} |")
    names = list(result["variants"])
    lines += ["", "| topic | catalogue | test positives | " + " | ".join(f"slots: {n}" for n in names) + " |",
              "| --- | --- | --- | " + " | ".join("---" for _ in names) + " |"]
    rows = {r["topic"]: r for r in result["variants"][names[0]]["exposure"]}
    for topic, first in rows.items():
        slots = [next(r for r in result["variants"][n]["exposure"] if r["topic"] == topic)["slots"] for n in names]
        lines.append(f"| {topic} | {result['catalogue_share'][topic]:.3f} | {first['positives']:.3f} | "
                     + " | ".join(f"{s:.3f}" for s in slots) + " |")
    return "\n".join(lines)
