"""MovieLens with a new Spanish catalogue, as generic catalogues (``items`` + ``interactions``).

The cross-language cold start of issue 25 with real translations: a seeded random ``fraction`` of
the movies that have a Spanish release title (``movielens_es/movies_es.csv.gz``) become a new
Spanish catalogue, shown by their Spanish title and year with the genres in Spanish and coded
``lang = "es"``; every other movie keeps its English title and genres (``lang = "en"``), so the
users' histories stay English. :func:`write_new_language_catalogue` writes that catalogue to a
folder in the generic layout::

    items.parquet         item_id, title, year, genres, lang, text
    interactions.parquet  user_id, item_id, weight (stars), timestamp (Unix seconds)
    new_items.csv         item_id of the new movies
    manifest.json         source folders, seed, fraction, counts

``xrec evaluate recs --data DIR --new-language es`` then runs the protocol: the split holds out
each user's last 20% by time, every training interaction with a new movie is removed and the test
interactions with the new movies are ranked among them (:mod:`xrec.evaluation.splits`).
``english=True`` writes the monolingual reference: the same new movies shown in English (title,
year, genres; ``lang = "en"`` everywhere), run with ``--new-items DIR/new_items.csv``.
Item texts carry no user tags (tags are user data, and held-out users' tags would leak).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import polars as pl

from xrec.catalogue.tables import find_table, read_table
from xrec.errors import DataError

#: MovieLens genres in Spanish ("(no genres listed)" gives no genre part).
GENRES_ES = {"Action": "Acción", "Adventure": "Aventura", "Animation": "Animación", "Children": "Infantil",
             "Comedy": "Comedia", "Crime": "Policíaca", "Documentary": "Documental", "Drama": "Drama",
             "Fantasy": "Fantasía", "Film-Noir": "Cine negro", "Horror": "Terror", "IMAX": "IMAX",
             "Musical": "Musical", "Mystery": "Misterio", "Romance": "Romántica", "Sci-Fi": "Ciencia ficción",
             "Thriller": "Suspense", "War": "Bélica", "Western": "Wéstern"}
_YEAR = re.compile(r"\s*\((\d{4})(?:[-–]\d{0,4})?\)\s*$")


def _english_text(title: str, year: str | None, genres: list[str]) -> str:
    head = f"{title} ({year})" if year else title
    return f"{head}. Genres: {', '.join(genres)}." if genres else f"{head}."


def _spanish_text(title: str, year: str | None, genres: list[str]) -> str:
    head = f"{title} ({year})" if year else title
    return f"{head}. Géneros: {', '.join(GENRES_ES.get(g, g) for g in genres)}." if genres else f"{head}."


def new_language_items(movies: pl.DataFrame, titles_es: pl.DataFrame, *, fraction: float = 0.3, seed: int = 0,
                       english: bool = False) -> pl.DataFrame:
    """The items table (module docstring) from MovieLens ``movies`` (``movieId, title, genres``) and
    ``titles_es`` (``movieId, title_es``); the new movies are ``floor(fraction x movies with a
    Spanish title)``, drawn with ``numpy.random.default_rng(seed)`` from those ids in ascending order."""
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"fraction {fraction}: must be in (0, 1]")
    titles_es = titles_es.filter(pl.col("title_es").is_not_null() & (pl.col("title_es").str.strip_chars() != ""))
    candidates = np.sort(titles_es.join(movies.select("movieId"), on="movieId", how="semi")["movieId"].to_numpy())
    if not len(candidates):
        raise DataError("no movie of the catalogue has a Spanish title (join on movieId)")
    n_new = int(np.floor(fraction * len(candidates)))
    new = set(np.random.default_rng(seed).choice(candidates, max(n_new, 1), replace=False).tolist())
    spanish = dict(titles_es.select("movieId", "title_es").iter_rows())
    rows = []
    for movie, title, genres in movies.select("movieId", "title", "genres").iter_rows():
        title = (title or "").strip()
        match = _YEAR.search(title)
        year = match.group(1) if match else None
        name = title[:match.start()].strip() if match else title
        kinds = [g for g in (genres or "").split("|") if g and g != "(no genres listed)"]
        is_new = movie in new
        if is_new and not english:
            text, lang, name = _spanish_text(spanish[movie].strip(), year, kinds), "es", spanish[movie].strip()
            kinds = [GENRES_ES.get(g, g) for g in kinds]
        else:
            text, lang = _english_text(name, year, kinds), "en"
        rows.append((movie, name, year, ", ".join(kinds), lang, text, is_new))
    return pl.DataFrame(rows, schema={"item_id": pl.Int64, "title": pl.String, "year": pl.String,
                                      "genres": pl.String, "lang": pl.String, "text": pl.String,
                                      "new": pl.Boolean}, orient="row")


def write_new_language_catalogue(movielens: str | os.PathLike[str], spanish: str | os.PathLike[str],
                                 out: str | os.PathLike[str], *, fraction: float = 0.3, seed: int = 0,
                                 english: bool = False) -> Path:
    """Write the generic catalogue of the module docstring to ``out`` from a MovieLens folder
    (``movies``, ``ratings``) and the ``movielens_es`` folder (``movies_es``); returns ``out``."""
    from xrec.artifacts import atomic_file, write_json
    from xrec.datasets.movielens import load_movielens

    ml = load_movielens(movielens)
    es_path = find_table(spanish, "movies_es")
    if es_path is None:
        raise DataError(f"{spanish}: no movies_es table (.csv[.gz], .parquet)")
    titles = read_table(es_path, required=["movieId", "title_es"]).select(
        pl.col("movieId").cast(pl.Int64), pl.col("title_es").cast(pl.String))
    movies = ml.movies.rename({"item_id": "movieId"})
    items = new_language_items(movies, titles, fraction=fraction, seed=seed, english=english)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    for name, frame in (("items.parquet", items.drop("new")), ("interactions.parquet", ml.ratings),
                        ("new_items.csv", items.filter("new").select("item_id"))):
        with atomic_file(root / name) as tmp:
            frame.write_parquet(tmp) if name.endswith(".parquet") else frame.write_csv(tmp)
    write_json(root / "manifest.json", {
        "kind": "xrec.catalogue.movielens_new_language", "format_version": 1,
        "movielens": str(movielens), "spanish_titles": str(es_path), "fraction": fraction, "seed": seed,
        "shown_in": "en" if english else "es", "items": items.height, "new_items": int(items["new"].sum()),
        "interactions": ml.ratings.height, "users": ml.ratings["user_id"].n_unique(),
        "run": f"xrec evaluate recs --data {root} " + (f"--new-items {root / 'new_items.csv'}" if english
                                                       else "--new-language es")})
    return root
