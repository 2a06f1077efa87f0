"""postlens queue on hand-written ``postqueue -j`` output: qshape's rules (names, buckets,
parents, what is left out), the summary and the delay reasons, the text layout, and the errors
users meet, each one line with exit code 2. tests/lab/test_lab_queue.py compares with qshape."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import postlens
from postlens import cli
from postlens.analyses.reasons import Rules, split_reply
from postlens.queue import ShapeOptions, bucket, columns, domain_key, parent_key
from postlens.render.queue import MIN_WIDTH, render_queue, text_width

# postlens.queue is the library function, which hides the module of the same name
QUEUE_MODULE = sys.modules["postlens.queue"]

NOW = 1_800_000_000
BUSY = "host mx.defer.example[192.0.2.1] said: 450 4.2.0 Mailbox busy (in reply to RCPT TO command)"
REFUSED = "connect to mx.refused.example[192.0.2.2]:25: Connection refused"


def message(queue: str, qid: str, age: int, sender: str, *rcpts: str | tuple[str, str], **extra: Any) -> str:
    recipients = [
        {"address": r} if isinstance(r, str) else {"address": r[0], "delay_reason": r[1]} for r in rcpts
    ]
    return json.dumps({"queue_name": queue, "queue_id": qid, "arrival_time": NOW - age, "message_size": 1000,
                       "forced_expire": False, "sender": sender, "recipients": recipients, **extra})  # fmt: skip


QUEUE = [
    message("deferred", "D1", 600, "a@Sender.example", ("x@defer.example", BUSY), ("y@DEFER.example", BUSY)),
    message("deferred", "D2", 7200, "MAILER-DAEMON", ("z@refused.example", REFUSED)),
    message("active", "A1", 60, "b@sender.example", "w@h1.shop.example.net"),
    message("incoming", "I1", 0, "b@sender.example", *(f"w@h{i}.shop.example.net" for i in range(2, 6))),
    message("hold", "H1", 3 * 86400, "c@x.example", "q@held.example", forced_expire=True),
    message("deferred", "D3", 86400, "e@x.example"),
    message("maildrop", "M1", 30, "d@drop.example", "md@drop.example"),
]


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "postqueue.json"
    path.write_text("\n".join(QUEUE) + "\n")
    return path


def rows(result: dict[str, Any]) -> dict[str, list[int]]:
    shape = result["shape"]
    out = {"TOTAL": [shape["total"]["count"], *shape["total"]["buckets"]]}
    out.update({r["domain"]: [r["count"], *r["buckets"]] for r in shape["rows"]})
    return out


def run(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "postlens", "queue", *args], capture_output=True, text=True,
                          env=env, input=stdin, cwd=cwd)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# qshape's rules


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("User@Example.COM", "example.com"),
        ("a@b@c.example", "c.example"),  # after the last @
        ("x@.lead.example", "lead.example"),
        ("x@trail.example.", "trail.example"),
        ("x@dou..ble.example", "dou.ble.example"),
        ("x@a...b", "a..b"),  # doubled dots halved once, as qshape's s/\.\././g does
        ("noat", "noat"),
        ("x@", ""),
        ("x@.", "."),
        ("", "MAILER-DAEMON"),
        ("MAILER-DAEMON", "MAILER-DAEMON"),  # showq's spelling of the null address
        ("mailer-daemon@x.example", "x.example"),
        ("u@ÜNI.Example", "Üni.example"),  # qshape lower-cases ASCII only (Perl's lc on bytes)
    ],
)
def test_domain_names_are_qshape_s(address: str, key: str) -> None:
    assert domain_key(address) == key


@pytest.mark.parametrize(
    ("key", "parent"),
    [
        ("mx.example.com", ".example.com"),
        ("a.b.example.com", ".b.example.com"),
        (".b.example.com", ".example.com"),
        (".example.com", None),  # no top-level domains
        ("example.com", None),
        ("MAILER-DAEMON", None),
    ],
)
def test_parent_domains_stop_before_the_top_level(key: str, parent: str | None) -> None:
    assert parent_key(key) == parent


@pytest.mark.parametrize(
    ("age", "geometric", "linear"),
    [(-60, 1, 1), (0, 1, 1), (299, 1, 1), (300, 2, 2), (599, 2, 2), (600, 3, 3), (899, 3, 3), (900, 3, 4),
     (1200, 4, 5), (2700, 5, 10), (76799, 9, 10), (76800, 10, 10), (10**8, 10, 10)],
)  # fmt: skip
def test_buckets_double_or_grow_by_the_first_bucket(age: int, geometric: int, linear: int) -> None:
    assert bucket(age, ShapeOptions()) == geometric
    assert bucket(age, ShapeOptions(linear=True)) == linear


def test_headings_are_upper_limits_as_qshape_prints_them() -> None:
    assert [c["label"] for c in columns(ShapeOptions())] == [
        "5", "10", "20", "40", "80", "160", "320", "640", "1280", "1280+"
    ]  # fmt: skip
    assert [c["label"] for c in columns(ShapeOptions(bucket_minutes=0.5, buckets=4))] == [
        "0.5",
        "1",
        "2",
        "2+",
    ]
    assert [c["label"] for c in columns(ShapeOptions(linear=True, buckets=3))] == ["5", "10", "10+"]
    assert [c["label"] for c in columns(ShapeOptions(buckets=1))] == ["0+"]
    last = columns(ShapeOptions())[-1]
    assert (last["from_minutes"], last["to_minutes"]) == (1280, None)


def test_the_default_table_is_incoming_and_active(saved: Path) -> None:
    result, problems = postlens.queue(str(saved), now=NOW)
    assert not problems and result["malformed_lines"] == 0
    hosts = [f"h{i}.shop.example.net" for i in range(1, 6)]
    assert rows(result) == {"TOTAL": [5, 5, *[0] * 9], **{host: [1, 1, *[0] * 9] for host in hosts}}
    assert [r["domain"] for r in result["shape"]["rows"]] == hosts


def test_recipients_and_senders_by_age(saved: Path) -> None:
    result, _ = postlens.queue(str(saved), queues=["deferred", "hold"], now=NOW)
    # D1 is 10 minutes old (bucket 10-20), D2 two hours (80-160); H1 is marked to expire and
    # D3 has no recipients: qshape counts neither
    assert rows(result) == {"TOTAL": [3, 0, 0, 2, 0, 0, 1, 0, 0, 0, 0], "defer.example": [2, 0, 0, 2, *[0] * 7],
                            "refused.example": [1, *[0] * 5, 1, 0, 0, 0, 0]}  # fmt: skip
    assert result["shape"]["left_out"] == {"forced_expire": 1, "no_recipients": 1}
    senders, _ = postlens.queue(str(saved), queues=["deferred", "hold"], now=NOW, senders=True)
    assert rows(senders) == {"TOTAL": [2, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0], "sender.example": [1, 0, 0, 1, *[0] * 7],
                             "MAILER-DAEMON": [1, *[0] * 5, 1, 0, 0, 0, 0]}  # fmt: skip


def test_a_parent_needs_its_minimum_of_subdomains(saved: Path) -> None:
    five, _ = postlens.queue(str(saved), now=NOW, parents=True)
    assert rows(five)[".shop.example.net"] == [5, 5, *[0] * 9]
    assert ".example.net" not in rows(five)  # one subdomain, .shop.example.net
    assert five["shape"]["rows"][0]["parent"] is True
    six, _ = postlens.queue(str(saved), now=NOW, parents=True, min_subdomains=6)
    assert ".shop.example.net" not in rows(six)
    one, _ = postlens.queue(str(saved), now=NOW, parents=True, min_subdomains=1)
    assert rows(one)[".example.net"] == [5, 5, *[0] * 9]


def test_the_summary_covers_every_queue(saved: Path) -> None:
    result, _ = postlens.queue(str(saved), now=NOW)
    queues = {q["queue"]: q for q in result["queues"]}
    assert [q["queue"] for q in result["queues"]] == ["maildrop", "incoming", "active", "deferred", "hold"]
    assert {k: queues["deferred"][k] for k in ("messages", "recipients", "bytes", "forced_expire")} == {
        "messages": 3, "recipients": 3, "bytes": 3000, "forced_expire": 0}  # fmt: skip
    assert queues["hold"]["forced_expire"] == 1 and queues["maildrop"]["messages"] == 1
    assert queues["deferred"]["oldest"]["queue_id"] == "D3"
    assert result["all"]["messages"] == 7 and result["all"]["bytes"] == 7000
    assert result["oldest"] == {"queue": "hold", "queue_id": "H1", "arrival": "2027-01-12T08:00:00Z",
                                "arrival_time": NOW - 3 * 86400, "age_seconds": 3 * 86400,
                                "sender": "c@x.example", "recipients": 1}  # fmt: skip


def test_delay_reasons_are_grouped_like_postlens_problems(saved: Path) -> None:
    result, _ = postlens.queue(str(saved), now=NOW)
    rules = Rules.load()
    busy = rules.classify("deferred", *split_reply(BUSY)).reason
    refused = rules.classify("deferred", *split_reply(REFUSED)).reason
    assert busy.id != refused.id
    assert [(r["id"], r["title"], r["recipients"], r["messages"], r["example"]) for r in result["reasons"]] == [
        (busy.id, busy.title, 2, 1, BUSY), (refused.id, refused.title, 1, 1, REFUSED)]  # fmt: skip
    assert [(d["domain"], d["recipients"], [x["id"] for x in d["reasons"]]) for d in result["reasons_by_domain"]] == [
        ("defer.example", 2, [busy.id]), ("refused.example", 1, [refused.id])]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# text and JSON


def test_the_text_starts_with_qshape_s_table(saved: Path) -> None:
    result, _ = postlens.queue(str(saved), now=NOW)
    lines = render_queue(result, "text").splitlines()
    assert lines[0] == " " * 39 + "  T  5 10 20 40 80 160 320 640 1280 1280+"
    assert lines[1] == "TOTAL".rjust(39) + "  5  5  0  0  0  0   0   0   0    0     0"
    assert lines[2] == "h1.shop.example.net".rjust(39) + "  1  1  0  0  0  0   0   0   0    0     0"
    assert all(len(line) <= 80 for line in lines)


def test_a_narrow_text_merges_the_oldest_buckets(saved: Path) -> None:
    result, _ = postlens.queue(str(saved), queues=["deferred"], now=NOW, buckets=14)
    for width in (40, 50, 64):
        lines = render_queue(result, "text", width=width).splitlines()
        assert all(len(line) <= width for line in lines), width
        heads = lines[0].split()
        total = [int(n) for n in lines[1].split()[1:]]
        assert heads[-1].endswith("+") and len(heads) < 15
        assert total[0] == sum(total[1:]) == 3
    wide = render_queue(result, "text", width=120).splitlines()
    assert len(wide[0].split()) == 15 and len(wide[0]) == 120


def test_long_names_are_cut_from_the_left(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    long = "a" * 50 + ".example"
    path.write_text(message("active", "A1", 0, "s@x.example", f"u@{long}") + "\n")
    result, _ = postlens.queue(str(path), now=NOW)
    row = render_queue(result, "text").splitlines()[2]
    assert row.startswith("+a") and row.split()[0].endswith(".example") and len(row.split()[0]) == 39


def test_the_width_is_the_terminal_s_or_qshape_s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    assert text_width(True, None) == 100
    assert text_width(False, None) == 80  # a pipe or a file: qshape's width
    assert text_width(True, 60) == 60
    monkeypatch.setenv("COLUMNS", "20")
    assert text_width(True, None) == MIN_WIDTH


def test_json_and_top(saved: Path) -> None:
    done = run(str(saved), "--now", str(NOW), "--format", "json", "--top", "1")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert len(out["shape"]["rows"]) == 1 and out["shape"]["total"]["count"] == 5
    assert out["now_epoch"] == NOW and out["source"] == str(saved)
    assert len(out["reasons_by_domain"]) == 1 and len(out["reasons"]) == 2


def test_standard_input_compressed_files_and_iso_times(saved: Path, tmp_path: Path) -> None:
    packed = tmp_path / "postqueue.json.gz"
    packed.write_bytes(gzip.compress(saved.read_bytes()))
    expected = run(str(saved), "--now", str(NOW)).stdout
    assert run(str(packed), "--now", "2027-01-15T08:00:00Z").stdout == expected
    assert run("-", "--now", str(NOW), stdin=saved.read_text()).stdout == expected
    assert "T: recipients per domain in incoming, active" in expected


# ---------------------------------------------------------------------------------------------
# bad input: one line on standard error, exit code 2, never a traceback


def one_line_exit_2(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


def test_malformed_lines_are_counted_and_the_rest_is_read(saved: Path) -> None:
    lines = saved.read_text().splitlines()
    saved.write_text("\n".join([lines[0], "{not json", '{"queue_name": "x"}', *lines[1:]]) + "\n")
    done = run(str(saved), "--now", str(NOW), "--format", "json")
    assert done.returncode == 0
    assert done.stderr == f"postlens: {saved}: 2 malformed lines skipped (first: line 2: not JSON)\n"
    out = json.loads(done.stdout)
    assert out["malformed_lines"] == 2 and out["all"]["messages"] == 7


def test_bad_input_and_options(saved: Path, tmp_path: Path) -> None:
    mailq = tmp_path / "mailq.txt"
    mailq.write_text("-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n")
    rules = tmp_path / "rules.toml"
    rules.write_text("[[rule]\n")
    one_line_exit_2(run(str(tmp_path / "missing.json")), "missing.json")
    one_line_exit_2(run(str(tmp_path)), "is a directory")
    one_line_exit_2(run(str(mailq)), "no `postqueue -j` records", "not of mailq")
    one_line_exit_2(run(str(saved), "-c", str(tmp_path)), "either -c or a FILE")
    one_line_exit_2(run("-c", str(tmp_path / "nowhere")), "no such directory")
    one_line_exit_2(run(str(saved), "--queue", "deferred,bounce"), "'bounce' is not one of")
    one_line_exit_2(run(str(saved), "-w", "30"), "too narrow")
    one_line_exit_2(run(str(saved), "--now", "yesterday-ish"), "--now")
    one_line_exit_2(run(str(saved), "--rules", str(rules)))
    assert run(str(saved), "-t", "0").returncode == 2  # click says why, as for every option


@pytest.fixture
def fake_postqueue(tmp_path: Path) -> Any:
    """A postqueue first in PATH that says ``stderr`` and exits with ``code``, after printing
    ``stdout`` and writing its arguments to args.txt."""

    def make(stdout: str = "", stderr: str = "", code: int = 0) -> dict[str, str]:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        (tmp_path / "out.txt").write_text(stdout)
        (tmp_path / "err.txt").write_text(stderr)
        script = bin_dir / "postqueue"
        script.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args.txt\ncat {tmp_path}/out.txt\n'
                          f"cat {tmp_path}/err.txt >&2\nexit {code}\n")  # fmt: skip
        script.chmod(0o755)
        return {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}

    return make


def test_the_live_queue_is_read_with_postqueue_j(fake_postqueue: Any, saved: Path, tmp_path: Path) -> None:
    env = fake_postqueue(stdout=saved.read_text())
    done = run("-c", str(tmp_path), "--now", str(NOW), "--format", "json", env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "args.txt").read_text().split() == ["-j", "-c", str(tmp_path)]
    out = json.loads(done.stdout)
    assert out["source"] == f"postqueue -j -c {tmp_path}" and out["all"]["messages"] == 7
    # absolute, for the showq that root's postqueue runs when the mail system is down
    assert run("-c", ".", env=env, cwd=tmp_path).returncode == 0
    assert (tmp_path / "args.txt").read_text().split() == ["-j", "-c", str(tmp_path)]


def test_postqueue_warnings_are_passed_on(fake_postqueue: Any, saved: Path) -> None:
    down = "postqueue: warning: Mail system is down -- accessing queue directly (Connect to ...)"
    done = run("--now", str(NOW), env=fake_postqueue(stdout=saved.read_text(), stderr=down))
    assert done.returncode == 0 and done.stdout.startswith(" " * 39 + "  T")
    assert (
        done.stderr
        == "postlens: postqueue: Mail system is down -- accessing queue directly (Connect to ...)\n"
    )


@pytest.mark.parametrize(
    ("stderr", "code", "words"),
    [
        ("postqueue: fatal: Connect to the Postfix showq service: Permission denied", 70,
         ["permission denied on the showq socket", "postdrop group", "save `postqueue -j` output"]),
        ("postqueue: fatal: Queue report unavailable - mail system is down (Connect to the Postfix showq "
         "service: No such file or directory)", 69, ["mail system is down", "start"]),
        ("postqueue: warning: Mail system is down -- accessing queue directly (Connect to the Postfix showq "
         "service: Connection refused)\npostqueue: fatal: malformed showq server response", 70,
         ["mail system is down"]),
        ("postqueue: fatal: User joe(1000) is not allowed to view the mail queue", 77,
         ["joe(1000) may not view the mail queue", "authorized_mailq_users"]),
        ("postqueue: fatal: open /etc/postfix/main.cf: No such file or directory", 75,
         ["no /etc/postfix/main.cf", "--config-dir DIR"]),
        ("postqueue: invalid option -- 'j'\npostqueue: fatal: usage: postqueue -f | postqueue -p", 64,
         ["Postfix 3.1 or later"]),
        ("postqueue: fatal: chdir /var/spool/postfix: No such file or directory", 69,
         ["queue directory /var/spool/postfix", "queue_directory"]),
        ("postqueue: fatal: something new", 75, ["postqueue: -j failed: something new"]),
    ],
)  # fmt: skip
def test_postqueue_failures_name_the_fix(
    fake_postqueue: Any, stderr: str, code: int, words: list[str]
) -> None:
    one_line_exit_2(run(env=fake_postqueue(stderr=stderr, code=code)), "postlens: postqueue: ", *words)


def test_another_instance_s_directory(fake_postqueue: Any, tmp_path: Path) -> None:
    refused = fake_postqueue(
        stderr=f"postqueue: fatal: unauthorized configuration directory name: {tmp_path}", code=75
    )
    one_line_exit_2(
        run("-c", str(tmp_path), env=refused), f"--config-dir {tmp_path}", "alternate_config_directories"
    )
    empty = fake_postqueue(
        stderr=f"postqueue: fatal: open {tmp_path}/main.cf: No such file or directory", code=75
    )
    one_line_exit_2(run("-c", str(tmp_path), env=empty), f"--config-dir {tmp_path}: no main.cf there")


def test_a_missing_postqueue(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(QUEUE_MODULE, "SBIN", ())
    done = CliRunner().invoke(cli.main, ["queue"])
    assert done.exit_code == 2 and isinstance(done.exception, SystemExit)
    assert done.output == (
        "postlens: postqueue: not found: install Postfix (3.1 or later for -j), "
        "or pass a saved `postqueue -j` file\n"
    )
