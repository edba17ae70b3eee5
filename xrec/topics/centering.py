"""Per-language centring of encoder vectors: subtract each language's mean vector.

A multilingual encoder places every language in its own region of the shared space; the offset
between regions is mostly language identity, not meaning. Subtracting each language's mean
(estimated from unlabelled text of that language) moves all languages onto one centre, so a
classifier trained on one language transfers better to the others.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xrec.errors import DataError


class LanguageCentering:
    """Language means learnt from unlabelled vectors, applied to vectors of any language.

    At :meth:`transform` time a vector of a known language is centred by that language's stored
    mean; a language not stored is centred by the mean of its own rows in the batch when it has at
    least ``min_group`` of them, else by the mean of the stored means. Without ``langs`` each
    vector is assigned the language whose stored mean is nearest (language identification in the
    embedding space). ``enabled=False`` makes every call the identity.
    """

    def __init__(self, means: dict[str, np.ndarray] | None = None, *, enabled: bool = True,
                 renormalize: bool = True, min_group: int = 16) -> None:
        self.means = {k: np.asarray(v, dtype=np.float32) for k, v in (means or {}).items()}
        self.enabled = enabled
        self.renormalize = renormalize
        self.min_group = min_group

    @classmethod
    def fit(cls, vectors: np.ndarray, langs: Sequence[str], **kwargs) -> LanguageCentering:
        """Estimate one mean per language from ``vectors`` labelled by ``langs``."""
        if len(vectors) != len(langs):
            raise DataError(f"{len(vectors)} vectors but {len(langs)} language codes")
        codes = np.asarray(langs, dtype=object)
        means = {str(lang): vectors[codes == lang].mean(axis=0) for lang in dict.fromkeys(langs)}
        return cls(means, **kwargs)

    def update(self, vectors: np.ndarray, langs: Sequence[str]) -> None:
        """Add (or replace) the means of the languages in ``langs``."""
        self.means.update(LanguageCentering.fit(vectors, langs).means)

    @property
    def languages(self) -> list[str]:
        return sorted(self.means)

    def _global_mean(self, dim: int) -> np.ndarray:
        if not self.means:
            return np.zeros(dim, dtype=np.float32)
        return np.mean(np.stack(list(self.means.values())), axis=0)

    def identify(self, vectors: np.ndarray) -> list[str]:
        """The stored language whose mean is nearest to each vector (Euclidean)."""
        if not self.means:
            raise DataError("no language means stored: pass the language of each text")
        names = self.languages
        stacked = np.stack([self.means[n] for n in names])
        score = vectors @ stacked.T - 0.5 * (stacked * stacked).sum(axis=1)
        return [names[i] for i in score.argmax(axis=1)]

    def transform(self, vectors: np.ndarray, langs: Sequence[str] | None = None) -> np.ndarray:
        """Centred (and, if ``renormalize``, re-L2-normalised) copies of ``vectors``."""
        x = np.asarray(vectors, dtype=np.float32)
        if not self.enabled or len(x) == 0:
            return x.copy()
        if langs is None:
            langs = self.identify(x)
        if len(langs) != len(x):
            raise DataError(f"{len(x)} vectors but {len(langs)} language codes")
        names, inverse = np.unique(np.asarray([str(lang) for lang in langs]), return_inverse=True)
        counts = np.bincount(inverse, minlength=len(names))
        means = np.empty((len(names), x.shape[1]), dtype=np.float32)
        for i, lang in enumerate(names):
            if lang in self.means:
                means[i] = self.means[lang]
            elif counts[i] >= self.min_group:
                means[i] = x[inverse == i].mean(axis=0)
            else:
                means[i] = self._global_mean(x.shape[1])
        out = x - means[inverse]
        if self.renormalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def settings(self) -> dict:
        """The scalar settings (for a manifest)."""
        return {"enabled": self.enabled, "renormalize": self.renormalize,
                "min_group": self.min_group}

    def to_arrays(self) -> tuple[list[str], np.ndarray]:
        """Sorted language codes and their means ``[n_langs, dim]`` (``[0, 0]`` when empty)."""
        names = self.languages
        if not names:
            return [], np.zeros((0, 0), dtype=np.float32)
        return names, np.stack([self.means[n] for n in names]).astype(np.float32)

    @classmethod
    def from_arrays(cls, langs: Sequence[str], means: np.ndarray, **settings) -> LanguageCentering:
        """Inverse of :meth:`to_arrays` plus :meth:`settings`."""
        if len(langs) != len(means):
            raise DataError(f"{len(langs)} language codes but {len(means)} mean vectors")
        return cls(dict(zip(langs, means)), **settings)
