"""SIB-200 (topic classification over Flores-200) in the layout of ``shared/data/sib200``.

A folder holds ``{train,dev,test}.jsonl.gz`` (one JSON object per sentence: ``lang``,
``index_id``, ``category``, ``text``) and ``labels.txt`` (one label per line). The same
``index_id`` is the same sentence in every language, so a split is also a parallel corpus.
The Flores codes on disk (``deu_Latn``) are read as xrec's one code system (``de``).
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from xrec.catalogue.languages import filter_codes, normalise_codes
from xrec.catalogue.tables import read_table
from xrec.errors import DataError

COLUMNS = ("lang", "index_id", "category", "text")
SPLITS = ("train", "dev", "test")


def split_path(directory: str | os.PathLike[str], split: str) -> Path:
    """Path of ``split`` in ``directory`` (``.jsonl.gz``, else ``.jsonl``)."""
    if split not in SPLITS:
        raise DataError(f"unknown SIB-200 split {split!r}; expected one of {SPLITS}")
    root = Path(directory)
    for suffix in (".jsonl.gz", ".jsonl"):
        if (root / f"{split}{suffix}").is_file():
            return root / f"{split}{suffix}"
    raise DataError(f"{root}: no {split}.jsonl.gz or {split}.jsonl (not a SIB-200 folder?)")


def load_file(path: str | os.PathLike[str], languages: list[str] | None = None) -> pl.DataFrame:
    """Read one SIB-200 JSONL file as ``lang, index_id, category, text``, optionally some languages.
    Flores codes become xrec's (:func:`xrec.catalogue.languages.normalise`: ``deu_Latn`` -> ``de``)."""
    frame = read_table(path, required=COLUMNS).select(
        pl.col("lang").cast(pl.String), pl.col("index_id").cast(pl.Int64),
        pl.col("category").cast(pl.String), pl.col("text").cast(pl.String))
    for column in COLUMNS:
        nulls = frame[column].is_null()
        if nulls.any():
            raise DataError(f"{path}: row {int(nulls.arg_true()[0])}: {column} is null")
    dup = frame.select(pl.struct("lang", "index_id").is_duplicated()).to_series()
    if dup.any():
        row = int(dup.arg_true()[0])
        raise DataError(f"{path}: row {row}: duplicate (lang, index_id) "
                        f"({frame['lang'][row]!r}, {frame['index_id'][row]})")
    frame = normalise_codes(frame, str(path))
    if languages is not None:
        frame = frame.filter(pl.col("lang").is_in(filter_codes(languages, "languages")))
    return frame


def load_split(directory: str | os.PathLike[str], split: str,
               languages: list[str] | None = None) -> pl.DataFrame:
    """The ``split`` (train/dev/test) of a SIB-200 folder: columns ``lang, index_id, category, text``."""
    return load_file(split_path(directory, split), languages)


def load_labels(directory: str | os.PathLike[str]) -> list[str]:
    """The label set from ``labels.txt`` in order (one per line, blank lines skipped)."""
    path = Path(directory) / "labels.txt"
    if not path.is_file():
        raise DataError(f"{path}: no such file (SIB-200 label list)")
    labels = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not labels:
        raise DataError(f"{path}: empty label list")
    if len(set(labels)) != len(labels):
        raise DataError(f"{path}: duplicate labels in {labels}")
    return labels
