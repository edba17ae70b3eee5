"""``xrec similar``, ``xrec evaluate bitext|parallel`` and ``xrec bench retrieval``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from xrec.artifacts import check_writable, write_json
from xrec.cli import add_encoder_options
from xrec.errors import DataError


def register(commands: Any, evaluate: Any, bench: Any) -> None:
    """Add this module's subcommands to the ``xrec`` parser."""
    p = commands.add_parser(
        "similar", help="nearest items of given items or of free text, optionally across languages",
        description="The k nearest items of items (--ids) or of free text (--text). Items come from "
                    "a saved index (--index DIR) or an items table (--items FILE with item_id, text "
                    "and optional lang; embedded with --model, cached with --store).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--index", help="a saved VectorIndex directory")
    src.add_argument("--items", help="items table (parquet/CSV/JSONL): item_id, text[, lang]")
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument("--ids", nargs="+", help="item ids to find neighbours of")
    query.add_argument("--text", nargs="+", help="free text(s), embedded as queries")
    p.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    langs = p.add_mutually_exclusive_group()
    langs.add_argument("--languages", nargs="+",
                       help="only items in these languages (any spelling: de, deu, deu_Latn, German; "
                            "'und' keeps items of unknown language)")
    langs.add_argument("--other-languages", action="store_true",
                       help="only items in languages other than the query item's (or --lang)")
    p.add_argument("--lang", help="language of --text queries (for --other-languages)")
    add_encoder_options(p)
    p.add_argument("--store", help="embedding store file to reuse/update when embedding --items")
    p.add_argument("--kind", default="auto", help="index kind when building from --items (default auto)")
    p.add_argument("--save-index", help="also save the index built from --items to this directory")
    p.add_argument("--tags", help="item topics: item_id, topic (e.g. the main job's book_topics.parquet)")
    p.add_argument("--only-topics", nargs="+", metavar="TOPIC",
                   help="only items tagged with these topics (needs --tags)")
    p.add_argument("--format", choices=["table", "json"], default="table", help="how results are printed on stdout")
    p.set_defaults(func=run_similar)

    b = evaluate.add_parser(
        "bitext", help="cross-language top-1 lookup on Tatoeba-format bitext",
        description="For each language, the share of sentences whose nearest English sentence is "
                    "their translation (xx2en) and the reverse (en2xx).")
    b.add_argument("--data", required=True, help="pairs file (lang, pair_id, text, eng), JSONL(.gz)")
    b.add_argument("--json", required=True, help="write the results here")
    b.add_argument("--languages", nargs="+",
                   help="only these languages, evaluated in this order (the JSON is rewritten "
                        "after each language, with complete=false until the end)")
    _embedding_options(b, "encoder role for both sides (e5 uses query: for symmetric tasks)")
    b.set_defaults(func=run_bitext)

    q = evaluate.add_parser(
        "parallel", help="lookup against a pivot language on SIB-200-format data",
        description="For each language, the share of sentences whose nearest pivot-language sentence is "
                    "their translation and the reverse, and how strongly one pool favours a query's "
                    "own language.")
    q.add_argument("--data", required=True, help="split file (lang, index_id, text), JSONL(.gz)")
    q.add_argument("--pivot", default="eng_Latn", help="pivot language (default eng_Latn)")
    q.add_argument("--json", required=True, help="write the results here")
    q.add_argument("--languages", nargs="+", help="only these languages (the pivot is always kept)")
    _embedding_options(q, "encoder role for both sides")
    q.set_defaults(func=run_parallel)

    r = bench.add_parser(
        "retrieval", help="index kinds vs numpy exact and hnswlib: latency, recall, memory",
        description="Build each index kind on synthetic or given vectors and time single and batched "
                    "queries against numpy's exact search and hnswlib; JSON and a recall-vs-latency PNG.")
    r.add_argument("--n", type=int, default=100_000, help="synthetic corpus size (default 100000)")
    r.add_argument("--dim", type=int, default=384, help="synthetic dimension (default 384)")
    r.add_argument("--queries", type=int, default=1000, help="number of queries (default 1000)")
    r.add_argument("--vectors", help="corpus vectors, float32 .npy [n, d]")
    r.add_argument("--query-vectors", help="query vectors, float32 .npy [q, d]")
    r.add_argument("--kinds", nargs="+", default=None,
                   help="index kinds or FAISS factory strings (default: exact hnsw ivf ivfpq)")
    r.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    r.add_argument("--single", type=int, default=300, help="single queries timed per case")
    r.add_argument("--json", required=True, help="write the results here")
    r.add_argument("--plot", help="recall-vs-latency PNG (default: beside --json)")
    r.add_argument("--seed", type=int, default=0, help="random seed of the synthetic data and queries")
    r.set_defaults(func=run_bench)


def _embedding_options(p: argparse.ArgumentParser, text_kind_help: str) -> None:
    """The encoder and embedding-cache options of the retrieval evaluations."""
    add_encoder_options(p, precision=True)
    p.add_argument("--text-kind", default="query", choices=("query", "passage"), help=text_kind_help)
    p.add_argument("--store", help="embedding store file reused between runs")
    p.add_argument("--batch-size", type=int, default=None,
                   help="texts per forward pass (default: the encoder's, 32)")


# ---------------------------------------------------------------------- similar
def run_similar(args: argparse.Namespace) -> int:
    from xrec.index.similar import similar_items, similar_texts

    if args.k <= 0:
        raise DataError(f"--k must be positive, got {args.k}")
    if args.items is not None:
        check_writable(args.save_index)  # --store is checked before encoding, when it needs writing
    if args.text is not None:
        result = similar_texts(args.text, k=args.k, index_dir=args.index, items=args.items,
                               model=args.model, store=args.store, kind=args.kind,
                               languages=args.languages, other_languages=args.other_languages,
                               query_lang=args.lang, save_index=args.save_index, topics=args.only_topics,
                               tags=args.tags)
    else:
        result = similar_items(args.ids, k=args.k, index_dir=args.index, items=args.items,
                               model=args.model, store=args.store, kind=args.kind,
                               languages=args.languages, other_languages=args.other_languages,
                               save_index=args.save_index, topics=args.only_topics, tags=args.tags)
    if args.format == "json":
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return 0
    for entry in result["queries"]:
        head = " ".join(str(entry[key]) for key in ("id", "text") if entry.get(key) is not None)
        print(f"# {head[:100]}" + (f" [{entry['lang']}]" if entry.get("lang") else ""))
        for rank, hit in enumerate(entry["neighbours"], 1):
            text = f"  {hit['text'][:70]}" if hit.get("text") else ""
            lang = hit.get("lang") or "-"
            print(f"{rank:3d}  {hit['score']:.4f}  {lang:10s} {hit['id']}{text}")
    if result.get("unknown_language_left_out"):
        print(f"# {result['unknown_language_left_out']} items of unknown language left out by the language "
              "filter (add 'und' to --languages to keep them)")
    return 0


# ---------------------------------------------------------------------- evaluation
def run_bitext(args: argparse.Namespace) -> int:
    from xrec.datasets.tatoeba import load_pairs
    from xrec.encoders import load_encoder
    from xrec.evaluation.bitext import evaluate_bitext

    pairs = load_pairs(args.data, args.languages)
    encoder = load_encoder(args.model, precision=args.precision)
    result = evaluate_bitext(encoder, pairs, kind=args.text_kind, cache=args.store,
                             batch_size=args.batch_size, progress=sys.stderr.isatty(),
                             languages=args.languages,
                             on_language=lambda partial: write_json(args.json, partial))
    write_json(args.json, result)
    print(f"{'lang':8s} {'n':>5s} {'xx2en':>7s} {'en2xx':>7s}")
    for lang, row in result["languages"].items():
        print(f"{lang:8s} {row['n']:5d} {row['xx2en']:7.3f} {row['en2xx']:7.3f}")
    print(f"{'mean':8s} {'':5s} {result['mean_xx2en']:7.3f} {result['mean_en2xx']:7.3f}")
    return 0


def run_parallel(args: argparse.Namespace) -> int:
    from xrec.datasets.sib200 import load_file
    from xrec.encoders import load_encoder
    from xrec.evaluation.parallel import evaluate_parallel

    languages = None if args.languages is None else sorted(set(args.languages) | {args.pivot})
    frame = load_file(args.data, languages)
    encoder = load_encoder(args.model, precision=args.precision)
    result = evaluate_parallel(encoder, frame, pivot=args.pivot, kind=args.text_kind,
                               cache=args.store, batch_size=args.batch_size,
                               progress=sys.stderr.isatty())
    write_json(args.json, result)
    print(f"{'lang':10s} {'n':>5s} {'xx2pivot':>9s} {'pivot2xx':>9s}")
    for lang, row in result["languages"].items():
        print(f"{lang:10s} {row['n']:5d} {row['xx2pivot']:9.3f} {row['pivot2xx']:9.3f}")
    print(f"{'mean':10s} {'':5s} {result['mean_xx2pivot']:9.3f} {result['mean_pivot2xx']:9.3f}")
    bias = result["language_bias"]
    print(f"own-language share of top-{bias['k']} in one pool: {bias['own_language_share']:.3f} "
          f"(unbiased space: {bias['unbiased_share']:.3f})")
    return 0


# ---------------------------------------------------------------------- bench
def run_bench(args: argparse.Namespace) -> int:
    from xrec.bench.retrieval import load_vectors, run_retrieval_bench, write_outputs

    if (args.vectors is None) != (args.query_vectors is None):
        raise DataError("give both --vectors and --query-vectors, or neither")
    corpus = queries = source = None
    if args.vectors is not None:
        corpus = load_vectors(args.vectors, "corpus vectors")
        queries = load_vectors(args.query_vectors, "query vectors")
        source = f"vectors from {args.vectors} and {args.query_vectors}"
    result = run_retrieval_bench(corpus, queries, n=args.n, dim=args.dim, n_queries=args.queries,
                                 kinds=args.kinds, k=args.k, n_single=args.single, seed=args.seed,
                                 source=source)
    write_outputs(result, args.json, args.plot, out=sys.stdout)
    return 0 if result["results"] else 1
