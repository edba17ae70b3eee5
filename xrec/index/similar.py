"""Nearest items of items or of free text: the library behind ``xrec similar``.

Items come from a saved :class:`VectorIndex` directory or from an items table (``item_id``,
``text``, optional ``lang``) embedded as passages with the encoder (reusing an embedding store
file when given); an index built from an items table keeps the texts, so a saved one shows them
too. Free-text queries are embedded as queries. Results leave out padding. ``topics`` keeps only
items tagged with those topics in ``tags`` (a table ``item_id, topic``, e.g. the main job's
``book_topics.parquet``); the search runs over those items only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from xrec.catalogue.ids import id_value
from xrec.errors import DataError
from xrec.index.vector_index import VectorIndex

log = logging.getLogger(__name__)


class ItemSpace:
    """A VectorIndex with, where known, each item's text, and the encoder for text queries."""

    def __init__(self, index: VectorIndex, texts: dict[Any, str] | None = None,
                 model: str = "bundled", encoder: Any = None) -> None:
        self.index = index
        self.texts = texts or {}
        self.model = model
        self._encoder = encoder

    @classmethod
    def open(cls, index_dir: str | os.PathLike[str] | None = None,
             items: str | os.PathLike[str] | None = None, *, model: str = "bundled",
             store: str | os.PathLike[str] | None = None, kind: str = "auto",
             save_index: str | os.PathLike[str] | None = None) -> ItemSpace:
        """Load ``index_dir``, or embed and index the ``items`` table (exactly one of them)."""
        if (index_dir is None) == (items is None):
            raise DataError("give exactly one of an index directory or an items table")
        if index_dir is not None:
            return cls(VectorIndex.load(index_dir), model=model)
        from xrec.catalogue.items import validate_items
        from xrec.catalogue.tables import read_table
        from xrec.encoders import load_encoder
        from xrec.store import embed_items

        assert items is not None  # exactly one of index_dir and items, checked above
        frame = validate_items(read_table(items, required=["item_id", "text"]), str(items))
        encoder = load_encoder(model)
        ids = frame["item_id"].to_list()
        texts = frame["text"].to_list()
        langs = frame["lang"].to_list() if "lang" in frame.columns else None
        vectors = embed_items(encoder, ids, texts, store=store, kind="passage")
        index = VectorIndex.build(vectors, ids, langs, kind=kind, fingerprint=encoder.fingerprint, texts=texts)
        if save_index is not None:
            index.save(save_index)
        return cls(index, dict(zip(ids, texts)), model=model, encoder=encoder)

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from xrec.encoders import load_encoder

            self._encoder = load_encoder(self.model)
            fp = self.index.fingerprint
            if fp is not None and fp != self._encoder.fingerprint:
                raise DataError(f"the index was built with encoder {fp!r}, but --model "
                                f"{self.model!r} is {self._encoder.fingerprint!r}")
        return self._encoder

    def text(self, item: Any) -> str | None:
        """The item's text, where the items table or the index holds it."""
        if item in self.texts:
            return self.texts[item]
        return self.index.text_of([item])[0] if self.index.has_texts else None

    def check_languages(self, languages: Sequence[str] | None) -> list[str] | None:
        """``languages`` normalised (:func:`xrec.catalogue.languages.filter_codes`); warns about each that no
        item in the index has (it matches nothing)."""
        from xrec.catalogue.languages import UNKNOWN, filter_codes

        languages = filter_codes(languages, "languages")
        have = self.index.language_set
        for lang in languages or ():
            if lang not in have and lang != UNKNOWN:
                log.warning("no item in the index has language %r; it has: %s", lang,
                            ", ".join(have) or "no languages")
        return languages

    def left_out(self, languages: Sequence[str] | None, exclude_languages: Sequence[str] | None,
                 other_languages: bool) -> dict:
        """``{"unknown_language_left_out": n}`` when a language filter is on (logged when n > 0)."""
        if languages is None and exclude_languages is None and not other_languages:
            return {}
        n = self.index.unknown_left_out(languages, exclude_languages if not other_languages else
                                        [*(exclude_languages or ()), "und"])
        if n:
            log.info("language filter: %d items of unknown language left out (name 'und' among the "
                     "languages to keep them)", n)
        return {"unknown_language_left_out": n}

    def parse_ids(self, raw: Sequence[Any]) -> list[Any]:
        """Ids from the command line converted to the index's id type; DataError if unknown."""
        out = []
        int_ids = self.index.pad_id is not None
        for given in raw:
            try:
                item = id_value(given, int_ids)
            except ValueError as exc:
                raise DataError(f"id {exc}") from None
            if item not in self.index:
                raise DataError(f"id {item!r} is not in the index")
            out.append(item)
        return out

    def on_topic(self, tags: Any, topics: Sequence[str] | None) -> list[Any] | None:
        """Ids of the index's items tagged with one of ``topics`` in ``tags`` (a table, or a file,
        with ``item_id, topic``); None without ``topics``. A topic the tags lack, or a tag naming
        an id outside the index, is a :class:`DataError` naming the field."""
        if not topics:
            return None
        import polars as pl

        from xrec.catalogue.tables import read_table

        if tags is None:
            raise DataError("topics: give the items' tags (item_id, topic) to filter by topic")
        frame = tags if isinstance(tags, pl.DataFrame) else read_table(tags, required=["item_id", "topic"])
        known = set(frame["topic"].drop_nulls().cast(pl.String).to_list())
        unknown = [t for t in topics if t not in known]
        if unknown:
            raise DataError(f"topics: {unknown} not among the tags' topics {sorted(known)}")
        tagged = frame.filter(pl.col("topic").is_in(list(topics)))["item_id"].to_list()
        if self.index.pad_id is not None:
            try:
                tagged = [int(t) for t in tagged]
            except (TypeError, ValueError):
                raise DataError("tags: item_id must be integers, as in this index") from None
        missing = [t for t in tagged if t not in self.index]
        if missing:
            raise DataError(f"tags: item_id {missing[0]!r} is not in the index ({len(missing)} ids)")
        return tagged

    def neighbours(self, vector: np.ndarray, k: int, *, languages: Sequence[str] | None,
                   exclude_languages: Sequence[str] | None, only_ids: Sequence[Any] | None = None) -> list[dict]:
        """The hits of one query vector (see :meth:`neighbours_of`)."""
        return self.neighbours_of(vector[None, :], [None], k, languages=languages,
                                  exclude_languages=exclude_languages, only_ids=only_ids)[0]

    def neighbours_of(self, vectors: np.ndarray, query_langs: Sequence[str | None], k: int, *,
                      languages: Sequence[str] | None = None, exclude_languages: Sequence[str] | None = None,
                      other_languages: bool = False,
                      exclude_ids: Sequence[Sequence[Any]] | None = None,
                      only_ids: Sequence[Any] | None = None) -> list[list[dict]]:
        """The hits (``id``, ``lang``, ``score``, ``text`` where known) of each query vector, searched
        in batches (:func:`~xrec.index.neighbours.search_by_language`); ``other_languages`` skips
        items in each query's own language, ``only_ids`` keeps only those items."""
        from xrec.index.neighbours import search_by_language

        ids, scores = search_by_language(self.index, vectors, query_langs, k, other_languages=other_languages,
                                         languages=languages, exclude_languages=exclude_languages,
                                         exclude_ids=exclude_ids, only_ids=only_ids)
        return [self._hits(row_ids, row_scores) for row_ids, row_scores in zip(ids, scores)]

    def _hits(self, ids: np.ndarray, scores: np.ndarray) -> list[dict]:
        langs = self.index.language_of([i for i in ids if i != self.index.pad_id]) \
            if np.isfinite(scores).any() else []
        out = []
        for item, score, lang in zip(ids, scores, langs):
            hit = {"id": item.item() if isinstance(item, np.generic) else item, "lang": lang,
                   "score": round(float(score), 6)}
            text = self.text(item)
            if text is not None:
                hit["text"] = text
            out.append(hit)
        return out


def similar_items(ids: Sequence[Any], k: int = 10, *, index_dir: Any = None, items: Any = None,
                  model: str = "bundled", store: Any = None, kind: str = "auto",
                  languages: Sequence[str] | None = None, other_languages: bool = False,
                  save_index: Any = None, space: ItemSpace | None = None,
                  topics: Sequence[str] | None = None, tags: Any = None) -> dict:
    """The ``k`` nearest other items of each of ``ids``; JSON-ready.

    ``other_languages`` keeps only items in languages other than the query item's (a query of
    unknown language gets none); ``topics`` keeps only items with those topics in ``tags``
    (module docstring). Language filters leave out items of unknown language unless
    ``languages`` names ``und``; ``unknown_language_left_out`` counts them.
    """
    space = space or ItemSpace.open(index_dir, items, model=model, store=store, kind=kind,
                                    save_index=save_index)
    wanted = space.parse_ids(ids)
    languages = space.check_languages(languages)
    on = space.on_topic(tags, topics)
    langs = space.index.language_of(wanted)
    found = space.neighbours_of(space.index.vectors_of(wanted), langs, k, languages=languages,
                                other_languages=other_languages, exclude_ids=[[item] for item in wanted],
                                only_ids=on)
    queries = []
    for item, lang, hits in zip(wanted, langs, found):
        entry = {"id": item, "lang": lang, "neighbours": hits}
        if space.text(item) is not None:
            entry["text"] = space.text(item)
        queries.append(entry)
    return {"k": k, "queries": queries, **space.left_out(languages, None, other_languages)}


def similar_texts(texts: Sequence[str], k: int = 10, *, index_dir: Any = None, items: Any = None,
                  model: str = "bundled", store: Any = None, kind: str = "auto",
                  languages: Sequence[str] | None = None, other_languages: bool = False,
                  query_lang: str | None = None, save_index: Any = None,
                  space: ItemSpace | None = None, topics: Sequence[str] | None = None,
                  tags: Any = None) -> dict:
    """The ``k`` nearest items of each free text (embedded as a query); JSON-ready.

    ``other_languages`` needs ``query_lang`` (the language of the texts); ``topics`` and
    ``tags`` as in :func:`similar_items`.
    """
    from xrec.catalogue.languages import UNKNOWN, normalise

    if other_languages and not query_lang:
        raise DataError("--other-languages with --text needs --lang (the language of the text)")
    query_lang = None if query_lang is None else normalise(query_lang, "--lang")
    if other_languages and query_lang == UNKNOWN:
        raise DataError("--other-languages with --text needs --lang naming a language, not 'und'")
    space = space or ItemSpace.open(index_dir, items, model=model, store=store, kind=kind,
                                    save_index=save_index)
    languages = space.check_languages(languages)
    on = space.on_topic(tags, topics)
    vectors = space.encoder.encode(list(texts), kind="query")
    excl = [query_lang] if other_languages and query_lang else None
    return {"k": k, "queries": [
        {"text": text, "lang": query_lang,
         "neighbours": space.neighbours(vector, k, languages=languages, exclude_languages=excl, only_ids=on)}
        for text, vector in zip(texts, vectors)], **space.left_out(languages, excl, False)}
