"""NDCG@10 (all users, minority-language and cross-language slices) and language exposure of the
hybrid against its ``language_boost`` (per call), next to popularity and TF-IDF, in one run
(benchmarks/README.md, "Language exposure").

    python scripts/language_boost_curve.py DATA STORE OUT_PREFIX [SEED]

DATA: a catalogue with item languages (e.g. ../shared/data/bookcrossing); STORE: the embedding
store (parquet, written on first use); SEED: the seed of the random test cut (the default 4 nats
was chosen with seed 1; ``xrec evaluate recs`` uses seed 0). Writes OUT_PREFIX.json and .png."""
import json
import sys
from pathlib import Path

from xrec.artifacts import write_json
from xrec.encoders import load_encoder
from xrec.evaluation.metrics import SliceMap, evaluate_scorer, positives, ratio_interval
from xrec.evaluation.recs import RankerScorer, build_models
from xrec.evaluation.splits import load_split
from xrec.progress import track
from xrec.ranking.content import item_vectors
from xrec.ranking.hybrid import HybridRanker

BOOSTS = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
SLICES = ("minority_language", "cross_language")

data, store, prefix = sys.argv[1], sys.argv[2], Path(sys.argv[3])
seed = int(sys.argv[4]) if len(sys.argv) > 4 else 1
split = load_split(data, seed=seed)
vectors = item_vectors(load_encoder("bundled", threads=2), split.items, store=store)
pos, slices = positives(split), SliceMap(split)
baselines = build_models(split, vectors, ["popularity", "tfidf"])
per_user = {name: {} for name in baselines}
rows = {name: evaluate_scorer(scorer, split, pos, slices=slices, per_user=per_user[name])
        for name, scorer in baselines.items()}
ranker = HybridRanker.fit(split.train, vectors, texts=split.items["text"].to_list(),
                          languages=split.items["lang"].to_list(), metadata=split.metadata)
for boost in track(BOOSTS, "language boosts"):
    mine: dict = {}
    res = evaluate_scorer(RankerScorer(ranker, language_boost=boost), split, pos, slices=slices, per_user=mine)
    for key in ("all", *SLICES):
        best = max(baselines, key=lambda n: per_user[n][key].mean())
        res.setdefault("vs_best_baseline", {})[key] = {
            "best": best, "ratio": float(mine[key].mean() / per_user[best][key].mean()),
            "ci95": ratio_interval(mine[key], per_user[best][key])}
    rows[boost] = res
    print(boost, res["ndcg@10"], {s: res["slices"][s]["ndcg@10"] for s in SLICES}, res["vs_best_baseline"],
          flush=True)
    print("  top-10 slots by language:", {lang: round(v["slots"], 3) for lang, v in res["exposure"].items()
                                            if v["slots"] >= 0.001}, flush=True)
results = {str(k): v for k, v in rows.items()}
write_json(prefix.with_suffix(".json"), json.loads(json.dumps({"data": data, "seed": seed, "results": results},
                                                            default=float)))


def ndcg(name, key):
    return rows[name]["ndcg@10"] if key == "ndcg@10" else rows[name]["slices"][key]["ndcg@10"]


import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, ax = plt.subplots(figsize=(6.4, 4.0))
for key, label in (("ndcg@10", "all users"), *((s, s.replace("_", " ")) for s in SLICES)):
    line, = ax.plot(BOOSTS, [ndcg(b, key) for b in BOOSTS], marker="o", label=f"hybrid, {label}")
    ax.axhline(max(ndcg(n, key) for n in baselines), color=line.get_color(), ls=":", lw=1)
ax.set_xlabel("language_boost (nats added to items in the other languages a user reads)")
ax.set_ylabel("NDCG@10 (dotted: best of popularity, TF-IDF)")
ax.set_title(f"{Path(data).name}: random 20% test cut, seed {seed}")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(prefix.with_suffix(".png"), dpi=120)
