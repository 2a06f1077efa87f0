"""lines: split a raw log line into time, host, program tag and payload.

This is the perimeter of the pipeline: it accepts every timestamp format that mail
logs are written in (RFC 3164 with or without a year, RFC 3339, journalctl short-iso
and short-precise, RFC 5424, a Docker-style RFC 3339 prefix, Postfix's maillog_file)
and turns each line into a :class:`Line`, or ``None`` when no header can be found.

Year-less stamps take their year from an explicit year, else from the file's
modification time; a December-to-January step inside one source moves the year on.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from operator import attrgetter
from typing import Any, Final

try:
    from postlens import _fastparse
except ImportError:  # a plain-Python install (setup.py): the Python paths below do it all
    _fastparse = None  # type: ignore[assignment]

# Final: compiled code keeps it in a C variable instead of looking it up at each line
_C_CLASSIC_HEADER: Final = None if _fastparse is None else _fastparse.classic_header

MONTHS: Final = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}

MONTH_NAMES: Final = {i: m for m, i in MONTHS.items()}

# Header formats, kept on each line because pflogsumm reads only two of them.
FMT_CLASSIC: Final = 1  # Nov 28 19:45:39 (also maillog_file)
FMT_CLASSIC_FRACTION: Final = 2  # journalctl short-precise
FMT_ISO: Final = 3  # RFC 3339 with Z or +hh:mm
FMT_ISO_OTHER: Final = 4  # ISO without zone, +hhmm offsets (journalctl short-iso), space separator
FMT_RFC5424: Final = 5
FMT_DOCKER: Final = 6  # RFC 3339 prefix before a classic syslog line

PFLOGSUMM_FORMATS: Final = frozenset((FMT_CLASSIC, FMT_ISO))

_TAG: Final = r"(\S+) ([^\s\[]+?)(?:\[(\d+)\])?: ?(.*)"
_CLASSIC_RE: Final = re.compile(r"([A-Z][a-z]{2})  ?(\d{1,2}) (\d\d:\d\d:\d\d)(\.\d+)? " + _TAG, re.S)
_ISO_STAMP: Final = r"(\d{4}-\d\d-\d\d)([T ])(\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:?\d\d)?"
_ISO_RE: Final = re.compile(_ISO_STAMP + " " + _TAG, re.S)
_DOCKER_RE: Final = re.compile(
    _ISO_STAMP + r" [A-Z][a-z]{2}  ?\d{1,2} \d\d:\d\d:\d\d(?:\.\d+)? " + _TAG, re.S
)
_RFC5424_RE: Final = re.compile(
    r"<\d{1,3}>1 "
    + _ISO_STAMP
    + r" (\S+) (\S+) (\S+) \S+ (?:-|(?:\[(?:[^\]\\\"]|\\.|\"(?:[^\"\\]|\\.)*\")*\])+) ?(.*)",
    re.S,
)


def by_constructor(obj: Any, *args: Any) -> tuple[Any, ...]:
    """``__reduce__`` of a compiled class: rebuilt by its constructor with ``args``, then
    given its state (compiled classes pickle, for -j, only in ways they are told)."""
    return (type(obj), args, obj.__getstate__())


def by_fields(record: Any) -> tuple[Any, ...]:
    """``__reduce__`` of a dataclass whose ``__init__`` takes every field, in order.

    Compiled classes (setup.py) pickle, for -j, only in ways they are told. The records
    built per line write out their ``__init__``: mypyc makes it native, about ten times as
    fast as the one ``@dataclass`` generates.
    """
    cls = type(record)
    getter = _FIELD_GETTERS.get(cls)
    if getter is None:
        # one C call for all the fields (-j pickles tens of thousands of records); attrgetter
        # gives a tuple for two names or more, so the class is asked for last and cut off
        getter = _FIELD_GETTERS[cls] = attrgetter(*(f.name for f in fields(record)), "__class__")
    return (cls, getter(record)[:-1])


_FIELD_GETTERS: Final[dict[type, Any]] = {}


@dataclass(slots=True, init=False)
class Line:
    """One log line with its header taken apart."""

    ts: float  # seconds since the epoch, UTC
    host: str
    program: str  # the syslog tag without pid, e.g. "postfix/submission/smtpd"
    pid: str
    payload: str
    fmt: int

    def __init__(self, ts: float, host: str, program: str, pid: str, payload: str, fmt: int) -> None:
        self.ts = ts
        self.host = host
        self.program = program
        self.pid = pid
        self.payload = payload
        self.fmt = fmt

    def __reduce__(self) -> tuple[Any, ...]:
        return by_fields(self)


def with_parsers(
    lines: Iterable[tuple[Any, str]], year: int | None, tz: tzinfo | None
) -> Iterator[tuple[LineParser, str]]:
    """Each ``(source, text)`` of several sources, with a parser of its source: the year of
    its year-less stamps guessed from the source's ``mtime``."""
    current: Any = None
    parser: LineParser | None = None
    for source, text in lines:
        if source is not current or parser is None:
            current, parser = source, LineParser(YearGuess(year, source.mtime, tz), tz)
        yield parser, text


def digits(text: str) -> bool:
    """Only ASCII digits: ``str.isdigit`` also takes "²", which ``int`` refuses."""
    return text.isascii() and text.isdigit()


def utc_parser() -> LineParser:
    """A parser for the history database's lines: RFC 3339 stamps in UTC need no year guess."""
    return LineParser(YearGuess(None, None, UTC), UTC)


def zone(name: str | None) -> tzinfo | None:
    """The zone for zone-less stamps: a name like Europe/Berlin, UTC, or None for local time."""
    if not name:
        return None
    if name.upper() in ("UTC", "Z", "GMT"):
        return UTC
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


class YearGuess:
    """The year of year-less stamps in one source.

    Starts from an explicit year (the year of the first line) or from the source's
    modification time (the year of the last line), and steps forward when the month
    falls from late in the year to early in the next.
    """

    def __init__(self, year: int | None, mtime: float | None, tz: tzinfo | None) -> None:
        self.year = year
        self.mtime = mtime
        self.last_month = 0
        self.tz = tz

    def __reduce__(self) -> tuple[Any, ...]:
        return by_constructor(self, self.year, self.mtime, self.tz)

    def for_month(self, month: int) -> int:
        if self.year is None:
            ref = datetime.fromtimestamp(self.mtime if self.mtime else time.time(), self.tz)
            self.year = ref.year - 1 if month > ref.month else ref.year
        elif self.last_month - month >= 6:
            self.year += 1
        self.last_month = month
        return self.year


class LineParser:
    """Parses lines of one source. Keeps per-source state: the year and caches."""

    def __init__(self, years: YearGuess, tz: tzinfo | None) -> None:
        self.tz = tz
        self.years = years
        self._hour_cache: dict[tuple[int, str, str, str], float] = {}
        self._iso_cache: dict[tuple[str, str, str | None], float] = {}
        self._stamps: dict[str, float] = {}  # "Nov 28 19:45" -> its epoch, for the fast path
        # the month of the last year-less stamp: the fast path serves only that month, so
        # the year guess sees every change of month, whichever path a line takes
        self._month = ""

    def __reduce__(self) -> tuple[Any, ...]:
        return by_constructor(self, self.years, self.tz)

    def parse(self, text: str) -> Line | None:
        if _C_CLASSIC_HEADER is not None:
            got = _C_CLASSIC_HEADER(text, self._stamps, self._month)
            if got is not None:
                return Line(got[0], got[1], got[2], got[3], got[4], FMT_CLASSIC)
        line = self.known_minute(text)
        if line is not None:
            return line
        line = self._parse(text)
        if line is not None and line.fmt == FMT_CLASSIC and text[15:16] == " ":
            if len(self._stamps) > 4096:
                self._stamps.clear()
            self._stamps[text[:12]] = line.ts - int(text[13:15])
        return line

    def known_minute(self, text: str) -> Line | None:
        """The fast path: a classic stamp whose minute was seen before, and a "program[pid]:" tag
        (what ``_fastparse.classic_header`` does in C)."""
        base = self._stamps.get(text[:12])
        if base is not None and text[15:16] == " " and text[12:13] == ":" and text[:3] == self._month:
            parts = text[16:].split(" ", 2)
            if len(parts) == 3:
                tag = parts[1]
                if tag[-2:] == "]:":
                    i = tag.find("[")
                    sec = text[13:15]
                    if i > 0 and digits(sec):
                        return Line(
                            base + int(sec), parts[0], tag[:i], tag[i + 1 : -2], parts[2], FMT_CLASSIC
                        )
        return None

    def _parse(self, text: str) -> Line | None:
        if not text:
            return None
        first = text[0]
        if first == "<":
            m = _RFC5424_RE.match(text)
            if m is not None:
                date, _sep, hms, frac, off, host, program, pid, payload = m.groups()
                ts = self._iso(date, hms, frac, off)
                if ts is None:
                    return None
                if payload.startswith("\ufeff"):
                    payload = payload[1:]
                return Line(ts, host, program, "" if pid == "-" else pid, payload, FMT_RFC5424)
            end = text.find(">", 1, 5)
            if end < 0:
                return None
            text = text[end + 1 :]
            if not text:
                return None
            first = text[0]
        if first.isdigit():
            m = _ISO_RE.match(text)
            if m is None:
                return self._docker(text)
            date, sep, hms, frac, off, host, program, pid, payload = m.groups()
            if _looks_like_month(host) and _DOCKER_RE.match(text):
                return self._docker(text)
            fmt = FMT_ISO if sep == "T" and off and (off == "Z" or off[3] == ":") else FMT_ISO_OTHER
            ts = self._iso(date, hms, frac, off)
            if ts is None:
                return None
            return Line(ts, host, program, pid or "", payload, fmt)
        m = _CLASSIC_RE.match(text)
        if m is None:
            return None
        mon, day, hms, frac, host, program, pid, payload = m.groups()
        month = MONTHS.get(mon)
        if month is None:
            return None
        ts = self._classic(month, day, hms)
        if ts is None:
            return None
        if frac:
            ts += float(frac)
            fmt = FMT_CLASSIC_FRACTION
        else:
            fmt = FMT_CLASSIC
        return Line(ts, host, program, pid or "", payload, fmt)

    def _docker(self, text: str) -> Line | None:
        m = _DOCKER_RE.match(text)
        if m is None:
            return None
        date, _sep, hms, frac, off, host, program, pid, payload = m.groups()
        ts = self._iso(date, hms, frac, off)
        if ts is None:
            return None
        return Line(ts, host, program, pid or "", payload, FMT_DOCKER)

    def _classic(self, month: int, day: str, hms: str) -> float | None:
        year = self.years.for_month(month)
        self._month = MONTH_NAMES[month]
        key = (year, str(month), day, hms[:2])
        base = self._hour_cache.get(key)
        if base is None:
            try:
                dt = datetime(year, month, int(day), int(hms[:2]))
            except ValueError:
                return None
            base = _epoch(dt, self.tz)
            if len(self._hour_cache) > 4096:
                self._hour_cache.clear()
            self._hour_cache[key] = base
        mi, se = int(hms[3:5]), int(hms[6:8])
        if mi > 59 or se > 60:
            return None
        return base + mi * 60 + se

    def _iso(self, date: str, hms: str, frac: str | None, off: str | None) -> float | None:
        key = (date, hms, off)
        ts = self._iso_cache.get(key)
        if ts is None:
            try:
                dt = datetime(
                    int(date[:4]), int(date[5:7]), int(date[8:10]),
                    int(hms[:2]), int(hms[3:5]), int(hms[6:8]),
                )  # fmt: skip
            except ValueError:
                return None
            if off is None:
                ts = _epoch(dt, self.tz)
            elif off == "Z":
                ts = dt.replace(tzinfo=UTC).timestamp()
            else:
                sign = -1 if off[0] == "-" else 1
                hh, mm = int(off[1:3]), int(off[-2:])
                ts = dt.replace(tzinfo=timezone(sign * timedelta(hours=hh, minutes=mm))).timestamp()
            if len(self._iso_cache) > 4096:
                self._iso_cache.clear()
            self._iso_cache[key] = ts
        if frac:
            ts += float(frac[:10])
        return ts


def classic_month(text: str) -> int:
    """The month of a line with a year-less classic stamp (one the parser reads), else 0."""
    if text.startswith("<"):
        end = text.find(">", 1, 5)
        text = text[end + 1 :] if end > 0 else text
    m = _CLASSIC_RE.match(text)
    return MONTHS.get(m.group(1), 0) if m is not None else 0


def _epoch(dt: datetime, tz: tzinfo | None) -> float:
    if tz is None:
        return dt.timestamp()
    return dt.replace(tzinfo=tz).timestamp()


def _looks_like_month(word: str) -> bool:
    return len(word) == 3 and word in MONTHS


# Program tags. Postfix tags are "postfix[-INSTANCE][/SERVICE...]/DAEMON"; a custom
# syslog_name replaces the "postfix" part.
KIND_POSTFIX: Final = 1
KIND_DOVECOT: Final = 2
KIND_OTHER_MAIL: Final = 3  # amavis, opendkim, policyd-spf, postgrey ... recognised by name
KIND_FOREIGN: Final = 4  # not a mail program

OTHER_MAIL_PROGRAMS: Final = frozenset(
    (
        "amavis", "amavisd", "amavisd-new", "opendkim", "opendmarc", "policyd-spf",
        "policy-spf", "postgrey", "postfwd", "postfwd2", "spamd", "spamc", "clamd",
        "clamsmtpd", "rspamd", "saslauthd", "sqlgrey", "milter-greylist", "procmail",
        "postmulti", "spamass-milter", "clamav-milter", "maiad", "dspam",
    )
)  # fmt: skip
DOVECOT_PROGRAMS: Final = frozenset(
    ("dovecot", "imap-login", "pop3-login", "imap", "pop3", "lmtp", "auth", "managesieve-login")
)


@dataclass(slots=True, frozen=True)
class Tag:
    """What a program tag says: which mail system, which instance and service, which daemon."""

    kind: int
    instance: str  # "postfix", "postfix-out", a custom syslog_name, or the program
    service: str  # master.cf service name when given ("submission", "10025"), else ""
    daemon: str  # "smtpd", "qmgr" ... or the program's own name

    def __reduce__(self) -> tuple[Any, ...]:
        return (Tag, (self.kind, self.instance, self.service, self.daemon))


class TagReader:
    """Turns program tags into :class:`Tag` values, remembering each distinct tag."""

    def __init__(self, syslog_name: str | None = None) -> None:
        self._custom = re.compile(syslog_name) if syslog_name else None
        self._cache: dict[str, Tag] = {}

    def read(self, program: str) -> Tag:
        tag = self._cache.get(program)
        if tag is None:
            tag = self._classify(program)
            if len(self._cache) < 10000:
                self._cache[program] = tag
        return tag

    def _classify(self, program: str) -> Tag:
        parts = program.split("/")
        head = parts[0]
        is_postfix = head == "postfix" or head.startswith("postfix-")
        if not is_postfix and self._custom is not None:
            for n in range(len(parts) - 1, 0, -1):
                if self._custom.fullmatch("/".join(parts[:n])):
                    parts = ["/".join(parts[:n]), *parts[n:]]
                    head = parts[0]
                    is_postfix = True
                    break
        if is_postfix:
            if len(parts) == 1:
                # "postfix[123]: ..." from postfix(1) itself, "postfix-script", "postfix-out"
                if head in ("postfix", "postfix-script"):
                    return Tag(KIND_POSTFIX, "postfix", "", head)
                return Tag(KIND_POSTFIX, head, "", "postfix")
            return Tag(KIND_POSTFIX, head, "/".join(parts[1:-1]), parts[-1])
        base = program.rsplit("/", 1)[-1].lower()
        if head.lower() in DOVECOT_PROGRAMS or base in DOVECOT_PROGRAMS:
            return Tag(KIND_DOVECOT, "dovecot", "", base)
        if base in OTHER_MAIL_PROGRAMS or head.lower() in OTHER_MAIL_PROGRAMS:
            return Tag(KIND_OTHER_MAIL, base, "", base)
        return Tag(KIND_FOREIGN, program, "", base)
