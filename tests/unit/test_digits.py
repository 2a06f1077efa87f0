"""Numbers written with other digits ("²" is a digit to ``str.isdigit``, not to ``int``) are
refused like any other bad number, never a traceback."""

from __future__ import annotations

import pytest

from postlens.dates import duration
from postlens.errors import UsageError
from postlens.journal import journal_line
from postlens.lines import LineParser, YearGuess
from postlens.mail import parse_server
from postlens.queue import reference_time


def test_a_stamp_with_a_superscript_second_is_not_a_header() -> None:
    parser = LineParser(YearGuess(2026, None, None), None)
    assert parser.parse("Nov 28 19:45:39 mx postfix/smtp[1]: x") is not None
    # the minute is known now, so this line takes the fast path
    assert parser.parse("Nov 28 19:45:²9 mx postfix/smtp[1]: x") is None


def test_a_journal_time_in_other_digits_is_not_a_time() -> None:
    entry = {"MESSAGE": "hello", "__REALTIME_TIMESTAMP": "1²"}
    assert journal_line(entry) is None


@pytest.mark.parametrize(
    "call",
    [
        lambda: duration("5²m", "--window"),
        lambda: parse_server("mail.example:²5"),
        lambda: reference_time("1²"),
    ],
)
def test_options_in_other_digits_are_usage_errors(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError):
        call()
