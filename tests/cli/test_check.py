"""postlens check: Nagios/Icinga plugin output, threshold ranges and exit codes, on hand-written
logs whose counts are known, on both sides of every threshold."""

import json
import math
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from postlens.checks import Perf, Range, Status, check
from postlens.cli import main
from postlens.errors import UsageError

END = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)
NOW = ["--now", "2026-11-05T12:00:00Z"]

# the plugin output of the guidelines: SERVICE STATUS: text | 'label'=value[UOM];warn;crit;min;max
LINE_RE = re.compile(
    r"(?P<service>POSTFIX(?: [A-Z-]+)?) (?P<status>OK|WARNING|CRITICAL|UNKNOWN): (?P<text>[^|\n]+?)(?: \| (?P<perf>[^|\n]+))?\n"
)
_NUM = r"-?\d+(?:\.\d+)?"
_RANGE = rf"@?(?:(?:~|{_NUM})?:)?(?:{_NUM})?"
PERF_RE = re.compile(
    rf"'(?P<label>(?:[^'=]|'')+)'=(?P<value>{_NUM}|U)(?P<uom>s|ms|us|%|B|KB|MB|TB|c)?"
    rf"(?:;(?P<warn>{_RANGE})(?:;(?P<crit>{_RANGE})(?:;(?P<min>{_NUM})?(?:;(?P<max>{_NUM})?)?)?)?)?"
)

SENT = "status=sent (250 2.0.0 Ok: queued as 1122334455)"
DELIVERY = "{ts} mx postfix/smtp[201]: {qid}: to=<u{n}@example.com>, relay=mx.example.com[198.51.100.5]:25, delay=1, delays=0/0/0.5/0.5, dsn={dsn}, {status}"
LINES = {
    "deferred": DELIVERY.replace("{dsn}", "4.2.2").replace(
        "{status}",
        "status=deferred (host mx.example.com[198.51.100.5] said: 452 4.2.2 Mailbox full (in reply to RCPT TO command))",
    ),
    "bounced": DELIVERY.replace("{dsn}", "5.1.1").replace(
        "{status}",
        "status=bounced (host mx.example.com[198.51.100.5] said: 550 5.1.1 User unknown (in reply to RCPT TO command))",
    ),
    "sent": DELIVERY.replace("{dsn}", "2.0.0").replace("{status}", SENT),
    # a hop into a content filter and an alias forward: neither is a delivery
    "hop": "{ts} mx postfix/smtp[202]: {qid}: to=<u{n}@example.com>, relay=127.0.0.1[127.0.0.1]:10024, delay=1, delays=0/0/0.5/0.5, dsn=2.0.0, status=sent (250 2.0.0 from MTA(smtp:[127.0.0.1]:10025): 250 2.0.0 Ok: queued as 9F9F9F9F9F)",
    "forward": "{ts} mx postfix/local[203]: {qid}: to=<u{n}@mx.example.net>, relay=local, delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (forwarded as 8E8E8E8E8E)",
    "auth": "{ts} mx postfix/smtpd[160]: warning: unknown[192.0.2.66]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
    "reject": "{ts} mx postfix/smtpd[160]: NOQUEUE: reject: RCPT from unknown[192.0.2.66]: 554 5.7.1 <x{n}@elsewhere.example>: Relay access denied; from=<spam@example.biz> to=<x{n}@elsewhere.example> proto=ESMTP helo=<evil.example>",
    "noise": "{ts} mx postfix/smtpd[170]: connect from unknown[192.0.2.{n}]",
    "fatal": "{ts} mx postfix/smtpd[171]: fatal: open database /etc/postfix/virtual.db: No such file or directory",
    "panic": "{ts} mx postfix/qmgr[172]: panic: myfree: corrupt or unallocated memory | block",
    "error": "{ts} mx postfix/trivial-rewrite[173]: error: open database /etc/postfix/transport.db: No such file",
}


def log_lines(events: Sequence[tuple[str, float]], end: datetime = END) -> list[str]:
    """One line per (kind, minutes before ``end``), each message with a queue ID of its own."""
    out = []
    for n, (kind, minutes) in enumerate(sorted(events, key=lambda e: -e[1])):
        ts = (end - timedelta(minutes=minutes)).isoformat()
        out.append(LINES[kind].format(ts=ts, qid=f"{0xA00000 + n:010X}", n=n))
    return out


def write_log(tmp_path: Path, events: Sequence[tuple[str, float]], end: datetime = END) -> str:
    path = tmp_path / "mail.log"
    path.write_text("\n".join(log_lines(events, end)) + "\n")
    return str(path)


def run(*args: str, input: str | None = None) -> tuple[int, str, dict[str, dict[str, str]]]:
    """Exit code, the status line's parts, and its performance data by label; the output must
    be exactly one line in the plugin format, and nothing on standard error."""
    r = CliRunner().invoke(main, ["check", *args], input=input)
    assert r.stderr == "", r.stderr
    m = LINE_RE.fullmatch(r.stdout)
    assert m, repr(r.stdout)
    assert r.exit_code == Status[m["status"]].value, (r.exit_code, r.stdout)
    perf = {}
    for item in (m["perf"] or "").split(" ") if m["perf"] else []:
        p = PERF_RE.fullmatch(item)
        assert p, item
        perf[p["label"]] = p.groupdict()
    return r.exit_code, r.stdout, perf


# -- the checks, on both sides of each threshold -------------------------------------------------


@pytest.mark.parametrize(("count", "code"), [(0, 0), (3, 0), (4, 1), (5, 1), (6, 2)])
def test_deferred(tmp_path: Path, count: int, code: int) -> None:
    # deferrals before the window do not count, nor do other deliveries
    events = [("deferred", 1 + i) for i in range(count)] + [("deferred", 16), ("deferred", 60), ("sent", 2)]
    log = write_log(tmp_path, events)
    rc, out, perf = run("deferred", "-w", "3", "-c", "5", *NOW, log)
    assert rc == code
    assert out.startswith(
        f"POSTFIX DEFERRED {Status(code).name}: deferred delivery attempts: {count} in the 15m to "
    )
    assert perf["deferrals"] == {
        "label": "deferrals",
        "value": str(count),
        "uom": None,
        "warn": "3",
        "crit": "5",
        "min": "0",
        "max": None,
    }


def test_window_includes_its_start_and_end(tmp_path: Path) -> None:
    events = [("deferred", 15), ("deferred", 0), ("deferred", 15 + 1 / 60), ("deferred", -1 / 60)]
    rc, _, perf = run("deferred", *NOW, write_log(tmp_path, events))
    assert (rc, perf["deferrals"]["value"]) == (0, "2")
    _, _, perf = run("deferred", "--window", "1h", *NOW, write_log(tmp_path, [*events, ("deferred", 59)]))
    assert perf["deferrals"]["value"] == "4"


@pytest.mark.parametrize(
    ("delivered", "bounced", "code", "rate"),
    [
        (0, 0, 0, "0"),
        (9, 1, 0, "10"),
        (89, 11, 1, "11"),
        (8, 2, 1, "20"),
        (7, 3, 2, "30"),
        (0, 1, 2, "100"),
        (2, 1, 2, "33.33"),
    ],
)
def test_bounce_rate(tmp_path: Path, delivered: int, bounced: int, code: int, rate: str) -> None:
    events = (
        [("sent", 1)] * delivered + [("bounced", 2)] * bounced + [("bounced", 20), ("hop", 3), ("forward", 3)]
    )
    rc, out, perf = run("bounce-rate", "-w", "10", "-c", "20", *NOW, write_log(tmp_path, events))
    assert rc == code
    assert f": {rate}% bounced ({bounced} of {delivered + bounced} recipients) in the 15m" in out
    assert perf["bounce_rate"]["value"] == rate and perf["bounce_rate"]["uom"] == "%"
    assert (perf["bounce_rate"]["warn"], perf["bounce_rate"]["crit"], perf["bounce_rate"]["max"]) == (
        "10",
        "20",
        "100",
    )
    assert (perf["bounced"]["value"], perf["delivered"]["value"]) == (str(bounced), str(delivered))


@pytest.mark.parametrize(("count", "code"), [(0, 0), (5, 0), (6, 1), (10, 1), (11, 2)])
def test_auth_failures(tmp_path: Path, count: int, code: int) -> None:
    events = [("auth", 0.5 * i) for i in range(count)] + [("auth", 30), ("reject", 1)]
    rc, out, perf = run("auth-failures", "-w", "5", "-c", "10", *NOW, write_log(tmp_path, events))
    assert rc == code and f"failed logins: {count} in the 15m" in out
    assert (perf["auth_failures"]["value"], perf["auth_failures"]["warn"], perf["auth_failures"]["crit"]) == (
        str(count),
        "5",
        "10",
    )


@pytest.mark.parametrize(("count", "code"), [(0, 0), (20, 0), (21, 1), (50, 1), (51, 2)])
def test_rejects(tmp_path: Path, count: int, code: int) -> None:
    events = [("reject", 10 * i / max(count, 1)) for i in range(count)] + [("reject", 20), ("auth", 1)]
    rc, out, perf = run("rejects", "-w", "20", "-c", "50", *NOW, write_log(tmp_path, events))
    assert rc == code and f"rejects: {count} in the 15m" in out
    assert perf["rejects"]["value"] == str(count)


@pytest.mark.parametrize(
    ("events", "code"), [([], 0), ([("error", 2)], 1), ([("fatal", 3), ("error", 1)], 2)]
)
def test_errors(tmp_path: Path, events: list[tuple[str, float]], code: int) -> None:
    """A daemon that died, a table it cannot open: any is worth a look, two a page."""
    log = write_log(tmp_path, [*events, ("fatal", 20), ("panic", 30), ("sent", 1)])  # before the window
    rc, out, perf = run("errors", "-w", "0", "-c", "1", *NOW, log)
    assert rc == code and f"fatal errors, panics and errors: {len(events)} in the 15m" in out
    assert perf["errors"]["value"] == str(len(events))
    assert perf["fatal"]["value"] == str(sum(kind == "fatal" for kind, _ in events))
    assert perf["error"]["value"] == str(sum(kind == "error" for kind, _ in events))
    if ("fatal", 3) in events:  # the worst line is shown
        assert "smtpd: open database /etc/postfix/virtual.db" in out and "transport.db" not in out
    panic = run("errors", *NOW, "--window", "1h", log)[1]
    assert "qmgr: myfree: corrupt or unallocated memory ¦ block" in panic  # a "|" never ends the text


@pytest.mark.parametrize(
    ("minutes", "code", "ago"),
    [
        (0, 0, "0 s"),
        (30, 0, "30 min"),
        (31, 1, "31 min"),
        (60, 1, "1 h 0 min"),
        (61, 2, "1 h 1 min"),
        (600, 2, "10 h 0 min"),
    ],
)
def test_silence(tmp_path: Path, minutes: float, code: int, ago: str) -> None:
    # hops, forwards and deferrals after the last delivery are no deliveries
    events = [
        ("sent", minutes + 5),
        ("sent", minutes),
        ("hop", 0),
        ("forward", 0),
        ("deferred", 0),
        ("noise", 0),
    ]
    rc, out, perf = run("silence", "-w", "30", "-c", "60", *NOW, write_log(tmp_path, events))
    assert rc == code
    at = (END - timedelta(minutes=minutes)).astimezone().isoformat(timespec="seconds")
    assert f": last delivery {ago} ago, at {at} (to " in out
    assert perf["silence"] == {
        "label": "silence",
        "value": str(minutes * 60),
        "uom": "s",
        "warn": "1800",
        "crit": "3600",
        "min": "0",
        "max": None,
    }


def test_silence_without_any_delivery_counts_from_the_log_start(tmp_path: Path) -> None:
    log = write_log(tmp_path, [("noise", 120), ("hop", 5), ("deferred", 1)])
    rc, out, perf = run("silence", "-w", "30", "-c", "60", *NOW, log)
    assert rc == 2 and "no delivery in the log, which begins 2 h 0 min earlier" in out
    assert perf["silence"]["value"] == "7200"


def test_silence_does_not_take_a_named_content_filter_s_hop_for_a_delivery(tmp_path: Path) -> None:
    remote_hop = LINES["hop"].replace("127.0.0.1[127.0.0.1]", "filter.example[198.51.100.9]")
    log = write_log(tmp_path, [("sent", 20)])
    with open(log, "a") as f:
        f.write(remote_hop.format(ts=END.strftime("%b %e %H:%M:%S"), qid="AB12CD34EF", n=1) + "\n")
    _, _, perf = run("silence", *NOW, log)
    assert perf["silence"]["value"] == "0"
    _, _, perf = run("silence", *NOW, "--content-filter", "198.51.100.9", log)
    assert perf["silence"]["value"] == "1200"


def test_silence_ignores_lines_after_the_given_time(tmp_path: Path) -> None:
    log = write_log(tmp_path, [("sent", 90), ("sent", -30)])
    rc, _, perf = run("silence", "-c", "60", *NOW, log)
    assert (rc, perf["silence"]["value"]) == (2, "5400")


def test_silence_of_a_stale_log_is_critical_by_the_clock(tmp_path: Path) -> None:
    """A log that stopped being written must not say OK: by default the silence runs to now."""
    end = datetime.now(UTC) - timedelta(hours=3)
    log = write_log(tmp_path, [("sent", 1), ("noise", 0)], end)
    rc, out, perf = run("silence", "-w", "30", "-c", "60", log)
    assert rc == 2 and "last delivery 3 h " in out
    assert 3 * 3600 < float(perf["silence"]["value"]) < 3 * 3600 + 600
    # measured to the log's own end instead, it is one minute, and the text says where the log ends
    rc, out, perf = run("silence", "-w", "30", "-c", "60", "--now", "log", log)
    assert (rc, perf["silence"]["value"]) == (0, "60")
    assert f"(to the log's end, {end.astimezone().isoformat(timespec='seconds')[:16]}" in out


def test_window_ends_at_the_clock_by_default(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    log = write_log(tmp_path, [("deferred", 1), ("deferred", 2), ("deferred", 20)], now)
    rc, out, perf = run("deferred", "-w", "1", log)
    assert rc == 1 and "in the last 15m" in out and perf["deferrals"]["value"] == "2"


def test_window_ending_at_the_newest_line(tmp_path: Path) -> None:
    log = write_log(tmp_path, [("deferred", 1), ("deferred", 14), ("deferred", 16), ("noise", 0)])
    rc, out, perf = run("deferred", "--now", "log", "-c", "1", log)
    assert rc == 2 and perf["deferrals"]["value"] == "2"
    assert "in the last 15m of the log, to 2026-11-05T" in out


def test_ranges_on_the_command_line(tmp_path: Path) -> None:
    log = write_log(tmp_path, [("sent", 1)] * 3)
    # @ alerts inside the range: 0% is in 0..5
    rc, _, perf = run("bounce-rate", "-w", "@0:5", *NOW, log)
    assert rc == 1 and perf["bounce_rate"]["warn"] == "@5"
    # 1: alerts below 1 (0 deferrals); ~:0 alerts above 0, which 0 is not
    rc, _, perf = run("deferred", "-c", "~:0", "-w", "1:", *NOW, log)
    assert rc == 1 and (perf["deferrals"]["warn"], perf["deferrals"]["crit"]) == ("1:", "~:0")
    rc, _, _ = run("deferred", "-c", "~:-1", "-w", "1:", *NOW, log)
    assert rc == 2
    rc, out, perf = run("deferred", *NOW, log)
    assert rc == 0 and perf["deferrals"] == {
        "label": "deferrals",
        "value": "0",
        "uom": None,
        "warn": "",
        "crit": "",
        "min": "0",
        "max": None,
    }
    assert "'deferrals'=0;;;0" in out


QUEUED = {"queue_name": "deferred", "queue_id": "4B3C2D1E0F", "arrival_time": 1793800000, "message_size": 1234,
          "forced_expire": False, "sender": "alice@example.net",
          "recipients": [{"address": "bob@example.com", "delay_reason": "connect to mx.example.com[198.51.100.5]:25: Connection refused"}]}  # fmt: skip


@pytest.mark.parametrize(("count", "code"), [(0, 0), (2, 0), (3, 1), (4, 1), (5, 2)])
def test_queue_from_a_saved_listing(tmp_path: Path, count: int, code: int) -> None:
    listing = tmp_path / "queue.json"
    names = ["deferred", "active", "hold", "deferred", "incoming"]
    listing.write_text(
        "".join(
            json.dumps({**QUEUED, "queue_name": names[i], "queue_id": f"4B3C2D1E{i:02X}"}) + "\n"
            for i in range(count)
        )
    )
    rc, out, perf = run("queue", "-w", "2", "-c", "4", "--queue-file", str(listing))
    assert rc == code and f"{count} message{'s' * (count != 1)} in the queue" in out
    assert (perf["messages"]["value"], perf["messages"]["warn"], perf["messages"]["crit"]) == (
        str(count),
        "2",
        "4",
    )
    assert {q: perf[q]["value"] for q in ("maildrop", "incoming", "active", "deferred", "hold")} == {
        q: str(names[:count].count(q)) for q in ("maildrop", "incoming", "active", "deferred", "hold")
    }


# -- UNKNOWN: every problem is one line and exit code 3 --------------------------------------------


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["deferred", "-w", "abc", "LOG"], "--warning: 'abc' is not a range"),
        (["deferred", "-c", "20:10", "LOG"], "--critical: '20:10' starts above its end"),
        (["deferred", "-c", "@", "LOG"], "--critical: '@' is not a range"),
        (["deferred", "--window", "15x", "LOG"], "--window: '15x' is not a length of time"),
        (["deferred", "--now", "yesterday-ish", "LOG"], "--now: 'yesterday-ish' is not a time"),
        (["deferred", "--tz", "Mars/Olympus", "LOG"], "--tz: unknown time zone"),
        (["deferred", "--syslog-name", "post(fix", "LOG"], "--syslog-name: not a regular expression"),
        (["deferred", "--year", "soon", "LOG"], "'soon' is not a valid integer"),
        (["deferred", "--queue-file", "LOG", "LOG"], "--queue-file and --config-dir are for the queue check"),
        (["rejects", "--config-dir", "/etc/postfix", "LOG"], "are for the queue check"),
        (["silence", "--window", "1h", "LOG"], "silence looks at the whole log: it takes no --window"),
        (["queue", "LOG"], "queue reads the queue: it takes no logs"),
        (["deferred", "/nonexistent/mail.log"], "/nonexistent/mail.log: no such file"),
        (["silence", "/nonexistent/mail.log"], "/nonexistent/mail.log: no such file"),
        (["deferred", "--now", "log", "-"], "--now log reads the log twice"),
        (["nonsense", "LOG"], "'nonsense' is not one of 'queue', 'deferred'"),
        ([], "Missing argument 'CHECK'"),
        (["deferred", "--frobnicate", "LOG"], "--frobnicate"),
        (["deferred", "-w"], "Option '-w' requires an argument"),
        (["queue", "--queue-file", "/nonexistent/queue.json"], "/nonexistent/queue.json: No such file"),
        (["queue", "--queue-file", "GARBAGE"], "no `postqueue -j` records"),
        (["deferred", "GARBAGE"], "no line has a time stamp postlens reads"),
        (["silence", "GARBAGE"], "no line with a time stamp"),
        (["deferred", "--now", "log", "EMPTY"], "no line with a time stamp"),
        (["silence", "EMPTY"], "no line with a time stamp"),
        (["deferred", "BINARY"], "binary"),
    ],
)
def test_unknown(tmp_path: Path, args: list[str], said: str) -> None:
    files = {
        "LOG": write_log(tmp_path, [("sent", 1)]),
        "GARBAGE": tmp_path / "garbage",
        "EMPTY": tmp_path / "empty",
        "BINARY": tmp_path / "binary",
    }
    (tmp_path / "garbage").write_text("this is not\na mail log\n")
    (tmp_path / "empty").write_text("")
    (tmp_path / "binary").write_bytes(bytes(range(256)) * 8)
    rc, out, perf = run(*[str(files.get(a, a)) for a in args], input="")
    assert rc == 3 and out.count("\n") == 1 and perf == {}
    assert said in out, out
    service = (
        f"POSTFIX {args[0].upper()} UNKNOWN: " if args and args[0] != "nonsense" else "POSTFIX UNKNOWN: "
    )
    assert out.startswith(service)


def test_a_real_process_says_unknown_with_exit_code_3(tmp_path: Path) -> None:
    """The exit code a monitoring system sees, from the command itself rather than the test runner."""
    log = write_log(tmp_path, [("deferred", 1)])
    done = subprocess.run(
        [sys.executable, "-m", "postlens", "check", "deferred", "-w", "1:x", log],
        capture_output=True,
        text=True,
    )
    assert (done.returncode, done.stderr) == (3, "")
    assert LINE_RE.fullmatch(done.stdout) and "UNKNOWN: --warning: '1:x'" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "postlens", "check", "deferred", "-c", "0", *NOW, log],
        capture_output=True,
        text=True,
    )
    assert (done.returncode, done.stderr) == (2, "")
    assert done.stdout.endswith("| 'deferrals'=1;;0;0\n")


# -- ranges, performance data and the line -------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "alerts", "quiet", "shown"),
    [
        ("10", [-1, -0.001, 10.001, 11, math.inf], [0, 5, 10], "10"),
        ("10:", [-1, 0, 9.999], [10, 11, 1e12], "10:"),
        ("~:10", [10.5, 11, 1e12], [-1e12, -1, 0, 10], "~:10"),
        ("10:20", [-1, 9, 20.5, 21], [10, 15, 20], "10:20"),
        ("@10:20", [10, 15, 20], [9.99, 20.01, -5], "@10:20"),
        ("@10", [0, 5, 10], [-1, 10.5], "@10"),
        ("0:10", [-1, 11], [0, 10], "10"),
        (":10", [-1, 11], [0, 10], "10"),
        ("-5:-1", [-6, -0.5, 0], [-5, -3, -1], "-5:-1"),
        ("1.5:2.25", [1.4, 2.3], [1.5, 2, 2.25], "1.5:2.25"),
        ("~:", [], [-1e12, 0, 1e12], "~:"),
        ("@~:", [-1e12, 0, 1e12], [], "@~:"),
        (" 5 ", [6], [5], "5"),
    ],
)
def test_range_semantics(spec: str, alerts: list[float], quiet: list[float], shown: str) -> None:
    r = Range.parse(spec, "-w")
    assert [v for v in alerts if not r.alerts(v)] == []
    assert [v for v in quiet if r.alerts(v)] == []
    assert str(r) == shown
    assert Range.parse(str(r), "-w") == r


@pytest.mark.parametrize(
    "spec", ["", ":", "@", "~", "@~", "abc", "10:5", "1e3", "10:20:30", "10 : 20", "--1", "5%"]
)
def test_range_errors(spec: str) -> None:
    with pytest.raises(UsageError, match=r"^-c: "):
        Range.parse(spec, "-c")


def test_perfdata_format() -> None:
    assert (
        str(
            Perf(
                "silence",
                90.0,
                "s",
                Range.parse("30", "-w").scaled(60),
                Range.parse("@1:2", "-c").scaled(60),
                0,
            )
        )
        == "'silence'=90s;1800;@60:120;0"
    )
    assert str(Perf("it's a rate", 12.5, "%", None, None, 0, 100)) == "'it''s a rate'=12.5%;;;0;100"
    assert str(Perf("n", 3)) == "'n'=3"
    assert str(Perf("n", 1 / 3, "", Range.parse("0.1:", "-w"))) == "'n'=0.333333;0.1:"


def test_the_library_returns_unknown_instead_of_raising(tmp_path: Path) -> None:
    r = check("deferred", [str(tmp_path / "missing.log")], "5", "10")
    assert (r.status, r.value, r.perfdata) == (Status.UNKNOWN, None, [])
    assert r.line() == f"POSTFIX DEFERRED UNKNOWN: {tmp_path / 'missing.log'}: no such file"
    log = write_log(tmp_path, [("deferred", 1)] * 7)
    r = check("deferred", [log], "5", "10", "1h", now="2026-11-05T12:00:00Z")
    assert (r.status, r.value) == (Status.WARNING, 7)


def test_the_line_stays_one_line_and_keeps_the_bar_for_perfdata(tmp_path: Path) -> None:
    bad = tmp_path / "a|b\nc.log"
    r = check("rejects", [str(bad)])
    assert r.line().count("|") == 0 and "\n" not in r.line() and r.status == Status.UNKNOWN


def test_an_unreadable_log_is_unknown(tmp_path: Path) -> None:
    """Read as a user that may not read the log (root reads anything: a child drops to nobody)."""
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        log = Path(tmp) / "mail.log"
        log.write_text("\n".join(log_lines([("sent", 1)])) + "\n")
        log.chmod(0)
        if os.geteuid() != 0:
            r = check("silence", [str(log)], "30")
            line, status = r.line(), int(r.status)
        else:
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: become nobody, check, report back, and leave without cleanup
                try:
                    os.setgid(65534)
                    os.setuid(65534)
                    r = check("silence", [str(log)], "30")
                    os.write(write_end, json.dumps([r.line(), int(r.status)]).encode())
                finally:
                    os._exit(0)
            os.close(write_end)
            with os.fdopen(read_end, "rb") as f:
                line, status = json.loads(f.read())
            os.waitpid(pid, 0)
    assert (line, status) == (f"POSTFIX SILENCE UNKNOWN: {log}: Permission denied", 3)
