"""The Book-Crossing layout on the bundled real slice: ids, item texts from its template, clean titles."""

from __future__ import annotations

import polars as pl
import pytest
from xrec.catalogue.templates import template_fields
from xrec.datasets.bookcrossing import DEFAULT_TEMPLATE, is_bookcrossing, load_bookcrossing
from xrec.errors import DataError


@pytest.fixture(scope="module")
def bx(data_dir):
    return load_bookcrossing(data_dir / "bookcrossing")


def test_load_bundled_slice(bx, data_dir):
    assert is_bookcrossing(data_dir / "bookcrossing")
    assert bx.books["item_id"].dtype == pl.String and bx.books["item_id"].is_unique().all()
    assert bx.books["item_id"].str.starts_with("0").any()  # ISBNs with leading zeros stay strings
    assert bx.ratings.columns == ["user_id", "item_id", "weight", "rating"]
    assert (bx.ratings["weight"] == 1.0).all() and bx.ratings["item_id"].is_in(bx.books["item_id"].implode()).all()
    assert bx.books["lang"].n_unique() >= 3 and bx.users is not None


def test_item_text_from_template(bx):
    items = bx.items()
    assert items.columns == ["item_id", "text", "lang"] and items.height == bx.books.height
    row = bx.books.row(0, named=True)
    assert items["text"][0] == f"{row['title']}. {row['author']}"
    assert bx.items("{title} ({publisher}, {year})")["text"][0].startswith(row["title"])
    assert template_fields(DEFAULT_TEMPLATE) == ["title", "author"]


def test_missing_tables_are_named(tmp_path):
    (tmp_path / "books.csv").write_text("item_id,title\n1,a\n")
    with pytest.raises(DataError, match="no ratings.csv.gz"):
        load_bookcrossing(tmp_path)


#: What mojibake leaves in text: U+FFFD (a lost lead byte, "R\ufffd\u00a9paration"), UTF-8 read as
#: latin-1 ("RÃ©paration", "Â£"), lost continuation bytes ("beschlieÃ?Â?t") and C1 control characters.
MOJIBAKE = r"[\uFFFD\u0080-\u009F]|[ÃÂ][\u0080-\u00BF?]"


def test_bundled_sample_has_no_mojibake(bx):
    for column in ("title", "author", "publisher"):
        broken = bx.books.filter(pl.col(column).str.contains(MOJIBAKE))
        assert broken.height == 0, broken.select("item_id", column).head(5).to_dicts()
    repaired = bx.books.filter(pl.col("item_id") == "2012360432")  # once "R\ufffd\u00a9paration et entretien..."
    assert repaired["title"].to_list() == ["Réparation et entretien de votre vélo"]
    assert bx.books.filter(pl.col("item_id") == "3257062354")["title"].to_list() == ["Veronika beschließt zu sterben."]
    assert pl.Series(["R\ufffd\u00a9paration", "RÃ©paration", "beschlieÃ?Â?t", "Réparation", "Éric"]).str.contains(
        MOJIBAKE).to_list() == [True, True, True, False, False]  # the pattern finds each kind, passes repaired text
