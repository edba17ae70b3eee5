"""``xrec bench scale`` on a tiny scale: every field measured, the table and the plot written."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from xrec.bench.scale import run_scale_bench


@pytest.mark.slow
def test_scale_bench_measures_each_scale_in_its_own_process(tmp_path):
    out = io.StringIO()
    result = run_scale_bench(tmp_path / "scale.json", tmp_path / "scale.png", scales=(1500,), per_user=5,
                             threads=1, precision="fp32", embed_texts=16, out=out)
    row = result["scales"][0]
    assert "error" not in row, row
    assert row["items"] == row["users"] == 1500 and 0 < row["interactions"] <= 1500 * 5
    assert row["fit_s"] > 0 and row["recommend_users_per_s"] > 0 and 0.05 < row["peak_rss_gb"] < 24
    assert result["embedding"]["path"] == "torch-fp32" and result["embedding"]["texts_per_s"] > 0
    assert json.loads((tmp_path / "scale.json").read_text())["scales"][0]["items"] == 1500
    assert (tmp_path / "scale.png").stat().st_size > 10_000 and "1,500 items" in out.getvalue()


def test_large_catalogues_get_their_embedding_graph_from_hnsw():
    from xrec.bench.synthetic import embedding_like
    from xrec.ranking.graphs import vector_knn

    vectors, _ = embedding_like(3000, seed=1)
    exact = vector_knn(vectors, 20)
    approx = vector_knn(vectors, 20, exact_max=1000)  # above the limit: HNSW
    assert approx.shape == exact.shape and approx.nnz > 0.9 * exact.nnz
    shared = exact.multiply(approx > 0).nnz / exact.nnz
    assert shared > 0.9  # nearly every exact edge is found
    rows, cols = approx.nonzero()
    found, truth = np.asarray(approx[rows, cols]).ravel(), np.asarray(exact[rows, cols]).ravel()
    np.testing.assert_allclose(found[truth > 0], truth[truth > 0], atol=1e-5)  # same edges, same similarity
