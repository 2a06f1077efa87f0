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
