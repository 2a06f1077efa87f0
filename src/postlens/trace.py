"""trace: where did a message go?

Reads logs through lines -> events -> messages like the report does, joins a message
with the copy a content filter re-injected (one story, two queue IDs), and keeps the
messages and NOQUEUE rejects a :class:`Query` selects, each as a plain dict: its life
as a timeline per recipient and a one-line verdict in plain words.

``raw=True`` reads the logs a second time for the original lines of each hit: its
queue IDs' lines and the lines of the smtpd session that received it, nothing else.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from postlens.addresses import ContentFilters
from postlens.dates import iso_utc
from postlens.errors import InputError
from postlens.events import Delivery, Event, EventParser, Reject, Tls
from postlens.lines import Line, with_parsers, zone
from postlens.messages import LINK_WINDOW, Correlator, Message, filter_discard, from_filter, hop_target
from postlens.render import clean
from postlens.sources import Source, each_line, expand

STATUSES = ("delivered", "deferred", "bounced", "expired", "rejected", "held", "discarded")


def duration(seconds: float) -> str:
    """``3 h 12 min``, ``2 d 4 h``, ``45 s``: how long, to the unit that matters."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 and s < 600 else f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _address_matches(pattern: str, address: str) -> bool:
    """A glob, a whole address, or a domain (its subdomains too); case does not matter."""
    pattern, address = pattern.lower(), address.lower()
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(address, pattern)
    if "@" in pattern:
        return address == pattern
    domain = address.rpartition("@")[2]
    return domain == pattern or domain.endswith("." + pattern)


@dataclass(slots=True)
class Query:
    """What to look for: each option any of its values, all options together."""

    senders: tuple[str, ...] = ()  # address, domain or glob
    recipients: tuple[str, ...] = ()
    qids: tuple[str, ...] = ()
    msgids: tuple[str, ...] = ()
    clients: tuple[str, ...] = ()  # IP address or CIDR network
    sasl_users: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()  # see STATUSES; "sent" means delivered
    since: float | None = None
    until: float | None = None

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(c, strict=False) for c in self.clients]

    def matches(self, hit: dict[str, Any], networks: list[Any]) -> bool:
        if self.since is not None and hit["last_ts"] < self.since:
            return False
        if self.until is not None and hit["first_ts"] >= self.until:
            return False
        if self.senders and not any(_address_matches(p, hit["sender"] or "") for p in self.senders):
            return False
        addresses = [a for r in hit["recipients"] for a in (r["to"], r["orig_to"]) if a]
        if self.recipients and not any(_address_matches(p, a) for p in self.recipients for a in addresses):
            return False
        if self.qids and not set(self.qids) & set(hit["queue_ids"]):
            return False
        if self.msgids:
            have = (hit["message_id"] or "").strip("<>")
            if not any(m.strip("<>") == have for m in self.msgids):
                return False
        if networks and not in_networks(hit["client"]["ip"], networks):
            return False
        if self.sasl_users and (hit["sasl_user"] or "").lower() not in {u.lower() for u in self.sasl_users}:
            return False
        if self.statuses:
            wanted = {"delivered" if s == "sent" else s for s in self.statuses}
            states = {hit["state"], *(r["state"] for r in hit["recipients"])}
            if not wanted & states:
                return False
        return True


def in_networks(ip: str, networks: list[Any]) -> bool:
    try:
        address = ipaddress.ip_address(ip.removeprefix("IPv6:"))
    except ValueError:
        return False
    return any(address in net for net in networks)


# -- building a hit -----------------------------------------------------------------


def _recipients(chain: list[Message]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per-recipient attempts over a chain of filter copies, and the hops into filters."""
    rows: dict[str, dict[str, Any]] = {}
    last: dict[str, Delivery] = {}
    hops: list[dict[str, Any]] = []
    for msg in chain:
        for d in msg.deliveries:
            target = hop_target(d)
            if target:
                hops.append({"time": iso_utc(d.line.ts), "queue_id": msg.qid, "relay": d.relay, "as": target})
                continue
            last[d.to] = d
            row = rows.get(d.to)
            if row is None:
                row = rows[d.to] = {"to": d.to, "orig_to": d.orig_to, "state": "", "attempts": []}
            row["attempts"].append({
                "time": iso_utc(d.line.ts), "ts": d.line.ts, "queue_id": msg.qid, "daemon": d.tag.daemon,
                "relay": d.relay, "delay": d.delay, "delays": d.delays, "dsn": d.dsn,
                "status": d.status, "reply": d.reply,
            })  # fmt: skip
    expired = {m.qid for m in chain if m.expired is not None}
    for row in rows.values():
        final = last[row["to"]]
        status = final.status
        if filter_discard(final):
            row["state"] = "discarded"  # by a content filter on this machine
        elif status == "sent":
            row["state"] = "forwarded" if "forwarded as " in final.reply else "delivered"
        elif status == "deferred" and row["attempts"][-1]["queue_id"] in expired:
            row["state"] = "expired"
        else:
            row["state"] = status
    return list(rows.values()), hops


def _state(head: Message, last: Message, recipients: list[dict[str, Any]]) -> str:
    for msg in (head, last):
        if msg.ended == "rejected":
            return "rejected"
        if msg.ended == "aborted":
            return "aborted"
        if msg.ended == "deleted":
            return "deleted"
    if not recipients:
        if head.policy == "hold" or last.policy == "hold":
            return "held"
        if head.policy == "discard" or last.policy == "discard" or head.ended == "discarded":
            return "discarded"
        return "in queue"
    states = {"delivered" if r["state"] == "forwarded" else r["state"] for r in recipients}
    if len(states) == 1:
        return states.pop()
    return "mixed"


def _verdict(hit: dict[str, Any]) -> str:
    state, recipients = hit["state"], hit["recipients"]
    attempts = [a for r in recipients for a in r["attempts"]]
    deferrals = sum(1 for a in attempts if a["status"] == "deferred")
    retries = f" after {deferrals} deferral{'s' if deferrals != 1 else ''}" if deferrals else ""
    last = max(attempts, key=lambda a: a["ts"]) if attempts else None
    queued = f", {duration(last['ts'] - hit['first_ts'])} in queue" if last else ""
    recipients = [r for r in recipients if r["state"] != "rejected"] or recipients
    who = recipients[0]["to"] if len(recipients) == 1 else f"{len(recipients)} recipients"
    if state == "delivered":
        relays = sorted({a["relay"] for r in recipients for a in r["attempts"][-1:]})
        via = relays[0] if len(relays) == 1 else f"{len(relays)} relays"
        return f"delivered to {who} via {via}{retries}{queued}"
    if state == "deferred" and last is not None:
        return f"still in the queue: {who} deferred {deferrals} time(s), last: {last['reply']}"
    if state == "bounced" and last is not None:
        return f"bounced: {who}: {last['reply']}"
    if state == "expired":
        return f"expired and returned to the sender{retries}{queued}"
    if state == "forwarded":
        return f"forwarded by {who}"
    if state == "rejected":
        why = hit["rejects"][-1]["reason"] if hit["rejects"] else "a policy"
        return f"rejected: {why}"
    if state == "held":
        return "held in the hold queue by a policy"
    if state == "discarded":
        if last is not None:  # the recipients' last attempts went into a filter that dropped them
            return f"discarded by the content filter at {last['relay']}: {last['reply']}"
        return "accepted and discarded by a policy"
    if state == "aborted":
        return "the client gave up before the message was queued"
    if state == "deleted":
        return "deleted from the queue by an administrator"
    if state == "mixed":
        counts = ", ".join(f"{n} {s}" for s, n in sorted(Counter(r["state"] for r in recipients).items()))
        return f"{counts}{queued}"
    return "in the queue, no delivery attempt in the log"


def _reject_row(r: Reject) -> dict[str, Any]:
    return {
        "time": iso_utc(r.line.ts), "daemon": r.tag.daemon, "action": r.action, "stage": r.stage,
        "code": r.code, "reason": r.reason, "recipient": r.recipient,
    }  # fmt: skip


def message_hit(chain: list[Message]) -> dict[str, Any]:
    """One message's story (with the copies content filters made of it) as a plain dict."""
    head, last = chain[0], chain[-1]
    recipients, hops = _recipients(chain)
    arrival = head.arrival
    hit: dict[str, Any] = {
        "kind": "message",
        "host": head.host,
        "queue_ids": [m.qid for m in chain],
        "message_id": next((m.message_id for m in chain if m.message_id), None),
        "sender": head.sender if head.sender is not None else last.sender,
        "size": head.size if head.size is not None else last.size,
        "origin": head.origin or ("notice" if head.sender == "" else ""),
        "client": {
            "host": arrival.client_host if arrival else "",
            "ip": arrival.client_ip if arrival else "",
        },
        "helo": next((r.helo for m in chain for r in m.actions if r.helo), None),
        "tls": _tls(head.tls),
        "sasl_user": arrival.sasl_username if arrival and arrival.sasl_username else None,
        "sasl_method": arrival.sasl_method if arrival and arrival.sasl_method else None,
        "first": iso_utc(head.first_ts),
        "last": iso_utc(max(m.last_ts for m in chain)),
        "first_ts": head.first_ts,
        "last_ts": max(m.last_ts for m in chain),
        "filter_hops": hops,
        "recipients": recipients,
        "rejects": [_reject_row(r) for m in chain for r in m.actions],
        "notices": [{"kind": n.kind, "queue_id": n.notice_qid} for m in chain for n in m.notices],
        "incomplete": any(m.headless for m in chain) or last.ended == "",
    }
    hit["state"] = _state(head, last, recipients)
    if not recipients:  # held, discarded or rejected: the recipients are in the policy lines
        named = dict.fromkeys(r.recipient for m in chain for r in m.actions if r.recipient)
        hit["recipients"] = [{"to": to, "orig_to": "", "state": hit["state"], "attempts": []} for to in named]
    else:  # recipients refused at RCPT while others were accepted: shown, not counted in the state
        listed = {r["to"] for r in recipients}
        refused = dict.fromkeys(
            r.recipient for m in chain for r in m.actions
            if r.recipient and r.stage == "RCPT" and r.action.endswith("reject") and r.recipient not in listed
        )  # fmt: skip
        recipients += [{"to": to, "orig_to": "", "state": "rejected", "attempts": []} for to in refused]
    hit["verdict"] = _verdict(hit)
    return hit


def _tls(t: Tls | None) -> dict[str, str] | None:
    return None if t is None else {"protocol": t.protocol, "cipher": t.cipher, "trust": t.trust}


def noqueue_hit(r: Reject) -> dict[str, Any]:
    """A transaction refused before it got a queue ID."""
    hit: dict[str, Any] = {
        "kind": "noqueue",
        "host": r.line.host,
        "queue_ids": [],
        "message_id": None,
        "sender": r.sender,
        "size": None,
        "origin": "smtpd",
        "client": {"host": r.client_host, "ip": r.client_ip},
        "helo": r.helo or None,
        "tls": None,
        "sasl_user": None,
        "sasl_method": None,
        "first": iso_utc(r.line.ts),
        "last": iso_utc(r.line.ts),
        "first_ts": r.line.ts,
        "last_ts": r.line.ts,
        "filter_hops": [],
        "recipients": [{"to": r.recipient, "orig_to": "", "state": "rejected", "attempts": []}],
        "rejects": [_reject_row(r)],
        "notices": [],
        "incomplete": False,
        "state": "rejected",
        "_line": (r.line.ts, r.line.host, r.line.program, r.line.pid, r.line.payload),
    }
    hit["verdict"] = f"refused before queueing ({r.stage} from {r.client_host}[{r.client_ip}]): {r.reason}"
    return hit


# -- collecting hits ----------------------------------------------------------------


class Tracer:
    """Receives finished messages, joins filter copies, keeps the hits the query selects."""

    def __init__(self, query: Query, keep: Callable[[dict[str, Any]], None]) -> None:
        self.query = query
        self.networks = query.networks()
        self.keep = keep
        self._waiting: dict[tuple[str, str], list[Message]] = {}  # (host, copy's qid) -> chain
        self._pending: dict[int, int] = {}  # id(chain) -> copies still to come
        self._copies: dict[tuple[str, str], Message] = {}  # loopback arrivals no hop named yet
        self._now = float("-inf")

    def _keep(self, hit: dict[str, Any]) -> None:
        if self.query.matches(hit, self.networks):
            self.keep(hit)

    def reject(self, r: Reject) -> None:
        # a NOQUEUE hold or discard belongs to the message that follows it in the session
        if not r.qid and r.action.endswith("reject") and r.tag.daemon in ("smtpd", "postscreen"):
            self._keep(noqueue_hit(r))

    def message(self, msg: Message) -> None:
        self._now = max(self._now, msg.last_ts)
        key = (msg.host, msg.qid)
        chain = self._waiting.pop(key, None)
        if chain is not None:
            chain.append(msg)
            self._pending[id(chain)] -= 1
            self._follow(chain, msg)
        elif msg.arrival is not None and from_filter(msg.arrival) and not msg.hops:
            self._copies[key] = msg
        else:
            chain = [msg]
            self._pending[id(chain)] = 0
            self._follow(chain, msg)
        self._expire()

    def _follow(self, chain: list[Message], msg: Message) -> None:
        for target in dict.fromkeys(msg.hops):  # one hop per recipient, one copy for all
            if (msg.host, target) in self._waiting:
                continue
            copy = self._copies.pop((msg.host, target), None)
            if copy is not None:
                chain.append(copy)
            else:
                self._waiting[(msg.host, target)] = chain
                self._pending[id(chain)] += 1
        if self._pending[id(chain)] == 0:
            del self._pending[id(chain)]
            self._keep(message_hit(chain))

    def _expire(self) -> None:
        """A loopback arrival no hop named within the link window is a message of its own."""
        horizon = self._now - LINK_WINDOW
        while self._copies:
            # copies arrive here in the order they ended, so the oldest is first
            key, msg = next(iter(self._copies.items()))
            if msg.last_ts >= horizon:
                break
            del self._copies[key]
            self._keep(message_hit([msg]))

    def finish(self) -> None:
        for msg in self._copies.values():
            self._keep(message_hit([msg]))
        self._copies.clear()
        done: set[int] = set()
        for chain in self._waiting.values():
            if id(chain) not in done:
                done.add(id(chain))
                self._keep(message_hit(chain))
        self._waiting.clear()


# -- reading ------------------------------------------------------------------------


# Every line to read, as (original text, parsed line), once per call: from log files, or
# from the history database. Problems with inputs go to the list given.
Records = Callable[[list[InputError]], Iterator[tuple[str, Line]]]


def log_records(sources: list[Source], year: int | None, tz: Any) -> Records:
    def records(problems: list[InputError]) -> Iterator[tuple[str, Line]]:
        for parser, text in with_parsers(each_line(sources, problems), year, tz):
            line = parser.parse(text)
            if line is not None:
                yield text, line

    return records


def records_for(
    paths: list[str], query: Query, *, year: int | None, tz: str | None, db: str | None
) -> tuple[Records, list[InputError]]:
    """What to read for ``query``: the log files, or the history database ``db``."""
    if db is not None:
        from postlens.history import history_records

        return history_records(db, query), []
    sources, problems = expand(paths)
    return log_records(sources, year, zone(tz)), problems


def trace(
    paths: list[str],
    query: Query,
    *,
    year: int | None = None,
    tz: str | None = None,
    syslog_name: str | None = None,
    filters: ContentFilters | None = None,
    raw: bool = False,
    db: str | None = None,
) -> tuple[list[dict[str, Any]], list[InputError]]:
    """The messages and NOQUEUE rejects in the logs (or the history database ``db``) that
    ``query`` selects, oldest first."""
    hits: list[dict[str, Any]] = []
    with _rereadable(paths, raw) as paths:
        records, problems = records_for(paths, query, year=year, tz=tz, db=db)
        events = EventParser(syslog_name, filters)
        scan(records, query, hits.append, events, problems)
        hits.sort(key=lambda h: (h["first_ts"], h["host"], h["queue_ids"]))
        if raw:
            _attach_raw(hits, records)
    for hit in hits:
        hit.pop("_line", None)
    return hits, problems


def scan(
    records: Records,
    query: Query,
    keep: Callable[[dict[str, Any]], None],
    events: EventParser,
    problems: list[InputError],
    on_event: Callable[[Event], None] | None = None,
) -> None:
    """Hand each hit to ``keep`` as its story ends (and every event to ``on_event``)."""
    tracer = Tracer(query, keep)
    correlator = Correlator(tracer.message, lambda session: None, lambda arrived: None)
    kinds = Correlator.KINDS
    for _text, line in records(problems):
        ev = events.parse(line)
        if ev is None:
            continue
        if type(ev) in kinds:
            correlator.feed(ev)
        if type(ev) is Reject:
            tracer.reject(ev)
        if on_event is not None:
            on_event(ev)
    correlator.finish()
    tracer.finish()


@contextmanager
def _rereadable(paths: list[str], raw: bool) -> Iterator[list[str]]:
    """Standard input spooled to a file, so ``--raw`` can read the log twice."""
    if not raw or "-" not in paths:
        yield paths
        return
    with tempfile.NamedTemporaryFile(prefix="postlens-", suffix=".log") as spool:
        shutil.copyfileobj(sys.stdin.buffer, spool)
        spool.flush()
        yield [spool.name if p == "-" else p for p in paths]


def _attach_raw(hits: list[dict[str, Any]], records: Records) -> None:
    """Give each hit the original lines of its queue IDs and of the session that sent it."""
    by_qid: dict[tuple[str, str], dict[str, Any]] = {}
    by_line: dict[tuple[Any, ...], dict[str, Any]] = {}
    for each in hits:
        each["raw"] = []
        for qid in each["queue_ids"]:
            by_qid[(each["host"], qid)] = each
        if "_line" in each:
            by_line[each["_line"]] = each
    session: dict[tuple[str, str, str], list[str]] = {}  # smtpd process -> lines since connect
    owner: dict[tuple[str, str, str], dict[str, Any]] = {}  # smtpd process -> hit it received
    for text, line in records([]):
        shown = clean(text)
        proc = (line.host, line.program, line.pid)
        is_smtpd = line.program.endswith("/smtpd")
        qid, sep, rest = line.payload.partition(": ")
        hit: dict[str, Any] | None = by_qid.get((line.host, qid)) if sep else None
        if hit is not None and not (hit["first_ts"] - 1 <= line.ts <= hit["last_ts"] + 1):
            hit = None  # the same queue ID, reused by another message
        if is_smtpd and line.payload.startswith("connect from "):
            session[proc] = [shown]
            owner.pop(proc, None)
            continue
        if hit is not None:
            if is_smtpd and rest.startswith("client=") and proc in session:
                hit["raw"].extend(session.pop(proc))
                owner[proc] = hit
            hit["raw"].append(shown)
            continue
        noqueue = by_line.get((line.ts, line.host, line.program, line.pid, line.payload))
        if noqueue is not None:
            noqueue["raw"].append(shown)
            continue
        if not is_smtpd or (sep and len(qid) >= 6 and qid.isalnum()):
            continue  # another message's line
        if proc in owner:
            owner[proc]["raw"].append(shown)
        elif proc in session:
            session[proc].append(shown)
        if line.payload.startswith("disconnect from "):
            session.pop(proc, None)
            owner.pop(proc, None)
