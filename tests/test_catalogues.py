"""The hand-written catalogues in data/catalogues: what their README promises, and that they load."""

from __future__ import annotations

import importlib.util
import unicodedata
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1] / "data" / "catalogues"
NAMES = ("news", "shop", "courses")


def _maker():
    spec = importlib.util.spec_from_file_location("make_interactions", ROOT / "make_interactions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _scripts(texts) -> set[str]:
    out = set()
    for text in texts:
        for ch in text:
            if ch.isalpha():
                out.add(unicodedata.name(ch, "?").split()[0])
    return out


def _read(name: str, file: str) -> pl.DataFrame:
    return pl.read_csv(ROOT / name / file, infer_schema_length=0)


@pytest.mark.parametrize("name", NAMES)
def test_committed_interactions_are_the_scripts_output(name):
    inter, languages = _maker().make(name)
    assert inter.write_csv() == (ROOT / name / "interactions.csv").read_text(encoding="utf-8")
    assert languages.write_csv() == (ROOT / name / "item_languages.csv").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", NAMES)
def test_catalogue_shape(name):
    items, users, inter = _read(name, "items.csv"), _read(name, "users.csv"), _read(name, "interactions.csv")
    truth = dict(_read(name, "item_languages.csv").iter_rows())
    assert 40 <= items.height <= 500 and 20 <= users.height <= 100
    assert items["item_id"].n_unique() == items.height and users["user_id"].n_unique() == users.height
    assert len(set(truth.values())) >= 6
    assert len(_scripts(items["title"]) & {"LATIN", "CYRILLIC", "ARABIC", "DEVANAGARI", "CJK", "HANGUL",
                                           "GREEK", "THAI", "HIRAGANA", "KATAKANA"}) >= 5
    assert 0.10 <= items["lang"].null_count() / items.height <= 0.20
    assert set(inter["item_id"]) <= set(items["item_id"]) and set(inter["user_id"]) == set(users["user_id"])
    assert inter.select("user_id", "item_id").is_duplicated().sum() == 0
    per_user = inter.group_by("user_id").len()["len"]
    assert per_user.min() >= 5 and per_user.max() <= 25
    # the interactions follow the stated interests and languages, with some noise
    cats = dict(zip(items["item_id"], items["category"], strict=True))
    stated = {u: (i.split(";"), langs.split(";")) for u, i, langs in users.iter_rows()}
    assert all(1 <= len(i) <= 3 and set(i) <= set(cats.values()) for i, _ in stated.values())
    pairs = inter.select("user_id", "item_id").iter_rows()
    on = [cats[i] in stated[u][0] and truth[i] in stated[u][1] for u, i in pairs]
    assert 0.75 <= sum(on) / len(on) <= 0.95
    reads = inter.group_by("item_id").len()["len"]
    assert reads.max() >= 4 * reads.median()  # a few items are read by many


def test_extra_columns():
    assert _read("news", "interactions.csv").columns == ["user_id", "item_id", "timestamp"]
    assert _read("shop", "interactions.csv").columns == ["user_id", "item_id", "weight"]
    assert _read("courses", "interactions.csv").columns == ["user_id", "item_id"]
    assert pl.read_csv(ROOT / "shop" / "items.csv")["item_id"].dtype.is_integer()


@pytest.mark.parametrize(("name", "template", "split"), [
    ("news", "{title}. {lead}", "by time"), ("courses", "{title}. {summary}", "random")])
def test_loads_as_a_generic_layout(name, template, split):
    from xrec.evaluation.splits import load_split

    s = load_split(ROOT / name, template=template, metadata=["category"])
    assert s.info["layout"] == "generic" and split in s.info["split"]
    assert s.items.height == _read(name, "items.csv").height and (s.items["lang_source"] == "detected").sum() > 0
    assert s.test.height > 0 and s.train.frame.height + s.test.height == _read(name, "interactions.csv").height


def test_headlines_are_make_headlines_output():
    spec = importlib.util.spec_from_file_location("make_headlines", ROOT / "make_headlines.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tables = module.make()
    for file, frame in tables.items():
        assert frame.write_csv() == (ROOT / "headlines" / file).read_text(encoding="utf-8"), file
    assert tables["items.csv"].height == 42 and tables["interactions.csv"].height == 160
    assert tables["items.csv"]["lang"].null_count() > 0  # some rows without a language code
