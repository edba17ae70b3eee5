"""Lexical item representations: TF-IDF over character n-grams of the item text.

Character n-grams match what a multilingual sentence embedding blurs: author names, series and
proper nouns, identical across the languages of a catalogue ("Harry Potter", "Rowling").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from xrec.ranking.graphs import zeros


def char_tfidf(texts: Sequence[str], *, ngrams: tuple[int, int] = (3, 5), min_df: int = 2,
               max_df: float = 1.0) -> sp.csr_matrix:
    """``[len(texts), vocabulary]`` TF-IDF of character n-grams within word boundaries
    (sublinear term frequency), rows L2-normalised; n-grams in fewer than ``min_df`` texts, or in
    more than a ``max_df`` share of them, are dropped."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = list(texts)
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=ngrams, sublinear_tf=True, lowercase=True,
                                 min_df=min(min_df, max(len(texts), 1)), max_df=max_df,
                                 dtype=np.float32)  # pyright: ignore[reportArgumentType]  (sklearn's stub: float64)
    try:
        return vectorizer.fit_transform(texts).tocsr()  # pyright: ignore[reportAttributeAccessIssue, reportReturnType]
    except ValueError:  # every n-gram pruned (tiny or empty catalogue): no lexical evidence
        return zeros(len(texts), 1)


#: Dimensions of the dense lexical vectors (:func:`lexical_vectors`).
LEXICAL_DIMS = 128


def lexical_vectors(texts: Sequence[str], dims: int = LEXICAL_DIMS, seed: int = 0) -> np.ndarray:
    """``[len(texts), <= dims]`` L2-normalised dense lexical vectors: the character n-gram TF-IDF
    (every n-gram kept, frequent ones too: a year, a genre word) reduced by a seeded truncated SVD,
    so that a user's lexical profile is a dense mean like the content profile."""
    from sklearn.decomposition import TruncatedSVD

    x = char_tfidf(texts)
    k = min(dims, x.shape[0] - 1, x.shape[1] - 1)
    if k < 1 or x.nnz == 0:
        return np.zeros((x.shape[0], 1), np.float32)
    dense = TruncatedSVD(n_components=k, random_state=seed).fit_transform(x).astype(np.float32)
    norms = np.linalg.norm(dense, axis=1, keepdims=True)
    np.divide(dense, norms, out=dense, where=norms > 0)
    return dense
