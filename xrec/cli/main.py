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
COMMAND_MODULES = ("run", "embed", "similar", "recommend", "topics", "serve")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered command."""
    parser = argparse.ArgumentParser(prog="xrec", description="Cross-lingual recommendations.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    evaluate = commands.add_parser("evaluate", help="measure quality on real data").add_subparsers(
        dest="evaluation", metavar="WHAT", required=True)
    bench = commands.add_parser("bench", help="measure speed against peers").add_subparsers(
        dest="benchmark", metavar="WHAT", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"xrec.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"xrec.cli.{name}":
                continue  # command group not built yet
            raise
        module.register(commands, evaluate, bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``xrec`` command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except XrecError as exc:
        print(f"xrec: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
