"""Shared fixtures: the repository's sample data and the real bundled encoder (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"


def cuda_available() -> bool:
    """True when torch sees a CUDA device."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.gpu`` tests cleanly where there is no GPU."""
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The repository's ``data/`` folder of small real samples."""
    return DATA


@pytest.fixture(scope="session")
def encoder():
    """The real bundled multilingual-e5-small encoder, shared by the whole session."""
    from xrec.encoders import load_encoder

    return load_encoder("bundled")
