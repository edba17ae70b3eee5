"""A fitted ranker's catalogue changed without refitting: items added (cold items reached through
their content) and items removed (never served again). Each change builds a new ranker and leaves
the given one as it was, so whoever still holds the old one (a request in flight) sees its
catalogue whole. :meth:`HybridRanker.add_items` and :meth:`HybridRanker.remove_items` document the
rules."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import scipy.sparse as sp

from xrec.catalogue.interactions import IdMap, Interactions
from xrec.errors import DataError
from xrec.ranking.cf import FactorModel
from xrec.ranking.graphs import zeros

if TYPE_CHECKING:
    from xrec.ranking.fitted import FittedRanker, R, RankerFactory

log = logging.getLogger(__name__)


def catalogue_ids(ranker: FittedRanker, ids: Sequence | pl.Series, what: str) -> pl.Series:
    """``ids`` as a Series of the catalogue's id type (a :class:`DataError` when they cannot be)."""
    ids = pl.Series("item_id", ids)
    if len(ids) and ids.dtype != ranker.items.ids.dtype:
        try:
            ids = ids.cast(ranker.items.ids.dtype, strict=True)
        except Exception as exc:
            raise DataError(f"{what}: ids are {ids.dtype}, the catalogue's {ranker.items.ids.dtype}") from exc
    return ids


def grown(make_ranker: RankerFactory[R], ranker: FittedRanker, ids: Sequence | pl.Series, vectors: np.ndarray, *,
          texts: Sequence[str] | None = None, languages: Sequence[str | None] | None = None,
          metadata: Mapping[str, Sequence[str | None]] | None = None,
          expect_fingerprint: str | None = None, topics: pl.DataFrame | None = None) -> R:
    """A new ranker built by ``make_ranker`` (the facade class): ``ranker`` with the items added
    (:meth:`HybridRanker.add_items`)."""
    ids = catalogue_ids(ranker, ids, "add_items")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n_new = len(ids)
    dim = ranker.item_vectors.shape[1]
    if vectors.ndim != 2 or vectors.shape != (n_new, dim):
        raise DataError(f"add_items: vectors of shape {vectors.shape}; expected ({n_new}, {dim}) "
                        "(one row per id, the ranker's encoder dimension)")
    if not np.isfinite(vectors).all():
        raise DataError("add_items: vectors hold NaN or infinite values")
    known = ranker.encoder_fingerprint
    if expect_fingerprint is not None and known is not None and expect_fingerprint != known:
        raise DataError(f"add_items: vectors from encoder {expect_fingerprint}, the ranker's is {known}")
    from xrec.catalogue.languages import item_codes

    languages = item_codes(languages)
    for what, values in (("texts", texts), ("languages", languages),
                         *((f"metadata[{f!r}]", v) for f, v in (metadata or {}).items())):
        if values is not None and len(values) != n_new:
            raise DataError(f"add_items: {len(values)} {what} for {n_new} ids")
    unknown_fields = set(metadata or {}) - {n[len("meta_"):] for n in ranker.content.graphs if n.startswith("meta_")}
    if unknown_fields:
        raise DataError(f"add_items: metadata field(s) {sorted(unknown_fields)} the ranker was not built with")
    where = ranker.items.index(ids)
    present = where >= 0
    if present.any():
        first = int(np.flatnonzero(present)[0])
        state = " (removed with remove_items: its interactions still count)" if ranker.retired[where[first]] else ""
        raise DataError(f"add_items: id {ids[first]!r} is already in the catalogue{state} "
                        f"({int(present.sum())} of {n_new})")
    all_ids = pl.concat([ranker.items.ids, ids])
    items = IdMap(all_ids, "item_id")  # raises on a duplicate within ids
    n = len(items)
    new_topics, new_scores = None, None
    if topics is not None:
        from xrec.ranking.topical import aligned_topics

        new_topics, new_scores = aligned_topics(IdMap(ids, "item_id"), topics, "add_items: topics")
    all_vectors = np.vstack([ranker.item_vectors, vectors])
    content = ranker.content.extend(all_vectors, n_new, texts=texts, languages=languages, metadata=metadata,
                                    topics=new_topics, topic_scores=new_scores)
    matrix = sp.hstack([ranker.interactions.matrix, zeros(len(ranker.users), n_new)]
                       ).tocsr()
    inter = Interactions(frame=ranker.interactions.frame, users=ranker.users, items=items, matrix=matrix,
                         report=ranker.interactions.report)
    cf = None
    if ranker.cf is not None:
        cf = FactorModel(ranker.cf.user_factors, np.vstack([ranker.cf.item_factors, np.zeros(
            (n_new, ranker.cf.dim), np.float32)]), name=ranker.cf.name, regularization=ranker.cf.regularization)
    g = ranker.cf_graph.tocsr()
    cf_graph = sp.csr_matrix((g.data, g.indices, np.concatenate(
        [g.indptr, np.full(n_new, g.indptr[-1], dtype=g.indptr.dtype)])), shape=(n, n))
    grown = make_ranker(inter, all_vectors, cf, content, ranker.fusion, ranker.config, cf_graph=cf_graph)
    grown.encoder_fingerprint = known if known is not None else expect_fingerprint
    grown.retired = np.concatenate([ranker.retired, np.zeros(n_new, dtype=bool)])
    return grown


def retire(ranker: R, ids: Sequence | pl.Series) -> R:
    """A copy of ``ranker`` with the items ``ids`` marked removed (:meth:`HybridRanker.remove_items`).

    The copy shares every array with ``ranker`` (none is ever changed in place) except its own
    ``retired`` mask."""
    ids = catalogue_ids(ranker, ids, "remove_items")
    where = ranker.items.index(ids)
    if (where < 0).any():
        missing = ids.filter(pl.Series(where < 0))
        raise DataError(f"remove_items: id {missing[0]!r} is not in the catalogue ({len(missing)} of {len(ids)})")
    retired = ranker.retired.copy()
    retired[where] = True
    smaller = copy.copy(ranker)
    smaller.retired = retired
    log.info("remove_items: %d item(s) removed, %d of %d now out of the catalogue",
             int(retired.sum() - ranker.retired.sum()), int(retired.sum()), len(retired))
    return smaller
