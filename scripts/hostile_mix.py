"""The server under a bounded hostile mix on loopback: peak memory vs idle, normal p99 vs quiet.

Starts ``xrec serve`` as its own process over an index of ``--items`` real SIB-200 sentences (embedded
once, cached under ``$XREC_CACHE_DIR/hostile-mix``), then

1. idle: the server's resident memory (``VmRSS``) after a warm-up of normal requests;
2. quiet: ``--n`` normal requests (free-text ``POST /similar`` on one kept-alive connection, one
   at a time), their p50/p99;
3. hostile: the same normal requests while, for as long as they take, attackers (a process of
   their own) send oversized
   chunked bodies (64 MiB offered each), JSON nested 100,000 deep, hold ``--slow`` connections
   that never finish their headers (reopened when the server closes them), and burst
   ``--burst`` connections at once, above the server's connection cap; the server's peak memory
   is the kernel's ``VmHWM``, reset before the phase (else ``VmRSS`` sampled every 5 ms).

Writes JSON (``--json``) with both ratios: peak/idle memory and hostile/quiet p99. Everything is
bounded in count and seconds and stops by itself. Run under the CPU lock:
``flock /tmp/xrec-cpu.lock .venv/bin/python scripts/hostile_mix.py --json hostile.json``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """A process's resident memory (``VmRSS``) or its peak since the last reset (``VmHWM``)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak(pid: int) -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``) of ``pid`` (Linux; needs the right to)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def build_index(cache: Path, n: int) -> Path:
    from xrec.bench.serve import cached_index, real_sentences
    from xrec.encoders import load_encoder

    texts, langs, _, _ = real_sentences(REPO / "data", n, 0)
    return cached_index(load_encoder("bundled", device="cpu"), cache, texts, langs, "exact")


def queries(n: int) -> list[str]:
    from xrec.bench.serve import real_sentences

    return real_sentences(REPO / "data", n, 200)[2]


def start_server(index: Path, max_connections: int, pythonpath: str | None,
                 cpus: set[int] | None = None) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "xrec.cli.main", "serve", "--index", str(index), "--port", "0",
           "--threads", "1", "--max-queue", "256"]
    if pythonpath is None:  # this tree's server: its guard's settings for the run
        cmd += ["--max-connections", str(max_connections), "--header-timeout", "2", "--body-timeout", "5"]
    env = {**os.environ, "PYTHONPATH": pythonpath or str(REPO), "PYTHONUNBUFFERED": "1"}
    pin = None if cpus is None else (lambda: os.sched_setaffinity(0, cpus))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                            cwd=pythonpath or REPO,  # python -m imports from the working directory first
                            preexec_fn=pin)
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, line.split("listening on ")[1].strip()


def connect(url: str) -> http.client.HTTPConnection:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.connect()
    return conn


def normal_requests(conn: http.client.HTTPConnection, texts: list[str]) -> list[float]:
    """Latency (ms) of each free-text /similar on ``conn``, one kept-alive connection opened before
    any attack (a client connecting during a flood above the cap gets 503 + Retry-After)."""
    out = []
    for text in texts:
        body = json.dumps({"text": text, "k": 10}).encode()
        start = time.perf_counter()
        conn.request("POST", "/similar", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        out.append((time.perf_counter() - start) * 1e3)
        if response.status != 200:
            raise SystemExit(f"a normal request got {response.status}")
    return out


class Attack:
    """The hostile clients, each a thread looping until :attr:`stop` (or its own bound)."""

    def __init__(self, url: str, slow: int, burst: int, deadline: float) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.address = (host, int(port))
        self.slow, self.burst, self.deadline = slow, burst, deadline
        self.stop = threading.Event()
        self.counts = {"chunked": 0, "deep_json": 0, "slow_reopened": 0, "burst_503": 0, "burst_other": 0}
        self.threads = [threading.Thread(target=t, daemon=True) for t in
                        (self.chunked, self.chunked, self.deep_json, self.slow_headers, self.bursts)]

    def running(self) -> bool:
        return not self.stop.is_set() and time.monotonic() < self.deadline

    def connect(self, timeout: float = 5.0) -> socket.socket:
        return socket.create_connection(self.address, timeout=timeout)

    def chunked(self) -> None:
        chunk = b"[" * 65536
        frame = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        while self.running():
            with self.connect(timeout=2) as sock:
                try:
                    sock.sendall(b"POST /embed HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
                    for _ in range(1024):  # 64 MiB offered
                        sock.sendall(frame)
                except OSError:
                    pass
            self.counts["chunked"] += 1

    def deep_json(self) -> None:
        body = b'{"texts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        while self.running():
            with self.connect() as sock:
                try:
                    sock.sendall(b"POST /embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                    sock.recv(4096)
                except OSError:
                    pass
            self.counts["deep_json"] += 1
            time.sleep(0.02)

    def slow_headers(self) -> None:
        socks: list[socket.socket] = []
        while self.running():
            socks = [s for s in socks if not _closed(s)]
            while len(socks) < self.slow and self.running():
                sock = self.connect()
                sock.sendall(b"POST /similar HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                socks.append(sock)
                self.counts["slow_reopened"] += 1
            time.sleep(0.2)
        for sock in socks:
            sock.close()

    def bursts(self) -> None:
        while self.running():
            socks = []
            for _ in range(self.burst):
                try:
                    sock = self.connect()
                    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    socks.append(sock)
                except OSError:
                    break
            for sock in socks:  # every connection held open until all are answered
                try:
                    head = sock.recv(64)
                    self.counts["burst_503" if b" 503 " in head else "burst_other"] += 1
                except OSError:
                    pass
            for sock in socks:
                sock.close()
            time.sleep(0.5)

    def __enter__(self) -> Attack:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def attack_process(url: str, slow: int, burst: int, seconds: float, stop: Any, results: Any) -> None:
    """Run :class:`Attack` until ``stop`` is set (or ``seconds`` pass); put its counts on ``results``."""
    with Attack(url, slow, burst, time.monotonic() + seconds) as attack:
        stop.wait(seconds)
    results.put(attack.counts)


def _closed(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(4096) == b""  # a 408 then EOF, or EOF
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(values, 50)), 2), "p99_ms": round(float(np.percentile(values, 99)), 2),
            "n": len(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True, help="write the figures here")
    parser.add_argument("--items", type=int, default=1000, help="sentences in the index (default 1000)")
    parser.add_argument("--n", type=int, default=200, help="normal requests per phase (default 200)")
    parser.add_argument("--slow", type=int, default=200, help="slow-header connections held (default 200)")
    parser.add_argument("--burst", type=int, default=600, help="connections per burst (default 600)")
    parser.add_argument("--max-connections", type=int, default=400, help="the server's connection cap")
    parser.add_argument("--seconds", type=float, default=120, help="hard bound of the hostile phase")
    parser.add_argument("--pythonpath", help="run another tree's server (e.g. main) without the new options")
    parser.add_argument("--pin", action="store_true",
                        help="the server on CPU 0, the client and attackers on the others (separates the "
                             "server's own slowdown from the attackers' CPU use on a small machine)")
    args = parser.parse_args()
    server_cpus = None
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            parser.error("--pin needs at least two CPUs")
        server_cpus = {cpus[0]}
        os.sched_setaffinity(0, set(cpus[1:]))

    from xrec.encoders.bundled import cache_dir

    index = build_index(cache_dir() / "hostile-mix", args.items)
    texts = queries(args.items)
    proc, url = start_server(index, args.max_connections, args.pythonpath, server_cpus)
    try:
        conn = connect(url)
        normal_requests(conn, texts[:50])  # warm-up
        time.sleep(1.0)
        idle = rss_bytes(proc.pid)
        exact = reset_peak(proc.pid)
        quiet = normal_requests(conn, texts[:args.n])
        quiet_peak = rss_bytes(proc.pid, "VmHWM") if exact else None
        reset_peak(proc.pid)
        peak, samples, done = idle, [], threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                try:
                    value = rss_bytes(proc.pid)
                except OSError:
                    return
                peak = max(peak, value)
                samples.append(value)
                time.sleep(0.005)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # the attackers in a process of their own: threads beside the client would make the client
        # wait for the GIL, which a real server's clients never do
        context = multiprocessing.get_context("fork")
        stop, results = context.Event(), context.Queue()
        attacker = context.Process(target=attack_process,
                                   args=(url, args.slow, args.burst, args.seconds, stop, results))
        attacker.start()
        time.sleep(1.0)  # the attack under way before the normal requests start
        hostile = normal_requests(conn, texts[:args.n])
        stop.set()
        counts = results.get(timeout=120)
        attacker.join(timeout=30)
        conn.close()
        done.set()
        sampler.join()
        if exact:  # the kernel's own peak: no spike between two samples is missed
            peak = max(peak, rss_bytes(proc.pid, "VmHWM"))
        alive = proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    result = {
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "server": "this tree" if args.pythonpath is None else args.pythonpath,
        "items": args.items, "max_connections": args.max_connections, "slow_connections": args.slow,
        "burst": args.burst, "pinned": args.pin,
        "idle_rss_mib": round(idle / 2**20, 1), "peak_rss_mib": round(peak / 2**20, 1),
        "quiet_peak_rss_mib": None if quiet_peak is None else round(quiet_peak / 2**20, 1),
        "peak_from": "VmHWM (kernel peak, reset before the phase)" if exact else "VmRSS sampled every 5 ms",
        "peak_over_idle": round(peak / idle, 3), "quiet": percentiles(quiet), "hostile": percentiles(hostile),
        "p99_hostile_over_quiet": round(float(np.percentile(hostile, 99) / np.percentile(quiet, 99)), 3),
        "attack": counts, "server_alive_after": alive,
    }
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
