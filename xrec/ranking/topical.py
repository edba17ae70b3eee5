"""Item topics in the hybrid ranker: tags aligned to the catalogue, the user-topic affinity views,
and the topic filter.

Tags come as a table ``item_id, topic[, topic_score]`` (what :func:`xrec.topics.tagging.tag_items`
writes); items without a row, or with a null topic, have no topic (code -1).

The affinity of user ``u`` for topic ``t`` is the log of the user's smoothed share of ``t`` in
their history over the share of ``t`` in all histories:
``log((n_ut + alpha * p_t) / (n_u + alpha) / p_t)``, with ``alpha`` = :data:`AFFINITY_PRIOR`
pseudo-interactions; users without history have affinity 0 for every topic. An item's view is its
topic one-hot scaled by its ``topic_score``, so the ``topic`` feature of the fusion is the user's
affinity for the item's topic, weighed by how sure the tag is (``cold_topic``: the same for
cold items).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import scipy.sparse as sp

from xrec.errors import DataError

if TYPE_CHECKING:
    from xrec.catalogue.interactions import IdMap
    from xrec.ranking.content_graphs import ContentGraphs

#: Pseudo-interactions of the global topic shares added to each user's history.
AFFINITY_PRIOR = 5.0
#: ``diversity_by`` values of :meth:`HybridRanker.recommend`.
DIVERSITY_BY = ("works", "topics")


def aligned_topics(items: IdMap, topics: pl.DataFrame, source: str = "topics"
                   ) -> tuple[list[str | None], list[float | None]]:
    """``(topic, topic_score)`` per catalogue item (catalogue order) from a tags table
    ``item_id, topic[, topic_score]``. A missing column, an id outside the catalogue, an id twice
    or a ``topic_score`` outside [0, 1] is a :class:`DataError` naming the column."""
    if not isinstance(topics, pl.DataFrame):
        raise DataError(f"{source}: expected a table (polars DataFrame) with item_id, topic[, topic_score], "
                        f"got {type(topics).__name__}")
    missing = [c for c in ("item_id", "topic") if c not in topics.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; has {topics.columns}")
    ids = topics["item_id"]
    if len(ids) and ids.dtype != items.ids.dtype:
        try:
            ids = ids.cast(items.ids.dtype, strict=True)
        except Exception as exc:
            raise DataError(f"{source}: item_id is {ids.dtype}, the catalogue's {items.ids.dtype}") from exc
    where = items.index(ids)
    if (where < 0).any():
        bad = np.flatnonzero(where < 0)
        raise DataError(f"{source}: item_id {ids[int(bad[0])]!r} (row {int(bad[0])}) is not in the catalogue "
                        f"({len(bad)} of {len(ids)} rows)")
    dup = ids.is_duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataError(f"{source}: item_id {ids[row]!r} appears more than once (row {row})")
    names = topics["topic"].cast(pl.String).to_list()
    scores: list[float | None] = [None] * len(names)
    if "topic_score" in topics.columns:
        raw = topics["topic_score"].cast(pl.Float64).to_numpy()
        bad = np.flatnonzero(~np.isnan(raw) & ((raw < 0) | (raw > 1)))
        if len(bad):
            raise DataError(f"{source}: topic_score {raw[bad[0]]} (row {int(bad[0])}) is outside [0, 1]")
        scores = [None if np.isnan(s) else float(s) for s in raw]
    out_topics: list[str | None] = [None] * len(items)
    out_scores: list[float | None] = [None] * len(items)
    for row, at in enumerate(where):
        out_topics[at], out_scores[at] = names[row], scores[row]
    return out_topics, out_scores


def encode_topics(topics: Sequence[str | None], scores: Sequence[float | None] | None,
                  names: Sequence[str] = ()) -> tuple[np.ndarray, list[str], np.ndarray]:
    """``(codes, names, scores)``: topic codes (-1: none) over ``names`` extended by the new
    topics in sorted order, and scores (1 where not given)."""
    names = list(names)
    new = sorted({str(t) for t in topics if t is not None and str(t) != ""} - set(names))
    names += new
    index = {n: j for j, n in enumerate(names)}
    codes = np.array([-1 if t is None or str(t) == "" else index[str(t)] for t in topics], dtype=np.int64)
    given = np.ones(len(codes), np.float32) if scores is None else np.array(
        [1.0 if s is None or not np.isfinite(s) else float(s) for s in scores], dtype=np.float32)
    if len(given) != len(codes):
        raise DataError(f"{len(given)} topic scores for {len(codes)} topics")
    return codes, names, given


def affinity_views(history: sp.csr_matrix, codes: np.ndarray, scores: np.ndarray, n_topics: int,
                   cold: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(user affinity [n_users, T], warm item view [n_items, T], cold item view)`` (module docstring)."""
    onehot = np.zeros((len(codes), max(n_topics, 1)), np.float32)
    known = np.flatnonzero(codes >= 0)
    onehot[known, codes[known]] = 1.0
    binary = history.tocsr().astype(np.float32)
    binary.data[:] = 1.0
    counts = np.asarray(binary @ onehot, dtype=np.float64)
    total = counts.sum(axis=0)
    prior = (total + 1.0) / (total.sum() + onehot.shape[1])
    n_u = counts.sum(axis=1, keepdims=True)
    share = (counts + AFFINITY_PRIOR * prior) / (n_u + AFFINITY_PRIOR)
    affinity = np.log(share / prior).astype(np.float32)
    item = onehot * scores[:, None]
    warm = (1.0 - cold.astype(np.float32))[:, None]
    return affinity, np.ascontiguousarray(item * warm), np.ascontiguousarray(item * (1.0 - warm))


def topic_mask(content: ContentGraphs, topics: Sequence[str] | None) -> np.ndarray | None:
    """``[n_items]`` True for items tagged with one of ``topics`` (None: no filter). A name the
    catalogue's tags lack, or a ranker without tags, is a :class:`DataError` naming ``topics``."""
    if topics is None:
        return None
    topics = [topics] if isinstance(topics, str) else list(topics)
    if not content.has_topics or content.topic_codes is None:
        raise DataError("topics: this ranker has no item topics (fit it, or add items, with topics=)")
    unknown = [t for t in topics if t not in content.topic_names]
    if unknown:
        raise DataError(f"topics: {unknown} not among the catalogue's topics {content.topic_names}")
    return np.isin(content.topic_codes, [content.topic_names.index(t) for t in topics])


def diversity_groups(content: ContentGraphs, diversity_by: str) -> np.ndarray | None:
    """Item groups for MMR: the topic codes for ``"topics"``, None (item vectors) for ``"works"``."""
    if diversity_by not in DIVERSITY_BY:
        raise DataError(f"diversity_by={diversity_by!r}: use one of {list(DIVERSITY_BY)}")
    if diversity_by == "works":
        return None
    if not content.has_topics:
        raise DataError("diversity_by='topics': this ranker has no item topics (fit it with topics=)")
    return content.topic_codes
