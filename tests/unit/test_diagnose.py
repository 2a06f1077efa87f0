"""problems, security and anomalies on hand-written logs: counts, findings, exact merging."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import postlens
from postlens.analyses.anomalies import AnomaliesOptions
from postlens.analyses.problems import ProblemsOptions
from postlens.analyses.security import SecurityOptions
from postlens.lines import zone
from postlens.pipeline import Analysis, Settings
from tests.property.test_properties import split_run

UTC = zone("UTC")

FAILING = """\
Nov  5 10:00:00 mx postfix/smtpd[100]: connect from c.example.net[192.0.2.10]
Nov  5 10:00:01 mx postfix/smtpd[100]: 1A2B3C4D5E: client=c.example.net[192.0.2.10]
Nov  5 10:00:01 mx postfix/qmgr[102]: 1A2B3C4D5E: from=<a@example.net>, size=100, nrcpt=2 (queue active)
Nov  5 10:00:02 mx postfix/smtp[103]: 1A2B3C4D5E: to=<x@full.example>, relay=mx.full.example[198.51.100.1]:25, delay=1, delays=0/0/0/1, dsn=4.2.2, status=deferred (host mx.full.example[198.51.100.1] said: 452 4.2.2 Mailbox full (in reply to RCPT TO command))
Nov  5 10:00:02 mx postfix/smtp[103]: 1A2B3C4D5E: to=<y@full.example>, relay=mx.full.example[198.51.100.1]:25, delay=1, delays=0/0/0/1, dsn=4.2.2, status=deferred (host mx.full.example[198.51.100.1] said: 452 4.2.2 Mailbox full (in reply to RCPT TO command))
Nov  5 10:30:02 mx postfix/smtp[103]: 1A2B3C4D5E: to=<x@full.example>, relay=mx.full.example[198.51.100.1]:25, delay=1, delays=0/0/0/1, dsn=4.2.2, status=deferred (host mx.full.example[198.51.100.1] said: 452 4.2.2 Mailbox full (in reply to RCPT TO command))
Nov  5 10:30:02 mx postfix/smtp[103]: 1A2B3C4D5E: to=<y@full.example>, relay=mx.full.example[198.51.100.1]:25, delay=1, delays=0/0/0/1, dsn=5.1.1, status=bounced (host mx.full.example[198.51.100.1] said: 550 5.1.1 <y@full.example>: Recipient address rejected: User unknown in virtual mailbox table (in reply to RCPT TO command))
Nov  5 10:40:00 mx postfix/smtpd[100]: NOQUEUE: reject: RCPT from bad.example.org[203.0.113.5]: 554 5.7.1 <z@elsewhere.example>: Relay access denied; from=<s@example.org> to=<z@elsewhere.example> proto=ESMTP helo=<bad>
Nov  5 10:41:00 mx postfix/smtp[104]: 1A2B3C4D5E: to=<x@full.example>, relay=mx.full.example[198.51.100.1]:25, delay=1, delays=0/0/0/1, dsn=5.2.2, status=bounced (host mx.full.example[198.51.100.1] said: 552 5.2.2 Mailbox full (in reply to RCPT TO command))
Nov  5 10:41:00 mx postfix/qmgr[102]: 1A2B3C4D5E: removed
"""


def run_problems(text: str) -> dict:
    settings = Settings(year=2026, tz="UTC", views={"problems": ProblemsOptions()})
    a = Analysis(settings)
    a.read(text.splitlines(), a.line_parser_for(None))
    return a.finish()["problems"]


def test_problems_count_messages_recipients_and_replies() -> None:
    r = run_problems(FAILING)
    rows = {row["id"]: row for row in r["problems"]}
    full = rows["mailbox_full"]
    # one message, two recipients deferred twice each; x then bounced for the same reason
    assert full["messages"] == 1
    assert full["recipients"] == 2
    assert full["replies"] == {"deferred": 3, "bounced": 1, "expired": 0, "reject": 0}
    assert full["domains"] == [{"domain": "full.example", "recipients": 2}]
    assert full["hosts"] == [{"host": "mx.full.example[198.51.100.1]", "recipients": 2}]
    assert {c["dsn"] for c in full["codes"]} == {"4.2.2", "5.2.2"}
    assert full["first_seen"] == "2026-11-05T10:00:02Z"
    assert full["last_seen"] == "2026-11-05T10:41:00Z"
    assert "Mailbox full" in full["example"]
    assert full["explanation"] and full["action"]
    relay = rows["relay_denied"]
    assert (relay["messages"], relay["recipients"], relay["replies"]["reject"]) == (1, 1, 1)
    assert relay["hosts"] == [{"host": "bad.example.org[203.0.113.5]", "recipients": 1}]
    assert r["replies"] == 6 and r["classified"] == 6
    assert r["problems"][0]["id"] in ("mailbox_full", "unknown_user", "relay_denied")


def test_problems_trend_compares_with_the_period_before(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text(FAILING)
    r, problems = postlens.problems([str(log)], year=2026, tz="UTC", since="2026-11-05T10:35:00Z",
                                    until="2026-11-05T11:00:00Z")  # fmt: skip
    assert not problems
    rows = {row["id"]: row for row in r["problems"]}
    # the current period (25 minutes) sees the bounce at 10:41; the 25 minutes before it
    # (from 10:10) the second deferral of x only
    assert rows["mailbox_full"]["messages"] == 1
    assert rows["mailbox_full"]["previous"] == {"messages": 1, "recipients": 1}
    assert rows["relay_denied"]["previous"] == {"messages": 0, "recipients": 0}
    assert r["period"]["compared"] is True


@pytest.mark.parametrize("view", ["problems", "security", "anomalies"])
def test_every_split_gives_the_one_pass_result(view: str, mixed_log: Path) -> None:
    lines = FAILING.splitlines() + SECURITY_LOG.splitlines() + mixed_log.read_text().splitlines()
    options = {"problems": ProblemsOptions(), "security": SecurityOptions(brute_force=3),
               "anomalies": AnomaliesOptions()}[view]  # fmt: skip
    views = {view: options}
    whole = split_run(lines, [], views)
    for cut in range(1, len(lines), 3):
        assert split_run(lines, [cut], views) == whole, cut
    assert split_run(lines, [5, 17, 40, 41], views) == whole


def _fail(sec: int, ip: str, user: str) -> str:
    return (f"Nov  6 09:{sec // 60:02d}:{sec % 60:02d} mx postfix/smtpd[300]: warning: unknown[{ip}]: "
            f"SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username={user}")  # fmt: skip


def _security_log() -> str:
    out = []
    out += [_fail(i * 20, "203.0.113.9", f"user{i % 3}") for i in range(12)]  # brute force
    out += [_fail(300 + i, "198.51.100.77", f"spray{i:02d}") for i in range(12)]  # spray
    out += [_fail(400 + i, "192.0.2.44", "carol") for i in range(4)]  # guessed, then success:
    out += [
        "Nov  6 09:07:00 mx postfix/smtpd[301]: connect from unknown[192.0.2.44]",
        "Nov  6 09:07:01 mx postfix/smtpd[301]: 0F1E2D3C4B: client=unknown[192.0.2.44], sasl_method=PLAIN, "
        "sasl_username=carol",
        "Nov  6 09:07:01 mx postfix/qmgr[102]: 0F1E2D3C4B: from=<carol@example.net>, size=300, nrcpt=1 (queue active)",
        "Nov  6 09:07:02 mx postfix/smtp[103]: 0F1E2D3C4B: to=<r@example.com>, relay=mx.example.com[198.51.100.5]:25, "
        "delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 Ok)",
        "Nov  6 09:07:02 mx postfix/qmgr[102]: 0F1E2D3C4B: removed",
    ]
    out += [_fail(500, f"192.0.2.{100 + i}", "dave") for i in range(5)]  # one username, many IPs
    out += [_fail(600, "192.0.2.200", "erin")]  # a single mistake: nothing
    return "\n".join(out) + "\n"


SECURITY_LOG = _security_log()


def test_security_findings(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text(SECURITY_LOG)
    r, _ = postlens.security([str(log)], year=2026, tz="UTC")
    found = {(f["kind"], f["subject"]) for f in r["findings"]}
    assert found == {
        ("brute_force", "203.0.113.9"),
        ("password_spray", "198.51.100.77"),
        ("guessed_password", "192.0.2.44"),
        ("distributed_attack", "dave"),
    }
    assert r["findings"][0]["kind"] == "guessed_password"
    assert r["findings"][0]["severity"] == "critical"
    assert r["failures"]["total"] == 12 + 12 + 4 + 5 + 1
    by_ip = {row["ip"]: row for row in r["failures"]["by_ip"]}
    assert by_ip["203.0.113.9"] == {"ip": "203.0.113.9", "host": "", "failures": 12, "usernames": 3,
                                         "first": "2026-11-06T09:00:00Z", "last": "2026-11-06T09:03:40Z"}  # fmt: skip
    assert {"subnet": "192.0.2.0/24", "failures": 10} in r["failures"]["by_subnet"]
    assert r["logins"] == 1


def _reject(at: int, ip: str, n: int) -> str:
    return (f"Nov  7 {at // 3600:02d}:{at // 60 % 60:02d}:{at % 60:02d} mx postfix/smtpd[310]: NOQUEUE: reject: "
            f"RCPT from unknown[{ip}]: 550 5.1.1 <u{n}@example.net>: Recipient address rejected: User unknown "
            f"in virtual mailbox table; from=<x@spam.example> to=<u{n}@example.net> proto=ESMTP helo=<x>")  # fmt: skip


def test_clients_refused_again_and_again_are_found_and_blocked(tmp_path: Path) -> None:
    """fail2ban's postfix jail: many rejects in a short time. Slow ones are left alone, and a
    client already found for its logins gets no second finding."""
    lines = [_reject(3600 + i * 10, "203.0.113.50", i) for i in range(20)]  # 20 within 4 minutes
    lines += [_reject(7200 + i * 600, "198.51.100.60", i) for i in range(20)]  # 20 over 3 hours
    lines += [_reject(3600 + i, "127.0.0.1", i) for i in range(30)]  # webmail on this host: never blocked
    log = tmp_path / "mail.log"
    log.write_text(SECURITY_LOG + "\n".join(lines) + "\n")
    r, _ = postlens.security([str(log)], year=2026, tz="UTC")
    found = [f for f in r["findings"] if f["kind"] == "repeated_rejects"]
    assert [(f["subject"], f["count"], f["severity"]) for f in found] == [("203.0.113.50", 20, "medium")]
    assert "refused 20 times within 10 minutes" in found[0]["explanation"]
    assert {"ip": "198.51.100.60", "host": "", "rejects": 20} in r["rejected_clients"]
    strict, _ = postlens.security([str(log)], year=2026, tz="UTC", options=SecurityOptions(reject_limit=21))
    assert not [f for f in strict["findings"] if f["kind"] == "repeated_rejects"]
    blocked = subprocess.run(
        [sys.executable, "-m", "postlens", "security", "--year", "2026", "--tz", "UTC", "--blocklist", "plain",
         "--reject-limit", "20", str(log)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "203.0.113.50" in blocked and "198.51.100.60" not in blocked and "203.0.113.9" in blocked


def test_a_named_content_filter_is_never_taken_for_an_attacker(tmp_path: Path) -> None:
    """Its re-injections refused again and again (a filter on another host whose smtpd has
    restrictions): like webmail on loopback, not a client to block."""
    log = tmp_path / "mail.log"
    log.write_text("\n".join(_reject(3600 + i, "198.51.100.7", i) for i in range(30)) + "\n")
    plain, _ = postlens.security([str(log)], year=2026, tz="UTC")
    assert [f["subject"] for f in plain["findings"] if f["kind"] == "repeated_rejects"] == ["198.51.100.7"]
    named, _ = postlens.security([str(log)], year=2026, tz="UTC", content_filters=["198.51.100.0/24"])
    assert [f for f in named["findings"] if f["kind"] == "repeated_rejects"] == []


def test_brute_force_needs_the_failures_within_the_window(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text(SECURITY_LOG)
    # 12 failures 20 s apart: at most 3 within a minute
    r, _ = postlens.security(
        [str(log)], year=2026, tz="UTC", options=SecurityOptions(window=60, brute_force=4)
    )
    assert ("brute_force", "203.0.113.9") not in {(f["kind"], f["subject"]) for f in r["findings"]}
    r, _ = postlens.security(
        [str(log)], year=2026, tz="UTC", options=SecurityOptions(window=60, brute_force=3)
    )
    assert ("brute_force", "203.0.113.9") in {(f["kind"], f["subject"]) for f in r["findings"]}


def _day_of_mail(day: int, hour: int, n: int, sender: str, start: int = 0) -> list[str]:
    out = []
    for i in range(start, start + n):
        qid = f"{day:02d}{hour:02d}{i:06d}A"
        at = f"Nov {day:2d} {hour:02d}:{i % 60:02d}:{i % 50:02d} mx"
        out += [
            f"{at} postfix/smtpd[400]: {qid}: client=unknown[192.0.2.7], sasl_method=PLAIN, sasl_username={sender}",
            f"{at} postfix/qmgr[102]: {qid}: from=<{sender}@example.net>, size=300, nrcpt=1 (queue active)",
            f"{at} postfix/smtp[103]: {qid}: to=<r{i}@example.com>, relay=mx.example.com[198.51.100.5]:25, "
            "delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 Ok)",
            f"{at} postfix/qmgr[102]: {qid}: removed",
        ]
    return out


def test_a_sender_far_above_their_usual_hour_is_found(tmp_path: Path) -> None:
    lines = []
    for day in (2, 3, 4):
        lines += _day_of_mail(day, 10, 3, "alice") + _day_of_mail(day, 10, 3, "bob", start=10)
    lines += _day_of_mail(5, 10, 40, "alice") + _day_of_mail(5, 10, 3, "bob", start=100)
    log = tmp_path / "mail.log"
    log.write_text("\n".join(sorted(lines, key=lambda s: s[:15])) + "\n")
    r, _ = postlens.security([str(log)], year=2026, tz="UTC")
    assert [(f["kind"], f["subject"]) for f in r["findings"]] == [("compromised_sender", "alice")]
    assert r["findings"][0]["count"] == 40 and r["findings"][0]["usual"] == 3
    assert r["senders"] == [
        {"sender": "alice", "via": "sasl", "messages": 49, "recipients": 49, "bounced": 0, "deferred": 0,
         "client_ips": 1, "busiest_hour": 40},
        {"sender": "bob", "via": "sasl", "messages": 12, "recipients": 12, "bounced": 0, "deferred": 0,
         "client_ips": 1, "busiest_hour": 3},
    ]  # fmt: skip
    text = subprocess.run(
        [sys.executable, "-m", "postlens", "security", "--year", "2026", "--tz", "UTC", str(log)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    table = text.split("Mail by authenticated and local sender")[1]
    assert table.index("alice") < table.index("bob") and " 49 " in table


def test_anomalies_against_the_same_hour_of_earlier_days(tmp_path: Path) -> None:
    lines = []
    for day in (2, 3, 4):
        lines += _day_of_mail(day, 10, 5, "alice")
    lines += _day_of_mail(5, 10, 60, "alice")
    log = tmp_path / "mail.log"
    log.write_text("\n".join(sorted(lines, key=lambda s: s[:15])) + "\n")
    r, _ = postlens.anomalies([str(log)], year=2026, tz="UTC")
    spikes = {(a["kind"], a["metric"], a["start"]) for a in r["anomalies"]}
    assert spikes == {
        ("spike", "received", "2026-11-05T10:00:00Z"),
        ("spike", "delivered", "2026-11-05T10:00:00Z"),
    }
    assert "usually 5 at this time of day (median of 3 earlier days)" in r["anomalies"][0]["explanation"]
    # Thursday 2026-11-05, 10:00: 60 received; Mon-Wed 5 each
    pattern = r["pattern"]
    assert pattern["received"][3][10] == 60 and pattern["received"][0][10] == 5


def test_a_day_without_any_delivery_is_a_silence(tmp_path: Path) -> None:
    """Mail still arrives, but every attempt fails: a silence from the last delivery the day
    before; a log without any delivery (and so without earlier days) finds none, and says so
    without failing."""
    lines = []
    for day in (2, 3, 4):
        lines += [line for hour in range(8, 18) for line in _day_of_mail(day, hour, 5, "alice")]
    deferred = [
        line.replace("dsn=2.0.0, status=sent (250 2.0.0 Ok)", "dsn=4.4.1, status=deferred (connect to "
                     "mx.example.com[198.51.100.5]:25: Connection timed out)").replace(": removed", ": held")
        for hour in range(8, 18) for line in _day_of_mail(5, hour, 5, "alice")
    ]  # fmt: skip
    log = tmp_path / "mail.log"
    log.write_text("\n".join(sorted(lines + deferred, key=lambda s: s[:15])) + "\n")
    r, _ = postlens.anomalies([str(log)], year=2026, tz="UTC", date="2026-11-05")
    silences = [a for a in r["anomalies"] if a["kind"] == "silence"]
    # due: 5 an hour from 08:00 to the hour of the log's last line (17:00), not counted
    assert [(a["start"], a["usual"]) for a in silences] == [("2026-11-04T17:05:00Z", 45)]
    log.write_text("\n".join(deferred) + "\n")
    none_at_all, _ = postlens.anomalies([str(log)], year=2026, tz="UTC")
    assert [a for a in none_at_all["anomalies"] if a["kind"] == "silence"] == []


@pytest.mark.parametrize(
    "log", [Path(postlens.sample_log()), Path(__file__).parents[1] / "data" / "mixed.log"]
)
def test_anomalies_count_received_as_the_report_does(log: Path) -> None:
    """Held and discarded mail is received; a content filter's re-injection is not, also when
    the filter's reply comes after the re-injected copy was removed."""
    report, _ = postlens.report([str(log)], year=2026, tz="UTC")
    found, _ = postlens.anomalies([str(log)], year=2026, tz="UTC")
    assert sum(map(sum, found["pattern"]["received"])) == report["totals"]["received"] > 0
    assert sum(row["received"] for row in found["series"]) == report["totals"]["received"]


def test_commands_print_text_and_json(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text(FAILING + SECURITY_LOG)
    for command in ("problems", "security", "anomalies"):
        for fmt in ("text", "json"):
            done = subprocess.run([sys.executable, "-m", "postlens", command, "--year", "2026", "--tz", "UTC",
                                   "--format", fmt, str(log)], capture_output=True, text=True)  # fmt: skip
            assert done.returncode == 0, done.stderr
            if fmt == "json":
                json.loads(done.stdout)
            else:
                assert done.stdout.startswith(f"postlens {command}")


def test_bad_options_are_one_line_and_exit_2(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text(FAILING)
    bad_rules = tmp_path / "rules.toml"
    bad_rules.write_text("[[rule]\n")
    for args in (["problems", "--rules", str(bad_rules)], ["security", "--window", "ten"],
                 ["anomalies", "--step", "7m"], ["security", "--config", str(bad_rules)]):  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "postlens", *args, str(log)], capture_output=True, text=True
        )
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr


def test_the_settings_file_sets_thresholds_and_options_win(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text(SECURITY_LOG)
    conf = tmp_path / "config.toml"
    conf.write_text('[security]\nbrute_force = 13\nwindow = "1h"\n')
    base = [
        sys.executable,
        "-m",
        "postlens",
        "security",
        "--year",
        "2026",
        "--format",
        "json",
        "--config",
        str(conf),
    ]

    def kinds(*args: str) -> set[tuple[str, str]]:
        done = subprocess.run([*base, *args, str(log)], capture_output=True, text=True, check=True)
        return {(f["kind"], f["subject"]) for f in json.loads(done.stdout)["findings"]}

    assert ("brute_force", "203.0.113.9") not in kinds()  # 12 failures < 13
    assert ("brute_force", "203.0.113.9") in kinds("--brute-force", "12")
    conf.write_text("[security]\nbrute_force = true\n")
    done = subprocess.run([*base, str(log)], capture_output=True, text=True)
    assert done.returncode == 2 and "brute_force has the wrong type" in done.stderr
