"""Rebuild the bundled Book-Crossing sample (data/bookcrossing) from the shared, repaired data.

The sample keeps its selection (the books, ratings and users it already holds, chosen as
data/README.md describes); every row is taken again from the shared folder, whose titles, authors
and publishers were repaired for mojibake (e.g. "R\ufffd\u00a9paration" -> "Réparation"). Rows the
shared folder lacks are an error. The gzip files are written without a timestamp (stable bytes).

One kind of mojibake is left in the shared folder: "Ã?Â?" (or "Ã?") where a character of
U+00C0..U+00DF (À..ß) was encoded twice and its continuation bytes lost ("beschlieÃ?Â?t").
:func:`repair_lost_bytes` repairs it the same way as the shared folder's README describes for the
lead byte: by context. A word found in :data:`BY_HAND` is taken from there; else the candidate
that makes a word of the rest of the shared catalogue; else ``ß`` after a lowercase letter
(German); anything left is an error.

    python scripts/bookcrossing_sample.py --shared ../shared/data/bookcrossing --sample data/bookcrossing
"""

from __future__ import annotations

import argparse
import gzip
import re
from collections import Counter
from pathlib import Path

import polars as pl

KEYS = {"books": ["item_id"], "ratings": ["user_id", "item_id"], "users": ["user_id"]}
TEXT_FIELDS = ("title", "author", "publisher")
#: a character of U+00C0..U+00DF whose continuation bytes were lost; "Â?": a cp1252 punctuation mark's
LOST = re.compile(r"Ã\?Â\?|Ã\?|Â\?")
#: Words the rest of the catalogue does not resolve, read by hand (the word with the lost bytes -> repaired).
BY_HAND = {"Ã?Â?rger": "Ärger", "Ã?Â?berlebende": "Überlebende", "Ã?Â?stlich": "Östlich",
           "Ã?Â?gypten": "Ägypten", "Ã?Â?lschieferskelett": "Ölschieferskelett", "Ã?Â?ric": "Éric",
           "Ã?Â?zdogan": "Özdogan", "Ã?ngela": "Ángela", "Ã?ngeles": "Ángeles", "SÃ?Â?urs": "Sœurs",
           "Ã?Â?": "€",  # "14.99 Ã?Â?": F. Beigbeder's "99 francs", retitled "14,99 €"
           "CuenteÂ?": "Cuente…"}  # J. Bucay, "Déjame que te cuente…"
TEXT = {"item_id": pl.String, "year": pl.String, "country": pl.String}


def _read(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, schema_overrides={c: t for c, t in TEXT.items()}, infer_schema_length=0)


def vocabulary(texts: list[str]) -> Counter:
    """Case-folded word counts of the texts without lost bytes."""
    return Counter(w.casefold() for t in texts if not LOST.search(t) for w in re.findall(r"\w+", t))


def repair_lost_bytes(text: str, words: Counter) -> str:
    """``text`` with every :data:`LOST` sequence repaired (module docstring); ValueError if one is not."""
    def one(match: re.Match) -> str:
        left = re.search(r"\w*$", text[:match.start()]).group()
        right = re.match(r"\w*", text[match.end():]).group()
        word = left + match.group() + right
        if word in BY_HAND:
            return BY_HAND[word][len(left):len(BY_HAND[word]) - len(right)]
        if match.group() == "Â?":
            raise ValueError(f"cannot repair {word!r} in {text!r}: add it to BY_HAND")
        found = max((chr(c) for c in range(0xC0, 0xE0)), key=lambda ch: words[(left + ch + right).casefold()])
        if words[(left + found + right).casefold()]:
            return found
        if left[-1:].islower():
            return "ß"
        raise ValueError(f"cannot repair {word!r} in {text!r}: add it to BY_HAND")

    return LOST.sub(one, text)


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
        if table == "books":
            words = vocabulary([t for c in TEXT_FIELDS for t in theirs[c].drop_nulls().to_list()])
            rebuilt = rebuilt.with_columns(pl.col(c).map_elements(lambda t, w=words: repair_lost_bytes(t, w),
                                                                  return_dtype=pl.String) for c in TEXT_FIELDS)
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
