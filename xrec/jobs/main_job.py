"""The main job: one catalogue in (an items table and an interactions table, any fields);
recommendations, evaluations, cross-language neighbours, topic tags and a latency report out, all
in one folder.

Stages, each a thin composition of xrec's public API, cached under ``<out>/stages`` and reused
while their inputs and the encoder fingerprint are unchanged; ``[job] stages`` picks them, and a
stage the catalogue cannot feed is skipped with its reason in the report
(:func:`xrec.jobs.catalogue.plan_stages`):

1. load and validate every input (errors before any expensive stage; :mod:`xrec.jobs.catalogue`);
2. embed the catalogue and the topic test sentences (embedding store: only new or changed texts);
3. ``recommendations``: the hybrid ranker fitted on all interactions, top-k for every user;
4. ``evaluation``: every model side by side on a held-out split, with language slices;
5. ``new_language``: the new-language protocol (that language's catalogue unseen in training);
6. ``topics``: a topic head trained on one language, tagging the sentences of every language;
   ``book_topics``: the same head tagging the catalogue, and each topic's share of the
   recommendation slots against its share of the interactions;
7. ``neighbours``: each item's nearest items in other languages;
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

#: The prefix kind of the topic stages' texts: the catalogue's (:func:`xrec.ranking.content.item_vectors`),
#: so that the topic head tags the catalogue's vectors and no text is embedded twice in a run.
TOPIC_KIND = "passage"


def _say(message: str) -> None:
    print(f"[xrec] {message}", file=sys.stderr, flush=True)


def _digests(directory: Path, pattern: str = "*") -> dict[str, str]:
    return {p.name: file_digest(p) for p in sorted(directory.glob(pattern)) if p.is_file()}


def run(config: dict[str, Any], *, engine: str = "local", address: str | None = None) -> Path:
    """Run the whole job described by ``config``; returns the output folder."""
    from xrec.artifacts import check_writable
    from xrec.catalogue.interactions import Interactions
    from xrec.datasets.sib200 import load_labels, load_split
    from xrec.evaluation.splits import hold_out, split_of
    from xrec.jobs.catalogue import load_catalogue, plan_stages

    started = time.perf_counter()
    config = validate_config(config)  # every key typed and in range before any work
    out = resolve(config, "output", "dir", must_exist=False)
    check_writable(Path(out) / "job.json")  # a read-only or full output folder fails now, not after the fit
    sib_dir = Path(config["topics"]["sib200"]) if config["topics"]["sib200"] else None
    asked = set(config["job"]["stages"])
    runner = StageRunner(out / "stages")  # its timings account for the whole run (the report's table)

    # 1. load and validate everything before the expensive stages
    _say("loading and validating inputs")
    with runner.timed("load and validate inputs"):
        catalogue = load_catalogue(config)
        items, interactions_frame = catalogue.items, catalogue.interactions
        interactions = Interactions.build(interactions_frame, items["item_id"],
                                          source=str(catalogue.files[1]))
        held = None
        if (interactions_frame.group_by("user_id").len()["len"] >= 2).any():
            held = hold_out(interactions_frame, source=str(catalogue.files[1]))
        sib_test = None
        if sib_dir is not None and "topics" in asked:  # their vectors join the latency stage's corpus
            sib_test = load_split(sib_dir, "test")
            load_labels(sib_dir)  # validated here, used by the topics stage
            if sib_test.height == 0:
                raise DataError(f"{sib_dir}: the test split is empty")
        n_latency = int(items["has_text"].sum()) + (sib_test.height if sib_test is not None else 0)
        new_language, skipped = plan_stages(config, catalogue, held[1] if held else None, n_latency)
    for name, why in skipped.items():
        if name in asked:
            _say(f"skipping stage {name}: {why}")

    out.mkdir(parents=True, exist_ok=True)
    encoder = _encoder(config.get("encoder", {}), engine, address)
    store_dir = out / "stages" / "embeddings"
    store_dir.mkdir(parents=True, exist_ok=True)

    # 2. embeddings (the store re-embeds only new or changed texts)
    from xrec.evaluation.topics import embed_split
    from xrec.ranking.content import item_vectors

    topic_texts = f" and {sib_test.height} topic sentences" if sib_test is not None else ""
    _say(f"embedding {items.height} catalogue items{topic_texts} with {encoder.name} "
         f"({getattr(encoder, 'path', None) or type(encoder).__name__})")
    sib_vectors = np.zeros((0, encoder.dim), dtype=np.float32)
    with runner.timed("embeddings"):
        vectors = item_vectors(encoder, items, store=store_dir / "catalogue.parquet", progress=True)
        if sib_test is not None:
            # the topic stage's own store of the test split: it tags and evaluates with these vectors,
            # embedded as passages like the catalogue, which the topic head then tags without embedding again
            sib_vectors = embed_split(encoder, sib_test, store_dir / "topics", "test", progress=True,
                                      kind=TOPIC_KIND)
    base_key = {"encoder": encoder.fingerprint, "encoder_path": getattr(encoder, "path", None),
                "catalogue": {p.name: file_digest(p) for p in catalogue.files},
                "items": {k: v for k, v in config["items"].items() if k != "path"},
                "interactions": {k: v for k, v in config["interactions"].items() if k != "path"}}
    summaries: dict[str, dict[str, Any]] = {}
    dirs: dict[str, Path] = {}

    def stage(name: str, key: dict[str, Any], build) -> None:
        if name not in skipped:
            dirs[name], summaries[name] = runner.run(name, key, build)

    # 3. recommendations for every user
    rec_cfg = config["recommend"]
    k = int(rec_cfg["k"])
    languages = items["lang"].to_list() if catalogue.languages else None
    graphs: dict[str, Any] = {}

    def content_graphs(langs: list[str | None] | None) -> Any:
        """The hybrid's content graphs of the catalogue, built once a run for the three stages that
        fit it (the same vectors, texts and metadata; ``langs`` as the stage passes them)."""
        from xrec.catalogue.languages import item_codes
        from xrec.progress import phase
        from xrec.ranking.config import HybridConfig
        from xrec.ranking.views import ContentGraphs

        codes = item_codes(langs)
        if graphs.get("languages", ()) != codes:
            with phase("hybrid: content graphs (embedding, lexical, metadata)"):
                graphs.update(languages=codes, graphs=ContentGraphs.build(
                    vectors, texts=items["text"].to_list(), languages=codes, metadata=catalogue.metadata,
                    k=HybridConfig().graph_k))
        return graphs["graphs"]

    def build_recommendations(tmp: Path) -> dict[str, Any]:
        from xrec.ranking.batch import recommend_to_parquet
        from xrec.ranking.hybrid import HybridRanker

        _say("fitting the hybrid ranker (ALS, content graphs, learned fusion)")
        ranker = HybridRanker.fit(interactions, vectors, texts=items["text"].to_list(), languages=languages,
                                  metadata=catalogue.metadata, content=content_graphs(languages))
        ranker.save(tmp / "ranker", encoder_fingerprint=encoder.fingerprint)
        users = interactions.users.ids
        _say(f"recommending top-{k} for {len(users)} users ({engine} engine)")
        batch_size = int(rec_cfg["batch_size"])
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

    stage("recommendations", {**base_key, "k": k, "stage": 4}, build_recommendations)

    # 4-5. evaluation on a held-out split, and the new-language protocol
    models = list(rec_cfg["evaluate_models"])

    def evaluation(protocol_language: str | None):
        def build(tmp: Path) -> dict[str, Any]:
            from xrec.jobs.stages import evaluation_stage

            assert held is not None  # the stage is planned only with a held-out split
            train, test, how = held
            split = split_of(items, train, test, how, source=catalogue.files[1].parent,
                             new_language=protocol_language, metadata=catalogue.metadata)
            langs = split.items["lang"].to_list() if "lang" in split.items.columns else None
            return evaluation_stage(tmp, split, vectors, None if protocol_language else (models or None),
                                    content=content_graphs(langs))
        return build

    stage("evaluation", {**base_key, "models": models, "stage": 3}, evaluation(None))
    stage("new_language", {**base_key, "language": new_language, "stage": 3}, evaluation(new_language))

    # 6. topic tags for the sentences of every language, and for the catalogue
    train_lang = str(config["topics"]["train_lang"])

    def build_topics(tmp: Path) -> dict[str, Any]:
        from xrec.jobs.stages import topics_stage

        assert sib_dir is not None and sib_test is not None  # the stage runs only with SIB-200
        return topics_stage(encoder, tmp, sib_dir, train_lang, sib_test, store_dir / "topics", sib_vectors,
                            text_kind=TOPIC_KIND)

    if sib_dir is not None:  # 2: tags carry topic_support; 3: one trained classifier; 4: on passage vectors
        stage("topics", {"encoder": encoder.fingerprint, "encoder_path": base_key["encoder_path"],
                         "sib200": _digests(sib_dir), "train_lang": train_lang, "stage": 4}, build_topics)

    def build_book_topics(tmp: Path) -> dict[str, Any]:
        from xrec.jobs.stages import book_topics_stage

        return book_topics_stage(tmp, dirs["topics"] / "model", encoder, items, vectors, interactions.matrix,
                                 dirs["recommendations"] / "recommendations.parquet")

    if "topics" in dirs and "recommendations" in dirs:  # 3: the catalogue's own vectors, not embedded again
        stage("book_topics", {**base_key, "model": _digests(dirs["topics"] / "model"),
                              "recommendations": file_digest(dirs["recommendations"] / "recommendations.parquet"),
                              "stage": 3}, build_book_topics)

    # 7. cross-language neighbours of the catalogue
    nb_k = int(config["neighbours"]["k"])

    def build_neighbours(tmp: Path) -> dict[str, Any]:
        from xrec.jobs.neighbours import neighbours_stage

        return neighbours_stage(tmp, items, vectors, catalogue.metadata, nb_k, encoder.fingerprint)

    stage("neighbours", {**base_key, "k": nb_k, "stage": 3}, build_neighbours)

    # 8. retrieval latency on the real vectors
    lat_cfg = config["latency"]

    def build_latency(tmp: Path) -> dict[str, Any]:
        from xrec.jobs.stages import latency_stage

        corpus = np.concatenate([vectors[np.any(vectors != 0, axis=1)], sib_vectors])
        return latency_stage(tmp, corpus, list(lat_cfg["kinds"]), int(lat_cfg["queries"]))

    stage("latency", {**base_key, "sib200": _digests(sib_dir, "test*") if sib_dir else None, "latency": lat_cfg,
                      "stage": 2}, build_latency)

    # 9. collect the results and write the report
    for stage_name, src, dst in (("recommendations", "recommendations.parquet", "recommendations.parquet"),
                                 ("recommendations", "examples.parquet", "recommendation_examples.parquet"),
                                 ("neighbours", "neighbours.parquet", "neighbours.parquet"),
                                 ("topics", "tags.parquet", "topic_tags.parquet"),
                                 ("book_topics", "book_topics.parquet", "book_topics.parquet")):
        if stage_name in dirs:
            _publish(dirs[stage_name] / src, out / dst)
    for stage_name, prefix in (("evaluation", ""), ("new_language", "new_language_"), ("topics", ""),
                               ("latency", "")):
        for png in (dirs[stage_name].glob("*.png") if stage_name in dirs else []):
            _publish(png, out / f"{prefix}{png.name}")
    from xrec.jobs.report import write_report

    report = write_report(out, config=config, engine=engine, encoder=encoder, catalogue=catalogue,
                          summaries=summaries, skipped=skipped, timings=runner.timings,
                          total_s=time.perf_counter() - started)
    _say(f"done in {time.perf_counter() - started:.0f}s: {report}")
    return out


def example_users(recs: pl.DataFrame, items: pl.DataFrame, n: int = 3) -> list[Any]:
    """The ``n`` users whose recommendations span the most languages (ties: smallest id)."""
    langs = recs.join(items.select("item_id", "lang"), on="item_id", how="left")
    by_user = langs.group_by("user_id").agg(pl.col("lang").n_unique().alias("n_lang"))
    return by_user.sort(["n_lang", "user_id"], descending=[True, False])["user_id"].head(n).to_list()


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
