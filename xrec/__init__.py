"""xrec: cross-lingual recommendations.

One shared multilingual vector space for items and users, a FAISS index over it, a hybrid ranker
that fuses collaborative-filtering factors with content scores, and a topic head that learns from
one language and tags every language.
"""

from importlib.metadata import PackageNotFoundError as _NotInstalled
from importlib.metadata import version as _version

try:
    __version__ = _version("xrec")  #: from the installed package's metadata (pyproject.toml's version)
except _NotInstalled:  # pragma: no cover - a checkout on the path without an install
    __version__ = "0+unknown"
