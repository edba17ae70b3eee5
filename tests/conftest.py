"""Shared fixtures: the repository's sample data and the real bundled encoder (built once per session).

Every test runs with its own empty ``$XREC_CACHE_DIR`` (session- and module-scoped fixtures with the
session's own), where the bundled model is a link to one shared copy that no test writes: no test
sees what an earlier test or run left in the cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
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


def _cache_with_model(root: Path, model: Path, hashes: Path | None = None) -> Path:
    """A fresh cache folder at ``root`` whose bundled model (and its ONNX exports) link to ``model``'s (and whose file
    checksums, if given, are a copy of ``hashes``, so the shared weights are not hashed again)."""
    (root / "models").mkdir(parents=True)
    (root / "models" / model.name).symlink_to(model, target_is_directory=True)
    # the model's ONNX exports and its measured `auto` choice (xrec.encoders.auto) are derived from the
    # shared weights: shared too, so the one-time export and measurement are not redone per test
    exports = model.parent.parent / "onnx"
    exports.mkdir(exist_ok=True)
    (root / "onnx").symlink_to(exports, target_is_directory=True)
    if hashes is not None and hashes.is_dir():
        shutil.copytree(hashes, root / "hashes")
    return root


@pytest.fixture(scope="session", autouse=True)
def shared_model(tmp_path_factory):
    """The bundled model, materialised once in the user's cache (or reused from it) and shared,
    read-only, with the session's own cache folder, which holds everything else."""
    from xrec.encoders.bundled import bundled_model_dir

    model, _ = bundled_model_dir()
    session = _cache_with_model(tmp_path_factory.mktemp("xrec-cache-session"), model)
    patch = pytest.MonkeyPatch()
    patch.setenv("XREC_CACHE_DIR", os.fspath(session))
    bundled_model_dir()  # its checksums, in the session's cache, copied into every test's
    yield model
    patch.undo()


@pytest.fixture(autouse=True)
def own_cache(shared_model, tmp_path_factory, monkeypatch) -> Path:
    """This test's own empty ``$XREC_CACHE_DIR`` (but for the shared bundled model)."""
    session = Path(os.environ["XREC_CACHE_DIR"])
    root = _cache_with_model(tmp_path_factory.mktemp("xrec-cache"), shared_model, session / "hashes")
    monkeypatch.setenv("XREC_CACHE_DIR", os.fspath(root))
    return root


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The repository's ``data/`` folder of small real samples."""
    return DATA


@pytest.fixture(scope="session")
def encoder():
    """The real bundled multilingual-e5-small encoder (torch fp32, the reference path), shared by
    the whole session."""
    from xrec.encoders import load_encoder

    return load_encoder("bundled", precision="fp32")


@pytest.fixture(scope="session")
def bx_sample(data_dir, encoder):
    """The first 300 users of the bundled Book-Crossing slice: items (their books and 300 books no
    one of them read, which are cold; item_id, text, lang, author), interactions (no timestamps)
    and the items' real encoder vectors."""
    import polars as pl
    from xrec.catalogue.items import prepare_items
    from xrec.datasets.bookcrossing import load_bookcrossing
    from xrec.ranking.content import item_vectors

    bx = load_bookcrossing(data_dir / "bookcrossing")
    users = bx.ratings["user_id"].unique().sort().head(300)
    ratings = bx.ratings.filter(pl.col("user_id").is_in(users.implode())).select("user_id", "item_id", "weight")
    read = pl.col("item_id").is_in(ratings["item_id"].implode())
    books = bx.books.filter(read | pl.col("item_id").is_in(bx.books.filter(~read)["item_id"].head(300).implode()))
    items = prepare_items(books.select("item_id", bx.items().filter(
        pl.col("item_id").is_in(books["item_id"].implode()))["text"], "lang", "author"))
    return items, ratings, item_vectors(encoder, items)


@pytest.fixture(scope="session")
def ml_sample(data_dir, encoder):
    """The MovieLens sample of :func:`samples.movielens_sample` (items, ratings) and its real vectors."""
    from xrec.ranking.content import item_vectors

    from samples import movielens_sample

    items, ratings = movielens_sample(data_dir)
    return items, ratings, item_vectors(encoder, items)


@pytest.fixture(scope="session")
def ml_ranker(ml_sample):
    """A HybridRanker fitted on :func:`ml_sample` (learned fusion, timestamps); tests only read it."""
    from xrec.catalogue.interactions import Interactions
    from xrec.ranking.hybrid import HybridRanker

    from samples import SMALL, small_cf

    items, ratings, vectors = ml_sample
    inter = Interactions.build(ratings, items["item_id"])
    return HybridRanker.fit(inter, vectors, texts=items["text"].to_list(), cf_fit=small_cf, config=SMALL)


@pytest.fixture(scope="session")
def bx_ranker(bx_sample):
    """A HybridRanker fitted on :func:`bx_sample` (languages, authors, no timestamps); tests only read it."""
    from xrec.catalogue.interactions import Interactions
    from xrec.ranking.hybrid import HybridRanker

    from samples import SMALL

    items, ratings, vectors = bx_sample
    inter = Interactions.build(ratings, items["item_id"])
    return HybridRanker.fit(inter, vectors, texts=items["text"].to_list(), languages=items["lang"].to_list(),
                            metadata={"author": items["author"].to_list()}, config=SMALL)


def tree_digest(path: Path) -> str:
    """SHA-256 of a file, or of every file under a directory (names and bytes)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        h.update(str(file.relative_to(path.parent)).encode() + b"\0" + file.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="session")
def serve_catalogue(tmp_path_factory, data_dir, encoder):
    """:func:`serve_helpers.build_catalogue` once for the session (index, items table, fitted ranker),
    shared read-only by the serve, hostile-client, page and fault tests: a test that writes works on a
    copy, and the session fails if any file of it changed."""
    from serve_helpers import build_catalogue

    catalogue = build_catalogue(tmp_path_factory.mktemp("serve-catalogue"), data_dir, encoder)
    catalogue["vectors"].setflags(write=False)
    files = ("index", "items", "ranker")
    before = {name: tree_digest(catalogue[name]) for name in files}
    yield catalogue
    assert {name: tree_digest(catalogue[name]) for name in files} == before, "a test changed the shared catalogue"


@pytest.fixture(scope="session")
def topic_table(tmp_path_factory, data_dir) -> Path:
    """Six labelled SIB-200 train sentences per label in one language (the smallest real input),
    and beside it (``dev.csv``) three dev sentences per label in the same language."""
    import polars as pl
    from xrec.datasets.sib200 import load_split

    train = load_split(data_dir / "sib200", "train")
    lang = sorted(set(train["lang"]))[0]
    root = tmp_path_factory.mktemp("topics")
    for split, n, name in ((train, 6, "labelled.csv"), (load_split(data_dir / "sib200", "dev"), 3, "dev.csv")):
        table = split.filter(pl.col("lang") == lang).group_by("category", maintain_order=True).head(n)
        table.select("text", "category", "lang").write_csv(root / name)
    return root / "labelled.csv"


@pytest.fixture(scope="session")
def topic_model(topic_table, tmp_path_factory):
    """A topic model trained by ``xrec topics train`` on :func:`topic_table` (calibrated on its dev
    table), shared read-only (a test that writes copies it; the session fails if any file of it changed)."""
    from xrec.cli.main import main

    model = tmp_path_factory.mktemp("topics") / "topics"
    assert main(["topics", "train", "--data", str(topic_table), "--dev", str(topic_table.with_name("dev.csv")),
                 "--out", str(model)]) == 0
    before = tree_digest(model)
    yield model
    assert tree_digest(model) == before, "a test changed the shared topic model"
