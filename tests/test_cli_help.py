"""Every command says what it does and every option what it means and its default."""

from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pytest
from xrec.cli.main import build_parser, main


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(path, parser) of every command that runs (leaves of the subcommand tree)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, child in action.choices.items():
            yield from _commands(child, (*path, name))


COMMANDS = list(_commands(build_parser()))


@pytest.mark.parametrize("path, parser", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_and_option_is_described_with_its_default(path, parser):
    assert parser.description, f"xrec {' '.join(path)}: no description"
    text = parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help, f"xrec {' '.join(path)} {name}: no help"
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS, []):
            shown = " ".join(map(str, action.default)) if isinstance(action.default, list) else str(action.default)
            squeezed, value = re.sub(r"\s+", "", text), re.sub(r"\s+", "", shown)  # help text is wrapped
            assert re.search(rf"default:?{re.escape(value)}\b", squeezed), \
                f"xrec {' '.join(path)} {name}: default {shown!r} not shown"


def test_help_names_only_commands_that_exist():
    """A help text that says "xrec WORDS" names a command path that exists (or a group of them)."""
    paths = {" ".join(path[:n]) for path, _ in COMMANDS for n in range(1, len(path) + 1)}
    words = set(" ".join(path) for path, _ in COMMANDS) | {w for path, _ in COMMANDS for w in path}
    for path, parser in COMMANDS:
        texts = [parser.description or ""] + [a.help or "" for a in parser._actions]
        for text in texts:
            for named in re.findall(r"\bxrec((?: [a-z]+)+)", " ".join(text.split())):
                named = " ".join(w for w in named.split() if w in words)  # "xrec tag output": tag
                assert named in paths, f"xrec {' '.join(path)}: help names 'xrec {named}', which does not exist"


def test_topic_method_help_names_the_librarys_default():
    from xrec.topics.transfer import DEFAULT_METHOD

    parser = dict(COMMANDS)[("topics", "train")]
    assert f"(default: {DEFAULT_METHOD})" in " ".join(parser.format_help().split())


@pytest.mark.slow
def test_similar_on_a_saved_index_prints_texts(encoder, tmp_path, capsys):
    import polars as pl
    from xrec.index import VectorIndex

    items = pl.DataFrame({"item_id": [1, 2, 3], "text": ["Der Hund schläft.", "The dog sleeps.", "Mbwa analala."],
                          "lang": ["deu", "eng", "swh"]})
    items.write_parquet(tmp_path / "items.parquet")
    assert main(["similar", "--items", str(tmp_path / "items.parquet"), "--ids", "1", "--k", "2",
                 "--save-index", str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    assert main(["similar", "--index", str(tmp_path / "idx"), "--ids", "1", "--k", "2"]) == 0
    text = capsys.readouterr().out
    assert "# 1 Der Hund schläft." in text and "The dog sleeps." in text and "Mbwa analala." in text
    assert main(["similar", "--index", str(tmp_path / "idx"), "--ids", "2", "--k", "1", "--format", "json"]) == 0
    hit = json.loads(capsys.readouterr().out)["queries"][0]["neighbours"][0]
    assert hit["text"] in {"Der Hund schläft.", "Mbwa analala."}
    # an index without texts loads and answers as before
    plain = VectorIndex.build(np.eye(3, 8, dtype=np.float32), [1, 2, 3], kind="exact")
    plain.save(tmp_path / "plain")
    loaded = VectorIndex.load(tmp_path / "plain")
    assert not loaded.has_texts and loaded.text_of([2]) == [None]
    assert VectorIndex.load(tmp_path / "idx").text_of([3]) == ["Mbwa analala."]


def test_topic_support_threshold_help_names_the_librarys_default():
    from xrec.topics.support import DEFAULT_SUPPORT_THRESHOLD

    parser = dict(COMMANDS)[("topics", "train")]
    assert f"(default: {DEFAULT_SUPPORT_THRESHOLD})" in " ".join(parser.format_help().split())
