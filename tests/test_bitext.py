"""Bitext and parallel evaluation on the repository's real samples, with the real encoder."""

from __future__ import annotations

import gzip
import json

import numpy as np
import polars as pl
import pytest
from xrec.datasets.sib200 import load_labels, load_split
from xrec.datasets.tatoeba import load_pairs
from xrec.errors import DataError
from xrec.evaluation.bitext import evaluate_bitext, top1_accuracy
from xrec.evaluation.parallel import parallel_scores


@pytest.fixture(scope="module")
def pairs(data_dir):
    frame = load_pairs(data_dir / "tatoeba" / "tatoeba_sample.jsonl.gz")
    langs = sorted(frame["lang"].unique().to_list())[:2]
    # every third pair: short runs of near-identical sentences ("Sami earned...", "Sami wanted...")
    # sit together in the files
    return frame.filter(pl.col("lang").is_in(langs) & (pl.col("pair_id") % 3 == 0)) \
        .group_by("lang", maintain_order=True).head(60)


@pytest.mark.slow
def test_bitext_on_real_pairs(pairs, encoder):
    partial = []
    result = evaluate_bitext(encoder, pairs, on_language=lambda r: partial.append(dict(r["languages"])))
    langs = sorted(pairs["lang"].unique().to_list())
    assert sorted(result["languages"]) == langs and result["complete"] is True
    assert [len(p) for p in partial] == [1, 2]  # partial results after each language
    for lang, row in result["languages"].items():
        assert row["n"] == 60
        # multilingual-e5-small finds most translations among 60 candidates (chance: 1/60)
        assert 0.6 <= row["xx2en"] <= 1.0 and 0.6 <= row["en2xx"] <= 1.0, (lang, row)
        flores = pairs.filter(pl.col("lang") == lang)["flores_code"][0]
        assert row.get("flores_code") == flores  # maps Tatoeba codes to SIB-200's (topic plots)
    assert result["mean_xx2en"] == pytest.approx(np.mean([r["xx2en"] for r in result["languages"].values()]))
    assert result["model"] == encoder.name and json.dumps(result)


def test_top1_accuracy_counts_own_row_only():
    x = np.eye(4, dtype=np.float32)
    assert top1_accuracy(x, x) == 1.0
    assert top1_accuracy(x, x[[1, 0, 2, 3]]) == 0.5


@pytest.mark.slow
def test_parallel_on_real_sib200(data_dir, encoder):
    frame = load_split(data_dir / "sib200", "dev")
    langs = ["en", *sorted(set(frame["lang"].to_list()) - {"en"})[:2]]  # codes as read: en, not eng_Latn
    frame = frame.filter(pl.col("lang").is_in(langs) & (pl.col("index_id") % 4 == 0))
    vectors = encoder.encode(frame["text"].to_list(), kind="query")
    result = parallel_scores(vectors, frame["lang"].to_list(), frame["index_id"].to_numpy(),
                             pivot="eng_Latn")
    assert set(result["languages"]) == set(langs) - {"en"} and result["pivot"] == "en"
    for row in result["languages"].values():
        assert row["xx2pivot"] >= 0.8 and row["pivot2xx"] >= 0.8
    bias = result["language_bias"]
    n, per = len(frame), len(frame) // 3
    assert bias["unbiased_share"] == pytest.approx((per - 1) / (n - 1), rel=0.05)
    assert 0 <= bias["own_language_share"] <= 1 and bias["translation_share"] > 0.1
    with pytest.raises(DataError, match="pivot language 'fi' has no sentences"):
        parallel_scores(vectors, frame["lang"].to_list(), frame["index_id"].to_numpy(), pivot="fin_Latn")


def test_language_bias_detects_a_language_split_space():
    # two languages whose vectors live in separate halves of the space: fully biased
    rng = np.random.default_rng(0)
    a = np.hstack([np.abs(rng.standard_normal((30, 4))) + 0.1, np.zeros((30, 4))])
    b = np.hstack([np.zeros((30, 4)), np.abs(rng.standard_normal((30, 4))) + 0.1])
    x = np.vstack([a, b]).astype(np.float32)
    result = parallel_scores(x, ["de"] * 30 + ["fr"] * 30, np.r_[np.arange(30), np.arange(30)], pivot="de")
    assert result["language_bias"]["own_language_share"] == 1.0
    assert result["language_bias"]["unbiased_share"] == pytest.approx(29 / 59)


def test_loaders_reject_bad_files(tmp_path, data_dir):
    assert load_labels(data_dir / "sib200")[0] == "science/technology"
    bad = tmp_path / "pairs.jsonl"
    rows = [{"lang": "deu", "pair_id": 0, "text": "a", "eng": "b"}] * 2
    bad.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DataError, match="duplicate \\(lang, pair_id\\)"):
        load_pairs(bad)
    missing = tmp_path / "missing.jsonl.gz"
    with gzip.open(missing, "wt") as handle:
        handle.write(json.dumps({"lang": "deu", "pair_id": 0, "text": "a"}) + "\n")
    with pytest.raises(DataError, match="missing column"):
        load_pairs(missing)
    with pytest.raises(DataError, match="no pairs for language"):
        load_pairs(data_dir / "tatoeba" / "tatoeba_sample.jsonl.gz", ["fin"])
    with pytest.raises(DataError, match="unknown SIB-200 split"):
        load_split(data_dir / "sib200", "validation")
