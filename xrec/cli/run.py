"""``xrec run``: the main job (:mod:`xrec.jobs.main_job`) from a TOML job definition, or on an items
and an interactions table given on the command line."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction, evaluate: argparse._SubParsersAction,
             bench: argparse._SubParsersAction) -> None:
    """Add ``xrec run``."""
    parser = commands.add_parser(
        "run", help="run the main job: recommendations, neighbours, topic tags, evaluation, latency report",
        description="Run the whole pipeline described by a TOML config (default: pipelines/default.toml, "
                    "the bundled sample data), or on your own --items and --interactions tables with the "
                    "default config's other settings, and write everything into one output folder. Stages "
                    "whose inputs are unchanged are reused from the previous run; stages the catalogue cannot "
                    "feed are skipped, with the reason in the report (docs/own-catalogue.md).")
    parser.add_argument("--config", default=None,
                        help="TOML job definition; its relative paths are relative to its own folder "
                             "(default: the bundled pipelines/default.toml on the bundled sample data, writing ./out)")
    parser.add_argument("--items", help="your items table (parquet/CSV/JSONL): item_id and any fields; replaces "
                                        "the config's [items] (then --template, or a text column)")
    parser.add_argument("--interactions", help="your interactions table: user_id, item_id[, weight][, timestamp]; "
                                               "replaces the config's [interactions]")
    parser.add_argument("--template", help="item text from the items' fields, e.g. '{title}. {author}' "
                                           "([items] template)")
    parser.add_argument("--metadata", help="comma-separated item fields whose shared values link items, e.g. "
                                           "author or brand ([items] metadata)")
    parser.add_argument("--stages", help="comma-separated stages to run ([job] stages; default: all)")
    parser.add_argument("--out", default=None, help="output folder (overrides [output] dir)")
    parser.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="where the embedding and batch-recommendation stages run")
    parser.add_argument("--address", default=None,
                        help="Ray cluster address (e.g. ray://head:10001); default: a local Ray instance")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value (repeatable), e.g. --set recommend.k=20")
    parser.set_defaults(func=run)


def overrides(args: argparse.Namespace) -> list[str]:
    """The ``section.key=value`` overrides the options stand for, before the ``--set`` ones.

    ``--items`` (``--interactions``) replaces the whole ``[items]`` (``[interactions]``) section:
    its keys take the schema defaults (columns ``item_id``, ``lang``, ``user_id``, ``weight``,
    ``timestamp``; no template, no metadata) unless an option or ``--set`` gives them."""
    from xrec.errors import DataError
    from xrec.jobs.config import SCHEMA

    if (args.items is None) != (args.interactions is None):
        raise DataError("--items and --interactions go together (your catalogue's two tables)")
    found: list[str] = []
    for section, path in (("items", args.items), ("interactions", args.interactions)):
        if path is not None:
            found += [f"{section}.{key}={_default(spec)}" for key, spec in SCHEMA[section].items() if key != "path"]
            found.append(f"{section}.path={path}")
    if args.template is not None:
        found.append(f"items.template={args.template}")
    if args.metadata is not None:
        found.append(f"items.metadata={args.metadata}" if args.metadata.strip() else "items.metadata=[]")
    if args.stages is not None:
        found.append(f"job.stages={args.stages}")
    if args.out:
        found.append(f"output.dir={args.out}")
    return found + list(args.overrides)


def _default(spec) -> str:
    import json

    value = spec.default() if callable(spec.default) else spec.default
    return value if isinstance(value, str) else json.dumps(value)


def run(args: argparse.Namespace) -> int:
    """Load the config, apply the options and overrides and run the main job."""
    from xrec.jobs import load_config, run_main_job

    config = load_config(args.config, overrides(args))
    run_main_job(config, engine=args.engine, address=args.address)
    return 0
