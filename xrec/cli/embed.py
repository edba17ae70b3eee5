"""``xrec embed``: embed an items table into a parquet store file."""

from __future__ import annotations

import argparse
import sys

from xrec.encoders import ALL_PRECISIONS, load_encoder
from xrec.store import embed_items
from xrec.tables import read_table, validate_items


def register(commands: argparse._SubParsersAction, evaluate: argparse._SubParsersAction,
             bench: argparse._SubParsersAction) -> None:
    """Add ``xrec embed``."""
    parser = commands.add_parser(
        "embed", help="embed an items table (item_id, text[, lang]) as passages",
        description="Embed ITEMS (parquet, CSV or JSONL with item_id, text) into OUT.parquet "
                    "(item_id, embedding, text_hash; ITEMS first, in input order). An existing OUT made "
                    "by the same encoder is reused: only new or changed texts are embedded, and its "
                    "rows of other items are kept (several catalogues or processes can share one "
                    "store).")
    parser.add_argument("items", help="items table: parquet, CSV or JSONL (.gz allowed)")
    parser.add_argument("--out", required=True, help="output parquet file")
    add_model_arguments(parser)
    parser.set_defaults(func=run)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every command that loads an encoder shares."""
    parser.add_argument("--model", default="bundled",
                        help="'bundled', a local Hugging Face model directory, or a hub id")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--precision", default="auto", choices=ALL_PRECISIONS,
                        help="compute precision (auto: the fastest faithful CPU path of this machine, measured once; "
                             "bf16/fp16 on GPU)")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward pass")


def run(args: argparse.Namespace) -> int:
    """Embed the items table and write the store file."""
    items = validate_items(read_table(args.items, required=["item_id", "text"]), args.items)
    encoder = load_encoder(args.model, device=args.device, precision=args.precision,
                           batch_size=args.batch_size)
    vectors = embed_items(encoder, items["item_id"].to_list(), items["text"].to_list(),
                          store=args.out, batch_size=args.batch_size)
    print(f"wrote {len(vectors)} embeddings (dim {encoder.dim}) to {args.out}", file=sys.stderr)
    return 0
