"""Interactions: validation rules, id mapping, duplicate aggregation and the temporal split."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from xrec.catalogue.interactions import IdMap, Interactions, temporal_split, validate_interactions
from xrec.errors import DataError


@pytest.fixture(scope="module")
def ratings(data_dir):
    from xrec.datasets.movielens import load_movielens

    return load_movielens(data_dir / "movielens")


def test_matrix_matches_ratings(ratings):
    inter = Interactions.build(ratings.ratings, ratings.movies["item_id"])
    assert inter.matrix.shape == (610, 9742)
    assert inter.matrix.nnz == ratings.ratings.height
    row = ratings.ratings.row(0, named=True)
    u, i = inter.users.index([row["user_id"]])[0], inter.items.index([row["item_id"]])[0]
    assert inter.matrix[u, i] == pytest.approx(row["weight"])
    assert (inter.item_counts() == 0).sum() == 9742 - ratings.ratings["item_id"].n_unique()


def test_unknown_items_are_counted_and_refused_unless_dropped(ratings):
    frame = ratings.ratings.head(50).with_columns(
        pl.when(pl.int_range(pl.len()) < 3).then(-7).otherwise(pl.col("item_id")).alias("item_id"))
    with pytest.raises(DataError, match="3 row\\(s\\) name items not in the catalogue.*-7"):
        Interactions.build(frame, ratings.movies["item_id"])
    inter = Interactions.build(frame, ratings.movies["item_id"], drop_unknown=True)
    assert inter.report.unknown_items == 3 and inter.report.dropped == 3
    assert inter.matrix.nnz == 47


def test_unknown_users_against_a_user_universe(ratings):
    frame = ratings.ratings.head(30)
    with pytest.raises(DataError, match="unknown users"):
        validate_interactions(frame, item_ids=ratings.movies["item_id"], user_ids=[999])
    out, report = validate_interactions(frame, user_ids=[999], drop_unknown=True)
    assert report.unknown_users == 30 and out.height == 0


@pytest.mark.parametrize("rule,weight,ts", [("sum", 7.0, 30), ("last", 4.0, 30), ("max", 4.0, 30)])
def test_duplicates_aggregate_by_rule(rule, weight, ts):
    frame = pl.DataFrame({"user_id": [1, 1, 1, 2], "item_id": [5, 5, 6, 5],
                          "weight": [3.0, 4.0, 1.0, 2.0], "timestamp": [10, 30, 20, 5]})
    # the later row comes first in the file: 'last' follows time, not file order
    frame = frame[[1, 0, 2, 3]]
    out, report = validate_interactions(frame, duplicates=rule)
    assert report.duplicates == 1 and out.height == 3
    merged = out.filter((pl.col("user_id") == 1) & (pl.col("item_id") == 5)).row(0, named=True)
    assert merged["weight"] == weight and merged["timestamp"] == ts


def test_duplicates_error_rule_names_the_pair():
    frame = pl.DataFrame({"user_id": ["a", "a"], "item_id": ["x", "x"]})
    with pytest.raises(DataError, match="duplicate interaction \\(user 'a', item 'x'\\)"):
        validate_interactions(frame, duplicates="error")


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), None])
def test_bad_weights_name_the_row(bad):
    frame = pl.DataFrame({"user_id": [1, 2], "item_id": [1, 2], "weight": [1.0, bad]})
    with pytest.raises(DataError, match="row 1 \\(user 2, item 2\\): weight"):
        validate_interactions(frame, "inter.csv")


def test_missing_columns_and_null_ids():
    with pytest.raises(DataError, match="missing column"):
        validate_interactions(pl.DataFrame({"user_id": [1]}))
    with pytest.raises(DataError, match="row 1: item_id is null"):
        validate_interactions(pl.DataFrame({"user_id": [1, 2], "item_id": [3, None]}))


def test_temporal_split_ignores_row_order_and_holds_out_last_fifth(ratings):
    frame = ratings.ratings.head(2000)
    train, test = temporal_split(frame, 0.2)
    shuffled_train, shuffled_test = temporal_split(frame.sample(fraction=1.0, shuffle=True, seed=3), 0.2)
    assert train.equals(shuffled_train) and test.equals(shuffled_test)
    per_user = frame.group_by("user_id").len()
    expect = int(sum(np.ceil(n * 0.2) for n in per_user["len"]))
    assert test.height == expect and train.height + test.height == frame.height
    last_train = train.group_by("user_id").agg(pl.col("timestamp").max().alias("a"))
    first_test = test.group_by("user_id").agg(pl.col("timestamp").min().alias("b"))
    both = last_train.join(first_test, on="user_id")
    assert (both["a"] <= both["b"]).all()


def test_temporal_split_needs_timestamps():
    frame = pl.DataFrame({"user_id": [1, 1], "item_id": [1, 2]})
    with pytest.raises(DataError, match="needs a 'timestamp' column"):
        temporal_split(frame)
    frame = frame.with_columns(timestamp=pl.Series([5, None]))
    with pytest.raises(DataError, match="row 1 \\(user 1\\): timestamp is missing"):
        temporal_split(frame)


def test_id_map_round_trip_and_unknowns():
    ids = IdMap(["b", "a", "c"], "item_id")
    idx = ids.index(["c", "zz", "b"])
    assert idx.tolist() == [2, -1, 0]
    assert ids.to_ids(np.array([1, 2])).tolist() == ["a", "c"]
    assert ids.index([1, 2]).tolist() == [-1, -1]  # other id type: unknown, not an error
    with pytest.raises(DataError, match="duplicate id 'a'"):
        IdMap(["a", "a"])


# ---------------------------------------------------------------- timestamps
def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_iso_8601_and_datetime_timestamps_are_converted(tmp_path):
    from xrec.catalogue.interactions import read_interactions

    seconds = _write(tmp_path / "s.csv", "user_id,item_id,timestamp\n1,10,1577872800\n2,10,1577959200\n")
    iso = _write(tmp_path / "iso.csv", "user_id,item_id,timestamp\n1,10,2020-01-01T10:00:00Z\n"
                                       "2,10,2020-01-02T12:00:00+02:00\n")
    want = Interactions.build(read_interactions(seconds), [10], source=str(seconds)).frame
    got = Interactions.build(read_interactions(iso), [10], source=str(iso)).frame
    assert got["timestamp"].to_list() == want["timestamp"].to_list() == [1577872800, 1577959200]
    as_datetime = pl.DataFrame({"user_id": [1], "item_id": [10],
                                "timestamp": pl.Series(["2020-01-01T10:00:00"]).str.to_datetime()})
    assert Interactions.build(as_datetime, [10]).frame["timestamp"].to_list() == [1577872800]


@pytest.mark.parametrize("value, why", [("yesterday", "ISO-8601"), ("1577872800.5", "whole seconds"),
                                        ("true", "Unix seconds")])
def test_other_timestamps_are_refused_naming_file_line_and_column(tmp_path, value, why):
    from xrec.catalogue.interactions import read_interactions

    path = _write(tmp_path / "inter.csv", f"user_id,item_id,timestamp\n1,10,1577872800\n2,10,{value}\n")
    with pytest.raises(DataError, match=rf"inter\.csv: line 3: column 'timestamp'.*{why}"):
        Interactions.build(read_interactions(path), [10], source=str(path))


def test_millisecond_timestamps_warn(caplog):
    frame = pl.DataFrame({"user_id": [1, 2], "item_id": [10, 10], "timestamp": [1577872800000, 1577959200000]})
    with caplog.at_level("WARNING"):
        Interactions.build(frame, [10], source="inter.csv")
    assert "look like milliseconds" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        Interactions.build(frame.with_columns(pl.col("timestamp") // 1000), [10])
    assert "milliseconds" not in caplog.text


def test_an_empty_interactions_table_is_a_clear_error(tmp_path):
    from xrec.catalogue.interactions import read_interactions

    path = _write(tmp_path / "empty.csv", "user_id,item_id,timestamp\n")
    with pytest.raises(DataError, match=r"empty\.csv: no interactions"):
        Interactions.build(read_interactions(path), [10], source=str(path))


def test_errors_give_the_files_own_line_numbers(tmp_path):
    from xrec.catalogue.interactions import read_interactions

    # line 1: the header; lines 3-4: one row with a quoted line break
    path = _write(tmp_path / "inter.csv", 'user_id,item_id,weight,note\n1,10,1,a\n2,10,1,"two\nlines"\n'
                                          "3,10,-1,c\n")
    with pytest.raises(DataError, match=r"inter\.csv: line 5 \(user 3, item 10\): weight -1"):
        Interactions.build(read_interactions(path), [10], source=str(path))
    jsonl = _write(tmp_path / "inter.jsonl", '{"user_id": 1, "item_id": 10, "weight": 1}\n\n'
                                             '{"user_id": 2, "item_id": 99, "weight": 1}\n'
                                             '{"user_id": 2, "item_id": 10, "weight": -1}\n')
    with pytest.raises(DataError, match=r"inter\.jsonl: line 4 \(user 2, item 10\): weight -1"):
        Interactions.build(read_interactions(jsonl), [10, 99], source=str(jsonl))
