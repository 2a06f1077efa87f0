"""Logs of several mail servers in one file: queue IDs kept apart by host, totals per host."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

import postlens
from postlens.analyses.report import COUNTED_FIELDS
from postlens.cli import main
from tests.conftest import DATA


def _two_servers(tmp_path: Path) -> Path:
    """mixed.log as written by two servers at once: same times, same queue IDs, lines interleaved."""
    one = (DATA / "mixed.log").read_text().splitlines()
    other = [line.replace(" mx ", " mx2 ", 1) for line in one]
    both = tmp_path / "mail.log"
    both.write_text("".join(f"{a}\n{b}\n" for a, b in zip(one, other, strict=True)))
    return both


def test_each_server_counts_as_alone(tmp_path: Path) -> None:
    alone, _ = postlens.report([str(DATA / "mixed.log")], year=2026, tz="UTC")
    both, _ = postlens.report([str(_two_servers(tmp_path))], year=2026, tz="UTC")
    assert [h["host"] for h in both["hosts"]] == ["mx", "mx2"]
    for row in both["hosts"]:
        assert {f: row[f] for f in COUNTED_FIELDS} == {f: alone["totals"][f] for f in COUNTED_FIELDS}
    for field in COUNTED_FIELDS:
        assert both["totals"][field] == 2 * alone["totals"][field], field
    assert both["totals"]["delivered"] > 0


def test_by_host_section(tmp_path: Path) -> None:
    log = str(_two_servers(tmp_path))
    for fmt, marker in (
        ("text", "Per Mail Server"),
        ("markdown", "Per Mail Server"),
        ("html", 'id="per-host"'),
    ):
        with_hosts = CliRunner().invoke(main, ["report", "--year", "2026", "--by-host", "--format", fmt, log])
        assert with_hosts.exit_code == 0
        assert marker in with_hosts.output and "mx2" in with_hosts.output
        plain = CliRunner().invoke(main, ["report", "--year", "2026", "--format", fmt, log]).output
        assert marker not in plain


def test_the_dashboard_shows_each_server(tmp_path: Path) -> None:
    """The summaries count per mail server too: each server's row is the report's."""
    from postlens import history
    from postlens.web import data

    log = _two_servers(tmp_path)
    db = str(tmp_path / "h.db")
    history.ingest([str(log)], db, keep_days=0, year=2026, tz="UTC")
    report, _ = postlens.report([str(log)], year=2026, tz="UTC")
    with history.connect(db) as store:
        rows = data.overview(store, data.period(store, "30d"), "UTC")["hosts"]
    assert [r["host"] for r in rows] == ["mx", "mx2"]
    for row, host in zip(rows, report["hosts"], strict=True):
        assert (row["received"], row["delivered"], row["bounced"], row["expired"], row["rejected"]) == (
            host["received"], host["delivered"], host["bounced"], host["expired"], host["rejected"],
        )  # fmt: skip
    from tests.unit.test_dashboard_http import client

    page = client(db).get("/?range=30d").text
    assert 'id="hosts"' in page and "<td>mx2</td>" in page
