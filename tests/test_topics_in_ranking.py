"""Item topics in the hybrid ranker: the ``topics=`` filter, diversity by topics, the user-topic
affinity features, persistence, similar items by topic, and bad input.

Tags are real: the Book-Crossing sample's books tagged with the SIB-200 label whose name (embedded
as a query by the real encoder) is nearest to the book's vector."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from xrec.catalogue.interactions import Interactions
from xrec.datasets.sib200 import load_labels
from xrec.errors import ArtifactError, DataError
from xrec.evaluation.metrics import topic_exposure
from xrec.ranking.hybrid import HybridRanker

from samples import SMALL, small_cf

pytestmark = pytest.mark.slow  # end to end: each test needs a fitted model, an encoded catalogue or a server


@pytest.fixture(scope="module")
def tags(bx_sample, encoder, data_dir):
    """``item_id, topic, topic_score`` for the sample's books with text."""
    items, _, vectors = bx_sample
    labels = load_labels(data_dir / "sib200")
    sims = vectors @ encoder.encode(labels, kind="query").T
    proba = np.exp((sims - sims.max(axis=1, keepdims=True)) / 0.02)
    proba /= proba.sum(axis=1, keepdims=True)
    has = items["has_text"].to_numpy()
    best = sims.argmax(axis=1)
    return pl.DataFrame({"item_id": items["item_id"].filter(pl.Series(has)),
                         "topic": [labels[b] for b in best[has]],
                         "topic_score": proba[np.arange(len(best)), best][has].astype(np.float32)})


@pytest.fixture(scope="module")
def ranker(bx_sample, tags):
    items, ratings, vectors = bx_sample
    inter = Interactions.build(ratings, items["item_id"])
    return HybridRanker.fit(inter, vectors, texts=items["text"].to_list(), languages=items["lang"].to_list(),
                            metadata={"author": items["author"].to_list()}, config=SMALL, topics=tags,
                            cf_fit=small_cf)


@pytest.fixture(scope="module")
def with_affinity(ranker, bx_sample):
    """The same ranker refitted with the ``topic`` and ``cold_topic`` features named."""
    config = replace(SMALL, features=tuple(ranker.fusion.names) + ("topic", "cold_topic"))
    return HybridRanker.fit(ranker.interactions, bx_sample[2], config=config, content=ranker.content,
                            cf_fit=small_cf)


def topic_of(ranker, items: np.ndarray) -> np.ndarray:
    return ranker.content.topic_codes[items]


def test_topics_are_off_by_default_and_on_when_named(ranker, with_affinity):
    assert ranker.content.has_topics
    assert "topic" not in ranker.fusion.names and "cold_topic" not in ranker.fusion.names
    assert {"topic", "cold_topic"} <= set(with_affinity.fusion.names)


def test_filter_returns_only_those_topics(ranker, tags):
    counts = tags["topic"].value_counts(sort=True)
    wanted = counts["topic"][1:3].to_list()  # two topics, not the largest
    users = ranker.users.ids.head(40).to_list() + [-1]  # -1: unknown, gets the popular items
    recs = ranker.recommend(users, 10, topics=wanted)
    assert recs.height > 0 and recs["user_id"].n_unique() == len(users)
    got = recs.join(tags, on="item_id", how="left")["topic"]
    assert got.null_count() == 0 and set(got.to_list()) <= set(wanted)
    assert set(ranker.recommend(users, 10)["item_id"]) - set(recs["item_id"])  # the filter did something


def test_diversity_by_topics_raises_topics_per_list(ranker):
    rows = np.flatnonzero(np.diff(ranker.history.indptr) > 0)[:60]

    def topics_per_list(**kw) -> float:
        items = ranker.recommend_rows(rows, 10, components=False, **kw).ids
        return float(np.mean([len(set(topic_of(ranker, r[r >= 0]).tolist()) - {-1}) for r in items]))

    plain = topics_per_list()
    by_topics = topics_per_list(diversity=0.5, diversity_by="topics")
    assert by_topics > plain + 0.5
    assert by_topics > topics_per_list(diversity=0.5, diversity_by="works")


def test_affinity_lifts_the_users_own_topics(ranker, with_affinity):
    """With a positive weight on ``topic``, items of a topic the user reads most gain score and
    items of a topic absent from the history lose it."""
    on = with_affinity
    lifted = HybridRanker(on.interactions, on.item_vectors, on.cf, on.content,
                          on.fusion.with_raw_weight("topic", on.fusion.raw["topic"] + 1.0), on.config,
                          cf_graph=on.cf_graph)
    codes = ranker.content.topic_codes
    warm = np.flatnonzero(~on.cold & (codes >= 0))
    checked = 0
    for row in np.flatnonzero(np.diff(on.history.indptr) >= 8)[:20]:
        read = codes[on.history.indices[on.history.indptr[row]:on.history.indptr[row + 1]]]
        counts = np.bincount(read[read >= 0], minlength=len(ranker.content.topic_names))
        favourite, unread = int(counts.argmax()), np.flatnonzero(counts == 0)
        if not len(unread):
            continue
        fav_items, other_items = warm[codes[warm] == favourite], warm[np.isin(codes[warm], unread)]
        if not len(fav_items) or not len(other_items):
            continue
        both = np.concatenate([fav_items, other_items])[None]
        delta = (lifted.score_items(np.array([row]), both) - on.score_items(np.array([row]), both))[0]
        assert (delta[:len(fav_items)] > 0).all() and (delta[len(fav_items):] < 0).all()
        checked += 1
    assert checked >= 5


def test_persistence_round_trip_and_manifest_check(ranker, tags, tmp_path):
    path = ranker.save(tmp_path / "ranker")
    loaded = HybridRanker.load(path)
    assert loaded.content.topic_names == ranker.content.topic_names
    np.testing.assert_array_equal(loaded.content.topic_codes, ranker.content.topic_codes)
    np.testing.assert_allclose(loaded.content.topic_scores, ranker.content.topic_scores)
    topic = tags["topic"][0]
    users = ranker.users.ids.head(20).to_list()
    assert loaded.recommend(users, 5, topics=[topic]).equals(ranker.recommend(users, 5, topics=[topic]))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["tagged"] += 1
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="tags"):
        HybridRanker.load(path)


def test_added_items_carry_their_topics(ranker, bx_sample):
    items, _, vectors = bx_sample

    untagged = ranker.add_items(["new-1", "new-2"], vectors[:2], texts=items["text"].head(2).to_list())
    assert (untagged.content.topic_codes[-2:] == -1).all()
    tagged = ranker.add_items(["new-1", "new-2"], vectors[:2], texts=items["text"].head(2).to_list(),
                              topics=pl.DataFrame({"item_id": ["new-1", "new-2"], "topic": ["a new topic", None]}))
    assert tagged.content.topic_names[-1] == "a new topic"
    assert tagged.content.topic_codes[-2] == len(tagged.content.topic_names) - 1
    assert tagged.content.topic_codes[-1] == -1
    assert len(tagged.content.topic_codes) == len(tagged.items)
    with pytest.raises(DataError, match="item_id 'new-1'.*not in the catalogue"):
        tagged.add_items(["new-3"], vectors[:1], topics=pl.DataFrame({"item_id": ["new-1"], "topic": ["travel"]}))


def test_similar_by_topic(bx_sample, tags, encoder):
    from xrec.index import VectorIndex
    from xrec.index.similar import ItemSpace, similar_items

    items, _, vectors = bx_sample
    has = items["has_text"].to_numpy()
    ids = items["item_id"].filter(pl.Series(has)).to_list()
    space = ItemSpace(VectorIndex.build(vectors[has], ids, items["lang"].filter(pl.Series(has)).to_list(),
                                        kind="exact"), encoder=encoder)
    topic = tags["topic"].value_counts(sort=True)["topic"][1]
    found = similar_items(ids[:5], 8, space=space, topics=[topic], tags=tags)
    by_id = dict(zip(tags["item_id"].to_list(), tags["topic"].to_list()))
    for query in found["queries"]:
        assert len(query["neighbours"]) == 8
        assert all(by_id[h["id"]] == topic and h["id"] != query["id"] for h in query["neighbours"])
    with pytest.raises(DataError, match="topics"):
        similar_items(ids[:1], 3, space=space, topics=["no such topic"], tags=tags)


def test_topic_exposure_shares(ranker, tags):
    rows = np.flatnonzero(np.diff(ranker.history.indptr) > 0)
    shown = ranker.recommend_rows(rows, 10, components=False).ids
    table = topic_exposure(shown, ranker.history.indices, ranker.content.topic_codes, ranker.content.topic_names)
    assert table["slots"].sum() == pytest.approx(1.0) and table["positives"].sum() == pytest.approx(1.0)
    assert set(table["topic"]) == set(ranker.content.topic_names)


def test_bad_topic_input_names_the_field(ranker, bx_sample, tags):
    items, ratings, vectors = bx_sample
    with pytest.raises(DataError, match="topics: \\['no such topic'\\]"):
        ranker.recommend(ranker.users.ids.head(2), 5, topics=["no such topic"])
    with pytest.raises(DataError, match="diversity_by"):
        ranker.recommend(ranker.users.ids.head(2), 5, diversity=0.3, diversity_by="colour")
    inter = Interactions.build(ratings, items["item_id"])
    unknown = pl.concat([tags.head(3), pl.DataFrame({"item_id": ["not a book"], "topic": ["travel"],
                                                     "topic_score": [0.5]}, schema=tags.schema)])
    with pytest.raises(DataError, match=r"item_id .not a book. \(row 3\) is not in the catalogue"):
        HybridRanker.fit(inter, vectors, config=SMALL, content=ranker.content, topics=unknown)
    with pytest.raises(DataError, match="missing column.*topic"):
        HybridRanker.fit(inter, vectors, config=SMALL, content=ranker.content, topics=tags.drop("topic"))
    with pytest.raises(DataError, match="topic_score"):
        HybridRanker.fit(inter, vectors, config=SMALL, content=ranker.content,
                         topics=tags.with_columns(pl.col("topic_score") * 3))
    plain = HybridRanker(inter, vectors, ranker.cf, replace(ranker.content, topic_codes=None, topic_names=[],
                                                            topic_scores=None), ranker.fusion, SMALL,
                         cf_graph=ranker.cf_graph)
    with pytest.raises(DataError, match="no item topics"):
        plain.recommend(plain.users.ids.head(2), 5, topics=["travel"])
