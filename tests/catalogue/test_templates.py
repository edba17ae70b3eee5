"""Item text from a template over an items table's fields (xrec.catalogue.templates)."""

from __future__ import annotations

import polars as pl
import pytest
from xrec.catalogue.templates import render_template, template_fields
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
