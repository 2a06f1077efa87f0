"""The typed events: one small record per recognised log line.

Every event keeps the :class:`~postlens.lines.Line` it came from and the program
:class:`~postlens.lines.Tag`, so later stages know its time, host and instance.
Events that belong to a queued message carry the queue ID in ``qid``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mypy_extensions import mypyc_attr

from postlens.lines import Line, Tag


@mypyc_attr(serializable=True)  # pickled between processes by -j
@dataclass(slots=True)
class Event:
    line: Line
    tag: Tag


@dataclass(slots=True)
class QueueEvent(Event):
    """An event about one queued message: ``qid`` is its queue ID ("" for NOQUEUE)."""

    qid: str


@dataclass(slots=True)
class Connect(Event):
    """smtpd ``connect from``; also postscreen and tlsproxy CONNECT."""

    client_host: str
    client_ip: str


@dataclass(slots=True)
class Disconnect(Event):
    """smtpd ``disconnect from``, with the command counts Postfix 3 appends."""

    client_host: str
    client_ip: str
    commands: str


@dataclass(slots=True)
class SessionProblem(Event):
    """``lost connection``, ``timeout``, ``too many errors``, ``improper command pipelining``."""

    problem: str
    after: str
    client_host: str
    client_ip: str


@dataclass(slots=True)
class Arrival(QueueEvent):
    """smtpd ``QID: client=``: a message is being received over SMTP."""

    client_host: str
    client_ip: str
    sasl_method: str
    sasl_username: str
    orig_client: str
    orig_qid: str


@dataclass(slots=True)
class Pickup(QueueEvent):
    """pickup ``QID: uid=N from=<sender>``: local submission through sendmail/postdrop."""

    uid: str
    sender: str


@dataclass(slots=True)
class MessageId(QueueEvent):
    message_id: str


@dataclass(slots=True)
class Queued(QueueEvent):
    """qmgr ``from=<...>, size=N, nrcpt=N (queue active)``."""

    sender: str
    size: int
    nrcpt: int


@dataclass(slots=True)
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


@dataclass(slots=True)
class ConnectFailure(Event):
    """smtp/lmtp ``connect to HOST[IP]:PORT: REASON``: a delivery agent could not connect."""

    peer: str
    reason: str


@dataclass(slots=True)
class Removed(QueueEvent):
    """qmgr ``QID: removed``: the message has left the queue."""


@dataclass(slots=True)
class Expired(QueueEvent):
    """qmgr ``status=expired, returned to sender`` (or force-expired)."""

    sender: str
    forced: bool


@dataclass(slots=True)
class Notice(QueueEvent):
    """bounce ``QID: sender non-delivery notification: NEWQID`` and its kin."""

    kind: str  # "non-delivery", "delivery status", "delay", "postmaster non-delivery"
    notice_qid: str


@dataclass(slots=True)
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


@dataclass(slots=True)
class QueueAction(QueueEvent):
    """postsuper and friends: removed, placed on hold, released from hold, requeued."""

    action: str


@dataclass(slots=True)
class AuthFailure(Event):
    """A failed SASL/IMAP/POP3 login (Postfix smtpd or Dovecot)."""

    client_host: str
    client_ip: str
    method: str
    username: str
    reason: str


@dataclass(slots=True)
class Login(Event):
    """A successful Dovecot login (imap-login, pop3-login, submission-login ...)."""

    service: str
    username: str
    method: str
    client_ip: str


@dataclass(slots=True)
class Tls(Event):
    """``Trusted|Verified|Untrusted|Anonymous TLS connection established from|to ...``."""

    direction: str  # "in" or "out"
    trust: str
    peer_host: str
    peer_ip: str
    protocol: str
    cipher: str


@dataclass(slots=True)
class Screen(Event):
    """postscreen verdicts and dnsblog listings."""

    action: str  # CONNECT, PASS NEW, PASS OLD, DNSBL, PREGREET, HANGUP, ... , LISTED
    client_ip: str
    detail: str


@dataclass(slots=True)
class Diagnostic(Event):
    """warning, error, fatal and panic lines of any daemon."""

    level: str
    text: str
    qid: str


@dataclass(slots=True)
class MasterMessage(Event):
    text: str


@dataclass(slots=True)
class Info(QueueEvent):
    """A recognised line that no analysis counts (statistics, TLS set-up chatter ...)."""


@dataclass(slots=True)
class Unknown(QueueEvent):
    """A mail-program line that no parser recognised; counted, never dropped."""
