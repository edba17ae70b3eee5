"""The main job: items and interactions in; recommendations, cross-language neighbours, topic tags,
evaluation and a latency report out, all in one folder.

Stages, each a thin composition of xrec's public API, cached under ``<out>/stages`` and reused
while their inputs and the encoder fingerprint are unchanged:

1. load and validate every input (errors before any expensive stage);
2. embed the catalogue and the multilingual items (embedding store: only new or changed texts);
3. ``recommendations``: hybrid ranker fitted on all interactions, top-k for every user;
4. ``evaluation``: the recommendation protocol, every model side by side;
5. ``topics``: a topic head trained on one language, tagging the items of every language;
6. ``neighbours``: each item's nearest items in other languages;
7. ``latency``: retrieval speed and recall of the index kinds against numpy and hnswlib;
8. the report (Markdown and PNG plots).
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipelines.config import resolve, validate_config
from xrec.errors import DataError
from xrec.stages import StageRunner, file_digest

log = logging.getLogger(__name__)


def _say(message: str) -> None:
    print(f"[xrec] {message}", file=sys.stderr, flush=True)


def _digests(directory: Path, pattern: str = "*") -> dict[str, str]:
    return {p.name: file_digest(p) for p in sorted(directory.glob(pattern)) if p.is_file()}


def run(config: dict[str, Any], *, engine: str = "local", address: str | None = None) -> Path:
    """Run the whole job described by ``config``; returns the output folder."""
    from xrec.datasets.movielens import load_movielens
    from xrec.datasets.sib200 import load_labels, load_split
    from xrec.ranking.content import prepare_items
    from xrec.ranking.interactions import Interactions

    started = time.perf_counter()
    config = validate_config(config)  # every key typed and in range before any work
    out = resolve(config, "output", "dir", must_exist=False)
    movielens_dir = resolve(config, "recommend", "movielens")
    sib_dir = resolve(config, "topics", "sib200")
    enc_cfg = config.get("encoder", {})

    runner = StageRunner(out / "stages")  # its timings account for the whole run (the report's table)

    # 1. load and validate everything before the expensive stages
    _say("loading and validating inputs")
    with runner.timed("load and validate inputs"):
        movielens = load_movielens(movielens_dir)
        items = prepare_items(movielens.items(), f"{movielens_dir}/movies")
        interactions = Interactions.build(movielens.ratings, items["item_id"],
                                          source=f"{movielens_dir}/ratings")
        sib_test = load_split(sib_dir, "test")
        load_labels(sib_dir)  # validated here, used by the topics stage
        if sib_test.height == 0:
            raise DataError(f"{sib_dir}: the test split is empty")

    out.mkdir(parents=True, exist_ok=True)
    encoder = _encoder(enc_cfg, engine, address)
    store_dir = out / "stages" / "embeddings"
    store_dir.mkdir(parents=True, exist_ok=True)

    # 2. embeddings (the store re-embeds only new or changed texts)
    from xrec.ranking.content import item_vectors
    from xrec.store import embed_items

    _say(f"embedding {items.height} catalogue items and {sib_test.height} multilingual items "
         f"with {encoder.name} ({type(encoder).__name__})")
    with runner.timed("embeddings"):
        movie_vectors = item_vectors(items, encoder, store=store_dir / "movies.parquet", progress=True)
        sib_ids = [f"{lang}:{i}" for lang, i in zip(sib_test["lang"], sib_test["index_id"])]
        sib_vectors = embed_items(encoder, sib_ids, sib_test["text"].to_list(),
                                  store=store_dir / "sib200_test.parquet", kind="query", progress=True)
    base_key = {"encoder": encoder.fingerprint, "movielens": _digests(movielens_dir)}

    # 3. recommendations for every user
    rec_cfg = config.get("recommend", {})
    k = int(rec_cfg.get("k", 10))

    def build_recommendations(tmp: Path) -> dict[str, Any]:
        from xrec.ranking.batch import recommend_to_parquet
        from xrec.ranking.hybrid import HybridRanker

        _say("fitting the hybrid ranker (ALS + content, learned fusion)")
        ranker = HybridRanker.fit(interactions, movie_vectors)
        users = interactions.users.ids
        _say(f"recommending top-{k} for {len(users)} users ({engine} engine)")
        if engine == "ray":
            from xrec.distributed import ray_recommend_to_parquet

            ray_recommend_to_parquet(ranker, users, k, tmp / "recommendations.parquet",
                                     batch_size=int(rec_cfg.get("batch_size", 256)))
        else:
            recommend_to_parquet(ranker, users, k, tmp / "recommendations.parquet",
                                 batch_size=int(rec_cfg.get("batch_size", 256)), progress=True)
        return {"users": len(users), "k": k, "fusion": ranker.fusion.kind}

    rec_dir, rec_summary = runner.run("recommendations", {**base_key, "k": k, "stage": 1},
                                      build_recommendations)

    # 4. evaluation of the recommenders, side by side
    models = list(rec_cfg.get("evaluate_models", []))

    def build_evaluation(tmp: Path) -> dict[str, Any]:
        from xrec.evaluation.recs import evaluate_recs, format_report, movielens_split, plot_report
        from xrec.ranking.content import item_vectors as vectors_of

        split = movielens_split(movielens_dir)
        split_items = prepare_items(split.items, "evaluation catalogue")
        vectors = vectors_of(split_items, encoder, store=store_dir / "movies_eval.parquet", progress=True)
        _say(f"evaluating {', '.join(models)} (hold-out: last 20% of each user's ratings)")
        report = evaluate_recs(split, vectors, models, progress=True)
        (tmp / "evaluation.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        (tmp / "evaluation.txt").write_text(format_report(report) + "\n", encoding="utf-8")
        plot_report(report, tmp / "metrics_by_model.png")
        return {name: {"ndcg@10": m["ndcg@10"], "recall@20": m["recall@20"],
                       "cold_auc": m["cold_items"]["auc"]} for name, m in report["models"].items()}

    eval_dir, eval_summary = (runner.run("evaluation", {**base_key, "models": models, "stage": 1},
                                         build_evaluation) if models else (None, {}))

    # 5. topic tags for the items of every language
    top_cfg = config.get("topics", {})
    train_lang = str(top_cfg.get("train_lang", "eng_Latn"))

    def build_topics(tmp: Path) -> dict[str, Any]:
        from pipelines.stages import topics_stage

        return topics_stage(tmp, sib_dir, train_lang, encoder, sib_test, store_dir / "topics")

    topics_dir, topics_summary = runner.run(
        "topics", {"encoder": encoder.fingerprint, "sib200": _digests(sib_dir), "train_lang": train_lang,
                   "stage": 1}, build_topics)

    # 6. cross-language neighbours
    nb_k = int(config.get("neighbours", {}).get("k", 5))

    def build_neighbours(tmp: Path) -> dict[str, Any]:
        from pipelines.stages import neighbours_stage

        return neighbours_stage(tmp, sib_test, sib_ids, sib_vectors, nb_k, encoder.fingerprint)

    nb_dir, nb_summary = runner.run(
        "neighbours", {"encoder": encoder.fingerprint, "sib200": _digests(sib_dir, "test*"), "k": nb_k,
                       "stage": 1}, build_neighbours)

    # 7. retrieval latency on the real vectors
    lat_cfg = config.get("latency", {})

    def build_latency(tmp: Path) -> dict[str, Any]:
        from pipelines.stages import latency_stage

        corpus = np.concatenate([movie_vectors, sib_vectors])
        return latency_stage(tmp, corpus, list(lat_cfg.get("kinds", ["exact", "hnsw"])),
                             int(lat_cfg.get("queries", 500)))

    lat_dir, lat_summary = runner.run(
        "latency", {**base_key, "sib200": _digests(sib_dir, "test*"), "latency": lat_cfg, "stage": 1},
        build_latency)

    # 8. collect the results and write the report
    _publish(rec_dir / "recommendations.parquet", out / "recommendations.parquet")
    _publish(nb_dir / "neighbours.parquet", out / "neighbours.parquet")
    _publish(topics_dir / "tags.parquet", out / "topic_tags.parquet")
    for stage_dir in (eval_dir, topics_dir, lat_dir):
        for png in (stage_dir.glob("*.png") if stage_dir else []):
            _publish(png, out / png.name)
    from pipelines.report import write_report

    report = write_report(out, config=config, engine=engine, encoder=encoder,
                          summaries={"recommendations": rec_summary, "evaluation": eval_summary,
                                     "topics": topics_summary, "neighbours": nb_summary,
                                     "latency": lat_summary},
                          timings=runner.timings, total_s=time.perf_counter() - started)
    _say(f"done in {time.perf_counter() - started:.0f}s: {report}")
    return out


def _encoder(cfg: dict[str, Any], engine: str, address: str | None):
    """The local encoder, or one that runs on a Ray cluster."""
    model = str(cfg.get("model", "bundled"))
    precision = str(cfg.get("precision", "auto"))
    batch_size = int(cfg.get("batch_size", 32))
    if engine == "ray":
        from xrec.distributed import RayEncoder, init_ray

        init_ray(address)
        return RayEncoder(model, precision=precision, batch_size=batch_size)
    if engine != "local":
        raise DataError(f"engine {engine!r}: expected 'local' or 'ray'")
    from xrec.encoders import load_encoder

    return load_encoder(model, precision=precision, batch_size=batch_size)


def _publish(src: Path, dst: Path) -> None:
    """Copy a stage output to the top of the output folder (atomically)."""
    from xrec.artifacts import atomic_file

    with atomic_file(dst) as tmp:
        shutil.copyfile(src, tmp)
