"""Encoder paths: ``precision="auto"`` picks this machine's fastest faithful path from a cached
measurement, stores record the path that made their vectors and never mix two paths, and lookups
that need no encoder bypass the service's text queue. Real encoder, real sample texts."""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
import pytest
from xrec.encoders import auto, load_encoder
from xrec.serve.batcher import MicroBatcher, Overloaded
from xrec.store import embed_items, read_embeddings, write_embeddings

TEXTS = ["The cat sleeps on the sofa.", "Die Katze schläft auf dem Sofa.", "Le chat dort sur le canapé.",
         "猫はソファで寝ている。"]


def test_path_names_round_trip():
    assert auto.path("fp32") == "torch-fp32" and auto.path("bf16", "cuda") == "torch-bf16-cuda"
    for precision in auto.CANDIDATES:
        assert auto.precision_of(auto.path(precision)) == precision
    assert auto.path("int8").startswith("int8/onnx-v")
    sample = auto.sample()
    assert len(sample) == 96 and not any(t.startswith("#") for t in sample)


@pytest.mark.slow
def test_store_records_the_path_and_never_mixes_two(encoder, tmp_path, caplog):
    store = tmp_path / "emb.parquet"
    ids = [f"t{i}" for i in range(len(TEXTS))]
    first = embed_items(encoder, ids, TEXTS, store=store)
    assert encoder.path == "torch-fp32" and read_embeddings(store).encoder_path == "torch-fp32"
    # the same texts stored by another path (wrong vectors, to tell them apart): never reused
    stored = read_embeddings(store)
    write_embeddings(store, ids, np.zeros_like(first), encoder.fingerprint, stored.text_hashes,
                     encoder_path="int8/onnx-v1")
    with caplog.at_level(logging.WARNING, logger="xrec.store"):
        again = embed_items(encoder, ids, TEXTS, store=store)
    assert "int8/onnx-v1" in caplog.text and "never mixed" in caplog.text
    np.testing.assert_allclose(again, first, atol=1e-6)
    assert read_embeddings(store).encoder_path == "torch-fp32"
    # a store that does not say which path made it (format 1) is not reused either
    write_embeddings(store, ids, np.zeros_like(first), encoder.fingerprint, stored.text_hashes)
    np.testing.assert_allclose(embed_items(encoder, ids, TEXTS, store=store), first, atol=1e-6)


def test_auto_takes_the_measurement_cached_for_this_machine(tmp_path, monkeypatch):
    file = tmp_path / "auto.json"
    monkeypatch.setattr(auto, "choice_file", lambda hashes: file)
    hashes = auto.model_hashes("bundled")
    measured = {"format_version": auto.FORMAT_VERSION, "machine": auto.machine(), "chosen": "onnx-fp32",
                "chosen_path": auto.path("onnx-fp32"), "measured_at": "2026-12-07T00:00:00+00:00",
                "min_cosine": auto.MIN_COSINE, "paths": {"onnx-fp32": {"texts_per_s": 1.0, "cosine_min": 1.0}}}
    file.write_text(json.dumps(measured))
    chosen = load_encoder("bundled", device="cpu")
    assert chosen.path == auto.path("onnx-fp32") and not chosen.is_loaded  # known without loading
    assert auto.summary("bundled")["chosen"] == "onnx-fp32"
    file.write_text(json.dumps({**measured, "machine": {**auto.machine(), "cpu": "another CPU"}}))
    assert auto.cached_choice(hashes) is None  # measured on another CPU: measured again on first use
    assert load_encoder("bundled", device="cpu", precision="int8").path == auto.path("int8")


def test_each_environment_keeps_its_own_measurement(monkeypatch):
    """Two environments on one machine (say, one without OpenVINO) each keep their measurement
    instead of measuring again in turn; the same environment finds the same file."""
    hashes = auto.model_hashes("bundled")
    here = auto.choice_file(hashes)
    assert auto.choice_file(hashes) == here
    real = auto.machine()
    monkeypatch.setattr(auto, "machine", lambda: {**real, "versions": {**real["versions"], "openvino": "other"}})
    other = auto.choice_file(hashes)
    assert other != here and other.parent == here.parent
    assert other.name.split("-auto-")[0] == here.name.split("-auto-")[0]  # the same model


@pytest.mark.slow
def test_measure_chooses_the_fastest_faithful_path():
    from xrec.encoders.onnx_encoder import ONNX_PRECISIONS

    result = auto.measure(lambda at: load_encoder("bundled", device="cpu", precision=at), auto.sample()[::4])
    paths = result["paths"]
    assert {"fp32", "onnx-fp32", "int8"} <= set(paths)
    assert paths["fp32"]["cosine_min"] > 0.9999 and paths["onnx-fp32"]["cosine_min"] > 0.999
    faithful = [name for name, p in paths.items() if p["cosine_min"] >= auto.MIN_COSINE]
    assert result["chosen"] == max(faithful, key=lambda n: paths[n]["texts_per_s"])
    assert all(p["texts_per_s"] > 0 and p["path"] == auto.path(n) for n, p in paths.items())
    assert all(1 <= p["rounds"] <= auto.ROUNDS for p in paths.values()) and paths["fp32"]["rounds"] == auto.ROUNDS
    assert set(paths) | set(result["skipped"]) == {"fp32", *ONNX_PRECISIONS}


def test_lookups_bypass_a_full_text_queue(encoder):
    # the model loaded first: the timeouts below bound the queue, not a (lazy) model load on a busy machine
    encoder.encode(TEXTS[:1], "query", progress=False)
    gate = threading.Event()

    def slow_encode(texts, kind):
        gate.wait(30)
        return encoder.encode(texts, kind, progress=False)

    batcher = MicroBatcher(slow_encode, encoder.dim, max_batch=1, max_queue=2)
    try:
        first = batcher.submit(["blocked"], "query", lambda v: v.shape)
        deadline = threading.Event()
        while batcher.queued and not deadline.wait(0.01):  # the worker has taken the first job
            pass
        queued = [batcher.submit([t], "query", lambda v: v.shape) for t in TEXTS[:2]]
        with pytest.raises(Overloaded):
            batcher.submit([TEXTS[2]], "query", lambda v: v.shape)
        lookup = batcher.submit([], "query", lambda v: ("looked up", v.shape))
        result, timing = lookup.result(timeout=5)  # answered while the encoder is still blocked
        assert result == ("looked up", (0, encoder.dim)) and not first.done() and timing.encode_ms == 0
        gate.set()
        assert [f.result(timeout=30)[0] for f in [first, *queued]] == [(1, encoder.dim)] * 3
        assert batcher.lookups == 1
    finally:
        gate.set()
        batcher.close()
