"""Loader of the Book-Crossing layout (``books``, ``ratings``, optional ``users``; CSV[.gz] or parquet).

``books``: ``item_id`` (ISBN, kept a string: leading zeros and ``X`` check digits), ``title``,
``author``, ``year``, ``publisher``, ``lang``; ``ratings``: ``user_id``, ``item_id``, ``rating``
(0 = an implicit interaction, 1-10 explicit); ``users``: ``user_id``, ``country``, ``age``.
Every rating row is one interaction of weight 1 (a 0 is "read, not rated", not a bad rating); the
rating is kept in ``rating``. There are no timestamps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from xrec.catalogue.tables import find_table, read_table
from xrec.catalogue.templates import render_template
from xrec.errors import DataError

#: The default item text (chosen on Book-Crossing; see the README's figures).
DEFAULT_TEMPLATE = "{title}. {author}"


@dataclass(frozen=True)
class BookCrossing:
    """The Book-Crossing tables with xrec's column names."""

    books: pl.DataFrame  #: item_id (str), title, author, year, publisher, lang
    ratings: pl.DataFrame  #: user_id, item_id, weight (1.0), rating
    users: pl.DataFrame | None  #: user_id, country, age (None without a users file)

    def items(self, template: str = DEFAULT_TEMPLATE) -> pl.DataFrame:
        """Items table ``item_id, text, lang`` with the text rendered from ``template``."""
        return self.books.select("item_id", render_template(self.books, template, "books"), "lang")


def is_bookcrossing(directory: str | os.PathLike[str]) -> bool:
    """True when ``directory`` holds a ``books`` and a ``ratings`` table."""
    root = Path(directory)
    return find_table(root, "books") is not None and find_table(root, "ratings") is not None


def load_bookcrossing(directory: str | os.PathLike[str]) -> BookCrossing:
    """Read ``books``, ``ratings`` and (optional) ``users`` from a Book-Crossing directory."""
    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    paths = {stem: find_table(root, stem) for stem in ("books", "ratings", "users")}

    def required(stem: str) -> Path:
        found = paths[stem]
        if found is None:
            raise DataError(f"{root}: no {stem}.csv.gz, {stem}.csv or {stem}.parquet (Book-Crossing layout)")
        return found

    books_path, ratings_path = required("books"), required("ratings")
    books = read_table(books_path, required=["item_id", "title"], string_columns=["item_id"])
    for column in ("author", "publisher", "year", "lang"):
        if column not in books.columns:
            books = books.with_columns(pl.lit(None, dtype=pl.String).alias(column))
    books = books.select(pl.col("item_id").cast(pl.String), pl.col("title").cast(pl.String),
                         pl.col("author").cast(pl.String), pl.col("year").cast(pl.String),
                         pl.col("publisher").cast(pl.String), pl.col("lang").cast(pl.String))
    ratings = read_table(ratings_path, required=["user_id", "item_id"], string_columns=["item_id"])
    rating = pl.col("rating").cast(pl.Float64) if "rating" in ratings.columns else pl.lit(None, pl.Float64)
    ratings = ratings.select(pl.col("user_id"), pl.col("item_id").cast(pl.String),
                             pl.lit(1.0).alias("weight"), rating.alias("rating"))
    users = None
    if paths["users"] is not None:
        users = read_table(paths["users"], required=["user_id"])
    return BookCrossing(books=books, ratings=ratings, users=users)
