"""The daily report: every pflogsumm section and what pflogsumm leaves out.

:class:`Report` is fed events (line-level counts: rejects, warnings, logins, TLS ...)
and finished messages and sessions (everything that needs a whole message: bytes,
delivery delays, senders, hops). Its state is a :class:`Tally`, so two partial
reports merge exactly; :meth:`Report.result` turns it into a plain dict that the
renderers format and ``--format json`` prints.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from postlens.analyses import normalize as norm
from postlens.analyses.tally import Tally, bump_max
from postlens.events import (
    Arrival,
    AuthFailure,
    Connect,
    ConnectFailure,
    Diagnostic,
    Event,
    Login,
    MasterMessage,
    Notice,
    Pickup,
    Reject,
    Screen,
    Tls,
)
from postlens.messages import ENDED_ABORTED, ENDED_OPEN, Message, Session, hop_target

TOTAL_FIELDS = (
    "received", "delivered", "forwarded", "deferred", "deferrals", "bounced", "expired",
    "rejected", "reject_warnings", "held", "discarded", "notifications", "bytes_received",
    "bytes_delivered", "senders", "sending_hosts_domains", "recipients",
    "recipient_hosts_domains",
)  # fmt: skip
TRAFFIC = ("received", "delivered", "deferred", "bounced", "rejected")

# Reject actions by the total they count in.
_ACTION_TOTAL = {
    "reject": "rejected",
    "milter-reject": "rejected",
    "proxy-reject": "rejected",
    "reject_warning": "reject_warnings",
    "warning": "reject_warnings",
    "hold": "held",
    "milter-hold": "held",
    "discard": "discarded",
    "milter-discard": "discarded",
}


@dataclass(slots=True)
class ReportOptions:
    """What changes how the report counts (options that change only printing live in render)."""

    verp_mung: int = 0
    ignore_case: bool = False
    rej_add_from: bool = False


class TimeBuckets:
    """Local day and hour of an epoch time, in the report's zone, cached per quarter hour."""

    __slots__ = ("_cache", "tz")

    def __init__(self, tz: tzinfo | None) -> None:
        self.tz = tz
        self._cache: dict[int, tuple[str, int]] = {}

    def day_hour(self, ts: float) -> tuple[str, int]:
        q = int(ts // 900)
        v = self._cache.get(q)
        if v is None:
            dt = datetime.fromtimestamp(q * 900, self.tz)
            v = (dt.strftime("%Y-%m-%d"), dt.hour)
            if len(self._cache) > 100000:
                self._cache.clear()
            self._cache[q] = v
        return v


def centis(value: float) -> int:
    return round(value * 100)


class Report:
    def __init__(self, options: ReportOptions | None = None, tz: tzinfo | None = None) -> None:
        self.options = options or ReportOptions()
        self.buckets = TimeBuckets(tz)
        self.t = Tally()

    # -- shared helpers ----------------------------------------------------------

    def _addr(self, addr: str) -> str:
        return norm.address(addr, self.options.verp_mung)

    def _traffic(self, ts: float, what: str, n: int = 1) -> None:
        day, hour = self.buckets.day_hour(ts)
        self.t.counter("day")[(day, what)] += n
        self.t.counter("hour")[(hour, what)] += n
        self.t.counter("days").update((day,))

    def _seen(self, ts: float) -> None:
        mx = self.t.maximum("span")
        bump_max(mx, "last", ts)
        bump_max(mx, "neg_first", -ts)

    # -- events ------------------------------------------------------------------

    def feed(self, ev: Event) -> None:
        t = self.t
        ts = ev.line.ts
        if isinstance(ev, Reject):
            total = _ACTION_TOTAL.get(ev.action)
            if total is None:
                t.counter("actions")[ev.action] += 1
                return
            t.counter("totals")[total] += 1
            if total == "rejected":
                self._traffic(ts, "rejected")
                t.counter("reject_kind")[ev.stage] += 1
                if ev.client_ip:
                    t.counter("reject_client")[ev.client_ip] += 1
                t.counter("reject_code")[ev.code or ev.dsn or "-"] += 1
            who = self._reject_who(ev)
            t.counter("detail_" + total)[(ev.tag.daemon, ev.stage, norm.reason(ev.reason), who)] += 1
        elif isinstance(ev, Diagnostic):
            t.counter("diag_" + ev.level)[(ev.tag.daemon, norm.reason(ev.text))] += 1
        elif isinstance(ev, AuthFailure):
            c = t.counter("auth_fail")
            c[("total", "")] += 1
            c[("ip", ev.client_ip or "-")] += 1
            c[("user", ev.username.lower() if ev.username else "(unknown)")] += 1
            c[("method", ev.method or "-")] += 1
            c[("service", ev.tag.daemon)] += 1
            if ev.tag.kind == 1:  # Postfix logs it as a warning too
                t.counter("diag_warning")[(ev.tag.daemon, "SASL authentication failed")] += 1
        elif isinstance(ev, Arrival):
            if ev.sasl_username and ev.qid:
                self._auth_success(ev.client_ip, ev.sasl_username, ev.sasl_method, "smtpd")
        elif isinstance(ev, Login):
            self._auth_success(ev.client_ip, ev.username, ev.method, ev.service)
        elif isinstance(ev, Connect):
            if ev.tag.daemon == "smtpd":
                t.counter("smtpd")["connects"] += 1
        elif isinstance(ev, Tls):
            c = t.counter("tls_" + ev.direction)
            c[("total", "")] += 1
            c[("protocol", ev.protocol)] += 1
            c[("trust", ev.trust)] += 1
            c[("cipher", ev.cipher)] += 1
        elif isinstance(ev, Screen):
            t.counter("screen")[ev.action] += 1
            if ev.action == "LISTED":
                t.counter("dnsbl")[ev.detail.split(" ", 1)[0]] += 1
        elif isinstance(ev, Notice):
            t.counter("totals")["notifications"] += 1
            t.counter("notice_kind")[ev.kind] += 1
        elif isinstance(ev, MasterMessage):
            t.counter("master")[ev.text] += 1
        elif isinstance(ev, ConnectFailure):
            t.counter("smtp_failures")[(norm.reason(ev.reason).lower(), ev.peer)] += 1
        elif isinstance(ev, Pickup):
            pass

    def _reject_who(self, ev: Reject) -> str:
        reason = ev.reason
        if reason.startswith("Sender address rejected"):
            return self._addr(ev.sender)
        if reason.startswith(("Recipient address rejected", "User unknown")) or ": User unknown" in reason:
            who = self._addr(ev.recipient)
            if self.options.rej_add_from:
                who += f"  ({self._addr(ev.sender) if ev.sender else ev.client_ip})"
            return who
        who = norm.client_name(ev.client_host, ev.client_ip) or ev.client_host or "-"
        if self.options.rej_add_from:
            who += f"  ({self._addr(ev.sender)})"
        return who

    def _auth_success(self, ip: str, user: str, method: str, service: str) -> None:
        c = self.t.counter("auth_ok")
        c[("total", "")] += 1
        c[("ip", ip or "-")] += 1
        c[("user", user.lower() or "(unknown)")] += 1
        c[("method", (method or "-").upper())] += 1
        c[("service", service)] += 1

    def unrecognised(self, order: Any, text: str) -> None:
        self.t.sample("unrecognised", order, text)

    def malformed(self, order: Any, text: str) -> None:
        self.t.sample("malformed", order, text)

    def coverage(self, **counts: int) -> None:
        self.t.counter("coverage").update(counts)

    # -- sessions and messages -----------------------------------------------------

    def add_session(self, sess: Session) -> None:
        if sess.connect is None or sess.disconnect is None:
            return
        secs = int(sess.disconnect.line.ts - sess.connect.line.ts)
        if secs < 0:
            return
        t = self.t
        dom = norm.gimme_domain(f"{sess.connect.client_host}[{sess.connect.client_ip}]")
        day, hour = self.buckets.day_hour(sess.disconnect.line.ts)
        c = t.counter("smtpd_conn")
        c[("all", "")] += 1
        c[("secs", "")] += secs
        c[("day", day)] += 1
        c[("day_secs", day)] += secs
        c[("hour", hour)] += 1
        c[("hour_secs", hour)] += secs
        c[("dom", dom)] += 1
        c[("dom_secs", dom)] += secs
        bump_max(t.maximum("smtpd_max"), ("day", day), secs)
        bump_max(t.maximum("smtpd_max"), ("hour", hour), secs)
        bump_max(t.maximum("smtpd_max"), ("dom", dom), secs)

    def add_message(self, msg: Message) -> None:
        t = self.t
        totals = t.counter("totals")
        state = t.counter("messages")
        if msg.headless or msg.ended == ENDED_OPEN:
            state["incomplete"] += 1
        else:
            state["complete"] += 1
        if msg.ended == ENDED_ABORTED:
            state["aborted"] += 1
            return
        if msg.reinjected:
            state["reinjected"] += 1
        self._seen(msg.first_ts)
        size = msg.size
        notice = msg.origin == "" and not msg.headless and msg.sender == ""
        if msg.origin and msg.queued is not None and not msg.reinjected:
            self._received(msg, size or 0)
        if msg.expired is not None:
            totals["expired"] += 1
            self._traffic(msg.expired.line.ts, "expired")
        if not msg.deliveries:
            return
        deferred = False
        for d in msg.deliveries:
            self._seen(d.line.ts)
            addr = self._addr(d.to)
            dom = norm.domain_of(addr) or "(local)"
            status = d.status
            if status == "sent":
                if hop_target(d):
                    state["hops"] += 1
                    continue
                if "forwarded as " in d.reply:
                    totals["forwarded"] += 1
                    continue
                self._delivered(d, addr, dom, size, notice, msg)
            elif status == "deferred":
                deferred = True
                totals["deferrals"] += 1
                self._traffic(d.line.ts, "deferred")
                t.counter("rdom")[(dom, "defers")] += 1
                bump_max(t.maximum("rdom_max"), dom, centis(d.delay))
                t.counter("deferral_reasons")[(d.tag.daemon, norm.reason(d.reply))] += 1
            elif status == "bounced":
                totals["bounced"] += 1
                self._traffic(d.line.ts, "bounced")
                t.counter("rdom")[(dom, "bounced")] += 1
                relay = d.relay if d.relay != "none" else "none"
                t.counter("bounce_reasons")[(relay, norm.reason(d.reply))] += 1
            elif status in ("deliverable", "undeliverable", "undeliverable-but-not-cached"):
                t.counter("verify")[status] += 1
            else:
                t.counter("other_status")[status] += 1
        if deferred:
            totals["deferred"] += 1

    def _received(self, msg: Message, size: int) -> None:
        t = self.t
        totals = t.counter("totals")
        totals["received"] += 1
        totals["bytes_received"] += size
        self._traffic(msg.first_ts, "received")
        sender = self._addr(msg.sender or "")
        t.set("senders").add(sender)
        su = t.counter("sender")
        su[(sender, "count")] += 1
        su[(sender, "bytes")] += size
        dom = norm.domain_of(sender)
        if not dom:
            a = msg.arrival
            dom = norm.client_name(a.client_host, a.client_ip) if a is not None else "(local)"
        t.set("sending_domains").add(dom)
        sd = t.counter("sdom")
        sd[(dom, "count")] += 1
        sd[(dom, "bytes")] += size

    def _delivered(self, d: Any, addr: str, dom: str, size: int | None, notice: bool,
                   msg: Message) -> None:  # fmt: skip
        t = self.t
        totals = t.counter("totals")
        totals["delivered"] += 1
        self._traffic(d.line.ts, "delivered")
        if notice:
            t.counter("messages")["notice_deliveries"] += 1
        if size is None:
            t.sample("no_size", (msg.host, msg.qid, addr), f"{msg.qid}\t{addr}")
            t.counter("messages")["no_size"] += 1
        else:
            totals["bytes_delivered"] += size
        t.set("recipients").add(addr)
        t.set("recipient_domains").add(dom)
        ru = t.counter("recipient")
        ru[(addr, "count")] += 1
        ru[(addr, "bytes")] += size or 0
        rd = t.counter("rdom")
        delay = centis(d.delay)
        rd[(dom, "count")] += 1
        rd[(dom, "bytes")] += size or 0
        rd[(dom, "delay")] += delay
        bump_max(t.maximum("rdom_max"), dom, delay)
        t.counter("delay_hist")[("", delay)] += 1
        t.counter("delay_hist")[(dom, delay)] += 1
        if d.delays:
            parts = d.delays.split("/")
            if len(parts) == 4:
                split = t.counter("delay_split")
                for name, value in zip("abcd", parts, strict=True):
                    split[name] += centis(float(value))
                split["n"] += 1

    # -- merging and results ---------------------------------------------------------

    def merge(self, other: Report) -> None:
        self.t.merge(other.t)

    def result(self) -> dict[str, Any]:
        from postlens.analyses.report_result import build_result

        return build_result(self.t)


def percentile(hist: Counter[int] | dict[int, int], pct: int) -> float:
    """Nearest-rank ``pct``-th percentile of a histogram of centiseconds, in seconds."""
    total = sum(hist.values())
    if total == 0:
        return 0.0
    rank = max(1, -(-pct * total // 100))
    seen = 0
    for value in sorted(hist):
        seen += hist[value]
        if seen >= rank:
            return value / 100
    return max(hist) / 100
