"""access: who may read what postlens serves over HTTP (the dashboard, the metrics page).

A token (``Authorization: Bearer TOKEN``, as Prometheus's ``authorization`` sends it) or a
user and password (HTTP basic, Prometheus's ``basic_auth``); neither means anyone who can
connect. Secrets are compared in constant time.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Access:
    token: str = ""
    user: str = ""
    password: str = ""

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
