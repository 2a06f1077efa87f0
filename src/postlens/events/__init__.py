"""events: each recognised line becomes one typed event; the rest become Unknown.

Dispatch is by program tag first (Postfix, Dovecot, other mail programs, anything
else), then by daemon, before any payload regex runs.
"""

from __future__ import annotations

from postlens.events.dovecot import parse_dovecot
from postlens.events.model import (
    Arrival,
    AuthFailure,
    Connect,
    ConnectFailure,
    Delivery,
    Diagnostic,
    Disconnect,
    Event,
    Expired,
    Info,
    Login,
    MasterMessage,
    MessageId,
    Notice,
    Pickup,
    QueueAction,
    Queued,
    Reject,
    Removed,
    Screen,
    SessionProblem,
    Tls,
    Unknown,
)
from postlens.events.postfix import parse_postfix, parse_reply
from postlens.lines import KIND_DOVECOT, KIND_FOREIGN, KIND_POSTFIX, Line, Tag, TagReader

__all__ = [
    "Arrival", "AuthFailure", "Connect", "ConnectFailure", "Delivery", "Diagnostic", "Disconnect", "Event",
    "EventParser", "Expired", "Info", "Login", "MasterMessage", "MessageId", "Notice", "Pickup",
    "QueueAction", "Queued", "Reject", "Removed", "Screen", "SessionProblem", "Tls", "Unknown",
    "parse_reply",
]  # fmt: skip


class EventParser:
    """Turns a :class:`Line` into an event, or None for lines of non-mail programs."""

    __slots__ = ("tags",)

    def __init__(self, syslog_name: str | None = None) -> None:
        self.tags = TagReader(syslog_name)

    def parse(self, line: Line) -> Event | None:
        tag = self.tags.read(line.program)
        kind = tag.kind
        if kind == KIND_POSTFIX:
            return parse_postfix(line, tag)
        if kind == KIND_DOVECOT:
            return parse_dovecot(line, tag)
        if kind == KIND_FOREIGN:
            return None
        return Info(line, tag, "")

    def tag(self, line: Line) -> Tag:
        return self.tags.read(line.program)
