"""The main job's catalogue (any items + interactions tables) and its bad inputs: checked at load,
before the encoder or any stage (no encoder needed here, except for ``evaluate recs``)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from xrec.cli.main import build_parser, main
from xrec.cli.run import overrides
from xrec.errors import DataError
from xrec.jobs.catalogue import load_catalogue, plan_stages
from xrec.jobs.config import load_config

ITEMS = """item_id,title,maker,lang
a1,Cast-iron skillet,Kessler,en
a2,Gusseisenpfanne,Kessler,de
a3,Poêle en fonte,Kessler,fr
a4,Chef's knife,Hoshi,en
a5,Kochmesser,Hoshi,
a6,,,en
"""


def _catalogue(tmp_path: Path, interactions: str, items: str = ITEMS) -> tuple[Path, Path]:
    (tmp_path / "items.csv").write_text(items, encoding="utf-8")
    (tmp_path / "interactions.csv").write_text(interactions, encoding="utf-8")
    return tmp_path / "items.csv", tmp_path / "interactions.csv"


def _config(items: Path, interactions: Path, *sets: str) -> dict:
    """A config as ``xrec run --items --interactions`` builds it (the default's other sections)."""
    args = build_parser().parse_args(["run", "--items", str(items), "--interactions", str(interactions),
                                      "--template", "{title}", *[a for s in sets for a in ("--set", s)]])
    return load_config(None, overrides(args))


def test_items_and_interactions_with_and_without_weight_and_timestamp(tmp_path):
    items, inter = _catalogue(tmp_path, "user_id,item_id\nu1,a1\nu1,a2\nu2,a4\n")
    plain = load_catalogue(_config(items, inter, "items.metadata=maker"))
    assert plain.items.columns == ["item_id", "text", "lang", "has_text", "lang_source"]
    assert plain.items["text"].to_list()[:2] == ["Cast-iron skillet", "Gusseisenpfanne"]
    assert plain.items["lang"].to_list() == ["en", "de", "fr", "en", None, "en"]  # an empty code is unknown
    assert plain.languages == ["en", "de", "fr"] and plain.unknown_language == 1
    assert plain.metadata == {"maker": ["Kessler", "Kessler", "Kessler", "Hoshi", "Hoshi", None]}
    assert plain.interactions["weight"].to_list() == [1.0, 1.0, 1.0] and not plain.has_weight
    assert not plain.has_timestamp and "timestamp" not in plain.interactions.columns
    notes = " ".join(plain.notes)
    assert "1 of 6 items have an empty text" in notes and "['a6']" in notes  # a6: empty after templating
    assert "every interaction weighs 1" in notes and "random 20%" in notes
    assert "1 of 6 items are of unknown language" in notes

    inter.write_text("user_id,item_id,weight,timestamp\nu1,a1,2.5,2026-01-02T10:00:00Z\nu1,a2,1,1767400000\n",
                     encoding="utf-8")
    rich = load_catalogue(_config(items, inter))
    assert rich.has_weight and rich.has_timestamp and rich.interactions["weight"].to_list() == [2.5, 1.0]
    assert rich.interactions["timestamp"].dtype == pl.Int64

    # other column names, as a MovieLens-style table has them; a column named explicitly must exist
    inter.write_text("userId,movieId,rating\n1,a1,4.0\n2,a3,5.0\n", encoding="utf-8")
    renamed = load_catalogue(_config(items, inter, "interactions.user=userId", "interactions.item=movieId",
                                     "interactions.weight=rating"))
    assert renamed.interactions.select("user_id", "weight").rows() == [(1, 4.0), (2, 5.0)]
    with pytest.raises(DataError, match=r"interactions\.csv: \[interactions\] timestamp = 'time': no such column"):
        load_catalogue(_config(items, inter, "interactions.user=userId", "interactions.item=movieId",
                               "interactions.timestamp=time"))
    with pytest.raises(DataError, match=r"items\.csv: \[items\] lang = 'language': no such column"):
        load_catalogue(_config(items, inter, "items.lang=language"))
    no_lang = load_catalogue(_config(items, inter, "items.lang=", "interactions.user=userId",
                                     "interactions.item=movieId"))
    assert any("no language column: languages detected" in n for n in no_lang.notes)


def test_bad_catalogues_are_clear_errors_naming_the_file(tmp_path):
    items, inter = _catalogue(tmp_path, "user_id,item_id\nu1,a1\nu1,zz9\n")
    with pytest.raises(DataError, match=r"items\.csv: text template '\{title\}\. \{author\}' names missing "
                                        r"column\(s\) \['author'\]"):
        load_catalogue(_config(items, inter, "items.template={title}. {author}"))
    with pytest.raises(DataError, match=r"items\.csv: \[items\] metadata names missing column\(s\) \['brand'\]"):
        load_catalogue(_config(items, inter, "items.metadata=brand"))
    with pytest.raises(DataError, match=r"items\.csv: no 'text' column and no \[items\] template"):
        load_catalogue(_config(items, inter, "items.template="))
    with pytest.raises(DataError, match=r"every item's text is empty after the template '\{maker\}'"):
        load_catalogue(_config(*_catalogue(tmp_path, "user_id,item_id\nu1,a1\n", "item_id,maker\na1,\na2,\n"),
                               "items.template={maker}"))
    items, inter = _catalogue(tmp_path, "user_id,item_id\nu1,a1\nu1,zz9\n")
    with pytest.raises(DataError, match=r"interactions\.csv: 1 row\(s\) name items not in the catalogue "
                                        r"\(e\.g\. \['zz9'\]\)"):
        load_catalogue(_config(items, inter))
    inter.write_text("user_id,item_id\nu1,zz8\nu2,zz9\n", encoding="utf-8")  # no interaction with any item
    with pytest.raises(DataError, match=r"interactions\.csv: 2 row\(s\) name items not in the catalogue"):
        load_catalogue(_config(items, inter))
    inter.write_text("user_id,item_id\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"interactions\.csv: no interactions"):
        load_catalogue(_config(items, inter))
    inter.write_text("user_id,item_id,weight\nu1,a1,1\nu1,a2,-3\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"interactions\.csv: line 3 .*weight -3 is negative"):
        load_catalogue(_config(items, inter))


def test_stages_the_catalogue_cannot_feed_are_skipped_with_a_reason(tmp_path):
    items, inter = _catalogue(tmp_path, "user_id,item_id\nu1,a1\nu1,a4\nu2,a2\nu2,a3\nu2,a5\n")
    config = _config(items, inter, "items.metadata=maker", "topics.sib200=")
    catalogue = load_catalogue(config)
    test = pl.DataFrame({"user_id": ["u2"], "item_id": ["a2"]})
    language, skipped = plan_stages(config, catalogue, test, n_vectors=6)
    assert language == "de"  # "auto": the second most common language, with a held-out interaction
    assert skipped == {"topics": "no topic data ([topics] sib200 is empty)",
                       "book_topics": "it needs the topics stage",
                       "latency": "6 vectors are too few to time retrieval (at least 200)"}
    language, skipped = plan_stages(config, catalogue, test.with_columns(item_id=pl.lit("a1")), n_vectors=500)
    assert language is None and skipped["new_language"] == "no held-out interaction is with an item in 'de'"
    _, skipped = plan_stages(config, catalogue, None, n_vectors=500)  # no user with two interactions
    assert skipped["evaluation"] == skipped["new_language"] == ("no user has two or more interactions: nothing "
                                                                "can be held out")
    config["new_language"]["language"] = "Finnish"  # a real language (normalised: fi) no item has
    with pytest.raises(DataError, match=r"\[new_language\] language = 'fi': no item of .*items\.csv has it; "
                                        "languages: en, de, fr"):
        plan_stages(config, catalogue, test, 500)

    one = _config(*_catalogue(tmp_path, "user_id,item_id\nu1,b1\nu2,b1\n", "item_id,title,lang\nb1,Only one,en\n"),
                  "job.stages=recommendations,evaluation,new_language,neighbours")
    _, skipped = plan_stages(one, load_catalogue(one), None, n_vectors=1)
    assert skipped == {"topics": "not in [job] stages", "book_topics": "not in [job] stages",
                       "latency": "not in [job] stages", "evaluation": "one item: there is nothing to rank",
                       "new_language": "the catalogue has fewer than two languages (a new one needs an old one)",
                       "neighbours": "cross-language neighbours need items in two or more languages; this "
                                     "catalogue has ['en']"}


def test_run_options_replace_the_catalogue_sections(tmp_path, capsys):
    items, inter = _catalogue(tmp_path, "user_id,item_id\nu1,a1\n")
    config = _config(items, inter, "interactions.weight=")
    assert config["items"] == {"path": str(items), "id": "item_id", "template": "{title}", "lang": "lang",
                               "metadata": []}  # the default's {title}. {author} and author are gone
    assert config["interactions"]["weight"] == "" and config["interactions"]["user"] == "user_id"
    assert config["recommend"]["k"] == 10  # the default config's other sections stay
    assert main(["run", "--items", str(items), "--out", str(tmp_path / "out")]) == 2
    assert "--items and --interactions go together" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_version_comes_from_the_package_metadata(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"xrec {version('xrec')}"


def test_positives_of_an_empty_selection(tmp_path):
    """What crashed ``evaluate recs`` on a generic layout with a ``weight`` column: no test row
    passing a rating threshold (scipy indexes an empty selection as a sparse matrix)."""
    from xrec.evaluation.metrics import positives
    from xrec.evaluation.splits import load_split

    _catalogue(tmp_path, "user_id,item_id,weight\nu1,a1,1\nu1,a2,2\nu1,a3,1\nu2,a4,3\nu2,a5,1\n")
    split = load_split(tmp_path, template="{title}")
    assert split.info["layout"] == "generic" and split.test.height == 2
    empty = positives(split, min_rating=4.0)
    assert len(empty.users) == 0 and empty.counts["test_rows_already_rated_in_training"] == 0
    assert sum(len(p) for p in positives(split).items) == 2


@pytest.mark.slow
def test_evaluate_recs_on_a_generic_layout_with_weights(tmp_path, data_dir, encoder):
    """``weight`` counts (not ratings) in a generic layout: evaluated, no rating variant, no crash."""
    import json

    bx = pl.read_csv(data_dir / "bookcrossing" / "ratings.csv.gz", schema_overrides={"item_id": pl.String})
    users = bx["user_id"].unique().sort().head(15)
    ratings = bx.filter(pl.col("user_id").is_in(users.implode()))
    books = pl.read_csv(data_dir / "bookcrossing" / "books.csv.gz",
                        schema_overrides={"item_id": pl.String, "year": pl.String})
    books.filter(pl.col("item_id").is_in(ratings["item_id"].implode())).write_csv(tmp_path / "items.csv")
    ratings.select("user_id", "item_id", weight=(pl.col("rating") % 3 + 1)).write_csv(tmp_path / "interactions.csv")
    out = tmp_path / "report.json"
    assert main(["evaluate", "recs", "--data", str(tmp_path), "--json", str(out), "--template", "{title}. {author}",
                 "--models", "popularity,tfidf,content"]) == 0
    report = json.loads(out.read_text())
    assert report["protocol"]["layout"] == "generic" and report["variants"] == {}  # weights are no ratings
    assert report["protocol"]["users_evaluated"] == 15 and report["protocol"]["positives"] > 15
    assert min(report["models"][m]["ndcg@10"] for m in ("tfidf", "content")) > 0


def test_movielens_is_a_config_like_any_other():
    from xrec.jobs.config import DEFAULT

    config = load_config(DEFAULT.parent / "movielens.toml")
    catalogue = load_catalogue(config)
    assert catalogue.items.height == 9742 and catalogue.items["item_id"].dtype == pl.Int64  # movieId
    assert catalogue.has_weight and catalogue.has_timestamp
    assert catalogue.languages[0] == "en" and (catalogue.items["lang_source"] == "detected").any()  # no lang column
    assert catalogue.interactions["weight"].is_between(0.5, 5.0).all()  # the stars
    assert catalogue.items["text"][0] == "Toy Story (1995). Genres: Adventure|Animation|Children|Comedy|Fantasy"
    _, skipped = plan_stages(config, catalogue, catalogue.interactions.head(10), n_vectors=9742)
    assert set(skipped) <= {"new_language", "neighbours"}  # at most what needs languages; the rest runs
