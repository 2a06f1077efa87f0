"""export: every message, delivery attempt, reject or login as rows, for spreadsheets and databases.

Rows are written as each message's story ends (not sorted), so memory stays that of the
messages in flight however long the log. Formats: CSV (cells a spreadsheet would run as a
formula are neutralised), JSON Lines, JSON Lines with Elastic Common Schema field names
(for Elasticsearch, OpenSearch, Graylog), SQLite and Parquet. Columns: docs/export.md.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from postlens.addresses import ContentFilters
from postlens.dates import iso_utc
from postlens.errors import InputError, UsageError
from postlens.events import AuthFailure, Event, EventParser, Login
from postlens.output import output_file, output_path
from postlens.trace import Query, in_networks, records_for, scan

TABLES: dict[str, tuple[str, ...]] = {
    "messages": (
        "first", "last", "host", "queue_ids", "message_id", "sender", "size", "origin", "client_host",
        "client_ip", "sasl_user", "recipients", "state", "verdict",
    ),
    "deliveries": (
        "time", "host", "queue_id", "message_id", "sender", "recipient", "orig_to", "daemon", "relay",
        "delay", "delays", "dsn", "status", "reply",
    ),
    "rejects": (
        "time", "host", "queue_id", "client_host", "client_ip", "sender", "recipient", "daemon", "action",
        "stage", "code", "reason",
    ),
    "auth": ("time", "host", "service", "client_ip", "username", "method", "result", "reason"),
}  # fmt: skip
EXPORT_FORMATS = ("csv", "jsonl", "ecs", "sqlite", "parquet")
_NUMERIC = {"size": "int64", "delay": "float64"}  # every other column is text
_PARQUET_BATCH = 10_000

Row = dict[str, Any]


def _message_rows(hit: dict[str, Any]) -> Iterator[Row]:
    if hit["kind"] != "message":
        return
    yield {
        "first": hit["first"], "last": hit["last"], "host": hit["host"],
        "queue_ids": " ".join(hit["queue_ids"]), "message_id": hit["message_id"], "sender": hit["sender"],
        "size": hit["size"], "origin": hit["origin"], "client_host": hit["client"]["host"],
        "client_ip": hit["client"]["ip"], "sasl_user": hit["sasl_user"],
        "recipients": " ".join(r["to"] for r in hit["recipients"]), "state": hit["state"],
        "verdict": hit["verdict"],
    }  # fmt: skip


def _delivery_rows(hit: dict[str, Any]) -> Iterator[Row]:
    for r in hit["recipients"]:
        for a in r["attempts"]:
            yield {
                "time": a["time"], "host": hit["host"], "queue_id": a["queue_id"],
                "message_id": hit["message_id"], "sender": hit["sender"], "recipient": r["to"],
                "orig_to": r["orig_to"], "daemon": a["daemon"], "relay": a["relay"], "delay": a["delay"],
                "delays": a["delays"], "dsn": a["dsn"], "status": a["status"], "reply": a["reply"],
            }  # fmt: skip


def _reject_rows(hit: dict[str, Any]) -> Iterator[Row]:
    for rej in hit["rejects"]:
        yield {
            "time": rej["time"], "host": hit["host"], "queue_id": " ".join(hit["queue_ids"]),
            "client_host": hit["client"]["host"], "client_ip": hit["client"]["ip"], "sender": hit["sender"],
            "recipient": rej["recipient"], "daemon": rej["daemon"], "action": rej["action"],
            "stage": rej["stage"], "code": rej["code"], "reason": rej["reason"],
        }  # fmt: skip


_HIT_ROWS: dict[str, Callable[[dict[str, Any]], Iterator[Row]]] = {
    "messages": _message_rows,
    "deliveries": _delivery_rows,
    "rejects": _reject_rows,
}


def auth_row(ev: Event) -> Row | None:
    """A SASL or Dovecot login, failed or not."""
    line = ev.line
    if isinstance(ev, AuthFailure):
        return {
            "time": iso_utc(line.ts), "host": line.host, "service": ev.tag.daemon, "client_ip": ev.client_ip,
            "username": ev.username, "method": ev.method, "result": "failure", "reason": ev.reason,
        }  # fmt: skip
    if isinstance(ev, Login):
        return {
            "time": iso_utc(line.ts), "host": line.host, "service": ev.service, "client_ip": ev.client_ip,
            "username": ev.username, "method": ev.method, "result": "success", "reason": "",
        }  # fmt: skip
    return None


def _auth_selected(ts: float, row: Row, query: Query, networks: list[Any]) -> bool:
    """The query's client, user and time options, applied to a login at ``ts``."""
    if (query.since is not None and ts < query.since) or (query.until is not None and ts >= query.until):
        return False
    if networks and not in_networks(row["client_ip"], networks):
        return False
    return not query.sasl_users or row["username"].lower() in {u.lower() for u in query.sasl_users}


# -- writers ------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A cell a spreadsheet shows as text: one that would start a formula gets a leading '."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return "" if value is None else value


_OUTCOME = {
    "delivered": "success", "sent": "success", "bounced": "failure", "rejected": "failure",
    "expired": "failure", "reject": "failure",
}  # fmt: skip


def _event(category: str, action: str, **extra: Any) -> dict[str, Any]:
    return {"category": [category], "action": action, "outcome": _OUTCOME.get(action, "unknown"), **extra}


def _ecs(table: str, row: Row) -> dict[str, Any]:
    """A row under Elastic Common Schema names; what has no ECS name goes under ``postfix``."""
    doc: dict[str, Any] = {"@timestamp": row.get("time") or row.get("first"), "host": {"name": row["host"]}}
    if table == "auth":
        doc["event"] = _event("authentication", "login", reason=row["reason"] or None)
        doc["event"]["outcome"] = row["result"]
        doc["source"] = {"ip": row["client_ip"] or None}
        doc["user"] = {"name": row["username"]}
        doc["service"] = {"name": row["service"]}
        return doc
    email: dict[str, Any] = {"from": {"address": [row["sender"]] if row["sender"] else []}}
    doc["email"] = email
    if table == "messages":
        doc["event"] = _event("email", row["state"])
        email.update(to={"address": row["recipients"].split()}, message_id=row["message_id"])
        email["local_id"] = row["queue_ids"]
        doc["source"] = {"ip": row["client_ip"] or None, "domain": row["client_host"] or None}
        doc["user"] = {"name": row["sasl_user"]}
        doc["message"] = row["verdict"]
        doc["postfix"] = {"size": row["size"], "origin": row["origin"], "last": row["last"]}
    elif table == "deliveries":
        doc["event"] = _event("email", row["status"], duration=int(row["delay"] * 1e9))
        email.update(to={"address": [row["recipient"]]}, message_id=row["message_id"])
        email["local_id"] = row["queue_id"]
        doc["destination"] = {"address": row["relay"]}
        doc["message"] = row["reply"]
        doc["postfix"] = {"daemon": row["daemon"], "dsn": row["dsn"], "delays": row["delays"]}
        doc["postfix"]["orig_to"] = row["orig_to"]
    else:  # rejects
        doc["event"] = _event("email", row["action"], reason=row["reason"])
        doc["event"]["outcome"] = "failure"
        email["to"] = {"address": [row["recipient"]] if row["recipient"] else []}
        email["local_id"] = row["queue_id"] or None
        doc["source"] = {"ip": row["client_ip"] or None, "domain": row["client_host"] or None}
        doc["postfix"] = {"daemon": row["daemon"], "stage": row["stage"], "code": row["code"]}
    return doc


@contextmanager
def _writer(table: str, fmt: str, path: str | None) -> Iterator[Callable[[Row], None]]:
    columns = TABLES[table]
    if fmt == "sqlite":
        if path is None or path == "-":
            raise UsageError("--format sqlite needs -o FILE")
        with output_path(path) as tmp:
            db = sqlite3.connect(tmp)
            try:
                db.execute(f"CREATE TABLE {table} ({', '.join(columns)})")
                insert = f"INSERT INTO {table} VALUES ({', '.join('?' * len(columns))})"

                def write_row(row: Row) -> None:
                    db.execute(insert, [row[c] for c in columns])

                yield write_row
                db.commit()
            finally:
                db.close()
        return
    if fmt == "parquet":
        with _parquet_writer(columns, path) as write:
            yield write
        return
    with output_file(path) as out:
        yield _text_writer(table, fmt, columns, out)


@contextmanager
def _parquet_writer(columns: tuple[str, ...], path: str | None) -> Iterator[Callable[[Row], None]]:
    """Rows written in row groups of ``_PARQUET_BATCH``: memory stays that of one group."""
    if path is None or path == "-":
        raise UsageError("--format parquet needs -o FILE")
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise UsageError("--format parquet needs pyarrow: pip install 'postlens[parquet]'") from e
    schema = pa.schema([(c, getattr(pa, _NUMERIC.get(c, "string"))()) for c in columns])
    batch: list[Row] = []
    with output_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:

        def flush() -> None:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            batch.clear()

        def write_row(row: Row) -> None:
            batch.append(row)
            if len(batch) >= _PARQUET_BATCH:
                flush()

        yield write_row
        if batch:
            flush()


def _text_writer(table: str, fmt: str, columns: tuple[str, ...], out: TextIO) -> Callable[[Row], None]:
    if fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(columns)

        def write_csv(row: Row) -> None:
            w.writerow([csv_cell(row[c]) for c in columns])

        return write_csv

    def write_json(row: Row) -> None:
        doc = _ecs(table, row) if fmt == "ecs" else {c: row[c] for c in columns}
        out.write(json.dumps(doc, ensure_ascii=False) + "\n")

    return write_json


def export(
    paths: list[str],
    query: Query,
    table: str = "messages",
    fmt: str = "csv",
    output: str | None = None,
    *,
    year: int | None = None,
    tz: str | None = None,
    syslog_name: str | None = None,
    filters: ContentFilters | None = None,
    db: str | None = None,
) -> tuple[int, list[InputError]]:
    """Write the rows of ``table`` for what ``query`` selects in the logs (or the history
    database ``db``); return how many, and the input problems."""
    records, problems = records_for(paths, query, year=year, tz=tz, db=db)
    events = EventParser(syslog_name, filters)
    count = 0
    with _writer(table, fmt, output) as write:

        def emit(row: Row) -> None:
            nonlocal count
            count += 1
            write(row)

        if table == "auth":
            networks = query.networks()

            def on_event(ev: Event) -> None:
                row = auth_row(ev)
                if row is not None and _auth_selected(ev.line.ts, row, query, networks):
                    emit(row)

            # logins are not messages: the hits are not wanted, only the events on the way
            scan(records, query, lambda hit: None, events, problems, on_event=on_event)
        else:
            rows = _HIT_ROWS[table]

            def keep(hit: dict[str, Any]) -> None:
                for row in rows(hit):
                    emit(row)

            scan(records, query, keep, events, problems)
    return count, problems
