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


@pytest.fixture(scope="session")
def bx_sample(data_dir, encoder):
    """The first 300 users of the bundled Book-Crossing slice: items (their books and 300 books no
    one of them read, which are cold; item_id, text, lang, author), interactions (no timestamps)
    and the items' real encoder vectors."""
    import polars as pl
    from xrec.datasets.bookcrossing import load_bookcrossing
    from xrec.ranking.content import item_vectors, prepare_items

    bx = load_bookcrossing(data_dir / "bookcrossing")
    users = bx.ratings["user_id"].unique().sort().head(300)
    ratings = bx.ratings.filter(pl.col("user_id").is_in(users.implode())).select("user_id", "item_id", "weight")
    read = pl.col("item_id").is_in(ratings["item_id"].implode())
    books = bx.books.filter(read | pl.col("item_id").is_in(bx.books.filter(~read)["item_id"].head(300).implode()))
    items = prepare_items(books.select("item_id", bx.items().filter(
        pl.col("item_id").is_in(books["item_id"].implode()))["text"], "lang", "author"))
    return items, ratings, item_vectors(items, encoder)
