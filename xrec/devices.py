"""One device resolver for everything in xrec that runs on hardware (encoders, index backends).

``resolve_device`` turns ``None``/``"auto"``/``"cpu"``/``"cuda"``/``"cuda:N"`` into a concrete
torch device name; asking for CUDA where there is none is a :class:`~xrec.errors.DeviceError`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from xrec.errors import DeviceError


def _no_cuda_device_node() -> bool:
    """True on Linux when no NVIDIA (or WSL GPU) device node exists, so CUDA cannot be present:
    answers without importing torch (about a second of start-up)."""
    if not sys.platform.startswith("linux") or "torch" in sys.modules:
        return False
    dev = Path("/dev")
    return not ((dev / "nvidiactl").exists() or (dev / "dxg").exists() or any(dev.glob("nvidia[0-9]*")))


def cuda_available() -> bool:
    """True when torch sees a CUDA device."""
    if _no_cuda_device_node():
        return False
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return False
    return bool(torch.cuda.is_available())


def resolve_device(device: str | None) -> str:
    """A concrete device: ``None``/``"auto"`` -> ``"cuda"`` when torch sees a GPU, else
    ``"cpu"``; ``"cpu"`` and ``"cuda"``/``"cuda:N"`` as given, the latter only with a GPU."""
    wanted = "auto" if device is None else str(device).strip().lower()
    if wanted == "auto":
        return "cuda" if cuda_available() else "cpu"
    if wanted == "cpu":
        return "cpu"
    if wanted == "cuda" or wanted.startswith("cuda:"):
        if not cuda_available():
            raise DeviceError(f"device {device!r} requested but torch sees no CUDA GPU")
        return wanted
    raise DeviceError(f"device {device!r}: expected auto, cpu, cuda or cuda:N")
