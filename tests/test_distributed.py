"""The Ray engine gives the local engine's results (a local Ray instance, real encoder, real data)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the optional 'ray' extra is not installed")


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

    remote = RayEncoder("bundled", rows_per_task=16)
    assert remote.fingerprint == encoder.fingerprint and remote.dim == encoder.dim
    got = remote.encode(sentences, kind="passage")
    want = encoder.encode(sentences, kind="passage")
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert remote.encode([], kind="query").shape == (0, encoder.dim)
