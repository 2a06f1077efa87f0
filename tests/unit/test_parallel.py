"""Reading a log in chunks, in several processes, gives the one-pass report byte for byte."""

import json
import pickle
from dataclasses import fields
from pathlib import Path

import pytest

from postlens.addresses import ContentFilters
from postlens.events import EventParser
from postlens.lines import LineParser, YearGuess
from postlens.messages import Correlator, Message
from postlens.parallel import analyse_parallel, plan
from postlens.pipeline import Settings, analyse
from postlens.sources import expand

MIXED = Path(__file__).parents[1] / "data" / "mixed.log"


def dump(result: dict) -> str:
    return json.dumps(result, sort_keys=True)


@pytest.mark.parametrize(("chunk_bytes", "jobs"), [(200, 1), (1000, 2), (3000, 3), (1 << 20, 2)])
def test_chunks_give_the_one_pass_report(chunk_bytes: int, jobs: int) -> None:
    settings = Settings(year=2026, tz="UTC")
    one, _ = analyse([str(MIXED)], settings)
    many, _ = analyse_parallel([str(MIXED)], settings, jobs=jobs, chunk_bytes=chunk_bytes)
    assert dump(many) == dump(one)


def test_chunks_start_at_line_starts_and_cover_the_file() -> None:
    sources, _ = expand([str(MIXED)])
    chunks = plan(sources, Settings(year=2026), chunk_bytes=500)
    data = MIXED.read_bytes()
    assert len(chunks) > 5
    assert chunks[0].first and not any(c.first for c in chunks[1:])
    assert sum(c.length or 0 for c in chunks) == len(data)
    assert all(c.start == 0 or data[c.start - 1 : c.start] == b"\n" for c in chunks)


def test_year_carries_across_chunks(tmp_path: Path) -> None:
    lines = [f"Dec 31 23:59:{s:02d} mx postfix/qmgr[1]: 4A3B2C1D{s:02d}: removed" for s in range(50)]
    lines += [f"Jan  1 00:00:{s:02d} mx postfix/qmgr[1]: 5A3B2C1D{s:02d}: removed" for s in range(50)]
    log = tmp_path / "mail.log"
    log.write_text("\n".join(lines) + "\n")
    settings = Settings(year=2025, tz="UTC")
    for chunk_bytes in (100, 1000, 4000):
        chunked, _ = analyse_parallel([str(log)], settings, jobs=2, chunk_bytes=chunk_bytes)
        one, _ = analyse([str(log)], settings)
        assert dump(chunked) == dump(one)
    first_of_january = plan(expand([str(log)])[0], settings, chunk_bytes=4000)[-1]
    assert first_of_january.years.year == 2026


def test_corpus_files_in_chunks(corpus: Path) -> None:
    settings = Settings()
    for name in ("lightmeterio__ControlCenter__complete-mail.log", "kdent__postfix_log_analysis__mail2.log",
                 "infohtreasure__Postfix-Maillog-Dump__maillog.log"):  # fmt: skip
        path = str(corpus / name)
        one, _ = analyse([path], settings)
        many, _ = analyse_parallel([path], settings, jobs=2, chunk_bytes=64 * 1024)
        assert dump(many) == dump(one), name


def test_bad_inputs_in_worker_processes(tmp_path: Path) -> None:
    binary = tmp_path / "binary.log"
    binary.write_bytes(b"\x00\x01\x02" * 1000)
    good = tmp_path / "mail.log"
    good.write_bytes(MIXED.read_bytes())
    result, problems = analyse_parallel([str(binary), str(good)], Settings(year=2026, tz="UTC"), jobs=2)
    assert [p.problem for p in problems] == ["binary data, not a text log"]
    assert result["totals"]["received"] == 3


def test_year_states_are_one_pass_s_at_every_chunk_start(tmp_path: Path) -> None:
    """The scan that finds only the lines naming another month gives, at each chunk start,
    the year guess that walking every line gives: across months, with PRI prefixes, ISO
    stamps and lines that start with a word that is no month."""
    from postlens.lines import YearGuess, classic_month
    from postlens.parallel import _boundaries, _year_states

    lines = []
    for month, day in (("Nov", 30), ("Dec", 31), ("Jan", 1), ("Dec", 2), ("Feb", 3), ("Mar", 4)):
        for s in range(20):
            lines.append(f"{month} {day:2d} 10:00:{s:02d} mx postfix/qmgr[1]: 4A3B2C1D{s:02d}: removed")
            if s % 7 == 0:
                lines.append(f"<22>{month} {day:2d} 10:00:{s:02d} mx postfix/anvil[2]: statistics")
                lines.append("2026-03-04T10:00:00+00:00 mx postfix/anvil[2]: statistics")
                lines.append("Mon is no month, nor is Nover")
    log = tmp_path / "mail.log"
    log.write_text("\n".join(lines) + "\n")
    source = expand([str(log)])[0][0]
    for chunk_bytes in (50, 333, 2000):
        starts = _boundaries(source, chunk_bytes)
        found = _year_states(source, starts, YearGuess(2025, None, None))
        walk, expected, offset = YearGuess(2025, None, None), [], 0
        for raw in log.read_bytes().splitlines(keepends=True):
            while len(expected) < len(starts) and starts[len(expected)] <= offset:
                expected.append((walk.year, walk.last_month))
            month = classic_month(raw.decode())
            if month:
                walk.for_month(month)
            offset += len(raw)
        assert [(y.year, y.last_month) for y in found] == expected
    assert expected[-1] == (2027, 3)


def test_a_named_content_filter_reaches_the_worker_processes() -> None:
    log = Path(__file__).parents[1] / "data" / "remote-filter.log"
    settings = Settings(year=2026, tz="UTC", filters=ContentFilters(["198.51.100.7"]))
    one, _ = analyse([str(log)], settings)
    assert one["messages"]["hops"] == 2
    for chunk_bytes in (300, 1500):
        many, _ = analyse_parallel([str(log)], settings, jobs=2, chunk_bytes=chunk_bytes)
        assert dump(many) == dump(one)


def test_messages_and_events_pickle_whole() -> None:
    """-j hands finished chunks' messages to the main process pickled: every field comes back."""
    messages: list[Message] = []
    correlator = Correlator(messages.append, lambda s: None, lambda m: None, True)
    parser, events = LineParser(YearGuess(2026, None, None), None), EventParser()
    for text in MIXED.read_text().splitlines():
        line = parser.parse(text)
        ev = events.parse(line) if line is not None else None
        if type(ev) in Correlator.KINDS:
            correlator.feed(ev)
    correlator.finish()
    assert messages
    _, args, state = messages[0].__reduce__()
    assert len(args) + len(state) == len(fields(Message))
    assert pickle.loads(pickle.dumps(messages)) == messages
