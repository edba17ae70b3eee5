"""The exact top-k kernel: the ``k`` largest scores of each row, best first.

Every exact search in xrec selects its results here (the index's exact and fallback searches, the
retrieval benchmark's numpy peer, the evaluation's top items): an ``argpartition`` that isolates
the ``k`` largest columns without sorting the rest, then a stable sort of those ``k``.
"""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(columns, top_scores)``, each ``[b, min(k, n)]``: per row of ``scores`` ``[b, n]`` the
    columns of its ``min(k, n)`` largest values and those values, best first.

    Equal scores keep no particular order; ``-inf`` scores (masked columns) sort last, so a
    caller tells padding by ``np.isneginf(top_scores)``.
    """
    b, n = scores.shape
    take = min(int(k), n)
    if take <= 0:
        return np.empty((b, 0), dtype=np.int64), np.empty((b, 0), dtype=scores.dtype)
    if take < n:  # partition on the scores themselves (no negated copy of a [b, n] block)
        cols = np.argpartition(scores, n - take, axis=1)[:, n - take:]
    else:
        cols = np.broadcast_to(np.arange(n), scores.shape)
    picked = np.take_along_axis(scores, cols, axis=1)
    order = np.argsort(-picked, axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1).astype(np.int64, copy=False), \
        np.take_along_axis(picked, order, axis=1)
