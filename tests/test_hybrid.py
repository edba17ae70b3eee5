"""HybridRanker on small real samples (MovieLens with timestamps, Book-Crossing without) and the real encoder."""

from __future__ import annotations

import logging

import numpy as np
import polars as pl
import pytest
from xrec.catalogue.interactions import IdMap, Interactions
from xrec.catalogue.items import prepare_items
from xrec.errors import ArtifactError, DataError
from xrec.ranking.cf import fit_als, from_implicit
from xrec.ranking.config import BOOST_FEATURE, COMPONENTS, HybridConfig
from xrec.ranking.content import item_vectors
from xrec.ranking.content_graphs import ContentGraphs
from xrec.ranking.hybrid import HybridRanker
from xrec.ranking.views import is_cold_feature

from samples import SMALL, small_cf


@pytest.fixture(scope="module")
def sample(ml_sample):
    return ml_sample


@pytest.fixture(scope="module")
def ranker(ml_ranker):
    return ml_ranker


def test_learned_fusion_with_timestamps(ranker):
    assert ranker.fusion.kind.startswith("learned"), ranker.fusion.decision
    assert {"cf", "cf_knn", "popularity", "recency", "embedding", "lexical"} <= set(ranker.fusion.names)
    users = ranker.users.ids.head(20)
    recs = ranker.recommend(users, k=10)
    assert recs.columns == ["user_id", "rank", "item_id", "score", *COMPONENTS, "popularity"]
    assert recs.height == 200 and recs["user_id"].n_unique() == 20
    seen = ranker.interactions.frame.select("user_id", "item_id")
    assert recs.join(seen, on=["user_id", "item_id"], how="semi").height == 0  # seen items never come back
    # the components add up to the score
    total = sum(recs[c] for c in COMPONENTS)
    np.testing.assert_allclose(total.to_numpy(), recs["score"].to_numpy(), rtol=1e-3, atol=1e-3)


@pytest.mark.slow
def test_learned_fusion_without_timestamps_and_across_languages(bx_ranker, bx_sample):
    items, _, _ = bx_sample
    names = set(bx_ranker.fusion.names)
    assert bx_ranker.fusion.kind.startswith("learned"), bx_ranker.fusion.decision  # not a silent fallback
    assert {"embedding_same", "embedding_cross", "lexical_cross", "meta_author_cross", "cold"} <= names
    assert not {"recency", "time_x_recency"} & names  # no timestamps: no time features
    assert any(is_cold_feature(n) and n != "cold" for n in names)
    rows = np.arange(len(bx_ranker.users))
    top = bx_ranker.recommend_rows(rows, 10, components=False).ids
    cold_share = bx_ranker.cold[top[top >= 0]].mean()
    assert cold_share < 0.5  # cold items no longer flood the lists (they filled them before)
    langs = items["lang"].to_numpy()
    assert len(set(langs[top[top >= 0]])) >= 3  # lists cross languages


@pytest.mark.slow
def test_language_boost_lifts_the_other_languages_a_user_reads(bx_ranker):
    """Items in a language the user reads besides their most-read one gain exactly
    ``language_boost`` nats; items in the most-read language and in unread languages gain nothing."""
    assert bx_ranker.fusion.raw[BOOST_FEATURE] == pytest.approx(bx_ranker.config.language_boost)
    assert bx_ranker.config.language_boost > 0
    unboosted = HybridRanker(bx_ranker.interactions, bx_ranker.item_vectors, bx_ranker.cf, bx_ranker.content,
                             bx_ranker.fusion.with_raw_weight(BOOST_FEATURE, 0.0), bx_ranker.config,
                             cf_graph=bx_ranker.cf_graph)
    codes = bx_ranker.content.language_codes
    hist = bx_ranker.history
    read = [set(codes[hist.indices[hist.indptr[u]:hist.indptr[u + 1]]]) for u in range(hist.shape[0])]
    rows = np.array([u for u, langs in enumerate(read) if len(langs - {-1}) >= 2][:20])
    assert len(rows), "the Book-Crossing sample has readers of several languages"
    items = np.broadcast_to(np.arange(len(codes)), (len(rows), len(codes)))
    gain = bx_ranker.score_items(rows, items) - unboosted.score_items(rows, items)
    for j, u in enumerate(rows):
        counts = np.bincount(codes[hist.indices[hist.indptr[u]:hist.indptr[u + 1]]][
            codes[hist.indices[hist.indptr[u]:hist.indptr[u + 1]]] >= 0], minlength=codes.max() + 1)
        lifted = (counts[np.maximum(codes, 0)] > 0) & (codes != counts.argmax()) & (codes >= 0)
        np.testing.assert_allclose(gain[j, lifted], bx_ranker.config.language_boost, atol=1e-3)
        np.testing.assert_allclose(gain[j, ~lifted], 0.0, atol=1e-3)
    # the same boost changed per call: scores, lists and component scores follow it
    per_call = bx_ranker.score_items(rows, items, language_boost=0.0)
    np.testing.assert_allclose(per_call, unboosted.score_items(rows, items), rtol=1e-5, atol=1e-4)
    recs = bx_ranker.recommend_rows(rows, 10, language_boost=0.0)
    expected = unboosted.recommend_rows(rows, 10)
    np.testing.assert_allclose(recs.scores, expected.scores, rtol=1e-5, atol=1e-4)
    parts = sum(recs.components[c] for c in COMPONENTS)
    np.testing.assert_allclose(parts, recs.scores, rtol=1e-3, atol=1e-3)
    lifted_more = bx_ranker.recommend_rows(rows, 10, language_boost=20.0, components=False).ids
    codes_top = codes[lifted_more]
    assert any((c != np.bincount(codes[hist.indices[hist.indptr[u]:hist.indptr[u + 1]]][
        codes[hist.indices[hist.indptr[u]:hist.indptr[u + 1]]] >= 0]).argmax()).any() for c, u in zip(codes_top, rows))
    with pytest.raises(DataError, match="language_boost"):
        bx_ranker.recommend_rows(rows, 10, language_boost=float("nan"))


def test_cold_only_features_are_fitted_with_the_cold_items(ranker):
    """A feature that is zero on every warm item and not on cold ones must be named as a cold
    feature: the warm fit never sees cold items, so it would leave such a feature at 0."""
    views = ranker.views
    rows = np.arange(min(50, len(ranker.users)))
    warm, cold = np.flatnonzero(~ranker.cold), np.flatnonzero(ranker.cold)
    assert len(cold) and "cold_recency_ridge_x_time" in views.names
    for name in views.names:
        on_warm = views.feature(name, rows, np.broadcast_to(warm, (len(rows), len(warm))))
        on_cold = views.feature(name, rows, np.broadcast_to(cold, (len(rows), len(cold))))
        if not on_warm.any() and on_cold.any():
            assert is_cold_feature(name), name


@pytest.mark.slow
def test_cold_items_are_reached_by_content(bx_ranker):
    cold = np.flatnonzero(bx_ranker.cold)
    assert len(cold)
    rows = np.flatnonzero(np.diff(bx_ranker.history.indptr) > 0)[:50]
    grid = np.broadcast_to(cold, (len(rows), len(cold)))
    scores = bx_ranker.score_items(rows, grid)
    assert np.isfinite(scores).all() and scores.std() > 0  # cold items are told apart by their content
    assert (bx_ranker.components(rows, grid)["content_score"] != 0).mean() > 0.5


def test_top_k_matches_full_scoring(ranker):
    rows = np.arange(10)
    recs = ranker.recommend_rows(rows, 15, components=False)
    full = ranker.folded.scores(rows)
    full[ranker.history[rows].nonzero()] = -np.inf
    expected = np.sort(full, axis=1)[:, ::-1][:, :15]
    np.testing.assert_allclose(recs.scores, expected, rtol=1e-5)
    feats = ranker.features(rows[:2], recs.ids[:2])
    raw = np.array([ranker.fusion.raw[n] for n in ranker.fusion.names])
    np.testing.assert_allclose(feats @ raw, recs.scores[:2], rtol=1e-3, atol=1e-3)


def test_users_without_history_get_popular_items(ranker):
    recs = ranker.recommend([-1, ranker.users.ids[0]], k=5)
    popular = recs.filter(pl.col("user_id") == -1)
    order = np.argsort(-ranker.popularity, kind="stable")[:5]
    assert popular["item_id"].to_list() == ranker.items.ids.gather(order).to_list()
    assert popular["cf_score"].is_nan().all()


def test_k_larger_than_catalogue(ranker):
    user = ranker.users.ids[0]
    n_seen = int(np.diff(ranker.history.indptr)[0])
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


def test_default_weights_are_not_silent(sample, caplog):
    items, ratings, vectors = sample
    inter = Interactions.build(ratings.group_by("user_id").head(4).head(40), items["item_id"])
    with caplog.at_level(logging.WARNING, logger="xrec.ranking.hybrid"):
        ranker = HybridRanker.fit(inter, vectors, cf_fit=small_cf, config=SMALL)
    # the default weights, or a part that validated better than them on the few positives there are
    assert ranker.fusion.kind == "default" or "default" in ranker.fusion.decision["validation"]
    assert "validation positives" in caplog.text and "default" in caplog.text
    assert ranker.recommend(inter.users.ids.head(2), k=3).height == 6


def test_pretrained_cf_model_is_not_retrained(sample, caplog):
    items, ratings, vectors = sample
    inter = Interactions.build(ratings, items["item_id"])
    _, raw = fit_als(inter.matrix, factors=8)
    before = raw.item_factors.copy()
    # the model's rows in another order than the ranker's: aligned by ids
    order = np.arange(len(inter.items))[::-1]
    cf = from_implicit(raw, user_ids=inter.users.ids, item_ids=inter.items.ids)
    cf.item_factors, cf.items = cf.item_factors[order], IdMap(inter.items.ids.gather(order), "item_id")
    with caplog.at_level(logging.WARNING, logger="xrec.ranking.hybrid"):
        ranker = HybridRanker.fit(inter, vectors, cf=cf, config=SMALL)
    assert ranker.fusion.kind == "default" and "pre-trained CF model" in caplog.text
    np.testing.assert_allclose(ranker.cf.item_factors, before)
    np.testing.assert_array_equal(raw.item_factors, before)
    assert ranker.recommend(inter.users.ids.head(2), k=3).height == 6


def test_items_without_text_and_bad_vectors(sample, encoder):
    items, ratings, vectors = sample
    blank = items.with_columns(pl.when(pl.int_range(pl.len()) < 3).then(None).otherwise(pl.col("text"))
                               .alias("text"))
    prepared = prepare_items(blank)
    assert (~prepared["has_text"]).sum() == 3
    vecs = item_vectors(encoder, prepared.head(5))
    assert not vecs[:3].any() and np.allclose(np.linalg.norm(vecs[3:], axis=1), 1, atol=1e-3)
    inter = Interactions.build(ratings, items["item_id"])
    content = ContentGraphs.build(vectors)
    with pytest.raises(DataError, match="item vectors of shape"):
        HybridRanker(inter, vectors[:-1], None, content, config=HybridConfig())


@pytest.mark.slow
def test_save_and_load_round_trip(bx_ranker, tmp_path):
    path = bx_ranker.save(tmp_path / "ranker", encoder_fingerprint="fp")
    loaded = HybridRanker.load(path, encoder_fingerprint="fp")
    users = bx_ranker.users.ids.head(15)
    assert loaded.recommend(users, k=10).equals(bx_ranker.recommend(users, k=10))
    assert loaded.fusion.kind == bx_ranker.fusion.kind and loaded.fingerprint == bx_ranker.fingerprint
    assert loaded.items.ids.dtype == pl.String  # ISBNs stay strings
    with pytest.raises(ArtifactError, match="encoder_fingerprint"):
        HybridRanker.load(path, encoder_fingerprint="other")
    (path / "item_vectors.npy").write_bytes(b"broken")
    with pytest.raises(ArtifactError, match="item_vectors.npy"):
        HybridRanker.load(path, encoder_fingerprint="fp")
    with pytest.raises(ArtifactError, match="not a directory"):
        HybridRanker.load(tmp_path / "missing")
