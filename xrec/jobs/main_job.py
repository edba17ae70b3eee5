"""The main job: one multilingual catalogue in; recommendations, evaluations, cross-language
neighbours, topic tags and a latency report out, all in one folder.

Stages, each a thin composition of xrec's public API, cached under ``<out>/stages`` and reused
while their inputs and the encoder fingerprint are unchanged:

1. load and validate every input (errors before any expensive stage);
2. embed the catalogue and the topic test sentences (embedding store: only new or changed texts);
3. ``recommendations``: the hybrid ranker fitted on all interactions, top-k for every user;
4. ``evaluation``: every model side by side on a held-out split, with language slices;
5. ``new_language``: the new-language protocol (that language's catalogue unseen in training);
6. ``topics``: a topic head trained on one language, tagging the sentences of every language;
   ``book_topics``: the same head tagging the catalogue, and each topic's share of the
   recommendation slots against its share of the interactions;
7. ``neighbours``: each book's nearest books in other languages;
8. ``latency``: retrieval speed and recall of the index kinds against numpy and hnswlib;
9. the report (Markdown and PNG plots).
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from xrec.errors import DataError
from xrec.jobs.config import resolve, validate_config
from xrec.stages import StageRunner, file_digest

log = logging.getLogger(__name__)


def _say(message: str) -> None:
    print(f"[xrec] {message}", file=sys.stderr, flush=True)


def _digests(directory: Path, pattern: str = "*") -> dict[str, str]:
    return {p.name: file_digest(p) for p in sorted(directory.glob(pattern)) if p.is_file()}


def run(config: dict[str, Any], *, engine: str = "local", address: str | None = None) -> Path:
    """Run the whole job described by ``config``; returns the output folder."""
    from xrec.datasets.bookcrossing import DEFAULT_TEMPLATE, load_bookcrossing
    from xrec.datasets.sib200 import load_labels, load_split
    from xrec.ranking.content import prepare_items
    from xrec.ranking.interactions import Interactions

    started = time.perf_counter()
    config = validate_config(config)  # every key typed and in range before any work
    out = resolve(config, "output", "dir", must_exist=False)
    cat_cfg = config.get("catalogue", {})
    catalogue_dir = resolve(config, "catalogue", "data")
    sib_dir = resolve(config, "topics", "sib200")
    template = str(cat_cfg.get("template", DEFAULT_TEMPLATE))
    metadata_fields = list(cat_cfg.get("metadata", ["author"]))

    runner = StageRunner(out / "stages")  # its timings account for the whole run (the report's table)

    # 1. load and validate everything before the expensive stages
    _say("loading and validating inputs")
    with runner.timed("load and validate inputs"):
        catalogue = load_bookcrossing(catalogue_dir)
        items = prepare_items(catalogue.items(template), f"{catalogue_dir}/books")
        interactions = Interactions.build(catalogue.ratings, items["item_id"], source=f"{catalogue_dir}/ratings")
        metadata = {f: catalogue.books[f].to_list() for f in metadata_fields}
        new_language = _new_language(cat_cfg.get("new_language", "auto"), items, catalogue_dir)
        sib_test = load_split(sib_dir, "test")
        load_labels(sib_dir)  # validated here, used by the topics stage
        if sib_test.height == 0:
            raise DataError(f"{sib_dir}: the test split is empty")

    out.mkdir(parents=True, exist_ok=True)
    encoder = _encoder(config.get("encoder", {}), engine, address)
    store_dir = out / "stages" / "embeddings"
    store_dir.mkdir(parents=True, exist_ok=True)

    # 2. embeddings (the store re-embeds only new or changed texts)
    from xrec.evaluation.topics import embed_split
    from xrec.ranking.content import item_vectors

    _say(f"embedding {items.height} catalogue items and {sib_test.height} topic sentences "
         f"with {encoder.name} ({getattr(encoder, 'path', None) or type(encoder).__name__})")
    with runner.timed("embeddings"):
        vectors = item_vectors(encoder, items, store=store_dir / "catalogue.parquet", progress=True)
        # the topic stage's own store of the test split: it tags and evaluates with these vectors
        sib_vectors = embed_split(encoder, sib_test, store_dir / "topics", "test", progress=True)
    base_key = {"encoder": encoder.fingerprint, "encoder_path": getattr(encoder, "path", None),
                "catalogue": _digests(catalogue_dir), "template": template,
                "metadata": metadata_fields}

    # 3. recommendations for every user
    rec_cfg = config.get("recommend", {})
    k = int(rec_cfg.get("k", 10))

    def build_recommendations(tmp: Path) -> dict[str, Any]:
        from xrec.ranking.batch import recommend_to_parquet
        from xrec.ranking.hybrid import HybridRanker

        _say("fitting the hybrid ranker (ALS, content graphs, learned fusion)")
        ranker = HybridRanker.fit(interactions, vectors, texts=items["text"].to_list(),
                                  languages=items["lang"].to_list(), metadata=metadata)
        ranker.save(tmp / "ranker", encoder_fingerprint=encoder.fingerprint)
        users = interactions.users.ids
        _say(f"recommending top-{k} for {len(users)} users ({engine} engine)")
        batch_size = int(rec_cfg.get("batch_size", 256))
        if engine == "ray":
            from xrec.distributed import ray_recommend_to_parquet

            ray_recommend_to_parquet(ranker, users, k, tmp / "recommendations.parquet", batch_size=batch_size)
        else:
            recommend_to_parquet(ranker, users, k, tmp / "recommendations.parquet", batch_size=batch_size,
                                 progress=True)
        recs = pl.read_parquet(tmp / "recommendations.parquet")
        ranker.explain(recs.filter(pl.col("user_id").is_in(example_users(recs, items)) & (pl.col("rank") <= 5)),
                       n=1).write_parquet(tmp / "examples.parquet")
        return {"users": len(users), "k": k, "fusion": ranker.fusion.as_dict()}

    rec_dir, rec_summary = runner.run("recommendations", {**base_key, "k": k, "stage": 3}, build_recommendations)

    # 4-5. evaluation on a held-out split, and the new-language protocol
    models = list(rec_cfg.get("evaluate_models", []))

    def evaluation(protocol_language: str | None):
        def build(tmp: Path) -> dict[str, Any]:
            from xrec.jobs.stages import evaluation_stage

            return evaluation_stage(tmp, catalogue_dir, vectors, items, template, metadata_fields,
                                    protocol_language, None if protocol_language else (models or None))
        return build

    eval_dir, eval_summary = runner.run("evaluation", {**base_key, "models": models, "stage": 2}, evaluation(None))
    nl_dir, nl_summary = (runner.run("new_language", {**base_key, "language": new_language, "stage": 2},
                                     evaluation(new_language)) if new_language else (None, {}))

    # 6. topic tags for the sentences of every language
    top_cfg = config.get("topics", {})
    train_lang = str(top_cfg.get("train_lang", "eng_Latn"))

    def build_topics(tmp: Path) -> dict[str, Any]:
        from xrec.jobs.stages import topics_stage

        return topics_stage(encoder, tmp, sib_dir, train_lang, sib_test, store_dir / "topics", sib_vectors)

    topics_dir, topics_summary = runner.run(
        "topics", {"encoder": encoder.fingerprint, "encoder_path": base_key["encoder_path"],
                   "sib200": _digests(sib_dir), "train_lang": train_lang,
                   "stage": 3}, build_topics)  # 2: tags carry topic_support; 3: one trained classifier

    def build_book_topics(tmp: Path) -> dict[str, Any]:
        from xrec.jobs.stages import book_topics_stage

        return book_topics_stage(tmp, topics_dir / "model", encoder, items, interactions.matrix,
                                 rec_dir / "recommendations.parquet", store_dir / "catalogue_query.parquet")

    bt_dir, bt_summary = runner.run(
        "book_topics", {**base_key, "model": _digests(topics_dir / "model"),
                        "recommendations": file_digest(rec_dir / "recommendations.parquet"), "stage": 1},
        build_book_topics)

    # 7. cross-language neighbours of the catalogue
    nb_k = int(config.get("neighbours", {}).get("k", 5))

    def build_neighbours(tmp: Path) -> dict[str, Any]:
        from xrec.jobs.stages import neighbours_stage

        return neighbours_stage(tmp, items, vectors, catalogue.books, nb_k, encoder.fingerprint)

    nb_dir, nb_summary = runner.run("neighbours", {**base_key, "k": nb_k, "stage": 2}, build_neighbours)

    # 8. retrieval latency on the real vectors
    lat_cfg = config.get("latency", {})

    def build_latency(tmp: Path) -> dict[str, Any]:
        from xrec.jobs.stages import latency_stage

        corpus = np.concatenate([vectors[np.any(vectors != 0, axis=1)], sib_vectors])
        return latency_stage(tmp, corpus, list(lat_cfg.get("kinds", ["exact", "hnsw"])),
                             int(lat_cfg.get("queries", 500)))

    lat_dir, lat_summary = runner.run(
        "latency", {**base_key, "sib200": _digests(sib_dir, "test*"), "latency": lat_cfg, "stage": 2},
        build_latency)

    # 9. collect the results and write the report
    _publish(rec_dir / "recommendations.parquet", out / "recommendations.parquet")
    _publish(rec_dir / "examples.parquet", out / "recommendation_examples.parquet")
    _publish(nb_dir / "neighbours.parquet", out / "neighbours.parquet")
    _publish(topics_dir / "tags.parquet", out / "topic_tags.parquet")
    _publish(bt_dir / "book_topics.parquet", out / "book_topics.parquet")
    for stage_dir, prefix in ((eval_dir, ""), (nl_dir, "new_language_"), (topics_dir, ""), (lat_dir, "")):
        for png in (stage_dir.glob("*.png") if stage_dir else []):
            _publish(png, out / f"{prefix}{png.name}")
    from xrec.jobs.report import write_report

    report = write_report(out, config=config, engine=engine, encoder=encoder, items=items,
                          summaries={"recommendations": rec_summary, "evaluation": eval_summary,
                                     "new_language": nl_summary, "topics": topics_summary,
                                     "book_topics": bt_summary,
                                     "neighbours": nb_summary, "latency": lat_summary},
                          timings=runner.timings, total_s=time.perf_counter() - started)
    _say(f"done in {time.perf_counter() - started:.0f}s: {report}")
    return out


def example_users(recs: pl.DataFrame, items: pl.DataFrame, n: int = 3) -> list[Any]:
    """The ``n`` users whose recommendations span the most languages (ties: smallest id)."""
    langs = recs.join(items.select("item_id", "lang"), on="item_id", how="left")
    by_user = langs.group_by("user_id").agg(pl.col("lang").n_unique().alias("n_lang"))
    return by_user.sort(["n_lang", "user_id"], descending=[True, False])["user_id"].head(n).to_list()


def _new_language(value: Any, items: pl.DataFrame, source: Path) -> str | None:
    """The configured new language: a code, ``"auto"`` (the catalogue's second most common
    language) or ``""`` / ``false`` (no new-language protocol)."""
    if value in ("", False, None):
        return None
    counts = items["lang"].drop_nulls().value_counts(sort=True)
    if value == "auto":
        return counts["lang"][1] if counts.height > 1 else None
    if value not in counts["lang"].to_list():
        raise DataError(f"config [catalogue] new_language = {value!r}: no item of {source} has it; languages: "
                        f"{', '.join(counts['lang'].head(12).to_list())}")
    return str(value)


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
