"""The diversity knob's NDCG cost and language exposure (benchmarks/README.md), one run:
python scripts/diversity_figures.py CACHE_DIR (embedding stores and diversity.json go there; the
committed result is benchmarks/figures/diversity.json)."""
import json
import sys
from pathlib import Path

import numpy as np
from xrec.artifacts import write_json
from xrec.encoders import load_encoder
from xrec.evaluation.metrics import SliceMap, evaluate_scorer, positives
from xrec.evaluation.recs import RankerScorer, build_models
from xrec.evaluation.splits import load_split
from xrec.ranking.content import item_vectors

cache = Path(sys.argv[1] if len(sys.argv) > 1 else ".xrec-cache")
cache.mkdir(parents=True, exist_ok=True)
enc = load_encoder("bundled", threads=2)
out = {}
for data, store in (("data/bookcrossing", cache / "bx_store.parquet"), ("data/movielens", cache / "ml_store.parquet")):
    split = load_split(data)
    vec = item_vectors(enc, split.items, store=store)
    ranker = build_models(split, vec, ["hybrid"])["hybrid"].ranker
    pos = positives(split)
    sl = SliceMap(split)
    res = {}
    for d in (0.0, 0.1, 0.2, 0.4):
        sc = RankerScorer(ranker, d)
        r = evaluate_scorer(sc, split, pos, slices=sl)
        top = sc.topk(pos.users, 10)
        sims = [vec[x[x >= 0]] @ vec[x[x >= 0]].T for x in top]
        red = float(np.mean([(s.sum() - np.trace(s)) / (len(s) * (len(s) - 1)) for s in sims]))
        res[d] = {"ndcg@10": r["ndcg@10"], "intra_list_cosine": red,
                  "exposure_slots": {k: round(v["slots"], 3) for k, v in r.get("exposure", {}).items()},
                  "exposure_catalogue": {k: round(v["catalogue"], 3) for k, v in r.get("exposure", {}).items()},
                  "exposure_test": {k: round(v["test"], 3) for k, v in r.get("exposure", {}).items()}}
        print(data, d, json.dumps(res[d]), flush=True)
    out[data] = res
write_json(cache / "diversity.json", out)
