"""Properties that must hold for any input, checked with Hypothesis."""

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postlens.addresses import ContentFilters
from postlens.analyses.anomalies import AnomaliesOptions
from postlens.analyses.problems import ProblemsOptions
from postlens.analyses.report import centis
from postlens.analyses.security import SecurityOptions
from postlens.events import EventParser
from postlens.lines import LineParser, YearGuess, zone
from postlens.messages import Arrived, Correlator
from postlens.metrics import Metrics
from postlens.pipeline import Analysis, Settings
from postlens.render import render
from tests.conftest import events_of

MIXED = (Path(__file__).parents[1] / "data" / "mixed.log").read_text().splitlines()
UTC = zone("UTC")


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_any_bytes_as_a_line_never_raise(raw: bytes) -> None:
    text = raw.decode("utf-8", "replace")
    a = Analysis(Settings(year=2026, tz="UTC"))
    a.read([text, "Nov  5 10:00:00 mx postfix/smtpd[1]: " + text], a.line_parser_for(None))
    render(a.finish(), "text")


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_any_payload_of_any_daemon_parses(payload: str) -> None:
    parser = LineParser(YearGuess(2026, None, UTC), UTC)
    events = EventParser()
    for daemon in ("smtpd", "qmgr", "cleanup", "smtp", "postscreen", "bounce", "pickup", "local", "master"):
        line = parser.parse(f"Nov  5 10:00:00 mx postfix/{daemon}[1]: {payload}")
        if line is not None:
            events.parse(line)
    for program in ("dovecot", "amavis", "spamd", "policyd-spf", "opendkim", "opendmarc", "postgrey"):
        line = parser.parse(f"Nov  5 10:00:00 mx {program}[2]: {payload}")
        if line is not None:
            events.parse(line)


METRICS = Metrics()
NUMERIC = st.text(alphabet="0123456789./-+e ", min_size=1, max_size=8)
NUMBERED = (
    "1A2B3C4D5E: to=<a@b.example>, relay=mx.b.example[192.0.2.1]:25, delay={0}, delays={1}, dsn={2}, "
    "status=sent (250 ok)",
    "1A2B3C4D5E: from=<a@b.example>, size={0}, nrcpt={1} (queue active)",
    "DNSBL rank {0} for [192.0.2.9]:4242",
    "statistics: max connection rate {0}/60s for (smtp:192.0.2.9) at Nov  5 10:00:00",
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(NUMBERED), st.lists(NUMERIC, min_size=3, max_size=3))
def test_numbers_of_any_shape_in_postfix_s_fields_never_raise(template: str, numbers: list[str]) -> None:
    """Fields Postfix writes as numbers, given something else: every consumer still reads on."""
    payload = template.format(*numbers)
    views = {"problems": ProblemsOptions(), "security": SecurityOptions(), "anomalies": AnomaliesOptions()}
    a = Analysis(Settings(year=2026, tz="UTC", views=views))
    daemons = ("smtp", "qmgr", "postscreen", "anvil")
    lines = [f"Nov  5 10:00:0{i} mx postfix/{d}[1]: {payload}" for i, d in enumerate(daemons)]
    a.read(lines, a.line_parser_for(None))
    render(a.finish(), "text")
    for ev in events_of(lines):
        METRICS.feed(ev)
    METRICS.exposition()


@settings(max_examples=300)
@given(
    st.sampled_from(["amavis", "spamd", "policyd-spf", "opendkim", "opendmarc", "postgrey"]),
    st.sampled_from(["(09-01) Passed ", "(09-01) Blocked ", "spamd: clean message (", "spamd: identified spam (",
                     "prepend Received-SPF: ", "3F73A3004142: ", "3F73A3004142: DKIM-Signature field added ",
                     "action=", "Queue-ID: "]),
    st.text(max_size=120),
)  # fmt: skip
def test_a_checking_programs_payload_of_any_shape_parses(program: str, head: str, rest: str) -> None:
    """The companions' parsers on the beginnings they look for, followed by anything."""
    line = LineParser(YearGuess(2026, None, UTC), UTC).parse(f"Nov  5 10:00:00 mx {program}[2]: {head}{rest}")
    if line is not None:
        EventParser().parse(line)


def split_run(
    lines: list[str], cuts: list[int], views: dict[str, Any] | None = None, filters: tuple[str, ...] = ()
) -> str:
    """Read ``lines`` as consecutive chunks and merge them, as -j N and the cluster engine do;
    the whole result, or with ``views`` only theirs."""
    settings_ = Settings(year=2026, tz="UTC", views=views or {}, filters=ContentFilters(filters))
    bounds = [0, *cuts, len(lines)]
    years = YearGuess(2026, None, UTC)
    whole: Analysis | None = None
    for i in range(len(bounds) - 1):
        part = Analysis(settings_, first=i == 0)
        parser = LineParser(copy.copy(years), UTC)
        part.read(lines[bounds[i] : bounds[i + 1]], parser, (0, i))
        years = parser.years
        if whole is None:
            whole = part
        else:
            whole.merge(part)
    assert whole is not None
    result = whole.finish()
    return json.dumps({name: result[name] for name in views} if views else result, sort_keys=True)


ONE_PASS = split_run(MIXED, [])
REMOTE_FILTER = (Path(__file__).parents[1] / "data" / "remote-filter.log").read_text().splitlines()
FILTER_ONE_PASS = split_run(REMOTE_FILTER, [], filters=("198.51.100.7",))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(MIXED) - 1), min_size=1, max_size=6, unique=True))
def test_splitting_at_any_lines_and_merging_equals_one_pass(cuts: list[int]) -> None:
    assert split_run(MIXED, sorted(cuts)) == ONE_PASS


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=len(REMOTE_FILTER) - 1), min_size=1, max_size=6, unique=True)
)
def test_a_named_content_filter_s_hops_link_across_any_split(cuts: list[int]) -> None:
    assert split_run(REMOTE_FILTER, sorted(cuts), filters=("198.51.100.7",)) == FILTER_ONE_PASS


@settings(max_examples=2000)
@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(0, 10**7).map(lambda n: n / 1000),  # delays as Postfix writes them, and halves
        st.integers(0, 10**6).map(lambda n: n / 200),
    )
)
def test_centis_rounds_like_round(value: float) -> None:
    try:
        want = round(value * 100)
    except (OverflowError, ValueError) as e:
        with pytest.raises(type(e)):
            centis(value)
        return
    assert centis(value) == want


@settings(max_examples=300)
@given(st.lists(st.floats(0, 1000, allow_nan=False), max_size=40), st.floats(0, 1000, allow_nan=False))
def test_held_arrivals_come_due_in_deadline_order(deadlines: list[float], now: float) -> None:
    """Arrivals held for a hop link come due by deadline, then in the order they were held,
    also when the log's lines are out of time order."""
    settled: list[Arrived] = []
    c = Correlator(lambda m: None, lambda s: None, settled.append, True)
    held = []
    for i, deadline in enumerate(deadlines):
        arrived = Arrived("mx", f"Q{i}", 0.0, 0.0, "smtpd", "", 0, "localhost", "127.0.0.1", "")
        c.candidates[("mx", f"Q{i}")] = arrived
        c._hold(deadline, arrived)
        held.append((deadline, i, arrived))
    c.advance(now)
    due = sorted((h for h in held if h[0] < now), key=lambda h: h[:2])
    assert settled == [h[2] for h in due]
