"""The encoder interface: texts in, L2-normalised float32 vectors in one shared space out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal

import numpy as np

TextKind = Literal["passage", "query"]


class Encoder(ABC):
    """Maps texts in any language to L2-normalised vectors in one space.

    ``kind`` selects the role of the text: ``"passage"`` for items that are searched,
    ``"query"`` for what searches them (models such as multilingual-e5 prefix each differently).
    """

    #: Dimension of the vectors.
    dim: int
    #: Stable identifier of weights + tokenizer + pooling + prefixes; vectors, indexes and heads
    #: record it and refuse to mix with another encoder's.
    fingerprint: str
    #: Human-readable model name (directory, hub id or ``bundled``).
    name: str
    #: The path that computes the vectors (``torch-fp32``, ``int8/onnx-v3``, ...: see
    #: :func:`xrec.encoders.auto.path`); stores record it and never mix two paths' vectors.
    #: Encoders that do not set it are read with ``getattr(encoder, "path", None)``.
    path: str

    @abstractmethod
    def encode(self, texts: Sequence[str], kind: TextKind = "passage", *,
               batch_size: int | None = None, progress: bool | None = None) -> np.ndarray:
        """Embed ``texts`` in order; returns float32 ``[len(texts), dim]``, rows L2-normalised.

        An empty sequence gives an empty ``[0, dim]`` array; empty strings are embedded.
        """


def check_texts(texts: Sequence[str]) -> list[str]:
    """Return ``texts`` as a list, raising ``DataError`` naming the first non-string entry."""
    from xrec.errors import DataError

    if isinstance(texts, str):
        raise DataError("encode() takes a sequence of texts, not a single string")
    out = list(texts)
    for row, text in enumerate(out):
        if not isinstance(text, str):
            raise DataError(f"text at row {row} is {type(text).__name__} ({text!r}), expected a string")
    return out
