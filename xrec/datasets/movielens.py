"""Loader of the MovieLens layout (``movies.csv[.gz]``, ``ratings.csv[.gz]``, optional ``tags.csv[.gz]``).

Items get one text each, built from the title, the genres and the tags users gave the movie
(only the tags that are passed in, so that an evaluation can restrict them to training time)::

    Toy Story (1995). Genres: Adventure, Animation, Children. Tags: pixar, fun

Ratings become interactions ``user_id, item_id, weight, timestamp`` (``weight`` = stars).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

import polars as pl

from xrec.catalogue.tables import read_table
from xrec.errors import DataError

NO_GENRES = "(no genres listed)"


@dataclass(frozen=True)
class MovieLens:
    """The raw MovieLens tables with xrec's column names."""

    movies: pl.DataFrame  #: item_id, title, genres
    ratings: pl.DataFrame  #: user_id, item_id, weight, timestamp
    tags: pl.DataFrame  #: user_id, item_id, tag, timestamp (empty when there is no tags file)

    def items(self, tags: pl.DataFrame | None = None) -> pl.DataFrame:
        """Items table ``item_id, text, lang`` built from titles, genres and ``tags`` (default: all
        tags); ``lang`` is ``en``, the release's language (its short titles are not worth detecting)."""
        return item_texts(self.movies, self.tags if tags is None else tags).with_columns(lang=pl.lit("en"))


@overload
def _find(directory: Path, stem: str, required: Literal[True] = ...) -> Path: ...
@overload
def _find(directory: Path, stem: str, required: bool) -> Path | None: ...
def _find(directory: Path, stem: str, required: bool = True) -> Path | None:
    for name in (f"{stem}.csv.gz", f"{stem}.csv", f"{stem}.parquet"):
        if (directory / name).is_file():
            return directory / name
    if required:
        raise DataError(f"{directory}: no {stem}.csv.gz, {stem}.csv or {stem}.parquet (MovieLens layout)")
    return None


def read_ratings(path: str | os.PathLike[str]) -> pl.DataFrame:
    """A MovieLens ratings file as interactions ``user_id, item_id, weight, timestamp``."""
    frame = read_table(path, required=["userId", "movieId", "rating", "timestamp"])
    return frame.select(
        pl.col("userId").alias("user_id"), pl.col("movieId").alias("item_id"),
        pl.col("rating").cast(pl.Float64).alias("weight"), pl.col("timestamp").cast(pl.Int64))


def load_movielens(directory: str | os.PathLike[str]) -> MovieLens:
    """Read ``movies``, ``ratings`` and (optional) ``tags`` from a MovieLens directory."""
    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    movies = read_table(_find(root, "movies"), required=["movieId", "title", "genres"]).select(
        pl.col("movieId").alias("item_id"), pl.col("title").cast(pl.String),
        pl.col("genres").cast(pl.String))
    ratings = read_ratings(_find(root, "ratings"))
    tags_path = _find(root, "tags", required=False)
    if tags_path is None:
        tags = pl.DataFrame(schema={"user_id": pl.Int64, "item_id": pl.Int64, "tag": pl.String,
                                    "timestamp": pl.Int64})
    else:
        tags = read_table(tags_path, required=["userId", "movieId", "tag", "timestamp"]).select(
            pl.col("userId").alias("user_id"), pl.col("movieId").alias("item_id"),
            pl.col("tag").cast(pl.String), pl.col("timestamp").cast(pl.Int64))
    return MovieLens(movies=movies, ratings=ratings, tags=tags)


def item_texts(movies: pl.DataFrame, tags: pl.DataFrame) -> pl.DataFrame:
    """``item_id, text`` per movie: title, genres and its distinct tags (lower-cased, first-seen order)."""
    tag_text = (tags.drop_nulls("tag")
                .with_columns(pl.col("tag").str.strip_chars().str.to_lowercase())
                .filter(pl.col("tag") != "")
                .unique(["item_id", "tag"], keep="first", maintain_order=True)
                .group_by("item_id", maintain_order=True)
                .agg(pl.col("tag").str.join(", ").alias("tags")))
    genres = (pl.when(pl.col("genres").is_null() | (pl.col("genres") == NO_GENRES)).then(pl.lit(""))
              .otherwise(pl.lit(" Genres: ") + pl.col("genres").str.replace_all("|", ", ", literal=True)
                         + pl.lit(".")))
    tags_part = pl.when(pl.col("tags").is_null()).then(pl.lit("")).otherwise(
        pl.lit(" Tags: ") + pl.col("tags") + pl.lit("."))
    out = movies.join(tag_text, on="item_id", how="left", maintain_order="left").select(
        "item_id",
        (pl.col("title").fill_null("").str.strip_chars() + pl.lit(".") + genres + tags_part)
        .str.strip_chars().alias("text"))
    return out
