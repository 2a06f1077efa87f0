"""history: the log kept in a database, so last month can be asked about without last month's logs.

``ingest`` appends the lines that are new since the last run. Each log file is known by a
fingerprint of its first line (with its device and inode noted), and by how far it was
read: a file renamed by rotation (mail.log -> mail.log.1 -> mail.log.2.gz), or copied and
truncated (copytruncate), is recognised by its first line and read on from where the last
run stopped, so no line is lost or stored twice. A line still being written (no newline
yet) waits for the next run. Each file is read in one transaction that also moves its
offset on, so two ingests at once, or one interrupted, never store a line twice.

Lines are stored with their time and a normalised text (RFC 3339 stamp, host, tag,
message), which the report, trace and export read back through the usual pipeline; a
message whose lines span two runs is therefore complete. ``keep_days`` (default 28)
prunes older lines on every ingest: data about people is kept no longer than needed.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from postlens.errors import EXIT_DATABASE, InputError, PostlensError
from postlens.lines import LineParser, YearGuess, zone
from postlens.sources import Source, decode_lines, expand, open_source

SCHEMA_VERSION = 1
DEFAULT_KEEP_DAYS = 28

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # one row per log file ever read: its first line's fingerprint and how far it was read
    "CREATE TABLE files (fingerprint TEXT PRIMARY KEY, path TEXT NOT NULL, device INTEGER, "
    "inode INTEGER, offset INTEGER NOT NULL, lines INTEGER NOT NULL, updated REAL NOT NULL)",
    "CREATE TABLE lines (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, text TEXT NOT NULL)",
    "CREATE INDEX lines_ts ON lines (ts, id)",
)


class HistoryError(PostlensError):
    """The database cannot be used: missing, corrupt, or from a newer postlens."""

    exit_code = EXIT_DATABASE


def default_path() -> str:
    """``$POSTLENS_DB``, else ``$XDG_DATA_HOME/postlens/history.db`` (~/.local/share by default)."""
    if os.environ.get("POSTLENS_DB"):
        return os.environ["POSTLENS_DB"]
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "postlens", "history.db")


@contextmanager
def connect(path: str, create: bool = False) -> Iterator[sqlite3.Connection]:
    """An open history database, its schema checked (and made, with ``create``)."""
    if not create and not os.path.exists(path):
        raise HistoryError(f"{path}: no history database here (run postlens ingest first)")
    if create:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        db = sqlite3.connect(path, timeout=60, isolation_level=None)
    except sqlite3.Error as e:
        raise HistoryError(f"{path}: cannot open: {e}") from e
    try:
        _check_schema(db, path)
        yield db
    except sqlite3.DatabaseError as e:
        raise HistoryError(f"{path}: not a postlens database, or damaged: {e}") from e
    finally:
        db.close()


def _check_schema(db: sqlite3.Connection, path: str) -> None:
    db.execute("BEGIN IMMEDIATE")  # two first ingests at once: one makes the schema
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            if tables:
                raise HistoryError(f"{path}: not a postlens database")
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"{path}: made by a newer postlens (schema {version}, this one knows {SCHEMA_VERSION})"
            )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def normalised(ts: float, host: str, program: str, pid: str, payload: str) -> str:
    """A log line as stored: an RFC 3339 stamp in UTC, so its year and zone are never guessed."""
    stamp = datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    tag = f"{program}[{pid}]" if pid else program
    return f"{stamp} {host} {tag}: {payload}"


def _fingerprint(source: Source) -> str | None:
    """The hash of a file's first complete line (decompressed), or None while it has none."""
    stream = open_source(source)
    try:
        first = stream.readline(65536)
    finally:
        stream.close()
    if not first.endswith(b"\n"):
        return None
    return hashlib.sha256(first).hexdigest()


@dataclass(slots=True)
class IngestResult:
    files: int = 0  # files with new lines
    lines: int = 0  # lines stored
    skipped: int = 0  # lines older than the retention, or not a log line
    pruned: int = 0  # stored lines removed by the retention


def _ingest_source(db: sqlite3.Connection, source: Source, year: int | None, tz: Any, horizon: float,
                   result: IngestResult) -> None:  # fmt: skip
    fingerprint = _fingerprint(source)
    if fingerprint is None:
        return
    st = os.stat(source.path)
    db.execute("BEGIN IMMEDIATE")  # offsets are read and moved on under the write lock
    try:
        row = db.execute("SELECT offset, lines FROM files WHERE fingerprint = ?", (fingerprint,)).fetchone()
        offset, count = (row[0], row[1]) if row else (0, 0)
        stream = open_source(source)
        try:
            if offset and stream.seekable():
                stream.seek(offset)
            else:
                _skip(stream, offset)
            parser = LineParser(YearGuess(year, source.mtime, tz), tz)
            consumed = offset
            added = 0
            batch: list[tuple[float, str]] = []
            for text, size in _complete_lines(source, stream):
                consumed += size
                line = parser.parse(text)
                if line is None or line.ts < horizon:
                    result.skipped += 1
                    continue
                batch.append((line.ts, normalised(line.ts, line.host, line.program, line.pid, line.payload)))
                if len(batch) >= 5000:
                    db.executemany("INSERT INTO lines (ts, text) VALUES (?, ?)", batch)
                    added += len(batch)
                    batch.clear()
            db.executemany("INSERT INTO lines (ts, text) VALUES (?, ?)", batch)
            added += len(batch)
        finally:
            stream.close()
        db.execute(
            "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE SET "
            "path = excluded.path, device = excluded.device, inode = excluded.inode, "
            "offset = excluded.offset, lines = excluded.lines, updated = excluded.updated",
            (fingerprint, source.path, st.st_dev, st.st_ino, consumed, count + added, time.time()),
        )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    if added:
        result.files += 1
        result.lines += added


def _skip(stream: Any, nbytes: int) -> None:
    while nbytes > 0:
        block = stream.read(min(nbytes, 1 << 20))
        if not block:
            break
        nbytes -= len(block)


def _complete_lines(source: Source, stream: Any) -> Iterator[tuple[str, int]]:
    """(text, bytes it takes) of each line that ends with a newline; a last partial line waits."""
    for raw in stream:
        if not raw.endswith(b"\n"):
            return
        for text in decode_lines(source, raw[:-1]):
            yield text, len(raw)


def ingest(
    paths: list[str],
    db_path: str,
    *,
    keep_days: int = DEFAULT_KEEP_DAYS,
    year: int | None = None,
    tz: str | None = None,
    now: float | None = None,
) -> tuple[IngestResult, list[InputError]]:
    """Store what is new in the logs; prune lines older than ``keep_days`` (0: keep all)."""
    sources, problems = expand(paths)
    if any(s.path == "-" for s in sources):
        raise HistoryError("ingest reads files, not standard input: it remembers how far each was read")
    now = time.time() if now is None else now
    horizon = now - keep_days * 86400 if keep_days > 0 else float("-inf")
    result = IngestResult()
    with connect(db_path, create=True) as db:
        for source in sources:
            try:
                _ingest_source(db, source, year, zone(tz), horizon, result)
            except InputError as e:
                problems.append(e)
            except OSError as e:
                problems.append(InputError(source.name, e.strerror or str(e)))
        if keep_days > 0:
            result.pruned = _prune(db, horizon)
    return result, problems


def _prune(db: sqlite3.Connection, horizon: float) -> int:
    db.execute("BEGIN IMMEDIATE")
    try:
        removed = db.execute("DELETE FROM lines WHERE ts < ?", (horizon,)).rowcount
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return removed


def prune(db_path: str, older_than_days: float, now: float | None = None) -> int:
    """Remove stored lines older than the given age; return how many."""
    now = time.time() if now is None else now
    with connect(db_path) as db:
        return _prune(db, now - older_than_days * 86400)


def stored_lines(db_path: str, since: float | None = None, until: float | None = None) -> Iterator[str]:
    """The stored lines in time order (normalised text), within [since, until)."""
    lo = since if since is not None else float("-inf")
    hi = until if until is not None else float("inf")
    with connect(db_path) as db:
        cursor = db.execute("SELECT text FROM lines WHERE ts >= ? AND ts < ? ORDER BY ts, id", (lo, hi))
        for (text,) in cursor:
            yield text


def history_records(db_path: str, since: float | None, until: float | None) -> Any:
    """The stored lines as trace's records: (text, parsed line), in time order."""
    from postlens.trace import Records

    def records(problems: list[InputError]) -> Iterator[tuple[str, Any]]:
        parser = LineParser(YearGuess(None, None, UTC), UTC)
        for text in stored_lines(db_path, since, until):
            line = parser.parse(text)
            if line is not None:
                yield text, line

    result: Records = records
    return result


def report_from(db_path: str, settings: Any) -> tuple[dict[str, Any], list[InputError]]:
    """The report of the stored lines within the settings' period."""
    from postlens.pipeline import Analysis

    analysis = Analysis(settings)
    parser = LineParser(YearGuess(None, None, UTC), UTC)
    analysis.read(stored_lines(db_path, settings.start, settings.end), parser)
    result = analysis.finish()
    result["inputs"] = [{"source": db_path, "error": None}]
    return result, []
