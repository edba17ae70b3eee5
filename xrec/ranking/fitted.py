"""What the ranker's parts see of a fitted ranker: typing protocols, so that no part imports the facade.

:class:`~xrec.ranking.HybridRanker` composes the parts (features in :mod:`~xrec.ranking.views`,
the fusion fit in :mod:`~xrec.ranking.training`, serving in :mod:`~xrec.ranking.serving`, catalogue
changes, language rules, re-ranking, explanations, saving) and is a :class:`FittedRanker`; a part
that builds a ranker (the validation fit, a grown catalogue, loading) is given a
:class:`RankerFactory` (the facade class).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
    import scipy.sparse as sp

    from xrec.catalogue.interactions import IdMap, Interactions
    from xrec.ranking.cf import FactorModel
    from xrec.ranking.config import HybridConfig
    from xrec.ranking.content_graphs import ContentGraphs
    from xrec.ranking.fusion import Fusion
    from xrec.ranking.views import FeatureViews, Folded


class FittedRanker(Protocol):
    """The state and scoring methods of a fitted hybrid ranker (:class:`~xrec.ranking.HybridRanker`)."""

    config: HybridConfig
    interactions: Interactions
    users: IdMap
    items: IdMap
    history: sp.csr_matrix  #: ``[n_users, n_items]``, sorted indices
    item_vectors: np.ndarray  #: ``[n_items, dim]`` float32
    content: ContentGraphs
    cf: FactorModel | None
    cf_graph: sp.csr_matrix  #: the co-consumption kNN graph
    views: FeatureViews
    popularity: np.ndarray  #: ``[n_items]`` log(1 + interactions)
    cold: np.ndarray  #: ``[n_items]`` bool, items without interactions
    fusion: Fusion
    folded: Folded
    encoder_fingerprint: str | None
    retired: np.ndarray  #: ``[n_items]`` bool, items taken out of the catalogue

    def score_items(self, rows: np.ndarray, items: np.ndarray, *, language_boost: float | None = None
                    ) -> np.ndarray: ...

    def components(self, rows: np.ndarray, items: np.ndarray) -> dict[str, np.ndarray]: ...

    def language_mask(self, rows: np.ndarray, *, languages: Sequence[str] | None = None,
                      exclude_languages: Sequence[str] | None = None,
                      language_policy: str = "any") -> np.ndarray | None: ...

    def explain(self, frame: pl.DataFrame, n: int = 3) -> pl.DataFrame: ...


R = TypeVar("R", bound=FittedRanker, covariant=True)


class RankerFactory(Protocol[R]):
    """Builds a fitted ranker of type ``R`` from its parts (the signature of ``HybridRanker(...)``)."""

    def __call__(self, interactions: Interactions, item_vectors: np.ndarray, cf: FactorModel | None,
                 content: ContentGraphs, fusion: Fusion | None = None, config: HybridConfig | None = None,
                 cf_graph: sp.csr_matrix | None = None) -> R: ...
