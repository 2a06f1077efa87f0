"""events: each recognised line becomes one typed event; the rest become Unknown.

Dispatch is by program tag first (Postfix, Dovecot, other mail programs, anything
else), then by daemon, before any payload regex runs.
"""

from __future__ import annotations

from collections.abc import Callable

from postlens.addresses import ContentFilters, relay_ip
from postlens.events.companions import companion_parser
from postlens.events.dovecot import parse_dovecot
from postlens.events.model import (
    REJECTS,
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
    QueueEvent,
    Reject,
    Removed,
    Screen,
    SessionProblem,
    Tls,
    Unknown,
    Verdict,
)
from postlens.events.postfix import parse_reply, postfix_parser
from postlens.lines import KIND_DOVECOT, KIND_FOREIGN, KIND_POSTFIX, Line, Tag, TagReader

__all__ = [
    "EVENT_TYPES",
    "REJECTS",
    "Arrival",
    "AuthFailure",
    "Connect",
    "ConnectFailure",
    "Delivery",
    "Diagnostic",
    "Disconnect",
    "Event",
    "EventParser",
    "Expired",
    "Info",
    "Login",
    "MasterMessage",
    "MessageId",
    "Notice",
    "Pickup",
    "QueueAction",
    "QueueEvent",
    "Queued",
    "Reject",
    "Removed",
    "Screen",
    "SessionProblem",
    "Tls",
    "Unknown",
    "Verdict",
    "parse_reply",
]  # fmt: skip


EVENT_TYPES: tuple[type[Event], ...] = (
    Arrival, AuthFailure, Connect, ConnectFailure, Delivery, Diagnostic, Disconnect, Expired, Info,
    Login, MasterMessage, MessageId, Notice, Pickup, QueueAction, Queued, Reject, Removed, Screen,
    SessionProblem, Tls, Unknown, Verdict,
)  # fmt: skip


Parser = Callable[[Line, Tag, str], Event]


class EventParser:
    """Turns a :class:`Line` into an event, or None for lines of non-mail programs."""

    def __init__(self, syslog_name: str | None = None, filters: ContentFilters | None = None) -> None:
        self.tags = TagReader(syslog_name)
        self._cache: dict[str, tuple[Tag, Parser | None]] = {}
        self.filters = filters if filters else None

    def parse(self, line: Line) -> Event | None:
        entry = self._cache.get(line.program)
        if entry is None:
            entry = self._choose(line.program)
        parser = entry[1]
        if parser is None:
            return None
        ev = parser(line, entry[0], line.payload)
        if self.filters is not None:
            self._mark_filter(ev, self.filters)
        return ev

    @staticmethod
    def _mark_filter(ev: Event, filters: ContentFilters) -> None:
        if isinstance(ev, Delivery):
            ev.filter_relay = relay_ip(ev.relay) in filters
        elif isinstance(ev, (Arrival, Reject)):
            ev.filter_client = ev.client_ip in filters

    def _choose(self, program: str) -> tuple[Tag, Parser | None]:
        tag = self.tags.read(program)
        parser: Parser | None
        if tag.kind == KIND_POSTFIX:
            parser = postfix_parser(tag.daemon)
        elif tag.kind == KIND_DOVECOT:
            parser = parse_dovecot
        elif tag.kind == KIND_FOREIGN:
            parser = None
        else:
            parser = companion_parser(tag.daemon)
        if len(self._cache) < 10000:
            self._cache[program] = (tag, parser)
        return tag, parser

    def tag(self, line: Line) -> Tag:
        return self.tags.read(line.program)
