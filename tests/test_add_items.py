"""HybridRanker.add_items and VectorIndex.add: new items served without refitting, on the real
Book-Crossing sample (several languages), the real encoder and implicit's ALS."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from xrec.catalogue.interactions import Interactions
from xrec.errors import ArtifactError, DataError
from xrec.evaluation.add_items import add_items_protocol, cold_item_auc
from xrec.index import VectorIndex
from xrec.ranking.hybrid import HybridRanker

from samples import SMALL

pytestmark = pytest.mark.slow  # end to end: each test needs a fitted model, an encoded catalogue or a server


@pytest.fixture(scope="module")
def protocol(bx_sample):
    items, ratings, vectors = bx_sample
    return add_items_protocol(items, ratings, vectors, fraction=0.1, seed=0,
                              metadata={"author": items["author"].to_list()}, config=SMALL)


@pytest.fixture(scope="module")
def split_ranker(bx_sample):
    """A ranker fitted without the last 40 books, and those books (catalogue changes return a new
    ranker: no test changes this one)."""
    items, ratings, vectors = bx_sample
    new = np.zeros(items.height, dtype=bool)
    new[-40:] = True
    old_items = items.filter(pl.Series(~new))
    inter = Interactions.build(ratings.filter(pl.col("item_id").is_in(old_items["item_id"].implode())),
                               old_items["item_id"])
    ranker = HybridRanker.fit(inter, vectors[~new], texts=old_items["text"].to_list(),
                              languages=old_items["lang"].to_list(),
                              metadata={"author": old_items["author"].to_list()}, config=SMALL)
    return ranker, items.filter(pl.Series(new)), vectors[new]


def test_added_items_rank_as_well_as_after_a_refit(protocol):
    print(protocol)
    assert protocol["items_added"] > 20 and protocol["users"] > 20
    # content reaches the new items: well above chance, and within 0.03 of the refitted ranker
    assert protocol["cold_auc_add_items"] > 0.6
    assert abs(protocol["cold_auc_add_items"] - protocol["cold_auc_refit"]) < 0.03
    assert protocol["seconds_add_items"] < protocol["seconds_refit"] / 3


def test_added_items_are_recommendable_and_saved(split_ranker, tmp_path):
    base, new, vectors = split_ranker
    before = len(base.items)
    fingerprint = base.fingerprint
    ranker = base.add_items(new["item_id"], vectors, texts=new["text"].to_list(), languages=new["lang"].to_list(),
                            metadata={"author": new["author"].to_list()})
    assert len(ranker.items) == before + new.height and ranker.cold[-new.height:].all()
    assert len(base.items) == before and base.fingerprint == fingerprint  # the ranker given is left as it was
    users = ranker.users.ids.head(60)
    recs = ranker.recommend(users, k=ranker.items.ids.len())
    added = set(new["item_id"].to_list())
    assert added <= set(recs["item_id"].to_list())  # every new item can be recommended
    ranked = ranker.rerank(users, [new["item_id"].to_list()] * len(users), k=3)
    assert ranked.height == 3 * len(users) and ranked["score"].is_finite().all()
    # the new items have content edges: their graph features are not all zero
    rows = ranker.users.index(users)
    comps = ranker.components(rows, np.broadcast_to(np.arange(before, len(ranker.items)), (len(rows), new.height)))
    assert (comps["content_score"] != 0).mean() > 0.5 and (comps["lexical_score"] != 0).any()
    path = ranker.save(tmp_path / "ranker", encoder_fingerprint="fp")
    loaded = HybridRanker.load(path, encoder_fingerprint="fp")
    assert loaded.recommend(users, k=20).equals(ranker.recommend(users, k=20))
    assert loaded.content.texts == ranker.content.texts
    # a loaded ranker takes more items (texts kept), and refuses another encoder's vectors
    more = loaded.add_items(["X-1", "X-2"], vectors[:2], texts=["a new book", "ein neues Buch"], languages=["en", "de"])
    assert len(more.items) == len(ranker.items) + 2 and len(loaded.items) == len(ranker.items)
    with pytest.raises(DataError, match="encoder"):
        loaded.add_items(["X-3"], vectors[:1], encoder_fingerprint="other")


def test_add_items_bad_input(split_ranker):
    ranker, new, vectors = split_ranker
    existing = ranker.items.ids[0]
    with pytest.raises(DataError, match="already in the catalogue"):
        ranker.add_items([existing], vectors[:1])
    with pytest.raises(DataError, match="duplicate id"):
        ranker.add_items(["Z-1", "Z-1"], vectors[:2])
    with pytest.raises(DataError, match=r"expected \(1, 384\)"):
        ranker.add_items(["Z-2"], vectors[:1, :100])
    with pytest.raises(DataError, match="2 texts for 1 ids"):
        ranker.add_items(["Z-3"], vectors[:1], texts=["a", "b"])
    with pytest.raises(DataError, match="not built with"):
        ranker.add_items(["Z-4"], vectors[:1], metadata={"publisher": ["x"]})
    with pytest.raises(DataError, match="NaN"):
        ranker.add_items(["Z-5"], np.full((1, 384), np.nan, np.float32))
    assert "Z-1" not in set(ranker.items.ids.to_list())  # a refused call changes nothing


def test_vector_index_add_then_search(bx_sample, tmp_path):
    items, _, vectors = bx_sample
    ids, langs = items["item_id"].to_list(), items["lang"].to_list()
    index = VectorIndex.build(vectors[:-10], ids[:-10], langs[:-10], kind="exact", fingerprint="fp")
    index.add(vectors[-10:], ids[-10:], langs[-10:])
    found, scores = index.search(vectors[-10:], k=5)
    assert all(ids[-10 + j] in list(found[j]) for j in range(10))  # found (titles may repeat: top 5)
    assert np.allclose(scores[:, 0], 1.0, atol=1e-4)
    with pytest.raises(DataError, match="already in the index"):
        index.add(vectors[-1:], ids[-1:])
    path = index.save(tmp_path / "idx")
    assert len(VectorIndex.load(path, encoder_fingerprint="fp")) == len(ids)
    with pytest.raises(ArtifactError):
        VectorIndex.load(path, encoder_fingerprint="other")


def test_cold_item_auc_is_chance_for_a_constant_scorer(split_ranker):
    """The AUC helper itself: scores that ignore the items give 0.5."""
    ranker, _, _ = split_ranker

    class Flat:
        cold, users, items = ranker.cold, ranker.users, ranker.items

        @staticmethod
        def score_items(rows, items):
            return np.zeros(items.shape, np.float32)

    test = ranker.interactions.frame.head(50).with_columns(
        pl.lit(ranker.items.ids[int(np.flatnonzero(ranker.cold)[0])]).alias("item_id"))
    auc, users = cold_item_auc(Flat, test)
    assert users > 0 and auc == pytest.approx(0.5)


def test_grown_graph_links_new_items_as_a_rebuild_would(bx_sample):
    """On real vectors: the edges touching the new items are those of the graph built with them
    (up to ties at an item's k-th neighbour: the sample repeats some titles)."""
    from xrec.ranking import graphs as g

    _, _, vectors = bx_sample
    n_new, k = 60, 20
    full = g.vector_knn(vectors, k)
    grown = g.extend_knn(g.vector_knn(vectors[:-n_new], k), vectors[-n_new:] @ vectors.T, k)
    touching = lambda m: m[:, -n_new:].tocoo()  # noqa: E731
    a, b = touching(full), touching(grown)
    assert a.nnz > n_new * k / 2
    built, grown_edges = set(zip(a.row, a.col)), set(zip(b.row, b.col))
    assert len(built ^ grown_edges) <= 0.01 * len(built)
    same = sorted(built & grown_edges)
    rows, cols = np.array(same).T
    np.testing.assert_allclose(np.asarray(full[:, -n_new:][rows, cols]).ravel(),
                               np.asarray(grown[:, -n_new:][rows, cols]).ravel(), atol=1e-5)


def test_removed_items_are_never_served_and_stay_removed_once_saved(split_ranker, tmp_path):
    base, _, _ = split_ranker
    users = base.users.ids.head(40)
    top = base.recommend(users, k=5)
    gone = top["item_id"].unique(maintain_order=True).head(10)  # items that were being recommended
    kept = [i for i in base.items.ids.to_list() if i not in set(gone.to_list())][:5]
    ranker = base.remove_items(gone)
    assert int(ranker.retired.sum()) == len(gone) and not base.retired.any()  # the ranker given is left as it was
    assert base.recommend(users, k=5).equals(top)
    assert int(ranker.remove_items(gone[:2]).retired.sum()) == len(gone)  # already removed: no change
    after = ranker.recommend(users, k=5)
    assert after.height == top.height and not set(gone.to_list()) & set(after["item_id"].to_list())
    ranked, report = ranker.rerank(users, [gone.to_list() + kept] * len(users), return_report=True)
    assert report.retired > 0 and not set(gone.to_list()) & set(ranked["item_id"].to_list())
    assert set(ranked["item_id"].to_list()) <= set(kept)
    # the interactions with removed items still count: other items score as before
    rows = ranker.users.index(users)
    grid = np.broadcast_to(ranker.items.index(pl.Series(kept)), (len(rows), len(kept)))
    np.testing.assert_allclose(ranker.score_items(rows, grid), base.score_items(rows, grid), rtol=1e-6)
    loaded = HybridRanker.load(ranker.save(tmp_path / "ranker"))
    assert int(loaded.retired.sum()) == len(gone) and loaded.recommend(users, k=5).equals(after)
    with pytest.raises(DataError, match="not in the catalogue"):
        ranker.remove_items(["no-such-book"])
    with pytest.raises(DataError, match="removed with remove_items"):
        ranker.add_items([gone[0]], ranker.item_vectors[:1])
