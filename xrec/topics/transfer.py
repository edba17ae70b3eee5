"""Cross-lingual transfer: from labelled texts in some languages to a classifier for any language.

Every method works on frozen encoder vectors and returns a
:class:`~xrec.topics.classifier.TopicClassifier`.

- ``linear``: a linear head on the raw vectors (the plain baseline).
- ``centered``: each language centred by its own mean vector (from all its text, labelled or
  not), then a linear head; removes language identity from the space.
- ``mlp``: centring plus a one-hidden-layer head.
- ``self-train``: ``centered``, then pseudo-labels on unlabelled target-language text above a
  confidence added to the training set and the head refitted.
- ``fusion``: the logit average of the ``centered``, ``self-train`` and ``mlp`` heads.
- ``kernel`` (default): centring, then a soft nearest-neighbour vote
  (:class:`~xrec.topics.head.KernelHead`, width :data:`KERNEL_TAU`) over the centred labelled
  vectors plus the unlabelled vectors, each carrying its own kernel-predicted class
  probabilities down-weighted by :data:`KERNEL_UNLABELLED_WEIGHT` (one step of label
  propagation); its logits are mixed with the ``centered`` linear head's (weight
  :data:`KERNEL_WEIGHT` for the kernel).

Labelled texts may come in several languages. A language with many labels (see
:func:`shared_languages`) teaches every language; a language with a handful teaches only its own
texts: its labelled vectors vote in the kernel for texts of that language alone and stay out of
the linear, MLP and self-trained heads (letting them teach every language lowered the mean
accuracy of the other languages on SIB-200). Model selection (the L2 strength) and temperature
scaling use the labelled dev split. Why these methods and settings, and what else was measured and
dropped (encoder fine-tuning, other uses of a few target labels, other pools and votes), is in
``benchmarks/README.md``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from xrec.encoders.base import TextKind
from xrec.errors import DataError
from xrec.topics.centering import LanguageCentering
from xrec.topics.classifier import TopicClassifier
from xrec.topics.head import HeadConfig, KernelHead, TopicHead, fit_head, fit_temperature, single_thread
from xrec.topics.support import DEFAULT_SUPPORT_THRESHOLD, Support

log = logging.getLogger(__name__)

METHODS = ("linear", "centered", "mlp", "self-train", "fusion", "kernel")
DEFAULT_METHOD = "kernel"
#: Kernel width of the ``kernel`` method (chosen on the other languages' SIB-200 dev splits).
KERNEL_TAU = 0.05
#: Weight of each unlabelled vector's pseudo-label distribution in the kernel vote (labelled: 1).
KERNEL_UNLABELLED_WEIGHT = 0.1
#: Weight of the kernel head against the linear head in the ``kernel`` method's logit mix.
KERNEL_WEIGHT = 0.7
#: At most this many vectors are stored by a kernel head (a seeded random subset of each part).
KERNEL_MAX_MEMORY = 50_000
#: A labelled language with at least this many labelled texts teaches every language (see
#: :func:`shared_languages`); one with fewer teaches its own language only.
SHARED_MIN_LABELS = 100
L2_GRID = (1.4e-4, 5e-4, 2e-3)
MLP_CONFIG = HeadConfig(hidden=256, l2=1e-3, dropout=0.2, epochs=200, lr=0.003)


@dataclass(frozen=True)
class SelfTraining:
    """Pseudo-labelling settings: keep predictions with probability >= ``confidence``."""

    confidence: float = 0.9
    weight: float = 1.0
    rounds: int = 1


@dataclass
class TopicVectors:
    """Vectors with their language codes (and integer labels where known)."""

    vectors: np.ndarray
    langs: list[str]
    y: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.vectors) != len(self.langs) or (self.y is not None and len(self.y) != len(self.langs)):
            raise DataError(f"{len(self.vectors)} vectors, {len(self.langs)} languages"
                            + ("" if self.y is None else f", {len(self.y)} labels"))


def _logits(heads: Sequence[TopicHead | KernelHead], x: np.ndarray,
            weights: Sequence[float] | None = None, langs: Sequence[str] | None = None) -> np.ndarray:
    import torch

    weights = [1.0] * len(heads) if weights is None else weights
    with torch.no_grad(), single_thread():
        t = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
        return (sum((w * h(t, langs) for w, h in zip(weights, heads)), torch.zeros(())) / sum(weights)).numpy()


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _select(x: np.ndarray, y: np.ndarray, n_classes: int, dev: tuple[np.ndarray, np.ndarray] | None,
            base: HeadConfig) -> tuple[TopicHead, HeadConfig]:
    """Fit one head per L2 strength in :data:`L2_GRID`; keep the best on dev (ties: stronger L2)."""
    if dev is None:
        return fit_head(x, y, n_classes, base), base
    best = None
    for l2 in L2_GRID:
        config = replace(base, l2=l2)
        head = fit_head(x, y, n_classes, config)
        acc = float((_logits([head], dev[0]).argmax(1) == dev[1]).mean())
        log.info("l2=%g: dev accuracy %.4f", l2, acc)
        if best is None or acc >= best[0]:
            best = (acc, head, config)
    assert best is not None  # L2_GRID is not empty
    return best[1], best[2]


def _subset(n: int, cap: int, seed: int) -> np.ndarray:
    """All of ``range(n)``, or a sorted seeded random ``cap`` of them."""
    if n <= cap:
        return np.arange(n)
    log.info("kernel head: storing %d of %d vectors", cap, n)
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


def _kernel(x: np.ndarray, y: np.ndarray, langs: Sequence[str], private: Sequence[str],
            unlabelled: tuple[np.ndarray, list[str]] | None, n_classes: int, seed: int) -> KernelHead:
    """A kernel head over the centred labelled vectors (rows of ``private`` languages voting for
    their own language only) and, when given, the centred unlabelled vectors (voting for every
    language) with their (down-weighted) pseudo-label distributions from the labelled-only kernel."""
    keep = _subset(len(y), KERNEL_MAX_MEMORY, seed)
    x, kept_langs = x[keep], [langs[int(i)] for i in keep]
    targets = np.eye(n_classes, dtype=np.float32)[np.asarray(y, dtype=np.int64)[keep]]
    head = KernelHead.from_targets(x, targets, KERNEL_TAU, kept_langs, private)
    if unlabelled is None or len(unlabelled[1]) == 0 or len(keep) >= KERNEL_MAX_MEMORY:
        return head
    rows = _subset(len(unlabelled[1]), KERNEL_MAX_MEMORY - len(keep), seed + 1)
    x_unl, unl_langs = unlabelled[0][rows], [unlabelled[1][i] for i in rows]
    soft = _softmax(_logits([head], x_unl, langs=unl_langs)) * KERNEL_UNLABELLED_WEIGHT
    return KernelHead.from_targets(np.concatenate([x, x_unl]), np.concatenate([targets, soft]),
                                   KERNEL_TAU, [*kept_langs, *[None] * len(unl_langs)], private)


def shared_languages(langs: Sequence[str]) -> list[str]:
    """The labelled languages whose labels teach every language: those with at least
    :data:`SHARED_MIN_LABELS` labelled texts, or with as many as the best-labelled language."""
    counts = Counter(str(lang) for lang in langs)
    if not counts:
        return []
    bar = min(SHARED_MIN_LABELS, max(counts.values()))
    return sorted(lang for lang, n in counts.items() if n >= bar)


def _pseudo_label(heads: Sequence[TopicHead | KernelHead], x_unl: np.ndarray,
                  settings: SelfTraining) -> tuple[np.ndarray, np.ndarray]:
    proba = _softmax(_logits(heads, x_unl))
    keep = proba.max(axis=1) >= settings.confidence
    return x_unl[keep], proba.argmax(axis=1)[keep]


def fit_topic_classifier(labels: Sequence[str], train: TopicVectors, *, dev: TopicVectors | None = None,
                         unlabelled: TopicVectors | None = None, method: str = DEFAULT_METHOD,
                         encoder_fingerprint: str, encoder_name: str = "", text_kind: TextKind = "query",
                         threshold: float = 0.5, support_threshold: float = DEFAULT_SUPPORT_THRESHOLD,
                         self_training: SelfTraining = SelfTraining(), seed: int = 0) -> TopicClassifier:
    """Train a topic classifier on labelled vectors of one or more languages with one of :data:`METHODS`.

    The labels of languages with many labelled texts (:func:`shared_languages`) teach every
    language. Those of a language with only a few (a handful labelled in a target language) are
    *private*: they enter that language's mean and, with ``kernel``, vote for that language's texts
    only; the linear, MLP and self-trained heads learn from shared languages alone.
    ``unlabelled`` (text vectors of any languages, no labels) adds to the language means used for
    centring, is the pool ``self-train`` pseudo-labels and the background of
    :class:`~xrec.topics.support.Support`.
    ``dev`` (labelled, any languages) selects the L2 strength, fits the temperature and is the
    in-distribution reference of ``topic_support`` (without it there is no support score).
    """
    if method not in METHODS:
        raise DataError(f"unknown topic transfer method {method!r}; choose one of {METHODS}")
    if train.y is None:
        raise DataError("training vectors need labels")
    n_classes = len(labels)
    shared = shared_languages(train.langs)
    private = sorted(set(map(str, train.langs)) - set(shared))
    is_shared = np.isin(np.asarray(train.langs, dtype=object), shared)
    y = train.y[is_shared]
    if len(np.unique(y)) < 2:
        raise DataError("training data has one class only; a topic classifier needs at least two")
    if private:
        log.info("labels of %s teach every language; those of %d language(s) with fewer "
                 "(%s) teach their own language only", ", ".join(shared), len(private),
                 ", ".join(private[:5]) + (", ..." if len(private) > 5 else ""))
    centering = LanguageCentering(enabled=method != "linear")
    if centering.enabled:  # every text of a language, labelled or not, gives its mean
        parts = [train] + ([unlabelled] if unlabelled is not None and len(unlabelled.langs) else [])
        centering.update(np.concatenate([p.vectors for p in parts]), [lang for p in parts for lang in p.langs])
    x_all = centering.transform(train.vectors, train.langs)
    x = x_all[is_shared]
    dev_xy = None
    if dev is not None and dev.y is not None and len(dev.y):
        dev_xy = (centering.transform(dev.vectors, dev.langs), dev.y)
    x_unl = None
    if unlabelled is not None and len(unlabelled.langs):
        x_unl = centering.transform(unlabelled.vectors, unlabelled.langs)
    base = HeadConfig(seed=seed)
    linear, linear_config = _select(x, y, n_classes, dev_xy, base)
    heads, configs, mix = [linear], [linear_config], []  # mix: head weights, [] = equal
    if method == "kernel":
        pool = None if x_unl is None or unlabelled is None else (x_unl, list(unlabelled.langs))
        heads = [_kernel(x_all, train.y, list(train.langs), private, pool, n_classes, seed), linear]
        configs = [HeadConfig(kernel_tau=KERNEL_TAU, private_languages=tuple(heads[0].private_languages)),
                   linear_config]
        mix = [KERNEL_WEIGHT, 1.0 - KERNEL_WEIGHT]
    if method in ("mlp", "fusion"):
        mlp = fit_head(x, y, n_classes, replace(MLP_CONFIG, seed=seed))
        heads, configs = ([mlp], [MLP_CONFIG]) if method == "mlp" else (heads + [mlp], configs + [MLP_CONFIG])
    if method in ("self-train", "fusion") and x_unl is not None:
        student = [linear]
        for round_ in range(self_training.rounds):
            xp, yp = _pseudo_label(student, x_unl, self_training)
            log.info("self-training round %d: %d of %d unlabelled texts pseudo-labelled",
                     round_ + 1, len(yp), len(x_unl))
            weights = np.concatenate([np.ones(len(y)), np.full(len(yp), self_training.weight)])
            student = [fit_head(np.concatenate([x, xp]), np.concatenate([y, yp]), n_classes,
                                linear_config, weights)]
        if method == "self-train":
            heads, configs = student, [linear_config]
        else:
            heads, configs = heads + student, configs + [linear_config]
    temperature = 1.0
    support = None
    if dev_xy is not None and dev is not None:
        dev_logits = _logits(heads, dev_xy[0], mix or None, list(dev.langs))
        temperature = fit_temperature(dev_logits, dev_xy[1])
        support = Support.fit(x_all, x_unl, _softmax(dev_logits / temperature), dev_xy[0], seed=seed)
    else:
        log.warning("no labelled dev data: probabilities are not calibrated and there is no "
                    "topic_support (abstaining uses the probability alone)")
    return TopicClassifier(labels, heads, centering=centering, encoder_fingerprint=encoder_fingerprint,
                           encoder_name=encoder_name, text_kind=text_kind, temperature=temperature,
                           threshold=threshold, method=method, configs=configs, weights=mix,
                           support=support, support_threshold=support_threshold)
