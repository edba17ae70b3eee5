"""Evaluation splits of any catalogue: MovieLens, Book-Crossing, or a generic items + interactions pair.

:func:`load_split` reads a data folder, validates it and holds out test interactions:

* with ``test_file``, those rows are the test set and every interaction in the folder trains;
* else, with timestamps on every interaction, the last ``fraction`` of each user's interactions
  by time (ceil, at least one); without timestamps a seeded random ``fraction`` of each user's
  interactions (ceil, at least one, :func:`~xrec.catalogue.interactions.random_split`).

``new_language=L`` gives the new-language protocol: every training interaction with an item of
language ``L`` is removed (no one has interacted with that catalogue yet), the test set is the
test interactions with ``L``'s items, and models rank ``L``'s items only (``Split.candidates``).
``new_items`` (item ids, or a table file with an ``item_id`` column) gives the same protocol on
any set of items, e.g. a monolingual reference of a new-language protocol.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from xrec.catalogue.interactions import (
    Interactions,
    random_split,
    read_interactions,
    temporal_split,
    validate_interactions,
)
from xrec.catalogue.tables import find_table
from xrec.errors import DataError

LAYOUTS = ("movielens", "bookcrossing", "generic")


@dataclass
class Split:
    """Catalogue, training interactions and test interactions of one evaluation run."""

    items: pl.DataFrame  #: item_id, text[, lang]
    train: Interactions
    test: pl.DataFrame  #: user_id, item_id, weight[, timestamp]
    info: dict
    #: item indices that are ranked (new-language protocol); None: the whole catalogue
    candidates: np.ndarray | None = field(default=None)
    #: metadata fields for the hybrid's metadata graphs (e.g. ``{"author": [...]}``), catalogue order
    metadata: dict[str, list] = field(default_factory=dict)


def detect_layout(directory: str | os.PathLike[str]) -> str:
    """``movielens`` (movies + ratings), ``bookcrossing`` (books + ratings) or ``generic``
    (items + interactions); :class:`DataError` when the folder holds none of them."""
    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    has = lambda stem: find_table(root, stem) is not None  # noqa: E731
    if has("movies") and has("ratings"):
        return "movielens"
    if has("books") and has("ratings"):
        return "bookcrossing"
    if has("items") and has("interactions"):
        return "generic"
    raise DataError(f"{root}: no known layout: expected movies + ratings (MovieLens), books + ratings "
                    "(Book-Crossing) or items + interactions tables (.csv[.gz], .parquet, .jsonl[.gz])")


def load_split(data: str | os.PathLike[str], test_file: str | os.PathLike[str] | None = None, *,
               fraction: float = 0.2, seed: int = 0, template: str | None = None,
               new_language: str | None = None, metadata: Sequence[str] | None = None,
               drop_unknown: bool = False,
               new_items: Sequence | str | os.PathLike[str] | None = None,
               users: float | None = None) -> Split:
    """Read ``data`` (any of :data:`LAYOUTS`) and build the protocol's split (module docstring).

    ``users`` (a fraction in (0, 1]) keeps a seeded random share of the users (``seed``) with all
    their interactions before the split; the catalogue stays whole.

    ``template`` renders the item text from the items table's fields (Book-Crossing and generic
    layouts; default: the layout's own text). ``metadata`` names item fields whose shared values
    link items for the hybrid (default: ``author`` for Book-Crossing, none otherwise)."""
    root = Path(data)
    layout = detect_layout(root)
    items, ratings, read_test = _read_layout(root, layout, template)
    fields = list(metadata) if metadata is not None else (["author"] if layout == "bookcrossing" else [])
    missing = [f for f in fields if f not in items.columns]
    if missing:
        raise DataError(f"{root}: metadata field(s) {missing} not in the items table (columns: {items.columns})")
    meta = {f: items[f].cast(pl.String).to_list() for f in fields}
    item_ids = items["item_id"]
    ratings, report = validate_interactions(ratings, f"{root}/ratings", item_ids=item_ids,
                                            drop_unknown=drop_unknown)
    if users is not None:
        ratings = sample_users(ratings, users, seed)
    test = None
    if test_file is not None:
        test, _ = validate_interactions(read_test(test_file), str(test_file), item_ids=item_ids,
                                        drop_unknown=drop_unknown)
    train, test, how = hold_out(ratings, test, fraction=fraction, seed=seed, source=f"{root}/ratings")
    if test_file is not None:
        how = f"test interactions from {test_file}; all of {root} trains"
    if layout == "movielens":
        items = _movielens_items(root, test)
    return split_of(items, train, test, how, source=root, layout=layout, new_language=new_language,
                    new_items=new_items, metadata=meta, dropped=report.dropped, users=users)


def hold_out(ratings: pl.DataFrame, test: pl.DataFrame | None = None, *, fraction: float = 0.2, seed: int = 0,
             source: str = "interactions") -> tuple[pl.DataFrame, pl.DataFrame, str]:
    """``(train, test, how)`` of validated interactions (module docstring): all of ``ratings``
    trains when ``test`` is given; else the last ``fraction`` by time, or a seeded random one."""
    if test is not None:
        return ratings, test, "test interactions given; all interactions train"
    if "timestamp" in ratings.columns and not ratings["timestamp"].null_count():
        train, test = temporal_split(ratings, fraction, source=source)
        return train, test, f"last {fraction:.0%} of each user's interactions by time held out (ceil, at least 1)"
    train, test = random_split(ratings, fraction, seed=seed)
    return train, test, (f"random {fraction:.0%} of each user's interactions held out (seed {seed}, ceil, "
                         "at least 1; no timestamps)")


def split_of(items: pl.DataFrame, train: pl.DataFrame, test: pl.DataFrame, how: str, *,
             source: str | os.PathLike[str], layout: str = "generic", new_language: str | None = None,
             new_items: Sequence | str | os.PathLike[str] | None = None,
             metadata: dict[str, list] | None = None, dropped: int = 0, users: float | None = None) -> Split:
    """The :class:`Split` of a catalogue (``item_id, text[, lang]``; prepared or not) and its held-out
    interactions (:func:`hold_out`), with the new-catalogue protocol for ``new_language`` or
    ``new_items``; ``users`` (the share of users kept, if sampled) goes into the protocol."""
    from xrec.catalogue.items import prepare_items
    from xrec.catalogue.languages import normalise

    root = Path(source)
    items = items.select([c for c in ("item_id", "text", "lang", "has_text") if c in items.columns])
    if "has_text" not in items.columns:  # not prepared yet: texts checked, languages normalised
        items = prepare_items(items, f"{root} (items)")
    item_ids = items["item_id"]
    candidates = None
    if new_language is not None and new_items is not None:
        raise DataError("give either new_language or new_items, not both")
    if new_language is not None:
        new_language = normalise(new_language, "--new-language")
        train, test, candidates = _new_catalogue(items, train, test, _language_mask(items, new_language, root),
                                                 f"{root}: no test interaction names an item in {new_language!r}")
        how += f"; new-language protocol for {new_language!r}"
    elif new_items is not None:
        mask, source = _listed_mask(items, new_items, root)
        train, test, candidates = _new_catalogue(items, train, test, mask,
                                                 f"{root}: no test interaction names an item of {source}")
        how += f"; new-catalogue protocol for the {int(mask.sum())} items of {source}"
    inter = Interactions.build(train, item_ids, source=f"{root}/ratings")
    info = {"data": str(root), "layout": layout, "split": how, "train_ratings": train.height,
            "test_ratings": test.height, "users": len(inter.users), "items": len(item_ids),
            "unknown_rows_dropped": dropped}
    if users is not None:
        info["user_fraction"] = users
    if new_language is not None:
        info["new_language"] = new_language
    if candidates is not None:
        info["candidates"] = int(len(candidates))
    return Split(items, inter, test, info, candidates, dict(metadata or {}))


def sample_users(ratings: pl.DataFrame, fraction: float, seed: int = 0) -> pl.DataFrame:
    """The interactions of a seeded random ``fraction`` of the users (``floor``, at least one),
    drawn with ``numpy.random.default_rng(seed)`` from the sorted user ids."""
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"user fraction {fraction}: must be in (0, 1]")
    ids = ratings["user_id"].unique().sort()
    n = max(1, int(np.floor(fraction * len(ids))))
    keep = ids.gather(np.sort(np.random.default_rng(seed).choice(len(ids), n, replace=False)))
    return ratings.filter(pl.col("user_id").is_in(keep.implode()))


def _read_layout(root: Path, layout: str, template: str | None):
    """Items (item_id, text[, lang]), interactions, and the reader of a test file of the layout."""
    from xrec.catalogue.tables import read_table
    from xrec.catalogue.templates import item_texts

    if layout == "movielens":
        from xrec.datasets.movielens import load_movielens, read_ratings

        if template is not None:
            raise DataError(f"{root}: a text template applies to Book-Crossing and generic layouts; "
                            "MovieLens items use title, genres and training-time tags")
        ml = load_movielens(root)
        return ml.items(ml.tags.clear()), ml.ratings, read_ratings
    if layout == "bookcrossing":
        from xrec.datasets.bookcrossing import DEFAULT_TEMPLATE, load_bookcrossing

        bx = load_bookcrossing(root)
        reader = lambda path: load_bookcrossing_ratings(path)  # noqa: E731
        items = bx.items(template or DEFAULT_TEMPLATE).join(bx.books.drop("lang"), on="item_id", how="left",
                                                            maintain_order="left")
        return items, bx.ratings, reader
    items_path, interactions_path = find_table(root, "items"), find_table(root, "interactions")
    if items_path is None or interactions_path is None:
        raise DataError(f"{root}: no {'items' if items_path is None else 'interactions'} table "
                        "(.csv, .csv.gz or .parquet)")
    items = read_table(items_path, required=["item_id"])
    items = items.with_columns(item_texts(items, template, str(items_path)))
    return items, read_interactions(interactions_path), read_interactions


def load_bookcrossing_ratings(path: str | os.PathLike[str]) -> pl.DataFrame:
    """A Book-Crossing ratings file (``user_id, item_id[, rating]``) as interactions of weight 1."""
    from xrec.catalogue.tables import read_table

    frame = read_table(path, required=["user_id", "item_id"], string_columns=["item_id"])
    return frame.select("user_id", pl.col("item_id").cast(pl.String), pl.lit(1.0).alias("weight"))


def _movielens_items(root: Path, test: pl.DataFrame) -> pl.DataFrame:
    """MovieLens items whose texts use only training-time tags (not those of held-out pairs, nor
    those given at or after the user's first held-out rating)."""
    from xrec.datasets.movielens import load_movielens

    ml = load_movielens(root)
    tags = ml.tags
    if "timestamp" in test.columns:
        cut = test.group_by("user_id").agg(pl.col("timestamp").min().alias("__cut"))
        tags = tags.join(cut, on="user_id", how="left").filter(
            pl.col("__cut").is_null() | (pl.col("timestamp") < pl.col("__cut"))).drop("__cut")
    tags = tags.join(test.select("user_id", "item_id"), on=["user_id", "item_id"], how="anti")
    return ml.items(tags)


def _language_mask(items: pl.DataFrame, language: str, root: Path) -> np.ndarray:
    if "lang" not in items.columns:
        raise DataError(f"{root}: --new-language needs a 'lang' column in the items table")
    langs = items["lang"]
    mask = (langs == language).fill_null(False)
    if not mask.any():
        counts = langs.drop_nulls().value_counts(sort=True).head(12)
        listed = ", ".join(f"{lang} ({n})" for lang, n in counts.iter_rows())
        raise DataError(f"{root}: no item has lang {language!r}; the catalogue's languages: {listed}")
    return mask.to_numpy()


def _listed_mask(items: pl.DataFrame, new_items, root: Path) -> tuple[np.ndarray, str]:
    """Catalogue mask of the listed items (ids, or a table file with ``item_id``) and its name."""
    from xrec.catalogue.tables import read_table

    if isinstance(new_items, (str, os.PathLike)):
        source = str(new_items)
        ids = read_table(new_items, required=["item_id"])["item_id"]
    else:
        source, ids = "the new items given", pl.Series("item_id", list(new_items))
    if ids.dtype != items["item_id"].dtype:
        ids = ids.cast(pl.String) if items["item_id"].dtype == pl.String else ids.cast(items["item_id"].dtype,
                                                                                        strict=False)
    unknown = ids.filter(~ids.is_in(items["item_id"].implode()) | ids.is_null())
    if len(unknown):
        raise DataError(f"{source}: {len(unknown)} item id(s) not in the catalogue of {root}, "
                        f"e.g. {unknown.head(3).to_list()}")
    mask = items["item_id"].is_in(ids.implode()).to_numpy()
    if not mask.any():
        raise DataError(f"{source}: lists no item")
    return mask, source


def _new_catalogue(items: pl.DataFrame, train: pl.DataFrame, test: pl.DataFrame, mask: np.ndarray,
                   empty: str) -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray]:
    """No training interaction with the masked items; test on them only; they are the candidates."""
    ids = items.filter(pl.Series(mask)).select("item_id")
    train = train.join(ids, on="item_id", how="anti")
    test = test.join(ids, on="item_id", how="semi")
    if test.height == 0:
        raise DataError(empty)
    return train, test, np.flatnonzero(mask)
