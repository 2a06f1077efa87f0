"""Progress on standard error: counted across worker processes, shown only on a terminal."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

from postlens import progress
from postlens.parallel import analyse_parallel
from postlens.pipeline import Settings
from tests.conftest import DATA


def test_status_line() -> None:
    assert progress.status(0, None, 0.0) == "postlens: 0 B read, 0 B/s"
    line = progress.status(50_000_000, 200_000_000, 10.0)
    assert line == "postlens: 50.0 MB of 200.0 MB (25%) read, 5.0 MB/s, 0:30 left"


def _big_log(tmp_path: Path) -> Path:
    log = tmp_path / "mail.log"
    log.write_bytes((DATA / "mixed.log").read_bytes() * 300)
    return log


def test_workers_add_to_the_shown_count(tmp_path: Path) -> None:
    log = _big_log(tmp_path)
    screen = io.StringIO()
    with progress.shown(log.stat().st_size, screen, interval=0.01):
        analyse_parallel([str(log)], Settings(year=2026), jobs=2, chunk_bytes=log.stat().st_size // 3)
        assert progress.done() == log.stat().st_size
    assert f"of {log.stat().st_size / 1e6:.1f} MB" in screen.getvalue()
    assert screen.getvalue().endswith("\r\033[K")  # the line is wiped at the end
    assert progress.done() == 0


def _run(log: Path, stderr: int) -> subprocess.CompletedProcess[bytes]:
    cmd = [sys.executable, "-m", "postlens", "report", "--format", "json", "--year", "2026", str(log)]
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=stderr, check=True)


def test_silent_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    done = _run(DATA / "mixed.log", subprocess.PIPE)
    assert done.stderr == b""
    assert done.stdout.startswith(b"{")


def test_shown_on_a_terminal_and_never_on_stdout(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    try:
        done = _run(_big_log(tmp_path), slave)
        os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal closed
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    assert b"\r\x1b[K" in seen
    assert b"\r" not in done.stdout and b"postlens:" not in done.stdout
