"""GPU detection and GPU pieces of the index backends (see :mod:`xrec.index.backends`).

* ``faiss-gpu``: where FAISS was built with GPU support (``faiss.get_num_gpus() > 0``);
  :func:`to_faiss_gpu` clones a CPU index to GPU 0.
* ``torch-cuda``: where FAISS lacks GPU support but torch sees CUDA; :class:`TorchExact` runs
  exact search as a matmul + ``torch.topk`` on the device (the GPU twin of
  :func:`xrec.index.topk.top_k`).
* ``cpu`` otherwise. :func:`resolve_backend` maps a device name to one of these.
"""

from __future__ import annotations

import logging

import faiss
import numpy as np

from xrec.devices import cuda_available
from xrec.errors import DeviceError

log = logging.getLogger(__name__)

#: FAISS GPU indexes answer at most this many neighbours per query.
FAISS_GPU_MAX_K = 2048
BACKENDS = ("cpu", "faiss-gpu", "torch-cuda")


def faiss_gpus() -> int:
    """Number of GPUs FAISS can use (0 for faiss-cpu builds)."""
    try:
        return int(faiss.get_num_gpus())
    except AttributeError:  # pragma: no cover - very old faiss
        return 0


def torch_cuda() -> bool:
    """True when torch sees a CUDA device (see :func:`xrec.devices.cuda_available`)."""
    return cuda_available()


def available_backends() -> list[str]:
    """Backends usable on this machine, CPU first."""
    out = ["cpu"]
    if faiss_gpus() > 0:
        out.append("faiss-gpu")
    if torch_cuda():
        out.append("torch-cuda")
    return out


def resolve_backend(device: str | None) -> str:
    """Map ``device`` (None/"auto", "cpu", "cuda", or a backend name) to a backend name.

    ``None``/``"auto"``/``"cuda"`` prefer FAISS GPU, then torch CUDA; ``"cuda"`` without a GPU
    raises :class:`~xrec.errors.DeviceError`; ``None``/``"auto"`` fall back to the CPU.
    """
    wanted = "auto" if device is None else str(device).lower()
    if wanted == "cpu":
        return "cpu"
    if wanted in ("auto", "cuda", "gpu"):
        if faiss_gpus() > 0:
            return "faiss-gpu"
        if torch_cuda():
            return "torch-cuda"
        if wanted == "auto":
            return "cpu"
        raise DeviceError(f"device {device!r}: no CUDA GPU is visible to FAISS or torch")
    if wanted in BACKENDS:
        if wanted not in available_backends():
            raise DeviceError(f"device {device!r}: backend not available here "
                            f"(available: {available_backends()})")
        return wanted
    raise DeviceError(f"device {device!r}: expected one of auto, cpu, cuda, {', '.join(BACKENDS)}")


def to_faiss_gpu(index: faiss.Index) -> faiss.Index | None:
    """A GPU clone of ``index``, or None (logged) where FAISS cannot move this kind."""
    try:
        resources = faiss.StandardGpuResources()
        clone = faiss.index_cpu_to_gpu(resources, 0, index)
        clone.xrec_resources = resources  # pyright: ignore[reportAttributeAccessIssue]  (kept alive with the clone)
        return clone
    except (RuntimeError, AttributeError) as exc:
        log.info("index stays on the CPU: FAISS cannot move it to the GPU (%s)", exc)
        return None


class TorchExact:
    """Exact inner-product search on a CUDA device with torch (matmul + top-k).

    Holds the vectors of the live rows of a :class:`~xrec.index.VectorIndex` and the slot
    number of each, so results come back as slots, like the FAISS path.
    """

    def __init__(self, vectors: np.ndarray, slots: np.ndarray, device: str = "cuda") -> None:
        import torch

        self.device = torch.device(device)
        self.vectors = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(self.device)
        self.slots = torch.from_numpy(slots.astype(np.int64)).to(self.device)
        self.slots_np = slots.astype(np.int64)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None,
               batch: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, slots)`` of the top ``k`` rows per query; slot -1 and -inf pad."""
        import torch

        n = self.vectors.shape[0]
        k_eff = min(k, n)
        mask = None
        if allowed is not None:
            mask = torch.from_numpy(~allowed[self.slots_np]).to(self.device)
        scores_out = np.full((len(queries), k), -np.inf, dtype=np.float32)
        slots_out = np.full((len(queries), k), -1, dtype=np.int64)
        if k_eff == 0:
            return scores_out, slots_out
        with torch.inference_mode():
            for start in range(0, len(queries), batch):
                q = torch.from_numpy(np.ascontiguousarray(queries[start:start + batch])).to(self.device)
                sims = q @ self.vectors.T
                if mask is not None:
                    sims.masked_fill_(mask, float("-inf"))
                top_scores, top_rows = torch.topk(sims, k_eff, dim=1)
                top_slots = self.slots[top_rows]
                top_slots = torch.where(torch.isinf(top_scores), torch.full_like(top_slots, -1), top_slots)
                scores_out[start:start + len(q), :k_eff] = top_scores.float().cpu().numpy()
                slots_out[start:start + len(q), :k_eff] = top_slots.cpu().numpy()
        return scores_out, slots_out
