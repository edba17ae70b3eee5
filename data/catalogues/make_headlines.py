"""Make ``headlines/``: 42 of the ``news`` items and 20 readers who follow topics across languages.

    python data/catalogues/make_headlines.py            # rewrites headlines/*.csv
    python data/catalogues/make_headlines.py --check    # fails if a committed file differs

The smallest catalogue a team starts with: one headline per (language, category) pair of
``news/items.csv`` (so 42 items spread over 11 languages and 8 scripts, 4 without ``lang``), 20
readers with one or two stated interests read in *any* language, 8 interactions each (about 90%
on-interest), no timestamps, no weights. On this catalogue the hybrid's learned fusion once
scored 0.41x its own content component (a negative content weight fitted on noise); the guard
(:mod:`xrec.ranking.guard`) is tested on it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
SEED = 7
N_ITEMS, N_USERS, PER_USER, OFF_INTEREST = 42, 20, 8, 0.1


def make() -> dict[str, pl.DataFrame]:
    """The three tables of ``headlines/``."""
    rng = np.random.default_rng(SEED)
    news = pl.read_csv(HERE / "news" / "items.csv")
    pairs = news.with_columns(pl.col("lang").fill_null("?")).group_by("lang", "category", maintain_order=True).head(1)
    items = pairs.sample(fraction=1.0, shuffle=True, seed=3).head(N_ITEMS).sort("item_id")
    items = items.with_columns(pl.when(pl.col("lang") == "?").then(None).otherwise(pl.col("lang")).alias("lang"))
    categories = sorted(items["category"].unique().to_list())
    ids = items["item_id"].to_list()
    users, rows = [], []
    for u in range(N_USERS):
        interests = sorted(rng.choice(categories, rng.integers(1, 3), replace=False).tolist())
        on = items.filter(pl.col("category").is_in(interests))["item_id"].to_list()
        chosen: list[str] = []
        while len(chosen) < min(PER_USER, len(ids)):
            pick = str(rng.choice(on) if rng.random() > OFF_INTEREST else rng.choice(ids))
            if pick not in chosen:
                chosen.append(pick)
        users.append((f"r{u:02d}", ";".join(interests)))
        rows += [(f"r{u:02d}", i) for i in chosen]
    return {"items.csv": items.select(news.columns),
            "users.csv": pl.DataFrame(users, schema=["user_id", "interests"], orient="row"),
            "interactions.csv": pl.DataFrame(rows, schema=["user_id", "item_id"], orient="row")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a committed file differs")
    args = parser.parse_args()
    out = HERE / "headlines"
    out.mkdir(exist_ok=True)
    differ = []
    for name, frame in make().items():
        text = frame.write_csv()
        if args.check:
            if (out / name).read_text(encoding="utf-8") != text:
                differ.append(name)
        else:
            (out / name).write_text(text, encoding="utf-8")
    if differ:
        print(f"headlines: {differ} differ from make_headlines.py's output", file=sys.stderr)
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
