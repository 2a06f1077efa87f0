"""The Prometheus metrics: hand-written log lines give exact values, under postfix_exporter's names.

Every page is read back with the official client's text parser; the server is scraped over
real HTTP on 127.0.0.1. The shipped Grafana dashboard and alert rules may only name metrics
that postlens exports.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import ssl
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from postlens.access import Access
from postlens.errors import UsageError
from postlens.events import Screen
from postlens.lines import KIND_POSTFIX, Line, Tag
from postlens.metrics import (
    CANDIDATES_PER_LABEL,
    CONTENT_TYPE,
    Metrics,
    TopDomains,
    auth_reason,
    go_number,
    parse_address,
    serve,
)
from tests.conftest import ROOT, events_of

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

# One of (nearly) everything a metric counts. Queue IDs are made up; "mx" is the host.
LOG = """\
Nov 28 10:00:00 mx postfix/smtpd[100]: connect from unknown[192.0.2.10]
Nov 28 10:00:01 mx postfix/smtpd[100]: Anonymous TLS connection established from unknown[192.0.2.10]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256
Nov 28 10:00:01 mx postfix/smtpd[100]: warning: hostname mail.example.com does not resolve to address 192.0.2.10: Name or service not known
Nov 28 10:00:02 mx postfix/smtpd[100]: warning: unknown[192.0.2.10]: SASL LOGIN authentication failed: UGFzc3dvcmQ6
Nov 28 10:00:02 mx postfix/smtpd[100]: warning: unknown[192.0.2.10]: SASL PLAIN authentication failed: (reason unavailable), sasl_username=admin
Nov 28 10:00:02 mx postfix/smtpd[100]: warning: unknown[192.0.2.10]: SASL LOGIN authentication failed: Connection lost to authentication server
Nov 28 10:00:03 mx postfix/smtpd[100]: 1A2B3C4D5E: client=unknown[192.0.2.10], sasl_method=PLAIN, sasl_username=alice
Nov 28 10:00:03 mx postfix/smtpd[100]: 1A2B3C4D5E: reject: RCPT from unknown[192.0.2.10]: 550 5.1.1 <ghost@example.org>: Recipient address rejected: User unknown in local recipient table; from=<alice@example.org> to=<ghost@example.org> proto=ESMTP helo=<client.example.net>
Nov 28 10:00:03 mx postfix/cleanup[101]: 1A2B3C4D5E: message-id=<m1@example.org>
Nov 28 10:00:03 mx postfix/qmgr[102]: 1A2B3C4D5E: from=<alice@example.org>, size=2500, nrcpt=3 (queue active)
Nov 28 10:00:04 mx postfix/smtpd[100]: disconnect from unknown[192.0.2.10] ehlo=1 auth=1/4 mail=1 rcpt=3/4 data=1 quit=1 commands=8/12
Nov 28 10:00:05 mx postfix/smtpd[103]: connect from unknown[198.51.100.7]
Nov 28 10:00:05 mx postfix/smtpd[103]: NOQUEUE: reject: RCPT from unknown[198.51.100.7]: 554 5.7.1 <victim@outside.example>: Relay access denied; from=<spam@bad.example> to=<victim@outside.example> proto=ESMTP helo=<bad.example>
Nov 28 10:00:05 mx postfix/smtpd[103]: NOQUEUE: reject: CONNECT from unknown[198.51.100.8]: 554 5.7.1 <unknown[198.51.100.8]>: Client host rejected: Access denied; proto=SMTP
Nov 28 10:00:05 mx postfix/smtpd[103]: NOQUEUE: reject_warning: RCPT from unknown[198.51.100.7]: 554 5.7.1 <warn@example.org>: Recipient address rejected: test; from=<spam@bad.example> to=<warn@example.org> proto=ESMTP helo=<bad.example>
Nov 28 10:00:05 mx postfix/submission/smtpd[104]: 2B3C4D5E6F: client=unknown[192.0.2.11]
Nov 28 10:00:06 mx postfix/smtpd[103]: lost connection after DATA (0 bytes) from unknown[198.51.100.7]
Nov 28 10:00:06 mx postfix/smtpd[103]: timeout after RCPT from unknown[198.51.100.7]
Nov 28 10:00:06 mx postfix/smtpd[103]: disconnect from unknown[198.51.100.7] ehlo=1 mail=1 rcpt=0/1 commands=2/3
Nov 28 10:00:07 mx postfix/smtp[105]: Verified TLS connection established to mx.example.net[203.0.113.5]:25: TLSv1.2 with cipher ECDHE-RSA-AES128-GCM-SHA256 (128/128 bits)
Nov 28 10:00:07 mx postfix/smtp[105]: 1A2B3C4D5E: to=<bob@example.net>, relay=mx.example.net[203.0.113.5]:25, delay=32, delays=0.5/0.01/2/30, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as XYZ)
Nov 28 10:00:07 mx postfix/smtp[105]: 1A2B3C4D5E: to=<carol@example.net>, relay=mx.example.net[203.0.113.5]:25, delay=0.2, delays=0.1/0/0.05/0.05, dsn=4.2.0, status=deferred (host mx.example.net[203.0.113.5] said: 450 4.2.0 Mailbox busy, try again (in reply to RCPT TO command))
Nov 28 10:00:07 mx postfix/smtp[105]: 1A2B3C4D5E: to=<dave@example.net>, relay=mx.example.net[203.0.113.5]:25, delay=0.2, delays=0.1/0/0.05/0.05, dsn=5.1.1, status=bounced (host mx.example.net[203.0.113.5] said: 550 5.1.1 User unknown (in reply to RCPT TO command))
Nov 28 10:00:08 mx postfix/smtp[105]: connect to mx.slow.example[203.0.113.9]:25: Connection timed out
Nov 28 10:00:08 mx postfix/smtp[105]: 3C4D5E6F7A: to=<f@filter.example>, relay=127.0.0.1[127.0.0.1]:10025, delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4D5E6F7A8B)
Nov 28 10:00:08 mx postfix/error[106]: 5E6F7A8B9C: to=<x@refused.example>, relay=none, delay=1, delays=1/0/0/0, dsn=4.4.1, status=deferred (delivery temporarily suspended: connect to refused.example[203.0.113.7]:25: Connection refused)
Nov 28 10:00:09 mx postfix/lmtp[107]: 2B3C4D5E6F: to=<erin@example.org>, relay=mail.example.org[private/dovecot-lmtp], delay=0.1, delays=0.01/0/0.02/0.07, dsn=2.0.0, status=sent (250 2.0.0 <erin@example.org> Saved)
Nov 28 10:00:09 mx postfix/pipe[108]: 2B3C4D5E6F: to=<frank@example.org>, relay=dovecot, delay=0.1, delays=0.01/0/0/0.09, dsn=2.0.0, status=sent (delivered via dovecot service)
Nov 28 10:00:09 mx postfix/virtual[109]: 2B3C4D5E6F: to=<gina@example.org>, relay=virtual, delay=0.1, delays=0.01/0/0/0.09, dsn=2.0.0, status=sent (delivered to maildir)
Nov 28 10:00:09 mx postfix/local[110]: 2B3C4D5E6F: to=<root@mx.example.org>, relay=local, delay=0.1, delays=0.01/0/0/0.09, dsn=2.0.0, status=sent (delivered to mailbox)
Nov 28 10:00:10 mx postfix/qmgr[102]: 2B3C4D5E6F: removed
Nov 28 10:00:11 mx postfix/qmgr[102]: 1A2B3C4D5E: from=<alice@example.org>, status=expired, returned to sender
Nov 28 10:00:11 mx postfix/bounce[111]: 1A2B3C4D5E: sender non-delivery notification: 6F7A8B9C0D
Nov 28 10:00:11 mx postfix/bounce[111]: 1A2B3C4D5E: postmaster non-delivery notification: 7A8B9C0D1E
Nov 28 10:00:11 mx postfix/qmgr[102]: 1A2B3C4D5E: removed
Nov 28 10:00:11 mx postfix/qmgr[102]: 5E6F7A8B9C: from=<h@example.org>, status=force-expired, returned to sender
Nov 28 10:00:12 mx postfix/cleanup[101]: 8B9C0D1E2F: reject: header Subject: BUY NOW from unknown[192.0.2.10]; from=<s@example.org> to=<t@example.org> proto=ESMTP helo=<c.example>: 5.7.1 no spam
Nov 28 10:00:13 mx postfix/postscreen[112]: CONNECT from [203.0.113.20]:5678 to [192.0.2.1]:25
Nov 28 10:00:13 mx postfix/postscreen[112]: PASS NEW [203.0.113.20]:5678
Nov 28 10:00:13 mx postfix/postscreen[112]: PASS OLD [203.0.113.21]:5678
Nov 28 10:00:13 mx postfix/postscreen[112]: DNSBL rank 3 for [203.0.113.22]:5678
Nov 28 10:00:13 mx postfix/postscreen[112]: DNSBL rank 7 for [203.0.113.22]:5678
Nov 28 10:00:13 mx postfix/postscreen[112]: PREGREET 11 after 0.1 from [203.0.113.22]:5678: EHLO x\\r\\n
Nov 28 10:00:13 mx postfix/postscreen[112]: COMMAND PIPELINING from [203.0.113.22]:5678 after EHLO: MAIL FROM:<a@b>\\r\\n
Nov 28 10:00:13 mx postfix/postscreen[112]: HANGUP after 0.5 from [203.0.113.22]:5678 in tests after SMTP handshake
Nov 28 10:00:13 mx postfix/postscreen[112]: WHITELISTED [203.0.113.23]:5678
Nov 28 10:00:13 mx postfix/postscreen[112]: DENYLISTED [203.0.113.24]:5678
Nov 28 10:00:13 mx postfix/postscreen[112]: WHITELIST VETO [203.0.113.24]:5678
Nov 28 10:00:13 mx postfix/postscreen[112]: NOQUEUE: reject: RCPT from [203.0.113.22]:5678: 550 5.7.1 Service unavailable; client [203.0.113.22] blocked using zen.spamhaus.org; from=<a@b.example>, to=<c@d.example>, proto=ESMTP, helo=<x>
Nov 28 10:00:13 mx postfix/postscreen[112]: NOQUEUE: reject: CONNECT from [203.0.113.25]:5678: too many connections
Nov 28 10:00:14 mx postfix/smtpd[100]: something postlens has never seen
Nov 28 10:00:14 mx postfix/smtpd[100]: fatal: no SASL authentication mechanisms
Nov 28 10:00:14 mx postfix/cleanup[101]: warning: 1A2B3C4D5E: milter unavailable
Nov 28 10:00:15 mx dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<x>, method=PLAIN, rip=192.0.2.30, lip=192.0.2.1, session=<abc>
Nov 28 10:00:16 mx opendkim[300]: 1A2B3C4D5E: DKIM-Signature field added (s=mail, d=example.org)
Nov 28 10:00:16 mx opendkim[300]: 2B3C4D5E6F: DKIM-Signature field added (s=mail, d=example.org)
Nov 28 10:00:17 mx opendkim[300]: 3C4D5E6F7A: DKIM verification successful
"""

QUEUE = [
    {
        "queue_name": "deferred",
        "queue_id": "AAA111",
        "arrival_time": 1000,
        "message_size": 500,
        "recipients": [],
    },
    {
        "queue_name": "deferred",
        "queue_id": "BBB222",
        "arrival_time": 900_000,
        "message_size": 20_000,
        "recipients": [],
    },
    {
        "queue_name": "hold",
        "queue_id": "CCC333",
        "arrival_time": 999_995,
        "message_size": 1000,
        "recipients": [],
    },
]


def feed(text: str, metrics: Metrics | None = None) -> Metrics:
    """Every line of ``text`` must be recognised by a mail-program parser."""
    m = metrics if metrics is not None else Metrics()
    for ev in events_of(text.splitlines(), year=2025):
        m.feed(ev)
    return m


def parse(page: bytes) -> Samples:
    """The samples of a page, as the official client's parser reads them."""
    out: Samples = {}
    for family in text_string_to_metric_families(page.decode("utf-8")):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, key
            out[key] = s.value
    return out


def series(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def one(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, tuple(sorted(labels.items()))]


def by(samples: Samples, name: str, label: str) -> dict[str, float]:
    """``name``'s series by the value of ``label`` (the only label)."""
    return {dict(labels)[label]: v for labels, v in series(samples, name).items()}


@pytest.fixture(scope="module")
def full() -> Samples:
    m = feed(LOG)
    m.set_queue(QUEUE, now=1_000_000.0)
    return parse(m.exposition())


def test_smtpd(full: Samples) -> None:
    assert one(full, "postfix_smtpd_connects_total") == 2
    assert one(full, "postfix_smtpd_disconnects_total") == 2
    # client= lines with their SASL method, "" when none (the submission service's smtpd too)
    assert by(full, "postfix_smtpd_messages_processed_total", "sasl_method") == {"PLAIN": 1, "": 1}
    # every smtpd reject line, NOQUEUE or with a queue ID, at any stage; not reject_warning
    assert by(full, "postfix_smtpd_messages_rejected_total", "code") == {"550": 1, "554": 2}
    assert one(full, "postfix_smtpd_sasl_authentication_failures_total") == 3  # Dovecot's own not
    assert one(full, "postfix_smtpd_forward_confirmed_reverse_dns_errors_total") == 1
    assert by(full, "postfix_smtpd_connections_lost_total", "after_stage") == {"DATA": 1}  # not the timeout
    assert series(full, "postfix_smtpd_tls_connections_total") == {
        (("algorithm_bits", "256"), ("cipher", "TLS_AES_256_GCM_SHA384"), ("protocol", "TLSv1.3"),
         ("secret_bits", "256"), ("trust", "Anonymous")): 1,
    }  # fmt: skip


def test_smtp(full: Samples) -> None:
    # the hop into the content filter is an smtp delivery too; the error agent's deferral is not
    assert by(full, "postfix_smtp_messages_processed_total", "status") == {
        "sent": 2,
        "deferred": 1,
        "bounced": 1,
    }
    assert one(full, "postfix_smtp_status_deferred_total") == 1
    assert one(full, "postfix_smtp_deferred_messages_total") == 1
    assert by(full, "postfix_smtp_deferred_messages_by_dsn_total", "dsn") == {"4.2.0": 1}
    assert by(full, "postfix_smtp_bounced_messages_by_dsn_total", "dsn") == {"5.1.1": 1}
    assert one(full, "postfix_smtp_connection_timed_out_total") == 1
    assert series(full, "postfix_smtp_tls_connections_total") == {
        (("algorithm_bits", "128"), ("cipher", "ECDHE-RSA-AES128-GCM-SHA256"), ("protocol", "TLSv1.2"),
         ("secret_bits", "128"), ("trust", "Verified")): 1,
    }  # fmt: skip


def test_smtp_delay_buckets(full: Samples) -> None:
    """delays=0.5/0.01/2/30, 0.1/0/0.05/0.05 (twice) and 0/0/0/0.1, one stage label each."""
    buckets = ("0.001", "0.01", "0.1", "1", "10", "60", "3600", "86400", "172800", "+Inf")
    name = "postfix_smtp_delivery_delay_seconds"

    def cumulative(stage: str) -> list[float]:
        return [one(full, name + "_bucket", stage=stage, le=le) for le in buckets]

    assert cumulative("before_queue_manager") == [1, 1, 3, 4, 4, 4, 4, 4, 4, 4]
    assert cumulative("queue_manager") == [3, 4, 4, 4, 4, 4, 4, 4, 4, 4]  # 0.01 is in le="0.01"
    assert cumulative("connection_setup") == [1, 1, 3, 3, 4, 4, 4, 4, 4, 4]
    assert cumulative("transmission") == [0, 0, 3, 3, 3, 4, 4, 4, 4, 4]
    assert one(full, name + "_sum", stage="transmission") == pytest.approx(30.2)
    assert one(full, name + "_count", stage="connection_setup") == 4


def test_other_delivery_agents(full: Samples) -> None:
    assert one(full, "postfix_lmtp_delivery_delay_seconds_count", stage="connection_setup") == 1
    assert one(full, "postfix_lmtp_delivery_delay_seconds_bucket", stage="connection_setup", le="0.01") == 0
    assert one(full, "postfix_lmtp_delivery_delay_seconds_bucket", stage="connection_setup", le="0.1") == 1
    assert one(full, "postfix_pipe_delivery_delay_seconds_sum", relay="dovecot", stage="transmission") == 0.09
    assert one(full, "postfix_virtual_delivered_total") == 1


def test_deliveries_by_status_are_the_reports() -> None:
    """Mail a local content filter dropped is not sent; sum by status equals the report."""
    log = ROOT / "tests" / "data" / "filter-discard.log"
    samples = parse(feed(log.read_text()).exposition())
    by_status: dict[str, float] = {}
    for labels, n in series(samples, "postlens_domain_deliveries_total").items():
        status = dict(labels)["status"]
        by_status[status] = by_status.get(status, 0) + n
    assert by_status == {"sent": 1, "discarded": 2, "deferred": 0, "bounced": 0}


def test_opendkim_signatures(full: Samples) -> None:
    assert series(full, "opendkim_signatures_added_total") == {
        (("domain", "example.org"), ("subject", "mail")): 2
    }


def test_queue_manager_cleanup_and_bounce(full: Samples) -> None:
    for name in ("postfix_qmgr_messages_inserted_recipients", "postfix_qmgr_messages_inserted_receipients"):
        assert one(full, name + "_bucket", le="2") == 0
        assert one(full, name + "_bucket", le="4") == 1  # nrcpt=3
        assert one(full, name + "_sum") == 3
    assert one(full, "postfix_qmgr_messages_inserted_size_bytes_bucket", le="1000") == 0
    assert one(full, "postfix_qmgr_messages_inserted_size_bytes_bucket", le="10000") == 1  # size=2500
    assert one(full, "postfix_qmgr_messages_removed_total") == 2
    assert one(full, "postfix_qmgr_messages_expired_total") == 2  # force-expired too
    assert one(full, "postfix_cleanup_messages_processed_total") == 1
    assert one(full, "postfix_cleanup_messages_rejected_total") == 1
    assert one(full, "postfix_cleanup_messages_not_accepted_total") == 0
    assert one(full, "postfix_bounce_non_delivery_notification_total") == 1  # the sender's only


def test_postscreen(full: Samples) -> None:
    assert one(full, "postfix_postscreen_connects_total") == 1
    assert by(full, "postfix_postscreen_passes_total", "type") == {"new": 1, "old": 1}
    assert one(full, "postfix_postscreen_dnsbl_rank_bucket", le="3") == 1
    assert one(full, "postfix_postscreen_dnsbl_rank_bucket", le="6") == 1
    assert one(full, "postfix_postscreen_dnsbl_rank_bucket", le="8") == 2
    assert one(full, "postfix_postscreen_dnsbl_rank_sum") == 10
    assert by(full, "postfix_postscreen_tests_failed_total", "test") == {
        "PREGREET": 1,
        "COMMAND_PIPELINING": 1,
    }
    assert one(full, "postfix_postscreen_hangups_total") == 1
    assert by(full, "postfix_postscreen_access_list_matches_total", "action") == {"allow": 1, "deny": 1}
    assert by(full, "postfix_postscreen_messages_rejected_total", "code") == {"550": 1}
    assert by(full, "postfix_postscreen_connects_rejected_total", "reason") == {"too many connections": 1}


def test_postscreen_test_names() -> None:
    """postfix_exporter's test label: the verdict with "-" and " " as "_"."""
    m = Metrics()
    line = Line(0.0, "mx", "postfix/postscreen", "1", "NON-SMTP COMMAND from [192.0.2.1]:1 after CONNECT", 1)
    m.feed(Screen(line, Tag(KIND_POSTFIX, "postfix", "", "postscreen"), "NON-SMTP COMMAND", "192.0.2.1", ""))
    assert by(parse(m.exposition()), "postfix_postscreen_tests_failed_total", "test") == {
        "NON_SMTP_COMMAND": 1
    }


def test_unsupported_entries(full: Samples) -> None:
    assert series(full, "postfix_unsupported_log_entries_total") == {
        (("level", ""), ("service", "smtpd")): 1,
        (("level", "fatal"), ("service", "smtpd")): 1,
        (("level", "warning"), ("service", "cleanup")): 1,
    }


def test_auth_failures_by_reason(full: Samples) -> None:
    assert series(full, "postlens_auth_failures_total") == {
        (("method", "LOGIN"), ("reason", "bad_credentials"), ("service", "smtpd")): 1,
        (("method", "LOGIN"), ("reason", "server_error"), ("service", "smtpd")): 1,
        (("method", "PLAIN"), ("reason", "bad_credentials"), ("service", "smtpd")): 1,
        (("method", "PLAIN"), ("reason", "bad_credentials"), ("service", "dovecot")): 1,
    }


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "bad_credentials"),
        ("(reason unavailable)", "bad_credentials"),
        ("authentication failure", "bad_credentials"),
        ("UGFzc3dvcmQ6", "bad_credentials"),
        ("VXNlcm5hbWU6", "protocol_error"),
        ("Invalid base64 data in continued response", "protocol_error"),
        ("Invalid authentication mechanism", "bad_mechanism"),
        ("Connection lost to authentication server", "server_error"),
        ("generic failure", "server_error"),
        ("the moon is in the wrong phase", "other"),
    ],
)
def test_auth_reason(text: str, reason: str) -> None:
    assert auth_reason(text) == reason


def test_failures_by_reason_class(full: Samples) -> None:
    assert series(full, "postlens_failures_total") == {
        (("kind", "reject"), ("reason", "local_recipient_unknown")): 1,
        (("kind", "reject"), ("reason", "relay_denied")): 1,
        (("kind", "reject"), ("reason", "access_denied")): 1,
        (("kind", "reject"), ("reason", "client_blocklisted")): 1,  # postscreen's DNSBL reject
        (("kind", "reject"), ("reason", "rate_limited")): 1,  # postscreen: too many connections
        (
            ("kind", "reject"),
            ("reason", "header_body_check"),
        ): 1,  # cleanup's header check, whatever its words
        (("kind", "deferred"), ("reason", "temporary_failure")): 1,
        (("kind", "deferred"), ("reason", "connection_refused")): 1,
        (("kind", "bounced"), ("reason", "user_unknown")): 1,
        # an expiry fails for the reason of the message's last deferral, as in `postlens problems`
        (("kind", "expired"), ("reason", "temporary_failure")): 1,
        (("kind", "expired"), ("reason", "connection_refused")): 1,
    }


def test_expiry_without_a_deferral_in_the_log() -> None:
    m = feed(
        "Nov 28 10:00:11 mx postfix/qmgr[102]: 1A2B3C4D5E: from=<a@example.org>, status=expired, returned to sender"
    )
    assert series(parse(m.exposition()), "postlens_failures_total") == {
        (("kind", "expired"), ("reason", "expired")): 1
    }


def test_domain_deliveries(full: Samples) -> None:
    """Every delivery agent's attempts, the hop into the content filter left out."""
    assert series(full, "postlens_domain_deliveries_total") == {
        (("domain", "other"), ("status", "sent")): 5,
        (("domain", "other"), ("status", "deferred")): 2,
        (("domain", "other"), ("status", "bounced")): 1,
    }
    assert one(full, "postlens_filter_hops_total") == 1


def deliveries(*domains: str) -> str:
    return "\n".join(
        f"Nov 28 10:00:07 mx postfix/smtp[105]: 1A2B3C4D5E: to=<u{i}@{d}>, relay=mx.{d}[203.0.113.5]:25, "
        f"delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 Ok)"
        for i, d in enumerate(domains)
    )


def test_a_domain_gets_its_label_among_the_busiest_and_keeps_it() -> None:
    m = feed(deliveries(*["a.example"] * 12, *["b.example"] * 4, *["c.example"] * 30), Metrics(top_domains=2))
    got = by(parse(m.exposition()), "postlens_domain_deliveries_total", "domain")
    # a: labelled at its 10th delivery (10 >= 10 and 10 >= 1/2 of 10); b: never 10;
    # c: at its 16th, when it has half of all 32 deliveries so far (12 + 4 + 16)
    assert got == {"a.example": 3, "c.example": 15, "other": 9 + 4 + 15}
    m = feed(deliveries(*["d.example"] * 100), m)  # both labels are given: the rest is other
    got = by(parse(m.exposition()), "postlens_domain_deliveries_total", "domain")
    assert got == {"a.example": 3, "c.example": 15, "other": 128}


def test_small_domains_stay_other() -> None:
    """1/n of all deliveries is needed: a long tail never takes the labels."""
    m = feed(
        deliveries(*["big.example"] * 50, *[f"d{i}.example" for i in range(200)] * 2), Metrics(top_domains=5)
    )
    assert set(by(parse(m.exposition()), "postlens_domain_deliveries_total", "domain")) == {
        "big.example",
        "other",
    }


def test_domain_memory_is_bounded() -> None:
    top = TopDomains(2)
    for i in range(5000):
        assert top.label(f"d{i}.example") == "other"
        assert len(top.candidates) <= CANDIDATES_PER_LABEL * 2
    assert top.total == 5000
    # A domain that becomes busy still gets its label once it has half of all deliveries: after
    # 5000 with exact counts; a little earlier, since it took over the smallest count (about 50).
    n = 1
    while top.label("busy.example") == "other":
        n += 1
    assert 4900 <= n < 5000
    for _ in range(12_000):
        top.label("busy2.example")
    assert top.labelled == {"busy.example", "busy2.example"}
    assert top.candidates == {}  # every label is given: nothing more to follow


def test_no_domain_labels() -> None:
    m = feed(deliveries(*["a.example"] * 30), Metrics(top_domains=0))
    assert by(parse(m.exposition()), "postlens_domain_deliveries_total", "domain") == {"other": 30}
    with pytest.raises(UsageError):
        Metrics(top_domains=-1)


def test_queue_snapshot() -> None:
    m = Metrics()
    assert "postfix_showq" not in m.exposition().decode()  # nothing before the queue is read
    m.set_queue(QUEUE, now=1_000_000.0)
    s = parse(m.exposition())
    assert by(s, "postfix_showq_queue_depth", "queue") == {
        "active": 0, "deferred": 2, "hold": 1, "incoming": 0, "maildrop": 0,
    }  # fmt: skip
    age = "postfix_showq_message_age_seconds_bucket"
    assert one(s, age, queue="hold", le="10") == 1  # 5 s old
    assert [one(s, age, queue="deferred", le=le) for le in ("10000", "100000", "1e+06")] == [0, 1, 2]
    assert one(s, "postfix_showq_message_size_bytes_bucket", queue="deferred", le="1000") == 1
    assert one(s, "postfix_showq_message_size_bytes_sum", queue="deferred") == 20_500
    assert one(s, "postfix_showq_message_size_bytes_count", queue="active") == 0
    # the next snapshot replaces this one (a queue is a state, not a stream)
    m.set_queue([{"queue_name": "corrupt", "arrival_time": 1_000_000, "message_size": 10}], now=1_000_000.0)
    s = parse(m.exposition())
    assert by(s, "postfix_showq_queue_depth", "queue") == {
        "active": 0, "corrupt": 1, "deferred": 0, "hold": 0, "incoming": 0, "maildrop": 0,
    }  # fmt: skip
    assert one(s, "postfix_showq_message_size_bytes_count", queue="deferred") == 0


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"), (1, "1"), (3, "3"), (-2.5, "-2.5"), (0.001, "0.001"), (0.0001, "0.0001"),
        (1e-05, "1e-05"), (0.1 + 0.2, "0.30000000000000004"), (100_000, "100000"), (123456.7, "123456.7"),
        (1e6, "1e+06"), (1_234_567, "1.234567e+06"), (172_800, "172800"), (1e9, "1e+09"),
        (float("inf"), "+Inf"), (float("-inf"), "-Inf"), (float("nan"), "NaN"),
    ],
)  # fmt: skip
def test_numbers_as_go_writes_them(value: float, text: str) -> None:
    assert go_number(value) == text


def test_page_format(full: Samples) -> None:
    m = feed(LOG)
    page = m.exposition()
    assert page == feed(LOG).exposition()  # deterministic
    text = page.decode()
    names = re.findall(r"^# TYPE (\S+) ", text, re.M)
    assert names == sorted(names)
    # what postfix_exporter's queries name, byte for byte: a counter without _total, Go's le
    assert "\n# TYPE postfix_smtp_status_deferred counter\npostfix_smtp_status_deferred 1\n" in text
    assert 'postfix_qmgr_messages_inserted_size_bytes_bucket{le="1e+06"} 1\n' in text
    assert 'postfix_smtp_delivery_delay_seconds_bucket{stage="transmission",le="172800"} 4\n' in text
    # unlabelled metrics exist from the start; labelled ones once they have a series
    empty = Metrics().exposition().decode()
    assert "postfix_smtpd_connects_total 0\n" in empty
    assert "postfix_smtpd_messages_rejected_total" not in empty
    assert 'postlens_domain_deliveries_total{domain="other",status="deferred"} 0\n' in empty


def test_label_values_are_escaped() -> None:
    m = feed(
        'Nov 28 10:00:13 mx postfix/postscreen[112]: NOQUEUE: reject: CONNECT from [203.0.113.25]:5678: a "quoted" \\ text'
    )
    page = m.exposition()
    assert b'reason="a \\"quoted\\" \\\\ text"' in page
    assert by(parse(page), "postfix_postscreen_connects_rejected_total", "reason") == {
        'a "quoted" \\ text': 1
    }


def every_exported_name() -> set[str]:
    """The names a page can hold (histograms with their _bucket, _sum and _count)."""
    m = feed(LOG)
    m.set_queue(QUEUE, now=1_000_000.0)
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", m.exposition().decode(), re.M):
        names.add(name)
        if kind == "histogram":
            names.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def test_the_log_above_shows_every_metric_and_the_doc_describes_them() -> None:
    names = every_exported_name()
    assert len({n for n in names if not re.search(r"_(bucket|sum|count)$", n)}) == 45
    doc = (ROOT / "docs" / "metrics.md").read_text()
    assert {n for n in names if f"`{n}`" not in doc and not re.search(r"_(bucket|sum|count)$", n)} == set()


def metric_names(text: str) -> set[str]:
    return set(re.findall(r"\b(?:postfix|postlens)_[a-z0-9_]+", text))


def test_grafana_dashboard_uses_exported_metrics() -> None:
    dashboard = json.loads((ROOT / "contrib" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    used = set().union(*map(metric_names, exprs))
    assert used, "no metric in the dashboard"
    assert used <= every_exported_name(), used - every_exported_name()


def test_alert_rules_use_exported_metrics() -> None:
    yaml = pytest.importorskip("yaml")
    rules = yaml.safe_load((ROOT / "contrib" / "prometheus-alerts.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    names = {r["alert"] for r in alerts}
    assert {"PostfixQueueGrowing", "PostfixDeferralRatioHigh", "PostfixBounceRatioHigh",
            "PostfixSaslFailureBurst", "PostfixNoDeliveries", "PostlensDown"} <= names  # fmt: skip
    used = set().union(*(metric_names(r["expr"]) for r in alerts))
    assert used <= every_exported_name(), used - every_exported_name()
    for r in alerts:
        assert r["labels"]["severity"] in ("warning", "critical")
        assert r["annotations"]["summary"]


# -- the HTTP server


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


@pytest.fixture
def served() -> Any:
    m = feed(LOG)
    lock = threading.Lock()
    server = serve(m, "127.0.0.1:0", lock)
    yield m, lock, server
    server.close()


def test_scraped_over_http(served: Any) -> None:
    m, _, server = served
    assert server.host == "127.0.0.1" and server.port > 0
    status, content_type, body = get(f"http://127.0.0.1:{server.port}/metrics")
    assert (status, content_type) == (200, CONTENT_TYPE)
    assert body == m.exposition()
    assert one(parse(body), "postfix_smtpd_connects_total") == 2
    status, content_type, body = get(f"http://127.0.0.1:{server.port}/")
    assert status == 200 and content_type.startswith("text/html")
    assert b'href="/metrics"' in body
    assert get(f"http://127.0.0.1:{server.port}/nothing")[0] == 404


def test_a_password_and_tls_guard_the_page(
    certificate: tuple[Path, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    """Prometheus's basic_auth or authorization (a bearer token), over HTTPS with a certificate
    openssl made; a client that fails the handshake leaves no trace on standard error."""
    cert, key = certificate
    m = feed(LOG)
    server = serve(m, "127.0.0.1:0", threading.Lock(), Access(token="t0k", user="prom", password="pw"),
                   (str(cert), str(key)))  # fmt: skip
    try:
        url = f"https://127.0.0.1:{server.port}/metrics"
        context = ssl.create_default_context(cafile=str(cert))

        def fetch(authorization: str) -> int:
            request = urllib.request.Request(
                url, headers={"Authorization": authorization} if authorization else {}
            )
            try:
                with urllib.request.urlopen(request, timeout=10, context=context) as r:
                    assert r.read() == m.exposition()
                    return int(r.status)
            except urllib.error.HTTPError as e:
                assert e.headers["WWW-Authenticate"] == 'Basic realm="postlens"'
                return int(e.code)

        basic = base64.b64encode(b"prom:pw").decode()
        assert fetch("") == 401 and fetch("Bearer nope") == 401 and fetch("Basic " + basic[:-2]) == 401
        assert fetch("Bearer t0k") == 200 and fetch("Basic " + basic) == 200
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP is not answered
            urllib.request.urlopen(url.replace("https", "http"), timeout=5)
    finally:
        server.close()
    assert capfd.readouterr().err == ""
    with pytest.raises(UsageError, match="metrics TLS certificate"):
        serve(m, "127.0.0.1:0", threading.Lock(), None, (str(key), str(cert)))


def test_the_page_is_made_under_the_lock(served: Any) -> None:
    m, lock, server = served
    got: list[bytes] = []
    with lock:
        reader = threading.Thread(
            target=lambda: got.append(get(f"http://127.0.0.1:{server.port}/metrics")[2])
        )
        reader.start()
        reader.join(0.5)
        assert reader.is_alive(), "the page was made without the lock"
        feed(LOG.splitlines()[0], m)  # a new connection, counted while the reader waits
    reader.join(10)
    assert one(parse(got[0]), "postfix_smtpd_connects_total") == 3


def test_close_frees_the_port(served: Any) -> None:
    server = served[2]
    server()  # calling it closes it, as watch does
    server.close()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=2):
        pass


def test_every_address() -> None:
    server = serve(Metrics(), ":0", threading.Lock())
    try:
        assert get(f"http://127.0.0.1:{server.port}/metrics")[0] == 200
    finally:
        server.close()


@pytest.mark.parametrize(
    ("address", "parsed"),
    [(":9154", ("", 9154)), ("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]:9154", ("::1", 9154)),
     ("localhost:80", ("localhost", 80))],
)  # fmt: skip
def test_addresses(address: str, parsed: tuple[str, int]) -> None:
    assert parse_address(address) == parsed


@pytest.mark.parametrize("address", ["9154", "host", ":", ":65536", "::1:9154", "a:b", "host:-1"])
def test_bad_addresses(address: str) -> None:
    with pytest.raises(UsageError, match="HOST:PORT"):
        serve(Metrics(), address, threading.Lock())


def test_an_address_that_cannot_be_used() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(UsageError, match="cannot listen"):
            serve(Metrics(), f"127.0.0.1:{taken.getsockname()[1]}", threading.Lock())
    with pytest.raises(UsageError, match="cannot listen"):
        serve(Metrics(), "no-such-host.invalid:0", threading.Lock())
