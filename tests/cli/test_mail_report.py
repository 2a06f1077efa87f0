"""postlens report --mail-to: the report reaches a real SMTP server (Postfix's smtp-sink, which
dumps each message it receives) as text with the HTML report as the alternative part."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from postlens.cli import main
from postlens.mail import parse_server
from tests.conftest import need

SINK = "/usr/sbin/smtp-sink"
BASE = ["report", "--sample", "--year", "2026", "--tz", "UTC", "-j", "1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp_sink() -> Iterator[Callable[..., tuple[int, Path]]]:
    """Starts smtp-sink on a free loopback port with the options given: (port, dump directory)."""
    need(os.access(SINK, os.X_OK), "smtp-sink is not installed (apt-get install postfix)")
    running: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(*options: str) -> tuple[int, Path]:
        dump = Path(tempfile.mkdtemp(prefix="postlens-sink-"))
        user = []
        if os.geteuid() == 0:
            # smtp-sink will not run as root without -u; the user it becomes writes the dumps
            dump.chmod(0o777)
            user = ["-u", "nobody"]
        port = free_port()
        proc = subprocess.Popen(
            [SINK, *user, *options, "-d", f"{dump}/%H%M%S.", f"127.0.0.1:{port}", "10"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        running.append((proc, dump))
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return port, dump
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"smtp-sink did not start: {proc.communicate()[1].decode()}")
                time.sleep(0.05)

    yield start
    for proc, dump in running:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(dump, ignore_errors=True)


def received(dump: Path) -> list[EmailMessage]:
    """The messages smtp-sink dumped (its own X- headers and Received first, then the message)."""
    deadline = time.monotonic() + 10
    while not (files := sorted(p for p in dump.rglob("*") if p.is_file())) and time.monotonic() < deadline:
        time.sleep(0.05)
    parser = BytesParser(policy=policy.default)
    return [parser.parsebytes(p.read_bytes()) for p in files]


def report(*args: str) -> str:
    r = CliRunner().invoke(main, [*BASE, *args])
    assert r.exit_code == 0, r.output
    return r.stdout


def test_the_report_is_mailed_as_text_with_html_alternative(
    smtp_sink: Callable[..., tuple[int, Path]],
) -> None:
    port, dump = smtp_sink()
    r = CliRunner().invoke(main, [*BASE, "--mail-to", "admin@example.org", "--mail-to", "ops@example.org",
                                  "--mail-from", "reports@mx.example.net", "--smtp", f"127.0.0.1:{port}"])  # fmt: skip
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")  # mailed instead of printed
    [msg] = received(dump)
    # the envelope, as smtp-sink saw it
    assert msg.get_all("X-Rcpt-Args") == ["<admin@example.org>", "<ops@example.org>"]
    assert msg["X-Mail-Args"].split()[0] == "<reports@mx.example.net>"
    assert msg["From"] == "reports@mx.example.net"
    assert msg["To"] == "admin@example.org, ops@example.org"
    # the sample log's traffic is on one day
    assert msg["Subject"] == f"Mail report for {socket.getfqdn()}: 2026-11-28"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Message-ID"].endswith("@mx.example.net>") and msg["Date"].datetime is not None
    assert msg.get_content_type() == "multipart/alternative"
    text, html = msg.iter_parts()
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert text.get_content() == report()
    # the HTML report without what needs a script (mail programs run none): charts over time
    page = report("--format", "html")
    mailed = html.get_content()
    assert "<script" in page and "<script" not in mailed and "data-chart=" not in mailed
    assert mailed.count("<table") == page.count("<table") and mailed.count("<svg") == page.count("<svg")
    assert "Grand Totals" in text.get_content() and html.get_content().lstrip().lower().startswith(
        "<!doctype html>"
    )


def test_a_period_a_subject_of_ones_own_and_a_file_too(
    smtp_sink: Callable[..., tuple[int, Path]], tmp_path: Path
) -> None:
    port, dump = smtp_sink()
    out = tmp_path / "report.json"
    r = CliRunner().invoke(main, [*BASE, "-d", "2026-11-27..2026-11-28", "--format", "json", "-o", str(out),
                                  "--mail-to", "admin@example.org", "--smtp", f"127.0.0.1:{port}",
                                  "--subject", "Postfix on {host}, {period}"])  # fmt: skip
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    assert out.read_text() == report("-d", "2026-11-27..2026-11-28", "--format", "json")
    [msg] = received(dump)
    assert msg["Subject"] == f"Postfix on {socket.getfqdn()}, 2026-11-27..2026-11-28"
    assert msg["From"] == f"postlens@{socket.getfqdn()}"
    text, _ = msg.iter_parts()
    assert text.get_content() == report("-d", "2026-11-27..2026-11-28")


def test_an_smtp_server_that_is_not_there_is_one_line_and_exit_code_6() -> None:
    port = free_port()
    r = CliRunner().invoke(main, [*BASE, "--mail-to", "admin@example.org", "--smtp", f"127.0.0.1:{port}"])
    assert r.exit_code == 6
    assert r.stderr == f"postlens: SMTP 127.0.0.1:{port}: Connection refused\n"
    assert r.stdout == ""


def test_refused_recipients_are_one_line_and_exit_code_6(smtp_sink: Callable[..., tuple[int, Path]]) -> None:
    port, dump = smtp_sink("-r", "rcpt")  # every RCPT TO gets a 4xx reply
    r = CliRunner().invoke(main, [*BASE, "--mail-to", "admin@example.org", "--smtp", f"127.0.0.1:{port}"])
    assert r.exit_code == 6
    line, *more = r.stderr.splitlines()
    assert more == [] and line.startswith(
        f"postlens: SMTP 127.0.0.1:{port}: every recipient refused: admin@example.org (4"
    )
    # refused at RCPT TO, the session never reached DATA: nothing was or will be dumped
    assert list(dump.rglob("*")) == []


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--mail-to", "admin"], "--mail-to: 'admin' is not an address like admin@example.org"),
        (
            ["--mail-to", "Admin <admin@example.org>"],
            "--mail-to: 'Admin <admin@example.org>' is not an address",
        ),
        (["--mail-to", "a@example.org", "--mail-from", "me@"], "--mail-from: 'me@' is not an address"),
        (["--mail-to", "a@example.org", "--smtp", "mx:99999"], "--smtp: 'mx:99999' is not HOST[:PORT]"),
        (["--mail-to", "a@example.org", "--smtp", "[::1"], "--smtp: '[::1' is not HOST[:PORT]"),
        (["--mail-to", "a@example.org", "--smtp", "[::1]:"], "--smtp: '[::1]:' is not HOST[:PORT]"),
        (["--mail-to", "a@example.org", "--smtp", "mx:"], "--smtp: 'mx:' is not HOST[:PORT]"),
        (["--smtp", "mx:25"], "--mail-from, --smtp and --subject go with --mail-to"),
    ],
)
def test_bad_mail_options_are_one_line_and_exit_code_2(args: list[str], said: str) -> None:
    r = CliRunner().invoke(main, [*BASE, *args])
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr.startswith(f"postlens: {said}") and r.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("text", "server"),
    [("mx", ("mx", 25)), ("mx:2525", ("mx", 2525)), ("[::1]:26", ("::1", 26)), ("::1", ("::1", 25)),
     ("[2001:db8::1]", ("2001:db8::1", 25)), (" 127.0.0.1:587 ", ("127.0.0.1", 587))],
)  # fmt: skip
def test_smtp_server_forms(text: str, server: tuple[str, int]) -> None:
    assert parse_server(text) == server


def test_an_input_that_cannot_be_read_still_mails_the_others(
    smtp_sink: Callable[..., tuple[int, Path]], tmp_path: Path
) -> None:
    port, dump = smtp_sink()
    missing = tmp_path / "mail.log.9"
    r = CliRunner().invoke(
        main, [*BASE, str(missing), "--mail-to", "admin@example.org", "--smtp", f"127.0.0.1:{port}"]
    )
    assert (r.exit_code, r.stdout, r.stderr) == (2, "", f"postlens: {missing}: no such file\n")
    [msg] = received(dump)
    text, _ = msg.iter_parts()
    assert "Grand Totals" in text.get_content()
