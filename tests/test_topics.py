"""Cross-lingual topic tagging on the repository's SIB-200 sample with the real encoder."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch
from xrec.datasets.sib200 import load_labels, load_split
from xrec.errors import ArtifactError, DataError
from xrec.evaluation.topics import (
    embed_split,
    evaluate_topics,
    macro_f1,
    plot_accuracy,
    plot_accuracy_vs_bitext,
)
from xrec.topics import UNKNOWN, KernelHead, LanguageCentering, TopicClassifier
from xrec.topics.data import few_shot_split, labelled, sample_per_language, select_languages
from xrec.topics.tagging import TEXT_KIND, item_topics, tag_items, train_topics
from xrec.topics.transfer import DEFAULT_METHOD, METHODS, TopicVectors, fit_topic_classifier, shared_languages

from samples import every

N_TARGETS = 3
N_TEST = 51  # every 4th of the 204 test rows per language (the files are sorted by category)
N_UNL = 42  # every 17th train row per target language (text only)


@pytest.fixture(scope="module")
def sib(data_dir):
    root = data_dir / "sib200"
    return root, load_labels(root), load_split(root, "train"), load_split(root, "dev"), load_split(root, "test")


@pytest.fixture(scope="module")
def source(sib):
    return sorted(set(sib[2]["lang"].to_list()))[0] if "en" not in set(sib[2]["lang"].to_list()) else "en"


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


@pytest.mark.slow
def test_default_method_transfers_to_other_languages(classifier, vectors, frames, source):
    acc = per_language_accuracy(classifier, vectors["test"])
    assert acc[source] > 0.7, acc
    for lang in frames["targets"]:
        assert acc[lang] > 0.5, (lang, acc)  # 7 classes: chance is about 0.25 (majority class)


@pytest.mark.slow
@pytest.mark.parametrize("method", [m for m in METHODS if m != DEFAULT_METHOD])
def test_every_method_beats_chance(method, vectors, sib, encoder):
    clf = fit(vectors, sib[1], encoder, method)
    acc = per_language_accuracy(clf, vectors["test"])
    assert np.mean(list(acc.values())) > 0.5, (method, acc)
    assert clf.method == method and (clf.centering.enabled == (method != "linear"))


@pytest.mark.slow
def test_probabilities_are_calibrated_and_abstain(classifier, vectors):
    test = vectors["test"]
    proba = classifier.predict_proba(test.vectors, test.langs)
    assert proba.shape == (len(test.langs), len(classifier.labels))
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    assert 0.05 <= classifier.temperature <= 20 and classifier.temperature != 1.0
    # calibration: mean confidence close to accuracy (within 0.15) on held-out text
    assert abs(proba.max(1).mean() - (proba.argmax(1) == test.y).mean()) < 0.15
    before = classifier.threshold
    classifier.threshold = float(np.quantile(proba.max(1), 0.3))
    try:
        found = classifier.predict(test.vectors, test.langs, abstain=True)
    finally:
        classifier.threshold = before
    unknown = np.array([n == UNKNOWN for n in found.topics])
    assert unknown.any() and not unknown.all()
    low = (found.scores < float(np.quantile(proba.max(1), 0.3))) | (found.support < classifier.support_threshold)
    assert np.array_equal(unknown, low)
    np.testing.assert_allclose(found.proba, proba, atol=1e-6)
    assert UNKNOWN not in classifier.predict(test.vectors, test.langs).topics


@pytest.mark.slow
def test_language_identification_without_lang(classifier, vectors, frames):
    test = vectors["test"]
    langs = np.asarray(test.langs)
    known = np.isin(langs, list(classifier.centering.means))
    guessed = np.asarray(classifier.centering.identify(test.vectors))
    assert np.mean(guessed[known] == langs[known]) > 0.9
    without = classifier.predict_proba(test.vectors).argmax(1)
    assert np.mean(without == test.y) > 0.5


@pytest.mark.slow
def test_save_load_roundtrip_and_encoder_check(classifier, vectors, tmp_path, encoder):
    path = classifier.save(tmp_path / "model")
    loaded = TopicClassifier.load(path, encoder_fingerprint=encoder.fingerprint)
    test = vectors["test"]
    np.testing.assert_allclose(loaded.predict_proba(test.vectors, test.langs),
                               classifier.predict_proba(test.vectors, test.langs), atol=1e-6)
    np.testing.assert_allclose(loaded.predict(test.vectors, test.langs).support,
                               classifier.predict(test.vectors, test.langs).support, atol=1e-6)
    assert loaded.labels == classifier.labels and loaded.threshold == classifier.threshold
    assert loaded.support_threshold == classifier.support_threshold
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


def test_private_rows_vote_only_for_their_own_language():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 16)).astype(np.float32)
    x[3:] = x[:3]  # rows 3-5 repeat rows 0-2 with another label, twice the weight, in "xx" only
    targets = np.zeros((6, 2), dtype=np.float32)
    targets[:3, 0], targets[3:, 1] = 1.0, 2.0
    head = KernelHead.from_targets(x, targets, 0.05, ["en"] * 3 + ["xx"] * 3, ["xx"])
    assert head.memory_lang.tolist() == [-1, -1, -1, 0, 0, 0]
    with torch.no_grad():
        q = torch.as_tensor(x[:3])
        mine, other, unknown = head(q, ["xx"] * 3).numpy(), head(q, ["yy"] * 3).numpy(), head(q).numpy()
    assert (mine.argmax(1) == 1).all() and (other.argmax(1) == 0).all()
    np.testing.assert_allclose(other, unknown)  # without languages, private rows vote for none
    with pytest.raises(DataError, match="one language code per stored vector"):
        KernelHead.from_targets(x, targets, 0.05, None, ["xx"])


def test_shared_languages_rule():
    assert shared_languages(["en"] * 300 + ["fr"] * 150 + ["de"] * 14) == ["en", "fr"]
    assert shared_languages(["en"] * 40 + ["de"] * 10) == ["en"]  # few labels anywhere: the most
    assert shared_languages(["a"] * 5 + ["b"] * 5) == ["a", "b"]


@pytest.mark.slow
def test_few_target_labels_teach_their_own_language(vectors, sib, frames, source, encoder, tmp_path):
    labels, train_split = sib[1], sib[2]
    target = frames["targets"][0]
    shots = train_split.filter(pl.col("lang") == target).group_by("category", maintain_order=True).head(2)
    texts, y, langs = labelled(shots, labels, "shots")
    base = vectors["train"]
    mixed = TopicVectors(np.concatenate([base.vectors, encoder.encode(texts, kind=TEXT_KIND)]),
                         list(base.langs) + langs, np.concatenate([base.y, y]))
    clf = fit_topic_classifier(labels, mixed, dev=vectors["dev"], unlabelled=vectors["unlabelled"],
                               encoder_fingerprint=encoder.fingerprint)
    kernel = clf.heads[0]
    assert kernel.private_languages == (target,) and int((kernel.memory_lang >= 0).sum()) == len(texts)
    unl = vectors["unlabelled"]
    own = np.concatenate([unl.vectors[np.asarray(unl.langs) == target], mixed.vectors[-len(texts):]])
    np.testing.assert_allclose(clf.centering.means[target], own.mean(0), atol=1e-5)  # all its text
    acc = per_language_accuracy(clf, vectors["test"])
    assert acc[source] > 0.7 and acc[target] > 0.5, acc
    loaded = TopicClassifier.load(clf.save(tmp_path / "few"))
    test = vectors["test"]
    np.testing.assert_allclose(loaded.logits(test.vectors, test.langs), clf.logits(test.vectors, test.langs),
                               atol=1e-5)


@pytest.mark.slow
def test_topic_support_flags_a_topic_held_out_of_training(vectors, sib, encoder, classifier):
    from sklearn.metrics import roc_auc_score

    labels = sib[1]
    held = labels.index("science/technology") if "science/technology" in labels else 0
    kept = [i for i in range(len(labels)) if i != held]
    remap = np.full(len(labels), -1)
    remap[kept] = np.arange(len(kept))

    def without(tv):
        rows = tv.y != held
        return TopicVectors(tv.vectors[rows], [tv.langs[i] for i in np.flatnonzero(rows)], remap[tv.y[rows]])

    clf = fit_topic_classifier([labels[i] for i in kept], without(vectors["train"]), dev=without(vectors["dev"]),
                               unlabelled=vectors["unlabelled"], encoder_fingerprint=encoder.fingerprint)
    test = vectors["test"]
    found = clf.predict(test.vectors, test.langs, abstain=True)
    known = test.y != held
    assert roc_auc_score(known, found.support) > 0.7  # the top score alone is the weaker signal
    assert 0 <= found.support.min() and found.support.max() <= 1
    unknown = np.array([t == UNKNOWN for t in found.topics])
    assert unknown[~known].mean() > unknown[known].mean()
    # a label set without food: recipes score high on some label, but have little support
    recipes = ["Slow-cooked beef stew with carrots, potatoes and a glass of red wine",
               "Rezept: Apfelkuchen mit Zimt und Streuseln backen",
               "Receta fácil de tortilla de patatas con cebolla",
               "Recette de la pâte à crêpes : farine, œufs, lait et une pincée de sel"]
    r = classifier.predict(encoder.encode(recipes, kind=TEXT_KIND), ["eng_Latn", "deu_Latn", "spa_Latn", "fra_Latn"])
    in_dist = classifier.predict(test.vectors, test.langs).support
    assert r.support.max() < np.median(in_dist), (r.support, r.scores)


@pytest.mark.slow
def test_default_kernel_stores_labelled_and_unlabelled_rows(classifier, vectors):
    kernel, linear = classifier.heads
    assert isinstance(kernel, KernelHead) and kernel.tau > 0
    assert kernel.memory.shape[0] == len(vectors["train"].langs) + len(vectors["unlabelled"].langs)
    n_train = len(vectors["train"].langs)
    np.testing.assert_allclose(kernel.targets[:n_train].sum(1).numpy(), 1.0)  # one-hot labels
    assert float(kernel.targets[n_train:].sum(1).max()) < 1.0  # down-weighted pseudo-labels
    assert classifier.weights[0] > classifier.weights[1] and sum(classifier.weights) == pytest.approx(1)


@pytest.mark.slow
def test_linear_model_roundtrips_and_an_old_manifest_is_refused(vectors, sib, encoder, tmp_path):
    from xrec.errors import ArtifactError

    clf = fit(vectors, sib[1], encoder, "centered")
    path = clf.save(tmp_path / "centered")
    test = vectors["test"]
    np.testing.assert_allclose(TopicClassifier.load(path).predict_proba(test.vectors, test.langs),
                               clf.predict_proba(test.vectors, test.langs), atol=1e-6)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["head_weights"] == [1.0]
    del manifest["head_weights"], manifest["support"]  # as written before heads had weights and support
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="malformed topic model"):
        TopicClassifier.load(path)


@pytest.mark.slow
def test_tag_items_text_api(classifier, encoder, frames, tmp_path):
    items = every(frames["test"], 20).select("lang", "text").with_row_index("item_id")
    tagged = tag_items(classifier, encoder, items)
    assert tagged.columns == [*items.columns, "topic", "topic_score", "topic_support"]
    assert set(tagged["topic"]) <= set(classifier.labels)
    assert tagged["topic_score"].min() > 0 and tagged["topic_score"].max() <= 1
    assert tagged["topic_support"].min() >= 0 and tagged["topic_support"].max() <= 1
    found = item_topics(classifier, encoder, items)
    assert found.item_ids == items["item_id"].to_list() and found.labels == classifier.labels
    assert found.proba.shape == (items.height, len(classifier.labels))
    np.testing.assert_allclose(found.proba.sum(1), 1.0, rtol=1e-5)
    assert [classifier.labels[i] for i in found.proba.argmax(1)] == tagged["topic"].to_list()
    np.testing.assert_allclose(found.support, tagged["topic_support"].to_numpy(), atol=1e-6)
    with pytest.raises(DataError, match=r"items: missing column\(s\) \['item_id'\]"):
        item_topics(classifier, encoder, items.drop("item_id"))


@pytest.mark.slow
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
    with pytest.raises(DataError, match="language 'fi' has no rows"):
        select_languages(sib[2], ["fin_Latn"], "train")
    with pytest.raises(DataError, match="--train-lang: 'xxx_Zzzz' is not a language code"):
        select_languages(sib[2], ["xxx_Zzzz"], "train")


def test_empty_texts_are_refused(sib, encoder):
    frame = pl.DataFrame({"text": ["a sentence", "  "], "category": sib[1][:2]})
    with pytest.raises(DataError, match=r"t.csv: row 1: text is empty"):
        labelled(frame, sib[1], "t.csv")
    with pytest.raises(DataError, match="text is empty"):
        train_topics(encoder, frame, sib[1], source="t.csv")


@pytest.mark.slow
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


@pytest.mark.slow
def test_evaluate_topics_schema(tiny_sib, sib, encoder, frames, source, tmp_path):
    (tiny_sib / "labels.txt").write_text("\n".join(sib[1]) + "\n")
    result = evaluate_topics(encoder, tiny_sib, source, unlabelled_per_lang=20,
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
    with pytest.raises(DataError, match="language 'fi' has no rows"):
        evaluate_topics(encoder, tiny_sib, "fin_Latn")


def test_few_shot_split_protocol(sib, source):
    _, labels, train, _, _ = sib
    lab, pool = few_shot_split(train, [source], labels, 3, 50, seed=1)
    others = lab.filter(pl.col("lang") != source)
    per = others.group_by("lang", "category").len()
    assert per["len"].to_list() == [3] * per.height
    assert per.height == (train["lang"].n_unique() - 1) * len(labels)
    assert lab.filter(pl.col("lang") == source).height == train.filter(pl.col("lang") == source).height
    assert "category" not in pool.columns and source not in set(pool["lang"])
    assert pool.group_by("lang").len()["len"].to_list() == [50] * pool["lang"].n_unique()
    assert pool.join(others, on=["lang", "index_id"]).height == 0  # shots never in the pool
    again, _ = few_shot_split(train, [source], labels, 3, 50, seed=1)
    assert again.equals(lab) and not few_shot_split(train, [source], labels, 3, 50, seed=2)[0].equals(lab)
    _, zero_pool = few_shot_split(train, [source], labels, 0, 50, seed=1)  # today's protocol
    assert zero_pool.equals(sample_per_language(train.filter(pl.col("lang") != source), 50, 1)
                            .select("lang", "index_id", "text"))


@pytest.mark.slow
def test_evaluate_few_shot_several_sources_held_out_topic(sib, frames, source, encoder, tmp_path):
    _, labels, train, dev, test = sib
    first, second = frames["targets"][:2]
    root = tmp_path / "sib"
    root.mkdir()
    (root / "labels.txt").write_text("\n".join(labels) + "\n")
    pl.concat([every(train.filter(pl.col("lang") == source), 3),
               every(train.filter(pl.col("lang").is_in(frames["targets"])), 10)]).write_ndjson(root / "train.jsonl")
    every(dev.filter(pl.col("lang").is_in([source, first])), 2).write_ndjson(root / "dev.jsonl")
    frames["test"].write_ndjson(root / "test.jsonl")
    held = labels[-1]
    bitext = {"languages": {"fi": {"xx2en": 0.9, "flores_code": second}, "sv": {"xx2en": 0.5}}}
    cache = tmp_path / "cache"
    result = evaluate_topics(encoder, root, [source, first], shots=2, unlabelled_per_lang=20,
                             hold_out=[held], bitext=bitext, cache_dir=cache)
    assert result["train_langs"] == [source, first] and result["shots"] == 2
    others = {lang: row["accuracy"] for lang, row in result["languages"].items() if lang not in (source, first)}
    assert set(others) == set(frames["targets"][1:])
    assert result["mean_accuracy"] == pytest.approx(np.mean(list(others.values())))
    assert result["languages_under_70"] == sum(a < 0.70 for a in others.values())
    n_held = frames["test"].filter((pl.col("lang") == second) & (pl.col("category") == held)).height
    assert result["languages"][second]["n"] == N_TEST - n_held  # accuracy over the trained labels
    ood = result["ood"]
    assert 0.5 < ood["auroc_support"] <= 1 and set(ood["auroc_support_by_lang"]) == set(result["languages"])
    assert ood["abstained_held_out"] > ood["abstained_known"]
    assert result["bitext"] == {second: 0.9}
    assert plot_accuracy_vs_bitext(result, tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
    # the vector cache holds every row asked for; asking again embeds nothing and rewrites nothing
    store = cache / f"test_{second}.parquet"
    stamp = store.stat().st_mtime_ns
    rows = frames["test"].filter(pl.col("lang") == second)
    first_pass = embed_split(encoder, rows, cache, "test")
    assert store.stat().st_mtime_ns == stamp
    np.testing.assert_allclose(first_pass, encoder.encode(rows["text"].to_list(), kind=TEXT_KIND), atol=1e-5)
    with pytest.raises(DataError, match="not in the label set"):
        evaluate_topics(encoder, root, source, hold_out=["cooking"])
