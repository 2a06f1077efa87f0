"""data: what each dashboard page shows, read from the history database's summaries.

Every function takes an open :class:`~postlens.history.Store` and a :class:`Period` and
returns plain data (the pages render it, the JSON API returns it as is). They read the
rollup tables (rollup.py), which stay small however many lines are stored: a week of a
busy server is some ten thousand rows per metric.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from postlens.analyses.reasons import Rules
from postlens.analyses.summaries import MESSAGE_COLUMNS, MINUTE_METRICS
from postlens.dates import iso_utc

RANGES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
# seconds per point, the finest under MAX_POINTS; from an hour on, read from hourly counts
STEPS = (60, 300, 600, 3600, 3 * 3600, 86400)
MAX_POINTS = 1500
TOP = 10
STACKED = ("delivered", "deferred", "bounced", "expired", "rejected")


@dataclass(frozen=True, slots=True)
class Period:
    start: float
    end: float
    name: str  # a key of RANGES, or "custom"

    @property
    def step(self) -> int:
        span = self.end - self.start
        return next((s for s in STEPS if span / s <= MAX_POINTS), STEPS[-1])

    def minutes(self) -> tuple[int, int]:
        return int(self.start // 60), math.ceil(self.end / 60)

    def hours(self) -> tuple[int, int]:
        return int(self.start // 3600), math.ceil(self.end / 3600)


def latest(db: Any) -> float | None:
    """The time of the newest summarised minute's end: "now" for a log that is not live."""
    row = db.execute("SELECT MAX(minute) FROM rollup_minutes").fetchone()
    return (row[0] + 1) * 60.0 if row and row[0] is not None else None


def period(db: Any, name: str, start: float | None = None, end: float | None = None) -> Period:
    """The period a page shows: a named range up to the newest data (or the clock, when the
    log is live), or ``start``..``end``."""
    if start is not None and end is not None and start < end:
        return Period(start, end, "custom")
    now = latest(db) or time.time()
    span = RANGES.get(name, RANGES["24h"])
    return Period(now - span, now, name if name in RANGES else "24h")


def _rows(db: Any, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return list(db.execute(sql, params).fetchall())


def series(db: Any, p: Period, metrics: tuple[str, ...], tz: str | None) -> dict[str, Any]:
    """Counts of ``metrics`` per step over the period, as charts.js draws them. The first and
    last points cover their whole step, also where the period begins or ends inside it."""
    step = p.step
    marks = ", ".join("?" * len(metrics))
    if step >= 3600:
        lo, hi = p.hours()
        per = step // 3600
        sql = (
            f"SELECT hour / ? AS b, key, SUM(n) FROM rollup_hours WHERE kind = 'metric' AND hour >= ? "
            f"AND hour < ? AND key IN ({marks}) GROUP BY b, key"
        )
    else:
        lo, hi = p.minutes()
        per = step // 60
        sql = (
            f"SELECT minute / ? AS b, metric, SUM(n) FROM rollup_minutes WHERE minute >= ? AND minute < ? "
            f"AND metric IN ({marks}) GROUP BY b, metric"
        )
    rows = _rows(db, sql, (per, lo, hi, *metrics))
    first, last = lo // per, (hi - 1) // per
    values = {m: [0] * (last - first + 1) for m in metrics}
    for b, metric, n in rows:
        values[metric][int(b) - first] = int(n)
    return {
        "x": [b * step for b in range(first, last + 1)],
        "series": [{"name": m, "values": values[m]} for m in metrics],
        "tz": tz or "UTC",
        "step": step,
    }


def totals(db: Any, p: Period) -> dict[str, int]:
    """Exact counts of the period: whole hours from the hourly counts, the ends by minute."""
    lo, hi = p.minutes()
    first_hour, last_hour = -(-lo // 60), hi // 60
    spans = [(lo, hi)] if first_hour >= last_hour else [(lo, first_hour * 60), (last_hour * 60, hi)]
    found: Counter[str] = Counter()
    for a, b in spans:
        for metric, n in _rows(
            db,
            "SELECT metric, SUM(n) FROM rollup_minutes WHERE minute >= ? AND minute < ? GROUP BY metric",
            (a, b),
        ):
            found[metric] += int(n)
    if first_hour < last_hour:
        for metric, n in _rows(
            db,
            "SELECT key, SUM(n) FROM rollup_hours WHERE kind = 'metric' AND hour >= ? AND hour < ? "
            "GROUP BY key",
            (first_hour, last_hour),
        ):
            found[metric] += int(n)
    return {m: found.get(m, 0) for m in MINUTE_METRICS}


def top(db: Any, p: Period, kind: str, limit: int = TOP) -> list[tuple[str, int]]:
    lo, hi = p.hours()
    rows = _rows(
        db,
        "SELECT key, SUM(n) AS total FROM rollup_hours WHERE kind = ? AND hour >= ? AND hour < ? "
        "GROUP BY key ORDER BY total DESC, key LIMIT ?",
        (kind, lo, hi, limit),
    )
    return [(k, int(n)) for k, n in rows]


def delays(db: Any, p: Period) -> dict[str, float | None]:
    """Percentiles of the delivery delay (seconds from arrival to delivery), exact: Postfix
    logs delays with two significant digits, so each hour keeps each value and its count."""
    lo, hi = p.hours()
    rows = _rows(
        db,
        "SELECT CAST(key AS DOUBLE PRECISION) AS d, SUM(n) FROM rollup_hours "
        "WHERE kind = 'delay' AND hour >= ? AND hour < ? GROUP BY d ORDER BY d",
        (lo, hi),
    )
    total = sum(int(n) for _, n in rows)
    out: dict[str, float | None] = {}
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)):
        if not total:
            out[name] = None
            continue
        rank, seen = max(1, math.ceil(q * total)), 0
        for d, n in rows:
            seen += int(n)
            if seen >= rank:
                out[name] = float(d)
                break
    return out


def hosts(db: Any, p: Period) -> list[dict[str, Any]]:
    """Each mail server's totals in the period (hour by hour: whole hours around the period),
    most mail first; the overview shows them when the log holds more than one server."""
    lo, hi = p.hours()
    per_host: dict[str, dict[str, int]] = {}
    for key, n in _rows(
        db,
        "SELECT key, SUM(n) FROM rollup_hours WHERE kind = 'host' AND hour >= ? AND hour < ? GROUP BY key",
        (lo, hi),
    ):
        metric, _, host = key.partition("\t")
        per_host.setdefault(host, dict.fromkeys(MINUTE_METRICS, 0))[metric] = int(n)
    ranked = sorted(per_host.items(), key=lambda kv: (-(kv[1]["received"] + kv[1]["delivered"]), kv[0]))
    return [{"host": host, **counts} for host, counts in ranked]


def queue_in_log(db: Any) -> dict[str, Any]:
    """Messages the log shows in the queue (arrived, not yet removed), as of the last rollup."""
    row = db.execute("SELECT in_flight, updated FROM rollup_state WHERE id = 1").fetchone()
    return {"messages": int(row[0]) if row else 0, "updated": iso_utc(row[1]) if row else None}


def overview(db: Any, p: Period, tz: str | None) -> dict[str, Any]:
    return {
        "period": _period_dict(p),
        "totals": totals(db, p),
        "traffic": {"kind": "stacked", **series(db, p, STACKED, tz)},
        "received": {"kind": "lines", **series(db, p, ("received",), tz)},
        "delays": delays(db, p),
        "to_domains": top(db, p, "to"),
        "from_domains": top(db, p, "from"),
        "queue": queue_in_log(db),
        "hosts": hosts(db, p),
    }


def _period_dict(p: Period) -> dict[str, Any]:
    return {"name": p.name, "start": iso_utc(p.start), "end": iso_utc(p.end), "step": p.step}


def problems(db: Any, p: Period, rules: Rules) -> dict[str, Any]:
    """Failure replies (deferrals, bounces, rejects) by reason, most frequent first."""
    lo, hi = p.hours()
    by_reason: dict[str, Counter[str]] = {}
    for key, n in _rows(
        db,
        "SELECT key, SUM(n) FROM rollup_hours WHERE kind = 'reason' AND hour >= ? AND hour < ? GROUP BY key",
        (lo, hi),
    ):
        kind, _, reason = key.partition("\t")
        by_reason.setdefault(reason, Counter())[kind] += int(n)
    domains: dict[str, list[tuple[str, int]]] = {}
    for key, n in _rows(
        db,
        "SELECT key, SUM(n) AS total FROM rollup_hours WHERE kind = 'reason_domain' "
        "AND hour >= ? AND hour < ? GROUP BY key ORDER BY total DESC, key",
        (lo, hi),
    ):
        reason, _, dom = key.partition("\t")
        if len(domains.setdefault(reason, [])) < TOP:
            domains[reason].append((dom, int(n)))
    known = {r.id: r for r in rules.reasons()}
    rows: list[dict[str, Any]] = []
    for rid, kinds in by_reason.items():
        r = known.get(rid)
        rows.append({
            "id": rid,
            "title": r.title if r else rid,
            "explanation": r.explanation if r else "",
            "action": r.action if r else "",
            "replies": sum(kinds.values()),
            "kinds": dict(sorted(kinds.items())),
            "domains": domains.get(rid, []),
        })  # fmt: skip
    rows.sort(key=lambda row: (-row["replies"], row["id"]))
    return {"period": _period_dict(p), "problems": rows}


def security(db: Any, p: Period, tz: str | None, threshold: int) -> dict[str, Any]:
    """Failed logins over time, by IP and username; IPs at ``threshold`` or more in one hour."""
    return {
        "period": _period_dict(p),
        "failures": {"kind": "lines", **series(db, p, ("auth_failures", "rejected"), tz)},
        "total": totals(db, p)["auth_failures"],
        "ips": top(db, p, "auth_ip", 25),
        "usernames": top(db, p, "auth_user", 25),
        "rejected_ips": top(db, p, "rejected_ip", 25),
        "sasl_senders": top(db, p, "sasl_sender", 25),
        "content_checks": [(*key.split("\t", 1), n) for key, n in top(db, p, "verdict", 100)],
        "alerts": alerts(db, p, threshold),
        "threshold": threshold,
    }


def alerts(db: Any, p: Period, threshold: int) -> list[dict[str, Any]]:
    """The IPs that failed ``threshold`` logins or more in one hour of the period, most first."""
    lo, hi = p.hours()
    hourly = _rows(
        db,
        "SELECT key, MAX(n), SUM(n) FROM rollup_hours WHERE kind = 'auth_ip' AND hour >= ? AND hour < ? "
        "GROUP BY key HAVING MAX(n) >= ? ORDER BY SUM(n) DESC, key",
        (lo, hi, threshold),
    )
    return [
        {
            "ip": ip,
            "most_in_an_hour": int(most),
            "failures": int(n),
            "text": f"{ip}: {int(n)} failed logins, up to {int(most)} in one hour",
        }
        for ip, most, n in hourly
    ]


def messages(
    db: Any, p: Period, *, status: str = "", reason: str = "", limit: int = 200, queue: bool = False
) -> list[dict[str, Any]]:
    """Finished messages of the period, newest first, by status or failure reason; with
    ``queue``, the messages still in the queue as of the last rollup, whatever the period."""
    where: list[str] = ["1 = 1"] if queue else ["last_ts >= ?", "last_ts < ?"]
    params: list[Any] = [] if queue else [p.start, p.end]
    if status:
        where.append("status = ?")
        params.append(status)
    if reason:
        where.append("reason = ?")
        params.append(reason)
    rows = _rows(
        db,
        f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM {'rollup_queue' if queue else 'rollup_messages'} "
        f"WHERE {' AND '.join(where)} "
        "ORDER BY last_ts DESC LIMIT ?",
        (*params, limit),
    )
    return [dict(zip(MESSAGE_COLUMNS, row, strict=True)) for row in rows]


def weekly(db: Any, p: Period, tz: tzinfo | None, tz_name: str | None) -> dict[str, Any]:
    """Received per hour of day by weekday over the period, and each day's totals (a table,
    and a chart of mail by status per local day)."""
    lo, hi = p.hours()
    rows = _rows(
        db,
        "SELECT hour, key, SUM(n) FROM rollup_hours WHERE kind = 'metric' AND hour >= ? AND hour < ? "
        "GROUP BY hour, key",
        (lo, hi),
    )
    grid = [[0] * 24 for _ in range(7)]
    days: dict[str, Counter[str]] = {}
    for h, metric, n in rows:
        local = datetime.fromtimestamp(int(h) * 3600, tz)
        if metric == "received":
            grid[local.weekday()][local.hour] += int(n)
        days.setdefault(local.date().isoformat(), Counter())[metric] += int(n)
    per_day: list[dict[str, Any]] = [
        {"day": d, **{m: c.get(m, 0) for m in MINUTE_METRICS}} for d, c in sorted(days.items())
    ]
    midnights = [datetime.fromisoformat(r["day"]).replace(tzinfo=tz).timestamp() for r in per_day]
    return {
        "period": _period_dict(p),
        "grid": grid,
        "days": per_day,
        "per_day": {
            "kind": "stacked",
            "x": midnights,
            "series": [{"name": m, "values": [r[m] for r in per_day]} for m in STACKED],
            "tz": tz_name or "UTC",
            "step": 86400,
        },
    }
