"""The verdicts of the programs that check mail beside Postfix and log to the same file.

amavis (spam, virus, banned content), SpamAssassin's spamd, policyd-spf (SPF), OpenDKIM,
OpenDMARC and postgrey (greylisting) each become a :class:`Verdict`: which check, what it
decided, and the Postfix queue ID when the line names one. Their other lines are
:class:`Info`, recognised and not counted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from postlens.events.model import Event, Info, Verdict
from postlens.events.postfix import split_qid
from postlens.lines import Line, Tag

_AMAVIS_RE: Final = re.compile(r"\(\S+\) (Passed|Blocked) ([A-Z][A-Z-]*)")
_AMAVIS_QID_RE: Final = re.compile(r"Queue-ID: ([0-9A-Za-z]+)")
_SPAMD_RE: Final = re.compile(r"spamd: (identified spam|clean message) \(")
_SPF_RE: Final = re.compile(r"Received-SPF: (\w+)")
_DKIM: Final = {
    "DKIM verification successful": "verified",
    "bad signature data": "bad signature",
    "no signature data": "no signature",
    "DKIM-Signature field added": "signed",
}
_DMARC_RE: Final = re.compile(r"\S+ (pass|fail|none|bestguesspass|reject|quarantine)$")
_GREY_RE: Final = re.compile(r"action=([\w-]+), reason=([^,]+)")


def _amavis(line: Line, tag: Tag, payload: str) -> Event:
    m = _AMAVIS_RE.match(payload)
    if m is None:
        return Info(line, tag, "")
    q = _AMAVIS_QID_RE.search(payload, m.end())
    return Verdict(line, tag, q.group(1) if q else "", "amavis", f"{m.group(1)} {m.group(2)}")


def _spamd(line: Line, tag: Tag, payload: str) -> Event:
    m = _SPAMD_RE.match(payload)
    if m is None:
        return Info(line, tag, "")
    return Verdict(line, tag, "", "spamassassin", "spam" if m.group(1) == "identified spam" else "clean")


def _spf(line: Line, tag: Tag, payload: str) -> Event:
    m = _SPF_RE.search(payload)
    if m is None:
        return Info(line, tag, "")
    return Verdict(line, tag, "", "spf", m.group(1).lower())


def _dkim(line: Line, tag: Tag, payload: str) -> Event:
    split = split_qid(payload)  # OpenDKIM and OpenDMARC name the message by Postfix's queue ID
    if split is not None:
        for text, verdict in _DKIM.items():
            if split[1].startswith(text):
                return Verdict(line, tag, split[0], "dkim", verdict)
    return Info(line, tag, "")


def _dmarc(line: Line, tag: Tag, payload: str) -> Event:
    split = split_qid(payload)
    d = _DMARC_RE.fullmatch(split[1]) if split is not None else None
    if split is None or d is None:
        return Info(line, tag, "")
    return Verdict(line, tag, split[0], "dmarc", d.group(1))


def _postgrey(line: Line, tag: Tag, payload: str) -> Event:
    m = _GREY_RE.search(payload)
    if m is None:
        return Info(line, tag, "")
    return Verdict(line, tag, "", "greylisting", m.group(1))


def _info(line: Line, tag: Tag, payload: str) -> Event:
    return Info(line, tag, "")


_PARSERS: Final[dict[str, Callable[[Line, Tag, str], Event]]] = {
    "amavis": _amavis, "amavisd": _amavis, "amavisd-new": _amavis, "spamd": _spamd,
    "policyd-spf": _spf, "policy-spf": _spf, "opendkim": _dkim, "opendmarc": _dmarc,
    "postgrey": _postgrey,
}  # fmt: skip


def companion_parser(program: str) -> Callable[[Line, Tag, str], Event]:
    """The parser of a mail program other than Postfix and Dovecot (its lines are Info
    when it checks nothing postlens counts)."""
    return _PARSERS.get(program, _info)
