"""Embedding store: item vectors in parquet, with their text hashes and the encoder fingerprint.

One file format serves as the output of ``xrec embed`` and as the cache of every pipeline stage
that embeds items: columns ``item_id``, ``embedding`` (fixed-size list of float32) and
``text_hash``; the parquet schema metadata is the manifest (format version, encoder fingerprint,
the encoder path that computed the vectors, dimension, count). :func:`embed_items` reuses the
stored vector of every text it has seen before (by hash of the text and its kind) and embeds only
the rest, so a second run over a grown or edited catalogue is cheap.

A store is a cache that keeps every item written to it (the latest vector per ``item_id``): a
writer merges its rows into the file's current rows under an exclusive lock, so concurrent
writers (processes or threads) lose nothing. A store made by another encoder, or unreadable, is
never trusted: it is discarded, with a warning saying why. So is a store whose vectors another
encoder path computed (``torch-fp32``, ``int8/onnx-v3``, ...: :func:`xrec.encoders.auto.path`), or
that does not say which (format 1): the vectors of two paths are never mixed. A store keeps one id
type (the id rule, :mod:`xrec.catalogue.ids`): items whose ids are of the other type are refused before any
encoding (:class:`~xrec.errors.DataError`), never merged by dropping the rows it holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from xrec.artifacts import atomic_file, check_finite, check_writable
from xrec.encoders.base import Encoder, TextKind, check_texts
from xrec.errors import ArtifactError, DataError

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  #: format 1 did not record the encoder path
KIND = "xrec.embeddings"
_META_KEY = b"xrec"
_THREAD_LOCK = threading.Lock()  # flock does not exclude threads sharing one process
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredEmbeddings:
    """Vectors read from a store file, in file order."""

    ids: list[int] | list[str]
    vectors: np.ndarray
    text_hashes: list[str]
    fingerprint: str
    #: the encoder path that computed the vectors (None: not recorded, format 1)
    encoder_path: str | None = None


def text_hash(text: str, kind: TextKind = "passage") -> str:
    """Short stable hash of a text and the role it is embedded in."""
    return hashlib.sha256(f"{kind}\0{text}".encode()).hexdigest()[:24]


def write_embeddings(path: str | os.PathLike[str], ids: Sequence[int] | Sequence[str],
                     vectors: np.ndarray, fingerprint: str,
                     text_hashes: Sequence[str] | None = None, encoder_path: str | None = None) -> None:
    """Write vectors atomically as a store file (parquet with the manifest in its metadata);
    ``encoder_path`` names the path that computed them."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise DataError(f"{path}: {len(ids)} ids but vectors of shape {vectors.shape}")
    dim = vectors.shape[1]
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    columns = {
        "item_id": pa.array(list(ids)),
        "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
        "text_hash": pa.array(list(text_hashes) if text_hashes is not None else [""] * len(ids),
                              type=pa.string()),
    }
    manifest = {"kind": KIND, "format_version": FORMAT_VERSION, "encoder_fingerprint": fingerprint,
                "encoder_path": encoder_path, "dim": dim, "count": len(ids)}
    table = pa.table(columns).replace_schema_metadata({_META_KEY: json.dumps(manifest).encode()})
    with atomic_file(path) as tmp:
        pq.write_table(table, tmp)


def read_embeddings(path: str | os.PathLike[str],
                    expect_fingerprint: str | None = None) -> StoredEmbeddings:
    """Read a store file, checking its manifest; raises :class:`ArtifactError` naming the problem."""
    file = Path(path)
    try:
        table = pq.read_table(file)
    except FileNotFoundError as exc:
        raise ArtifactError(f"{file}: no such embeddings file") from exc
    except (OSError, pa.ArrowException) as exc:
        raise ArtifactError(f"{file}: unreadable or truncated parquet ({exc})") from exc
    raw = (table.schema.metadata or {}).get(_META_KEY)
    if raw is None:
        raise ArtifactError(f"{file}: not an xrec embeddings file (no manifest in its metadata)")
    manifest = json.loads(raw)
    if manifest.get("kind") != KIND or manifest.get("format_version") not in READABLE_VERSIONS:
        raise ArtifactError(f"{file}: format {manifest.get('kind')!r} v{manifest.get('format_version')}, "
                            f"expected {KIND!r} v{FORMAT_VERSION}")
    if expect_fingerprint is not None and manifest["encoder_fingerprint"] != expect_fingerprint:
        raise ArtifactError(f"{file}: made by encoder {manifest['encoder_fingerprint']}, "
                            f"expected {expect_fingerprint}")
    if table.num_rows != manifest["count"]:
        raise ArtifactError(f"{file}: {table.num_rows} rows, manifest says {manifest['count']}")
    embedding = table.column("embedding").combine_chunks()
    dim = manifest["dim"]
    if not pa.types.is_fixed_size_list(embedding.type) or embedding.type.list_size != dim:
        raise ArtifactError(f"{file}: column 'embedding' is {embedding.type}, expected {dim} float32s")
    vectors = embedding.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    check_finite(vectors, f"{file}: column 'embedding'")
    return StoredEmbeddings(ids=table.column("item_id").to_pylist(),
                            vectors=vectors.reshape(table.num_rows, dim),
                            text_hashes=table.column("text_hash").to_pylist(),
                            fingerprint=manifest["encoder_fingerprint"],
                            encoder_path=manifest.get("encoder_path"))


@contextlib.contextmanager
def store_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Exclusive write lock of a store file (``.<name>.lock`` beside it), across processes and threads."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    with _THREAD_LOCK, open(file.with_name(f".{file.name}.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def encoder_path_of(encoder: Encoder) -> str | None:
    """The path that computes ``encoder``'s vectors (None for an encoder that does not say)."""
    return getattr(encoder, "path", None)


def read_trusted(path: str | os.PathLike[str], encoder: Encoder, role: str = "store") -> StoredEmbeddings | None:
    """The store at ``path`` if it exists, was made by ``encoder``'s model and by its path; else
    None, logging why an existing file is not used."""
    return _trusted(path, encoder.fingerprint, encoder_path_of(encoder), role)


def _trusted(path: str | os.PathLike[str], fingerprint: str, encoder_path: str | None,
             role: str = "store") -> StoredEmbeddings | None:
    if not Path(path).exists():
        return None
    replaced = " and will be replaced" if role == "store" else ""
    try:
        stored = read_embeddings(path, expect_fingerprint=fingerprint)
    except ArtifactError as reason:
        log.warning("embedding %s %s is not used%s: %s", role, path, replaced, reason)
        return None
    if stored.encoder_path != encoder_path:
        log.warning("embedding %s %s is not used%s: its vectors were computed by the encoder path %s, "
                    "this encoder runs %s (vectors of two paths are never mixed)", role, path, replaced,
                    stored.encoder_path or "(not recorded)", encoder_path)
        return None
    return stored


def embed_items(encoder: Encoder, ids: Sequence[int] | Sequence[str], texts: Sequence[str], *,
                store: str | os.PathLike[str] | None = None, kind: TextKind = "passage",
                reuse: Sequence[str | os.PathLike[str]] = (), batch_size: int | None = None,
                progress: bool | None = None) -> np.ndarray:
    """Embed items in input order, reusing stored vectors of unchanged texts.

    ``store`` (optional) is a store file; these items are merged into it (see the module docs):
    its first rows are these items in input order, followed by the other items it held.
    Vectors are looked up by text (and kind) in ``store`` and in the further store files ``reuse``
    (e.g. another version of the same catalogue), so only new or changed texts are embedded. A
    store made by another encoder, or unreadable, is ignored (and ``store`` replaced), never
    trusted; a warning says so. Logs how many texts were reused and how many embedded.
    """
    texts = check_texts(texts)
    if len(ids) != len(texts):
        raise DataError(f"{len(ids)} ids but {len(texts)} texts")
    if len(set(ids)) != len(ids):
        seen: set = set()
        row = next(r for r, i in enumerate(ids) if i in seen or seen.add(i))
        raise DataError(f"row {row}: duplicate item_id {ids[row]!r}")
    if store is not None and ids and Path(store).is_file():
        _same_id_type(store, _stored_id_type(store), ids)  # before any encoding
    hashes = [text_hash(t, kind) for t in texts]
    vectors = np.empty((len(texts), encoder.dim), dtype=np.float32)
    known: dict[str, np.ndarray] = {}
    unchanged = False
    for source in ([store] if store is not None else []) + list(reuse):
        old = read_trusted(source, encoder, "store" if source == store else "file to reuse")
        if old is None:
            continue
        for row, digest in enumerate(old.text_hashes):
            known.setdefault(digest, old.vectors[row])
        if source == store:
            stored = dict(zip(old.ids, old.text_hashes))
            unchanged = all(stored.get(i) == h for i, h in zip(ids, hashes))
    todo = []
    for row, digest in enumerate(hashes):
        hit = known.get(digest)
        if hit is None:
            todo.append(row)
        else:
            vectors[row] = hit
    if store is not None and not unchanged:
        check_writable(store)  # a read-only or full store fails now, not after the encoding
    log.info("embeddings: %d of %d texts reused, %d embedded", len(texts) - len(todo), len(texts), len(todo))
    if todo:
        vectors[todo] = encoder.encode([texts[r] for r in todo], kind=kind,
                                       batch_size=batch_size, progress=progress)
    if store is not None and not unchanged:
        _merge_into(store, list(ids), vectors, hashes, encoder.fingerprint, encoder_path_of(encoder))
    return vectors


def _stored_id_type(store: str | os.PathLike[str]) -> type | None:
    """``int`` or ``str``: the type of a store file's item ids (None when unreadable: it is replaced)."""
    try:
        kind = pq.read_schema(store).field("item_id").type
    except (OSError, KeyError, pa.ArrowException):
        return None
    if pa.types.is_integer(kind):
        return int
    return str if pa.types.is_string(kind) or pa.types.is_large_string(kind) else None


def _same_id_type(store: str | os.PathLike[str], stored: type | None, ids: Sequence, rows: int | None = None) -> None:
    """Refuse to merge ``ids`` into a store holding the other id type: a store is one id namespace,
    and nothing in it is dropped to make room for another catalogue."""
    mine = int if isinstance(ids[0], int | np.integer) else str
    if stored is None or stored is mine:
        return
    held = f"{rows} items" if rows is not None else "items"
    raise DataError(f"{store}: this embedding store holds {held} with {stored.__name__} ids, these items have "
                    f"{mine.__name__} ids; one store keeps one id type, so give this catalogue its own "
                    "store file (the store is unchanged)")


def _merge_into(store: str | os.PathLike[str], ids: list, vectors: np.ndarray, hashes: list[str],
                fingerprint: str, encoder_path: str | None = None) -> None:
    """Write ``ids`` into ``store`` with the rows of other items it holds now, under the lock."""
    with store_lock(store):
        current = _trusted(store, fingerprint, encoder_path)  # re-read: another writer may have added rows
        if current is not None and current.ids and ids:
            _same_id_type(store, type(current.ids[0]), ids, len(current.ids))
        if current is not None:
            mine = set(ids)
            keep = [row for row, item in enumerate(current.ids) if item not in mine]
            if keep:
                ids = ids + [current.ids[row] for row in keep]
                vectors = np.concatenate([vectors, current.vectors[keep]])
                hashes = hashes + [current.text_hashes[row] for row in keep]
        write_embeddings(store, ids, vectors, fingerprint, hashes, encoder_path)
