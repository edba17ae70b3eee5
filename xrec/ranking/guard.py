"""The fusion's guard: a hybrid never ships a fusion that validates worse than its own parts.

The learned fusion is a softmax fit of many weights; on a small catalogue it can fit noise (a
negative content weight on a catalogue whose readers follow topics). So before a fusion ships,
:func:`guard_fusion` ranks the validation users' whole catalogue with each candidate:

* the fusion itself (``learned``, or the ``default`` weights),
* each simple part alone (:data:`PARTS`: content similarity to the history, lexical similarity,
  CF, popularity), and the text alone (content and lexical together, :data:`TEXT`),
* the fusion shrunk toward content or lexical evidence (``learned+content x4``: the part's score, scaled to the
  fusion's spread, added ``gamma`` times),

and ships the one of best validation NDCG@10 where it beats the fusion by more than
:data:`MARGIN` standard errors of the paired per-user difference (small catalogues validate on a
few dozen users: a switch on noise would cost as often as it pays). Of a blend and a part alone
that validation cannot tell apart, the part ships (:func:`_simplest_equal`). A learned fusion is
judged on users it was not fitted on (two folds of the validation users, each scored by the fusion
fitted on the other), so a fit that only memorised its slice loses to the parts it should have
beaten. A catalogue with few validation users is validated on several random slices
(:func:`~xrec.ranking.training.guard_slices`), each user's figures averaged over them. The
decision and every candidate's figure go into :attr:`Fusion.decision` (saved with the ranker,
logged, shown by ``xrec recommend`` and ``xrec fit``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from xrec.ranking.fusion import Fusion
from xrec.ranking.views import FeatureViews

log = logging.getLogger(__name__)

#: The ranker's simple parts: which features make each (raw weight 1 each), the first that exists.
PARTS: dict[str, tuple[Callable[[str], bool], ...]] = {
    "content": (lambda n: n in ("content", "cold_content"),),
    # the exact TF-IDF cosine with the user's lexical profile; without texts kept, the n-gram graph
    "lexical": (lambda n: n in ("lexical_terms", "cold_lexical_terms"),
                lambda n: n == "lexical" or n.startswith("lexical_")),
    "cf": (lambda n: n == "cf",),
    "popularity": (lambda n: n == "popularity",),
}
#: The content and lexical parts together, each at unit spread (a candidate, not one of the ranker's parts).
TEXT = "content+lexical"
#: How much of a part's (spread-matched) score is added to the fusion in a shrunk candidate.
SHRINK = (1.0, 4.0)
#: The parts a fusion is shrunk toward (the evidence that carries a small catalogue).
SHRUNK_TOWARD = ("content", "lexical")
#: Validation users scored per fold (a sample where there are more).
MAX_GUARD_USERS = 400
#: A candidate replaces the fusion only when better by this many standard errors (paired, per user).
MARGIN = 1.0
K = 10


@dataclass
class Candidate:
    """A named recipe: ``fusion`` (None: the part alone) plus ``gamma`` times the part."""

    name: str
    part: str | None
    gamma: float


def candidates(parts: Sequence[str], base: str) -> list[Candidate]:
    """The fusion, each part alone and the fusion shrunk toward each part."""
    out = [Candidate(base, None, 0.0)]
    out += [Candidate(p, p, float("inf")) for p in parts]
    out += [Candidate(f"{base}+{p} x{g:g}", p, g) for p in parts if p in SHRUNK_TOWARD for g in SHRINK]
    return out


def part_weights(names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Raw weights of each part present among the fusion's feature ``names``."""
    out = {}
    for part, members in PARTS.items():
        for member in members:
            weights = {n: 1.0 for n in names if member(n)}
            if weights:
                out[part] = weights
                break
    return out


def recipe(fusion: Fusion, candidate: Candidate, parts: Mapping[str, Mapping[str, float]],
           spread: Callable[[Mapping[str, float]], float]) -> dict[str, float]:
    """Raw weights of ``candidate`` built on ``fusion``; ``spread`` measures a score's spread."""
    raw = fusion.raw
    if candidate.part is None:
        return raw
    part = parts[candidate.part]
    unit = spread(raw) / max(spread(part), 1e-12)
    if np.isinf(candidate.gamma):
        return {n: part.get(n, 0.0) * unit for n in fusion.names}
    return {n: raw.get(n, 0.0) + candidate.gamma * unit * part.get(n, 0.0) for n in fusion.names}


def ndcg_at_k(scores: np.ndarray, truth: sp.csr_matrix, k: int = K) -> np.ndarray:
    """Per-row NDCG@k of dense ``scores`` (seen items already -inf) against binary ``truth`` rows."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable"), 1)
    hits = np.asarray(truth[np.arange(truth.shape[0])[:, None], order].todense()) > 0  # pyright: ignore[reportAttributeAccessIssue]
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discount).sum(axis=1)
    n_pos = np.minimum(np.diff(truth.indptr), k)
    ideal = np.cumsum(discount)[np.maximum(n_pos - 1, 0)]
    return np.where(n_pos > 0, dcg / ideal, 0.0)


def candidate_ndcg(views: FeatureViews, base: Fusion, options: Sequence[Candidate],
                   parts: Mapping[str, Mapping[str, float]], spread: Callable[[Mapping[str, float]], float],
                   users: np.ndarray, truth: sp.csr_matrix, seen: sp.csr_matrix, batch: int = 100,
                   unknowable: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-user NDCG@10 of every candidate built on ``base``, over the whole catalogue of ``views``.

    Candidates are linear in the fusion's and the parts' scores, so each of those is scored once per
    batch of users and the candidates are combined from them."""
    raw = base.raw
    folded = {None: views.fold(raw), **{p: views.fold(w) for p, w in parts.items()}}
    unit = {p: spread(raw) / max(spread(w), 1e-12) for p, w in parts.items()}
    out: dict[str, list[np.ndarray]] = {c.name: [] for c in options}
    for s in range(0, len(users), batch):
        rows = users[s:s + batch]
        seen_at = seen[rows].nonzero()
        scores = {key: f.scores(rows) for key, f in folded.items()}
        for c in options:
            if c.part is None:
                mixed = scores[None].copy()
            elif np.isinf(c.gamma):
                mixed = scores[c.part] * np.float32(unit[c.part])
            else:
                mixed = scores[None] + np.float32(c.gamma * unit[c.part]) * scores[c.part]
            mixed[seen_at] = -np.inf
            if unknowable is not None:
                mixed[:, unknowable] = -np.inf
            out[c.name].append(ndcg_at_k(mixed, truth[rows]))
    return {name: np.concatenate(v) if v else np.zeros(0) for name, v in out.items()}


@dataclass
class GuardRun:
    """One validation slice's evidence for the guard.

    ``views`` are the validation ranker's features, ``truth`` its held-out positives, ``seen`` its
    training interactions (rows: the catalogue's users, the same in every run). ``refit(users)``
    fits the fusion on validation users ``users`` only; with it the fusion's candidates are scored
    by cross-fitting (two folds), without it (fixed default weights) on every validation user.
    ``unknowable`` items (no interaction anywhere in the training data: validation can say nothing
    about them) are left out of the rankings."""

    views: FeatureViews
    fusion: Fusion
    truth: sp.csr_matrix
    seen: sp.csr_matrix
    spread: Callable[[Mapping[str, float]], float]
    refit: Callable[[np.ndarray], Fusion] | None = None
    unknowable: np.ndarray | None = None


def _run_ndcg(run: GuardRun, options: Sequence[Candidate], parts: Mapping[str, Mapping[str, float]],
              rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray], bool]:
    """``(users, per-user NDCG@10 of each candidate, cross-fitted)`` of one validation run."""
    users = np.flatnonzero(np.diff(run.truth.indptr) > 0)
    if len(users) > 2 * MAX_GUARD_USERS:
        users = np.sort(rng.choice(users, 2 * MAX_GUARD_USERS, replace=False))
    if run.refit is not None and len(users) >= 4:
        fold = rng.permutation(len(users)) % 2
        bases = [(users[fold == f], run.refit(np.setdiff1d(users, users[fold == f]))) for f in (0, 1)]
    else:
        bases = [(users, run.fusion)]
    unknowable = run.unknowable if run.unknowable is not None and run.unknowable.any() else None
    scored = [candidate_ndcg(run.views, base, options, parts, run.spread, eval_users, run.truth, run.seen,
                             unknowable=unknowable) for eval_users, base in bases]
    order = np.concatenate([eval_users for eval_users, _ in bases])
    return order, {c.name: np.concatenate([fold[c.name] for fold in scored]) for c in options}, len(bases) == 2


def per_user_mean(runs: Sequence[tuple[np.ndarray, dict[str, np.ndarray], bool]]) -> dict[str, np.ndarray]:
    """Each candidate's NDCG@10 per user, averaged over the runs that validated the user."""
    users = np.unique(np.concatenate([r[0] for r in runs]))
    names = list(runs[0][1])
    total = {n: np.zeros(len(users)) for n in names}
    count = np.zeros(len(users))
    for order, figures, _ in runs:
        at = np.searchsorted(users, order)
        np.add.at(count, at, 1.0)
        for n in names:
            np.add.at(total[n], at, figures[n])
    return {n: total[n] / count for n in names}


def _clearly_better(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether per-user figures ``a`` beat ``b`` by more than :data:`MARGIN` paired standard errors."""
    diff = a - b
    return bool(diff.mean() > MARGIN * diff.std(ddof=1) / np.sqrt(max(len(diff), 1)))


def _simplest_equal(best: Candidate, reference: Candidate, options: Sequence[Candidate],
                    figures: Mapping[str, float], per_user: Mapping[str, np.ndarray]) -> Candidate:
    """A blend (the fusion shrunk toward a part) that beat the fusion, where a part alone validates
    better than the fusion too, ships only if it also beats that part clearly; else the part does
    (of two candidates validation cannot tell apart, the simpler)."""
    if best.part is None or np.isinf(best.gamma):
        return best
    simple = max((c for c in options if np.isinf(c.gamma)), key=lambda c: figures[c.name])
    if figures[simple.name] > figures[reference.name] and not _clearly_better(per_user[best.name],
                                                                              per_user[simple.name]):
        return simple
    return best


def guard_fusion(runs: Sequence[GuardRun], *, seed: int = 0) -> Fusion:
    """The first run's fusion, or the candidate (module docstring) of best validation NDCG@10, with
    the decision. Several runs (validation slices of one catalogue) are pooled: each user's NDCG is
    averaged over the runs that validated them."""
    fusion = runs[0].fusion
    parts = part_weights(fusion.names)
    if "content" in parts and "lexical" in parts:  # the text alone: meaning and surface, at equal spread
        spread = runs[0].spread
        parts[TEXT] = {**{n: w / max(spread(parts["content"]), 1e-12) for n, w in parts["content"].items()},
                       **{n: w / max(spread(parts["lexical"]), 1e-12) for n, w in parts["lexical"].items()}}
    if not parts or not any(run.truth.nnz for run in runs):
        return fusion
    rng = np.random.default_rng(seed)
    options = candidates(list(parts), fusion.kind)
    scored = [_run_ndcg(run, options, parts, rng) for run in runs if run.truth.nnz]
    per_user = per_user_mean(scored)
    users = len(per_user[options[0].name])
    figures = {name: float(v.mean()) for name, v in per_user.items()}
    # what stands unless beaten clearly: a fitted fusion; default weights (fitted on another
    # catalogue, no evidence from this one) only stand where no part validates better
    crossed = all(r[2] for r in scored)
    reference = options[0] if crossed else max(
        [options[0], *(c for c in options if np.isinf(c.gamma))], key=lambda c: figures[c.name])
    best = max(options, key=lambda c: figures[c.name])  # ties: the first, the fusion itself
    if not _clearly_better(per_user[best.name], per_user[reference.name]):
        best = reference
    best = _simplest_equal(best, reference, options, figures, per_user)
    chosen = Fusion.from_raw(fusion.names, recipe(fusion, best, parts, runs[0].spread), fusion.scale,
                             kind=fusion.kind if best.part is None else best.name)
    chosen.decision = {"chosen": best.name, "validation_users": users, "validation_slices": len(scored),
                       "cross_fitted": crossed, "metric": "ndcg@10",
                       "validation": {k: round(v, 5) for k, v in figures.items()}}
    shown = ", ".join(f"{n} {figures[n]:.4f}" for n in [fusion.kind, *parts])
    log.info("fusion: %s chosen on %d validation users, %d slice%s (NDCG@10 %.4f; %s)", best.name, users,
             len(scored), "" if len(scored) == 1 else "s", figures[best.name], shown)
    return chosen
