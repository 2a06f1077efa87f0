"""Writing results: to standard output, or to a file that appears whole or not at all."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


def write_output(text: str, path: str | None) -> None:
    with output_file(path) as out:
        out.write(text)


@contextmanager
def output_path(path: str) -> Iterator[str]:
    """A temporary path beside ``path`` to write; it becomes ``path`` only if the block succeeds."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".postlens-", dir=directory)
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from its readers
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@contextmanager
def output_file(path: str | None) -> Iterator[TextIO]:
    """Standard output, or a text file that appears whole or not at all."""
    if path is None or path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    if os.path.exists(path) and not os.path.isfile(path):
        # a device or a pipe (/dev/stdout, a FIFO): replacing it with a file would break it
        with open(path, "w", encoding="utf-8", newline="") as f:
            yield f
        return
    with output_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        yield f
