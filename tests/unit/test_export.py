"""postlens export: rows of messages, deliveries, rejects and logins in every format."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

from click.testing import CliRunner

import postlens
from postlens.cli import main
from postlens.export import TABLES, csv_cell
from tests.conftest import DATA, need_module

MIXED = str(DATA / "mixed.log")


def _rows(table: str, *args: str) -> list[dict[str, str]]:
    done = CliRunner().invoke(
        main, ["export", "--year", "2026", "--tz", "UTC", "--table", table, *args, MIXED]
    )
    assert done.exit_code == 0, done.output
    text = done.output.removesuffix(done.output.splitlines()[-1] + "\n")  # CliRunner mixes stderr in
    return list(csv.DictReader(io.StringIO(text)))


def test_deliveries_agree_with_the_report() -> None:
    rows = _rows("deliveries")
    report, _ = postlens.report([MIXED], year=2026, tz="UTC")
    sent = [r for r in rows if r["status"] == "sent" and not r["reply"].startswith("forwarded as")]
    assert len(sent) == report["totals"]["delivered"]
    assert sum(r["status"] == "deferred" for r in rows) == report["totals"]["deferrals"]
    assert sum(r["status"] == "bounced" for r in rows) == report["totals"]["bounced"]
    assert not any("10024" in r["relay"] for r in rows)  # hops into the filter are not deliveries


def test_messages_rejects_and_logins() -> None:
    messages = _rows("messages")
    assert [m["queue_ids"] for m in messages if m["message_id"] == "m1@example.net"] == [
        "3A1B2C3D4E 5F6A7B8C9D"
    ]
    rejects = _rows("rejects", "--client", "192.0.2.66")
    assert [r["stage"] for r in rejects] == ["RCPT", "RCPT"]
    logins = _rows("auth")
    assert [(r["username"], r["result"]) for r in logins] == [
        ("", "failure"), ("admin", "failure"), ("erin", "success"), ("root", "failure"),
    ]  # fmt: skip
    assert [r["username"] for r in _rows("auth", "--sasl-user", "ERIN")] == ["erin"]


def test_spreadsheet_formulas_are_neutralised(tmp_path: Path) -> None:
    assert [csv_cell(v) for v in ("=cmd|' /C calc'!A0", "+1", "-2", "@SUM(A1)", "plain", 5, None)] == [
        "'=cmd|' /C calc'!A0", "'+1", "'-2", "'@SUM(A1)", "plain", 5, "",
    ]  # fmt: skip
    log = tmp_path / "mail.log"
    log.write_text(
        "Nov  5 10:00:00 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from unknown[192.0.2.9]: 554 5.7.1 "
        '<a@b.example>: Relay access denied; from=<=HYPERLINK("http://x")@y.example> to=<a@b.example> '
        "proto=ESMTP helo=<h>\n"
    )
    out = tmp_path / "rejects.csv"
    postlens.export([str(log)], table="rejects", output=str(out), year=2026)
    (row,) = csv.DictReader(out.open())
    assert row["sender"].startswith("'=")


def test_json_lines_ecs_and_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "out.db"
    count, problems = postlens.export([MIXED], table="deliveries", fmt="sqlite", output=str(db), year=2026)
    assert problems == [] and count > 0
    with sqlite3.connect(db) as conn:
        cols = [c[1] for c in conn.execute("PRAGMA table_info(deliveries)")]
        assert tuple(cols) == TABLES["deliveries"]
        assert conn.execute("SELECT count(*) FROM deliveries").fetchone()[0] == count
    plain = tmp_path / "d.jsonl"
    postlens.export([MIXED], table="deliveries", fmt="jsonl", output=str(plain), year=2026)
    docs = [json.loads(line) for line in plain.read_text().splitlines()]
    assert len(docs) == count and set(docs[0]) == set(TABLES["deliveries"])
    ecs = tmp_path / "d.ecs"
    postlens.export([MIXED], table="deliveries", fmt="ecs", output=str(ecs), year=2026)
    first = json.loads(ecs.read_text().splitlines()[0])
    assert first["email"]["to"]["address"] == [docs[0]["recipient"]]
    assert first["event"]["category"] == ["email"] and first["@timestamp"] == docs[0]["time"]


def test_sqlite_needs_a_file_and_nothing_half_written(tmp_path: Path) -> None:
    done = CliRunner().invoke(main, ["export", "--format", "sqlite", MIXED])
    assert done.exit_code == 2 and "needs -o FILE" in done.output
    target = tmp_path / "never.csv"
    done = CliRunner().invoke(main, ["export", "-o", str(target), "--since", "nonsense", MIXED])
    assert done.exit_code == 2 and not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_parquet(tmp_path: Path) -> None:
    need_module("pyarrow")
    import pyarrow.parquet as pq

    out, plain = tmp_path / "d.parquet", tmp_path / "d.jsonl"
    count, _ = postlens.export([MIXED], table="deliveries", fmt="parquet", output=str(out), year=2026)
    postlens.export([MIXED], table="deliveries", fmt="jsonl", output=str(plain), year=2026)
    table = pq.read_table(out)
    assert table.num_rows == count and tuple(table.column_names) == TABLES["deliveries"]
    assert table.to_pylist() == [json.loads(line) for line in plain.read_text().splitlines()]
    assert str(table.schema.field("delay").type) == "double"
    done = CliRunner().invoke(main, ["export", "--format", "parquet", MIXED])
    assert done.exit_code == 2 and "needs -o FILE" in done.output
