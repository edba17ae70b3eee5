"""``load_encoder``: the one way to get an :class:`~xrec.encoders.Encoder`."""

from __future__ import annotations

import os

from xrec.encoders.base import Encoder


def load_encoder(model: str | os.PathLike[str] = "bundled", *, device: str | None = None,
                 precision: str = "auto", batch_size: int = 32, threads: int | None = None) -> Encoder:
    """Load ``bundled`` (the embedded multilingual-e5-small), a local HF directory or a hub id.

    ``device``: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when present). ``precision``: ``"fp32"``,
    ``"bf16"``, ``"fp16"`` or ``"auto"`` (fp32 on the CPU, bf16/fp16 on a GPU).
    """
    raise NotImplementedError("being built: see issue 2")
