"""Book-Crossing layout, item-text templates, id handling and language codes on the bundled real slice."""

from __future__ import annotations

import gzip

import polars as pl
import pytest
from xrec.datasets.bookcrossing import DEFAULT_TEMPLATE, is_bookcrossing, load_bookcrossing
from xrec.datasets.templates import render_template, template_fields
from xrec.errors import DataError
from xrec.languages import normalise_codes
from xrec.tables import read_table


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


def test_template_errors_and_empty_fields():
    frame = pl.DataFrame({"title": ["A", None, ""], "author": ["X", "Y", None]})
    assert render_template(frame, "{title}. {author}").to_list() == ["A. X", "Y", ""]
    with pytest.raises(DataError, match=r"missing column\(s\) \['publisher'\]"):
        render_template(frame, "{title} {publisher}", "books.csv")
    with pytest.raises(DataError, match="names no field"):
        template_fields("just text")
    with pytest.raises(DataError, match="plain column name"):
        template_fields("{title.upper}")


def test_ids_keep_leading_zeros_only_when_they_have_them(tmp_path):
    isbn = tmp_path / "items.csv.gz"
    with gzip.open(isbn, "wt") as f:
        f.write("item_id,text\n0002005018,a\n3257061269,b\n")
    assert read_table(isbn)["item_id"].to_list() == ["0002005018", "3257061269"]
    plain = tmp_path / "plain.csv"
    plain.write_text("user_id,item_id\n1,10\n2,20\n")
    frame = read_table(plain)
    assert frame["item_id"].dtype == pl.Int64 and frame["user_id"].to_list() == [1, 2]


def test_mixed_language_code_systems_become_one():
    frame = pl.DataFrame({"lang": ["de", "en", "und", "pt-BR", "deu_Latn"], "text": ["a"] * 5})
    assert normalise_codes(frame, "items.csv")["lang"].to_list() == ["de", "en", "und", "pt", "de"]


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
