"""What the wheel ships: the default job and every file of the samples it reads; `xrec --version`."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from xrec.cli.main import main
from xrec.jobs.config import DEFAULT, load_config

from conftest import REPO


def test_the_wheel_ships_every_file_the_default_job_reads(tmp_path, monkeypatch):
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    mapped = {REPO / folder: package for package, folder in setuptools["package-dir"].items()}
    assert DEFAULT.parent in mapped  # pipelines/ -> xrec.pipelines
    assert DEFAULT.name in setuptools["package-data"][mapped[DEFAULT.parent]]
    monkeypatch.chdir(tmp_path)
    config = load_config(None)
    assert config["output"]["dir"] == str(tmp_path / "out")  # the default job writes ./out
    for folder in (Path(config["items"]["path"]).parent, Path(config["topics"]["sib200"])):
        parent = next(p for p in mapped if p in folder.parents)  # data/ -> xrec.data
        package = f"{mapped[parent]}.{folder.relative_to(parent).as_posix().replace('/', '.')}"
        assert f'"{package}"' in (REPO / "setup.py").read_text(encoding="utf-8")  # listed as a package
        patterns = setuptools["package-data"][package]
        files = [f for f in folder.iterdir() if f.is_file()]
        assert files and all(any(f.match(p) for p in patterns) for f in files), (package, patterns)


def test_version_comes_from_the_package(capsys):
    from xrec import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"xrec {__version__}"
    # pyproject.toml states the version (a wheel built anywhere carries it, never "0+unknown")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "version" not in project.get("dynamic", []) and project["version"] == __version__
