"""Shared normalisers: addresses, domains, reasons and client names, as reports group them."""

from __future__ import annotations

import re
from typing import Final

_VERP_RE: Final = re.compile(
    r"((?:bounce[ds]?|no(?:list|reply|response)|return|sentto|\d+).*?)(?:[+_.*-]\d+\b)+", re.I
)
_VERP2_RE: Final = re.compile(r"[*-](\d+[*-])?[^=*-]+[=*][^@]+@")
_ANGLE_RE: Final = re.compile(r"<[^<>]*>")
_LONG_NUMBER_RE: Final = re.compile(r"\b\d{5,}\b")
_IN_REPLY_RE: Final = re.compile(r"\s*\(in reply to [^)]*\)\s*$")
_QUEUED_AS_RE: Final = re.compile(r"queued as [0-9A-Za-z]+")
_SPACES_RE: Final = re.compile(r"\s+")
_CLIENT_RE: Final = re.compile(r"([^\[]*)\[([^\]]*)\]")


def verp_mung(addr: str, level: int) -> str:
    """Fold VERP and list-bounce addresses like pflogsumm's --verp-mung."""
    if level <= 0:
        return addr
    addr = _VERP_RE.sub(r"\1-ID", addr, count=1)
    if level > 1:
        addr = _VERP2_RE.sub("@", addr, count=1)
    return addr


def address(addr: str, verp: int = 0) -> str:
    """An envelope address as postlens counts it: lower case, VERP folded when asked."""
    if not addr:
        return "<>"
    return verp_mung(addr.lower(), verp)


def reason(text: str) -> str:
    """A reply or reason text with the parts that differ per message taken out."""
    text = _IN_REPLY_RE.sub("", text)
    text = _QUEUED_AS_RE.sub("queued as ID", text)
    text = _ANGLE_RE.sub("<>", text)
    text = _LONG_NUMBER_RE.sub("N", text)
    return _SPACES_RE.sub(" ", text).strip()[:200]


def client_name(host: str, ip: str) -> str:
    """``host[ip]`` as reports show a client: the name when known, else the address."""
    if host and host != "unknown":
        return host.lower()
    return ip


def parent_domain(name: str) -> str:
    """pflogsumm's host-to-domain step: ``mach.host.dom`` becomes ``host.dom``."""
    m = re.match(r"^(.*)\.([^.]+)\.([^.]{3}|[^.]{2,3}\.[^.]{2})$", name)
    if m:
        return (m.group(2) + "." + m.group(3)).lower()
    return name


_CLIENT_DOMAINS: Final[dict[tuple[str, str], str]] = {}


def client_domain(host: str, ip: str) -> str:
    """:func:`gimme_domain` of a client ``host[ip]``, remembered: one client sends many messages
    (a plain dict: cheaper per call than ``functools.lru_cache``)."""
    key = (host, ip)
    domain = _CLIENT_DOMAINS.get(key)
    if domain is None:
        if len(_CLIENT_DOMAINS) >= 65536:
            _CLIENT_DOMAINS.clear()
        domain = _CLIENT_DOMAINS[key] = gimme_domain(f"{host}[{ip}]")
    return domain


def gimme_domain(client: str) -> str:
    """pflogsumm's gimme_domain: a client ``host[ip]`` reduced to its domain, or its address."""
    m = _CLIENT_RE.match(client)
    if m is None:
        return client
    host, ip = m.groups()
    if not host or host == "unknown":
        return ip
    return parent_domain(host)
