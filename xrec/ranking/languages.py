"""The language rules of one call: which items a user may be given, and how far other languages are lifted."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from xrec.catalogue.languages import UNKNOWN, filter_codes
from xrec.errors import DataError
from xrec.ranking.config import BOOST_FEATURE

if TYPE_CHECKING:
    from xrec.ranking.fitted import FittedRanker

log = logging.getLogger(__name__)


def language_mask(ranker: FittedRanker, rows: np.ndarray, *, languages: Sequence[str] | None = None,
                  exclude_languages: Sequence[str] | None = None, language_policy: str = "any") -> np.ndarray | None:
    """:meth:`HybridRanker.language_mask`."""
    if language_policy not in ("any", "history"):
        raise DataError(f"language_policy={language_policy!r}: use 'any' or 'history'")
    if languages is None and exclude_languages is None and language_policy == "any":
        return None
    codes, names = ranker.content.language_codes, ranker.content.languages
    languages = filter_codes(languages, "languages")
    exclude_languages = filter_codes(exclude_languages, "exclude_languages")

    def code_set(values: list[str], what: str) -> np.ndarray:
        unknown = [v for v in values if v not in names and v != UNKNOWN]
        if unknown:
            raise DataError(f"{what}: {unknown} not among the catalogue's languages {names}")
        return np.array([names.index(v) for v in values if v != UNKNOWN], dtype=np.int64)

    known = codes >= 0
    if language_policy == "history" and not known.any():
        raise DataError("language_policy='history': this ranker knows no item's language (fit it with languages=)")
    allowed = known | (languages is not None and UNKNOWN in languages)
    if languages is not None:
        allowed &= np.isin(codes, code_set(languages, "languages")) | ~known
    if exclude_languages is not None:
        allowed &= ~np.isin(codes, code_set(exclude_languages, "exclude_languages"))
    if (~known & ~allowed).any():
        log.debug("language filter: %d items of unknown language left out (name 'und' among the languages "
                 "to keep them)", int((~known & ~allowed).sum()))
    if language_policy == "any":
        return allowed
    rows = np.asarray(rows, dtype=np.int64)
    out = np.broadcast_to(allowed, (len(rows), len(codes))).copy()
    n_lang = max(len(names), 1)
    for j, row in enumerate(rows):
        if row < 0:
            continue
        hist = codes[ranker.history.indices[ranker.history.indptr[row]:ranker.history.indptr[row + 1]]]
        hist = hist[hist >= 0]
        if len(hist):
            spoken = np.bincount(hist, minlength=n_lang) > 0
            out[j] &= ~known | spoken[np.maximum(codes, 0)]
    return out


def boost_change(ranker: FittedRanker, language_boost: float | None) -> float:
    """How far a per-call ``language_boost`` moves the fitted one (0 when not given)."""
    if language_boost is None:
        return 0.0
    if not np.isfinite(language_boost):
        raise DataError(f"language_boost={language_boost}: must be a finite number of nats")
    if BOOST_FEATURE not in ranker.fusion.names:
        raise DataError("language_boost: this ranker has no item languages (fit it with languages=)")
    return float(language_boost) - ranker.fusion.raw[BOOST_FEATURE]


def lifted(ranker: FittedRanker, rows: np.ndarray) -> np.ndarray:
    """``[len(rows), n_items]`` 1 where the item is in a language the user reads besides the most-read one."""
    return ranker.views.user_views["other_read"][rows] @ ranker.views.item_views["language"].T
