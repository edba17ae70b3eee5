"""Item text from a template over an items table's fields (xrec.catalogue.templates)."""

from __future__ import annotations

import polars as pl
import pytest
from xrec.catalogue.templates import item_texts, render_template, template_fields
from xrec.errors import DataError


def test_template_errors_and_empty_fields():
    frame = pl.DataFrame({"title": ["A", None, ""], "author": ["X", "Y", None]})
    assert render_template(frame, "{title}. {author}").to_list() == ["A. X", "Y", ""]
    with pytest.raises(DataError, match=r"missing column\(s\) \['publisher'\]"):
        render_template(frame, "{title} {publisher}", "books.csv")
    with pytest.raises(DataError, match="names no field"):
        template_fields("just text")
    with pytest.raises(DataError, match="plain column name"):
        template_fields("{title.upper}")


def test_item_texts_render_the_template_or_take_the_text_column():
    frame = pl.DataFrame({"item_id": [1, 2], "title": ["A", "B"], "author": ["X", None]})
    assert item_texts(frame, "{title}. {author}", "items.csv").to_list() == ["A. X", "B"]
    assert item_texts(frame.with_columns(text=pl.Series(["a", "b"])), None).to_list() == ["a", "b"]
    with pytest.raises(DataError, match=r"items\.csv: no 'text' column and no \[items\] template or --template"):
        item_texts(frame, "", "items.csv")
