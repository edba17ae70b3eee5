"""Builders of the small real samples several test modules share (fixtures over them live in
``conftest.py``)."""

from __future__ import annotations

import polars as pl
from xrec.catalogue.items import prepare_items
from xrec.ranking.cf import fit_als
from xrec.ranking.hybrid import HybridConfig

#: A HybridRanker config small enough for the test samples.
SMALL = HybridConfig(max_fit_users=300, max_fit_items=2000)


def small_cf(matrix):
    """A 16-factor ALS (the tests' CF model: fast and good enough)."""
    return fit_als(matrix, factors=16)[0]


def every(frame: pl.DataFrame, k: int, offset: int = 0) -> pl.DataFrame:
    """Every ``k``-th row of each language (a stratified subset: SIB files are sorted by label)."""
    return frame.filter((pl.int_range(pl.len()).over("lang") % k) == offset)


def movielens_sample(data_dir, n_items: int = 260, n_cold: int = 40):
    """Ratings of real users on the most rated sample items, plus never-rated (cold) items."""
    from xrec.datasets.movielens import load_movielens

    ml = load_movielens(data_dir / "movielens")
    top = ml.ratings.group_by("item_id").len().sort(["len", "item_id"], descending=[True, False])
    keep = top["item_id"].head(n_items)
    cold = ml.movies.filter(~pl.col("item_id").is_in(ml.ratings["item_id"].unique().implode()))
    ids = pl.concat([keep, cold["item_id"].head(n_cold)])
    items = ml.items().filter(pl.col("item_id").is_in(ids.implode()))
    ratings = ml.ratings.filter(pl.col("item_id").is_in(keep.implode()) & (pl.col("user_id") <= 150))
    return prepare_items(items), ratings
