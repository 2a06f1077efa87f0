"""The C fast paths (postlens._fastparse) give what their Python twins give, or leave the line to them.

Each C function either returns exactly its Python reference's answer or None (then the reference
runs). These tests hold them to that on every line of the corpus and on generated text made of
the pieces Postfix writes and the junk a log can hold, and check that the fast paths do take the
common lines (a fast path that always said None would pass the first check and help nobody).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postlens.events import postfix
from postlens.lines import FMT_CLASSIC, Line, LineParser, YearGuess, _fastparse
from tests.conftest import CORPUS, need
from tests.corpus.test_corpus import logs

PAYLOAD_PATHS: dict[str, tuple[str, Callable[[str], Any]]] = {
    # C function: (what the text starts with, its Python reference)
    "delivery": ("to=<", postfix.delivery_fields_python),
    "queued": ("from=<", postfix.queued_fields_python),
    "client": ("client=", postfix.client_fields_python),
}


@pytest.fixture(scope="module")
def fast() -> Any:
    need(_fastparse is not None, "postlens._fastparse is not built (a plain-Python install)")
    return _fastparse


def same_as_python(fast: Any, name: str, text: str, counts: Counter[str]) -> None:
    reference = postfix.split_qid_python if name == "split_qid" else PAYLOAD_PATHS[name][1]
    got = getattr(fast, name)(text)
    want = reference(text)
    if got is not None:
        assert got == want, text
        counts[name] += 1
    if want is not None:
        counts[name + " wanted"] += 1


def check_payload(fast: Any, payload: str, counts: Counter[str]) -> None:
    same_as_python(fast, "split_qid", payload, counts)
    split = postfix.split_qid_python(payload)
    rest = split[1] if split is not None else payload
    for name, (start, _) in PAYLOAD_PATHS.items():
        if rest.startswith(start):
            same_as_python(fast, name, rest, counts)


def check_header(fast: Any, parser: LineParser, text: str, counts: Counter[str]) -> None:
    want = parser.known_minute(text)
    got = fast.classic_header(text, parser._stamps, parser._month)
    if got is not None:
        assert Line(*got, FMT_CLASSIC) == want, text
        counts["header"] += 1
    if want is not None:
        counts["header wanted"] += 1


def test_every_corpus_line_takes_the_same_path(fast: Any) -> None:
    need(CORPUS.is_dir(), f"the log corpus is not at {CORPUS}")
    counts: Counter[str] = Counter()
    for path in logs(CORPUS):
        parser = LineParser(YearGuess(2026, None, None), None)
        with path.open(errors="replace") as f:
            for text in f:
                text = text.rstrip("\n")
                check_header(fast, parser, text, counts)
                line = parser.parse(text)
                if line is not None:
                    check_payload(fast, line.payload, counts)
    print(dict(counts))
    # the C paths take all but the odd line (non-ASCII, a quoted address ...) of their shapes
    for name in ("header", "split_qid", *PAYLOAD_PATHS):
        assert counts[name] >= 0.95 * counts[name + " wanted"] > 0, name


PIECES = (
    "to=<", "orig_to=<", "from=<", "client=", "relay=", "conn_use=", "delay=", "delays=", "dsn=",
    "status=", ", size=", ", nrcpt=", "a@b.example", "<>", ">", "<", ", ", ",", " ", " (", "(", ")",
    "[", "]", ":", ":25", "mx.example[192.0.2.1]", "0.5", "1..2", ".", "0/0.1/0/0.2", "2.0.0", "sent",
    "deferred", "250 2.0.0 Ok", '"x>y"', "12", "99999999999999999999", "z", "NOQUEUE", "3F2A1B4C5D",
    "4Xyz7h5Rk2zA9", ": ", "é", "\t", "\n", "\x00", "\x7f", "²", "٣",
)  # fmt: skip
texts = st.lists(st.sampled_from(PIECES), max_size=16).map("".join)


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(["", "3F2A1B4C5D: ", "NOQUEUE: ", "4Xyz7h5Rk2zA9: "]), texts)
def test_generated_payloads_take_the_same_path(fast: Any, qid: str, text: str) -> None:
    counts: Counter[str] = Counter()
    check_payload(fast, qid + text, counts)
    for name, (start, _) in PAYLOAD_PATHS.items():
        same_as_python(fast, name, start + text, counts)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(("Nov 28 19:45:", "39", "²9", " ", "mx", "postfix/smtp", "[12]", ":", "[", "]",
                                 "]:", "x", "é", "\t", "Dec")), max_size=10).map("".join))  # fmt: skip
def test_generated_headers_take_the_same_path(fast: Any, text: str) -> None:
    parser = LineParser(YearGuess(2026, None, None), None)
    parser.parse("Nov 28 19:45:00 mx postfix/smtp[1]: seen")  # the minute is known
    check_header(fast, parser, text, Counter())
