"""``xrec bench serve`` end to end on a small real index: the real server in its own process,
the load generator, the peers, the JSON and the plot, and the cached index reused on a rerun."""

from __future__ import annotations

import io
import json

import pytest
from xrec.bench.serve import cached_index, real_sentences, run_serve_bench

pytestmark = pytest.mark.slow


def test_bench_serve_runs_and_reuses_its_cached_index(tmp_path, data_dir, encoder):
    args = {"precision": "fp32", "threads": 2, "max_wait_ms": 0.0}
    log = io.StringIO()
    run_serve_bench(tmp_path / "serve.json", data=data_dir, n=120, n_queries=60, rates=[20],
                    concurrencies=[2], seconds=1.0, cache=tmp_path / "cache", kind="exact",
                    service_args=args, out=log)
    written = json.loads((tmp_path / "serve.json").read_text())
    assert written["n_items"] == 120 and written["index_kind"] == "exact"
    assert [(s["mode"], s["level"]) for s in written["steps"]] == [("closed", 2), ("open", 20)]
    for step in written["steps"]:
        assert step["completed"] > 0 and step["failed"] == 0 and step["refused_503"] == 0, step
        assert 0 < step["p50_ms"] <= step["p99_ms"]
        assert step["encode_ms_mean"] > 0 and step["overhead_ms_p50"] >= 0
    assert 0 < written["index_alone"]["p50_ms"] < written["in_process"]["p50_ms"]
    assert "not loaded yet" not in written["encoder"] and "dtype=float32" in written["encoder"]  # the loaded engine
    assert (tmp_path / "serve.png").stat().st_size > 10_000
    assert "closed c=2" in log.getvalue() and "open rate=20" in log.getvalue()

    # a rerun finds the index the first run cached (the same step of run_serve_bench): loaded, not rebuilt
    index_dir = tmp_path / "cache" / "index-120-exact"
    stamp = (index_dir / "manifest.json").stat().st_mtime_ns
    texts, langs, _, _ = real_sentences(data_dir, 120, 60)
    assert cached_index(encoder, tmp_path / "cache", texts, langs, "exact") == index_dir
    assert (index_dir / "manifest.json").stat().st_mtime_ns == stamp
