"""Index kinds: names to FAISS factory strings, ``auto`` selection, and query-time knobs.

=========  ==========================================  ======================================
kind       FAISS factory (defaults)                    query-time knobs
=========  ==========================================  ======================================
exact      ``Flat`` (inner product, brute force)       none
hnsw       ``HNSW{m},SQfp16`` (m=32,                   ``ef_search`` (default 64)
           ef_construction=80)
ivf        ``IVF{nlist},Flat``                         ``nprobe`` (default 16)
ivfpq      ``IVF{nlist},PQ{pq_m}x4fs,Refine(SQ8)``     ``nprobe`` (16), ``k_factor`` (4)
=========  ==========================================  ======================================

``hnsw`` stores the vectors as float16: half the bytes to fetch per visited node, so single queries
are faster and the index is smaller, at the same recall (figures in ``benchmarks/README.md``).
Vector components must lie within float16's range (|x| <= 65504). ``"HNSW32,Flat"`` keeps float32.

``ivfpq`` keeps 4-bit fast-scan PQ codes (``pq_m`` = d/2 sub-quantisers, d/4 bytes) for the
candidate scan and 8-bit scalar-quantised vectors for re-ranking the ``k_factor * k`` best
candidates: about 0.32x the memory of raw float32 vectors (at any d). Any other
string is passed to :func:`faiss.index_factory` as it is (e.g. ``"HNSW32,SQ8"``: a graph over
8-bit codes, 0.44x the raw memory).
``auto`` picks ``exact`` below 50,000 vectors and ``hnsw`` above.
"""

from __future__ import annotations

import math
from typing import Any

import faiss
import numpy as np

from xrec.errors import DataError

KINDS = ("exact", "hnsw", "ivf", "ivfpq")
#: Knobs read when building and when searching.
BUILD_KNOBS = frozenset({"m", "ef_construction", "nlist", "pq_m", "train_size"})
QUERY_KNOBS = frozenset({"ef_search", "nprobe", "k_factor"})
DEFAULT_QUERY_KNOBS = {"ef_search": 64, "nprobe": 16, "k_factor": 4}
AUTO_EXACT_BELOW = 50_000
FP16_MAX = 65504.0


def auto_kind(n: int) -> str:
    """The kind ``auto`` picks for a collection of ``n`` vectors."""
    return "exact" if n < AUTO_EXACT_BELOW else "hnsw"


def check_knobs(knobs: dict[str, Any]) -> dict[str, int]:
    """Reject unknown knobs and non-positive values; return them as ints."""
    unknown = set(knobs) - BUILD_KNOBS - QUERY_KNOBS
    if unknown:
        raise DataError(f"unknown index knob(s) {sorted(unknown)}; known: "
                        f"{sorted(BUILD_KNOBS | QUERY_KNOBS)}")
    out = {}
    for name, value in knobs.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise DataError(f"index knob {name}={value!r} must be a positive integer")
        out[name] = int(value)
    return out


def default_nlist(n: int) -> int:
    """About 4*sqrt(n) inverted lists, with at least 39 training points per list."""
    return max(1, min(int(4 * math.sqrt(max(n, 1))), n // 39))


def factory_string(kind: str, n: int, dim: int, knobs: dict[str, int]) -> str:
    """FAISS factory string for ``kind`` (a name of :data:`KINDS` or a factory string)."""
    if kind == "exact":
        return "Flat"
    if kind == "hnsw":
        return f"HNSW{knobs.get('m', 32)},SQfp16"
    if kind in ("ivf", "ivfpq"):
        nlist = knobs.get("nlist") or default_nlist(n)
        if kind == "ivf":
            return f"IVF{nlist},Flat"
        pq_m = knobs.get("pq_m") or next(m for m in (dim // 2, dim)
                                         if m > 0 and dim % m == 0)
        if dim % pq_m:
            raise DataError(f"pq_m={pq_m} must divide the dimension {dim}")
        return f"IVF{nlist},PQ{pq_m}x4fs,Refine(SQ8)"
    return kind


def new_index(factory: str, dim: int, knobs: dict[str, int]) -> faiss.Index:
    """An empty FAISS inner-product index from a factory string."""
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise DataError(f"index kind {factory!r}: not a kind ({', '.join(KINDS)}, auto) nor a "
                        f"valid FAISS factory string ({str(exc).splitlines()[-1]})") from exc
    hnsw = _find(index, faiss.IndexHNSW)
    if hnsw is not None:
        hnsw.hnsw.efConstruction = knobs.get("ef_construction", 80)
    return index


def train(index: faiss.Index, vectors: np.ndarray, knobs: dict[str, int], seed: int = 1234) -> None:
    """Train ``index`` (if it needs it) on a sample of ``vectors``."""
    if index.is_trained:
        return
    ivf = faiss.try_extract_index_ivf(index)
    need = ivf.nlist if ivf is not None else 1
    if len(vectors) < need:
        raise DataError(f"index needs training on at least {need} vectors (its nlist), got "
                        f"{len(vectors)}; use kind 'exact' or 'hnsw', or a smaller nlist")
    size = knobs.get("train_size") or max(256 * 64, 64 * need)
    sample = vectors
    if len(vectors) > size:
        rows = np.random.default_rng(seed).choice(len(vectors), size, replace=False)
        sample = vectors[np.sort(rows)]
    index.train(np.ascontiguousarray(sample))


def _find(index: faiss.Index, cls: type) -> Any:
    """The first sub-index of type ``cls`` in a wrapper chain (IDMap, Refine, PreTransform)."""
    seen = 0
    while index is not None and seen < 8:
        index = faiss.downcast_index(index)
        if isinstance(index, cls):
            return index
        index = getattr(index, "index", None) or getattr(index, "base_index", None)  # pyright: ignore[reportAssignmentType]
        seen += 1
    return None


def describe(index: faiss.Index) -> tuple[str, bool]:
    """``(base, refined)``: base ``hnsw``, ``ivf`` or ``flat`` (anything else), and whether a
    refine stage re-ranks it; what :func:`search_params` needs, computed once per index."""
    refine = _find(index, faiss.IndexRefine)
    base = refine.base_index if refine is not None else index
    if _find(base, faiss.IndexHNSW) is not None:
        return "hnsw", refine is not None
    if faiss.try_extract_index_ivf(base) is not None:
        return "ivf", refine is not None
    return "flat", refine is not None


def search_params(shape: tuple[str, bool], selector: faiss.IDSelector | None,
                  knobs: dict[str, int]) -> tuple[faiss.SearchParameters | None, list[Any]]:
    """SearchParameters for an index of ``shape`` (see :func:`describe`) with the query-time
    knobs and an optional selector.

    Returns ``(params, keep)``: hold ``keep`` until the search returns (SWIG does not keep
    nested parameter objects alive).
    """
    base, refined = shape
    if base == "hnsw":
        params = faiss.SearchParametersHNSW()  # pyright: ignore[reportAttributeAccessIssue]
        params.efSearch = knobs.get("ef_search", DEFAULT_QUERY_KNOBS["ef_search"])
    elif base == "ivf":
        params = faiss.SearchParametersIVF()
        params.nprobe = knobs.get("nprobe", DEFAULT_QUERY_KNOBS["nprobe"])
    elif selector is None and not refined:
        return None, []
    else:
        params = faiss.SearchParameters()
    if selector is not None:
        params.sel = selector
    if not refined:
        return params, [params, selector]
    outer = faiss.IndexRefineSearchParameters(  # pyright: ignore[reportCallIssue]
        k_factor=float(knobs.get("k_factor", DEFAULT_QUERY_KNOBS["k_factor"])),  # pyright: ignore[reportCallIssue]
        base_index_params=params)  # pyright: ignore[reportCallIssue]
    if selector is not None:
        outer.sel = selector
    return outer, [outer, params, selector]


def check_storable(factory: str, matrix: np.ndarray) -> None:
    """Raise :class:`DataError` naming the first row a float16-storing index cannot hold."""
    if "fp16" not in factory or not matrix.size:
        return
    too_big = np.abs(matrix).max(axis=1) > FP16_MAX
    if too_big.any():
        raise DataError(f"vectors: row {int(np.flatnonzero(too_big)[0])} has a component beyond "
                        f"float16's range (|x| > {FP16_MAX:g}), which {factory!r} stores; "
                        "normalise the vectors or use a float32 kind (e.g. 'HNSW32,Flat')")


def supports_native_ids(index: faiss.Index) -> bool:
    """True for IVF indexes, which store external ids and remove them in place."""
    return isinstance(faiss.downcast_index(index), faiss.IndexIVF)
