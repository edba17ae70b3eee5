"""Knobs and constants of the hybrid ranker (:class:`~xrec.ranking.HybridRanker`)."""

from __future__ import annotations

from dataclasses import dataclass

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
                  "minority_x_popularity", "minority_x_cf", "minority_x_content", "topic", "cold_topic")
#: Groups of features reported as component scores; they sum to ``score``.
COMPONENTS = {"cf_score": ("cf", "cold_cf", "cf_knn"), "content_score": ("embedding", "content", "cold_content"),
              "lexical_score": ("lexical", "cold_lexical", "meta_"),
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
    #: fewer held-out positives than this: default weights instead of a fit (still guarded)
    min_validation_positives: int = 50
    #: ship the fusion only where it validates at least as well as each part (:mod:`xrec.ranking.guard`)
    guard: bool = True
    l2: float = 1e-3  #: L2 penalty of the fusion fit (on standardised features)
    cold_l2: float = 1e-3  #: L2 penalty of the cold items' fit (fewer positives)
    max_fit_users: int = 1000  #: validation users sampled for the fusion fit
    max_fit_items: int = 6000  #: catalogue sample of the fusion fit's softmax
    #: nats added to the score of items in a language the user reads besides their most-read one
    #: (0: off; module docstring)
    language_boost: float = LANGUAGE_BOOST
    threads: int = 0  #: threads of implicit's item-item model (0: all cores)
    seed: int = 0
