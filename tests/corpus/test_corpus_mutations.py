"""Real corpus lines with parts swapped for junk, through every consumer: nothing raises.

Postfix writes its fields in fixed shapes, but a log is text anyone can write into; a field
of another shape (``delay=1..2``, a queue ID without a message, a half line) must make a line
unrecognised, never end the run. Two crashes were found this way before this test existed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postlens.analyses.anomalies import AnomaliesOptions
from postlens.analyses.problems import ProblemsOptions
from postlens.analyses.security import SecurityOptions
from postlens.metrics import Metrics
from postlens.pipeline import Analysis, Settings
from postlens.render import render
from tests.conftest import CORPUS, need
from tests.corpus.test_corpus import logs

JUNK = ("", "..", "1..2", "-", "/", "=", "<", ">", "[", "]", ":", ",", " ", "é", "\x00", "-1", "nan",
        "99999999999999999999", "(", ")", "a@b", "@", "<>", '"', "\\", "\x1b[2J")  # fmt: skip
TOKEN = re.compile(r"(\W)")


def _corpus_lines() -> list[str]:
    if not CORPUS.is_dir():
        return []
    lines: list[str] = []
    for path in logs(CORPUS):
        with path.open(errors="replace") as f:
            lines.extend(line.rstrip("\n") for line in f)
    return lines


LINES = _corpus_lines()


@st.composite
def mutated(draw: st.DrawFn) -> list[str]:
    """A few corpus lines, each with up to three of its tokens after the header replaced."""
    out = []
    for _ in range(draw(st.integers(1, 12))):
        tokens = TOKEN.split(LINES[draw(st.integers(0, len(LINES) - 1))])
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(0, len(tokens) - 1))
            if i > 8:  # the time stamp and host stay, so that the payload parsers are reached
                tokens[i] = draw(st.sampled_from(JUNK))
        out.append("".join(tokens))
    return out


@pytest.fixture(scope="module")
def corpus_lines(corpus: Path) -> list[str]:
    need(bool(LINES), f"no corpus lines at {corpus}")
    return LINES


METRICS = Metrics()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_corpus_lines_never_raise(corpus_lines: list[str], data: st.DataObject) -> None:
    lines = data.draw(mutated())
    views = {"problems": ProblemsOptions(), "security": SecurityOptions(), "anomalies": AnomaliesOptions()}
    analysis = Analysis(Settings(year=2026, tz="UTC", views=views))
    parser = analysis.line_parser_for(None)
    analysis.read(lines, parser)
    result = analysis.finish()
    for fmt in ("text", "json", "markdown", "html"):
        render(result, fmt)
    for text in lines:
        line = parser.parse(text)
        ev = analysis.events.parse(line) if line is not None else None
        if ev is not None:
            METRICS.feed(ev)
    METRICS.exposition()
