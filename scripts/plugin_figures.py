"""Figures of xrec as a plugin (README "Use xrec with the model you already have"), one run:

* re-ranking ALS's top-100 with the hybrid vs ALS's own order (NDCG@10, the protocol of
  ``xrec evaluate recs``), with the upstream ALS score blended at a few fixed weights, next to the
  full hybrid;
* throughput of ``rerank`` (100 candidates per user) against ``recommend`` (top-100), same ranker,
  timed alternately, best of 3;
* ``add_items`` against a refit (:mod:`xrec.evaluation.add_items`).

Usage: python scripts/plugin_figures.py --json benchmarks/figures/plugin.json [--data data/movielens data/bookcrossing]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import polars as pl


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", nargs="+", default=["data/movielens", "data/bookcrossing"])
    parser.add_argument("--stores", nargs="+", default=[None, None])
    parser.add_argument("--json", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-add-items", action="store_true")
    args = parser.parse_args()
    from xrec.artifacts import write_json
    from xrec.encoders import load_encoder
    from xrec.evaluation.add_items import add_items_protocol
    from xrec.evaluation.metrics import SliceMap, evaluate_scorer, positives
    from xrec.evaluation.recs import RerankScorer, build_models
    from xrec.evaluation.splits import load_split
    from xrec.ranking.content import item_vectors

    encoder = load_encoder("bundled", threads=args.threads)
    out: dict = {"encoder": encoder.fingerprint}
    for data, store in zip(args.data, args.stores):
        t0 = time.perf_counter()
        split = load_split(data)
        vectors = item_vectors(encoder, split.items, store=store)
        models = build_models(split, vectors, ["als", "hybrid", "rerank_als"], threads=args.threads)
        ranker, als = models["hybrid"].ranker, models["als"]
        for w in (0.5, 1.0):
            models[f"rerank_als_upstream{w}"] = RerankScorer(ranker, als, upstream_weight=w)
        pos = positives(split)
        slices = SliceMap(split)
        res = {name: evaluate_scorer(s, split, pos, slices=slices) for name, s in models.items()}
        entry = {"split": split.info, "ndcg@10": {n: r["ndcg@10"] for n, r in res.items()},
                 "recall@10": {n: r["recall@10"] for n, r in res.items()}}
        base = res["als"]["ndcg@10"]
        entry["ratio_vs_als"] = {n: r["ndcg@10"] / base for n, r in res.items()}
        # throughput: rerank of ALS's top-100 vs recommend top-100, every user, alternately
        users = ranker.users.ids
        rows = np.arange(len(users))
        cand = np.concatenate([als.topk(rows[s:s + 1024], 100) for s in range(0, len(rows), 1024)])
        frame = pl.DataFrame({"user_id": users.gather(np.repeat(rows, 100)),
                              "item_id": ranker.items.ids.gather(cand.reshape(-1))})
        best = {"recommend": np.inf, "rerank": np.inf}
        for _ in range(3):
            t = time.perf_counter()
            for s in range(0, len(users), 1024):
                ranker.recommend(users[s:s + 1024], 100)
            best["recommend"] = min(best["recommend"], time.perf_counter() - t)
            t = time.perf_counter()
            for s in range(0, len(users), 1024):
                part = users[s:s + 1024]
                ranker.rerank(part, frame.filter(pl.col("user_id").is_in(part.implode())))
            best["rerank"] = min(best["rerank"], time.perf_counter() - t)
        entry["throughput_users_per_s"] = {k: len(users) / v for k, v in best.items()}
        if not args.skip_add_items:
            ratings = pl.concat([split.train.frame, split.test.select(split.train.frame.columns)],
                                how="vertical_relaxed")
            entry["add_items"] = add_items_protocol(split.items, ratings, vectors, fraction=0.1, seed=0,
                                                    metadata=split.metadata)
        entry["seconds"] = time.perf_counter() - t0
        out[data] = entry
        print(json.dumps({data: entry}, indent=2, default=str), flush=True)
        write_json(args.json, json.loads(json.dumps(out, default=str)))


if __name__ == "__main__":
    main()
