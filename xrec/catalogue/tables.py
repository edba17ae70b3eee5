"""Reading and validating the tables users hand to xrec (parquet, CSV or JSONL, optionally gzipped).

Errors name the file and the place in it as people count: ``line N`` of a CSV or JSON-lines file
(the file's own numbering, header and quoted line breaks included), else ``row N`` (0-based, as
polars and pandas count rows).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from xrec.catalogue.ids import bad_id_row, integer_ids
from xrec.errors import DataError

SUFFIXES = (".parquet", ".csv", ".csv.gz", ".jsonl", ".jsonl.gz", ".ndjson")
_CSV = (".csv", ".csv.gz")
_JSONL = (".jsonl", ".jsonl.gz", ".ndjson")


#: Id columns read as text first, so that ids such as ISBNs keep their leading zeros (see :func:`read_table`).
ID_COLUMNS = ("item_id", "user_id")


def find_table(directory: str | os.PathLike[str], stem: str) -> Path | None:
    """``directory/stem`` with the first suffix of :data:`SUFFIXES` that exists, else None."""
    for suffix in SUFFIXES:
        path = Path(directory) / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def read_table(path: str | os.PathLike[str], required: Sequence[str] = (),
               string_columns: Sequence[str] = ()) -> pl.DataFrame:
    """Read a parquet, CSV or JSON-lines file (``.gz`` allowed) and check its required columns.

    In CSV files, ``string_columns`` are read as text; the id columns (:data:`ID_COLUMNS`) are
    read as text and become integers only when every value is a plain integer without a leading
    zero, so ``0002005018`` stays ``"0002005018"`` while MovieLens-style ids stay integers. Id
    columns follow the id rule (:mod:`xrec.catalogue.ids`): a float, empty or padded id is an error naming
    its line.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: no such file")
    name = file.name.lower()
    try:
        if name.endswith(".parquet"):
            frame = pl.read_parquet(file)
        elif name.endswith((".csv", ".csv.gz")):
            text = {c: pl.String for c in (*ID_COLUMNS, *string_columns)}
            frame = pl.read_csv(file, infer_schema_length=10000, schema_overrides=text)
            frame = frame.with_columns(integer_ids(frame[c]) for c in ID_COLUMNS
                                       if c in frame.columns and c not in string_columns)
        elif name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
            frame = pl.read_ndjson(file, infer_schema_length=10000)
        else:
            raise DataError(f"{file}: unknown table format; use one of {', '.join(SUFFIXES)}")
    except DataError:
        raise
    except Exception as exc:  # polars raises several exception types for unreadable files
        bad = _first_non_utf8(file) if name.endswith(_CSV + _JSONL) else None
        if bad is not None:
            line, column, data = bad
            raise DataError(f"{file}: line {line}, byte {column}: not UTF-8 ({data!r}); save the file "
                            "as UTF-8") from exc
        row = _bad_csv_row(file) if name.endswith(_CSV) else _bad_json_line(file) if name.endswith(_JSONL) else None
        if row is not None:
            raise DataError(f"{file}: {row}") from exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{file}: cannot be read as a table ({first[:200]})") from exc
    require_columns(frame, required, str(file))
    for column in ID_COLUMNS:
        if column in frame.columns:
            check_id_column(frame, column, str(file))
    return frame

def read_lines(path: str | os.PathLike[str]) -> list[str]:
    """The non-blank lines of a UTF-8 text file, stripped; bad bytes are an error naming the line."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: no such file")
    with _open_text_bytes(file) as handle:
        data = handle.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(f"{file}: line {line}, byte {column}: not UTF-8 ({data[exc.start:exc.end + 3]!r}); "
                        "save the file as UTF-8") from exc
    return [line.strip() for line in text.splitlines() if line.strip()]


def _open_text_bytes(file: Path):
    return gzip.open(file, "rb") if file.name.lower().endswith(".gz") else open(file, "rb")


def _first_non_utf8(file: Path) -> tuple[int, int, bytes] | None:
    """``(line, byte, bytes)`` of the first byte sequence in ``file`` that is not UTF-8 (1-based)."""
    try:
        with _open_text_bytes(file) as handle:
            for number, line in enumerate(handle, 1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    return number, exc.start + 1, line[exc.start:exc.end + 3]
    except OSError:
        return None
    return None


def _bad_csv_row(file: Path) -> str | None:
    """``line N: why`` of the first CSV record with another number of fields than the header, or
    of a quote never closed; None when every record fits."""
    try:
        with _open_text_bytes(file) as raw:
            reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""), strict=True)
            header = next(reader, None)
            start = reader.line_num + 1
            try:
                for record in reader:
                    if record and header is not None and len(record) != len(header):
                        return (f"line {start}: {len(record)} fields, the header has {len(header)} "
                                "(quote values that hold a comma)")
                    start = reader.line_num + 1
            except csv.Error as exc:
                if "end of data" in str(exc) or "EOF" in str(exc):
                    return f"line {start}: a quote opened here is never closed"
                return f"line {reader.line_num}: {exc}"
    except (OSError, UnicodeDecodeError):
        return None
    return None


def _bad_json_line(file: Path) -> str | None:
    """``line N: why`` of the first line of a JSON-lines file that is not a JSON object."""
    import json

    try:
        with _open_text_bytes(file) as raw:
            for number, line in enumerate(raw, 1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line.rstrip(b"\r\n"))
                except json.JSONDecodeError as exc:
                    return f"line {number}, column {exc.colno}: not valid JSON ({exc.msg})"
                if not isinstance(value, dict):
                    return f"line {number}: a JSON {type(value).__name__}, expected an object"
    except (OSError, UnicodeDecodeError, RecursionError):
        return None
    return None


def locate(source: str | os.PathLike[str], row: int) -> str:
    """Where 0-based data row ``row`` of the table read from ``source`` is: ``line N`` of a CSV or
    JSON-lines file, else ``row N`` (see the module docs). Reads the file again (error paths only)."""
    path = Path(source)
    name = path.name.lower()
    line = None
    if name.endswith(_CSV + _JSONL) and path.is_file():
        try:
            line = _csv_line(path, row) if name.endswith(_CSV) else _jsonl_line(path, row)
        except (OSError, UnicodeDecodeError, csv.Error):
            line = None
    return f"line {line}" if line is not None else f"row {row}"


def _csv_line(path: Path, row: int) -> int | None:
    with _open_text_bytes(path) as raw:
        reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
        next(reader, None)  # the header
        start = reader.line_num + 1
        for index, _record in enumerate(reader):
            if index == row:
                return start
            start = reader.line_num + 1
    return None


def _jsonl_line(path: Path, row: int) -> int | None:
    index = -1
    with _open_text_bytes(path) as raw:
        for number, line in enumerate(raw, 1):
            if line.strip():
                index += 1
                if index == row:
                    return number
    return None


def require_columns(frame: pl.DataFrame, required: Sequence[str], source: str) -> None:
    """Raise :class:`DataError` naming ``source`` and every missing column."""
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; found {frame.columns}")


def first_row_where(frame: pl.DataFrame, mask: pl.Series) -> int:
    """0-based index of the first True in ``mask`` (for error messages)."""
    return int(mask.arg_true()[0])


def check_id_column(frame: pl.DataFrame, column: str, source: str) -> None:
    """Raise :class:`DataError` naming ``source`` and the line of the first id the rule refuses."""
    bad = bad_id_row(frame[column])
    if bad is not None:
        row, why = bad
        raise DataError(f"{source}: {locate(source, row)}: {column} {why}")
