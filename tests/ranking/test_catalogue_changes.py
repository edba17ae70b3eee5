"""Catalogue changes (xrec.ranking.catalogue) return a new ranker and leave the one given as it was:
whoever still holds it (a request in flight) sees its catalogue whole. A small synthetic fit keeps
this fast; tests/test_add_items.py checks the ranking quality on real data."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from xrec.catalogue.interactions import Interactions
from xrec.errors import DataError
from xrec.ranking.cf import fit_als
from xrec.ranking.hybrid import HybridRanker


@pytest.fixture(scope="module")
def ranker() -> HybridRanker:
    rng = np.random.default_rng(0)
    ids = [f"b{i}" for i in range(30)]
    pairs = pl.DataFrame({"user_id": np.repeat(np.arange(25), 5),
                          "item_id": [ids[i] for i in rng.integers(0, 24, 125)]}).unique()
    vectors = rng.normal(size=(len(ids), 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return HybridRanker.fit(Interactions.build(pairs, pl.Series(ids)), vectors, texts=[f"book {i}" for i in ids],
                            cf_fit=lambda m: fit_als(m, factors=4)[0])


def test_add_items_returns_a_new_ranker_and_leaves_the_old_one(ranker):
    users = ranker.users.ids.head(10)
    before, fingerprint, n = ranker.recommend(users, k=40), ranker.fingerprint, len(ranker.items)
    new = np.random.default_rng(1).normal(size=(2, 16)).astype(np.float32)
    grown = ranker.add_items(["n1", "n2"], new, texts=["new book one", "new book two"])
    assert grown is not ranker and len(grown.items) == n + 2 and grown.cold[-2:].all()
    assert {"n1", "n2"} <= set(grown.recommend(users, k=40)["item_id"].to_list())
    assert len(ranker.items) == n and ranker.fingerprint == fingerprint
    assert ranker.recommend(users, k=40).equals(before)


def test_remove_items_returns_a_new_ranker_and_leaves_the_old_one(ranker):
    users = ranker.users.ids.head(10)
    before = ranker.recommend(users, k=5)
    gone = before["item_id"].unique(maintain_order=True).head(3)
    smaller = ranker.remove_items(gone)
    assert int(smaller.retired.sum()) == 3 and not ranker.retired.any()
    assert not set(gone.to_list()) & set(smaller.recommend(users, k=5)["item_id"].to_list())
    assert ranker.recommend(users, k=5).equals(before)
    assert int(smaller.remove_items(gone[:1]).retired.sum()) == 3  # removed already: no change
    with pytest.raises(DataError, match="not in the catalogue"):
        ranker.remove_items(["no-such-book"])
    with pytest.raises(DataError, match="removed with remove_items"):
        smaller.add_items([gone[0]], smaller.item_vectors[:1])
