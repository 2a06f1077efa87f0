"""remote: logs named by fsspec URLs (s3://, gs://, hdfs://, http://, file://).

Only used when a path has a scheme; fsspec and the package of each storage come with the
``dask`` extra (``pip install 'postlens[dask]'`` plus, say, s3fs for s3://).
"""

from __future__ import annotations

import glob
import posixpath
import re
from datetime import datetime
from typing import Any, BinaryIO

from postlens.errors import InputError

_MISSING = "URLs need fsspec: pip install 'postlens[dask]'"


def is_url(path: str) -> bool:
    return "://" in path


def _fs(url: str) -> tuple[Any, str]:
    try:
        from fsspec.core import url_to_fs
    except ImportError as e:
        raise InputError(url, _MISSING) from e
    try:
        return url_to_fs(url)
    except (ImportError, ValueError) as e:  # an unknown scheme, or its package not installed
        raise InputError(url, f"cannot open this URL: {e}") from e


def _mtime(info: dict[str, Any]) -> float | None:
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


def expand_url(url: str, log_names: re.Pattern[str]) -> list[tuple[str, float | None, int | None]]:
    """The files a URL names, a glob or a folder of logs: ``(url, mtime, size)`` each."""
    fs, path = _fs(url)
    try:
        if glob.has_magic(path):
            paths = [p for p in fs.glob(path) if fs.isfile(p)]
            if not paths:
                raise InputError(url, "no file matches this pattern")
        elif fs.isdir(path):
            paths = sorted(p for p in fs.ls(path, detail=False) if log_names.match(posixpath.basename(p)))
            if not paths:
                raise InputError(url, "directory holds no mail.log* or maillog* files")
        elif fs.exists(path):
            paths = [path]
        else:
            raise InputError(url, "no such file")
        found = []
        for p in paths:
            info = fs.info(p)
            found.append((fs.unstrip_protocol(p), _mtime(info), info.get("size")))
        return found
    except OSError as e:
        raise InputError(url, e.strerror or str(e)) from e


def open_url(url: str) -> BinaryIO:
    fs, path = _fs(url)
    try:
        return fs.open(path, "rb")  # type: ignore[no-any-return]
    except OSError as e:
        raise InputError(url, e.strerror or str(e)) from e
