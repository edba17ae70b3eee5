"""The topic classifier: an ensemble of heads (:mod:`xrec.topics.head`) over the shared space.

A :class:`TopicClassifier` maps encoder vectors (any language) to one of a fixed label set with
calibrated probabilities (temperature scaling on held-out source-language data) and abstains
(:data:`UNKNOWN`) below a threshold when asked. Vectors are first centred by their language's
mean (:class:`~xrec.topics.centering.LanguageCentering`), which removes language identity from
the space. Saved as a directory: ``heads.safetensors`` (weights, kernel memories, language
means) plus the manifest (labels, threshold, temperature, encoder fingerprint, dimension, head
settings and weights).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from xrec.artifacts import atomic_dir, check_finite, read_manifest, write_manifest
from xrec.encoders.base import TextKind
from xrec.errors import ArtifactError, DataError
from xrec.topics.centering import LanguageCentering
from xrec.topics.head import HeadConfig, KernelHead, TopicHead, build_head, single_thread
from xrec.topics.support import DEFAULT_SUPPORT_THRESHOLD, Support

KIND = "xrec.topic_classifier"
FORMAT_VERSION = 2  #: 2: language codes normalised (xrec.catalogue.languages)
#: How to replace a classifier this xrec cannot read (another format version or encoder).
REBUILD = "retrain it with `xrec topics train` (xrec run retrains the job's topic model)"
WEIGHTS = "heads.safetensors"
#: The label :meth:`TopicClassifier.predict` gives when it abstains.
UNKNOWN = "unknown"


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
                 text_kind: TextKind = "query", temperature: float = 1.0, threshold: float = 0.5,
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
        self.text_kind: TextKind = text_kind
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
        """Centred vectors and the language of each (normalised; identified where None or ``und``)."""
        from xrec.catalogue.languages import UNKNOWN, item_codes

        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise DataError(f"vectors of shape {vectors.shape}; this classifier takes [n, {self.dim}]")
        langs = None if langs is None else [UNKNOWN if c is None else c for c in item_codes(langs, "langs")]
        if self.centering.enabled and self.centering.means and len(vectors) and (
                langs is None or (UNKNOWN in langs and UNKNOWN not in self.centering.means)):
            found = self.centering.identify(vectors)
            langs = found if langs is None else [f if c == UNKNOWN else c for c, f in zip(langs, found)]
        return self.centering.transform(vectors, langs), langs

    def _logits(self, x: np.ndarray, langs: Sequence[str] | None) -> np.ndarray:
        with torch.no_grad(), single_thread():
            t = torch.as_tensor(x)
            return sum((w * h(t, langs) for w, h in zip(self.weights, self.heads)), torch.zeros(())).numpy()

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
    def load(cls, path: str | os.PathLike[str], *, encoder_fingerprint: str | None = None) -> TopicClassifier:
        """Load a saved classifier; refuses one made with another encoder than ``encoder_fingerprint``."""
        expect = encoder_fingerprint
        root = Path(path)
        manifest = read_manifest(root, KIND, FORMAT_VERSION, rebuild=REBUILD)
        if expect is not None and manifest["encoder_fingerprint"] != expect:
            raise ArtifactError(
                f"{root}: topic model made with encoder {manifest['encoder_fingerprint']} "
                f"({manifest.get('encoder_name') or 'unnamed'}), not with the encoder in use "
                f"({expect}); retrain it with this encoder")
        try:
            tensors = load_file(str(root / WEIGHTS))
            for name, tensor in tensors.items():  # weights, memories, means: NaN or inf is never meant
                if tensor.is_floating_point():
                    check_finite(tensor.float().numpy(), f"{root / WEIGHTS}: tensor {name!r}")
            check_finite(np.array([manifest["temperature"], manifest["threshold"], *manifest["head_weights"]],
                                  dtype=np.float64), f"{root / 'manifest.json'}: temperature, threshold, head_weights")
            configs = [HeadConfig(**c) for c in manifest["heads"]]
            heads = []
            for i, config in enumerate(configs):
                prefix = f"head{i}."
                memory = tensors.get(prefix + "memory")
                head = build_head(config, manifest["dim"], len(manifest["labels"]),
                                  0 if memory is None else memory.shape[0])
                state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
                head.load_state_dict(state)
                head.eval()
                heads.append(head)
            centering = LanguageCentering.from_arrays(
                manifest["centering"]["languages"], tensors["centering.means"].numpy(),
                **{k: v for k, v in manifest["centering"].items() if k != "languages"})
            support_settings = manifest["support"]  # None: saved without topic_support
            support = (None if support_settings is None
                       else Support.from_tensors(tensors, support_settings["tau"], str(root)))
        except (KeyError, TypeError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{root}: malformed topic model ({exc})") from exc
        try:
            return cls(manifest["labels"], heads, centering=centering,
                       encoder_fingerprint=manifest["encoder_fingerprint"],
                       encoder_name=manifest["encoder_name"],
                       text_kind=manifest["text_kind"], temperature=manifest["temperature"],
                       threshold=manifest["threshold"], method=manifest["method"],
                       configs=configs, weights=manifest["head_weights"], support=support,
                       support_threshold=(support_settings or {}).get("threshold",
                                                                      DEFAULT_SUPPORT_THRESHOLD))
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"{root}: malformed topic model ({exc})") from exc
