"""Vector search over the shared multilingual space: :class:`VectorIndex` (FAISS underneath),
cross-language neighbours in batches, and ``similar`` lookups by item or text."""

from xrec.index.gpu import available_backends, resolve_backend
from xrec.index.neighbours import cross_language_neighbours, search_by_language
from xrec.index.similar import ItemSpace, similar_items, similar_texts
from xrec.index.topk import TopK, top_k
from xrec.index.vector_index import PAD_INT, PAD_STR, VectorIndex

__all__ = ["PAD_INT", "PAD_STR", "ItemSpace", "TopK", "VectorIndex", "available_backends", "cross_language_neighbours",
           "resolve_backend", "search_by_language", "similar_items", "similar_texts", "top_k"]
