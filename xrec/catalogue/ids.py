"""The one rule for item and user ids, in every table, command and request.

* An id is an **integer** or a **string**. Each table decides once, for the whole column: a typed
  file (parquet, JSON lines) keeps its column's type; a CSV column is integers when every value is
  a plain integer (no sign ``+``, no leading zero, at most 18 digits), else strings (so ISBNs such
  as ``0002005018`` keep their zeros).
* Refused, with the file and line: floats (``1.0``, ``2.5``, ``NaN``, also as text in a string
  column), booleans, empty ids and ids with leading or trailing whitespace (`` 5 ``).
* A table that refers to another's ids (interactions, candidates, users, tags, ``--ids``, request
  bodies) is read in the referenced table's type: ``"28"`` names item ``28`` of an integer
  catalogue, and ``28`` names item ``"28"`` of a string catalogue. A value that cannot be of that
  type (``"abc"`` in an integer catalogue) is an unknown id in a table (reported, or dropped with
  ``--drop-unknown``) and an error naming it in ``--ids`` or a request.
"""

from __future__ import annotations

import math
import re
from typing import Any

import polars as pl

from xrec.errors import shown

#: A plain integer as text: what becomes an integer id.
INTEGER = r"^(0|-?[1-9][0-9]{0,17})$"
#: Text that reads as a floating-point number (refused as an id).
FLOAT = r"(?i)^[+-]?(([0-9]+\.[0-9]*|\.[0-9]+)(e[+-]?[0-9]+)?|[0-9]+e[+-]?[0-9]+|nan|inf|infinity)$"
_INTEGER, _FLOAT = re.compile(INTEGER), re.compile(FLOAT)


def integer_ids(ids: pl.Series) -> pl.Series:
    """A text column as Int64 when every non-null value is a plain integer, else unchanged."""
    values = ids.drop_nulls()
    if ids.dtype == pl.String and len(values) and values.str.contains(INTEGER).all():
        return ids.cast(pl.Int64)
    return ids


def bad_id_row(ids: pl.Series) -> tuple[int, str] | None:
    """``(row, why)`` of the first value of an id column the rule refuses, else None (nulls are
    left to the caller)."""
    dtype = ids.dtype
    if dtype.is_integer() or dtype == pl.Null:
        return None
    if dtype.is_float():
        fraction = (ids.is_nan() | ids.is_infinite() | (ids != ids.floor())).fill_null(False)
        present = fraction if fraction.any() else ids.is_not_null()
        row = int(present.arg_true()[0]) if present.any() else 0
        return row, f"{ids[row]!r} is a float; ids are integers or strings"
    if dtype != pl.String:
        return 0, f"has type {dtype}; ids are integers or strings"
    checks = ((ids.str.strip_chars() != ids, "has leading or trailing whitespace"),
              (ids.str.len_chars() == 0, "is empty"),
              (ids.str.contains(FLOAT), "reads as a float; ids are integers or strings"))
    found = [(int(mask.fill_null(False).arg_true()[0]), why) for mask, why in checks if mask.fill_null(False).any()]
    if not found:
        return None
    row, why = min(found)
    return row, f"{ids[row]!r} {why}"


def as_type_of(ids: pl.Series, reference: pl.Series | pl.DataType) -> pl.Series:
    """``ids`` in the id type of ``reference`` (a column or its dtype); values that cannot be of
    that type become null (unknown ids)."""
    dtype = reference.dtype if isinstance(reference, pl.Series) else reference
    if ids.dtype == dtype:
        return ids
    if not dtype.is_integer():
        return ids.cast(pl.String)
    if ids.dtype.is_integer():
        return ids.cast(dtype, strict=False)  # beyond its range (Int128, UInt64): unknown
    text = ids.cast(pl.String)
    plain = text.str.contains(INTEGER).fill_null(False)
    return pl.select(pl.when(plain).then(text).otherwise(None).cast(dtype, strict=False)).to_series().alias(ids.name)


def id_value(value: Any, integer: bool) -> int | str:
    """One id given as a value (command line, JSON request) in a catalogue's type (``integer``);
    raises ``ValueError`` saying why the rule refuses it."""
    if isinstance(value, bool) or isinstance(value, float) or not isinstance(value, int | str):
        what = "NaN" if isinstance(value, float) and math.isnan(value) else shown(value)
        raise ValueError(f"{what} is not an id; ids are integers or strings")
    if isinstance(value, str):
        if value != value.strip() or not value:
            raise ValueError(f"{shown(value)} is {'empty' if not value else 'padded with whitespace'}")
        if _FLOAT.match(value):
            raise ValueError(f"{shown(value)} reads as a float; ids are integers or strings")
        if integer:
            if not _INTEGER.match(value):
                raise ValueError(f"{shown(value)} is not an integer; this catalogue has integer ids")
            return int(value)
        return value
    if integer and not -(1 << 63) <= value < 1 << 63:
        raise ValueError(f"{shown(value)} is beyond the 64-bit range of integer ids")
    return value if integer else str(value)
