"""``xrec topics train``, ``xrec tag`` and ``xrec evaluate topics`` end to end on sample data.

The commands load their encoder with ``xrec.encoders.load_encoder``; here it hands back the
session's real bundled encoder (same weights, same fingerprint) so that it is built only once.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from xrec.cli.main import main
from xrec.datasets.sib200 import load_labels, load_split
from xrec.topics.transfer import DEFAULT_METHOD

from samples import every


@pytest.fixture(autouse=True)
def shared_encoder(monkeypatch, encoder):
    import xrec.encoders

    monkeypatch.setattr(xrec.encoders, "load_encoder", lambda *args, **kwargs: encoder)


@pytest.fixture(scope="module")
def tiny_sib(tmp_path_factory, data_dir):
    """English plus two other languages of the sample, small, in the SIB-200 layout."""
    src = data_dir / "sib200"
    train, dev, test = (load_split(src, s) for s in ("train", "dev", "test"))
    langs = ["en"] if "en" in set(train["lang"]) else []
    langs += [lang for lang in sorted(set(test["lang"])) if lang not in langs][: 3 - len(langs)]
    root = tmp_path_factory.mktemp("tiny_sib")
    (root / "labels.txt").write_text("\n".join(load_labels(src)) + "\n")
    source = train.filter(pl.col("lang") == langs[0])
    others = every(train.filter(pl.col("lang").is_in(langs[1:])), 20)
    pl.concat([every(source, 3), others]).write_ndjson(root / "train.jsonl")
    every(dev.filter(pl.col("lang") == langs[0]), 2).write_ndjson(root / "dev.jsonl")
    every(test.filter(pl.col("lang").is_in(langs)), 6).write_ndjson(root / "test.jsonl")
    return root, langs


@pytest.fixture(scope="module")
def trained(tiny_sib, tmp_path_factory, encoder) -> tuple[Path, str]:
    """``xrec topics train`` run once for the module: the model directory and the lines it logged
    (progress shown at once: the default waits two seconds before showing)."""
    import logging

    import xrec.encoders
    from xrec import progress

    root, langs = tiny_sib
    out = tmp_path_factory.mktemp("model") / "topics"
    lines: list[str] = []

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Lines(logging.INFO)
    logger = logging.getLogger("xrec")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(xrec.encoders, "load_encoder", lambda *a, **k: encoder)
            mp.setattr(progress, "DELAY_S", 0.0)
            assert main(["topics", "train", "--data", str(root), "--train-lang", langs[0],
                         "--out", str(out)]) == 0
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return out, "\n".join(lines)


@pytest.fixture(scope="module")
def model_dir(trained) -> Path:
    """The topic model :func:`trained` wrote (tests only read it)."""
    return trained[0]


@pytest.mark.slow
def test_train_shows_its_phases(trained):
    """Training logs its phases."""
    _, log = trained
    assert "training the topic classifier on" in log and "labelled texts: done in" in log
    assert re.search(r"encode: \d+ batches done in", log)


@pytest.mark.slow
def test_train_writes_a_model(model_dir, tiny_sib):
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["kind"] == "xrec.topic_classifier" and manifest["method"] == DEFAULT_METHOD
    assert set(tiny_sib[1]) <= set(manifest["centering"]["languages"])
    assert "heads.safetensors" in manifest["files"]


@pytest.mark.slow
def test_tag_adds_topic_and_score(model_dir, tiny_sib, tmp_path):
    root, langs = tiny_sib
    items = every(load_split(root, "test"), 5).select("lang", "text", "category")
    items = items.with_row_index("item_id")
    items.write_csv(tmp_path / "items.csv")
    assert main(["tag", "--items", str(tmp_path / "items.csv"), "--topic-model", str(model_dir),
                 "--out", str(tmp_path / "tagged.parquet")]) == 0
    tagged = pl.read_parquet(tmp_path / "tagged.parquet")
    assert tagged.columns == [*items.columns, "topic", "topic_score", "topic_support"]
    assert tagged.height == items.height
    assert (tagged["topic"] == tagged["category"]).mean() > 0.5
    # without a lang column, each item's language is identified from its vector
    items.drop("lang").write_ndjson(tmp_path / "items.jsonl")
    assert main(["tag", "--items", str(tmp_path / "items.jsonl"), "--topic-model", str(model_dir),
                 "--out", str(tmp_path / "tagged.jsonl"), "--abstain"]) == 0
    again = pl.read_ndjson(tmp_path / "tagged.jsonl")
    assert set(again["topic"]) <= set(load_labels(root)) | {"unknown"}


@pytest.mark.slow
def test_evaluate_topics_writes_json_and_plots(tiny_sib, tmp_path, capsys):
    root, langs = tiny_sib
    out = tmp_path / "topics.json"
    bitext = tmp_path / "bitext.json"
    bitext.write_text(json.dumps({"languages": {"xx": {"xx2en": 0.8, "flores_code": langs[2]}}}))
    held = load_labels(root)[-1]
    assert main(["evaluate", "topics", "--data", str(root), "--train-lang", ",".join(langs[:2]),
                 "--shots", "1", "--seed", "3", "--hold-out", held, "--bitext", str(bitext),
                 "--json", str(out), "--unlabelled-per-lang", "20", "--method", "self-train"]) == 0
    result = json.loads(out.read_text())
    assert {"train_lang", "method", "languages", "mean_accuracy", "train_lang_accuracy",
            "languages_under_70", "ood", "bitext"} <= set(result)
    assert result["train_langs"] == langs[:2] and result["shots"] == 1 and result["seed"] == 3
    assert set(result["languages"]) == set(langs) and result["hold_out"] == [held]
    assert all(set(v) >= {"accuracy", "macro_f1", "n"} for v in result["languages"].values())
    assert result["mean_accuracy"] == result["languages"][langs[2]]["accuracy"] > 0.5
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "topics_vs_bitext.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "under 0.70" in printed and "topic_support AUROC" in printed


@pytest.mark.slow
def test_tag_refuses_items_without_text(model_dir, tmp_path, capsys):
    pl.DataFrame({"item_id": [1], "title": ["x"]}).write_csv(tmp_path / "bad.csv")
    assert main(["tag", "--items", str(tmp_path / "bad.csv"), "--topic-model", str(model_dir),
                 "--out", str(tmp_path / "o.csv")]) == 2
    assert "missing column(s) ['text']" in capsys.readouterr().err


def test_train_refuses_language_without_rows(tiny_sib, tmp_path, capsys):
    assert main(["topics", "train", "--data", str(tiny_sib[0]), "--train-lang", "fin_Latn",
                 "--out", str(tmp_path / "m")]) == 2
    assert "language 'fi' has no rows" in capsys.readouterr().err


def test_train_refuses_unknown_label_and_one_class(tmp_path, capsys):
    (tmp_path / "labels.txt").write_text("sports\npolitics\n")
    pl.DataFrame({"text": ["a match", "an election"], "category": ["sports", "cooking"]}).write_csv(
        tmp_path / "bad.csv")
    assert main(["topics", "train", "--data", str(tmp_path / "bad.csv"), "--labels",
                 str(tmp_path / "labels.txt"), "--out", str(tmp_path / "m")]) == 2
    assert "row 1: label 'cooking' is not in the label set" in capsys.readouterr().err
    pl.DataFrame({"text": ["a match", "a goal"], "category": ["sports", "sports"]}).write_csv(
        tmp_path / "one.csv")
    assert main(["topics", "train", "--data", str(tmp_path / "one.csv"), "--out", str(tmp_path / "m")]) == 2
    assert "one class only" in capsys.readouterr().err


@pytest.mark.slow
def test_tag_refuses_model_of_another_encoder(model_dir, tmp_path, capsys):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["encoder_fingerprint"] = "sha256:some-other-encoder"
    (other / "manifest.json").write_text(json.dumps(manifest))
    pl.DataFrame({"text": ["Der Bundestag hat gewählt."]}).write_csv(tmp_path / "i.csv")
    assert main(["tag", "--items", str(tmp_path / "i.csv"), "--topic-model", str(other),
                 "--out", str(tmp_path / "o.csv")]) == 2
    assert "made with encoder sha256:some-other-encoder" in capsys.readouterr().err


@pytest.mark.slow
def test_old_topic_model_is_refused_saying_how_to_rebuild(model_dir, tmp_path, capsys):
    """A topic model of an earlier format version is refused, naming the command that retrains it."""
    import shutil

    old = tmp_path / "old_model"
    shutil.copytree(model_dir, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["format_version"] -= 1
    (old / "manifest.json").write_text(json.dumps(manifest))
    pl.DataFrame({"text": ["Der Bundestag hat gewählt."]}).write_csv(tmp_path / "i.csv")
    assert main(["tag", "--items", str(tmp_path / "i.csv"), "--topic-model", str(old),
                 "--out", str(tmp_path / "o.csv")]) == 2
    assert "retrain it with `xrec topics train`" in capsys.readouterr().err
