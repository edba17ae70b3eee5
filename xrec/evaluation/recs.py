"""Offline evaluation of recommenders on ratings, side by side, under one pinned protocol.

Protocol (printed with the results and stored under ``"protocol"`` in the JSON):

* Split: with a test file, it is the test set and all of DIR's ratings train; otherwise the
  last 20% of each user's ratings by ``(timestamp, item_id)`` (ceil, at least one) are held out.
  Item texts use only training-time tags (tags of held-out pairs or at/after the user's first
  held-out rating are dropped).
* Positives: every rated test item (variant: rating >= 4.0 only), except items the user already
  rated in training. Full ranking over every catalogue item the user has not rated in training.
* Metrics, averaged over users with a positive: Recall@10, Recall@20 (hits / positives),
  NDCG@10 (binary gains), MAP@10 (normalised by min(positives, 10)); coverage@10 = distinct
  items in all top-10 lists / catalogue size.
* Cold items = items without training interactions. Cold Recall@20 per user over their cold
  positives; cold-item AUC (LightFM paper): per user, each cold positive against all other cold
  items, averaged over users with a cold positive.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from xrec.errors import DataError
from xrec.progress import track
from xrec.ranking.interactions import Interactions, temporal_split, validate_interactions

log = logging.getLogger(__name__)

MODELS = ("popularity", "als", "bpr", "lightfm", "lightfm_content", "content", "hybrid")
LIKED = 4.0


class Scorer:
    """What evaluation needs of a model: top-k unseen items and scores of given items."""

    def topk(self, rows: np.ndarray, k: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def score_items(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


class DenseScorer(Scorer):
    """A model given as a function of user rows -> dense ``[b, n_items]`` scores."""

    def __init__(self, dense: Callable[[np.ndarray], np.ndarray], history: sp.csr_matrix):
        self.dense = dense
        self.history = history.tocsr()

    def topk(self, rows: np.ndarray, k: int) -> np.ndarray:
        s = np.array(self.dense(rows), dtype=np.float32, copy=True)
        s[self.history[rows].nonzero()] = -np.inf
        k = min(k, s.shape[1])
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, part, 1), axis=1, kind="stable")
        top = np.take_along_axis(part, order, 1)
        top[~np.isfinite(np.take_along_axis(s, top, 1))] = -1
        return top

    def score_items(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.take_along_axis(self.dense(rows), items, 1)


class RankerScorer(Scorer):
    """Adapter for :class:`xrec.ranking.hybrid.HybridRanker`."""

    def __init__(self, ranker):
        self.ranker = ranker

    def topk(self, rows: np.ndarray, k: int) -> np.ndarray:
        return self.ranker.recommend_rows(rows, k, components=False).items

    def score_items(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.ranker.score_items(rows, items)


@dataclass
class Split:
    """Catalogue, training interactions and test ratings of one evaluation run."""

    items: pl.DataFrame  #: item_id, text (training-time tags only)
    train: Interactions
    test: pl.DataFrame  #: user_id, item_id, weight[, timestamp]
    info: dict


def movielens_split(data_dir: str | os.PathLike[str], test_file: str | os.PathLike[str] | None = None,
                    *, fraction: float = 0.2, drop_unknown: bool = False) -> Split:
    """Build the protocol's split from a MovieLens-layout directory (and optional test file)."""
    from xrec.datasets.movielens import load_movielens, read_ratings

    ml = load_movielens(data_dir)
    item_ids = ml.movies["item_id"]
    ratings, report = validate_interactions(ml.ratings, f"{data_dir}/ratings", item_ids=item_ids,
                                            drop_unknown=drop_unknown)
    if test_file is None:
        train, test = temporal_split(ratings, fraction, source=f"{data_dir}/ratings")
        split = f"last {fraction:.0%} of each user's ratings by time held out (ceil, at least 1)"
    else:
        train = ratings
        test, _ = validate_interactions(read_ratings(test_file), str(test_file), item_ids=item_ids,
                                        drop_unknown=drop_unknown)
        split = f"test ratings from {test_file}; all of {data_dir} trains"
    cut = test.group_by("user_id").agg(pl.col("timestamp").min().alias("__cut")) \
        if "timestamp" in test.columns else None
    tags = ml.tags
    if cut is not None:
        tags = tags.join(cut, on="user_id", how="left").filter(
            pl.col("__cut").is_null() | (pl.col("timestamp") < pl.col("__cut"))).drop("__cut")
    tags = tags.join(test.select("user_id", "item_id"), on=["user_id", "item_id"], how="anti")
    inter = Interactions.build(train, item_ids, source=f"{data_dir}/ratings")
    info = {"data": str(data_dir), "split": split, "train_ratings": train.height,
            "test_ratings": test.height, "users": len(inter.users), "items": len(item_ids),
            "tags_used": tags.height, "unknown_rows_dropped": report.dropped}
    return Split(ml.items(tags), inter, test, info)


def positives(split: Split, min_rating: float | None = None) -> tuple[np.ndarray, list[np.ndarray], dict]:
    """Users (train rows) with test positives, their positive item indices, and counts."""
    test = split.test if min_rating is None else split.test.filter(pl.col("weight") >= min_rating)
    rows = split.train.users.index(test["user_id"])
    cols = split.train.items.index(test["item_id"])
    cold_users = int(pl.Series(rows < 0).sum())
    keep = rows >= 0
    rows, cols = rows[keep], cols[keep]
    seen = np.asarray(split.train.matrix[rows, cols]).ravel() != 0
    rows, cols = rows[~seen], cols[~seen]
    order = np.lexsort((cols, rows))
    rows, cols = rows[order], cols[order]
    users, starts = np.unique(rows, return_index=True)
    pos = np.split(cols, starts[1:]) if len(rows) else []
    return users, pos, {"test_rows_of_users_unknown_in_training": cold_users,
                        "test_rows_already_rated_in_training": int(seen.sum())}


def evaluate_scorer(scorer: Scorer, split: Split, users: np.ndarray, pos: list[np.ndarray],
                    batch: int = 256) -> dict:
    """The protocol's metrics for one model."""
    n_items = len(split.train.items)
    cold = split.train.item_counts() == 0
    cold_items = np.flatnonzero(cold)
    r10, r20, ndcg, ap, top10 = [], [], [], [], []
    cold_r20, cold_auc, n_cold = [], [], 0
    disc = 1.0 / np.log2(np.arange(2, 12))
    for start in range(0, len(users), batch):
        rows = users[start:start + batch]
        top = scorer.topk(rows, 20)
        cold_rows = [j for j, row in enumerate(rows) if cold[pos[start + j]].any()]
        cold_scores = (scorer.score_items(rows[cold_rows], np.broadcast_to(
            cold_items, (len(cold_rows), len(cold_items))).copy()) if cold_rows and len(cold_items) else None)
        for j, row in enumerate(rows):
            p = pos[start + j]
            hit = np.isin(top[j], p)
            r10.append(hit[:10].sum() / len(p))
            r20.append(hit.sum() / len(p))
            idcg = disc[:min(len(p), 10)].sum()
            ndcg.append((hit[:10] * disc).sum() / idcg)
            prec = np.cumsum(hit[:10]) / np.arange(1, 11)
            ap.append((prec * hit[:10]).sum() / min(len(p), 10))
            top10.append(top[j, :10])
            pc = p[cold[p]]
            if len(pc):
                n_cold += len(pc)
                cold_r20.append(np.isin(top[j], pc).sum() / len(pc))
                s = cold_scores[cold_rows.index(j)]
                is_pos = np.isin(cold_items, pc)
                neg = np.sort(s[~is_pos])
                if len(neg):
                    lo = np.searchsorted(neg, s[is_pos], side="left")
                    hi = np.searchsorted(neg, s[is_pos], side="right")
                    cold_auc.append(float(np.mean((lo + 0.5 * (hi - lo)) / len(neg))))
    shown = np.concatenate(top10) if top10 else np.zeros(0, dtype=np.int64)
    mean = lambda v: float(np.mean(v)) if len(v) else float("nan")  # noqa: E731
    return {"recall@10": mean(r10), "recall@20": mean(r20), "ndcg@10": mean(ndcg), "map@10": mean(ap),
            "coverage@10": float(len(np.unique(shown[shown >= 0])) / n_items),
            "cold_items": {"n": int(n_cold), "users": len(cold_r20), "recall@20": mean(cold_r20),
                           "auc": mean(cold_auc)}}


# ---------------------------------------------------------------------------- the full run
def build_models(split: Split, vectors: np.ndarray, names: Sequence[str] = MODELS, *,
                 threads: int = 2, seed: int = 0) -> dict[str, Scorer]:
    """Fit every named model on ``split.train`` (content from ``vectors``, catalogue order)."""
    from xrec.ranking.cf import fit_als, fit_bpr, fit_lightfm
    from xrec.ranking.hybrid import HybridRanker
    from xrec.ranking.profiles import history_weights, user_profiles

    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise DataError(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    train = split.train
    hist = train.matrix
    out: dict[str, Scorer] = {}
    for name in track(names, "fit models", "models"):
        t0 = time.perf_counter()
        if name == "popularity":
            pop = np.log1p(train.item_counts()).astype(np.float32)
            out[name] = DenseScorer(lambda r, p=pop: np.broadcast_to(p, (len(r), len(p))), hist)
        elif name == "als":
            out[name] = DenseScorer(fit_als(hist, threads=threads, seed=seed)[0].scores, hist)
        elif name == "bpr":
            out[name] = DenseScorer(fit_bpr(hist, threads=threads, seed=seed)[0].scores, hist)
        elif name == "lightfm":
            out[name] = DenseScorer(fit_lightfm(hist, threads=threads, seed=seed)[0].scores, hist)
        elif name == "lightfm_content":
            model = fit_lightfm(hist, item_vectors=vectors, threads=threads, seed=seed)[0]
            out[name] = DenseScorer(model.scores, hist)
        elif name == "content":
            ts = train.timestamp_matrix() if train.has_timestamps else None
            prof = user_profiles(history_weights(hist, ts), vectors)
            out[name] = DenseScorer(lambda r, p=prof: p[r] @ vectors.T, hist)
        elif name == "hybrid":
            out[name] = RankerScorer(HybridRanker.fit(train, vectors))
        log.info("fitted %s in %.1fs", name, time.perf_counter() - t0)
    return out


def evaluate_recs(split: Split, vectors: np.ndarray, names: Sequence[str] = MODELS, *,
                  threads: int = 2, seed: int = 0, progress: bool = False) -> dict:
    """Fit and evaluate ``names`` side by side; returns the JSON report."""
    models = build_models(split, vectors, names, threads=threads, seed=seed)
    variants = {"all": None, f"rating>={LIKED}": LIKED}
    report: dict = {"protocol": protocol(split), "models": {}, "variants": {}}
    for variant, threshold in variants.items():
        users, pos, counts = positives(split, threshold)
        results = {name: evaluate_scorer(scorer, split, users, pos)
                   for name, scorer in track(models.items(), f"evaluate {variant}", "models", show=progress)}
        entry = {"users": len(users), "positives": int(sum(len(p) for p in pos)), **counts, "models": results}
        if threshold is None:
            report["models"] = results
            report["protocol"].update({"users_evaluated": len(users), "positives": entry["positives"], **counts})
        else:
            report["variants"][variant] = entry
    best_other = max((m["ndcg@10"] for n, m in report["models"].items() if n != "hybrid"), default=float("nan"))
    if "hybrid" in report["models"] and best_other > 0:
        report["hybrid_vs_best_other_ndcg@10"] = report["models"]["hybrid"]["ndcg@10"] / best_other
    return report


def protocol(split: Split) -> dict:
    """The pinned protocol, as stored in the report."""
    return {**split.info,
            "positives": "every rated test item not rated by the user in training; variant rating >= 4.0",
            "ranking": "full ranking over all catalogue items the user has not rated in training",
            "metrics": ["recall@10", "recall@20", "ndcg@10", "map@10", "coverage@10"],
            "cold_items": "test positives whose item has no training interaction; recall@20 and AUC "
                          "(per user, cold positives vs all other cold items, averaged over users)",
            "item_text": "title, genres and training-time tags, embedded as passages"}


def format_report(report: dict) -> str:
    """Protocol lines and one table per variant, for the terminal."""
    lines = [f"{k}: {v}" for k, v in report["protocol"].items()]
    cols = ("recall@10", "recall@20", "ndcg@10", "map@10", "coverage@10")
    tables = [("all test ratings positive", report["models"])] + [
        (f"positives: {name}", v["models"]) for name, v in report.get("variants", {}).items()]
    for title, models in tables:
        lines += ["", title, f"{'model':<16}" + "".join(f"{c:>12}" for c in cols)
                  + f"{'cold r@20':>11}{'cold AUC':>10}"]
        for name, m in models.items():
            lines.append(f"{name:<16}" + "".join(f"{m[c]:>12.4f}" for c in cols)
                         + f"{m['cold_items']['recall@20']:>11.4f}{m['cold_items']['auc']:>10.4f}")
    if "hybrid_vs_best_other_ndcg@10" in report:
        lines.append(f"\nhybrid NDCG@10 / best other model: {report['hybrid_vs_best_other_ndcg@10']:.3f}x")
    return "\n".join(lines)


def plot_report(report: dict, path: str | os.PathLike[str]) -> Path:
    """Bar chart of NDCG@10, Recall@20 and cold-item AUC per model (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xrec.artifacts import atomic_file

    models = report["models"]
    names = list(models)
    metrics = [("ndcg@10", lambda m: m["ndcg@10"]), ("recall@20", lambda m: m["recall@20"]),
               ("cold-item AUC", lambda m: m["cold_items"]["auc"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.6))
    for ax, (title, get) in zip(axes, metrics):
        values = [get(models[n]) for n in names]
        ax.bar(range(len(names)), values, color=["tab:red" if n == "hybrid" else "tab:blue" for n in names])
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_title(title)
    fig.suptitle(f"{Path(report['protocol']['data']).name}: {report['protocol']['split']}", fontsize=8)
    fig.tight_layout()
    out = Path(path)
    with atomic_file(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out
