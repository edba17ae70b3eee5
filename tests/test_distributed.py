"""The Ray engine gives the local engine's results (a local Ray instance, real encoder, real data)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the optional 'ray' extra is not installed")
pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def local_ray():
    """A local two-CPU Ray instance for the module."""
    from xrec.distributed import init_ray

    init_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def sentences(data_dir) -> list[str]:
    rows = [json.loads(line) for line in gzip.open(data_dir / "sib200" / "test.jsonl.gz", "rt", encoding="utf-8")]
    return [r["text"] for r in rows[::60]][:40]


def test_ray_encoder_equals_local_encoder(local_ray, encoder, sentences):
    from xrec.distributed import RayEncoder

    remote = RayEncoder("bundled", precision="fp32", rows_per_task=16)  # the fixture's reference path
    assert remote.fingerprint == encoder.fingerprint and remote.dim == encoder.dim
    got = remote.encode(sentences, kind="passage")
    want = encoder.encode(sentences, kind="passage")
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert remote.encode([], kind="query").shape == (0, encoder.dim)


@pytest.fixture(scope="module")
def small_ranker(data_dir, encoder):
    """A hybrid ranker fitted on 40 real MovieLens users and their 300 most-rated movies."""
    import polars as pl
    from xrec.catalogue.interactions import Interactions
    from xrec.catalogue.items import prepare_items
    from xrec.datasets.movielens import load_movielens
    from xrec.ranking.content import item_vectors
    from xrec.ranking.hybrid import HybridRanker

    ml = load_movielens(data_dir / "movielens")
    ratings = ml.ratings.filter(pl.col("user_id") <= 40)
    top = ratings.group_by("item_id").len().sort(["len", "item_id"], descending=[True, False]).head(300)
    ratings = ratings.join(top.select("item_id"), on="item_id")
    items = prepare_items(ml.items().join(top.select("item_id"), on="item_id").sort("item_id"))
    interactions = Interactions.build(ratings, items["item_id"])
    return HybridRanker.fit(interactions, item_vectors(encoder, items))


def test_ray_batch_recommendations_equal_local(local_ray, small_ranker, tmp_path):
    import polars as pl
    from xrec.distributed import ray_recommend_to_parquet
    from xrec.ranking.batch import recommend_to_parquet

    users = list(small_ranker.users.ids) + [999_999]  # an unknown user gets the popular items
    local = recommend_to_parquet(small_ranker, users, 7, tmp_path / "local.parquet", batch_size=16)
    remote = ray_recommend_to_parquet(small_ranker, users, 7, tmp_path / "ray.parquet", batch_size=16)
    want, got = pl.read_parquet(local), pl.read_parquet(remote)
    assert want.height == 7 * len(users)
    assert got.columns == want.columns
    assert got.select("user_id", "rank", "item_id").equals(want.select("user_id", "rank", "item_id"))
    # workers run BLAS with their own thread count: float32 rounding may differ, nothing else
    np.testing.assert_allclose(got["score"].to_numpy(), want["score"].to_numpy(), rtol=1e-5)
