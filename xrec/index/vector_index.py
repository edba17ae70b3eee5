"""``VectorIndex``: FAISS inner-product search over L2-normalised vectors, with external ids,
per-item languages, exact language filters and per-query exclusions.

Results are :class:`~xrec.index.topk.TopK`: ``ids`` and ``scores`` of shape ``(q, min(k, len(index)))``,
best first (``ids, scores = index.search(...)`` unpacks them): a ``k``
beyond the index's size is cut to it, so memory never grows with ``k`` itself. Where fewer items
qualify (filters, exclusions) rows are padded: ids with
:data:`PAD_INT` (``-1``) for integer ids or ``None`` for string ids, scores with ``-inf``.
Because ``-1`` is the padding sentinel it cannot be an item id.

This module is the facade; the work lives beside it, one job per module:

* :mod:`xrec.index.slots`: ids, languages, texts and the alive mask of every slot (FAISS labels
  are slots, so filters become masks over slots);
* :mod:`xrec.index.backends`: the search itself, on the CPU, a FAISS GPU clone or torch CUDA;
* :mod:`xrec.index.topk`: the exact top-k kernel every exact search uses;
* :mod:`xrec.index.persist`: the saved directory (FAISS index, items table, manifest);
* :mod:`xrec.index.kinds` and :mod:`xrec.index.inputs`: index kinds and input checks.

Removal uses FAISS ``remove_ids`` where the kind supports it (exact, IVF) and otherwise
marks the slot dead, which every later search filters out.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from xrec.errors import DataError
from xrec.index import kinds
from xrec.index.backends import make_backend, reconstruct
from xrec.index.inputs import PAD_INT, as_id_list, as_matrix, check_k, check_queries, id_kind, unit_rows
from xrec.index.persist import read_index_dir, write_index_dir
from xrec.index.slots import PAD_STR, Slots
from xrec.index.topk import TopK, top_k

__all__ = ["PAD_INT", "PAD_STR", "VectorIndex"]

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
                 normalize: bool, device: str | None = None, slots: Slots | None = None) -> None:
        self._index = index
        self.dim = int(dim)
        self.kind = kind
        self.factory = factory
        self._fingerprint = fingerprint
        self.normalize = normalize
        self._knobs = dict(knobs)
        self._slots = slots if slots is not None else Slots(id_type)
        self._dead = int(index.ntotal) - self._slots.live  # slots FAISS still holds (no remove_ids)
        self._backend = make_backend(device, index, kind, self.dim, self._knobs)

    @property
    def fingerprint(self) -> str | None:
        """Fingerprint of the encoder that made the vectors (None where not given)."""
        return self._fingerprint

    @property
    def backend(self) -> str:
        """Where searches run: ``cpu``, ``faiss-gpu`` or ``torch-cuda``."""
        return self._backend.name

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, vectors: np.ndarray, ids: Sequence[int | str] | np.ndarray,
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
        matrix = as_matrix(vectors, None, "vectors")
        knobs = kinds.check_knobs(knobs)
        ids_list = as_id_list(ids, len(matrix))
        id_type = id_kind(ids_list)
        name = kinds.auto_kind(len(matrix)) if kind == "auto" else kind
        if not isinstance(name, str) or not name:
            raise DataError(f"index kind {kind!r}: expected a kind name or FAISS factory string")
        factory = kinds.factory_string(name, len(matrix), matrix.shape[1], knobs)
        index = kinds.new_index(factory, matrix.shape[1], knobs)
        if normalize:
            matrix = unit_rows(matrix)
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
        matrix = as_matrix(vectors, self.dim, "vectors")
        self._add(matrix, as_id_list(ids, len(matrix)), languages, normalized=False, texts=texts)

    def _add(self, matrix: np.ndarray, ids: list[Any], languages: Sequence[str | None] | None,
             normalized: bool, texts: Sequence[str | None] | None = None) -> None:
        langs, texts = self._slots.check_new(ids, languages, texts)
        if self.normalize and not normalized:
            matrix = unit_rows(matrix)
        if not self.normalize:
            kinds.check_storable(self.factory, matrix)
        start = len(self._slots)
        if len(matrix):
            self._add_chunked(matrix, np.arange(start, start + len(matrix), dtype=np.int64))
        self._slots.append(ids, langs, texts)
        self._backend.changed()

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
        slots = self._slots.kill(as_id_list(ids, None))
        if not len(slots):
            return 0
        try:
            self._index.remove_ids(slots)  # pyright: ignore[reportArgumentType]  (the wrapper takes ids)
        except RuntimeError:
            self._dead += len(slots)  # kind without remove_ids: tombstones
        self._backend.changed()
        return len(slots)

    def copy(self, device: str | None = None) -> VectorIndex:
        """An independent copy (FAISS index cloned), optionally for another device."""
        return VectorIndex(faiss.clone_index(self._index), self.dim, self.kind, self.factory,
                           id_type=self._slots.id_type, knobs=self._knobs, fingerprint=self.fingerprint,
                           normalize=self.normalize, device=device or self.backend, slots=self._slots.copy())

    def set_knobs(self, **knobs: int) -> None:
        """Change query-time knobs (``ef_search``, ``nprobe``, ``k_factor``)."""
        knobs = kinds.check_knobs(knobs)
        build_only = set(knobs) - kinds.QUERY_KNOBS
        if build_only:
            raise DataError(f"knob(s) {sorted(build_only)} only apply when building")
        self._knobs.update(knobs)
        self._backend.changed()

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        return self._slots.live

    @property
    def ids(self) -> np.ndarray:
        """External ids of the items, in order of addition."""
        return self._slots.live_ids()

    @property
    def languages(self) -> list[str | None]:
        """Language of each item (None where not given), aligned with :attr:`ids`."""
        return self._slots.live_languages()

    @property
    def language_set(self) -> list[str]:
        """Distinct languages of the live items, sorted."""
        return self._slots.language_set()

    @property
    def knobs(self) -> dict[str, int]:
        """Build and query knobs in effect."""
        return dict(self._knobs)

    @property
    def pad_id(self) -> int | None:
        """The id that pads result rows: -1 for integer ids, None for string ids."""
        return self._slots.pad_id

    @property
    def nbytes(self) -> int:
        """Bytes of the serialised FAISS index plus the slot table's id/language arrays."""
        return len(faiss.serialize_index(self._index)) + self._slots.nbytes

    def __contains__(self, item: object) -> bool:
        return item in self._slots.slot_of

    def __repr__(self) -> str:
        return (f"VectorIndex(kind={self.kind!r}, n={len(self)}, dim={self.dim}, "
                f"languages={len(self.language_set)}, backend={self.backend!r})")

    def vectors_of(self, ids: Sequence[int | str]) -> np.ndarray:
        """Stored vectors of ``ids`` (approximate for compressed kinds); DataError if unknown."""
        return reconstruct(self._index, self._slots.slots_of(as_id_list(ids, None)), self.dim)

    def language_of(self, ids: Sequence[int | str]) -> list[str | None]:
        """Language of each of ``ids`` (None where not given); DataError if unknown."""
        slots = self._slots
        return [slots.lang_name(slots.lang[slots.slot(item)]) for item in as_id_list(ids, None)]

    def unknown_left_out(self, languages: str | Sequence[str] | None = None,
                         exclude_languages: str | Sequence[str] | None = None) -> int:
        """How many items of unknown language these :meth:`search` filters leave out."""
        return self._slots.unknown_left_out(self._slots.allowed(languages, exclude_languages))

    @property
    def has_texts(self) -> bool:
        """Whether the index holds item texts (given to :meth:`build` or :meth:`add`)."""
        return self._slots.text is not None

    def text_of(self, ids: Sequence[int | str]) -> list[str | None]:
        """Text of each of ``ids`` (None where not given); DataError if unknown."""
        slots = self._slots
        return [None if slots.text is None else slots.text[slots.slot(item)] for item in as_id_list(ids, None)]

    # ------------------------------------------------------------------ search
    def search(self, queries: np.ndarray, k: int, *,
               languages: str | Sequence[str] | None = None,
               exclude_languages: str | Sequence[str] | None = None,
               exclude_ids: Sequence[Any] | None = None, only_ids: Sequence[Any] | None = None) -> TopK:
        """The ``k`` nearest items of each query: :class:`~xrec.index.topk.TopK` ``ids`` and ``scores``,
        each ``(q, k)``, best first (it unpacks as ``ids, scores``).

        ``queries``: float array ``[q, d]`` (a 1-D ``[d]`` is one query); float16/64 are cast
        to float32; integer or other dtypes, a wrong dimension, NaN or inf raise DataError.
        ``languages`` keeps only items in those languages, ``exclude_languages`` drops items
        in those (codes normalised: ``deu_Latn`` is ``de``); a language the index lacks matches
        nothing. Either filter drops items of unknown language unless ``languages`` names ``und``
        (:meth:`unknown_left_out` counts them). ``exclude_ids``: one sequence of ids excluded for every query,
        or a list with one sequence per query; ids not in the index are ignored. ``only_ids`` keeps
        only those items, for every query (e.g. the items of a topic); ids not in the index are ignored.
        Filters are exact: a row has ``k`` results whenever ``k`` items qualify. ``k`` is cut to
        the index's size (an empty index gives ``(q, 0)``); a row with fewer qualifying items is
        padded (see module docs).
        """
        q = check_queries(queries, self.dim, self.normalize)
        k = min(check_k(k), len(self))  # what can be returned: memory is q x min(k, n), not q x k
        nq = len(q)
        pad = self.pad_id
        if (languages is None and exclude_languages is None and exclude_ids is None and only_ids is None
                and not self._dead and nq and k):
            # fast path: no filters; done unless the backend came back short somewhere
            scores, slots = self._search_slots(q, k, None)
            if slots.min() >= 0:
                return TopK(self._slots.ids[slots], scores)
        if nq == 0:
            return TopK(np.full((0, k), pad, dtype=self._slots.ids.dtype), np.full((0, k), -np.inf, np.float32))
        allowed = self._slots.allowed(languages, exclude_languages)
        if only_ids is not None:
            if isinstance(only_ids, (str, bytes)):
                raise DataError("only_ids: expected a sequence of ids, not a single string")
            only = np.zeros(len(self._slots), dtype=bool)
            only[self._slots.known(list(only_ids))] = True
            allowed = only & (self._slots.alive if allowed is None else allowed)
        common, per_query = self._slots.exclusions(exclude_ids, nq)
        if common is not None and len(common):
            allowed = (self._slots.alive.copy() if allowed is None else allowed)
            allowed[common] = False
        n_allowed = len(self) if allowed is None else int(allowed.sum())
        # per-query exclusions that could otherwise appear among the results
        excl_rows = np.empty(0, dtype=np.int64)
        excl_slots = np.empty(0, dtype=np.int64)
        n_excl = np.zeros(nq, dtype=np.int64)
        if per_query is not None:
            rows = np.repeat(np.arange(nq), [len(s) for s in per_query])
            slots = np.concatenate(per_query) if len(rows) else np.empty(0, dtype=np.int64)
            keep = self._slots.alive[slots] if allowed is None else allowed[slots]
            excl_rows, excl_slots = rows[keep], slots[keep]
            n_excl = np.bincount(excl_rows, minlength=nq)
        k_search = min(k + int(n_excl.max(initial=0)), n_allowed)
        if k_search == 0:
            return TopK(np.full((nq, k), pad, dtype=self._slots.ids.dtype), np.full((nq, k), -np.inf, np.float32))
        scores, slots = self._search_slots(q, k_search, allowed)
        valid = slots >= 0
        if len(excl_rows):
            key_stride = np.int64(len(self._slots) + 1)
            keys = np.arange(nq, dtype=np.int64)[:, None] * key_stride + slots
            excluded = np.isin(keys, excl_rows * key_stride + excl_slots)
            valid &= ~excluded
        slots, scores, valid = _compact(slots, scores, valid, k)
        need = np.minimum(k, n_allowed - n_excl)
        short = np.flatnonzero(valid.sum(axis=1) < need)
        if len(short):  # approximate search came back short: exact search over what qualifies
            self._exact_rows(q, short, k, allowed, excl_rows, excl_slots, slots, scores, valid)
        out_ids = np.full((nq, k), pad, dtype=self._slots.ids.dtype)
        out_ids[valid] = self._slots.ids[slots[valid]]
        scores = np.where(valid, scores, -np.inf).astype(np.float32, copy=False)
        return TopK(out_ids, scores)

    def _search_slots(self, q: np.ndarray, k: int, allowed: np.ndarray | None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Backend search returning ``(scores, slots)`` with FAISS conventions (-1 pads).

        Small batches run FAISS on one OpenMP thread: waking a thread team costs more than
        it saves for a few queries, and far more when the cores are busy.
        """
        if self._dead and allowed is None:
            allowed = self._slots.alive
        if len(q) <= SINGLE_THREAD_BELOW:
            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
            try:
                return self._backend.search(q, k, allowed, self._slots.alive)
            finally:
                faiss.omp_set_num_threads(threads)
        return self._backend.search(q, k, allowed, self._slots.alive)

    def _exact_rows(self, q: np.ndarray, rows: np.ndarray, k: int, allowed: np.ndarray | None,
                    excl_rows: np.ndarray, excl_slots: np.ndarray, slots: np.ndarray,
                    scores: np.ndarray, valid: np.ndarray) -> None:
        """Fill ``rows`` of the result in place by brute force over the qualifying items."""
        cand = np.flatnonzero(self._slots.alive if allowed is None else allowed)
        sims = q[rows] @ reconstruct(self._index, cand, self.dim).T
        for out_row, row in enumerate(rows):
            drop = excl_slots[excl_rows == row]
            if len(drop):
                sims[out_row, np.isin(cand, drop)] = -np.inf
        cols, top = top_k(sims, k)
        take = cols.shape[1]
        slots[rows] = -1
        scores[rows] = -np.inf
        found = np.isfinite(top)
        valid[rows] = False
        valid[rows, :take] = found
        slots[rows, :take] = np.where(found, cand[cols], -1)
        scores[rows, :take] = top

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index as a directory (FAISS index, items table, manifest), atomically."""
        return write_index_dir(path, self._index, self._slots, {
            "encoder_fingerprint": self.fingerprint, "dim": self.dim, "index_kind": self.kind,
            "factory": self.factory, "knobs": self._knobs, "normalize": self.normalize})

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, encoder_fingerprint: str | None = None,
             expect_dim: int | None = None, device: str | None = None) -> VectorIndex:
        """Load a saved index; :class:`~xrec.errors.ArtifactError` if it is incomplete,
        corrupted, or made for another encoder (``encoder_fingerprint``) or dimension
        (``expect_dim``). See :func:`xrec.index.persist.read_index_dir`."""
        index, slots, manifest = read_index_dir(path, encoder_fingerprint, expect_dim)
        return cls(index, manifest["dim"], manifest["index_kind"], manifest["factory"],
                   id_type=slots.id_type, knobs=manifest.get("knobs", {}),
                   fingerprint=manifest.get("encoder_fingerprint"),
                   normalize=bool(manifest.get("normalize", True)), device=device, slots=slots)

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary (kind, factory, counts, languages, knobs, backend)."""
        return {"kind": self.kind, "factory": self.factory, "count": len(self), "dim": self.dim,
                "languages": self.language_set, "knobs": self._knobs, "backend": self.backend,
                "encoder_fingerprint": self.fingerprint}


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
