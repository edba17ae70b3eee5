"""The labelled and unlabelled text tables topic training takes: checks, sampling, and the
tables of a SIB-200-style folder (:func:`topic_tables`, shared by ``xrec topics train``,
``xrec evaluate topics`` and the main job)."""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from xrec.catalogue.tables import require_columns
from xrec.errors import DataError

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


def languages_of(frame: pl.DataFrame, column: str = "lang", source: str = "table") -> list[str]:
    """The ``lang`` column normalised (:func:`xrec.catalogue.languages.item_languages`: a null or blank
    code is detected from ``text``, :data:`DEFAULT_LANG` where that fails), or
    :data:`DEFAULT_LANG` for every row of a table without one."""
    if column not in frame.columns:
        return [DEFAULT_LANG] * frame.height
    from xrec.catalogue.languages import item_languages

    return item_languages(frame, source, column=column)[column].fill_null(DEFAULT_LANG).to_list()


def select_languages(frame: pl.DataFrame, languages: Sequence[str] | None, source: str) -> pl.DataFrame:
    """Rows of ``frame`` in ``languages`` (all rows if None); raises if a language has no rows.
    Codes on both sides are compared normalised (``eng_Latn`` is ``en``)."""
    if not languages:
        return frame
    from xrec.catalogue.languages import filter_codes, normalise_codes

    require_columns(frame, ["lang"], source)
    languages = filter_codes(languages, "--train-lang")
    frame = normalise_codes(frame, source)
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
    return texts, y, languages_of(frame, source=source)


def sample_per_language(frame: pl.DataFrame, n: int, seed: int = 0) -> pl.DataFrame:
    """At most ``n`` rows of each language, drawn independently per language (reproducibly)."""
    parts = []
    for lang, part in frame.group_by("lang", maintain_order=True):
        if part.height > n:
            code = lang[0] if isinstance(lang, tuple) else lang
            part = part.sample(n, seed=seed + zlib.crc32(str(code).encode()))
        parts.append(part)
    return pl.concat(parts) if parts else frame


def few_shot_split(train: pl.DataFrame, sources: Sequence[str], labels: Sequence[str], shots: int,
                   unlabelled_per_lang: int, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The labelled rows and the unlabelled pool of the ``--shots`` protocol.

    Labelled: every train row of ``sources`` plus, for every other language, ``shots`` rows per
    label (fewer where a label has fewer), drawn with a generator seeded by ``seed`` and the
    language code. Pool: at most ``unlabelled_per_lang`` of each other language's remaining rows,
    with the label column dropped. ``shots=0`` is the zero-shot protocol.
    """
    codes = np.asarray(train["lang"].to_list(), dtype=object)
    categories = np.asarray(train["category"].to_list(), dtype=object)
    chosen = np.isin(codes, list(sources))
    if shots > 0:
        for lang in dict.fromkeys(codes[~chosen].tolist()):
            rng = np.random.default_rng(seed + zlib.crc32(str(lang).encode()))
            for label in labels:
                rows = np.flatnonzero((codes == lang) & (categories == label))
                chosen[rng.choice(rows, min(shots, len(rows)), replace=False)] = True
    mask = pl.Series(chosen)
    rest = train.filter(~mask & ~pl.col("lang").is_in(list(sources)))
    pool = sample_per_language(rest, unlabelled_per_lang, seed).select("lang", "index_id", "text")
    return train.filter(mask), pool


@dataclass(frozen=True)
class TopicTables:
    """The tables of topic training on a SIB-200-style folder (see :func:`topic_tables`)."""

    labels: list[str]  #: the folder's label set
    train: pl.DataFrame  #: labelled train rows (``lang, index_id, text, category``)
    dev: pl.DataFrame  #: labelled dev rows of the training languages
    unlabelled: pl.DataFrame  #: other languages' train text, no labels (``lang, index_id, text``)


def topic_tables(data_dir: str | os.PathLike[str], train_langs: str | Sequence[str] | None, *,
                 shots: int = 0, unlabelled_per_lang: int = 100, seed: int = 0) -> TopicTables:
    """Train, dev and unlabelled tables of a SIB-200-style folder for training on the labels of
    ``train_langs`` (None: every language): train holds their train rows (plus ``shots`` rows per
    label of every other language, see :func:`few_shot_split`), dev their dev rows, unlabelled at
    most ``unlabelled_per_lang`` of each other language's remaining train rows. Raises
    :class:`DataError` naming a training language without train rows."""
    from xrec.datasets.sib200 import load_labels, load_split

    if shots < 0 or unlabelled_per_lang < 0:
        raise DataError(f"shots ({shots}) and unlabelled_per_lang ({unlabelled_per_lang}) must be >= 0")
    labels = load_labels(data_dir)
    every = load_split(data_dir, "train")
    if train_langs is None:
        sources = list(dict.fromkeys(every["lang"].to_list()))
    else:
        from xrec.catalogue.languages import filter_codes

        sources = filter_codes(train_langs, "train_lang")
        select_languages(every, sources, f"{data_dir}/train")  # every source must have rows
    train, pool = few_shot_split(every, sources, labels, shots, unlabelled_per_lang, seed)
    dev = load_split(data_dir, "dev", None if train_langs is None else sources)
    return TopicTables(labels, train, dev, pool)
