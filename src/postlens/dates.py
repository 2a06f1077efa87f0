"""Times given and shown: -d periods, --since/--until moments, and ISO 8601 in UTC."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta, tzinfo

from postlens.errors import UsageError
from postlens.lines import digits


def _day(text: str, today: date) -> date:
    if text == "today":
        return today
    if text == "yesterday":
        return today - timedelta(days=1)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"-d: {text!r} is not today, yesterday or a date like 2026-11-27") from None


def _midnight(d: date, tz: tzinfo | None) -> float:
    dt = datetime(d.year, d.month, d.day)
    return dt.timestamp() if tz is None else dt.replace(tzinfo=tz).timestamp()


def period(spec: str, tz: tzinfo | None, now: float | None = None) -> tuple[float, float]:
    """[start, end) in epoch seconds for ``spec``: DAY or FIRST..LAST (both days included)."""
    today = datetime.fromtimestamp(time.time() if now is None else now, tz).date()
    first, sep, last = spec.partition("..")
    start = _day(first.strip(), today)
    end = _day(last.strip(), today) if sep else start
    if end < start:
        raise UsageError(f"-d: the range {spec!r} ends before it starts")
    return _midnight(start, tz), _midnight(end + timedelta(days=1), tz)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _seconds(text: str) -> int | None:
    unit = _UNITS.get(text[-1:])
    return int(text[:-1]) * unit if unit is not None and digits(text[:-1]) else None


def duration(text: str, option: str) -> int:
    """A length of time in seconds: ``90s``, ``10m``, ``2h``, ``3d``, ``1w``."""
    seconds = _seconds(text.strip())
    if not seconds:
        raise UsageError(f"{option}: {text!r} is not a length of time like 10m, 2h or 1d")
    return seconds


def moment(text: str, tz: tzinfo | None, option: str, now: float | None = None) -> float:
    """A point in time: relative to now (``90m``, ``2h``, ``3d``, ``1w``) or ISO 8601."""
    now = time.time() if now is None else now
    ago = _seconds(text)
    if ago is not None:
        return now - ago
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not a time like 2h, 3d or 2026-11-27T08:00") from None
    if dt.tzinfo is None:
        return dt.timestamp() if tz is None else dt.replace(tzinfo=tz).timestamp()
    return dt.timestamp()


def iso_utc(ts: float) -> str:
    """An epoch time as ISO 8601 in UTC with a Z, as the JSON outputs show times."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
