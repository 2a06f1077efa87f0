"""mail: reports and alerts by e-mail, built with the standard library and sent over SMTP.

:func:`build_message` makes a message (text, with an HTML alternative when there is one);
:func:`send_mail` hands it to an SMTP server, plain SMTP without login: the local Postfix
(the default, ``localhost:25``) relays it on. A problem with the server is one
:class:`MailError` line, exit code ``EXIT_MAIL``.
"""

from __future__ import annotations

import smtplib
import socket
from dataclasses import dataclass, replace
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from postlens.dates import period
from postlens.errors import EXIT_MAIL, PostlensError, UsageError
from postlens.lines import digits, zone
from postlens.render import RenderOptions, render

DEFAULT_SMTP = "localhost:25"
TIMEOUT = 30.0  # seconds for the connection and each reply


class MailError(PostlensError):
    """The SMTP server could not be reached, or it refused the message or recipients."""

    exit_code = EXIT_MAIL


def check_address(text: str, option: str) -> str:
    """A bare address (``user@example.org``), or a UsageError naming the option."""
    try:
        address = Address(addr_spec=text.strip())
    except Exception as e:  # the header parser raises several kinds for a malformed address
        raise UsageError(f"{option}: {text!r} is not an address like admin@example.org") from e
    if not address.username or not address.domain:
        raise UsageError(f"{option}: {text!r} is not an address like admin@example.org")
    return address.addr_spec


def parse_server(text: str, option: str = "--smtp") -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[IPv6]:PORT`` or a bare IPv6 address; port 25 by default. A
    mistake is a UsageError naming ``option``."""
    host, port = text.strip(), "25"
    if host.startswith("["):
        host, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise UsageError(f"{option}: {text!r} is not HOST[:PORT]")
        port = rest[1:] if rest else port
    elif host.count(":") == 1:
        host, _, port = host.partition(":")
    if not host or not digits(port) or not 0 < int(port) < 65536:
        raise UsageError(f"{option}: {text!r} is not HOST[:PORT] with a port from 1 to 65535")
    return host, int(port)


def default_sender() -> str:
    return f"postlens@{socket.getfqdn()}"


def build_message(
    *, subject: str, sender: str, recipients: list[str], text: str, html: str | None = None
) -> EmailMessage:
    """A message with the text as its body, and the HTML as the alternative part if given."""
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid("postlens", domain=sender.rpartition("@")[2] or None)
    # RFC 3834: a machine wrote it, so vacation responders and the like do not answer it
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg


def send_mail(message: EmailMessage, server: str = DEFAULT_SMTP, *, timeout: float = TIMEOUT) -> None:
    """Send ``message`` to its From/To over SMTP at ``server`` (``HOST[:PORT]``); every recipient
    must be accepted, else a MailError says which were refused and why."""
    host, port = parse_server(server)
    where = f"SMTP {server}"
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            refused = smtp.send_message(message)
    except smtplib.SMTPRecipientsRefused as e:
        raise MailError(f"{where}: every recipient refused: {_refusals(e.recipients)}") from e
    except smtplib.SMTPResponseException as e:
        raise MailError(f"{where}: {e.smtp_code} {_reply(e.smtp_error)}") from e
    except OSError as e:  # no such host, refused, timed out, dropped: smtplib's errors are OSErrors too
        raise MailError(f"{where}: {e.strerror or str(e) or type(e).__name__}") from e
    if refused:
        raise MailError(f"{where}: sent, but these recipients were refused: {_refusals(refused)}")


def _reply(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return " ".join(text.split())


def _refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(f"{rcpt} ({code} {_reply(reply)})" for rcpt, (code, reply) in refused.items())


# -- the report by mail ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportMail:
    """Where ``postlens report --mail-to`` sends the report, and under which subject."""

    recipients: tuple[str, ...]
    sender: str
    server: str = DEFAULT_SMTP
    subject: str | None = None  # {period} and {host} are filled in; default: report_subject

    @classmethod
    def of(
        cls, recipients: tuple[str, ...], sender: str | None, server: str | None, subject: str | None
    ) -> ReportMail:
        """Checked options: a mistake is a UsageError before any log is read."""
        if not recipients:
            raise UsageError("--mail-from, --smtp and --subject go with --mail-to")
        rcpts = tuple(check_address(r, "--mail-to") for r in recipients)
        from_ = check_address(sender, "--mail-from") if sender is not None else default_sender()
        parse_server(server or DEFAULT_SMTP)
        return cls(rcpts, from_, server or DEFAULT_SMTP, subject)

    def send(
        self, result: dict[str, Any], options: RenderOptions, *, date: str | None, tz: str | None
    ) -> None:
        """Mail the report: the text report, with the HTML report as the alternative."""
        label, host = report_period(result, date, tz), socket.getfqdn()
        subject = (
            self.subject.replace("{period}", label).replace("{host}", host)
            if self.subject is not None
            else f"Mail report for {host}: {label}"
        )
        message = build_message(
            subject=subject,
            sender=self.sender,
            recipients=list(self.recipients),
            text=render(result, "text", options),
            html=render(result, "html", replace(options, scripts=False)),
        )
        send_mail(message, self.server)


def report_period(result: dict[str, Any], date: str | None, tz: str | None) -> str:
    """The report's days in its zone: those asked for with -d, else those of the traffic read
    (``2026-11-26``, ``2026-11-01..2026-11-27``, or ``no traffic``)."""
    zone_ = zone(tz)
    if date:
        start, end = period(date, zone_)
        days = [datetime.fromtimestamp(start, zone_).date(), datetime.fromtimestamp(end - 1, zone_).date()]
    else:
        seen = [result["period"][k] for k in ("first", "last") if result["period"].get(k)]
        if not seen:
            return "no traffic"
        days = [datetime.fromisoformat(t.replace("Z", "+00:00")).astimezone(zone_).date() for t in seen]
    first, last = days[0].isoformat(), days[-1].isoformat()
    return first if first == last else f"{first}..{last}"
