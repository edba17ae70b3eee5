"""One free-text lookup, four ways, side by side: the index alone, the encoder alone, the serving
path in-process (``Service.call``, no HTTP) and over HTTP (``xrec serve`` on loopback, keep-alive).

The index holds ``XREC_BENCH_SERVE_N`` (default 100,000) real SIB-200/Tatoeba sentences, embedded
once and cached (see ``xrec.bench.serve``; the first run embeds them, run it under ``heavy``);
queries are other sentences of the same data. Load curves come from ``xrec bench serve``.

    .venv/bin/python -m pytest benchmarks/bench_serve.py --benchmark-columns=median,iqr,rounds
"""

from __future__ import annotations

import http.client
import json
import os

import pytest

N = int(os.environ.get("XREC_BENCH_SERVE_N", 100_000))
PRECISION = os.environ.get("XREC_BENCH_PRECISION", "int8")
ROUNDS = int(os.environ.get("XREC_BENCH_ROUNDS", 300))


@pytest.fixture(scope="module")
def setup():
    from xrec.bench.serve import cached_index, default_data_dir, real_sentences
    from xrec.encoders import load_encoder
    from xrec.encoders.bundled import cache_dir
    from xrec.serve import Service
    from xrec.serve.server import ServerThread

    texts, langs, queries, _ = real_sentences(default_data_dir(), N, 1000)
    encoder = load_encoder("bundled", device="cpu", precision=PRECISION, threads=2)
    cache = cache_dir() / "bench-serve"
    cache.mkdir(parents=True, exist_ok=True)
    service = Service(cached_index(encoder, cache, texts, langs, "hnsw"), encoder=encoder)
    try:
        with ServerThread(service) as url:
            yield {"service": service, "encoder": encoder, "queries": queries, "url": url,
                   "vectors": encoder.encode(queries[:200], "query")}
    finally:
        service.close()


def _cycle(items):
    state = {"i": -1}

    def nxt():
        state["i"] = (state["i"] + 1) % len(items)
        return items[state["i"]]
    return nxt


def test_index_alone(benchmark, setup):
    benchmark.group = "serve-one-lookup"
    nxt, index = _cycle(list(setup["vectors"])), setup["service"].state.index
    benchmark.pedantic(lambda: index.search(nxt()[None, :], 10), rounds=ROUNDS, warmup_rounds=10)


def test_encoder_alone(benchmark, setup):
    benchmark.group = "serve-one-lookup"
    nxt, encoder = _cycle(setup["queries"]), setup["encoder"]
    benchmark.pedantic(lambda: encoder.encode([nxt()], "query"), rounds=ROUNDS, warmup_rounds=10)


def test_in_process(benchmark, setup):
    benchmark.group = "serve-one-lookup"
    nxt, service = _cycle(setup["queries"]), setup["service"]
    out = benchmark.pedantic(lambda: service.call("similar", {"text": nxt(), "k": 10}),
                             rounds=ROUNDS, warmup_rounds=10)
    assert len(out[0]["queries"][0]["neighbours"]) == 10


def test_http(benchmark, setup):
    benchmark.group = "serve-one-lookup"
    nxt = _cycle([json.dumps({"text": q, "k": 10}).encode() for q in setup["queries"]])
    host, port = setup["url"].removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def call():
        conn.request("POST", "/similar", body=nxt(), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, body
        return body

    try:
        body = benchmark.pedantic(call, rounds=ROUNDS, warmup_rounds=10)
    finally:
        conn.close()
    assert len(json.loads(body)["queries"][0]["neighbours"]) == 10
