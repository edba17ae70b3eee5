"""Saving and loading a fitted hybrid ranker (an atomic artifact directory).

The directory holds the interactions and ids (parquet), item vectors, CF factors and every graph
(``.npy`` without pickle; a sparse graph as its ``data``/``indices``/``indptr`` arrays; item topic
codes and scores), the fusion, config, item languages and topic names (JSON) and a manifest
(format version, encoder fingerprint, dimension, counts, SHA-256 of every file) checked on load. Loading refits nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import scipy.sparse as sp

from xrec.artifacts import atomic_dir, check_finite, read_manifest, write_manifest
from xrec.catalogue.interactions import Interactions
from xrec.errors import ArtifactError
from xrec.ranking.cf import FactorModel
from xrec.ranking.config import HybridConfig
from xrec.ranking.content_graphs import ContentGraphs
from xrec.ranking.fusion import Fusion

if TYPE_CHECKING:
    from xrec.ranking.fitted import FittedRanker, R, RankerFactory

KIND, FORMAT_VERSION = "xrec.hybrid_ranker", 4  # 4: exact lexical terms (3: language codes normalised)
#: How to replace a ranker this xrec cannot read (another format version or encoder).
REBUILD = "refit it with HybridRanker.fit(...) and save it again (xrec run rebuilds the job's ranker)"


def _save_csr(directory: Path, name: str, matrix: sp.csr_matrix) -> None:
    matrix = matrix.tocsr()
    for part in ("data", "indices", "indptr"):
        np.save(directory / f"{name}.{part}.npy", getattr(matrix, part), allow_pickle=False)


def _load_csr(directory: Path, name: str, n: int, columns: int | None = None) -> sp.csr_matrix:
    parts = [np.load(directory / f"{name}.{part}.npy", allow_pickle=False) for part in ("data", "indices", "indptr")]
    try:
        return sp.csr_matrix(tuple(parts), shape=(n, n if columns is None else columns))
    except ValueError as exc:
        raise ArtifactError(f"{directory}: {name}.*.npy is no sparse [{n}, {columns or n}] matrix ({exc})") from exc


def save_ranker(ranker: FittedRanker, path: str | os.PathLike[str], *, encoder_fingerprint: str | None = None) -> Path:
    """Write ``ranker`` to ``path`` (module docstring)."""
    with atomic_dir(path) as tmp:
        ranker.interactions.frame.write_parquet(tmp / "interactions.parquet")
        pl.DataFrame({"user_id": ranker.users.ids}).write_parquet(tmp / "users.parquet")
        pl.DataFrame({"item_id": ranker.items.ids}).write_parquet(tmp / "items.parquet")
        np.save(tmp / "item_vectors.npy", ranker.item_vectors, allow_pickle=False)
        cf = None
        if ranker.cf is not None:
            np.save(tmp / "cf_user_factors.npy", ranker.cf.user_factors, allow_pickle=False)
            np.save(tmp / "cf_item_factors.npy", ranker.cf.item_factors, allow_pickle=False)
            cf = {"name": ranker.cf.name, "regularization": ranker.cf.regularization}
        graphs = tmp / "graphs"
        graphs.mkdir()
        _save_csr(graphs, "cf_knn", ranker.cf_graph)
        for name, graph in ranker.content.graphs.items():
            _save_csr(graphs, f"content.{name}", graph)
        np.save(tmp / "language_codes.npy", ranker.content.language_codes, allow_pickle=False)
        np.save(tmp / "retired.npy", ranker.retired, allow_pickle=False)
        content = ranker.content
        if content.terms is not None:
            _save_csr(graphs, "lexical_terms", content.terms)
        if content.topic_codes is not None:
            assert content.topic_scores is not None  # set with the codes
            np.save(tmp / "topic_codes.npy", content.topic_codes, allow_pickle=False)
            np.save(tmp / "topic_scores.npy", content.topic_scores, allow_pickle=False)
        kept = {}  # the content graphs' inputs, so that items can be added to a loaded ranker
        if ranker.content.texts is not None:
            kept["text"] = pl.Series("text", ranker.content.texts, dtype=pl.String)
        for field, values in (ranker.content.metadata or {}).items():
            kept[f"meta_{field}"] = pl.Series(f"meta_{field}", values, dtype=pl.String)
        if kept:
            pl.DataFrame(kept).write_parquet(tmp / "item_content.parquet")
        meta = {"fusion": ranker.fusion.as_dict(), "config": asdict(ranker.config), "cf": cf,
                "content_graphs": list(ranker.content.graphs), "languages": ranker.content.languages,
                "graph_k": ranker.content.k, "metadata_fields": list(ranker.content.metadata or {}),
                "lexical_terms": None if content.terms is None else int(content.terms.shape[1]),
                "topics": content.topic_names if content.topic_codes is not None else None}
        (tmp / "ranker.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        write_manifest(tmp, KIND, FORMAT_VERSION, {
            "encoder_fingerprint": encoder_fingerprint, "dim": int(ranker.item_vectors.shape[1]),
            "users": len(ranker.users), "items": len(ranker.items), "interactions": int(ranker.history.nnz),
            "retired": int(ranker.retired.sum()),
            "tagged": None if content.topic_codes is None else int((content.topic_codes >= 0).sum())})
    return Path(path)


def _finite(file: Path) -> np.ndarray:
    """A saved float array, refused when it holds NaN or infinity (a checksum does not catch a
    ranker saved from a diverged fit, nor one whose manifest was rewritten)."""
    return check_finite(np.load(file, allow_pickle=False), str(file))


def _finite_csr(directory: Path, name: str, n: int, columns: int) -> sp.csr_matrix:
    matrix = _load_csr(directory, name, n, columns)
    check_finite(matrix.data, str(directory / f"{name}.data.npy"))
    return matrix


def load_ranker(make_ranker: RankerFactory[R], path: str | os.PathLike[str], *,
                expect_fingerprint: str | None = None) -> R:
    """Read a ranker written by :func:`save_ranker`, built by ``make_ranker`` (the facade class)."""
    root = Path(path)
    manifest = read_manifest(root, KIND, FORMAT_VERSION, expect={"encoder_fingerprint": expect_fingerprint},
                             rebuild=REBUILD)
    meta = json.loads((root / "ranker.json").read_text(encoding="utf-8"))
    config = meta["config"]
    if config.get("features") is not None:
        config["features"] = tuple(config["features"])
    inter = Interactions.build(pl.read_parquet(root / "interactions.parquet"),
                               pl.read_parquet(root / "items.parquet")["item_id"], source=str(root),
                               user_ids=pl.read_parquet(root / "users.parquet")["user_id"])
    for what, n in (("users", len(inter.users)), ("items", len(inter.items)),
                    ("interactions", int(inter.matrix.nnz))):
        if manifest.get(what) != n:
            raise ArtifactError(f"{root}: manifest says {manifest.get(what)} {what}, the files hold {n}")
    n_items = len(inter.items)
    cf = None
    if meta["cf"] is not None:
        cf = FactorModel(_finite(root / "cf_user_factors.npy"), _finite(root / "cf_item_factors.npy"),
                         name=meta["cf"]["name"], regularization=meta["cf"]["regularization"])
    graphs = {name: _finite_csr(root / "graphs", f"content.{name}", n_items, n_items)
              for name in meta["content_graphs"]}
    texts, metadata = None, None
    if (root / "item_content.parquet").is_file():  # absent when built without texts and metadata
        kept = pl.read_parquet(root / "item_content.parquet")
        texts = kept["text"].to_list() if "text" in kept.columns else None
        metadata = {f: kept[f"meta_{f}"].to_list() for f in meta["metadata_fields"]} or None
    content = ContentGraphs(graphs, np.load(root / "language_codes.npy", allow_pickle=False), meta["languages"],
                            texts, metadata, meta["graph_k"],
                            terms=None if meta.get("lexical_terms") is None else _finite_csr(
                                root / "graphs", "lexical_terms", n_items, meta["lexical_terms"]))
    if meta["topics"] is not None:
        content = _with_topics(root, content, meta["topics"], manifest["tagged"], n_items)
    ranker = make_ranker(inter, _finite(root / "item_vectors.npy"), cf, content,
                 Fusion.from_dict(meta["fusion"]), HybridConfig(**config),
                 cf_graph=_finite_csr(root / "graphs", "cf_knn", n_items, n_items))
    ranker.encoder_fingerprint = manifest.get("encoder_fingerprint")
    retired = np.load(root / "retired.npy", allow_pickle=False)
    if retired.shape != (n_items,) or retired.dtype != bool or int(retired.sum()) != manifest["retired"]:
        raise ArtifactError(f"{root}: retired.npy holds {retired.shape} {retired.dtype} "
                            f"({int(retired.sum())} removed), the manifest says {manifest['retired']} "
                            f"of {n_items} items")
    ranker.retired = retired
    return ranker


def _with_topics(root: Path, content: ContentGraphs, names: list[str], tagged: int | None, n_items: int
                 ) -> ContentGraphs:
    """``content`` with the saved item topics, checked against the manifest and the topic names."""
    from dataclasses import replace

    codes = np.load(root / "topic_codes.npy", allow_pickle=False)
    scores = np.load(root / "topic_scores.npy", allow_pickle=False)
    if codes.shape != (n_items,) or scores.shape != (n_items,) or codes.dtype.kind != "i":
        raise ArtifactError(f"{root}: topic_codes.npy {codes.shape} {codes.dtype} / topic_scores.npy "
                            f"{scores.shape}; expected ({n_items},) integer codes and scores")
    if len(codes) and (codes.max() >= len(names) or codes.min() < -1):
        raise ArtifactError(f"{root}: topic_codes.npy holds codes outside the {len(names)} topics of ranker.json")
    if int((codes >= 0).sum()) != tagged:
        raise ArtifactError(f"{root}: topic_codes.npy tags {int((codes >= 0).sum())} items, the manifest says {tagged}")
    return replace(content, topic_codes=codes.astype(np.int64), topic_names=list(names),
                   topic_scores=scores.astype(np.float32))
