"""pytest-benchmark: top-100 for every user, hybrid ranker vs implicit's batched ``recommend`` on the
same ALS factors (MovieLens sample with the real encoder, and a synthetic catalogue).

Run: ``.venv/bin/python -m pytest benchmarks/bench_recommend.py --benchmark-only``. The synthetic
scale defaults to 20,000 x 20,000 here (``XREC_BENCH_SYNTHETIC=100000x100000`` for the full one;
``xrec bench recommend`` runs both scales side by side and prints the ratio).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from xrec.bench.recommend import make_synthetic
from xrec.catalogue.interactions import Interactions
from xrec.ranking.cf import fit_als, from_implicit
from xrec.ranking.hybrid import HybridConfig, HybridRanker

K = 100
DATA = Path(__file__).resolve().parents[1] / "data" / "movielens"


def _setups():
    scale = os.environ.get("XREC_BENCH_SYNTHETIC", "20000x20000")
    return ["movielens", f"synthetic-{scale}"]


@pytest.fixture(scope="module", params=_setups())
def setup(request):
    if request.param == "movielens":
        from xrec.catalogue.items import prepare_items
        from xrec.datasets.movielens import load_movielens
        from xrec.encoders import load_encoder
        from xrec.ranking.content import item_vectors

        ml = load_movielens(DATA)
        items = prepare_items(ml.items(), "movies")
        inter = Interactions.build(ml.ratings, items["item_id"])
        vectors = item_vectors(load_encoder("bundled", threads=2), items,
                               store=os.environ.get("XREC_BENCH_STORE"))
    else:
        n_users, n_items = (int(x) for x in request.param.split("-")[1].split("x"))
        inter, vectors = make_synthetic(n_users, n_items)
    _, model = fit_als(inter.matrix, threads=2)
    cf = from_implicit(model, name="als")
    cf.item_factors[inter.item_counts() == 0] = 0.0
    ranker = HybridRanker.fit(inter, vectors, cf=cf, cf_fit=lambda m: fit_als(m, threads=2)[0],
                              config=HybridConfig(threads=2))
    return request.param, inter, model, ranker


def test_implicit_recommend(benchmark, setup):
    name, inter, model, _ = setup
    users = np.arange(len(inter.users))
    benchmark.group = name
    ids, _ = benchmark.pedantic(model.recommend, args=(users, inter.matrix),
                                kwargs={"N": K, "filter_already_liked_items": True}, rounds=1, iterations=1)
    assert ids.shape == (len(users), K)


def test_hybrid_recommend(benchmark, setup):
    name, inter, _, ranker = setup
    users = np.arange(len(inter.users))
    benchmark.group = name

    def run():
        return [ranker.recommend_rows(users[s:s + 1024], K).ids for s in range(0, len(users), 1024)]

    out = benchmark.pedantic(run, rounds=1, iterations=1)
    assert sum(len(o) for o in out) == len(users)
