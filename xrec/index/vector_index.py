"""``VectorIndex``: FAISS inner-product search over L2-normalised vectors, with external ids,
per-item languages, exact language filters and per-query exclusions.

Results are ``(ids, scores)`` arrays of shape ``(q, min(k, len(index)))``, best first: a ``k``
beyond the index's size is cut to it, so memory never grows with ``k`` itself. Where fewer items
qualify (filters, exclusions) rows are padded: ids with
:data:`PAD_INT` (``-1``) for integer ids or ``None`` for string ids, scores with ``-inf``.
Because ``-1`` is the padding sentinel it cannot be an item id.

Internally every item gets a *slot* (0, 1, 2, ... in order of addition, never reused); FAISS
stores slots as its labels, so filters become FAISS ``IDSelectorBitmap`` s over slots.
Removal uses FAISS ``remove_ids`` where the kind supports it (exact, IVF) and otherwise
marks the slot dead, which every later search filters out.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import polars as pl

from xrec.artifacts import atomic_dir, read_manifest, write_manifest
from xrec.errors import ArtifactError, DataError
from xrec.index import gpu, kinds

PAD_INT = -1
PAD_STR = None
ARTIFACT_KIND = "xrec.vector_index"
FORMAT_VERSION = 1
INDEX_FILE = "index.faiss"
ITEMS_FILE = "items.parquet"
#: exact search gathers the allowed vectors and multiplies when under 1/SUBSET_FRACTION qualify
SUBSET_FRACTION = 4
#: batches of at most this many queries search on one thread
SINGLE_THREAD_BELOW = 4
#: Adds of more vectors than this go in chunks of this size, with a progress bar.
ADD_CHUNK = 65_536


class VectorIndex:
    """Nearest-neighbour index of item vectors (inner product = cosine on unit vectors).

    Build with :meth:`build`; query with :meth:`search`; grow and shrink with :meth:`add` and
    :meth:`remove`; persist with :meth:`save` / :meth:`load`.
    """

    def __init__(self, index: faiss.Index, dim: int, kind: str, factory: str, *,
                 id_type: str, knobs: dict[str, int], fingerprint: str | None,
                 normalize: bool, device: str | None = None) -> None:
        self._index = index
        self.dim = int(dim)
        self.kind = kind
        self.factory = factory
        self.fingerprint = fingerprint
        self.normalize = normalize
        self._id_type = id_type  # "int" or "str"
        self._knobs = dict(knobs)
        self._slot_ids: np.ndarray = np.empty(0, dtype=np.int64 if id_type == "int" else object)
        self._slot_lang = np.empty(0, dtype=np.int32)  # code into _lang_names, -1 = unknown
        self._slot_text: np.ndarray | None = None  # object array of texts (None: none given)
        self._alive = np.empty(0, dtype=bool)
        self._lang_names: list[str] = []
        self._lang_codes: dict[str, int] = {}
        self._slot_of: dict[Any, int] = {}
        self._native_ids = kinds.supports_native_ids(index)
        self._shape = kinds.describe(index)
        self._plain_params: tuple[Any, list[Any]] | None = None  # cached selector-free params
        self._dead = 0
        self.backend = gpu.resolve_backend(device)
        self._gpu: Any = None  # lazily built FAISS GPU clone or TorchExact
        self._flat: tuple[np.ndarray, np.ndarray] | None = None  # exact kind: storage view

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, vectors: np.ndarray, ids: Sequence[int | str],
              languages: Sequence[str | None] | None = None, kind: str = "auto", *,
              fingerprint: str | None = None, device: str | None = None,
              normalize: bool = True, texts: Sequence[str | None] | None = None,
              **knobs: int) -> VectorIndex:
        """Index ``vectors`` (float ``[n, d]``) under external ``ids`` with optional languages
        and texts (kept for display: :meth:`text_of`; saved with the index).

        ``kind``: ``exact``, ``hnsw``, ``ivf``, ``ivfpq``, ``auto`` or a FAISS factory string
        (see :mod:`xrec.index.kinds`). ``knobs``: ``m``, ``ef_construction``, ``nlist``,
        ``pq_m``, ``train_size`` (build) and ``ef_search``, ``nprobe``, ``k_factor`` (query).
        ``normalize`` L2-normalises items and queries (rows of norm 0 stay 0).
        ``device``: ``None``/``"auto"`` (GPU when present), ``"cpu"`` or ``"cuda"``.
        """
        matrix = _as_matrix(vectors, None, "vectors")
        knobs = kinds.check_knobs(knobs)
        ids_list = _as_id_list(ids, len(matrix))
        id_type = _id_type(ids_list)
        name = kinds.auto_kind(len(matrix)) if kind == "auto" else kind
        if not isinstance(name, str) or not name:
            raise DataError(f"index kind {kind!r}: expected a kind name or FAISS factory string")
        factory = kinds.factory_string(name, len(matrix), matrix.shape[1], knobs)
        index = kinds.new_index(factory, matrix.shape[1], knobs)
        if normalize:
            matrix = _normalized(matrix)
        kinds.train(index, matrix, knobs)
        if not kinds.supports_native_ids(index):
            index = faiss.IndexIDMap2(index)
        self = cls(index, matrix.shape[1], name, factory, id_type=id_type, knobs=knobs,
                   fingerprint=fingerprint, normalize=normalize, device=device)
        self._add(matrix, ids_list, languages, normalized=True, texts=texts)
        return self

    def add(self, vectors: np.ndarray, ids: Sequence[int | str],
            languages: Sequence[str | None] | None = None,
            texts: Sequence[str | None] | None = None) -> None:
        """Add items; raises :class:`DataError` on a duplicate id (in the batch or the index)."""
        matrix = _as_matrix(vectors, self.dim, "vectors")
        self._add(matrix, _as_id_list(ids, len(matrix)), languages, normalized=False, texts=texts)

    def _add(self, matrix: np.ndarray, ids: list[Any], languages: Sequence[str | None] | None,
             normalized: bool, texts: Sequence[str | None] | None = None) -> None:
        n = len(matrix)
        if n and _id_type(ids) != self._id_type:
            raise DataError(f"ids are {_id_type(ids)} but this index holds {self._id_type} ids")
        langs = _as_lang_list(languages, n)
        if texts is not None:
            texts = list(texts)
            if len(texts) != n or not all(t is None or isinstance(t, str) for t in texts):
                raise DataError(f"texts: expected {n} strings (or None), got {len(texts)} values")
        seen: dict[Any, int] = {}
        for row, item in enumerate(ids):
            if item in self._slot_of:
                raise DataError(f"ids: row {row}: id {item!r} is already in the index")
            if item in seen:
                raise DataError(f"ids: row {row}: duplicate id {item!r} (also at row {seen[item]})")
            seen[item] = row
        if self.normalize and not normalized:
            matrix = _normalized(matrix)
        if not self.normalize:
            kinds.check_storable(self.factory, matrix)
        start = len(self._slot_ids)
        slots = np.arange(start, start + n, dtype=np.int64)
        if n:
            self._add_chunked(matrix, slots)
        codes = np.array([self._lang_code(lang) for lang in langs], dtype=np.int32)
        id_array = np.array(ids, dtype=np.int64) if self._id_type == "int" else _object_array(ids)
        self._slot_ids = np.concatenate([self._slot_ids, id_array])
        self._slot_lang = np.concatenate([self._slot_lang, codes])
        if texts is not None or self._slot_text is not None:
            before = self._slot_text if self._slot_text is not None else _object_array([None] * start)
            self._slot_text = np.concatenate([before, _object_array(texts if texts is not None else [None] * n)])
        self._alive = np.concatenate([self._alive, np.ones(n, dtype=bool)])
        self._slot_of.update(zip(ids, slots.tolist()))
        self._gpu = None
        self._flat = None

    def _add_chunked(self, matrix: np.ndarray, slots: np.ndarray) -> None:
        """``add_with_ids`` in chunks of :data:`ADD_CHUNK`, with a progress bar when there are
        several (graph indexes at a million vectors take minutes)."""
        from tqdm.auto import tqdm

        starts = range(0, len(matrix), ADD_CHUNK)
        for start in tqdm(starts, desc=f"index {self.kind}", unit="chunk", disable=len(starts) < 2,
                          leave=False):
            chunk = np.ascontiguousarray(matrix[start:start + ADD_CHUNK])
            self._index.add_with_ids(chunk, np.ascontiguousarray(slots[start:start + ADD_CHUNK]))

    def remove(self, ids: Iterable[int | str]) -> int:
        """Remove items by id; raises :class:`DataError` naming ids not in the index.

        Returns the number removed. FAISS removes in place where the kind allows it (exact,
        IVF); for other kinds (HNSW, refine wrappers) the items are filtered out of every
        search from now on and their memory is reclaimed by the next rebuild.
        """
        wanted = _as_id_list(ids, None)
        unknown = [item for item in wanted if item not in self._slot_of]
        if unknown:
            raise DataError(f"remove: {len(unknown)} id(s) not in the index, e.g. {unknown[:5]}")
        slots = np.unique(np.array([self._slot_of[item] for item in wanted], dtype=np.int64))
        if not len(slots):
            return 0
        try:
            self._index.remove_ids(slots)
        except RuntimeError:
            self._dead += len(slots)  # kind without remove_ids: tombstones
        for item in wanted:
            self._slot_of.pop(item, None)
        self._alive[slots] = False
        self._gpu = None
        self._flat = None
        return len(slots)

    def copy(self, device: str | None = None) -> VectorIndex:
        """An independent copy (FAISS index cloned), optionally for another device."""
        clone = VectorIndex(faiss.clone_index(self._index), self.dim, self.kind, self.factory,
                            id_type=self._id_type, knobs=self._knobs, fingerprint=self.fingerprint,
                            normalize=self.normalize, device=device or self.backend)
        clone._slot_ids, clone._slot_lang = self._slot_ids.copy(), self._slot_lang.copy()
        clone._slot_text = None if self._slot_text is None else self._slot_text.copy()
        clone._alive, clone._dead = self._alive.copy(), self._dead
        clone._lang_names, clone._lang_codes = list(self._lang_names), dict(self._lang_codes)
        clone._slot_of = dict(self._slot_of)
        return clone

    def set_knobs(self, **knobs: int) -> None:
        """Change query-time knobs (``ef_search``, ``nprobe``, ``k_factor``)."""
        knobs = kinds.check_knobs(knobs)
        build_only = set(knobs) - kinds.QUERY_KNOBS
        if build_only:
            raise DataError(f"knob(s) {sorted(build_only)} only apply when building")
        self._knobs.update(knobs)
        self._plain_params = None

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        return len(self._slot_of)

    @property
    def ids(self) -> np.ndarray:
        """External ids of the items, in order of addition."""
        return self._slot_ids[self._alive]

    @property
    def languages(self) -> list[str | None]:
        """Language of each item (None where not given), aligned with :attr:`ids`."""
        return [self._lang_names[c] if c >= 0 else None for c in self._slot_lang[self._alive]]

    @property
    def language_set(self) -> list[str]:
        """Distinct languages of the live items, sorted."""
        codes = np.unique(self._slot_lang[self._alive])
        return sorted(self._lang_names[c] for c in codes if c >= 0)

    @property
    def knobs(self) -> dict[str, int]:
        """Build and query knobs in effect."""
        return dict(self._knobs)

    @property
    def pad_id(self) -> int | None:
        """The id that pads result rows: -1 for integer ids, None for string ids."""
        return PAD_INT if self._id_type == "int" else PAD_STR

    def __contains__(self, item: object) -> bool:
        return item in self._slot_of

    def __repr__(self) -> str:
        return (f"VectorIndex(kind={self.kind!r}, n={len(self)}, dim={self.dim}, "
                f"languages={len(self.language_set)}, backend={self.backend!r})")

    def vectors_of(self, ids: Sequence[int | str]) -> np.ndarray:
        """Stored vectors of ``ids`` (approximate for compressed kinds); DataError if unknown."""
        wanted = _as_id_list(ids, None)
        unknown = [item for item in wanted if item not in self._slot_of]
        if unknown:
            raise DataError(f"{len(unknown)} id(s) not in the index, e.g. {unknown[:5]}")
        return self._reconstruct(np.array([self._slot_of[i] for i in wanted], dtype=np.int64))

    def language_of(self, ids: Sequence[int | str]) -> list[str | None]:
        """Language of each of ``ids`` (None where not given); DataError if unknown."""
        out = []
        for item in _as_id_list(ids, None):
            if item not in self._slot_of:
                raise DataError(f"id {item!r} is not in the index")
            code = self._slot_lang[self._slot_of[item]]
            out.append(self._lang_names[code] if code >= 0 else None)
        return out

    @property
    def has_texts(self) -> bool:
        """Whether the index holds item texts (given to :meth:`build` or :meth:`add`)."""
        return self._slot_text is not None

    def text_of(self, ids: Sequence[int | str]) -> list[str | None]:
        """Text of each of ``ids`` (None where not given); DataError if unknown."""
        out = []
        for item in _as_id_list(ids, None):
            if item not in self._slot_of:
                raise DataError(f"id {item!r} is not in the index")
            out.append(None if self._slot_text is None else self._slot_text[self._slot_of[item]])
        return out

    # ------------------------------------------------------------------ search
    def search(self, queries: np.ndarray, k: int, *,
               languages: str | Sequence[str] | None = None,
               exclude_languages: str | Sequence[str] | None = None,
               exclude_ids: Sequence[Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest items of each query: ``(ids, scores)``, each ``(q, k)``, best first.

        ``queries``: float array ``[q, d]`` (a 1-D ``[d]`` is one query); float16/64 are cast
        to float32; integer or other dtypes, a wrong dimension, NaN or inf raise DataError.
        ``languages`` keeps only items in those languages, ``exclude_languages`` drops items
        in those; a language the index lacks matches nothing (so ``languages=["xx"]`` gives
        an all-padding result). ``exclude_ids``: one sequence of ids excluded for every query,
        or a list with one sequence per query; ids not in the index are ignored.
        Filters are exact: a row has ``k`` results whenever ``k`` items qualify. ``k`` is cut to
        the index's size (an empty index gives ``(q, 0)``); a row with fewer qualifying items is
        padded (see module docs).
        """
        q = self._check_queries(queries)
        k = min(_check_k(k), len(self))  # what can be returned: memory is q x min(k, n), not q x k
        nq = len(q)
        pad = self.pad_id
        if (languages is None and exclude_languages is None and exclude_ids is None
                and not self._dead and nq and k):
            # fast path: no filters; done unless the backend came back short somewhere
            scores, slots = self._search_slots(q, k, None)
            if slots.min() >= 0:
                return self._slot_ids[slots], scores
        if nq == 0:
            return np.full((0, k), pad, dtype=self._slot_ids.dtype), np.full((0, k), -np.inf, np.float32)
        allowed = self._allowed(languages, exclude_languages)
        common, per_query = self._exclusions(exclude_ids, nq)
        if common is not None and len(common):
            allowed = (self._alive.copy() if allowed is None else allowed)
            allowed[common] = False
        n_allowed = len(self) if allowed is None else int(allowed.sum())
        # per-query exclusions that could otherwise appear among the results
        excl_rows = np.empty(0, dtype=np.int64)
        excl_slots = np.empty(0, dtype=np.int64)
        n_excl = np.zeros(nq, dtype=np.int64)
        if per_query is not None:
            rows = np.repeat(np.arange(nq), [len(s) for s in per_query])
            slots = np.concatenate(per_query) if len(rows) else np.empty(0, dtype=np.int64)
            keep = self._alive[slots] if allowed is None else allowed[slots]
            excl_rows, excl_slots = rows[keep], slots[keep]
            n_excl = np.bincount(excl_rows, minlength=nq)
        k_search = min(k + int(n_excl.max(initial=0)), n_allowed)
        if k_search == 0:
            return np.full((nq, k), pad, dtype=self._slot_ids.dtype), np.full((nq, k), -np.inf, np.float32)
        scores, slots = self._search_slots(q, k_search, allowed)
        valid = slots >= 0
        if len(excl_rows):
            key_stride = np.int64(len(self._slot_ids) + 1)
            keys = np.arange(nq, dtype=np.int64)[:, None] * key_stride + slots
            excluded = np.isin(keys, excl_rows * key_stride + excl_slots)
            valid &= ~excluded
        slots, scores, valid = _compact(slots, scores, valid, k)
        need = np.minimum(k, n_allowed - n_excl)
        short = np.flatnonzero(valid.sum(axis=1) < need)
        if len(short):  # approximate search came back short: exact search over what qualifies
            self._exact_rows(q, short, k, allowed, excl_rows, excl_slots, slots, scores, valid)
        out_ids = np.full((nq, k), pad, dtype=self._slot_ids.dtype)
        out_ids[valid] = self._slot_ids[slots[valid]]
        scores = np.where(valid, scores, -np.inf).astype(np.float32, copy=False)
        return out_ids, scores

    def _search_slots(self, q: np.ndarray, k: int, allowed: np.ndarray | None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Backend search returning ``(scores, slots)`` with FAISS conventions (-1 pads).

        Small batches run FAISS on one OpenMP thread: waking a thread team costs more than
        it saves for a few queries, and far more when the cores are busy.
        """
        if len(q) <= SINGLE_THREAD_BELOW:
            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
            try:
                return self._search_backend(q, k, allowed)
            finally:
                faiss.omp_set_num_threads(threads)
        return self._search_backend(q, k, allowed)

    def _search_backend(self, q: np.ndarray, k: int, allowed: np.ndarray | None
                        ) -> tuple[np.ndarray, np.ndarray]:
        if self._dead and allowed is None:
            allowed = self._alive
        if self.backend == "torch-cuda" and self.kind == "exact":
            if self._gpu is None:
                live = np.flatnonzero(self._alive)
                self._gpu = gpu.TorchExact(self._reconstruct(live), live)
            return self._gpu.search(q, k, allowed)
        if (self.backend == "faiss-gpu" and allowed is None and k <= gpu.FAISS_GPU_MAX_K):
            if self._gpu is None:
                self._gpu = gpu.to_faiss_gpu(self._index) or False
            if self._gpu:
                params, _keep = kinds.search_params(kinds.describe(self._gpu), None, self._knobs)
                return _faiss_search(self._gpu, q, k, params)
        if self.kind == "exact":
            if allowed is not None and allowed.sum() * SUBSET_FRACTION < self._index.ntotal:
                return self._subset_search(q, k, np.flatnonzero(allowed))
            return self._matmul_search(q, k, allowed)
        selector = None
        bitmap = None
        if allowed is not None:
            bitmap = np.packbits(allowed, bitorder="little")
            selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        if selector is None:
            if self._plain_params is None:
                self._plain_params = kinds.search_params(self._shape, None, self._knobs)
            return _faiss_search(self._index, q, k, self._plain_params[0])
        params, _keep = kinds.search_params(self._shape, selector, self._knobs)
        result = _faiss_search(self._index, q, k, params)
        del bitmap
        return result

    def _flat_view(self) -> tuple[np.ndarray, np.ndarray]:
        """Zero-copy ``(vectors, slots)`` of an exact index, in FAISS storage order."""
        if self._flat is None:
            flat = faiss.downcast_index(self._index.index)
            n = flat.ntotal
            vectors = faiss.rev_swig_ptr(flat.get_xb(), n * self.dim).reshape(n, self.dim) \
                if n else np.empty((0, self.dim), np.float32)
            self._flat = (vectors, faiss.vector_to_array(self._index.id_map).astype(np.int64))
        return self._flat

    def _matmul_search(self, q: np.ndarray, k: int, allowed: np.ndarray | None,
                       chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Exact search as BLAS matmul + argpartition over FAISS's own storage (no copy)."""
        vectors, slots_of_row = self._flat_view()
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        slots = np.full((len(q), k), -1, dtype=np.int64)
        take = min(k, len(vectors))
        if take == 0:
            return scores, slots
        blocked = None if allowed is None else ~allowed[slots_of_row]
        for start in range(0, len(q), chunk):
            sims = q[start:start + chunk] @ vectors.T
            if blocked is not None:
                sims[:, blocked] = -np.inf
            top = np.argpartition(sims, len(vectors) - take, axis=1)[:, -take:] \
                if take < len(vectors) else np.broadcast_to(np.arange(len(vectors)), sims.shape)
            top_sims = np.take_along_axis(sims, top, axis=1)
            order = np.argsort(-top_sims, axis=1, kind="stable")
            top = np.take_along_axis(top, order, axis=1)
            rows = slice(start, start + len(sims))
            scores[rows, :take] = np.take_along_axis(top_sims, order, axis=1)
            slots[rows, :take] = np.where(np.isneginf(scores[rows, :take]), -1, slots_of_row[top])
        return scores, slots

    def _subset_search(self, q: np.ndarray, k: int, cand: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Exact search over a small allowed subset: gather its vectors, one matmul, top-k."""
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        slots = np.full((len(q), k), -1, dtype=np.int64)
        take = min(k, len(cand))
        if take == 0:
            return scores, slots
        sims = q @ self._reconstruct(cand).T
        top = np.argpartition(-sims, take - 1, axis=1)[:, :take] if take < len(cand) else \
            np.broadcast_to(np.arange(len(cand)), (len(q), len(cand)))
        top_sims = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_sims, axis=1, kind="stable")
        scores[:, :take] = np.take_along_axis(top_sims, order, axis=1)
        slots[:, :take] = cand[np.take_along_axis(top, order, axis=1)]
        return scores, slots

    def _exact_rows(self, q: np.ndarray, rows: np.ndarray, k: int, allowed: np.ndarray | None,
                    excl_rows: np.ndarray, excl_slots: np.ndarray, slots: np.ndarray,
                    scores: np.ndarray, valid: np.ndarray) -> None:
        """Fill ``rows`` of the result in place by brute force over the qualifying items."""
        mask = self._alive if allowed is None else allowed
        cand = np.flatnonzero(mask)
        vectors = self._reconstruct(cand)
        sims = q[rows] @ vectors.T
        for out_row, row in enumerate(rows):
            row_sims = sims[out_row]
            drop = excl_slots[excl_rows == row]
            if len(drop):
                row_sims = row_sims.copy()
                row_sims[np.isin(cand, drop)] = -np.inf
            take = min(k, int(np.isfinite(row_sims).sum()))
            top = np.argpartition(-row_sims, take - 1)[:take] if take else np.empty(0, np.int64)
            top = top[np.argsort(-row_sims[top], kind="stable")]
            slots[row] = -1
            scores[row] = -np.inf
            valid[row] = False
            slots[row, :take] = cand[top]
            scores[row, :take] = row_sims[top]
            valid[row, :take] = True

    def _reconstruct(self, slots: np.ndarray) -> np.ndarray:
        """Vectors of ``slots`` as stored (decoded for compressed kinds)."""
        if not len(slots):
            return np.empty((0, self.dim), dtype=np.float32)
        if self._native_ids:
            ivf = faiss.extract_index_ivf(self._index)
            if ivf.direct_map.type != faiss.DirectMap.Hashtable:
                ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        return self._index.reconstruct_batch(np.ascontiguousarray(slots, dtype=np.int64))

    def _allowed(self, languages: Any, exclude_languages: Any) -> np.ndarray | None:
        """Boolean mask over slots of live items passing the language filters (None = all)."""
        if languages is None and exclude_languages is None:
            return None
        mask = self._alive.copy()
        if languages is not None:
            codes = [self._lang_codes[x] for x in _as_langs(languages, "languages")
                     if x in self._lang_codes]
            mask &= np.isin(self._slot_lang, codes)
        if exclude_languages is not None:
            codes = [self._lang_codes[x] for x in _as_langs(exclude_languages, "exclude_languages")
                     if x in self._lang_codes]
            mask &= ~np.isin(self._slot_lang, codes)
        return mask

    def _exclusions(self, exclude_ids: Any, nq: int
                    ) -> tuple[np.ndarray | None, list[np.ndarray] | None]:
        """``(common_slots, per_query_slots)`` from ``exclude_ids``; unknown ids dropped."""
        if exclude_ids is None:
            return None, None
        if isinstance(exclude_ids, np.ndarray) and exclude_ids.ndim == 2:
            exclude_ids = list(exclude_ids)
        if isinstance(exclude_ids, (str, bytes)):
            raise DataError("exclude_ids: expected a sequence of ids or one sequence per query, "
                            "not a single string")
        entries = list(exclude_ids)
        nested = bool(entries) and all(_is_id_sequence(e) for e in entries)
        if not nested:
            if any(_is_id_sequence(e) for e in entries):
                raise DataError("exclude_ids: mixes ids and sequences; give a sequence of ids "
                                "or one sequence of ids per query")
            return self._slots_known(entries), None
        if len(entries) != nq:
            raise DataError(f"exclude_ids: {len(entries)} per-query lists for {nq} queries")
        return None, [self._slots_known(list(e)) for e in entries]

    def _slots_known(self, ids: list[Any]) -> np.ndarray:
        slot_of = self._slot_of
        return np.fromiter((slot_of[i] for i in _plain(ids) if i in slot_of), dtype=np.int64)

    def _check_queries(self, queries: Any) -> np.ndarray:
        """Queries as C-contiguous float32 ``[q, d]``, unit rows if ``normalize``; one
        reduction (the row norms) both checks for NaN/inf and normalises."""
        if (type(queries) is np.ndarray and queries.dtype == np.float32 and queries.ndim == 2
                and queries.shape[1] == self.dim and queries.flags.c_contiguous):
            q = queries
        else:
            return self._check_slow(queries)
        if len(q) == 1:  # the common single-query case, in scalar arithmetic
            sq = float(np.dot(q[0], q[0]))
            if math.isfinite(sq) and (not self.normalize or abs(sq - 1.0) < 2e-5):
                return q
        norms = np.sqrt(np.einsum("ij,ij->i", q, q))
        if not np.isfinite(norms).all():
            return self._check_slow(queries)  # names the row (or copes with overflow)
        if not self.normalize or (np.abs(norms - 1) < 1e-5).all():
            return q
        norms[norms == 0] = 1
        return q / norms[:, None]

    def _check_slow(self, queries: Any) -> np.ndarray:
        q = _as_matrix(queries, self.dim, "queries")
        return _normalized(q) if self.normalize else q

    def _lang_code(self, lang: str | None) -> int:
        if lang is None:
            return -1
        code = self._lang_codes.get(lang)
        if code is None:
            code = self._lang_codes[lang] = len(self._lang_names)
            self._lang_names.append(lang)
        return code

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index as a directory (FAISS index, items table, manifest), atomically."""
        with atomic_dir(path) as tmp:
            faiss.write_index(self._index, str(tmp / INDEX_FILE))
            langs = [self._lang_names[c] if c >= 0 else None for c in self._slot_lang]
            ids = self._slot_ids.tolist()
            columns = {"id": pl.Series(ids, dtype=pl.Int64 if self._id_type == "int" else pl.String),
                       "lang": pl.Series(langs, dtype=pl.String),
                       "alive": pl.Series(self._alive.tolist(), dtype=pl.Boolean)}
            if self._slot_text is not None:
                columns["text"] = pl.Series(self._slot_text.tolist(), dtype=pl.String)
            pl.DataFrame(columns).write_parquet(tmp / ITEMS_FILE)
            write_manifest(tmp, ARTIFACT_KIND, FORMAT_VERSION, {
                "encoder_fingerprint": self.fingerprint, "metric": "inner_product",
                "dim": self.dim, "count": len(self), "slots": len(self._slot_ids),
                "index_kind": self.kind, "factory": self.factory, "id_type": self._id_type,
                "knobs": self._knobs, "normalize": self.normalize,
                "faiss_version": faiss.__version__})
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], expect_fingerprint: str | None = None, *,
             expect_dim: int | None = None, device: str | None = None) -> VectorIndex:
        """Load a saved index; :class:`ArtifactError` if it is incomplete, corrupted, or made
        for another encoder (``expect_fingerprint``) or dimension (``expect_dim``).

        FAISS parses only a file the manifest lists and whose SHA-256 matches it: a corrupted or
        swapped index file is refused before FAISS sees it. (Checksums catch damage, not a
        hostile folder that rewrites its own manifest: load indexes you or xrec made.)
        """
        root = Path(path)
        manifest = read_manifest(root, ARTIFACT_KIND, FORMAT_VERSION, verify=True)
        unlisted = [name for name in (INDEX_FILE, ITEMS_FILE) if name not in manifest.get("files", {})]
        if unlisted:
            raise ArtifactError(f"{root}: {', '.join(unlisted)} not listed in the manifest (no checksum "
                                "to check it against); refusing to read it")
        if expect_fingerprint is not None and manifest.get("encoder_fingerprint") != expect_fingerprint:
            raise ArtifactError(
                f"{root}: index built with encoder {manifest.get('encoder_fingerprint')!r}, "
                f"expected {expect_fingerprint!r}; rebuild it with this encoder")
        if expect_dim is not None and manifest.get("dim") != expect_dim:
            raise ArtifactError(f"{root}: index has dimension {manifest.get('dim')}, expected {expect_dim}")
        try:
            index = faiss.read_index(str(root / INDEX_FILE))
            items = pl.read_parquet(root / ITEMS_FILE)
        except Exception as exc:  # FAISS raises RuntimeError, parquet several types
            raise ArtifactError(f"{root}: unreadable index files ({str(exc).splitlines()[0]})") from exc
        dim, slots = manifest.get("dim"), manifest.get("slots")
        if (index.d != dim or len(items) != slots
                or set(items.columns) - {"text"} != {"id", "lang", "alive"}):
            raise ArtifactError(f"{root}: files disagree with the manifest (dim {index.d} vs {dim}, "
                                f"{len(items)} item rows vs {slots} slots)")
        self = cls(index, dim, manifest["index_kind"], manifest["factory"],
                   id_type=manifest["id_type"], knobs=manifest.get("knobs", {}),
                   fingerprint=manifest.get("encoder_fingerprint"),
                   normalize=bool(manifest.get("normalize", True)), device=device)
        ids = items["id"].to_list()
        self._slot_ids = np.array(ids, dtype=np.int64) if self._id_type == "int" else _object_array(ids)
        self._slot_lang = np.array([self._lang_code(x) for x in items["lang"].to_list()], dtype=np.int32)
        self._alive = items["alive"].to_numpy().astype(bool)
        if "text" in items.columns:
            self._slot_text = _object_array(items["text"].to_list())
        self._slot_of = {ids[s]: int(s) for s in np.flatnonzero(self._alive)}
        self._dead = int(index.ntotal) - len(self._slot_of)
        if self._dead < 0:
            raise ArtifactError(f"{root}: FAISS index holds {index.ntotal} vectors, fewer than "
                                f"the {len(self._slot_of)} live items")
        return self

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary (kind, factory, counts, languages, knobs, backend)."""
        return {"kind": self.kind, "factory": self.factory, "count": len(self), "dim": self.dim,
                "languages": self.language_set, "knobs": self._knobs, "backend": self.backend,
                "encoder_fingerprint": self.fingerprint}


# ---------------------------------------------------------------------- helpers
def _faiss_search(index: faiss.Index, q: np.ndarray, k: int, params: Any
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``index.search`` without the wrapper's re-checks (``q`` is checked float32 C-order)."""
    scores = np.empty((len(q), k), dtype=np.float32)
    labels = np.empty((len(q), k), dtype=np.int64)
    index.search_c(len(q), faiss.swig_ptr(q), k, faiss.swig_ptr(scores), faiss.swig_ptr(labels), params)
    return scores, labels


def _compact(slots: np.ndarray, scores: np.ndarray, valid: np.ndarray, k: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Move each row's valid entries to the front (order kept), cut or pad to ``k`` columns."""
    if not valid.all():
        order = np.argsort(~valid, axis=1, kind="stable")
        slots = np.take_along_axis(slots, order, axis=1)
        scores = np.take_along_axis(scores, order, axis=1)
        valid = np.take_along_axis(valid, order, axis=1)
    width = slots.shape[1]
    if width >= k:
        return slots[:, :k].copy(), scores[:, :k].copy(), valid[:, :k].copy()
    extra = k - width
    return (np.pad(slots, ((0, 0), (0, extra)), constant_values=-1),
            np.pad(scores, ((0, 0), (0, extra)), constant_values=-np.inf),
            np.pad(valid, ((0, 0), (0, extra)), constant_values=False))


def _as_matrix(values: Any, dim: int | None, what: str) -> np.ndarray:
    """Check a float matrix (1-D = one row) and return it as C-contiguous float32."""
    if not isinstance(values, np.ndarray):
        try:
            values = np.asarray(values)
        except (ValueError, TypeError) as exc:
            raise DataError(f"{what}: not a numeric array ({exc})") from exc
    if values.ndim == 1 and dim is not None:
        values = values[None, :]
    if values.ndim != 2:
        raise DataError(f"{what}: expected a 2-D array [n, d], got shape {values.shape}")
    if not np.issubdtype(values.dtype, np.floating):
        raise DataError(f"{what}: dtype {values.dtype}, expected float32 (float16/float64 are cast)")
    if dim is not None and values.shape[1] != dim:
        raise DataError(f"{what}: dimension {values.shape[1]}, the index has dimension {dim}")
    if values.shape[1] == 0:
        raise DataError(f"{what}: dimension 0")
    values = np.ascontiguousarray(values, dtype=np.float32)
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        raise DataError(f"{what}: row {int(np.flatnonzero(~finite)[0])} holds NaN or infinite values")
    return values


def _normalized(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(matrix / norms, dtype=np.float32)


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise DataError(f"k must be an integer, got {k!r}")
    if k <= 0:
        raise DataError(f"k must be positive, got {k}")
    return int(k)


def _plain(ids: Iterable[Any]) -> list[Any]:
    """Ids as plain Python ints/strs (numpy scalars converted)."""
    return [i.item() if isinstance(i, np.generic) else i for i in ids]


def _as_id_list(ids: Any, n: int | None) -> list[Any]:
    if isinstance(ids, (str, bytes)):
        raise DataError("ids: expected a sequence of ids, not a single string")
    out = _plain(ids.tolist() if isinstance(ids, np.ndarray) else ids)
    if n is not None and len(out) != n:
        raise DataError(f"ids: {len(out)} ids for {n} vectors")
    for row, item in enumerate(out):
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise DataError(f"ids: row {row}: {item!r} is a {type(item).__name__}; ids are int or str")
        if item == PAD_INT:
            raise DataError(f"ids: row {row}: -1 is reserved as the padding id of results")
    return out


def _id_type(ids: list[Any]) -> str:
    if not ids:
        return "int"
    kinds_seen = {type(i) for i in ids}
    if kinds_seen == {int}:
        return "int"
    if kinds_seen == {str}:
        return "str"
    raise DataError("ids: mixes integer and string ids; use one type")


def _object_array(items: list[Any]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _as_lang_list(languages: Any, n: int) -> list[str | None]:
    if languages is None:
        return [None] * n
    if isinstance(languages, str):
        return [languages] * n
    out = list(languages)
    if len(out) != n:
        raise DataError(f"languages: {len(out)} entries for {n} vectors")
    for row, lang in enumerate(out):
        if lang is not None and not isinstance(lang, str):
            raise DataError(f"languages: row {row}: {lang!r} is not a string or None")
    return out


def _as_langs(languages: Any, what: str) -> list[str]:
    if isinstance(languages, str):
        return [languages]
    out = list(languages)
    for lang in out:
        if not isinstance(lang, str):
            raise DataError(f"{what}: {lang!r} is not a language code string")
    return out


def _is_id_sequence(entry: Any) -> bool:
    return isinstance(entry, (list, tuple, set, frozenset, np.ndarray)) or (
        hasattr(entry, "__iter__") and not isinstance(entry, (str, bytes)))
