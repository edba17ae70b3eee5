"""Topic heads over the shared embedding space and their fitting.

A head is linear, a small MLP (:class:`TopicHead`) or a kernel head (:class:`KernelHead`, a soft
nearest-neighbour vote over the stored, centred training vectors); :func:`fit_head` trains one
on centred vectors, :func:`fit_temperature` calibrates an ensemble's logits. The classifier that
ensembles, calibrates and saves heads is :class:`~xrec.topics.classifier.TopicClassifier`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from xrec.errors import DataError


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
    memory: torch.Tensor  #: ``[n_memory, dim]`` unit vectors (a buffer)
    targets: torch.Tensor  #: ``[n_memory, n_classes]`` class weights (a buffer)
    memory_lang: torch.Tensor  #: ``[n_memory]`` index in ``private_languages``, -1: every text (a buffer)

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
        codes = None
        if private:
            codes = self._codes(langs) if langs is not None else torch.full((len(x),), -2)
            if len(codes) != len(x):
                raise DataError(f"{len(x)} vectors but {len(codes)} language codes")
        parts = []
        for start in range(0, len(x), self.chunk):  # bounded memory for large batches
            z = (x[start:start + self.chunk] @ self.memory.T - 1.0) / self.tau  # cosine - 1 <= 0
            if codes is not None:  # private rows
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

