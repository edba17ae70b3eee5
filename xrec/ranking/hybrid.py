"""The hybrid ranker: CF factors, content graphs and priors fused by one learned linear score.

Features (:mod:`xrec.ranking.views`) are CF factors (implicit's ALS by default, or a model you
trained), item-item graphs (co-consumption, the multilingual embedding, character n-grams,
metadata keys such as the author, each split into same- and cross-language edges), popularity,
cold-item terms, language affinity and, with timestamps, item age. :meth:`HybridRanker.fit` holds
out a validation slice of the training data (the last ``validation_fraction`` of each user's
interactions by time where every interaction has a timestamp, a seeded random fraction of them
where not), fits the CF model on the rest and learns one weight per feature by maximising the
softmax likelihood of the validation items over the catalogue (:class:`~xrec.ranking.fusion.Fusion`).
Cold items compete with warm ones on these calibrated weights: a cold item enters a list when its
content evidence beats the warm candidates'. The CF model is then refitted on all the data.

Language exposure is a policy on top of the fit: items in a language the user reads besides their
most-read one get ``HybridConfig.language_boost`` nats more (the ``language_other_read`` feature).
The likelihood fit is dominated by same-language reading, and ranks a reader's second-language
items about as likely as the weakest same-language items of a top-10; lifting them trades a little
overall NDCG for much more cross-language reach. The default was chosen on a development split of
Book-Crossing (a random cut with another seed than the evaluation's); the trade-off curve is in
``benchmarks/README.md``.

Only where no validation slice can be had (fewer than ``min_validation_positives`` held-out
positives, or a pre-trained CF model without ``cf_fit``) are :data:`~xrec.ranking.config.DEFAULT_WEIGHTS` used
(standardised weights learned on Book-Crossing, applied with the data's own feature scales); the
ranker logs a warning and ``fusion.kind`` says ``"default"``.

The class is the facade; the work lives in parts that never import it (they see a
:class:`~xrec.ranking.fitted.FittedRanker`): knobs in :mod:`~xrec.ranking.config`, the validation
fit in :mod:`~xrec.ranking.training`, features in :mod:`~xrec.ranking.views` over the content graphs
of :mod:`~xrec.ranking.content_graphs`, the top-``k`` kernel in :mod:`~xrec.ranking.serving`,
catalogue changes in :mod:`~xrec.ranking.catalogue`, a call's language rules in
:mod:`~xrec.ranking.languages`, re-ranking in :mod:`~xrec.ranking.rerank`, explanations in
:mod:`~xrec.ranking.explain`, saving in :mod:`~xrec.ranking.persist`, the popular-items result,
padding and the long table in :mod:`~xrec.ranking.results`, item topics in :mod:`~xrec.ranking.topical`.

Seen items are never recommended; users with no history get the most popular items (``score`` =
log(1 + interactions), component scores NaN); users unknown to the CF model get a least-squares
fold-in of their history.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from xrec.catalogue.interactions import IdMap, Interactions
from xrec.errors import DataError
from xrec.index.topk import TopK
from xrec.ranking.cf import FactorModel, align_cf, fit_als
from xrec.ranking.config import COMPONENTS, HybridConfig
from xrec.ranking.content_graphs import ContentGraphs
from xrec.ranking.fusion import Fusion
from xrec.ranking.graphs import cf_knn
from xrec.ranking.languages import boost_change, lifted
from xrec.ranking.results import popular, to_frame
from xrec.ranking.training import default_fusion, learn_fusion
from xrec.ranking.views import FeatureViews

log = logging.getLogger(__name__)

CFFit = Callable[[sp.csr_matrix], FactorModel]


def default_cf_fit(matrix: sp.csr_matrix) -> FactorModel:
    """ALS (128 factors, regularization 10, 15 iterations): the default CF component."""
    return fit_als(matrix, factors=128, regularization=10.0)[0]


class HybridRanker:
    """Fuses a :class:`FactorModel` with content graphs and priors; see the module docstring."""

    def __init__(self, interactions: Interactions, item_vectors: np.ndarray, cf: FactorModel | None,
                 content: ContentGraphs, fusion: Fusion | None = None, config: HybridConfig | None = None,
                 cf_graph: sp.csr_matrix | None = None):
        n_items = len(interactions.items)
        item_vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        if item_vectors.ndim != 2 or item_vectors.shape[0] != n_items:
            raise DataError(f"item vectors of shape {item_vectors.shape}; expected ({n_items}, dim), "
                            "one row per catalogue item in catalogue order")
        self.config = config or HybridConfig()
        self.interactions = interactions
        self.users: IdMap = interactions.users
        self.items: IdMap = interactions.items
        self.history = interactions.matrix.tocsr()
        self.history.sort_indices()
        self.item_vectors = item_vectors
        self.content = content
        self.cf = align_cf(cf, self.users, self.items, self.history)
        self.cf_graph = cf_knn(self.history, self.config.cf_knn_k, threads=self.config.threads) \
            if cf_graph is None else cf_graph
        ts = interactions.timestamp_matrix() if interactions.has_timestamps else None
        self.views = FeatureViews(self.history, content, self.cf, item_vectors=item_vectors, cf_knn=self.cf_graph,
                                  timestamps=ts)
        self.popularity = self.views.item_views["popularity"][:, 0]
        self.cold = self.views.cold
        self.fusion = fusion or default_fusion(self.views, self.config)
        self.folded = self.views.fold(self.fusion.raw)
        self.encoder_fingerprint: str | None = None  #: set by :meth:`load` (and :meth:`save`)
        #: items taken out of the catalogue (:meth:`remove_items`): never recommended or re-ranked.
        #: No method changes a ranker's arrays: catalogue changes return a new ranker.
        self.retired = np.zeros(n_items, dtype=bool)

    # ------------------------------------------------------------------ construction
    @classmethod
    def fit(cls, interactions: Interactions, item_vectors: np.ndarray, *, texts: Sequence[str] | None = None,
            languages: Sequence[str | None] | None = None,
            metadata: Mapping[str, Sequence[str | None]] | None = None, cf: FactorModel | None = None,
            cf_fit: CFFit | None = None, config: HybridConfig | None = None,
            content: ContentGraphs | None = None, topics: pl.DataFrame | None = None) -> HybridRanker:
        """Fit CF (unless ``cf`` is given) and the fusion on a validation slice (module docstring).

        ``texts`` (item texts, catalogue order) add the lexical graph, ``languages`` the language
        features and the same/cross-language split, ``metadata`` a graph per field (items sharing
        a normalised value, e.g. ``{"author": authors}``). Languages are normalised
        (:func:`xrec.catalogue.languages.normalise`: ``deu_Latn`` is ``de``); None or ``und``: unknown.
        ``content`` reuses graphs built before.
        ``topics``, a table ``item_id, topic[, topic_score]`` (:func:`~xrec.topics.tagging.tag_items`),
        tags items for the ``topics=`` filter, ``diversity_by="topics"`` and the ``topic`` and
        ``cold_topic`` features (off unless named in ``HybridConfig.features``;
        :mod:`~xrec.ranking.topical`)."""
        from xrec.catalogue.languages import item_codes
        from xrec.progress import phase
        from xrec.ranking.topical import aligned_topics

        config = config or HybridConfig()
        tags = aligned_topics(interactions.items, topics) if topics is not None else None
        languages = item_codes(languages)  # one code system; und and blanks: unknown (None)
        if content is None:
            with phase("hybrid: content graphs (embedding, lexical, metadata)"):
                content = ContentGraphs.build(item_vectors, texts=texts, languages=languages, metadata=metadata,
                                              k=config.graph_k)
        if tags is not None:
            content = content.with_topics(*tags)
        if cf is None and cf_fit is None:
            cf_fit = default_cf_fit
        fusion = None
        if cf_fit is None:
            log.warning("pre-trained CF model without cf_fit: no validation fit; default fusion weights")
        else:
            with phase("hybrid: fusion on a validation slice"):
                fusion = learn_fusion(cls, interactions, item_vectors, content, cf_fit, config)
        with phase("hybrid: final CF fit"):
            if cf is None:
                assert cf_fit is not None  # the default when neither is given
                cf = cf_fit(interactions.matrix)
            return cls(interactions, item_vectors, cf, content, fusion, config)

    @property
    def fingerprint(self) -> str:
        """Hash of everything that determines the output (data shapes, config, fusion, scores, item topics)."""
        h = hashlib.sha256(json.dumps({"config": asdict(self.config), "fusion": self.fusion.as_dict(),
                                       "shape": list(self.history.shape), "nnz": int(self.history.nnz)},
                                      sort_keys=True, default=str).encode())
        for arr in (self.item_vectors, self.history.data, self.history.indices, self.folded.query,
                    self.folded.keys, self.folded.graph.data, self.folded.graph.indices):
            h.update(np.ascontiguousarray(arr).tobytes())
        if self.folded.term_keys is not None:
            h.update(self.folded.term_keys.data.tobytes() + self.folded.term_keys.indices.tobytes())
        if self.content.topic_codes is not None:  # the topics= filter and diversity_by="topics" read them
            h.update(json.dumps(self.content.topic_names).encode())
            h.update(np.ascontiguousarray(self.content.topic_codes).tobytes())
        return h.hexdigest()[:32]

    # ------------------------------------------------------------------ artifact
    def save(self, path: str | os.PathLike[str], *, encoder_fingerprint: str | None = None) -> Path:
        """Write the ranker as an artifact directory (atomically, no pickle); see :mod:`xrec.ranking.persist`."""
        from xrec.ranking.persist import save_ranker

        encoder_fingerprint = encoder_fingerprint or self.encoder_fingerprint
        out = save_ranker(self, path, encoder_fingerprint=encoder_fingerprint)
        self.encoder_fingerprint = encoder_fingerprint
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, encoder_fingerprint: str | None = None) -> HybridRanker:
        """Read a ranker written by :meth:`save`; :class:`~xrec.errors.ArtifactError` names what is
        wrong, also a ranker saved for another encoder than ``encoder_fingerprint``."""
        from xrec.ranking.persist import load_ranker

        return load_ranker(cls, path, expect_fingerprint=encoder_fingerprint)

    # ------------------------------------------------------------------ scoring
    def features(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``[len(rows), c, len(fusion.names)]`` raw features of ``items`` ``[len(rows), c]``."""
        return self.views.features(np.asarray(rows, np.int64), np.asarray(items, np.int64), self.fusion.names)

    def score_items(self, rows: np.ndarray, items: np.ndarray, *, language_boost: float | None = None
                    ) -> np.ndarray:
        """Fused scores of given items ``[len(rows), c]`` (no exclusion); ``language_boost`` as in
        :meth:`recommend_rows`."""
        rows, items = np.asarray(rows, np.int64), np.asarray(items, np.int64)
        scores = self.folded.score_items(rows, items)
        delta = boost_change(self, language_boost)
        return scores + delta * np.take_along_axis(lifted(self, rows), items, 1) if delta else scores

    def components(self, rows: np.ndarray, items: np.ndarray) -> dict[str, np.ndarray]:
        """Each :data:`COMPONENTS` group's share of the fused score of ``items`` ``[len(rows), c]``."""
        raw = self.fusion.raw
        x = self.features(rows, items)
        out = {name: np.zeros(items.shape, np.float32) for name in COMPONENTS}
        for j, feature in enumerate(self.fusion.names):
            group = next((c for c, prefixes in COMPONENTS.items()
                          if any(feature.startswith(p) for p in prefixes)), "prior_score")
            out[group] += raw[feature] * x[..., j]
        return out

    def recommend_rows(self, rows: np.ndarray, k: int, *, components: bool = True,
                       allowed: np.ndarray | None = None, diversity: float = 0.0,
                       language_boost: float | None = None, diversity_by: str = "works") -> TopK:
        """Top-``k`` unseen items for user rows (indices into ``self.users``): a
        :class:`~xrec.index.topk.TopK` of item rows (-1 pads), fused scores and component scores.

        ``components=False`` skips the per-item component scores (the ranking is the same);
        ``allowed`` (``[n_items]`` or ``[len(rows), n_items]`` bool, :meth:`language_mask`) keeps
        only those items (rows come back short, padded, when fewer than ``k`` remain);
        ``diversity`` > 0 picks the ``k`` items from the best ``max(5k, 50)`` by MMR
        (:mod:`xrec.ranking.diversify`), spreading the list over works (item vectors) or, with
        ``diversity_by="topics"``, over item topics; ``language_boost`` replaces the fitted
        ``HybridConfig.language_boost`` for this call (nats for items in the other languages a
        user reads; it shows in ``prior_score``)."""
        from xrec.ranking.serving import recommend_rows

        return recommend_rows(self, rows, k, components=components, allowed=allowed, diversity=diversity,
                              language_boost=language_boost, diversity_by=diversity_by)

    def recommend_popular(self, n_users: int, k: int, allowed: np.ndarray | None = None) -> TopK:
        """Most popular items (the documented result for users with no history), among ``allowed``."""
        return popular(self.popularity, self.retired, n_users, k, allowed)

    def language_mask(self, rows: np.ndarray, *, languages: Sequence[str] | None = None,
                      exclude_languages: Sequence[str] | None = None,
                      language_policy: str = "any") -> np.ndarray | None:
        """Items a call may return, by language (None: all): ``languages`` keeps only those,
        ``exclude_languages`` drops those (any spelling :func:`xrec.catalogue.languages.normalise` knows; a
        code no registry knows, or one the catalogue lacks, is a :class:`DataError`);
        ``language_policy="history"`` keeps, per user row, the languages of the user's history
        (``[len(rows), n_items]``; users without history keep all). Every filter drops items of
        unknown language (counted in a log line) unless ``languages`` names ``und``."""
        from xrec.ranking.languages import language_mask

        return language_mask(self, rows, languages=languages, exclude_languages=exclude_languages,
                             language_policy=language_policy)

    def recommend(self, user_ids: Sequence | np.ndarray, k: int = 10, *, explain: int = 0,
                  languages: Sequence[str] | None = None, exclude_languages: Sequence[str] | None = None,
                  language_policy: str = "any", diversity: float = 0.0,
                  language_boost: float | None = None, topics: Sequence[str] | None = None,
                  diversity_by: str = "works") -> pl.DataFrame:
        """Long table ``user_id, rank, item_id, score`` + component scores for the given users.

        Unknown users and users without history get the popular items. Fewer than ``k`` rows
        come back for a user when fewer than ``k`` unseen items exist. ``explain=n`` adds the
        item's language and the ``n`` nearest history items of each row (:meth:`explain`).
        ``languages``, ``exclude_languages`` and ``language_policy`` restrict the items by
        language (:meth:`language_mask`); a user is given fewer than ``k`` rows when fewer
        allowed unseen items exist. ``diversity`` (0 to 1) trades score for spread over works
        (MMR, :mod:`xrec.ranking.diversify`; users without history are not affected);
        ``language_boost`` (nats) trades it for the other languages each user reads, for this call
        (default: the fitted ``HybridConfig.language_boost``; 0 is the likelihood ranking).
        ``topics`` keeps only items tagged with those topics, ``diversity_by="topics"`` spreads
        ``diversity`` over topics instead of works (both need a ranker fitted with ``topics=``).
        """
        from xrec.ranking.topical import topic_mask

        if k < 1:
            raise DataError(f"k={k}: must be at least 1")
        k = min(k, len(self.items))  # what can be returned: memory is users x min(k, catalogue)
        ids = pl.Series("user_id", user_ids)
        rows = self.users.index(ids)
        has_hist = np.zeros(len(rows), dtype=bool)
        known = rows >= 0
        has_hist[known] = np.diff(self.history.indptr)[rows[known]] > 0
        items = np.full((len(rows), k), -1, dtype=np.int64)
        scores = np.full((len(rows), k), -np.inf, dtype=np.float32)
        comps = {n: np.full((len(rows), k), np.nan, dtype=np.float32) for n in (*COMPONENTS, "popularity")}
        allowed = self.language_mask(rows[has_hist], languages=languages, exclude_languages=exclude_languages,
                                     language_policy=language_policy)
        # users without history have no languages of their own: the explicit filters only
        popular_allowed = self.language_mask(rows[:0], languages=languages, exclude_languages=exclude_languages)
        on_topic = topic_mask(self.content, topics)
        if on_topic is not None:
            allowed = on_topic if allowed is None else allowed & on_topic
            popular_allowed = on_topic if popular_allowed is None else popular_allowed & on_topic
        for mask, recs in ((has_hist, self.recommend_rows(rows[has_hist], k, allowed=allowed, diversity=diversity,
                                                                language_boost=language_boost,
                                                                diversity_by=diversity_by)
                            if has_hist.any() else None),
                           (~has_hist, self.recommend_popular(int((~has_hist).sum()), k, popular_allowed)
                            if (~has_hist).any() else None)):
            if recs is None:
                continue
            items[mask], scores[mask] = recs.ids, recs.scores
            for n in comps:
                comps[n][mask] = recs.components[n]
        frame = to_frame(ids, items, scores, comps, self.items)
        return self.explain(frame, explain) if explain else frame


    # ------------------------------------------------------------------ catalogue
    def add_items(self, ids: Sequence | pl.Series, vectors: np.ndarray, *, texts: Sequence[str] | None = None,
                  languages: Sequence[str | None] | None = None,
                  metadata: Mapping[str, Sequence[str | None]] | None = None,
                  encoder_fingerprint: str | None = None, topics: pl.DataFrame | None = None) -> HybridRanker:
        """A new ranker: this one with items added, without refitting anything learned
        (``ranker = ranker.add_items(...)``; this ranker is left as it was, so a request still
        holding it sees the old catalogue whole, never half of the new one). The new items are cold
        items (no interactions), reached through content (the embedding, lexical and metadata graphs
        grown as if built with them, :meth:`ContentGraphs.extend`) and the cold-item features
        (CF factors, popularity and age carried over from their warm content neighbours, or
        predicted from their vectors), under the fusion already learned; they are saved with the
        new ranker.

        ``vectors`` ``[len(ids), dim]`` from the ranker's encoder (``encoder_fingerprint``, the
        fingerprint of the encoder that made them, is checked against the one the ranker was saved
        with, when both are known); ``texts`` link
        them lexically, ``languages`` and ``metadata`` (the fields the ranker was built with) as
        in :meth:`fit`; ``topics`` (``item_id, topic[, topic_score]`` of the new items) tags them.
        An id already in the catalogue (or twice in ``ids``), a vector of another dimension or a
        list of the wrong length is a :class:`DataError`."""
        from xrec.ranking.catalogue import grown

        return grown(type(self), self, ids, vectors, texts=texts, languages=languages, metadata=metadata,
                     topics=topics, expect_fingerprint=encoder_fingerprint)

    def remove_items(self, ids: Sequence | pl.Series) -> HybridRanker:
        """A new ranker: this one with items taken out of the catalogue (``ranker =
        ranker.remove_items(...)``; this ranker is left as it was). The new one never recommends
        them, and re-ranking drops them (counted in ``RerankReport.retired``), also once saved. The
        interactions with them stay in the users' histories as evidence of taste, and nothing
        learned is refitted. Removing an item already removed changes nothing; an id outside the
        catalogue is a :class:`DataError`."""
        from xrec.ranking.catalogue import retire

        return retire(self, ids)

    # ------------------------------------------------------------------ re-ranking
    def rerank_rows(self, rows: np.ndarray, items: np.ndarray, k: int | None = None, *,
                    upstream: np.ndarray | None = None, upstream_weight: float = 0.0,
                    components: bool = True) -> TopK:
        """Given items ``[len(rows), c]`` (-1 = padding) of user rows, best first by the fused
        score (plus the upstream term, :mod:`xrec.ranking.rerank`), as a :class:`~xrec.index.topk.TopK`
        like :meth:`recommend_rows`; ``k`` (None: all) per row.
        No exclusion: the caller drops seen items (:func:`~xrec.ranking.rerank.prepare_candidates`)."""
        from xrec.ranking.rerank import rerank_rows

        return rerank_rows(self, rows, items, k, upstream=upstream, upstream_weight=upstream_weight,
                           components=components)

    def rerank(self, user_ids: Sequence | np.ndarray | pl.Series | None, candidates, k: int | None = None, *,
               on_unknown: str = "drop", exclude_seen: bool = True, upstream_weight: float = 0.0,
               explain: int = 0, return_report: bool = False, languages: Sequence[str] | None = None,
               exclude_languages: Sequence[str] | None = None, language_policy: str = "any"):
        """Re-rank candidates from another model: ``user_id, rank, item_id, score`` + component
        scores (+ ``upstream_score`` when ``upstream_weight`` is not 0, + explanations with
        ``explain``), best first per user.

        ``candidates``: a frame ``user_id, item_id[, score]`` or item-id lists aligned with
        ``user_ids`` (None: every user of the frame, in order). Unknown ids, duplicates, NaN
        scores, seen items and empty lists follow :mod:`xrec.ranking.rerank`. ``return_report``
        also returns the :class:`~xrec.ranking.rerank.RerankReport`. ``languages``,
        ``exclude_languages`` and ``language_policy`` drop candidates by language
        (:meth:`language_mask`; counted in ``report.language_filtered``)."""
        from xrec.ranking.rerank import rerank

        return rerank(self, user_ids, candidates, k, on_unknown=on_unknown, exclude_seen=exclude_seen,
                      upstream_weight=upstream_weight, explain=explain, return_report=return_report,
                      languages=languages, exclude_languages=exclude_languages, language_policy=language_policy)

    # ------------------------------------------------------------------ explanations
    def explain(self, frame: pl.DataFrame, n: int = 3) -> pl.DataFrame:
        """``frame`` (``user_id, item_id, ...``, e.g. from :meth:`recommend` or :meth:`rerank`) with
        the item's language (``lang``) and, for each row, the ``n`` items of the user's history
        nearest to the item in the shared embedding space (cosine), most similar first:
        ``because_item_id``, ``because_lang``, ``because_similarity`` (lists; empty for users
        without history and items without a vector). The component scores already in the frame say
        how much collaborative, content, lexical and prior evidence made the score."""
        from xrec.ranking.explain import explain

        return explain(self, frame, n)
