"""Scale-out on Ray: the embedding and batch-recommendation stages as Ray Data jobs.

Ray is an optional extra (``pip install xrec[ray]``). :class:`RayEncoder` is an
:class:`~xrec.encoders.Encoder` whose ``encode`` runs on a Ray cluster (one encoder per actor,
on GPUs where the cluster has them), so every caller of the encoder interface, the embedding store
included, scales out unchanged. :func:`ray_map_batches` runs any picklable batch function over
rows with actors, keeping the input order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xrec.encoders.base import Encoder, TextKind, check_texts
from xrec.errors import XrecError

if TYPE_CHECKING:
    import polars as pl

    from xrec.ranking import HybridRanker


def init_ray(address: str | None = None, num_cpus: int | None = None) -> Any:
    """Connect to the Ray cluster at ``address`` (``None``: start a local instance); returns ``ray``."""
    try:
        import ray
    except ImportError as exc:
        raise XrecError("the Ray engine needs the optional extra: pip install 'xrec[ray]'") from exc
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=num_cpus if address is None else None,
                 include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    return ray


def cluster_gpus() -> int:
    """Number of GPUs the connected Ray cluster offers."""
    import ray

    return int(ray.cluster_resources().get("GPU", 0))


class _EmbedActor:
    """Ray Data actor: loads the encoder once, embeds each batch of texts."""

    def __init__(self, model: str, precision: str, batch_size: int, kind: TextKind) -> None:
        from xrec.encoders import load_encoder

        self.encoder = load_encoder(model, precision=precision, batch_size=batch_size)
        self.kind: TextKind = kind

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.encoder.encode(list(batch["text"]), kind=self.kind, progress=False)
        return {"row": batch["row"], "vector": vectors}


class RayEncoder(Encoder):
    """The encoder ``model`` run by Ray Data actors; same vectors and fingerprint as the local one.
    ``auto`` on a cluster without GPUs runs, on every actor, the path this machine chose."""

    def __init__(self, model: str = "bundled", *, precision: str = "auto", batch_size: int = 32,
                 rows_per_task: int = 1024, actors: int | None = None) -> None:
        from xrec.encoders import load_encoder

        local = load_encoder(model, precision=precision, batch_size=batch_size, device="cpu")
        self.dim, self.fingerprint, self.name = local.dim, local.fingerprint, local.name
        if precision == "auto" and not cluster_gpus():  # every actor runs the path chosen here
            from xrec.encoders.auto import precision_of

            self.path = local.path
            precision = precision_of(local.path)
        self.model, self.precision, self.batch_size = str(model), precision, batch_size
        self.rows_per_task, self.actors = rows_per_task, actors

    def encode(self, texts: Sequence[str], kind: TextKind = "passage", *,
               batch_size: int | None = None, progress: bool | None = None) -> np.ndarray:
        """Embed ``texts`` on the cluster, in input order."""
        texts = check_texts(texts)
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        rows = ray_map_batches(
            _EmbedActor, {"row": np.arange(len(texts)), "text": np.asarray(texts, dtype=object)},
            constructor_kwargs={"model": self.model, "precision": self.precision,
                                "batch_size": batch_size or self.batch_size, "kind": kind},
            rows_per_task=self.rows_per_task, actors=self.actors, use_gpus=True)
        return np.asarray(rows["vector"], dtype=np.float32).reshape(len(texts), self.dim)


def ray_map_batches(actor_class: Callable[..., Any], columns: dict[str, np.ndarray], *,
                    constructor_kwargs: dict[str, Any], rows_per_task: int = 1024,
                    actors: int | None = None, use_gpus: bool = False) -> dict[str, np.ndarray]:
    """Run ``actor_class(**constructor_kwargs)(batch)`` over ``columns`` with Ray Data actors.

    ``columns`` must hold an integer ``row`` column; the result is sorted back into row order.
    With ``use_gpus`` and GPUs in the cluster, each actor takes one GPU.
    """
    import ray

    n = len(columns["row"])
    gpus = cluster_gpus() if use_gpus else 0
    pool = actors or max(1, min(gpus or int(ray.cluster_resources().get("CPU", 1)), -(-n // rows_per_task)))
    dataset = ray.data.from_items([{k: v[i] for k, v in columns.items()} for i in range(n)],
                                  override_num_blocks=max(1, -(-n // rows_per_task)))
    mapped = dataset.map_batches(actor_class, fn_constructor_kwargs=constructor_kwargs,
                                 batch_size=rows_per_task, batch_format="numpy", concurrency=pool,
                                 num_gpus=1 if gpus else 0)
    out: dict[str, list[np.ndarray]] = {}
    for batch in mapped.iter_batches(batch_size=None, batch_format="numpy"):
        for name, values in batch.items():
            out.setdefault(str(name), []).append(np.asarray(values))
    merged = {name: np.concatenate(parts) for name, parts in out.items()}
    order = np.argsort(merged["row"], kind="stable")
    return {name: values[order] for name, values in merged.items()}


class _RecommendActor:
    """Ray Data actor: holds the fitted ranker, recommends for each batch of users."""

    def __init__(self, ranker_ref: list[Any], k: int) -> None:
        import ray

        self.ranker: HybridRanker = ray.get(ranker_ref[0])
        self.k = k

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        frame = self.ranker.recommend(list(batch["user_id"]), self.k)
        position = {user: row for user, row in zip(batch["user_id"].tolist(), batch["row"].tolist())}
        columns = {name: frame[name].to_numpy() for name in frame.columns}
        columns["row"] = np.asarray([position[u] for u in frame["user_id"].to_list()], dtype=np.int64)
        return columns


def ray_recommend_to_parquet(ranker: Any, user_ids: Sequence[Any] | pl.Series, k: int, out: str | os.PathLike[str], *,
                             batch_size: int = 256, actors: int | None = None) -> Path:
    """Top-``k`` of ``ranker.recommend`` for every user, computed by Ray actors, written atomically.

    The output has the rows and columns of :func:`xrec.ranking.batch.recommend_to_parquet` in the
    same order (users in input order, then rank).
    """
    import polars as pl
    import ray

    from xrec.artifacts import atomic_file

    users = list(user_ids)
    result = ray_map_batches(_RecommendActor, {"row": np.arange(len(users)),
                                               "user_id": np.asarray(users)},
                             constructor_kwargs={"ranker_ref": [ray.put(ranker)], "k": k},
                             rows_per_task=batch_size, actors=actors)
    result.pop("row")
    frame = pl.DataFrame(result)
    path = Path(out)
    with atomic_file(path) as tmp:
        frame.write_parquet(tmp)
    return path
