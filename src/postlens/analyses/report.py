"""The daily report: every pflogsumm section and what pflogsumm leaves out.

:class:`Report` is fed events (line-level counts: rejects, warnings, logins, TLS ...)
and finished messages and sessions (everything that needs a whole message: bytes,
delivery delays, senders, hops). Its state is a :class:`Tally`, so two partial
reports merge exactly; :meth:`Report.result` turns it into a plain dict that the
renderers format and ``--format json`` prints.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Final

from postlens.analyses import normalize as norm
from postlens.analyses.tally import Tally, add_counts, add_one, bump, bump_max, row_of
from postlens.events import (
    Arrival,
    AuthFailure,
    Connect,
    ConnectFailure,
    Delivery,
    Diagnostic,
    Login,
    MasterMessage,
    Notice,
    Reject,
    Screen,
    Tls,
    Verdict,
)
from postlens.lines import KIND_POSTFIX, by_constructor
from postlens.messages import (
    ENDED_ABORTED,
    ENDED_OPEN,
    Arrived,
    Message,
    Session,
    filter_discard,
    hop_target,
    unnamed_filter,
)

# totals counted per mail server (the host field of each line), then added up
COUNTED_FIELDS: Final = (
    "received", "delivered", "forwarded", "deferred", "deferrals", "bounced", "expired",
    "rejected", "reject_warnings", "held", "discarded", "notifications", "bytes_received",
    "bytes_delivered",
)  # fmt: skip
TOTAL_FIELDS: Final = (
    *COUNTED_FIELDS,
    "senders",
    "sending_hosts_domains",
    "recipients",
    "recipient_hosts_domains",
)
TRAFFIC: Final = ("received", "delivered", "deferred", "bounced", "rejected")
# the column of each field in a row of the "host_totals" and "traffic" vectors
_COLUMN: Final = {name: i for i, name in enumerate(COUNTED_FIELDS)}
_TRAFFIC_COLUMN: Final = {name: i for i, name in enumerate(TRAFFIC)}
# a destination domain's row: [delivered, bytes, delay, defers, bounced], made on first use, so
# a domain that only saw hops, forwards or a filter's discards gets none
_RDOM_WIDTH: Final = 5

# Reject actions by the total they count in.
_ACTION_TOTAL: Final = {
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
    """Local day and hour of a quarter-hour bucket, in the report's zone.

    Counts are kept per quarter hour of epoch time (every zone offset is a multiple
    of 15 minutes), and turned into local days and hours only for the result.
    """

    def __init__(self, tz: tzinfo | None) -> None:
        self.tz = tz
        self._cache: dict[int, tuple[str, int]] = {}

    def __reduce__(self) -> tuple[Any, ...]:
        return by_constructor(self, self.tz)

    def day_hour(self, quarter: int) -> tuple[str, int]:
        v = self._cache.get(quarter)
        if v is None:
            dt = datetime.fromtimestamp(quarter * 900, self.tz)
            v = (dt.strftime("%Y-%m-%d"), dt.hour)
            self._cache[quarter] = v
        return v


def centis(value: float) -> int:
    """``round(value * 100)``, halves to even, without a call of the builtin (one per delivery)."""
    x = value * 100
    if not 0 <= x < 1e15:
        return round(x)
    n = int(x)
    rest = x - n
    if rest > 0.5 or (rest == 0.5 and n % 2 == 1):
        n += 1
    return n


class Report:
    def __init__(self, options: ReportOptions | None = None, tz: tzinfo | None = None) -> None:
        self.options = options or ReportOptions()
        self.buckets = TimeBuckets(tz)
        t = self.t = Tally()
        # the hot counters, looked up once (merging updates them in place)
        self._totals = t.vector("host_totals")  # host -> a number for each of COUNTED_FIELDS
        self._traffic = t.vector("traffic")  # quarter hour -> a number for each of TRAFFIC
        self._messages = t.counter("messages")
        self._rdom = t.vector("rdom")  # domain -> [delivered, bytes, delay, defers, bounced]
        self._rdom_max = t.maximum("rdom_max")
        self._hist = t.counter("delay_hist")  # (domain, centiseconds) -> n
        self._split = t.counter("delays")  # Postfix's delays=a/b/c/d as written -> n
        self._senders = t.vector("sender")  # address -> [messages, bytes]
        self._sdom = t.vector("sdom")
        self._recipients = t.vector("recipient")
        self._span = t.maximum("span")

    # -- shared helpers ----------------------------------------------------------

    def _addr(self, addr: str) -> str:
        return norm.address(addr, self.options.verp_mung)

    # -- events ------------------------------------------------------------------

    def handlers(self) -> dict[type, Callable[[Any], None]]:
        """The event types this report counts, each with the method that counts it."""
        return {
            Reject: self._reject,
            Diagnostic: self._diagnostic,
            AuthFailure: self._auth_failure,
            Arrival: self._arrival,
            Login: self._login,
            Connect: self._connect,
            Tls: self._tls,
            Screen: self._screen,
            Notice: self._notice,
            MasterMessage: self._master,
            ConnectFailure: self._connect_failure,
            Verdict: self._verdict,
        }

    def _count(self, host: str, field: str, n: int = 1) -> None:
        """Add ``n`` to a mail server's ``field`` (one of COUNTED_FIELDS): a row per host, not a
        counter keyed by (host, field), whose tuple keys cost more than the rest of the count."""
        row_of(self._totals, host, len(COUNTED_FIELDS))[_COLUMN[field]] += n

    def _in_quarter(self, quarter: int, what: str) -> None:
        """Count one ``what`` (one of TRAFFIC) in a quarter hour since the epoch."""
        row_of(self._traffic, quarter, len(TRAFFIC))[_TRAFFIC_COLUMN[what]] += 1

    def _reject(self, ev: Reject) -> None:
        t = self.t
        total = _ACTION_TOTAL.get(ev.action)
        if total is None:
            bump(t.counter("actions"), ev.action)
            return
        self._count(ev.line.host, total)
        if total == "rejected":
            self._in_quarter(int(ev.line.ts // 900), "rejected")
            bump(t.counter("reject_kind"), ev.stage)
            if ev.client_ip:
                bump(t.counter("reject_client"), ev.client_ip)
            bump(t.counter("reject_code"), ev.code or ev.dsn or "-")
        who = self._reject_who(ev)
        bump(t.counter("detail_" + total), (ev.tag.daemon, ev.stage, norm.reason(ev.reason), who))

    def _diagnostic(self, ev: Diagnostic) -> None:
        bump(self.t.counter("diag_" + ev.level), (ev.tag.daemon, norm.reason(ev.text)))

    def _auth_failure(self, ev: AuthFailure) -> None:
        c = self.t.counter("auth_fail")
        bump(c, ("total", ""))
        bump(c, ("ip", ev.client_ip or "-"))
        bump(c, ("user", ev.username.lower() if ev.username else "(unknown)"))
        bump(c, ("method", ev.method or "-"))
        bump(c, ("service", ev.tag.daemon))
        if ev.tag.kind == KIND_POSTFIX:  # Postfix logs it as a warning too
            bump(self.t.counter("diag_warning"), (ev.tag.daemon, "SASL authentication failed"))

    def _arrival(self, ev: Arrival) -> None:
        if ev.sasl_username and ev.qid:
            self._auth_success(ev.client_ip, ev.sasl_username, ev.sasl_method, "smtpd")

    def _login(self, ev: Login) -> None:
        self._auth_success(ev.client_ip, ev.username, ev.method, ev.service)

    def _connect(self, ev: Connect) -> None:
        if ev.tag.daemon == "smtpd":
            bump(self.t.counter("smtpd"), "connects")

    def _tls(self, ev: Tls) -> None:
        c = self.t.counter("tls_" + ev.direction)
        bump(c, ("total", ""))
        bump(c, ("protocol", ev.protocol))
        bump(c, ("trust", ev.trust))
        bump(c, ("cipher", ev.cipher))

    def _screen(self, ev: Screen) -> None:
        bump(self.t.counter("screen"), ev.action)
        if ev.action == "LISTED":
            bump(self.t.counter("dnsbl"), ev.detail.split(" ", 1)[0])

    def _notice(self, ev: Notice) -> None:
        self._count(ev.line.host, "notifications")
        bump(self.t.counter("notice_kind"), ev.kind)

    def _master(self, ev: MasterMessage) -> None:
        bump(self.t.counter("master"), ev.text)

    def _verdict(self, ev: Verdict) -> None:
        bump(self.t.counter("verdicts"), (ev.check, ev.verdict))

    def _connect_failure(self, ev: ConnectFailure) -> None:
        bump(self.t.counter("smtp_failures"), (norm.reason(ev.reason).lower(), ev.peer))

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
        bump(c, ("total", ""))
        bump(c, ("ip", ip or "-"))
        bump(c, ("user", user.lower() or "(unknown)"))
        bump(c, ("method", (method or "-").upper()))
        bump(c, ("service", service))

    def unrecognised(self, order: Any, text: str) -> None:
        self.t.sample("unrecognised", order, text)

    def malformed(self, order: Any, text: str) -> None:
        self.t.sample("malformed", order, text)

    def coverage(self, **counts: int) -> None:
        add_counts(self.t.counter("coverage"), counts)

    # -- sessions and messages -----------------------------------------------------

    def add_session(self, sess: Session) -> None:
        if sess.connect is None or sess.disconnect is None:
            return
        secs = int(sess.disconnect.line.ts - sess.connect.line.ts)
        if secs < 0:
            return
        t = self.t
        dom = norm.client_domain(sess.connect.client_host, sess.connect.client_ip)
        quarter = int(sess.disconnect.line.ts // 900)
        for name, key in (("conn_quarter", quarter), ("conn_dom", dom)):
            add_one(t.vector(name), key, secs)
            bump_max(t.maximum(name), key, secs)

    def add_message(self, msg: Message) -> None:
        state = self._messages
        if msg.headless or msg.ended == ENDED_OPEN:
            bump(state, "incomplete")
        else:
            bump(state, "complete")
        if msg.ended == ENDED_ABORTED:
            bump(state, "aborted")
            return
        if not msg.link_pending:
            self.settle(msg.arrived())
        span = self._span
        if -msg.first_ts > span.get("neg_first", -math.inf):
            span["neg_first"] = -msg.first_ts
        if msg.last_ts > span.get("last", -math.inf):
            span["last"] = msg.last_ts
        size = msg.size
        if msg.expired is not None:
            self._count(msg.host, "expired")
        if not msg.deliveries:
            return
        notice = msg.origin == "" and not msg.headless and msg.sender == ""
        host = msg.host
        deferred = discarded = False
        rdom = self._rdom
        for d in msg.deliveries:
            addr = self._addr(d.to)
            at = addr.rfind("@")
            dom = addr[at + 1 :] if at >= 0 else "(local)"
            status = d.status
            if status == "sent":
                if hop_target(d):
                    bump(state, "hops")
                    continue
                if "forwarded as " in d.reply:
                    self._count(host, "forwarded")
                    continue
                if filter_discard(d):
                    bump(state, "filter_discards")
                    discarded = True
                    continue
                if unnamed_filter(d):
                    bump(self.t.counter("unnamed_filters"), d.relay)
                self._delivered(d, addr, dom, row_of(rdom, dom, _RDOM_WIDTH), size, notice, msg)
            elif status == "deferred":
                deferred = True
                self._count(host, "deferrals")
                self._in_quarter(int(d.line.ts // 900), "deferred")
                row_of(rdom, dom, _RDOM_WIDTH)[3] += 1
                bump_max(self._rdom_max, dom, centis(d.delay))
                bump(self.t.counter("deferral_reasons"), (d.tag.daemon, norm.reason(d.reply)))
            elif status == "bounced":
                self._count(host, "bounced")
                self._in_quarter(int(d.line.ts // 900), "bounced")
                row_of(rdom, dom, _RDOM_WIDTH)[4] += 1
                bump(self.t.counter("bounce_reasons"), (d.relay, norm.reason(d.reply)))
            elif status in ("deliverable", "undeliverable", "undeliverable-but-not-cached"):
                bump(self.t.counter("verify"), status)
            else:
                bump(self.t.counter("other_status"), status)
        if deferred:
            self._count(host, "deferred")
        if discarded:
            self._count(host, "discarded")

    def settle(self, msg: Arrived) -> None:
        """Count a message's arrival, once it is known whether it is a filter's re-injection."""
        if msg.reinjected:
            bump(self._messages, "reinjected")
        elif msg.entered:
            self._received(msg, msg.size or 0)

    def _received(self, msg: Arrived, size: int) -> None:
        self._count(msg.host, "received")
        self._count(msg.host, "bytes_received", size)
        self._in_quarter(int(msg.first_ts // 900), "received")
        sender = self._addr(msg.sender or "")
        add_one(self._senders, sender, size)
        at = sender.rfind("@")
        if at >= 0:
            dom = sender[at + 1 :]
        else:
            dom = norm.client_name(msg.client_host, msg.client_ip) if msg.client_ip else "(local)"
        add_one(self._sdom, dom, size)

    def _delivered(self, d: Delivery, addr: str, dom: str, row: list[int], size: int | None,
                   notice: bool, msg: Message) -> None:  # fmt: skip
        self._count(msg.host, "delivered")
        self._in_quarter(int(d.line.ts // 900), "delivered")
        if notice:
            bump(self._messages, "notice_deliveries")
        if size is None:
            self.t.sample("no_size", (msg.host, msg.qid, addr), f"{msg.qid}\t{addr}")
            bump(self._messages, "no_size")
            size = 0
        else:
            self._count(msg.host, "bytes_delivered", size)
        add_one(self._recipients, addr, size)
        delay = centis(d.delay)
        row[0] += 1
        row[1] += size
        row[2] += delay
        bump_max(self._rdom_max, dom, delay)
        bump(self._hist, (dom, delay))
        if d.delays:
            bump(self._split, d.delays)  # few distinct values: added up in the result

    # -- merging and results ---------------------------------------------------------

    def merge(self, other: Report) -> None:
        self.t.merge(other.t)

    def result(self) -> dict[str, Any]:
        from postlens.analyses.report_result import build_result

        return build_result(self.t, self.buckets)


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
