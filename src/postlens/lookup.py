"""lookup: find the stored lines of the messages a trace asks for, without reading them all.

At ingest every line gets its queue ID and smtpd process, and the values trace selects on
(sender and recipient addresses and domains, Message-ID, client IP, SASL login, and the
queue IDs it names, such as a content filter's "queued as") go to an indexed ``keys``
table. A trace then reads only:

- every line of each queue ID a key led to, and of the copies and originals it is linked
  to by "queued as" (a message and its content-filter copy are one story);
- the NOQUEUE lines a key led to, and the message that follows a NOQUEUE hold or
  discard in the same smtpd process;
- the lines without a queue ID of the smtpd process that received each message, around
  its arrival (connect, TLS, disconnect, policy lines),

and runs them through the same correlation as a full read; the query's own test then
keeps exactly the hits a full read would keep. Queries this cannot narrow (globs, CIDR
networks, status or time alone) read everything.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

from postlens.events.postfix import split_qid
from postlens.lines import Line

_KEY_RE = re.compile(r"\b(from|to|orig_to|message-id|sasl_username)=<?([^<>,;\s]+)>?")
_CLIENT_RE = re.compile(r"(?:client=|from )[^\s\[]*\[([^\]]+)\]")
_QUEUED_AS_RE = re.compile(r"queued as ([0-9A-Za-z]+)")
_POLICY_RE = re.compile(r": NOQUEUE: (?:milter-)?(?:hold|discard): ")
_KIND = {"orig_to": "to", "message-id": "msgid", "sasl_username": "sasl"}
SESSION_WINDOW = 300.0  # seconds around an arrival in which its smtpd session's lines are read

_HOSTS_OF_QID = "SELECT DISTINCT host FROM lines WHERE qid = ?"
_NAMING_QID = "SELECT host, qid FROM keys WHERE kind = 'qid' AND value = ?"
_NOQUEUE_LINE = "SELECT id, ts, text FROM lines WHERE host = ? AND proc = ? AND ts = ? AND qid IS NULL"
_FOLLOWER = (
    "SELECT host, qid FROM lines WHERE host = ? AND proc = ? AND qid IS NOT NULL "
    "AND (ts > ? OR (ts = ? AND id > ?)) ORDER BY ts, id LIMIT 1"
)
_QID_LINES = "SELECT id, ts, text, proc FROM lines WHERE qid = ? AND host = ?"
_SESSION_LINES = (
    "SELECT id, ts, text FROM lines WHERE host = ? AND proc = ? AND ts >= ? AND ts <= ? AND qid IS NULL"
)
# explicit ts ranges, so the (host, proc, ts) index bounds the scan
_BEFORE = " AND ts >= ? AND ts <= ? AND (ts < ? OR (ts = ? AND id < ?)) ORDER BY ts DESC, id DESC LIMIT 1"
_AFTER = " AND ts >= ? AND ts <= ? AND (ts > ? OR (ts = ? AND id > ?)) ORDER BY ts, id LIMIT 1"
SESSION_LIMIT = 3600.0  # the longest smtpd session looked for around an arrival
_IN_PROC = "SELECT ts, id FROM lines WHERE host = ? AND proc = ? AND "
_SESSION_START = _IN_PROC + "text LIKE ?" + _BEFORE  # a parameter: psycopg reads % in SQL text
_SESSION_END = _IN_PROC + "text LIKE ?" + _AFTER
_PREVIOUS_MESSAGE = _IN_PROC + "qid IS NOT NULL" + _BEFORE
_LINKS_FROM = "SELECT host, value FROM keys WHERE kind = 'qid' AND qid = ? AND host = ?"
_LINKS_TO = "SELECT host, qid FROM keys WHERE kind = 'qid' AND value = ? AND host = ? AND qid IS NOT NULL"


def line_keys(line: Line) -> tuple[str | None, list[tuple[str, str]]]:
    """A line's queue ID (None for none or NOQUEUE) and its (kind, value) keys."""
    split = split_qid(line.payload)
    qid = split[0] if split is not None and split[0] != "NOQUEUE" else None
    keys: list[tuple[str, str]] = []
    for name, value in _KEY_RE.findall(line.payload):
        kind = _KIND.get(name, name)
        if kind == "msgid":
            keys.append((kind, value))
            continue
        value = value.lower()
        keys.append((kind, value))
        if kind in ("from", "to") and "@" in value:
            keys.append((kind + "_domain", value.rpartition("@")[2]))
    keys.extend(("client", ip) for ip in _CLIENT_RE.findall(line.payload))
    keys.extend(("qid", target) for target in _QUEUED_AS_RE.findall(line.payload))
    return qid, keys


def _domain_keys(kind: str, patterns: tuple[str, ...]) -> list[tuple[str, str, bool]] | None:
    """(kind, value, subdomains too) lookups for address options; None when one is a glob."""
    out = []
    for p in patterns:
        p = p.lower()
        if any(c in p for c in "*?["):
            return None
        out.append((kind, p, False) if "@" in p else (kind + "_domain", p, True))
    return out


def _lookups(query: Any) -> list[tuple[str, str, bool]] | None:
    """The key lookups for the most selective option of a query; None when none narrows it."""
    if query.qids:
        return [("qid", q, False) for q in query.qids]
    if query.msgids:
        return [("msgid", m.strip("<>"), False) for m in query.msgids]
    if query.sasl_users:
        return [("sasl", u.lower(), False) for u in query.sasl_users]
    if query.clients and all("/" not in c for c in query.clients):
        return [("client", c, False) for c in query.clients]
    if query.recipients:
        return _domain_keys("to", query.recipients)
    if query.senders:
        return _domain_keys("from", query.senders)
    return None


def narrowed_lines(store: Any, query: Any, lo: float, hi: float) -> Iterator[str] | None:
    """The stored lines in [lo, hi) a trace needs for ``query``, in time order; None to read
    everything."""
    lookups = _lookups(query)
    if lookups is None:
        return None
    qids: set[tuple[str, str]] = set()
    noqueue: set[tuple[str, str, float]] = set()
    for kind, value, subdomains in lookups:
        if kind == "qid":
            qids.update((h, value) for (h,) in store.execute(_HOSTS_OF_QID, (value,)))
            qids.update((h, q) for h, q in store.execute(_NAMING_QID, (value,)) if q is not None)
            continue
        # a message is found only by its lines in [lo, hi): only keys of those lines lead to one
        sql, params = _key_rows(kind, value, subdomains, lo, hi)
        for host, proc, qid, ts in store.execute("SELECT host, proc, qid, ts" + sql, params):
            if qid is not None:
                qids.add((host, qid))
            else:
                noqueue.add((host, proc, ts))
    rows: dict[int, tuple[float, str]] = {}
    for host, proc, ts in noqueue:
        for row_id, line_ts, text in store.execute(_NOQUEUE_LINE, (host, proc, ts)):
            rows[row_id] = (line_ts, text)
            if _POLICY_RE.search(text):  # a NOQUEUE hold or discard names smtpd's next message
                follower = store.execute(_FOLLOWER, (host, proc, ts, ts, row_id)).fetchone()
                if follower is not None:
                    qids.add((follower[0], follower[1]))
    _linked(store, qids)
    arrivals: list[tuple[str, str, float, int]] = []
    for host, qid in qids:
        for row_id, ts, text, proc in store.execute(_QID_LINES, (qid, host)):
            rows[row_id] = (ts, text)
            if "/smtpd[" in proc and ": client=" in text:
                arrivals.append((host, proc, ts, row_id))
    sessions: dict[tuple[Any, ...], list[tuple[int, float, str]]] = {}  # read once per session
    for arrival in arrivals:
        rows.update(_session_lines(store, *arrival, sessions))
    ordered = sorted(rows.items(), key=lambda item: (item[1][0], item[0]))
    return iter([text for _, (ts, text) in ordered if lo <= ts < hi])


def _key_rows(kind: str, value: str, subdomains: bool, lo: float, hi: float) -> tuple[str, tuple[Any, ...]]:
    """The FROM and WHERE of the key rows a lookup finds in [lo, hi), and their parameters."""
    sql = " FROM keys WHERE kind = ? AND (value = ?"
    params: tuple[Any, ...] = (kind, value)
    if subdomains:
        sql += " OR value LIKE ?"
        params += ("%." + value,)
    sql += ")"
    if lo > -math.inf:
        sql += " AND ts >= ?"
        params += (lo,)
    if hi < math.inf:
        sql += " AND ts < ?"
        params += (hi,)
    return sql, params


def newest_start(store: Any, query: Any, lo: float, hi: float, limit: int) -> float | None:
    """Where [lo, hi) must start for a trace of ``query`` to meet at most about ``limit`` of
    its key lines, the newest; None when it meets no more than that anyway, or cannot be
    narrowed. (A page that lists what a trace finds shows the newest part first.)"""
    lookups = _lookups(query)
    if lookups is None:
        return None
    newest: list[float] = []
    for kind, value, subdomains in lookups:
        if kind == "qid":
            continue
        sql, params = _key_rows(kind, value, subdomains, lo, hi)
        newest += [
            ts for (ts,) in store.execute(f"SELECT ts{sql} ORDER BY ts DESC LIMIT ?", (*params, limit + 1))
        ]
    if len(newest) <= limit:
        return None
    return sorted(newest, reverse=True)[limit - 1]


def _session_lines(
    store: Any, host: str, proc: str, ts: float, row_id: int, sessions: dict[tuple[Any, ...], Any]
) -> dict[int, tuple[float, str]]:
    """The lines without a queue ID of the smtpd session a message arrived in: from its
    connect to its disconnect, and of the NOQUEUE lines only those of this transaction (a
    hold or discard before it names this message, not the one before)."""
    before = (ts - SESSION_LIMIT, ts, ts, ts, row_id)
    after = (ts, ts + SESSION_LIMIT, ts, ts, row_id)
    start = store.execute(_SESSION_START, (host, proc, "%: connect from %", *before)).fetchone()
    end = store.execute(_SESSION_END, (host, proc, "%: disconnect from %", *after)).fetchone()
    start = start or (ts - SESSION_WINDOW, -1)
    end = end or (ts + SESSION_WINDOW, 1 << 62)
    previous = store.execute(_PREVIOUS_MESSAGE, (host, proc, *before)).fetchone() or start
    key = (host, proc, tuple(start), tuple(end))
    lines = sessions.get(key)
    if lines is None:
        lines = sessions[key] = [
            (line_id, line_ts, text)
            for line_id, line_ts, text in store.execute(_SESSION_LINES, (host, proc, start[0], end[0]))
            if tuple(start) <= (line_ts, line_id) <= tuple(end)
        ]
    found: dict[int, tuple[float, str]] = {}
    for line_id, line_ts, text in lines:
        if ": NOQUEUE: " in text and not (tuple(previous) < (line_ts, line_id) < (ts, row_id)):
            continue
        found[line_id] = (line_ts, text)
    return found


def _linked(store: Any, qids: set[tuple[str, str]]) -> None:
    """Add the queue IDs linked to these by "queued as", both ways, until none is new."""
    todo = list(qids)
    while todo:
        host, qid = todo.pop()
        linked = set(store.execute(_LINKS_FROM, (qid, host))) | set(store.execute(_LINKS_TO, (qid, host)))
        for key in {(h, q) for h, q in linked} - qids:
            qids.add(key)
            todo.append(key)
