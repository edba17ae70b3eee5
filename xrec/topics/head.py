"""The topic classifier: a small torch head over the shared embedding space.

A :class:`TopicClassifier` maps encoder vectors (any language) to one of a fixed label set with
calibrated probabilities (temperature scaling on held-out source-language data) and abstains
(:data:`UNKNOWN`) below a threshold when asked. A head is linear, a small MLP or a kernel head
(a soft nearest-neighbour vote over the stored, centred training vectors). Vectors are first
centred by their language's mean (:class:`~xrec.topics.centering.LanguageCentering`), which
removes language identity from the space. Saved as a directory: ``heads.safetensors``
(weights, kernel memories, language means) plus the manifest (labels, threshold, temperature,
encoder fingerprint, dimension, head settings and weights).

(A little over 400 lines: the heads, their fitting and the classifier that ensembles and
saves them share one state layout, which reads best in one place.)
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from xrec.artifacts import atomic_dir, read_manifest, write_manifest
from xrec.errors import ArtifactError, DataError
from xrec.topics.centering import LanguageCentering
from xrec.topics.support import DEFAULT_SUPPORT_THRESHOLD, Support

KIND = "xrec.topic_classifier"
FORMAT_VERSION = 1
WEIGHTS = "heads.safetensors"
#: The label :meth:`TopicClassifier.predict` gives when it abstains.
UNKNOWN = "unknown"


@dataclass(frozen=True)
class HeadConfig:
    """How one head is built and trained.

    A linear head (``hidden=0``) is multinomial logistic regression fitted by L-BFGS on the mean
    cross-entropy plus ``0.5 * l2 * ||W||^2`` (``l2=1.4e-4`` matches scikit-learn's ``C=10`` on
    701 rows). An MLP head (``hidden>0``) is trained full-batch with AdamW for ``epochs`` steps.
    A kernel head (``kernel_tau>0``) stores the training vectors and scores class ``c`` by
    ``log sum_j [y_j = c] exp((cos(x, x_j) - 1) / kernel_tau)``; it has nothing to train. Its
    stored rows of ``private_languages`` vote only for texts of their own language.
    """

    hidden: int = 0
    kernel_tau: float = 0.0
    private_languages: tuple[str, ...] = ()
    l2: float = 1.4e-4
    dropout: float = 0.1
    epochs: int = 200
    lr: float = 0.01
    seed: int = 0


class TopicHead(nn.Module):
    """Linear or one-hidden-layer MLP from ``dim`` to ``n_classes`` logits."""

    def __init__(self, dim: int, n_classes: int, hidden: int = 0, dropout: float = 0.1) -> None:
        super().__init__()
        self.dim, self.n_classes, self.hidden = dim, n_classes, hidden
        if hidden:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, hidden), nn.GELU(),
                                     nn.Linear(hidden, n_classes))
        else:
            self.net = nn.Sequential(nn.Linear(dim, n_classes))

    def forward(self, x: torch.Tensor, langs: Sequence[str] | None = None) -> torch.Tensor:
        """Logits of ``x``; ``langs`` is accepted for a uniform head interface and not used."""
        return self.net(x)


class KernelHead(nn.Module):
    """Soft nearest-neighbour vote over stored (unit) training vectors: logits are the log of
    each class's summed ``exp((cos - 1) / tau)``, i.e. log class probabilities up to a constant.

    A stored row of one of ``private_languages`` (``memory_lang`` holds its index there; -1 for a
    row every text sees) votes only for texts of that language.
    """

    hidden = 0
    chunk = 1024  # rows per block: a block holds [chunk, n_memory] floats

    def __init__(self, dim: int, n_classes: int, n_memory: int, tau: float,
                 private_languages: Sequence[str] = ()) -> None:
        super().__init__()
        if tau <= 0:
            raise DataError(f"kernel tau must be > 0, got {tau}")
        self.dim, self.n_classes, self.tau = dim, n_classes, float(tau)
        self.private_languages = tuple(private_languages)
        self.register_buffer("memory", torch.zeros(n_memory, dim))
        self.register_buffer("targets", torch.zeros(n_memory, n_classes))
        self.register_buffer("memory_lang", torch.full((n_memory,), -1, dtype=torch.int64))

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, n_classes: int, tau: float,
            sample_weight: np.ndarray | None = None) -> KernelHead:
        """Store ``x`` (L2-normalised here) with one-hot ``y`` (scaled by ``sample_weight``)."""
        targets = np.eye(n_classes, dtype=np.float32)[np.asarray(y, dtype=np.int64)]
        if sample_weight is not None:
            targets *= np.asarray(sample_weight, dtype=np.float32)[:, None]
        return cls.from_targets(x, targets, tau)

    @classmethod
    def from_targets(cls, x: np.ndarray, targets: np.ndarray, tau: float,
                     langs: Sequence[str | None] | None = None,
                     private_languages: Sequence[str] = ()) -> KernelHead:
        """Store ``x`` with soft class weights ``targets`` ``[n, n_classes]`` (rows of labelled
        data are one-hot; rows of pseudo-labelled data hold down-weighted probabilities); rows
        whose language (``langs``) is one of ``private_languages`` vote for that language only
        (a row whose language is None votes for every text)."""
        if len(x) != len(targets):
            raise DataError(f"{len(x)} vectors but {len(targets)} target rows")
        private = sorted(set(private_languages))
        head = cls(x.shape[1], targets.shape[1], len(x), tau, private)
        xt = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)
        head.memory.copy_(xt / xt.norm(dim=1, keepdim=True).clamp(min=1e-12))
        head.targets.copy_(torch.as_tensor(np.ascontiguousarray(targets), dtype=torch.float32))
        if private:
            if langs is None or len(langs) != len(x):
                raise DataError("private languages need one language code per stored vector")
            head.memory_lang.copy_(head._codes(langs).clamp(min=-1))  # -1: a row for every text
        return head.eval()

    def _codes(self, langs: Sequence[str | None]) -> torch.Tensor:
        """Index of each language in ``private_languages``; -2 for others and for None."""
        index = {lang: i for i, lang in enumerate(self.private_languages)}
        return torch.as_tensor([-2 if lang is None else index.get(str(lang), -2) for lang in langs],
                               dtype=torch.int64)

    def forward(self, x: torch.Tensor, langs: Sequence[str] | None = None) -> torch.Tensor:
        """Log votes ``[n, n_classes]``; ``langs`` (one per row of ``x``) lets private rows vote
        for texts of their language (without ``langs`` they vote for none)."""
        x = x / x.norm(dim=1, keepdim=True).clamp(min=1e-12)
        private = bool(self.private_languages) and bool((self.memory_lang >= 0).any())
        if private:
            codes = self._codes(langs) if langs is not None else torch.full((len(x),), -2)
            if len(codes) != len(x):
                raise DataError(f"{len(x)} vectors but {len(codes)} language codes")
        parts = []
        for start in range(0, len(x), self.chunk):  # bounded memory for large batches
            z = (x[start:start + self.chunk] @ self.memory.T - 1.0) / self.tau  # cosine - 1 <= 0
            if private:
                mine = codes[start:start + self.chunk, None] == self.memory_lang[None, :]
                z = z.masked_fill(~(mine | (self.memory_lang < 0)[None, :]), float("-inf"))
            top = z.max(dim=1, keepdim=True).values
            votes = torch.exp(z - top) @ self.targets
            parts.append(torch.log(votes.clamp(min=1e-30)) + top)
        return torch.cat(parts) if parts else x.new_zeros((0, self.n_classes))


def build_head(config: HeadConfig, dim: int, n_classes: int, n_memory: int = 0) -> nn.Module:
    """An untrained head of the kind ``config`` describes (a kernel head needs ``n_memory``)."""
    if config.kernel_tau > 0:
        return KernelHead(dim, n_classes, n_memory, config.kernel_tau, config.private_languages)
    return TopicHead(dim, n_classes, config.hidden, config.dropout)


@contextlib.contextmanager
def single_thread():
    """Run torch on one thread inside the block: these heads are tiny, and on a busy CPU the
    thread synchronisation of a multi-threaded torch costs 10-20x the arithmetic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_head(x: np.ndarray, y: np.ndarray, n_classes: int, config: HeadConfig = HeadConfig(),
             sample_weight: np.ndarray | None = None) -> TopicHead:
    """Train a :class:`TopicHead` on vectors ``x`` and integer labels ``y`` (weighted CE)."""
    with single_thread():
        return _fit_head(x, y, n_classes, config, sample_weight)


def _fit_head(x: np.ndarray, y: np.ndarray, n_classes: int, config: HeadConfig,
              sample_weight: np.ndarray | None) -> TopicHead:
    torch.manual_seed(config.seed)
    head = TopicHead(x.shape[1], n_classes, config.hidden, config.dropout)
    xt = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    wt = torch.ones(len(y)) if sample_weight is None else torch.as_tensor(sample_weight,
                                                                           dtype=torch.float32)
    wt = wt / wt.sum()
    weights = [p for name, p in head.named_parameters() if name.endswith("weight")]

    def objective() -> torch.Tensor:
        loss = (nn.functional.cross_entropy(head(xt), yt, reduction="none") * wt).sum()
        return loss + 0.5 * config.l2 * sum((w * w).sum() for w in weights)

    head.train()
    if config.hidden:
        optim = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=0.0)
        for _ in range(config.epochs):
            optim.zero_grad()
            objective().backward()
            optim.step()
    else:
        lbfgs = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=config.epochs,
                                  tolerance_grad=1e-6, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            lbfgs.zero_grad()
            loss = objective()
            loss.backward()
            return loss

        lbfgs.step(closure)
    head.eval()
    return head


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature ``T`` minimising the NLL of ``softmax(logits / T)`` (LBFGS on ``log T``)."""
    lt = torch.as_tensor(logits, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optim = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure() -> torch.Tensor:
        optim.zero_grad()
        loss = nn.functional.cross_entropy(lt / log_t.exp(), yt)
        loss.backward()
        return loss

    with single_thread():
        optim.step(closure)
    return float(np.clip(log_t.exp().item(), 0.05, 20.0))


@dataclass(frozen=True)
class TopicPredictions:
    """What :meth:`TopicClassifier.predict` gives, one entry per text.

    ``topics``: the best label, or :data:`UNKNOWN` where the classifier abstained;
    ``scores`` (``topic_score``): the calibrated probability of the best label *among the label
    set*, i.e. assuming the text is about one of the labels;
    ``support`` (``topic_support``): how well the labelled data covers the text, a percentile in
    [0, 1] against held-out labelled texts (NaN for a model trained without dev data), see
    :mod:`xrec.topics.support`;
    ``proba``: the full calibrated distribution ``[n, n_labels]`` (columns in label order).
    """

    topics: list[str]
    scores: np.ndarray
    support: np.ndarray
    proba: np.ndarray


class TopicClassifier:
    """Topic prediction for encoder vectors: centring, an ensemble of heads, a temperature.

    ``heads`` are averaged in logit space (weighted by ``weights``, default equal);
    ``temperature`` scales the averaged logits;
    ``threshold`` is the probability below which :meth:`predict` abstains when asked, and
    ``support_threshold`` the ``topic_support`` below which it abstains (when ``support``, a
    :class:`~xrec.topics.support.Support`, is there).
    """

    def __init__(self, labels: Sequence[str], heads: Sequence[TopicHead | KernelHead], *,
                 centering: LanguageCentering, encoder_fingerprint: str, encoder_name: str = "",
                 text_kind: str = "query", temperature: float = 1.0, threshold: float = 0.5,
                 method: str = "", configs: Sequence[HeadConfig] = (),
                 weights: Sequence[float] = (), support: Support | None = None,
                 support_threshold: float = DEFAULT_SUPPORT_THRESHOLD) -> None:
        if not heads:
            raise DataError("a TopicClassifier needs at least one head")
        weights = [float(w) for w in weights] or [1.0] * len(heads)
        if len(weights) != len(heads) or min(weights) < 0 or sum(weights) <= 0:
            raise DataError(f"need one non-negative weight per head, got {weights} "
                             f"for {len(heads)} heads")
        self.weights = [w / sum(weights) for w in weights]
        self.labels = list(labels)
        self.heads = list(heads)
        self.centering = centering
        self.encoder_fingerprint = encoder_fingerprint
        self.encoder_name = encoder_name
        self.text_kind = text_kind
        self.temperature = float(temperature)
        self.threshold = float(threshold)
        self.support = support
        self.support_threshold = float(support_threshold)
        self.method = method
        self.configs = list(configs) or [
            HeadConfig(kernel_tau=h.tau, private_languages=h.private_languages)
            if isinstance(h, KernelHead)
            else HeadConfig(hidden=h.hidden) for h in self.heads]
        self.dim = self.heads[0].dim

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the encoder whose vectors this classifier reads."""
        return self.encoder_fingerprint

    def _centred(self, vectors: np.ndarray,
                 langs: Sequence[str] | None) -> tuple[np.ndarray, Sequence[str] | None]:
        """Centred vectors and the language of each (identified when ``langs`` is None)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise DataError(f"vectors of shape {vectors.shape}; this classifier takes [n, {self.dim}]")
        if langs is None and self.centering.enabled and self.centering.means and len(vectors):
            langs = self.centering.identify(vectors)
        return self.centering.transform(vectors, langs), langs

    def _logits(self, x: np.ndarray, langs: Sequence[str] | None) -> np.ndarray:
        with torch.no_grad(), single_thread():
            t = torch.as_tensor(x)
            return sum(w * h(t, langs) for w, h in zip(self.weights, self.heads)).numpy()

    def _proba(self, x: np.ndarray, langs: Sequence[str] | None) -> np.ndarray:
        z = self._logits(x, langs) / self.temperature
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def logits(self, vectors: np.ndarray, langs: Sequence[str] | None = None) -> np.ndarray:
        """Uncalibrated averaged logits ``[n, n_labels]`` of raw encoder vectors."""
        return self._logits(*self._centred(vectors, langs))

    def predict_proba(self, vectors: np.ndarray, langs: Sequence[str] | None = None) -> np.ndarray:
        """Calibrated probabilities ``[n, n_labels]`` (columns in the order of ``labels``)."""
        return self._proba(*self._centred(vectors, langs))

    def predict(self, vectors: np.ndarray, langs: Sequence[str] | None = None,
                abstain: bool = False) -> TopicPredictions:
        """Best label, ``topic_score``, ``topic_support`` and the distribution of each vector.

        With ``abstain``, the label is :data:`UNKNOWN` where ``topic_score < threshold`` or
        ``topic_support < support_threshold``.
        """
        x, langs = self._centred(vectors, langs)
        proba = self._proba(x, langs)
        best = proba.argmax(axis=1)
        scores = proba[np.arange(len(best)), best].astype(np.float32)
        support = (self.support(x, proba) if self.support is not None and len(x)
                   else np.full(len(x), np.nan, dtype=np.float32))
        names = [self.labels[i] for i in best]
        if abstain:
            refuse = (scores < self.threshold) | (support < self.support_threshold)  # NaN: False
            names = [UNKNOWN if r else n for n, r in zip(names, refuse)]
        return TopicPredictions(names, scores, support, proba.astype(np.float32))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the classifier as a directory (safetensors + manifest), atomically."""
        tensors = {f"head{i}.{k}": v.detach().contiguous() for i, h in enumerate(self.heads)
                   for k, v in h.state_dict().items()}
        langs, means = self.centering.to_arrays()
        tensors["centering.means"] = torch.as_tensor(means)
        if self.support is not None:
            tensors.update(self.support.to_tensors())
        with atomic_dir(path) as tmp:
            save_file(tensors, str(tmp / WEIGHTS))
            write_manifest(tmp, KIND, FORMAT_VERSION, {
                "labels": self.labels, "threshold": self.threshold,
                "temperature": self.temperature, "encoder_fingerprint": self.encoder_fingerprint,
                "encoder_name": self.encoder_name, "dim": self.dim, "text_kind": self.text_kind,
                "method": self.method, "heads": [asdict(c) for c in self.configs],
                "head_weights": self.weights,
                "support": None if self.support is None else {"tau": self.support.tau,
                                                               "threshold": self.support_threshold},
                "centering": {"languages": langs, **self.centering.settings()},
            })
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], expect_fingerprint: str | None = None, *,
             encoder_fingerprint: str | None = None) -> TopicClassifier:
        """Load a saved classifier; refuses one made with another encoder than
        ``expect_fingerprint`` (``encoder_fingerprint`` is its old name, still accepted)."""
        expect = expect_fingerprint if expect_fingerprint is not None else encoder_fingerprint
        root = Path(path)
        manifest = read_manifest(root, KIND, FORMAT_VERSION)
        if expect is not None and manifest["encoder_fingerprint"] != expect:
            raise ArtifactError(
                f"{root}: topic model made with encoder {manifest['encoder_fingerprint']} "
                f"({manifest.get('encoder_name') or 'unnamed'}), not with the encoder in use "
                f"({expect}); retrain it with this encoder")
        try:
            tensors = load_file(str(root / WEIGHTS))
            configs = [HeadConfig(**c) for c in manifest["heads"]]
            heads = []
            for i, config in enumerate(configs):
                prefix = f"head{i}."
                memory = tensors.get(prefix + "memory")
                head = build_head(config, manifest["dim"], len(manifest["labels"]),
                                  0 if memory is None else memory.shape[0])
                state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
                if memory is not None and "memory_lang" not in state:  # saved before private rows
                    state["memory_lang"] = torch.full((memory.shape[0],), -1, dtype=torch.int64)
                head.load_state_dict(state)
                head.eval()
                heads.append(head)
            centering = LanguageCentering.from_arrays(
                manifest["centering"]["languages"], tensors["centering.means"].numpy(),
                **{k: v for k, v in manifest["centering"].items() if k != "languages"})
            support_settings = manifest.get("support")  # absent: saved before topic_support
            support = (None if support_settings is None
                       else Support.from_tensors(tensors, support_settings["tau"], str(root)))
        except (KeyError, TypeError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{root}: malformed topic model ({exc})") from exc
        try:
            return cls(manifest["labels"], heads, centering=centering,
                       encoder_fingerprint=manifest["encoder_fingerprint"],
                       encoder_name=manifest.get("encoder_name", ""),
                       text_kind=manifest["text_kind"], temperature=manifest["temperature"],
                       threshold=manifest["threshold"], method=manifest.get("method", ""),
                       configs=configs, weights=manifest.get("head_weights", ()), support=support,
                       support_threshold=(support_settings or {}).get("threshold",
                                                                      DEFAULT_SUPPORT_THRESHOLD))
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"{root}: malformed topic model ({exc})") from exc
