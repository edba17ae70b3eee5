"""``xrec bench scale``: how fitting and recommending grow with the catalogue (10k, 100k, 1M items).

Each scale is a synthetic catalogue built as ``xrec bench recommend``'s (:func:`make_synthetic`:
clustered 384-d item vectors, Zipf-like popularity, 10% cold items) with as many users as items and
``per_user`` interactions each (1M items: 10M interactions). Each scale runs in its own process, so
its peak memory is that process's maximum resident set. Measured per scale: building the data, the
hybrid ranker's fit (content graphs, ALS on a validation slice, learned fusion, final ALS), top-k for
a random sample of users (users/s), and the peak memory. Embedding is measured once on real
SIB-200 sentences with the encoder ``auto`` picks (texts/s does not depend on the catalogue's size);
the time to embed each catalogue is that rate applied to its items, marked as projected.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from xrec.artifacts import write_json

SCALES = (10_000, 100_000, 1_000_000)


def one_scale(n_items: int, *, per_user: int = 10, k: int = 10, threads: int = 2,
              sample_users: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Build, fit and time one scale in this process (see the module docstring)."""
    from xrec.bench.recommend import make_synthetic
    from xrec.ranking.hybrid import HybridConfig, HybridRanker

    t0 = time.perf_counter()
    inter, vectors = make_synthetic(n_items, n_items, per_user=per_user, seed=seed)
    data_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ranker = HybridRanker.fit(inter, vectors, config=HybridConfig(threads=threads))
    fit_s = time.perf_counter() - t0
    users = np.sort(np.random.default_rng(seed).choice(len(inter.users), min(sample_users, len(inter.users)),
                                                       replace=False))
    ranker.recommend_rows(users[:64], k)  # warm-up
    t0 = time.perf_counter()
    for start in range(0, len(users), 512):
        ranker.recommend_rows(users[start:start + 512], k)
    rec_s = time.perf_counter() - t0
    return {"items": n_items, "users": len(inter.users), "interactions": int(inter.matrix.nnz),
            "data_s": data_s, "fit_s": fit_s, "users_timed": len(users), "recommend_users_per_s": len(users) / rec_s,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "fusion": ranker.fusion.kind if ranker.fusion is not None else None}


def embedding_rate(threads: int = 2, n: int = 256, batch_size: int = 32, precision: str = "auto") -> dict[str, Any]:
    """Texts/s of the encoder at ``precision`` on ``n`` real SIB-200 sentences (the bundled sample data)."""
    from xrec.bench.encoder import round_robin, sib_sentences
    from xrec.bench.serve import default_data_dir
    from xrec.encoders import load_encoder

    texts = round_robin(sib_sentences(default_data_dir()), n)
    encoder = load_encoder("bundled", device="cpu", precision=precision, threads=threads)
    encoder.encode(texts[:batch_size], "passage", progress=False)
    t0 = time.perf_counter()
    encoder.encode(texts, "passage", batch_size=batch_size, progress=False)
    return {"path": encoder.path, "texts": len(texts), "texts_per_s": len(texts) / (time.perf_counter() - t0)}


def run_scale_bench(json_path: str | os.PathLike[str], plot_path: str | os.PathLike[str] | None = None, *,
                    scales: tuple[int, ...] = SCALES, per_user: int = 10, threads: int = 2,
                    timeout_s: float = 3600.0, precision: str = "auto", embed_texts: int = 256,
                    out=None) -> dict[str, Any]:
    """Every scale in its own process, then the table, the JSON and the log-log plot."""
    from xrec.bench.retrieval import hardware

    out = out or sys.stdout
    result: dict[str, Any] = {"hardware": hardware(), "threads": threads, "per_user": per_user, "scales": []}
    result["embedding"] = embedding_rate(threads, embed_texts, precision=precision)
    print(f"embedding ({result['embedding']['path']}): {result['embedding']['texts_per_s']:.0f} texts/s", file=out,
          flush=True)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    for n in scales:
        code = (f"import json; from xrec.bench.scale import one_scale; "
                f"print(json.dumps(one_scale({n}, per_user={per_user}, threads={threads})))")
        t0 = time.perf_counter()
        try:
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                  timeout=timeout_s)
        except subprocess.TimeoutExpired:
            row = {"items": n, "error": f"did not finish in {timeout_s:.0f} s"}
        else:
            if done.returncode == 0:
                row = json.loads(done.stdout.strip().splitlines()[-1])
            else:
                tail = (done.stderr or "").strip().splitlines()[-3:]
                row = {"items": n, "error": f"exit {done.returncode}: {' | '.join(tail)}"}
        row["wall_s"] = time.perf_counter() - t0
        row["embed_projected_s"] = n / result["embedding"]["texts_per_s"]
        result["scales"].append(row)
        print(format_row(row), file=out, flush=True)
        write_json(json_path, result)
    if plot_path is not None:
        plot(result, Path(plot_path))
    return result


def format_row(row: dict[str, Any]) -> str:
    """One line of the table."""
    if "error" in row:
        return f"{row['items']:>9,} items: {row['error']}"
    return (f"{row['items']:>9,} items {row['interactions']:>11,} interactions: data {row['data_s']:7.1f} s, "
            f"fit {row['fit_s']:7.1f} s, peak {row['peak_rss_gb']:5.2f} GB, recommend "
            f"{row['recommend_users_per_s']:7.0f} users/s, embedding (projected) {row['embed_projected_s']:8.0f} s")


def plot(result: dict[str, Any], path: Path) -> None:
    """Log-log plot of fit time, projected embedding time and peak memory against items."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["scales"] if "error" not in r]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    n = [r["items"] for r in rows]
    for key, label in (("fit_s", "hybrid fit"), ("embed_projected_s", "embedding (projected)")):
        left.loglog(n, [r[key] for r in rows], "o-", label=label)
    if n:
        left.loglog(n, [rows[0]["fit_s"] * x / n[0] for x in n], ":", color="grey", label="linear in items")
    left.set_xlabel("items (users = items)")
    left.set_ylabel("seconds")
    left.legend()
    right.loglog(n, [r["peak_rss_gb"] for r in rows], "o-", label="peak memory")
    right.axhline(24, color="red", linestyle="--", label="24 GB")
    right.set_xlabel("items (users = items)")
    right.set_ylabel("GB")
    right.legend()
    fig.suptitle(f"xrec bench scale: {result['hardware']['cpu']}, {result['threads']} threads")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
