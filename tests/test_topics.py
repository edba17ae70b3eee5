"""Cross-lingual topic tagging on the repository's SIB-200 sample with the real encoder."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch
from xrec.datasets.sib200 import load_labels, load_split
from xrec.errors import ArtifactError, DataError
from xrec.evaluation.topics import evaluate_topics, macro_f1, plot_accuracy
from xrec.topics import UNKNOWN, KernelHead, LanguageCentering, TopicClassifier
from xrec.topics.data import labelled, select_languages
from xrec.topics.tagging import TEXT_KIND, tag_items, train_topics
from xrec.topics.transfer import DEFAULT_METHOD, METHODS, TopicVectors, fit_topic_classifier

N_TARGETS = 3
N_TEST = 51  # every 4th of the 204 test rows per language (the files are sorted by category)
N_UNL = 42  # every 17th train row per target language (text only)


def every(frame: pl.DataFrame, k: int, offset: int = 0) -> pl.DataFrame:
    """Every ``k``-th row of each language (a stratified subset: SIB files are sorted by label)."""
    return frame.filter((pl.int_range(pl.len()).over("lang") % k) == offset)


@pytest.fixture(scope="module")
def sib(data_dir):
    root = data_dir / "sib200"
    return root, load_labels(root), load_split(root, "train"), load_split(root, "dev"), load_split(root, "test")


@pytest.fixture(scope="module")
def source(sib):
    return sorted(set(sib[2]["lang"].to_list()))[0] if "eng_Latn" not in set(sib[2]["lang"].to_list()) else "eng_Latn"


@pytest.fixture(scope="module")
def frames(sib, source):
    """English train/dev/test, three other languages' test rows and unlabelled train text."""
    _, labels, train, dev, test = sib
    targets = [lang for lang in sorted(set(test["lang"].to_list())) if lang != source][:N_TARGETS]
    return {
        "train": every(train.filter(pl.col("lang") == source), 2),
        "dev": dev.filter(pl.col("lang") == source),
        "test": every(test.filter(pl.col("lang").is_in([source, *targets])), 4),
        "unlabelled": every(train.filter(pl.col("lang").is_in(targets)), 17, 1).select("lang", "text"),
        "targets": targets,
    }


@pytest.fixture(scope="module")
def vectors(encoder, sib, frames):
    """Every text embedded once: name -> TopicVectors."""
    labels = sib[1]
    out = {}
    for name in ("train", "dev", "test"):
        texts, y, langs = labelled(frames[name], labels, name, min_classes=1)
        out[name] = TopicVectors(encoder.encode(texts, kind=TEXT_KIND), langs, y)
    unl = frames["unlabelled"]
    out["unlabelled"] = TopicVectors(encoder.encode(unl["text"].to_list(), kind=TEXT_KIND),
                                     unl["lang"].to_list())
    return out


def fit(vectors, labels, encoder, method=DEFAULT_METHOD):
    return fit_topic_classifier(labels, vectors["train"], dev=vectors["dev"],
                                unlabelled=vectors["unlabelled"], method=method,
                                encoder_fingerprint=encoder.fingerprint, encoder_name=encoder.name)


@pytest.fixture(scope="module")
def classifier(vectors, sib, encoder):
    return fit(vectors, sib[1], encoder)


def per_language_accuracy(clf, test):
    pred = clf.predict_proba(test.vectors, test.langs).argmax(1)
    langs = np.asarray(test.langs)
    return {lang: float(np.mean(pred[langs == lang] == test.y[langs == lang])) for lang in set(test.langs)}


def test_default_method_transfers_to_other_languages(classifier, vectors, frames, source):
    acc = per_language_accuracy(classifier, vectors["test"])
    assert acc[source] > 0.7, acc
    for lang in frames["targets"]:
        assert acc[lang] > 0.5, (lang, acc)  # 7 classes: chance is about 0.25 (majority class)


@pytest.mark.parametrize("method", [m for m in METHODS if m != DEFAULT_METHOD])
def test_every_method_beats_chance(method, vectors, sib, encoder):
    clf = fit(vectors, sib[1], encoder, method)
    acc = per_language_accuracy(clf, vectors["test"])
    assert np.mean(list(acc.values())) > 0.5, (method, acc)
    assert clf.method == method and (clf.centering.enabled == (method != "linear"))


def test_probabilities_are_calibrated_and_abstain(classifier, vectors):
    test = vectors["test"]
    proba = classifier.predict_proba(test.vectors, test.langs)
    assert proba.shape == (len(test.langs), len(classifier.labels))
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    assert 0.05 <= classifier.temperature <= 20 and classifier.temperature != 1.0
    # calibration: mean confidence close to accuracy (within 0.15) on held-out text
    assert abs(proba.max(1).mean() - (proba.argmax(1) == test.y).mean()) < 0.15
    classifier.threshold = float(np.quantile(proba.max(1), 0.3))
    names, scores = classifier.predict(test.vectors, test.langs, abstain=True)
    unknown = np.array([n == UNKNOWN for n in names])
    assert unknown.any() and not unknown.all()
    assert np.all(scores[unknown] < classifier.threshold)
    plain, _ = classifier.predict(test.vectors, test.langs)
    assert UNKNOWN not in plain


def test_language_identification_without_lang(classifier, vectors, frames):
    test = vectors["test"]
    langs = np.asarray(test.langs)
    known = np.isin(langs, list(classifier.centering.means))
    guessed = np.asarray(classifier.centering.identify(test.vectors))
    assert np.mean(guessed[known] == langs[known]) > 0.9
    without = classifier.predict_proba(test.vectors).argmax(1)
    assert np.mean(without == test.y) > 0.5


def test_save_load_roundtrip_and_encoder_check(classifier, vectors, tmp_path, encoder):
    path = classifier.save(tmp_path / "model")
    loaded = TopicClassifier.load(path, encoder_fingerprint=encoder.fingerprint)
    test = vectors["test"]
    np.testing.assert_allclose(loaded.predict_proba(test.vectors, test.langs),
                               classifier.predict_proba(test.vectors, test.langs), atol=1e-6)
    assert loaded.labels == classifier.labels and loaded.threshold == classifier.threshold
    with pytest.raises(ArtifactError, match="made with encoder"):
        TopicClassifier.load(path, encoder_fingerprint="sha256:another-encoder")
    (path / "heads.safetensors").write_bytes(b"x" * 10)
    with pytest.raises(ArtifactError):
        TopicClassifier.load(path)


def test_kernel_head_votes_and_chunks():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 16)).astype(np.float32)
    y = np.arange(30) % 3
    head = KernelHead.fit(x, y, 3, tau=0.05)
    with torch.no_grad():
        logits = head(torch.as_tensor(x)).numpy()
        assert np.array_equal(logits.argmax(1), y)  # each stored row votes for its own label
        head.chunk = 7
        np.testing.assert_allclose(head(torch.as_tensor(x)).numpy(), logits, rtol=1e-5, atol=1e-5)
        assert head(torch.zeros((0, 16))).shape == (0, 3)
    soft = KernelHead.from_targets(x, np.full((30, 3), 1 / 3, dtype=np.float32), tau=0.05)
    with torch.no_grad():
        flat = soft(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(flat - flat[:, :1], 0, atol=1e-4)  # uniform targets: no preference
    with pytest.raises(DataError, match="30 vectors but 2 target rows"):
        KernelHead.from_targets(x, np.ones((2, 3), dtype=np.float32), tau=0.05)


def test_default_kernel_stores_labelled_and_unlabelled_rows(classifier, vectors):
    kernel, linear = classifier.heads
    assert isinstance(kernel, KernelHead) and kernel.tau > 0
    assert kernel.memory.shape[0] == len(vectors["train"].langs) + len(vectors["unlabelled"].langs)
    n_train = len(vectors["train"].langs)
    np.testing.assert_allclose(kernel.targets[:n_train].sum(1).numpy(), 1.0)  # one-hot labels
    assert float(kernel.targets[n_train:].sum(1).max()) < 1.0  # down-weighted pseudo-labels
    assert classifier.weights[0] > classifier.weights[1] and sum(classifier.weights) == pytest.approx(1)


def test_linear_model_roundtrips_and_old_manifest_loads(vectors, sib, encoder, tmp_path):
    clf = fit(vectors, sib[1], encoder, "centered")
    path = clf.save(tmp_path / "centered")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["head_weights"] == [1.0]
    del manifest["head_weights"]  # written before heads had weights: equal weights
    for head in manifest["heads"]:
        del head["kernel_tau"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    loaded = TopicClassifier.load(path)
    test = vectors["test"]
    np.testing.assert_allclose(loaded.predict_proba(test.vectors, test.langs),
                               clf.predict_proba(test.vectors, test.langs), atol=1e-6)


def test_tag_items_text_api(classifier, encoder, frames, tmp_path):
    items = every(frames["test"], 20).select("lang", "text").with_row_index("item_id")
    tagged = tag_items(classifier, encoder, items)
    assert tagged.columns == [*items.columns, "topic", "topic_score"]
    assert set(tagged["topic"]) <= set(classifier.labels)
    assert tagged["topic_score"].min() > 0 and tagged["topic_score"].max() <= 1


def test_model_of_another_encoder_is_refused(classifier, encoder, frames, tmp_path):
    path = classifier.save(tmp_path / "model")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["encoder_fingerprint"] = "sha256:some-other-encoder"
    (path / "manifest.json").write_text(json.dumps(manifest))
    other = TopicClassifier.load(path)
    with pytest.raises(ArtifactError, match="made with encoder sha256:some-other-encoder"):
        tag_items(other, encoder, frames["test"].head(2))
    with pytest.raises(ArtifactError, match="made with encoder"):
        TopicClassifier.load(path, encoder_fingerprint=encoder.fingerprint)


# ---- bad input --------------------------------------------------------------------------------

def test_one_class_only_is_refused(sib):
    frame = pl.DataFrame({"text": ["a", "b"], "category": [sib[1][0]] * 2})
    with pytest.raises(DataError, match="one class only"):
        labelled(frame, sib[1], "t.csv")


def test_label_not_in_label_set_is_refused(sib):
    frame = pl.DataFrame({"text": ["a", "b"], "category": [sib[1][0], "cooking"]})
    with pytest.raises(DataError, match=r"t.csv: row 1: label 'cooking' is not in the label set"):
        labelled(frame, sib[1], "t.csv")


def test_language_with_no_rows_is_refused(sib):
    with pytest.raises(DataError, match="language 'xxx_Zzzz' has no rows"):
        select_languages(sib[2], ["xxx_Zzzz"], "train")


def test_empty_texts_are_refused(sib, encoder):
    frame = pl.DataFrame({"text": ["a sentence", "  "], "category": sib[1][:2]})
    with pytest.raises(DataError, match=r"t.csv: row 1: text is empty"):
        labelled(frame, sib[1], "t.csv")
    with pytest.raises(DataError, match="text is empty"):
        train_topics(encoder, frame, sib[1], source="t.csv")


def test_items_without_text_are_refused(classifier, encoder):
    with pytest.raises(DataError, match=r"items.csv: missing column\(s\) \['text'\]"):
        tag_items(classifier, encoder, pl.DataFrame({"item_id": [1], "title": ["x"]}), source="items.csv")


def test_centering_roundtrip_and_fallbacks():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(20, 8)).astype(np.float32) + 3, rng.normal(size=(20, 8)).astype(np.float32) - 3
    c = LanguageCentering.fit(np.concatenate([a, b]), ["a"] * 20 + ["b"] * 20, renormalize=False)
    np.testing.assert_allclose(c.transform(a, ["a"] * 20).mean(0), 0, atol=1e-5)
    assert c.identify(b[:3]) == ["b"] * 3
    new = rng.normal(size=(20, 8)).astype(np.float32) + 10  # unseen language, large group: own mean
    np.testing.assert_allclose(c.transform(new, ["z"] * 20).mean(0), 0, atol=1e-5)
    langs, means = c.to_arrays()
    again = LanguageCentering.from_arrays(langs, means, **c.settings())
    np.testing.assert_allclose(again.transform(a, ["a"] * 20), c.transform(a, ["a"] * 20))


def test_macro_f1():
    y = np.array([0, 0, 1, 1, 2])
    assert macro_f1(y, y, 3) == 1.0
    assert macro_f1(y, np.array([0, 0, 1, 1, 1]), 3) == pytest.approx((1 + 0.8 + 0) / 3)


@pytest.fixture(scope="module")
def tiny_sib(tmp_path_factory, frames, source):
    """A small SIB-200-style folder (source + targets) written from the repository sample."""
    root = tmp_path_factory.mktemp("sib")
    train = pl.concat([every(frames["train"], 3),
                       load_split_from(frames, "unlabelled")])
    every(frames["dev"], 3).write_ndjson(root / "dev.jsonl")
    train.write_ndjson(root / "train.jsonl")
    every(frames["test"], 2).write_ndjson(root / "test.jsonl")
    return root


def load_split_from(frames, name):
    """Target-language train rows with a category column (evaluation must never read it)."""
    unl = frames["unlabelled"]
    return unl.with_columns(pl.lit("politics").alias("category"),
                            pl.int_range(100_000, 100_000 + unl.height).cast(pl.Int64).alias("index_id")
                            ).select("lang", "index_id", "category", "text")


def test_evaluate_topics_schema(tiny_sib, sib, encoder, frames, source, tmp_path):
    (tiny_sib / "labels.txt").write_text("\n".join(sib[1]) + "\n")
    result = evaluate_topics(tiny_sib, source, encoder, unlabelled_per_lang=20,
                             cache_dir=tmp_path / "cache")
    assert result["train_lang"] == source and result["method"] == DEFAULT_METHOD
    assert set(result["languages"]) == {source, *frames["targets"]}
    for lang, row in result["languages"].items():
        assert row["n"] == (N_TEST + 1) // 2 and 0 <= row["macro_f1"] <= 1
        assert row["accuracy"] > 0.5, (lang, row)
    others = [r["accuracy"] for lang, r in result["languages"].items() if lang != source]
    assert result["mean_accuracy"] == pytest.approx(np.mean(others))
    assert result["train_lang_accuracy"] == result["languages"][source]["accuracy"]
    png = plot_accuracy(result, tmp_path / "acc.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(DataError, match="language 'xxx_Zzzz' has no rows"):
        evaluate_topics(tiny_sib, "xxx_Zzzz", encoder)
