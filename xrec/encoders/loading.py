"""``load_encoder``: the one way to get an :class:`~xrec.encoders.Encoder`."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from xrec.encoders.base import Encoder

BUNDLED = "bundled"

log = logging.getLogger(__name__)


def load_encoder(model: str | os.PathLike[str] = "bundled", *, device: str | None = None,
                 precision: str = "auto", batch_size: int = 32, threads: int | None = None) -> Encoder:
    """Load ``bundled`` (the embedded multilingual-e5-small), a local HF directory or a hub id.

    ``device``: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when present). ``precision``: ``"auto"``
    (on the CPU the fastest faithful path of this machine, measured once: :mod:`xrec.encoders.auto`;
    bf16/fp16 on a GPU); ``"fp32"``, ``"bf16"``, ``"fp16"`` run torch;
    ``"onnx-fp32"`` and ``"int8"`` run ONNX Runtime on the CPU, ``"ov-int8"`` OpenVINO (the optional
    ``openvino`` package); all three are :class:`OnnxEncoder`, graphs exported once beside the
    model. Precision does not change the fingerprint (vectors stay comparable). ``threads``:
    intra-op threads (``None``: all cores). The bundled model is materialised once as a Hugging Face
    directory under ``$XREC_CACHE_DIR`` (default ``~/.cache/xrec``); loading is offline.

    When the encoder's identity is already known (the bundled model's from its manifest, a model
    directory's from :mod:`xrec.encoders.identity`, keyed by the content of its files), the weights
    load on first use (:class:`~xrec.encoders.lazy.LazyEncoder`): a call whose vectors are all in
    an embedding store starts without importing torch. ``device="cuda"`` always loads at once, so
    that a missing GPU is reported here.
    """
    from xrec.devices import cuda_available
    from xrec.encoders.auto import path as encoder_path
    from xrec.encoders.identity import directory_key, recall, remember
    from xrec.encoders.lazy import LazyEncoder
    from xrec.encoders.onnx_encoder import ONNX_PRECISIONS, OnnxEncoder
    from xrec.encoders.transformers_encoder import TransformersEncoder

    _check_settings(precision, batch_size, threads)
    lazy = device is None or not str(device).startswith("cuda")
    on_cpu = str(device).startswith("cpu") or (device is None and not cuda_available())
    settings = {"device": device, "batch_size": batch_size, "threads": threads}

    def runtime(at: str):
        return OnnxEncoder if at in ONNX_PRECISIONS else TransformersEncoder

    if str(model) == BUNDLED:
        from xrec.encoders.bundled import PASSAGE_PREFIX, QUERY_PREFIX, TOKENIZER, WEIGHTS, bundled_model_dir

        directory, manifest = bundled_model_dir()
        files = manifest["files"]
        hashes = {WEIGHTS: files[WEIGHTS]["sha256"], TOKENIZER: files[TOKENIZER]["sha256"]}

        def build(at: str) -> Encoder:
            return runtime(at)(directory, **settings, precision=at, query_prefix=QUERY_PREFIX,
                               passage_prefix=PASSAGE_PREFIX, max_length=manifest["max_length"], name=BUNDLED,
                               file_hashes=hashes)

        precision = _auto(BUNDLED, precision, on_cpu, hashes, measure=False)

        def load_bundled() -> Encoder:
            encoder = build(_auto(BUNDLED, precision, on_cpu, hashes))
            if encoder.fingerprint != manifest["fingerprint"]:  # pragma: no cover - internal consistency
                from xrec.errors import ModelError

                raise ModelError(f"{directory}: fingerprint differs from its manifest; delete the folder")
            return encoder

        identity = {"fingerprint": manifest["fingerprint"], "dim": manifest["dim"], "name": BUNDLED,
                    "query_prefix": QUERY_PREFIX, "passage_prefix": PASSAGE_PREFIX,
                    "max_length": manifest["max_length"],
                    "path": encoder_path(precision) if on_cpu and precision != "auto" else None}
        return LazyEncoder(identity, load_bundled) if lazy else load_bundled()

    if not Path(model).expanduser().is_dir():
        return runtime(precision)(model, **settings, precision=precision)  # a hub id (or an error naming it)
    hashes: dict[str, str] = {}
    if precision == "auto" and on_cpu:
        from xrec.encoders.transformers_encoder import model_file_hashes

        hashes = model_file_hashes(Path(model).expanduser())
        precision = _auto(str(model), precision, on_cpu, hashes, measure=False)

    def load() -> Encoder:
        at = precision
        if precision == "auto" and on_cpu:  # a directory that is no model: the reference path says why
            from xrec.errors import ModelError

            at = "fp32"
            if (Path(model).expanduser() / "config.json").is_file():
                try:
                    at = _auto(str(model), precision, on_cpu, hashes)
                except ModelError as error:  # the reference path loads it, or says what is wrong
                    log.warning("%s; loading the fp32 reference path", error)
        return runtime(at)(model, **settings, precision=at)

    key = directory_key(Path(model).expanduser(), name=str(model))
    identity = recall(key)
    if identity is not None and lazy:
        return LazyEncoder({**identity, "path": encoder_path(precision) if on_cpu and precision != "auto" else None},
                           load)
    encoder = load()
    remember(key, encoder)
    return encoder


def _auto(model: str, precision: str, on_cpu: bool, hashes: dict[str, str], measure: bool = True) -> str:
    """``precision``, with ``auto`` on the CPU resolved to this machine's fastest faithful path
    (``measure=False``: only when already measured, else still ``auto``, resolved at load)."""
    if precision != "auto" or not on_cpu:
        return precision
    from xrec.encoders.auto import cached_choice, choose

    if not measure:
        found = cached_choice(hashes)
        return precision if found is None else found["chosen"]
    return choose(model, hashes)["chosen"]


def _check_settings(precision: str, batch_size: int, threads: int | None) -> None:
    """The checks the encoder makes on its settings, made before any (possibly deferred) load."""
    from xrec.encoders.transformers_encoder import ALL_PRECISIONS
    from xrec.errors import ModelError

    if precision not in ALL_PRECISIONS:
        raise ModelError(f"precision {precision!r} unknown; expected one of {', '.join(ALL_PRECISIONS)}")
    if precision == "ov-int8":
        import importlib.util

        if importlib.util.find_spec("openvino") is None:
            raise ModelError("precision 'ov-int8' needs the 'openvino' package (pip install 'xrec[openvino]')")
    if batch_size < 1:
        raise ModelError(f"batch_size must be >= 1, got {batch_size}")
    if threads is not None and int(threads) < 1:
        raise ModelError(f"threads must be >= 1, got {threads}")
