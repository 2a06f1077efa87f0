"""rollup: the history database's summaries, kept up to date as lines are stored.

The dashboard asks about days and weeks of a busy server; reading the lines again for each
page would take minutes. So each ingest (and ``watch --db``) reads the lines stored since the
last one through the pipeline once more and adds what :mod:`postlens.analyses.summaries`
counted to three tables: counts per minute, counts per hour by key (domains, delays,
reasons, IPs, users), and one row per finished message; a fourth holds the messages still
in the queue, as of the last update. Messages still in flight are kept
between runs (pickled in ``rollup_state``), so a message whose lines two ingests stored is
counted once, as in one pass. The lines are read in the order they were stored.
"""

from __future__ import annotations

import pickle
import time
from collections import Counter
from typing import Any

from postlens import config
from postlens.addresses import ContentFilters
from postlens.analyses.summaries import MESSAGE_COLUMNS, Drained, Summaries
from postlens.events import EventParser
from postlens.lines import utc_parser
from postlens.messages import ENDED_ABORTED, Correlator
from postlens.pipeline import routes

# Postfix returns a message after maximal_queue_lifetime (5 days by default): one silent for
# longer lost its last lines (a gap in the log) and is counted as it is
IDLE = 14 * 86400
CHUNK = 100_000  # lines per transaction: an ingest waits at most this long for a catch-up

_MESSAGE_ROW = (  # MESSAGE_COLUMNS
    "(host TEXT NOT NULL, qid TEXT NOT NULL, first_ts {real} NOT NULL, last_ts {real} NOT NULL, "
    "sender TEXT NOT NULL, recipients TEXT NOT NULL, status TEXT NOT NULL, size {int}, "
    "client_ip TEXT NOT NULL, message_id TEXT NOT NULL, reason TEXT NOT NULL)"
)
TABLES = (
    "CREATE TABLE rollup_minutes (minute {int} NOT NULL, metric TEXT NOT NULL, n {int} NOT NULL, "
    "PRIMARY KEY (minute, metric))",
    "CREATE TABLE rollup_hours (hour {int} NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, "
    "n {int} NOT NULL, "
    "PRIMARY KEY (kind, hour, key))",
    "CREATE TABLE rollup_messages " + _MESSAGE_ROW,
    "CREATE INDEX rollup_messages_ts ON rollup_messages (last_ts)",
    "CREATE INDEX rollup_messages_status ON rollup_messages (status, last_ts)",
    "CREATE INDEX rollup_messages_reason ON rollup_messages (reason, last_ts)",
    "CREATE TABLE rollup_state (id {int} PRIMARY KEY, line_id {int} NOT NULL, in_flight {int} NOT NULL, "
    "updated {real} NOT NULL, state {blob})",
)
# schema 4: the messages the log shows still in the queue, as of the last update
QUEUE_TABLES = ("CREATE TABLE rollup_queue " + _MESSAGE_ROW,)


class Roller:
    """The pipeline as the rollup runs it: lines -> events -> messages -> summaries."""

    def __init__(self) -> None:
        self.summaries = s = Summaries()
        self.correlator = Correlator(s.add_message, s.add_session, s.settle, True)
        self._wire()

    def _wire(self) -> None:
        self.parser = utc_parser()
        filters = config.section(config.load(), "history").get("content_filters", ())
        self.events = EventParser(None, ContentFilters(filters))
        self.routes = routes(dict.fromkeys(Correlator.KINDS, self.correlator.feed), self.summaries.handlers())

    def __getstate__(self) -> dict[str, Any]:
        return {"summaries": self.summaries, "correlator": self.correlator}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.summaries, self.correlator = state["summaries"], state["correlator"]
        self._wire()

    def feed(self, text: str) -> None:
        line = self.parser.parse(text)
        if line is None:
            return
        ev = self.events.parse(line)
        if ev is None:
            return
        for consume in self.routes.get(type(ev), ()):
            consume(ev)

    def settle(self, now: float) -> None:
        """At the end of a run, count what is known by ``now``: arrivals held for a content
        filter's link whose window has passed are settled, and the arrivals of messages still
        queued or held are counted now (one that turns out a re-injection is taken back)."""
        correlator = self.correlator
        correlator.advance(now)
        correlator.finish_idle(correlator.runmax - IDLE)
        summaries = self.summaries
        for msg in correlator.open.values():
            if msg.ended != ENDED_ABORTED:
                summaries.count_early(msg.arrived())
        for _, _, held in correlator.held:
            if correlator.candidates.get((held.host, held.qid)) is held:
                summaries.count_early(held)

    def queue_rows(self) -> list[tuple[Any, ...]]:
        """Rows for the messages still in the queue (rollup_queue)."""
        rows = (self.summaries.queued(msg) for msg in self.correlator.open.values())
        return [row for row in rows if row is not None]


def update(db: Any) -> int:
    """Add the lines stored since the last update to the summaries; how many were read."""
    total = 0
    while True:
        with db.writing():
            row = db.execute("SELECT line_id, state FROM rollup_state WHERE id = 1").fetchone()
            last_id, blob = (row[0], row[1]) if row else (0, None)
            rows = db.execute(
                "SELECT id, text FROM lines WHERE id > ? ORDER BY id LIMIT ?", (last_id, CHUNK)
            ).fetchall()
            if not rows:
                return total
            roller = _load(blob)
            for _, text in rows:
                roller.feed(text)
            roller.settle(time.time())
            _write(db, roller.summaries.drain())
            queued = roller.queue_rows()
            db.execute("DELETE FROM rollup_queue")
            db.insert("rollup_queue", MESSAGE_COLUMNS, queued)
            _save(db, roller, rows[-1][0], len(queued))
        total += len(rows)


def _load(blob: bytes | None) -> Roller:
    if blob is not None:
        try:
            roller: Roller = pickle.loads(blob)
            return roller
        except Exception:  # written by another version of postlens: only what was in flight is lost
            pass
    return Roller()


def _save(db: Any, roller: Roller, line_id: int, in_queue: int) -> None:
    db.execute(
        "INSERT INTO rollup_state VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
        "line_id = excluded.line_id, in_flight = excluded.in_flight, updated = excluded.updated, "
        "state = excluded.state",
        (line_id, in_queue, time.time(), pickle.dumps(roller, protocol=pickle.HIGHEST_PROTOCOL)),
    )


def _write(db: Any, drained: Drained) -> None:
    tables: tuple[tuple[str, tuple[str, ...], Counter[Any]], ...] = (
        ("rollup_minutes", ("minute", "metric"), drained.minutes),
        ("rollup_hours", ("hour", "kind", "key"), drained.hours),
    )
    for table, key, counts in tables:
        db.add_counts(table, key, [(*k, n) for k, n in sorted(counts.items()) if n])
        # an arrival counted early and taken back (a re-injection) leaves no row of nothing
        where = " AND ".join(f"{name} = ?" for name in key)
        for k, n in counts.items():
            if n < 0:
                db.execute(f"DELETE FROM {table} WHERE {where} AND n = 0", k)
    db.insert("rollup_messages", MESSAGE_COLUMNS, drained.messages)


def prune(db: Any, horizon: float) -> None:
    """Forget summaries older than the lines kept: the hours hold addresses, IPs and logins too."""
    db.execute("DELETE FROM rollup_minutes WHERE minute < ?", (int(horizon // 60),))
    db.execute("DELETE FROM rollup_hours WHERE hour < ?", (int(horizon // 3600),))
    db.execute("DELETE FROM rollup_messages WHERE last_ts < ?", (horizon,))
    db.execute("DELETE FROM rollup_queue WHERE last_ts < ?", (horizon,))
