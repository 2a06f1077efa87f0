"""alerts: rules over a sliding window of log time, and the places their alerts go.

An :class:`AlertEngine` is fed events (:meth:`AlertEngine.feed`) and asked, as often as the
caller likes, what has changed (:meth:`AlertEngine.tick`). Each :class:`Rule` counts its
events within its ``window`` of *log* time, so replaying a log gives the alerts that watching
it live gave. A rule fires for a key (an IP address, a domain, a user, a reason, or "" for
the whole server) when its value reaches the threshold, at most once per ``cooldown``, and
sends a resolved notice when the value falls back under it.

Alerts go to every :class:`Destination`, each fed by its own thread: a slow or dead
destination delays neither the reading of the log nor the other destinations, and every
destination has a timeout. A destination that fails is reported once on standard error.
docs/alerts.md describes the rule kinds, the destinations and the settings file.
"""

from __future__ import annotations

import importlib
import json
import logging.handlers
import math
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol, TextIO

from postlens.analyses.problems import domain
from postlens.analyses.reasons import Rules, split_reply
from postlens.analyses.security import Security, SecurityOptions
from postlens.dates import duration, iso_utc
from postlens.errors import UsageError
from postlens.events import REJECTS, Arrival, AuthFailure, Delivery, Diagnostic, Event, Login, Reject, Verdict
from postlens.lines import Line, digits
from postlens.mail import DEFAULT_SMTP, build_message, check_address, default_sender, parse_server, send_mail
from postlens.messages import final_delivery, from_filter, hop_target

KINDS = (
    "auth_failures_ip",
    "auth_failures",
    "security",
    "sasl_volume",
    "deferral_rate",
    "bounce_rate",
    "reject_rate",
    "problem",
    "queue_size",
    "silence",
    "fatal",
    "blocklisted",
    "content_check",
)
RATES = frozenset(("deferral_rate", "bounce_rate", "reject_rate"))
# the kinds whose rules may watch one key only; problem rules choose theirs with `reason`
KEYED = frozenset(("auth_failures_ip", "security", "sasl_volume", "deferral_rate", "content_check"))
SEVERITIES = ("info", "warning", "error", "critical")
# the findings of postlens security that a window of login events can show, and the
# SecurityOptions field that a rule's threshold sets for each
FINDINGS = {
    "brute_force": "brute_force",
    "password_spray": "spray_usernames",
    "guessed_password": "guess_failures",
    "distributed_attack": "spray_ips",
    "repeated_rejects": "reject_limit",
}
DEFAULT_WINDOW = 600.0
DEFAULT_COOLDOWN = 300.0
DEFAULT_MIN_COUNT = 10
# delivery statuses that are an attempt: a deferral is one, so is a final sent or bounced
ATTEMPTS = frozenset(("sent", "deferred", "bounced"))
# alerts waiting for one destination before newer ones are dropped
OUTBOX_SIZE = 1000


@dataclass(slots=True)
class Rule:
    """One alert rule; docs/alerts.md says what each kind counts."""

    name: str
    kind: str
    window: float  # seconds of log time; queue_size: how long the queue must stay at the threshold
    threshold: float  # rates are fractions (0.5 is 50%); silence fires under it, the others at it
    severity: str = "warning"
    cooldown: float = DEFAULT_COOLDOWN  # seconds between two firings of the rule for one key
    key: str | None = None  # only this IP, domain, user or finding subject (KEYED kinds)
    min_count: int = DEFAULT_MIN_COUNT  # rates: attempts within the window before a rate is judged
    finding: str = ""  # security: the finding of postlens security to alert on
    reason: str = ""  # problem: only this reason of postlens problems; "" for each reason apart

    def __post_init__(self) -> None:
        def bad(field: str, problem: str) -> UsageError:
            return UsageError(f"[[alert]] {self.name!r}: {field}: {problem}")

        if not self.name:
            raise bad("name", "give every alert a name")
        if self.kind not in KINDS:
            raise bad("kind", f"{self.kind!r} is not one of {', '.join(KINDS)}")
        if self.severity not in SEVERITIES:
            raise bad("severity", f"{self.severity!r} is not one of {', '.join(SEVERITIES)}")
        if self.window < 0 or (self.window == 0 and self.kind != "queue_size"):
            raise bad("window", "must be longer than nothing")
        if self.threshold <= 0:
            raise bad("threshold", "must be more than 0")
        if self.kind in RATES and self.threshold > 1:
            raise bad("threshold", "a rate is a fraction: 0.5 is 50%")
        if self.cooldown < 0:
            raise bad("cooldown", "must not be negative")
        if self.min_count < 1:
            raise bad("min_count", "must be 1 or more")
        if self.key is not None:
            if self.kind not in KEYED:
                raise bad("key", f"{self.kind} rules have no key")
            self.key = self.key.lower()
        if self.kind == "security" and self.finding not in FINDINGS:
            raise bad("finding", f"{self.finding!r} is not one of {', '.join(FINDINGS)}")
        if self.kind != "security" and self.finding:
            raise bad("finding", "only security rules have one")
        if self.kind != "problem" and self.reason:
            raise bad("reason", "only problem rules have one")


@dataclass(slots=True)
class Alert:
    """A rule that fired for a key, or resolved: what every destination is given."""

    rule: str
    kind: str
    severity: str
    state: str  # "firing" or "resolved"
    key: str  # the IP, domain, user, reason or finding subject; "" for the whole server
    value: float
    threshold: float
    window: float
    since: float  # when the value reached the threshold (log time)
    at: float  # when this was decided (log time)
    text: str  # one plain sentence
    example: str = ""  # the last log line that counted, where the kind has one

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "kind": self.kind,
            "severity": self.severity,
            "state": self.state,
            "key": self.key,
            "value": _number(round(self.value, 4)),
            "threshold": _number(self.threshold),
            "window": _number(self.window),
            "since": iso_utc(self.since),
            "at": iso_utc(self.at),
            "text": self.text,
            "example": self.example,
        }

    def headline(self) -> str:
        """``WARNING rule key``, or ``RESOLVED rule key (was warning)``: a subject line."""
        what = f"{self.rule} {self.key}" if self.key else self.rule
        if self.state == "resolved":
            return f"RESOLVED {what} (was {self.severity})"
        return f"{self.severity.upper()} {what}"


def _number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


# -- counting ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Reading:
    value: float
    breached: bool
    count: int  # events counted: for a rate, its attempts
    example: str


class _Window:
    """Per key, the events and hits of the last ``span`` seconds of log time.

    Lines come in nearly in time order, so expiry takes from the front of one queue; a line
    a little older than the one before it leaves the window a little late.
    """

    def __init__(self, span: float) -> None:
        self.span = span
        self._items: deque[tuple[float, str, bool]] = deque()
        self.total: Counter[str] = Counter()
        self.hits: Counter[str] = Counter()
        self.last: dict[str, str] = {}  # key -> its latest hit, as a log line
        self.changed: set[str] = set()

    def add(self, ts: float, key: str, hit: bool, line: Line) -> None:
        self._items.append((ts, key, hit))
        self.total[key] += 1
        if hit:
            self.hits[key] += 1
            self.last[key] = _quote(line)
        self.changed.add(key)

    def expire(self, now: float) -> None:
        edge = now - self.span
        items = self._items
        while items and items[0][0] <= edge:
            _, key, hit = items.popleft()
            self.total[key] -= 1
            if not self.total[key]:
                del self.total[key]
            if hit:
                self.hits[key] -= 1
                if not self.hits[key]:
                    del self.hits[key]
                    del self.last[key]
            self.changed.add(key)

    def take_changed(self) -> set[str]:
        changed, self.changed = self.changed, set()
        return changed


def _quote(line: Line) -> str:
    tag = f"{line.program}[{line.pid}]" if line.pid else line.program
    return f"{tag}: {line.payload}"


@dataclass(slots=True)
class _State:
    """Where a rule stands for one key."""

    since: float | None  # since when the value is at the threshold; None when it is not
    firing: bool = False
    fired_at: float = -math.inf  # the last firing sent, for the cool-down
    fired_since: float = 0.0  # the since of that firing, for its resolved notice


class _Detector:
    """A rule's counts, and its verdict per key."""

    handles: tuple[type[Event], ...] = ()

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.states: dict[str, _State] = {}

    def feed(self, ev: Any) -> None:
        pass

    def changed(self, now: float) -> set[str]:
        """The keys whose value may have changed since the last call, as of ``now``."""
        raise NotImplementedError

    def measure(self, key: str, now: float, first: float) -> _Reading:
        """``key``'s value at ``now``; ``first`` is the earliest time the engine knows."""
        raise NotImplementedError

    def describe(self, key: str, r: _Reading, firing: bool) -> str:
        raise NotImplementedError


Pick = Callable[[Any], tuple[str, bool] | None]  # an event -> (key, hit), or None to skip it


def _failure_ip(ev: AuthFailure) -> tuple[str, bool]:
    return ev.client_ip or "unknown", True


def _failure(ev: AuthFailure) -> tuple[str, bool]:
    return "", True


def _sasl_user(ev: Arrival) -> tuple[str, bool] | None:
    return (ev.sasl_username.lower(), True) if ev.sasl_username else None


def _fatal(ev: Diagnostic) -> tuple[str, bool] | None:
    return ("", True) if ev.level in ("fatal", "panic") else None


def _verdict(ev: Verdict) -> tuple[str, bool]:
    return f"{ev.check}: {ev.verdict}".lower(), True


def _deferral(ev: Delivery) -> tuple[str, bool] | None:
    # a hop into a content filter on this machine is not an attempt to deliver
    if ev.status not in ATTEMPTS or hop_target(ev):
        return None
    to = domain(ev.to)
    return (to, ev.status == "deferred") if to else None


def _bounce(ev: Delivery) -> tuple[str, bool] | None:
    if ev.status == "bounced":
        return "", True
    return ("", False) if final_delivery(ev) else None


def _reject(ev: Reject | Arrival) -> tuple[str, bool] | None:
    # what this machine sends itself (content filters re-injecting, webmail) is not judged
    if from_filter(ev):
        return None
    if isinstance(ev, Reject):
        return ("", True) if ev.action in REJECTS else None
    return "", False


def _problem(rules: Rules) -> Pick:
    def pick(ev: Delivery | Reject) -> tuple[str, bool] | None:
        if isinstance(ev, Reject):
            if ev.action not in REJECTS:
                return None
            verdict = rules.classify("reject", ev.code, ev.dsn, ev.reason, ev.stage)
        elif ev.status in ("deferred", "bounced"):
            code, dsn, text = split_reply(ev.reply)
            verdict = rules.classify(ev.status, code, ev.dsn or dsn, text)
        else:
            return None
        return verdict.reason.id, True

    return pick


_PICKS: dict[str, tuple[tuple[type[Event], ...], Pick]] = {
    "auth_failures_ip": ((AuthFailure,), _failure_ip),
    "auth_failures": ((AuthFailure,), _failure),
    "sasl_volume": ((Arrival,), _sasl_user),
    "fatal": ((Diagnostic,), _fatal),
    "content_check": ((Verdict,), _verdict),
    "deferral_rate": ((Delivery,), _deferral),
    "bounce_rate": ((Delivery,), _bounce),
    "reject_rate": ((Reject, Arrival), _reject),
}

# what a value means, per kind of counting rule: (key, reading) -> the start of a sentence
_WHAT: dict[str, Callable[[str, _Reading], str]] = {
    "auth_failures_ip": lambda key, r: f"{_count(r.value, 'failed login')} from {key}",
    "auth_failures": lambda key, r: _count(r.value, "failed login"),
    "sasl_volume": lambda key, r: f"{key} sent {_count(r.value, 'message')} (SASL login)",
    "fatal": lambda key, r: _count(r.value, "fatal or panic line"),
    "content_check": lambda key, r: f"{key}, {_count(r.value, 'time')}",
    "problem": lambda key, r: f"{_count(r.value, 'failure')} for the reason {key}",
    "deferral_rate": lambda key, r: f"{r.value:.0%} of {r.count} delivery attempts to {key} were deferred",
    "bounce_rate": lambda key, r: f"{r.value:.0%} of {r.count} finished deliveries were bounced",
    "reject_rate": lambda key, r: (
        f"{r.value:.0%} of {r.count} messages and rejects from clients were rejects"
    ),
}


def _count(n: float, one: str, many: str = "") -> str:
    return f"{n:g} {one}" if n == 1 else f"{n:g} {many or one + 's'}"


class _Windowed(_Detector):
    """Counts (value: hits) and rates (value: hits / events, judged from ``min_count`` events)."""

    def __init__(self, rule: Rule, handles: tuple[type[Event], ...], pick: Pick) -> None:
        super().__init__(rule)
        self.handles = handles
        self._pick = pick
        self._only = rule.key or rule.reason or None
        self._window = _Window(rule.window)

    def feed(self, ev: Any) -> None:
        picked = self._pick(ev)
        if picked is not None and (self._only is None or picked[0] == self._only):
            self._window.add(ev.line.ts, picked[0], picked[1], ev.line)

    def changed(self, now: float) -> set[str]:
        self._window.expire(now)
        return self._window.take_changed()

    def measure(self, key: str, now: float, first: float) -> _Reading:
        w = self._window
        hits, total, example = w.hits.get(key, 0), w.total.get(key, 0), w.last.get(key, "")
        if self.rule.kind in RATES:
            rate = hits / total if total else 0.0
            judged = total >= self.rule.min_count
            return _Reading(rate, judged and rate >= self.rule.threshold, total, example)
        return _Reading(hits, hits >= self.rule.threshold, hits, example)

    def describe(self, key: str, r: _Reading, firing: bool) -> str:
        rule = self.rule
        what = f"{_WHAT[rule.kind](key, r)} within {_length(rule.window)}"
        limit = f"{rule.threshold:.0%}" if rule.kind in RATES else f"{rule.threshold:g}"
        if firing:
            last = f"; the last: {r.example}" if rule.kind == "fatal" and r.example else ""
            return f"{what}, the threshold is {limit}{last}"
        if rule.kind in RATES and r.count < rule.min_count:
            return f"{what}, too few to judge (fewer than {rule.min_count})"
        return f"{what}, under the threshold of {limit} again"


class _Silence(_Detector):
    """Deliveries within the window; at least a window of log must have been seen."""

    handles = (Delivery,)

    def __init__(self, rule: Rule) -> None:
        super().__init__(rule)
        self._window = _Window(rule.window)

    def feed(self, ev: Delivery) -> None:
        if final_delivery(ev):
            self._window.add(ev.line.ts, "", True, ev.line)

    def changed(self, now: float) -> set[str]:
        self._window.expire(now)
        return {""}  # the time since the first line counts too

    def measure(self, key: str, now: float, first: float) -> _Reading:
        n = self._window.hits.get("", 0)
        quiet = n < self.rule.threshold and now - first >= self.rule.window
        return _Reading(n, quiet, n, self._window.last.get("", ""))

    def describe(self, key: str, r: _Reading, firing: bool) -> str:
        span = _length(self.rule.window)
        if not firing:
            return f"mail is delivered again: {_count(r.value, 'delivery', 'deliveries')} within {span}"
        if r.value == 0:
            return f"nothing was delivered within {span}"
        few = _count(r.value, "delivery", "deliveries")
        return f"only {few} within {span}, the threshold is {self.rule.threshold:g}"


class _QueueSize(_Detector):
    """The last size :meth:`AlertEngine.set_queue` gave, at the threshold for ``window``."""

    def __init__(self, rule: Rule) -> None:
        super().__init__(rule)
        self._size: int | None = None
        self._big_since: float | None = None

    def update(self, size: int, now: float) -> None:
        self._size = size
        if size < self.rule.threshold:
            self._big_since = None
        elif self._big_since is None:
            self._big_since = now

    def changed(self, now: float) -> set[str]:
        return {""} if self._size is not None else set()

    def measure(self, key: str, now: float, first: float) -> _Reading:
        size = self._size or 0
        big = self._big_since is not None and now - self._big_since >= self.rule.window
        return _Reading(size, big, size, "")

    def describe(self, key: str, r: _Reading, firing: bool) -> str:
        what, limit = f"the queue holds {r.value:g} messages", f"{self.rule.threshold:g}"
        if not firing:
            return f"{what}, under the threshold of {limit} again"
        if self.rule.window:
            return f"{what}, and has held {limit} or more for {_length(self.rule.window)}"
        return f"{what}, the threshold is {limit}"


class _Listed(_Detector):
    """Our own addresses on DNS blocklists, as the last check (:meth:`AlertEngine.set_listings`)
    found them: each address fires when ``threshold`` lists or more name it."""

    def __init__(self, rule: Rule) -> None:
        super().__init__(rule)
        self._zones: dict[str, list[str]] = {}  # our address -> the lists that name it
        self._fresh = False

    def update(self, listings: list[Any]) -> None:
        zones: dict[str, list[str]] = {}
        for x in listings:
            named = zones.setdefault(x.ip, [])
            if x.listed:
                named.append(x.zone)
        self._zones, self._fresh = zones, True

    def changed(self, now: float) -> set[str]:
        if not self._fresh:
            return set()
        self._fresh = False
        return set(self._zones) | set(self.states)

    def measure(self, key: str, now: float, first: float) -> _Reading:
        zones = self._zones.get(key, [])
        return _Reading(len(zones), len(zones) >= self.rule.threshold, len(zones), ", ".join(zones))

    def describe(self, key: str, r: _Reading, firing: bool) -> str:
        if firing:
            return f"{key} is listed on {r.example}"
        return f"{key} is on no DNS blocklist asked any more"


class _Finding(_Detector):
    """A finding of :class:`~postlens.analyses.security.Security` over the window's logins (and
    rejects, for repeated rejects).

    The findings are decided afresh, by the same code as ``postlens security``, when the
    window's events have changed, at most once per second of log time: each decision reads
    the whole window.
    """

    handles = (AuthFailure, Login, Arrival, Reject)

    def __init__(self, rule: Rule) -> None:
        super().__init__(rule)
        self._options = SecurityOptions(window=rule.window)
        setattr(self._options, FINDINGS[rule.finding], int(rule.threshold))
        self._events: deque[Event] = deque()
        self._dirty = False
        self._decided = -math.inf  # the log time of the last decision
        self._found: dict[str, dict[str, Any]] = {}

    def feed(self, ev: Any) -> None:
        if isinstance(ev, Reject):  # only repeated rejects are decided from rejects
            wanted = self.rule.finding == "repeated_rejects" and ev.action in REJECTS
        else:
            wanted = not isinstance(ev, Arrival) or bool(ev.sasl_username)  # a SASL arrival is a login
        if wanted:
            self._events.append(ev)
            self._dirty = True

    def changed(self, now: float) -> set[str]:
        edge = now - self.rule.window
        while self._events and self._events[0].line.ts <= edge:
            self._events.popleft()
            self._dirty = True
        if not self._dirty or now - self._decided < 1:
            return set()
        self._dirty, self._decided = False, now
        security = Security(self._options, None)
        handlers = security.handlers()
        for ev in self._events:
            handlers[type(ev)](ev)
        found = {
            f["subject"].lower(): f
            for f in security.result()["findings"]
            if f["kind"] == self.rule.finding and self.rule.key in (None, f["subject"].lower())
        }
        changed = set(self._found) | set(found)
        self._found = found
        return changed

    def measure(self, key: str, now: float, first: float) -> _Reading:
        f = self._found.get(key)
        if f is None:
            return _Reading(0, False, 0, "")
        return _Reading(f["count"], True, f["count"], f["explanation"])

    def describe(self, key: str, r: _Reading, firing: bool) -> str:
        if firing:
            return r.example
        return (
            f"no {self.rule.finding.replace('_', ' ')} by {key} within {_length(self.rule.window)} any more"
        )


def _length(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}" if n == 1 else f"{n} {unit}s"
    return f"{seconds:g} seconds"


def _detector(rule: Rule, reasons: Callable[[], Rules]) -> _Detector:
    if rule.kind == "silence":
        return _Silence(rule)
    if rule.kind == "queue_size":
        return _QueueSize(rule)
    if rule.kind == "blocklisted":
        return _Listed(rule)
    if rule.kind == "security":
        return _Finding(rule)
    if rule.kind == "problem":
        rules = reasons()
        _check_reason(rule, rules)
        return _Windowed(rule, (Delivery, Reject), _problem(rules))
    handles, pick = _PICKS[rule.kind]
    return _Windowed(rule, handles, pick)


def _check_reason(rule: Rule, rules: Rules) -> None:
    if rule.reason and rule.reason not in {r.id for r in rules.reasons()}:
        raise UsageError(
            f"[[alert]] {rule.name!r}: reason: {rule.reason!r} is not a reason of postlens problems"
        )


# -- the engine --------------------------------------------------------------------------


class AlertEngine:
    """Feeds events to the rules, and sends what fires and resolves to the destinations.

    Drive it with :meth:`feed` for every event and :meth:`tick` after each line, or at
    least every second or so: an alert is decided only at a tick. :meth:`close` (or a
    ``with`` block) waits for the alerts still being delivered.
    """

    def __init__(
        self,
        rules: list[Rule],
        destinations: list[Destination],
        *,
        clock: Callable[[], float] = time.time,
        reasons: Rules | None = None,
    ) -> None:
        """``reasons`` classifies the failures of problem rules: the shipped rules by default."""
        loaded: list[Rules] = [reasons] if reasons is not None else []

        def get_reasons() -> Rules:
            if not loaded:
                loaded.append(Rules.load())
            return loaded[0]

        self.rules = rules
        self._clock = clock
        self._detectors = [_detector(rule, get_reasons) for rule in rules]
        self._routes: dict[type, list[_Detector]] = {}
        for det in self._detectors:
            for kind in det.handles:
                self._routes.setdefault(kind, []).append(det)
        self._outboxes = [_Outbox(d) for d in destinations]
        self._newest: float | None = None  # the newest log time fed
        self._fed_at = 0.0  # the clock when the last event was fed
        self._first: float | None = None  # the earliest time seen: log, queue or tick

    def feed(self, ev: Event) -> None:
        """Count one event, by its log time, into the windows of the rules that want it."""
        ts = ev.line.ts
        if self._newest is None or ts > self._newest:
            self._newest = ts
        if self._first is None or ts < self._first:
            self._first = ts
        self._fed_at = self._clock()
        for det in self._routes.get(type(ev), ()):
            det.feed(ev)

    def set_queue(self, size: int, now: float) -> None:
        """The number of messages in the queue at ``now``, for queue_size rules."""
        if self._first is None:
            self._first = now
        for det in self._detectors:
            if isinstance(det, _QueueSize):
                det.update(size, now)

    def set_listings(self, listings: list[Any], now: float) -> None:
        """What DNS blocklists said of our own addresses at ``now`` (rbl.Listing), for
        blocklisted rules."""
        if self._first is None:
            self._first = now
        for det in self._detectors:
            if isinstance(det, _Listed):
                det.update(listings)

    def now(self) -> float:
        """The newest log time fed, moved on by the whole seconds the clock has run since.

        While lines arrive this is their time, so a replay decides as the live run did; when
        the log goes quiet it moves on with the clock, so windows still empty and a silence
        still shows. Before the first line it is the clock.
        """
        if self._newest is None:
            return self._clock()
        return self._newest + max(0, math.floor(self._clock() - self._fed_at))

    def tick(self, now: float | None = None) -> list[Alert]:
        """Decide every rule as of ``now`` (default :meth:`now`); send and return the alerts."""
        if now is None:
            now = self.now()
        if self._first is None:
            self._first = now
        alerts = []
        for det in self._detectors:
            for key in sorted(det.changed(now).union(det.states)):
                alert = self._judge(det, key, now, self._first)
                if alert is not None:
                    alerts.append(alert)
        for alert in alerts:
            for box in self._outboxes:
                box.put(alert)
        return alerts

    def _judge(self, det: _Detector, key: str, now: float, first: float) -> Alert | None:
        rule = det.rule
        r = det.measure(key, now, first)
        st = det.states.get(key)
        if r.breached:
            if st is None:
                st = det.states[key] = _State(None)
            since = st.since = now if st.since is None else st.since
            if st.firing or now - st.fired_at < rule.cooldown:
                return None
            st.firing, st.fired_at, st.fired_since = True, now, since
            return self._alert(det, key, r, "firing", since, now)
        if st is None:
            return None
        alert = None
        if st.firing:
            alert = self._alert(det, key, r, "resolved", st.fired_since, now)
            st.firing = False
        st.since = None
        if now - st.fired_at >= rule.cooldown:
            del det.states[key]  # nothing left to remember
        return alert

    def _alert(self, det: _Detector, key: str, r: _Reading, state: str, since: float, now: float) -> Alert:
        rule = det.rule
        text = det.describe(key, r, state == "firing")
        return Alert(rule.name, rule.kind, rule.severity, state, key, r.value, rule.threshold, rule.window,
                     since, now, text, r.example)  # fmt: skip

    def close(self, timeout: float = 10.0) -> None:
        """Wait up to ``timeout`` seconds, in all, for alerts still being delivered."""
        deadline = time.monotonic() + timeout
        for box in self._outboxes:
            box.finish()
        for box in self._outboxes:
            box.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> AlertEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Outbox:
    """Sends alerts to one destination from a thread of its own, in order."""

    def __init__(self, dest: Destination) -> None:
        self.dest = dest
        self._queue: queue.Queue[Alert | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._failing = False
        self._full = False

    def put(self, alert: Alert) -> None:
        if self._thread is None:
            # a daemon: a destination that hangs beyond close()'s wait must not keep postlens alive
            self._thread = threading.Thread(target=self._run, name=f"postlens alerts to {self.dest.name}",
                                            daemon=True)  # fmt: skip
            self._thread.start()
        if self._queue.qsize() >= OUTBOX_SIZE:
            if not self._full:
                _report(
                    self.dest, f"{OUTBOX_SIZE} alerts are waiting: newer ones are dropped until it catches up"
                )
                self._full = True
            return
        self._full = False
        self._queue.put(alert)

    def _run(self) -> None:
        while (alert := self._queue.get()) is not None:
            try:
                self.dest.send(alert)
            except Exception as e:  # whatever one destination does wrong, the others go on
                if not self._failing:
                    _report(self.dest, f"failed: {_why(e)} (reported once until it works again)")
                    self._failing = True
            else:
                if self._failing:
                    _report(self.dest, "works again")
                    self._failing = False

    def finish(self) -> None:
        if self._thread is not None:
            self._queue.put(None)

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


def _report(dest: Destination, text: str) -> None:
    print(f"postlens: alert destination {dest.name}: {text}", file=sys.stderr, flush=True)


def _why(e: BaseException) -> str:
    if isinstance(e, subprocess.TimeoutExpired):
        return f"no answer within {e.timeout:g} seconds"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


# -- destinations ------------------------------------------------------------------------


class Destination(Protocol):
    name: str  # how failure reports name it: no passwords or tokens

    def send(self, alert: Alert) -> None:
        """Deliver ``alert`` within the destination's timeout, or raise."""


class TerminalDestination:
    """One line per alert: ``TIME HEADLINE: TEXT``."""

    name = "terminal"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream  # None: standard output, as it is when the alert is written

    def send(self, alert: Alert) -> None:
        stream = self._stream or sys.stdout
        stream.write(f"{iso_utc(alert.at)} {alert.headline()}: {alert.text}\n")
        stream.flush()


_PRIORITIES = {"info": "info", "warning": "warning", "error": "err", "critical": "crit"}


class LogDestination:
    """The system log: one datagram per alert to ``/dev/log`` (or ``host:port``, UDP).

    The syslog daemon adds the time and host name, as it does for Postfix's own lines.
    A resolved notice has the priority info.
    """

    def __init__(self, address: str = "/dev/log", facility: str = "daemon", timeout: float = 5.0) -> None:
        names = logging.handlers.SysLogHandler.facility_names
        if facility not in names:
            raise UsageError(
                f"[alerts] syslog_facility: {facility!r} is not one of {', '.join(sorted(names))}"
            )
        self.name = f"syslog {address}"
        self._facility = names[facility]
        self._timeout = timeout
        self._target: str | tuple[str, int]
        if address.startswith("/"):
            self._family, self._target = socket.AF_UNIX, address
        else:
            host, _, port = address.rpartition(":")
            host = host.strip("[]")
            if not host or not digits(port):
                raise UsageError(f"[alerts] syslog: {address!r} is not a socket path or host:port")
            self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self._target = (host, int(port))

    def send(self, alert: Alert) -> None:
        level = "info" if alert.state == "resolved" else _PRIORITIES[alert.severity]
        priority = self._facility << 3 | logging.handlers.SysLogHandler.priority_names[level]
        data = f"<{priority}>postlens[{os.getpid()}]: {alert.headline()}: {alert.text}".encode()
        with socket.socket(self._family, socket.SOCK_DGRAM) as s:
            s.settimeout(self._timeout)
            s.sendto(data, self._target)


class EmailDestination:
    """A plain-text mail per alert through SMTP, by default to the local Postfix.

    The subject is ``[postlens] HEADLINE``; the body has the sentence, the details, and the
    alert's JSON. Sent with :mod:`postlens.mail`, as the report is.
    """

    def __init__(
        self, to: list[str], sender: str | None = None, server: str = DEFAULT_SMTP, timeout: float = 10.0
    ) -> None:
        if not to:
            raise UsageError("[alerts] email: give the addresses alerts are mailed to")
        self._to = [check_address(a, "[alerts] email") for a in to]
        self._sender = default_sender() if sender is None else check_address(sender, "[mail] from")
        parse_server(server)
        self.name = f"email via {server}"
        self._server, self._timeout = server, timeout

    def message(self, alert: Alert) -> EmailMessage:
        data = alert.to_json()
        details = "\n".join(f"{k + ':':<11}{v}" for k, v in data.items() if k != "text" and v != "")
        return build_message(
            subject=f"[postlens] {alert.headline()}",
            sender=self._sender,
            recipients=self._to,
            text=f"{alert.text}\n\n{details}\n\n{json.dumps(data, indent=2)}\n",
        )

    def send(self, alert: Alert) -> None:
        send_mail(self.message(alert), self._server, timeout=self._timeout)


class WebhookDestination:
    """The alert's JSON, POSTed to a URL; any 2xx answer is success."""

    def __init__(self, url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"[alerts] webhook: {url!r} is not an http:// or https:// URL")
        self.name = f"webhook {parts.hostname}" + (f":{parts.port}" if parts.port else "")
        self._url = url
        self._timeout = timeout
        self._headers = {"Content-Type": "application/json", "User-Agent": "postlens", **(headers or {})}

    def send(self, alert: Alert) -> None:
        body = json.dumps(alert.to_json()).encode()
        request = urllib.request.Request(self._url, data=body, headers=self._headers, method="POST")
        with urllib.request.urlopen(request, timeout=self._timeout) as answer:  # raises on 4xx and 5xx
            answer.read()


_APPRISE_TYPES = {"info": "info", "warning": "warning", "error": "failure", "critical": "failure"}


class AppriseDestination:
    """Slack, Teams, Telegram, Matrix and the many other services apprise reaches, by URL."""

    name = "apprise"

    def __init__(self, urls: list[str]) -> None:
        try:
            # imported by name: an optional extra, and mypy need not know it
            apprise = importlib.import_module("apprise")
        except ImportError:
            raise UsageError(
                "[alerts] apprise needs the apprise library: pip install 'postlens[alerts]'"
            ) from None
        self._apprise = apprise.Apprise()
        for url in urls:
            if not self._apprise.add(url):
                scheme = url.partition("://")[0]
                raise UsageError(f"[alerts] apprise: a {scheme}:// URL that apprise does not accept")

    def send(self, alert: Alert) -> None:
        kind = "success" if alert.state == "resolved" else _APPRISE_TYPES[alert.severity]
        if not self._apprise.notify(
            title=f"[postlens] {alert.headline()}", body=alert.text, notify_type=kind
        ):
            raise RuntimeError("apprise could not notify every service (its log says why)")


class CommandDestination:
    """Runs a command per alert, with the alert's JSON on its standard input.

    A command that exits with a status other than 0 has failed; its last line of standard
    error is the reason reported. It is killed after ``timeout`` seconds.
    """

    def __init__(self, argv: list[str], timeout: float = 10.0) -> None:
        if not argv:
            raise UsageError('[alerts] command: give the command as a list: ["/usr/local/bin/block", "-v"]')
        if shutil.which(argv[0]) is None:
            raise UsageError(f"[alerts] command: {argv[0]!r} is not an executable program")
        self.name = f"command {argv[0]}"
        self._argv = argv
        self._timeout = timeout

    def send(self, alert: Alert) -> None:
        data = json.dumps(alert.to_json()).encode() + b"\n"
        done = subprocess.run(self._argv, input=data, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              timeout=self._timeout, check=False)  # fmt: skip
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip().splitlines()
            raise RuntimeError(f"exit status {done.returncode}" + (f": {said[-1]}" if said else ""))


# -- the settings file -------------------------------------------------------------------

_RULE_FIELDS = ("name", "kind", "window", "threshold", "severity", "cooldown", "key", "min_count", "finding",
                "reason")  # fmt: skip


def rules_from_config(settings: dict[str, Any]) -> list[Rule]:
    """The rules of the ``[[alert]]`` tables of the settings file (:func:`postlens.config.load`).

    A bad table is a UsageError of one line that names the rule and the field.
    """
    tables = settings.get("alert", [])
    if not isinstance(tables, list):
        raise UsageError("[[alert]]: write each alert as an [[alert]] table")
    rules: list[Rule] = []
    for n, table in enumerate(tables, 1):
        if not isinstance(table, dict):
            raise UsageError(f"[[alert]] number {n}: not a table")
        name = table.get("name")
        if not isinstance(name, str) or not name:
            raise UsageError(f"[[alert]] number {n}: name: give every alert a name")
        rule = _rule(name, table)
        if any(r.name == name for r in rules):
            raise UsageError(f"[[alert]] {name!r}: name: two alerts have this name")
        rules.append(rule)
    problem_rules = [r for r in rules if r.kind == "problem" and r.reason]
    if problem_rules:
        reasons = Rules.load(settings.get("problems", {}).get("rules"))
        for rule in problem_rules:
            _check_reason(rule, reasons)
    return rules


def _rule(name: str, table: dict[str, Any]) -> Rule:
    def get(field: str, kind: type | tuple[type, ...], default: Any) -> Any:
        value = table.get(field, default)
        if value is not default and (not isinstance(value, kind) or isinstance(value, bool)):
            raise UsageError(f"[[alert]] {name!r}: {field}: {value!r} has the wrong type")
        return value

    def seconds(field: str, default: float) -> float:
        text = get(field, str, None)
        return default if text is None else float(duration(text, f"[[alert]] {name!r}: {field}"))

    for field in table:
        if field not in _RULE_FIELDS:
            raise UsageError(
                f"[[alert]] {name!r}: {field}: not a setting of an alert ({', '.join(_RULE_FIELDS)})"
            )
    kind = get("kind", str, "")
    if kind not in KINDS:
        raise UsageError(f"[[alert]] {name!r}: kind: {kind!r} is not one of {', '.join(KINDS)}")
    finding = get("finding", str, "")
    if kind == "security" and finding not in FINDINGS:  # before its threshold's default is looked up
        raise UsageError(f"[[alert]] {name!r}: finding: {finding!r} is not one of {', '.join(FINDINGS)}")
    threshold = get("threshold", (int, float), None)
    if threshold is None:
        if kind in ("fatal", "silence", "blocklisted"):
            threshold = 1
        elif kind == "security":
            threshold = getattr(SecurityOptions(), FINDINGS[finding])
        else:
            raise UsageError(f"[[alert]] {name!r}: threshold: {kind} rules need one")
    window = {"silence": 3600.0, "queue_size": 0.0, "blocklisted": 3600.0}.get(kind, DEFAULT_WINDOW)
    return Rule(
        name=name,
        kind=kind,
        window=seconds("window", window),
        threshold=float(threshold),
        severity=get("severity", str, "warning"),
        cooldown=seconds("cooldown", DEFAULT_COOLDOWN),
        key=get("key", str, None),
        min_count=get("min_count", int, DEFAULT_MIN_COUNT),
        finding=finding,
        reason=get("reason", str, ""),
    )


def destinations_from_config(settings: dict[str, Any]) -> list[Destination]:
    """The destinations that ``[alerts]`` (and ``[mail]`` for e-mail) of the settings file name."""
    a = settings.get("alerts", {})
    mail = settings.get("mail", {})
    out: list[Destination] = []
    terminal = a.get("terminal", "stdout")
    if terminal not in ("stdout", "stderr", "none"):
        raise UsageError(f"[alerts] terminal: {terminal!r} is not stdout, stderr or none")
    if terminal != "none":
        out.append(TerminalDestination(sys.stderr if terminal == "stderr" else None))
    if "syslog" in a:
        out.append(LogDestination(a["syslog"], a.get("syslog_facility", "daemon")))
    recipients = _strings(a, "email")
    if recipients:
        timeout = _timeout(mail, "mail", "timeout", 10.0)
        out.append(EmailDestination(recipients, mail.get("from"), mail.get("smtp", DEFAULT_SMTP), timeout))
    headers = a.get("webhook_headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise UsageError("[alerts] webhook_headers: every header's value is a string")
    for url in _strings(a, "webhook"):
        out.append(WebhookDestination(url, _timeout(a, "alerts", "webhook_timeout", 5.0), headers))
    urls = _strings(a, "apprise")
    if urls:
        out.append(AppriseDestination(urls))
    if "command" in a:
        argv = a["command"]
        if not isinstance(argv, list) or not all(isinstance(arg, str) for arg in argv):
            raise UsageError("[alerts] command: give the command as a list of strings")
        out.append(CommandDestination(argv, _timeout(a, "alerts", "command_timeout", 10.0)))
    return out


def _strings(table: dict[str, Any], key: str) -> list[str]:
    value = table.get(key, [])
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise UsageError(f"[alerts] {key}: give a string or a list of strings")
    return values


def _timeout(table: dict[str, Any], section: str, key: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise UsageError(f"[{section}] {key}: give a number of seconds more than 0")
    return float(value)
