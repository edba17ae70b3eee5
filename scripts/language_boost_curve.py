"""NDCG@10 (all users, minority-language and cross-language slices) of the hybrid against its
``language_boost``, next to popularity, in one run (benchmarks/README.md, "Language exposure").

    python scripts/language_boost_curve.py DATA STORE OUT_PREFIX [SEED]

DATA: a catalogue with item languages (e.g. ../shared/data/bookcrossing); STORE: the embedding
store (parquet, written on first use); SEED: the seed of the random test cut (the default 4 nats
was chosen with seed 1; ``xrec evaluate recs`` uses seed 0). Writes OUT_PREFIX.json and .png."""
import json
import sys
from pathlib import Path

from xrec.encoders import load_encoder
from xrec.evaluation.metrics import SliceMap, evaluate_scorer, positives
from xrec.evaluation.recs import RankerScorer, build_models
from xrec.evaluation.splits import load_split
from xrec.progress import track
from xrec.ranking.content import item_vectors
from xrec.ranking.hybrid import BOOST_FEATURE, HybridConfig, HybridRanker

BOOSTS = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
SLICES = ("minority_language", "cross_language")

data, store, prefix = sys.argv[1], sys.argv[2], Path(sys.argv[3])
seed = int(sys.argv[4]) if len(sys.argv) > 4 else 1
split = load_split(data, seed=seed)
vectors = item_vectors(split.items, load_encoder("bundled", threads=2), store=store)
pos, slices = positives(split), SliceMap(split)
popularity = evaluate_scorer(build_models(split, vectors, ["popularity"])["popularity"], split, pos, slices=slices)
fitted = HybridRanker.fit(split.train, vectors, texts=split.items["text"].to_list(),
                          languages=split.items["lang"].to_list(), metadata=split.metadata,
                          config=HybridConfig(language_boost=0.0))
rows = {"popularity": {"ndcg@10": popularity["ndcg@10"],
                       **{s: popularity["slices"][s]["ndcg@10"] for s in SLICES}}}
for boost in track(BOOSTS, "language boosts"):
    ranker = HybridRanker(fitted.interactions, fitted.item_vectors, fitted.cf, fitted.content,
                          fitted.fusion.with_raw_weight(BOOST_FEATURE, boost), fitted.config,
                          cf_graph=fitted.cf_graph)
    res = evaluate_scorer(RankerScorer(ranker), split, pos, slices=slices)
    rows[boost] = {"ndcg@10": res["ndcg@10"], **{s: res["slices"][s]["ndcg@10"] for s in SLICES}}
    print(boost, json.dumps(rows[boost]), flush=True)
prefix.with_suffix(".json").write_text(json.dumps({"data": data, "seed": seed, "ndcg@10": rows}, indent=2))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, ax = plt.subplots(figsize=(6.4, 4.0))
for key, label in (("ndcg@10", "all users"), *((s, s.replace("_", " ")) for s in SLICES)):
    line, = ax.plot(BOOSTS, [rows[b][key] for b in BOOSTS], marker="o", label=f"hybrid, {label}")
    ax.axhline(rows["popularity"][key], color=line.get_color(), ls=":", lw=1)
ax.set_xlabel("language_boost (nats added to items in the other languages a user reads)")
ax.set_ylabel("NDCG@10 (dotted: popularity)")
ax.set_title(f"{Path(data).name}: random 20% test cut, seed {seed}")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(prefix.with_suffix(".png"), dpi=120)
