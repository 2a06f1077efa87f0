"""postlens watch without the lab: syslog sent by the real logger(1) reaches the metrics page,
the history database and the live view; a file followed from a saved position."""

from __future__ import annotations

import io
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

import postlens
from postlens.watch import Live
from tests.conftest import DATA, events_of, need

SASL_FAIL = "warning: unknown[192.0.2.9]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=bob"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(condition: object, timeout: float = 15) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    pytest.fail("timed out")


def _metric(port: int, name: str) -> float | None:
    """A counter's value, or None while the page is not served yet."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_syslog_to_metrics_database_and_view(tmp_path: Path) -> None:
    need(shutil.which("logger") is not None, "logger(1) is not installed (bsdutils)")
    udp, http = _free_port(), _free_port()
    db = tmp_path / "history.db"
    view = io.StringIO()
    options = postlens.WatchOptions(
        listen=[f"udp://127.0.0.1:{udp}"], metrics=f"127.0.0.1:{http}", db=str(db), view=view,
        year=time.gmtime().tm_year, tz="UTC",
    )  # fmt: skip
    stop = threading.Event()
    watcher = threading.Thread(target=postlens.watch, args=(options, stop), daemon=True)
    watcher.start()
    try:
        _until(lambda: _metric(http, "postfix_smtpd_connects_total") is not None)  # listening
        for _ in range(3):
            subprocess.run(["logger", "--server", "127.0.0.1", "--port", str(udp), "--udp", "--rfc5424",
                            "-t", "postfix/smtpd", "--id=4242", SASL_FAIL], check=True)  # fmt: skip
        _until(lambda: _metric(http, "postfix_smtpd_sasl_authentication_failures_total") == 3)
    finally:
        stop.set()
        watcher.join(timeout=20)
    assert not watcher.is_alive()
    stored = list(postlens.history.stored_lines(str(db)))
    assert len(stored) == 3 and all("SASL LOGIN authentication failed" in text for text in stored)
    assert "auth failures" in view.getvalue()


def test_a_followed_file_resumes_where_it_stopped(tmp_path: Path) -> None:
    log, state = tmp_path / "mail.log", tmp_path / "state.json"
    stamp = time.strftime("%b %e %H:%M:%S", time.gmtime())
    log.write_text(f"{stamp} mx postfix/smtpd[1]: {SASL_FAIL}\n" * 2)
    http = _free_port()

    def run(expected: float) -> None:
        options = postlens.WatchOptions(
            paths=[str(log)], state=str(state), from_start=True, metrics=f"127.0.0.1:{http}", tz="UTC",
            year=time.gmtime().tm_year,
        )  # fmt: skip
        stop = threading.Event()
        watcher = threading.Thread(target=postlens.watch, args=(options, stop), daemon=True)
        watcher.start()
        try:
            _until(lambda: _metric(http, "postfix_smtpd_sasl_authentication_failures_total") == expected)
            time.sleep(1.5)  # nothing more arrives
            assert _metric(http, "postfix_smtpd_sasl_authentication_failures_total") == expected
        finally:
            stop.set()
            watcher.join(timeout=20)

    run(2)
    with log.open("a") as f:
        f.write(f"{stamp} mx postfix/smtpd[1]: {SASL_FAIL}\n")
    run(1)  # only the line added while it was stopped


def test_the_live_view_counts_and_shows_alerts() -> None:
    live = Live()
    for ev in events_of((
        f"Nov  5 10:00:00 mx postfix/smtpd[1]: {SASL_FAIL}",
        "Nov  5 10:00:01 mx postfix/smtp[2]: 1A2B3C: to=<a@slow.example>, relay=mx.slow.example[198.51.100.1]:25, "
        "delay=1, delays=0/0/0/1, dsn=4.4.1, status=deferred (connect to mx.slow.example: Connection timed out)",
    )):  # fmt: skip
        live.feed(ev)
    live.alerts.append("CRITICAL logins 192.0.2.9")
    out = io.StringIO()
    live.draw(out)
    text = out.getvalue()
    assert "slow.example" in text and "CRITICAL logins 192.0.2.9" in text
    rows = {r.split()[0]: r.split()[1:] for r in text.splitlines() if r.startswith(("deferred", "auth"))}
    assert rows["deferred"] == ["1", "1"] and rows["auth"] == ["failures", "1", "1"]


def test_the_live_view_does_not_count_a_named_content_filter_s_hops() -> None:
    log = (DATA / "remote-filter.log").read_text().splitlines()
    delivered = []
    for filters in (postlens.ContentFilters(), postlens.ContentFilters(["198.51.100.7"])):
        live = Live()
        for ev in events_of(log, filters=filters):
            live.feed(ev)
        delivered.append(live.totals["delivered"])
    assert delivered == [6, 3]
    bad = subprocess.run(
        [sys.executable, "-m", "postlens", "watch", "-", "--no-queue", "--content-filter", "10.0.0.0/33"],
        input=b"", capture_output=True, timeout=60,
    )  # fmt: skip
    assert (bad.returncode, bad.stderr) == (
        2,
        b"postlens: --content-filter: not an address or network: '10.0.0.0/33'\n",
    )


def test_standard_input_is_followed_until_it_ends(tmp_path: Path) -> None:
    """``docker logs -f postfix | postlens watch -``: the lines reach the database, and the
    watch ends with its input."""
    sample = Path(postlens.sample_log())
    db = tmp_path / "h.db"
    done = subprocess.run(
        [sys.executable, "-m", "postlens", "watch", "-", "--db", str(db), "--no-queue", "--no-view",
         "--year", "2026", "--tz", "UTC", "--state", str(tmp_path / "state.json")],
        input=sample.read_bytes(), capture_output=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    stored, _ = postlens.report([], db=str(db), tz="UTC")
    read, _ = postlens.report([str(sample)], year=2026, tz="UTC")
    assert stored["totals"] == read["totals"] and stored["totals"]["received"] > 0
    # standard input a file (< mail.log), which cannot be waited on: read through, and the end
    with sample.open("rb") as given:
        again = subprocess.run(
            [sys.executable, "-m", "postlens", "watch", "-", "--db", str(tmp_path / "f.db"), "--no-queue",
             "--no-view", "--year", "2026", "--tz", "UTC", "--state", str(tmp_path / "state.json")],
            stdin=given, capture_output=True, timeout=120,
        )  # fmt: skip
    assert again.returncode == 0 and again.stderr == b"", again.stderr
    assert postlens.report([], db=str(tmp_path / "f.db"), tz="UTC")[0]["totals"] == read["totals"]


def test_the_settings_file_given_to_watch_is_the_history_database_s_too(tmp_path: Path) -> None:
    """--config's [history] key_file pseudonymises what watch --db stores, as the usual
    settings file's does: no other file is read behind the one given."""
    key = tmp_path / "key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    settings = tmp_path / "postlens.toml"
    settings.write_text(f'[history]\nkey_file = "{key}"\n')
    today = time.strftime("%b %e", time.gmtime())
    log = (Path(__file__).parents[1] / "data" / "remote-filter.log").read_text().replace("Jun  2", today)
    db = tmp_path / "h.db"
    done = subprocess.run(
        [sys.executable, "-m", "postlens", "watch", "-", "--db", str(db), "--no-queue", "--no-view",
         "--tz", "UTC", "--state", str(tmp_path / "state.json"), "--config", str(settings)],
        input=log.encode(), capture_output=True, timeout=120, env={**os.environ, "POSTLENS_CONFIG": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    stored = "\n".join(text for (text,) in sqlite3.connect(db).execute("SELECT text FROM lines"))
    assert stored.count("client=") == 5
    assert "ann@a.example" not in stored and "192.0.2.10" not in stored


def test_a_watch_that_cannot_start_leaves_nothing_running(tmp_path: Path) -> None:
    """A bad [metrics] setting, found before any input starts, or a certificate that cannot be
    loaded, found after: one line, exit code 2, and the command ends though its input is open."""
    half = tmp_path / "half.toml"
    half.write_text('[metrics]\ntls_cert = "/etc/hostname"\n')
    broken = tmp_path / "broken.toml"
    broken.write_text(f'[metrics]\ntls_cert = "{half}"\ntls_key = "{half}"\n')
    for conf, said in ((half, "tls_cert and tls_key go together"), (broken, "metrics TLS certificate")):
        proc = subprocess.Popen(
            [sys.executable, "-m", "postlens", "watch", "-", "--no-queue", "--no-view", "--metrics", "127.0.0.1:0",
             "--config", str(conf), "--state", str(tmp_path / "state.json")],
            stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            proc.wait(timeout=60)  # standard input stays open: only the failure ends the watch
        finally:
            proc.kill()
        assert proc.stdin is not None and proc.stderr is not None
        proc.stdin.close()
        err = proc.stderr.read()
        assert proc.returncode == 2 and err.count("\n") == 1 and said in err, err
    journal = subprocess.run(
        [sys.executable, "-m", "postlens", "watch", "journal:", "--no-queue", "--no-view"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert journal.returncode == 2 and "with --journal" in journal.stderr
