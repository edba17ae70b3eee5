"""The main job's catalogue: an items table and an interactions table named by the config.

``[items]``: ``path`` (any fields), ``id`` (the id column), ``template`` (the item text from the
fields; ``""``: the table's ``text`` column), ``lang`` (the column of language codes; ``""``:
none), ``metadata`` (fields whose shared values link items, e.g. author or brand).
``[interactions]``: ``path``, ``user`` and ``item`` (the id columns), ``weight`` and
``timestamp`` (optional columns).

An optional column that is missing is fine when the key has its default name (``lang``,
``weight``, ``timestamp``): the catalogue has no languages, every interaction weighs 1, the
held-out split is random. A column the config names explicitly must exist. Each such finding is
a note in the report. Errors name the file, and the line where one is at fault.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from xrec.errors import DataError

#: The key defaults under which a missing optional column means "none" rather than an error.
OPTIONAL_DEFAULTS = {("items", "lang"): "lang", ("interactions", "weight"): "weight",
                     ("interactions", "timestamp"): "timestamp"}


@dataclass
class Catalogue:
    """What the stages run on: items, validated interactions, metadata and what the data lacks."""

    items: pl.DataFrame  #: item_id, text, lang (String; null: unknown), has_text
    interactions: pl.DataFrame  #: user_id, item_id, weight[, timestamp] (validated)
    metadata: dict[str, list[str | None]]  #: field -> values in catalogue order
    files: list[Path]  #: the items and interactions files (their digests key the stage caches)
    has_weight: bool = False
    has_timestamp: bool = False
    notes: list[str] = field(default_factory=list)  #: what the catalogue has and lacks, for the report

    @property
    def languages(self) -> list[str]:
        """The known language codes, most items first (ties: by code)."""
        counts = Counter(self.items["lang"].drop_nulls().to_list())
        return sorted(counts, key=lambda code: (-counts[code], code))

    @property
    def unknown_language(self) -> int:
        """Items without a language code."""
        return int(self.items["lang"].null_count())


def load_catalogue(config: dict[str, Any]) -> Catalogue:
    """Read and check the ``[items]`` and ``[interactions]`` tables of a checked job config."""
    from xrec.catalogue.interactions import validate_interactions
    from xrec.catalogue.items import prepare_items
    from xrec.catalogue.tables import read_table
    from xrec.catalogue.templates import item_texts

    item_cfg, inter_cfg = config["items"], config["interactions"]
    items_path, inter_path = Path(item_cfg["path"]), Path(inter_cfg["path"])
    notes: list[str] = []
    raw = read_table(items_path, required=[item_cfg["id"]])
    text = item_texts(raw, item_cfg["template"], str(items_path))
    lang = _optional(raw, item_cfg["lang"], ("items", "lang"), items_path)
    fields = list(item_cfg["metadata"])
    missing = [f for f in fields if f not in raw.columns]
    if missing:
        raise DataError(f"{items_path}: [items] metadata names missing column(s) {missing}; the table has "
                        f"{raw.columns}")
    languages = (raw[lang].cast(pl.String).str.strip_chars().replace("", None) if lang
                 else pl.repeat(None, raw.height, dtype=pl.String, eager=True))
    items = prepare_items(pl.DataFrame({"item_id": raw[item_cfg["id"]], "text": text,
                                        "lang": languages.alias("lang")}), str(items_path))
    if not items["has_text"].any():
        raise DataError(f"{items_path}: every item's text is empty after the template "
                        f"{item_cfg['template'] or '{text}'!r}; check the fields it names")
    empty = int((~items["has_text"]).sum())
    if empty:
        notes.append(f"{empty} of {items.height} items have an empty text after templating (e.g. "
                     f"{items.filter(~pl.col('has_text'))['item_id'].head(3).to_list()}): they get no content "
                     "vector and are reached through interactions only")
    detected = int((items["lang_source"] == "detected").sum()) if "lang_source" in items.columns else 0
    if not lang:
        notes.append(f"no language column: languages detected from the text for {detected} of {items.height} "
                     "items (docs/languages.md)")
    elif detected:
        notes.append(f"{detected} of {items.height} items had no language code: detected from the text "
                     "(docs/languages.md)")
    if items["lang"].null_count():
        notes.append(f"{items['lang'].null_count()} of {items.height} items are of unknown language: they "
                     "count as unknown (`und` in the tables) and stay out of language slices and "
                     "cross-language neighbours")
    metadata = {f: raw[f].cast(pl.String).to_list() for f in fields}

    frame = read_table(inter_path, required=[inter_cfg["user"], inter_cfg["item"]])
    weight = _optional(frame, inter_cfg["weight"], ("interactions", "weight"), inter_path)
    timestamp = _optional(frame, inter_cfg["timestamp"], ("interactions", "timestamp"), inter_path)
    columns = {inter_cfg["user"]: "user_id", inter_cfg["item"]: "item_id"}
    columns.update({name: new for name, new in ((weight, "weight"), (timestamp, "timestamp")) if name})
    frame = frame.select([pl.col(old).alias(new) for old, new in columns.items()])
    if frame["item_id"].dtype != items["item_id"].dtype:  # e.g. numbers in one table, text in the other
        items = items.with_columns(pl.col("item_id").cast(pl.String))
        frame = frame.with_columns(pl.col("item_id").cast(pl.String))
    interactions, _ = validate_interactions(frame, str(inter_path), item_ids=items["item_id"])
    if not weight:
        notes.append("no weight column: every interaction weighs 1")
    if not timestamp:
        notes.append("no timestamp column: the evaluation holds out a seeded random 20% of each user's "
                     "interactions")
    return Catalogue(items, interactions, metadata, [items_path, inter_path], bool(weight), bool(timestamp),
                     notes)


def _optional(frame: pl.DataFrame, name: str, key: tuple[str, str], path: Path) -> str:
    """``name`` if the table has that column; ``""`` when it is missing under its default name."""
    if not name or name in frame.columns:
        return name
    if name == OPTIONAL_DEFAULTS[key]:
        return ""
    raise DataError(f"{path}: [{key[0]}] {key[1]} = {name!r}: no such column; the table has {frame.columns} "
                    f"(\"\" for none)")


#: Fewer vectors than this and the latency stage is skipped (too few to time retrieval).
MIN_LATENCY_VECTORS = 200


def plan_stages(config: dict[str, Any], catalogue: Catalogue, test: pl.DataFrame | None,
                n_vectors: int) -> tuple[str | None, dict[str, str]]:
    """``(new_language, skipped)``: the new-language protocol's language (None: not run) and, for
    every stage that will not run, why (in the report). ``test``: the evaluation's held-out
    interactions (None when nothing can be held out); ``n_vectors``: the latency corpus' size."""
    asked = set(config["job"]["stages"])
    skipped = {name: "not in [job] stages" for name in config_stages() if name not in asked}

    def skip(name: str, why: str) -> None:
        skipped.setdefault(name, why)

    if catalogue.items.height < 2:
        skip("evaluation", "one item: there is nothing to rank")
    elif test is None:
        skip("evaluation", "no user has two or more interactions: nothing can be held out")
    language = _new_language(config["new_language"]["language"], catalogue, test, skip)
    if not config["topics"]["sib200"]:
        skip("topics", "no topic data ([topics] sib200 is empty)")
    for needed in ("topics", "recommendations"):
        if needed in skipped:
            skip("book_topics", f"it needs the {needed} stage")
    if len(catalogue.languages) < 2:
        skip("neighbours", f"cross-language neighbours need items in two or more languages; this catalogue has "
                           f"{catalogue.languages or 'no language codes'}")
    if n_vectors < MIN_LATENCY_VECTORS:
        skip("latency", f"{n_vectors} vectors are too few to time retrieval (at least {MIN_LATENCY_VECTORS})")
    return (None if "new_language" in skipped else language), skipped


def config_stages() -> tuple[str, ...]:
    from xrec.jobs.config import STAGES

    return STAGES


def _new_language(value: str, catalogue: Catalogue, test: pl.DataFrame | None, skip) -> str | None:
    """The configured new language: a code, ``"auto"`` (the catalogue's second most common language)
    or ``""`` (none); a code no item has is an error, a language without held-out interactions a skip."""
    from xrec.catalogue.languages import normalise

    languages = catalogue.languages
    if value and value != "auto":
        value = normalise(value, "config [new_language] language")
    if value and value != "auto" and value not in languages:
        raise DataError(f"config [new_language] language = {value!r}: no item of {catalogue.files[0]} has it; "
                        f"languages: {', '.join(languages[:12]) or 'none'}")
    if not value:
        skip("new_language", "[new_language] language is empty")
        return None
    if value == "auto" and len(languages) < 2:
        skip("new_language", "the catalogue has fewer than two languages (a new one needs an old one)")
        return None
    if test is None:
        skip("new_language", "no user has two or more interactions: nothing can be held out")
        return None
    language = languages[1] if value == "auto" else value
    ids = catalogue.items.filter(pl.col("lang") == language).select("item_id")
    if test.join(ids, on="item_id", how="semi").height == 0:
        skip("new_language", f"no held-out interaction is with an item in {language!r}")
        return None
    return language
