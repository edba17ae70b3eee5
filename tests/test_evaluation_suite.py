"""The evaluation suite: the MovieLens new-Spanish-catalogue converter, the new-catalogue protocol on a
generic layout, user subsamples, bootstrap intervals, and a suite run over one small catalogue."""

from __future__ import annotations

import json
import logging

import numpy as np
import polars as pl
import pytest
from xrec.datasets.movielens_es import write_new_language_catalogue
from xrec.errors import DataError
from xrec.evaluation.metrics import mean_interval
from xrec.evaluation.splits import load_split, sample_users


@pytest.fixture(scope="module")
def ml_es(data_dir, tmp_path_factory):
    """The bundled MovieLens sample with its 400 Spanish titles, as the new-Spanish catalogue and its
    English reference."""
    root = tmp_path_factory.mktemp("ml_es")
    es = write_new_language_catalogue(data_dir / "movielens", data_dir / "movielens_es", root / "es")
    en = write_new_language_catalogue(data_dir / "movielens", data_dir / "movielens_es", root / "en", english=True)
    return es, en


def test_new_spanish_catalogue_and_its_english_reference(ml_es, data_dir):
    es, en = ml_es
    items_es, items_en = pl.read_parquet(es / "items.parquet"), pl.read_parquet(en / "items.parquet")
    new = pl.read_csv(es / "new_items.csv")["item_id"]
    assert new.equals(pl.read_csv(en / "new_items.csv")["item_id"])  # the same movies in both
    spanish = pl.read_csv(data_dir / "movielens_es" / "movies_es.csv.gz")
    assert len(new) == int(0.3 * spanish.height) and new.is_in(spanish["movieId"].implode()).all()
    shown = items_es.filter(pl.col("item_id").is_in(new.implode()))
    assert (shown["lang"] == "es").all() and (items_es.filter(~pl.col("item_id").is_in(new.implode()))["lang"]
                                              == "en").all()
    titles = dict(spanish.select("movieId", "title_es").iter_rows())
    first = shown.row(0, named=True)
    assert first["text"].startswith(titles[first["item_id"]]) and "Géneros: " in first["text"]
    assert "Genres:" not in " ".join(shown["text"].to_list())
    assert (items_en["lang"] == "en").all()
    reference = items_en.filter(pl.col("item_id") == first["item_id"]).row(0, named=True)
    assert "Genres: " in reference["text"] and reference["year"] == first["year"]
    assert items_es.select("item_id", "text").join(items_en.select("item_id", "text"), on="item_id").filter(
        ~pl.col("item_id").is_in(new.implode()) & (pl.col("text") != pl.col("text_right"))).height == 0
    again = write_new_language_catalogue(data_dir / "movielens", data_dir / "movielens_es", es.parent / "again")
    assert pl.read_csv(again / "new_items.csv")["item_id"].equals(new)  # seeded
    manifest = json.loads((es / "manifest.json").read_text())
    assert manifest["new_items"] == len(new) and manifest["run"].endswith("--new-language es")


def test_new_language_and_new_items_give_the_same_protocol(ml_es):
    es, en = ml_es
    by_language = load_split(es, new_language="es")
    by_list = load_split(en, new_items=en / "new_items.csv")
    assert np.array_equal(by_language.candidates, by_list.candidates) and len(by_language.candidates) == 120
    assert by_language.test.sort("user_id", "item_id").equals(by_list.test.sort("user_id", "item_id"))
    assert by_language.train.frame.height == by_list.train.frame.height
    new = set(pl.read_csv(es / "new_items.csv")["item_id"].to_list())
    assert not new & set(by_language.train.frame["item_id"].to_list())  # nobody has used the new catalogue
    assert "timestamp" in by_language.test.columns and "last 20%" in by_language.info["split"]
    with pytest.raises(DataError, match=r"new_items.csv: 1 item id\(s\) not in the catalogue"):
        bad = es.parent / "bad" / "new_items.csv"
        bad.parent.mkdir()
        bad.write_text("item_id\n1\n999999999\n")
        load_split(es, new_items=bad)
    with pytest.raises(DataError, match="either new_language or new_items"):
        load_split(es, new_language="es", new_items=[1])


def test_sample_users_keeps_a_seeded_share_with_all_their_interactions(data_dir):
    split = load_split(data_dir / "bookcrossing")
    frame = split.train.frame.vstack(split.test.select(split.train.frame.columns))
    part = sample_users(frame, 0.1, seed=0)
    users = frame["user_id"].n_unique()
    assert part["user_id"].n_unique() == int(0.1 * users)
    assert part.height == frame.filter(pl.col("user_id").is_in(part["user_id"].unique().implode())).height
    assert part.equals(sample_users(frame, 0.1, seed=0))
    assert not set(part["user_id"].to_list()) == set(sample_users(frame, 0.1, seed=1)["user_id"].to_list())
    small = load_split(data_dir / "bookcrossing", users=0.1)
    assert small.info["user_fraction"] == 0.1 and small.info["items"] == split.info["items"]  # catalogue whole
    with pytest.raises(DataError, match="must be in"):
        sample_users(frame, 0.0)


def test_mean_interval_brackets_the_mean():
    values = np.random.default_rng(0).random(400)
    low, high = mean_interval(values)
    assert low < values.mean() < high and high - low < 0.1
    assert mean_interval(np.full(50, 0.25)) == pytest.approx((0.25, 0.25))
    assert mean_interval(np.array([])) is None


@pytest.fixture(scope="module")
def small_catalogue(data_dir, tmp_path_factory):
    """A small generic catalogue (items with lang, interactions with weight, no timestamps): the
    first 40 users of the bundled Book-Crossing slice and the books they read."""
    root = tmp_path_factory.mktemp("catalogues") / "books"
    root.mkdir()
    ratings = pl.read_csv(data_dir / "bookcrossing" / "ratings.csv.gz", schema_overrides={"item_id": pl.String})
    ratings = ratings.filter(pl.col("user_id").is_in(ratings["user_id"].unique().sort().head(40).implode()))
    books = pl.read_csv(data_dir / "bookcrossing" / "books.csv.gz", schema_overrides={"item_id": pl.String})
    books.filter(pl.col("item_id").is_in(ratings["item_id"].implode())).select(
        "item_id", pl.col("title").alias("text"), "lang").write_csv(root / "items.csv")
    ratings.select("user_id", "item_id", (pl.col("rating") + 1.0).alias("weight")).write_csv(root / "interactions.csv")
    return root


@pytest.mark.slow
def test_suite_over_a_small_catalogue_reuses_its_store_and_merges_results(small_catalogue, encoder, tmp_path,
                                                                          caplog):
    from xrec.evaluation.suite import Member, default_members, run_suite, select
    from xrec.evaluation.suite_report import format_table, plot_suite

    members = default_members(tmp_path / "no-shared", small_catalogue.parent, tmp_path / "work")
    assert [m.name for m in members][:3] == ["books", "ml-es", "ml-es-en"] and members[-1].name == "bx"
    with pytest.raises(DataError, match=r"unknown suite member\(s\) \['nope'\]"):
        select(members, ["nope"])
    first = select(members, ["books"])
    half = Member("books-half", small_catalogue, "half of the users", first[0].store, users=0.5)
    path = tmp_path / "suite.json"
    models = ["popularity", "tfidf", "hybrid"]
    run_suite(first, encoder, path, work=tmp_path / "work", models=models)
    with caplog.at_level(logging.INFO, logger="xrec"):
        result = run_suite([half], encoder, path, work=tmp_path / "work", models=models, order=["books", "books-half"])
    assert any("0 embedded" in r.getMessage() for r in caplog.records)  # the same catalogue: nothing embedded
    assert list(result["members"]) == ["books", "books-half"]  # the earlier member kept, in order
    assert json.loads(path.read_text())["members"].keys() == result["members"].keys()
    whole, part = result["members"]["books"], result["members"]["books-half"]
    assert part["protocol"]["user_fraction"] == 0.5 and part["protocol"]["users"] < whole["protocol"]["users"]
    for m in whole["models"].values():
        assert m["ci95"][0] <= m["ndcg@10"] <= m["ci95"][1]
    versus = whole["hybrid_vs_best_part"]
    best = max(("popularity", "tfidf"), key=lambda n: whole["models"][n]["ndcg@10"])
    assert versus["best"] == best
    assert versus["ratio"] == pytest.approx(whole["models"]["hybrid"]["ndcg@10"] / whole["models"][best]["ndcg@10"])
    assert versus["ci95"][0] <= versus["ratio"] <= versus["ci95"][1]
    rank = sorted(whole["models"], key=lambda n: -whole["models"][n]["ndcg@10"]).index("hybrid") + 1
    assert whole["hybrid_rank"] == [rank, 3] and whole["goals"]["not_worst"] == (rank < 3)
    table = format_table(result)
    assert "| books-half |" in table and f"{whole['models']['tfidf']['ndcg@10']:.4f} (" in table
    assert plot_suite(result, tmp_path / "suite.png").stat().st_size > 10_000
    with pytest.raises(DataError, match="not a suite result"):
        run_suite([half], encoder, small_catalogue / "items.csv", work=tmp_path / "work", models=models)


def test_cli_lists_the_members(small_catalogue, tmp_path, capsys):
    from xrec.cli.main import main

    assert main(["evaluate", "suite", "--list", "--catalogues", str(small_catalogue.parent),
                 "--shared", str(tmp_path), "--work", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("books") and "bx-10" in out and "Book-Crossing whole" in out
    assert main(["evaluate", "suite", "--only", "nope", "--catalogues", str(small_catalogue.parent),
                 "--shared", str(tmp_path), "--work", str(tmp_path), "--json", str(tmp_path / "s.json")]) == 2


def test_catalogue_settings_give_template_and_metadata(tmp_path, data_dir):
    from xrec.evaluation.suite import default_members

    root = tmp_path / "cats"
    for name in ("news", "shop"):
        (root / name).mkdir(parents=True)
        for file in ("items.csv", "interactions.csv"):
            (root / name / file).write_text((data_dir / "catalogues" / name / file).read_text(encoding="utf-8"))
    (root / "news" / "evaluate.json").write_text('{"template": "{title}. {lead}", "metadata": ["source"]}')
    news, shop = default_members(tmp_path, root, tmp_path)[:2]
    assert (news.template, news.metadata) == ("{title}. {lead}", ("source",)) and shop.template is None
    (root / "shop" / "evaluate.json").write_text('{"templates": "{title}"}')
    with pytest.raises(DataError, match=r"shop/evaluate.json: expected an object with 'template'"):
        default_members(tmp_path, root, tmp_path)
