"""Progress of long work: log lines without a terminal (what CI and piped runs see)."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import polars as pl
import pytest
from xrec import progress as progress_module
from xrec.progress import Progress, phase, track


@pytest.fixture
def eager(monkeypatch):
    """Show progress at once and log every update (the defaults wait seconds)."""
    monkeypatch.setattr(progress_module, "DELAY_S", 0.0)
    monkeypatch.setattr(progress_module, "EVERY_S", 0.0)


def test_counted_work_logs_lines_and_a_total(eager, caplog):
    with caplog.at_level("INFO", logger="xrec"):
        with Progress(4, "encode", "batches") as bar:
            for _ in range(4):
                bar.update()
        assert list(track(["a", "b"], "fit", "models")) == ["a", "b"]
    assert "encode: 2/4 batches (50%)" in caplog.text and "encode: 4 batches done in" in caplog.text
    assert "fit: 2/2 models (100%)" in caplog.text


def test_a_long_call_shows_its_elapsed_time(monkeypatch, caplog):
    monkeypatch.setattr(progress_module, "DELAY_S", 0.0)
    monkeypatch.setattr(progress_module, "EVERY_S", 0.02)
    with caplog.at_level("INFO", logger="xrec"):
        with phase("fit ALS"):
            time.sleep(0.5)
        with phase("quiet", show=False):
            time.sleep(0.05)
    assert "fit ALS: 0 s so far" in caplog.text and "fit ALS: done in" in caplog.text
    assert "quiet" not in caplog.text


def test_short_work_stays_silent(caplog):
    with caplog.at_level("INFO", logger="xrec"):
        with Progress(2, "quick", "items") as bar:
            bar.update(2)
        with phase("quick call"):
            pass
    assert "quick" not in caplog.text


@pytest.mark.slow
def test_encoding_and_batch_recommendation_report_progress(eager, encoder, caplog, tmp_path):
    from xrec.ranking.batch import recommend_to_parquet

    class Popular:
        def recommend(self, users, k):
            return pl.DataFrame({"user_id": list(users), "rank": [1] * len(users), "item_id": [7] * len(users),
                                 "score": np.ones(len(users), np.float32)})

    with caplog.at_level("INFO", logger="xrec"):
        encoder.encode(["one", "two", "three"], batch_size=1)
        recommend_to_parquet(Popular(), [1, 2, 3], 1, tmp_path / "r.parquet", batch_size=1)
    assert "encode: 3/3 batches" in caplog.text
    assert "recommend top-1 for 3 users: 2/3 batches" in caplog.text


@pytest.mark.slow
def test_embed_says_what_it_reused_on_stderr(encoder, tmp_path):
    """The command line shows xrec's progress lines without -v (here: a second, all-reused run)."""
    from xrec.store import embed_items

    items = pl.DataFrame({"item_id": [1, 2, 3], "text": ["Hund", "chien", "dog"]})
    items.write_csv(tmp_path / "items.csv")
    embed_items(encoder, [1, 2], ["Hund", "chien"], store=tmp_path / "out.parquet")
    run = subprocess.run([sys.executable, "-m", "xrec.cli.main", "embed", str(tmp_path / "items.csv"),
                          "--out", str(tmp_path / "out.parquet"), "--precision", "fp32"],  # the fixture's path
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "[xrec] embeddings: 2 of 3 texts reused, 1 embedded" in run.stderr
