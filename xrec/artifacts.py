"""Atomic writes and checked manifests for every artifact xrec saves.

An artifact is a directory holding data files plus ``manifest.json``. The manifest records the
format version, the kind of artifact, free-form fields (encoder fingerprint, dimension, counts)
and a SHA-256 checksum of every file, so that loading detects truncation, corruption and
artifacts made by another model. Directories and files appear atomically: they are written
under a temporary name beside the target and renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from xrec.errors import ArtifactError, WriteError

MANIFEST = "manifest.json"
#: Free space an output's file system must have before a command starts its work (bytes).
MIN_FREE_BYTES = 16 << 20

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_writable(*paths: str | os.PathLike[str] | None, min_free: int = MIN_FREE_BYTES) -> None:
    """Before any expensive work: the directory of each output in ``paths`` (files or artifact
    directories; None skipped) exists or can be made, accepts a new file, and has ``min_free``
    bytes free; else :class:`WriteError` naming the path."""
    for path in paths:
        if path is None:
            continue
        target = Path(path)
        with writing(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=target.parent)
            os.close(fd)
            os.unlink(probe)
            free = shutil.disk_usage(target.parent).free
        if free < min_free:
            raise WriteError(f"{target}: only {free // 1024} KiB free on its file system, xrec wants at least "
                             f"{min_free // (1 << 20)} MiB before it starts; free some space or write elsewhere")


@contextlib.contextmanager
def writing(target: Path) -> Iterator[None]:
    """Turn an OS error while writing ``target`` into one :class:`WriteError` line naming it."""
    try:
        yield
    except WriteError:
        raise
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise WriteError(f"{target}: cannot write ({why}"
                         f"{'' if exc.filename in (None, str(target)) else f': {exc.filename}'})") from exc


#: This host in temporary names (letters, digits, ``-``), so that leftovers are judged only by their host.
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def _tmp_prefix(target: Path) -> str:
    """``.NAME.HOST-PID.``: the start of a temporary name beside ``target`` (see :func:`sweep_leftovers`)."""
    return f".{target.name}.{_HOST}-{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # not ours to signal: it runs
        return True
    return True


def sweep_leftovers(target: Path) -> list[Path]:
    """Remove the temporary files and directories that writers of ``target`` on this host left
    beside it when they were killed mid-write (their process is gone); returns what was removed.
    A live writer's, another host's and anything not named by :func:`_tmp_prefix` are left alone."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.{re.escape(_HOST)}-(\d+)\..*\.tmp")
    removed = []
    try:
        entries = [e for e in os.scandir(target.parent) if e.name.startswith(f".{target.name}.")]
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or _alive(int(match.group(1))):
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.
    What a killed earlier writer of ``path`` left is removed first (:func:`sweep_leftovers`). An OS
    error (read-only directory, disk full) is a :class:`WriteError` naming ``path``."""
    target = Path(path)
    with writing(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        sweep_leftovers(target)
        fd, tmp_name = tempfile.mkstemp(prefix=_tmp_prefix(target), suffix=".tmp", dir=target.parent)
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        with writing(target):
            yield tmp
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file ordinary permissions
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported,
    so that a process killed mid-swap never leaves the target missing where the system allows."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces ``path`` only if the block succeeds.

    An existing ``path`` stays intact until the new directory is complete; a failure inside the
    block leaves it untouched and removes the temporary directory. An OS error (read-only
    directory, disk full) is a :class:`WriteError` naming ``path``.
    """
    target = Path(path)
    with writing(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        sweep_leftovers(target)
        tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(target), suffix=".tmp", dir=target.parent))
    try:
        with writing(target):
            yield tmp
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
            old = None
            if target.exists() and _exchange(tmp, target):
                old = tmp  # the old directory, swapped out in one step
            else:
                if target.exists():  # no atomic exchange on this system: two renames
                    old = target.with_name(f".{target.name}.old-{os.getpid()}")
                    os.replace(target, old)
                os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | os.PathLike[str], payload: Any) -> Path:
    """Write ``payload`` as indented UTF-8 JSON (non-ASCII kept) to ``path``, atomically: xrec's
    one JSON writer for results (the CLI's ``--json``, benchmarks, the main job's stages)."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return Path(path)


def write_manifest(directory: str | os.PathLike[str], kind: str, format_version: int,
                   fields: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``manifest.json`` for every other file in ``directory`` (call last, inside atomic_dir)."""
    root = Path(directory)
    files = {
        p.relative_to(root).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(root.rglob("*")) if p.is_file() and p.name != MANIFEST
    }
    manifest = {"kind": kind, "format_version": format_version, **fields, "files": files}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def read_manifest(directory: str | os.PathLike[str], kind: str, format_version: int,
                  expect: Mapping[str, Any] | None = None, verify: bool = True,
                  rebuild: str = "rebuild it with this xrec") -> dict[str, Any]:
    """Read and check an artifact's manifest; raise :class:`ArtifactError` naming what is wrong.

    ``expect`` maps manifest fields (e.g. ``encoder_fingerprint``, ``dim``) to required values.
    ``verify`` recomputes every file's checksum. ``rebuild`` says how to replace an artifact of
    another format version or made for other values of ``expect``; it ends those errors.
    """
    root = Path(directory)
    path = root / MANIFEST
    if not root.is_dir():
        raise ArtifactError(f"{root}: not a directory (expected a saved {kind})")
    if not path.is_file():
        raise ArtifactError(f"{path}: missing; {root} is not a complete {kind} (interrupted write?)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: unreadable manifest ({exc})") from exc
    if manifest.get("kind") != kind:
        raise ArtifactError(f"{path}: holds a {manifest.get('kind')!r}, expected a {kind!r}")
    if manifest.get("format_version") != format_version:
        raise ArtifactError(
            f"{path}: {kind} format_version {manifest.get('format_version')!r}, this xrec reads "
            f"{format_version}; {rebuild}")
    for field, wanted in (expect or {}).items():
        if wanted is not None and manifest.get(field) != wanted:
            raise ArtifactError(
                f"{path}: field {field!r} is {manifest.get(field)!r}, expected {wanted!r}; {rebuild}")
    for name, meta in manifest.get("files", {}).items():
        file = root / name
        if not file.is_file():
            raise ArtifactError(f"{file}: listed in the manifest but missing")
        if file.stat().st_size != meta["bytes"]:
            raise ArtifactError(f"{file}: {file.stat().st_size} bytes, manifest says {meta['bytes']} (truncated?)")
        if verify and sha256_file(file) != meta["sha256"]:
            raise ArtifactError(f"{file}: checksum mismatch (corrupted)")
    return manifest


def build_once(target: Path, valid: Callable[[], dict | None], build: Callable[[Path], dict]) -> dict:
    """The manifest of the cache directory ``target``: ``valid()`` when it is complete, else built
    by ``build(tmp)`` into a temporary directory renamed into place (:func:`atomic_dir`), under a
    file lock so that concurrent processes build it once; build folders left by killed processes
    are removed first."""
    import fcntl

    manifest = valid()
    if manifest is not None:
        return manifest
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = valid()  # another process may have built it meanwhile
        if manifest is not None:
            return manifest
        _remove_stale_temps(target)
        with atomic_dir(target) as tmp:
            return build(tmp)


def _remove_stale_temps(target: Path, max_age_s: float = 3600.0) -> None:
    """Delete temporary build folders of ``target`` left behind by killed processes."""
    now = time.time()
    for tmp in target.parent.glob(f".{target.name}.*"):
        if tmp.is_dir() and now - tmp.stat().st_mtime > max_age_s:
            shutil.rmtree(tmp, ignore_errors=True)
    if target.exists() and not target.is_dir():
        target.unlink()


def check_finite(array: np.ndarray, what: str) -> np.ndarray:
    """``array`` unchanged if every value is finite, else :class:`ArtifactError` naming ``what``
    (a loaded array where NaN or infinity cannot be meant: vectors, factors, weights)."""
    if array.dtype.kind in "fc" and array.size and not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0]
        raise ArtifactError(f"{what}: {int((~np.isfinite(array)).sum())} value(s) are NaN or infinite "
                            f"(first at {tuple(int(i) for i in bad)}); refusing to use it")
    return array
