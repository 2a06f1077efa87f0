"""problems: why mail fails, ranked.

Every deferral, bounce, expiry and reject reply is put into a reason by the rules of
:mod:`postlens.analyses.reasons`. A reason counts the messages and recipients it hit
(a message deferred twenty times is one message), the domains and hosts affected, the
reply codes, the blocklists or receivers named, first and last seen, and an example.

With a period (``-d``, ``--since``) the same length of log before it is read too, and
each reason gets the messages it hit then: the trend. Whole messages are counted when
they end (the correlator hands them over), so the counts merge exactly across chunks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from postlens.analyses.reasons import Rules, Verdict, describe_status, split_reply
from postlens.analyses.tally import Counts, Tally, bump
from postlens.dates import iso_utc
from postlens.events import REJECTS, Reject
from postlens.messages import Message

FAILED = ("deferred", "bounced")
KINDS = ("deferred", "bounced", "expired", "reject")
TOP = 10  # rows of domains, hosts and codes shown per reason
CURRENT, PREVIOUS = 0, 1


@dataclass(slots=True)
class ProblemsOptions:
    rules: str | None = None  # a user rule file, tried before the shipped rules
    start: float | None = None  # the period asked about; lines before it are the previous period
    end: float | None = None


def domain(address: str) -> str:
    return address.rpartition("@")[2].lower() if "@" in address else ""


def relay_host(relay: str) -> str:
    """``mx.example.com[192.0.2.1]:25`` without the port."""
    return relay.rpartition(":")[0] if "]:" in relay else relay


class Problems:
    def __init__(self, options: ProblemsOptions, tz: tzinfo | None) -> None:
        self.options = options
        self.rules = Rules.load(options.rules)
        self.t = t = Tally()
        self._events = t.counter("events")  # (reason, kind) -> reply lines
        self._messages = t.counter("messages")  # (reason, period) -> messages
        self._recipients = t.counter("recipients")  # (reason, period) -> recipients
        self._domains = t.counter("domains")  # (reason, domain) -> recipients
        self._hosts = t.counter("hosts")  # (reason, relay or client) -> recipients
        self._codes = t.counter("codes")  # (reason, code, dsn) -> reply lines
        self._providers = t.counter("providers")  # (reason, provider) -> reply lines
        self._last = t.maximum("last")
        self._first = t.maximum("first")  # minus the time: the latest is the first seen
        self._urls: dict[str, str] = {}

    def _period(self, ts: float) -> int | None:
        o = self.options
        if o.end is not None and ts >= o.end:
            return None
        if o.start is not None and ts < o.start:
            return PREVIOUS
        return CURRENT

    def handlers(self) -> dict[type, Callable[[Any], None]]:
        return {Reject: self._reject}

    def _count_reply(self, verdict: Verdict, kind: str, code: str, dsn: str, text: str, ts: float) -> str:
        """Count one reply line of the current period under its reason; the reason's id."""
        r = verdict.reason.id
        bump(self._events, (r, kind))
        bump(self._codes, (r, code, dsn))
        if verdict.provider is not None:
            bump(self._providers, (r, verdict.provider.name))
            self._urls[verdict.provider.name] = verdict.provider.url
        if ts > self._last.get(r, -1e18):
            self._last[r] = ts
        if -ts > self._first.get(r, -1e18):
            self._first[r] = -ts
        self.t.sample("example:" + r, ts, text)
        return r

    def _reject(self, ev: Reject) -> None:
        if ev.action not in REJECTS:
            return
        ts = ev.line.ts
        period = self._period(ts)
        if period is None:
            return
        verdict = self.rules.classify("reject", ev.code, ev.dsn, ev.reason, ev.stage)
        r = verdict.reason.id
        bump(self._messages, (r, period))
        if ev.recipient:
            bump(self._recipients, (r, period))
        if period != CURRENT:
            return
        self._count_reply(verdict, "reject", ev.code, ev.dsn, ev.reason, ts)
        if ev.recipient:
            bump(self._domains, (r, domain(ev.recipient)))
        bump(self._hosts, (r, f"{ev.client_host}[{ev.client_ip}]" if ev.client_ip else ev.client_host))

    def add_message(self, msg: Message) -> None:
        hit: set[tuple[str, int]] = set()
        recipients: dict[tuple[str, int, str], str] = {}
        last: Verdict | None = None
        for d in msg.deliveries:
            if d.status not in FAILED:
                continue
            period = self._period(d.line.ts)
            code, dsn_, text = split_reply(d.reply)
            verdict = last = self.rules.classify(d.status, code, d.dsn or dsn_, text)
            if period is None:
                continue
            r = verdict.reason.id
            hit.add((r, period))
            recipients[r, period, d.to.lower()] = relay_host(d.relay)
            if period == CURRENT:
                self._count_reply(verdict, d.status, code, d.dsn or dsn_, d.reply, d.line.ts)
        if msg.expired is not None:
            self._expired(msg, last)
        for key in hit:
            bump(self._messages, key)
        for (r, period, to), host in recipients.items():
            bump(self._recipients, (r, period))
            if period == CURRENT:
                bump(self._domains, (r, domain(to)))
                if host:
                    bump(self._hosts, (r, host))

    def _expired(self, msg: Message, last: Verdict | None) -> None:
        """An expiry has no reply of its own: it failed for the reason of its last deferral."""
        assert msg.expired is not None
        ts = msg.expired.line.ts
        if self._period(ts) != CURRENT:
            return
        verdict = last or self.rules.classify("expired", "", "", "")
        self._count_reply(verdict, "expired", "", "", "expired, returned to sender", ts)

    def settle(self, msg: Any) -> None:
        pass  # arrivals are not counted here

    def add_session(self, sess: Any) -> None:
        pass

    def merge(self, later: Problems) -> None:
        self.t.merge(later.t)
        self._urls.update(later._urls)

    def result(self) -> dict[str, Any]:
        reasons = {r.id: r for r in self.rules.reasons()}
        ids = {r for r, _ in self._messages} | {r for r, _ in self._events}
        compared = self.options.start is not None
        rows = [self._row(reasons[r], compared) for r in ids]
        rows.sort(key=lambda row: (-row["messages"], -row["recipients"], row["id"]))
        replies = sum(v for (_, kind), v in self._events.items() if kind != "expired")
        unclassified = sum(
            v for (r, kind), v in self._events.items() if r == "unclassified" and kind != "expired"
        )
        return {
            "period": {
                "start": iso_utc(self.options.start) if self.options.start is not None else None,
                "end": iso_utc(self.options.end) if self.options.end is not None else None,
                "compared": compared,
            },
            "replies": replies,
            "classified": replies - unclassified,
            "problems": rows,
        }

    def _row(self, reason: Any, compared: bool) -> dict[str, Any]:
        r = reason.id
        samples = self.t.samples.get("example:" + r, [])
        return {
            "id": r,
            "title": reason.title,
            "messages": self._messages.get((r, CURRENT), 0),
            "recipients": self._recipients.get((r, CURRENT), 0),
            "replies": {kind: self._events.get((r, kind), 0) for kind in KINDS},
            "previous": (
                {
                    "messages": self._messages.get((r, PREVIOUS), 0),
                    "recipients": self._recipients.get((r, PREVIOUS), 0),
                }
                if compared
                else None
            ),
            "first_seen": iso_utc(-self._first[r]) if r in self._first else None,
            "last_seen": iso_utc(self._last[r]) if r in self._last else None,
            "domains": _top(self._domains, r, "domain", "recipients"),
            "hosts": _top(self._hosts, r, "host", "recipients"),
            "codes": [
                {"code": code, "dsn": dsn, "meaning": describe_status(dsn), "replies": n}
                for (code, dsn), n in _ranked(self._codes, r)
            ],
            "providers": [
                {"name": name, "url": self._urls.get(name, ""), "replies": n}
                for (name,), n in _ranked(self._providers, r)
            ],
            "example": min(samples)[1] if samples else None,
            "explanation": reason.explanation,
            "action": reason.action,
        }


def _ranked(counter: Counts, reason: str) -> list[tuple[tuple[Any, ...], int]]:
    """The rows of ``counter`` under ``reason``, most first, at most TOP."""
    rows = [(key[1:], n) for key, n in counter.items() if key[0] == reason]
    rows.sort(key=lambda kv: (-kv[1], kv[0]))
    return rows[:TOP]


def _top(counter: Counts, reason: str, name: str, what: str) -> list[dict[str, Any]]:
    return [{name: key[0], what: n} for key, n in _ranked(counter, reason)]
