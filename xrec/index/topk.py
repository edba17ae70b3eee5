"""Top-k results and the exact top-k kernel.

:class:`TopK` is the one result type of every top-k call in xrec: :meth:`VectorIndex.search
<xrec.index.vector_index.VectorIndex.search>`, :func:`~xrec.index.neighbours.search_by_language`,
the ranker's :meth:`~xrec.ranking.hybrid.HybridRanker.recommend_rows` and
:meth:`~xrec.ranking.hybrid.HybridRanker.rerank_rows`, and the kernel :func:`top_k` itself. It
unpacks like an ``(ids, scores)`` tuple (``ids, scores = index.search(...)``, ``result[0]``).

Every exact search in xrec selects its results with :func:`top_k` (the index's exact and fallback
searches, the retrieval benchmark's numpy peer, the evaluation's top items, the ranker): an
``argpartition`` that isolates the ``k`` largest columns without sorting the rest, then a stable
sort of those ``k``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

__all__ = ["TopK", "top_k"]


@dataclass
class TopK:
    """The best ``k`` per query row, best first.

    ``ids`` ``[b, k]``: what was found (index: item ids, padding ``-1`` or ``None``; ranker: item
    rows of the catalogue, padding ``-1``; :func:`top_k`: columns). ``scores`` ``[b, k]``
    (``-inf`` at padding). ``components``: named per-item parts of the score, each ``[b, k]``
    (NaN at padding), where the caller computes them (the ranker), else empty.

    ``ids, scores = result`` and ``result[0]``, ``result[1]`` work as with a tuple."""

    ids: np.ndarray
    scores: np.ndarray
    components: dict[str, np.ndarray] = field(default_factory=dict)

    def __iter__(self) -> Iterator[np.ndarray]:
        yield self.ids
        yield self.scores

    def __getitem__(self, i: int) -> np.ndarray:
        return (self.ids, self.scores)[i]


def top_k(scores: np.ndarray, k: int) -> TopK:
    """Per row of ``scores`` ``[b, n]`` the columns of its ``min(k, n)`` largest values and those
    values, best first: :class:`TopK` with ``ids`` the columns (``int64``) and ``scores`` the
    values, each ``[b, min(k, n)]``.

    Equal scores keep no particular order; ``-inf`` scores (masked columns) sort last, so a
    caller tells padding by ``np.isneginf(result.scores)``.
    """
    b, n = scores.shape
    take = min(int(k), n)
    if take <= 0:
        return TopK(np.empty((b, 0), dtype=np.int64), np.empty((b, 0), dtype=scores.dtype))
    if take < n:  # partition on the scores themselves (no negated copy of a [b, n] block)
        cols = np.argpartition(scores, n - take, axis=1)[:, n - take:]
    else:
        cols = np.broadcast_to(np.arange(n), scores.shape)
    picked = np.take_along_axis(scores, cols, axis=1)
    order = np.argsort(-picked, axis=1, kind="stable")
    return TopK(np.take_along_axis(cols, order, axis=1).astype(np.int64, copy=False),
                np.take_along_axis(picked, order, axis=1))
