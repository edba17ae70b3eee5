"""Micro-batching: concurrent requests share one encoder call, in one or more worker threads.

Each request submits a :class:`Job` (texts to embed, then a function of their vectors, e.g. an
index search). A worker (one per encode function, each with its own encoder) takes the oldest job,
gathers more queued jobs of the same text kind until ``max_batch`` texts are collected or
``max_wait_ms`` has passed since it took the first, embeds all their texts in one call, then runs
each job's function on its rows. Under load, the jobs that arrive during one call form the next
batch, which is where throughput comes from. At most ``max_queue`` texts wait; a job beyond that is
refused with :class:`Overloaded` (HTTP 503) instead of growing the queue. A job without texts (a
lookup by ids or by user) needs no encoder: it bypasses the text queue and runs at once in a small
pool of lookup threads (at most ``max_queue`` waiting there too), so a full text queue never delays
or refuses it. Index work runs in the workers; the index is only read while serving, and FAISS
searches may run concurrently. Several single-threaded workers suit many cores better than one
worker whose encoder splits each short text over the cores (see benchmarks/README.md).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xrec.errors import DataError


class Overloaded(Exception):
    """The queue is full: the request is refused (HTTP 503) and the server stays up."""


@dataclass
class Timing:
    """Where one request's time went, in milliseconds."""

    queue_ms: float = 0.0
    encode_ms: float = 0.0
    search_ms: float = 0.0
    batch_texts: int = 0

    def header(self) -> str:
        """A ``Server-Timing`` header value."""
        return (f"queue;dur={self.queue_ms:.3f}, encode;dur={self.encode_ms:.3f}, "
                f"search;dur={self.search_ms:.3f}, batch;desc=\"{self.batch_texts}\"")


@dataclass
class Job:
    """Texts to embed (possibly none) and what to do with their vectors."""

    texts: Sequence[str]
    kind: str
    then: Callable[[np.ndarray], Any]
    future: Future = field(default_factory=Future)
    submitted: float = field(default_factory=time.perf_counter)


Encode = Callable[[list[str], str], np.ndarray]


class MicroBatcher:
    """Worker threads that embed queued texts in shared batches (see the module docstring).

    ``encode``: one function ``(texts, kind) -> vectors``, or several (one worker thread each,
    e.g. one per encoder instance). ``lookup_threads``: threads for jobs without texts."""

    def __init__(self, encode: Encode | Sequence[Encode], dim: int, *,
                 max_batch: int = 64, max_wait_ms: float = 0.0, max_queue: int = 512,
                 lookup_threads: int = 2) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise DataError("max_batch and max_queue must be >= 1, max_wait_ms >= 0")
        encoders = [encode] if callable(encode) else list(encode)
        if not encoders:
            raise DataError("MicroBatcher needs at least one encode function")
        self.dim = dim
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000.0, max_queue
        self._jobs: deque[Job] = deque()
        self._queued_texts = 0
        self._cv = threading.Condition()
        self._closed = False
        #: batches done by each worker
        self.worker_batches = [0] * len(encoders)
        self._threads = [threading.Thread(target=self._loop, args=(i, fn), name=f"xrec-serve-worker-{i}",
                                          daemon=True) for i, fn in enumerate(encoders)]
        for thread in self._threads:
            thread.start()
        self._lookups = ThreadPoolExecutor(max(1, lookup_threads), thread_name_prefix="xrec-serve-lookup")
        self._pending_lookups = 0
        #: jobs without texts answered by the lookup threads
        self.lookups = 0

    @property
    def workers(self) -> int:
        """Worker threads (each with its own encode function)."""
        return len(self._threads)

    @property
    def batches(self) -> int:
        """Batches done so far, all workers together."""
        return sum(self.worker_batches)

    @property
    def queued(self) -> int:
        """Texts waiting (jobs without texts count as one)."""
        return self._queued_texts

    def submit(self, texts: Sequence[str], kind: str, then: Callable[[np.ndarray], Any]) -> Future:
        """Queue a job; its future gives ``(then(vectors), Timing)``. :class:`Overloaded` when full."""
        job = Job(list(texts), kind, then)
        cost = max(len(job.texts), 1)
        with self._cv:
            if self._closed:
                raise Overloaded("the server is shutting down")
            if not job.texts:  # no encoder needed: never waits behind texts
                if self._pending_lookups >= self.max_queue:
                    raise Overloaded(f"{self._pending_lookups} lookups already queued (limit {self.max_queue})")
                self._pending_lookups += 1
                self._lookups.submit(self._lookup, job)
                return job.future
            if self._queued_texts + cost > self.max_queue:
                raise Overloaded(f"{self._queued_texts} texts already queued (limit {self.max_queue})")
            self._jobs.append(job)
            self._queued_texts += cost
            self._cv.notify()
        return job.future

    def close(self) -> None:
        """Stop the workers after the queued jobs are done."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)
        self._lookups.shutdown(wait=True)

    # ------------------------------------------------------------------ worker
    def _take(self) -> list[Job] | None:
        """Wait for jobs; return one batch of the same kind (None once closed and drained)."""
        with self._cv:
            while not self._jobs:
                if self._closed:
                    return None
                self._cv.wait()
            first = self._jobs.popleft()
            batch, texts = [first], len(first.texts)
            deadline = time.perf_counter() + self.max_wait
            while texts < self.max_batch:
                job = self._next_of_kind(first.kind, self.max_batch - texts)
                if job is not None:
                    batch.append(job)
                    texts += len(job.texts)
                    continue
                left = deadline - time.perf_counter()
                if left <= 0 or self._closed:
                    break
                self._cv.wait(left)
            self._queued_texts -= sum(max(len(j.texts), 1) for j in batch)
            return batch

    def _next_of_kind(self, kind: str, room: int) -> Job | None:
        for i, job in enumerate(self._jobs):
            if job.kind == kind and len(job.texts) <= room:
                del self._jobs[i]
                return job
        return None

    def _lookup(self, job: Job) -> None:
        started = time.perf_counter()
        try:
            if not job.future.cancelled():
                try:
                    result = job.then(np.zeros((0, self.dim), np.float32))
                except BaseException as exc:  # noqa: BLE001 - e.g. a RequestError for this job only
                    job.future.set_exception(exc)
                else:
                    job.future.set_result((result, Timing(queue_ms=(started - job.submitted) * 1e3,
                                                          search_ms=(time.perf_counter() - started) * 1e3)))
        finally:
            with self._cv:
                self._pending_lookups -= 1
                self.lookups += 1

    def _loop(self, worker: int, encode: Encode) -> None:
        while (batch := self._take()) is not None:
            started = time.perf_counter()
            texts = [t for job in batch for t in job.texts]
            try:
                vectors = encode(texts, batch[0].kind) if texts else np.zeros((0, self.dim), np.float32)
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
                for job in batch:
                    job.future.set_exception(exc)
                continue
            encoded = time.perf_counter()
            self.worker_batches[worker] += 1
            row = 0
            for job in batch:
                if job.future.cancelled():
                    row += len(job.texts)
                    continue
                t0 = time.perf_counter()
                try:
                    result = job.then(vectors[row:row + len(job.texts)])
                except BaseException as exc:  # noqa: BLE001 - e.g. a RequestError for this job only
                    job.future.set_exception(exc)
                else:
                    timing = Timing(queue_ms=(started - job.submitted) * 1e3,
                                    encode_ms=(encoded - started) * 1e3 if job.texts else 0.0,
                                    search_ms=(time.perf_counter() - t0) * 1e3,
                                    batch_texts=len(texts))
                    job.future.set_result((result, timing))
                row += len(job.texts)
