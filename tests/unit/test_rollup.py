"""The history database's summaries: as exact as the report, however the lines arrived."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC
from pathlib import Path

import pytest

import postlens
from postlens import history, rollup
from postlens.lines import LineParser, YearGuess
from tests.conftest import DATA

LOGS = [Path(postlens.sample_log()), DATA / "mixed.log", DATA / "filter-discard.log"]


def _tables(db: Path) -> dict[str, list[tuple[object, ...]]]:
    con = sqlite3.connect(db)
    try:
        return {
            "minutes": con.execute("SELECT minute, metric, n FROM rollup_minutes ORDER BY 1, 2").fetchall(),
            "hours": con.execute("SELECT hour, kind, key, n FROM rollup_hours ORDER BY 1, 2, 3").fetchall(),
            "messages": con.execute("SELECT * FROM rollup_messages ORDER BY host, qid, first_ts").fetchall(),
            "queue": con.execute("SELECT * FROM rollup_queue ORDER BY host, qid, first_ts").fetchall(),
        }
    finally:
        con.close()


def _live(log: Path) -> list[str]:
    """The log's lines moved to begin after today: as in a live log, the clock has
    not passed them, so what the rollup settles depends on the lines alone."""
    parser = LineParser(YearGuess(2026, None, UTC), UTC)
    parsed = [line for text in log.read_text().splitlines() if (line := parser.parse(text)) is not None]
    shift = (time.time() // 86400 + 1) * 86400 - parsed[0].ts // 86400 * 86400  # whole days ahead
    return [history.normalised(x.ts + shift, x.host, x.program, x.pid, x.payload) + "\n" for x in parsed]


def _ingest_in_pieces(log: Path, tmp: Path, pieces: int, live: bool = False) -> Path:
    """The log as a file that grows ``pieces`` times, ingested after each growth."""
    lines = _live(log) if live else log.read_text().splitlines(keepends=True)
    path, db = tmp / "mail.log", tmp / f"h{pieces}.db"
    path.write_text("")
    size = -(-len(lines) // pieces)
    for start in range(0, len(lines), size):
        with path.open("a") as f:
            f.writelines(lines[start : start + size])
        history.ingest([str(path)], str(db), keep_days=0, year=2026, tz="UTC")
    return db


@pytest.mark.parametrize("log", LOGS, ids=lambda p: p.name)
def test_summaries_add_up_to_the_report(log: Path, tmp_path: Path) -> None:
    db = _ingest_in_pieces(log, tmp_path, 1)
    report, _ = postlens.report([str(log)], year=2026, tz="UTC")
    t = report["totals"]
    totals: dict[str, int] = {}
    for _, metric, n in _tables(db)["minutes"]:
        totals[metric] = totals.get(metric, 0) + n
    assert totals["delivered"]  # the log has traffic
    assert totals.get("received", 0) == t["received"]
    assert totals.get("delivered", 0) == t["delivered"]
    assert totals.get("deferred", 0) == t["deferrals"]
    assert totals.get("bounced", 0) == t["bounced"]
    assert totals.get("expired", 0) == t["expired"]
    assert totals.get("rejected", 0) == t["rejected"]
    assert totals.get("auth_failures", 0) == report["auth"]["failures"]["total"]


@pytest.mark.parametrize("log", LOGS, ids=lambda p: p.name)
@pytest.mark.parametrize("pieces", [2, 7, 40])
def test_lines_stored_in_pieces_give_the_same_summaries(log: Path, pieces: int, tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    whole = _tables(_ingest_in_pieces(log, tmp_path / "one", 1, live=True))
    split = _tables(_ingest_in_pieces(log, tmp_path, pieces, live=True))
    assert split == whole
    assert whole["messages"]


DEFERRED = """\
Nov 28 10:00:01 mx postfix/pickup[10]: 4C1A2B3D5E: uid=0 from=<root>
Nov 28 10:00:01 mx postfix/cleanup[11]: 4C1A2B3D5E: message-id=<m1@mx.lab.test>
Nov 28 10:00:01 mx postfix/qmgr[12]: 4C1A2B3D5E: from=<root@mx.lab.test>, size=300, nrcpt=2 (queue active)
Nov 28 10:00:02 mx postfix/smtp[13]: 4C1A2B3D5E: to=<a@near.test>, relay=mx.near.test[192.0.2.1]:25, delay=1, delays=0.1/0/0.4/0.5, dsn=2.0.0, status=sent (250 2.0.0 Ok)
Nov 28 10:00:03 mx postfix/smtp[13]: 4C1A2B3D5E: to=<b@far.test>, relay=none, delay=2, delays=0.1/0/2/0, dsn=4.4.1, status=deferred (connect to mx.far.test[192.0.2.2]:25: Connection refused)
"""
LATER = """\
Nov 28 11:00:03 mx postfix/smtp[14]: 4C1A2B3D5E: to=<b@far.test>, relay=mx.far.test[192.0.2.2]:25, delay=3602, delays=3600/0/1/1, dsn=2.0.0, status=sent (250 2.0.0 Ok)
Nov 28 11:00:03 mx postfix/qmgr[12]: 4C1A2B3D5E: removed
"""


def test_a_message_waits_in_the_queue_table_until_it_ends(tmp_path: Path) -> None:
    log, db = tmp_path / "mail.log", tmp_path / "h.db"
    log.write_text(DEFERRED)
    history.ingest([str(log)], str(db), keep_days=0, year=2026, tz="UTC")
    waiting = _tables(db)
    assert [(row[1], row[4], row[5], row[6], row[10]) for row in waiting["queue"]] == [
        ("4C1A2B3D5E", "root@mx.lab.test", "a@near.test b@far.test", "deferred", "connection_refused")
    ]
    assert not waiting["messages"]
    with history.connect(str(db)) as store:
        assert store.execute("SELECT in_flight FROM rollup_state").fetchone()[0] == 1
    with log.open("a") as f:
        f.write(LATER)
    history.ingest([str(log)], str(db), keep_days=0, year=2026, tz="UTC")
    done = _tables(db)
    assert not done["queue"]
    assert [(row[1], row[6]) for row in done["messages"]] == [("4C1A2B3D5E", "delivered")]


def test_a_message_a_content_filter_discarded_is_listed_as_discarded_ones_are(tmp_path: Path) -> None:
    db = _ingest_in_pieces(DATA / "filter-discard.log", tmp_path, 1)
    rows = {row[1]: row[6] for row in _tables(db)["messages"]}
    assert rows["413BE60672"] == "discard"  # as smtpd's and cleanup's discards are listed


def test_the_summaries_count_a_named_content_filter_s_mail_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = DATA / "remote-filter.log"
    settings = tmp_path / "config.toml"
    settings.write_text('[history]\ncontent_filters = ["198.51.100.0/24"]\n')
    monkeypatch.setenv("POSTLENS_CONFIG", str(settings))
    db = _ingest_in_pieces(log, tmp_path, 3)
    totals: dict[str, int] = {}
    for _, metric, n in _tables(db)["minutes"]:
        totals[metric] = totals.get(metric, 0) + n
    report, _ = postlens.report([str(log)], year=2026, tz="UTC", content_filters=["198.51.100.7"])
    assert (totals["received"], totals["delivered"]) == (4, 3)
    assert (report["totals"]["received"], report["totals"]["delivered"]) == (4, 3)


def test_a_state_from_another_version_starts_again(tmp_path: Path) -> None:
    db = _ingest_in_pieces(LOGS[0], tmp_path, 1)
    con = sqlite3.connect(db)
    con.execute("UPDATE rollup_state SET state = ?", (b"not a pickle",))
    con.commit()
    con.close()
    with history.connect(str(db)) as store:
        store.execute("INSERT INTO lines (ts, text) VALUES (1e9, 'x')")
        assert rollup.update(store) == 1  # read on, without what was in flight


def test_summaries_are_pruned_with_the_lines(tmp_path: Path) -> None:
    db = _ingest_in_pieces(LOGS[0], tmp_path, 1)
    assert all(_tables(db).values())
    history.prune(str(db), 0)
    assert not any(_tables(db).values())


def test_the_dashboard_totals_of_any_period_are_the_minutes_sums(tmp_path: Path) -> None:
    """Whole hours come from the hourly counts, the ends from the minutes: the same sums."""
    from postlens.web import data

    db = _ingest_in_pieces(DATA / "mixed.log", tmp_path, 3)
    con = sqlite3.connect(db)
    lo, hi = con.execute("SELECT MIN(minute), MAX(minute) FROM rollup_minutes").fetchone()
    with history.connect(str(db)) as store:
        for start in range(lo - 61, hi + 2, 37):
            for length in (1, 59, 60, 61, 119, 180, 400):
                p = data.Period(start * 60.0, (start + length) * 60.0, "custom")
                expected = dict.fromkeys(data.MINUTE_METRICS, 0)
                for metric, n in con.execute(
                    "SELECT metric, SUM(n) FROM rollup_minutes WHERE minute >= ? AND minute < ? GROUP BY metric",
                    (start, start + length),
                ):
                    expected[metric] = n
                assert data.totals(store, p) == expected, (start, length)
        whole = data.Period(lo * 60.0 - 3600, hi * 60.0 + 3600, "custom")
        assert sum(data.totals(store, whole).values()) > 10
        for metrics in (("delivered", "deferred"),):
            hourly = data.series(
                store, data.Period(whole.start, whole.start + 40 * 86400, "custom"), metrics, None
            )
            assert hourly["step"] >= 3600
            assert [sum(s["values"]) for s in hourly["series"]] == [
                data.totals(store, whole)[m] for m in metrics
            ]
    con.close()
