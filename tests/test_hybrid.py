"""HybridRanker on a small real MovieLens sample with the real encoder."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from xrec.errors import ArtifactError, DataError
from xrec.ranking.cf import fit_als, from_implicit
from xrec.ranking.content import item_vectors, prepare_items
from xrec.ranking.hybrid import FEATURES, HybridConfig, HybridRanker
from xrec.ranking.interactions import IdMap, Interactions


def movielens_sample(data_dir, n_items: int = 260, n_cold: int = 40):
    """Ratings of real users on the most rated sample items, plus never-rated (cold) items."""
    from xrec.datasets.movielens import load_movielens

    ml = load_movielens(data_dir / "movielens")
    top = ml.ratings.group_by("item_id").len().sort(["len", "item_id"], descending=[True, False])
    keep = top["item_id"].head(n_items)
    cold = ml.movies.filter(~pl.col("item_id").is_in(ml.ratings["item_id"].unique().implode()))
    ids = pl.concat([keep, cold["item_id"].head(n_cold)])
    items = ml.items().filter(pl.col("item_id").is_in(ids.implode()))
    ratings = ml.ratings.filter(pl.col("item_id").is_in(keep.implode()) & (pl.col("user_id") <= 150))
    return prepare_items(items), ratings


@pytest.fixture(scope="module")
def sample(data_dir, encoder):
    items, ratings = movielens_sample(data_dir)
    return items, ratings, item_vectors(items, encoder)


@pytest.fixture(scope="module")
def ranker(sample):
    items, ratings, vectors = sample
    inter = Interactions.build(ratings, items["item_id"])
    return HybridRanker.fit(inter, vectors, cf_fit=lambda m: fit_als(m, factors=16)[0])


def test_learned_fusion_and_recommendations(ranker):
    assert ranker.fusion.kind.startswith("learned")
    users = ranker.users.ids.head(20)
    recs = ranker.recommend(users, k=10)
    assert recs.columns == ["user_id", "rank", "item_id", "score", "cf_score", "content_score",
                            "history_score", "popularity"]
    assert recs.group_by("user_id").len()["len"].to_list() == [10] * 20
    seen = ranker.interactions.frame.select("user_id", "item_id")
    assert recs.join(seen, on=["user_id", "item_id"], how="inner").height == 0  # seen items excluded
    for _, group in recs.group_by("user_id"):
        assert (np.diff(group.sort("rank")["score"].to_numpy()) <= 1e-6).all()
    assert recs["content_score"].is_not_nan().all() and recs["cf_score"].is_not_nan().all()


def test_cold_items_are_scored_by_content(ranker):
    cold = ranker.cold_items
    assert len(cold) == 40
    rows = np.arange(30)
    full = ranker.recommend_rows(rows, len(ranker.items))
    assert np.isin(full.items, cold).any(axis=1).all()  # the whole catalogue is ranked, cold items too
    scores = ranker.score_items(rows, np.broadcast_to(cold, (30, len(cold))).copy())
    assert np.isfinite(scores).all() and scores.std() > 0
    feats = ranker.features(rows, np.broadcast_to(cold, (30, len(cold))).copy())
    assert (feats[..., FEATURES.index("cf")] == 0).all()
    assert (feats[..., FEATURES.index("cold_recent_content")] != 0).any()
    # the folded query/key product is the fused sum of the features
    np.testing.assert_allclose(scores, feats @ ranker.fusion.weights, rtol=1e-3, atol=1e-3)


def test_top_k_matches_full_scoring(ranker):
    rows = np.arange(25)
    recs = ranker.recommend_rows(rows, 10)
    every = np.broadcast_to(np.arange(len(ranker.items)), (len(rows), len(ranker.items))).copy()
    dense = ranker.score_items(rows, every)
    dense[ranker.history[rows].nonzero()] = -np.inf
    best = -np.sort(-dense, axis=1)[:, :10]
    np.testing.assert_allclose(recs.scores, best, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.take_along_axis(dense, recs.items, 1), recs.scores, rtol=1e-4, atol=1e-4)


def test_users_without_history_get_popular_items(ranker):
    recs = ranker.recommend(pl.Series([ranker.users.ids[0], -5]), k=5)
    cold_user = recs.filter(pl.col("user_id") == -5)
    assert cold_user.height == 5
    order = np.argsort(-ranker.popularity, kind="stable")[:5]
    assert cold_user["item_id"].to_list() == ranker.items.ids.gather(order).to_list()
    assert cold_user["cf_score"].is_nan().all()


def test_k_larger_than_catalogue(ranker):
    user = ranker.users.ids[0]
    n_seen = ranker.history[0].nnz
    recs = ranker.recommend([user], k=10_000)
    assert recs.height == len(ranker.items) - n_seen  # every unseen item, once
    assert recs["item_id"].n_unique() == recs.height
    with pytest.raises(DataError, match="k=0"):
        ranker.recommend([user], k=0)


def test_unbounded_k_is_capped_at_the_catalogue(ranker):
    """k = 10**12 returns every unseen item (and the popular list) without allocating k columns."""
    user = ranker.users.ids[0]
    recs = ranker.recommend(pl.Series([user, -5]), k=10**12)
    assert recs.filter(pl.col("user_id") == user).height == len(ranker.items) - ranker.history[0].nnz
    assert recs.filter(pl.col("user_id") == -5).height == len(ranker.items)


def test_fallback_without_timestamps(sample):
    items, ratings, vectors = sample
    inter = Interactions.build(ratings.drop("timestamp"), items["item_id"])
    ranker = HybridRanker.fit(inter, vectors, cf_fit=lambda m: fit_als(m, factors=16)[0])
    assert ranker.fusion.kind == "fallback"
    recs = ranker.recommend(ranker.users.ids.head(3), k=5)
    assert recs.height == 15


def test_pretrained_cf_model_is_not_retrained(sample):
    items, ratings, vectors = sample
    inter = Interactions.build(ratings, items["item_id"])
    _, raw = fit_als(inter.matrix, factors=8)
    before = raw.item_factors.copy()
    # the model's rows in another order than the ranker's: aligned by ids
    order = np.arange(len(inter.items))[::-1]
    cf = from_implicit(raw, user_ids=inter.users.ids, item_ids=inter.items.ids)
    cf.item_factors, cf.items = cf.item_factors[order], IdMap(inter.items.ids.gather(order), "item_id")
    ranker = HybridRanker.fit(inter, vectors, cf=cf)
    assert ranker.fusion.kind == "fallback"  # no cf_fit: no refit on the validation slice
    np.testing.assert_allclose(ranker.cf.item_factors, before)
    np.testing.assert_array_equal(raw.item_factors, before)
    assert ranker.recommend(inter.users.ids.head(2), k=3).height == 6


def test_items_without_text_and_bad_vectors(sample, encoder):
    items, ratings, vectors = sample
    blank = items.with_columns(pl.when(pl.int_range(pl.len()) < 3).then(None).otherwise(pl.col("text"))
                               .alias("text"))
    prepared = prepare_items(blank)
    assert (~prepared["has_text"]).sum() == 3
    vecs = item_vectors(prepared.head(5), encoder)
    assert not vecs[:3].any() and np.allclose(np.linalg.norm(vecs[3:], axis=1), 1, atol=1e-3)
    inter = Interactions.build(ratings, items["item_id"])
    with pytest.raises(DataError, match="item vectors of shape"):
        HybridRanker(inter, vectors[:-1], None, config=HybridConfig())


def test_save_and_load_round_trip(ranker, tmp_path):
    path = ranker.save(tmp_path / "ranker", encoder_fingerprint="fp")
    loaded = HybridRanker.load(path, encoder_fingerprint="fp")
    users = ranker.users.ids.head(15)
    assert loaded.recommend(users, k=10).equals(ranker.recommend(users, k=10))
    assert loaded.fusion.kind == ranker.fusion.kind and loaded.fingerprint() == ranker.fingerprint()
    with pytest.raises(ArtifactError, match="encoder_fingerprint"):
        HybridRanker.load(path, encoder_fingerprint="other")
    (path / "item_vectors.npy").write_bytes(b"broken")
    with pytest.raises(ArtifactError, match="item_vectors.npy"):
        HybridRanker.load(path, encoder_fingerprint="fp")
    with pytest.raises(ArtifactError, match="not a directory"):
        HybridRanker.load(tmp_path / "missing")
