"""checks: Nagios and Icinga checks on the mail log and the queue (docs/checks.md).

Each check measures one number, judges it against the --warning and --critical ranges of the
Monitoring Plugins development guidelines, and says so in one line of plugin output with
performance data. The counts of a window are the report's own totals for that window (the
same definitions as ``postlens report``); the silence and the log's newest line come from the
line and event parsers, so nothing is parsed twice over.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from enum import IntEnum
from typing import Any

from postlens.addresses import ContentFilters
from postlens.dates import duration, moment
from postlens.errors import InputError, PostlensError, UsageError
from postlens.events import Delivery, EventParser
from postlens.lines import Line, zone
from postlens.messages import final_delivery
from postlens.pipeline import Settings, analyse
from postlens.render import clean
from postlens.sources import expand
from postlens.trace import duration as spoken
from postlens.trace import log_records

CHECKS = ("queue", "deferred", "bounce-rate", "auth-failures", "rejects", "errors", "silence", "rbl")
DEFAULT_WINDOW = "15m"  # of the window checks: all but queue and silence


class Status(IntEnum):
    """The plugin states, whose values are the exit codes the guidelines give them."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


def number(x: float) -> str:
    """A number as performance data wants it: digits, sign and point only, no exponent."""
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.6f}".rstrip("0").rstrip(".")


_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_RANGE_RE = re.compile(rf"(?P<inside>@)?(?:(?P<start>~|{_NUMBER})?:)?(?P<end>{_NUMBER})?")


@dataclass(frozen=True, slots=True)
class Range:
    """A threshold range, ``[@][start:][end]``: alert outside start..end (ends included), or
    inside it with ``@``. An omitted start is 0, an omitted end infinity, ``~`` minus infinity."""

    start: float = 0.0
    end: float = math.inf
    inside: bool = False

    @classmethod
    def parse(cls, text: str, option: str) -> Range:
        m = _RANGE_RE.fullmatch(text.strip())
        # the guidelines' later wording: a range must give a start or an end ("", ":", "@" do not)
        if m is None or (m["start"] is None and m["end"] is None):
            raise UsageError(f"{option}: {text!r} is not a range like 10, 10:, ~:10, 10:20 or @10:20")
        start = 0.0 if m["start"] is None else -math.inf if m["start"] == "~" else float(m["start"])
        end = float(m["end"]) if m["end"] is not None else math.inf
        if start > end:
            raise UsageError(f"{option}: {text!r} starts above its end")
        return cls(start, end, m["inside"] is not None)

    def alerts(self, value: float) -> bool:
        outside = value < self.start or value > self.end
        return not outside if self.inside else outside

    def scaled(self, factor: float) -> Range:
        """The same range in another unit (minutes given, seconds in the performance data)."""
        return Range(self.start * factor, self.end * factor, self.inside)

    def __str__(self) -> str:
        prefix = "@" if self.inside else ""
        end = "" if self.end == math.inf else number(self.end)
        if self.start == 0 and end:
            return prefix + end
        start = "~" if self.start == -math.inf else number(self.start)
        return f"{prefix}{start}:{end}"


@dataclass(frozen=True, slots=True)
class Perf:
    """One ``'label'=value[UOM];[warn];[crit];[min];[max]`` of the performance data."""

    label: str
    value: float
    uom: str = ""
    warning: Range | None = None
    critical: Range | None = None
    minimum: float | None = None
    maximum: float | None = None

    def __str__(self) -> str:
        fields = [
            number(self.value) + self.uom,
            "" if self.warning is None else str(self.warning),
            "" if self.critical is None else str(self.critical),
            "" if self.minimum is None else number(self.minimum),
            "" if self.maximum is None else number(self.maximum),
        ]
        while fields[-1] == "":  # the guidelines let trailing empty fields go
            fields.pop()
        label = self.label.replace("'", "''")
        return f"'{label}'=" + ";".join(fields)


@dataclass(slots=True)
class CheckResult:
    """What a check found: its state (the exit code), the text, and the performance data."""

    name: str
    status: Status
    text: str
    perfdata: list[Perf] = field(default_factory=list)
    value: float | None = None  # the number judged, in the unit of the thresholds

    @property
    def service(self) -> str:
        return "POSTFIX " + self.name.upper() if self.name in CHECKS else "POSTFIX"

    def line(self) -> str:
        """The plugin output: ``SERVICE STATUS: text | perfdata``, on one line."""
        # a "|" would start the performance data early, a line break end the output
        text = clean(" ".join(self.text.split())).replace("|", "¦")
        out = f"{self.service} {self.status.name}: {text}"
        return out + " | " + " ".join(map(str, self.perfdata)) if self.perfdata else out


def unknown(name: str, problem: str) -> CheckResult:
    """The UNKNOWN result for a check that could not measure: bad options, a log not read."""
    return CheckResult(name, Status.UNKNOWN, problem)


def judge(value: float, warning: Range | None, critical: Range | None) -> Status:
    if critical is not None and critical.alerts(value):
        return Status.CRITICAL
    if warning is not None and warning.alerts(value):
        return Status.WARNING
    return Status.OK


def check(
    name: str,
    paths: list[str],
    warning: str | None = None,
    critical: str | None = None,
    window: str | None = None,
    *,
    now: str | None = None,
    queue_file: str | None = None,
    config_dir: str | None = None,
    year: int | None = None,
    tz: str | None = None,
    syslog_name: str | None = None,
    content_filters: Sequence[str] = (),
    zones: tuple[str, ...] = (),
    nameserver: str | None = None,
) -> CheckResult:
    """One Nagios/Icinga check (docs/checks.md), what ``postlens check`` runs: ``name`` is one
    of :data:`CHECKS`; ``warning`` and ``critical`` are threshold ranges (``10``, ``10:``,
    ``~:10``, ``10:20``, ``@10:20``). The window checks count the last ``window`` (default 15m)
    of the logs up to ``now``: ``"clock"`` (the default), ``"log"`` (the newest line) or a time;
    ``silence`` reads all of them, ``queue`` the live queue (of the instance at ``config_dir``)
    or ``queue_file``; ``rbl`` takes our own IP addresses as ``paths`` and asks the DNS
    blocklists ``zones`` (default: rbl.DEFAULT_ZONES) through ``nameserver``. A problem it can
    name (bad options, a log that cannot be read) is an UNKNOWN result with that problem as its
    text, never an exception: ``result.line()`` is the plugin output and ``result.status`` the
    exit code."""
    try:
        if name == "rbl":
            if queue_file or config_dir or window or now:
                raise UsageError(
                    "rbl asks DNS blocklists about the addresses given: no logs, --window or --now"
                )
            return _rbl(paths, zones, nameserver, warning, critical)
        if zones or nameserver:
            raise UsageError("--zone and --nameserver are for the rbl check")
        queue = (queue_file, config_dir)
        reading = (year, tz, syslog_name, ContentFilters(content_filters))
        return _check(name, paths, warning, critical, window, now, queue, *reading)
    except PostlensError as e:
        return unknown(name, str(e))
    except re.error as e:
        return unknown(name, f"--syslog-name: not a regular expression: {e}")


def _check(
    name: str,
    paths: list[str],
    warning: str | None,
    critical: str | None,
    window: str | None,
    now: str | None,
    queue: tuple[str | None, str | None],  # a saved listing, the live queue's config directory
    year: int | None,
    tz: str | None,
    syslog_name: str | None,
    filters: ContentFilters,
) -> CheckResult:
    if name not in CHECKS:
        raise UsageError(f"{name!r} is not a check; the checks are {', '.join(CHECKS)}")
    warn = Range.parse(warning, "--warning") if warning is not None else None
    crit = Range.parse(critical, "--critical") if critical is not None else None
    if name == "queue":
        if paths or window is not None or now is not None:
            raise UsageError("queue reads the queue: it takes no logs, --window or --now")
        return _queue(*queue, warn, crit)
    if queue != (None, None):
        raise UsageError("--queue-file and --config-dir are for the queue check")
    if not paths:
        raise UsageError("no log given")
    try:
        tzinfo = zone(tz)
    except Exception as e:  # zoneinfo raises several kinds for a bad name
        raise UsageError(f"--tz: unknown time zone {tz!r}") from e
    end = _End.parse(now or "clock", tzinfo)
    log = _Log(paths, year, tz, tzinfo, syslog_name, filters)
    if name == "silence":
        if window is not None:
            raise UsageError("silence looks at the whole log: it takes no --window")
        return _silence(log, end, warn, crit)
    length = duration(window or DEFAULT_WINDOW, "--window")
    return _windowed(name, log, end, length, window or DEFAULT_WINDOW, warn, crit)


@dataclass(frozen=True, slots=True)
class _End:
    """Where the window ends: the clock (default), the log's newest line, or a given time."""

    kind: str  # "clock", "log" or "time"
    at: float | None = None  # the given time

    @classmethod
    def parse(cls, text: str, tz: tzinfo | None) -> _End:
        if text in ("clock", "log"):
            return cls(text)
        return cls("time", moment(text, tz, "--now"))

    def resolve(self, newest: float | None) -> float:
        """The end as a time, given the log's newest line for ``log``."""
        if self.kind == "clock":
            return time.time()
        at = newest if self.kind == "log" else self.at
        assert at is not None  # a "log" end is resolved only when the log has a line
        return at


@dataclass(frozen=True, slots=True)
class _Log:
    """The logs to read and how: the report's reading options."""

    paths: list[str]
    year: int | None
    tz: str | None
    tzinfo: tzinfo | None
    syslog_name: str | None
    filters: ContentFilters

    def lines(self) -> Iterator[Line]:
        """Every line with a time stamp, for the passes that need no more than the line and
        event parsers; an input that cannot be read ends the check."""
        sources, problems = expand(self.paths)
        _stop(problems)
        yield from (line for _text, line in log_records(sources, self.year, self.tzinfo)(problems))
        _stop(problems)

    def newest(self) -> float:
        if "-" in self.paths:
            raise UsageError("--now log reads the log twice: give files, not standard input")
        newest = max((line.ts for line in self.lines()), default=None)
        if newest is None:
            raise InputError(" ".join(self.paths), "no line with a time stamp")
        return newest

    def when(self, ts: float) -> str:
        """A time in the log's zone (the local one without --tz), with its offset."""
        return datetime.fromtimestamp(ts, UTC).astimezone(self.tzinfo).isoformat(timespec="seconds")


def _stop(problems: list[InputError]) -> None:
    """The first input that could not be read, as the reason the check cannot say."""
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise InputError(problems[0].source, problems[0].problem + more)


def _windowed(
    name: str, log: _Log, end: _End, length: int, window: str, warn: Range | None, crit: Range | None
) -> CheckResult:
    at = end.resolve(log.newest() if end.kind == "log" else None)
    # the window is [at - length, at]: the report's end is exclusive, so one step past ``at``
    settings = Settings(
        year=log.year,
        tz=log.tz,
        syslog_name=log.syslog_name,
        filters=log.filters,
        start=at - length,
        end=math.nextafter(at, math.inf),
    )
    result, problems = analyse(log.paths, settings)
    _stop(problems)
    coverage = result["coverage"]
    if coverage["lines"] and coverage["malformed"] == coverage["lines"]:
        raise InputError(" ".join(log.paths), "no line has a time stamp postlens reads; is it a mail log?")
    if end.kind == "clock":
        span = f"in the last {window}"
    elif end.kind == "log":
        span = f"in the last {window} of the log, to {log.when(at)}"
    else:
        span = f"in the {window} to {log.when(at)}"
    totals = result["totals"]
    if name == "bounce-rate":
        return _bounce_rate(totals["bounced"], totals["delivered"], span, warn, crit)
    if name == "errors":
        return _errors(result, span, warn, crit)
    label, count, what = {
        "deferred": ("deferrals", totals["deferrals"], "deferred delivery attempts"),
        "auth-failures": ("auth_failures", result["auth"]["failures"]["total"], "failed logins"),
        "rejects": ("rejects", totals["rejected"], "rejects"),
    }[name]
    status = judge(count, warn, crit)
    text = f"{what}: {count} {span}"
    return CheckResult(name, status, text, [Perf(label, count, "", warn, crit, 0)], count)


def _rbl(ips: list[str], zones: tuple[str, ...], nameserver: str | None, warning: str | None,
         critical: str | None) -> CheckResult:  # fmt: skip
    """Listings of our own addresses on DNS blocklists: CRITICAL at the first one unless the
    thresholds say otherwise; UNKNOWN when a list could not answer and none lists us."""
    import postlens

    if not ips:
        raise UsageError("rbl: give our own IP addresses to look up")
    warn = Range.parse(warning, "--warning") if warning is not None else None
    # a listing is CRITICAL unless thresholds are given
    crit_text = critical if critical is not None else (None if warning is not None else "0")
    crit = Range.parse(crit_text, "--critical") if crit_text is not None else None
    listings = postlens.check_rbl(ips, zones=zones or None, nameserver=nameserver, asked_by="rbl")
    listed = [x for x in listings if x.listed]
    failed = [x for x in listings if x.error]
    perf = [
        Perf("listed", len(listed), "", warn, crit, 0),
        Perf("lookups", len(listings), "", None, None, 0),
        Perf("errors", len(failed), "", None, None, 0),
    ]
    if listed:
        named = ", ".join(f"{x.ip} on {x.zone}" + (f" ({x.text})" if x.text else "") for x in listed)
        return CheckResult("rbl", judge(len(listed), warn, crit), f"listed: {named}", perf, len(listed))
    if failed:
        named = ", ".join(sorted({f"{x.zone}: {x.error}" for x in failed}))
        return CheckResult(
            "rbl", Status.UNKNOWN, f"not listed where asked, but no answer from {named}", perf, 0
        )
    zones_asked = len({x.zone for x in listings})
    text = f"{len(set(ips))} address{'es' * (len(set(ips)) != 1)} listed on none of {zones_asked} blocklists"
    return CheckResult("rbl", judge(0, warn, crit), text, perf, 0)


_ERROR_LABELS = (("fatal", "fatal"), ("panics", "panic"), ("errors", "error"))  # result key, perf label


def _errors(result: dict[str, Any], span: str, warn: Range | None, crit: Range | None) -> CheckResult:
    """Postfix's fatal, panic and error lines: a daemon that died, a table it cannot open."""
    counts = {key: sum(row["count"] for row in result[key]) for key in ("fatal", "panics", "errors")}
    count = sum(counts.values())
    text = f"fatal errors, panics and errors: {count} {span}"
    worst = next((result[key][0] for key in ("panics", "fatal", "errors") if result[key]), None)
    if worst is not None:
        text += f"; {worst['daemon']}: {worst['text']}"
    perf = [Perf("errors", count, "", warn, crit, 0)]
    perf += [Perf(label, counts[key], "", None, None, 0) for key, label in _ERROR_LABELS]
    return CheckResult("errors", judge(count, warn, crit), text, perf, count)


def _bounce_rate(
    bounced: int, delivered: int, span: str, warn: Range | None, crit: Range | None
) -> CheckResult:
    attempts = bounced + delivered
    # rounded before it is judged, so that the figure shown is the figure judged; no mail at
    # all is no bounce, not an unknown: a quiet night must not page anyone
    rate = round(100 * bounced / attempts, 2) if attempts else 0.0
    text = f"{number(rate)}% bounced ({bounced} of {attempts} recipients) {span}"
    perf = [
        Perf("bounce_rate", rate, "%", warn, crit, 0, 100),
        Perf("bounced", bounced, "", None, None, 0),
        Perf("delivered", delivered, "", None, None, 0),
    ]
    return CheckResult("bounce-rate", judge(rate, warn, crit), text, perf, rate)


def _silence(log: _Log, end: _End, warn: Range | None, crit: Range | None) -> CheckResult:
    """Minutes from the last delivery to the end; the whole log is read, since a silence may
    be longer than any window. Lines after a given --now are not looked at."""
    limit = end.at if end.kind == "time" and end.at is not None else math.inf
    events = EventParser(log.syslog_name, log.filters)
    first = newest = last = None
    for line in log.lines():
        ts = line.ts
        if ts > limit:
            continue
        first = ts if first is None else min(first, ts)
        newest = ts if newest is None else max(newest, ts)
        ev = events.parse(line)
        if type(ev) is Delivery and final_delivery(ev):
            last = ts if last is None else max(last, ts)
    if first is None or newest is None:
        raise InputError(" ".join(log.paths), "no line with a time stamp")
    at = end.resolve(newest)
    to = {"clock": "", "log": f" (to the log's end, {log.when(at)})", "time": f" (to {log.when(at)})"}
    # whole seconds (stamps rarely have more); a clock behind the log's stamps is no silence
    seconds = float(max(0, math.floor(at - (first if last is None else last))))
    if last is None:
        text = f"no delivery in the log, which begins {spoken(seconds)} earlier{to[end.kind]}"
    else:
        text = f"last delivery {spoken(seconds)} ago, at {log.when(last)}{to[end.kind]}"
    minutes = seconds / 60
    # the thresholds are minutes; the performance data is in seconds, the unit the guidelines name
    perf = Perf(
        "silence", seconds, "s", warn.scaled(60) if warn else None, crit.scaled(60) if crit else None, 0
    )
    return CheckResult("silence", judge(minutes, warn, crit), text, [perf], minutes)


def _queue(
    queue_file: str | None, config_dir: str | None, warn: Range | None, crit: Range | None
) -> CheckResult:
    """Messages in every queue: the live queue (``postqueue -j``) or a saved listing."""
    from postlens.queue import QUEUES, load

    name, records, _malformed, problems = load(queue_file, config_dir)
    _stop(problems)
    per_queue = Counter(msg.queue_name for msg in records)
    count = len(records)
    parts = ", ".join(f"{per_queue[q]} {q}" for q in QUEUES if per_queue[q])
    text = f"{count} message{'s' * (count != 1)} in the queue" + (f" ({parts})" if parts else "")
    perf = [Perf("messages", count, "", warn, crit, 0)]
    perf += [Perf(q, per_queue[q], "", None, None, 0) for q in QUEUES]
    return CheckResult("queue", judge(count, warn, crit), f"{text}, from {name}", perf, count)
