"""messages: assemble events into messages and SMTP sessions.

A :class:`Correlator` follows every message by (host, instance, queue ID) from its
arrival to its removal, and every smtpd session by (host, program, pid). Finished
messages and sessions go to a sink; only those in flight are kept.

Links between messages:

- a delivery into a content filter (on a loopback address, or one named with
  ``--content-filter``) whose reply says ``queued as Y`` is a *hop*: Y is the same mail
  re-injected, so Y is marked ``reinjected`` and is not received a second time. Y is
  often removed before the filter's reply reaches the log, so a removed message from
  such a client is held for ``LINK_WINDOW`` seconds of log time before it is handed on.
- a transaction that smtpd gave up (session ended before the message was queued) is
  finished as ``aborted``.

Exact merging. A correlator made with ``first=False`` reads a chunk that does not start
the log: events for keys it has not seen start are kept in ``head`` instead of being
guessed at. :meth:`Correlator.absorb` replays a later chunk's head into this one and
takes over its state, giving exactly what one pass over both chunks gives.
"""

from __future__ import annotations

import bisect
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final, cast

from postlens.addresses import is_loopback, relay_ip
from postlens.events import (
    Arrival,
    Connect,
    Delivery,
    Disconnect,
    Event,
    Expired,
    MessageId,
    Notice,
    Pickup,
    QueueAction,
    Queued,
    QueueEvent,
    Reject,
    Removed,
    SessionProblem,
    Tls,
)
from postlens.lines import by_constructor, by_fields

# Seconds of log time a removed loopback-client message waits for a hop to name it. The
# filter answers the hop right after re-injecting, so the link comes within its reply time.
LINK_WINDOW: Final = 120.0

_QUEUED_AS_RE: Final = re.compile(r"queued as ([0-9A-Za-z]+)")

# How a message's story ended.
ENDED_OPEN: Final = ""
ENDED_REMOVED: Final = "removed"
ENDED_REJECTED: Final = "rejected"
ENDED_ABORTED: Final = "aborted"
ENDED_DELETED: Final = "deleted"
ENDED_DISCARDED: Final = "discarded"

# smtpd actions that keep a message (in the hold queue) or accept and drop it
_POLICIES: Final = {"hold": "hold", "milter-hold": "hold", "discard": "discard", "milter-discard": "discard"}


def _filter_relay(d: Delivery) -> bool:
    """Whether ``d`` went to a content filter: on loopback, or named by --content-filter."""
    if d.filter_relay:
        return True
    ip = relay_ip(d.relay)
    return is_loopback(ip) or ip == "localhost"


def from_filter(ev: Arrival | Reject) -> bool:
    """Whether an arrival (or a reject) may be a content filter's re-injection, or local
    webmail's: its client is on loopback or named by --content-filter."""
    return ev.filter_client or is_loopback(ev.client_ip)


def hop_target(d: Delivery) -> str:
    """The queue ID of the re-injected copy when ``d`` is a hop into a content filter."""
    if d.status != "sent" or "queued as" not in d.reply or not _filter_relay(d):
        return ""
    m = _QUEUED_AS_RE.search(d.reply)
    return m.group(1) if m else ""


def filter_discard(d: Delivery) -> bool:
    """Whether ``d`` handed the mail to a content filter that dropped it: amavis's
    "250 2.7.0 Ok, discarded" for a virus or spam it does not pass on."""
    return d.status == "sent" and "Ok, discarded" in d.reply and _filter_relay(d)


# ports that mail servers, not content filters, listen on
_MAIL_PORTS: Final = frozenset(("25", "465", "587", "2525"))  # 2525: relay services


def unnamed_filter(d: Delivery) -> bool:
    """Whether ``d`` looks like a hop into a content filter --content-filter does not name: sent,
    answered "queued as", to a relay off loopback on a port other than a mail server's."""
    if d.status != "sent" or "queued as" not in d.reply or _filter_relay(d):
        return False
    _, sep, port = d.relay.rpartition("]:")
    return bool(sep) and port not in _MAIL_PORTS


def final_delivery(d: Delivery) -> bool:
    """A delivery as the report counts one: sent to its final destination, not into a content
    filter (a hop, or a filter's discard), not an alias forward."""
    return (
        d.status == "sent" and not hop_target(d) and "forwarded as " not in d.reply and not filter_discard(d)
    )


@dataclass(slots=True, init=False)  # a written __init__: see lines.by_fields
class Message:
    host: str
    instance: str
    qid: str
    first_ts: float
    last_ts: float
    origin: str  # "smtpd", "pickup", or "" (made by Postfix itself, or start not in log)
    arrival: Arrival | None
    pickup: Pickup | None
    message_id: str | None
    queued: Queued | None
    deliveries: list[Delivery]
    hops: list[str]
    notices: list[Notice]
    actions: list[Reject]
    expired: Expired | None
    headless: bool  # its first lines are not in the log
    ended: str
    policy: str  # "hold" or "discard" when smtpd or cleanup said so
    reinjected: bool
    link_pending: bool  # handed on, but whether it is a re-injection is not known yet
    tls: Tls | None  # the TLS of the smtpd session it arrived in

    def __init__(self, host: str, instance: str, qid: str, first_ts: float, last_ts: float) -> None:
        self.host = host
        self.instance = instance
        self.qid = qid
        self.first_ts = first_ts
        self.last_ts = last_ts
        self.origin = ""
        self.arrival = None
        self.pickup = None
        self.message_id = None
        self.queued = None
        self.deliveries = []
        self.hops = []
        self.notices = []
        self.actions = []
        self.expired = None
        self.headless = False
        self.ended = ENDED_OPEN
        self.policy = ""
        self.reinjected = False
        self.link_pending = False
        self.tls = None

    # -j pickles thousands of these: the state as one tuple, set by compiled code, loads several
    # times as fast as the attribute dict of by_constructor
    def __reduce__(self) -> tuple[Any, ...]:
        return (
            Message,
            (self.host, self.instance, self.qid, self.first_ts, self.last_ts),
            (self.origin, self.arrival, self.pickup, self.message_id, self.queued, self.deliveries,
             self.hops, self.notices, self.actions, self.expired, self.headless, self.ended,
             self.policy, self.reinjected, self.link_pending, self.tls),
        )  # fmt: skip

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        (self.origin, self.arrival, self.pickup, self.message_id, self.queued, self.deliveries,
         self.hops, self.notices, self.actions, self.expired, self.headless, self.ended,
         self.policy, self.reinjected, self.link_pending, self.tls) = state  # fmt: skip

    @property
    def sender(self) -> str | None:
        if self.queued is not None:
            return self.queued.sender
        if self.pickup is not None:
            return self.pickup.sender
        for action in self.actions:  # a held or discarded message never reaches qmgr
            if action.sender or action.recipient:
                return action.sender
        return None

    @property
    def size(self) -> int | None:
        return self.queued.size if self.queued is not None else None

    def arrived(self) -> Arrived:
        """The little a message still needs while it waits for a hop link."""
        a = self.arrival
        return Arrived(
            self.host, self.qid, self.first_ts, self.last_ts, self.origin, self.sender, self.size,
            a.client_host if a is not None else "", a.client_ip if a is not None else "",
            self.policy, self.reinjected,
        )  # fmt: skip


@dataclass(slots=True, init=False)  # a written __init__: see lines.by_fields
class Arrived:
    """A finished message held for a late hop link: only what counting its arrival needs."""

    host: str
    qid: str
    first_ts: float
    last_ts: float
    origin: str
    sender: str | None
    size: int | None
    client_host: str
    client_ip: str
    policy: str
    reinjected: bool
    ended: str

    def __init__(
        self,
        host: str,
        qid: str,
        first_ts: float,
        last_ts: float,
        origin: str,
        sender: str | None,
        size: int | None,
        client_host: str,
        client_ip: str,
        policy: str,
        reinjected: bool = False,
        ended: str = ENDED_REMOVED,
    ) -> None:
        self.host = host
        self.qid = qid
        self.first_ts = first_ts
        self.last_ts = last_ts
        self.origin = origin
        self.sender = sender
        self.size = size
        self.client_host = client_host
        self.client_ip = client_ip
        self.policy = policy
        self.reinjected = reinjected
        self.ended = ended

    def __reduce__(self) -> tuple[Any, ...]:
        return by_fields(self)

    @property
    def entered(self) -> bool:
        """Whether this was a message entering the mail system (queued, held, or accepted and dropped)."""
        return bool(self.origin) and (self.size is not None or self.policy != "")


@dataclass(slots=True, init=False)  # a written __init__: see lines.by_fields
class Session:
    host: str
    program: str
    pid: str
    connect: Connect | None
    disconnect: Disconnect | None
    messages: list[Message]
    problem_after: str
    policy: Reject | None  # a NOQUEUE hold/discard for the transaction's coming message
    headless: bool
    tls: Tls | None  # STARTTLS, when the client used it

    def __init__(
        self,
        host: str,
        program: str,
        pid: str,
        connect: Connect | None,
        disconnect: Disconnect | None = None,
        messages: list[Message] | None = None,
        problem_after: str = "",
        policy: Reject | None = None,
        headless: bool = False,
        tls: Tls | None = None,
    ) -> None:
        self.host = host
        self.program = program
        self.pid = pid
        self.connect = connect
        self.disconnect = disconnect
        self.messages = [] if messages is None else messages
        self.problem_after = problem_after
        self.policy = policy
        self.headless = headless
        self.tls = tls

    def __reduce__(self) -> tuple[Any, ...]:
        return by_fields(self)


MessageKey = tuple[str, str, str]
SessionKey = tuple[str, str, str]

# What a head item is about.
_MESSAGE: Final = 0
_SESSION: Final = 1
_LINK: Final = 2
_ATTACH: Final = 3
_KINDS: Final[dict[type, int]] = {
    **dict.fromkeys((Connect, Disconnect, SessionProblem, Tls), _SESSION),
    **dict.fromkeys(
        (Arrival, Pickup, MessageId, Queued, Delivery, Removed, Notice, Expired, Reject, QueueAction),
        _MESSAGE,
    ),
}


class Correlator:
    """Assembles messages and sessions; calls ``on_message``/``on_session`` when one is done.

    A finished message from a loopback client that no hop has named yet is handed on with
    ``link_pending`` set, then held (trimmed to what its arrival needs) until a hop names
    it or the link window passes; ``on_settled`` then says which it was.
    """

    KINDS: ClassVar[frozenset[type]] = frozenset(_KINDS)

    def __init__(
        self,
        on_message: Callable[[Message], None],
        on_session: Callable[[Session], None],
        on_settled: Callable[[Arrived], None],
        first: bool = True,
    ) -> None:
        self.on_message = on_message
        self.on_session = on_session
        self.on_settled = on_settled
        self.first = first
        self.open: dict[MessageKey, Message] = {}
        self.sessions: dict[SessionKey, Session] = {}
        # loopback arrivals by (host, qid): open messages, and finished ones held for a link
        self.candidates: dict[tuple[str, str], Message | Arrived] = {}
        # held candidates by deadline: in log order they come due in the order they are held, so
        # they join at the end (a line out of time order is sorted in)
        self.held: deque[tuple[float, int, Arrived]] = deque()
        self._seq = 0
        self.runmax = float("-inf")
        # events about keys this chunk did not see start: (running max time, what, key, payload)
        self.head: list[tuple[float, int, tuple[str, ...], object]] = []
        self._pending: dict[MessageKey, Message] = {}

    # -- feeding ---------------------------------------------------------------

    def __reduce__(self) -> tuple[Any, ...]:
        return by_constructor(self, self.on_message, self.on_session, self.on_settled, self.first)

    def feed(self, ev: Event) -> None:
        ts = ev.line.ts
        if ts > self.runmax:
            self.runmax = ts
            if self.held and self.held[0][0] < ts:
                self._release(ts)
        kind = _KINDS.get(type(ev))
        if kind == _MESSAGE:
            self._message_event(cast(QueueEvent, ev))
        elif kind == _SESSION and ev.tag.daemon == "smtpd":
            self._session_event(ev)

    def _message_event(self, ev: QueueEvent, replay: bool = False) -> None:
        qid = ev.qid
        if not qid:
            if isinstance(ev, Reject) and ev.action in _POLICIES and ev.tag.daemon == "smtpd":
                self._session_event(ev)
            return
        line = ev.line
        key = (line.host, ev.tag.instance, qid)
        msg = self.open.get(key)
        target = hop_target(ev) if isinstance(ev, Delivery) else ""
        if target and not replay:
            # the link concerns another message: settle it now, even if this one waits in head
            self._link((line.host, target), ev)
        if isinstance(ev, (Arrival, Pickup)):
            # an unambiguous start: a message still open under this key is over
            if msg is not None:
                self._finish(msg)
            msg = self._new(key, line.ts)
            if isinstance(ev, Arrival):
                msg.origin = "smtpd"
                msg.arrival = ev
                self._attach(ev, msg)
                if from_filter(ev):
                    self._add_candidate(msg)
            else:
                msg.origin = "pickup"
                msg.pickup = ev
            return
        if msg is None:
            if not self.first:
                self.head.append((self.runmax, _MESSAGE, key, ev))
                return
            msg = self._new(key, line.ts)
            msg.headless = not isinstance(ev, MessageId)
        msg.last_ts = line.ts
        if isinstance(ev, Delivery):
            msg.deliveries.append(ev)
            if target:
                msg.hops.append(target)
        elif isinstance(ev, Queued):
            if msg.queued is None:
                msg.queued = ev
        elif isinstance(ev, Removed):
            msg.ended = ENDED_REMOVED
            self._close(msg)
        elif isinstance(ev, MessageId):
            if msg.message_id is None:  # a message may carry two Message-ID headers
                msg.message_id = ev.message_id
        elif isinstance(ev, Notice):
            msg.notices.append(ev)
        elif isinstance(ev, Expired):
            msg.expired = ev
        elif isinstance(ev, Reject):
            msg.actions.append(ev)
            policy = _POLICIES.get(ev.action)
            if policy:
                msg.policy = policy
            if ev.action in ("reject", "milter-reject") and (
                ev.tag.daemon == "cleanup" or ev.stage in ("END-OF-MESSAGE", "DATA")
            ):
                msg.ended = ENDED_REJECTED
                self._close(msg)
        elif isinstance(ev, QueueAction) and ev.action == "removed":
            msg.ended = ENDED_DELETED
            self._close(msg)

    def _new(self, key: MessageKey, ts: float) -> Message:
        msg = Message(key[0], key[1], key[2], ts, ts)
        self.open[key] = msg
        return msg

    def _add_candidate(self, msg: Message | Arrived) -> None:
        ck = (msg.host, msg.qid)
        old = self.candidates.get(ck)
        if old is not None and old.ended != ENDED_OPEN:
            self._settle(old)  # a held message gives way to a new one with its queue ID
        self.candidates[ck] = msg

    def _link(self, ck: tuple[str, str], ev: object) -> None:
        msg = self.candidates.get(ck)
        if msg is not None:
            msg.reinjected = True
            if msg.ended != ENDED_OPEN:
                self._settle(msg)
        elif not self.first:
            self.head.append((self.runmax, _LINK, ck, ev))

    def _attach(self, ev: Arrival, msg: Message) -> None:
        line = ev.line
        skey = (line.host, line.program, line.pid)
        sess = self.sessions.get(skey)
        if sess is not None:
            self._join(sess, msg)
        elif not self.first:
            self.head.append((self.runmax, _ATTACH, skey, msg))

    def _join(self, sess: Session, msg: Message) -> None:
        sess.messages.append(msg)
        msg.tls = sess.tls
        if sess.policy is not None:
            msg.policy = _POLICIES[sess.policy.action]
            msg.actions.append(sess.policy)
            sess.policy = None

    def _unlist(self, msg: Message) -> None:
        key = (msg.host, msg.instance, msg.qid)
        if self.open.get(key) is msg:
            del self.open[key]
        elif self._pending.get(key) is msg:
            del self._pending[key]

    def _close(self, msg: Message) -> None:
        """A message's story has ended: hand it on, or hold it for a late hop link."""
        self._unlist(msg)
        ck = (msg.host, msg.qid)
        if self.candidates.get(ck) is msg:
            if not msg.reinjected:
                msg.link_pending = True
                self.on_message(msg)
                held = self.candidates[ck] = msg.arrived()
                self._hold(msg.last_ts + LINK_WINDOW, held)
                return
            del self.candidates[ck]
        self.on_message(msg)

    def _hold(self, deadline: float, arrived: Arrived) -> None:
        self._seq += 1
        item = (deadline, self._seq, arrived)
        if not self.held or self.held[-1][0] <= deadline:
            self.held.append(item)
        else:
            bisect.insort(self.held, item)

    def _settle(self, held: Message | Arrived) -> None:
        """A held message's link question is answered (``held.reinjected``)."""
        del self.candidates[(held.host, held.qid)]
        assert isinstance(held, Arrived)
        self.on_settled(held)

    def _finish(self, msg: Message) -> None:
        """Hand on a message whose end is not in the log."""
        self._unlist(msg)
        ck = (msg.host, msg.qid)
        if self.candidates.get(ck) is msg:
            del self.candidates[ck]
        self.on_message(msg)

    def finish_idle(self, before: float) -> None:
        """Hand on, as incomplete, the open messages without a line since ``before``: a
        never-ending stream would otherwise keep those whose last lines it never saw."""
        for msg in [m for m in self.open.values() if m.last_ts < before]:
            self._finish(msg)

    def advance(self, now: float) -> None:
        """The clock says ``now``: settle the held arrivals whose link window has passed,
        though no later line came (a live log that went quiet)."""
        self._release(now)

    def _release(self, now: float) -> None:
        held = self.held
        while held and held[0][0] < now:
            msg = held.popleft()[2]
            if self.candidates.get((msg.host, msg.qid)) is msg:
                self._settle(msg)

    # -- sessions --------------------------------------------------------------

    def _session_event(self, ev: Event) -> None:
        line = ev.line
        key = (line.host, line.program, line.pid)
        sess = self.sessions.get(key)
        if isinstance(ev, Connect):
            if sess is not None:
                self._end_session(sess)
            self.sessions[key] = Session(line.host, line.program, line.pid, ev)
            return
        if sess is None:
            if not self.first:
                self.head.append((self.runmax, _SESSION, key, ev))
                return
            sess = Session(line.host, line.program, line.pid, None, headless=True)
            self.sessions[key] = sess
        if isinstance(ev, SessionProblem):
            sess.problem_after = ev.after
        elif isinstance(ev, Reject):
            sess.policy = ev
        elif isinstance(ev, Disconnect):
            sess.disconnect = ev
            self._end_session(sess)
        elif isinstance(ev, Tls):
            sess.tls = ev

    def _end_session(self, sess: Session) -> None:
        key = (sess.host, sess.program, sess.pid)
        if self.sessions.get(key) is sess:
            del self.sessions[key]
        if sess.disconnect is not None and sess.messages:
            last = sess.messages[-1]
            for msg in sess.messages:
                if msg.ended != ENDED_OPEN or msg.queued is not None:
                    continue
                if msg.policy == "discard":
                    msg.ended = ENDED_DISCARDED
                    self._close(msg)
                elif msg.message_id is None or (msg is last and sess.problem_after in ("DATA", "BDAT")):
                    msg.ended = ENDED_ABORTED
                    self._close(msg)
        self.on_session(sess)

    # -- ends and merges -------------------------------------------------------

    def finish(self) -> None:
        """The log ends here: hand on everything still in flight."""
        if self.head:
            head, self.head, self.first = self.head, [], True
            self._replay(head)
        for sess in list(self.sessions.values()):
            self.on_session(sess)
        self.sessions.clear()
        for msg in list(self.open.values()):
            self.on_message(msg)
        self.open.clear()
        for _, _, arrived in self.held:  # in deadline order
            if self.candidates.get((arrived.host, arrived.qid)) is arrived:
                self._settle(arrived)
        self.held.clear()
        self.candidates.clear()

    def absorb(self, later: Correlator) -> None:
        """Continue this chunk with ``later``, the chunk that follows it in the log.

        ``later``'s finished messages must already be in the caller's aggregates; its
        head is replayed here, and what it still has in flight is taken over.
        """
        self._pending = dict(later.open)
        self._replay(later.head)
        if later.runmax > self.runmax:
            self.runmax = later.runmax
            self._release(later.runmax)
        for skey, sess in later.sessions.items():
            old_sess = self.sessions.pop(skey, None)
            if old_sess is not None:
                self._end_session(old_sess)
            self.sessions[skey] = sess
        pending, self._pending = self._pending, {}
        for key, msg in pending.items():
            old = self.open.get(key)
            if old is not None:
                self._finish(old)
            self.open[key] = msg
        for ck, candidate in later.candidates.items():
            if self.candidates.get(ck) is not candidate:
                self._add_candidate(candidate)
        for deadline, _, arrived in later.held:
            self._hold(deadline, arrived)

    def _replay(self, head: list[tuple[float, int, tuple[str, ...], object]]) -> None:
        for runmax, what, key, item in head:
            if runmax > self.runmax:
                self.runmax = runmax
                if self.held and self.held[0][0] < runmax:
                    self._release(runmax)
            if what == _MESSAGE:
                self._message_event(item, replay=True)  # type: ignore[arg-type]
            elif what == _SESSION:
                self._session_event(item)  # type: ignore[arg-type]
            elif what == _LINK:
                self._link(key, item)  # type: ignore[arg-type]
            else:
                sess = self.sessions.get(key)  # type: ignore[arg-type]
                if sess is not None:
                    self._join(sess, item)  # type: ignore[arg-type]
                elif not self.first:
                    self.head.append((runmax, what, key, item))
