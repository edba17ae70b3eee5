"""``xrec embed``: embed an items table into a parquet store file."""

from __future__ import annotations

import argparse
import sys

from xrec.artifacts import check_writable
from xrec.catalogue.items import validate_items
from xrec.catalogue.tables import read_table
from xrec.cli import add_encoder_options
from xrec.encoders import load_encoder
from xrec.store import embed_items


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
    add_encoder_options(parser, device=True, precision=True)
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward pass")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Embed the items table and write the store file."""
    check_writable(args.out)
    items = validate_items(read_table(args.items, required=["item_id", "text"]), args.items)
    encoder = load_encoder(args.model, device=args.device, precision=args.precision,
                           batch_size=args.batch_size)
    vectors = embed_items(encoder, items["item_id"].to_list(), items["text"].to_list(),
                          store=args.out, batch_size=args.batch_size)
    print(f"wrote {len(vectors)} embeddings (dim {encoder.dim}) to {args.out}", file=sys.stderr)
    return 0
