"""Saving and loading a :class:`~xrec.index.VectorIndex`: a directory holding the FAISS index,
the slot table (``items.parquet``: id, language, alive, optional text) and a checked manifest."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import polars as pl

from xrec.artifacts import atomic_dir, read_manifest, write_manifest
from xrec.errors import ArtifactError, WriteError
from xrec.index import kinds
from xrec.index.backends import reconstruct
from xrec.index.slots import Slots

ARTIFACT_KIND = "xrec.vector_index"
FORMAT_VERSION = 2  #: 2: language codes normalised (xrec.catalogue.languages)
INDEX_FILE = "index.faiss"
ITEMS_FILE = "items.parquet"


def write_index_dir(path: str | os.PathLike[str], index: faiss.Index, slots: Slots,
                    fields: dict[str, Any]) -> Path:
    """Write ``index`` and ``slots`` under ``path`` atomically, ``fields`` into the manifest."""
    with atomic_dir(path) as tmp:
        try:
            faiss.write_index(index, str(tmp / INDEX_FILE))
        except RuntimeError as exc:  # FAISS reports a full disk as "write error in ..."
            raise WriteError(f"{path}: cannot write the FAISS index ({str(exc).splitlines()[0][:200]})") from exc
        columns = {"id": pl.Series(slots.ids.tolist(), dtype=pl.Int64 if slots.id_type == "int" else pl.String),
                   "lang": pl.Series(slots.all_languages(), dtype=pl.String),
                   "alive": pl.Series(slots.alive.tolist(), dtype=pl.Boolean)}
        if slots.text is not None:
            columns["text"] = pl.Series(slots.text.tolist(), dtype=pl.String)
        pl.DataFrame(columns).write_parquet(tmp / ITEMS_FILE)
        write_manifest(tmp, ARTIFACT_KIND, FORMAT_VERSION, {
            **fields, "metric": "inner_product", "count": slots.live, "slots": len(slots),
            "id_type": slots.id_type, "faiss_version": faiss.__version__})
    return Path(path)


def read_index_dir(path: str | os.PathLike[str], expect_fingerprint: str | None = None,
                   expect_dim: int | None = None) -> tuple[faiss.Index, Slots, dict[str, Any]]:
    """``(faiss_index, slots, manifest)`` of a saved index; :class:`ArtifactError` if it is
    incomplete, corrupted, or made for another encoder (``expect_fingerprint``) or dimension.

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
    dim, n_slots = manifest.get("dim"), manifest.get("slots")
    if (index.d != dim or len(items) != n_slots
            or set(items.columns) - {"text"} != {"id", "lang", "alive"}):
        raise ArtifactError(f"{root}: files disagree with the manifest (dim {index.d} vs {dim}, "
                            f"{len(items)} item rows vs {n_slots} slots)")
    slots = Slots.restore(manifest["id_type"], items["id"].to_list(), items["lang"].to_list(),
                          items["alive"].to_numpy().astype(bool),
                          items["text"].to_list() if "text" in items.columns else None)
    if int(index.ntotal) < slots.live:
        raise ArtifactError(f"{root}: FAISS index holds {index.ntotal} vectors, fewer than "
                            f"the {slots.live} live items")
    check_vectors(index, slots, root / INDEX_FILE)
    return index, slots, manifest


def check_vectors(index: faiss.Index, slots: Slots, file: Path, chunk: int = 16384) -> None:
    """Refuse an index whose stored vectors (decoded as searches see them, ``chunk`` at a time;
    IVF centroids too) hold NaN or infinity: a checksum does not catch vectors that were saved
    so, nor a rewritten manifest. :class:`ArtifactError` naming ``file`` and the first item."""
    dim = index.d
    if kinds.supports_native_ids(index):
        quantizer = faiss.extract_index_ivf(index).quantizer
        centroids = quantizer.reconstruct_n(0, quantizer.ntotal) if quantizer.ntotal else np.zeros((0, dim))
        if not np.isfinite(centroids).all():
            raise ArtifactError(f"{file}: {int((~np.isfinite(centroids).all(axis=1)).sum())} IVF centroid(s) "
                                "hold NaN or infinite values; refusing to use it (rebuild the index)")
        held = np.flatnonzero(slots.alive)  # IVF kinds remove in place: FAISS holds the live slots
    else:
        id_map = getattr(index, "id_map", None)  # IndexIDMap2: dead slots (tombstones) too
        held = np.flatnonzero(slots.alive) if id_map is None else faiss.vector_to_array(id_map).astype(np.int64)
    bad = []
    raw = _raw_floats(index)
    for start in range(0, len(held), chunk):
        part = held[start:start + chunk]
        if raw is not None:  # rows in id_map order
            rows, exponent = raw
            block = rows[start:start + chunk]
            finite = (np.isfinite(block) if exponent is None else (block & exponent) != exponent).all(axis=1)
        else:
            try:
                finite = np.isfinite(reconstruct(index, part, dim)).all(axis=1)
            except RuntimeError:  # a factory string whose codes FAISS cannot decode: nothing to check
                return
        bad.extend(part[~finite].tolist())
    if bad:
        raise ArtifactError(f"{file}: {len(bad)} stored vector(s) hold NaN or infinite values (first: item "
                            f"{slots.ids[bad[:1]].tolist()[0]!r}); refusing to use it (rebuild the index)")


def _raw_floats(index: faiss.Index) -> tuple[np.ndarray, int | None] | None:
    """``(rows, exponent)``: a zero-copy view ``[ntotal, d]`` of the stored rows of an
    IndexIDMap2-wrapped index, float32 (exact; ``exponent`` None) or float16 (``hnsw``) as
    uint16 bits (NaN and infinity have every ``exponent`` bit set: numpy's float16 is slow), else None."""
    inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else None  # pyright: ignore[reportAttributeAccessIssue]
    if isinstance(inner, faiss.IndexHNSW):
        inner = faiss.downcast_index(inner.storage)
    if isinstance(inner, faiss.IndexFlat):
        dtype, exponent = np.float32, None
    elif isinstance(inner, faiss.IndexScalarQuantizer) and inner.sq.qtype == faiss.ScalarQuantizer.QT_fp16:
        dtype, exponent = np.uint16, 0x7C00
    else:
        return None
    if inner.ntotal == 0:
        return np.zeros((0, index.d), dtype=dtype), exponent
    codes = faiss.rev_swig_ptr(inner.codes.data(), inner.ntotal * inner.code_size)
    return codes.view(dtype).reshape(inner.ntotal, index.d), exponent
