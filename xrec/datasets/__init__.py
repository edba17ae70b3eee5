"""Loaders for the public data layouts xrec evaluates on (MovieLens, SIB-200, Tatoeba)."""
