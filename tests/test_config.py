"""The main job's config: one typed schema, checked before any stage runs (no encoder needed)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from xrec.cli.main import main
from xrec.errors import DataError
from xrec.jobs.config import DEFAULT, load_config


@pytest.mark.parametrize("override, message", [
    ("recommend.k=0", r"--set recommend\.k=0: \[recommend\] k must be at least 1"),
    ("recommend.k=abc", r"\[recommend\] k must be an integer, got 'abc'"),
    ("recommend.k=2.5", r"\[recommend\] k must be an integer"),
    ("recommend.kk=3", r"unknown key \[recommend\] kk; known: .*\bk\b"),
    ("recomend.k=3", r"unknown section \[recomend\]; known: .*recommend"),
    ("encoder.precision=int3", r"\[encoder\] precision must be one of auto, fp32, bf16, fp16"),
    ('recommend.evaluate_models=["als", "nope"]', r"\[recommend\] evaluate_models: 'nope' is not one of"),
    ("latency.queries=-5", r"\[latency\] queries must be at least 1"),
    ("topics.sib200=/no/such/folder", r"\[topics\] sib200 = '/no/such/folder': .* does not exist"),
    ("items.path=/no/such/items.csv", r"\[items\] path = '/no/such/items.csv': .* does not exist or is not a file"),
    ("items.id=", r"\[items\] id must be a non-empty string"),
    ('job.stages=["recommendations", "nope"]', r"\[job\] stages: 'nope' is not one of recommendations, evaluation"),
])
def test_bad_values_are_refused_naming_the_key(override, message):
    with pytest.raises(DataError, match=message):
        load_config(None, [override])


def test_cli_refuses_a_bad_config_before_any_work(tmp_path, capsys):
    with pytest.raises(DataError):  # checked first, so that on failure the job below never starts
        load_config(None, ["recommend.k=abc"])
    out = tmp_path / "out"
    assert main(["run", "--out", str(out), "--set", "recommend.k=abc"]) == 2
    assert "[recommend] k must be an integer, got 'abc'" in capsys.readouterr().err
    assert not out.exists()


def test_file_values_are_typed_and_named_with_the_file(tmp_path):
    config = tmp_path / "job.toml"
    config.write_text('[recommend]\nk = "ten"\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"job\.toml: \[recommend\] k must be an integer, got 'ten'"):
        load_config(config)
    config.write_text("[encoder]\nbatch_size = true\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"\[encoder\] batch_size must be an integer, got True"):
        load_config(config)


def test_relative_paths_follow_the_config_file_and_overrides_the_working_directory(
        tmp_path, data_dir, monkeypatch):
    """A config outside the checkout names its data relative to itself, not to xrec's folder."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "bx").symlink_to(data_dir / "bookcrossing", target_is_directory=True)
    (project / "sib").symlink_to(data_dir / "sib200", target_is_directory=True)
    (project / "job.toml").write_text(
        '[output]\ndir = "results"\n[items]\npath = "bx/books.csv.gz"\n[interactions]\n'
        'path = "bx/ratings.csv.gz"\n[topics]\nsib200 = "sib"\n', encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(project / "job.toml")
    assert Path(config["items"]["path"]) == project / "bx" / "books.csv.gz"
    assert config["items"]["template"] == "" and config["items"]["metadata"] == []  # schema defaults
    assert Path(config["output"]["dir"]) == project / "results"
    assert config["recommend"]["k"] == 10 and config["encoder"]["model"] == "bundled"  # schema defaults
    config = load_config(project / "job.toml", ["output.dir=here"])
    assert Path(config["output"]["dir"]) == elsewhere / "here"
    with pytest.raises(DataError, match=r"bare\.toml: missing \[items\] path"):
        (project / "bare.toml").write_text("[topics]\nsib200 = 'sib'\n", encoding="utf-8")
        load_config(project / "bare.toml")


def test_the_default_config_matches_the_schema():
    from xrec.jobs.config import SCHEMA, STAGES

    raw = tomllib.loads(DEFAULT.read_text(encoding="utf-8"))
    for section, keys in raw.items():
        if isinstance(keys, dict):
            assert set(keys) <= set(SCHEMA[section]), section
    config = load_config()
    assert Path(config["items"]["path"]).is_file() and config["recommend"]["k"] >= 1
    assert set(config["job"]["stages"]) == set(STAGES)  # the default job runs every stage
