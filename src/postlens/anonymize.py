"""anonymize: mail logs rewritten with keyed pseudonyms, still valid Postfix logs.

Mail logs are personal data: who wrote to whom, from which address, with which login.
:func:`anonymize_files` (``postlens anonymize``) rewrites them so that they can be kept
longer, shared with a vendor or attached to a bug report, and still give the same report.
Every e-mail address, IP
address, host name, SASL or Dovecot login, Message-ID, Dovecot session and header or body
text that a header_checks / body_checks action logged is replaced by a pseudonym:
``HMAC-SHA256(key, value)``, truncated and written in the shape the log needs (an address
stays ``local@domain``, an IPv4 address a dotted quad). The same value gives the same
pseudonym in every file and every run with the same key; without the key nobody can
reverse a pseudonym or confirm a guess.

What the report counts is kept exactly (docs/anonymize.md says why each rule is needed):

- distinct values stay distinct and equal ones equal, also as postlens and pflogsumm
  compare them: addresses without case by postlens, local parts with case by pflogsumm, a
  client's "domain" by pflogsumm's own host-to-domain rule (:meth:`Pseudonyms.name`);
- loopback addresses (content-filter hops, local clients), ``unknown``, ``localhost``,
  transports (``relay=local``), queue IDs, times, sizes, reply codes and DSNs stay as they
  are; so do networks and domains named as our own.

Each line is read like the report reads it (:class:`~postlens.lines.LineParser`,
:class:`~postlens.events.EventParser`); the payload is rewritten by one scan for everything
that looks like an address, a ``host[ip]`` pair or a ``key=value`` that names a person, and
then every value the parser took out of the line that is still there is replaced too, so
nothing the parser saw survives. Lines the parser does not know get the same scan.
"""

from __future__ import annotations

import bz2
import contextlib
import functools
import hmac
import ipaddress
import lzma
import os
import re
import secrets
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from postlens import config
from postlens.errors import InputError, UsageError
from postlens.events import (
    Arrival,
    AuthFailure,
    Connect,
    ConnectFailure,
    Delivery,
    Disconnect,
    Event,
    EventParser,
    Expired,
    Login,
    MessageId,
    Pickup,
    Queued,
    Reject,
    Removed,
    Screen,
    SessionProblem,
    Tls,
)
from postlens.events.postfix import (
    _CLEANUP_ACTION_RE,
    _CLIENT_RE,
    _DELIVERY_RE,
    _HOST_IP,
    _KV_RE,
    _QUEUED_RE,
    _SASL_FAIL_RE,
    _SASL_USER_RE,
    _TLS_RE,
    split_qid,
)
from postlens.lines import Line, LineParser, with_parsers, zone
from postlens.output import output_path
from postlens.sources import Source, each_line, expand

KEY_BYTES = 32
MIN_KEY_BYTES = 16

# Names that say nothing about a person and that the report relies on.
KEPT_NAMES = frozenset(("", "unknown", "localhost", "localhost.localdomain", "local", "none"))
# Always kept: loopback (content-filter hops and local clients are recognised by it) and
# the unspecified addresses.
KEPT_NETS = ("127.0.0.0/8", "0.0.0.0/8", "::1/128", "::/128")
# Second-level labels under a two-letter country code that pflogsumm's host-to-domain rule
# treats as a public suffix (co.uk, com.au ...); they name no one, so they are kept.
GENERIC_SLD = frozenset(
    ("ac", "co", "com", "edu", "gob", "gov", "go", "gv", "ltd", "mil", "ne", "net", "nic", "nom", "or",
     "org", "plc", "sch")
)  # fmt: skip
_LABEL_RE = re.compile(r"[\w-]+")
_HEADER_NAME_RE = re.compile(r"[!-9;-~]+")
_FROM_CLAUSE_RE = re.compile(r" from " + _HOST_IP + r"|\bfrom (local)\b")
_COMMANDS_RE = re.compile(r"(?: [a-z]+=\d+(?:/\d+)?)*")  # disconnect's "ehlo=1 mail=1 ... commands=5"
_PLAIN_TAILS = frozenset((" (queue active)", ")"))
_BRACKETS_RE = re.compile(r"\[([^\]\s]*)\]")
# postscreen verdicts whose only values are client addresses in brackets
_SCREEN_PLAIN = frozenset(
    ("CONNECT", "DISCONNECT", "DNSBL", "HANGUP", "PASS OLD", "PASS NEW", "WHITELISTED", "BLACKLISTED",
     "WHITELIST VETO", "ALLOWLISTED", "DENYLISTED", "ALLOWLIST VETO")
)  # fmt: skip
_IP_PORT_RE = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3})([.:]\d+)")
_TOKEN_RE = "(?<![\\w.@+-]){}(?![\\w.@+=-])"  # a value standing alone: not part of a word or key=

# Keys whose value names a person, by the kind of value: ``key=<value>`` (or ``key: <value>``)
# and ``key=value``.
_KEYS = {
    "address": ("from", "to", "orig_to", "sender", "sasl_sender", "recipient", "envelope-from", "orig_rcpt"),
    "helo": ("helo",),
    "message_id": ("message-id", "resent-message-id", "msgid", "Message-ID", "Message-Id"),
    "user": ("sasl_username", "user", "orig_user", "sasl_user"),
    "session": ("session",),
}
# Words after which a name follows: "hostname mail.example.com does not resolve", "Name
# service error for name=example.com", postgrey's client_name=, a DKIM d=, a Received: header
# (amavis logs one) ...
_NAME_KEYS = (
    "hostname ",
    "name=",
    "client_name=",
    "reverse_client_name=",
    "helo_name=",
    "d=",
    "mail for ",
    "Received: from ",
)
_USER_KEYS = ('unknown user: "', "for user ")  # local(8): unknown user: "bob"; mailbox ... for user bob
# Dovecot's log prefix service(user)<pid><session>:
_SERVICES = ("imap", "pop3", "lmtp", "managesieve", "submission", "lda", "deliver", "sieve", "indexer-worker",
             "doveadm", "quota-status")  # fmt: skip
_KIND_OF_KEY = {key: kind for kind, keys in _KEYS.items() for key in keys}


def _alternatives(words: tuple[str, ...] | list[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


# What a person can be identified by in a payload, found in one pass; the last group an
# alternative matches names the rule that replaces it (Rewriter._rules). It is about as
# fast as the parser because every alternative starts where a word starts (the lookbehind
# up front), the quantifiers that read a word are possessive, and one alternative reads a
# word once and decides by what follows it: [an address], @a domain, (a login,an address).
# Compiled when first used (see _scanner), not when postlens is imported: it takes a while.
_SCAN = (
    # a word with none of these characters, or none of these words, holds nothing to replace
    r"(?<![\w.])(?=[^\s=<@\[(:./\d\"]*+[=<@\[(:./\d\"]|(?:hostname|for|mail|EHLO|HELO|ehlo|helo|unknown) "
    r"|(?<=: )|\S++ \[)(?:"
    r"(?P<key_bracketed>(?:" + _alternatives(list(_KIND_OF_KEY)) + r")(?:=|: )<)(?P<bracketed>[^<>]*+)(?=>)"
    r"|(?P<key_bare>(?:" + _alternatives(list(_KIND_OF_KEY)) + r")=)(?P<bare>[^\s<>;,]++)"
    r"|(?P<key_name>" + _alternatives(_NAME_KEYS) + r")(?P<name>[\w.-]*\w)"
    r"|(?P<key_user>" + _alternatives(_USER_KEYS) + r")(?P<local_user>[\w.-]*\w)"
    r"|uid=(?P<uid>\d++)"
    r"|(?P<key_greeting>(?:EHLO|HELO|ehlo|helo) )(?P<greeting>[^\s\\]++)(?=\\r\\n)"
    r"|(?P<key_home>/(?:home|var/mail|var/spool/mail)/)(?P<home>[^/\s:;,()\"']++)"
    r"|(?P<service>(?:" + _alternatives([*_SERVICES, *(x.upper() for x in _SERVICES)]) + r")\()"
    r"(?P<service_user>[^()\s,]++)\)(?:<(?P<service_pid>\d++)><(?P<service_session>[^<>]*+)>)?"
    r"|(?P<word>[\w.+!#$%&'*/?^`{|}~-]*+)(?:"
    r"\[(?P<bracket>[^\]\s]*+)\]"
    r"|@(?P<domain>[\w-]++(?:\.[\w-]++)*+|\[[^\]\s]++\])"
    r"|\((?P<auth_user>[^,()\s]*+),(?P<auth_ip>[0-9A-Fa-f:.]++)(?=[,)])"
    r"|(?P<spaced_host>)(?= \[[0-9A-Fa-f:.]++\])"
    r")"
    r"|(?P<ip4>\d{1,3}+(?:\.\d{1,3}+){3})(?!\.?\w)"
    r"|(?=[0-9A-Fa-f]{0,4}+:[0-9A-Fa-f]{0,4}+:)(?P<ip6>[0-9A-Fa-f:.]{2,45}+(?:%\w++)?)(?![\w:])"
    r"|(?P<fqdn>[A-Za-z][A-Za-z0-9-]*+(?:\.[A-Za-z0-9-]++)++)(?![\w@-])"
    r"|(?<=: )(?P<dmarc_domain>[\w.-]++)(?= (?:pass|fail|none|temperror|permerror|bestguesspass)$)"
    r")"
)


@functools.cache
def _scanner() -> re.Pattern[str]:
    return re.compile(_SCAN)


_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


def _b32(digest: bytes) -> str:
    """The first 50 bits of a digest as 10 base32 letters and digits (base64's b32encode is
    written in Python, and slower)."""
    n = int.from_bytes(digest[:7], "big") >> 6
    return "".join([_BASE32[(n >> shift) & 31] for shift in range(45, -5, -5)])


def _networks(texts: tuple[str, ...]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for text in texts:
        try:
            nets.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError as e:
            raise UsageError(f"--keep-net: {e}") from e
    return nets


# -- the key ----------------------------------------------------------------------------------


def load_key(path: str, create: bool = False, setting: str = "--key") -> bytes:
    """The secret key in ``path``; with ``create``, a new one (32 random bytes, mode 0600) is
    written there first when the file does not exist. An existing key is never replaced:
    a new key would give every value a new pseudonym. Problems name the ``setting``."""
    if create and not os.path.exists(path):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # made meanwhile by another run: use that one
            pass
        except OSError as e:
            raise UsageError(f"{setting} {path}: cannot create: {e.strerror or e}") from e
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(KEY_BYTES))
    try:
        with open(path, "rb") as f:
            key = f.read(4096)
    except FileNotFoundError as e:
        fix = "add --new-key to make one" if setting == "--key" else "make one with anonymize --new-key"
        raise UsageError(f"{setting} {path}: no such file; {fix}") from e
    except OSError as e:
        raise UsageError(f"{setting} {path}: {e.strerror or e}") from e
    if len(key) < MIN_KEY_BYTES:
        raise UsageError(f"{setting} {path}: a key has at least {MIN_KEY_BYTES} bytes; make a new one")
    return key


def key_is_private(path: str) -> bool:
    """Whether only its owner can read the key file (whoever can read it can confirm guesses)."""
    try:
        return not os.stat(path).st_mode & 0o077
    except OSError:
        return True


# -- IP addresses ---------------------------------------------------------------------------


class _AddressMap:
    """A keyed permutation of the ``bits``-bit addresses that leaves kept networks where they are.

    Prefix-preserving (``prefix``): bit i of the result is bit i of the address flipped by a
    keyed function of the bits before it (the scheme of Crypto-PAn, with HMAC in place of
    AES), so two addresses that share their first n bits give pseudonyms that share their
    first n bits, and no more. The flip is never taken on the path to a kept network, which
    maps each kept network onto itself; being a bijection, the map then sends no other
    address into one. Otherwise a four-round Feistel network, walked again while the result
    lies in a kept network: a bijection of the addresses outside them.
    """

    def __init__(self, key: bytes, bits: int, kept: list[tuple[int, int]], prefix: bool) -> None:
        self.key = key
        self.bits = bits
        self.kept = kept  # (network as an integer, prefix length)
        self.prefix = prefix
        self.tag = b"ip%d" % bits
        self.forced = {(i, net >> (bits - i)) for net, length in kept for i in range(length)}
        self._flips: dict[tuple[int, int], int] = {}

    def is_kept(self, value: int) -> bool:
        bits = self.bits
        return any(value >> (bits - length) == net >> (bits - length) for net, length in self.kept)

    def __call__(self, value: int) -> int:
        if self.prefix:
            return self._prefix_preserving(value)
        out = self._feistel(value)
        while self.is_kept(out):
            out = self._feistel(out)
        return out

    def _prefix_preserving(self, value: int) -> int:
        bits, flips, nbytes = self.bits, self._flips, self.bits // 8
        if len(flips) > 1 << 20:
            flips.clear()
        out = 0
        for i in range(bits):
            node = (i, value >> (bits - i))
            flip = flips.get(node)
            if flip is None:
                if node in self.forced:
                    flip = 0
                else:
                    msg = self.tag + bytes((i,)) + node[1].to_bytes(nbytes, "big")
                    flip = hmac.digest(self.key, msg, "sha256")[0] & 1
                flips[node] = flip
            out = (out << 1) | (((value >> (bits - 1 - i)) & 1) ^ flip)
        return out

    def _feistel(self, value: int) -> int:
        half = self.bits // 2
        mask = (1 << half) - 1
        left, right = value >> half, value & mask
        for r in range(4):
            msg = self.tag + b"f" + bytes((r,)) + right.to_bytes(half // 8, "big")
            f = int.from_bytes(hmac.digest(self.key, msg, "sha256")[: half // 8], "big")
            left, right = right, left ^ f
        return (left << half) | right


# -- pseudonyms ---------------------------------------------------------------------------------


@dataclass(slots=True)
class AnonymizeOptions:
    """What stays as it is: our own domains (and their subdomains), every address domain
    (``keep_domains``), networks of our own (``keep_nets``, besides loopback); and whether IP
    pseudonyms keep common prefixes (``keep_prefix``)."""

    own_domains: tuple[str, ...] = ()
    keep_domains: bool = False
    keep_prefix: bool = False
    keep_nets: tuple[str, ...] = ()


class Pseudonyms:
    """The pseudonym of each kind of value under one key; each is remembered once made."""

    def __init__(self, key: bytes, options: AnonymizeOptions | None = None) -> None:
        self.key = key
        self.options = options = options or AnonymizeOptions()
        self.own = tuple(d.strip().strip(".").lower() for d in options.own_domains if d.strip().strip("."))
        nets = _networks(KEPT_NETS + options.keep_nets)
        v4 = [(int(n.network_address), n.prefixlen) for n in nets if n.version == 4]
        # IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) take the IPv4 address's pseudonym; the
        # block is kept out of the IPv6 map so that no other IPv6 address lands in it
        v6 = [(int(n.network_address), n.prefixlen) for n in nets if n.version == 6]
        v6.append((0xFFFF << 32, 96))
        self._ip4 = _AddressMap(key, 32, v4, options.keep_prefix)
        self._ip6 = _AddressMap(key, 128, v6, options.keep_prefix)
        # each kind's pseudonyms once made (an HMAC costs more than a look-up)
        self._names: dict[str, str] = {}
        self._addresses: dict[str, str] = {}
        self._ips: dict[str, str | None] = {}
        self._users: dict[str, str] = {}
        self._message_ids: dict[str, str] = {}
        self._known: set[str] = set()  # names given a pseudonym, lower-cased: see known_name
        self.unresolved = False

    def _remember(self, cache: dict[str, str], value: str, pseudonym: str) -> str:
        if len(cache) > 500000:  # bounded memory on endless inputs; a miss only costs time
            cache.clear()
        cache[value] = pseudonym
        return pseudonym

    def digest(self, kind: bytes, value: str) -> bytes:
        return hmac.digest(self.key, kind + b"\0" + value.encode("utf-8", "surrogatepass"), "sha256")

    def token(self, kind: bytes, value: str) -> str:
        return _b32(self.digest(kind, value))

    def _recase(self, pseudonym: str, original: str, seed: str) -> str:
        """``pseudonym`` with upper-case letters where ``original`` has some, so that
        variants that differ only in case stay apart (pflogsumm counts them apart) while
        all of them lower-case alike (postlens compares without case).

        The case pattern of the original's letters, as a number, is multiplied by a keyed
        odd number (a bijection fixing 0: an all-lower-case original stays all lower case)
        and spread over the pseudonym's letters. Variants stay apart as long as the
        original has no more cased letters than the pseudonym has letters.
        """
        pattern = 0
        cased = 0
        for c in original:
            if c.isupper():
                pattern = (pattern << 1) | 1
                cased += 1
            elif c.islower():
                pattern <<= 1
                cased += 1
        if not pattern:
            return pseudonym
        letters = [i for i, c in enumerate(pseudonym) if c.isalpha()]
        n = len(letters)
        if not n:
            return pseudonym
        full = (1 << n) - 1
        if cased > n:
            pattern = pattern % full or full
        odd = int.from_bytes(self.digest(b"case", seed)[:32], "big") | 1
        spread = (pattern * odd) & full
        chars = list(pseudonym)
        for j, i in enumerate(letters):
            if spread >> (n - 1 - j) & 1:
                chars[i] = chars[i].upper()
        return "".join(chars)

    # -- the kinds ----------------------------------------------------------------------

    def ip(self, text: str) -> str | None:
        """The pseudonym of an IP address (kept ones unchanged), or None if ``text`` is none."""
        known = self._ips.get(text, "")
        if known != "":
            return known
        parts = text.split(".")
        if len(parts) == 4 and all(p.isascii() and p.isdigit() and (p == "0" or p[0] != "0") for p in parts):
            # a dotted quad, without ipaddress's (slow) parsing; leading zeros it refuses too
            octets = [int(p) for p in parts]
            value = (octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]
            out = self._ip4_text(value, text) if max(octets) <= 255 else None
        else:
            try:
                addr = ipaddress.ip_address(text)
            except ValueError:
                out = None
            else:
                out = self._address(addr, text)
        if len(self._ips) > 500000:
            self._ips.clear()
        self._ips[text] = out
        return out

    def _ip4_text(self, value: int, text: str) -> str:
        if self._ip4.is_kept(value):
            return text
        out = self._ip4(value)
        return f"{out >> 24}.{(out >> 16) & 255}.{(out >> 8) & 255}.{out & 255}"

    def _address(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address, text: str) -> str:
        if isinstance(addr, ipaddress.IPv4Address):
            return self._ip4_text(int(addr), text)
        mapped = addr.ipv4_mapped
        if mapped is not None:
            inner = self.ip(str(mapped))
            return text if inner == str(mapped) else "::ffff:" + (inner or "")
        value = int(addr)
        if self._ip6.is_kept(value):
            return text
        out = str(ipaddress.IPv6Address(self._ip6(value)))
        return out + "%" + addr.scope_id if addr.scope_id else out

    def own_suffix(self, low: str) -> str | None:
        for own in self.own:
            if low == own or low.endswith("." + own):
                return own
        return None

    def name(self, value: str) -> str:
        """The pseudonym of a host or domain name, label by label.

        Each label becomes a token keyed on the whole name from that label on, so names
        that share a domain share its pseudonym. The last label (the top-level domain) is
        kept, and a name under one of our own domains keeps that domain. pflogsumm groups
        clients by a "domain" cut by label lengths (the last two labels when the last has
        three letters, the last three under a two-letter one after a label of two or three,
        as co.uk); tokens are never two or three letters long, and such a second-level
        label is kept (or written ``zz``), so every name is cut at the same place as its
        original and the groups stay the same.
        """
        known = self._names.get(value)
        if known is not None:
            return known
        low = value.lower()
        if low in KEPT_NAMES:
            return self._remember(self._names, value, value)
        if value.startswith("[") and value.endswith("]"):
            return self._remember(self._names, value, "[" + self.literal(value[1:-1]) + "]")
        ip = self.ip(value)
        if ip is not None:
            return self._remember(self._names, value, ip)
        labels = low.split(".")
        own = self.own_suffix(low)
        if own is not None:
            keep = own.count(".") + 1
        elif not all(_LABEL_RE.fullmatch(label) for label in labels) or len(labels) == 1:
            labels, keep = [low], 0  # one label, or not a name at all: one opaque token
        elif len(labels) >= 3 and len(labels[-1]) == 2 and 2 <= len(labels[-2]) <= 3:
            keep = 2
        else:
            keep = 1
        n = len(labels)
        if keep == n:  # one of our own domains itself
            return self._remember(self._names, value, value)
        out = []
        for i in range(n - keep):
            letter = "d" if i == n - keep - 1 and keep and own is None else "h"
            out.append(letter + self.token(b"name", ".".join(labels[i:])))
        kept = labels[n - keep :] if keep else []
        if keep == 2 and own is None and kept[0] not in GENERIC_SLD:
            kept[0] = "zz"
        if len(self._known) > 500000:
            self._known.clear()
        self._known.add(low)
        # the case of the original goes into the tokens; what is kept is written in lower case
        new = self._recase(".".join(out), value, low) + "".join("." + label for label in kept)
        return self._remember(self._names, value, new)

    def known_name(self, value: str) -> str:
        """A dotted word in free text: a name's pseudonym when the name was met before where a
        name belongs (a client, a HELO, an address's domain ...), else the word as it is, as
        for zen.spamhaus.org or main.cf (and ``unresolved`` says so)."""
        if value.lower() in self._known:
            return self.name(value)
        self.unresolved = True
        return value

    def literal(self, text: str) -> str:
        """An address literal as in ``[192.0.2.1]`` or ``[IPv6:2001:db8::1]``, without brackets."""
        if text[:5].lower() == "ipv6:":
            return text[:5] + (self.ip(text[5:]) or "x" + self.token(b"text", text))
        return self.ip(text) or "x" + self.token(b"text", text)

    def domain(self, value: str) -> str:
        """An e-mail address's domain: kept with keep_domains, else a name's pseudonym."""
        if self.options.keep_domains:
            return value
        return self.name(value)

    def address(self, value: str) -> str:
        """``local@domain``: the local part a token keyed on the whole address (without
        case), the domain :meth:`domain`'s. The null sender (empty) stays empty."""
        known = self._addresses.get(value)
        if known is not None:
            return known
        if not value:
            return value
        at = value.rfind("@")
        local, dom = (value, None) if at < 0 else (value[:at], value[at + 1 :])
        low = value.lower()
        out = self._recase(self.token(b"address", low), local, low) if local else ""
        if dom is not None:
            out += "@" + self.domain(dom)
        return self._remember(self._addresses, value, out)

    def user(self, value: str) -> str:
        """A SASL or Dovecot login: ``u`` and a token, or an address's pseudonym when it is one."""
        known = self._users.get(value)
        if known is not None:
            return known
        if not value:
            return value
        if "@" in value:
            out = self.address(value)
        else:
            low = value.lower()
            out = self._recase("u" + self.token(b"user", low), value, low)
        return self._remember(self._users, value, out)

    def helo(self, value: str) -> str:
        """A HELO name: an address literal (``[192.0.2.1]``) or a name."""
        if value.startswith("[") and value.endswith("]"):
            return "[" + self.literal(value[1:-1]) + "]"
        return self.name(value)

    def message_id(self, value: str) -> str:
        """``m<token>@<the right side's name pseudonym>``; the token is keyed on the whole ID."""
        known = self._message_ids.get(value)
        if known is not None:
            return known
        if not value:
            return value
        at = value.rfind("@")
        out = "m" + self.token(b"msgid", value)
        if at >= 0:
            out += "@" + self.name(value[at + 1 :])
        return self._remember(self._message_ids, value, out)

    def session(self, value: str) -> str:
        """A Dovecot session ID (it holds the client's IP address): ``s<token>``."""
        return "s" + self.token(b"session", value) if value else value

    def text(self, value: str) -> str:
        """Free text a header or body check logged: ``x<token>``."""
        return "x" + self.token(b"text", value) if value else value

    def header(self, value: str) -> str:
        """A logged header: its name kept, its value a token (``Subject: x<token>``)."""
        name, sep, rest = value.partition(":")
        if sep and _HEADER_NAME_RE.fullmatch(name):
            return name + ": " + self.text(rest.strip())
        return self.text(value)

    def uid(self, value: str) -> str:
        """A local user's uid: system accounts (below 1000) kept, people's a keyed 7-digit number."""
        if int(value) < 1000:
            return value
        return str(1000000 + int.from_bytes(self.digest(b"uid", value)[:8], "big") % 9000000)


# -- lines ----------------------------------------------------------------------------------------


def _relay_parts(relay: str) -> tuple[str, str] | None:
    """(host, address) of ``host[address]:port``; None for a transport name like ``local``."""
    start = relay.find("[")
    end = relay.find("]", start)
    if start < 0 or end < 0:
        return None
    return relay[:start], relay[start + 1 : end]


class Rewriter:
    """Rewrites log lines with one set of pseudonyms."""

    def __init__(self, pseudonyms: Pseudonyms, syslog_name: str | None = None) -> None:
        self.p = pseudonyms
        self._scan = _scanner().sub
        self.events = EventParser(syslog_name)
        p = pseudonyms
        self._kinds: dict[str, Callable[[str], str]] = {
            "address": p.address, "helo": p.helo, "message_id": p.message_id, "user": p.user,
            "session": p.session,
        }  # fmt: skip
        self._rules: dict[str, Callable[[re.Match[str]], str]] = {
            "bracketed": lambda m: m["key_bracketed"] + self._keyed(m["key_bracketed"], m["bracketed"]),
            "bare": lambda m: m["key_bare"] + self._keyed(m["key_bare"], m["bare"]),
            "name": lambda m: m["key_name"] + p.name(m["name"]),
            "local_user": lambda m: m["key_user"] + p.user(m["local_user"]),
            "uid": lambda m: "uid=" + p.uid(m["uid"]),
            "greeting": lambda m: m["key_greeting"] + p.helo(m["greeting"]),
            "home": lambda m: m["key_home"] + p.user(m["home"]),
            "service_user": self._service_user,
            "service_session": self._service_user,
            "bracket": self._host_ip,
            "domain": lambda m: p.address(m["word"] + "@" + m["domain"]),
            "auth_ip": lambda m: m["word"] + "(" + p.user(m["auth_user"]) + "," + self._ip(m["auth_ip"]),
            "spaced_host": self._spaced_host,
            "ip4": lambda m: self._ip(m["ip4"]),
            "ip6": lambda m: self._ip(m["ip6"]),
            "fqdn": lambda m: p.known_name(m["fqdn"]),
            "dmarc_domain": lambda m: p.domain(m["dmarc_domain"]),
        }
        self._scrubbed: dict[str, str] = {}
        self._fast: dict[type, Callable[[Any, str], str | None]] = {
            Removed: self._removed,
            Queued: self._queued,
            MessageId: self._message_id,
            Connect: self._session_edge,
            Disconnect: self._session_edge,
            Arrival: self._arrival,
            Delivery: self._delivery,
            Screen: self._screen,
            Tls: self._tls,
            AuthFailure: self._sasl_failure,
        }
        # the fields of a client= line that name someone
        self._arrival_fields: dict[str, Callable[[str], str]] = {
            "sasl_username": p.user, "sasl_sender": p.address, "orig_client": self._orig_client,
        }  # fmt: skip
        # the values each event type holds, by their kind: checked after the scan
        self._fields: dict[type, tuple[tuple[str, Callable[[str], str]], ...]] = {}
        host, ip, addr, user = (p.name, "client_host"), (self._ip, "client_ip"), p.address, p.user
        for kind, names in (
            (Connect, (host, ip)),
            (Disconnect, (host, ip)),
            (SessionProblem, (host, ip)),
            (Arrival, (host, ip, (user, "sasl_username"))),
            (Pickup, ((addr, "sender"),)),
            (Queued, ((addr, "sender"),)),
            (Expired, ((addr, "sender"),)),
            (Delivery, ((addr, "to"), (addr, "orig_to"))),
            (Reject, (host, ip, (addr, "sender"), (addr, "recipient"), (p.helo, "helo"))),
            (AuthFailure, (host, ip, (user, "username"))),
            (Login, (ip, (user, "username"))),
            (Tls, ((p.name, "peer_host"), (self._ip, "peer_ip"))),
            (Screen, (ip,)),
        ):
            self._fields[kind] = tuple((attr, fn) for fn, attr in names)

    def _ip(self, text: str) -> str:
        return self.p.ip(text) or text

    def _keyed(self, key: str, value: str) -> str:
        """The pseudonym of a ``key=value``'s value, by the kind of value the key names."""
        return self._kinds[_KIND_OF_KEY[key.rstrip("=<: ")]](value)

    def _service_user(self, m: re.Match[str]) -> str:
        out = m["service"] + self.p.user(m["service_user"]) + ")"
        if m["service_pid"] is not None:
            out += "<" + m["service_pid"] + "><" + self.p.session(m["service_session"]) + ">"
        return out

    def _spaced_host(self, m: re.Match[str]) -> str:
        """A name before `` [address]`` (opendkim's ``mail.example.org [192.0.2.1] not internal``,
        a Received: header's ``(mail.example.org [192.0.2.1])``); a plain word, like "host" in
        "Client host [192.0.2.1] blocked", is no name."""
        word = m["word"]
        if "." in word or "-" in word or any(c.isdigit() for c in word):
            return self.p.name(word)
        return word

    def _host_ip(self, m: re.Match[str]) -> str:
        new = self._bracketed(m["word"], m["bracket"])
        return m[0] if new is None else new

    def _bracketed(self, host: str, inside: str) -> str | None:
        """``host[address]`` with both replaced; None when the brackets hold no address. A
        socket path (``[private/dovecot-lmtp]``) is kept, and so is ``[unknown]``."""
        if "/" in inside or inside == "" or inside.lower() == "unknown":
            new: str | None = inside
        elif inside[:5].lower() == "ipv6:":
            new = self.p.literal(inside)
        else:
            new = self.p.ip(inside)
            port = _IP_PORT_RE.fullmatch(inside) if new is None else None
            if port is not None:  # old Postfix versions wrote a port after a dot
                new = (self.p.ip(port[1]) or port[1]) + port[2]
        if new is None:
            return None
        return self.p.name(host) + "[" + new + "]"

    def scrub(self, text: str) -> str:
        """Replace everything the scan recognises in a piece of text."""
        known = self._scrubbed.get(text)
        if known is not None:
            return known
        self.p.unresolved = False
        out = self._scan(self._rule, text)
        # the same texts come back (replies, notices): remembered, unless a dotted word in
        # them may still turn out to be a name
        if not self.p.unresolved:
            if len(self._scrubbed) > 50000:
                self._scrubbed.clear()
            self._scrubbed[text] = out
        return out

    def _rule(self, m: re.Match[str]) -> str:
        return self._rules[m.lastgroup or ""](m)

    def rewrite(self, text: str, parser: LineParser) -> str:
        """A raw log line, anonymised; its header (time, host, tag) is kept as it is."""
        line = parser.parse(text)
        if line is None or not text.endswith(line.payload):
            return self.scrub(text)
        return text[: len(text) - len(line.payload)] + self.payload(line)

    def line(self, line: Line) -> Line:
        """A parsed line with its payload anonymised (for the history database)."""
        return Line(line.ts, line.host, line.program, line.pid, self.payload(line), line.fmt)

    def payload(self, line: Line) -> str:
        payload = line.payload
        ev = self.events.parse(line)
        if ev is None:
            return self.scrub(payload)
        fast = self._fast.get(type(ev))
        if fast is not None:
            out = fast(ev, payload)
            if out is not None:
                return out
        span = self._special(ev, payload)
        if span is None:
            out = self.scrub(payload)
        else:
            start, end, replacement = span
            out = self.scrub(payload[:start]) + replacement + self.scrub(payload[end:])
        return self._leftovers(ev, out)

    # The commonest lines, taken apart where the parser takes them apart: each value the
    # parser read is replaced in place, so nothing is left over, and only free text (a
    # reply) is scanned.

    def _removed(self, ev: Event, payload: str) -> str:
        return payload  # "QID: removed" and nothing else

    def _queued(self, ev: Event, payload: str) -> str | None:
        split = split_qid(payload)
        m = _QUEUED_RE.match(split[1]) if split is not None else None
        if split is None or m is None:
            return None
        return _splice(payload, len(payload) - len(split[1]), m, [(1, self.p.address(m[1]))], self._tail)

    def _message_id(self, ev: Event, payload: str) -> str | None:
        span = self._special(ev, payload)
        return None if span is None else payload[: span[0]] + span[2]

    def _session_edge(self, ev: Event, payload: str) -> str | None:
        """``connect from host[ip]`` and ``disconnect from host[ip] ehlo=1 ... commands=5``."""
        start = payload.find(" from ") + 6
        i = payload.find("[", start)
        j = payload.find("]", i)
        new = self._bracketed(payload[start:i], payload[i + 1 : j]) if start > 5 and 0 <= i < j else None
        if new is None:
            return None
        return payload[:start] + new + self._tail(payload[j + 1 :])

    def _arrival(self, ev: Event, payload: str) -> str | None:
        """``QID: client=host[ip], sasl_method=PLAIN, sasl_username=..., orig_client=...``: the
        fields are cut where the parser cuts them (a login may hold spaces)."""
        m = _CLIENT_RE.match(payload, max(payload.find("client="), 0))
        new = self._bracketed(m[1], m[2]) if m is not None else None
        if m is None or new is None:
            return None
        out = [payload[: m.start(1)], new]
        done = m.end(2) + 1
        for field in _KV_RE.finditer(payload, m.start(3)):
            rewrite = self._arrival_fields.get(field[1])
            if rewrite is not None:
                out += [self._tail(payload[done : field.start(2)]), rewrite(field[2])]
                done = field.end(2)
        out.append(self._tail(payload[done:]))
        return "".join(out)

    def _orig_client(self, value: str) -> str:
        m = _BRACKETS_RE.search(value)
        new = self._bracketed(value[: m.start()], m[1]) if m is not None else None
        return self.scrub(value) if m is None or new is None else new + self.scrub(value[m.end() :])

    def _sasl_failure(self, ev: Event, payload: str) -> str | None:
        """smtpd's ``warning: host[ip]: SASL LOGIN authentication failed: ..., sasl_username=...``,
        cut where the parser cuts it (the login is what a client sent: it may hold anything)."""
        m = _SASL_FAIL_RE.match(payload, max(payload.find("warning: "), 0))
        new = self._bracketed(m[1], m[2]) if m is not None else None
        if m is None or new is None:
            return None
        reason = m[4] or ""
        at = m.start(4) if m[4] is not None else m.end()
        user = _SASL_USER_RE.search(reason)
        if user is None:
            return payload[: m.start(1)] + new + payload[m.end(2) + 1 : at] + self.scrub(reason)
        login = user[1].rstrip(",")
        return (payload[: m.start(1)] + new + payload[m.end(2) + 1 : at] + self.scrub(reason[: user.start(1)])
                + self.p.user(login) + self._tail(reason[user.start(1) + len(login) :]))  # fmt: skip

    def _delivery(self, ev: Event, payload: str) -> str | None:
        split = split_qid(payload)
        m = _DELIVERY_RE.match(split[1]) if split is not None else None
        if split is None or m is None:
            return None
        # to, orig_to, relay and the reply (groups 1, 2, 3 and 8)
        edits = [(1, self.p.address(m[1])), (3, self._relay(m[3]))]
        if m[2] is not None:
            edits.append((2, self.p.address(m[2])))
        if m[8] is not None:
            edits.append((8, self.scrub(m[8])))
        # a reply may name the recipient otherwise: "<bob>: unknown user", a domain alone
        return self._leftovers(ev, _splice(payload, len(payload) - len(split[1]), m, edits, self._tail))

    def _screen(self, ev: Any, payload: str) -> str | None:
        """postscreen's verdicts (``CONNECT from [ip]:port to [ip]:25``, ``PASS OLD [ip]:port``
        ...) hold addresses in brackets and nothing else; dnsblog's ``addr IP listed by ...``."""
        if ev.action in _SCREEN_PLAIN:
            return _BRACKETS_RE.sub(self._bracket_only, payload)
        if ev.action == "LISTED" and payload.startswith("addr " + ev.client_ip + " "):
            return "addr " + self._ip(ev.client_ip) + payload[5 + len(ev.client_ip) :]
        return None

    def _bracket_only(self, m: re.Match[str]) -> str:
        return self._bracketed("", m[1]) or m[0]

    def _tls(self, ev: Event, payload: str) -> str | None:
        """``... TLS connection established from|to host[ip]: TLSv1.3 with cipher ...``: the
        rest describes the cipher."""
        m = _TLS_RE.match(payload)
        new = self._bracketed(m[3], m[4]) if m is not None else None
        if m is None or new is None:
            return None
        return payload[: m.start(3)] + new + payload[m.end(4) + 1 :]

    def _tail(self, text: str) -> str:
        """The rest of a line after its values: scanned unless it is what Postfix always writes."""
        if text in _PLAIN_TAILS or _COMMANDS_RE.fullmatch(text):
            return text
        return self.scrub(text)

    def _relay(self, relay: str) -> str:
        """``host[address]:port`` with both replaced; a transport name (local, none ...) kept."""
        i = relay.find("[")
        j = relay.find("]", i)
        new = self._bracketed(relay[:i], relay[i + 1 : j]) if 0 <= i < j else None
        return relay if new is None else new + relay[j + 1 :]

    def _special(self, ev: Event, payload: str) -> tuple[int, int, str] | None:
        """A span of the payload the scan cannot take apart, and its replacement: a
        Message-ID (it may hold anything, spaces too) or a header or body check's text."""
        if isinstance(ev, MessageId):
            start = payload.find("message-id=") + 11
            value = payload[start:]
            inner = value.strip()
            bracketed = inner.startswith("<") and inner.endswith(">")
            new = self.p.message_id(ev.message_id)
            new = "<" + new + ">" if bracketed else new
            lead = value[: len(value) - len(value.lstrip())]
            trail = value[len(value.rstrip()) :]
            return start, len(payload), lead + new + trail
        if isinstance(ev, Reject) and ev.stage in ("header", "body") and ev.tag.daemon == "cleanup":
            split = split_qid(payload)
            if split is None:
                return None
            rest = split[1]
            am = _CLEANUP_ACTION_RE.match(rest)
            if am is None:
                return None
            # where the parser cuts the text off (postlens.events.postfix.parse_cleanup)
            tail = am[3]
            start = len(payload) - len(rest) + am.start(3)
            hm = _FROM_CLAUSE_RE.search(tail)
            end = start + (hm.start() if hm is not None else len(tail.partition(";")[0]))
            what = payload[start:end]
            if not what.strip():
                return None
            new = self.p.header(what) if ev.stage == "header" else self.p.text(what)
            return start, end, new
        return None

    def _leftovers(self, ev: Event, out: str) -> str:
        """Replace any value the parser took from the line that the scan left (a recipient
        without a domain in a reply text, a host name without brackets ...)."""
        for attr, fn in self._fields.get(type(ev), ()):
            value = getattr(ev, attr)
            if value:
                out = _replace(out, value, fn)
                if fn == self.p.address and "@" in value:
                    # a reply may name the domain alone: "Sender address rejected: match example.com"
                    out = _replace(out, value[value.rfind("@") + 1 :], self.p.domain)
        if isinstance(ev, Delivery):
            out = self._relay_leftover(ev.relay, out)
        elif isinstance(ev, ConnectFailure):
            out = self._relay_leftover(ev.peer, out)
        return out

    def _relay_leftover(self, relay: str, out: str) -> str:
        parts = _relay_parts(relay)
        if parts is None:
            return out
        out = _replace(out, parts[0], self.p.name)
        return out if "/" in parts[1] else _replace(out, parts[1], self._ip)


def _splice(
    payload: str, at: int, m: re.Match[str], edits: list[tuple[int, str]], tail: Callable[[str], str]
) -> str:
    """``payload`` with the groups of ``m`` (a match at ``at``) replaced as ``edits`` say,
    and the text after the match through ``tail``."""
    out = []
    done = 0
    for group, new in sorted(edits, key=lambda edit: m.start(edit[0])):
        out += [payload[done : at + m.start(group)], new]
        done = at + m.end(group)
    out += [payload[done : at + m.end()], tail(payload[at + m.end() :])]
    return "".join(out)


def _replace(text: str, value: str, pseudonym: Callable[[str], str]) -> str:
    """``text`` with ``value``, wherever it stands alone, replaced by its pseudonym."""
    if not value or value not in text:
        return text
    new = pseudonym(value)
    if new == value:
        return text
    return re.sub(_TOKEN_RE.format(re.escape(value)), new.replace("\\", r"\\"), text)


# -- files --------------------------------------------------------------------------------------


@dataclass(slots=True)
class AnonymizeResult:
    inputs: int = 0  # sources found
    lines: int = 0  # lines written


def _writer(raw: IO[bytes], path: str) -> IO[bytes]:
    """A compressing writer on ``raw`` when ``path`` ends in .gz, .bz2, .xz or .zst."""
    low = path.lower()
    if low.endswith(".gz"):
        try:
            from isal import igzip

            return igzip.IGzipFile(fileobj=raw, mode="wb")  # type: ignore[return-value]
        except ImportError:  # pragma: no cover - isal is a dependency; this is a fallback
            import gzip

            return gzip.GzipFile(fileobj=raw, mode="wb")  # type: ignore[return-value]
    if low.endswith(".bz2"):
        return bz2.BZ2File(raw, "wb")  # type: ignore[return-value]
    if low.endswith(".xz"):
        return lzma.LZMAFile(raw, "wb")  # type: ignore[return-value]
    if low.endswith((".zst", ".zstd")):
        import zstandard

        return zstandard.ZstdCompressor().stream_writer(raw, closefd=False)  # type: ignore[return-value]
    return raw


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[bytes]]:
    """Standard output, or a file (compressed by its name) that appears whole or not at all."""
    if path is None or path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with contextlib.ExitStack() as stack:
        if os.path.exists(path) and not os.path.isfile(path):
            # a device or a pipe (/dev/null, a FIFO): replacing it with a file would break it
            raw = stack.enter_context(open(path, "wb"))
        else:
            raw = stack.enter_context(open(stack.enter_context(output_path(path)), "wb"))
        out = _writer(raw, path)
        try:
            yield out
        finally:
            if out is not raw:
                out.close()


def _lines(
    rewriter: Rewriter, sources: list[Source], year: int | None, tz: Any, problems: list[InputError]
) -> Iterator[str]:
    for parser, text in with_parsers(each_line(sources, problems), year, tz):
        yield rewriter.rewrite(text, parser)


def anonymize_files(
    paths: list[str],
    output: str | None,
    key: bytes,
    options: AnonymizeOptions | None = None,
    *,
    year: int | None = None,
    tz: str | None = None,
    syslog_name: str | None = None,
) -> tuple[AnonymizeResult, list[InputError]]:
    """Write the anonymised lines of every input, in the report's order, to ``output``."""
    rewriter = Rewriter(Pseudonyms(key, options), syslog_name)
    sources, problems = expand(paths)
    result = AnonymizeResult(inputs=len(sources))
    zone_ = zone(tz)
    try:
        with _output(output) as out:
            batch: list[str] = []
            for text in _lines(rewriter, sources, year, zone_, problems):
                batch.append(text)
                if len(batch) >= 4096:
                    _write(out, batch, result)
            _write(out, batch, result)
    except OSError as e:  # reading problems are caught per input: this is the output
        where = output if output not in (None, "-") else "standard output"
        raise UsageError(f"{where}: {e.strerror or e}") from e
    return result, problems


def _write(out: IO[bytes], batch: list[str], result: AnonymizeResult) -> None:
    if batch:
        out.write(("\n".join(batch) + "\n").encode("utf-8"))
        result.lines += len(batch)
        batch.clear()


# -- the history database ----------------------------------------------------------------------


def history_rewriter(settings: dict[str, dict[str, Any]]) -> Callable[[Line], Line] | None:
    """What ``key_file`` in the settings' [history] asks of the lines stored: pseudonyms made
    with that key (and [anonymize]'s own_domains and keep_nets), or None to store them as read."""
    path = config.section(settings, "history").get("key_file")
    if not path:
        return None
    conf = config.section(settings, "anonymize")
    options = AnonymizeOptions(
        own_domains=tuple(conf.get("own_domains", ())), keep_nets=tuple(conf.get("keep_nets", ()))
    )
    return Rewriter(Pseudonyms(load_key(str(path), setting="[history] key_file"), options)).line
