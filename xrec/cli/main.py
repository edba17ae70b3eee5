"""Entry point of the ``xrec`` command.

Each command group lives in its own module exposing ``register(commands, evaluate, bench)``,
which adds its subcommands to the top-level parser, the ``xrec evaluate`` group and the
``xrec bench`` group. A subcommand sets ``func`` (taking the parsed args, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from xrec.errors import XrecError

#: Modules under ``xrec.cli`` that register subcommands, in help order.
COMMAND_MODULES = ("run", "embed", "similar", "recommend", "suite", "topics", "serve")


class HelpFormatter(argparse.HelpFormatter):
    """Ends an option's help with ``(default: X)`` unless it has no default or names it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or "default" in text.lower() or default in (None, False, [])
                or default is argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with :class:`HelpFormatter` (subcommands inherit both)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered command."""
    parser = Parser(prog="xrec", description="Cross-lingual recommendations.")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log more detail (other libraries' notes too)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    evaluate = commands.add_parser("evaluate", help="measure quality on real data").add_subparsers(
        dest="evaluation", metavar="WHAT", required=True)
    bench = commands.add_parser("bench", help="measure speed against peers").add_subparsers(
        dest="benchmark", metavar="WHAT", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"xrec.cli.{name}").register(commands, evaluate, bench)
    return parser


class _Format(logging.Formatter):
    """``[xrec] message`` for xrec's own progress and notes; level and logger for the rest."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        if not record.name.startswith("xrec"):
            text = f"{record.name}: {text}"
        return f"[xrec] {text}"


def setup_logging(verbose: bool = False) -> None:
    """Show xrec's INFO lines (progress, what was reused) and every warning on stderr; ``verbose``
    adds other libraries' INFO lines. Leaves logging alone where a handler is already set."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(_Format())
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("xrec").setLevel(logging.DEBUG if verbose else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """Run the ``xrec`` command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except XrecError as exc:
        print(f"xrec: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
