"""Postfix payloads into events: one parser per daemon, chosen by the program tag.

The parsers look at the text after ``postfix/DAEMON[PID]: ``. A payload that starts
with a queue ID (short hex or long form) or ``NOQUEUE`` is split off first.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

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
from postlens.lines import Line, Tag, _fastparse

# the C fast paths, None in a plain-Python install (Final: held in C variables when compiled)
_C_SPLIT_QID: Final = None if _fastparse is None else _fastparse.split_qid
_C_CLIENT: Final = None if _fastparse is None else _fastparse.client
_C_QUEUED: Final = None if _fastparse is None else _fastparse.queued
_C_DELIVERY: Final = None if _fastparse is None else _fastparse.delivery

_LONG_QID_RE: Final = re.compile(r"[0-9A-Za-z]{10,}z[0-9A-Za-z]{2,}$")
_HEX: Final = "0123456789ABCDEF"


def split_qid(payload: str) -> tuple[str, str] | None:
    """``(queue ID, rest)`` when the payload starts with ``QID: `` (short, long or NOQUEUE)."""
    if _C_SPLIT_QID is not None:
        got = _C_SPLIT_QID(payload)
        if got is not None:
            return got
    return split_qid_python(payload)


def split_qid_python(payload: str) -> tuple[str, str] | None:
    i = payload.find(": ", 5, 26)
    if i < 0:
        return None
    tok = payload[:i]
    if (i >= 6 and not tok.strip(_HEX)) or tok == "NOQUEUE" or (i >= 13 and _LONG_QID_RE.match(tok)):
        return tok, payload[i + 2 :]
    return None


_HOST_IP: Final = r"([^\s\[]*)\[([^\]]*)\](?::\d+)?"
_HOST_IP_RE: Final = re.compile(_HOST_IP)
_DIAG_LEVELS: Final = ("warning", "error", "fatal", "panic")

_PROBLEM_RE: Final = re.compile(
    r"(lost connection|timeout|too many errors|improper command pipelining) after (\S+)"
    r"(?: \((?:approximately )?\d+ bytes\))? from " + _HOST_IP
)
_CLIENT_RE: Final = re.compile(r"client=" + _HOST_IP + r"(.*)$")
_KV_RE: Final = re.compile(r", (\w+)=([^,]*)")
_REJECT_RE: Final = re.compile(
    r"(reject|reject_warning|hold|discard|filter|redirect|milter-reject|milter-hold|"
    r"milter-discard|proxy-reject|proxy-accept|warning|replace|prepend|info|bcc|milter-header|"
    r"header-redirect|milter-redirect): (\S+)(?: from " + _HOST_IP + r")?:? ?(.*)$"
)
_CLEANUP_ACTION_RE: Final = re.compile(
    r"(reject|warning|hold|discard|filter|redirect|replace|prepend|info|bcc|milter-reject|"
    r"milter-hold|milter-discard|milter-redirect|milter-header-[a-z]+|strip|proxy-reject): "
    r"(header|body|END-OF-MESSAGE|CONNECT|HELO|MAIL|RCPT|DATA)\b ?(.*)$"
)
# an address between <>: a quoted local part may hold ">" ("<img ...>"@example.com)
_ADDR: Final = r'([^>"]*(?:"[^"]*"[^>"]*)*)'
_REPLY_RE: Final = re.compile(r"(\d{3})[ -](?:(\d\.\d{1,3}\.\d{1,3}) )?(.*)$", re.S)
# smtpd and cleanup separate the fields with spaces, postscreen with ", "
_ENVELOPE_RE: Final = re.compile(
    r"(?:;|^) ?from=<" + _ADDR + r">(?:,? to=<" + _ADDR + r">)?(?:,? proto=[^\s,]+)?(?:,? helo=<([^>]*)>)?:?"
)
# delay= is checked by float() after the match: a stricter pattern costs every line a third more
_DELIVERY_RE: Final = re.compile(
    r"to=<" + _ADDR + r">, (?:orig_to=<" + _ADDR + r">, )?relay=([^,]+), (?:conn_use=\d+, )?"
    r"delay=([\d.]+), (?:delays=([\d./]+), )?(?:dsn=([\d.]+), )?status=(\S+)(?: \((.*)\))?"
)
_QUEUED_RE: Final = re.compile(r"from=<" + _ADDR + r">, size=(\d+), nrcpt=(\d+)")
_EXPIRED_RE: Final = re.compile(r"from=<" + _ADDR + r">, status=(force-expired|expired), returned to sender")
_PICKUP_RE: Final = re.compile(r"(?:uid=(\d+) )?(?:from|sender)=<" + _ADDR + ">")
_NOTICE_RE: Final = re.compile(
    r"(sender|postmaster) (non-delivery|delivery status|delay|success) notification: (\S+)"
)
_TLS_RE: Final = re.compile(
    r"(Anonymous|Untrusted|Trusted|Verified) TLS connection established (from|to) "
    + _HOST_IP
    + r":? (\S+) with cipher (\S+)"
)
_SASL_FAIL_RE: Final = re.compile(
    r"warning: " + _HOST_IP + r": SASL (\S+) authentication failed(?:: ?(.*))?$"
)
_SASL_USER_RE: Final = re.compile(r"sasl_username=(\S+)")
_SCREEN_RE: Final = re.compile(
    r"([A-Z][A-Z -]*[A-Z])(?: (?:\d+ )?(?:after [\d.]+ )?(?:from|for))? \[([^\]]*)\]:\d+(.*)$"
)
_CONNECT_TO_RE: Final = re.compile(r"connect to ([^:\s]+?(?:\[[^\]]*\])?)(?::\d+)?: (.+?)(?: \(port \d+\))?$")
_DNSBLOG_RE: Final = re.compile(r"addr (\S+) listed by domain (\S+) as (\S+)")

# Lines a daemon writes that carry nothing to count: recognised, and kept as Info.
_INFO_PREFIXES: Final = (
    "statistics:", "setting up TLS", "SSL_accept error", "SSL_connect error", "TLS SNI",
    "connect to ", "enabling PIX", "host ", "lost connection with", "conversation with",
    "Server certificate", "server certificate", "certificate verification", "Host offered",
    "discarding EHLO", "sender=<", "skipped, still being delivered", "breaking line",
    "cache ", "delivery temporarily suspended", "initializing the server-side TLS",
    "Untrusted TLS", "Anonymous TLS", "Trusted TLS", "Verified TLS", "daemon started",
    "reload -- version", "terminating on signal", "master exit time", "DISCONNECT",
    "CONNECT from", "PASS ", "Deleted:", "Placed on hold:", "Released from hold:", "Requeued:",
    "table ", "cannot load Certificate",
)  # fmt: skip


def _diagnostic(line: Line, tag: Tag, payload: str, qid: str) -> Event | None:
    head, sep, rest = payload.partition(": ")
    if sep and head in _DIAG_LEVELS:
        if head == "warning" and tag.daemon in ("smtpd", "postscreen") and "SASL" in rest:
            auth = _sasl_failure(line, tag, payload)
            if auth is not None:
                return auth
        return Diagnostic(line, tag, head, rest, qid)
    return None


def _sasl_failure(line: Line, tag: Tag, payload: str) -> AuthFailure | None:
    m = _SASL_FAIL_RE.match(payload)
    if m is None:
        return None
    host, ip, method, reason = m.groups()
    reason = reason or ""
    user = ""
    um = _SASL_USER_RE.search(reason)
    if um is not None:
        user = um.group(1).rstrip(",")
        reason = reason[: um.start()].rstrip(", ")
    return AuthFailure(line, tag, host, ip, method.upper(), user, reason.strip())


def parse_reply(text: str) -> tuple[str, str, str]:
    """Split ``550 5.1.1 <x>: Recipient address rejected: ...`` into code, DSN and text."""
    m = _REPLY_RE.match(text)
    if m is None:
        return "", "", text
    return m.group(1), m.group(2) or "", m.group(3)


def _reject(line: Line, tag: Tag, qid: str, action: str, stage: str, host: str, ip: str,
            rest: str) -> Reject:  # fmt: skip
    sender = recipient = helo = ""
    env = _ENVELOPE_RE.search(rest)
    if env is not None:
        sender, recipient, helo = env.group(1), env.group(2) or "", env.group(3) or ""
        reply = rest[: env.start()] + rest[env.end() :]
    else:
        reply = rest
    code, dsn, reason = parse_reply(reply.strip())
    if not code and not dsn:
        # cleanup writes "... helo=<x>: 5.7.1 text": the reply follows the envelope
        m = re.match(r"(\d\.\d{1,3}\.\d{1,3}) (.*)$", reason, re.S)
        if m is not None:
            dsn, reason = m.group(1), m.group(2)
    return Reject(line, tag, qid, action, stage, host, ip, code, dsn, reason.strip(),
                  sender, recipient, helo)  # fmt: skip


def _smtpd_reject(line: Line, tag: Tag, qid: str, rest: str) -> Event | None:
    m = _REJECT_RE.match(rest)
    if m is None:
        return None
    action, stage, host, ip, tail = m.groups()
    if ip is None and tag.daemon == "postscreen":
        sm = re.match(r"(\S+) from \[([^\]]*)\]:\d+: (.*)$", rest.split(": ", 1)[1])
        if sm is not None:
            stage, ip, tail = sm.groups()
            host = ""
    return _reject(line, tag, qid, action, stage, host or "", ip or "", tail)


def _host_ip(text: str) -> tuple[str, str] | None:
    """``host[ip]`` at the start of ``text``, without a regex (the commonest smtpd lines)."""
    i = text.find("[")
    j = text.find("]", i)
    if i < 0 or j < 0 or " " in text[:i]:
        return None
    return text[:i], text[i + 1 : j]


def parse_smtpd(line: Line, tag: Tag, payload: str) -> Event:
    c = payload[0:1]
    if c == "c" and payload.startswith("connect from "):
        hi = _host_ip(payload[13:])
        if hi is not None:
            return Connect(line, tag, hi[0], hi[1])
    elif c == "d" and payload.startswith("disconnect from "):
        hi = _host_ip(payload[16:])
        if hi is not None:
            end = payload.find(" ", 16)
            return Disconnect(line, tag, hi[0], hi[1], payload[end + 1 :] if end > 0 else "")
    m = split_qid(payload)
    if m is not None:
        qid = m[0]
        rest = m[1]
        if qid == "NOQUEUE":
            qid = ""
        if rest.startswith("client="):
            cm = client_fields(rest)
            if cm is not None:
                host, ip, tail = cm
                kv = dict(_KV_RE.findall(tail)) if tail else {}
                return Arrival(line, tag, qid, host, ip, kv.get("sasl_method", ""),
                               kv.get("sasl_username", ""), kv.get("orig_client", ""),
                               kv.get("orig_queue_id", ""))  # fmt: skip
        ev = _smtpd_reject(line, tag, qid, rest)
        if ev is not None:
            return ev
        diag = _diagnostic(line, tag, rest, qid)
        if diag is not None:
            return diag
        if rest.startswith(_INFO_PREFIXES) or _is_debug(rest):
            return Info(line, tag, qid)
        return Unknown(line, tag, qid)
    if c == "w":
        diag = _diagnostic(line, tag, payload, "")
        if diag is not None:
            return diag
    elif c in "AUTV":
        tm = _TLS_RE.match(payload)
        if tm is not None:
            return _tls(line, tag, tm)
    pm = _PROBLEM_RE.match(payload)
    if pm is not None:
        return SessionProblem(line, tag, *pm.groups())
    diag = _diagnostic(line, tag, payload, "")
    if diag is not None:
        return diag
    if tag.daemon == "postscreen" or tag.daemon == "tlsproxy":
        return _screen(line, tag, payload)
    if payload.startswith(_INFO_PREFIXES) or _HOST_IP_RE.match(payload) or _is_debug(payload):
        return Info(line, tag, "")
    return Unknown(line, tag, "")


def client_fields(rest: str) -> tuple[str, str, str] | None:
    """``client=host[ip]:port, more`` into host, IP and the rest."""
    if _C_CLIENT is not None:
        got = _C_CLIENT(rest)
        if got is not None:
            return got
    return client_fields_python(rest)


def client_fields_python(rest: str) -> tuple[str, str, str] | None:
    cm = _CLIENT_RE.match(rest)
    if cm is None:
        return None
    host, ip, tail = cm.groups()
    return host, ip, tail


def _tls(line: Line, tag: Tag, m: re.Match[str]) -> Tls:
    trust, direction, host, ip, proto, cipher = m.groups()
    return Tls(line, tag, "in" if direction == "from" else "out", trust, host, ip, proto, cipher)


def _screen(line: Line, tag: Tag, payload: str) -> Event:
    if payload.startswith("NOQUEUE: "):
        ev = _smtpd_reject(line, tag, "", payload[9:])
        if ev is not None:
            return ev
    if payload.startswith("CONNECT from "):
        m = re.match(r"CONNECT from \[([^\]]*)\]:\d+", payload)
        if m is not None:
            return Screen(line, tag, "CONNECT", m.group(1), "")
    m = _SCREEN_RE.match(payload)
    if m is not None:
        action, ip, detail = m.groups()
        if action.startswith("DNSBL rank"):
            action, detail = "DNSBL", action[11:]
        return Screen(line, tag, action, ip, detail.lstrip(": ").strip())
    m = re.match(r"(DNSBL rank) (\d+) for \[([^\]]*)\]", payload)
    if m is not None:
        return Screen(line, tag, "DNSBL", m.group(3), m.group(2))
    tm = _TLS_RE.match(payload)
    if tm is not None:
        return _tls(line, tag, tm)
    if payload.startswith(_INFO_PREFIXES):
        return Info(line, tag, "")
    return Unknown(line, tag, "")


def parse_postscreen(line: Line, tag: Tag, payload: str) -> Event:
    diag = _diagnostic(line, tag, payload, "")
    if diag is not None:
        return diag
    return _screen(line, tag, payload)


def parse_dnsblog(line: Line, tag: Tag, payload: str) -> Event:
    m = _DNSBLOG_RE.match(payload)
    if m is not None:
        return Screen(line, tag, "LISTED", m.group(1), m.group(2) + " " + m.group(3))
    return _generic(line, tag, payload)


def parse_cleanup(line: Line, tag: Tag, payload: str) -> Event:
    m = split_qid(payload)
    if m is None:
        return _generic(line, tag, payload)
    qid = m[0]
    rest = m[1]
    if rest.startswith("message-id="):
        mid = rest[11:].strip()
        if mid.startswith("<") and mid.endswith(">"):
            mid = mid[1:-1]
        return MessageId(line, tag, qid, mid)
    am = _CLEANUP_ACTION_RE.match(rest)
    if am is not None:
        action, stage, tail = am.groups()
        hm = re.search(r" from " + _HOST_IP + r"|\bfrom (local)\b", tail)
        host = ip = ""
        if hm is not None:
            host, ip = (hm.group(1) or "", hm.group(2) or "") if hm.group(3) is None else ("local", "")
            what = tail[: hm.start()]
            tail = tail[hm.end() :]
        else:
            what, _, tail = tail.partition(";")
            tail = ";" + tail if tail else ""
        ev = _reject(line, tag, "" if qid == "NOQUEUE" else qid, action, stage, host, ip, tail)
        if not ev.reason:
            ev.reason = what.strip()
        else:
            ev.reason = (what.strip() + ": " + ev.reason) if what.strip() else ev.reason
        return ev
    if rest.startswith("resent-message-id=") or rest.startswith("milter-"):
        return Info(line, tag, qid)
    return _qid_generic(line, tag, qid, rest)


def parse_pickup(line: Line, tag: Tag, payload: str) -> Event:
    m = split_qid(payload)
    if m is not None:
        rest = m[1]
        pm = _PICKUP_RE.match(rest)
        if pm is not None:
            return Pickup(line, tag, m[0], pm.group(1) or "", pm.group(2))
        return _qid_generic(line, tag, m[0], rest)
    return _generic(line, tag, payload)


def parse_qmgr(line: Line, tag: Tag, payload: str) -> Event:
    m = split_qid(payload)
    if m is None:
        return _generic(line, tag, payload)
    qid = m[0]
    rest = m[1]
    if rest == "removed":
        return Removed(line, tag, qid)
    if rest.startswith("to=<"):
        return parse_delivery(line, tag, payload)
    if rest.startswith("from=<"):
        qm = queued_fields(rest)
        if qm is not None:
            return Queued(line, tag, qid, qm[0], qm[1], qm[2])
        em = _EXPIRED_RE.match(rest)
        if em is not None:
            return Expired(line, tag, qid, em.group(1), em.group(2) == "force-expired")
    return _qid_generic(line, tag, qid, rest)


def queued_fields(rest: str) -> tuple[str, int, int] | None:
    """qmgr's ``from=<sender>, size=N, nrcpt=N`` into sender, size and recipient count."""
    if _C_QUEUED is not None:
        got = _C_QUEUED(rest)
        if got is not None:
            return got
    return queued_fields_python(rest)


def queued_fields_python(rest: str) -> tuple[str, int, int] | None:
    qm = _QUEUED_RE.match(rest)
    if qm is None:
        return None
    sender, size, nrcpt = qm.groups()
    return sender, int(size), int(nrcpt)


def _number(text: str) -> float | None:
    """A number Postfix wrote (``0.15``, ``5129``), or None for one it did not (``1..2``)."""
    try:
        return float(text)
    except ValueError:
        return None


def parse_delivery(line: Line, tag: Tag, payload: str) -> Event:
    """smtp, lmtp, local, virtual, pipe, error, retry, discard and any other delivery agent."""
    m = split_qid(payload)
    if m is None:
        if payload.startswith("connect to "):
            cm = _CONNECT_TO_RE.match(payload)
            if cm is not None:
                return ConnectFailure(line, tag, cm.group(1), cm.group(2))
        tm = _TLS_RE.match(payload)
        if tm is not None:
            return _tls(line, tag, tm)
        return _generic(line, tag, payload)
    qid = m[0]
    rest = m[1]
    if rest.startswith("to=<"):
        dm = delivery_fields(rest)
        if dm is not None:
            to, orig, relay, seconds, delays, dsn, status, reply = dm
            return Delivery(line, tag, qid, to, orig, relay, seconds, delays, dsn, status, reply)
    return _qid_generic(line, tag, qid, rest)


Fields = tuple[str, str, str, float, str, str, str, str]


def delivery_fields(rest: str) -> Fields | None:
    """A delivery's ``to=<...>, ..., status=... (reply)``: to, orig_to, relay, delay, delays,
    dsn, status and reply, "" for a part not written."""
    if _C_DELIVERY is not None:
        got = _C_DELIVERY(rest)
        if got is not None:
            return got
    return delivery_fields_python(rest)


def delivery_fields_python(rest: str) -> Fields | None:
    dm = _DELIVERY_RE.match(rest)
    if dm is None:
        return None
    to, orig, relay, delay, delays, dsn, status, reply = dm.groups()
    seconds = _number(delay)
    if seconds is None:
        return None
    return to, orig or "", relay, seconds, delays or "", dsn or "", status, reply or ""


def parse_bounce(line: Line, tag: Tag, payload: str) -> Event:
    m = split_qid(payload)
    if m is not None:
        rest = m[1]
        nm = _NOTICE_RE.match(rest)
        if nm is not None:
            who, what, nqid = nm.groups()
            kind = what if who == "sender" else "postmaster " + what
            return Notice(line, tag, m[0], kind, nqid)
        return _qid_generic(line, tag, m[0], rest)
    return _generic(line, tag, payload)


def parse_postsuper(line: Line, tag: Tag, payload: str) -> Event:
    m = split_qid(payload)
    if m is not None:
        rest = m[1]
        if rest in ("removed", "placed on hold", "released from hold", "requeued", "expired"):
            return QueueAction(line, tag, m[0], rest)
        return _qid_generic(line, tag, m[0], rest)
    return _generic(line, tag, payload)


def parse_master(line: Line, tag: Tag, payload: str) -> Event:
    diag = _diagnostic(line, tag, payload, "")
    if diag is not None:
        return diag
    return MasterMessage(line, tag, payload)


# Verbose (-v) logging: C function names, attribute traffic, restriction tracing.
_DEBUG_RE: Final = re.compile(
    r"[a-z0-9]+_[a-z0-9_]+: |(?:input|send) attr|(?:private|public)/\S+ (?:socket|service)|>>> |"
    r"request(?::| ignored)|done (?:incoming|deferred|active)|end sorted|connection closed|"
    r"watchdog_|name_mask|event_|vstream_|auto_clnt|(?:match|permit|reject|check)_\w+:|[<>] \S+: |"
    r"\S+ socket: |\w+ = |mynetworks:|process generation|[\w ]+ -- exiting|end move|wakeup |"
    r"recipient limit|rewrite stream|Compiled against|Run-time linked|(?:before|after) \w+:|"
    r"cleanup flags|initial envelope|extracted envelope|start (?:sorted|move)|connection established|"
    r"fsspace:|\w+ stream disconnect"
)


def _is_debug(text: str) -> bool:
    return _DEBUG_RE.match(text) is not None


def _qid_generic(line: Line, tag: Tag, qid: str, rest: str) -> Event:
    diag = _diagnostic(line, tag, rest, qid)
    if diag is not None:
        return diag
    if rest.startswith(_INFO_PREFIXES) or _is_debug(rest):
        return Info(line, tag, qid)
    return Unknown(line, tag, qid)


def _generic(line: Line, tag: Tag, payload: str) -> Event:
    diag = _diagnostic(line, tag, payload, "")
    if diag is not None:
        return diag
    tm = _TLS_RE.match(payload)
    if tm is not None:
        return _tls(line, tag, tm)
    if payload.startswith(_INFO_PREFIXES) or _is_debug(payload):
        return Info(line, tag, "")
    return Unknown(line, tag, "")


def parse_admin(line: Line, tag: Tag, payload: str) -> Event:
    """postfix-script, postfix(1), postmulti, postmap ...: start/stop chatter is recognised as is."""
    diag = _diagnostic(line, tag, payload, "")
    if diag is not None:
        return diag
    return Info(line, tag, "")


PARSERS: Final[dict[str, Callable[[Line, Tag, str], Event]]] = {
    "smtpd": parse_smtpd,
    "postscreen": parse_postscreen,
    "tlsproxy": parse_postscreen,
    "dnsblog": parse_dnsblog,
    "cleanup": parse_cleanup,
    "pickup": parse_pickup,
    "qmgr": parse_qmgr,
    "nqmgr": parse_qmgr,
    "bounce": parse_bounce,
    "defer": parse_bounce,
    "trace": parse_bounce,
    "postsuper": parse_postsuper,
    "master": parse_master,
    "postfix-script": parse_admin,
    "postfix": parse_admin,
    "postmulti": parse_admin,
    "postlog": parse_admin,
}
for _agent in ("smtp", "lmtp", "local", "virtual", "pipe", "error", "retry", "discard", "relay"):
    PARSERS[_agent] = parse_delivery


def parse_other_daemon(line: Line, tag: Tag, payload: str) -> Event:
    """A daemon without its own parser: queue-ID lines, deliveries and diagnostics."""
    m = split_qid(payload)
    if m is not None:
        if m[1].startswith("to=<"):
            return parse_delivery(line, tag, payload)
        return _qid_generic(line, tag, m[0], m[1])
    return _generic(line, tag, payload)


def postfix_parser(daemon: str) -> Callable[[Line, Tag, str], Event]:
    return PARSERS.get(daemon, parse_other_daemon)
