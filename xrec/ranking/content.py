"""Item vectors in the shared content space, for a catalogue read by :mod:`xrec.catalogue.items`.

Items without text (``has_text`` False) get a zero vector, so content scores them 0 and they are
reached through CF only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from xrec.encoders.base import Encoder


def item_vectors(encoder: Encoder, items: pl.DataFrame, *, store: str | os.PathLike[str] | None = None,
                 text_column: str = "text", progress: bool | None = None,
                 reuse: Sequence[str | os.PathLike[str]] = ()) -> np.ndarray:
    """Passage vectors of the catalogue in its order (zero rows for items without text).

    ``store`` is an embedding store file (:mod:`xrec.store`): unchanged items are not re-embedded;
    texts found in the further store files ``reuse`` are not embedded either.
    """
    from xrec.store import embed_items

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
