"""The Python blocks of the README and of every page under docs/, executed in order as written.

Each page runs in one namespace, in an empty working directory where ``data/`` is the repository's
sample data, so relative paths read as from the repository root and files it writes stay in tmp.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from conftest import REPO


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)


PAGES = [p for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))] if python_blocks(p)]


def run_page(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    work = tmp_path / "work"
    work.mkdir()
    (work / "data").symlink_to(REPO / "data")
    monkeypatch.chdir(work)
    code = "\n".join(python_blocks(page)).replace("/tmp/xrec_ranker", os.fspath(tmp_path / "ranker"))
    namespace: dict = {}
    exec(compile(code, str(page), "exec"), namespace)  # noqa: S102 - the page's own code
    return namespace


def test_pages_with_code_are_found():
    names = {p.relative_to(REPO).as_posix() for p in PAGES}
    assert {"README.md", "docs/api.md", "docs/plugin.md"} <= names


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if p.name != "plugin.md"],
                         ids=lambda p: p.relative_to(REPO).as_posix())
def test_page_runs(page, tmp_path, monkeypatch):
    namespace = run_page(page, tmp_path, monkeypatch)
    assert namespace  # ran to the end; a failing block raises


@pytest.mark.slow
def test_plugin_page_runs(tmp_path, capsys, monkeypatch):
    """docs/plugin.md: re-rank ALS's candidates, add and remove items, save and load, LightFM."""
    page = REPO / "docs" / "plugin.md"
    assert len(python_blocks(page)) == 4
    namespace = run_page(page, tmp_path, monkeypatch)
    out = capsys.readouterr().out
    assert "candidate rows in" in out and "new books in the top-100 lists" in out
    reranked = namespace["reranked"]
    assert reranked.group_by("user_id").len()["len"].max() == 10
    assert reranked["because_lang"].list.len().max() == 2
    assert len(namespace["ranker"].items) == namespace["inter"].items.ids.len() + 30
    assert namespace["ranker"].fusion.decision["cross_fitted"]  # fitted, and checked against its parts
    assert int(namespace["ranker"].retired.sum()) == 5
    assert namespace["lfm_ranker"].fusion.decision["cross_fitted"] and namespace["lfm_ranker"].cf.name == "lightfm"


def test_readme_links_and_quick_start():
    """The README stays a short front page: its Quick start block has the two commands CI runs, and
    every local link points at a file (pages other branches add are allowed to be missing only
    while listed here)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    block = text.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    lines = block.strip().splitlines()
    assert [line.split(" ")[:2] for line in lines] == [["bash", "scripts/setup.sh"]] * 2
    # the test command (CI runs it) checks lint, types and every test
    assert all(step in lines[1] for step in ("ruff check", "pyright xrec", "pytest -q"))
    for target in re.findall(r"\]\(([^)#:]+)\)", text):
        assert (REPO / target).exists(), target
