"""An items table read and checked: unique ids by the id rule, texts (given or rendered from a
template), languages normalised or detected.

Items without text (null or blank ``text``) stay in the catalogue: :func:`prepare_items` counts and
logs them, marks them ``has_text`` False, and they get a zero content vector
(:func:`xrec.ranking.content.item_vectors`), so they are reached through CF only.
"""

from __future__ import annotations

import logging
import os

import polars as pl

from xrec.catalogue.languages import item_languages
from xrec.catalogue.tables import first_row_where, locate, read_table, require_columns
from xrec.catalogue.templates import render_template
from xrec.errors import DataError

log = logging.getLogger(__name__)


def load_items(path: str | os.PathLike[str], text_column: str = "text", *,
               template: str | None = None) -> pl.DataFrame:
    """Read and check an items table (``item_id``, ``text``, optional ``lang``); see module doc.

    ``template`` (e.g. ``"{title}. {author}"``) renders ``text`` from other columns first."""
    if template is None:
        return prepare_items(read_table(path, required=["item_id", text_column]), str(path), text_column)
    frame = read_table(path, required=["item_id"])
    frame = frame.with_columns(render_template(frame, template, str(path)).alias(text_column))
    return prepare_items(frame, str(path), text_column)


def prepare_items(frame: pl.DataFrame, source: str = "items", text_column: str = "text") -> pl.DataFrame:
    """Validate ids, add ``has_text``; null or blank texts become ``""`` with ``has_text`` False;
    ``lang`` normalised or detected, with ``lang_source`` (:func:`validate_items`)."""
    if frame.height == 0:
        raise DataError(f"{source}: the catalogue is empty")
    if text_column in frame.columns and frame[text_column].dtype == pl.Null:
        frame = frame.with_columns(pl.col(text_column).cast(pl.String))
    has_text = frame[text_column].is_not_null() & (frame[text_column].str.strip_chars() != "")
    frame = frame.with_columns(pl.col(text_column).fill_null(""), has_text.alias("has_text"))
    frame = validate_items(frame, source, text_column)
    missing = int((~frame["has_text"]).sum())
    if missing:
        log.warning("%s: %d of %d items have no text (e.g. %s); they get zero content vectors",
                    source, missing, frame.height,
                    frame.filter(~pl.col("has_text"))["item_id"].head(3).to_list())
    return frame


def validate_items(frame: pl.DataFrame, source: str, text_column: str = "text") -> pl.DataFrame:
    """Check an items table: unique non-null ``item_id``, string ``text`` without nulls.

    Returns the table with ``item_id`` as given (int64 or string), ``lang`` normalised to one code
    system or detected from the text where missing, and ``lang_source``
    (:func:`xrec.catalogue.languages.item_languages`).
    """
    require_columns(frame, ["item_id", text_column], source)
    ids = frame["item_id"]
    if ids.null_count():
        raise DataError(f"{source}: {locate(source, first_row_where(frame, ids.is_null()))}: item_id is null")
    repeat = ~ids.is_first_distinct()
    if repeat.any():
        row = first_row_where(frame, repeat)  # the first repeat: the first occurrence is not at fault
        first = int((ids == ids[row]).arg_true()[0])
        raise DataError(f"{source}: {locate(source, row)}: duplicate item_id {ids[row]!r} "
                        f"(first at {locate(source, first)})")
    texts = frame[text_column]
    if texts.dtype not in (pl.String, pl.Null):
        raise DataError(f"{source}: column {text_column!r} must hold strings, found {texts.dtype}")
    if texts.null_count():
        row = first_row_where(frame, texts.is_null())
        raise DataError(f"{source}: {locate(source, row)} (item_id {ids[row]!r}): {text_column} is null")
    return item_languages(frame, source, text_column)
