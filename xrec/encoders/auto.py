"""``precision="auto"`` on the CPU: the fastest faithful encoder path of this machine, measured once.

The first time ``auto`` is asked for on a CPU, each CPU path (torch fp32, the reference; ONNX
Runtime fp32 and int8; OpenVINO int8 where ``openvino`` is installed) embeds a fixed multilingual
sample (``auto_sample.txt``: 96 SIB-200 sentences of 12 languages), one path at a time in a child
process. A path is faithful when every vector's cosine to torch fp32 is at least
:data:`MIN_COSINE`; the fastest faithful path is chosen. The measurement is written atomically as
JSON beside the model's exported graphs, in a file named by the model's files and by the CPU, core
count and library versions it was made on: it is made again only when one of those changes (or the
exported graphs' format does). ``xrec bench encoder`` and the service's ``/health`` show it.

Every encoder names its :func:`path` (``torch-fp32``, ``int8/onnx-v3``, ...); embedding stores
record it and never reuse vectors of another path (:mod:`xrec.store`).
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from xrec.artifacts import write_json
from xrec.errors import ModelError

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: paths measured one at a time, timed on every other sample text
#: The least cosine to torch fp32, over every sample sentence, of a path ``auto`` may choose.
MIN_COSINE = 0.99
#: The CPU paths ``auto`` measures (precision names of ``load_encoder``), in the order measured:
#: torch fp32 first (the reference), then the usually fastest, against which the others are timed.
CANDIDATES = ("fp32", "int8", "ov-int8", "onnx-fp32")
ROUNDS = 3
#: A path whose first timed pass runs at under this share of the best faithful rate so far is
#: timed no more (it cannot be chosen).
DOMINATED = 0.75


def path(precision: str, device: str = "cpu") -> str:
    """The name of the path that computes vectors at a concrete ``precision`` on ``device``."""
    from xrec.encoders.onnx_encoder import ONNX_PRECISIONS
    from xrec.encoders.onnx_export import FORMAT_VERSION as ONNX_VERSION

    if precision in ONNX_PRECISIONS:
        return f"{precision}/onnx-v{ONNX_VERSION}"
    return f"torch-{precision}" + ("" if str(device).startswith("cpu") else "-cuda")


def precision_of(name: str) -> str:
    """The ``load_encoder`` precision of a CPU path name (the inverse of :func:`path`)."""
    return name.split("/")[0].removeprefix("torch-")


def sample() -> list[str]:
    """The fixed multilingual sample (one sentence a line; ``#`` lines are its header)."""
    text = resources.files("xrec.encoders").joinpath("auto_sample.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def machine() -> dict[str, Any]:
    """What a measurement depends on: CPU model, cores and the runtimes' versions."""
    from xrec.encoders.onnx_encoder import default_threads
    from xrec.encoders.onnx_export import FORMAT_VERSION as ONNX_VERSION

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform

        cpu = platform.processor() or platform.machine()
    versions = {}
    for name in ("torch", "onnxruntime", "openvino"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {"cpu": cpu, "cores": default_threads(), "versions": versions, "onnx_export": ONNX_VERSION}


def choice_file(file_hashes: Mapping[str, str]) -> Path:
    """Where this machine's measurement of the model with ``file_hashes`` is kept (beside its ONNX
    export): one file per model and :func:`machine` (CPU, cores, runtime versions), so that two
    environments on one machine (say, with and without OpenVINO) each keep their own."""
    from xrec.encoders.bundled import cache_dir

    key = hashlib.sha256(json.dumps(dict(sorted(file_hashes.items()))).encode()).hexdigest()[:20]
    where = hashlib.sha256(json.dumps(machine(), sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir() / "onnx" / f"{key}-auto-{where}.json"


def cached_choice(file_hashes: Mapping[str, str]) -> dict[str, Any] | None:
    """The measurement made on this machine, or None (none yet, or made on another CPU/versions)."""
    file = choice_file(file_hashes)
    try:
        found = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if found.get("format_version") != FORMAT_VERSION or found.get("machine") != machine():
        return None
    return found


def model_hashes(model: str = "bundled") -> dict[str, str]:
    """The file hashes that identify ``model`` (``bundled`` or a local model directory)."""
    if str(model) == "bundled":
        from xrec.encoders.bundled import TOKENIZER, WEIGHTS, bundled_model_dir

        files = bundled_model_dir()[1]["files"]
        return {WEIGHTS: files[WEIGHTS]["sha256"], TOKENIZER: files[TOKENIZER]["sha256"]}
    from xrec.encoders.transformers_encoder import model_file_hashes

    return model_file_hashes(Path(model).expanduser())


def summary(model: str = "bundled") -> dict[str, Any] | None:
    """This machine's ``auto`` measurement of ``model`` in short (None: not measured here yet)."""
    found = cached_choice(model_hashes(model))
    if found is None:
        return None
    return {"chosen": found["chosen"], "path": found["chosen_path"], "measured_at": found["measured_at"],
            "cpu": found["machine"]["cpu"], "cores": found["machine"]["cores"], "min_cosine": found["min_cosine"],
            "texts_per_s": {name: round(p["texts_per_s"], 1) for name, p in found["paths"].items()},
            "cosine_min": {name: round(p["cosine_min"], 4) for name, p in found["paths"].items()},
            "file": str(choice_file(model_hashes(model)))}


def choose(model: str, file_hashes: Mapping[str, str]) -> dict[str, Any]:
    """The cached measurement for this machine, else a new one (once, under a file lock, in a
    child process so that this one never holds the reference model or the export's memory).
    ``model``: ``bundled`` or a local model directory, identified by ``file_hashes``."""
    found = cached_choice(file_hashes)
    if found is not None:
        return found
    file = choice_file(file_hashes)
    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file.with_name(f".{file.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = cached_choice(file_hashes)  # another process may have measured meanwhile
        if found is not None:
            return found
        log.warning("precision 'auto': measuring this CPU's encoder paths once (%s)", ", ".join(CANDIDATES))
        code = ("import json; from xrec.encoders.auto import measure_model; "
                f"print(json.dumps(measure_model({str(model)!r})))")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if done.returncode != 0:
            tail = " | ".join((done.stderr or "").strip().splitlines()[-3:])
            raise ModelError(f"precision 'auto': measuring the encoder paths of {model} failed ({tail}); "
                             f"name a precision instead (fp32, onnx-fp32, int8, ov-int8)")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        write_json(file, result)
    log.warning("precision 'auto' on this CPU: %s (%.0f texts/s; cached in %s)", result["chosen"],
                result["paths"][result["chosen"]]["texts_per_s"], file)
    return result


def measure_model(model: str = "bundled") -> dict[str, Any]:
    """:func:`measure` of ``model`` (``bundled`` or a local model directory) on the CPU."""
    from xrec.encoders import load_encoder

    return measure(lambda at: load_encoder(model, device="cpu", precision=at))


def measure(build: Callable[[str], Any], texts: list[str] | None = None, batch_size: int = 32) -> dict[str, Any]:
    """Texts/s and cosine to torch fp32 of every candidate path on ``texts`` (default: :func:`sample`).

    One path at a time, each freed before the next loads (the peak memory is one path's, not the sum
    of all): torch fp32 first, whose vectors are the reference; each path's first pass over ``texts``
    is its warm-up and its faithfulness check, then up to :data:`ROUNDS` timed passes over every
    other text (one where the path is unfaithful or :data:`DOMINATED`: it cannot be chosen)."""
    import gc
    import importlib.util

    texts = texts or sample()
    timed = texts[::2]
    paths: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    reference: np.ndarray | None = None
    for precision in CANDIDATES:
        if precision == "ov-int8" and importlib.util.find_spec("openvino") is None:
            skipped[precision] = "openvino is not installed"
            continue
        try:
            encoder = build(precision)
            vectors = encoder.encode(texts, "query", batch_size=batch_size, progress=False)  # also the warm-up
        except Exception as exc:  # noqa: BLE001 - a path that cannot load is not chosen, and says why
            if reference is None:
                raise ModelError(f"precision 'auto': the fp32 reference path cannot run ({type(exc).__name__}: "
                                 f"{exc})") from exc
            skipped[precision] = f"{type(exc).__name__}: {exc}"
            continue
        reference = vectors if reference is None else reference
        cosines = (vectors * reference).sum(axis=1)
        faithful = bool(cosines.min() >= MIN_COSINE)
        best = max((p["texts_per_s"] for p in paths.values() if p["faithful"]), default=0.0)
        rates: list[float] = []
        while len(rates) < ROUNDS and (len(rates) == 0 or (faithful and rates[0] >= DOMINATED * best)):
            t0 = time.perf_counter()
            encoder.encode(timed, "query", batch_size=batch_size, progress=False)
            rates.append(len(timed) / (time.perf_counter() - t0))
        del encoder, vectors
        gc.collect()
        paths[precision] = {"path": path(precision), "texts_per_s": float(np.median(rates)), "rounds": len(rates),
                            "cosine_min": float(cosines.min()), "cosine_mean": float(cosines.mean()),
                            "faithful": faithful}
    chosen = max((name for name in paths if paths[name]["faithful"]), key=lambda n: paths[n]["texts_per_s"])
    return {"format_version": FORMAT_VERSION, "machine": machine(),
            "measured_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "sample": {"texts": len(texts), "timed": len(timed), "batch_size": batch_size, "rounds": ROUNDS},
            "min_cosine": MIN_COSINE, "chosen": chosen, "chosen_path": paths[chosen]["path"],
            "paths": paths, "skipped": skipped}
