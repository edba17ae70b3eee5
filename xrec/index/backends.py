"""Search backends of a :class:`~xrec.index.VectorIndex`: one small interface, three twins.

A backend answers ``search(q, k, allowed) -> (scores, slots)`` over the slots of one FAISS index
(FAISS conventions: slot ``-1`` and score ``-inf`` pad a row that came back short), and drops
whatever it derived from the index when told the index :meth:`~SearchBackend.changed`.

* :class:`FaissCpu`: exact kinds as BLAS matmul + :func:`~xrec.index.topk.top_k` over FAISS's
  own storage (gathering the allowed vectors when few qualify); other kinds through FAISS with
  an ``IDSelectorBitmap`` for filters.
* :class:`FaissGpu`: unfiltered searches with ``k <= 2048`` on a GPU clone of the index;
  everything else (filters, larger ``k``, kinds FAISS cannot move) as :class:`FaissCpu`.
* :class:`TorchCuda`: exact kinds as a torch matmul + top-k on the CUDA device (filters as a
  mask); approximate kinds as :class:`FaissCpu`.

Which one a device name gets is :func:`xrec.index.gpu.resolve_backend`'s answer;
:func:`make_backend` builds it.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from xrec.index import gpu, kinds
from xrec.index.topk import top_k

#: exact search gathers the allowed vectors and multiplies when under 1/SUBSET_FRACTION qualify
SUBSET_FRACTION = 4


def faiss_search(index: faiss.Index, q: np.ndarray, k: int, params: Any) -> tuple[np.ndarray, np.ndarray]:
    """``index.search`` without the wrapper's re-checks (``q`` is checked float32 C-order)."""
    scores = np.empty((len(q), k), dtype=np.float32)
    labels = np.empty((len(q), k), dtype=np.int64)
    index.search_c(len(q), faiss.swig_ptr(q), k, faiss.swig_ptr(scores), faiss.swig_ptr(labels), params)  # pyright: ignore[reportAttributeAccessIssue]
    return scores, labels


def reconstruct(index: faiss.Index, slots: np.ndarray, dim: int) -> np.ndarray:
    """Vectors of ``slots`` as stored in ``index`` (decoded for compressed kinds)."""
    if not len(slots):
        return np.empty((0, dim), dtype=np.float32)
    if kinds.supports_native_ids(index):
        ivf = faiss.extract_index_ivf(index)
        if ivf.direct_map.type != faiss.DirectMap.Hashtable:  # pyright: ignore[reportAttributeAccessIssue]
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # pyright: ignore[reportAttributeAccessIssue]
    return index.reconstruct_batch(np.ascontiguousarray(slots, dtype=np.int64))


def exact_slots(q: np.ndarray, vectors: np.ndarray, slots_of_row: np.ndarray, k: int,
                blocked: np.ndarray | None = None, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``(scores, slots)`` ``[q, k]`` of ``q`` against ``vectors`` (row ``i`` is slot
    ``slots_of_row[i]``), rows where ``blocked`` left out; ``-inf`` / ``-1`` pad."""
    scores = np.full((len(q), k), -np.inf, dtype=np.float32)
    slots = np.full((len(q), k), -1, dtype=np.int64)
    for start in range(0, len(q), chunk):
        sims = q[start:start + chunk] @ vectors.T
        if blocked is not None:
            sims[:, blocked] = -np.inf
        cols, top = top_k(sims, k)
        rows, take = slice(start, start + len(sims)), cols.shape[1]
        scores[rows, :take] = top
        slots[rows, :take] = np.where(np.isneginf(top), -1, slots_of_row[cols])
    return scores, slots


class SearchBackend:
    """Searches one FAISS index of slots; subclasses move some searches to other hardware."""

    name = "cpu"

    def __init__(self, index: faiss.Index, kind: str, dim: int, knobs: dict[str, int]) -> None:
        self.index = index
        self.kind = kind
        self.dim = dim
        self.knobs = knobs  # shared with the facade: set_knobs updates it, then calls changed()
        self._shape = kinds.describe(index)

    def changed(self) -> None:
        """The index's vectors or knobs changed: drop what was derived from them."""

    def search(self, q: np.ndarray, k: int, allowed: np.ndarray | None, alive: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, slots)`` ``[q, k]`` of the slots where ``allowed`` (None: every slot)."""
        raise NotImplementedError


class FaissCpu(SearchBackend):
    """FAISS on the CPU, with exact kinds as BLAS matmul over FAISS's own storage."""

    name = "cpu"

    def __init__(self, index: faiss.Index, kind: str, dim: int, knobs: dict[str, int]) -> None:
        super().__init__(index, kind, dim, knobs)
        self._plain_params: tuple[Any, list[Any]] | None = None  # cached selector-free params
        self._flat: tuple[np.ndarray, np.ndarray] | None = None  # exact kind: storage view

    def changed(self) -> None:
        self._plain_params = None
        self._flat = None

    def search(self, q: np.ndarray, k: int, allowed: np.ndarray | None, alive: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "exact":
            if allowed is not None and allowed.sum() * SUBSET_FRACTION < self.index.ntotal:
                cand = np.flatnonzero(allowed)
                return exact_slots(q, reconstruct(self.index, cand, self.dim), cand, k, chunk=len(q) or 1)
            vectors, slots_of_row = self._flat_view()
            return exact_slots(q, vectors, slots_of_row, k,
                               None if allowed is None else ~allowed[slots_of_row])
        if allowed is None:
            if self._plain_params is None:
                self._plain_params = kinds.search_params(self._shape, None, self.knobs)
            return faiss_search(self.index, q, k, self._plain_params[0])
        bitmap = np.packbits(allowed, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        params, _keep = kinds.search_params(self._shape, selector, self.knobs)
        result = faiss_search(self.index, q, k, params)
        del bitmap
        return result

    def _flat_view(self) -> tuple[np.ndarray, np.ndarray]:
        """Zero-copy ``(vectors, slots)`` of an exact index, in FAISS storage order."""
        if self._flat is None:
            flat = faiss.downcast_index(self.index.index)  # pyright: ignore[reportAttributeAccessIssue]
            n = flat.ntotal
            vectors = np.empty((0, self.dim), np.float32)
            if n:
                xb = flat.get_xb()  # pyright: ignore[reportAttributeAccessIssue]
                vectors = faiss.rev_swig_ptr(xb, n * self.dim).reshape(n, self.dim)
            self._flat = (vectors, faiss.vector_to_array(self.index.id_map).astype(np.int64))  # pyright: ignore[reportAttributeAccessIssue]
        return self._flat


class FaissGpu(FaissCpu):
    """Unfiltered searches with ``k <= 2048`` on a FAISS GPU clone; the rest as :class:`FaissCpu`."""

    name = "faiss-gpu"

    def __init__(self, index: faiss.Index, kind: str, dim: int, knobs: dict[str, int]) -> None:
        super().__init__(index, kind, dim, knobs)
        self._gpu: Any = None  # lazily built clone, or False where FAISS cannot move the kind

    def changed(self) -> None:
        super().changed()
        self._gpu = None

    def search(self, q: np.ndarray, k: int, allowed: np.ndarray | None, alive: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        if allowed is None and k <= gpu.FAISS_GPU_MAX_K:
            if self._gpu is None:
                self._gpu = gpu.to_faiss_gpu(self.index) or False
            if self._gpu:
                params, _keep = kinds.search_params(kinds.describe(self._gpu), None, self.knobs)
                return faiss_search(self._gpu, q, k, params)
        return super().search(q, k, allowed, alive)


class TorchCuda(FaissCpu):
    """Exact kinds on a CUDA device with torch; approximate kinds as :class:`FaissCpu`."""

    name = "torch-cuda"
    #: the torch device exact searches run on (tests run this twin on ``"cpu"``)
    torch_device = "cuda"

    def __init__(self, index: faiss.Index, kind: str, dim: int, knobs: dict[str, int]) -> None:
        super().__init__(index, kind, dim, knobs)
        self._gpu: gpu.TorchExact | None = None

    def changed(self) -> None:
        super().changed()
        self._gpu = None

    def search(self, q: np.ndarray, k: int, allowed: np.ndarray | None, alive: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        if self.kind != "exact":
            return super().search(q, k, allowed, alive)
        if self._gpu is None:
            live = np.flatnonzero(alive)
            self._gpu = gpu.TorchExact(reconstruct(self.index, live, self.dim), live, self.torch_device)
        return self._gpu.search(q, k, allowed)


BACKEND_CLASSES: dict[str, type[SearchBackend]] = {cls.name: cls for cls in (FaissCpu, FaissGpu, TorchCuda)}


def make_backend(device: str | None, index: faiss.Index, kind: str, dim: int,
                 knobs: dict[str, int]) -> SearchBackend:
    """The backend ``device`` resolves to (see :func:`xrec.index.gpu.resolve_backend`)."""
    return BACKEND_CLASSES[gpu.resolve_backend(device)](index, kind, dim, knobs)
