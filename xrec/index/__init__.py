"""Vector search over the shared multilingual space: :class:`VectorIndex` (FAISS underneath)."""

from xrec.index.vector_index import PAD_INT, PAD_STR, VectorIndex

__all__ = ["PAD_INT", "PAD_STR", "VectorIndex"]
