"""``LazyEncoder``: an encoder whose identity is known and whose model loads on first use."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from xrec.encoders.base import Encoder, TextKind
from xrec.errors import ModelError


class LazyEncoder(Encoder):
    """Answers ``fingerprint``, ``dim``, ``name``, the prefixes, ``max_length`` and (when given)
    ``path`` from a cached identity (:mod:`xrec.encoders.identity`) and builds the real encoder
    with ``load()`` the first time anything else is needed (``encode``, ``model``, ``tokenizer``,
    setting ``threads``, ...).

    A call that finds every vector in an embedding store therefore never imports torch. The loaded
    encoder must have the cached fingerprint, else :class:`~xrec.errors.ModelError`.
    """

    _OWN = ("_load", "_inner", "_lock", "fingerprint", "dim", "name", "query_prefix", "passage_prefix",
            "max_length")

    def __init__(self, identity: Mapping[str, Any], load: Callable[[], Encoder]) -> None:
        for name in self._OWN[3:]:
            object.__setattr__(self, name, identity[name])
        if identity.get("path") is not None:  # else known once loaded
            object.__setattr__(self, "path", identity["path"])
        object.__setattr__(self, "_load", load)
        object.__setattr__(self, "_inner", None)
        object.__setattr__(self, "_lock", threading.Lock())

    @property
    def is_loaded(self) -> bool:
        """Whether the model has been loaded."""
        return self._inner is not None

    def loaded(self) -> Encoder:
        """The real encoder (loaded on the first call)."""
        with self._lock:
            inner = self._inner
            if inner is None:
                inner = self._load()
                if inner.fingerprint != self.fingerprint:  # pragma: no cover - the cache key covers it
                    raise ModelError(f"{self.name}: model fingerprint {inner.fingerprint} differs from the "
                                     f"cached {self.fingerprint}; delete the cache folder's encoders/")
                object.__setattr__(self, "_inner", inner)
        return inner

    def encode(self, texts: Sequence[str], kind: TextKind = "passage", *,
               batch_size: int | None = None, progress: bool | None = None) -> np.ndarray:
        return self.loaded().encode(texts, kind, batch_size=batch_size, progress=progress)

    def __getattr__(self, name: str) -> Any:  # only for attributes not set above
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.loaded(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._OWN:
            raise AttributeError(f"{name} is fixed by the encoder's identity")
        setattr(self.loaded(), name, value)

    def __repr__(self) -> str:
        state = repr(self._inner) if self._inner is not None else "not loaded yet"
        return f"LazyEncoder({self.name!r}, {self.fingerprint[:19]}…, {state})"
