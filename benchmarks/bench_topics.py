"""Topic tagging throughput (items/s) on this machine, with a named peer side by side.

- ``test_tag_items_end_to_end``: ``xrec.topics.tag_items`` on 256 real SIB-200 sample sentences
  (12 languages): encoding plus classification, the number users see.
- ``test_tag_items_end_to_end_centered``: the same with the former default (``centered``), so the
  throughput change of the ``kernel`` default is measured side by side.
- ``test_classify_head`` / ``test_classify_kernel`` vs ``test_classify_sklearn_peer``: classifying
  20,000 precomputed vectors with the xrec ``centered`` classifier (centring + linear head +
  temperature) and the default ``kernel`` classifier (its kernel head stores the labelled rows
  plus 7,000 unlabelled rows, about the memory of a SIB-200 run) against scikit-learn's
  ``LogisticRegression.predict_proba`` trained on the same data.
- ``test_classify_kernel_with_support``: the same ``kernel`` classifier's ``predict``, which adds
  ``topic_support`` (two kernel densities, over the labelled and the unlabelled rows), so its cost
  is measured beside ``test_classify_kernel``.

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
from xrec.topics.transfer import DEFAULT_METHOD, TopicVectors, fit_topic_classifier

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
def kernel_model(trained, encoder):
    """The default method with 7,000 unlabelled rows in its kernel memory (noisy copies of the
    labelled vectors under 10 made-up language codes: only the memory size matters here)."""
    clf, x, y = trained
    rng = np.random.default_rng(1)
    unl = x[rng.integers(0, len(x), 7000)] + rng.normal(scale=0.05, size=(7000, x.shape[1]))
    langs = [f"l{i % 10}" for i in range(7000)]
    dev = load_split(SIB, "dev", clf.centering.languages)  # the labelled language's dev split
    d_texts, d_y, d_langs = labelled(dev, clf.labels, "dev", min_classes=1)
    return fit_topic_classifier(clf.labels, TopicVectors(x, ["eng_Latn"] * len(x), y),
                                dev=TopicVectors(encoder.encode(d_texts, kind=TEXT_KIND), d_langs, d_y),
                                unlabelled=TopicVectors(unl.astype(np.float32), langs),
                                method=DEFAULT_METHOD, encoder_fingerprint=encoder.fingerprint,
                                encoder_name=encoder.name)


@pytest.fixture(scope="module")
def items():
    test = load_split(SIB, "test")
    return test.sample(256, seed=0).select("lang", "text").with_row_index("item_id")


def test_tag_items_end_to_end(benchmark, kernel_model, encoder, items):
    out = benchmark.pedantic(tag_items, args=(kernel_model, encoder, items), rounds=2, iterations=1)
    assert out.height == items.height
    benchmark.extra_info["items_per_s"] = items.height / benchmark.stats.stats.mean


def test_tag_items_end_to_end_centered(benchmark, trained, encoder, items):
    out = benchmark.pedantic(tag_items, args=(trained[0], encoder, items), rounds=2, iterations=1)
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


def test_classify_kernel(benchmark, kernel_model, vectors):
    langs = ["eng_Latn"] * len(vectors)
    proba = benchmark(kernel_model.predict_proba, vectors, langs)
    assert proba.shape == (N_VECTORS, len(kernel_model.labels))
    benchmark.extra_info["items_per_s"] = N_VECTORS / benchmark.stats.stats.mean


def test_classify_kernel_with_support(benchmark, kernel_model, vectors):
    langs = ["eng_Latn"] * len(vectors)
    found = benchmark(kernel_model.predict, vectors, langs)
    assert found.proba.shape == (N_VECTORS, len(kernel_model.labels))
    assert np.isfinite(found.support).all()
    benchmark.extra_info["items_per_s"] = N_VECTORS / benchmark.stats.stats.mean


def test_classify_sklearn_peer(benchmark, trained, vectors):
    from sklearn.linear_model import LogisticRegression

    peer = LogisticRegression(C=10, max_iter=2000).fit(trained[1], trained[2])
    proba = benchmark(peer.predict_proba, vectors)
    assert proba.shape[0] == N_VECTORS
    benchmark.extra_info["items_per_s"] = N_VECTORS / benchmark.stats.stats.mean
