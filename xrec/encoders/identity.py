"""What ``load_encoder`` must know before loading any weights, cached on disk, content-addressed.

Most of a CLI call's start-up went to hashing the model's files for the fingerprint (hundreds of
MB on every load) and to importing torch and transformers and loading the weights, even when
every vector the call needed was already in an embedding store. Two caches under
``$XREC_CACHE_DIR`` (default ``~/.cache/xrec``) remove both:

* :func:`file_sha256` keeps each file's SHA-256 under ``hashes/``, keyed by the file's absolute
  path and its size, modification and change times (nanoseconds), inode and device. Writing to a
  file changes its change time (which no program can set back), so a changed file is re-hashed
  even when its size and modification time were restored.
* :func:`recall` / :func:`remember` keep an encoder's identity (fingerprint, dimension, name,
  prefixes, maximum length) under ``encoders/``, keyed by the hashes of every file of its model
  directory and the arguments that shape the fingerprint. A hit lets ``load_encoder`` return a
  :class:`~xrec.encoders.lazy.LazyEncoder` that loads the model on its first ``encode``.

Entries are small JSON files written atomically; a missing or unreadable entry is a cache miss.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xrec.artifacts import atomic_file, sha256_file

#: Identity fields a cached entry holds (all an encoder must answer before it loads).
IDENTITY_FIELDS = ("fingerprint", "dim", "name", "query_prefix", "passage_prefix", "max_length")


def _cache_root() -> Path:
    from xrec.encoders.bundled import cache_dir

    return cache_dir()


def _stat_key(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _entry(folder: str, key: str) -> Path:
    return _cache_root() / folder / f"{hashlib.sha256(key.encode('utf-8')).hexdigest()[:40]}.json"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write(path: Path, data: Mapping[str, Any]) -> None:
    try:
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
    except OSError:  # a read-only cache only costs speed
        pass


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, re-computed only when the file changed (see the module docs)."""
    file = Path(path).resolve()
    stat = _stat_key(file)
    entry = _entry("hashes", str(file))
    cached = _read(entry)
    if cached and cached.get("path") == str(file) and cached.get("stat") == stat:
        return str(cached["sha256"])
    digest = sha256_file(file)
    if _stat_key(file) == stat:  # not written to while it was read
        _write(entry, {"path": str(file), "stat": stat, "sha256": digest})
    return digest


def directory_key(directory: str | os.PathLike[str], **arguments: Any) -> str:
    """Content key of a model directory (every top-level file's hash) and the given arguments."""
    root = Path(directory).resolve()
    files = {p.name: file_sha256(p) for p in sorted(root.iterdir()) if p.is_file()}
    return json.dumps({"files": files, "arguments": arguments}, sort_keys=True, default=str)


def recall(key: str) -> dict[str, Any] | None:
    """The identity remembered under ``key``, or None."""
    cached = _read(_entry("encoders", key))
    if not cached or cached.get("key") != key or set(IDENTITY_FIELDS) - set(cached):
        return None
    return {name: cached[name] for name in IDENTITY_FIELDS}


def remember(key: str, encoder: Any) -> None:
    """Store the identity of a loaded ``encoder`` under ``key``."""
    _write(_entry("encoders", key), {"key": key, **{name: getattr(encoder, name) for name in IDENTITY_FIELDS}})
