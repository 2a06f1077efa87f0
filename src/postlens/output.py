"""Writing results: to standard output, or to a file that appears whole or not at all."""

from __future__ import annotations

import os
import sys
import tempfile


def write_output(text: str, path: str | None) -> None:
    if path is None or path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".postlens-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the report from its readers
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
