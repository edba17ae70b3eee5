"""The ``xrec`` command line: thin layers over the public API.

One vocabulary across commands: the encoder options are defined once (:func:`add_encoder_options`);
``--store`` is always the embedding cache; ``--topic-model`` a topic model directory,
``--only-topics`` topic names; lists are space-separated; data goes to stdout or files, status to
the log on stderr.
"""

from __future__ import annotations

import argparse


def add_encoder_options(parser: argparse.ArgumentParser, *, device: bool = False, precision: bool = False,
                        model_default: str | None = "bundled",
                        model_help: str = "encoder: bundled, a local Hugging Face model directory, or a hub id"
                        ) -> None:
    """``--model`` (and ``--device``, ``--precision`` where the command takes them): every command
    that loads an encoder defines its encoder options here."""
    from xrec.encoders.transformers_encoder import ALL_PRECISIONS

    parser.add_argument("--model", default=model_default, help=model_help)
    if device:
        parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    if precision:
        parser.add_argument("--precision", default="auto", choices=ALL_PRECISIONS,
                            help="compute precision (auto: the fastest faithful CPU path of this machine, "
                                 "measured once; bf16/fp16 on GPU; onnx-fp32, int8: ONNX Runtime; "
                                 "ov-int8: OpenVINO)")
