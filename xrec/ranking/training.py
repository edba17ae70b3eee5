"""Training the hybrid's fusion: the validation slice, the softmax fits and the cold-item bias.

:func:`learn_fusion` holds out a validation slice of the training data (:func:`validation_slice`),
fits the CF model on the rest, builds a ranker on it and learns the fusion weights: warm features
by the softmax of the validation items over the warm catalogue, cold features by the softmax of
the cold items' validation interactions over the cold items; then the cold-item bias
(:func:`calibrate_cold`) and the language boost (a policy, :class:`~xrec.ranking.config.HybridConfig`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import scipy.sparse as sp
from scipy.special import expit

from xrec.catalogue.interactions import IdMap, Interactions, random_split, temporal_split
from xrec.ranking.cf import FactorModel
from xrec.ranking.config import BOOST_FEATURE, DEFAULT_WEIGHTS, OFF_BY_DEFAULT, HybridConfig
from xrec.ranking.content_graphs import ContentGraphs
from xrec.ranking.fusion import Fusion
from xrec.ranking.views import is_cold_feature

if TYPE_CHECKING:
    from xrec.ranking.fitted import FittedRanker, RankerFactory
    from xrec.ranking.views import FeatureViews

log = logging.getLogger(__name__)


def learn_fusion(make_ranker: RankerFactory[FittedRanker], interactions: Interactions, item_vectors: np.ndarray,
                 content: ContentGraphs, cf_fit: Callable[[sp.csr_matrix], FactorModel],
                 config: HybridConfig) -> Fusion | None:
    """The fusion learned on a validation slice and checked by the guard, or None (default weights).

    ``make_ranker`` builds the ranker of the validation slice (the :class:`HybridRanker` class).

    Warm features are weighed by the softmax of the validation items over the warm catalogue,
    cold features by the softmax of the cold items' validation interactions over the cold
    items (most of them made cold on purpose, :func:`validation_slice`); the cold-item bias
    is then set by :func:`calibrate_cold`. With fewer than ``min_validation_positives`` the
    default weights stand in for the fit. Then :func:`~xrec.ranking.guard.guard_fusion` ships the
    fusion only where it validates at least as well as each of the ranker's own parts (a small
    catalogue without timestamps on several slices, :func:`guard_slices`)."""
    from xrec.ranking.guard import GuardRun, guard_fusion

    # items nobody has interacted with can never be a validation positive: as negatives they would
    # only teach the fit that cold evidence never pays (a new catalogue added before the fit)
    known = np.diff(interactions.matrix.tocsc().indptr) > 0

    def run(k: int, default: bool | None) -> GuardRun | None:
        """Validation slice ``k``'s evidence; ``default``: use the default weights (None: decide by
        the slice's positives)."""
        slice_ = validation_slice(interactions, replace(config, seed=config.seed + SLICE_SEED_STRIDE * k),
                                  content.language_codes)
        if slice_ is None:
            return None
        sub, truth, simulated = slice_
        ranker = make_ranker(sub, item_vectors, cf_fit(sub.matrix), content, Fusion((), np.zeros(0), np.zeros(0)),
                             config)
        fit = FusionFit(ranker, truth, simulated, config, known)
        if default is None and truth.nnz < config.min_validation_positives:
            log.warning("%d validation positives (< %d): default fusion weights, checked against the parts",
                        truth.nnz, config.min_validation_positives)
            default = True
        fusion, refit = (default_fusion(ranker.views, config), None) if default else (fit.fusion(), fit.fusion)
        # judged on the plain held-out interactions: the simulated-cold items are a training device
        plain = (truth @ sp.diags((~simulated).astype(np.float32))).tocsr()
        plain.eliminate_zeros()
        return GuardRun(ranker.views, fusion, plain if plain.nnz else truth, ranker.history, fit.spread, refit, ~known)

    first = run(0, None)
    if first is None or not config.guard:
        return None if first is None else first.fusion
    runs = [first]
    slices = 1 if interactions.has_timestamps else guard_slices(int((np.diff(first.truth.indptr) > 0).sum()))
    while len(runs) < slices and (more := run(len(runs), first.refit is None)) is not None:
        runs.append(more)
    return guard_fusion(runs, seed=config.seed)


#: Validation users the guard aims for: a catalogue with fewer is validated on several random slices.
GUARD_USERS = 200
#: The most validation slices the guard pools (small catalogues; one where interactions are timed).
MAX_SLICES = 5
#: Seeds of successive validation slices: ``config.seed + SLICE_SEED_STRIDE * k``.
SLICE_SEED_STRIDE = 1000


def guard_slices(validation_users: int) -> int:
    """How many random validation slices the guard pools for ``validation_users`` users per slice:
    a decision between the fusion and its parts on a few dozen users is a coin toss."""
    return int(np.clip(-(-GUARD_USERS // max(validation_users, 1)), 1, MAX_SLICES))


class _Sample:
    """One fit sample: users, items (with log-weights), features ``[u, i, f]``, positives, seen."""

    def __init__(self, ranker: FittedRanker, truth: sp.csr_matrix, columns: np.ndarray, names: Sequence[str],
                 config: HybridConfig):
        users, items, self.log_weight = _fit_sample(truth[:, columns], config)
        self.users, self.items = users, columns[items]
        self.x = np.empty((len(users), len(self.items), len(names)), np.float32)  # filled in place: no 2nd copy
        batches = np.array_split(np.arange(len(users)), -(-len(users) // 256)) if len(users) else []
        for b in batches:
            self.x[b[0]:b[-1] + 1] = ranker.views.features(
                users[b], np.broadcast_to(self.items, (len(b), len(self.items))), names)
        self.pos = truth[users][:, self.items].toarray() > 0
        self.seen = ranker.history[users][:, self.items].toarray() != 0

    def rows(self, users: np.ndarray | None) -> np.ndarray:
        """Rows of the sample whose user is in ``users`` (all: None)."""
        return np.arange(len(self.users)) if users is None else np.flatnonzero(np.isin(self.users, users))


class FusionFit:
    """The validation ranker's fit samples, built once; :meth:`fusion` fits on any subset of users."""

    def __init__(self, ranker: FittedRanker, truth: sp.csr_matrix, simulated: np.ndarray, config: HybridConfig,
                 known: np.ndarray | None = None):
        """``known`` marks the items with an interaction in the whole training data (default: all);
        the others are left out of the cold fit's sample (see :func:`learn_fusion`)."""
        known = np.ones(len(simulated), bool) if known is None else known
        self.config = config
        self.names = feature_names(ranker.views, config)
        self.warm_names = [n for n in self.names if not is_cold_feature(n) and n != BOOST_FEATURE]
        self.cold_names = [n for n in self.names if is_cold_feature(n) and n != "cold"]
        # every item stays in the warm sample: it sets the cold-item bias (calibrate_cold) over all
        # cold items, as serving will see them; the warm fit excludes cold items anyway
        self.warm = _Sample(ranker, truth, np.flatnonzero(~simulated), self.names, config)
        self.cold_col = ranker.cold[self.warm.items]
        self.cold = None
        if "cold" in self.names and ranker.cold.any() and self.cold_names:
            self.cold = _Sample(ranker, truth, np.flatnonzero(ranker.cold & known), self.cold_names, config)
        self._starts: dict[str, np.ndarray] = {}  #: the all-user fit's weights (warm, cold): later fits start there

    def fusion(self, users: np.ndarray | None = None) -> Fusion:
        """The fusion fitted on validation users ``users`` (all: None).

        A fit on some users starts from the weights of the first fit on all of them (the guard's
        cross-fit): the fits are strictly convex, so the start changes how long the search takes,
        not where it ends."""
        config, w = self.config, self.warm
        r = None if users is None else w.rows(users)
        pos, seen = (w.pos, w.seen) if r is None else (w.pos[r], w.seen[r])
        index = {n: j for j, n in enumerate(self.names)}
        # the fit sample is the memory peak: Fusion.learn gathers its rows and columns once
        warm = Fusion.learn(self.warm_names, w.x, pos & ~self.cold_col[None], seen | self.cold_col[None],
                            rows=r, columns=[index[n] for n in self.warm_names], log_weight=w.log_weight,
                            l2=config.l2, start=self._starts.get("warm"))
        parts = [warm]
        if self.cold is not None:
            c = self.cold
            rc = c.rows(users)
            if c.pos[rc].any():
                parts.append(Fusion.learn(self.cold_names, c.x, c.pos[rc], c.seen[rc], rows=rc,
                                          log_weight=c.log_weight, l2=config.cold_l2,
                                          start=self._starts.get("cold")))
        if users is None:
            self._starts.update(zip(("warm", "cold"), (part.weights for part in parts)))
        learned = {n: (wt, sc) for part in parts for n, wt, sc in zip(part.names, part.weights, part.scale)}
        if "cold" in self.names:
            learned["cold"] = (0.0, 1.0)  # set by calibrate_cold
        if BOOST_FEATURE in self.names:
            learned[BOOST_FEATURE] = (0.0, 1.0)  # a policy, not fitted: set below
        kept = tuple(n for n in self.names if n in learned)
        fusion = Fusion(kept, np.array([learned[n][0] for n in kept], np.float32),
                        np.array([learned[n][1] for n in kept], np.float32))
        if "cold" in fusion.names:
            fusion = calibrate_cold(fusion, w.x, self.names, pos, seen, w.log_weight, self.cold_col, rows=r)
        if BOOST_FEATURE in fusion.names:
            fusion = fusion.with_raw_weight(BOOST_FEATURE, config.language_boost)
        return fusion

    def spread(self, raw: Mapping[str, float]) -> float:
        """Standard deviation of the fused score ``raw`` over warm items of (up to 64 users of) the warm
        fit sample, without the cold-item bias and the language boost (offsets, not evidence)."""
        x = self.warm.x[:64][:, ~self.cold_col]
        weights = np.array([0.0 if n in ("cold", BOOST_FEATURE) else raw.get(n, 0.0) for n in self.names],
                           dtype=np.float32)
        scores = (x.reshape(-1, len(self.names)) @ weights) if x.size else np.zeros(1)
        return float(np.std(scores))


#: The largest share of the read items made cold to stand for an unread language's catalogue.
MAX_COLD_BLOCK = 0.3
#: An unread language of fewer items than this is no new catalogue (no block is simulated for it).
MIN_COLD_BLOCK = 20


def unread_catalogue(read_items: np.ndarray, language_codes: np.ndarray) -> int:
    """Items of the languages (of at least :data:`MIN_COLD_BLOCK` items) none of whose items is
    among ``read_items`` (a mask)."""
    known = language_codes >= 0
    everything = np.bincount(language_codes[known], minlength=int(language_codes.max()) + 1)
    read = np.bincount(language_codes[read_items & known], minlength=len(everything))
    return int(everything[(everything >= MIN_COLD_BLOCK) & (read == 0)].sum())


def _read_mask(items: IdMap, frame: pl.DataFrame) -> np.ndarray:
    """``[len(items)]`` True where ``frame`` holds an interaction with the item."""
    read = np.zeros(len(items), bool)
    read[items.index(frame["item_id"])] = True
    return read


def validation_slice(interactions: Interactions, config: HybridConfig, language_codes: np.ndarray | None = None
                     ) -> tuple[Interactions, sp.csr_matrix, np.ndarray] | None:
    """``(fit interactions, validation positives, simulated-cold items)`` or None when there are none.

    The last ``validation_fraction`` of each user's interactions by time (every interaction
    timestamped) or a seeded random ``validation_fraction`` (otherwise) is held out. The time cut
    leaves new items cold, as they will be when served; a random cut leaves few, so without
    timestamps all the interactions of a random ``cold_fraction`` of the items can be held out too,
    which makes them cold (0 by default: on Book-Crossing the language block below taught the
    fusion as much about cold items, and a random cold block cost new-language NDCG).
    With ``cold_language`` and item languages, every item of the most-read language after the
    majority one is made cold too: a simulated new-language catalogue, whose readers teach the
    fusion how cold items are found across languages. Where users read one language only and a
    language nobody has read is in the catalogue, a random block of read items stands for it
    (:func:`unread_catalogue`)."""
    frame = interactions.frame
    if interactions.has_timestamps:
        train, val = temporal_split(frame, config.validation_fraction, min_test=0)
    else:
        train, val = random_split(frame, config.validation_fraction, seed=config.seed, min_test=0)
    items = interactions.items
    # with timestamps the time cut itself leaves new items cold, as they will be when served
    fraction = 0.0 if interactions.has_timestamps else config.cold_fraction
    simulated = np.random.default_rng(config.seed + 1).random(len(items)) < fraction
    if config.cold_language and language_codes is not None and (language_codes >= 0).any():
        read = language_codes[items.index(train["item_id"])]
        counts = np.bincount(read[read >= 0], minlength=int(language_codes.max()) + 1)
        if (counts > 0).sum() > 1:
            simulated |= language_codes == int(np.argsort(-counts, kind="stable")[1])
        elif unread := unread_catalogue(read_items := _read_mask(items, frame), language_codes):
            # readers of one language and a language nobody has read yet (a new catalogue): no
            # language can stand for it, so a random block of read items as large is made cold,
            # and the cold fit learns how a block added at once is found (the time cut alone
            # teaches it about new releases, which a new catalogue is not)
            share = min(unread / max(int(read_items.sum()), 1), MAX_COLD_BLOCK)
            simulated |= read_items & (np.random.default_rng(config.seed + 2).random(len(items)) < share)
    if simulated.any():
        moved = pl.Series(simulated[items.index(train["item_id"])])
        val = pl.concat([val, train.filter(moved)], how="vertical_relaxed")
        train = train.filter(~moved)
    sub = Interactions.build(train, items.ids, user_ids=interactions.users.ids)
    rows, cols = sub.users.index(val["user_id"]), sub.items.index(val["item_id"])
    truth = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=sub.matrix.shape)
    truth = truth - truth.multiply(sub.matrix != 0)
    truth.eliminate_zeros()
    truth.data[:] = 1.0
    if truth.nnz == 0:
        log.warning("no validation positives: default fusion weights")
        return None
    return sub, truth, simulated


def calibrate_cold(fusion: Fusion, x: np.ndarray, names: Sequence[str], positives: np.ndarray,
                   excluded: np.ndarray, log_weight: np.ndarray | None, cold: np.ndarray, *,
                   rows: np.ndarray | None = None) -> Fusion:
    """Shift the ``cold`` weight so that the fused softmax puts on (naturally) cold items the share
    of the validation positives they hold: cold items then enter lists as often as they are read.

    The arrays are the fit sample without the simulated-cold items: ``x[rows]`` (all: None) holds
    features ``names`` (a superset of the fusion's), ``positives`` and ``excluded`` its rows;
    ``cold`` marks the items of the sample that are cold in the fit."""
    raw = fusion.raw
    w = np.array([raw.get(n, 0.0) for n in names], np.float32)
    users = positives.any(axis=1)
    picked = np.flatnonzero(users) if rows is None else np.asarray(rows)[users]
    base = np.concatenate([x[picked[s:s + 256]] @ w for s in range(0, len(picked), 256)]) \
        if len(picked) else np.zeros((0, x.shape[1]), np.float32)
    base += np.where(excluded[users], -np.inf, 0.0 if log_weight is None else log_weight[None])
    target = max(float(positives[:, cold].sum()), 0.5) / max(float(positives.sum()), 1.0)
    # the bias moves the cold items' logits only: a user's cold share of the softmax is
    # sigmoid(bias + logsumexp(cold logits) - logsumexp(warm logits)), so one pass over the sample
    # makes each step of the search below cost one value per user
    gap = _logsumexp(base[:, cold]) - _logsumexp(base[:, ~cold])

    def share(bias: float) -> float:
        return float(expit(bias + gap).mean())

    finite = base[np.isfinite(base)]
    spread = float(finite.max() - finite.min()) + 50.0 if finite.size else 50.0
    lo, hi = -spread, spread  # the bias that matters lies within the spread of the scores
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if share(mid) < target else (lo, mid)
    j = fusion.names.index("cold")
    weights = fusion.weights.copy()
    weights[j] += (lo + hi) / 2 * fusion.scale[j]
    log.info("cold items: calibrated to %.4f of the softmax mass (their share of validation positives)", target)
    return Fusion(fusion.names, weights, fusion.scale, fusion.kind, fusion.decision)


def _logsumexp(s: np.ndarray) -> np.ndarray:
    """Per-row log-sum-exp in float64 (-inf for a row with no finite entry)."""
    top = s.max(axis=1, initial=-np.inf)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(s - safe[:, None].astype(s.dtype), dtype=np.float64).sum(axis=1)) + safe


def _fit_sample(truth: sp.csr_matrix, config: HybridConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Users and items of the fusion fit, and the items' log-weights (how many catalogue items
    each sampled item stands for): every validation positive of the sampled users plus a uniform
    sample of the other items above ``max_fit_items``."""
    rng = np.random.default_rng(config.seed)
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    if len(users) > config.max_fit_users:
        users = np.sort(rng.choice(users, config.max_fit_users, replace=False))
    n = truth.shape[1]
    if n <= config.max_fit_items:
        return users, np.arange(n), None
    positive = np.unique(truth[users].indices)
    others = np.setdiff1d(np.arange(n), positive)
    sample = np.sort(rng.choice(others, min(config.max_fit_items, len(others)), replace=False))
    log_weight = np.concatenate([np.zeros(len(positive)), np.full(len(sample), np.log(len(others) / len(sample)))])
    return users, np.concatenate([positive, sample]), log_weight.astype(np.float32)


def feature_names(views: FeatureViews, config: HybridConfig) -> tuple[str, ...]:
    """The fusion's features among ``views``: ``config.features``, or every available one but ``OFF_BY_DEFAULT``."""
    wanted = config.features
    if wanted is None:
        return tuple(n for n in views.names if n not in OFF_BY_DEFAULT)
    return tuple(n for n in views.names if n in wanted)


def default_fusion(views: FeatureViews, config: HybridConfig) -> Fusion:
    """Default weights (no validation slice): ``DEFAULT_WEIGHTS`` at the data's own feature scales."""
    names = feature_names(views, config)
    rng = np.random.default_rng(config.seed)
    users = np.flatnonzero(np.diff(views.history.indptr) > 0)
    users = np.sort(rng.choice(users, min(256, len(users)), replace=False)) if len(users) else users
    n_items = views.history.shape[1]
    items = np.sort(rng.choice(n_items, min(2000, n_items), replace=False))
    sample = views.features(users, np.broadcast_to(items, (len(users), len(items))), names) \
        if len(users) else np.zeros((1, 1, len(names)), np.float32)
    if len(names):
        log.warning("fusion: default weights (%s)", ", ".join(n for n in names if n in DEFAULT_WEIGHTS))
    fusion = Fusion.default(names, sample, DEFAULT_WEIGHTS)
    if BOOST_FEATURE in names and config.language_boost:
        fusion = fusion.with_raw_weight(BOOST_FEATURE, config.language_boost)
    return fusion
