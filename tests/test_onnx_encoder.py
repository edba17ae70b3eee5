"""The exported-graph backends (``precision="onnx-fp32"`` / ``"int8"`` in ONNX Runtime, ``"ov-int8"``
in OpenVINO) against the torch reference."""

from __future__ import annotations

import gzip
import importlib.util
import json

import numpy as np
import pytest
from xrec.encoders import OnnxEncoder, load_encoder
from xrec.encoders.onnx_export import GRAPHS, KIND, onnx_model_dir
from xrec.errors import ModelError


def sentences(data_dir, per_lang: int = 4) -> list[str]:
    with gzip.open(data_dir / "sib200" / "test.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    out: dict[str, list[str]] = {}
    for row in rows:
        if len(out.setdefault(row["lang"], [])) < per_lang:
            out[row["lang"]].append(row["text"])
    return [t for texts in out.values() for t in texts]


@pytest.fixture(scope="module")
def onnx_fp32():
    return load_encoder("bundled", precision="onnx-fp32")


@pytest.fixture(scope="module")
def int8():
    return load_encoder("bundled", precision="int8")


@pytest.fixture(scope="module")
def texts(data_dir):
    long = " ".join(sentences(data_dir, 1) * 8)  # > 512 tokens: embedded in windows
    return sentences(data_dir) + ["", "a", long]


@pytest.mark.slow
def test_onnx_fp32_equals_torch_fp32(onnx_fp32, encoder, texts):
    assert isinstance(onnx_fp32.loaded(), OnnxEncoder)
    assert onnx_fp32.fingerprint == encoder.fingerprint and onnx_fp32.dim == encoder.dim
    assert len(encoder.token_ids([texts[-1]])[0]) > encoder.window
    for kind in ("query", "passage"):
        got, want = onnx_fp32.encode(texts, kind), encoder.encode(texts, kind)
        assert got.shape == want.shape and got.dtype == np.float32
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        assert (got * want).sum(axis=1).min() > 0.9999
    assert onnx_fp32.encode([]).shape == (0, encoder.dim)


@pytest.mark.slow
def test_int8_is_faithful_to_fp32(int8, encoder, texts):
    assert int8.fingerprint == encoder.fingerprint
    got, want = int8.encode(texts, "query"), encoder.encode(texts, "query")
    cosine = (got * want).sum(axis=1)
    assert cosine.min() > 0.97 and cosine.mean() > 0.99
    # the same text gives the same vector alone or in a batch of others up to quantisation noise
    alone = int8.encode(texts[:1], "query")[0]
    assert float(alone @ got[0]) > 0.99


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="needs the optional openvino package")
def test_openvino_int8_is_faithful_to_fp32(encoder, texts):
    ov = load_encoder("bundled", precision="ov-int8", threads=2)
    assert ov.fingerprint == encoder.fingerprint
    for kind in ("query", "passage"):
        got, want = ov.encode(texts, kind), encoder.encode(texts, kind)
        assert got.shape == want.shape and got.dtype == np.float32
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        cosine = (got * want).sum(axis=1)
        assert cosine.min() > 0.98 and cosine.mean() > 0.995, (cosine.min(), cosine.mean())
    # one text alone, then in a batch of others (other shapes): the same vector up to quantisation
    alone = ov.encode(texts[:1], "passage")[0]
    assert float(alone @ got[0]) > 0.99
    assert repr(ov.loaded()).startswith("OnnxEncoder(") and "'ov-int8'" in repr(ov.loaded())


@pytest.mark.slow
def test_openvino_int8_graph_stores_int8_weights(onnx_fp32):
    import onnx
    from xrec.encoders.bundled import TOKENIZER, WEIGHTS, bundled_model_dir

    directory, manifest = bundled_model_dir()
    hashes = {name: manifest["files"][name]["sha256"] for name in (WEIGHTS, TOKENIZER)}
    export_dir, export_manifest = onnx_model_dir(directory, hashes)
    graph = onnx.load(str(export_dir / GRAPHS["ov-int8"]), load_external_data=False).graph
    int8 = [i for i in graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 2]
    layers = onnx_fp32.loaded().config.num_hidden_layers
    assert len(int8) == 6 * layers  # q, k, v, attention output, feed-forward in and out per layer
    assert sum(n.op_type == "DequantizeLinear" for n in graph.node) == len(int8)
    assert export_manifest["ov_int8"]["group_size"] == 128


def test_missing_openvino_is_named(monkeypatch):
    import importlib.util as util

    real = util.find_spec
    monkeypatch.setattr(util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(ModelError, match="openvino"):
        load_encoder("bundled", precision="ov-int8")


@pytest.mark.slow
def test_export_is_cached_with_a_manifest(onnx_fp32):
    from xrec.encoders.bundled import TOKENIZER, WEIGHTS, bundled_model_dir

    directory, manifest = bundled_model_dir()
    hashes = {name: manifest["files"][name]["sha256"] for name in (WEIGHTS, TOKENIZER)}
    export_dir, export_manifest = onnx_model_dir(directory, hashes)
    assert export_manifest["kind"] == KIND
    assert set(export_manifest["files"]) == set(GRAPHS.values())
    assert export_manifest["source_files"] == dict(sorted(hashes.items()))
    assert all((export_dir / name).stat().st_size > 1_000_000 for name in GRAPHS.values())


def test_bad_precision_and_device_are_refused():
    with pytest.raises(ModelError, match="int8"):
        load_encoder("bundled", precision="int4")
    with pytest.raises(ModelError, match="CPU only"):
        load_encoder("bundled", precision="int8", device="cuda")


def test_length_batches_bound_padding():
    from xrec.encoders.transformers_encoder import length_batches

    lengths = [100, 90, 80, 60, 50, 40, 12, 11, 10, 10]
    batches = length_batches(list(range(len(lengths))), lengths, size=3, slack=1.3)
    assert [i for b in batches for i in b] == list(range(len(lengths)))
    assert all(len(b) <= 3 and lengths[b[0]] <= 1.3 * lengths[b[-1]] for b in batches)
    assert batches == [[0, 1, 2], [3, 4], [5], [6, 7, 8], [9]]
