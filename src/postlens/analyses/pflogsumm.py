"""pflogsumm's grand totals, counted by pflogsumm 1.1.5's own rules.

Administrators compare postlens with the numbers they know. This aggregator
reproduces what pflogsumm would print for the same lines, including what it gets
wrong by design: it sees only classic and RFC 3339 (Z or +hh:mm) headers and only
program tags of the form ``postfix[/smtps|/submission]/CMD`` (or --syslog-name);
it counts every ``client=`` line as received (so a content-filter re-injection is
received twice), counts the hop into a filter and every notice as delivered, and
does not count expiry at all.

One known difference: pflogsumm never forgets a queue ID's size, so when a queue ID
is reused it skips the second message's size; postlens keeps sizes per message.
"""

from __future__ import annotations

import os
import re
from typing import Any, ClassVar, Final

from postlens.analyses import normalize as norm
from postlens.analyses.tally import Tally, bump
from postlens.events import Arrival, Event, Pickup, Reject
from postlens.lines import PFLOGSUMM_FORMATS, by_constructor
from postlens.messages import Message

GRAND_TOTALS: Final = (
    "received", "delivered", "forwarded", "deferred", "deferrals", "bounced", "rejected",
    "reject_warnings", "held", "discarded", "bytes_received", "bytes_delivered", "senders",
    "sending_hosts_domains", "recipients", "recipient_hosts_domains",
)  # fmt: skip

_SMTPD_ACTIONS: Final = {
    "reject": "rejected",
    "reject_warning": "reject_warnings",
    "hold": "held",
    "discard": "discarded",
}
_CLEANUP_ACTIONS: Final = {
    "reject": "rejected",
    "milter-reject": "rejected",
    "warning": "reject_warnings",
    "hold": "held",
    "discard": "discarded",
}
_CLEANUP_STAGES: Final = ("header", "body", "END-OF-MESSAGE")


class CommandNames:
    """pflogsumm's view of a program tag: its ``cmd``, or None when it skips the line."""

    def __init__(self, syslog_name: str | None) -> None:
        self._syslog_name = syslog_name
        name = syslog_name or "postfix"
        self._re = re.compile(r"^(?:postfix|" + name + r")(?:/(?:smtps|submission))?/([^\[:]*)")
        self._cache: dict[str, str | None] = {}

    def __reduce__(self) -> tuple[Any, ...]:
        return by_constructor(self, self._syslog_name)

    def cmd(self, program: str) -> str | None:
        try:
            return self._cache[program]
        except KeyError:
            pass
        m = self._re.match(program)
        if m is not None:
            cmd: str | None = m.group(1)
        elif program in ("postfix", "postfix-script"):
            cmd = program
        else:
            cmd = None
        if len(self._cache) < 10000:
            self._cache[program] = cmd
        return cmd


class PflogsummTotals:
    HANDLED: ClassVar[frozenset[type]] = frozenset((Reject, Arrival, Pickup))

    def __init__(self, syslog_name: str | None = None, verp_mung: int = 0,
                 ignore_case: bool = False) -> None:  # fmt: skip
        self.names = CommandNames(syslog_name)
        self.verp = verp_mung
        self.ignore_case = ignore_case
        t = self.t = Tally()
        # looked up once (merging updates them in place)
        self._totals = t.counter("totals")
        self._senders = t.set("senders")
        self._sending_domains = t.set("sending_domains")
        self._recipients = t.set("recipients")
        self._recipient_domains = t.set("recipient_domains")

    def _cmd(self, ev: Event) -> str | None:
        if ev.line.fmt not in PFLOGSUMM_FORMATS:
            return None
        return self.names.cmd(ev.line.program)

    def _addr(self, addr: str) -> str:
        if self.ignore_case:
            addr = addr.lower()
        else:
            at = addr.find("@")
            # the domain in lower case; mostly the whole address already is, which is quicker to see
            if at >= 0 and addr.lower() != addr:
                addr = addr[:at] + addr[at:].lower()
        return norm.verp_mung(addr, self.verp)

    def feed(self, ev: Event) -> None:
        if isinstance(ev, Reject):
            cmd = self._cmd(ev)
            if cmd == "cleanup":
                total = _CLEANUP_ACTIONS.get(ev.action) if ev.stage in _CLEANUP_STAGES else None
            elif cmd in ("smtpd", "postscreen") and ev.line.pid:
                total = _SMTPD_ACTIONS.get(ev.action)
            else:
                total = None
            if total is not None:
                bump(self._totals, total)
        elif isinstance(ev, Arrival):
            if self._cmd(ev) in ("smtpd", "postscreen") and ev.line.pid:
                bump(self._totals, "received")
        elif isinstance(ev, Pickup) and self._cmd(ev) == "pickup":
            bump(self._totals, "received")

    def _received_from(self, msg: Message) -> str | None:
        """What pflogsumm keeps in %rcvdMsg for this message, or None when it saw no arrival."""
        a = msg.arrival
        if a is not None and self._cmd(a) in ("smtpd", "postscreen") and a.line.pid:
            return norm.client_domain(a.client_host, a.client_ip)
        if msg.pickup is not None and self._cmd(msg.pickup) == "pickup":
            return "pickup"
        return None

    def add_message(self, msg: Message) -> None:
        totals = self._totals
        size = 0
        q = msg.queued
        if q is not None and self._cmd(q) not in (None, "smtpd", "postscreen", "master"):
            size = q.size
            whence = self._received_from(msg)
            if whence is not None:
                addr = self._addr(q.sender) if q.sender else "from=<>"
                at = addr.find("@")
                dom = addr[at + 1 :] if at >= 0 and q.sender else (addr if whence == "pickup" else whence)
                self._senders.add(addr)
                self._sending_domains.add(dom)
                bump(totals, "bytes_received", size)
        deferred = False
        for d in msg.deliveries:
            cmd = self._cmd(d)
            if cmd is None or cmd in ("smtpd", "postscreen", "master"):
                continue
            status = d.status
            if status == "sent":
                if "forwarded as " in d.reply:
                    bump(totals, "forwarded")
                    continue
                addr = self._addr(d.to)
                bump(totals, "delivered")
                bump(totals, "bytes_delivered", size)
                self._recipients.add(addr)
                at = addr.find("@")
                self._recipient_domains.add(addr[at + 1 :] if at >= 0 else addr)
            elif status == "deferred":
                bump(totals, "deferrals")
                deferred = True
            elif status == "bounced":
                bump(totals, "bounced")
        if deferred:
            bump(totals, "deferred")

    def add_session(self, sess: Any) -> None:
        pass

    def merge(self, other: PflogsummTotals) -> None:
        self.t.merge(other.t)

    def result(self) -> dict[str, int]:
        c = self.t.counter("totals")
        out = {f: c.get(f, 0) for f in GRAND_TOTALS}
        out["senders"] = len(self.t.sets.get("senders", ()))
        out["sending_hosts_domains"] = len(self.t.sets.get("sending_domains", ()))
        out["recipients"] = len(self.t.sets.get("recipients", ()))
        out["recipient_hosts_domains"] = len(self.t.sets.get("recipient_domains", ()))
        total = out["delivered"] + out["rejected"] + out["discarded"]
        out["rejected_percent"] = int(out["rejected"] / total * 100) if total else 0
        out["discarded_percent"] = int(out["discarded"] / total * 100) if total else 0
        return out


_PRINTED_NAMES: Final = {
    "received": "received", "delivered": "delivered", "forwarded": "forwarded", "deferred": "deferred",
    "bounced": "bounced", "rejected": "rejected", "reject warnings": "reject_warnings", "held": "held",
    "discarded": "discarded", "bytes received": "bytes_received", "bytes delivered": "bytes_delivered",
    "senders": "senders", "sending hosts/domains": "sending_hosts_domains", "recipients": "recipients",
    "recipient hosts/domains": "recipient_hosts_domains",
}  # fmt: skip
_PRINTED_RE: Final = re.compile(r"\s*(\d+)([km ])\s+(.+?)(?:\s+\(.*)?$")
_DEFERRALS_RE: Final = re.compile(r"\((\d+)([km ]?)\s*deferrals\)")


def as_printed(n: int) -> tuple[int, str]:
    """A number as pflogsumm prints it: above 512k in k, above 512m in m, truncated."""
    if n > 536870912:
        return n // 1048576, "m"
    if n > 524288:
        return n // 1024, "k"
    return n, " "


def parse_grand_totals(report: str) -> dict[str, tuple[int, str]]:
    """The Grand Totals of a pflogsumm report, as (number, unit) pairs keyed like ``GRAND_TOTALS``."""
    totals: dict[str, tuple[int, str]] = {"deferrals": (0, " ")}
    for line in report.split("Per-Hour")[0].split("Per-Day")[0].splitlines():
        m = _PRINTED_RE.match(line)
        if m and m.group(3) in _PRINTED_NAMES:
            totals[_PRINTED_NAMES[m.group(3)]] = (int(m.group(1)), m.group(2))
        d = _DEFERRALS_RE.search(line)
        if d:
            totals["deferrals"] = (int(d.group(1)), d.group(2) or " ")
    return totals


# pflogsumm remembers a queue ID's size for ever: where Postfix reuses a queue ID, pflogsumm
# skips the second message's size and charges its deliveries with the first one's. These are
# the totals that can differ from postlens's pflogsumm view there.
REUSE_AFFECTED: Final = frozenset({"bytes_received", "bytes_delivered", "senders", "sending_hosts_domains"})
_SIZE_OR_REMOVED_RE: Final = re.compile(
    r"postfix[^:]*?/\w+\[\d+\]: ([0-9A-F]{6,}): (removed|from=<[^>]*>, size=)"
)


def reuses_queue_ids(path: str | os.PathLike[str]) -> bool:
    """Whether a (plain text) log gives a queue ID a size again after it was removed."""
    removed: set[str] = set()
    with open(path, errors="replace") as f:
        for line in f:
            m = _SIZE_OR_REMOVED_RE.search(line)
            if m:
                if m.group(2) == "removed":
                    removed.add(m.group(1))
                elif m.group(1) in removed:
                    return True
    return False
