"""``load_encoder``: the one way to get an :class:`~xrec.encoders.Encoder`."""

from __future__ import annotations

import os

from xrec.encoders.base import Encoder

BUNDLED = "bundled"


def load_encoder(model: str | os.PathLike[str] = "bundled", *, device: str | None = None,
                 precision: str = "auto", batch_size: int = 32, threads: int | None = None) -> Encoder:
    """Load ``bundled`` (the embedded multilingual-e5-small), a local HF directory or a hub id.

    ``device``: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when present). ``precision``: ``"fp32"``,
    ``"bf16"``, ``"fp16"`` or ``"auto"`` (fp32 on the CPU, bf16/fp16 on a GPU) run torch;
    ``"onnx-fp32"`` and ``"int8"`` run ONNX Runtime on the CPU (:class:`OnnxEncoder`, graphs
    exported once beside the model). Precision does not change the fingerprint (vectors stay
    comparable). ``threads``: intra-op threads (``None``: all cores). The bundled model is
    materialised once as a Hugging Face directory under ``$XREC_CACHE_DIR`` (default
    ``~/.cache/xrec``); loading is offline.
    """
    from xrec.encoders.onnx_encoder import ONNX_PRECISIONS, OnnxEncoder
    from xrec.encoders.transformers_encoder import TransformersEncoder

    runtime = OnnxEncoder if precision in ONNX_PRECISIONS else TransformersEncoder

    if str(model) == BUNDLED:
        from xrec.encoders.bundled import PASSAGE_PREFIX, QUERY_PREFIX, WEIGHTS, TOKENIZER, bundled_model_dir

        directory, manifest = bundled_model_dir()
        files = manifest["files"]
        hashes = {WEIGHTS: files[WEIGHTS]["sha256"], TOKENIZER: files[TOKENIZER]["sha256"]}
        encoder = runtime(
            directory, device=device, precision=precision, batch_size=batch_size, threads=threads,
            query_prefix=QUERY_PREFIX, passage_prefix=PASSAGE_PREFIX,
            max_length=manifest["max_length"], name=BUNDLED, file_hashes=hashes)
        if encoder.fingerprint != manifest["fingerprint"]:  # pragma: no cover - internal consistency
            from xrec.errors import ModelError

            raise ModelError(f"{directory}: fingerprint differs from its manifest; delete the folder")
        return encoder
    return runtime(model, device=device, precision=precision, batch_size=batch_size, threads=threads)
