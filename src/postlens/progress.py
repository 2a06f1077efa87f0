"""progress: how much of the log has been read, shown on standard error during a long read.

Sources report each block they read with :func:`advance`; it costs nothing unless a
:func:`shown` block is active. The counter lives in shared memory made before worker
processes fork, so the workers of ``-j N`` add to the same count the parent displays.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

_counter: Any = None  # a multiprocessing Value while a display runs


def advance(nbytes: int) -> None:
    counter = _counter
    if counter is not None:
        with counter.get_lock():
            counter.value += nbytes


def done() -> int:
    """Bytes read so far under the active display (0 when none is active)."""
    counter = _counter
    return int(counter.value) if counter is not None else 0


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def status(done: int, total: int | None, seconds: float) -> str:
    """One progress line: bytes read, of how many, the rate, and the time left."""
    rate = done / seconds if seconds > 0 else 0.0
    text = f"postlens: {_size(done)}"
    if total:
        text += f" of {_size(total)} ({min(100, 100 * done // total)}%)"
    text += f" read, {_size(rate)}/s"
    if total and rate > 0 and done < total:
        left = int((total - done) / rate)
        text += f", {left // 60}:{left % 60:02d} left"
    return text


@contextmanager
def shown(total: int | None, stream: TextIO, interval: float = 0.5) -> Iterator[None]:
    """Redraw a progress line on ``stream`` every ``interval`` seconds while the block runs.

    ``total`` is the number of bytes to read, when known (see ``sources.plain_total``).
    """
    import multiprocessing  # only here: reading without a display does not load it

    global _counter
    counter = _counter = multiprocessing.get_context("fork").Value("q", 0)
    start = time.monotonic()
    stop = threading.Event()

    def redraw() -> None:
        while not stop.wait(interval):
            stream.write("\r\033[K" + status(counter.value, total, time.monotonic() - start))
            stream.flush()

    drawer = threading.Thread(target=redraw, name="postlens-progress", daemon=True)
    drawer.start()
    try:
        yield
    finally:
        stop.set()
        drawer.join()
        _counter = None
        stream.write("\r\033[K")
        stream.flush()
