"""Topic tagging throughput (items/s) on this machine, with a named peer side by side.

- ``test_tag_items_end_to_end``: ``xrec.topics.tag_items`` on 256 real SIB-200 sample sentences
  (12 languages): encoding plus classification, the number users see.
- ``test_classify_head`` vs ``test_classify_sklearn_peer``: classifying 20,000 precomputed vectors
  with the xrec head (centring + linear head + temperature) against scikit-learn's
  ``LogisticRegression.predict_proba`` trained on the same data.

Run: ``.venv/bin/python -m pytest benchmarks/bench_topics.py --benchmark-columns=mean,ops``.
Items/s is stored in each benchmark's ``extra_info``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from xrec.datasets.sib200 import load_labels, load_split
from xrec.topics.data import labelled
from xrec.topics.tagging import TEXT_KIND, tag_items
from xrec.topics.transfer import TopicVectors, fit_topic_classifier

SIB = Path(__file__).resolve().parents[1] / "data" / "sib200"
N_VECTORS = 20_000


@pytest.fixture(scope="module")
def encoder():
    from xrec.encoders import load_encoder

    return load_encoder("bundled")


@pytest.fixture(scope="module")
def trained(encoder):
    labels = load_labels(SIB)
    train = load_split(SIB, "train")
    lang = "eng_Latn" if "eng_Latn" in set(train["lang"]) else train["lang"].sort()[0]
    source = train.filter(pl.col("lang") == lang).gather_every(3)  # 234 rows, every label
    texts, y, langs = labelled(source, labels, "train")
    x = encoder.encode(texts, kind=TEXT_KIND)
    clf = fit_topic_classifier(labels, TopicVectors(x, langs, y), method="centered",
                               encoder_fingerprint=encoder.fingerprint, encoder_name=encoder.name)
    return clf, x, y


@pytest.fixture(scope="module")
def items():
    test = load_split(SIB, "test")
    return test.sample(256, seed=0).select("lang", "text").with_row_index("item_id")


def test_tag_items_end_to_end(benchmark, trained, encoder, items):
    clf = trained[0]
    out = benchmark.pedantic(tag_items, args=(clf, encoder, items), rounds=2, iterations=1)
    assert out.height == items.height
    benchmark.extra_info["items_per_s"] = items.height / benchmark.stats.stats.mean


@pytest.fixture(scope="module")
def vectors(trained):
    rng = np.random.default_rng(0)
    x = trained[1][rng.integers(0, len(trained[1]), N_VECTORS)]
    return x + rng.normal(scale=0.01, size=x.shape).astype(np.float32)


def test_classify_head(benchmark, trained, vectors):
    clf = trained[0]
    langs = ["eng_Latn"] * len(vectors)
    proba = benchmark(clf.predict_proba, vectors, langs)
    assert proba.shape == (N_VECTORS, len(clf.labels))
    benchmark.extra_info["items_per_s"] = N_VECTORS / benchmark.stats.stats.mean


def test_classify_sklearn_peer(benchmark, trained, vectors):
    from sklearn.linear_model import LogisticRegression

    peer = LogisticRegression(C=10, max_iter=2000).fit(trained[1], trained[2])
    proba = benchmark(peer.predict_proba, vectors)
    assert proba.shape[0] == N_VECTORS
    benchmark.extra_info["items_per_s"] = N_VECTORS / benchmark.stats.stats.mean
