"""One literal line per case, in the shapes the corpus holds (addresses anonymised)."""

from typing import Any

import pytest

from postlens.events import (
    Arrival,
    AuthFailure,
    Connect,
    ConnectFailure,
    Delivery,
    Diagnostic,
    Disconnect,
    EventParser,
    Expired,
    Info,
    Login,
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
    Verdict,
)
from postlens.lines import LineParser, YearGuess, zone

H = "Nov 28 19:45:39 mx "

CASES: list[tuple[str, type, dict[str, Any]]] = [
    ("postfix/smtpd[1]: connect from mail.example.com[192.0.2.1]", Connect,
     {"client_host": "mail.example.com", "client_ip": "192.0.2.1"}),
    ("postfix/smtpd[1]: connect from unknown[2001:db8::1]", Connect, {"client_ip": "2001:db8::1"}),
    ("postfix/smtpd[1]: disconnect from unknown[192.0.2.1] ehlo=1 auth=0/1 commands=1/2", Disconnect,
     {"commands": "ehlo=1 auth=0/1 commands=1/2"}),
    ("postfix/smtpd[1]: lost connection after DATA (approximately 0 bytes) from unknown[192.0.2.1]",
     SessionProblem, {"problem": "lost connection", "after": "DATA"}),
    ("postfix/smtpd[1]: timeout after END-OF-MESSAGE from unknown[192.0.2.1]", SessionProblem,
     {"problem": "timeout", "after": "END-OF-MESSAGE"}),
    ("postfix/submission/smtpd[1]: 4A3B2C1D0E: client=unknown[192.0.2.1], sasl_method=PLAIN, "
     "sasl_username=user@example.org", Arrival,
     {"qid": "4A3B2C1D0E", "sasl_method": "PLAIN", "sasl_username": "user@example.org"}),
    ("postfix/smtpd[1]: 4A3B2C1D0E: client=localhost[127.0.0.1], orig_queue_id=9F8E7D, "
     "orig_client=out.example.com[198.51.100.2]", Arrival,
     {"orig_qid": "9F8E7D", "orig_client": "out.example.com[198.51.100.2]"}),
    ("postfix/smtpd[1]: 3p7RMT0zrYz20p: client=unknown[192.0.2.1]", Arrival, {"qid": "3p7RMT0zrYz20p"}),
    ("postfix/smtpd[1]: NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 554 5.7.1 <a@example.net>: "
     "Relay access denied; from=<s@example.org> to=<a@example.net> proto=ESMTP helo=<h.example>", Reject,
     {"qid": "", "action": "reject", "stage": "RCPT", "code": "554", "dsn": "5.7.1",
      "sender": "s@example.org", "recipient": "a@example.net", "helo": "h.example",
      "reason": "<a@example.net>: Relay access denied"}),
    ("postfix/smtpd[1]: NOQUEUE: reject: CONNECT from unknown[192.0.2.1]: 554 5.7.1 <unknown[192.0.2.1]>: "
     "Client host rejected: Access denied; proto=SMTP", Reject, {"stage": "CONNECT", "client_ip": "192.0.2.1"}),
    ("postfix/smtpd[1]: NOQUEUE: reject_warning: RCPT from unknown[192.0.2.1]: 450 4.7.1 Client host "
     "rejected: cannot find your hostname; from=<s@example.org> to=<a@example.net> proto=ESMTP helo=<h>",
     Reject, {"action": "reject_warning"}),
    ("postfix/smtpd[1]: 4A3B2C1D0E: hold: RCPT from unknown[192.0.2.1]: <a@example.net>: Recipient "
     "address triggers HOLD action; from=<s@example.org> to=<a@example.net> proto=ESMTP helo=<h>",
     Reject, {"action": "hold", "qid": "4A3B2C1D0E"}),
    ("postfix/smtpd[1]: 4A3B2C1D0E: milter-reject: END-OF-MESSAGE from unknown[192.0.2.1]: 5.7.1 Spam; "
     "from=<s@example.org> to=<a@example.net> proto=ESMTP helo=<h>", Reject,
     {"action": "milter-reject", "stage": "END-OF-MESSAGE", "dsn": "5.7.1"}),
    ("postfix/smtpd[1]: warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
     AuthFailure, {"client_ip": "192.0.2.1", "method": "LOGIN", "username": ""}),
    ("postfix/smtpd[1]: warning: unknown[192.0.2.1]: SASL PLAIN authentication failed: , "
     "sasl_username=bob", AuthFailure, {"username": "bob", "method": "PLAIN"}),
    ("postfix/smtpd[1]: Anonymous TLS connection established from unknown[192.0.2.1]: TLSv1.3 with cipher "
     "TLS_AES_256_GCM_SHA384 (256/256 bits)", Tls, {"direction": "in", "trust": "Anonymous", "protocol": "TLSv1.3"}),
    ("postfix/smtp[1]: Verified TLS connection established to mx.example.com[192.0.2.1]:25: TLSv1.2 with "
     "cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits)", Tls, {"direction": "out", "trust": "Verified"}),
    ("postfix/smtpd[1]: warning: hostname x.example does not resolve to address 192.0.2.1", Diagnostic,
     {"level": "warning"}),
    ("postfix/postscreen[1]: CONNECT from [192.0.2.1]:5000 to [198.51.100.1]:25", Screen,
     {"action": "CONNECT", "client_ip": "192.0.2.1"}),
    ("postfix/postscreen[1]: PASS NEW [192.0.2.1]:5000", Screen, {"action": "PASS NEW"}),
    ("postfix/postscreen[1]: PREGREET 11 after 0.08 from [192.0.2.1]:5000: EHLO x\\r\\n", Screen,
     {"action": "PREGREET"}),
    ("postfix/postscreen[1]: HANGUP after 0.5 from [192.0.2.1]:5000 in tests after SMTP handshake", Screen,
     {"action": "HANGUP"}),
    ("postfix/postscreen[1]: DNSBL rank 4 for [192.0.2.1]:5000", Screen, {"action": "DNSBL", "detail": "4"}),
    ("postfix/postscreen[1]: WHITELISTED [192.0.2.1]:5000", Screen, {"action": "WHITELISTED"}),
    ("postfix/postscreen[1]: NOQUEUE: reject: RCPT from [192.0.2.1]:5000: 550 5.7.1 Service unavailable; "
     "client [192.0.2.1] blocked using zen.example.org; from=<a@example.org>, to=<b@example.net>, "
     "proto=ESMTP, helo=<x>", Reject, {"action": "reject", "stage": "RCPT", "client_ip": "192.0.2.1"}),
    ("postfix/dnsblog[1]: addr 192.0.2.1 listed by domain zen.example.org as 127.0.0.4", Screen,
     {"action": "LISTED", "client_ip": "192.0.2.1"}),
    ("postfix/cleanup[1]: 4A3B2C1D0E: message-id=<abc@example.org>", MessageId, {"message_id": "abc@example.org"}),
    ("postfix/cleanup[1]: 4A3B2C1D0E: reject: header Subject: hi from unknown[192.0.2.1]; "
     "from=<s@example.org> to=<a@example.net> proto=ESMTP helo=<h>: 5.7.1 no thanks", Reject,
     {"action": "reject", "stage": "header", "dsn": "5.7.1", "sender": "s@example.org"}),
    ("postfix/cleanup[1]: 4A3B2C1D0E: warning: header Subject: hi from local; from=<root@mx> to=<a@mx>",
     Reject, {"action": "warning", "stage": "header"}),
    ("postfix/cleanup[1]: 4A3B2C1D0E: milter-reject: END-OF-MESSAGE from unknown[192.0.2.1]: 5.7.1 virus; "
     "from=<s@example.org> to=<a@example.net> proto=ESMTP helo=<h>", Reject, {"action": "milter-reject"}),
    ("postfix/pickup[1]: 4A3B2C1D0E: uid=0 from=<root>", Pickup, {"uid": "0", "sender": "root"}),
    ("postfix/qmgr[1]: 4A3B2C1D0E: from=<s@example.org>, size=1234, nrcpt=2 (queue active)", Queued,
     {"sender": "s@example.org", "size": 1234, "nrcpt": 2}),
    ("postfix/qmgr[1]: 4A3B2C1D0E: removed", Removed, {"qid": "4A3B2C1D0E"}),
    ("postfix/qmgr[1]: 4A3B2C1D0E: from=<s@example.org>, status=expired, returned to sender", Expired,
     {"forced": False}),
    ("postfix/qmgr[1]: 4A3B2C1D0E: from=<s@example.org>, status=force-expired, returned to sender", Expired,
     {"forced": True}),
    ("postfix/qmgr[1]: 4A3B2C1D0E: to=<a@example.net>, relay=none, delay=3601, delays=3601/0/0/0, dsn=4.4.1, "
     "status=deferred (delivery temporarily suspended: connect to mx.example.net[192.0.2.9]:25: Connection "
     "refused)", Delivery, {"status": "deferred", "relay": "none"}),
    ("postfix/smtp[1]: 4A3B2C1D0E: to=<a@example.net>, orig_to=<a@alias.example>, relay=mx.example.net"
     "[192.0.2.9]:25, conn_use=2, delay=0.92, delays=0.11/0.01/0.3/0.5, dsn=2.0.0, status=sent "
     "(250 2.0.0 Ok: queued as 9F8E)", Delivery,
     {"to": "a@example.net", "orig_to": "a@alias.example", "delay": 0.92, "delays": "0.11/0.01/0.3/0.5",
      "dsn": "2.0.0", "status": "sent", "reply": "250 2.0.0 Ok: queued as 9F8E"}),
    ("postfix/relay/smtp[1]: 4A3B2C1D0E: to=<a@example.net>, relay=r.example[192.0.2.9]:25, delay=1, "
     "delays=0/0/0/1, dsn=5.1.1, status=bounced (host r.example[192.0.2.9] said: 550 5.1.1 no such user "
     "(in reply to RCPT TO command))", Delivery, {"status": "bounced"}),
    ("postfix/local[1]: 4A3B2C1D0E: to=<u@mx.example>, relay=local, delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, "
     "status=sent (delivered to command: procmail -a)", Delivery, {"status": "sent", "relay": "local"}),
    ("postfix/virtual[1]: 4A3B2C1D0E: to=<u@example.org>, relay=virtual, delay=0.1, delays=0/0/0/0.1, "
     "dsn=2.0.0, status=sent (delivered to maildir)", Delivery, {"status": "sent"}),
    ("postfix/lmtp[1]: 4A3B2C1D0E: to=<u@example.org>, relay=mail[private/dovecot-lmtp], delay=0.1, "
     "delays=0/0/0/0.1, dsn=2.0.0, status=sent (250 2.0.0 <u@example.org> Saved)", Delivery, {"status": "sent"}),
    ("postfix/pipe[1]: 4A3B2C1D0E: to=<u@example.org>, relay=spamassassin, delay=1, delays=0/0/0/1, "
     "dsn=2.0.0, status=sent (delivered via spamassassin service)", Delivery, {"relay": "spamassassin"}),
    ("postfix/error[1]: 4A3B2C1D0E: to=<u@example.org>, relay=none, delay=1, delays=0/0/0/1, dsn=4.4.1, "
     "status=deferred (delivery temporarily suspended: lost connection)", Delivery, {"status": "deferred"}),
    ("postfix/discard[1]: 4A3B2C1D0E: to=<u@example.org>, relay=none, delay=0, delays=0/0/0/0, dsn=2.0.0, "
     "status=sent (discarded)", Delivery, {"status": "sent"}),
    ("postfix/smtp[1]: connect to mx.example.net[192.0.2.9]:25: Connection timed out", ConnectFailure,
     {"peer": "mx.example.net[192.0.2.9]", "reason": "Connection timed out"}),
    ("postfix/smtp[1]: 4A3B2C1D0E: host mx.example.net[192.0.2.9] said: 450 try later (in reply to RCPT TO "
     "command)", Info, {"qid": "4A3B2C1D0E"}),
    ("postfix/bounce[1]: 4A3B2C1D0E: sender non-delivery notification: 5B6C7D8E9F", Notice,
     {"kind": "non-delivery", "notice_qid": "5B6C7D8E9F"}),
    ("postfix/bounce[1]: 4A3B2C1D0E: sender delay notification: 5B6C7D8E9F", Notice, {"kind": "delay"}),
    ("postfix/bounce[1]: 4A3B2C1D0E: postmaster non-delivery notification: 5B6C7D8E9F", Notice,
     {"kind": "postmaster non-delivery"}),
    ("postfix/postsuper[1]: 4A3B2C1D0E: placed on hold", QueueAction, {"action": "placed on hold"}),
    ("postfix/postsuper[1]: 4A3B2C1D0E: removed", QueueAction, {"action": "removed"}),
    ("postfix/postsuper[1]: Deleted: 3 messages", Info, {}),
    ("postfix/master[1]: daemon started -- version 3.7.11, configuration /etc/postfix", MasterMessage, {}),
    ("postfix/master[1]: warning: process /usr/lib/postfix/sbin/smtpd pid 9 exit status 1", Diagnostic,
     {"level": "warning"}),
    ("postfix/postfix-script[1]: starting the Postfix mail system", Info, {}),
    ("postfix/postfix-script[1]: fatal: the Postfix mail system is already running", Diagnostic,
     {"level": "fatal"}),
    ("postfix/anvil[1]: statistics: max connection rate 1/60s for (smtp:192.0.2.1) at Nov 28 19:45:39", Info, {}),
    ("postfix/scache[1]: statistics: start interval Nov 28 19:42:19", Info, {}),
    ("postfix/tlsproxy[1]: CONNECT from [192.0.2.1]:5000", Screen, {"action": "CONNECT"}),
    ("postfix/trivial-rewrite[1]: warning: do not list domain example.org in BOTH mydestination and "
     "virtual_mailbox_domains", Diagnostic, {"level": "warning"}),
    ("postfix/sendmail[1]: fatal: root(0): message file too big", Diagnostic, {"level": "fatal"}),
    ("postfix/postdrop[1]: warning: unable to look up public/pickup: No such file or directory", Diagnostic, {}),
    ("postfix/verify[1]: cache btree:/var/lib/postfix/verify_cache full cleanup: retained=2 dropped=0 entries",
     Info, {}),
    ("postfix/smtpd[1]: panic: myfree: corrupt or unallocated memory block", Diagnostic, {"level": "panic"}),
    ("postfix/smtpd[1]: error: open database /etc/postfix/x.db: No such file or directory", Diagnostic,
     {"level": "error"}),
    ("postfix-out/qmgr[1]: 4A3B2C1D0E: removed", Removed, {}),
    ("dovecot: imap-login: Login: user=<u@example.org>, method=PLAIN, rip=192.0.2.1, lip=198.51.100.1, "
     "mpid=9, TLS, session=<x>", Login, {"username": "u@example.org", "method": "PLAIN", "client_ip": "192.0.2.1"}),
    ("dovecot: pop3-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<u>, method=PLAIN, "
     "rip=192.0.2.1, lip=198.51.100.1, session=<x>", AuthFailure, {"username": "u", "client_ip": "192.0.2.1"}),
    ("dovecot: imap-login: Aborted login (auth failed, 3 attempts in 14 secs): user=<u>, method=LOGIN, "
     "rip=192.0.2.1, lip=198.51.100.1, TLS, session=<x>", AuthFailure, {"method": "LOGIN"}),
    ("dovecot[9]: auth: passwd-file(u,192.0.2.1): unknown user", Info, {}),
    ("amavis[9]: (09-01) Passed CLEAN {RelayedInbound}, [192.0.2.1]:5 <a@example.org> -> <b@example.net>", Verdict,
     {"check": "amavis", "verdict": "Passed CLEAN", "qid": ""}),
    ("amavis[9]: (01626-01) Blocked INFECTED (Win.Test.EICAR_HDB-1) {DiscardedInbound,Quarantined}, "
     "[192.0.2.33]:57864 <a@example.org> -> <b@example.net>, quarantine: 7/virus-7A, Queue-ID: 413BE60672, "
     "Message-ID: <m@example.org>, mail_id: 7A, Hits: -, size: 5098, 981 ms", Verdict,
     {"check": "amavis", "verdict": "Blocked INFECTED", "qid": "413BE60672"}),
    ("amavis[9]: (09-01) size: 5098, TIMING [total 981 ms] - SMTP greeting: 3 (0%)0", Info, {}),
    ("spamd[9]: spamd: identified spam (9.3/5.0) for nagios:1209 in 0.8 seconds, 5 bytes.", Verdict,
     {"check": "spamassassin", "verdict": "spam"}),
    ("spamd[9]: spamd: clean message (0.2/5.0) for nobody:65534 in 0.4 seconds, 3811 bytes.", Verdict,
     {"check": "spamassassin", "verdict": "clean"}),
    ("policyd-spf[9]: prepend Received-SPF: Pass (mailfrom) identity=mailfrom; client-ip=192.0.2.1; "
     "helo=h.example; envelope-from=a@example.org; receiver=<UNKNOWN>", Verdict, {"check": "spf", "verdict": "pass"}),
    ("opendkim[9]: 3F73A3004142: DKIM verification successful", Verdict,
     {"check": "dkim", "verdict": "verified", "qid": "3F73A3004142"}),
    ("opendkim[9]: 3F73A3004142: DKIM-Signature field added (s=mail, d=example.org)", Verdict,
     {"check": "dkim", "verdict": "signed"}),
    ("opendkim[9]: 3F73A3004142: example.org [192.0.2.1] not internal", Info, {}),
    ("opendmarc[9]: 3F73A3004142: example.org fail", Verdict, {"check": "dmarc", "verdict": "fail"}),
    ("opendmarc[9]: ignoring connection from localhost.localdomain", Info, {}),
    ("postgrey[9]: action=greylist, reason=new, client_name=h.example, client_address=192.0.2.1, "
     "sender=a@example.org, recipient=b@example.net", Verdict, {"check": "greylisting", "verdict": "greylist"}),
    ("postfix/smtpd[1]: this is not a line postfix writes", Unknown, {}),
]  # fmt: skip


@pytest.mark.parametrize(("payload", "kind", "fields"), CASES, ids=[c[0][:60] for c in CASES])
def test_event(payload: str, kind: type, fields: dict[str, Any]) -> None:
    z = zone("UTC")
    line = LineParser(YearGuess(2026, None, z), z).parse(H + payload)
    assert line is not None
    ev = EventParser().parse(line)
    assert type(ev) is kind
    for name, value in fields.items():
        assert getattr(ev, name) == value, name


def test_foreign_programs_are_not_events() -> None:
    z = zone("UTC")
    line = LineParser(YearGuess(2026, None, z), z).parse(H + "sshd[5]: Accepted publickey for ops")
    assert line is not None
    assert EventParser().parse(line) is None
