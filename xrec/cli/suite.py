"""``xrec evaluate suite``: the recommenders over catalogues and sizes, one table and one plot."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(commands, evaluate, bench) -> None:
    """Add ``evaluate suite``."""
    e = evaluate.add_parser(
        "suite", help="the recommenders over catalogues and sizes: one table, one plot",
        description="Evaluate the recommenders on every member of the suite (the small catalogues under "
                    "--catalogues, MovieLens with a new Spanish catalogue and its English reference, MovieLens, "
                    "Book-Crossing with 2/10/30%% of the users and whole), one member after the other: NDCG@10 "
                    "per model with 95%% bootstrap intervals, the hybrid against the best of its parts. Members "
                    "not run keep their earlier results in --json; item vectors are cached per catalogue.")
    e.add_argument("--json", default="benchmarks/figures/suite.json", help="the result (kept members merged)")
    e.add_argument("--plot", help="PNG plot (default: next to --json)")
    e.add_argument("--only", help="comma-separated members to run (see --list)")
    e.add_argument("--skip", help="comma-separated members not to run")
    e.add_argument("--list", action="store_true", help="list the members and exit")
    e.add_argument("--fresh", action="store_true", help="drop the results of members not run now from --json")
    e.add_argument("--models", help="comma-separated models for every member (default: popularity,als,bpr,content,"
                                    "tfidf,hybrid; new-catalogue members: random,content,tfidf,lightfm_content,hybrid)")
    e.add_argument("--shared", default="../shared/data",
                   help="folder with movielens_latest_small, movielens_es and bookcrossing")
    e.add_argument("--catalogues", default="data/catalogues", help="folder of small catalogues, one folder each")
    e.add_argument("--work", help="prepared catalogues and embedding stores (default: $XREC_CACHE_DIR/suite)")
    e.add_argument("--model", default="bundled", help="encoder: bundled, a Hugging Face model directory or hub id")
    e.add_argument("--seed", type=int, default=0, help="seed of the splits, subsamples and new catalogues")
    e.add_argument("--threads", type=int, default=2, help="threads of the CF models and the encoder")
    e.set_defaults(func=run_suite_command)


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def run_suite_command(args: argparse.Namespace) -> int:
    from xrec.encoders import load_encoder
    from xrec.encoders.bundled import cache_dir
    from xrec.evaluation.suite import default_members, run_suite, select
    from xrec.evaluation.suite_report import format_table, plot_suite

    work = Path(args.work) if args.work else cache_dir() / "suite"
    members = default_members(args.shared, args.catalogues, work, seed=args.seed)
    if args.list:
        for m in members:
            print(f"{m.name:<12} {m.about} ({m.data})")
        return 0
    chosen = select(members, _names(args.only), _names(args.skip) or ())
    encoder = load_encoder(args.model, threads=args.threads)

    def done(entry: dict) -> None:
        print(f"{entry['name']}: done in {entry['seconds']['total']:.0f} s "
              f"(embedding {entry['seconds']['embed']:.0f} s)", flush=True)

    result = run_suite(chosen, encoder, args.json, work=work, models=_names(args.models), seed=args.seed,
                       threads=args.threads, fresh=args.fresh, on_member=done, order=[m.name for m in members])
    plot = Path(args.plot) if args.plot else Path(args.json).with_suffix(".png")
    plot_suite(result, plot)
    print(format_table(result))
    print(f"\nwrote {args.json} and {plot}")
    return 0
