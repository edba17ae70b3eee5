"""Rebuild the bundled Book-Crossing sample (data/bookcrossing) from the shared, repaired data.

The sample keeps its selection (the books, ratings and users it already holds, chosen as
data/README.md describes); every row is taken again from the shared folder, whose titles, authors
and publishers were repaired for mojibake (e.g. "R\ufffd\u00a9paration" -> "Réparation"). Rows the
shared folder lacks are an error. The gzip files are written without a timestamp (stable bytes).

    python scripts/bookcrossing_sample.py --shared ../shared/data/bookcrossing --sample data/bookcrossing
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import polars as pl

KEYS = {"books": ["item_id"], "ratings": ["user_id", "item_id"], "users": ["user_id"]}
TEXT = {"item_id": pl.String, "year": pl.String, "country": pl.String}


def _read(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, schema_overrides={c: t for c, t in TEXT.items()}, infer_schema_length=0)


def rebuild(shared: Path, sample: Path) -> dict[str, int]:
    """Replace each ``sample/<table>.csv.gz`` by the shared folder's rows for the same keys
    (in the sample's order); returns the rows written per table."""
    written = {}
    for table, keys in KEYS.items():
        path = sample / f"{table}.csv.gz"
        if not path.is_file():
            continue
        mine = _read(path)
        theirs = _read(shared / f"{table}.csv.gz").select(mine.columns).unique(keys, keep="first")
        rebuilt = mine.select(keys).join(theirs, on=keys, how="left", maintain_order="left")
        lost = rebuilt.filter(pl.all_horizontal(pl.col(c).is_null() for c in mine.columns if c not in keys)
                              ) if len(mine.columns) > len(keys) else rebuilt.clear()
        if lost.height and table != "users":  # users' country/age may be empty in both
            raise SystemExit(f"{shared}/{table}.csv.gz lacks {lost.height} rows of the sample, e.g. "
                             f"{lost.head(3).to_dicts()}")
        with gzip.GzipFile(path, "wb", mtime=0) as handle:
            handle.write(rebuilt.write_csv().encode("utf-8"))
        written[table] = rebuilt.height
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data/bookcrossing"))
    parser.add_argument("--sample", type=Path, default=Path("data/bookcrossing"))
    args = parser.parse_args()
    for table, rows in rebuild(args.shared, args.sample).items():
        print(f"{args.sample}/{table}.csv.gz: {rows} rows")


if __name__ == "__main__":
    main()
