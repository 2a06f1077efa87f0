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
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from postlens import config, rollup
from postlens.anonymize import history_rewriter
from postlens.config import DEFAULT_KEEP_DAYS
from postlens.errors import EXIT_DATABASE, InputError, PostlensError, UsageError
from postlens.lines import Line, LineParser, YearGuess, utc_parser, zone
from postlens.lookup import line_keys, narrowed_lines
from postlens.sources import Source, decode_lines, expand, is_journal, open_source

SCHEMA_VERSION = 4

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # one row per log file ever read: its first line's fingerprint and how far it was read
    "CREATE TABLE files (fingerprint TEXT PRIMARY KEY, path TEXT NOT NULL, device {int}, "
    "inode {int}, read_to {int} NOT NULL, lines {int} NOT NULL, updated {real} NOT NULL)",
    "CREATE TABLE lines (id {serial}, ts {real} NOT NULL, text TEXT NOT NULL)",
    "CREATE INDEX lines_ts ON lines (ts, id)",
)
# Each version's changes, applied in place to an older database (see lookup.py for v2).
_UPGRADES = {
    2: (
        "ALTER TABLE lines ADD COLUMN host TEXT",
        "ALTER TABLE lines ADD COLUMN proc TEXT",
        "ALTER TABLE lines ADD COLUMN qid TEXT",
        "CREATE INDEX lines_qid ON lines (qid, host)",
        "CREATE INDEX lines_proc ON lines (host, proc, ts)",
        "CREATE TABLE keys (kind TEXT NOT NULL, value TEXT NOT NULL, host TEXT NOT NULL, proc TEXT NOT NULL, "
        "qid TEXT, ts {real} NOT NULL)",
        "CREATE INDEX keys_value ON keys (kind, value)",
        "CREATE INDEX keys_qid ON keys (qid, host)",
    ),
    3: rollup.TABLES,
    4: rollup.QUEUE_TABLES,
}
_TYPES = {
    "sqlite": {"int": "INTEGER", "real": "REAL", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT",
               "blob": "BLOB"},
    "postgresql": {"int": "BIGINT", "real": "DOUBLE PRECISION",
                   "serial": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "blob": "BYTEA"},
}  # fmt: skip
_LOCK_KEY = 0x706F73746C656E73  # "postlens": the advisory lock ingests take on PostgreSQL


class HistoryError(PostlensError):
    """The database cannot be used: missing, corrupt, or from a newer postlens."""

    exit_code = EXIT_DATABASE


def default_path() -> str:
    """``$POSTLENS_DB``, else ``db`` in the settings file's [history], else
    ``$XDG_DATA_HOME/postlens/history.db`` (~/.local/share by default)."""
    if os.environ.get("POSTLENS_DB"):
        return os.environ["POSTLENS_DB"]
    configured = config.section(config.load(), "history").get("db")
    if configured:
        return str(configured)
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "postlens", "history.db")


def is_postgres(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


class Store:
    """One history database, SQLite or PostgreSQL: the few statements postlens needs of it."""

    def __init__(self, conn: Any, dialect: str, name: str) -> None:
        self.conn, self.dialect, self.name = conn, dialect, name

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.conn.execute(self._sql(sql), params)

    def insert(self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        """Append rows; on PostgreSQL with COPY, many times faster than one INSERT a row."""
        if not rows:
            return
        names = ", ".join(columns)
        if self.dialect == "postgresql":
            with self.conn.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        marks = ", ".join("?" * len(columns))
        self.conn.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)

    def add_counts(self, table: str, key: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        """Add each row's last column, ``n``, to the row of its key (made when missing)."""
        if not rows:
            return
        names = ", ".join(key)
        marks = ", ".join("?" * (len(key) + 1))
        sql = self._sql(
            f"INSERT INTO {table} ({names}, n) VALUES ({marks}) "
            f"ON CONFLICT ({names}) DO UPDATE SET n = {table}.n + excluded.n"
        )
        if self.dialect == "postgresql":
            self.conn.cursor().executemany(sql, rows)
        else:
            self.conn.executemany(sql, rows)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """A transaction that holds the database's write lock: ingests take turns."""
        if self.dialect == "postgresql":
            self.conn.execute("BEGIN")
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        else:
            self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def tables(self) -> set[str]:
        if self.dialect == "postgresql":
            sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        else:
            sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        return {r[0] for r in self.execute(sql)}

    def stream(self, sql: str, params: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        """Rows of a query, fetched as they are read, not all at once."""
        if self.dialect != "postgresql":
            yield from self.execute(sql, params)
            return
        with self.conn.transaction(), self.conn.cursor(name="postlens_lines") as cursor:
            cursor.itersize = 10000
            cursor.execute(self._sql(sql), params)
            yield from cursor


def _errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
    try:
        import psycopg

        errors += (psycopg.Error,)
    except ImportError:
        pass
    return errors


def _open(target: str, create: bool) -> Store:
    if is_postgres(target):
        try:
            import psycopg
        except ImportError as e:
            raise HistoryError("a PostgreSQL history needs psycopg: pip install 'postlens[postgres]'") from e
        try:
            conn = psycopg.connect(target, autocommit=True, connect_timeout=10)
        except psycopg.Error as e:
            raise HistoryError(f"{_safe(target)}: cannot connect: {_one_line(e)}") from e
        return Store(conn, "postgresql", _safe(target))
    if not create and not os.path.exists(target):
        raise HistoryError(f"{target}: no history database here (run postlens ingest first)")
    if create:
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    try:
        return Store(sqlite3.connect(target, timeout=60, isolation_level=None), "sqlite", target)
    except sqlite3.Error as e:
        raise HistoryError(f"{target}: cannot open: {e}") from e


def _one_line(e: BaseException) -> str:
    return "; ".join(part.strip() for part in str(e).splitlines() if part.strip())


def _safe(url: str) -> str:
    """A database URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{creds.split(':')[0]}{at}{host}" if at else url


@contextmanager
def connect(target: str, create: bool = False) -> Iterator[Store]:
    """An open history database (a path, or a postgresql:// URL), its schema checked and
    made with ``create``."""
    store = _open(target, create)
    try:
        _check_schema(store, create)
        yield store
    except HistoryError:
        raise
    except _errors() as e:
        raise HistoryError(f"{store.name}: not a postlens database, or damaged: {_one_line(e)}") from e
    finally:
        store.conn.close()


def _version(store: Store) -> int | None:
    """The schema version, or None for a database without postlens's tables."""
    if "meta" not in store.tables():
        return None
    row = store.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def _check_schema(store: Store, create: bool) -> None:
    """Check the schema; make or upgrade it under the write lock only when needed, so
    readers never wait for each other."""
    version = _version(store)
    if version == SCHEMA_VERSION:
        return
    if version is not None and version > SCHEMA_VERSION:
        raise HistoryError(
            f"{store.name}: made by a newer postlens (schema {version}, this one knows {SCHEMA_VERSION})"
        )
    with store.writing():  # two first ingests at once: one makes the schema, the other sees it
        version = _version(store)
        if version is None:
            if store.tables() or not create:
                raise HistoryError(f"{store.name}: not a postlens database (run postlens ingest first)")
            for statement in _SCHEMA:
                store.execute(statement.format(**_TYPES[store.dialect]))
            store.execute("INSERT INTO meta VALUES ('schema_version', '1')")
            version = 1
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _UPGRADES[step]:
                store.execute(statement.format(**_TYPES[store.dialect]))
            if step == 2:
                _index_stored(store)
            store.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(step),))


def _index_stored(store: Store) -> None:
    """Give lines stored before version 2 their queue ID, process and keys."""
    parser = utc_parser()
    rows = store.execute("SELECT id, text FROM lines").fetchall()
    for row_id, text in rows:
        line = parser.parse(text)
        if line is None:
            continue
        proc, qid, keys = _lookup_rows(line)
        store.execute(_SET_INDEX, (line.host, proc, qid, row_id))
        store.insert("keys", _KEY_COLUMNS, keys)


def _lookup_rows(line: Line) -> tuple[str, str | None, list[tuple[Any, ...]]]:
    """A line's process, queue ID, and its rows for the keys table (see lookup.py)."""
    qid, keys = line_keys(line)
    proc = f"{line.program}[{line.pid}]"
    return proc, qid, [(kind, value, line.host, proc, qid, line.ts) for kind, value in keys]


def normalised(ts: float, host: str, program: str, pid: str, payload: str) -> str:
    """A log line as stored: an RFC 3339 stamp in UTC, so its year and zone are never guessed."""
    stamp = datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    tag = f"{program}[{pid}]" if pid else program
    return f"{stamp} {host} {tag}: {payload}"


def fingerprint(source: Source) -> str | None:
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


def _ingest_source(db: Store, source: Source, year: int | None, tz: Any, horizon: float,
                   result: IngestResult, private: Callable[[Line], Line] | None = None) -> None:  # fmt: skip
    identity = fingerprint(source)
    if identity is None:
        return
    st = os.stat(source.path)
    with db.writing():  # offsets are read and moved on under the write lock
        row = db.execute("SELECT read_to, lines FROM files WHERE fingerprint = ?", (identity,)).fetchone()
        offset, count = (row[0], row[1]) if row else (0, 0)
        stream = open_source(source)
        try:
            if offset and stream.seekable():
                stream.seek(offset)
            else:
                skip_bytes(stream, offset)
            parser = LineParser(YearGuess(year, source.mtime, tz), tz)
            consumed = offset
            added = 0
            batch: list[tuple[Any, ...]] = []
            keys: list[tuple[Any, ...]] = []
            for text, size in _complete_lines(source, stream):
                consumed += size
                line = parser.parse(text)
                if line is None or line.ts < horizon:
                    result.skipped += 1
                    continue
                if private is not None:
                    line = private(line)
                _add_row(line, batch, keys)
                if len(batch) >= 5000:
                    added += _store(db, batch, keys)
            added += _store(db, batch, keys)
        finally:
            stream.close()
        db.execute(
            "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE SET "
            "path = excluded.path, device = excluded.device, inode = excluded.inode, "
            "read_to = excluded.read_to, lines = excluded.lines, updated = excluded.updated",
            (identity, source.path, st.st_dev, st.st_ino, consumed, count + added, time.time()),
        )
    if added:
        result.files += 1
        result.lines += added


def _add_row(line: Line, batch: list[tuple[Any, ...]], keys: list[tuple[Any, ...]]) -> None:
    """Add a parsed line, normalised, to a batch for :func:`_store`, and its lookup keys."""
    proc, qid, found = _lookup_rows(line)
    text = normalised(line.ts, line.host, line.program, line.pid, line.payload)
    batch.append((line.ts, line.host, proc, qid, text))
    keys.extend(found)


def store_lines(db_path: str, lines: list[Line], keep_days: int = DEFAULT_KEEP_DAYS) -> int:
    """Store lines that come from no file (the journal, a syslog listener): ``watch`` uses this.
    Retention as in :func:`ingest`: with nothing else ingesting, nothing else would prune."""
    private = _private_lines()
    horizon = time.time() - keep_days * 86400 if keep_days > 0 else float("-inf")
    batch: list[tuple[Any, ...]] = []
    keys: list[tuple[Any, ...]] = []
    for line in lines:
        if line.ts >= horizon:
            _add_row(line if private is None else private(line), batch, keys)
    with connect(db_path, create=True) as db:
        with db.writing():
            stored = _store(db, batch, keys)
        rollup.update(db)
        if keep_days > 0:
            _prune(db, horizon)
    return stored


def _private_lines() -> Callable[[Line], Line] | None:
    """With ``key_file`` in the settings' [history], what makes a line's pseudonymised copy
    (docs/anonymize.md): the database then holds no address, login or host name as read."""
    return history_rewriter(config.load())


_LINE_COLUMNS = ("ts", "host", "proc", "qid", "text")
_KEY_COLUMNS = ("kind", "value", "host", "proc", "qid", "ts")
_SET_INDEX = "UPDATE lines SET host = ?, proc = ?, qid = ? WHERE id = ?"


def _store(db: Store, lines: list[tuple[Any, ...]], keys: list[tuple[Any, ...]]) -> int:
    """Write a batch of lines and their keys; empty the batch; return how many lines."""
    db.insert("lines", _LINE_COLUMNS, lines)
    db.insert("keys", _KEY_COLUMNS, keys)
    n = len(lines)
    lines.clear()
    keys.clear()
    return n


def skip_bytes(stream: Any, nbytes: int) -> None:
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
    if any(s.path == "-" or is_journal(s.path) for s in sources):
        raise UsageError(
            "ingest reads files, not standard input or the journal: it remembers how far each was read "
            "(watch --journal --db stores the journal)"
        )
    now = time.time() if now is None else now
    horizon = now - keep_days * 86400 if keep_days > 0 else float("-inf")
    result = IngestResult()
    private = _private_lines()
    with connect(db_path, create=True) as db:
        for source in sources:
            try:
                _ingest_source(db, source, year, zone(tz), horizon, result, private)
            except InputError as e:
                problems.append(e)
            except OSError as e:
                problems.append(InputError(source.name, e.strerror or str(e)))
        rollup.update(db)
        if keep_days > 0:
            result.pruned = _prune(db, horizon)
    return result, problems


def summarise(db_path: str) -> int:
    """Bring the dashboard's summaries up to the stored lines (ingest does it as it goes; a
    database from an older postlens has lines but no summaries yet); how many lines were read."""
    with connect(db_path) as db:
        return rollup.update(db)


def _prune(db: Store, horizon: float) -> int:
    with db.writing():
        removed: int = db.execute("DELETE FROM lines WHERE ts < ?", (horizon,)).rowcount
        rollup.prune(db, horizon)
    return removed


def prune(db_path: str, older_than_days: float, now: float | None = None) -> int:
    """Remove stored lines older than the given age; return how many."""
    now = time.time() if now is None else now
    with connect(db_path) as db:
        return _prune(db, now - older_than_days * 86400)


def _bounds(since: float | None, until: float | None) -> tuple[float, float]:
    return (-math.inf if since is None else since, math.inf if until is None else until)


def _lines_between(db: Store, lo: float, hi: float) -> Iterator[str]:
    for (text,) in db.stream("SELECT text FROM lines WHERE ts >= ? AND ts < ? ORDER BY ts, id", (lo, hi)):
        yield text


def stored_lines(db_path: str, since: float | None = None, until: float | None = None) -> Iterator[str]:
    """The stored lines in time order (normalised text), within [since, until)."""
    with connect(db_path) as db:
        yield from _lines_between(db, *_bounds(since, until))


def _query_lines(db_path: str, query: Any) -> Iterator[str]:
    """The stored lines a trace of ``query`` needs: looked up by its keys when it has any."""
    lo, hi = _bounds(query.since, query.until)
    with connect(db_path) as db:
        narrowed = narrowed_lines(db, query, lo, hi)
        yield from _lines_between(db, lo, hi) if narrowed is None else narrowed


def history_records(db_path: str, query: Any) -> Any:
    """The stored lines a trace of ``query`` needs, as trace's records: (text, parsed line)."""
    from postlens.trace import Records

    def records(problems: list[InputError]) -> Iterator[tuple[str, Any]]:
        parser = utc_parser()
        for text in _query_lines(db_path, query):
            line = parser.parse(text)
            if line is not None:
                yield text, line

    result: Records = records
    return result


def report_from(db_path: str, settings: Any) -> tuple[dict[str, Any], list[InputError]]:
    """The report of the stored lines within the settings' period."""
    from postlens.pipeline import Analysis

    analysis = Analysis(settings)
    parser = utc_parser()
    analysis.read(stored_lines(db_path, settings.start, settings.end), parser)
    result = analysis.finish()
    result["inputs"] = [{"source": db_path, "error": None}]
    return result, []
