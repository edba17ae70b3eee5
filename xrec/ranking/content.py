"""Item catalogue loading and item vectors in the shared content space.

Items without text (null or blank ``text``) stay in the catalogue: they are counted, logged, and
get a zero vector, so content scores them 0 and they are reached through CF only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from xrec.encoders.base import Encoder, encoder_first
from xrec.errors import DataError
from xrec.tables import read_table, validate_items

log = logging.getLogger(__name__)


def load_items(path: str | os.PathLike[str], text_column: str = "text", *,
               template: str | None = None) -> pl.DataFrame:
    """Read and check an items table (``item_id``, ``text``, optional ``lang``); see module doc.

    ``template`` (e.g. ``"{title}. {author}"``) renders ``text`` from other columns first."""
    if template is None:
        return prepare_items(read_table(path, required=["item_id", text_column]), str(path), text_column)
    from xrec.datasets.templates import render_template

    frame = read_table(path, required=["item_id"])
    frame = frame.with_columns(render_template(frame, template, str(path)).alias(text_column))
    return prepare_items(frame, str(path), text_column)


def prepare_items(frame: pl.DataFrame, source: str = "items", text_column: str = "text") -> pl.DataFrame:
    """Validate ids, add ``has_text``; null or blank texts become ``""`` with ``has_text`` False."""
    if frame.height == 0:
        raise DataError(f"{source}: the catalogue is empty")
    if text_column in frame.columns and frame[text_column].dtype == pl.Null:
        frame = frame.with_columns(pl.col(text_column).cast(pl.String))
    has_text = frame[text_column].is_not_null() & (frame[text_column].str.strip_chars() != "")
    frame = frame.with_columns(pl.col(text_column).fill_null(""), has_text.alias("has_text"))
    validate_items(frame, source, text_column)
    missing = int((~frame["has_text"]).sum())
    if missing:
        log.warning("%s: %d of %d items have no text (e.g. %s); they get zero content vectors",
                    source, missing, frame.height,
                    frame.filter(~pl.col("has_text"))["item_id"].head(3).to_list())
    return frame


def item_vectors(encoder: Encoder, items: pl.DataFrame, *, store: str | os.PathLike[str] | None = None,
                 text_column: str = "text", progress: bool | None = None,
                 reuse: Sequence[str | os.PathLike[str]] = ()) -> np.ndarray:
    """Passage vectors of the catalogue in its order (zero rows for items without text).

    ``store`` is an embedding store file (:mod:`xrec.store`): unchanged items are not re-embedded;
    texts found in the further store files ``reuse`` are not embedded either.
    The old order ``item_vectors(items, encoder)`` still works, with a DeprecationWarning.
    """
    from xrec.store import embed_items

    encoder, items = encoder_first("item_vectors", encoder, items)

    has_text = items["has_text"].to_numpy() if "has_text" in items.columns else \
        (items[text_column].str.strip_chars() != "").to_numpy()
    ids = items["item_id"].to_list()
    texts = items[text_column].to_list()
    out = np.zeros((items.height, encoder.dim), dtype=np.float32)
    keep = np.flatnonzero(has_text)
    if len(keep):
        out[keep] = embed_items(encoder, [ids[i] for i in keep], [texts[i] for i in keep],
                                store=store, kind="passage", progress=progress,
                                reuse=[r for r in reuse if Path(r).is_file()])
    return out
