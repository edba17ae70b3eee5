"""Tatoeba bitext (LASER / XTREME test set) in the layout of ``shared/data/tatoeba_laser``.

One JSON object per pair: ``lang`` (LASER code), ``flores_code`` (or null), ``pair_id``
(line number in the upstream pair files), ``text`` (the sentence in ``lang``) and ``eng``
(its English translation). Pairs align only within one language. Codes are read as xrec's one
code system (``cmn`` -> ``zh``, ``zho_Hans`` -> ``zh``).
"""

from __future__ import annotations

import os

import polars as pl

from xrec.catalogue.languages import filter_codes, normalise_codes
from xrec.catalogue.tables import read_table
from xrec.errors import DataError

COLUMNS = ("lang", "pair_id", "text", "eng")


def load_pairs(path: str | os.PathLike[str], languages: list[str] | None = None) -> pl.DataFrame:
    """Read a Tatoeba pairs file: columns ``lang, pair_id, text, eng`` (+ ``flores_code`` if given)."""
    frame = read_table(path, required=COLUMNS)
    keep = [c for c in (*COLUMNS, "flores_code") if c in frame.columns]
    frame = frame.select(keep).with_columns(pl.col("pair_id").cast(pl.Int64))
    for column in COLUMNS:
        nulls = frame[column].is_null()
        if nulls.any():
            raise DataError(f"{path}: row {int(nulls.arg_true()[0])}: {column} is null")
    for column in ("lang", "text", "eng"):
        if frame[column].dtype != pl.String:
            raise DataError(f"{path}: column {column!r} must hold strings, found {frame[column].dtype}")
    dup = frame.select(pl.struct("lang", "pair_id").is_duplicated()).to_series()
    if dup.any():
        row = int(dup.arg_true()[0])
        raise DataError(f"{path}: row {row}: duplicate (lang, pair_id) "
                        f"({frame['lang'][row]!r}, {frame['pair_id'][row]})")
    frame = normalise_codes(frame, str(path))
    if "flores_code" in frame.columns:
        frame = normalise_codes(frame, str(path), "flores_code")
    if languages is not None:
        languages = filter_codes(languages, "languages")
        unknown = sorted(set(languages) - set(frame["lang"].unique().to_list()))
        if unknown:
            raise DataError(f"{path}: no pairs for language(s) {unknown}")
        frame = frame.filter(pl.col("lang").is_in(list(languages)))
    return frame.sort("lang", "pair_id", maintain_order=True)
