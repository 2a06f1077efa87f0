"""Alert rules over hand-written log lines, and real destinations: an HTTP receiver, smtp-sink,
a command, a syslog socket, and apprise."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from postlens import config
from postlens.addresses import ContentFilters
from postlens.alerts import (
    Alert,
    AlertEngine,
    AppriseDestination,
    CommandDestination,
    Destination,
    EmailDestination,
    LogDestination,
    Rule,
    TerminalDestination,
    WebhookDestination,
    destinations_from_config,
    rules_from_config,
)
from postlens.errors import UsageError
from postlens.events import Event, EventParser
from postlens.lines import LineParser, YearGuess, zone
from tests.conftest import need, need_module

Z = zone("UTC")
T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC).timestamp()
A, B = "192.0.2.1", "192.0.2.2"


class Log:
    """Hand-written lines, ``t`` seconds after T0, through the real line and event parsers."""

    def __init__(self, filters: ContentFilters | None = None) -> None:
        self.lines = LineParser(YearGuess(2026, None, Z), Z)
        self.events = EventParser(None, filters)

    def __call__(self, t: float, payload: str) -> Event:
        stamp = datetime.fromtimestamp(T0 + t, UTC).strftime("%b %d %H:%M:%S")
        line = self.lines.parse(f"{stamp} mx {payload}")
        assert line is not None
        ev = self.events.parse(line)
        assert ev is not None
        return ev


def failed(ip: str, user: str = "bob") -> str:
    return (f"postfix/submission/smtpd[11]: warning: unknown[{ip}]: SASL PLAIN authentication failed: "
            f"authentication failure, sasl_username={user}")  # fmt: skip


def delivery(
    to: str, status: str, reply: str = "250 2.0.0 Ok", relay: str = "mx.example.net[192.0.2.9]:25"
) -> str:
    dsn = {"sent": "2.0.0", "deferred": "4.4.1", "bounced": "5.1.1"}[status]
    return (f"postfix/smtp[12]: 4A3B2C1D0E: to=<{to}>, relay={relay}, delay=1, delays=0/0/0/1, dsn={dsn}, "
            f"status={status} ({reply})")  # fmt: skip


def arrival(ip: str, user: str = "") -> str:
    sasl = f", sasl_method=PLAIN, sasl_username={user}" if user else ""
    return f"postfix/smtpd[13]: 5B4C3D2E1F: client=unknown[{ip}]{sasl}"


def reject(ip: str) -> str:
    return (f"postfix/smtpd[13]: NOQUEUE: reject: RCPT from unknown[{ip}]: 554 5.7.1 <a@example.net>: Relay "
            "access denied; from=<s@example.org> to=<a@example.net> proto=ESMTP helo=<h.example>")  # fmt: skip


def login(ip: str, user: str = "bob") -> str:
    return (f"dovecot: imap-login: Login: user=<{user}>, method=PLAIN, rip={ip}, lip=198.51.100.1, mpid=9, TLS, "
            "session=<x>")  # fmt: skip


HOP = "127.0.0.1[127.0.0.1]:10024"
FATAL = "postfix/smtpd[14]: fatal: open /etc/postfix/main.cf: No such file or directory"


@pytest.fixture(autouse=True)
def no_sender_left() -> Iterator[None]:
    """Every engine is closed: none of its sending threads outlives a test."""
    yield
    assert not [t.name for t in threading.enumerate() if t.name.startswith("postlens alerts")]


def run(engine: AlertEngine, log: Log, steps: list[tuple[float, str]]) -> list[tuple[float, Alert]]:
    """Feeds each line and ticks at its time, as a watcher does; the alerts with their tick."""
    out = []
    for t, payload in steps:
        engine.feed(log(t, payload))
        out += [(t, a) for a in engine.tick(T0 + t)]
    return out


def brief(alerts: list[Alert]) -> list[tuple[str, str, str, float]]:
    return [(a.rule, a.state, a.key, a.value) for a in alerts]


# -- the rules ---------------------------------------------------------------------------


def test_failed_logins_fire_per_ip_at_the_threshold_and_resolve_when_the_window_clears() -> None:
    log = Log()
    engine = AlertEngine([Rule("logins", "auth_failures_ip", window=60, threshold=3)], [])
    fired = run(engine, log, [(0, failed(A)), (1, failed(A)), (2, failed(B)), (3, failed(A)), (4, failed(A)),
                              (5, failed(B)), (6, failed(B))])  # fmt: skip
    assert [(t, a.key, a.state, a.value) for t, a in fired] == [(3, A, "firing", 3), (6, B, "firing", 3)]
    first = fired[0][1]
    assert first.text == f"3 failed logins from {A} within 1 minute, the threshold is 3"
    assert first.example == "postfix/submission/smtpd[11]: " + failed(A).split(": ", 1)[1]
    assert first.to_json() == {
        "rule": "logins", "kind": "auth_failures_ip", "severity": "warning", "state": "firing", "key": A,
        "value": 3, "threshold": 3, "window": 60, "since": "2026-11-28T12:00:03Z", "at": "2026-11-28T12:00:03Z",
        "text": first.text, "example": first.example,
    }  # fmt: skip
    # at 60 s the line of second 0 has left the window: A still has 3, B has 3
    assert engine.tick(T0 + 60) == []
    resolved = engine.tick(T0 + 62)
    assert brief(resolved) == [("logins", "resolved", A, 2), ("logins", "resolved", B, 2)]
    assert resolved[0].since == T0 + 3 and resolved[0].at == T0 + 62
    assert resolved[0].text == f"2 failed logins from {A} within 1 minute, under the threshold of 3 again"
    assert engine.tick(T0 + 100) == []


def test_the_cool_down_holds_back_a_second_firing_for_the_same_key_only() -> None:
    log = Log()
    engine = AlertEngine([Rule("logins", "auth_failures_ip", window=10, threshold=2, cooldown=100)], [])
    assert brief([a for _, a in run(engine, log, [(0, failed(A)), (1, failed(A))])]) == [
        ("logins", "firing", A, 2)
    ]
    assert [a.state for a in engine.tick(T0 + 12)] == ["resolved"]
    # over the threshold again within the cool-down: A is held back, B is not
    held = run(engine, log, [(20, failed(A)), (21, failed(A)), (22, failed(B)), (23, failed(B))])
    assert [(t, a.key) for t, a in held] == [(23, B)]
    # A left the window unannounced: no resolved notice for it either
    assert [(a.state, a.key) for a in engine.tick(T0 + 40)] == [("resolved", B)]
    # A over the threshold from 95 on, every second: it fires when the cool-down ends, since 96
    fired = run(engine, log, [(t, failed(A)) for t in range(95, 106)])
    assert [(t, a.key, a.since - T0) for t, a in fired] == [(101, A, 96)]


def test_a_key_limits_a_rule_to_one_ip() -> None:
    log = Log()
    engine = AlertEngine([Rule("b only", "auth_failures_ip", window=60, threshold=2, key=B)], [])
    fired = run(engine, log, [(0, failed(A)), (1, failed(A)), (2, failed(B)), (3, failed(B))])
    assert [(t, a.key) for t, a in fired] == [(3, B)]


def test_a_named_content_filter_s_hops_and_refused_reinjections_are_not_judged() -> None:
    """As for a filter on loopback: its hops are no deliveries, its re-injections (and their
    rejects) are not clients' mail."""
    hop = "filter.example[198.51.100.7]:10024"
    steps = [(1, delivery("u@a.example", "sent", "250 2.0.0 Ok: queued as 9F8E7D", relay=hop))] * 5
    steps += [(2, delivery("u@a.example", "bounced", "550 5.1.1 no such user"))]
    steps += [(3, arrival("198.51.100.7"))] * 3 + [(4, reject("198.51.100.7"))] * 5 + [(5, arrival(A))]
    fired = {}
    for filters in (ContentFilters(), ContentFilters(["198.51.100.7"])):
        rules = [
            Rule("bounces", "bounce_rate", window=600, threshold=0.5, min_count=1),
            Rule("rejects", "reject_rate", window=600, threshold=0.5, min_count=4),
        ]
        engine = AlertEngine(rules, [])
        fired[bool(filters)] = [(t, a.rule, a.value) for t, a in run(engine, Log(filters), steps)]
        engine.close()
    # unnamed: 1 bounce of 6 "deliveries", 5 rejects of 9; named: 1 of 1, and one client only
    assert fired == {False: [(4, "rejects", 0.5)], True: [(2, "bounces", 1.0)]}


def test_rates_are_judged_from_the_minimum_count_and_skip_content_filter_hops() -> None:
    log = Log()
    rules = [
        Rule("deferrals", "deferral_rate", window=600, threshold=0.5, min_count=4),
        Rule("bounces", "bounce_rate", window=600, threshold=0.25, min_count=2),
        Rule("rejects", "reject_rate", window=600, threshold=0.5, min_count=4),
    ]
    engine = AlertEngine(rules, [])
    later = "connect to mx.example.net[192.0.2.9]:25: Connection refused"
    steps = [(1, delivery("u@a.example", "sent"))]
    steps += [(2, delivery("u@a.example", "sent", "250 2.0.0 Ok: queued as 9F8E7D", relay=HOP))] * 5
    steps += [(3, delivery("u@a.example", "deferred", later))] * 3  # 3 of 4 attempts: 75%
    steps += [(4, delivery("u@b.example", "deferred", later))] * 3  # 100%, but only 3 attempts
    steps += [(5, delivery("u@b.example", "bounced", "550 5.1.1 no such user"))]  # 1 of 2 finished: 50%
    steps += [(6, arrival("127.0.0.1"))] * 5 + [(7, arrival(A))] + [(8, reject(A))] * 3  # 3 of 4: 75%
    fired = run(engine, log, steps)
    assert [(t, a.rule, a.key, a.value) for t, a in fired] == [
        (3, "deferrals", "a.example", 0.75),
        (5, "deferrals", "b.example", 0.75),  # the bounce is its fourth attempt
        (5, "bounces", "", 0.5),  # the hops are not deliveries: 1 sent, 1 bounced
        (8, "rejects", "", 0.75),
    ]
    texts = {a.rule: a.text for _, a in fired}
    assert (
        texts["deferrals"]
        == "75% of 4 delivery attempts to b.example were deferred within 10 minutes, the threshold is 50%"
    )
    assert (
        texts["rejects"]
        == "75% of 4 messages and rejects from clients were rejects within 10 minutes, the threshold is 50%"
    )
    assert fired[0][1].example.endswith("status=deferred (" + later + ")")


def test_silence_fires_after_a_window_without_delivery_and_resolves_on_the_next() -> None:
    log = Log()
    engine = AlertEngine([Rule("quiet", "silence", window=600, threshold=1, severity="critical")], [])
    assert engine.tick(T0) == []  # no log yet: watching starts now
    engine.feed(log(10, delivery("u@a.example", "sent")))
    engine.feed(log(500, delivery("u@a.example", "sent", "250 2.0.0 Ok: queued as 9F8E7D", relay=HOP)))
    assert engine.tick(T0 + 609) == []
    fired = engine.tick(T0 + 610)
    assert brief(fired) == [("quiet", "firing", "", 0)]
    assert fired[0].text == "nothing was delivered within 10 minutes"
    engine.feed(log(700, delivery("u@a.example", "sent")))
    resolved = engine.tick(T0 + 700)
    assert brief(resolved) == [("quiet", "resolved", "", 1)]
    assert resolved[0].text == "mail is delivered again: 1 delivery within 10 minutes"


def test_fatal_and_panic_lines_fire_with_the_line_and_resolve_after_the_window() -> None:
    log = Log()
    engine = AlertEngine([Rule("fatal", "fatal", window=600, threshold=1, severity="critical")], [])
    fired = run(engine, log, [(0, "postfix/smtpd[14]: warning: hostname x does not resolve"), (5, FATAL)])
    assert [t for t, _ in fired] == [5]
    assert (
        fired[0][1].text == f"1 fatal or panic line within 10 minutes, the threshold is 1; the last: {FATAL}"
    )
    assert [a.state for a in engine.tick(T0 + 605)] == ["resolved"]


def test_security_findings_are_rules_guessed_password_and_brute_force() -> None:
    log = Log()
    rules = [
        Rule("guessed", "security", window=600, threshold=3, severity="critical", finding="guessed_password"),
        Rule("brute", "security", window=600, threshold=5, finding="brute_force"),
    ]
    engine = AlertEngine(rules, [])
    steps = (
        [(t, failed(A)) for t in range(3)]
        + [(10, login(A))]
        + [(20 + t, failed(B, "root")) for t in range(5)]
    )
    fired = run(engine, log, steps)
    assert [(t, a.rule, a.key, a.value) for t, a in fired] == [(10, "guessed", A, 3), (24, "brute", B, 5)]
    assert "password was probably guessed" in fired[0][1].text
    resolved = engine.tick(T0 + 625)
    assert brief(resolved) == [("guessed", "resolved", A, 0), ("brute", "resolved", B, 0)]
    assert resolved[1].text == f"no brute force by {B} within 10 minutes any more"


def test_a_client_refused_again_and_again_is_a_finding_to_alert_on() -> None:
    """fail2ban's postfix jail as an alert: the destination can run the block."""
    log = Log()
    engine = AlertEngine(
        [Rule("probes", "security", window=600, threshold=4, finding="repeated_rejects")], []
    )
    steps = [(t * 30, reject(A)) for t in range(4)] + [(200, failed(B)), (201, reject(B))]
    fired = run(engine, log, steps)
    assert [(t, a.rule, a.key, a.value) for t, a in fired] == [(90, "probes", A, 4)]
    assert fired[0][1].text == f"{A} was refused 4 times within 10 minutes (4 in all)"
    assert brief(engine.tick(T0 + 700)) == [("probes", "resolved", A, 0)]


def test_content_check_verdicts_fire_per_verdict() -> None:
    """A virus wave: amavis's Blocked INFECTED, counted apart from its clean passes."""
    log = Log()
    rules = [
        Rule(
            "virus",
            "content_check",
            window=600,
            threshold=2,
            severity="critical",
            key="amavis: blocked infected",
        )
    ]
    engine = AlertEngine(rules, [])
    infected = "amavis[9]: (09-01) Blocked INFECTED (Eicar) {DiscardedInbound}, [192.0.2.33]:5 <a@b.example> -> <c@d.example>"
    clean = "amavis[9]: (09-02) Passed CLEAN {RelayedInbound}, [192.0.2.33]:5 <a@b.example> -> <c@d.example>"
    fired = run(engine, log, [(0, infected), (5, clean), (6, clean), (30, infected)])
    assert [(t, a.rule, a.key, a.value) for t, a in fired] == [(30, "virus", "amavis: blocked infected", 2)]
    assert fired[0][1].text.startswith("amavis: blocked infected, 2 times within 10 minutes")


def test_our_addresses_on_blocklists_fire_and_resolve() -> None:
    from postlens.rbl import Listing

    engine = AlertEngine([Rule("listed", "blocklisted", window=3600, threshold=1, severity="critical")], [])
    ours = ["198.51.100.25", "198.51.100.26"]
    engine.set_listings([Listing(ours[0], "bl.example", True), Listing(ours[0], "dnsbl.example", True),
                         Listing(ours[1], "bl.example", False)], T0)  # fmt: skip
    fired = engine.tick(T0)
    assert brief(fired) == [("listed", "firing", ours[0], 2)]
    assert fired[0].text == f"{ours[0]} is listed on bl.example, dnsbl.example"
    assert engine.tick(T0 + 10) == []  # nothing new asked
    engine.set_listings(
        [Listing(ours[0], "bl.example", False), Listing(ours[1], "bl.example", False)], T0 + 3600
    )
    resolved = engine.tick(T0 + 3600)
    assert brief(resolved) == [("listed", "resolved", ours[0], 0)]


def test_sasl_volume_problem_reasons_and_queue_size() -> None:
    log = Log()
    rules = [
        Rule("sender", "sasl_volume", window=3600, threshold=3),
        Rule("full", "problem", window=600, threshold=2, reason="mailbox_full"),
        Rule("queue", "queue_size", window=60, threshold=100),
    ]
    engine = AlertEngine(rules, [])
    full = "host mx.a.example[192.0.2.9] said: 552 5.2.2 Mailbox full (in reply to RCPT TO command)"
    steps = [(t, arrival(A, "Carol@example.org")) for t in range(3)]
    steps += [(10, delivery("u@a.example", "bounced", "550 5.1.1 no such user")), (11, delivery("u@a.example", "bounced", full)),
              (12, delivery("v@a.example", "bounced", full))]  # fmt: skip
    fired = run(engine, log, steps)
    assert [(t, a.rule, a.key, a.value) for t, a in fired] == [
        (2, "sender", "carol@example.org", 3), (12, "full", "mailbox_full", 2)
    ]  # fmt: skip
    engine.set_queue(150, T0 + 100)
    assert engine.tick(T0 + 159) == []  # big, but not yet for a minute
    engine.set_queue(160, T0 + 160)
    assert brief(engine.tick(T0 + 160)) == [("queue", "firing", "", 160)]
    engine.set_queue(20, T0 + 170)
    resolved = engine.tick(T0 + 170)
    assert brief(resolved) == [("queue", "resolved", "", 20)]
    assert resolved[0].text == "the queue holds 20 messages, under the threshold of 100 again"


class Clock:
    def __init__(self) -> None:
        self.now = 1e9  # far from the log's time: only its progress may count

    def __call__(self) -> float:
        return self.now


def test_without_a_time_a_tick_takes_the_log_time_and_a_quiet_log_moves_on_with_the_clock() -> None:
    steps = [(t, failed(A)) for t in range(0, 30, 3)]

    def replay(clock: Clock) -> list[dict[str, Any]]:
        log, alerts = Log(), []
        engine = AlertEngine([Rule("logins", "auth_failures_ip", window=10, threshold=3)], [], clock=clock)
        for t, payload in steps:
            engine.feed(log(t, payload))
            clock.now += 0.3  # a replay is fast: less than a second between lines
            alerts += engine.tick()
        clock.now += 10.5  # then nothing more is logged for ten seconds
        alerts += engine.tick()
        return [a.to_json() for a in alerts]

    once, twice = replay(Clock()), replay(Clock())
    assert once == twice
    assert [(a["state"], a["at"]) for a in once] == [
        ("firing", "2026-11-28T12:00:06Z"), ("resolved", "2026-11-28T12:00:37Z")
    ]  # fmt: skip


# -- destinations ------------------------------------------------------------------------


def fire(destinations: list[Destination], n: int = 1) -> list[Alert]:
    """Fires the failed-login rule for ``n`` IPs, resolves it, and waits for the deliveries."""
    log = Log()
    with AlertEngine([Rule("logins", "auth_failures_ip", window=60, threshold=2)], destinations) as engine:
        ips = [f"192.0.2.{i}" for i in range(1, n + 1)]
        sent = run(engine, log, [(t, failed(ip)) for t in (0, 1) for ip in ips])
        alerts = [a for _, a in sent] + engine.tick(T0 + 100)
    return alerts


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, dict[str, str], bytes]]]]:
    """A real HTTP server on loopback: its URL, and (path, headers, body) of each POST."""
    got: list[tuple[str, dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((self.path, dict(self.headers), body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", got
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_terminal_gets_one_line_per_alert() -> None:
    out = io.StringIO()
    fire([TerminalDestination(out)])
    assert out.getvalue().splitlines() == [
        f"2026-11-28T12:00:01Z WARNING logins {A}: 2 failed logins from {A} within 1 minute, the threshold is 2",
        f"2026-11-28T12:01:40Z RESOLVED logins {A} (was warning): 0 failed logins from {A} within 1 minute, "
        "under the threshold of 2 again",
    ]


def test_a_webhook_receives_the_json(receiver: Any) -> None:
    url, got = receiver
    alerts = fire([WebhookDestination(url + "/hook", headers={"Authorization": "Bearer x"})])
    assert [(path, json.loads(body)) for path, _, body in got] == [("/hook", a.to_json()) for a in alerts]
    headers = got[0][1]
    assert headers["Content-Type"] == "application/json" and headers["Authorization"] == "Bearer x"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_failing_destination_is_reported_once_and_the_others_go_on(
    receiver: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, got = receiver
    nobody = WebhookDestination(f"http://127.0.0.1:{free_port()}/hook", timeout=2)
    refuses = CommandDestination(["sh", "-c", "echo no such set >&2; exit 3"])
    alerts = fire([nobody, refuses, WebhookDestination(url)], n=2)
    assert len(alerts) == 4 and len(got) == 4
    # the destinations' threads write in either order
    err = sorted(capsys.readouterr().err.splitlines())
    assert len(err) == 2
    assert err[0] == ("postlens: alert destination command sh: failed: exit status 3: no such set "
                      "(reported once until it works again)")  # fmt: skip
    assert err[1].startswith(f"postlens: alert destination {nobody.name}: failed: ")


def test_a_command_gets_the_json_on_its_standard_input(tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    alerts = fire([CommandDestination(["sh", "-c", f"cat >> {out}"])])
    assert [json.loads(line) for line in out.read_text().splitlines()] == [a.to_json() for a in alerts]


def test_a_command_that_hangs_is_killed_after_its_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    fire([CommandDestination(["sleep", "30"], timeout=0.5)])
    assert time.monotonic() - started < 5
    assert "failed: no answer within 0.5 seconds" in capsys.readouterr().err


def test_syslog_gets_a_datagram_with_the_priority() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(5)
        fire([LogDestination(f"127.0.0.1:{server.getsockname()[1]}", "mail")])
        firing, resolved = server.recv(4096).decode(), server.recv(4096).decode()
    # mail is facility 2: warning 2*8+4, info 2*8+6
    assert (
        firing
        == f"<20>postlens[{os.getpid()}]: WARNING logins {A}: 2 failed logins from {A} within 1 minute, the threshold is 2"
    )
    assert resolved.startswith(f"<22>postlens[{os.getpid()}]: RESOLVED logins {A} (was warning): ")


@pytest.fixture
def smtp_sink(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """Postfix's smtp-sink on a loopback port, writing each message to a file: (port, folder)."""
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    need(os.access(sink, os.X_OK), "smtp-sink (Postfix) is not installed")
    dump = tmp_path / "sink"
    dump.mkdir()
    port = free_port()
    # as root smtp-sink insists on a user to run as; root itself keeps the dump folder writable
    user = ["-u", "root"] if os.geteuid() == 0 else []
    proc = subprocess.Popen([sink, *user, "-d", f"{dump}/mail.", f"127.0.0.1:{port}", "10"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[1].decode()
                assert time.monotonic() < deadline, "smtp-sink did not listen"
                time.sleep(0.05)
        yield port, dump
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_e_mail_through_smtp_sink_has_the_headers_the_sentence_and_the_json(smtp_sink: Any) -> None:
    port, dump = smtp_sink
    dest = EmailDestination(
        ["ops@example.org", "noc@example.org"], "postlens@mx.example.org", f"127.0.0.1:{port}"
    )
    alerts = fire([dest])
    deadline = time.monotonic() + 10
    while len(list(dump.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    mails = [message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(dump.iterdir())]
    assert sorted(str(m["Subject"]) for m in mails) == [
        f"[postlens] RESOLVED logins {A} (was warning)", f"[postlens] WARNING logins {A}"
    ]  # fmt: skip
    for mail in mails:
        alert = next(a for a in alerts if f"[postlens] {a.headline()}" == mail["Subject"])
        assert mail["From"] == "postlens@mx.example.org"
        assert mail["To"] == "ops@example.org, noc@example.org"
        # the envelope, as smtp-sink saw it
        assert mail.get_all("X-Rcpt-Args") == ["<ops@example.org>", "<noc@example.org>"]
        assert mail["Auto-Submitted"] == "auto-generated"
        body = mail.get_content()
        assert body.startswith(alert.text + "\n\n")
        assert f"key:       {A}\n" in body
        # the firing names the last line that counted; the resolved notice has none left in its window
        assert ("example:   " in body) == (alert.state == "firing")
        assert json.loads(body[body.index("\n{") :]) == alert.to_json()


def test_apprise_posts_through_its_json_service(receiver: Any) -> None:
    need_module("apprise")
    url, got = receiver
    alerts = fire([AppriseDestination([url.replace("http://", "json://") + "/apprise"])])
    posted = [json.loads(body) for path, _, body in got if path == "/apprise"]
    assert [(p["title"], p["message"], p["type"]) for p in posted] == [
        (f"[postlens] {alerts[0].headline()}", alerts[0].text, "warning"),
        (f"[postlens] {alerts[1].headline()}", alerts[1].text, "success"),
    ]


# -- the settings file -------------------------------------------------------------------

GOOD = """
[[alert]]
name = "logins"
kind = "auth_failures_ip"
window = "5m"
threshold = 20
severity = "critical"
cooldown = "1h"

[[alert]]
name = "gmail deferrals"
kind = "deferral_rate"
threshold = 0.3
key = "Gmail.com"
min_count = 20

[[alert]]
name = "guessed"
kind = "security"
finding = "guessed_password"

[[alert]]
name = "quiet"
kind = "silence"

[[alert]]
name = "blocklisted"
kind = "problem"
reason = "blocked"
threshold = 5
"""


def test_rules_from_the_alert_tables_with_their_defaults() -> None:
    rules = rules_from_config(tomllib.loads(GOOD))
    assert rules == [
        Rule("logins", "auth_failures_ip", 300, 20, "critical", 3600),
        Rule("gmail deferrals", "deferral_rate", 600, 0.3, key="gmail.com", min_count=20),
        Rule("guessed", "security", 600, 3, finding="guessed_password"),
        Rule("quiet", "silence", 3600, 1),
        Rule("blocklisted", "problem", 600, 5, reason="blocked"),
    ]
    assert rules_from_config({}) == []


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('name = "x"\nkind = "spam"', "[[alert]] 'x': kind: 'spam' is not one of auth_failures_ip, "),
        ('name = "x"\nkind = "auth_failures"\nthreshold = 5\nwindow = "10 minutes"',
         "[[alert]] 'x': window: '10 minutes' is not a length of time like 10m, 2h or 1d"),
        ('name = "x"\nkind = "auth_failures"', "[[alert]] 'x': threshold: auth_failures rules need one"),
        ('name = "x"\nkind = "auth_failures"\nthreshold = "5"', "[[alert]] 'x': threshold: '5' has the wrong type"),
        ('name = "x"\nkind = "auth_failures"\nthreshold = 5\nkey = "192.0.2.1"',
         "[[alert]] 'x': key: auth_failures rules have no key"),
        ('name = "x"\nkind = "auth_failures"\nthreshold = 5\nlimit = 3', "[[alert]] 'x': limit: not a setting of an alert"),
        ('name = "x"\nkind = "fatal"\nseverity = "fatal"', "[[alert]] 'x': severity: 'fatal' is not one of info,"),
        ('name = "x"\nkind = "bounce_rate"\nthreshold = 30', "[[alert]] 'x': threshold: a rate is a fraction: 0.5 is 50%"),
        ('name = "x"\nkind = "security"', "[[alert]] 'x': finding: '' is not one of brute_force,"),
        ('name = "x"\nkind = "problem"\nthreshold = 2\nreason = "mailbox_ful"',
         "[[alert]] 'x': reason: 'mailbox_ful' is not a reason of postlens problems"),
        ('kind = "fatal"', "[[alert]] number 1: name: give every alert a name"),
        ('name = "x"\nkind = "fatal"\n[[alert]]\nname = "x"\nkind = "fatal"', "[[alert]] 'x': name: two alerts have this name"),
    ],
)  # fmt: skip
def test_a_bad_alert_table_names_the_rule_and_the_field(table: str, message: str) -> None:
    with pytest.raises(UsageError) as e:
        rules_from_config(tomllib.loads("[[alert]]\n" + table))
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


def test_destinations_from_the_alerts_and_mail_sections(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("""
[alerts]
terminal = "stderr"
syslog = "/dev/log"
email = "ops@example.org"
webhook = ["https://hooks.example.org/a", "http://127.0.0.1:8080/b"]
webhook_headers = { Authorization = "Bearer x" }
webhook_timeout = 3
command = ["/bin/sh", "-c", "cat"]

[mail]
smtp = "[::1]:2525"
from = "postlens@mx.example.org"
timeout = 20
""")
    dests = destinations_from_config(config.load(str(path)))
    assert [d.name for d in dests] == [
        "terminal", "syslog /dev/log", "email via [::1]:2525", "webhook hooks.example.org",
        "webhook 127.0.0.1:8080", "command /bin/sh",
    ]  # fmt: skip
    assert [d.name for d in destinations_from_config({})] == ["terminal"]
    assert destinations_from_config({"alerts": {"terminal": "none"}}) == []


@pytest.mark.parametrize(
    ("alerts", "message"),
    [
        ({"terminal": "tty"}, "[alerts] terminal: 'tty' is not stdout, stderr or none"),
        ({"webhook": "ftp://x.example/"}, "[alerts] webhook: 'ftp://x.example/' is not an http:// or https:// URL"),
        ({"email": ["ops"]}, "[alerts] email: 'ops' is not an address like admin@example.org"),
        ({"command": ["/no/such/block-ip"]}, "[alerts] command: '/no/such/block-ip' is not an executable program"),
        ({"command": []}, "[alerts] command: give the command as a list"),
        ({"syslog": "loghost"}, "[alerts] syslog: 'loghost' is not a socket path or host:port"),
        ({"syslog": "/dev/log", "syslog_facility": "mial"}, "[alerts] syslog_facility: 'mial' is not one of "),
        ({"webhook": "http://x.example/", "webhook_timeout": 0}, "[alerts] webhook_timeout: give a number of seconds"),
    ],
)  # fmt: skip
def test_a_bad_destination_setting_is_one_line(alerts: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as e:
        destinations_from_config({"alerts": alerts})
    assert str(e.value).startswith(message)
