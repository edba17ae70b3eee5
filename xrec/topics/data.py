"""Checking the labelled and unlabelled text tables topic training takes."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import polars as pl

from xrec.errors import DataError
from xrec.tables import require_columns

#: Language code given to rows of a table without a ``lang`` column.
DEFAULT_LANG = "und"


def check_texts_column(frame: pl.DataFrame, source: str, column: str = "text") -> list[str]:
    """The ``column`` of ``frame`` as strings; raises naming the first null or empty text."""
    require_columns(frame, [column], source)
    texts = frame[column]
    if texts.dtype not in (pl.String, pl.Null):
        raise DataError(f"{source}: column {column!r} must hold strings, found {texts.dtype}")
    bad = texts.is_null() | (texts.fill_null("").str.strip_chars() == "")
    if bad.any():
        row = int(bad.arg_true()[0])
        raise DataError(f"{source}: row {row}: {column} is empty ({int(bad.sum())} empty text(s))")
    return texts.to_list()


def languages_of(frame: pl.DataFrame, column: str = "lang") -> list[str]:
    """The ``lang`` column as strings, or :data:`DEFAULT_LANG` for every row without one."""
    if column not in frame.columns:
        return [DEFAULT_LANG] * frame.height
    langs = frame[column].cast(pl.String)
    if langs.null_count():
        raise DataError(f"row {int(langs.is_null().arg_true()[0])}: {column} is null")
    return langs.to_list()


def select_languages(frame: pl.DataFrame, languages: Sequence[str] | None, source: str) -> pl.DataFrame:
    """Rows of ``frame`` in ``languages`` (all rows if None); raises if a language has no rows."""
    if not languages:
        return frame
    require_columns(frame, ["lang"], source)
    present = set(frame["lang"].unique().to_list())
    for lang in languages:
        if lang not in present:
            raise DataError(f"{source}: language {lang!r} has no rows "
                            f"(languages present: {', '.join(sorted(map(str, present)))})")
    return frame.filter(pl.col("lang").is_in(list(languages)))


def labelled(frame: pl.DataFrame, labels: Sequence[str], source: str, text: str = "text",
             label: str = "category", min_classes: int = 2) -> tuple[list[str], np.ndarray, list[str]]:
    """Texts, integer labels and languages of a labelled table, every check naming ``source``.

    Raises :class:`DataError` for an empty table, empty texts, a label not in ``labels`` or (for
    training data, ``min_classes=2``) a table with one class only.
    """
    if frame.height == 0:
        raise DataError(f"{source}: no rows to train on")
    texts = check_texts_column(frame, source, text)
    require_columns(frame, [label], source)
    index = {name: i for i, name in enumerate(labels)}
    values = frame[label].cast(pl.String).to_list()
    y = np.empty(len(values), dtype=np.int64)
    for row, value in enumerate(values):
        if value not in index:
            raise DataError(f"{source}: row {row}: label {value!r} is not in the label set {list(labels)}")
        y[row] = index[value]
    classes = np.unique(y)
    if len(classes) < min_classes:
        raise DataError(f"{source}: training data has one class only ({labels[classes[0]]!r}); "
                        "a topic classifier needs at least two")
    return texts, y, languages_of(frame)


def sample_per_language(frame: pl.DataFrame, n: int, seed: int = 0) -> pl.DataFrame:
    """At most ``n`` rows of each language, drawn independently per language (reproducibly)."""
    parts = []
    for lang, part in frame.group_by("lang", maintain_order=True):
        if part.height > n:
            code = lang[0] if isinstance(lang, tuple) else lang
            part = part.sample(n, seed=seed + zlib.crc32(str(code).encode()))
        parts.append(part)
    return pl.concat(parts) if parts else frame
