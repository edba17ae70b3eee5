"""Slot bookkeeping of a :class:`~xrec.index.VectorIndex`: external ids, languages, texts and
the alive mask.

Every item gets a *slot* (0, 1, 2, ... in order of addition, never reused). The FAISS index
stores slots as its labels; this table maps them back to ids, languages and texts, turns
language filters and exclusions into masks and slot lists, and marks removed slots dead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from xrec.catalogue.languages import UNKNOWN
from xrec.errors import DataError
from xrec.index.inputs import (
    PAD_INT,
    as_lang_list,
    as_langs,
    id_kind,
    is_id_sequence,
    object_array,
    plain_ids,
)

#: The padding id of string-id results.
PAD_STR = None


class Slots:
    """Per-slot ids, language codes, optional texts and alive flags, plus the id -> slot map."""

    def __init__(self, id_type: str) -> None:
        self.id_type = id_type  # "int" or "str"
        self.ids: np.ndarray = np.empty(0, dtype=np.int64 if id_type == "int" else object)
        self.lang = np.empty(0, dtype=np.int32)  # code into lang_names, -1 = unknown
        self.text: np.ndarray | None = None  # object array of texts (None: none given)
        self.alive = np.empty(0, dtype=bool)
        self.lang_names: list[str] = []
        self.lang_codes: dict[str, int] = {}
        self.slot_of: dict[Any, int] = {}

    # ------------------------------------------------------------------ counts and lookups
    def __len__(self) -> int:
        """Number of slots, dead ones included."""
        return len(self.ids)

    @property
    def live(self) -> int:
        return len(self.slot_of)

    @property
    def pad_id(self) -> int | None:
        return PAD_INT if self.id_type == "int" else PAD_STR

    @property
    def nbytes(self) -> int:
        """Bytes of the id, language and alive arrays."""
        return self.ids.nbytes + self.lang.nbytes + self.alive.nbytes

    def lang_name(self, code: int) -> str | None:
        return self.lang_names[code] if code >= 0 else None

    def live_ids(self) -> np.ndarray:
        return self.ids[self.alive]

    def live_languages(self) -> list[str | None]:
        return [self.lang_name(c) for c in self.lang[self.alive]]

    def language_set(self) -> list[str]:
        codes = np.unique(self.lang[self.alive])
        return sorted(self.lang_names[c] for c in codes if c >= 0)

    def all_languages(self) -> list[str | None]:
        """Language of every slot, dead ones included."""
        return [self.lang_name(int(c)) for c in self.lang]

    def slots_of(self, ids: list[Any]) -> np.ndarray:
        """Slots of ``ids``; :class:`DataError` naming ids not in the index."""
        unknown = [item for item in ids if item not in self.slot_of]
        if unknown:
            raise DataError(f"{len(unknown)} id(s) not in the index, e.g. {unknown[:5]}")
        return np.array([self.slot_of[item] for item in ids], dtype=np.int64)

    def slot(self, item: Any) -> int:
        if item not in self.slot_of:
            raise DataError(f"id {item!r} is not in the index")
        return self.slot_of[item]

    def known(self, ids: list[Any]) -> np.ndarray:
        """Slots of those of ``ids`` in the index (others dropped)."""
        slot_of = self.slot_of
        return np.fromiter((slot_of[i] for i in plain_ids(ids) if i in slot_of), dtype=np.int64)

    # ------------------------------------------------------------------ changes
    def check_new(self, ids: list[Any], languages: Sequence[str | None] | None,
                  texts: Sequence[str | None] | None) -> tuple[list[str | None], list[str | None] | None]:
        """Validate a batch to add: one id type, no id twice or already present; returns the
        languages and texts as lists."""
        n = len(ids)
        if n and id_kind(ids) != self.id_type:
            raise DataError(f"ids are {id_kind(ids)} but this index holds {self.id_type} ids")
        langs = as_lang_list(languages, n)
        if texts is not None:
            texts = list(texts)
            if len(texts) != n or not all(t is None or isinstance(t, str) for t in texts):
                raise DataError(f"texts: expected {n} strings (or None), got {len(texts)} values")
        seen: dict[Any, int] = {}
        for row, item in enumerate(ids):
            if item in self.slot_of:
                raise DataError(f"ids: row {row}: id {item!r} is already in the index")
            if item in seen:
                raise DataError(f"ids: row {row}: duplicate id {item!r} (also at row {seen[item]})")
            seen[item] = row
        return langs, texts

    def append(self, ids: list[Any], langs: list[str | None], texts: list[str | None] | None) -> np.ndarray:
        """Give each of ``ids`` (checked by :meth:`check_new`) the next slot; returns the slots."""
        n, start = len(ids), len(self.ids)
        slots = np.arange(start, start + n, dtype=np.int64)
        codes = np.array([self.lang_code(lang) for lang in langs], dtype=np.int32)
        id_array = np.array(ids, dtype=np.int64) if self.id_type == "int" else object_array(ids)
        self.ids = np.concatenate([self.ids, id_array])
        self.lang = np.concatenate([self.lang, codes])
        if texts is not None or self.text is not None:
            before = self.text if self.text is not None else object_array([None] * start)
            self.text = np.concatenate([before, object_array(texts if texts is not None else [None] * n)])
        self.alive = np.concatenate([self.alive, np.ones(n, dtype=bool)])
        self.slot_of.update(zip(ids, slots.tolist()))
        return slots

    def kill(self, ids: list[Any]) -> np.ndarray:
        """Mark ``ids`` removed; returns their distinct slots (DataError naming unknown ids)."""
        unknown = [item for item in ids if item not in self.slot_of]
        if unknown:
            raise DataError(f"remove: {len(unknown)} id(s) not in the index, e.g. {unknown[:5]}")
        slots = np.unique(np.array([self.slot_of[item] for item in ids], dtype=np.int64))
        for item in ids:
            self.slot_of.pop(item, None)
        self.alive[slots] = False
        return slots

    def lang_code(self, lang: str | None) -> int:
        if lang is None:
            return -1
        code = self.lang_codes.get(lang)
        if code is None:
            code = self.lang_codes[lang] = len(self.lang_names)
            self.lang_names.append(lang)
        return code

    def copy(self) -> Slots:
        clone = Slots(self.id_type)
        clone.ids, clone.lang, clone.alive = self.ids.copy(), self.lang.copy(), self.alive.copy()
        clone.text = None if self.text is None else self.text.copy()
        clone.lang_names, clone.lang_codes = list(self.lang_names), dict(self.lang_codes)
        clone.slot_of = dict(self.slot_of)
        return clone

    @classmethod
    def restore(cls, id_type: str, ids: list[Any], langs: list[str | None], alive: np.ndarray,
                texts: list[str | None] | None) -> Slots:
        """The table of a saved index (every slot, dead ones included)."""
        self = cls(id_type)
        self.ids = np.array(ids, dtype=np.int64) if id_type == "int" else object_array(ids)
        self.lang = np.array([self.lang_code(x) for x in langs], dtype=np.int32)
        self.alive = np.asarray(alive, dtype=bool)
        if texts is not None:
            self.text = object_array(texts)
        self.slot_of = {ids[s]: int(s) for s in np.flatnonzero(self.alive)}
        return self

    # ------------------------------------------------------------------ filters
    def allowed(self, languages: Any, exclude_languages: Any) -> np.ndarray | None:
        """Boolean mask over slots of live items passing the language filters (None = all).
        Either filter drops items of unknown language unless ``languages`` names ``und``."""
        if languages is None and exclude_languages is None:
            return None
        mask = self.alive & (self.lang >= 0)
        if languages is not None:
            wanted = as_langs(languages, "languages")
            codes = [self.lang_codes[x] for x in wanted if x in self.lang_codes]
            mask = self.alive & (np.isin(self.lang, codes) | ((self.lang < 0) & (UNKNOWN in wanted)))
        if exclude_languages is not None:
            codes = [self.lang_codes[x] for x in as_langs(exclude_languages, "exclude_languages")
                     if x in self.lang_codes]
            mask &= ~np.isin(self.lang, codes)
        return mask

    def unknown_left_out(self, mask: np.ndarray | None) -> int:
        """Live items of unknown language that ``mask`` (:meth:`allowed`) leaves out."""
        return 0 if mask is None else int((self.alive & (self.lang < 0) & ~mask).sum())

    def exclusions(self, exclude_ids: Any, nq: int) -> tuple[np.ndarray | None, list[np.ndarray] | None]:
        """``(common_slots, per_query_slots)`` from ``exclude_ids``; unknown ids dropped."""
        if exclude_ids is None:
            return None, None
        if isinstance(exclude_ids, np.ndarray) and exclude_ids.ndim == 2:
            exclude_ids = list(exclude_ids)
        if isinstance(exclude_ids, (str, bytes)):
            raise DataError("exclude_ids: expected a sequence of ids or one sequence per query, "
                            "not a single string")
        entries = list(exclude_ids)
        nested = bool(entries) and all(is_id_sequence(e) for e in entries)
        if not nested:
            if any(is_id_sequence(e) for e in entries):
                raise DataError("exclude_ids: mixes ids and sequences; give a sequence of ids "
                                "or one sequence of ids per query")
            return self.known(entries), None
        if len(entries) != nq:
            raise DataError(f"exclude_ids: {len(entries)} per-query lists for {nq} queries")
        return None, [self.known(list(e)) for e in entries]
