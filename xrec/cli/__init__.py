"""The ``xrec`` command line: thin layers over the public API.

One vocabulary across commands: ``--model`` is always the encoder, ``--store`` always the
embedding cache. Options renamed to fit it stay known to the parser (:func:`renamed`), so an old
spelling is refused with a hint naming the new option instead of a bare "unrecognized".
"""

from __future__ import annotations

import argparse
from typing import Any


class _Renamed(argparse.Action):
    """Refuses an old option spelling, naming the option that replaced it."""

    def __init__(self, option_strings: list[str], dest: str, *, new: str, why: str = "", **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs="?", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        self.new, self.why = new, why

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        parser.error(f"{option_string} was renamed: use {self.new}{f' ({self.why})' if self.why else ''}")


def renamed(parser: argparse.ArgumentParser, old: str, new: str, why: str = "") -> None:
    """Make ``old`` an error on ``parser`` that names ``new`` (hidden from ``--help``)."""
    parser.add_argument(old, action=_Renamed, new=new, why=why, dest=f"_renamed_{old.lstrip('-')}")
