"""Reading and validating the tables users hand to xrec (parquet, CSV or JSONL, optionally gzipped)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from xrec.errors import DataError

SUFFIXES = (".parquet", ".csv", ".csv.gz", ".jsonl", ".jsonl.gz", ".ndjson")


def read_table(path: str | os.PathLike[str], required: Sequence[str] = ()) -> pl.DataFrame:
    """Read a parquet, CSV or JSON-lines file (``.gz`` allowed) and check its required columns."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: no such file")
    name = file.name.lower()
    try:
        if name.endswith(".parquet"):
            frame = pl.read_parquet(file)
        elif name.endswith((".csv", ".csv.gz")):
            frame = pl.read_csv(file, infer_schema_length=10000)
        elif name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
            frame = pl.read_ndjson(file, infer_schema_length=10000)
        else:
            raise DataError(f"{file}: unknown table format; use one of {', '.join(SUFFIXES)}")
    except DataError:
        raise
    except Exception as exc:  # polars raises several exception types for unreadable files
        raise DataError(f"{file}: cannot be read as a table ({exc})") from exc
    require_columns(frame, required, str(file))
    return frame


def require_columns(frame: pl.DataFrame, required: Sequence[str], source: str) -> None:
    """Raise :class:`DataError` naming ``source`` and every missing column."""
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; found {frame.columns}")


def first_row_where(frame: pl.DataFrame, mask: pl.Series) -> int:
    """0-based index of the first True in ``mask`` (for error messages)."""
    return int(mask.arg_true()[0])


def validate_items(frame: pl.DataFrame, source: str, text_column: str = "text") -> pl.DataFrame:
    """Check an items table: unique non-null ``item_id``, string ``text`` without nulls.

    Returns the table with ``item_id`` as given (int64 or string) and ``lang`` kept if present.
    """
    require_columns(frame, ["item_id", text_column], source)
    ids = frame["item_id"]
    if ids.null_count():
        raise DataError(f"{source}: row {first_row_where(frame, ids.is_null())}: item_id is null")
    dup = ids.is_duplicated()
    if dup.any():
        row = first_row_where(frame, dup)
        raise DataError(f"{source}: row {row}: duplicate item_id {ids[row]!r}")
    texts = frame[text_column]
    if texts.dtype not in (pl.String, pl.Null):
        raise DataError(f"{source}: column {text_column!r} must hold strings, found {texts.dtype}")
    if texts.null_count():
        row = first_row_where(frame, texts.is_null())
        raise DataError(f"{source}: row {row} (item_id {ids[row]!r}): {text_column} is null")
    return frame
