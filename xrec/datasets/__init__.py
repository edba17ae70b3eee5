"""Loaders for the public data layouts xrec evaluates on (Book-Crossing, MovieLens, SIB-200, Tatoeba)."""

from xrec.datasets.bookcrossing import BookCrossing, load_bookcrossing
from xrec.datasets.movielens import MovieLens, load_movielens

__all__ = ["BookCrossing", "MovieLens", "load_bookcrossing", "load_movielens"]
