"""pytest-benchmark suites of ``xrec bench retrieval``: VectorIndex kinds vs numpy exact and hnswlib.

Run: ``.venv/bin/python -m pytest benchmarks/bench_retrieval.py --benchmark-only
--benchmark-group-by=group``; sizes via ``XREC_BENCH_N`` (default 20000), ``XREC_BENCH_DIM``
(384) and ``XREC_BENCH_QUERIES`` (200). Vectors come from :mod:`xrec.bench.synthetic`
(embedding-like, see there). Each case records its recall@10 in ``extra_info``; speed goals
are read from the side-by-side numbers, never asserted.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from xrec.bench.retrieval import exact_numpy, ground_truth, recall
from xrec.bench.synthetic import embedding_like
from xrec.index import VectorIndex

N = int(os.environ.get("XREC_BENCH_N", 20_000))
DIM = int(os.environ.get("XREC_BENCH_DIM", 384))
QUERIES = int(os.environ.get("XREC_BENCH_QUERIES", 200))
K = 10
# operating points chosen for recall@10 >= 0.95 on the embedding-like vectors
KINDS = {"exact": {}, "hnsw": {"ef_search": 64}, "ivf": {"nprobe": 16}, "ivfpq": {"nprobe": 32}}


@pytest.fixture(scope="module")
def data():
    corpus, queries = embedding_like(N, DIM, QUERIES, seed=0)
    return corpus, queries, ground_truth(corpus, queries, K)


@pytest.fixture(scope="module")
def indexes(data):
    corpus = data[0]
    return {kind: VectorIndex.build(corpus, np.arange(len(corpus)), kind=kind, device="cpu",
                                    normalize=False, **knobs) for kind, knobs in KINDS.items()}


@pytest.fixture(scope="module")
def hnsw_peer(data):
    hnswlib = pytest.importorskip("hnswlib")
    corpus = data[0]
    index = hnswlib.Index(space="ip", dim=corpus.shape[1])
    index.init_index(max_elements=len(corpus), ef_construction=80, M=32)
    index.add_items(corpus, np.arange(len(corpus)))
    index.set_ef(64)
    return index


def _cycle(queries):
    """A callable returning the next single query each call."""
    state = {"i": 0}

    def nxt():
        state["i"] = (state["i"] + 1) % len(queries)
        return queries[state["i"]:state["i"] + 1]
    return nxt


@pytest.mark.benchmark(group="single-query")
def test_single_numpy_exact(benchmark, data):
    corpus, queries, truth = data
    nxt = _cycle(queries)
    benchmark(lambda: exact_numpy(corpus, nxt(), K))
    benchmark.extra_info["recall_at_10"] = recall(exact_numpy(corpus, queries, K), truth)


@pytest.mark.benchmark(group="single-query")
def test_single_hnswlib(benchmark, data, hnsw_peer):
    corpus, queries, truth = data
    nxt = _cycle(queries)
    benchmark(lambda: hnsw_peer.knn_query(nxt(), K))
    benchmark.extra_info["recall_at_10"] = recall(hnsw_peer.knn_query(queries, K)[0], truth)


@pytest.mark.benchmark(group="single-query")
@pytest.mark.parametrize("kind", list(KINDS))
def test_single_xrec(benchmark, data, indexes, kind):
    corpus, queries, truth = data
    index = indexes[kind]
    nxt = _cycle(queries)
    benchmark(lambda: index.search(nxt(), K))
    found = index.search(queries, K)[0]
    benchmark.extra_info["recall_at_10"] = r = recall(found, truth)
    assert r >= {"exact": 1.0, "ivfpq": 0.8}.get(kind, 0.9)


@pytest.mark.benchmark(group="batch")
def test_batch_numpy_exact(benchmark, data):
    corpus, queries, _ = data
    benchmark(lambda: exact_numpy(corpus, queries, K))
    benchmark.extra_info["queries"] = len(queries)


@pytest.mark.benchmark(group="batch")
@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_batch_xrec(benchmark, data, indexes, kind):
    corpus, queries, _ = data
    benchmark(lambda: indexes[kind].search(queries, K))
    benchmark.extra_info["queries"] = len(queries)


@pytest.mark.benchmark(group="batch")
def test_batch_hnswlib(benchmark, data, hnsw_peer):
    corpus, queries, _ = data
    benchmark(lambda: hnsw_peer.knn_query(queries, K))
    benchmark.extra_info["queries"] = len(queries)


@pytest.mark.benchmark(group="filtered")
def test_single_xrec_language_filter(benchmark, data):
    """Exact language filter: a quarter of the items in the wanted language."""
    corpus, queries, _ = data
    langs = [("de", "en", "fr", "es")[i % 4] for i in range(len(corpus))]
    index = VectorIndex.build(corpus, np.arange(len(corpus)), langs, kind="hnsw", normalize=False)
    nxt = _cycle(queries)
    benchmark(lambda: index.search(nxt(), K, languages=["en"]))
    ids, _ = index.search(queries, K, languages=["en"])
    assert (ids % 4 == 1).all()
