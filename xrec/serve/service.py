"""What ``xrec serve`` answers, without HTTP: the library behind the app, and the in-process path.

A :class:`Service` holds the encoder, the micro-batcher and one :class:`Loaded` snapshot (index,
item texts, ranker, topic model). Each ``submit_*`` method validates a request body against the
snapshot current at that moment (raising :class:`RequestError` with the field at fault) and
queues a job that answers from that same snapshot, so a :meth:`Service.reload` that swaps in a
new snapshot never shows a request a half-loaded one. The index is only read while serving.
"""

from __future__ import annotations

import os
import platform
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xrec.catalogue.languages import UNKNOWN
from xrec.index.similar import ItemSpace
from xrec.index.vector_index import VectorIndex
from xrec.serve import ranking
from xrec.serve.batcher import MicroBatcher
from xrec.serve.schema import Fields, Limits, RequestError

SIMILAR_FIELDS = ("text", "ids", "k", "languages", "exclude_languages", "other_languages", "lang")
RECOMMEND_FIELDS = ("user_id", "history", "k", "languages", "exclude_languages")
EMBED_FIELDS = ("texts", "kind")


@dataclass(frozen=True)
class Loaded:
    """One consistent snapshot of everything served (replaced whole by a reload)."""

    space: ItemSpace
    languages: frozenset[str]
    ranker: Any = None
    topics: Any = None
    loaded_at: float = field(default_factory=time.time)

    @property
    def index(self) -> VectorIndex:
        return self.space.index


class Service:
    """Encoder + micro-batcher + the current :class:`Loaded` snapshot; see the module docstring.

    ``index``: a saved :class:`VectorIndex`; ``items``: optional items table (``item_id, text``)
    whose texts are returned beside the ids; ``ranker``: optional saved ``HybridRanker``;
    ``topics``: optional saved topic model (free-text queries then get a topic). ``encoder``:
    an encoder to use instead of loading ``model`` at ``precision`` with ``threads``.
    ``workers``: encoder worker threads, each with its own encoder loaded from ``model`` (so not
    with ``encoder``) and ``threads`` threads (default: the cores divided among the workers).
    """

    def __init__(self, index: str | os.PathLike[str], *, items: str | os.PathLike[str] | None = None,
                 ranker: str | os.PathLike[str] | None = None, topics: str | os.PathLike[str] | None = None,
                 model: str = "bundled", precision: str = "auto", threads: int | None = None,
                 encoder: Any = None, limits: Limits = Limits(), max_batch: int = 64,
                 max_wait_ms: float = 0.0, max_queue: int = 512, workers: int = 1) -> None:
        from xrec.encoders import load_encoder
        from xrec.encoders.onnx_encoder import default_threads
        from xrec.errors import DataError

        if workers < 1:
            raise DataError(f"workers must be >= 1, got {workers}")
        if workers > 1 and encoder is not None:
            raise DataError("workers > 1 loads one encoder per worker from model/precision; pass those, not encoder")
        if workers > 1 and threads is None:
            threads = max(1, default_threads() // workers)
        self.paths = {"index": Path(index), "items": _opt_path(items), "ranker": _opt_path(ranker),
                      "topics": _opt_path(topics)}
        self.limits = limits
        self.model, self.precision = model, (precision if encoder is None else None)
        self.encoder = encoder if encoder is not None else load_encoder(
            model, device="cpu", precision=precision, threads=threads)
        self.state = self._load()
        self._reload_lock = threading.Lock()
        self.started = time.time()
        encoders = [self.encoder] + [load_encoder(model, device="cpu", precision=precision, threads=threads)
                                     for _ in range(workers - 1)]
        for each in encoders:  # load and warm every encoder now, not in the first requests
            each.encode(["warm-up"], "query", progress=False)
        self.batcher = MicroBatcher([_encode_with(e) for e in encoders], self.encoder.dim, max_batch=max_batch,
                                    max_wait_ms=max_wait_ms, max_queue=max_queue)

    # ------------------------------------------------------------------ loading
    def _load(self) -> Loaded:
        fp = self.encoder.fingerprint
        index = VectorIndex.load(self.paths["index"], encoder_fingerprint=fp, device="cpu")
        texts: dict[Any, str] = {}
        if self.paths["items"] is not None:
            from xrec.catalogue.items import validate_items
            from xrec.catalogue.tables import read_table

            frame = validate_items(read_table(self.paths["items"], required=["item_id", "text"]),
                                   str(self.paths["items"]))
            texts = dict(zip(frame["item_id"].to_list(), frame["text"].to_list()))
        ranker = None if self.paths["ranker"] is None else ranking.load_ranker(self.paths["ranker"], fp)
        topics = None
        if self.paths["topics"] is not None:
            from xrec.topics import TopicClassifier

            topics = TopicClassifier.load(self.paths["topics"], encoder_fingerprint=fp)
        space = ItemSpace(index, texts, encoder=self.encoder)
        return Loaded(space, frozenset(index.language_set), ranker, topics)

    def reload(self) -> dict[str, Any]:
        """Load the files again and swap them in at once; on any error the old snapshot stays."""
        with self._reload_lock:
            self.state = self._load()
        return self.health()

    def close(self) -> None:
        self.batcher.close()

    # ------------------------------------------------------------------ requests
    def submit_similar(self, body: dict[str, Any]) -> Future:
        """``{"text": str | "ids": [...], "k", "languages", "exclude_languages", "other_languages",
        "lang"}`` -> ``{"k", "queries": [{"text"|"id", "lang", "neighbours": [...]}]}``."""
        state = self.state
        f = Fields(body, SIMILAR_FIELDS)
        source = f.one_of("text", "ids")
        k = f.integer("k", 10, 1, self.limits.max_k)
        languages, excluded = self._languages(f, state)
        other = f.boolean("other_languages")
        if source == "ids":
            if f.has("lang"):
                raise RequestError(422, "lang is for text queries; an item's own language is used", "lang")
            ids = self._known_ids(f, "ids", state)

            def answer(_: np.ndarray) -> dict:
                space, queries = state.space, []
                langs = space.index.language_of(ids)
                found = space.neighbours_of(space.index.vectors_of(ids), langs, k, languages=languages,
                                            exclude_languages=excluded, other_languages=other,
                                            exclude_ids=[[item] for item in ids])
                for item, lang, hits in zip(ids, langs, found):
                    entry = {"id": item, "lang": lang, "neighbours": hits}
                    if item in space.texts:
                        entry["text"] = space.texts[item]
                    queries.append(entry)
                return {"k": k, "queries": queries, **space.left_out(languages, excluded, other)}

            return self.batcher.submit([], "query", answer)
        text = f.text("text", self.limits.max_text_chars)
        if text is None:
            raise RequestError(422, "text must be a string, got null", "text")
        lang = f.language_text("lang")
        if other and (not lang or lang == UNKNOWN):
            raise RequestError(422, "other_languages with a text needs lang (the text's language)", "lang")
        excl = sorted(set(excluded or []) | ({lang} if other and lang else set())) or None

        def answer_text(vectors: np.ndarray) -> dict:
            entry = {"text": text, "lang": lang, "neighbours": state.space.neighbours(
                vectors[0], k, languages=languages, exclude_languages=excl)}
            left_out = state.space.left_out(languages, excl, False)
            if state.topics is not None:
                found = state.topics.predict(vectors, [lang] if lang else None)
                support = float(found.support[0])
                entry["topic"] = {"label": found.topics[0], "score": round(float(found.scores[0]), 4),
                                  "support": None if np.isnan(support) else round(support, 4)}
            return {"k": k, "queries": [entry], **left_out}

        return self.batcher.submit([text], "query", answer_text)

    def submit_recommend(self, body: dict[str, Any]) -> Future:
        """``{"user_id" | "history": [ids, oldest first], "k", "languages", "exclude_languages"}``
        -> ``{"k", "user_id"|"history", "items": [{"id", "lang", "score", "text"?, components}]}``."""
        state = self.state
        f = Fields(body, RECOMMEND_FIELDS)
        source = f.one_of("user_id", "history")
        k = f.integer("k", 10, 1, self.limits.max_k)
        languages, excluded = self._languages(f, state)
        index = state.index
        if source == "history":
            history = self._known_ids(f, "history", state)

            def by_history(_: np.ndarray) -> dict:
                ids, scores = ranking.recommend_history(index, history, k, languages=languages,
                                                        exclude_languages=excluded)
                items = [{"id": i, "score": round(s, 6)} for i, s in zip(ids, scores)]
                return {"k": k, "history": history, "items": self._describe(items, state),
                        **state.space.left_out(languages, excluded, False)}

            return self.batcher.submit([], "query", by_history)
        if state.ranker is None:
            raise RequestError(422, "user_id needs a ranker (start the server with --ranker); "
                                    "give a history of item ids instead", "user_id")
        user = f.id_value(body["user_id"], "user_id", state.ranker.users.ids.dtype.is_integer())
        if not ranking.knows_user(state.ranker, user):
            raise RequestError(404, f"unknown user_id {user!r}", "user_id")
        keep: Callable[[Any], bool] | None = None
        if languages is not None or excluded is not None:
            allowed, dropped = set(languages or state.languages), set(excluded or ())

            def in_languages(item: Any) -> bool:  # unknown language: kept only when "und" is named
                lang = (index.language_of([item])[0] if item in index else None) or UNKNOWN
                return lang in allowed and lang not in dropped

            keep = in_languages

        def by_user(_: np.ndarray) -> dict:
            items = ranking.recommend_user(state.ranker, user, k, keep, catalogue=len(index))
            return {"k": k, "user_id": user, "items": self._describe(items, state),
                    **state.space.left_out(languages, excluded, False)}

        return self.batcher.submit([], "query", by_user)

    def submit_embed(self, body: dict[str, Any]) -> Future:
        """``{"texts": [...], "kind": "query"|"passage"}`` -> ``{"fingerprint", "dim", "vectors"}``."""
        f = Fields(body, EMBED_FIELDS)
        if not f.has("texts"):
            raise RequestError(422, "texts is required", "texts")
        texts = f.texts("texts", self.limits.max_text_chars, self.limits.max_texts)
        kind = f.choice("kind", ("query", "passage"), "query")
        fingerprint, dim = self.encoder.fingerprint, self.encoder.dim
        return self.batcher.submit(texts, kind, lambda v: {
            "fingerprint": fingerprint, "dim": dim, "kind": kind, "vectors": v.round(7).tolist()})

    def call(self, endpoint: str, body: dict[str, Any]) -> tuple[dict, Any]:
        """The in-process path: ``(result, timing)`` of one request, as the app would answer it."""
        submit = {"similar": self.submit_similar, "recommend": self.submit_recommend,
                  "embed": self.submit_embed}[endpoint]
        return submit(body).result()

    # ------------------------------------------------------------------ helpers
    def _languages(self, f: Fields, state: Loaded) -> tuple[list[str] | None, list[str] | None]:
        out = []
        for name in ("languages", "exclude_languages"):
            values = f.languages(name)
            for i, lang in enumerate(values or []):
                if lang not in state.languages and lang != UNKNOWN:
                    raise RequestError(422, f"{name}[{i}]: no item in language {lang!r} "
                                            f"({len(state.languages)} languages are indexed)",
                                       f"{name}[{i}]")
            out.append(values)
        return out[0], out[1]

    def _known_ids(self, f: Fields, name: str, state: Loaded) -> list[Any]:
        integer = state.index.pad_id is not None
        ids = f.ids(name, integer, self.limits.max_ids)
        for i, item in enumerate(ids):
            if item not in state.index:
                raise RequestError(404, f"{name}[{i}]: unknown item id {item!r}", f"{name}[{i}]")
        return ids

    @staticmethod
    def _describe(items: list[dict], state: Loaded) -> list[dict]:
        index, texts = state.index, state.space.texts
        langs = index.language_of([h["id"] for h in items if h["id"] in index]) if items else []
        lang_of = dict(zip([h["id"] for h in items if h["id"] in index], langs))
        for hit in items:
            hit["lang"] = lang_of.get(hit["id"])
            if hit["id"] in texts:
                hit["text"] = texts[hit["id"]]
        return items

    def health(self) -> dict[str, Any]:
        """Model fingerprint, what is loaded, queue state and library versions."""
        state = self.state
        info = state.index.info()
        info["languages"] = len(info["languages"])
        ranker = None
        if state.ranker is not None:
            ranker = {"path": str(self.paths["ranker"]), "users": len(state.ranker.users),
                      "example_users": ranking.example_users(state.ranker)}
        return {
            "status": "ok", "fingerprint": self.encoder.fingerprint,
            "encoder": {"name": self.encoder.name, "runtime": type(self.encoder).__name__,
                        "precision": getattr(self.encoder, "precision", None)
                        or str(getattr(self.encoder, "dtype", "")).removeprefix("torch."),
                        "path": getattr(self.encoder, "path", None), "dim": self.encoder.dim,
                        "auto": self._auto_summary()},
            "index": {"path": str(self.paths["index"]), **info},
            "items_with_text": len(state.space.texts), "ranker": ranker,
            "topics": None if state.topics is None else list(state.topics.labels),
            "loaded_at": state.loaded_at, "uptime_s": round(time.time() - self.started, 1),
            "queue": {"queued_texts": self.batcher.queued, "max_queue": self.batcher.max_queue,
                      "max_batch": self.batcher.max_batch, "batches": self.batcher.batches,
                      "workers": self.batcher.workers},
            "limits": self.limits.__dict__, "versions": versions()}


    def _auto_summary(self) -> dict[str, Any] | None:
        """This machine's measurement behind ``precision="auto"`` (None when not asked for)."""
        if self.precision != "auto":
            return None
        from xrec.encoders.auto import summary

        try:
            return summary(self.model)
        except Exception:  # noqa: BLE001 - health never fails for want of this summary
            return None


def versions() -> dict[str, str]:
    """Versions of xrec and the libraries on the serving path."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("xrec", "faiss-cpu", "torch", "onnxruntime", "starlette", "uvicorn"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def _encode_with(encoder: Any):
    """``(texts, kind) -> vectors`` of ``encoder``, without a progress bar."""
    return lambda texts, kind: encoder.encode(texts, kind=kind, progress=False)


def _opt_path(value: str | os.PathLike[str] | None) -> Path | None:
    return None if value is None else Path(value)

