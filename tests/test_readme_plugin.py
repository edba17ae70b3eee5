"""The README's "Use xrec with the model you already have" snippets, executed in order as written."""

from __future__ import annotations

import os
import re

from conftest import REPO


def snippets() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Use xrec with the model you already have", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_plugin_snippets_run(tmp_path, capsys, monkeypatch):
    blocks = snippets()
    assert len(blocks) == 4
    monkeypatch.chdir(REPO)
    code = "\n".join(blocks).replace("/tmp/xrec_ranker", os.fspath(tmp_path / "ranker"))
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    out = capsys.readouterr().out
    assert "candidate rows in" in out and "new books in the top-100 lists" in out
    reranked = namespace["reranked"]
    assert reranked.group_by("user_id").len()["len"].max() == 10
    assert reranked["because_lang"].list.len().max() == 2
    assert len(namespace["ranker"].items) == namespace["inter"].items.ids.len() + 30
    assert namespace["ranker"].fusion.kind == "learned"
    assert int(namespace["ranker"].retired.sum()) == 5
    assert namespace["lfm_ranker"].fusion.kind == "learned" and namespace["lfm_ranker"].cf.name == "lightfm"
