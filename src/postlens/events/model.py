"""The typed events: one small record per recognised log line.

Every event keeps the :class:`~postlens.lines.Line` it came from and the program
:class:`~postlens.lines.Tag`, so later stages know its time, host and instance.
Events that belong to a queued message carry the queue ID in ``qid``.

The dataclasses spell out their ``__init__``, as :func:`~postlens.lines.by_fields` explains:
one of these is built for nearly every log line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from postlens.lines import Line, Tag, by_fields


@dataclass(slots=True, init=False)
class Event:
    line: Line
    tag: Tag

    def __init__(self, line: Line, tag: Tag) -> None:
        self.line = line
        self.tag = tag

    def __reduce__(self) -> tuple[Any, ...]:
        return by_fields(self)


@dataclass(slots=True, init=False)
class QueueEvent(Event):
    """An event about one queued message: ``qid`` is its queue ID ("" for NOQUEUE)."""

    qid: str

    def __init__(self, line: Line, tag: Tag, qid: str) -> None:
        self.line = line
        self.tag = tag
        self.qid = qid


@dataclass(slots=True, init=False)
class Connect(Event):
    """smtpd ``connect from``; also postscreen and tlsproxy CONNECT."""

    client_host: str
    client_ip: str

    def __init__(self, line: Line, tag: Tag, client_host: str, client_ip: str) -> None:
        self.line = line
        self.tag = tag
        self.client_host = client_host
        self.client_ip = client_ip


@dataclass(slots=True, init=False)
class Disconnect(Event):
    """smtpd ``disconnect from``, with the command counts Postfix 3 appends."""

    client_host: str
    client_ip: str
    commands: str

    def __init__(self, line: Line, tag: Tag, client_host: str, client_ip: str, commands: str) -> None:
        self.line = line
        self.tag = tag
        self.client_host = client_host
        self.client_ip = client_ip
        self.commands = commands


@dataclass(slots=True, init=False)
class SessionProblem(Event):
    """``lost connection``, ``timeout``, ``too many errors``, ``improper command pipelining``."""

    problem: str
    after: str
    client_host: str
    client_ip: str

    def __init__(
        self, line: Line, tag: Tag, problem: str, after: str, client_host: str, client_ip: str
    ) -> None:
        self.line = line
        self.tag = tag
        self.problem = problem
        self.after = after
        self.client_host = client_host
        self.client_ip = client_ip


@dataclass(slots=True, init=False)
class Arrival(QueueEvent):
    """smtpd ``QID: client=``: a message is being received over SMTP."""

    client_host: str
    client_ip: str
    sasl_method: str
    sasl_username: str
    orig_client: str
    orig_qid: str
    filter_client: bool  # the client is a content filter named by --content-filter

    def __init__(
        self,
        line: Line,
        tag: Tag,
        qid: str,
        client_host: str,
        client_ip: str,
        sasl_method: str,
        sasl_username: str,
        orig_client: str,
        orig_qid: str,
        filter_client: bool = False,
    ) -> None:
        self.line = line
        self.tag = tag
        self.qid = qid
        self.client_host = client_host
        self.client_ip = client_ip
        self.sasl_method = sasl_method
        self.sasl_username = sasl_username
        self.orig_client = orig_client
        self.orig_qid = orig_qid
        self.filter_client = filter_client


@dataclass(slots=True, init=False)
class Pickup(QueueEvent):
    """pickup ``QID: uid=N from=<sender>``: local submission through sendmail/postdrop."""

    uid: str
    sender: str

    def __init__(self, line: Line, tag: Tag, qid: str, uid: str, sender: str) -> None:
        self.line = line
        self.tag = tag
        self.qid = qid
        self.uid = uid
        self.sender = sender


@dataclass(slots=True, init=False)
class MessageId(QueueEvent):
    message_id: str

    def __init__(self, line: Line, tag: Tag, qid: str, message_id: str) -> None:
        self.line = line
        self.tag = tag
        self.qid = qid
        self.message_id = message_id


@dataclass(slots=True, init=False)
class Queued(QueueEvent):
    """qmgr ``from=<...>, size=N, nrcpt=N (queue active)``."""

    sender: str
    size: int
    nrcpt: int

    def __init__(self, line: Line, tag: Tag, qid: str, sender: str, size: int, nrcpt: int) -> None:
        self.line = line
        self.tag = tag
        self.qid = qid
        self.sender = sender
        self.size = size
        self.nrcpt = nrcpt


@dataclass(slots=True, init=False)
class Delivery(QueueEvent):
    """One delivery attempt for one recipient (smtp, lmtp, local, virtual, pipe, error, qmgr ...)."""

    to: str
    orig_to: str
    relay: str
    delay: float
    delays: str
    dsn: str
    status: str
    reply: str
    filter_relay: bool  # the relay is a content filter named by --content-filter

    def __init__(
        self,
        line: Line,
        tag: Tag,
        qid: str,
        to: str,
        orig_to: str,
        relay: str,
        delay: float,
        delays: str,
        dsn: str,
        status: str,
        reply: str,
        filter_relay: bool = False,
    ) -> None:
        self.line = line
        self.tag = tag
        self.qid = qid
        self.to = to
        self.orig_to = orig_to
        self.relay = relay
        self.delay = delay
        self.delays = delays
        self.dsn = dsn
        self.status = status
        self.reply = reply
        self.filter_relay = filter_relay


@dataclass(slots=True, init=False)
class ConnectFailure(Event):
    """smtp/lmtp ``connect to HOST[IP]:PORT: REASON``: a delivery agent could not connect."""

    peer: str
    reason: str

    def __init__(self, line: Line, tag: Tag, peer: str, reason: str) -> None:
        self.line = line
        self.tag = tag
        self.peer = peer
        self.reason = reason


@dataclass(slots=True, init=False)
class Removed(QueueEvent):
    """qmgr ``QID: removed``: the message has left the queue."""

    def __init__(self, line: Line, tag: Tag, qid: str) -> None:
        self.line = line
        self.tag = tag
        self.qid = qid


@dataclass(slots=True, init=False)
class Expired(QueueEvent):
    """qmgr ``status=expired, returned to sender`` (or force-expired)."""

    sender: str
    forced: bool

    def __init__(self, line: Line, tag: Tag, qid: str, sender: str, forced: bool) -> None:
        self.line = line
        self.tag = tag
        self.qid = qid
        self.sender = sender
        self.forced = forced


@dataclass(slots=True, init=False)
class Notice(QueueEvent):
    """bounce ``QID: sender non-delivery notification: NEWQID`` and its kin."""

    kind: str  # "non-delivery", "delivery status", "delay", "postmaster non-delivery"
    notice_qid: str

    def __init__(self, line: Line, tag: Tag, qid: str, kind: str, notice_qid: str) -> None:
        self.line = line
        self.tag = tag
        self.qid = qid
        self.kind = kind
        self.notice_qid = notice_qid


# Reject actions that refuse mail (the others warn, hold, discard, redirect ...)
REJECTS: Final = frozenset(("reject", "milter-reject", "proxy-reject"))


@dataclass(slots=True, init=False)
class Reject(QueueEvent):
    """An smtpd, postscreen or cleanup policy action: reject, reject_warning, hold, discard ..."""

    action: str  # reject, reject_warning, hold, discard, milter-reject, warning, filter, redirect ...
    stage: str  # RCPT, CONNECT, MAIL, DATA, END-OF-MESSAGE, header, body ...
    client_host: str
    client_ip: str
    code: str  # 3-digit reply code, "" when the line has none
    dsn: str
    reason: str
    sender: str
    recipient: str
    helo: str
    filter_client: bool  # the client is a content filter named by --content-filter

    def __init__(
        self,
        line: Line,
        tag: Tag,
        qid: str,
        action: str,
        stage: str,
        client_host: str,
        client_ip: str,
        code: str,
        dsn: str,
        reason: str,
        sender: str,
        recipient: str,
        helo: str,
        filter_client: bool = False,
    ) -> None:
        self.line = line
        self.tag = tag
        self.qid = qid
        self.action = action
        self.stage = stage
        self.client_host = client_host
        self.client_ip = client_ip
        self.code = code
        self.dsn = dsn
        self.reason = reason
        self.sender = sender
        self.recipient = recipient
        self.helo = helo
        self.filter_client = filter_client


@dataclass(slots=True, init=False)
class QueueAction(QueueEvent):
    """postsuper and friends: removed, placed on hold, released from hold, requeued."""

    action: str

    def __init__(self, line: Line, tag: Tag, qid: str, action: str) -> None:
        self.line = line
        self.tag = tag
        self.qid = qid
        self.action = action


@dataclass(slots=True, init=False)
class AuthFailure(Event):
    """A failed SASL/IMAP/POP3 login (Postfix smtpd or Dovecot)."""

    client_host: str
    client_ip: str
    method: str
    username: str
    reason: str

    def __init__(
        self, line: Line, tag: Tag, client_host: str, client_ip: str, method: str, username: str, reason: str
    ) -> None:
        self.line = line
        self.tag = tag
        self.client_host = client_host
        self.client_ip = client_ip
        self.method = method
        self.username = username
        self.reason = reason


@dataclass(slots=True, init=False)
class Login(Event):
    """A successful Dovecot login (imap-login, pop3-login, submission-login ...)."""

    service: str
    username: str
    method: str
    client_ip: str

    def __init__(
        self, line: Line, tag: Tag, service: str, username: str, method: str, client_ip: str
    ) -> None:
        self.line = line
        self.tag = tag
        self.service = service
        self.username = username
        self.method = method
        self.client_ip = client_ip


@dataclass(slots=True, init=False)
class Tls(Event):
    """``Trusted|Verified|Untrusted|Anonymous TLS connection established from|to ...``."""

    direction: str  # "in" or "out"
    trust: str
    peer_host: str
    peer_ip: str
    protocol: str
    cipher: str

    def __init__(
        self,
        line: Line,
        tag: Tag,
        direction: str,
        trust: str,
        peer_host: str,
        peer_ip: str,
        protocol: str,
        cipher: str,
    ) -> None:
        self.line = line
        self.tag = tag
        self.direction = direction
        self.trust = trust
        self.peer_host = peer_host
        self.peer_ip = peer_ip
        self.protocol = protocol
        self.cipher = cipher


@dataclass(slots=True, init=False)
class Screen(Event):
    """postscreen verdicts and dnsblog listings."""

    action: str  # CONNECT, PASS NEW, PASS OLD, DNSBL, PREGREET, HANGUP, ... , LISTED
    client_ip: str
    detail: str

    def __init__(self, line: Line, tag: Tag, action: str, client_ip: str, detail: str) -> None:
        self.line = line
        self.tag = tag
        self.action = action
        self.client_ip = client_ip
        self.detail = detail


@dataclass(slots=True, init=False)
class Diagnostic(Event):
    """warning, error, fatal and panic lines of any daemon."""

    level: str
    text: str
    qid: str

    def __init__(self, line: Line, tag: Tag, level: str, text: str, qid: str) -> None:
        self.line = line
        self.tag = tag
        self.level = level
        self.text = text
        self.qid = qid


@dataclass(slots=True, init=False)
class MasterMessage(Event):
    text: str

    def __init__(self, line: Line, tag: Tag, text: str) -> None:
        self.line = line
        self.tag = tag
        self.text = text


@dataclass(slots=True, init=False)
class Verdict(QueueEvent):
    """What a checking program beside Postfix decided about a message (events/companions.py)."""

    check: str  # amavis, spamassassin, spf, dkim, dmarc, greylisting
    verdict: str  # "Passed CLEAN", "Blocked SPAM", "spam", "pass", "fail", "verified" ...

    def __init__(self, line: Line, tag: Tag, qid: str, check: str, verdict: str) -> None:
        self.line = line
        self.tag = tag
        self.qid = qid
        self.check = check
        self.verdict = verdict


@dataclass(slots=True, init=False)
class Info(QueueEvent):
    """A recognised line that no analysis counts (statistics, TLS set-up chatter ...)."""

    def __init__(self, line: Line, tag: Tag, qid: str) -> None:
        self.line = line
        self.tag = tag
        self.qid = qid


@dataclass(slots=True, init=False)
class Unknown(QueueEvent):
    """A mail-program line that no parser recognised; counted, never dropped."""

    def __init__(self, line: Line, tag: Tag, qid: str) -> None:
        self.line = line
        self.tag = tag
        self.qid = qid
