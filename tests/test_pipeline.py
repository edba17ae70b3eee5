"""The main job end to end on a small real slice of data/, and its bad-input behaviour."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest
from xrec.errors import DataError
from xrec.jobs.config import load_config
from xrec.jobs.main_job import run


def _write_csv_gz(frame: pl.DataFrame, path: Path) -> None:
    with gzip.open(path, "wb") as handle:
        handle.write(frame.write_csv().encode("utf-8"))


def _write_jsonl_gz(rows: list[dict], path: Path) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


@pytest.fixture(scope="module")
def small_data(data_dir, tmp_path_factory) -> Path:
    """120 users of the bundled Book-Crossing slice with the books they read; SIB-200 in three
    languages (subsets)."""
    root = tmp_path_factory.mktemp("data")
    bx = root / "bookcrossing"
    bx.mkdir()
    src = data_dir / "bookcrossing"
    ratings = pl.read_csv(src / "ratings.csv.gz", schema_overrides={"item_id": pl.String})
    users = ratings["user_id"].unique().sort()
    keep = pl.concat([users.head(60), users.tail(60)])  # both ends: readers of several languages
    ratings = ratings.filter(pl.col("user_id").is_in(keep.implode()))
    _write_csv_gz(ratings, bx / "ratings.csv.gz")  # the default config's file names
    _write_csv_gz(pl.read_csv(src / "books.csv.gz", schema_overrides={"item_id": pl.String, "year": pl.String})
                  .filter(pl.col("item_id").is_in(ratings["item_id"].implode())), bx / "books.csv.gz")
    sib = root / "sib200"
    sib.mkdir()
    langs = {"eng_Latn", "deu_Latn", "zho_Hans"}
    for split, per_lang in (("train", 120), ("dev", 30), ("test", 40)):
        rows = [json.loads(line) for line in gzip.open(data_dir / "sib200" / f"{split}.jsonl.gz", "rt",
                                                       encoding="utf-8")]
        keep_ids = sorted({r["index_id"] for r in rows})[:per_lang]
        _write_jsonl_gz([r for r in rows if r["lang"] in langs and r["index_id"] in set(keep_ids)],
                        sib / f"{split}.jsonl.gz")
    (sib / "labels.txt").write_text((data_dir / "sib200" / "labels.txt").read_text(encoding="utf-8"))
    return root


#: The settings of the small runs below, beside their data and output paths.
SMALL = ["recommend.batch_size=16", 'recommend.evaluate_models=["popularity", "als", "content", "tfidf", "hybrid"]',
         'latency.kinds=["exact", "hnsw"]', "latency.queries=40"]


def _config(data: Path, out: Path) -> dict:
    return load_config(None, [f"output.dir={out}", f"items.path={data / 'bookcrossing' / 'books.csv.gz'}",
                              f"interactions.path={data / 'bookcrossing' / 'ratings.csv.gz'}",
                              f"topics.sib200={data / 'sib200'}", *SMALL])


@pytest.fixture(scope="module")
def job_out(small_data, tmp_path_factory) -> Path:
    """The output folder of one run of the main job on the small data."""
    out = tmp_path_factory.mktemp("job") / "out"
    run(_config(small_data, out))
    return out


@pytest.mark.slow
def test_main_job_writes_every_output_and_reuses_stages(small_data, job_out):
    out = job_out
    recs = pl.read_parquet(out / "recommendations.parquet")
    assert recs["user_id"].n_unique() == 120
    assert recs.group_by("user_id").len()["len"].max() == 10
    seen = pl.read_csv(small_data / "bookcrossing" / "ratings.csv.gz", schema_overrides={"item_id": pl.String})
    assert recs.join(seen.select("user_id", "item_id"), on=["user_id", "item_id"]).height == 0  # never seen items

    examples = pl.read_parquet(out / "recommendation_examples.parquet")  # explained top-5 of 3 readers
    assert examples["user_id"].n_unique() == 3 and examples.height == 15
    assert examples.join(recs, on=["user_id", "rank", "item_id"]).height == 15
    assert {"lang", "because_item_id", "because_lang", "because_similarity"} <= set(examples.columns)
    assert (examples["because_item_id"].list.len() == 1).all()  # every such reader has a history
    assert examples.join(seen.select("user_id", pl.col("item_id").alias("because")),
                         left_on=["user_id", pl.col("because_item_id").list.first()],
                         right_on=["user_id", "because"]).height == 15  # "because" is from the reader's history

    neighbours = pl.read_parquet(out / "neighbours.parquet")
    assert (neighbours["lang"] != neighbours["neighbour_lang"]).all()
    assert neighbours["text"].is_not_null().all() and neighbours["neighbour_text"].is_not_null().all()
    tags = pl.read_parquet(out / "topic_tags.parquet")
    labels = set((small_data / "sib200" / "labels.txt").read_text().split("\n")) - {""}
    assert tags.height == 120 and set(tags["topic"].unique()) <= labels
    books = pl.read_parquet(out / "book_topics.parquet")  # the catalogue tagged by the same head
    assert books["item_id"].is_unique().all() and set(books["topic"].unique()) <= labels
    assert books["topic_score"].is_between(0, 1).all()
    # ... trained on passage vectors: it tags the catalogue's own vectors, no text is embedded twice
    model = json.loads((out / "stages" / "topics" / "model" / "manifest.json").read_text())
    assert model["text_kind"] == "passage"
    assert sorted(p.name for p in (out / "stages" / "embeddings").glob("*.parquet")) == ["catalogue.parquet"]
    report = (out / "report.md").read_text(encoding="utf-8")
    for section in ("## Recommendations", "## Recommendation quality", "## New-language protocol",
                    "## Topic tags", "## Topics at work", "## Cross-language neighbours", "## Retrieval latency"):
        assert section in report
    assert "Language exposure" in report and "tfidf" in report and "| because |" in report
    for png in ("metrics_by_model.png", "new_language_metrics_by_model.png", "accuracy_by_language.png",
                "latency_vs_recall.png"):
        assert (out / png).stat().st_size > 1000

    # the stage table accounts for the whole run, the embedding step included
    rows = [line.split("|")[1:3] for line in report.split("## Stages")[1].split("##")[0].splitlines()
            if line.startswith("| ") and not line.startswith("| stage")]
    seconds = {name.strip(): float(value) for name, value in rows}
    assert {"load and validate inputs", "embeddings", "recommendations", "topics"} <= set(seconds)
    total = seconds.pop("**total**")
    assert sum(seconds.values()) == pytest.approx(total, abs=0.05 * (len(seconds) + 1))  # rounded rows

    summary = json.loads((out / "stages" / "neighbours" / "manifest.json").read_text())["summary"]
    assert 0 < summary["top1_same"]["author"] < 1  # other editions of the same writer are found across languages
    shown = summary["examples"]  # the report's examples: chosen by evidence, most share the author
    assert shown and sum(bool(e["same"]) for e in shown) >= len(shown) / 2
    assert all(e["lang"] != e["neighbour_lang"] for e in shown)
    assert "## Language codes" in report and "| `de` | German |" in report
    evaluation = json.loads((out / "stages" / "evaluation" / "evaluation.json").read_text())
    assert "minority_language" in evaluation["models"]["hybrid"]["slices"]
    new = json.loads((out / "stages" / "new_language" / "evaluation.json").read_text())
    assert new["protocol"]["new_language"] and "auc" in new["models"]["hybrid"]

    # a second run reuses every stage and gives the same recommendations
    before = {p.name: p.stat().st_mtime_ns for p in (out / "stages").iterdir()}
    run(_config(small_data, out))
    assert {p.name: p.stat().st_mtime_ns for p in (out / "stages").iterdir()} == before
    assert pl.read_parquet(out / "recommendations.parquet").equals(recs)
    assert "| recommendations |" in (out / "report.md").read_text() and "| yes |" in (out / "report.md").read_text()


def test_bad_inputs_fail_before_expensive_stages(small_data, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(DataError, match="does not exist"):
        run(load_config(None, [f"output.dir={out}", "items.path=/nonexistent/books.csv"]))
    assert not out.exists()

    broken = tmp_path / "broken"
    (broken / "bookcrossing").mkdir(parents=True)
    ratings = pl.read_csv(small_data / "bookcrossing" / "ratings.csv.gz", schema_overrides={"item_id": pl.String})
    ratings.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(pl.lit("999999999X")).otherwise(pl.col("item_id"))
                         .alias("item_id")).write_csv(broken / "bookcrossing" / "ratings.csv")
    config = _config(small_data, out)
    config["interactions"]["path"] = str(broken / "bookcrossing" / "ratings.csv")
    with pytest.raises(DataError, match="999999999X"):
        run(config)
    assert not (out / "stages").exists()
    config = _config(small_data, out)
    config["new_language"]["language"] = "fin_Latn"  # normalised: fi
    with pytest.raises(DataError, match=r"\[new_language\] language = 'fi': no item"):
        run(config)

    with pytest.raises(DataError, match="expected section.key=value"):
        load_config(None, ["k=3"])


@pytest.mark.slow
def test_a_copy_of_the_default_config_runs_from_any_folder(small_data, job_out, tmp_path, monkeypatch):
    """``xrec run --config`` a verbatim copy of the default config, from a folder outside the checkout:
    its relative paths follow the copy (its ``root`` and data folders beside it), and the outputs are
    those of the run above. The copied stage cache proves the config resolved to the same inputs:
    every stage is reused."""
    import shutil

    from xrec.cli.main import main
    from xrec.jobs import DEFAULT_CONFIG

    project = tmp_path / "project"  # the checkout's layout: pipelines/<config>, data/<datasets>
    (project / "pipelines").mkdir(parents=True)
    shutil.copyfile(DEFAULT_CONFIG, project / "pipelines" / "my.toml")
    (project / "data").mkdir()
    for name in ("bookcrossing", "sib200"):
        (project / "data" / name).symlink_to(small_data / name, target_is_directory=True)
    shutil.copytree(job_out / "stages", project / "out" / "stages")
    before = {p.name: p.stat().st_mtime_ns for p in (project / "out" / "stages").iterdir()}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    sets = [arg for setting in SMALL for arg in ("--set", setting)]
    assert main(["run", "--config", str(project / "pipelines" / "my.toml"), *sets]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (project / "out" / "stages").iterdir()} == before
    for name in ("recommendations.parquet", "neighbours.parquet", "topic_tags.parquet"):
        assert pl.read_parquet(project / "out" / name).equals(pl.read_parquet(job_out / name)), name
    assert not any(elsewhere.iterdir())  # nothing written relative to the working directory
