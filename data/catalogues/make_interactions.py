"""Make the interactions of the hand-written catalogues in this folder (deterministic, seeded).

    python data/catalogues/make_interactions.py            # rewrites <name>/interactions.csv
    python data/catalogues/make_interactions.py --check    # fails if a committed file differs

Reads ``<name>/items.csv`` and ``<name>/users.csv`` (both hand-written) and writes
``<name>/interactions.csv`` and ``<name>/item_languages.csv`` (every item's language as BCP 47,
the ground truth behind the ``lang`` column, which is partly empty and, in ``shop``, written in
mixed code styles). Each user gets 5-25 interactions: most drawn from the items of their stated
interests in the languages they read (at most ~80% of those), about 13% off-interest (mostly in
their languages, a few in any language); draws are weighted by a per-item popularity (log-normal), so a few
items are read by many. ``news`` gets ISO-8601 timestamps (clicks some hours after a random
publication time), ``shop`` a ``weight`` (1 view, 2 wishlist, 3 cart, 5 purchase), ``courses``
neither (enrolments).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent

#: catalogue -> (seed, extra column: "timestamp", "weight" or None)
CATALOGUES = {"news": (25, "timestamp"), "shop": (26, "weight"), "courses": (27, None)}

#: the language of every row whose ``lang`` is empty (read by hand)
UNLABELLED = {
    "news": {"n-005": "fr", "n-012": "en", "n-020": "ru", "n-025": "en", "n-032": "ru", "n-037": "zh",
             "n-053": "en", "n-059": "es", "n-065": "en", "n-073": "ar", "n-076": "ko", "n-085": "hi",
             "n-090": "el", "n-098": "fr", "n-103": "en", "n-110": "en", "n-122": "en", "n-131": "en"},
    "shop": {"1009": "en", "1019": "ja", "1025": "en", "1037": "en", "1046": "ko", "1058": "es",
             "1070": "ru", "1078": "en", "1031": "es", "1062": "ru", "1083": "en", "1088": "en"},
    "courses": {"C0007": "ru", "C0012": "fr", "C0017": "es", "C0023": "zh", "C0034": "ja", "C0043": "hi",
                "C0051": "en", "C0028": "ru", "C0062": "en", "C0069": "en"},
}

#: the codes in the ``lang`` columns (mixed styles in ``shop``) -> BCP 47 primary subtag
CODES = {
    "en": "en", "EN": "en", "en-GB": "en", "de": "de", "deu": "de", "deu_Latn": "de", "German": "de",
    "fr": "fr", "fra": "fr", "fr_FR": "fr", "French": "fr", "es": "es", "spa": "es", "es-ES": "es",
    "Spanish": "es", "ja": "ja", "jpn": "ja", "jpn_Jpan": "ja", "Japanese": "ja", "ko": "ko", "kor": "ko",
    "kor_Hang": "ko", "ru": "ru", "Russian": "ru", "zh": "zh", "zh-Hans": "zh", "zho_Hans": "zh",
    "ar": "ar", "ara_Arab": "ar", "Arabic": "ar", "th": "th", "tha": "th", "Thai": "th", "el": "el",
    "ell_Grek": "el", "hi": "hi",
}

EVENTS = np.array([1, 2, 3, 5])  # view, wishlist, cart, purchase
ON_TOPIC_EVENTS = np.array([0.45, 0.2, 0.15, 0.2])
OFF_TOPIC_EVENTS = np.array([0.8, 0.1, 0.07, 0.03])
START = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)


def true_languages(name: str, items: pl.DataFrame) -> list[str]:
    """Each item's language (BCP 47): the ``lang`` column normalised, or the hand-read one if empty."""
    out = []
    for item, code in zip(items["item_id"], items["lang"], strict=True):
        if code is None:
            out.append(UNLABELLED[name][item])
        else:
            out.append(CODES[code])
    if any(item in UNLABELLED[name] for item, code in zip(items["item_id"], items["lang"], strict=True)
           if code is not None):
        raise ValueError(f"{name}: an item in UNLABELLED has a lang")
    return out


def make(name: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The interactions and the item languages of catalogue ``name``."""
    seed, extra = CATALOGUES[name]
    rng = np.random.default_rng(seed)
    items = pl.read_csv(HERE / name / "items.csv", infer_schema_length=0)
    users = pl.read_csv(HERE / name / "users.csv", infer_schema_length=0)
    langs = np.array(true_languages(name, items))
    cats = items["category"].to_numpy()
    ids = items["item_id"].to_list()
    popularity = rng.lognormal(0.0, 1.0, len(ids))
    published = rng.uniform(0, 21 * 24 * 3600, len(ids))
    rows = []
    for user, interests, reads in users.iter_rows():
        interests, reads = interests.split(";"), reads.split(";")
        known = np.isin(langs, reads)
        on_pool = np.flatnonzero(np.isin(cats, interests) & known)
        # a user reads at most ~80% of what matches them (all of it when little does);
        # ~13% of their reads are off-interest
        n = int(np.clip(round(rng.lognormal(np.log(12), 0.45)), 5, 25))
        cap = len(on_pool) if len(on_pool) <= 6 else max(6, round(0.8 * len(on_pool)))
        n_on = min(n - rng.binomial(n, 0.13), cap)
        picks = list(rng.choice(on_pool, n_on, replace=False, p=_norm(popularity[on_pool])))
        off_pool = np.setdiff1d(np.arange(len(ids)), on_pool)
        off_w = popularity[off_pool] * np.where(known[off_pool], 3.0, 0.15)
        n_off = min(max(rng.binomial(n_on, 0.15), 5 - n_on), 25 - n_on)
        picks += list(rng.choice(off_pool, n_off, replace=False, p=_norm(off_w)))
        for i in picks:
            on = bool(np.isin(cats[i], interests)) and bool(known[i])
            row = {"user_id": user, "item_id": ids[i]}
            if extra == "weight":
                row["weight"] = int(rng.choice(EVENTS, p=ON_TOPIC_EVENTS if on else OFF_TOPIC_EVENTS))
            elif extra == "timestamp":
                seconds = published[i] + rng.exponential(8 * 3600)
                row["timestamp"] = (START + timedelta(seconds=int(seconds))).strftime("%Y-%m-%dT%H:%M:%SZ")
            rows.append(row)
    inter = pl.DataFrame(rows)
    if name == "shop":
        inter = inter.with_columns(pl.col("user_id", "item_id").cast(pl.Int64))
    inter = inter.sort(["user_id", "timestamp"] if extra == "timestamp" else ["user_id", "item_id"])
    return inter, pl.DataFrame({"item_id": ids, "lang": langs.tolist()})


def _norm(w: np.ndarray) -> np.ndarray:
    return w / w.sum()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    args = parser.parse_args()
    stale = []
    for name in CATALOGUES:
        inter, languages = make(name)
        for table, file in ((inter, "interactions.csv"), (languages, "item_languages.csv")):
            path = HERE / name / file
            text = table.write_csv()
            if args.check:
                if not path.exists() or path.read_text(encoding="utf-8") != text:
                    stale.append(str(path))
            else:
                path.write_text(text, encoding="utf-8")
        print(f"{name}: {inter.height} interactions, {inter['user_id'].n_unique()} users, "
              f"{inter['item_id'].n_unique()} of {languages.height} items")
    if stale:
        print("differs from make_interactions.py's output: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
