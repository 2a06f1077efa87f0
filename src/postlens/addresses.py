"""addresses: which network addresses in a log are this machine's own content filters.

A content filter (amavis, a second Postfix instance, a rspamd proxy ...) takes mail from
Postfix over SMTP or LMTP and hands it back through another smtpd. On a loopback address
it is recognised by itself; one on another address (its own host, a container, the
machine's public address) is named by the administrator with ``--content-filter``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from postlens.errors import UsageError


def is_loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip == "::1" or ip.startswith("::ffff:127.")


def relay_ip(relay: str) -> str:
    """The address inside ``host[ip]:port`` (or the host itself when no brackets)."""
    start = relay.find("[")
    if start < 0:
        return relay.split(":", 1)[0]
    return relay[start + 1 : relay.find("]", start)]


class ContentFilters:
    """The addresses and networks of content filters that are not on loopback."""

    def __init__(self, specs: Iterable[str] = ()) -> None:
        self.specs = tuple(specs)
        self._nets: list[Any] = []
        for spec in self.specs:
            try:
                self._nets.append(ipaddress.ip_network(spec.strip(), strict=False))
            except ValueError:
                raise UsageError(f"--content-filter: not an address or network: {spec!r}") from None
        self._seen: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self._nets)

    def __reduce__(self) -> tuple[Any, ...]:
        return (ContentFilters, (self.specs,))

    def __contains__(self, ip: str) -> bool:
        found = self._seen.get(ip)
        if found is None:
            found = self._match(ip)
            if len(self._seen) > 10000:
                self._seen.clear()
            self._seen[ip] = found
        return found

    def _match(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip.removeprefix("IPv6:"))
        except ValueError:
            return False
        mapped = getattr(addr, "ipv4_mapped", None)
        return any(addr in net or (mapped is not None and mapped in net) for net in self._nets)
