"""rbl: ask DNS blocklists (DNSBLs, RFC 5782) whether our own sending addresses are listed.

An address is looked up as its reversed octets (IPv4) or nibbles (IPv6) under each zone:
an A record in 127.0.0.0/8 means listed (the TXT record says why), NXDOMAIN means not
listed, and anything else is an error carried in the result, never raised. dnspython
(the ``dns`` extra) is imported only when a check runs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from postlens.errors import UsageError

if TYPE_CHECKING:
    import dns.resolver

# Public lists that have answered queries for many years. Spamhaus refuses queries that
# come through public resolvers (8.8.8.8, 1.1.1.1 ...), and Barracuda asks for the resolver
# to be registered (free): ask through a resolver of your own.
DEFAULT_ZONES: tuple[str, ...] = (
    "zen.spamhaus.org",  # SBL, XBL and PBL in one zone; IPv6 too
    "bl.spamcop.net",
    "b.barracudacentral.org",
    "psbl.surriel.com",
    "bl.mailspike.net",
    "ix.dnsbl.manitu.net",
)

_LISTING_NET = ipaddress.IPv4Network("127.0.0.0/8")
# answers in 127.255.255.0/24 are the list's refusals (Spamhaus documents these three)
_ERROR_NET = ipaddress.IPv4Network("127.255.255.0/24")
_ERRORS = {
    "127.255.255.252": "the zone name is misspelt",
    "127.255.255.254": "queried through a public or open resolver",
    "127.255.255.255": "too many queries",
}
_WORKERS = 16


@dataclass(frozen=True)
class Listing:
    """What one zone said about one address; ``error`` is empty when the zone gave a clear answer."""

    ip: str
    zone: str
    listed: bool
    answers: tuple[str, ...] = ()  # the A records, sorted
    text: str = ""  # the TXT records of a listing, joined with "; "
    error: str = ""


def query_name(ip: str, zone: str) -> str:
    """The absolute name to look up (RFC 5782): reversed octets or nibbles, then the zone."""
    reverse = ipaddress.ip_address(ip).reverse_pointer  # ends in .in-addr.arpa or .ip6.arpa
    return f"{reverse.rsplit('.', 2)[0]}.{zone}."


def check(
    ips: Sequence[str],
    zones: Sequence[str] = DEFAULT_ZONES,
    *,
    nameserver: str | None = None,
    port: int = 53,
    timeout: float = 3.0,
) -> list[Listing]:
    """One Listing per address and zone, addresses then zones in the order given (repeats dropped).

    ``nameserver`` (an IP address) and ``port`` ask that server instead of the system's
    resolver; ``timeout`` bounds each lookup in seconds. A bad address raises ValueError.
    """
    try:
        import dns.exception
        import dns.nameserver
        import dns.resolver
    except ImportError:
        raise UsageError("security --check-rbl needs dnspython: pip install 'postlens[dns]'") from None
    addresses = list(dict.fromkeys(_canonical(ip) for ip in ips))
    names = [zone for zone in dict.fromkeys(z.strip().strip(".") for z in zones) if zone]
    pairs = [(ip, zone) for ip in addresses for zone in names]
    if not pairs:
        return []
    try:
        resolver = dns.resolver.Resolver(configure=nameserver is None)
    except dns.exception.DNSException as exc:  # no usable /etc/resolv.conf
        return [Listing(ip, zone, False, error=str(exc)) for ip, zone in pairs]
    if nameserver is not None:
        resolver.nameservers = [dns.nameserver.Do53Nameserver(_canonical(nameserver), port)]
    resolver.lifetime = timeout  # for all of a lookup's tries, over all the resolver's servers
    with ThreadPoolExecutor(max_workers=min(_WORKERS, len(pairs))) as pool:
        return list(pool.map(lambda pair: _ask(resolver, *pair), pairs))


def _canonical(ip: str) -> str:
    try:
        return str(ipaddress.ip_address(ip.strip()))
    except ValueError:
        raise ValueError(f"not an IP address: {ip!r}") from None


def _ask(resolver: dns.resolver.Resolver, ip: str, zone: str) -> Listing:
    import dns.exception
    import dns.resolver

    name = query_name(ip, zone)
    try:
        answer = resolver.resolve(name, "A")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        # NoAnswer: the name exists without an A record, and only an A record lists
        return Listing(ip, zone, False)
    except dns.exception.DNSException as exc:  # timeouts, SERVFAIL, REFUSED, no server
        return Listing(ip, zone, False, error=str(exc))
    answers = tuple(sorted({rdata.address for rdata in answer}, key=ipaddress.IPv4Address))
    refusals = [a for a in answers if ipaddress.IPv4Address(a) in _ERROR_NET]
    if refusals:
        why = ", ".join(f"{a} ({_ERRORS.get(a, 'an error code')})" for a in refusals)
        return Listing(ip, zone, False, answers, error=f"the list refused the query: {why}, not a listing")
    strays = [a for a in answers if ipaddress.IPv4Address(a) not in _LISTING_NET]
    if strays:
        # typically a resolver that answers NXDOMAIN with an address of its own
        error = f"answer outside 127.0.0.0/8, not a DNSBL reply: {', '.join(strays)}"
        return Listing(ip, zone, False, answers, error=error)
    return Listing(ip, zone, True, answers, _reason(resolver, name))


def _reason(resolver: dns.resolver.Resolver, name: str) -> str:
    """The TXT text of a listing; a list without TXT records, or failing to give them, gives ""."""
    import dns.exception

    try:
        records = resolver.resolve(name, "TXT")
    except dns.exception.DNSException:
        return ""
    return "; ".join(sorted(b"".join(rdata.strings).decode("utf-8", "replace") for rdata in records))
