"""Loaders for the public data layouts xrec evaluates on (Book-Crossing, MovieLens, SIB-200, Tatoeba)
and item texts from templates over an items table's fields."""

from xrec.datasets.bookcrossing import BookCrossing, load_bookcrossing
from xrec.datasets.movielens import MovieLens, load_movielens
from xrec.datasets.templates import render_template

__all__ = ["BookCrossing", "MovieLens", "load_bookcrossing", "load_movielens", "render_template"]
