"""Evaluation splits (random without timestamps, new-language protocol) and slice metrics."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from xrec.catalogue.interactions import Interactions, random_split
from xrec.errors import DataError
from xrec.evaluation.metrics import SliceMap, evaluate_scorer, positives, ratio_interval
from xrec.evaluation.recs import DenseScorer
from xrec.evaluation.splits import Split, detect_layout, load_split


@pytest.fixture(scope="module")
def bx_dir(data_dir):
    return data_dir / "bookcrossing"


def test_random_split_is_seeded_per_user_and_order_free(bx_dir):
    split = load_split(bx_dir)
    assert detect_layout(bx_dir) == "bookcrossing" and "random 20%" in split.info["split"]
    test_n = split.test.group_by("user_id").len()
    train_n = split.train.frame.group_by("user_id").len()
    both = test_n.join(train_n, on="user_id", suffix="_train")
    assert both.height == test_n.height  # every user keeps a training interaction
    n = (both["len"] + both["len_train"]).to_numpy()
    assert (both["len"].to_numpy() == np.maximum(np.minimum(np.ceil(0.2 * n), n - 1), 1)).all()
    again = load_split(bx_dir)
    assert split.test.sort("user_id", "item_id").equals(again.test.sort("user_id", "item_id"))
    frame = split.train.frame.vstack(split.test.select(split.train.frame.columns))
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=3)
    a, b = random_split(frame, 0.2, seed=0)[1], random_split(shuffled, 0.2, seed=0)[1]
    assert a.sort("user_id", "item_id").equals(b.sort("user_id", "item_id"))
    assert not a.sort("user_id", "item_id").equals(random_split(frame, 0.2, seed=1)[1].sort("user_id", "item_id"))


def test_new_language_protocol(bx_dir):
    langs = load_split(bx_dir).items["lang"].value_counts(sort=True)["lang"].to_list()
    new = langs[1]  # the second most common language of the slice, whatever it is
    split = load_split(bx_dir, new_language=new)
    in_new = set(split.items.filter(pl.col("lang") == new)["item_id"].to_list())
    assert not in_new & set(split.train.frame["item_id"].to_list())  # nobody has used the new catalogue
    assert set(split.test["item_id"].to_list()) <= in_new and split.test.height > 0
    assert sorted(split.items["item_id"].gather(split.candidates).to_list()) == sorted(in_new)
    assert split.info["new_language"] == new
    with pytest.raises(DataError, match=r"no item has lang 'fi'; the catalogue's languages: .*\(\d+\)"):
        load_split(bx_dir, new_language="Finnish")
    with pytest.raises(DataError, match=r"--new-language: 'xx' is not a language code"):
        load_split(bx_dir, new_language="xx")


def _tiny_split() -> Split:
    items = pl.DataFrame({"item_id": list(range(8)), "text": [f"t{i}" for i in range(8)],
                          "lang": ["en", "en", "en", "en", "de", "de", "fr", "en"]})
    train = pl.DataFrame({"user_id": [1, 1, 1, 2, 2, 2], "item_id": [0, 1, 4, 4, 5, 0]})
    test = pl.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [5, 2, 3, 6], "weight": [1.0] * 4})
    inter = Interactions.build(train, items["item_id"])
    return Split(items, inter, test, {"data": "tiny", "split": "given"})


def test_slices_are_counted_by_the_definitions():
    split = _tiny_split()
    slices = SliceMap(split)
    assert slices.languages == ["de", "en", "fr"]
    assert [slices.languages[c] for c in slices.user_language] == ["en", "de"]  # user 1: en, user 2: de
    pos = positives(split)
    # a scorer that ranks item 7 (never a positive), then 6, 5, ... 0
    scorer = DenseScorer(lambda rows: np.tile(np.array([0, 1, 2, 3, 4, 5, 6, 7], np.float32), (len(rows), 1)),
                         split.train.matrix)
    per_user: dict = {}
    result = evaluate_scorer(scorer, split, pos, per_user=per_user)
    s = result["slices"]
    assert per_user["all"].mean() == pytest.approx(result["ndcg@10"])
    assert per_user["lang:fr"].tolist() == pytest.approx([1 / np.log2(3)])
    # user 1 (reads en): positives 5 (de) and 2 (en); user 2 (reads de): positives 3 (en) and 6 (fr)
    assert s["minority_language"]["n"] == 2 and s["minority_language"]["users"] == 2  # items 5 and 6
    assert s["cross_language"]["n"] == 3  # 5 for user 1; 3 and 6 for user 2
    assert s["lang:en"]["n"] == 2 and s["lang:fr"]["n"] == 1 and "lang:xx" not in s
    # user 2 sees [7, 6, 3, 2, 1, ...]: fr positive at rank 2 -> NDCG 1/log2(3)
    assert s["lang:fr"]["ndcg@10"] == pytest.approx(1 / np.log2(3))
    assert result["cold_items"]["share_of_top10"] == pytest.approx(
        np.mean([split.train.item_counts()[i] == 0 for i in [7, 6, 5, 3, 2, 7, 6, 3, 2, 1]]))


def test_language_exposure_is_counted_by_the_definition():
    split = _tiny_split()
    scorer = DenseScorer(lambda rows: np.tile(np.arange(8, dtype=np.float32), (len(rows), 1)), split.train.matrix)
    exposure = evaluate_scorer(scorer, split, positives(split))["exposure"]
    # top-10 slots shown: user 1 [7 en, 6 fr, 5 de, 3 en, 2 en], user 2 [7 en, 6 fr, 3 en, 2 en, 1 en]
    assert exposure["en"] == pytest.approx({"slots": 0.7, "catalogue": 5 / 8, "test": 0.5})
    assert exposure["de"] == pytest.approx({"slots": 0.1, "catalogue": 2 / 8, "test": 0.25})
    assert exposure["fr"] == pytest.approx({"slots": 0.2, "catalogue": 1 / 8, "test": 0.25})


def test_ratio_interval_is_a_paired_bootstrap():
    rng = np.random.default_rng(1)
    other = rng.exponential(0.05, 2000) * (rng.random(2000) < 0.3)
    assert ratio_interval(2 * other, other) == pytest.approx((2.0, 2.0))  # paired: no spread at all
    noisy = other * 1.2 + rng.exponential(0.05, 2000) * (rng.random(2000) < 0.05)
    lo, hi = ratio_interval(noisy, other)
    assert lo < noisy.mean() / other.mean() < hi and hi - lo < 0.5
    few_lo, few_hi = ratio_interval(noisy[:50], other[:50])
    assert few_hi - few_lo > hi - lo  # fewer users, wider interval
    assert ratio_interval(other, np.zeros(2000)) is None
    with pytest.raises(DataError, match="same users"):
        ratio_interval(other, other[:10])
