"""Reading tables (xrec.catalogue.tables): formats, the id rule on read, and errors that name the
file and the line."""

from __future__ import annotations

import gzip

import polars as pl
import pytest
from xrec.catalogue.tables import read_table
from xrec.errors import DataError


@pytest.mark.parametrize(("rows", "line", "why"), [
    ("1,a\n 5 ,b\n", 3, "whitespace"),
    ("1,a\n2.5,b\n", 3, "float"),
    ("1,a\nNaN,b\n", 3, "float"),
    ("1,a\n1.0,b\n", 3, "float"),
])
def test_ids_that_break_the_rule_name_file_and_line(tmp_path, rows, line, why):
    path = tmp_path / "items.csv"
    path.write_text("item_id,text\n" + rows, encoding="utf-8")
    with pytest.raises(DataError, match=f"{path}: line {line}: item_id .*{why}"):
        read_table(path, required=["item_id", "text"])


def test_float_ids_in_typed_files_name_the_line_or_row(tmp_path):
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text('{"item_id": 1, "text": "a"}\n\n{"item_id": 2.5, "text": "b"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 3: item_id 2.5 is a float"):
        read_table(jsonl)
    parquet = tmp_path / "items.parquet"
    pl.DataFrame({"item_id": ["a", "b", " c"], "text": ["x", "y", "z"]}).write_parquet(parquet)
    with pytest.raises(DataError, match=r"row 2: item_id ' c' has leading or trailing whitespace"):
        read_table(parquet)


@pytest.mark.parametrize(("suffix", "text", "expected"), [
    (".csv", "item_id,text\n1,a\n2,b,extra\n3,c\n", r"line 3: 3 fields, the header has 2"),
    (".csv", 'item_id,text\n1,a\n2,"never closed\n' + "3,c\n" * 50, r"line 3: a quote opened here is never closed"),
    (".jsonl", '{"item_id": 1, "text": "a"}\n' * 14 + '{"item_id": 15, "text": "b}\n',
     r"line 15, column \d+: not valid JSON"),
    (".jsonl", '{"item_id": 1, "text": "a"}\n[1, 2]\n', r"line 2: a JSON list, expected an object"),
])
def test_malformed_rows_name_their_line_in_one_short_message(tmp_path, suffix, text, expected):
    path = tmp_path / f"items{suffix}"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=expected) as caught:
        read_table(path)
    assert len(str(caught.value)) < 300 and "truncate_ragged_lines" not in str(caught.value)


def test_ids_keep_leading_zeros_only_when_they_have_them(tmp_path):
    isbn = tmp_path / "items.csv.gz"
    with gzip.open(isbn, "wt") as f:
        f.write("item_id,text\n0002005018,a\n3257061269,b\n")
    assert read_table(isbn)["item_id"].to_list() == ["0002005018", "3257061269"]
    plain = tmp_path / "plain.csv"
    plain.write_text("user_id,item_id\n1,10\n2,20\n")
    frame = read_table(plain)
    assert frame["item_id"].dtype == pl.Int64 and frame["user_id"].to_list() == [1, 2]
