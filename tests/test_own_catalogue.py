"""The main job and the fit -> recommend/rerank/serve loop on a small catalogue written as a team
would (``data/catalogues/shop``: products in 11 languages, some rows without ``lang``, weights, no
timestamps), from the command line, with the real encoder."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from xrec.cli.main import main

pytestmark = pytest.mark.slow

SHOP_ARGS = ["--template", "{title}. {description}", "--metadata", "brand"]


@pytest.fixture(scope="module")
def shop(data_dir, tmp_path_factory) -> dict[str, Path]:
    """The shop catalogue with its ``lang`` codes in one system: those of ``item_languages.csv``
    where the table gives a code (it mixes ``de``, ``deu`` and ``German`` on purpose, for the
    language normalisation), none where it gives none."""
    root = data_dir / "catalogues" / "shop"
    items = pl.read_csv(root / "items.csv", infer_schema_length=0)
    codes = pl.read_csv(root / "item_languages.csv", infer_schema_length=0).rename({"lang": "code"})
    items = items.join(codes, on="item_id", how="left", maintain_order="left").with_columns(
        lang=pl.when(pl.col("lang").is_null()).then(None).otherwise(pl.col("code"))).drop("code")
    path = tmp_path_factory.mktemp("shop") / "items.csv"
    items.write_csv(path)
    return {"items": path, "interactions": root / "interactions.csv"}


@pytest.fixture(scope="module")
def job_out(shop, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("job") / "out"
    assert main(["run", "--items", str(shop["items"]), "--interactions", str(shop["interactions"]), *SHOP_ARGS,
                 "--out", str(out), "--set", "topics.sib200=", "--set",
                 'recommend.evaluate_models=["popularity", "als", "content", "tfidf", "hybrid"]']) == 0
    return out


def test_the_main_job_runs_on_a_small_catalogue(shop, job_out):
    out = job_out
    seen = pl.read_csv(shop["interactions"])
    recs = pl.read_parquet(out / "recommendations.parquet")
    assert recs["user_id"].n_unique() == seen["user_id"].n_unique() == 34
    assert recs.group_by("user_id").len()["len"].max() == 10
    assert recs.join(seen, on=["user_id", "item_id"]).height == 0  # nothing the user has seen

    report = (out / "report.md").read_text(encoding="utf-8")
    assert "weights: yes; timestamps: no" in report
    assert "items had no language code: detected from the text" in report and "random 20%" in report
    assert "- `topics`: no topic data ([topics] sib200 is empty)" in report
    assert "- `book_topics`: it needs the topics stage" in report
    assert "- `latency`: 94 vectors are too few to time retrieval" in report
    for section in ("## Catalogue", "## Recommendations", "## Recommendation quality", "## Cross-language neighbours",
                    "## Language codes"):
        assert section in report
    assert "| `th` | Thai |" in report and "| `(none)` | no language code given for the item |" in report
    evaluation = json.loads((out / "stages" / "evaluation" / "evaluation.json").read_text())
    assert set(evaluation["models"]) == {"popularity", "als", "content", "tfidf", "hybrid"}
    assert (out / "metrics_by_model.png").stat().st_size > 1000

    summary = json.loads((out / "stages" / "neighbours" / "manifest.json").read_text())["summary"]
    assert summary["without_language"] < 12 and summary["languages"] == 11  # detection fills most of 12 empty
    assert summary["top1_same"]["brand"] > 0.5  # the nearest item in another language: mostly the same product line
    shown = summary["examples"]
    assert len(shown) == 8 and all(e["lang"] != e["neighbour_lang"] for e in shown)
    assert all(e["same"] == ["brand"] for e in shown)  # chosen by evidence: a shared brand first
    assert "| brand |" in report

    before = {p.name: p.stat().st_mtime_ns for p in (out / "stages").iterdir()}  # a second run reuses every stage
    assert main(["run", "--items", str(shop["items"]), "--interactions", str(shop["interactions"]), *SHOP_ARGS,
                 "--out", str(out), "--set", "topics.sib200=", "--set",
                 'recommend.evaluate_models=["popularity", "als", "content", "tfidf", "hybrid"]']) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "stages").iterdir()} == before


def test_fit_writes_a_ranker_that_recommend_rerank_and_serve_read(shop, job_out, tmp_path, encoder, caplog):
    import logging

    from xrec.artifacts import read_manifest
    from xrec.serve import Service

    caplog.set_level(logging.INFO, logger="xrec")
    ranker, index = tmp_path / "ranker", tmp_path / "index"
    store = job_out / "stages" / "embeddings" / "catalogue.parquet"  # the job's vectors: nothing re-embedded
    assert main(["fit", "--items", str(shop["items"]), "--interactions", str(shop["interactions"]), *SHOP_ARGS,
                 "--out", str(ranker), "--index", str(index), "--store", str(store)]) == 0
    from xrec.ranking.persist import FORMAT_VERSION, KIND

    manifest = read_manifest(ranker, KIND, FORMAT_VERSION)
    assert (manifest["users"], manifest["items"]) == (34, 94)
    assert manifest["encoder_fingerprint"] == encoder.fingerprint
    assert "94 of 94 texts reused, 0 embedded" in caplog.text

    recs = tmp_path / "recs.parquet"
    assert main(["recommend", "--ranker", str(ranker), "--out", str(recs), "--k", "5"]) == 0
    top = pl.read_parquet(recs)
    assert top["user_id"].n_unique() == 34 and top.group_by("user_id").len()["len"].min() == 5
    assert top.join(pl.read_csv(shop["interactions"]), on=["user_id", "item_id"]).height == 0

    candidates = tmp_path / "candidates.csv"  # the ranker's own top-5, reversed: re-ranking restores the order
    top.sort(["user_id", "rank"], descending=[False, True]).select("user_id", "item_id").write_csv(candidates)
    again = tmp_path / "reranked.parquet"
    assert main(["rerank", "--ranker", str(ranker), "--candidates", str(candidates), "--out", str(again)]) == 0
    assert pl.read_parquet(again).sort(["user_id", "rank"])["item_id"].to_list() == \
        top.sort(["user_id", "rank"])["item_id"].to_list()

    service = Service(index, ranker=ranker, encoder=encoder)
    try:
        user = top["user_id"][0]
        body, _ = service.call("recommend", {"user_id": user, "k": 3})  # what POST /recommend answers
        expected = top.filter(pl.col("user_id") == user).sort("rank")["item_id"].head(3).to_list()
        assert [hit["id"] for hit in body["items"]] == expected
    finally:
        service.close()
