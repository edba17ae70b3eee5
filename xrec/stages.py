"""Cached pipeline stages: a stage's output directory is reused while its inputs are unchanged.

A stage is identified by a *key*: a JSON-able mapping of everything its output depends on (config
knobs, digests of input files, the encoder fingerprint, the keys of upstream stages). The output
directory is written atomically with a manifest recording the key's digest; a later run with the
same key reuses it, a different key (or a missing, half-written or corrupted directory) rebuilds it.
A crash in a late stage leaves the earlier stages' directories intact for the next run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xrec.artifacts import atomic_dir, read_manifest, sha256_file, write_manifest
from xrec.errors import ArtifactError

FORMAT_VERSION = 2
KIND = "xrec.stage"
log = logging.getLogger(__name__)


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's content (inputs are keyed by content, not by name or mtime)."""
    return sha256_file(Path(path))


def key_digest(key: Mapping[str, Any]) -> str:
    """Stable digest of a stage key."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class StageRunner:
    """Runs stages under ``root``, each in ``root/<name>``, reusing outputs whose key is unchanged."""

    root: Path
    #: ``(name, seconds, reused)`` for every stage run so far, in order (``reused`` is None for
    #: steps timed with :meth:`timed`).
    timings: list[tuple[str, float, bool | None]] = field(default_factory=list)

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Time a step that is not a cached stage (loading inputs, embedding) for the timings."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings.append((name, time.perf_counter() - start, None))

    def run(self, name: str, key: Mapping[str, Any], build: Callable[[Path], Mapping[str, Any] | None]
            ) -> tuple[Path, dict[str, Any]]:
        """Return ``(directory, summary)`` of stage ``name``, building it with ``build(tmp_dir)`` if needed.

        ``build`` writes its files into the directory it is given and returns a small JSON-able
        summary (counts, metrics) that is stored in the manifest and returned on reuse.
        """
        directory = Path(self.root) / name
        digest = key_digest(key)
        start = time.perf_counter()
        try:
            manifest = read_manifest(directory, KIND, FORMAT_VERSION, expect={"key": digest})
        except ArtifactError as reason:
            if directory.exists():
                log.info("stage %s: rebuilding (%s)", name, reason)
        else:
            self.timings.append((name, time.perf_counter() - start, True))
            return directory, manifest.get("summary", {})
        from xrec.progress import phase

        log.info("stage %s: running", name)
        with atomic_dir(directory) as tmp, phase(f"stage {name}"):
            summary = dict(build(tmp) or {})
            write_manifest(tmp, KIND, FORMAT_VERSION, {"stage": name, "key": digest, "summary": summary,
                                                       "inputs": json.loads(json.dumps(key, default=str))})
        self.timings.append((name, time.perf_counter() - start, False))
        return directory, summary
