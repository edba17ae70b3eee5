"""xrec: cross-lingual recommendations.

One shared multilingual vector space for items and users, a FAISS index over it, a hybrid ranker
that fuses collaborative-filtering factors with content scores, and a topic head that learns from
one language and tags every language.
"""

__version__ = "0.1.0"
