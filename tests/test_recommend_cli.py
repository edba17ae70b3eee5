"""``xrec recommend``, resumable batch output and ``xrec evaluate recs`` on small real samples."""

from __future__ import annotations

import gzip
import json
import logging

import numpy as np
import polars as pl
import pytest
from xrec.cli.main import main
from xrec.errors import ArtifactError
from xrec.ranking.batch import parts_dir, recommend_to_parquet


def _sample(data_dir, n_items=200, n_cold=30, max_user=60):
    from xrec.datasets.movielens import load_movielens

    ml = load_movielens(data_dir / "movielens")
    top = ml.ratings.group_by("item_id").len().sort(["len", "item_id"], descending=[True, False])
    keep = top["item_id"].head(n_items)
    cold = ml.movies.filter(~pl.col("item_id").is_in(ml.ratings["item_id"].unique().implode()))["item_id"]
    ids = pl.concat([keep, cold.head(n_cold)])
    ratings = ml.ratings.filter(pl.col("item_id").is_in(keep.implode()) & (pl.col("user_id") <= max_user))
    return ml, ids, ratings


@pytest.fixture(scope="module")
def files(data_dir, tmp_path_factory):
    """The sample's items and interactions, their embedding store and the ranker ``xrec fit`` makes of
    them (``ranker/``): one fit for the module; the tests below only read these files (checked)."""
    from conftest import tree_digest

    ml, ids, ratings = _sample(data_dir)
    root = tmp_path_factory.mktemp("rec")
    ml.items().filter(pl.col("item_id").is_in(ids.implode())).write_parquet(root / "items.parquet")
    ratings.write_csv(root / "inter.csv")
    assert main(["fit", "--items", str(root / "items.parquet"), "--interactions", str(root / "inter.csv"),
                 "--store", str(root / "store.parquet"), "--out", str(root / "ranker")]) == 0
    before = tree_digest(root)
    yield root
    assert tree_digest(root) == before, "a test changed the module's shared files"


@pytest.fixture(autouse=True)
def _status_log(caplog):
    """The commands' status lines (logging, on stderr) as the tests read them."""
    caplog.set_level(logging.INFO, logger="xrec")


@pytest.mark.slow
def test_recommend_cli_writes_k_unseen_per_user(files, tmp_path, caplog):
    """The whole path: the items embedded (from the store) and the ranker fitted by ``recommend`` itself."""
    out = tmp_path / "recs.parquet"
    rc = main(["recommend", "--items", str(files / "items.parquet"), "--interactions",
               str(files / "inter.csv"), "--users", "all", "--k", "7", "--out", str(out),
               "--batch-size", "16", "--store", str(files / "store.parquet")])
    assert rc == 0
    recs = pl.read_parquet(out)
    inter = pl.read_csv(files / "inter.csv")
    assert set(recs.columns) >= {"user_id", "rank", "item_id", "score", "cf_score", "content_score"}
    assert recs.group_by("user_id").len()["len"].unique().to_list() == [7]
    assert recs["user_id"].n_unique() == inter["user_id"].n_unique()
    assert recs.join(inter, on=["user_id", "item_id"], how="inner").height == 0
    assert not parts_dir(out).exists()
    assert "fusion: learned" in caplog.text  # status goes to the log (stderr), data to files
    assert "0 embedded" in caplog.text  # the store the fit wrote was reused


def _saved(files) -> list[str]:
    """``recommend`` with the module's fitted ranker (no fit); the tables are then only validated."""
    return ["recommend", "--ranker", str(files / "ranker"), "--items", str(files / "items.parquet")]


@pytest.mark.slow
def test_recommend_cli_users_file_unknown_items_and_k(files, tmp_path, capsys, caplog):
    inter = pl.read_csv(files / "inter.csv")
    bad = pl.concat([inter, inter.head(2).with_columns(pl.lit(-1, dtype=pl.Int64).alias("item_id"))])
    bad.write_csv(tmp_path / "bad.csv")
    (tmp_path / "users.txt").write_text("1\n2\n777777\n")
    args = [*_saved(files), "--interactions", str(tmp_path / "bad.csv"),
            "--users", str(tmp_path / "users.txt"), "--k", "1000", "--out", str(tmp_path / "u.parquet")]
    assert main(args) == 2
    assert "2 row(s) name items not in the catalogue" in capsys.readouterr().err
    assert main(args + ["--drop-unknown"]) == 0
    text = caplog.text
    assert "2 naming unknown items" in text and "exceeds the catalogue" in text and "1 of 3 users" in text
    recs = pl.read_parquet(tmp_path / "u.parquet")
    n_items = pl.read_parquet(files / "items.parquet").height
    seen_1 = inter.filter(pl.col("user_id") == 1).height
    assert recs.filter(pl.col("user_id") == 1).height == n_items - seen_1
    assert recs.filter(pl.col("user_id") == 777777).height == n_items  # no history: popular order


@pytest.mark.slow
def test_recommend_cli_unbounded_k(files, tmp_path, capsys, caplog):
    """--k 10**12: every user gets every unseen item; no MemoryError, no parts left behind."""
    out = tmp_path / "all.parquet"
    assert main([*_saved(files), "--k", str(10**12), "--out", str(out)]) == 0
    assert "exceeds the catalogue" in caplog.text
    recs = pl.read_parquet(out)
    seen = pl.read_csv(files / "inter.csv").group_by("user_id").len()
    n_items = pl.read_parquet(files / "items.parquet").height
    per_user = recs.group_by("user_id").len().join(seen, on="user_id", suffix="_seen")
    assert (per_user["len"] + per_user["len_seen"] == n_items).all() and not parts_dir(out).exists()


@pytest.mark.slow
def test_users_file_header_makes_no_phantom_user(files, tmp_path, capsys, caplog):
    """A plain users list may start with a ``user_id`` header line; it is not a user."""
    (tmp_path / "with_header.txt").write_text("user_id\n1\n2\n", encoding="utf-8")
    out = tmp_path / "h.parquet"
    assert main([*_saved(files), "--users", str(tmp_path / "with_header.txt"), "--k", "3", "--out", str(out)]) == 0
    assert "no interactions" not in caplog.text  # both users are known
    recs = pl.read_parquet(out)
    assert recs["user_id"].unique().sort().to_list() == [1, 2] and recs["user_id"].dtype == pl.Int64
    seen = pl.read_csv(files / "inter.csv").filter(pl.col("user_id").is_in([1, 2]))
    assert recs.join(seen, on=["user_id", "item_id"]).height == 0  # personal: seen items left out
    (tmp_path / "latin1.txt").write_bytes("1\n2\nJos\u00e9\n".encode("latin-1"))
    assert main([*_saved(files), "--users", str(tmp_path / "latin1.txt"), "--out", str(out)]) == 2
    assert "latin1.txt: line 3, byte 4: not UTF-8" in capsys.readouterr().err


@pytest.mark.slow
def test_restart_discards_the_parts_of_another_run(files, tmp_path, capsys):
    """A crashed run's parts block a changed re-run with an error that says how to go on."""
    out = tmp_path / "restart.parquet"
    parts_dir(out).mkdir()
    (parts_dir(out) / "job.json").write_text('{"k": 10, "users": 3}', encoding="utf-8")
    (parts_dir(out) / "part-000000.parquet").write_bytes(b"from the crashed run")
    args = [*_saved(files), "--k", "4", "--out", str(out)]
    assert main(args) == 2
    assert "rerun with --restart" in capsys.readouterr().err
    assert main(args + ["--restart"]) == 0
    assert pl.read_parquet(out).group_by("user_id").len()["len"].max() == 4 and not parts_dir(out).exists()


class _Counting:
    """Wraps a ranker and counts the users it was asked about."""

    def __init__(self, ranker):
        self.ranker, self.calls = ranker, 0

    @property
    def fingerprint(self):
        return self.ranker.fingerprint

    def recommend(self, users, k):
        self.calls += len(users)
        return self.ranker.recommend(users, k)


@pytest.mark.slow
def test_batch_output_resumes_without_redoing_batches(files, tmp_path):
    from xrec.ranking.hybrid import HybridRanker

    ranker = HybridRanker.load(files / "ranker")
    users = ranker.users.ids
    out = tmp_path / "recs.parquet"
    first = _Counting(ranker)
    assert recommend_to_parquet(first, users, 5, out, batch_size=10, stop_after=2) is None  # "killed"
    assert not out.exists() and len(list(parts_dir(out).glob("part-*.parquet"))) == 2
    (parts_dir(out) / ".part-000002.parquet.x.tmp").write_bytes(b"half a file")  # torn write
    with pytest.raises(ArtifactError, match="different run"):
        recommend_to_parquet(ranker, users, 6, out, batch_size=10)
    assert len(list(parts_dir(out).glob("part-*.parquet"))) == 2  # refused: nothing discarded
    second = _Counting(ranker)
    assert recommend_to_parquet(second, users, 5, out, batch_size=10) == out
    assert second.calls == len(users) - 20  # finished batches were not redone
    # the resumed run equals one uninterrupted run with the same batches, bit for bit
    whole = tmp_path / "whole.parquet"
    recommend_to_parquet(ranker, users, 5, whole, batch_size=10)
    got = pl.read_parquet(out)
    assert got.equals(pl.read_parquet(whole))
    # other batch sizes change only the float32 rounding of the scores (BLAS blocking)
    one_batch = pl.read_parquet(recommend_to_parquet(ranker, users, 5, tmp_path / "one.parquet",
                                                     batch_size=1000))
    floats = [name for name, dtype in got.schema.items() if dtype.is_float()]
    assert floats and got.drop(floats).equals(one_batch.drop(floats))
    for name in floats:
        np.testing.assert_allclose(got[name].to_numpy(), one_batch[name].to_numpy(), rtol=1e-5, atol=1e-6)
    assert not parts_dir(out).exists()


@pytest.mark.slow
def test_evaluate_recs_cli(data_dir, tmp_path, capsys, encoder):
    ml, ids, ratings = _sample(data_dir, n_items=80, n_cold=10, max_user=30)
    movies = ml.movies.filter(pl.col("item_id").is_in(ids.implode()))
    with gzip.open(tmp_path / "movies.csv.gz", "wt") as f:
        f.write(movies.rename({"item_id": "movieId"}).write_csv())
    r = ratings.rename({"user_id": "userId", "item_id": "movieId", "weight": "rating"})
    with gzip.open(tmp_path / "ratings.csv.gz", "wt") as f:
        f.write(r.write_csv())
    out = tmp_path / "recs.json"
    store = ["--store", str(tmp_path / "store.parquet")]  # the second run below embeds nothing again
    rc = main(["evaluate", "recs", "--data", str(tmp_path), "--json", str(out),
               "--models", "popularity,als,content,hybrid", *store])
    assert rc == 0
    report = json.loads(out.read_text())
    assert set(report["models"]) == {"popularity", "als", "content", "hybrid"}
    for m in report["models"].values():
        expected = {"recall@10", "recall@20", "ndcg@10", "map@10", "coverage@10", "cold_items", "slices",
                    "fit_seconds"}
        assert expected <= set(m) and set(m) - expected <= {"exposure", "fusion"}
        assert 0 <= m["ndcg@10"] <= 1 and set(m["cold_items"]) >= {"n", "recall@20", "auc"} and m["fit_seconds"] >= 0
    assert report["protocol"]["test_ratings"] == sum(
        int(np.ceil(n * 0.2)) for n in ratings.group_by("user_id").len()["len"])
    assert report["models"]["als"]["ndcg@10"] > 0
    assert (tmp_path / "recs.png").stat().st_size > 1000
    assert "full ranking" in capsys.readouterr().out
    # an explicit test file: all of DIR trains
    test = r.head(30).with_columns(pl.col("timestamp") + 10**9)
    test.write_csv(tmp_path / "test.csv")
    rc = main(["evaluate", "recs", "--data", str(tmp_path), "--json", str(out), "--test",
               str(tmp_path / "test.csv"), "--models", "popularity,als", *store])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["protocol"]["train_ratings"] == ratings.height
    assert report["protocol"]["test_rows_already_rated_in_training"] == 30


@pytest.mark.slow
def test_cli_bench_recommend_synthetic_sample(tmp_path, capsys):
    """``xrec bench recommend`` on a small synthetic scale: both sides timed on the sampled users."""
    out = tmp_path / "bench.json"
    assert main(["bench", "recommend", "--data", "", "--synthetic", "400x300", "--sample-users", "150",
                 "--json", str(out)]) == 0
    run = json.loads(out.read_text())["runs"]["synthetic 400x300"]
    assert run["users"] == 400 and run["users_timed"] == 150 and run["fusion"] == "learned"
    assert run["implicit_users_per_s"] > 0 and run["hybrid_users_per_s"] > 0
    assert run["throughput_ratio"] == pytest.approx(run["implicit_s"] / run["hybrid_s"])
    assert "synthetic 400x300" in capsys.readouterr().out
