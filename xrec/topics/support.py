"""``topic_support``: how well a topic model's labelled data covers a text.

``topic_score`` is the calibrated probability of the best label *given that the text is about one
of the labels*: temperature scaling on held-out labelled text makes it honest there, but a text
about none of the labels (a recipe, when the label set has no food topic) still gets a high
``topic_score`` for whichever label is least unlike it. ``topic_support`` answers the other
question, "is this text like the labelled ones at all?", from two signals on the centred vectors:

- *density ratio*: the kernel density of the labelled texts at the text (width :data:`SUPPORT_TAU`)
  over that of the unlabelled texts (the catalogue at large), in logs; a text of a topic the labels
  lack has unlabelled neighbours of its own topic but no labelled ones;
- *certainty*: minus the entropy of the calibrated label distribution.

Each is turned into a percentile against the labelled dev texts (in distribution by construction),
the two percentiles are averaged, and the average is turned into a percentile against the dev
texts' own averages. So ``topic_support`` is in [0, 1]: the share of held-out labelled texts that
look *less* covered than this text. So about a ``support_threshold`` share of texts like the dev
split (the labelled languages, the label set's topics) falls below ``support_threshold``, where
:meth:`~xrec.topics.classifier.TopicClassifier.predict` abstains; texts of other languages, which the
labels cover less closely, fall below it more often, even on the label set's topics.
"""

from __future__ import annotations

import numpy as np
import torch

from xrec.errors import ArtifactError, DataError

#: Abstain (with ``abstain=True``) below this ``topic_support``: about 5% of dev-like text.
DEFAULT_SUPPORT_THRESHOLD = 0.05
#: Kernel width of the densities (cosine units).
SUPPORT_TAU = 0.1
#: At most this many labelled and this many unlabelled vectors are kept (a seeded random subset).
SUPPORT_MAX_ROWS = 10_000
_PARTS = ("labelled", "background", "ref_certainty", "ref_density", "ref_combined")


def _subset(x: np.ndarray, seed: int) -> np.ndarray:
    if len(x) <= SUPPORT_MAX_ROWS:
        return x
    rows = np.sort(np.random.default_rng(seed).choice(len(x), SUPPORT_MAX_ROWS, replace=False))
    return x[rows]


def _log_density(x: torch.Tensor, memory: torch.Tensor, tau: float, chunk: int = 1024) -> np.ndarray:
    """``log mean_j exp((cos(x, m_j) - 1) / tau)`` per row of ``x`` (unit rows)."""
    out = [torch.logsumexp((x[s:s + chunk] @ memory.T - 1.0) / tau, dim=1)
           for s in range(0, len(x), chunk)]
    return (torch.cat(out) - np.log(len(memory))).numpy() if out else np.zeros(0, np.float32)


def _percentile(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mid-rank share of ``reference`` (sorted) below each value, in [0, 1]."""
    lo = np.searchsorted(reference, values, side="left")
    hi = np.searchsorted(reference, values, side="right")
    return ((lo + hi) / (2.0 * len(reference))).astype(np.float32)


class Support:
    """The ``topic_support`` model: labelled and unlabelled centred vectors plus the sorted
    reference values of the dev texts (see the module docstring)."""

    def __init__(self, labelled: np.ndarray, background: np.ndarray | None, ref_certainty: np.ndarray,
                 ref_density: np.ndarray, ref_combined: np.ndarray, tau: float = SUPPORT_TAU) -> None:
        def unit(v: np.ndarray) -> torch.Tensor:
            t = torch.as_tensor(np.ascontiguousarray(v, dtype=np.float32))
            return t / t.norm(dim=1, keepdim=True).clamp(min=1e-12)

        if len(labelled) == 0 or len(ref_combined) == 0:
            raise DataError("a support model needs labelled vectors and dev reference values")
        self.labelled = unit(labelled)
        self.background = None if background is None or len(background) == 0 else unit(background)
        self.ref_certainty = np.sort(np.asarray(ref_certainty, dtype=np.float32))
        self.ref_density = np.sort(np.asarray(ref_density, dtype=np.float32))
        self.ref_combined = np.sort(np.asarray(ref_combined, dtype=np.float32))
        self.tau = float(tau)

    def signals(self, x: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Certainty and density ratio of centred vectors ``x`` with calibrated ``proba``."""
        from xrec.topics.head import single_thread

        certainty = (proba * np.log(np.clip(proba, 1e-12, 1.0))).sum(axis=1).astype(np.float32)
        t = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
        t = t / t.norm(dim=1, keepdim=True).clamp(min=1e-12)
        with torch.no_grad(), single_thread():
            density = _log_density(t, self.labelled, self.tau)
            if self.background is not None:
                density = density - _log_density(t, self.background, self.tau)
        return certainty, density.astype(np.float32)

    def _combined(self, certainty: np.ndarray, density: np.ndarray) -> np.ndarray:
        return 0.5 * (_percentile(self.ref_certainty, certainty) + _percentile(self.ref_density, density))

    def __call__(self, x: np.ndarray, proba: np.ndarray) -> np.ndarray:
        """``topic_support`` in [0, 1] of centred vectors ``x`` with calibrated ``proba``."""
        return _percentile(self.ref_combined, self._combined(*self.signals(x, proba)))

    @classmethod
    def fit(cls, labelled: np.ndarray, background: np.ndarray | None, dev_proba: np.ndarray,
            dev_x: np.ndarray, *, tau: float = SUPPORT_TAU, seed: int = 0) -> Support:
        """Keep (a subset of) the centred ``labelled`` and ``background`` vectors and take the dev
        texts' signals (centred ``dev_x``, calibrated ``dev_proba``) as the reference."""
        model = cls(_subset(labelled, seed), None if background is None else _subset(background, seed + 1),
                    np.zeros(1), np.zeros(1), np.zeros(1), tau)
        certainty, density = model.signals(dev_x, dev_proba)
        model.ref_certainty, model.ref_density = np.sort(certainty), np.sort(density)
        model.ref_combined = np.sort(model._combined(certainty, density))
        return model

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors for a safetensors file (keys ``support.*``)."""
        parts = {"labelled": self.labelled, "ref_certainty": torch.as_tensor(self.ref_certainty),
                 "ref_density": torch.as_tensor(self.ref_density),
                 "ref_combined": torch.as_tensor(self.ref_combined)}
        if self.background is not None:
            parts["background"] = self.background
        return {f"support.{k}": v.contiguous() for k, v in parts.items()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], tau: float, source: str) -> Support:
        """Inverse of :meth:`to_tensors`."""
        try:
            parts = {k: tensors[f"support.{k}"].numpy() for k in _PARTS if k != "background"}
        except KeyError as exc:
            raise ArtifactError(f"{source}: topic support tensor {exc} missing") from exc
        background = tensors.get("support.background")
        return cls(parts["labelled"], None if background is None else background.numpy(),
                   parts["ref_certainty"], parts["ref_density"], parts["ref_combined"], tau)
