"""What item topics do in the hybrid ranker on the main job's data (benchmarks/README.md, "Topics at
work"), one run: NDCG@10 and per-topic exposure of the hybrid without topic features, with the
user-topic affinity features, and with diversity 0.3 by topics.

    python scripts/topic_affinity.py [DATA] [MODEL] [CACHE]

DATA: the catalogue (default data/bookcrossing, the main job's); MODEL: a saved topic classifier
(default out/stages/topics/model, what ``xrec run`` trains; trained here as the main job does when
missing); CACHE: embedding stores (default out/stages/embeddings, the main job's). Books are tagged from query-prefixed
vectors, as the classifier was trained. Writes benchmarks/figures/topic_affinity.{json,png}."""
import os
import platform
import sys
from pathlib import Path

import numpy as np
import polars as pl
from xrec.artifacts import write_json
from xrec.encoders import load_encoder
from xrec.evaluation.affinity import compare_affinity, format_comparison
from xrec.evaluation.splits import load_split
from xrec.evaluation.topics import _save_figure
from xrec.ranking.content import item_vectors
from xrec.store import embed_items
from xrec.topics.classifier import TopicClassifier

data = sys.argv[1] if len(sys.argv) > 1 else "data/bookcrossing"
model = Path(sys.argv[2] if len(sys.argv) > 2 else "out/stages/topics/model")
cache = Path(sys.argv[3] if len(sys.argv) > 3 else "out/stages/embeddings")
figures = Path(__file__).resolve().parents[1] / "benchmarks" / "figures"
cache.mkdir(parents=True, exist_ok=True)
encoder = load_encoder("bundled", threads=2)
if not model.is_dir():  # as the main job's topics stage trains it
    from xrec.topics.data import topic_tables
    from xrec.topics.tagging import train_topics

    tables = topic_tables("data/sib200", "eng_Latn")
    train_topics(encoder, tables.train, tables.labels, dev=tables.dev,
                 unlabelled=tables.unlabelled.select("lang", "text"), progress=True).save(model)
classifier = TopicClassifier.load(model, encoder_fingerprint=encoder.fingerprint)

split = load_split(data)
vectors = item_vectors(encoder, split.items, store=cache / "catalogue.parquet", progress=True)
books = split.items.filter(pl.col("has_text"))
query = embed_items(encoder, books["item_id"].to_list(), books["text"].to_list(),
                    store=cache / "catalogue_query.parquet", kind="query", progress=True)
found = classifier.predict(query)
from_passages = classifier.predict(vectors[split.items["has_text"].to_numpy()])
tags = pl.DataFrame({"item_id": books["item_id"], "topic": found.topics,
                     "topic_score": pl.Series(found.scores, dtype=pl.Float32)})

result = compare_affinity(split, vectors, tags)
result["machine"] = {"cpu": next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                                  .splitlines() if line.startswith("model name")), platform.processor()),
                     "cores": os.cpu_count()}
result["tags"] = {"source": "query-prefixed vectors", "books": books.height,
                  "agreement_with_passage_vectors": float(np.mean(np.array(found.topics)
                                                                  == np.array(from_passages.topics)))}
write_json(figures / "topic_affinity.json", result)
print(format_comparison(result))
print("standardised weights:", result["topic_weights_standardised"], "| tags:", result["tags"])

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

variants = list(result["variants"])
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1, 2.4]})
ndcg = [result["variants"][v]["ndcg@10"] for v in variants]
err = [[0 if v["ci95"] is None else v["ndcg@10"] - v["ndcg@10"] / v["ratio_vs_hybrid"] * v["ci95"][0]
        for v in result["variants"].values()],
       [0 if v["ci95"] is None else v["ndcg@10"] / v["ratio_vs_hybrid"] * v["ci95"][1] - v["ndcg@10"]
        for v in result["variants"].values()]]
left.bar(range(len(variants)), ndcg, yerr=err, color=["tab:gray", "tab:red", "tab:blue"], capsize=4)
left.set_xticks(range(len(variants)), [v.replace("hybrid", "").strip(" ,+") or "hybrid" for v in variants],
                rotation=20, ha="right", fontsize=8)
left.set_title("NDCG@10 (bars: 95% CI of the ratio to the hybrid)", fontsize=9)
rows = result["variants"]["hybrid"]["exposure"]
topics = [r["topic"] for r in rows]
x = np.arange(len(topics))
width = 0.8 / (len(variants) + 1)
right.bar(x, [r["positives"] for r in rows], width, label="test positives", color="black")
for j, v in enumerate(variants):
    shares = {r["topic"]: r["slots"] for r in result["variants"][v]["exposure"]}
    right.bar(x + (j + 1) * width, [shares[t] for t in topics], width, label=f"top-10 slots: {v}")
right.set_xticks(x + width * len(variants) / 2, topics, rotation=20, ha="right", fontsize=8)
right.set_title("share per topic", fontsize=9)
right.legend(fontsize=7)
fig.suptitle(f"{Path(data).name}: {result['protocol'].get('split', '')}", fontsize=8)
_save_figure(fig, figures / "topic_affinity.png")
print(f"wrote {figures / 'topic_affinity.json'} and .png")
