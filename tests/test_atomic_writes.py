"""Atomic writes (xrec.artifacts): what a writer killed mid-write left is removed by the next one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from xrec.artifacts import _HOST, atomic_dir, sweep_leftovers, write_json

KILLED_WRITER = """
import os, signal, sys
from xrec.artifacts import atomic_dir, atomic_file
target = sys.argv[1]
writer = atomic_dir if sys.argv[2] == "dir" else atomic_file
with writer(target) as tmp:
    if sys.argv[2] == "dir":
        (tmp / "half.bin").write_bytes(b"x" * 4096)
    else:
        tmp.write_bytes(b"x" * 4096)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _kill_mid_write(target: Path, kind: str) -> list[Path]:
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target), kind], capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    return [p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]


def test_a_killed_writers_leftovers_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "result.json"
    write_json(target, {"run": 1})
    before = target.read_bytes()
    left = _kill_mid_write(target, "file")
    assert len(left) == 1 and left[0].suffix == ".tmp"  # what a killed writer leaves
    assert target.read_bytes() == before  # and the earlier result untouched
    write_json(target, {"run": 2})
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert b'"run": 2' in target.read_bytes()

    folder = tmp_path / "ranker"
    with atomic_dir(folder) as tmp:
        (tmp / "a.bin").write_bytes(b"a")
    assert len(_kill_mid_write(folder, "dir")) == 1
    with atomic_dir(folder) as tmp:
        (tmp / "b.bin").write_bytes(b"b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ranker", "result.json"]
    assert [p.name for p in folder.iterdir()] == ["b.bin"]


def test_a_live_writers_and_other_hosts_temporary_files_are_left_alone(tmp_path):
    target = tmp_path / "out.parquet"
    live = tmp_path / f".out.parquet.{_HOST}-{os.getppid()}.abc.tmp"  # pytest's parent process runs
    other_host = tmp_path / f".out.parquet.elsewhere-{_HOST}-1.abc.tmp"
    unrelated = tmp_path / ".out.parquet.notes.tmp"
    for path in (live, other_host, unrelated):
        path.write_bytes(b"x")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = tmp_path / f".out.parquet.{_HOST}-{int(dead.stdout)}.abc.tmp"
    gone.mkdir()
    assert sweep_leftovers(target) == [gone]
    assert live.exists() and other_host.exists() and unrelated.exists() and not gone.exists()
