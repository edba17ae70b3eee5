"""Re-ranking candidates from another model (your own recommender's top-N) with the hybrid's score.

The candidates are a polars frame ``user_id, item_id[, score]`` (``score``: the upstream model's
score, higher is better), or ragged item-id lists aligned with ``user_ids``. They are checked
and turned into a padded ``[users, max candidates]`` array of item indices
(:func:`prepare_candidates`), then scored by the ranker's own fused score
(:meth:`~xrec.ranking.HybridRanker.rerank_rows`, the same :class:`~xrec.ranking.views.Folded`
scoring as ``recommend``, on the candidate items only).

Rules (each has a test):

* A ``user_id`` or ``item_id`` the ranker does not know: ``on_unknown="drop"`` (default) drops the
  row, counts it in the :class:`RerankReport` and logs a warning with examples;
  ``on_unknown="error"`` raises :class:`~xrec.errors.DataError` naming the first such row.
  A user the ranker knows but who has no history is scored all the same (their score is the
  popularity and cold-item terms: the candidates come out by popularity).
* A repeated ``(user_id, item_id)`` pair, a null id, a non-numeric ``score`` or a NaN/infinite
  score: :class:`DataError` naming the row.
* Items the user interacted with in the ranker's data are dropped (``exclude_seen=True``,
  counted) unless ``exclude_seen=False``.
* A user (of ``user_ids``, or a known user of the frame) with no candidate left (none given, or
  all dropped) gets no row in the result and is counted in ``users_without_candidates``. An empty
  candidate frame gives an empty result.
* ``k=None`` keeps every candidate, re-ordered; ``k`` keeps the best ``k`` of each list (fewer
  when the list is shorter).

The upstream score enters only when ``upstream_weight`` is not 0 (default 0: the hybrid's own order
of the candidates): within each user's list it is standardised (mean 0, standard deviation 1),
rescaled to the standard deviation of the hybrid's scores of that list, multiplied by
``upstream_weight`` and added to the hybrid score (``upstream_weight=1`` gives both orders an
equal say; it is reported as the ``upstream_score`` component).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from xrec.errors import DataError
from xrec.index.topk import TopK
from xrec.ranking.config import COMPONENTS

if TYPE_CHECKING:
    from xrec.ranking.fitted import FittedRanker

log = logging.getLogger(__name__)

ON_UNKNOWN = ("drop", "error")


@dataclass
class RerankReport:
    """What candidate validation found and did."""

    rows_in: int = 0
    rows_out: int = 0
    unknown_users: int = 0  #: rows naming a user the ranker does not know (dropped)
    unknown_items: int = 0  #: rows naming an item outside the ranker's catalogue (dropped)
    seen: int = 0  #: rows naming an item the user already interacted with (dropped with exclude_seen)
    users_without_candidates: int = 0  #: requested users left with no candidate
    language_filtered: int = 0  #: candidates dropped by a language filter of the call
    retired: int = 0  #: candidates naming an item taken out with ``remove_items`` (dropped)
    examples: dict[str, list] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.rows_in} candidate rows in, {self.rows_out} ranked; dropped {self.unknown_users} naming "
                f"unknown users, {self.unknown_items} naming unknown items, {self.seen} already seen, "
                f"{self.retired} removed from the catalogue; "
                f"{self.users_without_candidates} users without candidates")


@dataclass
class Candidates:
    """Checked candidates: users in output order and their padded item indices."""

    user_ids: pl.Series  #: users with at least one candidate, in output order
    rows: np.ndarray  #: ``[b]`` the users' rows in the ranker
    items: np.ndarray  #: ``[b, c]`` item indices, -1 = padding
    upstream: np.ndarray | None  #: ``[b, c]`` upstream scores (NaN = padding), None without ``score``


def as_frame(user_ids: Sequence | np.ndarray | pl.Series | None, candidates) -> pl.DataFrame:
    """The candidates as a frame: a frame as is; ragged item-id lists (one per user of
    ``user_ids``) as ``user_id, item_id`` rows."""
    if isinstance(candidates, pl.DataFrame):
        return candidates
    if user_ids is None:
        raise DataError("candidates given as item-id lists need user_ids (one list per user)")
    lists = list(candidates)
    users = pl.Series("user_id", user_ids)
    if len(lists) != len(users):
        raise DataError(f"{len(lists)} candidate lists for {len(users)} users: one list per user")
    lengths = [len(x) for x in lists]
    flat = [item for x in lists for item in x]
    return pl.DataFrame({"user_id": users.gather(np.repeat(np.arange(len(users)), lengths)),
                         "item_id": pl.Series("item_id", flat)})


def _first(frame: pl.DataFrame, mask: pl.Series) -> str:
    row = int(mask.arg_true()[0])
    values = frame.row(row, named=True)
    shown = {k: values[k] for k in ("user_id", "item_id", "score") if k in values}
    return f"candidates row {row} ({shown})"


def prepare_candidates(ranker, user_ids: Sequence | np.ndarray | pl.Series | None, candidates, *,
                       on_unknown: str = "drop", exclude_seen: bool = True) -> tuple[Candidates, RerankReport]:
    """Check ``candidates`` against ``ranker`` (module docstring) and pad them per user.

    ``user_ids`` (None: every user of the frame, in order of first appearance) selects and orders
    the users."""
    if on_unknown not in ON_UNKNOWN:
        raise DataError(f"on_unknown={on_unknown!r}: use one of {ON_UNKNOWN}")
    frame = as_frame(user_ids, candidates)
    missing = [c for c in ("user_id", "item_id") if c not in frame.columns]
    if missing:
        raise DataError(f"candidates: missing column(s) {missing} (columns: {frame.columns}); "
                        "expected user_id, item_id[, score]")
    has_score = "score" in frame.columns
    frame = frame.select("user_id", "item_id", *(["score"] if has_score else []))
    report = RerankReport(rows_in=frame.height)
    for col in ("user_id", "item_id"):
        if frame[col].null_count():
            raise DataError(f"{_first(frame, frame[col].is_null())}: {col} is null")
    if has_score:
        if not frame["score"].dtype.is_numeric():
            raise DataError(f"candidates: score column is {frame['score'].dtype}, expected numbers")
        score = frame["score"].cast(pl.Float64)
        bad = score.is_null() | ~score.fill_null(0.0).is_finite()
        if bad.any():
            raise DataError(f"{_first(frame, bad)}: score is null, NaN or infinite; give every candidate "
                            "a finite score or leave the score column out")
        frame = frame.with_columns(score)
    dup = ~frame.select(pl.struct("user_id", "item_id").is_first_distinct()).to_series()
    if dup.any():
        raise DataError(f"{_first(frame, dup)}: duplicate candidate (the same user and item twice)")
    given = None if user_ids is None else pl.Series("user_id", user_ids)
    if given is not None:
        if given.is_duplicated().any():
            raise DataError(f"user_ids: duplicate user_id {given.filter(given.is_duplicated())[0]!r}")
        position = IdIndex(given)
        pos = position.index(frame["user_id"])
        frame = frame.filter(pl.Series(pos >= 0))
        report.rows_in = frame.height
    rows = ranker.users.index(frame["user_id"])
    # without user_ids: the known users of the frame (unknown ones are counted as such)
    order = given if given is not None else frame["user_id"].filter(pl.Series(rows >= 0)).unique(maintain_order=True)
    cols = ranker.items.index(frame["item_id"])
    for what, idx in (("users", rows), ("items", cols)):
        bad = idx < 0
        if not bad.any():
            continue
        if on_unknown == "error":
            raise DataError(f"{_first(frame, pl.Series(bad))}: {what[:-1]} not known to the ranker "
                            f"({int(bad.sum())} such rows); pass on_unknown='drop' to drop them")
        column = "user_id" if what == "users" else "item_id"
        setattr(report, f"unknown_{what}", int(bad.sum()))
        report.examples[f"unknown_{what}"] = frame.filter(pl.Series(bad))[column].unique(
            maintain_order=True).head(5).to_list()
    keep = (rows >= 0) & (cols >= 0)
    if exclude_seen and keep.any():
        seen = np.zeros(len(rows), dtype=bool)
        seen[keep] = np.asarray(ranker.history[rows[keep], cols[keep]]).ravel() != 0
        report.seen = int(seen.sum())
        keep &= ~seen
    frame = frame.with_columns(pl.Series("__row", rows), pl.Series("__col", cols)).filter(pl.Series(keep))
    frame = frame.with_columns(pl.Series("__user", IdIndex(order).index(frame["user_id"])))
    frame = frame.with_row_index("__seq").sort(["__user", "__seq"])
    report.rows_out = frame.height
    user_pos = frame["__user"].to_numpy()
    present, starts, counts = np.unique(user_pos, return_index=True, return_counts=True)
    report.users_without_candidates = len(order) - len(present)
    if report.unknown_users or report.unknown_items or report.users_without_candidates:
        log.warning("rerank: %s%s", report.summary(),
                    f" (e.g. {report.examples})" if report.examples else "")
    width = int(counts.max()) if len(counts) else 0
    slot = np.arange(len(user_pos)) - np.repeat(starts, counts)
    line = np.repeat(np.arange(len(present)), counts)
    items = np.full((len(present), width), -1, dtype=np.int64)
    items[line, slot] = frame["__col"].to_numpy()
    upstream = None
    if has_score:
        upstream = np.full((len(present), width), np.nan, dtype=np.float64)
        upstream[line, slot] = frame["score"].to_numpy()
    user_rows = frame["__row"].to_numpy()[starts] if len(starts) else np.zeros(0, dtype=np.int64)
    return Candidates(order.gather(present), user_rows.astype(np.int64), items, upstream), report


class IdIndex:
    """Positions of ids in a series (-1 where absent), by a join that keeps the query's order."""

    def __init__(self, ids: pl.Series):
        self.frame = pl.DataFrame({"__id": ids, "__pos": np.arange(len(ids), dtype=np.int64)})

    def index(self, ids: pl.Series) -> np.ndarray:
        query = pl.Series("__id", ids)
        if query.dtype != self.frame["__id"].dtype:
            try:
                query = query.cast(self.frame["__id"].dtype)
            except Exception:
                return np.full(len(query), -1, dtype=np.int64)
        out = query.to_frame().join(self.frame, on="__id", how="left", maintain_order="left")["__pos"]
        return out.fill_null(-1).to_numpy().astype(np.int64, copy=False)


def upstream_term(hybrid: np.ndarray, upstream: np.ndarray, valid: np.ndarray, weight: float) -> np.ndarray:
    """``weight`` x the upstream score standardised within each row, rescaled to the standard
    deviation of the row's hybrid scores (module docstring); 0 where ``valid`` is False."""
    n = np.maximum(valid.sum(axis=1, keepdims=True), 1)

    def standardised(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.where(valid, x, 0.0).astype(np.float64)
        mean = x.sum(axis=1, keepdims=True) / n
        std = np.sqrt((np.where(valid, x - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / n)
        return np.where(valid & (std > 0), (x - mean) / np.where(std > 0, std, 1.0), 0.0), std

    z, _ = standardised(upstream)
    _, spread = standardised(hybrid)
    return (weight * spread * z).astype(np.float32)


def rerank_rows(ranker: FittedRanker, rows: np.ndarray, items: np.ndarray, k: int | None = None, *,
                upstream: np.ndarray | None = None, upstream_weight: float = 0.0,
                components: bool = True) -> TopK:
    """:meth:`HybridRanker.rerank_rows`."""
    rows = np.asarray(rows, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    valid = items >= 0
    safe = np.where(valid, items, 0)
    scores = ranker.score_items(rows, safe) if items.size else np.zeros(items.shape, np.float32)
    extra = None
    if upstream is not None and upstream_weight != 0:
        extra = upstream_term(scores, upstream, valid, upstream_weight)
        scores = scores + extra
    scores = np.where(valid, scores, -np.inf).astype(np.float32)
    kk = items.shape[1] if k is None else min(k, items.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :kk]
    top_items = np.take_along_axis(items, order, 1)
    top_scores = np.take_along_axis(scores, order, 1)
    pad = top_items < 0
    top_scores[pad] = -np.inf
    comps: dict[str, np.ndarray] = {}
    if components:
        safe_top = np.where(pad, 0, top_items)
        comps = ranker.components(rows, safe_top) if top_items.size else \
            {n: np.zeros(top_items.shape, np.float32) for n in COMPONENTS}
        if extra is not None:
            comps["upstream_score"] = np.take_along_axis(extra, order, 1)
        comps["popularity"] = ranker.popularity[safe_top].copy()
        for v in comps.values():
            v[pad] = np.nan
    return TopK(top_items, top_scores, comps)


def rerank(ranker: FittedRanker, user_ids: Sequence | np.ndarray | pl.Series | None, candidates,
           k: int | None = None, *, on_unknown: str = "drop", exclude_seen: bool = True, upstream_weight: float = 0.0,
           explain: int = 0, return_report: bool = False, languages: Sequence[str] | None = None,
           exclude_languages: Sequence[str] | None = None, language_policy: str = "any"):
    """:meth:`HybridRanker.rerank`."""
    from xrec.ranking.results import to_frame

    if k is not None and k < 1:
        raise DataError(f"k={k}: must be at least 1 (or None for every candidate)")
    cand, report = prepare_candidates(ranker, user_ids, candidates, on_unknown=on_unknown,
                                      exclude_seen=exclude_seen)
    if ranker.retired.any() and cand.items.size:
        retired = (cand.items >= 0) & ranker.retired[np.maximum(cand.items, 0)]
        report.retired = int(retired.sum())
        cand.items = np.where(retired, -1, cand.items)
    allowed = ranker.language_mask(cand.rows, languages=languages, exclude_languages=exclude_languages,
                                   language_policy=language_policy)
    if allowed is not None and cand.items.size:
        valid = cand.items >= 0
        ok = np.take_along_axis(np.broadcast_to(allowed, (len(cand.rows), len(ranker.items))),
                                np.where(valid, cand.items, 0), 1)
        report.language_filtered = int((valid & ~ok).sum())
        cand.items = np.where(ok, cand.items, -1)
    recs = rerank_rows(ranker, cand.rows, cand.items, k, upstream=cand.upstream, upstream_weight=upstream_weight)
    frame = to_frame(cand.user_ids, recs.ids, recs.scores, recs.components, ranker.items)
    if explain:
        frame = ranker.explain(frame, explain)
    return (frame, report) if return_report else frame
