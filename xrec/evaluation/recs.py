"""Offline evaluation of recommenders side by side, under one pinned protocol.

The split (:mod:`xrec.evaluation.splits`: MovieLens, Book-Crossing or generic items +
interactions; temporal with timestamps, seeded random without; the new-language protocol) and the
metrics with their language and cold-item slices (:mod:`xrec.evaluation.metrics`) are printed with
the results and stored under ``"protocol"`` in the JSON. Positives: every test item the user did
not interact with in training (variant, where ratings exist: rating >= 4.0 only). Ranking: over
every catalogue item the user has not interacted with in training (new-language protocol: over the
new language's items).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from xrec.errors import DataError
from xrec.evaluation.metrics import Scorer, SliceMap, evaluate_scorer, positives, ratio_interval, top_items
from xrec.evaluation.splits import Split
from xrec.progress import track

if TYPE_CHECKING:
    from xrec.ranking.views import ContentGraphs

log = logging.getLogger(__name__)

MODELS = ("popularity", "random", "als", "bpr", "lightfm", "lightfm_content", "content", "tfidf", "hybrid",
          "rerank_als")
#: Candidates per user that ``rerank_als`` takes from ALS (the hybrid re-orders ALS's top-N).
RERANK_CANDIDATES = 100
#: The models of the new-language protocol (the others have no signal for a catalogue no one has used).
NEW_LANGUAGE_MODELS = ("random", "content", "tfidf", "lightfm_content", "hybrid")
LIKED = 4.0
#: One colour per model, the same in every plot (the hybrid red); other names: :func:`model_colour`.
MODEL_COLOURS = {"popularity": "tab:gray", "random": "tab:olive", "als": "tab:blue", "bpr": "tab:cyan",
                 "lightfm": "tab:purple", "lightfm_content": "tab:pink", "content": "tab:green",
                 "tfidf": "tab:orange", "hybrid": "tab:red", "rerank_als": "tab:brown"}
_SPARE_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#000000")
#: Slices with fewer test positives are kept in the JSON but left out of the printed tables and plot.
MIN_SLICE_SHOWN = 20


class DenseScorer(Scorer):
    """A model given as a function of user rows -> dense ``[b, n_items]`` scores."""

    def __init__(self, dense: Callable[[np.ndarray], np.ndarray], history: sp.csr_matrix):
        self.dense = dense
        self.history = history.tocsr()

    def topk(self, rows: np.ndarray, k: int) -> np.ndarray:
        s = np.array(self.dense(rows), dtype=np.float32, copy=True)
        s[self.history[rows].nonzero()] = -np.inf
        return top_items(s, np.arange(s.shape[1]), k)

    def score_items(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.take_along_axis(np.asarray(self.dense(rows)), items, 1)


class RankerScorer(Scorer):
    """Adapter for :class:`xrec.ranking.hybrid.HybridRanker`."""

    def __init__(self, ranker, diversity: float = 0.0, language_boost: float | None = None,
                 diversity_by: str = "works"):
        self.ranker, self.diversity, self.language_boost = ranker, diversity, language_boost
        self.diversity_by = diversity_by

    def topk(self, rows: np.ndarray, k: int) -> np.ndarray:
        return self.ranker.recommend_rows(rows, k, components=False, diversity=self.diversity,
                                          language_boost=self.language_boost, diversity_by=self.diversity_by).ids

    def score_items(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.ranker.score_items(rows, items, language_boost=self.language_boost)


class RerankScorer(Scorer):
    """The hybrid re-ordering another model's top-``n`` unseen items
    (:meth:`xrec.ranking.hybrid.HybridRanker.rerank_rows`); items outside the top-``n`` score -inf."""

    def __init__(self, ranker, base: Scorer, n: int = RERANK_CANDIDATES, upstream_weight: float = 0.0):
        self.ranker, self.base, self.n, self.upstream_weight = ranker, base, n, upstream_weight

    def candidates(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        items = self.base.topk(rows, self.n)
        upstream = None
        if self.upstream_weight:
            upstream = np.asarray(self.base.score_items(rows, np.where(items >= 0, items, 0)), dtype=np.float64)
        return items, upstream

    def topk(self, rows: np.ndarray, k: int) -> np.ndarray:
        items, upstream = self.candidates(rows)
        return self.ranker.rerank_rows(rows, items, k, upstream=upstream, upstream_weight=self.upstream_weight,
                                       components=False).ids

    def score_items(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        cand, _ = self.candidates(rows)
        inside = np.array([np.isin(items[j], cand[j]) for j in range(len(rows))]).reshape(items.shape)
        return np.where(inside, self.ranker.score_items(rows, items), -np.inf)


def _mean_profile(history: sp.csr_matrix) -> sp.csr_matrix:
    """Row-normalised history (each user's items weighted 1 / history length)."""
    n = np.asarray(history.getnnz(axis=1), dtype=np.float32)
    binary = history.copy()
    binary.data[:] = 1.0
    return (sp.diags(1.0 / np.maximum(n, 1.0)) @ binary).tocsr()


# ---------------------------------------------------------------------------- the full run
def build_models(split: Split, vectors: np.ndarray, names: Sequence[str] = MODELS, *,
                 threads: int = 2, seed: int = 0, fit_seconds: dict[str, float] | None = None,
                 content: ContentGraphs | None = None) -> dict[str, Scorer]:
    """Fit every named model on ``split.train`` (content from ``vectors``, catalogue order);
    each one's fit time goes into ``fit_seconds`` when given. ``content``: the hybrid's content
    graphs of ``split.items`` when already built (from ``vectors``, the items' texts, languages and
    ``split.metadata``), so that several splits of one catalogue build them once."""
    from xrec.ranking.cf import fit_als, fit_bpr, fit_lightfm
    from xrec.ranking.hybrid import HybridRanker
    from xrec.ranking.lexical import char_tfidf
    from xrec.ranking.profiles import history_weights, user_profiles

    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise DataError(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    train = split.train
    hist = train.matrix
    n_items = hist.shape[1]
    out: dict[str, Scorer] = {}
    asked = list(names)
    if "rerank_als" in asked:  # its parts are fitted once (and shared with "als" and "hybrid" when asked)
        names = list(dict.fromkeys([n for n in asked if n != "rerank_als"] + ["als", "hybrid", "rerank_als"]))
    for name in track(names, "fit models", "models"):
        t0 = time.perf_counter()
        if name == "popularity":
            pop = np.log1p(train.item_counts()).astype(np.float32)
            out[name] = DenseScorer(lambda r, p=pop: np.broadcast_to(p, (len(r), len(p))), hist)
        elif name == "random":
            out[name] = DenseScorer(lambda r: np.random.default_rng([seed, len(r), *r[:1]]).random(
                (len(r), n_items), dtype=np.float32), hist)
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
        elif name == "tfidf":
            x = char_tfidf(split.items["text"].to_list())
            prof = (_mean_profile(hist) @ x).tocsr()
            xt = x.T.tocsr()
            out[name] = DenseScorer(lambda r, p=prof, t=xt: (p[r] @ t).toarray(), hist)
        elif name == "hybrid":
            out[name] = RankerScorer(HybridRanker.fit(train, vectors, texts=split.items["text"].to_list(),
                                                      languages=_languages(split), metadata=split.metadata,
                                                      content=content))
        elif name == "rerank_als":
            hybrid = out["hybrid"]
            assert isinstance(hybrid, RankerScorer)  # fitted before it (the models' order)
            out[name] = RerankScorer(hybrid.ranker, out["als"])
        seconds = time.perf_counter() - t0
        log.info("fitted %s in %.1fs", name, seconds)
        if fit_seconds is not None:
            fit_seconds[name] = round(seconds, 2)
    return {n: out[n] for n in asked}


def _languages(split: Split) -> list[str | None] | None:
    return split.items["lang"].to_list() if "lang" in split.items.columns else None


def evaluate_recs(split: Split, vectors: np.ndarray, names: Sequence[str] | None = None, *,
                  threads: int = 2, seed: int = 0, progress: bool = False, liked: bool = True,
                  per_user: dict[str, dict[str, np.ndarray]] | None = None,
                  content: ContentGraphs | None = None) -> dict:
    """Fit and evaluate ``names`` side by side; returns the JSON report.

    ``liked=False`` skips the rating >= 4 variant; ``per_user``, when given, receives each model's
    per-user NDCG@10 (overall ``"all"`` and per slice, same users for every model); ``content``:
    as :func:`build_models`."""
    if names is None:
        names = NEW_LANGUAGE_MODELS if split.candidates is not None else MODELS
    fit_seconds: dict[str, float] = {}
    models = build_models(split, vectors, names, threads=threads, seed=seed, fit_seconds=fit_seconds,
                          content=content)
    slices = SliceMap(split)
    # explicit ratings (MovieLens): the liked-only variant; a generic ``weight`` (counts, dwell time) is no rating
    has_ratings = liked and split.info.get("layout") == "movielens" and split.test["weight"].n_unique() > 1
    variants = {"all": None, **({f"rating>={LIKED}": LIKED} if has_ratings and split.candidates is None else {})}
    report: dict = {"protocol": protocol(split), "models": {}, "variants": {}}
    main_per_user = None
    for variant, threshold in variants.items():
        pos = positives(split, threshold)
        ndcgs: dict[str, dict[str, np.ndarray]] = {name: {} for name in models}
        results = {name: evaluate_scorer(scorer, split, pos, slices=slices, per_user=ndcgs[name])
                   for name, scorer in track(models.items(), f"evaluate {variant}", "models", show=progress)}
        entry = {"users": len(pos.users), "positives": int(sum(len(p) for p in pos.items)), **pos.counts,
                 "models": results}
        if threshold is None:
            report["models"] = results
            main_per_user = ndcgs
            report["protocol"].update({"users_evaluated": len(pos.users), "positives": entry["positives"],
                                       **pos.counts})
        else:
            report["variants"][variant] = entry
    for name, result in report["models"].items():
        result["fit_seconds"] = fit_seconds[name]
    hybrid = models.get("hybrid")
    if isinstance(hybrid, RankerScorer):  # what the fit chose, and why
        fusion = hybrid.ranker.fusion
        report["models"]["hybrid"]["fusion"] = {"kind": fusion.kind, "decision": fusion.decision}
    report.update(hybrid_ratios(report["models"], main_per_user))
    if per_user is not None and main_per_user is not None:
        per_user.update(main_per_user)
    if "rerank_als" in report["models"] and "als" in report["models"]:
        als, rerank = report["models"]["als"]["ndcg@10"], report["models"]["rerank_als"]["ndcg@10"]
        report["rerank_vs_als"] = {"ratio": rerank / als if als > 0 else None, "rerank_als": rerank, "als": als,
                                   "candidates": RERANK_CANDIDATES}
    return report


def hybrid_ratios(models: dict, per_user: dict[str, dict[str, np.ndarray]] | None = None) -> dict:
    """``hybrid_vs_best_other``: the hybrid's NDCG@10 over the best other model's, overall and
    on each slice (with the name of that best other model); with each model's per-user NDCG@10
    (:func:`~xrec.evaluation.metrics.evaluate_scorer`), also the ratio's 95% paired-bootstrap
    interval over users (``ci95``)."""
    if "hybrid" not in models:
        return {}
    others = {n: m for n, m in models.items() if n not in ("hybrid", "rerank_als")}
    out: dict = {}

    def ratio(get, key: str) -> dict | None:
        values = {n: get(m) for n, m in others.items()}
        values = {n: v for n, v in values.items() if v is not None and np.isfinite(v)}
        mine = get(models["hybrid"])
        if not values or mine is None or not np.isfinite(mine):
            return None
        best = max(values, key=lambda n: values[n])
        if values[best] <= 0:
            return None
        entry = {"ratio": mine / values[best], "best_other": best, "hybrid": mine, "best_other_ndcg@10": values[best]}
        if per_user is not None and key in per_user.get("hybrid", {}) and key in per_user.get(best, {}):
            interval = ratio_interval(per_user["hybrid"][key], per_user[best][key])
            if interval is not None:
                entry["ci95"] = list(interval)
        return entry

    out["all"] = ratio(lambda m: m["ndcg@10"], "all")
    for name in models["hybrid"].get("slices", {}):
        out[name] = ratio(lambda m, n=name: m.get("slices", {}).get(n, {}).get("ndcg@10"), name)
    return {"hybrid_vs_best_other": {k: v for k, v in out.items() if v is not None}}


def protocol(split: Split) -> dict:
    """The pinned protocol, as stored in the report."""
    ranked = ("the new language's items the user has not interacted with in training"
              if split.candidates is not None else "all catalogue items the user has not interacted with in training")
    return {**split.info,
            "positives": "every test item the user did not interact with in training; variant rating >= 4.0",
            "ranking": f"full ranking over {ranked}",
            "metrics": ["recall@10", "recall@20", "ndcg@10", "map@10", "coverage@10"],
            "slices": "lang:<code> per item language; minority_language: positives not in the catalogue's "
                      "most common language; cross_language: positives whose language differs from the "
                      "user's most frequent training language",
            "cold_items": "test positives whose item has no training interaction; recall@20 and AUC "
                          "(per user, cold positives vs all other cold items, averaged over users)"}


def format_report(report: dict) -> str:
    """Protocol lines, one table per variant and a table of NDCG@10 per slice, for the terminal."""
    lines = [f"{k}: {v}" for k, v in report["protocol"].items()]
    cols = ("recall@10", "recall@20", "ndcg@10", "map@10", "coverage@10")
    tables = [("all test interactions positive", report["models"])] + [
        (f"positives: {name}", v["models"]) for name, v in report.get("variants", {}).items()]
    for title, models in tables:
        extra = "auc" in next(iter(models.values()), {})
        timed = any("fit_seconds" in m for m in models.values())
        lines += ["", title, f"{'model':<16}" + "".join(f"{c:>12}" for c in cols)
                  + f"{'cold r@20':>11}{'cold AUC':>10}{'cold top10':>11}" + (f"{'AUC':>8}" if extra else "")
                  + (f"{'fit s':>8}" if timed else "")]
        for name, m in models.items():
            c = m["cold_items"]
            lines.append(f"{name:<16}" + "".join(f"{m[k]:>12.4f}" for k in cols)
                         + f"{c['recall@20']:>11.4f}{c['auc']:>10.4f}{c['share_of_top10']:>11.4f}"
                         + (f"{m['auc']:>8.4f}" if extra else "")
                         + (f"{m.get('fit_seconds', float('nan')):>8.1f}" if timed else ""))
    first = next(iter(report["models"].values()), {}).get("slices", {})
    names = [n for n in sorted(first) if first[n]["n"] >= MIN_SLICE_SHOWN]
    if names:
        lines += ["", "NDCG@10 by slice (positives in the slice)",
                  f"{'model':<16}" + "".join(f"{n[:18]:>20}" for n in names)]
        for name, m in report["models"].items():
            lines.append(f"{name:<16}" + "".join(
                f"{m['slices'][n]['ndcg@10']:>20.4f}" if n in m["slices"] else f"{'-':>20}" for n in names))
        lines.append(f"{'(positives)':<16}" + "".join(f"{first.get(n, {}).get('n', 0):>20}" for n in names))
    ratios = report.get("hybrid_vs_best_other", {})
    if ratios:
        lines += ["", "hybrid NDCG@10 / best other model:"]
        for name, r in ratios.items():
            if name == "all" or first.get(name, {}).get("n", 0) >= MIN_SLICE_SHOWN:
                ci = f" (95% CI {r['ci95'][0]:.2f}-{r['ci95'][1]:.2f})" if "ci95" in r else ""
                lines.append(f"  {name:<20} {r['ratio']:.2f}x{ci} (best other: {r['best_other']})")
    exposed = {n: m["exposure"] for n, m in report["models"].items() if "exposure" in m}
    if exposed:
        langs = list(next(iter(exposed.values())))
        lines += ["", "language exposure: share of top-10 slots (catalogue share, test share)",
                  f"{'model':<16}" + "".join(f"{lang[:10]:>12}" for lang in langs)]
        for name, table in exposed.items():
            lines.append(f"{name:<16}" + "".join(f"{table[lang]['slots']:>12.3f}" for lang in langs))
        first_table = next(iter(exposed.values()))
        lines.append(f"{'(catalogue)':<16}" + "".join(f"{first_table[lang]['catalogue']:>12.3f}" for lang in langs))
        lines.append(f"{'(test)':<16}" + "".join(f"{first_table[lang]['test']:>12.3f}" for lang in langs))
    rerank = report.get("rerank_vs_als")
    if rerank and rerank["ratio"] is not None:
        lines += ["", f"hybrid re-ranking ALS's top-{rerank['candidates']} / ALS's own order, NDCG@10: "
                      f"{rerank['ratio']:.2f}x ({rerank['rerank_als']:.4f} vs {rerank['als']:.4f})"]
    return "\n".join(lines)


def model_colour(name: str, others: Sequence[str] = ()) -> str:
    """The colour of model ``name`` in every plot: :data:`MODEL_COLOURS`, else a spare colour by its
    place among ``others`` (the plot's other unnamed models), so that no two models share one."""
    if name in MODEL_COLOURS:
        return MODEL_COLOURS[name]
    unnamed = [n for n in dict.fromkeys(others) if n not in MODEL_COLOURS]
    place = unnamed.index(name) if name in unnamed else len(unnamed)
    return _SPARE_COLOURS[place % len(_SPARE_COLOURS)]


def plot_report(report: dict, path: str | os.PathLike[str]) -> Path:
    """NDCG@10 per model overall and on each slice, Recall@20, and cold-item AUC (PNG); one colour
    per model (:func:`model_colour`) in every panel, the legend beside the panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xrec.artifacts import atomic_file

    models = report["models"]
    names = list(models)
    colours = [model_colour(n, names) for n in names]
    first = models[names[0]].get("slices", {})
    groups = ["all"] + [g for g in sorted(first) if first[g]["n"] >= MIN_SLICE_SHOWN]
    fig, axes = plt.subplots(1, 3, figsize=(max(12, 2 + 1.2 * len(groups) + 10), 3.8),
                             gridspec_kw={"width_ratios": [max(2, len(groups)), 1, 1]})
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        values = [models[name]["ndcg@10"] if g == "all" else models[name].get("slices", {}).get(g, {}).get("ndcg@10", 0)
                  for g in groups]
        axes[0].bar(np.arange(len(groups)) + j * width, values, width, label=name, color=colours[j])
    axes[0].set_xticks(np.arange(len(groups)) + 0.4 - width / 2, groups, rotation=30, ha="right", fontsize=8)
    axes[0].set_title("NDCG@10 overall and by slice")
    for ax, (title, get) in zip(axes[1:], [("recall@20", lambda m: m["recall@20"]),
                                            ("AUC" if "auc" in models[names[0]] else "cold-item AUC",
                                             lambda m: m.get("auc", m["cold_items"]["auc"]))]):
        values = [np.nan if get(models[n]) is None else get(models[n]) for n in names]
        ax.bar(range(len(names)), values, color=colours)
        if np.all(np.isnan(values)):
            ax.text(0.5, 0.5, "not measured (no such items)", ha="center", va="center", transform=ax.transAxes,
                    fontsize=8, color="grey")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_title(title)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="center right", fontsize=8, title="model",
               title_fontsize=8)
    fig.suptitle(f"{Path(report['protocol']['data']).name}: {report['protocol']['split']}", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.88, 1))  # the legend's column stays clear of every panel
    out = Path(path)
    with atomic_file(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out
