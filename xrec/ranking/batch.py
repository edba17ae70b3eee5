"""Streamed batch recommendation with bounded memory and resumable, atomic parquet output.

Users are scored ``batch_size`` at a time. Each finished batch is written atomically as
``<out>.parts/part-NNNNNN.parquet`` next to a ``job.json`` that pins the run (k, batch size, a
hash of the user list and of the ranker). When every part exists they are streamed into ``out``
(one parquet file written under a temporary name and renamed into place) and the parts folder is
removed. A killed run leaves only complete parts behind; running the same job again skips them.
A parts folder from a different job is refused rather than mixed in, unless ``restart=True``
(CLI: ``--restart``) discards it; one without finished batches (a run that failed in its first
batch, e.g. on a bad filter) never blocks a corrected run, and a run that fails before its first
batch is written removes the folder it made.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from xrec.artifacts import atomic_file, write_json
from xrec.errors import ArtifactError, DataError

log = logging.getLogger(__name__)

JOB = "job.json"


def parts_dir(out: str | os.PathLike[str]) -> Path:
    """Where the finished batches of ``out`` are kept until the run completes."""
    out = Path(out)
    return out.with_name(out.name + ".parts")


def _job(ranker, user_ids: pl.Series, k: int | None, batch_size: int) -> dict:
    digest = hashlib.sha256()
    digest.update(str(user_ids.dtype).encode())
    for chunk in user_ids.cast(pl.String).to_list():
        digest.update(chunk.encode() + b"\0")
    return {"k": k, "batch_size": batch_size, "users": len(user_ids), "users_sha256": digest.hexdigest(),
            "ranker": getattr(ranker, "fingerprint", None)}


def recommend_to_parquet(ranker, user_ids: Sequence | pl.Series, k: int, out: str | os.PathLike[str], *,
                         batch_size: int = 1024, progress: bool | None = None, restart: bool = False,
                         stop_after: int | None = None, explain: int = 0, **filters) -> Path | None:
    """Write ``ranker.recommend(batch, k)`` for all ``user_ids`` to ``out`` (parquet), resumably.

    ``ranker`` is anything with ``recommend(user_ids, k) -> polars.DataFrame`` (e.g.
    :class:`~xrec.ranking.HybridRanker`). Parts of an interrupted run of the same job are
    reused; those of another job (other users, k, batch size or model) are an error, or discarded
    with ``restart=True``. ``stop_after`` stops after that many new batches (for tests of
    resumption); returns ``out`` when complete, ``None`` when stopped early. ``explain=n`` adds
    explanation columns (:meth:`~xrec.ranking.HybridRanker.explain`); ``filters``
    (``languages``, ``exclude_languages``, ``language_policy``) go to ``recommend``.
    """
    filters = {n: v for n, v in filters.items() if v is not None and v != "any"}
    ids = pl.Series("user_id", user_ids)
    job = _job(ranker, ids, k, batch_size)
    if explain:
        job["explain"] = explain
    if filters:
        job["filters"] = filters
    extra = {**({"explain": explain} if explain else {}), **filters}

    def score(batch: pl.Series) -> pl.DataFrame:
        return ranker.recommend(batch, k, **extra)

    return write_batches(score, ids, out, job, batch_size=batch_size, progress=progress, restart=restart,
                         stop_after=stop_after, title=f"recommend top-{k} for {len(ids)} users")


def rerank_to_parquet(ranker, candidates: pl.DataFrame, k: int | None, out: str | os.PathLike[str], *,
                      batch_size: int = 1024, on_unknown: str = "drop", upstream_weight: float = 0.0,
                      exclude_seen: bool = True, explain: int = 0, progress: bool | None = None,
                      restart: bool = False, stop_after: int | None = None, **filters) -> Path | None:
    """Write ``ranker.rerank`` of ``candidates`` (``user_id, item_id[, score]``) to ``out``, by
    batches of users (in order of first appearance), resumably and atomically like
    :func:`recommend_to_parquet`. The candidates are checked as a whole before the first batch
    (:func:`~xrec.ranking.rerank.prepare_candidates`: an ``on_unknown="error"`` run fails before
    writing anything); the job pins a hash of the candidates and every setting. ``filters``
    (``languages``, ``exclude_languages``, ``language_policy``) go to ``rerank``."""
    filters = {n: v for n, v in filters.items() if v is not None and v != "any"}
    from xrec.ranking.rerank import prepare_candidates

    _, report = prepare_candidates(ranker, None, candidates, on_unknown=on_unknown, exclude_seen=exclude_seen)
    log.info("rerank: %s", report.summary())
    ids = candidates["user_id"].unique(maintain_order=True).alias("user_id")
    job = _job(ranker, ids, k, batch_size)
    job.update({"candidates_sha256": _frame_digest(candidates), "on_unknown": on_unknown,
                "upstream_weight": upstream_weight, "exclude_seen": exclude_seen, "explain": explain,
                **({"filters": filters} if filters else {})})

    def score(batch: pl.Series) -> pl.DataFrame:
        part = candidates.filter(pl.col("user_id").is_in(batch.implode()))
        return ranker.rerank(batch, part, k, on_unknown="drop", exclude_seen=exclude_seen,
                             upstream_weight=upstream_weight, explain=explain, **filters)

    return write_batches(score, ids, out, job, batch_size=batch_size, progress=progress, restart=restart,
                         stop_after=stop_after, title=f"rerank candidates of {len(ids)} users")


def _frame_digest(frame: pl.DataFrame) -> str:
    digest = hashlib.sha256(str(frame.schema).encode())
    digest.update(frame.hash_rows(seed=0).to_numpy().tobytes())
    return digest.hexdigest()


def write_batches(score, user_ids: pl.Series, out: str | os.PathLike[str], job: dict, *, batch_size: int = 1024,
                  progress: bool | None = None, restart: bool = False, stop_after: int | None = None,
                  title: str = "batches") -> Path | None:
    """Write ``score(batch of user ids) -> frame`` for every batch to ``out`` (module docstring):
    parts pinned by ``job``, resumable, concatenated atomically."""
    if batch_size < 1:
        raise DataError(f"batch_size={batch_size}: must be at least 1")
    ids = user_ids
    if ids.is_duplicated().any():
        raise DataError(f"users: duplicate user_id {ids.filter(ids.is_duplicated())[0]!r}")
    out = Path(out)
    parts = parts_dir(out)
    if parts.exists():
        try:
            old = json.loads((parts / JOB).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = None
        done = sorted(parts.glob("part-*.parquet"))
        if old != job and done and not restart:
            raise ArtifactError(f"{parts}: {len(done)} finished batch(es) of a different run (other users, k, "
                                f"batch size, filters or model); rerun with --restart (restart=True) or delete "
                                f"{parts} to discard them")
        if old != job:
            if done:
                log.warning("%s: discarding the parts of a different run (--restart)", parts)
            shutil.rmtree(parts)  # a folder without finished batches holds nothing to keep
    created = not parts.exists()
    if created:
        parts.mkdir(parents=True)
        write_json(parts / JOB, job)
    n_batches = (len(ids) + batch_size - 1) // batch_size
    names = [parts / f"part-{b:06d}.parquet" for b in range(n_batches)]
    todo = [b for b in range(n_batches) if not names[b].is_file()]
    if len(todo) < n_batches:
        log.info("resuming: %d of %d batches already done", n_batches - len(todo), n_batches)
    done_now = 0
    from xrec.progress import Progress

    try:
        with Progress(n_batches, title, "batches", initial=n_batches - len(todo), show=progress) as bar:
            for b in todo:
                if stop_after is not None and done_now >= stop_after:
                    return None
                frame = score(ids[b * batch_size:(b + 1) * batch_size])
                with atomic_file(names[b]) as tmp:
                    frame.write_parquet(tmp)
                done_now += 1
                bar.update(1)
    except BaseException:
        if created and done_now == 0:  # e.g. a filter refused in the first batch: leave nothing behind
            shutil.rmtree(parts, ignore_errors=True)
        raise
    _concat(names, out)
    shutil.rmtree(parts, ignore_errors=True)
    return out


def _concat(names: list[Path], out: Path) -> None:
    """Stream the parts into one parquet file, atomically (one part in memory at a time)."""
    with atomic_file(out) as tmp:
        writer = None
        try:
            for name in names:
                table = pq.read_table(name)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table.cast(writer.schema))
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            pl.DataFrame(schema={"user_id": pl.Int64, "rank": pl.Int32, "item_id": pl.Int64,
                                 "score": pl.Float32}).write_parquet(tmp)


def read_users(path: str | os.PathLike[str]) -> pl.Series:
    """User ids from a table with a ``user_id`` column (parquet, CSV, JSONL) or a plain text list
    (``.txt``: one id per line, optionally after a ``user_id`` header line; blank lines skipped).
    Ids that all read as integers become integers."""
    from xrec.catalogue.tables import locate, read_lines, read_table

    file = Path(path)
    if file.suffix.lower() == ".txt":
        lines = read_lines(file)
        if lines and lines[0].lower() == "user_id":
            lines = lines[1:]
        from xrec.catalogue.ids import integer_ids
        from xrec.catalogue.tables import check_id_column

        frame = pl.DataFrame({"user_id": pl.Series(lines, dtype=pl.String)})
        check_id_column(frame, "user_id", str(file))
        return integer_ids(frame["user_id"])
    frame = read_table(file, required=["user_id"])
    if frame["user_id"].null_count():
        raise DataError(f"{file}: {locate(file, int(frame['user_id'].is_null().arg_true()[0]))}: "
                        "user_id is null")
    return frame["user_id"].unique(maintain_order=True)

