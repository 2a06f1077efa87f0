"""summaries: what the dashboard draws, counted per minute and per hour as lines arrive.

Everything that happens at one moment is counted at that moment, from its own line, so a
message deferred for a day shows its deferrals while it waits: deliveries (delivered,
deferred, bounced, by destination domain, with their delays), expiries, rejects and failed
logins. Arrivals are counted once it is known whether they are a content filter's
re-injection (the correlator settles them), as the report counts them, so the summaries
of a stretch of log add up to its report's totals. Finished messages become rows of the
message list.

The counters only grow; :meth:`Summaries.drain` hands them over and starts again, which is
how the history database keeps them (rollup.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from postlens.analyses.problems import domain
from postlens.analyses.reasons import Rules, split_reply
from postlens.events import REJECTS, Arrival, AuthFailure, Delivery, Expired, Reject, Verdict
from postlens.messages import ENDED_ABORTED, Arrived, Message, filter_discard, final_delivery, hop_target

MINUTE_METRICS: Final = (
    "received",
    "delivered",
    "deferred",
    "bounced",
    "expired",
    "rejected",
    "auth_failures",
)
MESSAGE_COLUMNS: Final = (
    "host", "qid", "first_ts", "last_ts", "sender", "recipients", "status", "size", "client_ip",
    "message_id", "reason",
)  # fmt: skip


@dataclass(slots=True)
class Drained:
    minutes: Counter[tuple[int, str]]  # (minute, metric) -> n
    hours: Counter[tuple[int, str, str]]  # (hour, kind, key) -> n
    messages: list[tuple[Any, ...]]  # rows in MESSAGE_COLUMNS order


class Summaries:
    def __init__(self) -> None:
        self.rules = Rules.load(None)
        self.minutes: Counter[tuple[int, str]] = Counter()
        self.hours: Counter[tuple[int, str, str]] = Counter()
        self.messages: list[tuple[Any, ...]] = []
        self.early: set[tuple[str, str, float]] = set()  # arrivals counted while still in the queue

    def __getstate__(self) -> dict[str, Any]:
        return {"minutes": self.minutes, "hours": self.hours, "messages": self.messages, "early": self.early}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]
        self.minutes, self.hours, self.messages = state["minutes"], state["hours"], state["messages"]
        self.early = state["early"]

    def handlers(self) -> dict[type, Callable[[Any], None]]:
        return {
            Delivery: self.delivery,
            Reject: self.reject,
            AuthFailure: self.auth_failure,
            Expired: self.expired,
            Verdict: self.verdict,
            Arrival: self.arrival,
        }

    def _count(self, ts: float, metric: str, host: str, n: int = 1) -> int:
        """Count ``metric`` ``n`` times at ``ts``, by minute and by hour (long periods read
        hours), and by hour for the mail server ``host``; the hour."""
        self.minutes[int(ts // 60), metric] += n
        hour = int(ts // 3600)
        self.hours[hour, "metric", metric] += n
        self.hours[hour, "host", f"{metric}\t{host}"] += n
        return hour

    def _reason(self, hour: int, kind: str, verdict_id: str, dom: str) -> None:
        self.hours[hour, "reason", f"{kind}\t{verdict_id}"] += 1
        if dom:
            self.hours[hour, "reason_domain", f"{verdict_id}\t{dom}"] += 1

    def delivery(self, d: Delivery) -> None:
        status = d.status
        dom = domain(d.to) or "(local)"
        if status == "sent":
            if not final_delivery(d):
                return
            hour = self._count(d.line.ts, "delivered", d.line.host)
            self.hours[hour, "to", dom] += 1
            self.hours[hour, "delay", repr(d.delay)] += 1
        elif status in ("deferred", "bounced"):
            hour = self._count(d.line.ts, status, d.line.host)
            self.hours[hour, f"to_{status}", dom] += 1
            code, dsn, text = split_reply(d.reply)
            self._reason(hour, status, self.rules.classify(status, code, d.dsn or dsn, text).reason.id, dom)

    def arrival(self, ev: Arrival) -> None:
        """A message an authenticated client submitted, by SASL username and hour."""
        if ev.sasl_username and ev.qid:
            self.hours[int(ev.line.ts // 3600), "sasl_sender", ev.sasl_username.lower()] += 1

    def verdict(self, ev: Verdict) -> None:
        """A content check's verdict (amavis, spamd, SPF, DKIM, DMARC, greylisting), by hour."""
        self.hours[int(ev.line.ts // 3600), "verdict", f"{ev.check}\t{ev.verdict}"] += 1

    def expired(self, ev: Expired) -> None:
        self._count(ev.line.ts, "expired", ev.line.host)

    def reject(self, ev: Reject) -> None:
        if ev.action not in REJECTS:
            return
        hour = self._count(ev.line.ts, "rejected", ev.line.host)
        verdict = self.rules.classify("reject", ev.code, ev.dsn, ev.reason, ev.stage)
        self._reason(hour, "reject", verdict.reason.id, domain(ev.recipient) if ev.recipient else "")
        if ev.client_ip:
            self.hours[hour, "rejected_ip", ev.client_ip] += 1

    def auth_failure(self, ev: AuthFailure) -> None:
        hour = self._count(ev.line.ts, "auth_failures", ev.line.host)
        if ev.client_ip:
            self.hours[hour, "auth_ip", ev.client_ip] += 1
        if ev.username:
            self.hours[hour, "auth_user", ev.username] += 1

    def settle(self, msg: Arrived) -> None:
        """An arrival, counted as the report counts it: once, and not a filter's re-injection.
        One counted early is not counted again, and taken back if it was a re-injection."""
        key = (msg.host, msg.qid, msg.first_ts)
        if self.early and key in self.early:
            self.early.discard(key)
            if msg.reinjected:
                self._arrival(msg, -1)
            return
        if not msg.reinjected and msg.entered:
            self._arrival(msg, 1)

    def _arrival(self, msg: Arrived, n: int) -> None:
        hour = self._count(msg.first_ts, "received", msg.host, n)
        self.hours[hour, "from", domain(msg.sender or "") or "(none)"] += n

    def count_early(self, msg: Arrived) -> None:
        """Count now the arrival of a message still in the queue (a deferred one may wait for
        days), or held for a content filter's hop line (taken back if one comes: it was a
        re-injection); it is not counted again when it ends."""
        key = (msg.host, msg.qid, msg.first_ts)
        if key not in self.early and not msg.reinjected and msg.entered:
            self._arrival(msg, 1)
            self.early.add(key)

    def add_message(self, msg: Message) -> None:
        """A finished message: its arrival settled, and a row in the message list unless it
        only went into a content filter (its re-injected copy gets the row)."""
        if msg.ended == ENDED_ABORTED:
            return
        if not msg.link_pending:
            self.settle(msg.arrived())
        last = _last_attempts(msg)
        if last or msg.expired is not None or msg.policy:
            # a content filter's discard is listed with smtpd's and cleanup's (the policy "discard")
            statuses = {"discard" if filter_discard(d) else d.status for d in last.values()}
            if msg.expired is not None:
                status = "expired"
            elif msg.policy:
                status = msg.policy
            elif "bounced" in statuses:
                status = "bounced"
            elif "deferred" in statuses:
                status = "deferred"
            else:
                status = "delivered" if statuses == {"sent"} else ",".join(sorted(statuses))
            self.messages.append(self._row(msg, last, status))

    def queued(self, msg: Message) -> tuple[Any, ...] | None:
        """The row of a message still in the queue: ``deferred`` once its last attempt for a
        recipient was, ``hold`` when held, else ``queued``. None for one that only went into a
        content filter (its re-injected copy is the one waiting)."""
        last = _last_attempts(msg)
        if msg.ended == ENDED_ABORTED or (msg.deliveries and not last):
            return None
        deferred = any(d.status == "deferred" for d in last.values())
        return self._row(msg, last, msg.policy or ("deferred" if deferred else "queued"))

    def _row(self, msg: Message, last: dict[str, Delivery], status: str) -> tuple[Any, ...]:
        reason = ""
        for d in reversed(msg.deliveries):
            if d.status in ("deferred", "bounced"):
                code, dsn, text = split_reply(d.reply)
                reason = self.rules.classify(d.status, code, d.dsn or dsn, text).reason.id
                break
        arrival = msg.arrival
        return (
            msg.host, msg.qid, msg.first_ts, msg.last_ts, msg.sender or "", " ".join(last),
            status, msg.size, arrival.client_ip if arrival is not None else "", msg.message_id or "", reason,
        )  # fmt: skip

    def add_session(self, sess: Any) -> None:
        pass

    def drain(self) -> Drained:
        """What was counted since the last drain; the counters start again from nothing."""
        out = Drained(self.minutes, self.hours, self.messages)
        self.minutes, self.hours, self.messages = Counter(), Counter(), []
        return out


def _last_attempts(msg: Message) -> dict[str, Delivery]:
    """Each recipient's last delivery attempt, hops into a content filter left out."""
    last: dict[str, Delivery] = {}
    for d in msg.deliveries:
        if not hop_target(d):
            last[d.to.lower()] = d
    return last
