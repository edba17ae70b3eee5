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
positives, or a pre-trained CF model without ``cf_fit``) are :data:`DEFAULT_WEIGHTS` used
(standardised weights learned on Book-Crossing, applied with the data's own feature scales); the
ranker logs a warning and ``fusion.kind`` says ``"default"``.

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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from xrec.errors import DataError
from xrec.ranking.cf import FactorModel, fit_als
from xrec.ranking.fusion import Fusion
from xrec.ranking.graphs import cf_knn
from xrec.ranking.interactions import IdMap, Interactions, random_split, temporal_split
from xrec.ranking.views import ContentGraphs, FeatureViews, is_cold_feature

log = logging.getLogger(__name__)

#: Standardised default weights (used only without a validation slice; see the module docstring).
DEFAULT_WEIGHTS = {"cf": 0.1, "cf_knn": 0.25, "popularity": 1.0, "cold": -0.2,
                   "embedding": 0.15, "embedding_same": 0.15, "embedding_cross": 0.05,
                   "lexical": 0.02, "lexical_same": 0.02, "meta_author": 0.03, "meta_author_same": 0.03}
#: Feature whose weight is ``HybridConfig.language_boost`` (set, not fitted).
BOOST_FEATURE = "language_other_read"
#: Default ``language_boost`` in nats (module docstring).
LANGUAGE_BOOST = 4.0
#: Features left out unless named in ``HybridConfig.features``: measured not to pay (benchmarks/README.md).
OFF_BY_DEFAULT = ("language", "cold_popularity", "len_x_popularity", "len_x_cf", "len_x_content",
                  "minority_x_popularity", "minority_x_cf", "minority_x_content")
#: Groups of features reported as component scores; they sum to ``score``.
COMPONENTS = {"cf_score": ("cf", "cold_cf", "cf_knn"), "content_score": ("embedding", "content", "cold_content"),
              "lexical_score": ("lexical", "meta_"),
              "prior_score": ("popularity", "cold", "language", "recency", "time_x_recency")}


@dataclass
class HybridConfig:
    """Knobs of the hybrid ranker (defaults chosen on validation slices of Book-Crossing and MovieLens)."""

    #: features of the fusion (None: every available one but :data:`OFF_BY_DEFAULT`)
    features: tuple[str, ...] | None = None
    graph_k: int = 50  #: neighbours per item in the embedding and lexical graphs
    cf_knn_k: int = 100  #: neighbours per item in the co-consumption graph
    validation_fraction: float = 0.2
    cold_fraction: float = 0.0  #: items made cold in the validation slice (all interactions held out)
    cold_language: bool = True  #: also make a whole language cold in the validation slice
    min_validation_positives: int = 50
    l2: float = 1e-3  #: L2 penalty of the fusion fit (on standardised features)
    cold_l2: float = 1e-3  #: L2 penalty of the cold items' fit (fewer positives)
    max_fit_users: int = 1000  #: validation users sampled for the fusion fit
    max_fit_items: int = 6000  #: catalogue sample of the fusion fit's softmax
    #: nats added to the score of items in a language the user reads besides their most-read one
    #: (0: off; module docstring)
    language_boost: float = LANGUAGE_BOOST
    threads: int = 0  #: threads of implicit's item-item model (0: all cores)
    seed: int = 0


@dataclass
class Recommendations:
    """Top-k per user: item indices (-1 = padding), fused scores (-inf = padding), component scores."""

    items: np.ndarray
    scores: np.ndarray
    components: dict[str, np.ndarray] = field(default_factory=dict)


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
        self.cf = _prepare_cf(cf, self.users, self.items, self.history)
        self.cf_graph = cf_knn(self.history, self.config.cf_knn_k, threads=self.config.threads) \
            if cf_graph is None else cf_graph
        ts = interactions.timestamp_matrix() if interactions.has_timestamps else None
        self.views = FeatureViews(self.history, content, self.cf, item_vectors=item_vectors, cf_knn=self.cf_graph,
                                  timestamps=ts)
        self.popularity = self.views.item_views["popularity"][:, 0]
        self.cold = self.views.cold
        self.fusion = fusion or self._default_fusion()
        self.folded = self.views.fold(self.fusion.raw)
        self.encoder_fingerprint: str | None = None  #: set by :meth:`load` (and :meth:`save`)
        #: items taken out of the catalogue (:meth:`remove_items`): never recommended or re-ranked
        self.retired = np.zeros(n_items, dtype=bool)

    # ------------------------------------------------------------------ construction
    @classmethod
    def fit(cls, interactions: Interactions, item_vectors: np.ndarray, *, texts: Sequence[str] | None = None,
            languages: Sequence[str | None] | None = None,
            metadata: Mapping[str, Sequence[str | None]] | None = None, cf: FactorModel | None = None,
            cf_fit: CFFit | None = None, config: HybridConfig | None = None,
            content: ContentGraphs | None = None) -> HybridRanker:
        """Fit CF (unless ``cf`` is given) and the fusion on a validation slice (module docstring).

        ``texts`` (item texts, catalogue order) add the lexical graph, ``languages`` the language
        features and the same/cross-language split, ``metadata`` a graph per field (items sharing
        a normalised value, e.g. ``{"author": authors}``). ``content`` reuses graphs built before."""
        from xrec.progress import phase

        config = config or HybridConfig()
        if content is None:
            with phase("hybrid: content graphs (embedding, lexical, metadata)"):
                content = ContentGraphs.build(item_vectors, texts=texts, languages=languages, metadata=metadata,
                                              k=config.graph_k)
        if cf is None and cf_fit is None:
            cf_fit = default_cf_fit
        fusion = None
        if cf_fit is None:
            log.warning("pre-trained CF model without cf_fit: no validation fit; default fusion weights")
        else:
            with phase("hybrid: fusion on a validation slice"):
                fusion = cls._learn_fusion(interactions, item_vectors, content, cf_fit, config)
        with phase("hybrid: final CF fit"):
            if cf is None:
                cf = cf_fit(interactions.matrix)
            return cls(interactions, item_vectors, cf, content, fusion, config)

    @classmethod
    def _learn_fusion(cls, interactions: Interactions, item_vectors: np.ndarray, content: ContentGraphs,
                      cf_fit: CFFit, config: HybridConfig) -> Fusion | None:
        """The fusion learned on a validation slice, or None (default weights) with a warning.

        Warm features are weighed by the softmax of the validation items over the warm catalogue,
        cold features by the softmax of the cold items' validation interactions over the cold
        items (most of them made cold on purpose, :func:`validation_slice`); the cold-item bias
        is then set by :func:`calibrate_cold`."""
        slice_ = validation_slice(interactions, config, content.language_codes)
        if slice_ is None:
            return None
        sub, truth, simulated = slice_
        ranker = cls(sub, item_vectors, cf_fit(sub.matrix), content, Fusion((), np.zeros(0), np.zeros(0)),
                     config)
        names = ranker._feature_names()
        warm_names = [n for n in names if not is_cold_feature(n) and n != BOOST_FEATURE]
        cold_names = [n for n in names if is_cold_feature(n) and n != "cold"]
        seen_all = sub.matrix.tocsr()
        cold = ranker.cold

        def sample(columns: np.ndarray, which: Sequence[str]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
            users, items, log_weight = _fit_sample(truth[:, columns], config)
            items = columns[items]
            x = np.concatenate([ranker.views.features(b, np.broadcast_to(items, (len(b), len(items))), which)
                                for b in np.array_split(users, max(1, -(-len(users) // 256)))])
            return users, items, log_weight, x

        users, items, log_weight, x = sample(np.flatnonzero(~simulated), names)
        pos = truth[users][:, items].toarray() > 0
        seen = seen_all[users][:, items].toarray() != 0
        cold_col = cold[items]
        index = {n: j for j, n in enumerate(names)}
        warm = Fusion.learn(warm_names, x[..., [index[n] for n in warm_names]], pos & ~cold_col[None],
                            seen | cold_col[None], log_weight=log_weight, l2=config.l2)
        parts = [warm]
        if "cold" in names and cold.any() and cold_names:
            c_users, c_items, c_log_weight, xc = sample(np.flatnonzero(cold), cold_names)
            c_pos = truth[c_users][:, c_items].toarray() > 0
            if c_pos.any():
                parts.append(Fusion.learn(cold_names, xc, c_pos,
                                          seen_all[c_users][:, c_items].toarray() != 0,
                                          log_weight=c_log_weight, l2=config.cold_l2))
        learned = {n: (w, sc) for part in parts for n, w, sc in zip(part.names, part.weights, part.scale)}
        if "cold" in names:
            learned["cold"] = (0.0, 1.0)  # set by calibrate_cold
        if BOOST_FEATURE in names:
            learned[BOOST_FEATURE] = (0.0, 1.0)  # a policy, not fitted: set below
        kept = tuple(n for n in names if n in learned)
        fusion = Fusion(kept, np.array([learned[n][0] for n in kept], np.float32),
                        np.array([learned[n][1] for n in kept], np.float32))
        if "cold" in fusion.names:
            keep = [index[n] for n in fusion.names]
            fusion = calibrate_cold(fusion, x[..., keep], pos, seen, log_weight, cold_col)
        if BOOST_FEATURE in fusion.names:
            fusion = fusion.with_raw_weight(BOOST_FEATURE, config.language_boost)
        return fusion

    def _feature_names(self) -> tuple[str, ...]:
        wanted = self.config.features
        if wanted is None:
            return tuple(n for n in self.views.names if n not in OFF_BY_DEFAULT)
        return tuple(n for n in self.views.names if n in wanted)

    def _default_fusion(self) -> Fusion:
        names = self._feature_names()
        rng = np.random.default_rng(self.config.seed)
        users = np.flatnonzero(np.diff(self.history.indptr) > 0)
        users = np.sort(rng.choice(users, min(256, len(users)), replace=False)) if len(users) else users
        items = np.sort(rng.choice(len(self.items), min(2000, len(self.items)), replace=False))
        sample = self.views.features(users, np.broadcast_to(items, (len(users), len(items))), names) \
            if len(users) else np.zeros((1, 1, len(names)), np.float32)
        if len(names):
            log.warning("fusion: default weights (%s)", ", ".join(n for n in names if n in DEFAULT_WEIGHTS))
        fusion = Fusion.default(names, sample, DEFAULT_WEIGHTS)
        if BOOST_FEATURE in names and self.config.language_boost:
            fusion = fusion.with_raw_weight(BOOST_FEATURE, self.config.language_boost)
        return fusion

    def fingerprint(self) -> str:
        """Hash of everything that determines the output (data shapes, config, fusion, scores)."""
        h = hashlib.sha256(json.dumps({"config": asdict(self.config), "fusion": self.fusion.as_dict(),
                                       "shape": list(self.history.shape), "nnz": int(self.history.nnz)},
                                      sort_keys=True, default=str).encode())
        for arr in (self.item_vectors, self.history.data, self.history.indices, self.folded.query,
                    self.folded.keys, self.folded.graph.data, self.folded.graph.indices):
            h.update(np.ascontiguousarray(arr).tobytes())
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
        """Read a ranker written by :meth:`save`; :class:`~xrec.errors.ArtifactError` names what is wrong."""
        from xrec.ranking.persist import load_ranker

        return load_ranker(cls, path, encoder_fingerprint=encoder_fingerprint)

    # ------------------------------------------------------------------ scoring
    def features(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``[len(rows), c, len(fusion.names)]`` raw features of ``items`` ``[len(rows), c]``."""
        return self.views.features(np.asarray(rows, np.int64), np.asarray(items, np.int64), self.fusion.names)

    def score_items(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Fused scores of given items ``[len(rows), c]`` (no exclusion)."""
        return self.folded.score_items(np.asarray(rows, np.int64), np.asarray(items, np.int64))

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
                       allowed: np.ndarray | None = None, diversity: float = 0.0) -> Recommendations:
        """Top-``k`` unseen items for user rows (indices into ``self.users``).

        ``components=False`` skips the per-item component scores (the ranking is the same);
        ``allowed`` (``[n_items]`` or ``[len(rows), n_items]`` bool, :meth:`language_mask`) keeps
        only those items (rows come back short, padded, when fewer than ``k`` remain);
        ``diversity`` > 0 picks the ``k`` items from the best ``max(5k, 50)`` by MMR
        (:mod:`xrec.ranking.diversify`)."""
        if not 0.0 <= diversity <= 1.0:
            raise DataError(f"diversity={diversity}: must be within [0, 1]")
        rows = np.asarray(rows, dtype=np.int64)
        want = k
        if diversity > 0:
            k = max(5 * k, 50)
        kk = min(k, len(self.items))
        scores = self.folded.scores(rows)
        seen = self.history[rows]
        scores[seen.nonzero()] = -np.inf
        scores[:, self.retired] = -np.inf
        if allowed is not None:
            scores[~np.broadcast_to(allowed, scores.shape)] = -np.inf
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        top = np.take_along_axis(scores, part, 1)
        order = np.argsort(-top, axis=1, kind="stable")
        items = np.take_along_axis(part, order, 1).astype(np.int64)
        scores = np.take_along_axis(top, order, 1).astype(np.float32)
        pad = ~np.isfinite(scores)
        items[pad], scores[pad] = -1, -np.inf
        if diversity > 0:
            from xrec.ranking.diversify import mmr

            picked = mmr(scores, items, self.item_vectors, want, diversity)
            items = np.where(picked >= 0, np.take_along_axis(items, np.maximum(picked, 0), 1), -1)
            scores = np.where(picked >= 0, np.take_along_axis(scores, np.maximum(picked, 0), 1), -np.inf
                              ).astype(np.float32)
            pad = items < 0
            k = want
        comps: dict[str, np.ndarray] = {}
        if components:
            comps = self.components(rows, np.where(pad, 0, items))
            comps["popularity"] = self.popularity[np.where(pad, 0, items)].copy()
            for v in comps.values():
                v[pad] = np.nan
        return self._pad(Recommendations(items, scores, comps), k)

    def recommend_popular(self, n_users: int, k: int, allowed: np.ndarray | None = None) -> Recommendations:
        """Most popular items (the documented result for users with no history), among ``allowed``."""
        order = np.argsort(-self.popularity, kind="stable")
        order = order[~self.retired[order]]
        order = (order if allowed is None else order[allowed[order]])[:k]
        items = np.broadcast_to(order, (n_users, len(order))).copy()
        scores = np.broadcast_to(self.popularity[order], items.shape).astype(np.float32).copy()
        comps = {name: np.full(items.shape, np.nan, dtype=np.float32) for name in COMPONENTS}
        comps["popularity"] = scores.copy()
        return self._pad(Recommendations(items, scores, comps), k)

    @staticmethod
    def _pad(recs: Recommendations, k: int) -> Recommendations:
        missing = k - recs.items.shape[1]
        if missing <= 0:
            return recs
        pad = ((0, 0), (0, missing))
        return Recommendations(
            np.pad(recs.items, pad, constant_values=-1),
            np.pad(recs.scores, pad, constant_values=-np.inf),
            {n: np.pad(v, pad, constant_values=np.nan) for n, v in recs.components.items()})

    def language_mask(self, rows: np.ndarray, *, languages: Sequence[str] | None = None,
                      exclude_languages: Sequence[str] | None = None,
                      language_policy: str = "any") -> np.ndarray | None:
        """Items a call may return, by language (None: all): ``languages`` keeps only those,
        ``exclude_languages`` drops those (names exactly as given at fit; an unknown name is a
        :class:`DataError`); ``language_policy="history"`` keeps, per user row, the languages of
        the user's history (``[len(rows), n_items]``; users without history keep all). Items
        without a language pass every filter but ``languages``."""
        if language_policy not in ("any", "history"):
            raise DataError(f"language_policy={language_policy!r}: use 'any' or 'history'")
        if languages is None and exclude_languages is None and language_policy == "any":
            return None
        codes, names = self.content.language_codes, self.content.languages

        def code_set(values: Sequence[str], what: str) -> np.ndarray:
            values = [values] if isinstance(values, str) else list(values)
            unknown = [v for v in values if v not in names]
            if unknown:
                raise DataError(f"{what}: {unknown} not among the catalogue's languages {names}")
            return np.array([names.index(v) for v in values], dtype=np.int64)

        allowed = np.ones(len(codes), dtype=bool)
        if languages is not None:
            allowed &= np.isin(codes, code_set(languages, "languages"))
        if exclude_languages is not None:
            allowed &= ~np.isin(codes, code_set(exclude_languages, "exclude_languages"))
        if language_policy == "any":
            return allowed
        rows = np.asarray(rows, dtype=np.int64)
        out = np.broadcast_to(allowed, (len(rows), len(codes))).copy()
        n_lang = max(len(names), 1)
        for j, row in enumerate(rows):
            if row < 0:
                continue
            hist = codes[self.history.indices[self.history.indptr[row]:self.history.indptr[row + 1]]]
            hist = hist[hist >= 0]
            if len(hist):
                spoken = np.bincount(hist, minlength=n_lang) > 0
                out[j] &= (codes < 0) | spoken[np.maximum(codes, 0)]
        return out

    def recommend(self, user_ids: Sequence | np.ndarray, k: int = 10, *, explain: int = 0,
                  languages: Sequence[str] | None = None, exclude_languages: Sequence[str] | None = None,
                  language_policy: str = "any", diversity: float = 0.0) -> pl.DataFrame:
        """Long table ``user_id, rank, item_id, score`` + component scores for the given users.

        Unknown users and users without history get the popular items. Fewer than ``k`` rows
        come back for a user when fewer than ``k`` unseen items exist. ``explain=n`` adds the
        item's language and the ``n`` nearest history items of each row (:meth:`explain`).
        ``languages``, ``exclude_languages`` and ``language_policy`` restrict the items by
        language (:meth:`language_mask`); a user is given fewer than ``k`` rows when fewer
        allowed unseen items exist. ``diversity`` (0 to 1) trades score for spread over works and
        languages (MMR, :mod:`xrec.ranking.diversify`; users without history are not affected).
        """
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
        for mask, recs in ((has_hist, self.recommend_rows(rows[has_hist], k, allowed=allowed, diversity=diversity)
                            if has_hist.any() else None),
                           (~has_hist, self.recommend_popular(int((~has_hist).sum()), k, popular_allowed)
                            if (~has_hist).any() else None)):
            if recs is None:
                continue
            items[mask], scores[mask] = recs.items, recs.scores
            for n in comps:
                comps[n][mask] = recs.components[n]
        frame = to_frame(ids, items, scores, comps, self.items)
        return self.explain(frame, explain) if explain else frame


    # ------------------------------------------------------------------ catalogue
    def add_items(self, ids: Sequence | pl.Series, vectors: np.ndarray, *, texts: Sequence[str] | None = None,
                  languages: Sequence[str | None] | None = None,
                  metadata: Mapping[str, Sequence[str | None]] | None = None,
                  encoder_fingerprint: str | None = None) -> None:
        """Add items to the fitted ranker without refitting anything learned: they are cold items
        (no interactions), reached through content (the embedding, lexical and metadata graphs
        grown as if built with them, :meth:`ContentGraphs.extend`) and the cold-item features
        (CF factors, popularity and age carried over from their warm content neighbours, or
        predicted from their vectors), under the fusion already learned. They are recommendable
        from the next call and saved with the ranker.

        ``vectors`` ``[len(ids), dim]`` from the ranker's encoder (``encoder_fingerprint`` is
        checked against the one the ranker was saved with, when both are known); ``texts`` link
        them lexically, ``languages`` and ``metadata`` (the fields the ranker was built with) as
        in :meth:`fit`. An id already in the catalogue (or twice in ``ids``), a vector of another
        dimension or a list of the wrong length is a :class:`DataError`."""
        ids = pl.Series("item_id", ids)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n_new = len(ids)
        dim = self.item_vectors.shape[1]
        if vectors.ndim != 2 or vectors.shape != (n_new, dim):
            raise DataError(f"add_items: vectors of shape {vectors.shape}; expected ({n_new}, {dim}) "
                            "(one row per id, the ranker's encoder dimension)")
        if not np.isfinite(vectors).all():
            raise DataError("add_items: vectors hold NaN or infinite values")
        known = getattr(self, "encoder_fingerprint", None)
        if encoder_fingerprint is not None and known is not None and encoder_fingerprint != known:
            raise DataError(f"add_items: vectors from encoder {encoder_fingerprint}, the ranker's is {known}")
        for what, values in (("texts", texts), ("languages", languages),
                             *((f"metadata[{f!r}]", v) for f, v in (metadata or {}).items())):
            if values is not None and len(values) != n_new:
                raise DataError(f"add_items: {len(values)} {what} for {n_new} ids")
        unknown_fields = set(metadata or {}) - {n[len("meta_"):] for n in self.content.graphs if n.startswith("meta_")}
        if unknown_fields:
            raise DataError(f"add_items: metadata field(s) {sorted(unknown_fields)} the ranker was not built with")
        if n_new and ids.dtype != self.items.ids.dtype:
            try:
                ids = ids.cast(self.items.ids.dtype, strict=True)
            except Exception as exc:
                raise DataError(f"add_items: ids are {ids.dtype}, the catalogue's {self.items.ids.dtype}") from exc
        where = self.items.index(ids)
        present = where >= 0
        if present.any():
            first = int(np.flatnonzero(present)[0])
            state = " (removed with remove_items: its interactions still count)" if self.retired[where[first]] else ""
            raise DataError(f"add_items: id {ids[first]!r} is already in the catalogue{state} "
                            f"({int(present.sum())} of {n_new})")
        all_ids = pl.concat([self.items.ids, ids])
        items = IdMap(all_ids, "item_id")  # raises on a duplicate within ids
        n = len(items)
        all_vectors = np.vstack([self.item_vectors, vectors])
        content = self.content.extend(all_vectors, n_new, texts=texts, languages=languages, metadata=metadata)
        matrix = sp.hstack([self.interactions.matrix, sp.csr_matrix((len(self.users), n_new), dtype=np.float32)]
                           ).tocsr()
        inter = Interactions(frame=self.interactions.frame, users=self.users, items=items, matrix=matrix,
                             report=self.interactions.report)
        cf = None
        if self.cf is not None:
            cf = FactorModel(self.cf.user_factors, np.vstack([self.cf.item_factors, np.zeros(
                (n_new, self.cf.dim), np.float32)]), name=self.cf.name, regularization=self.cf.regularization)
        g = self.cf_graph.tocsr()
        cf_graph = sp.csr_matrix((g.data, g.indices, np.concatenate(
            [g.indptr, np.full(n_new, g.indptr[-1], dtype=g.indptr.dtype)])), shape=(n, n))
        grown = type(self)(inter, all_vectors, cf, content, self.fusion, self.config, cf_graph=cf_graph)
        grown.encoder_fingerprint = known if known is not None else encoder_fingerprint
        grown.retired = np.concatenate([self.retired, np.zeros(n_new, dtype=bool)])
        self.__dict__.update(grown.__dict__)

    def remove_items(self, ids: Sequence | pl.Series) -> int:
        """Take items out of the catalogue: they are no longer recommended, and re-ranking drops
        them (counted in ``RerankReport.retired``), from the next call on and once saved. The
        interactions with them stay in the users' histories as evidence of taste, and nothing
        learned is refitted. Returns how many were not removed before; an id outside the
        catalogue is a :class:`DataError`."""
        ids = pl.Series("item_id", ids)
        if len(ids) and ids.dtype != self.items.ids.dtype:
            try:
                ids = ids.cast(self.items.ids.dtype, strict=True)
            except Exception as exc:
                raise DataError(f"remove_items: ids are {ids.dtype}, the catalogue's {self.items.ids.dtype}") from exc
        where = self.items.index(ids)
        if (where < 0).any():
            missing = ids.filter(pl.Series(where < 0))
            raise DataError(f"remove_items: id {missing[0]!r} is not in the catalogue ({len(missing)} of {len(ids)})")
        before = int(self.retired.sum())
        self.retired[where] = True
        return int(self.retired.sum()) - before

    # ------------------------------------------------------------------ re-ranking
    def rerank_rows(self, rows: np.ndarray, items: np.ndarray, k: int | None = None, *,
                    upstream: np.ndarray | None = None, upstream_weight: float = 0.0,
                    components: bool = True) -> Recommendations:
        """Given items ``[len(rows), c]`` (-1 = padding) of user rows, best first by the fused
        score (plus the upstream term, :mod:`xrec.ranking.rerank`); ``k`` (None: all) per row.
        No exclusion: the caller drops seen items (:func:`~xrec.ranking.rerank.prepare_candidates`)."""
        rows = np.asarray(rows, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        valid = items >= 0
        safe = np.where(valid, items, 0)
        scores = self.score_items(rows, safe) if items.size else np.zeros(items.shape, np.float32)
        extra = None
        if upstream is not None and upstream_weight != 0:
            from xrec.ranking.rerank import upstream_term

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
            comps = self.components(rows, safe_top) if top_items.size else \
                {n: np.zeros(top_items.shape, np.float32) for n in COMPONENTS}
            if extra is not None:
                comps["upstream_score"] = np.take_along_axis(extra, order, 1)
            comps["popularity"] = self.popularity[safe_top].copy()
            for v in comps.values():
                v[pad] = np.nan
        return Recommendations(top_items, top_scores, comps)

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
        from xrec.ranking.rerank import prepare_candidates

        if k is not None and k < 1:
            raise DataError(f"k={k}: must be at least 1 (or None for every candidate)")
        cand, report = prepare_candidates(self, user_ids, candidates, on_unknown=on_unknown,
                                          exclude_seen=exclude_seen)
        if self.retired.any() and cand.items.size:
            retired = (cand.items >= 0) & self.retired[np.maximum(cand.items, 0)]
            report.retired = int(retired.sum())
            cand.items = np.where(retired, -1, cand.items)
        allowed = self.language_mask(cand.rows, languages=languages, exclude_languages=exclude_languages,
                                     language_policy=language_policy)
        if allowed is not None and cand.items.size:
            valid = cand.items >= 0
            ok = np.take_along_axis(np.broadcast_to(allowed, (len(cand.rows), len(self.items))),
                                    np.where(valid, cand.items, 0), 1)
            report.language_filtered = int((valid & ~ok).sum())
            cand.items = np.where(ok, cand.items, -1)
        recs = self.rerank_rows(cand.rows, cand.items, k, upstream=cand.upstream, upstream_weight=upstream_weight)
        frame = to_frame(cand.user_ids, recs.items, recs.scores, recs.components, self.items)
        if explain:
            frame = self.explain(frame, explain)
        return (frame, report) if return_report else frame


    # ------------------------------------------------------------------ explanations
    def explain(self, frame: pl.DataFrame, n: int = 3) -> pl.DataFrame:
        """``frame`` (``user_id, item_id, ...``, e.g. from :meth:`recommend` or :meth:`rerank`) with
        the item's language (``lang``) and, for each row, the ``n`` items of the user's history
        nearest to the item in the shared embedding space (cosine), most similar first:
        ``because_item_id``, ``because_lang``, ``because_similarity`` (lists; empty for users
        without history and items without a vector). The component scores already in the frame say
        how much collaborative, content, lexical and prior evidence made the score."""
        if n < 1:
            raise DataError(f"explain n={n}: must be at least 1")
        rows = self.users.index(frame["user_id"])
        items = self.items.index(frame["item_id"])
        codes, names = self.content.language_codes, self.content.languages
        lang_of = np.array([None, *names], dtype=object)[codes + 1] if len(names) else \
            np.full(len(codes), None, dtype=object)
        ids = self.items.ids.to_list()
        because_ids: list[list] = [[] for _ in range(frame.height)]
        because_langs: list[list] = [[] for _ in range(frame.height)]
        because_sims: list[list[float]] = [[] for _ in range(frame.height)]
        ok = (rows >= 0) & (items >= 0)
        order = np.argsort(np.where(ok, rows, -1), kind="stable")
        order = order[ok[order]]
        bounds = np.flatnonzero(np.diff(rows[order])) + 1
        for group in np.split(order, bounds) if len(order) else []:
            row = rows[group[0]]
            hist = self.history.indices[self.history.indptr[row]:self.history.indptr[row + 1]]
            if not len(hist):
                continue
            sims = self.item_vectors[items[group]] @ self.item_vectors[hist].T  # [m, len(hist)]
            m = min(n, len(hist))
            top = np.argpartition(-sims, m - 1, axis=1)[:, :m]
            top = np.take_along_axis(top, np.argsort(-np.take_along_axis(sims, top, 1), axis=1, kind="stable"), 1)
            for j, line in enumerate(group):
                if not self.item_vectors[items[line]].any():
                    continue
                picked = hist[top[j]]
                because_ids[line] = [ids[h] for h in picked]
                because_langs[line] = lang_of[picked].tolist()
                because_sims[line] = sims[j, top[j]].astype(float).tolist()
        lang = [lang_of[i] if i >= 0 else None for i in items]
        return frame.with_columns(
            pl.Series("lang", lang, dtype=pl.String),
            pl.Series("because_item_id", because_ids, dtype=pl.List(self.items.ids.dtype)),
            pl.Series("because_lang", because_langs, dtype=pl.List(pl.String)),
            pl.Series("because_similarity", because_sims, dtype=pl.List(pl.Float32)))


def _prepare_cf(cf: FactorModel | None, users: IdMap, items: IdMap, history: sp.csr_matrix) -> FactorModel | None:
    """The CF model aligned to the data's users and items; unseen users with history folded in."""
    if cf is None:
        return None
    if cf.users is not None or cf.items is not None:
        cf = cf.align(users, items)
    elif cf.item_factors.shape[0] != len(items) or cf.user_factors.shape[0] != len(users):
        raise DataError(f"CF model has {cf.user_factors.shape[0]} users x {cf.item_factors.shape[0]} "
                        f"items, the data {len(users)} x {len(items)}; pass the model's ids")
    missing = ~cf.user_factors.any(axis=1) & (np.diff(history.indptr) > 0)
    if missing.any():
        cf.user_factors[missing] = cf.fold_in(history[np.flatnonzero(missing)])
    return cf


def validation_slice(interactions: Interactions, config: HybridConfig, language_codes: np.ndarray | None = None
                     ) -> tuple[Interactions, sp.csr_matrix, np.ndarray] | None:
    """``(fit interactions, validation positives, simulated-cold items)`` or None when too few.

    The last ``validation_fraction`` of each user's interactions by time (every interaction
    timestamped) or a seeded random ``validation_fraction`` (otherwise) is held out. The time cut
    leaves new items cold, as they will be when served; a random cut leaves few, so without
    timestamps all the interactions of a random ``cold_fraction`` of the items can be held out too,
    which makes them cold (0 by default: on Book-Crossing the language block below taught the
    fusion as much about cold items, and a random cold block cost new-language NDCG).
    With ``cold_language`` and item languages, every item of the most-read language after the
    majority one is made cold too: a simulated new-language catalogue, whose readers teach the
    fusion how cold items are found across languages."""
    frame = interactions.frame
    if interactions.has_timestamps:
        train, val = temporal_split(frame, config.validation_fraction, min_test=0)
    else:
        train, val = random_split(frame, config.validation_fraction, seed=config.seed, min_test=0)
    items = interactions.items
    # with timestamps the time cut itself leaves new items cold, as they will be when served
    fraction = 0.0 if interactions.has_timestamps else config.cold_fraction
    simulated = np.random.default_rng(config.seed + 1).random(len(items)) < fraction
    if config.cold_language and language_codes is not None and (language_codes >= 0).any():
        read = language_codes[items.index(train["item_id"])]
        counts = np.bincount(read[read >= 0], minlength=int(language_codes.max()) + 1)
        if (counts > 0).sum() > 1:
            simulated |= language_codes == int(np.argsort(-counts, kind="stable")[1])
    if simulated.any():
        moved = pl.Series(simulated[items.index(train["item_id"])])
        val = pl.concat([val, train.filter(moved)], how="vertical_relaxed")
        train = train.filter(~moved)
    sub = Interactions.build(train, items.ids, user_ids=interactions.users.ids)
    rows, cols = sub.users.index(val["user_id"]), sub.items.index(val["item_id"])
    truth = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=sub.matrix.shape)
    truth = truth - truth.multiply(sub.matrix != 0)
    truth.eliminate_zeros()
    truth.data[:] = 1.0
    if truth.nnz < config.min_validation_positives:
        log.warning("%d validation positives (< %d): default fusion weights", truth.nnz,
                    config.min_validation_positives)
        return None
    return sub, truth, simulated


def calibrate_cold(fusion: Fusion, x: np.ndarray, positives: np.ndarray, excluded: np.ndarray,
                   log_weight: np.ndarray | None, cold: np.ndarray) -> Fusion:
    """Shift the ``cold`` weight so that the fused softmax puts on (naturally) cold items the share
    of the validation positives they hold: cold items then enter lists as often as they are read.

    The arrays are the fit sample without the simulated-cold items (``x`` holds the fusion's
    features in its order); ``cold`` marks the items of the sample that are cold in the fit."""
    names = list(fusion.names)
    w = fusion.weights / fusion.scale
    base = x @ w + np.where(excluded, -np.inf, 0.0 if log_weight is None else log_weight[None])
    n_pos = positives.sum()
    target = max(float(positives[:, cold].sum()), 0.5) / max(float(n_pos), 1.0)
    users = positives.any(axis=1)

    def share(bias: float) -> float:
        s = base[users] + bias * cold[None]
        s = s - s.max(axis=1, keepdims=True)
        e = np.exp(s)
        return float((e[:, cold].sum(axis=1) / e.sum(axis=1)).mean())

    finite = base[np.isfinite(base)]
    spread = float(finite.max() - finite.min()) + 50.0 if finite.size else 50.0
    lo, hi = -spread, spread  # the bias that matters lies within the spread of the scores
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if share(mid) < target else (lo, mid)
    j = names.index("cold")
    weights = fusion.weights.copy()
    weights[j] += (lo + hi) / 2 * fusion.scale[j]
    log.info("cold items: calibrated to %.4f of the softmax mass (their share of validation positives)", target)
    return Fusion(fusion.names, weights, fusion.scale, fusion.kind)


def _fit_sample(truth: sp.csr_matrix, config: HybridConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Users and items of the fusion fit, and the items' log-weights (how many catalogue items
    each sampled item stands for): every validation positive of the sampled users plus a uniform
    sample of the other items above ``max_fit_items``."""
    rng = np.random.default_rng(config.seed)
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    if len(users) > config.max_fit_users:
        users = np.sort(rng.choice(users, config.max_fit_users, replace=False))
    n = truth.shape[1]
    if n <= config.max_fit_items:
        return users, np.arange(n), None
    positive = np.unique(truth[users].indices)
    others = np.setdiff1d(np.arange(n), positive)
    sample = np.sort(rng.choice(others, min(config.max_fit_items, len(others)), replace=False))
    log_weight = np.concatenate([np.zeros(len(positive)), np.full(len(sample), np.log(len(others) / len(sample)))])
    return users, np.concatenate([positive, sample]), log_weight.astype(np.float32)


def to_frame(user_ids: pl.Series, items: np.ndarray, scores: np.ndarray,
             components: dict[str, np.ndarray], item_map: IdMap) -> pl.DataFrame:
    """Long ``user_id, rank, item_id, score, <components>`` table; padding (-1) rows dropped."""
    b, k = items.shape
    valid = (items >= 0).reshape(-1)
    flat_items = items.reshape(-1)[valid]
    data = {
        "user_id": user_ids.gather(np.repeat(np.arange(b), k)[valid]),
        "rank": pl.Series("rank", np.tile(np.arange(1, k + 1, dtype=np.int32), b)[valid]),
        "item_id": item_map.ids.gather(flat_items),
        "score": pl.Series("score", scores.reshape(-1)[valid].astype(np.float32)),
    }
    for name, values in components.items():
        data[name] = pl.Series(name, values.reshape(-1)[valid].astype(np.float32))
    return pl.DataFrame(data)
