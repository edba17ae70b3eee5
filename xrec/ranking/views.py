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
from dataclasses import field as dataclass_field

import numpy as np
import scipy.sparse as sp

from xrec.ranking import graphs as g
from xrec.ranking.cf import FactorModel, principal_basis
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


@dataclass
class ContentGraphs:
    """Interaction-free item-item graphs (embedding, lexical, metadata) and item languages.

    Built once per catalogue (:meth:`build`) and shared by the validation fit and the final ranker."""

    graphs: dict[str, sp.csr_matrix]
    language_codes: np.ndarray  #: ``[n_items]`` int, -1 where unknown
    languages: list[str]  #: code -> language
    #: item texts (the lexical graph's input; kept so that :meth:`extend` can link new items)
    texts: list[str] | None = None
    #: metadata values per field (the metadata graphs' input, kept for :meth:`extend`)
    metadata: dict[str, list[str | None]] | None = None
    k: int = 50  #: neighbours per item of the kNN graphs
    topic_codes: np.ndarray | None = None  #: ``[n_items]`` int item topics, -1 where none (None: no tags)
    topic_names: list[str] = dataclass_field(default_factory=list)  #: code -> topic
    topic_scores: np.ndarray | None = None  #: ``[n_items]`` float32 ``topic_score`` (1 where not given)
    #: ``[n_items, vocabulary]`` character n-gram TF-IDF of ``texts``, unit rows
    #: (:func:`~xrec.ranking.lexical.char_tfidf`)
    terms: sp.csr_matrix | None = None

    @classmethod
    def build(cls, item_vectors: np.ndarray, *, texts: Sequence[str] | None = None,
              languages: Sequence[str | None] | None = None,
              metadata: Mapping[str, Sequence[str | None]] | None = None, k: int = 50,
              topics: Sequence[str | None] | None = None,
              topic_scores: Sequence[float | None] | None = None) -> ContentGraphs:
        """Embedding kNN of ``item_vectors``; lexical kNN of ``texts``; a group graph per
        ``metadata`` field (e.g. ``{"author": [...]}``); each split by language when known.
        ``topics`` (and ``topic_scores``), one per item, are kept for the topic features."""
        from xrec.ranking.lexical import char_tfidf, without_frequent

        n = item_vectors.shape[0]
        raw = {"embedding": g.vector_knn(item_vectors, k)}
        terms = None
        if texts is not None:
            terms = char_tfidf([str(t) for t in texts])
            # n-grams in more than 1% of the items (at least 50) say little and cost most of the time
            raw["lexical"] = g.sparse_knn(without_frequent(terms, min(1.0, max(0.01, 50 / max(n, 1)))), k)
        for field, keys in (metadata or {}).items():
            raw[f"meta_{field}"] = g.group_graph(keys)
        codes, names = np.full(n, -1, dtype=np.int64), []
        if languages is not None:
            langs = np.array(["" if x is None else str(x) for x in languages], dtype=object)
            names, inverse = np.unique(langs, return_inverse=True)
            codes = np.where(langs == "", -1, inverse).astype(np.int64)
            names = names.tolist()
        out = cls(raw, codes, names, None if texts is None else [str(t) for t in texts],
                  None if metadata is None else {f: [None if x is None else str(x) for x in v]
                                                 for f, v in metadata.items()}, k, terms=terms)
        return out.with_topics(topics, topic_scores) if topics is not None else out

    def with_topics(self, topics: Sequence[str | None], scores: Sequence[float | None] | None = None
                    ) -> ContentGraphs:
        """A copy whose items carry ``topics`` (one per item; None: none) and ``scores``."""
        from dataclasses import replace

        from xrec.errors import DataError
        from xrec.ranking.topical import encode_topics

        if len(topics) != len(self.language_codes):
            raise DataError(f"topics: {len(topics)} values for {len(self.language_codes)} items")
        codes, names, given = encode_topics(topics, scores)
        return replace(self, topic_codes=codes, topic_names=names, topic_scores=given)

    def extend(self, vectors: np.ndarray, n_new: int, *, texts: Sequence[str] | None = None,
               languages: Sequence[str | None] | None = None,
               metadata: Mapping[str, Sequence[str | None]] | None = None,
               topics: Sequence[str | None] | None = None,
               topic_scores: Sequence[float | None] | None = None) -> ContentGraphs:
        """The graphs grown by ``n_new`` items appended to the catalogue (``vectors``: every
        item's vector, the new ones last), as :meth:`build` would link them
        (:func:`~xrec.ranking.graphs.extend_knn`; the metadata graphs are rebuilt, they are
        cheap). The lexical graph links the new items only when the catalogue's texts are
        kept (a ranker built with ``texts``) and ``texts`` are given; otherwise they get no
        lexical edges (logged). ``topics`` tag the new items (new topic names are appended)."""
        import logging

        from xrec.ranking.lexical import char_tfidf, without_frequent

        n = vectors.shape[0]
        n_old = n - n_new
        graphs = {}
        texts_all = None if self.texts is None else self.texts + (
            [str(t) for t in texts] if texts is not None else [""] * n_new)
        # recomputed over every text (the vocabulary and idf move with the catalogue)
        terms = char_tfidf(texts_all) if texts_all is not None and texts is not None else None
        for name, graph in self.graphs.items():
            if name == "embedding":
                new = np.asarray(vectors[n_old:], dtype=np.float32)
                sims = np.vstack([new[s:s + 512] @ vectors.T for s in range(0, n_new, 512)]) if n_new else \
                    np.zeros((0, n), np.float32)
                graphs[name] = g.extend_knn(graph, sims, self.k)
            elif name == "lexical":
                if self.texts is None or texts is None:
                    logging.getLogger(__name__).warning(
                        "new items: no lexical edges (the ranker keeps no texts, or none were given)")
                    graphs[name] = g.extend_knn(graph, np.zeros((n_new, n), np.float32), self.k)
                    continue
                x = without_frequent(terms, min(1.0, max(0.01, 50 / max(n, 1))))
                sims = (x[n_old:] @ x.T).toarray() if n_new else np.zeros((0, n), np.float32)
                graphs[name] = g.extend_knn(graph, sims, self.k)
            elif name.startswith("meta_"):
                field = name[len("meta_"):]
                old_keys = (self.metadata or {}).get(field)
                if old_keys is None:
                    graphs[name] = g.extend_knn(graph, np.zeros((n_new, n), np.float32), self.k)
                    continue
                added = list((metadata or {}).get(field, [None] * n_new))
                graphs[name] = g.group_graph(old_keys + added)
            else:
                graphs[name] = g.extend_knn(graph, np.zeros((n_new, n), np.float32), self.k)
        names = list(self.languages)
        codes = list(self.language_codes)
        for lang in (languages if languages is not None else [None] * n_new):
            if lang is None or str(lang) == "":
                codes.append(-1)
                continue
            if str(lang) not in names:
                names.append(str(lang))
            codes.append(names.index(str(lang)))
        meta_all = None if self.metadata is None else {
            f: v + [None if x is None else str(x) for x in (metadata or {}).get(f, [None] * n_new)]
            for f, v in self.metadata.items()}
        if terms is None and self.terms is not None:  # new items without texts: no lexical evidence
            terms = sp.vstack([self.terms, sp.csr_matrix((n_new, self.terms.shape[1]), dtype=np.float32)]).tocsr()
        out = ContentGraphs(graphs, np.asarray(codes, dtype=np.int64), names, texts_all, meta_all, self.k,
                            terms=terms)
        if self.topic_codes is None and topics is None:
            return out
        from xrec.ranking.topical import encode_topics

        new_codes, topic_names, new_scores = encode_topics(
            list(topics) if topics is not None else [None] * n_new, topic_scores, self.topic_names)
        old_codes = self.topic_codes if self.topic_codes is not None else np.full(n_old, -1, np.int64)
        old_scores = self.topic_scores if self.topic_scores is not None else np.ones(n_old, np.float32)
        out.topic_codes = np.concatenate([old_codes, new_codes])
        out.topic_names = topic_names
        out.topic_scores = np.concatenate([old_scores, new_scores]).astype(np.float32)
        return out

    @property
    def has_topics(self) -> bool:
        return self.topic_codes is not None and bool((self.topic_codes >= 0).any())

    @property
    def has_languages(self) -> bool:
        return bool((self.language_codes >= 0).any()) and len(set(self.language_codes[self.language_codes >= 0])) > 1

    def split(self) -> dict[str, sp.csr_matrix]:
        """Graph features: each graph split into ``_same`` / ``_cross`` language edges when the
        catalogue has several languages, else whole."""
        if not self.has_languages:
            return dict(self.graphs)
        out = {}
        for name, graph in self.graphs.items():
            out[f"{name}_same"], out[f"{name}_cross"] = g.language_split(graph, self.language_codes)
        return out

    def neighbours(self) -> sp.csr_matrix:
        """Row-normalised sum of the content graphs (each item's content neighbourhood)."""
        total = sum((g.row_normalised(x) for x in self.graphs.values()), sp.csr_matrix(
            (len(self.language_codes),) * 2, dtype=np.float32))
        return g.row_normalised(total.tocsr())


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
        warm_neighbours = g.row_normalised(content.neighbours() @ sp.diags(1.0 - cold))
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
        if content.has_topics:
            from xrec.ranking.topical import affinity_views

            user["topic_affinity"], item["topic"], item["cold_topic"] = affinity_views(
                binary, content.topic_codes, content.topic_scores, len(content.topic_names), self.cold)
        for view in ("cf", "profile"):  # per-user modulation of the main evidence
            if view in user:
                user[f"{view}_len"] = user[view] * user["length"]
                if "minority" in user:
                    user[f"{view}_minority"] = user[view] * user["minority"]
        timed = timestamps is not None and timestamps.nnz > 0
        if timed:
            time_user, time_item = _time_views(timestamps, self.cold, warm_neighbours)
            user.update(time_user)
            item.update(time_item)
        if item_vectors is not None:
            _ridge_views(item, np.asarray(item_vectors, np.float32), self.cold, popularity)
        if timed and item_vectors is not None:
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
            return np.take_along_axis(dense, items, 1)
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
        graph = sp.csr_matrix((n_items, n_items), dtype=np.float32)
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
            out += (self.term_query[rows] @ self.term_keys.T).toarray()
        return out

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
    unique, inverse = np.unique(items, return_inverse=True)
    dense = users @ item_view[unique].T
    if sp.issparse(dense):
        dense = dense.toarray()
    return np.take_along_axis(dense, inverse.reshape(items.shape), 1).astype(np.float32, copy=False)
