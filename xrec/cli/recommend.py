"""``xrec recommend``, ``xrec rerank``, ``xrec evaluate recs`` and ``xrec bench recommend``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import polars as pl

from xrec.artifacts import check_writable
from xrec.cli import add_encoder_options

log = logging.getLogger(__name__)


def register(commands, evaluate, bench) -> None:
    """Add the recommendation commands to the ``xrec`` parser."""
    p = commands.add_parser(
        "recommend", help="batch hybrid recommendations to parquet",
        description="Fit the hybrid ranker (ALS factors fused with content scores of the items' text) "
                    "on INTERACTIONS and write the top-k unseen items of every user to OUT, in batches "
                    "of users: a killed run resumes where it stopped; the output appears atomically.")
    _catalogue_options(p, saved=True)
    p.add_argument("--ranker", help="a ranker saved by xrec fit (then no fit; --items and --interactions are "
                                    "optional and only validated)")
    p.add_argument("--users", default="all",
                   help="'all' (every user with interactions), a .txt file with one user id per line "
                        "(an optional first line 'user_id' is a header), or a table with a user_id column")
    p.add_argument("--k", type=int, default=10,
                   help="items per user (at most the catalogue: a larger k gives every unseen item)")
    p.add_argument("--batch-size", type=int, default=1024,
                   help="users scored per batch (memory is batch size x min(k, catalogue))")
    p.add_argument("--tags", help="item topics: item_id, topic[, topic_score] (e.g. xrec tag output, "
                                  "or the main job's book_topics.parquet)")
    p.add_argument("--only-topics", nargs="+", metavar="TOPIC",
                   help="only items tagged with these topics (needs --tags)")
    _run_options(p)
    p.set_defaults(func=run_recommend)

    f = commands.add_parser(
        "fit", help="fit the hybrid ranker and save it (for recommend, rerank and serve --ranker)",
        description="Fit the hybrid ranker (ALS factors fused with content scores of the items' text) on "
                    "INTERACTIONS and save it to OUT, a directory with a manifest checked on load: "
                    "`xrec recommend --ranker OUT`, `xrec rerank --ranker OUT` and `xrec serve --ranker OUT` "
                    "read it without refitting. --index also saves the items' vector index for "
                    "`xrec serve --index`.")
    _catalogue_options(f)
    f.add_argument("--out", required=True, help="the ranker directory to write (replaced atomically)")
    f.add_argument("--index", help="also save the items' vector index (with languages and texts) here")
    add_encoder_options(f)
    f.add_argument("--store", help="embedding store file reused across runs (xrec.store)")
    f.add_argument("--threads", type=int, default=2, help="CPU threads of the encoder and the ALS fit")
    f.add_argument("--tags", help="item topics: item_id, topic[, topic_score] (for topics= filters)")
    f.set_defaults(func=run_fit)

    r = commands.add_parser(
        "rerank", help="re-rank another model's candidates with the hybrid ranker, to parquet",
        description="Fit the hybrid ranker on INTERACTIONS (or load a saved one) and re-order each user's "
                    "candidates from FILE (your own model's top-N: user_id, item_id[, score]) by the hybrid's "
                    "fused score, in batches of users: a killed run resumes where it stopped; the output "
                    "appears atomically.")
    r.add_argument("--candidates", required=True, help="user_id, item_id[, score] (parquet/CSV/JSONL)")
    _catalogue_options(r, saved=True)
    r.add_argument("--ranker", help="a ranker saved by xrec fit or HybridRanker.save (then no fit; --items "
                                    "and --interactions are optional and only validated)")
    r.add_argument("--k", type=int, help="candidates kept per user (default: all, re-ordered)")
    r.add_argument("--on-unknown", default="drop", choices=("drop", "error"),
                   help="candidates naming users or items the ranker does not know: drop them (reported) or fail")
    r.add_argument("--keep-seen", action="store_true", help="keep candidates the user already interacted with")
    r.add_argument("--upstream-weight", type=float, default=0.0,
                   help="weight of the candidates' standardised score next to the hybrid's (0: hybrid order)")
    r.add_argument("--batch-size", type=int, default=1024, help="users re-ranked per batch")
    _run_options(r)
    r.set_defaults(func=run_rerank)

    e = evaluate.add_parser("recs",
                            help="recommenders side by side on MovieLens, Book-Crossing or items + interactions",
                            description="Fit the recommenders on a split of DIR and report NDCG@10, Recall@10/20, "
                                        "MAP@10, coverage, cold items and language slices, side by side.")
    e.add_argument("--data", required=True,
                   help="folder in the MovieLens layout (movies + ratings), the Book-Crossing layout (books + "
                        "ratings) or a generic one (items + interactions tables)")
    e.add_argument("--json", required=True, help="where to write the report")
    e.add_argument("--test", help="test interactions (the layout's ratings columns); default: last 20%% per user "
                                  "by time, or a seeded random 20%% without timestamps")
    e.add_argument("--new-language", metavar="LANG",
                   help="new-language protocol: no training interaction with LANG's items; rank them only")
    e.add_argument("--new-items", metavar="FILE",
                   help="the same protocol on the items listed in FILE (a table with an item_id column), "
                        "e.g. the monolingual reference of a new-language run")
    e.add_argument("--template", help="item text from fields, e.g. '{title}. {author}' (Book-Crossing default)")
    e.add_argument("--metadata", help="comma-separated item fields linking items for the hybrid "
                                      "(Book-Crossing default: author)")
    e.add_argument("--seed", type=int, default=0, help="seed of the random split (default 0)")
    e.add_argument("--plot", help="PNG plot (default: next to --json)")
    every, new_language = _models()
    e.add_argument("--models", help=f"comma-separated subset of {','.join(every)} (default: all; with "
                                    f"--new-language: {','.join(new_language)})")
    add_encoder_options(e)
    e.add_argument("--store", help="embedding store file reused across runs")
    e.add_argument("--drop-unknown", action="store_true", help="drop interactions naming unknown items")
    e.add_argument("--threads", type=int, default=2, help="threads of the CF models and the encoder (default 2)")
    e.set_defaults(func=run_evaluate)

    b = bench.add_parser(
        "recommend", help="hybrid vs implicit's batched recommend, top-100 for every user",
        description="Time the hybrid ranker's batched top-k against implicit's ALS recommend on the "
                    "MovieLens sample and on a synthetic scale.")
    b.add_argument("--data", default="data/movielens", help="MovieLens-layout directory ('' to skip)")
    b.add_argument("--synthetic", default="100000x100000", help="USERSxITEMS synthetic scale ('' to skip)")
    b.add_argument("--k", type=int, default=100, help="items per user")
    b.add_argument("--threads", type=int, default=2, help="CPU threads of both sides")
    add_encoder_options(b)
    b.add_argument("--store", help="embedding store for the MovieLens items")
    b.add_argument("--sample-users", type=int,
                   help="time the synthetic run on this many random users (default 5000; 0: all)")
    b.add_argument("--json", help="write the results here")
    b.set_defaults(func=run_bench)
    s = bench.add_parser(
        "scale", help="fit time, peak memory, users/s and embedding texts/s at 10k, 100k and 1M items",
        description="Synthetic catalogues (as bench recommend's) at growing sizes, users = items, each in "
                    "its own process: hybrid fit time, peak memory, recommend users/s; embedding texts/s of "
                    "the auto encoder on real sentences (projected to each catalogue). Table, JSON, log-log plot.")
    s.add_argument("--items", default="10000,100000,1000000", help="comma-separated catalogue sizes")
    s.add_argument("--per-user", type=int, default=10, help="interactions per user")
    s.add_argument("--threads", type=int, default=2, help="CPU threads")
    s.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per scale")
    s.add_argument("--json", default="bench_scale.json", help="results (JSON)")
    s.add_argument("--plot", default="bench_scale.png", help="log-log plot (PNG)")
    s.set_defaults(func=run_scale)


def _catalogue_options(parser: argparse.ArgumentParser, saved: bool = False) -> None:
    """The items and interactions a fit, recommend or rerank run fits on (``saved``: optional
    there, where ``--ranker`` gives a fitted one)."""
    parser.add_argument("--items", required=not saved, help="items table: item_id, text[, lang] (parquet/CSV/JSONL)")
    parser.add_argument("--interactions", required=not saved,
                        help="user_id, item_id[, weight][, timestamp] (Unix seconds or ISO-8601)")
    parser.add_argument("--template", help="item text from the items table's fields, e.g. '{title}. {author}'")
    parser.add_argument("--metadata",
                        help="comma-separated item fields whose shared values link items (e.g. author)")
    parser.add_argument("--drop-unknown", action="store_true", help="drop interactions naming unknown items")
    parser.add_argument("--duplicates", default="sum", choices=("sum", "last", "max", "error"),
                        help="how repeated (user, item) interaction rows combine their weights")


def _run_options(parser: argparse.ArgumentParser) -> None:
    """Output, encoder, explanation and language-filter options shared by recommend and rerank."""
    parser.add_argument("--out", required=True, help="output parquet: user_id, rank, item_id, score, components")
    add_encoder_options(parser)
    parser.add_argument("--store", help="embedding store file reused across runs (xrec.store)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the encoder and the ALS fit")
    parser.add_argument("--restart", action="store_true",
                        help="discard the parts (OUT.parts) a crashed run with other settings left behind")
    parser.add_argument("--explain", type=int, default=0, metavar="N",
                        help="add each item's language and the N history items nearest to it (because_item_id, "
                             "because_lang, because_similarity); 0: none")
    parser.add_argument("--languages", nargs="+", metavar="LANG",
                        help="only items in these languages (any spelling: de, deu, deu_Latn, German; "
                             "'und' keeps items of unknown language, which every language filter "
                             "otherwise leaves out)")
    parser.add_argument("--exclude-languages", nargs="+", metavar="LANG", help="no items in these languages")
    parser.add_argument("--language-policy", default="any", choices=("any", "history"),
                        help="'history': only the languages of each user's own history")

def _models() -> tuple[tuple[str, ...], tuple[str, ...]]:
    from xrec.evaluation.recs import MODELS, NEW_LANGUAGE_MODELS
    return MODELS, NEW_LANGUAGE_MODELS


def _fit_ranker(args: argparse.Namespace):
    """``(ranker, items, interactions, encoder, vectors)``: the hybrid ranker of ``--items`` and
    ``--interactions``, fitted, or ``--ranker`` loaded (then the tables, when given, are validated
    and ``items``, ``interactions`` and ``vectors`` may be None)."""
    from xrec.catalogue.interactions import Interactions, read_interactions
    from xrec.catalogue.items import load_items
    from xrec.encoders import load_encoder
    from xrec.errors import DataError
    from xrec.ranking.content import item_vectors
    from xrec.ranking.hybrid import HybridRanker

    saved = getattr(args, "ranker", None)
    if (args.items is None or args.interactions is None) and not saved:
        raise DataError("--items and --interactions are needed to fit a ranker (or give --ranker, one saved by "
                        "xrec fit)")
    items = inter = None
    if args.items is not None:
        items = load_items(args.items, template=args.template)
    if args.interactions is not None:
        if items is None:
            raise DataError("--interactions needs --items (the catalogue its item ids are checked against)")
        inter = Interactions.build(read_interactions(args.interactions), items["item_id"],
                                   source=args.interactions, drop_unknown=args.drop_unknown,
                                   duplicates=args.duplicates)
        log.info(f"interactions: {inter.report.summary()}")
    encoder = load_encoder(args.model, threads=args.threads)
    if saved:
        ranker = HybridRanker.load(saved, encoder_fingerprint=encoder.fingerprint)
        log.info(f"ranker: loaded {saved} ({len(ranker.users)} users, {len(ranker.items)} items; fusion: "
                 f"{ranker.fusion.summary()})")
        return ranker, items, inter, encoder, None
    assert items is not None and inter is not None  # checked above: both are given when fitting
    vectors = item_vectors(encoder, items, store=args.store)
    from xrec.progress import phase

    fields = [f.strip() for f in (args.metadata or "").split(",") if f.strip()]
    tags = None
    if getattr(args, "tags", None):
        from xrec.catalogue.tables import read_table

        tags = read_table(args.tags, required=["item_id", "topic"])
    with phase("fitting the hybrid ranker (ALS, content graphs, validation slice, fusion)"):
        ranker = HybridRanker.fit(inter, vectors, texts=items["text"].to_list(),
                                  languages=items["lang"].to_list() if "lang" in items.columns else None,
                                  metadata={f: items[f].cast(pl.String).to_list() for f in fields}, topics=tags)
    log.info(f"fusion: {ranker.fusion.summary()}")
    return ranker, items, inter, encoder, vectors


def run_fit(args: argparse.Namespace) -> int:
    """``xrec fit``: fit and save the ranker (and the items' index with ``--index``)."""
    ranker, items, _, encoder, vectors = _fit_ranker(args)
    path = ranker.save(args.out, encoder_fingerprint=encoder.fingerprint)
    log.info(f"wrote {path} ({len(ranker.users)} users, {len(ranker.items)} items)")
    if args.index:
        from xrec.index import VectorIndex

        assert items is not None and vectors is not None  # xrec fit fits: it reads and embeds the items

        langs = items["lang"].to_list() if "lang" in items.columns else None
        index = VectorIndex.build(vectors, items["item_id"].to_list(), langs, kind="auto",
                                  fingerprint=encoder.fingerprint, texts=items["text"].to_list())
        index.save(args.index)
        log.info(f"wrote {args.index} (serve it: xrec serve --index {args.index} --ranker {args.out})")
    return 0


def _language_filters(args: argparse.Namespace) -> None:
    """Normalise the language options in place (a code no registry knows names its option)."""
    from xrec.catalogue.languages import filter_codes

    args.languages = filter_codes(args.languages, "--languages")
    args.exclude_languages = filter_codes(args.exclude_languages, "--exclude-languages")


def _unknown_note(args: argparse.Namespace, ranker) -> None:
    """Say how many items of unknown language the language options leave out."""
    from xrec.catalogue.languages import UNKNOWN

    if args.languages is None and args.exclude_languages is None and args.language_policy == "any":
        return
    unknown = int((ranker.content.language_codes < 0).sum())
    if unknown and UNKNOWN not in (args.languages or ()):
        log.warning(f"the language filters leave out {unknown} items of unknown language "
                    f"(add {UNKNOWN} to --languages to keep them)")


def run_recommend(args: argparse.Namespace) -> int:
    from xrec.errors import DataError
    from xrec.ranking.batch import read_users, recommend_to_parquet

    if args.k < 1:
        raise DataError(f"--k {args.k}: must be at least 1")
    check_writable(args.out)  # --store is checked before encoding, when it needs writing
    if args.only_topics and not args.tags:
        raise DataError("--only-topics needs --tags (the items' topics: item_id, topic[, topic_score])")
    _language_filters(args)
    ranker, *_ = _fit_ranker(args)
    _unknown_note(args, ranker)
    if args.k > len(ranker.items):
        log.warning(f"--k {args.k} exceeds the catalogue ({len(ranker.items)} items); users get every unseen item")
    users = ranker.users.ids if args.users == "all" else read_users(args.users)
    unknown = int((ranker.users.index(users) < 0).sum())
    if unknown:
        log.warning(f"{unknown} of {len(users)} users have no interactions; they get the most popular items")
    out = recommend_to_parquet(ranker, users, args.k, args.out, batch_size=args.batch_size,
                               restart=args.restart, explain=args.explain, languages=args.languages,
                               exclude_languages=args.exclude_languages, language_policy=args.language_policy,
                               topics=args.only_topics)
    log.info(f"wrote {out}")
    return 0


def run_rerank(args: argparse.Namespace) -> int:
    from xrec.catalogue.tables import read_table
    from xrec.errors import DataError
    from xrec.ranking.batch import rerank_to_parquet
    from xrec.ranking.rerank import prepare_candidates

    if args.k is not None and args.k < 1:
        raise DataError(f"--k {args.k}: must be at least 1")
    check_writable(args.out)
    candidates = read_table(args.candidates, required=["user_id", "item_id"])
    _language_filters(args)
    ranker, *_ = _fit_ranker(args)
    _unknown_note(args, ranker)
    _, report = prepare_candidates(ranker, None, candidates, on_unknown=args.on_unknown,
                                   exclude_seen=not args.keep_seen)
    log.info(f"candidates: {report.summary()}")
    out = rerank_to_parquet(ranker, candidates, args.k, args.out, batch_size=args.batch_size,
                            on_unknown=args.on_unknown, upstream_weight=args.upstream_weight,
                            exclude_seen=not args.keep_seen, explain=args.explain, restart=args.restart,
                            languages=args.languages, exclude_languages=args.exclude_languages,
                            language_policy=args.language_policy)
    log.info(f"wrote {out}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from xrec.artifacts import write_json
    from xrec.encoders import load_encoder
    from xrec.evaluation.recs import evaluate_recs, format_report, plot_report
    from xrec.evaluation.splits import load_split
    from xrec.ranking.content import item_vectors

    check_writable(args.json)
    metadata = None if args.metadata is None else [f.strip() for f in args.metadata.split(",") if f.strip()]
    split = load_split(args.data, args.test, template=args.template, new_language=args.new_language,
                       metadata=metadata, seed=args.seed, drop_unknown=args.drop_unknown, new_items=args.new_items)
    encoder = load_encoder(args.model, threads=args.threads)
    vectors = item_vectors(encoder, split.items, store=args.store, progress=True)
    names = None if args.models is None else [n.strip() for n in args.models.split(",") if n.strip()]
    report = evaluate_recs(split, vectors, names, threads=args.threads, seed=args.seed, progress=True)
    report["protocol"]["encoder"] = {"name": encoder.name, "fingerprint": encoder.fingerprint}
    write_json(args.json, report)
    plot = Path(args.plot) if args.plot else Path(args.json).with_suffix(".png")
    plot_report(report, plot)
    print(format_report(report))
    print(f"\nwrote {args.json} and {plot}")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from xrec.bench.recommend import format_results, run_recommend_bench

    sample = {} if args.sample_users is None else {"sample_users": args.sample_users or None}
    results = run_recommend_bench(data=args.data or None, synthetic=args.synthetic or None, k=args.k,
                  threads=args.threads, encoder_name=args.model, store=args.store, **sample)
    print(format_results(results))
    if args.json:
        from xrec.artifacts import write_json

        write_json(args.json, results)
    return 0


def run_scale(args: argparse.Namespace) -> int:
    from xrec.bench.scale import run_scale_bench

    scales = tuple(int(x) for x in args.items.split(",") if x.strip())
    run_scale_bench(args.json, args.plot, scales=scales, per_user=args.per_user, threads=args.threads,
                    timeout_s=args.timeout)
    return 0
