"""HybridRanker.rerank, explanations, ``xrec rerank`` and the rerank_als evaluation model, on real
samples (MovieLens with timestamps, Book-Crossing in several languages), the real encoder and
implicit's ALS as the upstream model."""

from __future__ import annotations

import logging

import numpy as np
import polars as pl
import pytest
from xrec.errors import ArtifactError, DataError
from xrec.evaluation.metrics import Scorer
from xrec.evaluation.recs import RerankScorer
from xrec.ranking.batch import parts_dir, rerank_to_parquet
from xrec.ranking.cf import fit_als
from xrec.ranking.config import COMPONENTS


@pytest.fixture(scope="module")
def ml(ml_sample, ml_ranker):
    items, ratings, _ = ml_sample
    return items, ratings, ml_ranker


@pytest.fixture(scope="module")
def als_candidates(ml):
    """implicit's ALS top-50 unseen items per user (with its scores): the upstream model's output."""
    _, _, ranker = ml
    _, model = fit_als(ranker.history, factors=32)
    rows = np.arange(len(ranker.users))
    ids, scores = model.recommend(rows, ranker.history[rows], N=50, filter_already_liked_items=True)
    return pl.DataFrame({"user_id": ranker.users.ids.gather(np.repeat(rows, ids.shape[1])),
                         "item_id": ranker.items.ids.gather(ids.reshape(-1)),
                         "score": scores.reshape(-1).astype(np.float64)})


def test_rerank_orders_candidates_by_the_rankers_own_score(ml, als_candidates):
    _, _, ranker = ml
    out = ranker.rerank(None, als_candidates, k=10)
    assert out.columns == ["user_id", "rank", "item_id", "score", *COMPONENTS, "popularity"]
    assert out.group_by("user_id").len()["len"].unique().to_list() == [10]
    assert out.join(als_candidates, on=["user_id", "item_id"], how="anti").height == 0  # only candidates
    # the scores are the ranker's fused scores, best first, and the components add up to them
    rows = ranker.users.index(out["user_id"])
    items = ranker.items.index(out["item_id"])
    np.testing.assert_allclose(out["score"].to_numpy(), ranker.score_items(rows, items[:, None])[:, 0],
                               rtol=1e-4, atol=1e-4)
    assert (out.group_by("user_id").agg(pl.col("score").diff().max())["score"] <= 1e-6).all()
    np.testing.assert_allclose(sum(out[c] for c in COMPONENTS).to_numpy(), out["score"].to_numpy(), atol=1e-3)
    # the order differs from ALS's for most users (it is a re-ranking, not a copy)
    first = als_candidates.group_by("user_id", maintain_order=True).first()
    top = out.filter(pl.col("rank") == 1).join(first, on="user_id", suffix="_als")
    assert (top["item_id"] != top["item_id_als"]).mean() > 0.3


def test_rerank_of_every_unseen_item_is_recommend(ml):
    """Re-ranking the whole unseen catalogue gives recommend's list: one scorer, not two."""
    _, _, ranker = ml
    users = ranker.users.ids.head(5)
    rows = ranker.users.index(users)
    lists = [np.setdiff1d(np.arange(len(ranker.items)), ranker.history[r].indices) for r in rows]
    got = ranker.rerank(users, [ranker.items.ids.gather(x).to_list() for x in lists], k=10)
    want = ranker.recommend(users, k=10)
    assert got["item_id"].to_list() == want["item_id"].to_list()
    np.testing.assert_allclose(got["score"].to_numpy(), want["score"].to_numpy(), rtol=1e-5)


def test_rerank_bad_input(ml, als_candidates):
    _, ratings, ranker = ml
    user = ranker.users.ids[0]
    good = als_candidates.filter(pl.col("user_id") == user).head(20)
    extra = pl.DataFrame({"user_id": [user, 99_999_999], "item_id": [-7, good["item_id"][0]],
                          "score": [1.0, 1.0]}, schema=good.schema)
    out, report = ranker.rerank(None, pl.concat([good, extra]), k=5, return_report=True)
    assert report.unknown_items == 1 and report.unknown_users == 1 and report.rows_out == 20
    assert report.examples["unknown_items"] == [-7] and out.height == 5
    with pytest.raises(DataError, match="row 21 .*user not known to the ranker"):
        ranker.rerank(None, pl.concat([good, extra]), on_unknown="error")
    with pytest.raises(DataError, match="row 20 .*item not known to the ranker"):
        ranker.rerank(None, pl.concat([good, extra.head(1)]), on_unknown="error")
    with pytest.raises(DataError, match="duplicate candidate"):
        ranker.rerank(None, pl.concat([good, good.head(1)]))
    with pytest.raises(DataError, match="row 3 .*NaN"):
        ranker.rerank(None, good.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(float("nan"))
                                              .otherwise(pl.col("score")).alias("score")))
    with pytest.raises(DataError, match="missing column"):
        ranker.rerank(None, good.drop("item_id"))
    with pytest.raises(DataError, match="k=0"):
        ranker.rerank(None, good, k=0)
    with pytest.raises(DataError, match="on_unknown"):
        ranker.rerank(None, good, on_unknown="ignore")
    # a user with no candidates: no rows, counted; an empty frame: an empty result
    other = ranker.users.ids[1]
    out, report = ranker.rerank([other, user], good, return_report=True)
    assert out["user_id"].unique().to_list() == [user] and report.users_without_candidates == 1
    assert ranker.rerank(None, good.head(0)).height == 0
    # seen items are dropped unless asked otherwise
    seen = ratings.filter(pl.col("user_id") == user)["item_id"].head(3)
    with_seen = pl.DataFrame({"user_id": [user] * 3, "item_id": seen})
    out, report = ranker.rerank(None, with_seen, return_report=True)
    assert out.height == 0 and report.seen == 3
    assert ranker.rerank(None, with_seen, exclude_seen=False).height == 3
    # ragged lists need their users
    with pytest.raises(DataError, match="need user_ids"):
        ranker.rerank(None, [[1, 2]])


def test_upstream_score_as_a_feature(ml, als_candidates):
    _, _, ranker = ml
    users = ranker.users.ids.head(8)
    cand = als_candidates.filter(pl.col("user_id").is_in(users.implode()))
    plain = ranker.rerank(None, cand, k=10)
    assert "upstream_score" not in plain.columns  # weight 0 (default): the hybrid's own order
    led = ranker.rerank(None, cand, k=10, upstream_weight=1000.0)
    # a dominant weight gives back the upstream order
    als_top = (cand.sort(["user_id", "score"], descending=[False, True])
               .group_by("user_id", maintain_order=True).head(10))
    assert led.sort(["user_id", "rank"])["item_id"].to_list() == als_top["item_id"].to_list()
    blended = ranker.rerank(None, cand, k=10, upstream_weight=1.0)
    np.testing.assert_allclose(sum(blended[c] for c in (*COMPONENTS, "upstream_score")).to_numpy(),
                               blended["score"].to_numpy(), atol=1e-3)
    assert 0 < (blended["item_id"] != plain["item_id"]).mean() < 1


@pytest.mark.slow
def test_explanations_across_languages(bx_ranker, bx_sample):
    items, ratings, _ = bx_sample
    users = bx_ranker.users.ids.head(30)
    recs = bx_ranker.recommend(users, k=5, explain=3)
    assert {"lang", "because_item_id", "because_lang", "because_similarity"} <= set(recs.columns)
    history = ratings.group_by("user_id").agg("item_id")
    joined = recs.join(history, on="user_id", suffix="_history")
    for row in joined.iter_rows(named=True):
        assert 1 <= len(row["because_item_id"]) <= 3
        assert set(row["because_item_id"]) <= set(row["item_id_history"])  # from the user's own history
        sims = row["because_similarity"]
        assert sims == sorted(sims, reverse=True) and -1.0 <= sims[-1] <= sims[0] <= 1.0 + 1e-5
    lang = dict(zip(items["item_id"], items["lang"]))
    flat = recs.explode(["because_item_id", "because_lang"])
    assert all(lang[i] == lg for i, lg in zip(flat["because_item_id"], flat["because_lang"]))
    assert recs["lang"].to_list() == [lang[i] for i in recs["item_id"]]
    # the nearest history item is the one of highest cosine with the recommended item
    row = recs.row(0, named=True)
    v = bx_ranker.item_vectors
    hist = bx_ranker.history[bx_ranker.users.index([row["user_id"]])[0]].indices
    best = hist[np.argmax(v[hist] @ v[bx_ranker.items.index([row["item_id"]])[0]])]
    assert row["because_item_id"][0] == bx_ranker.items.ids[int(best)]
    assert flat["because_lang"].n_unique() >= 2  # explanations cross languages on this catalogue
    with pytest.raises(DataError, match="explain"):
        bx_ranker.explain(recs, 0)


def test_rerank_to_parquet_resumes_and_cli(ml, als_candidates, tmp_path, data_dir):
    _, _, ranker = ml
    out = tmp_path / "reranked.parquet"
    assert rerank_to_parquet(ranker, als_candidates, 10, out, batch_size=16, stop_after=2) is None
    assert len(list(parts_dir(out).glob("part-*.parquet"))) == 2 and not out.exists()
    with pytest.raises(ArtifactError, match="different run"):
        rerank_to_parquet(ranker, als_candidates.head(100), 10, out, batch_size=16)
    done = rerank_to_parquet(ranker, als_candidates, 10, out, batch_size=16)  # resumes the two parts
    assert done == out and not parts_dir(out).exists()
    got, want = pl.read_parquet(done), ranker.rerank(None, als_candidates, 10)
    assert got.select("user_id", "rank", "item_id").equals(want.select("user_id", "rank", "item_id"))
    np.testing.assert_allclose(got["score"].to_numpy(), want["score"].to_numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_rerank_cli(ml, als_candidates, encoder, tmp_path, capsys, caplog):
    from xrec.cli.main import main

    items, ratings, ranker = ml
    items.drop("has_text").write_parquet(tmp_path / "items.parquet")
    ratings.write_csv(tmp_path / "inter.csv")
    bad = pl.concat([als_candidates, pl.DataFrame({"user_id": [1], "item_id": [-3], "score": [0.5]},
                                                  schema=als_candidates.schema)])
    bad.write_parquet(tmp_path / "cand.parquet")
    args = ["rerank", "--candidates", str(tmp_path / "cand.parquet"), "--items", str(tmp_path / "items.parquet"),
            "--interactions", str(tmp_path / "inter.csv"), "--k", "5", "--out", str(tmp_path / "out.parquet"),
            "--batch-size", "32", "--explain", "2"]
    with caplog.at_level(logging.INFO, logger="xrec"):
        assert main(args) == 0
    assert "1 naming unknown items" in caplog.text  # status lines are logged (on stderr)
    out = pl.read_parquet(tmp_path / "out.parquet")
    assert out.group_by("user_id").len()["len"].unique().to_list() == [5]
    assert {"because_item_id", "because_similarity", "cf_score"} <= set(out.columns)
    # the refusals below need a ranker, not its fit: the session's, fitted on the same sample, saved
    saved = ["--ranker", str(ranker.save(tmp_path / "ranker", encoder_fingerprint=encoder.fingerprint))]
    args = [*args[:3], *saved, *args[7:-2]]  # no --items/--interactions (then no fit), no --explain
    assert main(args + ["--on-unknown", "error", "--out", str(tmp_path / "o2.parquet")]) == 2
    assert "not known to the ranker" in capsys.readouterr().err
    assert not (tmp_path / "o2.parquet").exists() and not parts_dir(tmp_path / "o2.parquet").exists()
    # language filters reach the ranker (this catalogue has no languages: a clear error)
    assert main(args + ["--languages", "fi", "--out", str(tmp_path / "o3.parquet")]) == 2
    assert "not among the catalogue's languages" in capsys.readouterr().err


def test_rerank_als_scorer_keeps_to_the_candidates(ml):
    _, _, ranker = ml
    model = fit_als(ranker.history, factors=32)[0]

    class Als(Scorer):
        def topk(self, rows, k):
            s = model.scores(rows)
            s[ranker.history[rows].nonzero()] = -np.inf
            return np.argsort(-s, axis=1, kind="stable")[:, :k]

        def score_items(self, rows, items):
            return np.take_along_axis(model.scores(rows), items, 1)

    scorer = RerankScorer(ranker, Als(), n=30)
    rows = np.arange(12)
    top = scorer.topk(rows, 10)
    cand = Als().topk(rows, 30)
    assert all(np.isin(top[j], cand[j]).all() for j in range(len(rows)))
    scores = scorer.score_items(rows, cand[:, :5])
    assert np.isfinite(scores).all()
    outside = np.setdiff1d(np.arange(len(ranker.items)), cand[0])[:3]
    assert np.isneginf(scorer.score_items(rows[:1], outside[None])).all()


@pytest.mark.slow
def test_language_filters(bx_ranker, bx_sample):
    items, ratings, _ = bx_sample
    lang = dict(zip(items["item_id"], items["lang"]))
    users = bx_ranker.users.ids.head(40)
    names = bx_ranker.content.languages
    counts = items.filter(pl.col("lang").is_not_null()).group_by("lang").len().sort("len")
    main_lang, rare = counts["lang"][-1], counts["lang"][0]
    only = bx_ranker.recommend(users, k=10, languages=[main_lang])
    assert only.height == 400 and {lang[i] for i in only["item_id"]} == {main_lang}
    without = bx_ranker.recommend(users, k=10, exclude_languages=[main_lang])
    assert main_lang not in {lang[i] for i in without["item_id"]} and without.height == 400
    # a filter that leaves fewer than k unseen items: a short list, every allowed item once
    short = bx_ranker.recommend(users.head(3), k=1000, languages=[rare])
    assert short.group_by("user_id").len()["len"].max() <= counts["len"][0]
    assert {lang[i] for i in short["item_id"]} == {rare}
    # "history": only the languages of the user's own history
    spoken = ratings.with_columns(pl.col("item_id").replace_strict(lang, default=None).alias("lang")) \
        .group_by("user_id").agg(pl.col("lang").unique())
    hist = bx_ranker.recommend(users, k=10, language_policy="history").join(spoken, on="user_id")
    # items of unknown language (Book-Crossing's "und") are left out: no one's language
    assert all(lang[r["item_id"]] is not None and lang[r["item_id"]] in r["lang"] for r in hist.iter_rows(named=True))
    # re-ranking with a filter drops the other candidates, counted
    cand = bx_ranker.recommend(users, k=50).select("user_id", "item_id")
    out, report = bx_ranker.rerank(None, cand, k=5, exclude_languages=[main_lang], return_report=True)
    assert main_lang not in {lang[i] for i in out["item_id"]}
    assert report.language_filtered == sum(lang[i] == main_lang for i in cand["item_id"])
    with pytest.raises(DataError, match="not among the catalogue's languages"):
        bx_ranker.recommend(users, languages=["fi"])
    with pytest.raises(DataError, match="language_policy"):
        bx_ranker.recommend(users, language_policy="some")
    assert set(names) >= {main_lang, rare}


@pytest.mark.slow
def test_diversity_spreads_lists_at_a_cost_in_score(bx_ranker):
    rows = np.arange(min(60, len(bx_ranker.users)))
    plain = bx_ranker.recommend_rows(rows, 10, components=False)
    same = bx_ranker.recommend_rows(rows, 10, components=False, diversity=0.0)
    np.testing.assert_array_equal(plain.ids, same.ids)
    v = bx_ranker.item_vectors

    def redundancy(items):
        sims = [v[x] @ v[x].T for x in items]
        return float(np.mean([(s.sum() - np.trace(s)) / (len(s) * (len(s) - 1)) for s in sims]))

    spread = bx_ranker.recommend_rows(rows, 10, components=False, diversity=0.5)
    assert (spread.ids >= 0).all() and all(len(set(x)) == 10 for x in spread.ids)
    assert redundancy(spread.ids) < redundancy(plain.ids) - 0.01  # less alike
    assert spread.scores.sum(axis=1).mean() <= plain.scores.sum(axis=1).mean()  # at some cost in score
    seen = {(r, i) for r in rows for i in bx_ranker.history[r].indices}
    assert not any((r, i) in seen for r, x in zip(rows, spread.ids) for i in x)  # seen items stay out
    recs = bx_ranker.recommend(bx_ranker.users.ids.head(5), k=10, diversity=0.5)
    assert recs.height == 50
    with pytest.raises(DataError, match="diversity"):
        bx_ranker.recommend(bx_ranker.users.ids.head(5), diversity=2.0)
