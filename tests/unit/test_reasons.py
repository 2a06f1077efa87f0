"""The failure-reason classifier: the shipped rules, user rule files, status codes, the corpus."""

from __future__ import annotations

import pickle
import re
import tomllib
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from postlens.analyses.reasons import (
    Provider,
    Rules,
    Verdict,
    describe_status,
    normalise,
    required_literals,
    split_reply,
)
from postlens.errors import UsageError
from postlens.events import Delivery, EventParser, Reject
from postlens.lines import LineParser, YearGuess
from tests.conftest import ROOT

SHIPPED = resources.files("postlens") / "data" / "reasons.toml"
DOC = ROOT / "docs" / "reasons.md"
# the reject actions whose reply is a refusal: the ones `postlens problems` counts, and reject_warning
# (a refusal that was only logged, with the same reply text)
REFUSALS = ("reject", "milter-reject", "proxy-reject", "reject_warning")
WANTED_SHARE = 0.95


@pytest.fixture(scope="module")
def rules() -> Rules:
    return Rules.load()


def verdict(rules: Rules, kind: str, reply: str, code: str = "", dsn: str = "") -> Verdict:
    """Classify as the problems analysis does: a delivery's reply is split, a reject's is not."""
    if kind == "reject":
        return rules.classify(kind, code, dsn, reply)
    found_code, found_dsn, text = split_reply(reply)
    return rules.classify(kind, code or found_code, dsn or found_dsn, text)


# (kind, reply, SMTP code and DSN of a reject, reason, provider name or None). Invented replies in
# the forms real servers use, with documentation domains and addresses.
GMAIL = "Google (Gmail)"
MICROSOFT = "Microsoft (Outlook.com, Microsoft 365)"
EXAMPLES: list[tuple[str, str, str, str, str, str | None]] = [
    # mailbox_full
    ("deferred", "host mx.example.com[192.0.2.10] said: 452 4.2.2 <ann@example.com>: Mailbox is full (in reply to RCPT TO command)", "", "", "mailbox_full", None),
    ("bounced", "host mx.example.net[198.51.100.7] said: 552 5.2.2 Quota exceeded (mailbox for user is full) (in reply to end of DATA command)", "", "", "mailbox_full", None),
    ("deferred", "host alt1.gmail-smtp-in.l.google.com[203.0.113.5] said: 452-4.2.2 The recipient's inbox is out of storage space. Please direct the recipient to 452 4.2.2 https://support.google.com/mail/?p=OverQuotaTemp a1b2c3d4e5f6.123 - gsmtp (in reply to RCPT TO command)", "", "", "mailbox_full", GMAIL),
    ("bounced", "cannot update mailbox /var/mail/bob for user bob. error writing message: File too large", "", "", "mailbox_full", None),
    ("bounced", "host mx.example.com[192.0.2.10] said: 552 5.2.2 Sorry, no room (in reply to RCPT TO command)", "", "", "mailbox_full", None),
    # user_unknown
    ("bounced", "host mx.example.com[192.0.2.10] said: 550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in virtual mailbox table (in reply to RCPT TO command)", "", "", "user_unknown", None),
    ("bounced", "host mx.example.net[198.51.100.7] said: 550 No such user here (in reply to RCPT TO command)", "", "", "user_unknown", None),
    ("bounced", "host aspmx.l.google.com[203.0.113.26] said: 550-5.1.1 The email account that you tried to reach does not exist. Please try 550-5.1.1 double-checking the recipient's email address for typos or 550-5.1.1 unnecessary spaces. Learn more at 550 5.1.1 https://support.google.com/mail/?p=NoSuchUser x12si3456789abc.42 - gsmtp (in reply to RCPT TO command)", "", "", "user_unknown", GMAIL),
    ("bounced", "host example-com.mail.protection.outlook.com[203.0.113.9] said: 550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [AM0PR01MB1234.eurprd01.prod.exchangelabs.com] (in reply to RCPT TO command)", "", "", "user_unknown", MICROSOFT),
    ("bounced", "host mx.example.net[198.51.100.7] said: 550 5.1.1 <ann@example.net>... Sorry, we do not know this one (in reply to RCPT TO command)", "", "", "user_unknown", None),
    ("reject", "<ann@example.net>: Recipient address rejected: undeliverable address: host mx.example.net[198.51.100.7] said: 550 5.1.1 User unknown (in reply to RCPT TO command)", "550", "5.1.1", "user_unknown", None),
    # local_recipient_unknown
    ("reject", "<bob@example.com>: Recipient address rejected: User unknown in local recipient table", "550", "5.1.1", "local_recipient_unknown", None),
    ("reject", "<info@example.net>: Recipient address rejected: User unknown in virtual alias table", "550", "5.1.1", "local_recipient_unknown", None),
    ("reject", "<sales@example.org>: Recipient address rejected: User unknown in virtual mailbox table", "550", "5.1.1", "local_recipient_unknown", None),
    ("bounced", "User unknown in virtual alias table", "", "5.1.1", "local_recipient_unknown", None),
    ("bounced", 'unknown user: "carol"', "", "5.1.1", "local_recipient_unknown", None),
    # mailbox_disabled
    ("bounced", "host mx.example.com[192.0.2.10] said: 550 5.2.1 The email account that you tried to reach is disabled. q1si2345678abc.9 - gsmtp (in reply to RCPT TO command)", "", "", "mailbox_disabled", GMAIL),
    ("bounced", "host mx.example.net[198.51.100.7] said: 550 This account has been suspended (in reply to RCPT TO command)", "", "", "mailbox_disabled", None),
    ("bounced", "host mx.example.net[198.51.100.7] said: 550 5.2.1 <ann@example.net>: Mailbox disabled, not accepting messages (in reply to RCPT TO command)", "", "", "mailbox_disabled", None),
    # recipient_moved
    ("bounced", "host mx.example.com[192.0.2.10] said: 550 5.1.6 <ann@example.com>: Recipient address rejected: User has moved to ann@example.org (in reply to RCPT TO command)", "", "", "recipient_moved", None),
    ("bounced", "host mx.example.com[192.0.2.10] said: 551 5.1.6 Please use the other address (in reply to RCPT TO command)", "", "", "recipient_moved", None),
    # domain_not_found, null_mx, dns_temporary
    ("bounced", "Host or domain name not found. Name service error for name=example.invalid type=A: Host not found", "", "5.4.4", "domain_not_found", None),
    ("reject", "<ann@nowhere.example>: Recipient address rejected: Domain not found", "450", "4.1.2", "domain_not_found", None),
    ("bounced", "Domain example.net does not accept mail (nullMX)", "", "5.1.10", "null_mx", None),
    ("deferred", "Host or domain name not found. Name service error for name=example.com type=MX: Host not found, try again", "", "4.4.3", "dns_temporary", None),
    # connections
    ("deferred", "connect to mx.example.com[192.0.2.10]:25: Connection refused", "", "4.4.1", "connection_refused", None),
    ("deferred", "connect to mx.example.com[192.0.2.10]:25: Connection timed out", "", "4.4.1", "connection_timeout", None),
    ("deferred", "lost connection with mx.example.com[192.0.2.10] while receiving the initial server greeting", "", "4.4.2", "connection_timeout", None),
    ("deferred", "conversation with mx.example.net[198.51.100.7] timed out while sending message body", "", "4.4.2", "connection_timeout", None),
    ("deferred", "connect to mx.example.com[2001:db8::25]:25: Network is unreachable", "", "4.4.1", "network_unreachable", None),
    ("deferred", "delivery temporarily suspended: connect to mx.example.net[198.51.100.7]:25: No route to host", "", "4.4.1", "network_unreachable", None),
    # tls_failure, sasl_auth_failed
    ("deferred", "TLS is required, but was not offered by host mx.example.com[192.0.2.10]", "", "4.7.4", "tls_failure", None),
    ("deferred", "Server certificate not verified", "", "4.7.5", "tls_failure", None),
    ("deferred", "Cannot start TLS: handshake failure", "", "4.7.5", "tls_failure", None),
    ("bounced", "host mx.example.com[192.0.2.10] said: 530 5.7.0 Must issue a STARTTLS command first (in reply to MAIL FROM command)", "", "", "tls_failure", None),
    ("deferred", "SASL authentication failed; server smtp.example.com[192.0.2.25] said: 535 5.7.8 Error: authentication failed: authentication failure", "", "", "sasl_auth_failed", None),
    ("bounced", "host smtp.example.net[198.51.100.25] said: 530 5.7.0 Authentication required (in reply to MAIL FROM command)", "", "", "sasl_auth_failed", None),
    # greylisted
    ("deferred", "host mx.example.com[192.0.2.10] said: 450 4.2.0 <ann@example.com>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.com.html (in reply to RCPT TO command)", "", "", "greylisted", None),
    ("deferred", "host mx.example.net[198.51.100.7] said: 451 4.7.1 Greylisting in action, please come back later (in reply to RCPT TO command)", "", "", "greylisted", None),
    ("reject", "from client.example.net[198.51.100.80]: 4.7.1 Try again later", "", "", "greylisted", None),
    # rate_limited
    ("deferred", "host gmail-smtp-in.l.google.com[203.0.113.26] said: 421-4.7.28 [192.0.2.10      15] Our system has detected an unusual rate of 421-4.7.28 unsolicited mail originating from your IP address. To protect our 421-4.7.28 users from spam, mail sent from your IP address has been temporarily 421-4.7.28 rate limited. Please visit 421-4.7.28  https://support.google.com/mail/?p=UnsolicitedRateLimitError to 421 4.7.28 review our Bulk Email Senders Guidelines. z9si1234567abc.77 - gsmtp (in reply to end of DATA command)", "", "", "rate_limited", GMAIL),
    ("deferred", "host gmail-smtp-in.l.google.com[203.0.113.26] said: 421-4.7.0 Try again later, closing connection. (EHLO) k7si7654321abc.12 - gsmtp (in reply to EHLO command)", "", "", "rate_limited", GMAIL),
    ("deferred", "host example-com.mail.protection.outlook.com[203.0.113.9] said: 451 4.7.500 Server busy. Please try again later from [192.0.2.10]. (S77714) [DB5EUR01FT001.eop-EUR01.prod.protection.outlook.com] (in reply to RCPT TO command)", "", "", "rate_limited", MICROSOFT),
    ("deferred", "host mx.example.net[198.51.100.7] refused to talk to me: 421 4.7.0 Too many concurrent SMTP connections from this IP address; please try again later", "", "", "rate_limited", None),
    ("reject", "too many connections", "", "", "rate_limited", None),
    ("deferred", "host mx.example.net[198.51.100.7] said: 452 4.5.3 Too many recipients (in reply to RCPT TO command)", "", "", "too_many_recipients", None),
    # blocked, with the list or receiver named
    ("deferred", "host mx.example.com[192.0.2.10] refused to talk to me: 554 5.7.1 Service unavailable; Client host [198.51.100.80] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/198.51.100.80", "", "", "blocked", "Spamhaus"),
    ("bounced", "host example-com.olc.protection.outlook.com[203.0.113.9] said: 550 5.7.1 Unfortunately, messages from [198.51.100.80] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150). You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors. [AM0EUR01FT002.eop-EUR01.prod.protection.outlook.com] (in reply to MAIL FROM command)", "", "", "blocked", MICROSOFT),
    ("bounced", "host mx.example.com[192.0.2.10] said: 550 5.7.606 Access denied, banned sending IP [198.51.100.80]. To request removal from this list please visit https://sender.office.com/ and follow the directions. (in reply to RCPT TO command)", "", "", "blocked", MICROSOFT),
    ("bounced", "host gmail-smtp-in.l.google.com[203.0.113.26] said: 550-5.7.1 [198.51.100.80      12] Our system has detected that this message is 550-5.7.1 likely unsolicited mail. To reduce the amount of spam sent to Gmail, 550-5.7.1 this message has been blocked. Please visit 550-5.7.1  https://support.google.com/mail/?p=UnsolicitedMessageError 550 5.7.1  for more information. c3si9876543abc.5 - gsmtp (in reply to end of DATA command)", "", "", "blocked", GMAIL),
    ("deferred", "host mta5.am0.yahoodns.net[203.0.113.40] said: 421 4.7.0 [TSS04] Messages from 198.51.100.80 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes (in reply to MAIL FROM command)", "", "", "blocked", "Yahoo (and AOL)"),
    ("deferred", "host mx0a-0001.pphosted.com[203.0.113.50] refused to talk to me: 554 Blocked - see https://ipcheck.proofpoint.com/?ip=198.51.100.80", "", "", "blocked", "Proofpoint"),
    ("bounced", "host mx.example.com[192.0.2.10] said: 554 Service unavailable; Client host [198.51.100.80] blocked using Barracuda Reputation; http://www.barracudanetworks.com/reputation/?pr=1&ip=198.51.100.80 (in reply to RCPT TO command)", "", "", "blocked", "Barracuda"),
    ("bounced", "host eu-smtp-inbound-1.mimecast.com[203.0.113.60] said: 550 csi.mimecast.org Poor Reputation Sender. - https://community.mimecast.com/docs/DOC-1369#550 [AbCdEfGhIjKlMnOp.uk123] (in reply to RCPT TO command)", "", "", "blocked", "Mimecast"),
    ("bounced", "host mx01.mail.icloud.com[203.0.113.70] said: 554 5.7.1 [HM08] Message rejected due to local policy. Please visit https://support.apple.com/en-us/HT204137 (in reply to end of DATA command)", "", "", "blocked", "Apple (iCloud Mail)"),
    ("deferred", "host mx.example.net[198.51.100.7] said: 554 5.7.1 Service unavailable; Client host [198.51.100.80] blocked using bl.spamcop.net (in reply to RCPT TO command)", "", "", "blocked", "SpamCop"),
    # sender authentication
    ("bounced", "host mx.example.com[192.0.2.10] said: 550 5.7.23 <ann@example.com>: Recipient address rejected: Message rejected due to: SPF fail - not authorized. Please see http://www.openspf.net/Why?s=mfrom;id=bob@example.net;ip=198.51.100.80;r=<ann@example.com> (in reply to RCPT TO command)", "", "", "spf_failed", None),
    ("bounced", "host mx.example.net[198.51.100.7] said: 550 5.7.1 Sender is not authorized to send mail on behalf of example.org (in reply to MAIL FROM command)", "", "", "spf_failed", None),
    ("bounced", "host mx.example.net[198.51.100.7] said: 550 5.7.20 No passing DKIM signature found (in reply to end of DATA command)", "", "", "dkim_failed", None),
    ("bounced", "host mx.example.net[198.51.100.7] said: 550 5.7.21 Message refused (in reply to end of DATA command)", "", "", "dkim_failed", None),
    ("bounced", "host gmail-smtp-in.l.google.com[203.0.113.26] said: 550-5.7.26 Unauthenticated email from example.net is not accepted due to domain's 550-5.7.26 DMARC policy. Please contact the administrator of example.net domain if 550-5.7.26 this was a legitimate mail. To learn about the DMARC initiative, go to 550 5.7.26  https://support.google.com/mail/?p=DmarcRejection e5si1122334abc.8 - gsmtp (in reply to end of DATA command)", "", "", "dmarc_failed", GMAIL),
    ("bounced", "host example-com.mail.protection.outlook.com[203.0.113.9] said: 550 5.7.509 Access denied, sending domain example.net does not pass DMARC verification and has a DMARC policy of reject. (in reply to end of DATA command)", "", "", "dmarc_failed", MICROSOFT),
    ("bounced", "host gmail-smtp-in.l.google.com[203.0.113.26] said: 550-5.7.26 This mail is unauthenticated, which poses a security risk to the 550-5.7.26 sender and Gmail users, and has been blocked. The sender must 550-5.7.26 authenticate with at least one of SPF or DKIM. For this message, 550-5.7.26 DKIM checks did not pass and SPF check for [example.net] did not 550-5.7.26 pass with ip: [198.51.100.80]. 550 5.7.26 https://support.google.com/mail/answer/81126#authentication f6si5566778abc.3 - gsmtp (in reply to end of DATA command)", "", "", "sender_auth_failed", GMAIL),
    ("bounced", "host mx.example.net[198.51.100.7] said: 550 5.7.26 Message refused (in reply to end of DATA command)", "", "", "sender_auth_failed", None),
    ("reject", "Client host rejected: cannot find your hostname, [203.0.113.99]", "450", "4.7.25", "reverse_dns", None),
    ("bounced", "host gmail-smtp-in.l.google.com[203.0.113.26] said: 550-5.7.25 The IP address sending this message does not have a PTR record setup, or 550 5.7.25 the corresponding forward DNS entry does not point to the sending IP. g7si1212121abc.4 - gsmtp (in reply to end of DATA command)", "", "", "reverse_dns", GMAIL),
    # size, content, checks
    ("bounced", "host mx.example.com[192.0.2.10] said: 552 5.3.4 Message size exceeds fixed maximum message size (in reply to MAIL FROM command)", "", "", "message_too_large", None),
    ("bounced", "message size 31457280 exceeds size limit 20971520 of server mx.example.com[192.0.2.10]", "", "5.3.4", "message_too_large", None),
    ("bounced", "host gmail-smtp-in.l.google.com[203.0.113.26] said: 550-5.7.1 Messages missing a valid address in From: header, or having no From: 550 5.7.1 header, are not accepted. m1si4455667abc.2 - gsmtp (in reply to end of DATA command)", "", "", "malformed_message", GMAIL),
    ("bounced", "host mx.example.net[198.51.100.7] said: 554 5.6.0 Message is not RFC 5322 compliant (in reply to end of DATA command)", "", "", "malformed_message", None),
    ("bounced", "host mx.example.net[198.51.100.7] said: 550 5.7.1 Message rejected as spam by Content Filtering. (in reply to end of DATA command)", "", "", "content_rejected", None),
    ("bounced", "host mx.example.net[198.51.100.7] said: 554 5.7.0 Reject, id=12345-01 - INFECTED: Eicar-Test-Signature (in reply to end of DATA command)", "", "", "content_rejected", None),
    ("bounced", "host gmail-smtp-in.l.google.com[203.0.113.26] said: 552-5.7.0 This message was blocked because its content presents a potential 552-5.7.0 security issue. h8si2323232abc.6 - gsmtp (in reply to end of DATA command)", "", "", "content_rejected", GMAIL),
    ("reject", "from client.example.net[198.51.100.80]: 5.7.1 Spam message rejected", "", "", "content_rejected", None),
    ("reject", "Subject: You have won a prize: message content rejected", "", "5.7.1", "header_body_check", None),
    # our own restrictions
    ("reject", "<ann@example.net>: Relay access denied", "454", "4.7.1", "relay_denied", None),
    ("bounced", "host mx.example.com[192.0.2.10] said: 554 5.7.1 <ann@example.net>: Relay access denied (in reply to RCPT TO command)", "", "", "relay_denied", None),
    ("reject", "Service unavailable; Client host [203.0.113.99] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/203.0.113.99", "554", "5.7.1", "client_blocklisted", "Spamhaus"),
    ("reject", "Service unavailable; client [203.0.113.99] blocked using bl.spamcop.net", "550", "5.7.1", "client_blocklisted", "SpamCop"),
    ("reject", "<ann@example.com>: Sender address rejected: not owned by user bob", "553", "5.7.1", "sender_rejected", None),
    ("reject", "<root@localhost>: Sender address rejected: need fully-qualified address", "504", "5.5.2", "sender_rejected", None),
    ("bounced", "host email-smtp.eu-west-1.amazonaws.com[203.0.113.80] said: 554 Message rejected: Email address is not verified. The following identities failed the check in region EU-WEST-1: ann@example.com (in reply to end of DATA command)", "", "", "sender_rejected", None),
    ("reject", "<ann@nowhere.example>: Sender address rejected: Domain not found", "450", "4.1.8", "sender_domain_unknown", None),
    ("deferred", "host mx.example.com[192.0.2.10] said: 450 4.1.8 <bounce@nowhere.example>: Sender address rejected: Domain not found (in reply to RCPT TO command)", "", "", "sender_domain_unknown", None),
    ("reject", "<localhost>: Helo command rejected: need fully-qualified hostname", "504", "5.5.2", "helo_rejected", None),
    ("reject", "<mail.example.invalid>: Helo command rejected: Host not found", "450", "4.7.1", "helo_rejected", None),
    ("reject", "<ann@example.com>: Recipient address rejected: Access denied", "554", "5.7.1", "access_denied", None),
    ("reject", "<bob@example.net>: Sender address rejected: Access denied", "554", "5.7.1", "access_denied", None),
    ("reject", "Client host rejected: Access denied", "554", "5.7.1", "access_denied", None),
    ("bounced", "host mx.example.com[192.0.2.10] said: 550 Administrative prohibition (in reply to end of DATA command)", "", "", "policy_rejected", None),
    ("reject", "<ann@example.com>: Recipient address rejected: Policy Rejection- Abuse. Go away.", "554", "5.7.1", "policy_rejected", None),
    ("reject", "<DATA>: Data command rejected: Multi-recipient bounce", "550", "5.5.3", "policy_rejected", None),
    ("reject", "Command rejected", "550", "5.7.1", "policy_rejected", None),
    # loops, temporary trouble, our own errors, expiry
    ("bounced", "mail forwarding loop for ann@example.com", "", "5.4.6", "mail_loop", None),
    ("bounced", "mail for example.com loops back to myself", "", "5.4.6", "mail_loop", None),
    ("bounced", "host mx.example.net[198.51.100.7] said: 554 5.4.0 Too many hops (in reply to end of DATA command)", "", "", "mail_loop", None),
    ("deferred", "host mx.example.com[192.0.2.10] said: 451 Temporary local problem - please try later (in reply to RCPT TO command)", "", "", "temporary_failure", None),
    ("deferred", "host mx.example.net[198.51.100.7] refused to talk to me: 421 mx.example.net Service not available, closing transmission channel", "", "", "temporary_failure", None),
    ("reject", "all server ports busy", "", "", "temporary_failure", None),
    ("reject", "Insufficient system storage", "452", "4.3.1", "insufficient_storage", None),
    ("deferred", "mail transport unavailable", "", "4.3.0", "local_error", None),
    ("deferred", 'Command died with status 75: "/usr/lib/dovecot/deliver". Command output: lda: Fatal: Internal error occurred', "", "4.3.0", "local_error", None),
    ("deferred", "connect to private/dovecot-lmtp[private/dovecot-lmtp]: No such file or directory", "", "4.4.1", "local_error", None),
    ("reject", "<ann@example.com>: Temporary lookup failure", "451", "4.3.0", "local_error", None),
    ("expired", "", "", "", "expired", None),
    ("bounced", "host mx.example.com[192.0.2.10] said: 550 Go away (in reply to RCPT TO command)", "", "", "unclassified", None),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "reply", "code", "dsn", "reason", "provider"), EXAMPLES)
def test_examples(
    rules: Rules, kind: str, reply: str, code: str, dsn: str, reason: str, provider: str | None
) -> None:
    v = verdict(rules, kind, reply, code, dsn)
    assert (v.reason.id, v.provider.name if v.provider else None) == (reason, provider), reply


def test_every_reason_has_examples() -> None:
    shipped = tomllib.loads(SHIPPED.read_text())
    assert set(shipped["reasons"]) == {e[4] for e in EXAMPLES}


def test_the_shipped_file() -> None:
    """Walked as plain TOML: complete reasons, rules naming them, providers with https pages."""
    data = tomllib.loads(SHIPPED.read_text())
    assert set(data) == {"reasons", "rules", "providers"}
    for rid, reason in data["reasons"].items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", rid)
        for key in ("title", "explanation", "action"):
            assert isinstance(reason.get(key), str) and reason[key].strip(), (rid, key)
    assert "unclassified" in data["reasons"]
    for n, rule in enumerate(data["rules"], 1):
        assert rule.get("reason") in data["reasons"], f"rule {n}"
        assert set(rule) - {"reason"}, f"rule {n} has no condition"
    for pid, provider in data["providers"].items():
        assert provider.get("name"), pid
        assert re.fullmatch(r"https://[^\s/]+/\S*", provider.get("url", "")), pid


def test_reasons_in_file_order(rules: Rules) -> None:
    ids = [r.id for r in rules.reasons()]
    assert ids == list(tomllib.loads(SHIPPED.read_text())["reasons"])
    assert ids[-1] == "unclassified"


def test_doc_names_every_reason(rules: Rules) -> None:
    doc = DOC.read_text()
    missing = [r.id for r in rules.reasons() if f"`{r.id}`" not in doc]
    assert not missing, f"docs/reasons.md does not name {missing}"


# --- user rule files


def user_rules(tmp_path: Path, text: str) -> Rules:
    path = tmp_path / "my-rules.toml"
    path.write_text(text)
    return Rules.load(str(path))


TEMP_PROBLEM = "host mx.example.com[192.0.2.10] said: 451 Temporary local problem - please try later (in reply to RCPT TO command)"


def test_user_rule_comes_first(tmp_path: Path, rules: Rules) -> None:
    assert verdict(rules, "deferred", TEMP_PROBLEM).reason.id == "temporary_failure"
    mine = user_rules(
        tmp_path,
        """
[[rules]]
reason = "greylisted"
kind = "deferred"
text = 'Temporary local problem'
""",
    )
    assert verdict(mine, "deferred", TEMP_PROBLEM).reason.id == "greylisted"
    assert verdict(mine, "bounced", TEMP_PROBLEM).reason.id == "temporary_failure"


def test_a_reject_stage_decides_for_content_checks(tmp_path: Path, rules: Rules) -> None:
    """cleanup's header and body checks reject with the admin's own words: the stage tells."""
    own_words = "Subject: Win a prize: we do not take this here"
    assert rules.classify("reject", "", "5.7.1", own_words, "header").reason.id == "header_body_check"
    assert rules.classify("reject", "", "5.7.1", own_words, "body").reason.id == "header_body_check"
    assert rules.classify("reject", "", "5.7.1", own_words, "RCPT").reason.id == "unclassified"
    mine = user_rules(tmp_path, "[[rules]]\nreason = 'policy_rejected'\nstage = 'body'\n")
    assert mine.classify("reject", "", "5.7.1", own_words, "body").reason.id == "policy_rejected"
    assert mine.classify("reject", "", "5.7.1", own_words, "header").reason.id == "header_body_check"


def test_user_reasons_and_providers(tmp_path: Path, rules: Rules) -> None:
    mine = user_rules(
        tmp_path,
        """
[reasons.vendor_outage]
title = "Our outbound relay is down"
explanation = "The smarthost at example.net refuses everything while it is maintained."
action = "Wait, or route through the backup relay."

[reasons.blocked]
title = "Blocked (see the runbook)"

[[rules]]
reason = "vendor_outage"
code = ["421", "45"]
dsn = "4.3"
text = ['maintenance', 'relay closed']

[providers.acme]
name = "ACME blocklist"
match = 'acme-bl'
url = "https://bl.example.net/lookup"

[providers.spamhaus]
url = "https://spamhaus.example.net/"
""",
    )
    ids = [r.id for r in mine.reasons()]
    assert ids[:-1] == [r.id for r in rules.reasons()] and ids[-1] == "vendor_outage"
    blocked = next(r for r in mine.reasons() if r.id == "blocked")
    assert blocked.title == "Blocked (see the runbook)"
    assert blocked.action == next(r for r in rules.reasons() if r.id == "blocked").action
    v = verdict(mine, "deferred", "host relay.example.net[198.51.100.7] said: 451 4.3.2 Relay closed for maintenance (in reply to MAIL FROM command)")  # fmt: skip
    assert v.reason.id == "vendor_outage"
    v = verdict(mine, "deferred", "host mx.example.com[192.0.2.10] said: 554 5.7.1 Client host [192.0.2.1] blocked using acme-bl.example.net and zen.spamhaus.org (in reply to RCPT TO command)")  # fmt: skip
    assert v.reason.title == "Blocked (see the runbook)"
    assert v.provider == Provider("ACME blocklist", "https://bl.example.net/lookup")
    v = verdict(mine, "reject", "Service unavailable; client [203.0.113.99] blocked using zen.spamhaus.org", "550", "5.7.1")  # fmt: skip
    assert v.provider == Provider("Spamhaus", "https://spamhaus.example.net/")


@pytest.mark.parametrize(("text", "problem"), [
    ("[[rules]\nreason = 'blocked'", "not valid TOML"),
    ("[[rules]]\nreason = 'blocked'\ntxt = 'x'", "rule 1: unknown key 'txt'"),
    ("[[rules]]\nreason = 'blocked'\ntext = 'a(b'", "rule 1: bad regular expression 'a(b'"),
    ("[[rules]]\nreason = 'no_such_reason'\ntext = 'x'", "rule 1: reason 'no_such_reason' is not defined"),
    ("[[rules]]\nreason = 'blocked'", "rule 1: needs a kind, code, dsn, text or stage"),
    ("[[rules]]\nreason = 'blocked'\nkind = 'rejected'", "rule 1: kind 'rejected' is not one of"),
    ("[[rules]]\nreason = 'blocked'\ncode = '5xx'", "rule 1: code '5xx' is not 1 to 3 digits"),
    ("[[rules]]\nreason = 'blocked'\ndsn = '5.7.*'", "rule 1: dsn '5.7.*' is not like"),
    ("[[rules]]\nreason = 'blocked'\ntext = 3", "rule 1: text must be a string or a list of strings"),
    ("[reasons.mine]\ntitle = 'Mine'\nexplanation = 'x'", "reason 'mine': action is missing"),
    ("[reasons.Mine]\ntitle = 'Mine'\nexplanation = 'x'\naction = 'y'", "reason id 'Mine' is not lower-case"),
    ("[reasons.blocked]\ncolour = 'red'", "reason 'blocked': unknown key 'colour'"),
    ("[providers.x]\nname = 'X'\nmatch = 'x'\nurl = 'ftp://x.example'", "provider 'x': url is not a web address"),
    ("[providers.x]\nname = 'X'\nurl = 'https://x.example/'", "provider 'x': match is missing"),
    ("[settings]\nx = 1", "unknown table 'settings'"),
    ("[[rules]]\nreason = 'blocked'\ntext = ['a', '(?i)b']", "rule 1: bad regular expression 'a|(?i)b'"),
])  # fmt: skip
def test_bad_user_file(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(UsageError) as e:
        user_rules(tmp_path, text)
    message = str(e.value)
    assert "my-rules.toml" in message and problem in message and "\n" not in message


def test_missing_user_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"rules .*nothing\.toml: No such file"):
        Rules.load(str(tmp_path / "nothing.toml"))


# --- codes, replies, the cache


@pytest.mark.parametrize(("dsn", "words"), [
    ("5.1.1", "permanent failure: bad destination mailbox address"),
    ("4.2.2", "persistent transient failure: mailbox full"),
    ("5.7.1", "permanent failure: delivery not authorized, message refused"),
    ("5.7.26", "permanent failure: multiple authentication checks failed"),
    ("5.7.23", "permanent failure: SPF validation failed"),
    ("4.7.25", "persistent transient failure: reverse DNS validation failed"),
    ("5.1.10", "permanent failure: recipient address has null MX"),
    ("2.0.0", "success: other undefined status"),
    ("5.7.606", "permanent failure: security or policy status"),
    ("4.9.1", "persistent transient failure"),
    (" 5.1.1 ", "permanent failure: bad destination mailbox address"),
    ("", ""),
    ("3.1.1", ""),
    ("5.1", ""),
    ("550", ""),
    ("x.1.1", ""),
])  # fmt: skip
def test_describe_status(dsn: str, words: str) -> None:
    assert describe_status(dsn) == words


@pytest.mark.parametrize(("reply", "code", "dsn"), [
    ("host mx.example.com[192.0.2.10] said: 550 5.1.1 <a@example.com>: User unknown (in reply to RCPT TO command)", "550", "5.1.1"),
    ("host mx.example.com[192.0.2.10] said: 550-5.7.1 [192.0.2.1] Our system 550-5.7.1 has detected 550 5.7.1 more", "550", "5.7.1"),
    ("host mx.example.com[192.0.2.10] refused to talk to me: 554 Blocked - see https://ipcheck.example.net/", "554", ""),
    ("host mx.example.com[192.0.2.10] said: 451-You have been greylisted 451 try later", "451", ""),
    ("delivery temporarily suspended: host mx.example.com[192.0.2.10] refused to talk to me: 421 4.7.0 Try again", "421", "4.7.0"),
    ("550 5.7.1 <a@example.com>: Relay access denied", "550", "5.7.1"),
    ("from client.example.net[198.51.100.80]: 4.7.1 Try again later", "", "4.7.1"),
    ("connect to mx.example.com[192.0.2.10]:25: Connection refused", "", ""),
    ("Host or domain name not found. Name service error for name=example.com type=MX: Host not found, try again", "", ""),
    ("", "", ""),
])  # fmt: skip
def test_split_reply(reply: str, code: str, dsn: str) -> None:
    assert split_reply(reply) == (code, dsn, reply)


def test_normalise() -> None:
    text = ("host mx.example.com[192.0.2.10] said: 550-5.7.1 <ann@example.com> and [bob@example.net] "
            "from [2001:db8::1]  and [IPv6:2001:db8::2], ip=2001:db8::3; id 1234567 (in  reply)")  # fmt: skip
    want = "host mx.example.com[IP] said: <> and [user@example.net] from [IP] and [IPv6:IP], ip=IP; id N (in reply)"
    assert normalise(text) == want
    port = "connect to mx.example.com[192.0.2.10]:25: Connection refused"
    assert normalise(port) == "connect to mx.example.com[IP]:25: Connection refused"


def test_repeats_share_a_verdict(rules: Rules) -> None:
    """Replies that differ only in addresses and IDs are one cached verdict."""
    reply = (
        "host mx.example.com[{}] said: 550 5.1.1 <{}@example.com>: User unknown (in reply to RCPT TO command)"
    )
    first = verdict(rules, "bounced", reply.format("192.0.2.10", "ann"))
    assert verdict(rules, "bounced", reply.format("192.0.2.11", "bob")) is first


def test_pickled_rules_classify_alike(rules: Rules) -> None:
    copy = pickle.loads(pickle.dumps(rules))
    for kind, reply, code, dsn, reason, _ in EXAMPLES:
        assert verdict(copy, kind, reply, code, dsn).reason.id == reason


@pytest.mark.parametrize(("pattern", "literals"), [
    (r"mailbox (?:is )?full|over ?quota", ("mailbox ", "quota")),
    (r"(?:TLS|SSL|encryption) (?:is )?(?:required|needed)", ("required", "needed")),
    (r"\bS3\d{3}\b", ("s3",)),
    (r"x{2,3}yz|ab{0,3}cd", ("yz", "cd")),
    (r"(ab)+cd", ("ab",)),
    (r"(?=foo)bar", ("bar",)),
    (r"[a|b]cd|e\.f", ("cd", "e.f")),
    (r"(?i)Host Not", ("host not",)),
    (r"(ab)?c", None),
    (r"foo|", None),
    (r"^$", None),
    (r"a(?P<x>b)(?P=x)c", None),
    (r"\x41bc", None),
])  # fmt: skip
def test_required_literals(pattern: str, literals: tuple[str, ...] | None) -> None:
    assert required_literals(pattern) == literals


# --- the corpus


def corpus_replies(corpus: Path) -> list[tuple[str, str, str, str]]:
    """(kind, code, DSN, text) of every deferral, bounce and refusal line in the corpus."""
    replies = []
    for path in sorted(corpus.glob("*.log")):
        if "message-bodies" in path.name:
            continue
        lines = LineParser(YearGuess(2024, None, None), None)
        events = EventParser(None)
        with path.open(encoding="utf-8", errors="replace") as f:
            for text in f:
                line = lines.parse(text.rstrip("\n"))
                ev = events.parse(line) if line else None
                if isinstance(ev, Delivery) and ev.status in ("deferred", "bounced"):
                    code, dsn, reply = split_reply(ev.reply)
                    replies.append((ev.status, code, ev.dsn or dsn, reply))
                elif isinstance(ev, Reject) and ev.action in REFUSALS:
                    replies.append(("reject", ev.code, ev.dsn, ev.reason))
    return replies


@pytest.fixture(scope="module")
def replies(corpus: Path) -> list[tuple[str, str, str, str]]:
    return corpus_replies(corpus)


def test_corpus_is_classified(rules: Rules, replies: list[tuple[str, str, str, str]]) -> None:
    leftovers: Counter[str] = Counter()
    for kind, code, dsn, text in replies:
        if rules.classify(kind, code, dsn, text).reason.id == "unclassified":
            leftovers[f"{kind} {code} {dsn} {normalise(text)}"] += 1
    total = len(replies)
    classified = total - sum(leftovers.values())
    shown = "\n".join(f"{n:5}  {reply}" for reply, n in leftovers.most_common())
    print(f"\nclassified {classified}/{total} = {classified / total:.2%}; unclassified:\n{shown}")
    assert total > 1000
    assert classified / total > WANTED_SHARE, f"{classified}/{total} classified; unclassified:\n{shown}"


def test_prefilter_never_hides_a_match(rules: Rules, replies: list[tuple[str, str, str, str]]) -> None:
    """A text that a rule's (or provider's) regex finds always contains one of its literals."""
    texts = {normalise(text) for _, _, _, text in replies} | {normalise(e[1]) for e in EXAMPLES}
    patterns = [r.text for r in rules._rules if r.text is not None] + [p.match for p in rules._providers]
    for text in texts:
        folded = text.casefold()
        for p in patterns:
            if p.regex.search(text) and p.literals is not None:
                assert any(lit in folded for lit in p.literals), (p.regex.pattern, text)
