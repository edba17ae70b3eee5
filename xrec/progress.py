"""Progress of long work: a tqdm bar on a terminal, a log line every few seconds otherwise.

The one helper every phase longer than a few seconds goes through:

* :class:`Progress` for counted work (batches, texts, models): ``with Progress(n, "encode",
  "batch") as bar: ... bar.update()``;
* :func:`track` to iterate with a :class:`Progress`: ``for name in track(names, "fit", "models")``;
* :func:`phase` for one long call that cannot count (a model fit): ``with phase("fit ALS"): ...``
  shows the elapsed time while it runs.

``show``: ``True`` or ``None`` (the default) show progress, ``False`` never. Nothing appears for
work shorter than :data:`DELAY_S`, so short calls stay quiet. Without a terminal, lines go to the
``xrec.progress`` logger at INFO every :data:`EVERY_S` seconds, plus one when the work ends (the
``xrec`` command shows them; a library user sees them once logging is configured).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm.auto import tqdm

log = logging.getLogger("xrec.progress")
T = TypeVar("T")

#: Seconds before anything is shown (shorter work stays silent).
DELAY_S = 2.0
#: Seconds between log lines when stderr is not a terminal.
EVERY_S = 15.0


def on_terminal() -> bool:
    """True when stderr is a terminal (progress bars), False when it is a file or pipe (log lines)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class Progress:
    """Counted progress of ``total`` units (``None``: unknown), starting at ``initial``."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", *, show: bool | None = None,
                 initial: int = 0) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self._initial = initial
        self._start = self._last = time.monotonic()
        self._bar: Any = None
        self._log = False
        self._lock = threading.Lock()  # updates may come from worker threads
        if show is not False:
            if on_terminal():
                self._bar = tqdm(total=total, desc=desc, unit=unit, initial=initial, delay=DELAY_S,
                                 file=sys.stderr, dynamic_ncols=True)
            else:
                self._log = True

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units done."""
        with self._lock:
            self.n += n
            if self._bar is not None:
                self._bar.update(n)
            elif self._log:
                now = time.monotonic()
                if now - self._last >= EVERY_S and now - self._start >= DELAY_S:
                    self._last = now
                    log.info("%s", self.status())

    def status(self) -> str:
        """``desc: n/total unit (p%), elapsed, about ... left``."""
        elapsed = time.monotonic() - self._start
        if not self.total:
            return f"{self.desc}: {self.n} {self.unit}, {_duration(elapsed)}"
        done = self.n - self._initial
        left = (self.total - self.n) * elapsed / done if done else None
        return (f"{self.desc}: {self.n}/{self.total} {self.unit} ({100 * self.n / self.total:.0f}%), "
                f"{_duration(elapsed)}" + (f", about {_duration(left)} left" if left is not None else ""))

    def close(self) -> None:
        """End the bar, or log the total time of work that took long enough to be shown."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._log:
            self._log = False
            elapsed = time.monotonic() - self._start
            if elapsed >= DELAY_S:
                log.info("%s: %d %s done in %s", self.desc, self.n, self.unit, _duration(elapsed))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(items: Iterable[T], desc: str, unit: str = "it", *, total: int | None = None,
          show: bool | None = None) -> Iterator[T]:
    """Yield ``items``, counting each one done when the next is asked for."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, desc, unit, show=show) as bar:
        for item in items:
            yield item
            bar.update()


@contextlib.contextmanager
def phase(desc: str, *, show: bool | None = None) -> Iterator[None]:
    """Show that ``desc`` is running (elapsed time) while the block runs."""
    if show is False:
        yield
        return
    start = time.monotonic()
    stop = threading.Event()
    bar = tqdm(total=None, desc=desc, bar_format="{desc}: {elapsed}", delay=DELAY_S, file=sys.stderr) \
        if on_terminal() else None

    def beat() -> None:
        while not stop.wait(1.0 if bar is not None else EVERY_S):
            if bar is not None:
                bar.refresh()
            else:
                log.info("%s: %s so far", desc, _duration(time.monotonic() - start))

    thread = threading.Thread(target=beat, name=f"progress: {desc}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        elapsed = time.monotonic() - start
        if bar is not None:
            bar.close()
        elif elapsed >= DELAY_S:
            log.info("%s: done in %s", desc, _duration(elapsed))
