"""ONNX graphs of a Hugging Face encoder, exported once and cached beside the model.

:func:`onnx_model_dir` returns a directory holding ``model-fp32.onnx`` (the model with mean pooling
inside the graph, its attention, layer norms and GELU fused by ONNX Runtime's transformer optimiser)
and ``model-int8.onnx`` (the same graph with the weights of every matrix product quantised to int8
per output channel, activations quantised per call; the embedding table stays float32), and
``model-w8.onnx`` for OpenVINO (the unfused graph with every weight matrix stored as int8 per output
channel behind a ``DequantizeLinear``, which OpenVINO runs as int8 matrix products with activations
quantised per group of 128 at run time). It is built offline from the model's own weights the first
time an exported precision is asked for, under a lock, and renamed into place atomically with a
manifest naming the weights it came from; a directory without a complete manifest (a killed export)
is rebuilt, never loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

from xrec.artifacts import build_once, read_manifest, write_manifest
from xrec.errors import ArtifactError, ModelError

log = logging.getLogger(__name__)

KIND = "xrec.onnx_encoder"
FORMAT_VERSION = 2
GRAPHS = {"onnx-fp32": "model-fp32.onnx", "int8": "model-int8.onnx", "ov-int8": "model-w8.onnx"}
INPUTS = ("input_ids", "attention_mask")
OPSET = 17
#: Dynamic int8 quantisation settings (recorded in the manifest). The feed-forward output
#: projections of the middle third of the layers stay float32, which keeps the int8 graph
#: faithful to fp32 (figures: benchmarks/README.md, "Encoder fast path").
INT8 = {"weight_type": "QInt8", "per_channel": True, "op_types": ["MatMul", "Attention"],
        "float32": "feed-forward output MatMul of the middle third of the layers"}
#: OpenVINO's int8 graph: weights only, symmetric per output channel; OpenVINO quantises the
#: activations per group of ``group_size`` inputs (figures: benchmarks/README.md, "Encoder fast path").
OV_INT8 = {"weights": "int8 symmetric per output channel", "group_size": 128}


def onnx_model_dir(model_dir: str | Path, file_hashes: Mapping[str, str],
                   root: str | Path | None = None) -> tuple[Path, dict]:
    """The cached ONNX export of ``model_dir`` (identified by ``file_hashes``), built if needed."""
    from xrec.encoders.bundled import cache_dir

    key = hashlib.sha256(json.dumps(dict(sorted(file_hashes.items()))).encode()).hexdigest()[:20]
    base = Path(root) if root is not None else cache_dir()
    target = base / "onnx" / f"{key}-v{FORMAT_VERSION}"

    def build(tmp: Path) -> dict:
        log.warning("exporting %s to ONNX (fp32, int8 and OpenVINO int8) in %s, once", model_dir, target)
        export(Path(model_dir), tmp)
        return write_manifest(tmp, KIND, FORMAT_VERSION, {
            "source_key": key, "source_files": dict(sorted(file_hashes.items())),
            "graphs": GRAPHS, "inputs": list(INPUTS), "opset": OPSET, "int8": INT8, "ov_int8": OV_INT8,
            "onnxruntime_version": _ort_version()})

    manifest = build_once(target, lambda: _valid(target, key), build)
    return target, manifest


def _valid(target: Path, key: str) -> dict | None:
    if not target.exists():
        return None
    try:
        return read_manifest(target, KIND, FORMAT_VERSION, expect={"source_key": key}, verify=False)
    except ArtifactError as exc:
        log.warning("ONNX export %s is incomplete or stale, rebuilding: %s", target, exc)
        return None


def _ort_version() -> str:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ModelError("ONNX precisions need the 'onnxruntime' package (pip install onnxruntime)") from exc
    return onnxruntime.__version__


def export(model_dir: Path, out: Path) -> None:
    """Write the fp32 and int8 graphs of ``model_dir`` into ``out``, one step at a time, each
    step's copies of the weights freed before the next (the peak memory is one step's)."""
    import gc

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    _ort_version()
    raw = out / "raw.onnx"
    config = _export_raw(model_dir, raw)
    gc.collect()
    weight_only_int8(raw, out / GRAPHS["ov-int8"])
    gc.collect()
    fp32 = out / GRAPHS["onnx-fp32"]
    optimized = optimize_model(str(raw), model_type="bert", num_heads=int(config.num_attention_heads),
                               hidden_size=int(config.hidden_size))
    optimized.save_model_to_file(str(fp32))
    layers = int(config.num_hidden_layers)
    middle = range(layers // 3, layers - layers // 3)
    keep = [node.name for node in optimized.model.graph.node
            if (m := re.search(r"layer\.(\d+)/output/dense/MatMul", node.name)) and int(m.group(1)) in middle]
    del optimized
    gc.collect()
    raw.unlink()
    quantize_dynamic(str(fp32), str(out / GRAPHS["int8"]), weight_type=QuantType.QInt8,
                     per_channel=INT8["per_channel"], op_types_to_quantize=INT8["op_types"],
                     nodes_to_exclude=keep, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def _export_raw(model_dir: Path, raw: Path):
    """The model with mean pooling, exported by torch to ``raw``; returns its config (the model
    itself is freed on return)."""
    import torch
    from transformers import AutoModel

    try:
        model = AutoModel.from_pretrained(str(model_dir), local_files_only=True,
                                          attn_implementation="eager").float().eval()
    except Exception as exc:
        raise ModelError(f"{model_dir}: cannot load the model for ONNX export "
                         f"({type(exc).__name__}: {exc})") from exc
    ids = torch.full((2, 8), 5, dtype=torch.long)
    mask = torch.ones((2, 8), dtype=torch.long)
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
            "pooled": {0: "batch"}}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(_pooled(model), (ids, mask), str(raw), input_names=list(INPUTS),
                          output_names=["pooled"], dynamic_axes=axes, opset_version=OPSET,
                          dynamo=False)
    return model.config


def weight_only_int8(source: Path, target: Path) -> int:
    """Write ``source`` with each 2-D MatMul weight stored as int8 (symmetric, one scale per output
    column) behind a ``DequantizeLinear``; activations and every other tensor stay float32.
    Returns how many matrices were quantised."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    nodes, count = [], 0
    for node in graph.node:
        name = node.input[1] if node.op_type == "MatMul" and len(node.input) == 2 else None
        if name in weights and len(weights[name].dims) == 2:
            w = numpy_helper.to_array(weights[name]).astype(np.float32)
            scale = np.abs(w).max(axis=0) / 127.0
            scale[scale == 0] = 1.0
            q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
            graph.initializer.remove(weights.pop(name))
            graph.initializer.extend([numpy_helper.from_array(q, f"{name}_int8"),
                                      numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale"),
                                      numpy_helper.from_array(np.zeros(w.shape[1], np.int8), f"{name}_zero")])
            nodes.append(helper.make_node("DequantizeLinear", [f"{name}_int8", f"{name}_scale", f"{name}_zero"],
                                          [f"{name}_dequantized"], axis=1, name=f"{name}_dequantize"))
            node.input[1] = f"{name}_dequantized"
            count += 1
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(target))
    return count


def _pooled(model):
    """A ``torch.nn.Module`` giving the last hidden states mean-pooled over the attention mask."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, input_ids, attention_mask):
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)

    return Pooled()
