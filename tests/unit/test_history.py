"""The history database: incremental, exact ingest across rotations; reports from it."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

import postlens
from postlens.cli import main
from postlens.errors import EXIT_DATABASE
from postlens.history import SCHEMA_VERSION, normalised, stored_lines
from postlens.lines import LineParser, YearGuess
from tests.conftest import DATA, need

MIXED = DATA / "mixed.log"


def _line(n: int) -> str:
    """A distinct log line: its number is in the text, so each can be counted once."""
    return f"Nov  5 10:{n // 60 % 60:02d}:{n % 60:02d} mx postfix/anvil[9]: statistics: max cache size {n} at x\n"


def _numbers(db: Path) -> list[int]:
    return sorted(
        int(t.split("cache size ")[1].split()[0]) for t in stored_lines(str(db)) if "cache size" in t
    )


def _ingest(db: Path, *paths: Path) -> postlens.history.IngestResult:
    result, problems = postlens.ingest([str(p) for p in paths], db=str(db), keep_days=0, year=2026)
    assert problems == []
    return result


def test_a_second_run_adds_nothing_and_reports_agree(new_history: Callable[[], str]) -> None:
    db = new_history()
    assert _ingest(db, MIXED).lines == len(MIXED.read_text().splitlines())
    assert _ingest(db, MIXED).lines == 0
    from_db, _ = postlens.report([], db=db, tz="UTC")
    from_log, _ = postlens.report([str(MIXED)], year=2026, tz="UTC")
    from_db.pop("inputs"), from_log.pop("inputs")
    assert from_db == from_log


def test_a_message_split_between_runs_and_a_line_still_being_written(
    tmp_path: Path, new_history: Callable[[], str]
) -> None:
    db, log = new_history(), tmp_path / "mail.log"
    text = MIXED.read_text()
    cut = text.index("5F6A7B8C9D: to=<carol@example.org>")  # inside the filtered message, mid-line
    log.write_text(text[:cut])
    _ingest(db, log)
    with log.open("a") as f:
        f.write(text[cut:])
    _ingest(db, log)
    whole, _ = postlens.trace([str(MIXED)], year=2026, tz="UTC")
    stored, _ = postlens.trace([], db=db, tz="UTC")
    assert [h["verdict"] for h in stored] == [h["verdict"] for h in whole]


def test_rotation_compression_and_copytruncate(tmp_path: Path, new_history: Callable[[], str]) -> None:
    db, log = new_history(), tmp_path / "mail.log"
    log.write_text("".join(_line(n) for n in range(0, 100)))
    _ingest(db, log)
    with log.open("a") as f:  # written after the run, before rotation
        f.write("".join(_line(n) for n in range(100, 150)))
    log.rename(tmp_path / "mail.log.1")  # create mode
    log.write_text("".join(_line(n) for n in range(150, 200)))
    _ingest(db, tmp_path / "mail.log*")
    with log.open("a") as f:
        f.write("".join(_line(n) for n in range(200, 230)))
    with (tmp_path / "mail.log.1").open("rb") as src, gzip.open(tmp_path / "mail.log.2.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    (tmp_path / "mail.log.1").unlink()
    shutil.copy(log, tmp_path / "mail.log.1")  # copytruncate
    log.write_text("")
    with log.open("a") as f:
        f.write("".join(_line(n) for n in range(230, 260)))
        f.write(_line(260)[:20])  # still being written
    _ingest(db, tmp_path / "mail.log*")
    assert _numbers(db) == list(range(260))
    with log.open("a") as f:
        f.write(_line(260)[20:])
    _ingest(db, tmp_path / "mail.log*")
    assert _numbers(db) == list(range(261))


def test_two_ingests_at_once_store_each_line_once(tmp_path: Path, new_history: Callable[[], str]) -> None:
    db, log = new_history(), tmp_path / "mail.log"
    log.write_text("".join(_line(n) for n in range(3000)))
    cmd = [
        sys.executable,
        "-m",
        "postlens",
        "ingest",
        "--db",
        str(db),
        "--keep-days",
        "0",
        "--year",
        "2026",
        str(log),
    ]
    runs = [subprocess.Popen(cmd, stderr=subprocess.PIPE) for _ in range(3)]
    assert [p.wait(timeout=120) for p in runs] == [0, 0, 0]
    assert _numbers(db) == list(range(3000))


def test_retention(new_history: Callable[[], str]) -> None:
    db, n = new_history(), len(MIXED.read_text().splitlines())
    now = time.mktime((2026, 11, 28, 12, 0, 0, 0, 0, -1))  # the sample log is from 2026-11-05
    kept, _ = postlens.history.ingest([str(MIXED)], db, keep_days=28, year=2026, now=now)
    assert (kept.lines, kept.skipped) == (n, 0)
    skipped, _ = postlens.history.ingest([str(MIXED)], new_history(), keep_days=7, year=2026, now=now)
    assert (skipped.lines, skipped.skipped) == (0, n)
    done = CliRunner().invoke(main, ["prune", "--older-than", "1d", "--db", db])
    assert done.exit_code == 0 and f"{n} lines removed" in done.output
    assert list(stored_lines(db)) == []


def test_unusable_databases(tmp_path: Path) -> None:
    missing = CliRunner().invoke(main, ["report", "--db", str(tmp_path / "none.db")])
    assert missing.exit_code == EXIT_DATABASE and "no history database" in missing.output
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    damaged = CliRunner().invoke(main, ["trace", "--db", str(junk), "--to", "x"])
    assert damaged.exit_code == EXIT_DATABASE and "damaged" in damaged.output
    newer = tmp_path / "newer.db"
    _ingest(str(newer), MIXED)
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    refused = CliRunner().invoke(main, ["ingest", "--db", str(newer), str(MIXED)])
    assert refused.exit_code == EXIT_DATABASE and "newer postlens" in refused.output
    both = CliRunner().invoke(main, ["report", "--db", str(newer), str(MIXED)])
    assert both.exit_code == 2
    stdin = CliRunner().invoke(main, ["ingest", "--db", str(tmp_path / "s.db"), "-"], input="")
    assert stdin.exit_code == 2 and "reads files, not standard input" in stdin.output


def test_export_and_report_since_from_the_database(tmp_path: Path, new_history: Callable[[], str]) -> None:
    db = new_history()
    _ingest(db, MIXED)
    count, _ = postlens.export([], db=db, table="deliveries", output=str(tmp_path / "d.csv"))
    assert (count, _) == postlens.export(
        [str(MIXED)], table="deliveries", output=str(tmp_path / "e.csv"), year=2026
    )
    assert (tmp_path / "d.csv").read_text() == (tmp_path / "e.csv").read_text()
    later = CliRunner().invoke(
        main, ["report", "--db", str(db), "--since", "2026-11-05T12:00Z", "--format", "json"]
    )
    assert json.loads(later.output)["totals"]["received"] == 1  # only the bounced message arrives after noon


@pytest.mark.parametrize("mode", ["create", "copytruncate"])
def test_logrotate_while_lines_arrive(tmp_path: Path, mode: str, new_history: Callable[[], str]) -> None:
    logrotate = shutil.which("logrotate") or "/usr/sbin/logrotate"
    need(os.path.exists(logrotate), "logrotate is not installed (apt-get install logrotate)")
    db, log = new_history(), tmp_path / "mail.log"
    log.write_text("")
    conf = tmp_path / "logrotate.conf"
    conf.write_text(f"{log} {{\n  rotate 5\n  compress\n  delaycompress\n  {mode}\n  missingok\n}}\n")
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        while not stop.is_set() and written[0] < 20000:
            with log.open("a") as f:  # a new open each time, like a syslog daemon after HUP
                for _ in range(50):
                    f.write(_line(written[0]))
                    written[0] += 1
            time.sleep(0.002)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(4):
            time.sleep(0.2)
            _ingest(db, tmp_path / "mail.log*")
            state = tmp_path / "state"
            subprocess.run([logrotate, "-f", "-s", str(state), str(conf)], check=True, capture_output=True)
            _ingest(db, tmp_path / "mail.log*")
    finally:
        stop.set()
        thread.join()
    _ingest(db, tmp_path / "mail.log*")
    assert written[0] > 500
    in_files = []
    for path in tmp_path.glob("mail.log*"):
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        in_files += [int(x.split(b" ")[0]) for x in data.split(b"cache size ")[1:]]
    assert len(set(in_files)) == len(in_files)
    assert _numbers(db) == sorted(in_files)
    if mode == "create":
        assert _numbers(db) == list(range(written[0]))
    # copytruncate loses what is written between logrotate's copy and its truncation: a
    # known limit of that mode; every line that reached a file is stored once


def test_unreachable_postgres_is_one_line_without_the_password() -> None:
    need(
        importlib.util.find_spec("psycopg") is not None,
        "psycopg is not installed (pip install '.[postgres]')",
    )
    done = CliRunner().invoke(main, ["report", "--db", "postgresql://lens:s3cret@127.0.0.1:1/history"])
    assert done.exit_code == EXIT_DATABASE
    assert "cannot connect" in done.output and "s3cret" not in done.output


def test_a_version_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    db = tmp_path / "v1.db"
    parser = LineParser(YearGuess(2026, None, None), None)
    lines = [parser.parse(t) for t in MIXED.read_text().splitlines()]
    with sqlite3.connect(db) as conn:  # the tables as postlens with schema 1 made them
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute(
            "CREATE TABLE files (fingerprint TEXT PRIMARY KEY, path TEXT NOT NULL, device INTEGER, "
            "inode INTEGER, read_to INTEGER NOT NULL, lines INTEGER NOT NULL, updated REAL NOT NULL)"
        )
        conn.execute(
            "CREATE TABLE lines (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, text TEXT NOT NULL)"
        )
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        conn.executemany(
            "INSERT INTO lines (ts, text) VALUES (?, ?)",
            [(x.ts, normalised(x.ts, x.host, x.program, x.pid, x.payload)) for x in lines if x is not None],
        )
    from_db, _ = postlens.trace([], db=str(db), recipients=("carol@example.org",))
    from_log, _ = postlens.trace([str(MIXED)], year=2026, recipients=("carol@example.org",))
    assert from_db == from_log and from_db[0]["queue_ids"] == ["3A1B2C3D4E", "5F6A7B8C9D"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            str(SCHEMA_VERSION),
        )
        assert conn.execute("SELECT count(*) FROM keys WHERE kind = 'to'").fetchone()[0] > 0
