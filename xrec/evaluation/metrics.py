"""Ranking metrics of one model under the evaluation protocol, with language and cold-item slices.

For every user with test positives, the model's top-20 unseen items (over the whole catalogue, or
over ``Split.candidates``) are compared with the positives:

* Recall@10, Recall@20 (hits / positives), NDCG@10 (binary gains), MAP@10 (normalised by
  min(positives, 10)), averaged over users; coverage@10 = distinct items in all top-10 lists /
  items that could be ranked.
* Slices, each computed as if only the slice's positives were relevant, averaged over the users
  who have one: ``lang:<code>`` per item language, ``minority_language`` (positives not in the
  catalogue's most common language), ``cross_language`` (positives whose language differs from
  the user's most frequent training language). Items without a language are in no slice.
* Cold items = items without training interactions: cold Recall@20 per user over their cold
  positives; cold-item AUC (LightFM paper): per user, each cold positive against all other cold
  items, averaged over users; the share of cold items in the top-10 lists, next to their share
  of the test positives.
* With candidates (new-language protocol), ``auc``: per user, each positive against every other
  unseen candidate.
* Language exposure (items with languages): each language's share of the top-10 slots, of the
  items that could be ranked and of the test positives; topic exposure (:func:`topic_exposure`,
  items with tags): the same per topic, for slots and positives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from xrec.errors import DataError
from xrec.evaluation.splits import Split

#: Discounts of NDCG@10.
_DISC = 1.0 / np.log2(np.arange(2, 12))


class Scorer:
    """What evaluation needs of a model: top-k unseen items and scores of given items."""

    def topk(self, rows: np.ndarray, k: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def score_items(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


@dataclass
class Positives:
    """Users (train rows) with test positives and their positive item indices."""

    users: np.ndarray
    items: list[np.ndarray]
    counts: dict


def positives(split: Split, min_rating: float | None = None) -> Positives:
    """Test positives per user: every test item (with ``min_rating``, only those rated at least
    that) the user did not interact with in training, among the candidates when there are any."""
    test = split.test if min_rating is None else split.test.filter(pl.col("weight") >= min_rating)
    rows = split.train.users.index(test["user_id"])
    cols = split.train.items.index(test["item_id"])
    cold_users = int((rows < 0).sum())
    keep = rows >= 0
    rows, cols = rows[keep], cols[keep]
    seen = np.zeros(len(rows), dtype=bool)  # scipy indexes an empty selection as a sparse matrix
    if len(rows):
        seen = np.asarray(split.train.matrix[rows, cols]).ravel() != 0
    rows, cols = rows[~seen], cols[~seen]
    if split.candidates is not None:
        inside = np.isin(cols, split.candidates)
        rows, cols = rows[inside], cols[inside]
    order = np.lexsort((cols, rows))
    rows, cols = rows[order], cols[order]
    users, starts = np.unique(rows, return_index=True)
    pos = np.split(cols, starts[1:]) if len(rows) else []
    return Positives(users, pos, {"test_rows_of_users_unknown_in_training": cold_users,
                                  "test_rows_already_rated_in_training": int(seen.sum())})


class SliceMap:
    """Item languages and each user's most frequent training language, for the slices."""

    def __init__(self, split: Split):
        n_items = len(split.train.items)
        self.codes = np.full(n_items, -1, dtype=np.int64)
        self.languages: list[str] = []
        self.majority = -1
        self.user_language = np.full(len(split.train.users), -1, dtype=np.int64)
        if "lang" not in split.items.columns:
            return
        langs = split.items["lang"].cast(pl.String)
        known = langs.is_not_null().to_numpy()
        names, codes = np.unique(langs.drop_nulls().to_numpy().astype(str), return_inverse=True)
        self.languages = names.tolist()
        self.codes[known] = codes
        self.majority = int(np.bincount(codes).argmax()) if len(codes) else -1
        hist = split.train.matrix.tocsr()
        rows = np.repeat(np.arange(hist.shape[0]), np.diff(hist.indptr))
        item_codes = self.codes[hist.indices]
        ok = item_codes >= 0
        table = np.zeros((hist.shape[0], max(len(names), 1)), dtype=np.int64)
        np.add.at(table, (rows[ok], item_codes[ok]), 1)
        self.user_language = np.where(table.sum(axis=1) > 0, table.argmax(axis=1), -1)

    def slices(self, row: int, pos: np.ndarray) -> dict[str, np.ndarray]:
        """The user's positives in each language slice (empty slices left out)."""
        if not self.languages:
            return {}
        codes = self.codes[pos]
        out = {f"lang:{self.languages[c]}": pos[codes == c] for c in np.unique(codes[codes >= 0])}
        out["minority_language"] = pos[(codes >= 0) & (codes != self.majority)]
        if self.user_language[row] >= 0:
            out["cross_language"] = pos[(codes >= 0) & (codes != self.user_language[row])]
        return {name: p for name, p in out.items() if len(p)}


def _auc(scores: np.ndarray, is_pos: np.ndarray) -> float | None:
    """Mean over positives of the share of negatives scored below (ties count half)."""
    finite = np.isfinite(scores)
    neg = np.sort(scores[~is_pos & finite])
    if not len(neg) or not is_pos.any():
        return None
    lo = np.searchsorted(neg, scores[is_pos], side="left")
    hi = np.searchsorted(neg, scores[is_pos], side="right")
    return float(np.mean((lo + 0.5 * (hi - lo)) / len(neg)))


class _Accumulator:
    def __init__(self) -> None:
        self.ndcg: list[float] = []
        self.r10: list[float] = []
        self.r20: list[float] = []
        self.ap: list[float] = []
        self.n = 0

    def add(self, top: np.ndarray, pos: np.ndarray) -> None:
        hit = np.isin(top, pos)
        self.n += len(pos)
        self.r10.append(hit[:10].sum() / len(pos))
        self.r20.append(hit.sum() / len(pos))
        self.ndcg.append(float((hit[:10] * _DISC).sum() / _DISC[:min(len(pos), 10)].sum()))
        prec = np.cumsum(hit[:10]) / np.arange(1, 11)
        self.ap.append(float((prec * hit[:10]).sum() / min(len(pos), 10)))

    def summary(self, full: bool = True) -> dict:
        mean = lambda v: float(np.mean(v)) if len(v) else float("nan")  # noqa: E731
        out = {"n": self.n, "users": len(self.ndcg), "ndcg@10": mean(self.ndcg), "recall@20": mean(self.r20)}
        if full:
            out.update({"recall@10": mean(self.r10), "map@10": mean(self.ap)})
        return out


def evaluate_scorer(scorer: Scorer, split: Split, positives: Positives, *, batch: int = 256,
                    slices: SliceMap | None = None, per_user: dict[str, np.ndarray] | None = None,
                    shown: list[np.ndarray] | None = None) -> dict:
    """The protocol's metrics for one model (see the module docstring).

    ``per_user``, when given, receives each user's NDCG@10 overall (``"all"``) and per slice, in
    the order of ``positives.users`` (the same users for every model: :func:`ratio_interval`);
    ``shown``, when given, each user's top-10 item indices (-1 padding), in the same order."""
    slices = slices or SliceMap(split)
    cand = split.candidates
    n_ranked = len(split.train.items) if cand is None else len(cand)
    cold = split.train.item_counts() == 0
    cold_items = np.flatnonzero(cold if cand is None else np.isin(np.arange(len(cold)), cand) & cold)
    history = split.train.matrix.tocsr()
    overall, cold_acc, by_slice = _Accumulator(), _Accumulator(), {}
    cold_auc, cand_auc = [], []
    shown = [] if shown is None else shown
    users, pos = positives.users, positives.items
    for start in range(0, len(users), batch):
        rows = users[start:start + batch]
        s: np.ndarray | None = None  # the candidates' scores (with candidates)
        if cand is None:
            top = scorer.topk(rows, 20)
        else:
            s = np.array(scorer.score_items(rows, np.broadcast_to(cand, (len(rows), len(cand))).copy()),
                         dtype=np.float32)
            s[history[rows][:, cand].nonzero()] = -np.inf
            top = top_items(s, cand, 20)
        want_cold = [j for j in range(len(rows)) if cold[pos[start + j]].any()]
        cold_scores = (scorer.score_items(rows[want_cold], np.broadcast_to(
            cold_items, (len(want_cold), len(cold_items))).copy()) if want_cold and len(cold_items) else None)
        for j, row in enumerate(rows):
            p = pos[start + j]
            overall.add(top[j], p)
            shown.append(top[j, :10])
            for name, sp_ in slices.slices(row, p).items():
                by_slice.setdefault(name, _Accumulator()).add(top[j], sp_)
            if cand is not None and s is not None:
                auc = _auc(s[j], np.isin(cand, p))
                if auc is not None:
                    cand_auc.append(auc)
            pc = p[cold[p]]
            if len(pc) and cold_scores is not None:
                cold_acc.add(top[j], pc)
                auc = _auc(np.asarray(cold_scores[want_cold.index(j)], dtype=np.float64),
                           np.isin(cold_items, pc))
                if auc is not None:
                    cold_auc.append(auc)
    top10 = np.concatenate(shown) if shown else np.zeros(0, dtype=np.int64)
    top10 = top10[top10 >= 0]
    mean = lambda v: float(np.mean(v)) if len(v) else float("nan")  # noqa: E731
    all_pos = np.concatenate(pos) if len(pos) else np.zeros(0, dtype=np.int64)
    out = overall.summary()
    out = {k: out[k] for k in ("recall@10", "recall@20", "ndcg@10", "map@10")}
    out["coverage@10"] = float(len(np.unique(top10)) / max(n_ranked, 1))
    cold_summary = cold_acc.summary(full=False)
    out["cold_items"] = {"n": cold_summary["n"], "users": cold_summary["users"],
                         "recall@20": cold_summary["recall@20"], "auc": mean(cold_auc),
                         "share_of_top10": float(cold[top10].mean()) if len(top10) else float("nan"),
                         "share_of_positives": float(cold[all_pos].mean()) if len(all_pos) else float("nan")}
    if cand is not None:
        out["auc"] = mean(cand_auc)
    out["slices"] = {name: acc.summary(full=False) for name, acc in sorted(by_slice.items())}
    if slices.languages:
        out["exposure"] = exposure(slices, top10, all_pos, cand)
    if per_user is not None:
        per_user["all"] = np.asarray(overall.ndcg)
        per_user.update({name: np.asarray(acc.ndcg) for name, acc in by_slice.items()})
    return out


def ratio_interval(mine: np.ndarray, other: np.ndarray, *, resamples: int = 1000, level: float = 0.95,
                   seed: int = 0) -> tuple[float, float] | None:
    """Paired bootstrap interval of ``mean(mine) / mean(other)``: users resampled with
    replacement, the same users for both models (None when ``other`` has no positive mean)."""
    mine, other = np.asarray(mine, np.float64), np.asarray(other, np.float64)
    if len(mine) != len(other) or not len(mine):
        raise DataError(f"ratio_interval: {len(mine)} and {len(other)} per-user values; needs the same users")
    rng = np.random.default_rng(seed)
    ratios = []
    for start in range(0, resamples, 100):
        picks = rng.integers(0, len(mine), (min(100, resamples - start), len(mine)))
        num, den = mine[picks].mean(axis=1), other[picks].mean(axis=1)
        ratios.append(np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan))
    ratios = np.concatenate(ratios)
    ratios = ratios[np.isfinite(ratios)]
    if not len(ratios):
        return None
    tail = (1.0 - level) / 2 * 100
    return float(np.percentile(ratios, tail)), float(np.percentile(ratios, 100 - tail))


def mean_interval(values: np.ndarray, *, resamples: int = 1000, level: float = 0.95,
                  seed: int = 0) -> tuple[float, float] | None:
    """Bootstrap interval of ``mean(values)`` (users resampled with replacement; None when empty)."""
    values = np.asarray(values, np.float64)
    if not len(values):
        return None
    rng = np.random.default_rng(seed)
    means = np.concatenate([values[rng.integers(0, len(values), (min(100, resamples - start), len(values)))]
                            .mean(axis=1) for start in range(0, resamples, 100)])
    tail = (1.0 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def exposure(slices: SliceMap, shown: np.ndarray, positives: np.ndarray, candidates: np.ndarray | None) -> dict:
    """Per language: its share of the top-10 slots shown, of the items that could be ranked and of
    the test positives (items without a language are left out of every share)."""
    codes = slices.codes
    ranked = codes if candidates is None else codes[candidates]

    def share(values: np.ndarray) -> np.ndarray:
        values = values[values >= 0]
        counts = np.bincount(values, minlength=len(slices.languages)).astype(np.float64)
        return counts / max(counts.sum(), 1.0)

    slots, catalogue, test = share(codes[shown]), share(ranked), share(codes[positives])
    return {lang: {"slots": float(slots[c]), "catalogue": float(catalogue[c]), "test": float(test[c])}
            for c, lang in enumerate(slices.languages)}


def top_items(scores: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """Top-``k`` of ``items`` by ``scores`` ``[b, len(items)]``, -1 where the score is -inf."""
    from xrec.index.topk import top_k

    want = k
    cols, best = top_k(scores, k)
    top = items[cols]
    top[~np.isfinite(best)] = -1
    return np.pad(top, ((0, 0), (0, want - top.shape[1])), constant_values=-1) if want > top.shape[1] else top


def topic_exposure(shown: np.ndarray, positives: np.ndarray, codes: np.ndarray, names: list[str]) -> pl.DataFrame:
    """``topic, slots, positives, ratio``: each topic's share of the slots ``shown`` (item indices,
    -1 padding, e.g. every user's top-10) and of the ``positives`` (item indices), and their ratio;
    items without a topic (code -1) are left out of every share."""

    def share(items: np.ndarray) -> np.ndarray:
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        c = codes[items[items >= 0]]
        counts = np.bincount(c[c >= 0], minlength=len(names)).astype(np.float64)
        return counts / max(counts.sum(), 1.0)

    slots, pos = share(shown), share(positives)
    ratio = np.divide(slots, pos, out=np.full(len(names), np.nan), where=pos > 0)
    return pl.DataFrame({"topic": list(names), "slots": slots, "positives": pos, "ratio": ratio}).sort(
        "positives", descending=True)
