"""Feature views of the hybrid ranker: every feature of the fusion, for any user and item.

Each feature is defined once, here, next to the views it multiplies; how a view is computed from
the data (recent items, language shares, item age, ridge-predicted cold views) is in
:mod:`xrec.ranking.view_builders`.

Two kinds of feature score a user ``u`` and an item ``i``:

* **factorised** (:data:`FACTORISED`): a dot product ``user_view[u] @ item_view[i]``: CF factors,
  the user's content profile (mean of the history's vectors) against item vectors, popularity,
  cold-item terms, language affinity, the languages a user reads besides the most-read one, item age,
  the user's affinity for the item's topic where items are tagged (:mod:`xrec.ranking.topical`);
* **graph**: ``(history[u] @ graph)[i]``, the item-item similarities (:mod:`xrec.ranking.graphs`)
  summed over the user's history, each history item weighted ``1 / sqrt(len(history))``:
  co-consumption (BM25), the multilingual embedding, character n-grams and metadata keys. Content
  graphs are split into same-language and cross-language edges (``<graph>_same``, ``_cross``), so
  that the fusion learns how readily users cross languages, and their edges into cold items are
  features of their own (``<graph>_same_to_cold``...).

Cold items (no interactions) have zero CF factors and popularity. Every feature is either *warm*
(zero for cold items) or *cold* (:func:`is_cold_feature`, zero for warm items): the graph edges
into cold items, popularity, CF factors and age carried over from their warm content neighbours
(the other-language edition of the same work lends its readers' factors), and a cold-item bias.
So the fusion weighs the evidence of cold items on its own. A weighted sum of features folds into one
factorised score plus one sparse product per user scaling (:meth:`FeatureViews.fold`), so
recommending is a matrix product over the whole catalogue, exact, with no candidate step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import cast

import numpy as np
import scipy.sparse as sp

from xrec.ranking import graphs as g
from xrec.ranking.cf import FactorModel, principal_basis
from xrec.ranking.content_graphs import ContentGraphs
from xrec.ranking.view_builders import (
    _language_views,
    _other_languages_read,
    _recent_items,
    _ridge_views,
    _sum_rows,
    _time_views,
    unit_rows,
)

#: Factorised features: ``name -> (user view, item view)``.
FACTORISED = {
    "cf": ("cf", "cf"),
    "cold_cf": ("cf", "cold_cf"),
    "popularity": ("one", "popularity"),
    "cold": ("one", "cold"),
    "cold_popularity": ("one", "cold_popularity"),
    "content": ("profile", "content"),
    "cold_content": ("profile", "cold_content"),
    "language": ("language_share", "language"),
    "language_other_read": ("other_read", "language"),
    "len_x_popularity": ("length", "popularity"),
    "len_x_cf": ("cf_len", "cf"),
    "len_x_content": ("profile_len", "content"),
    "minority_x_popularity": ("minority", "popularity"),
    "minority_x_cf": ("cf_minority", "cf"),
    "minority_x_content": ("profile_minority", "content"),
    "recent_content": ("recent", "content_pc"),
    "cold_recent_content": ("recent", "cold_content_pc"),
    "cf_recent": ("cf_recent", "cf_unit"),
    "cold_cf_ridge": ("cf", "cold_cf_ridge"),
    "cold_popularity_ridge": ("one", "cold_popularity_ridge"),
    "recency": ("one", "recency"),
    "recency_sq": ("one", "recency_sq"),
    "time_x_recency": ("time", "recency"),
    "cold_recency": ("one", "cold_recency"),
    "cold_recency_ridge": ("one", "cold_recency_ridge"),
    "cold_recency_ridge_sq": ("one", "cold_recency_ridge_sq"),
    "cold_recency_ridge_x_time": ("time", "cold_recency_ridge"),  # a cold feature: the name starts "cold"
    "topic": ("topic_affinity", "topic"),  # item topics (tags): :mod:`xrec.ranking.topical`
    "cold_topic": ("topic_affinity", "cold_topic"),
}
#: Sparse factorised features: ``name -> (user view, item view)``, both sparse: the exact character
#: n-gram TF-IDF cosine of an item with the user's lexical profile (:mod:`xrec.ranking.lexical`).
SPARSE_FACTORISED = {"lexical_terms": ("terms", "lexical_terms"), "cold_lexical_terms": ("terms", "cold_lexical_terms")}
#: Items of the recent history (``recent_content``, ``cf_recent``), by time.
RECENT_ITEMS = 5
#: Principal components of the item vectors in ``recent_content``.
RECENT_DIMS = 32
#: Views that exist only with timestamps, or only with item languages.
TIME_FEATURES = ("recency", "recency_sq", "time_x_recency", "cold_recency")
LANGUAGE_FEATURES = ("language", "language_other_read")


def is_cold_feature(name: str) -> bool:
    """True for the features that are zero for warm items (the cold-item side of the fusion)."""
    return name.startswith("cold") or name.endswith("_to_cold")


class FeatureViews:
    """All features of one interaction matrix (module docstring)."""

    def __init__(self, history: sp.csr_matrix, content: ContentGraphs, cf: FactorModel | None, *,
                 item_vectors: np.ndarray | None = None, cf_knn: sp.csr_matrix | None = None,
                 timestamps: sp.csr_matrix | None = None):
        self.history = history.tocsr()
        n_users, n_items = self.history.shape
        lengths = np.diff(self.history.indptr)
        binary = self.history.copy()
        binary.data[:] = 1.0
        self.history_norm = (sp.diags(1.0 / np.sqrt(np.maximum(lengths, 1))) @ binary).tocsr()
        counts = np.diff(self.history.tocsc().indptr)
        self.cold = counts == 0
        cold = self.cold.astype(np.float32)
        popularity = np.log1p(counts).astype(np.float32)
        warm_neighbours = g.row_normalised((content.neighbours() @ sp.diags(1.0 - cold)).tocsr())
        warm_only, cold_only = sp.diags(1.0 - cold), sp.diags(cold)
        graphs = {}
        for name, graph in content.split().items():  # cold items get their own weights (module doc)
            graphs[name] = (graph @ warm_only).tocsr()
            graphs[f"{name}_to_cold"] = (graph @ cold_only).tocsr()
        if cf_knn is not None:
            graphs["cf_knn"] = cf_knn
        self.graphs = graphs
        log_len = np.log1p(lengths).astype(np.float32)
        has = lengths > 0
        length = np.where(has, (log_len - log_len[has].mean()) / (log_len[has].std() + 1e-6), 0.0) \
            if has.any() else np.zeros(n_users)
        user: dict[str, np.ndarray] = {"one": np.ones((n_users, 1), np.float32),
                                       "length": length.astype(np.float32)[:, None]}
        item: dict[str, np.ndarray] = {
            "popularity": popularity[:, None], "cold": cold[:, None],
            "cold_popularity": (cold * (warm_neighbours @ popularity))[:, None].astype(np.float32)}
        if item_vectors is not None:  # rating-centred, recency-weighted (with timestamps) mean of the history
            from xrec.ranking.profiles import history_weights, user_profiles

            ts = timestamps if timestamps is not None and timestamps.nnz else None
            user["profile"] = user_profiles(history_weights(self.history, ts), item_vectors)
            item["content"] = np.ascontiguousarray(item_vectors, dtype=np.float32)
            item["content"] = item["content"] * (1.0 - cold)[:, None]
            item["cold_content"] = np.ascontiguousarray(item_vectors * cold[:, None], dtype=np.float32)
        sparse_user: dict[str, sp.csr_matrix] = {}
        sparse_item: dict[str, sp.csr_matrix] = {}
        if content.terms is not None:  # the exact lexical profile (every n-gram kept: a year, a genre word)
            from xrec.ranking.lexical import sparse_profiles
            from xrec.ranking.profiles import history_weights

            ts = timestamps if timestamps is not None and timestamps.nnz else None
            sparse_user["terms"] = sparse_profiles(history_weights(self.history, ts), content.terms)
            sparse_item["lexical_terms"] = (warm_only @ content.terms).tocsr()
            sparse_item["cold_lexical_terms"] = (cold_only @ content.terms).tocsr()
        if cf is not None:
            user["cf"] = cf.user_factors
            item["cf"] = cf.item_factors
            item["cold_cf"] = (np.asarray(warm_neighbours @ cf.item_factors) * cold[:, None]).astype(np.float32)
        if content.has_languages:
            user["language_share"], item["language"] = _language_views(binary, content.language_codes)
            codes = content.language_codes
            majority = np.bincount(codes[codes >= 0]).argmax()
            user["minority"] = (1.0 - user["language_share"][:, [majority]]) * has[:, None]
            user["other_read"] = _other_languages_read(user["language_share"])
        if content.has_topics and content.topic_codes is not None and content.topic_scores is not None:
            from xrec.ranking.topical import affinity_views

            user["topic_affinity"], item["topic"], item["cold_topic"] = affinity_views(
                binary, content.topic_codes, content.topic_scores, len(content.topic_names), self.cold)
        for view in ("cf", "profile"):  # per-user modulation of the main evidence
            if view in user:
                user[f"{view}_len"] = user[view] * user["length"]
                if "minority" in user:
                    user[f"{view}_minority"] = user[view] * user["minority"]
        timed = timestamps is not None and timestamps.nnz > 0
        if timed and timestamps is not None:
            time_user, time_item = _time_views(timestamps, self.cold, warm_neighbours)
            user.update(time_user)
            item.update(time_item)
        if item_vectors is not None:
            _ridge_views(item, np.asarray(item_vectors, np.float32), self.cold, popularity)
        if timed and timestamps is not None and item_vectors is not None:
            recent = _recent_items(timestamps, RECENT_ITEMS)
            pcs = unit_rows(item_vectors @ principal_basis(item_vectors, RECENT_DIMS))
            user["recent"] = unit_rows(_sum_rows(pcs, recent))
            item["content_pc"], item["cold_content_pc"] = pcs * (1.0 - cold)[:, None], pcs * cold[:, None]
            if cf is not None:
                item["cf_unit"] = unit_rows(cf.item_factors)
                user["cf_recent"] = _sum_rows(item["cf_unit"], recent) / np.maximum(
                    (recent >= 0).sum(axis=1), 1)[:, None]
        self.user_views, self.item_views = user, item
        self.sparse_user_views, self.sparse_item_views = sparse_user, sparse_item
        names = [n for n, (u, i) in FACTORISED.items() if u in user and i in item]
        names += [n for n, (u, i) in SPARSE_FACTORISED.items() if u in sparse_user and i in sparse_item]
        self.names = tuple(names + list(graphs))

    # ------------------------------------------------------------------ features
    def feature(self, name: str, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Feature ``name`` of ``items`` ``[len(rows), c]`` for user ``rows``: ``[len(rows), c]``."""
        if name in self.graphs:
            dense = np.asarray((self.history_norm[rows] @ self.graphs[name]).todense(), dtype=np.float32)
            return dense[:, items[0]] if shared_row(items) else np.take_along_axis(dense, items, 1)
        if name in SPARSE_FACTORISED:
            user_view, item_view = SPARSE_FACTORISED[name]
            return gathered_dot(self.sparse_user_views[user_view][rows], self.sparse_item_views[item_view], items)
        user_view, item_view = FACTORISED[name]
        return gathered_dot(self.user_views[user_view][rows], self.item_views[item_view], items)

    def features(self, rows: np.ndarray, items: np.ndarray, names: Sequence[str] | None = None) -> np.ndarray:
        """``[len(rows), c, len(names)]`` float32 features (default: every feature)."""
        names = self.names if names is None else names
        return np.stack([self.feature(n, rows, items) for n in names], axis=-1).astype(np.float32)

    def fold(self, weights: Mapping[str, float]) -> Folded:
        """The weighted sum of features as one factorised score plus one sparse product."""
        queries, keys = [], []
        for user_view, vectors in self.user_views.items():
            used = [(w, FACTORISED[n][1]) for n, w in weights.items()
                    if n in FACTORISED and FACTORISED[n][0] == user_view and w != 0]
            if used:
                queries.append(vectors)
                keys.append(sum(w * self.item_views[iv] for w, iv in used))
        n_users, n_items = self.history.shape
        if not queries:
            queries, keys = [np.zeros((n_users, 1), np.float32)], [np.zeros((n_items, 1), np.float32)]
        graph = g.zeros(n_items, n_items)
        for name, w in weights.items():
            if name in self.graphs and w != 0:
                graph = graph + np.float32(w) * self.graphs[name]
        terms = [(np.float32(w), SPARSE_FACTORISED[n][1]) for n, w in weights.items()
                 if n in SPARSE_FACTORISED and w != 0]
        term_keys = sum((w * self.sparse_item_views[iv] for w, iv in terms[1:]),
                        terms[0][0] * self.sparse_item_views[terms[0][1]]).tocsr() if terms else None
        return Folded(np.ascontiguousarray(np.hstack(queries), dtype=np.float32),
                      np.ascontiguousarray(np.hstack(keys), dtype=np.float32),
                      self.history_norm, graph.tocsr(),
                      self.sparse_user_views["terms"] if terms else None, term_keys)


@dataclass
class Folded:
    """Fused scores: ``query[u] @ keys.T + (history_norm[u] @ graph) + term_query[u] @ term_keys.T``."""

    query: np.ndarray  #: ``[n_users, d]``
    keys: np.ndarray  #: ``[n_items, d]``
    history_norm: sp.csr_matrix  #: ``[n_users, n_items]``
    graph: sp.csr_matrix  #: ``[n_items, n_items]``
    term_query: sp.csr_matrix | None = None  #: ``[n_users, vocabulary]`` lexical profiles (None: no terms)
    term_keys: sp.csr_matrix | None = None  #: ``[n_items, vocabulary]`` weighted TF-IDF rows

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """Dense ``[len(rows), n_items]`` fused scores."""
        out = self.query[rows] @ self.keys.T
        if self.graph.nnz:
            out += np.asarray((self.history_norm[rows] @ self.graph).todense(), dtype=np.float32)
        if self.term_keys is not None and self.term_query is not None:
            out += (self.term_query[rows] @ self._term_keys_t).toarray()
        return out

    @cached_property
    def _term_keys_t(self) -> sp.csr_matrix:
        """``term_keys.T`` as CSR, made once (a product with the CSC view converts it every call)."""
        assert self.term_keys is not None
        return self.term_keys.T.tocsr()

    def score_items(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Fused scores of ``items`` ``[len(rows), c]``."""
        out = gathered_dot(self.query[rows], self.keys, items)
        if self.graph.nnz:
            dense = np.asarray((self.history_norm[rows] @ self.graph).todense(), dtype=np.float32)
            out += np.take_along_axis(dense, items, 1)
        if self.term_keys is not None and self.term_query is not None:
            out += gathered_dot(self.term_query[rows], self.term_keys, items)
        return out


def gathered_dot(users: np.ndarray | sp.csr_matrix, item_view: np.ndarray | sp.csr_matrix,
                 items: np.ndarray) -> np.ndarray:
    """``users[b] @ item_view[items[b, c]]`` for every ``b, c``, as one matrix product over the
    distinct items (never materialising ``[b, c, d]``); dense or sparse views."""
    if shared_row(items):  # the same items for every row (a fit sample): no search for distinct ones
        dense = users @ item_view[items[0]].T
        if sp.issparse(dense):
            dense = cast(sp.csr_matrix, dense).toarray()
        return np.asarray(dense).astype(np.float32, copy=False)
    unique, inverse = np.unique(items, return_inverse=True)
    dense = users @ item_view[unique].T
    if sp.issparse(dense):
        dense = cast(sp.csr_matrix, dense).toarray()
    return np.take_along_axis(dense, inverse.reshape(items.shape), 1).astype(np.float32, copy=False)


def shared_row(items: np.ndarray) -> bool:
    """True where ``items`` ``[b, c]`` is one row of items broadcast to every row (``np.broadcast_to``)."""
    return items.ndim == 2 and len(items) > 0 and items.strides[0] == 0
