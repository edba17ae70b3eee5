"""Lexical item representations: TF-IDF over character n-grams of the item text.

Character n-grams match what a multilingual sentence embedding blurs: author names, series and
proper nouns, identical across the languages of a catalogue ("Harry Potter", "Rowling").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp


def char_tfidf(texts: Sequence[str], *, ngrams: tuple[int, int] = (3, 5), min_df: int = 2,
               max_df: float = 1.0) -> sp.csr_matrix:
    """``[len(texts), vocabulary]`` TF-IDF of character n-grams within word boundaries
    (sublinear term frequency), rows L2-normalised; n-grams in fewer than ``min_df`` texts, or in
    more than a ``max_df`` share of them, are dropped."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = list(texts)
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=ngrams, sublinear_tf=True, lowercase=True,
                                 min_df=min(min_df, max(len(texts), 1)), max_df=max_df, dtype=np.float32)
    try:
        return vectorizer.fit_transform(texts).tocsr()
    except ValueError:  # every n-gram pruned (tiny or empty catalogue): no lexical evidence
        return sp.csr_matrix((len(texts), 1), dtype=np.float32)
