"""``xrec bench recommend``: top-k for every user, the hybrid ranker against implicit's own batched
``recommend`` on the same ALS factors, side by side in one process.

Two scales: MovieLens (real ratings, real item texts through the encoder, learned fusion) and a
synthetic catalogue (``USERSxITEMS``, default 100,000 x 100,000). The synthetic data: item vectors
are 384-d points around 256 random unit centroids (cosine ~0.7 to their centroid), 10% of the items
are cold (never interacted with); each user has ~20 interactions, half drawn from the warm items
by a Zipf-like popularity, half from one favourite cluster; timestamps are uniform. Both rankers
learn their fusion on a time-cut validation slice. Only recommendation is timed (model fitting and
fusion learning are not); the hybrid's time includes its per-item component scores.
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np
import polars as pl

from xrec.catalogue.interactions import Interactions
from xrec.ranking.cf import fit_als, from_implicit
from xrec.ranking.content_graphs import ContentGraphs
from xrec.ranking.hybrid import HybridConfig, HybridRanker


def make_synthetic(n_users: int, n_items: int, *, dim: int = 384, per_user: int = 20, clusters: int = 256,
              cold_fraction: float = 0.1, seed: int = 0) -> tuple[Interactions, np.ndarray]:
    """Synthetic interactions and item vectors, as described in the module docstring."""
    rng = np.random.default_rng(seed)
    centroids = rng.standard_normal((clusters, dim)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    cluster = rng.integers(clusters, size=n_items)
    vectors = centroids[cluster] + rng.standard_normal((n_items, dim)).astype(np.float32) / np.sqrt(dim)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    warm = rng.permutation(n_items)[: int(n_items * (1 - cold_fraction))]
    popularity = 1.0 / (np.arange(len(warm)) + 10.0) ** 0.8
    popularity /= popularity.sum()
    n = n_users * per_user
    users = np.repeat(np.arange(n_users), per_user)
    half = rng.random(n) < 0.5
    items = np.empty(n, dtype=np.int64)
    items[half] = warm[rng.choice(len(warm), size=int(half.sum()), p=popularity)]
    by_cluster = warm[np.argsort(cluster[warm], kind="stable")]
    starts = np.searchsorted(cluster[by_cluster], np.arange(clusters + 1))
    fav = rng.integers(clusters, size=n_users)[users[~half]]
    size = np.maximum(starts[fav + 1] - starts[fav], 1)
    items[~half] = by_cluster[np.minimum(starts[fav] + (rng.random(len(fav)) * size).astype(np.int64),
                                         len(by_cluster) - 1)]
    frame = pl.DataFrame({"user_id": users, "item_id": items,
                          "timestamp": rng.integers(1_500_000_000, 1_600_000_000, size=n)})
    inter = Interactions.build(frame, np.arange(n_items), duplicates="sum")
    return inter, vectors


def compare(inter: Interactions, vectors: np.ndarray, k: int, threads: int, *, learned: bool = True,
            batch_size: int = 1024, sample_users: int | None = None, repeats: int = 3,
            seed: int = 0) -> dict:
    """Time implicit's batched recommend and the hybrid ranker on the same ALS factors.

    ``sample_users``: time both on the same random sample of users (throughput in users/s stays
    comparable; used where timing every user would take too long on a small machine). Each is
    timed ``repeats`` times, interleaved, and the fastest run of each is reported."""
    def cf_fit(m):
        return fit_als(m, threads=threads)[0]

    t0 = time.perf_counter()
    _, model = fit_als(inter.matrix, threads=threads)
    fit_s = time.perf_counter() - t0
    config = HybridConfig(threads=threads)
    cf = from_implicit(model, name="als")
    cf.item_factors[inter.item_counts() == 0] = 0.0
    t0 = time.perf_counter()
    if learned:
        ranker = HybridRanker.fit(inter, vectors, cf=cf, cf_fit=cf_fit, config=config)
    else:
        ranker = HybridRanker(inter, vectors, cf, ContentGraphs.build(vectors), None, config)
    build_s = time.perf_counter() - t0
    users = np.arange(len(inter.users))
    if sample_users is not None and sample_users < len(users):
        users = np.sort(np.random.default_rng(seed).choice(len(users), sample_users, replace=False))
    n_users = len(users)
    matrix = inter.matrix.tocsr()

    implicit_s = hybrid_s = float("inf")
    out = np.empty((n_users, k), dtype=np.int64)
    ids = np.empty((0, k), dtype=np.int64)  # implicit's lists (repeats >= 1 fills them)
    for _ in range(repeats):  # interleaved; the best of each counts (the machine may be shared)
        t0 = time.perf_counter()
        ids, _ = model.recommend(users, matrix[users], N=k, filter_already_liked_items=True)
        implicit_s = min(implicit_s, time.perf_counter() - t0)
        t0 = time.perf_counter()
        for start in range(0, n_users, batch_size):
            out[start:start + batch_size] = ranker.recommend_rows(users[start:start + batch_size], k).ids
        hybrid_s = min(hybrid_s, time.perf_counter() - t0)
    overlap = float(np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(ids[:1000], out[:1000])]))
    return {"users": len(inter.users), "users_timed": n_users, "items": len(inter.items),
            "interactions": int(inter.matrix.nnz),
            "k": k, "als_factors": int(model.factors), "fusion": ranker.fusion.kind,
            "fused_dims": int(ranker.folded.query.shape[1]), "graph_nnz": int(ranker.folded.graph.nnz),
            "als_fit_s": fit_s, "hybrid_build_s": build_s,
            "repeats": repeats, "implicit_s": implicit_s, "hybrid_s": hybrid_s,
            "implicit_users_per_s": n_users / implicit_s, "hybrid_users_per_s": n_users / hybrid_s,
            "throughput_ratio": implicit_s / hybrid_s, "top_k_overlap_with_implicit": overlap}


#: Users timed in the synthetic run by default.
DEFAULT_SAMPLE_USERS = 5000


def run_recommend_bench(data: str | None = "data/movielens", synthetic: str | None = "100000x100000", *,
                        k: int = 100, threads: int = 2, encoder_name: str = "bundled", store: str | None = None,
                        sample_users: int | None = DEFAULT_SAMPLE_USERS) -> dict:
    """Both scales side by side; returns a JSON-able dict with the hardware.

    The synthetic run times both sides on ``sample_users`` random users (``None``: all of them,
    three times each, which takes long at 100,000 users); users/s does not depend on the sample.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))
    results: dict = {"hardware": {"cpu": platform.processor() or platform.machine(),
                                  "cores": os.cpu_count(), "threads": threads}, "runs": {}}
    if data:
        from xrec.catalogue.items import prepare_items
        from xrec.datasets.movielens import load_movielens
        from xrec.encoders import load_encoder
        from xrec.ranking.content import item_vectors

        ml = load_movielens(data)
        items = prepare_items(ml.items(), "movies")
        inter = Interactions.build(ml.ratings, items["item_id"])
        vectors = item_vectors(load_encoder(encoder_name, threads=threads), items, store=store)
        results["runs"]["movielens"] = compare(inter, vectors, k, threads)
    if synthetic:
        n_users, n_items = (int(x) for x in synthetic.lower().split("x"))
        inter, vectors = make_synthetic(n_users, n_items)
        results["runs"][f"synthetic {n_users}x{n_items}"] = compare(
            inter, vectors, k, threads, sample_users=sample_users)
    return results




def format_results(results: dict) -> str:
    """A table: users/s of implicit and of the hybrid, and their ratio."""
    hw = results["hardware"]
    lines = [f"hardware: {hw['cpu']}, {hw['cores']} cores, {hw['threads']} threads",
             f"{'run':<28}{'timed':>8}{'items':>8}{'k':>5}{'implicit u/s':>14}{'hybrid u/s':>12}{'ratio':>8}"]
    for name, r in results["runs"].items():
        lines.append(f"{name:<28}{r['users_timed']:>8}{r['items']:>8}{r['k']:>5}{r['implicit_users_per_s']:>14.0f}"
                     f"{r['hybrid_users_per_s']:>12.0f}{r['throughput_ratio']:>8.2f}")
    return "\n".join(lines)
