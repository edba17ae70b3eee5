"""``xrec bench scale`` on a tiny scale: every field measured, the table and the plot written."""

from __future__ import annotations

import io
import json

from xrec.bench.scale import run_scale_bench


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
