"""A small real catalogue for the ``xrec serve`` tests: SIB-200 sentences + rated MovieLens films."""

from __future__ import annotations

import gzip
import http.client
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import polars as pl

SIB_OFFSET = 10_000_000


def sib_items(data_dir: Path, n_langs: int = 4, per_lang: int = 30) -> pl.DataFrame:
    """``item_id, text, lang, index_id`` of the first sentences of the first ``n_langs`` languages."""
    with gzip.open(data_dir / "sib200" / "test.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    langs = sorted({r["lang"] for r in rows})[:n_langs]
    picked = [r for lang in langs for r in [x for x in rows if x["lang"] == lang][:per_lang]]
    return pl.DataFrame({"item_id": [SIB_OFFSET + i for i in range(len(picked))],
                         "text": [r["text"] for r in picked], "lang": [r["lang"] for r in picked],
                         "index_id": [r["index_id"] for r in picked]})


def build_catalogue(root: Path, data_dir: Path, encoder) -> dict[str, Any]:
    """Save an index (films + sentences), an items table and a fitted ranker under ``root``."""
    from xrec.catalogue.interactions import Interactions
    from xrec.index import VectorIndex
    from xrec.ranking.cf import fit_als
    from xrec.ranking.content import item_vectors
    from xrec.ranking.hybrid import HybridRanker

    from samples import movielens_sample

    films, ratings = movielens_sample(data_dir, n_items=120, n_cold=10)
    film_vectors = item_vectors(encoder, films)
    sib = sib_items(data_dir)
    sib_vectors = encoder.encode(sib["text"].to_list(), "passage")
    ids = films["item_id"].to_list() + sib["item_id"].to_list()
    langs = ["en"] * films.height + sib["lang"].to_list()
    vectors = np.concatenate([film_vectors, sib_vectors])
    index = VectorIndex.build(vectors, ids, langs, kind="exact", fingerprint=encoder.fingerprint)
    index.save(root / "index")
    items = pl.DataFrame({"item_id": ids, "text": films["text"].to_list() + sib["text"].to_list(),
                          "lang": langs})
    items.write_parquet(root / "items.parquet")
    inter = Interactions.build(ratings, films["item_id"])
    ranker = HybridRanker.fit(inter, film_vectors, cf_fit=lambda m: fit_als(m, factors=16)[0])
    ranker.save(root / "ranker", encoder_fingerprint=encoder.fingerprint)
    return {"index": root / "index", "items": root / "items.parquet", "ranker": root / "ranker",
            "sib": sib, "films": films, "ratings": ratings, "vectors": vectors, "ids": ids,
            "langs": langs}


def request(url: str, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, Any, dict]:
    """One HTTP request: ``(status, parsed JSON or text, headers)``."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data, headers={"Content-Type": "application/json",
                                                       **(headers or {})})
        response = conn.getresponse()
        payload = response.read()
        kind = response.getheader("content-type", "")
        parsed = json.loads(payload) if kind.startswith("application/json") else payload.decode()
        return response.status, parsed, dict(response.getheaders())
    finally:
        conn.close()
