"""The MovieLens loader on the repository's real sample."""

from __future__ import annotations

import gzip
import shutil

import polars as pl
import pytest
from xrec.datasets.movielens import item_texts, load_movielens
from xrec.errors import DataError


def test_load_sample(data_dir):
    ml = load_movielens(data_dir / "movielens")
    assert ml.movies.height == 9742 and ml.ratings.height == 80419 and ml.tags.height == 1412
    assert ml.ratings.columns == ["user_id", "item_id", "weight", "timestamp"]
    items = ml.items()
    toy = items.filter(pl.col("item_id") == 1)["text"][0]
    assert toy.startswith("Toy Story (1995). Genres: Adventure, Animation, Children, Comedy, Fantasy.")
    assert "Tags: fun." in toy
    assert items["text"].str.len_chars().min() > 5


def test_tags_restricted_by_caller(data_dir):
    ml = load_movielens(data_dir / "movielens")
    bare = ml.items(ml.tags.head(0))
    assert not bare["text"].str.contains("Tags:").any()
    assert bare.filter(pl.col("item_id") == 1)["text"][0].endswith("Fantasy.")


def test_no_genres_and_duplicate_tags():
    movies = pl.DataFrame({"item_id": [1, 2], "title": ["A (2000)", "B (2001)"],
                           "genres": ["(no genres listed)", "Drama|War"]})
    tags = pl.DataFrame({"user_id": [1, 2, 3], "item_id": [2, 2, 2], "tag": ["Epic", "epic ", "long"],
                         "timestamp": [1, 2, 3]})
    out = item_texts(movies, tags)["text"].to_list()
    assert out == ["A (2000).", "B (2001). Genres: Drama, War. Tags: epic, long."]


def test_missing_files_are_named(tmp_path, data_dir):
    with pytest.raises(DataError, match="no movies.csv.gz"):
        load_movielens(tmp_path)
    shutil.copy(data_dir / "movielens" / "movies.csv.gz", tmp_path)
    with pytest.raises(DataError, match="no ratings.csv.gz"):
        load_movielens(tmp_path)
    with gzip.open(tmp_path / "ratings.csv.gz", "wt") as f:
        f.write("userId,movieId,rating\n1,1,4.0\n")
    with pytest.raises(DataError, match="missing column.*timestamp"):
        load_movielens(tmp_path)
