"""Recommendation: CF adapters (implicit, LightFM), item graphs and the hybrid ranker.

``HybridRanker.fit(interactions, item_vectors, texts=..., languages=..., metadata=...)`` is the
entry point (interactions and items come from :mod:`xrec.catalogue`); :func:`recommend_to_parquet`
writes batch recommendations resumably, :func:`rerank_to_parquet` re-ranked candidates of another model.
"""

from xrec.index.topk import TopK
from xrec.ranking.batch import recommend_to_parquet, rerank_to_parquet
from xrec.ranking.cf import FactorModel, fit_als, fit_bpr, fit_lightfm, from_implicit, from_lightfm
from xrec.ranking.content import item_vectors
from xrec.ranking.hybrid import HybridConfig, HybridRanker

__all__ = ["FactorModel", "HybridConfig", "HybridRanker", "TopK", "fit_als", "fit_bpr", "fit_lightfm",
           "from_implicit", "from_lightfm", "item_vectors", "recommend_to_parquet", "rerank_to_parquet"]
