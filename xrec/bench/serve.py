"""``xrec bench serve``: latency of the whole lookup (text in, neighbours out) under load.

Items are real sentences (SIB-200 and Tatoeba, every language), embedded once as passages and
cached in an embedding store beside a saved index; queries are other sentences of the same data.
``xrec serve`` runs in its own process on loopback; a bounded asyncio load generator (HTTP/1.1
keep-alive) drives free-text ``POST /similar`` at fixed request rates (open loop, Poisson
arrivals, latency counted from each request's scheduled time) and at fixed concurrencies (closed
loop), each step stopping after ``seconds``. Every step reports p50/p99 latency, requests/s,
refusals (503), and where the time went (queue, encode, search from the server's
``Server-Timing``; overhead = the rest: HTTP, JSON, validation, the event loop). Peers in the same
run: the same path called in-process (no HTTP), and the index alone (search of ready vectors).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from xrec.artifacts import write_json
from xrec.bench.retrieval import hardware
from xrec.errors import DataError, XrecError


# ---------------------------------------------------------------------- data
def default_data_dir() -> Path:
    """``../shared/data`` beside the repository when present, else the repository's ``data/``."""
    repo = Path(__file__).resolve().parents[2]
    shared = repo.parent / "shared" / "data"
    return shared if shared.is_dir() else repo / "data"


def real_sentences(data: Path, n_items: int, n_queries: int, seed: int = 0
                   ) -> tuple[list[str], list[str], list[str], list[str]]:
    """``(item_texts, item_langs, query_texts, query_langs)``: distinct sentences of every
    SIB-200 split and of Tatoeba (both sides), shuffled; queries are sentences not among the items."""
    seen: dict[str, str] = {}
    files = sorted((data / "sib200").glob("*.jsonl.gz")) + sorted(data.glob("tatoeba*/*.jsonl.gz"))
    for path in files:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                seen.setdefault(row["text"], row["lang"])
                if "eng" in row:
                    seen.setdefault(row["eng"], "eng")
    texts = sorted(seen)
    random.Random(seed).shuffle(texts)
    if len(texts) < n_items + n_queries:
        raise DataError(f"{data}: only {len(texts)} distinct sentences, need {n_items + n_queries}")
    items, queries = texts[:n_items], texts[n_items:n_items + n_queries]
    return items, [seen[t] for t in items], queries, [seen[t] for t in queries]


def cached_index(encoder: Any, cache: Path, texts: list[str], langs: list[str], kind: str) -> Path:
    """A saved index of ``texts`` (embedded once, kept in an embedding store under ``cache``)."""
    from xrec.errors import ArtifactError
    from xrec.index import VectorIndex
    from xrec.store import embed_items

    path = cache / f"index-{len(texts)}-{kind}"
    try:
        VectorIndex.load(path, encoder_fingerprint=encoder.fingerprint)
        return path
    except ArtifactError:
        pass
    ids = list(range(len(texts)))
    vectors = embed_items(encoder, ids, texts, store=cache / f"items-{len(texts)}.parquet",
                          kind="passage", progress=sys.stderr.isatty())
    VectorIndex.build(vectors, ids, langs, kind=kind, fingerprint=encoder.fingerprint,
                      device="cpu").save(path)
    return path


# ---------------------------------------------------------------------- load generator
class _Connection:
    """One HTTP/1.1 keep-alive connection (the server answers with Content-Length)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> _Connection:
        return cls(*await asyncio.open_connection(host, port))

    async def post(self, path: str, body: bytes) -> tuple[int, dict[str, str]]:
        host = self.writer.get_extra_info("peername")[0].encode()  # the server answers only to its own names
        self.writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (path.encode(), host, len(body), body))
        line = await self.reader.readline()
        if not line:  # the server closed this keep-alive connection while it sat idle
            raise ConnectionResetError("connection closed by the server")
        status = int(line.split()[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        await self.reader.readexactly(int(headers.get("content-length", 0)))
        return status, headers

    def close(self) -> None:
        self.writer.close()


def _server_timing(header: str) -> dict[str, float]:
    out = {}
    for part in header.split(","):
        name, _, rest = part.strip().partition(";")
        if rest.startswith("dur="):
            out[name] = float(rest[4:])
        elif rest.startswith("desc="):
            out[name] = float(rest[5:].strip('"'))
    return out


class _Recorder:
    def __init__(self) -> None:
        self.latency: list[float] = []
        self.parts: list[dict[str, float]] = []
        self.refused = 0
        self.failed = 0

    def add(self, latency_ms: float, status: int, headers: dict[str, str]) -> None:
        if status == 200:
            self.latency.append(latency_ms)
            self.parts.append(_server_timing(headers.get("server-timing", "")))
        elif status == 503:
            self.refused += 1
        else:
            self.failed += 1


async def _closed_loop(host: str, port: int, bodies: list[bytes], concurrency: int,
                       seconds: float) -> tuple[_Recorder, float]:
    rec, start = _Recorder(), time.perf_counter()
    end = start + seconds
    counter = iter(range(10**9))

    async def worker() -> None:
        conn = await _Connection.open(host, port)
        try:
            while time.perf_counter() < end:
                body = bodies[next(counter) % len(bodies)]
                t0 = time.perf_counter()
                status, headers = await conn.post("/similar", body)
                rec.add((time.perf_counter() - t0) * 1e3, status, headers)
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return rec, time.perf_counter() - start


async def _open_loop(host: str, port: int, bodies: list[bytes], rate: float, seconds: float,
                     seed: int = 0, max_connections: int = 512) -> tuple[_Recorder, float]:
    rec, rng = _Recorder(), random.Random(seed)
    idle: list[_Connection] = []
    opened = 0
    start = time.perf_counter()

    async def one(scheduled: float, body: bytes) -> None:
        nonlocal opened
        if idle:
            conn = idle.pop()
        elif opened < max_connections:
            opened += 1
            conn = await _Connection.open(host, port)
        else:
            rec.failed += 1  # more requests in flight than the generator's bound: counted, dropped
            return
        try:
            status, headers = await conn.post("/similar", body)
        except ConnectionError:  # idle longer than the server keeps connections: reconnect once
            conn.close()
            conn = await _Connection.open(host, port)
            status, headers = await conn.post("/similar", body)
        rec.add((time.perf_counter() - scheduled) * 1e3, status, headers)
        idle.append(conn)

    tasks, t, i = [], 0.0, 0
    while True:
        t += rng.expovariate(rate)
        if t >= seconds:
            break
        delay = start + t - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(start + t, bodies[i % len(bodies)])))
        i += 1
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=seconds + 60)
    elapsed = time.perf_counter() - start
    for conn in idle:
        conn.close()
    return rec, elapsed


def _summary(rec: _Recorder, elapsed: float) -> dict[str, Any]:
    lat = np.asarray(rec.latency)
    out: dict[str, Any] = {"completed": len(lat), "refused_503": rec.refused, "failed": rec.failed,
                           "rps": len(lat) / elapsed if elapsed > 0 else 0.0}
    if len(lat):
        out.update(p50_ms=float(np.percentile(lat, 50)), p99_ms=float(np.percentile(lat, 99)),
                   mean_ms=float(lat.mean()))
        for part in ("queue", "encode", "search", "app"):
            values = [p.get(part, 0.0) for p in rec.parts]
            out[f"{part}_ms_mean"] = float(np.mean(values))
        overhead = lat - np.array([p.get("queue", 0) + p.get("encode", 0) + p.get("search", 0)
                                   for p in rec.parts])
        out["overhead_ms_p50"] = float(np.percentile(overhead, 50))
        out["batch_texts_mean"] = float(np.mean([p.get("batch", 1) for p in rec.parts]))
    return out


# ---------------------------------------------------------------------- peers
def _percentiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean())}


def in_process_peer(service: Any, queries: list[str], k: int = 10) -> dict[str, Any]:
    """The same path without HTTP: ``Service.call`` one request at a time, and its split."""
    lat, encode, search = [], [], []
    for text in queries:
        t0 = time.perf_counter()
        _, timing = service.call("similar", {"text": text, "k": k})
        lat.append((time.perf_counter() - t0) * 1e3)
        encode.append(timing.encode_ms)
        search.append(timing.search_ms)
    return {**_percentiles(lat), "encode_ms_p50": float(np.median(encode)),
            "search_ms_p50": float(np.median(search))}


def index_peer(index: Any, vectors: np.ndarray, k: int = 10) -> dict[str, Any]:
    """The index alone: one search per ready query vector."""
    lat = []
    for v in vectors:
        t0 = time.perf_counter()
        index.search(v[None, :], k)
        lat.append((time.perf_counter() - t0) * 1e3)
    return _percentiles(lat)


# ---------------------------------------------------------------------- driver
def run_serve_bench(json_path: str | os.PathLike[str], *, data: str | os.PathLike[str] | None = None,
                    n: int = 100_000, n_queries: int = 1000, rates: Sequence[float] = (10, 25, 50, 100, 200, 300),
                    concurrencies: Sequence[int] = (1, 4, 16, 64), seconds: float = 8.0,
                    cache: str | os.PathLike[str] | None = None, kind: str = "hnsw",
                    service_args: dict[str, Any] | None = None, k: int = 10,
                    out: TextIO | None = None) -> dict[str, Any]:
    """Run the whole benchmark; write JSON and a latency-vs-load PNG beside it; return the JSON."""
    from xrec.encoders.bundled import cache_dir
    from xrec.serve import Service

    out = out or sys.stdout
    args = dict(service_args or {})
    data_dir = Path(data) if data is not None else default_data_dir()
    cache_path = Path(cache) if cache is not None else cache_dir() / "bench-serve"
    cache_path.mkdir(parents=True, exist_ok=True)
    texts, langs, queries, _ = real_sentences(data_dir, n, n_queries)
    print(f"{len(texts)} items, {len(queries)} query sentences from {data_dir}", file=out, flush=True)

    from xrec.encoders import load_encoder

    threads = args.get("threads")
    if threads is None and int(args.get("workers") or 1) > 1:  # as the server divides the cores
        from xrec.encoders.onnx_encoder import default_threads

        threads = max(1, default_threads() // int(args["workers"]))
    encoder = load_encoder(args.get("model", "bundled"), device="cpu",
                           precision=args.get("precision", "auto"), threads=threads)
    index_dir = cached_index(encoder, cache_path, texts, langs, kind)
    # the in-process peer: one request at a time through the same encoder (one worker)
    service_kwargs = {key: v for key, v in args.items() if key not in ("model", "precision", "threads", "workers")}
    service = Service(index_dir, encoder=encoder, **service_kwargs)
    result: dict[str, Any] = {"hardware": hardware(), "n_items": len(texts), "index_kind": kind,
                              "k": k, "options": {
                                  kk: (v.__dict__ if hasattr(v, "__dict__") else v)
                                  for kk, v in args.items()}, "steps": []}
    try:
        warm = queries[:50]
        for text in warm:
            service.call("similar", {"text": text, "k": k})
        result["in_process"] = in_process_peer(service, queries[:300], k)
        query_vectors = encoder.encode(queries[:300], "query")
        result["index_alone"] = index_peer(service.state.index, query_vectors, k)
        result["encoder"] = repr(encoder)  # after the warm-up: the loaded engine, not a lazy stub
    finally:
        service.close()
    print(f"in-process p50 {result['in_process']['p50_ms']:.2f} ms (encode "
          f"{result['in_process']['encode_ms_p50']:.2f}), index alone p50 "
          f"{result['index_alone']['p50_ms']:.3f} ms", file=out, flush=True)
    del service

    bodies = [json.dumps({"text": q, "k": k}).encode() for q in queries]
    cmd = [sys.executable, "-m", "xrec.cli.main", "serve", "--index", str(index_dir), "--port", "0",
           "--model", str(args.get("model", "bundled")), "--precision", str(args.get("precision", "auto"))]
    for flag, key in (("--threads", "threads"), ("--max-batch", "max_batch"),
                      ("--max-wait-ms", "max_wait_ms"), ("--max-queue", "max_queue"), ("--workers", "workers")):
        if args.get(key) is not None:
            cmd += [flag, str(args[key])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None  # stdout=PIPE
    try:
        line = proc.stdout.readline()
        if "listening on" not in line:
            raise XrecError(f"xrec serve did not start: {line!r}")
        host, port = line.rsplit("/", 1)[1].strip().split(":")
        asyncio.run(_closed_loop(host, int(port), bodies[:50], 1, 2.0))  # warm-up
        plan = [("closed", c) for c in concurrencies] + [("open", r) for r in rates]
        for mode, level in plan:
            if mode == "closed":
                rec, elapsed = asyncio.run(_closed_loop(host, int(port), bodies, int(level), seconds))
            else:
                rec, elapsed = asyncio.run(_open_loop(host, int(port), bodies, float(level), seconds))
            step = {"mode": mode, "level": level, "seconds": elapsed, **_summary(rec, elapsed)}
            result["steps"].append(step)
            print(_row(step), file=out, flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    plot(result, write_json(json_path, result).with_suffix(".png"))
    return result


def _row(step: dict[str, Any]) -> str:
    what = f"{step['mode']} {'c=' if step['mode'] == 'closed' else 'rate='}{step['level']:g}"
    if not step["completed"]:
        return f"{what:16s} no request completed ({step['refused_503']} refused, {step['failed']} failed)"
    return (f"{what:16s} {step['rps']:7.1f} req/s  p50 {step['p50_ms']:7.2f}  p99 {step['p99_ms']:8.2f} ms  "
            f"queue {step['queue_ms_mean']:6.2f} encode {step['encode_ms_mean']:6.2f} "
            f"search {step['search_ms_mean']:5.2f} overhead p50 {step['overhead_ms_p50']:5.2f}  "
            f"batch {step['batch_texts_mean']:5.1f}  503: {step['refused_503']}")


def plot(result: dict[str, Any], path: Path) -> None:
    """p50 and p99 latency against achieved requests/s, open and closed loop, with the peers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for mode, colour in (("open", "tab:blue"), ("closed", "tab:orange")):
        steps = [s for s in result["steps"] if s["mode"] == mode and s["completed"]]
        steps.sort(key=lambda s: s["rps"])
        for stat, style in (("p50_ms", "-o"), ("p99_ms", "--^")):
            ax.plot([s["rps"] for s in steps], [s[stat] for s in steps], style, color=colour,
                    label=f"{mode} loop {stat[:3]}")
    ax.axhline(result["in_process"]["p50_ms"], color="grey", ls=":", label="in-process p50 (1 at a time)")
    ax.axhline(result["index_alone"]["p50_ms"], color="black", ls="-.", lw=0.8, label="index alone p50")
    ax.set_yscale("log")
    ax.set_xlabel("requests/s completed")
    ax.set_ylabel("latency (ms, log)")
    hw = result["hardware"]
    ax.set_title(f"xrec serve, free-text /similar, {result['n_items']:,} items ({result['index_kind']}); "
                 f"{hw['cpu']}, {hw['cores']} cores", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
