"""``xrec run``: the main job (:mod:`xrec.jobs.main_job`) from a TOML job definition."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction, evaluate: argparse._SubParsersAction,
             bench: argparse._SubParsersAction) -> None:
    """Add ``xrec run``."""
    parser = commands.add_parser(
        "run", help="run the main job: recommendations, neighbours, topic tags, evaluation, latency report",
        description="Run the whole pipeline described by a TOML config (default: pipelines/default.toml, "
                    "the bundled sample data) and write everything into one output folder. Stages whose "
                    "inputs are unchanged are reused from the previous run.")
    parser.add_argument("--config", default=None,
                        help="TOML job definition; its relative paths are relative to its own folder "
                             "(default: the bundled pipelines/default.toml on the bundled sample data, writing ./out)")
    parser.add_argument("--out", default=None, help="output folder (overrides [output] dir)")
    parser.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="where the embedding and batch-recommendation stages run")
    parser.add_argument("--address", default=None,
                        help="Ray cluster address (e.g. ray://head:10001); default: a local Ray instance")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value (repeatable), e.g. --set recommend.k=20")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the config, apply overrides and run the main job."""
    from xrec.jobs import load_config, run_main_job

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"output.dir={args.out}")
    config = load_config(args.config, overrides)
    run_main_job(config, engine=args.engine, address=args.address)
    return 0
