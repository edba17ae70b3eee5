"""Checks and conversions of what callers hand to :class:`~xrec.index.vector_index.VectorIndex`:
vectors, ids, languages and ``k``; each bad value gets a :class:`~xrec.errors.DataError` naming it."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from xrec.errors import DataError

#: The padding id of integer-id results (so it cannot be an item id).
PAD_INT = -1


def as_matrix(values: Any, dim: int | None, what: str) -> np.ndarray:
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


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows kept), C-contiguous float32."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(matrix / norms, dtype=np.float32)


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise DataError(f"k must be an integer, got {k!r}")
    if k <= 0:
        raise DataError(f"k must be positive, got {k}")
    return int(k)


def plain_ids(ids: Iterable[Any]) -> list[Any]:
    """Ids as plain Python ints/strs (numpy scalars converted)."""
    return [i.item() if isinstance(i, np.generic) else i for i in ids]


def as_id_list(ids: Any, n: int | None) -> list[Any]:
    if isinstance(ids, (str, bytes)):
        raise DataError("ids: expected a sequence of ids, not a single string")
    out = plain_ids(ids.tolist() if isinstance(ids, np.ndarray) else ids)
    if n is not None and len(out) != n:
        raise DataError(f"ids: {len(out)} ids for {n} vectors")
    for row, item in enumerate(out):
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise DataError(f"ids: row {row}: {item!r} is a {type(item).__name__}; ids are int or str")
        if item == PAD_INT:
            raise DataError(f"ids: row {row}: -1 is reserved as the padding id of results")
    return out


def id_kind(ids: list[Any]) -> str:
    """``"int"`` or ``"str"``: the one type of ``ids`` (mixing both is an error)."""
    if not ids:
        return "int"
    kinds_seen = {type(i) for i in ids}
    if kinds_seen == {int}:
        return "int"
    if kinds_seen == {str}:
        return "str"
    raise DataError("ids: mixes integer and string ids; use one type")


def object_array(items: list[Any]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def as_lang_list(languages: Any, n: int) -> list[str | None]:
    """One normalised code per vector (:func:`xrec.catalogue.languages.item_codes`; None: unknown)."""
    from xrec.catalogue.languages import item_codes

    if languages is None:
        return [None] * n
    if isinstance(languages, str):
        languages = [languages] * n
    out = item_codes(list(languages))
    if len(out) != n:
        raise DataError(f"languages: {len(out)} entries for {n} vectors")
    return out


def as_langs(languages: Iterable[str] | str, what: str) -> list[str]:
    """A language filter, normalised (:func:`xrec.catalogue.languages.filter_codes`; ``und``: unknown)."""
    from xrec.catalogue.languages import filter_codes

    return filter_codes(languages, what)


def is_id_sequence(entry: Any) -> bool:
    return isinstance(entry, (list, tuple, set, frozenset, np.ndarray)) or (
        hasattr(entry, "__iter__") and not isinstance(entry, (str, bytes)))


def check_queries(queries: Any, dim: int, normalize: bool) -> np.ndarray:
    """Queries as C-contiguous float32 ``[q, dim]``, unit rows if ``normalize``; one reduction
    (the row norms) both checks for NaN/inf and normalises. DataError names a bad row."""
    if not (type(queries) is np.ndarray and queries.dtype == np.float32 and queries.ndim == 2
            and queries.shape[1] == dim and queries.flags.c_contiguous):
        return _checked_queries(queries, dim, normalize)
    q = queries
    if len(q) == 1:  # the common single-query case, in scalar arithmetic
        sq = float(np.dot(q[0], q[0]))
        if math.isfinite(sq) and (not normalize or abs(sq - 1.0) < 2e-5):
            return q
    norms = np.sqrt(np.einsum("ij,ij->i", q, q))
    if not np.isfinite(norms).all():
        return _checked_queries(queries, dim, normalize)  # names the row (or copes with overflow)
    if not normalize or (np.abs(norms - 1) < 1e-5).all():
        return q
    norms[norms == 0] = 1
    return q / norms[:, None]


def _checked_queries(queries: Any, dim: int, normalize: bool) -> np.ndarray:
    q = as_matrix(queries, dim, "queries")
    return unit_rows(q) if normalize else q
