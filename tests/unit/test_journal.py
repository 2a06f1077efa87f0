"""The journal as a source of every log-reading command (``journal:PATH``), read with the real
journalctl from a journal that systemd-journal-remote wrote."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC
from pathlib import Path

import postlens
from postlens.lines import LineParser, YearGuess
from tests.conftest import need
from tests.unit.test_follow import JOURNAL_REMOTE, _write_journal


def _entry(line: str, n: int) -> bytes:
    """A log line as a journal entry of the unit its program belongs to."""
    parsed = LineParser(YearGuess(2026, None, UTC), UTC).parse(line)
    assert parsed is not None
    unit = {"dovecot": "dovecot.service", "postfix": "postfix@-.service"}.get(
        parsed.program.split("/")[0], "cron.service"
    )
    fields = {
        "__REALTIME_TIMESTAMP": str(int(parsed.ts * 1_000_000)),
        "__MONOTONIC_TIMESTAMP": str(1_000_000 + n),
        "_BOOT_ID": "0123456789abcdef0123456789abcdef",
        "_HOSTNAME": parsed.host,
        "SYSLOG_IDENTIFIER": parsed.program,
        "_PID": parsed.pid or "1",
        "_SYSTEMD_UNIT": unit,
        "MESSAGE": parsed.payload,
    }
    return b"".join(f"{k}={v}\n".encode() for k, v in fields.items()) + b"\n"


def _journal(tmp_path: Path, log: Path) -> Path:
    need(shutil.which("journalctl") is not None, "journalctl is not installed (apt-get install systemd)")
    need(
        JOURNAL_REMOTE is not None,
        "systemd-journal-remote is not installed (apt-get install systemd-journal-remote)",
    )
    path = tmp_path / "mail.journal"
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    _write_journal(path, [_entry(line, n) for n, line in enumerate(lines)])
    return path


def test_the_journal_gives_the_report_the_log_gives(tmp_path: Path) -> None:
    sample = Path(postlens.sample_log())
    journal = _journal(tmp_path, sample)
    from_log, _ = postlens.report([str(sample)], year=2026, tz="UTC")
    from_journal, problems = postlens.report([f"journal:{journal}"], tz="UTC")
    assert problems == []
    assert from_journal["totals"] == from_log["totals"] and from_journal["totals"]["received"] > 0
    assert from_journal["pflogsumm"] == from_log["pflogsumm"]
    assert from_journal["coverage"]["recognised"] == from_log["coverage"]["recognised"]
    assert from_journal["inputs"] == [{"source": f"journal:{journal}", "error": None}]
    # a directory of journal files, with two processes: the same
    in_dir, _ = postlens.report([f"journal:{tmp_path}"], tz="UTC", jobs=2)
    assert in_dir["totals"] == from_log["totals"]


def test_commands_read_the_journal_and_ingest_refuses_it(tmp_path: Path) -> None:
    journal = _journal(tmp_path, Path(postlens.sample_log()))
    hits, _ = postlens.trace([f"journal:{journal}"], recipients=("*@defer.test",))
    assert hits and all(h["kind"] == "message" for h in hits)
    run = [sys.executable, "-m", "postlens"]
    missing = subprocess.run([*run, "report", "journal:/nonexistent"], capture_output=True, text=True)
    assert (
        missing.returncode == 2
        and "journal:/nonexistent: no such journal file or directory" in missing.stderr
    )
    ingest = subprocess.run(
        [*run, "ingest", "--db", str(tmp_path / "h.db"), f"journal:{journal}"], capture_output=True, text=True
    )
    assert ingest.returncode == 2 and "watch --journal --db" in ingest.stderr
    other = tmp_path / "other"
    other.mkdir()
    _write_journal(other / "cron.journal", [_entry("Nov 28 10:00:00 mx CRON[5]: (root) CMD (true)", 1)])
    cron = subprocess.run([*run, "report", f"journal:{other}"], capture_output=True, text=True)
    assert (
        cron.returncode == 2 and "no entries of the units postfix*, dovecot* in this journal" in cron.stderr
    )
    broken = tmp_path / "broken.journal"
    broken.write_bytes(b"not a journal at all" * 100)
    report = subprocess.run(
        [*run, "report", "--format", "json", f"journal:{broken}"], capture_output=True, text=True
    )
    assert report.returncode == 2 and report.stderr.count("\n") == 1 and "Traceback" not in report.stderr
