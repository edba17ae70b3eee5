"""``OnnxEncoder``: the same model, tokenizer and pooling run from exported graphs on the CPU.

Backends beside the torch one (which stays the reference): ``precision="onnx-fp32"`` runs the
fused float32 graph in ONNX Runtime (cosine with torch fp32 >= 0.9999), ``precision="int8"`` its
dynamically quantised graph (faster, cosine >= 0.97 with fp32), ``precision="ov-int8"`` the
weight-int8 graph in OpenVINO (optional ``openvino`` package; activations quantised per group of
128, bf16 arithmetic where the CPU has it: faster than ``int8`` and closer to fp32 where measured;
see README for the figures). The graphs are exported from the model's own weights once
(:mod:`xrec.encoders.onnx_export`).
Tokenisation, windows of long texts, prefixes and the fingerprint are those of
:class:`TransformersEncoder`: vectors stay comparable with every other precision.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from xrec.encoders.transformers_encoder import TransformersEncoder, model_file_hashes, resolve_model_dir
from xrec.errors import ModelError

ONNX_PRECISIONS = ("onnx-fp32", "int8", "ov-int8")
#: A graph runner: ``(input_ids, attention_mask) -> pooled vectors``.
Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]


def default_threads() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


class OnnxEncoder(TransformersEncoder):
    """Mean-pooled, L2-normalised embeddings computed by ONNX Runtime (CPU).

    Arguments as :class:`TransformersEncoder`; ``precision`` is ``"onnx-fp32"``, ``"int8"`` or
    ``"ov-int8"``; ``threads`` the runtime's threads (``None``: all cores of this process).
    """

    def __init__(self, model: str | os.PathLike[str], *, precision: str = "int8",
                 device: str | None = "cpu", file_hashes: Mapping[str, str] | None = None,
                 **kwargs) -> None:
        if precision not in ONNX_PRECISIONS:
            raise ModelError(f"precision {precision!r} is not an ONNX precision ({', '.join(ONNX_PRECISIONS)})")
        if device not in (None, "cpu", "auto"):
            raise ModelError(f"precision {precision!r} runs on the CPU only, not on {device!r}")
        if file_hashes is None:
            file_hashes = model_file_hashes(resolve_model_dir(model))
        self._source_hashes = dict(file_hashes)
        super().__init__(model, device="cpu", precision=precision, file_hashes=file_hashes, **kwargs)

    def _setup_runtime(self, path: Path, precision: str) -> None:
        from transformers import AutoConfig, AutoTokenizer

        from xrec.encoders.auto import path as encoder_path
        from xrec.encoders.onnx_export import GRAPHS, onnx_model_dir

        self.precision = precision
        self.path = encoder_path(precision)
        self.dtype = None
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self.config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        except Exception as exc:
            raise ModelError(f"{path}: cannot load the tokenizer or config ({type(exc).__name__}: {exc})") from exc
        directory, _ = onnx_model_dir(path, self._source_hashes)
        graph = directory / GRAPHS[precision]
        threads = self.threads or default_threads()
        try:
            self._runner = (openvino_runner if precision == "ov-int8" else onnxruntime_runner)(graph, threads)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"{graph}: the runtime cannot load it ({type(exc).__name__}: {exc}); "
                             f"delete {directory} to re-export") from exc
        self.model = None

    def _run(self, batches: list[list[int]], windows: list, show: bool):
        """Yield the pooled vectors of each batch, in order (the runtime uses ``threads`` cores)."""
        from xrec.progress import Progress

        bar = Progress(len(batches), "encode", "batches", show=show)
        try:
            for batch in batches:
                yield self._forward([windows[w][1] for w in batch])
                bar.update(1)
        finally:
            bar.close()

    def _forward(self, sequences: list[list[int]]) -> np.ndarray:
        width = max(len(s) for s in sequences)
        ids = np.full((len(sequences), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(sequences), width), dtype=np.int64)
        for i, seq in enumerate(sequences):
            ids[i, :len(seq)] = seq
            mask[i, :len(seq)] = 1
        return self._runner(ids, mask).astype(np.float64)

    def __repr__(self) -> str:
        return (f"OnnxEncoder(name={self.name!r}, dim={self.dim}, precision={self.precision!r}, "
                f"max_length={self.max_length})")


def onnxruntime_runner(graph: Path, threads: int) -> Runner:
    """An ONNX Runtime session over ``graph`` with ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {"input_ids": ids, "attention_mask": mask})[0])
    return run


def openvino_runner(graph: Path, threads: int) -> Runner:
    """``graph`` compiled by OpenVINO for the CPU (one request at a time, ``threads`` threads)."""
    from xrec.encoders.onnx_export import OV_INT8

    try:
        import openvino
    except ImportError as exc:
        raise ModelError("precision 'ov-int8' needs the 'openvino' package (pip install 'xrec[openvino]')") from exc
    compiled = openvino.Core().compile_model(str(graph), "CPU", {
        "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
        "DYNAMIC_QUANTIZATION_GROUP_SIZE": str(OV_INT8["group_size"])})
    request = compiled.create_infer_request()
    lock = threading.Lock()

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with lock:
            return request.infer({"input_ids": ids, "attention_mask": mask})[0].copy()
    return run
