"""Dovecot payloads: logins and failed logins of the login processes, and the auth backends.

Every Dovecot line is recognised by its program; the login-process lines become
:class:`Login` and :class:`AuthFailure` events (one per connection, as Dovecot logs
them), the rest :class:`Info`.
"""

from __future__ import annotations

import re
from typing import Final

from postlens.events.model import AuthFailure, Event, Info, Login
from postlens.lines import Line, Tag

_SERVICE_RE: Final = re.compile(r"([a-z0-9-]+-login|auth|auth-worker|imap|pop3|lmtp|master)[^:]*: (.*)$")
_FIELD_RE: Final = re.compile(r"(\w+)=<?([^,>]*)>?")
_FAILED_RE: Final = re.compile(r"(?:Disconnected|Aborted login|Login aborted) \(auth failed[^)]*\)")


def _fields(text: str) -> dict[str, str]:
    return dict(_FIELD_RE.findall(text))


def parse_dovecot(line: Line, tag: Tag, payload: str) -> Event:
    m = _SERVICE_RE.match(payload)
    if m is None:
        if tag.daemon.endswith("-login"):
            service, rest = tag.daemon, payload
        else:
            return Info(line, tag, "")
    else:
        service, rest = m.groups()
    if service.endswith("-login"):
        if rest.startswith("Login: "):
            f = _fields(rest)
            return Login(line, tag, service, f.get("user", ""), f.get("method", ""), f.get("rip", ""))
        if _FAILED_RE.match(rest):
            f = _fields(rest[rest.find(":") :])
            return AuthFailure(line, tag, "", f.get("rip", ""), f.get("method", "").upper(),
                               f.get("user", ""), "auth failed")  # fmt: skip
    return Info(line, tag, "")
