"""access: who may read what postlens serves (the dashboard, the metrics page), and the TLS
it serves with (those two and the syslog listener).

A token (``Authorization: Bearer TOKEN``, as Prometheus's ``authorization`` sends it) or a
user and password (HTTP basic, Prometheus's ``basic_auth``); neither means anyone who can
connect. Secrets are compared in constant time.
"""

from __future__ import annotations

import base64
import hmac
import ssl
from dataclasses import dataclass
from typing import Any

from postlens.errors import UsageError


@dataclass(frozen=True, slots=True)
class Access:
    token: str = ""
    user: str = ""
    password: str = ""

    @classmethod
    def of(cls, section: dict[str, Any]) -> Access:
        """The token, user and password of a section of the settings file."""
        return cls(section.get("token", ""), section.get("user", ""), section.get("password", ""))

    @property
    def required(self) -> bool:
        return bool(self.token or self.password)

    def allows(self, authorization: str, offered_token: str = "") -> bool:
        """Whether a request with this ``Authorization`` header (and a token from elsewhere:
        the dashboard's ``?token=`` or its cookie) may read."""
        if not self.required:
            return True
        if self.token:
            offered = authorization[7:] if authorization.startswith("Bearer ") else offered_token
            if offered and hmac.compare_digest(offered.encode(), self.token.encode()):
                return True
        if self.password and authorization.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            except ValueError:
                return False
            return hmac.compare_digest(user.encode(), self.user.encode()) & hmac.compare_digest(
                password.encode(), self.password.encode()
            )
        return False

    def challenge(self) -> dict[str, str]:
        """The header that asks a browser for the password, when there is one."""
        return {"WWW-Authenticate": 'Basic realm="postlens"'} if self.password else {}


def server_tls(files: tuple[str, str], what: str) -> ssl.SSLContext:
    """A server's TLS from its certificate and key files (PEM); ``what`` names it in the
    UsageError of files that cannot be loaded. No TLS 1.3 session tickets: a client that
    closes with them unread resets the connection, and what it sent last is lost."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.num_tickets = 0
    try:
        context.load_cert_chain(*files)
    except (OSError, ssl.SSLError) as e:
        raise UsageError(f"{what} certificate {files[0]} and key {files[1]}: {e}") from e
    return context
