"""The ranker as ``xrec serve`` uses it: every call into :class:`HybridRanker` lives here.

Only the ranker's public ``load`` and ``recommend`` are used, plus its user id map to tell an
unknown user (404) from a known one; recommendations for an ad-hoc history of item ids come from
:func:`recommend_history`, one function over the index, so both can be re-pointed in one place.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from xrec.index.vector_index import VectorIndex
from xrec.ranking.config import COMPONENTS as RANKER_COMPONENTS

COMPONENTS = (*RANKER_COMPONENTS, "popularity")


def load_ranker(path: str | os.PathLike[str], encoder_fingerprint: str | None) -> Any:
    """A saved :class:`~xrec.ranking.hybrid.HybridRanker` (refused if made for another encoder)."""
    from xrec.ranking.hybrid import HybridRanker

    return HybridRanker.load(path, encoder_fingerprint=encoder_fingerprint)


def knows_user(ranker: Any, user_id: Any) -> bool:
    """True when ``user_id`` is one of the ranker's users."""
    return bool(ranker.users.index([user_id])[0] >= 0)


def example_users(ranker: Any, n: int = 20) -> list[Any]:
    """A few user ids (for the page's user picker)."""
    return ranker.users.ids.head(n).to_list()


def recommend_user(ranker: Any, user_id: Any, k: int, keep: Callable[[Any], bool] | None = None,
                   catalogue: int | None = None) -> list[dict]:
    """Top-``k`` items of a known user with their component scores; ``keep`` filters items.

    With a filter, the ranker is asked for more items (4x, growing) until ``k`` pass it or the
    whole catalogue has been ranked."""
    want = k
    while True:
        frame = ranker.recommend([user_id], k=want)
        rows = [r for r in frame.iter_rows(named=True) if keep is None or keep(r["item_id"])]
        if len(rows) >= k or len(frame) < want or keep is None or (catalogue and want >= catalogue):
            break
        want = min(want * 4, catalogue or want * 4)
    out = []
    for row in rows[:k]:
        hit = {"id": row["item_id"], "score": _finite(row["score"])}
        hit.update({c: _finite(row[c]) for c in COMPONENTS if c in row})
        out.append(hit)
    return out


def recommend_history(index: VectorIndex, history: Sequence[Any], k: int, *,
                      languages: Sequence[str] | None = None,
                      exclude_languages: Sequence[str] | None = None) -> tuple[list[Any], list[float]]:
    """Items nearest the content profile of an ad-hoc ``history`` (oldest first), history excluded.

    The profile is the mean of the history items' vectors, later items weighted more (weight
    1..n), normalised; items in ``history`` are never returned."""
    vectors = index.vectors_of(list(history))
    weights = np.arange(1, len(history) + 1, dtype=np.float32)[:, None]
    profile = (vectors * weights).sum(axis=0)
    profile /= max(float(np.linalg.norm(profile)), 1e-12)
    ids, scores = index.search(profile[None, :], k, languages=languages,
                               exclude_languages=exclude_languages, exclude_ids=list(history))
    keep = np.isfinite(scores[0])
    return [_plain(i) for i in ids[0][keep]], [float(s) for s in scores[0][keep]]


def _finite(value: Any) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
