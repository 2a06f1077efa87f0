from datetime import UTC, datetime

import pytest

from postlens.lines import (
    FMT_CLASSIC,
    FMT_CLASSIC_FRACTION,
    FMT_DOCKER,
    FMT_ISO,
    FMT_ISO_OTHER,
    FMT_RFC5424,
    KIND_DOVECOT,
    KIND_FOREIGN,
    KIND_OTHER_MAIL,
    KIND_POSTFIX,
    LineParser,
    TagReader,
    YearGuess,
    zone,
)

UTC = UTC


def parser(year: int | None = 2026, mtime: float | None = None, tz: str | None = "UTC") -> LineParser:
    z = zone(tz)
    return LineParser(YearGuess(year, mtime, z), z)


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "when", "fmt"),
    [
        ("Nov 28 19:45:39 mx postfix/smtpd[4581]: x", ts(2026, 11, 28, 19, 45, 39), FMT_CLASSIC),
        ("Nov  5 19:45:39 mx postfix/smtpd[4581]: x", ts(2026, 11, 5, 19, 45, 39), FMT_CLASSIC),
        ("Nov 05 19:45:39 mx postfix/smtpd[4581]: x", ts(2026, 11, 5, 19, 45, 39), FMT_CLASSIC),
        ("Jan 6 08:39:06 mx postfix/smtpd[4581]: x", ts(2026, 1, 6, 8, 39, 6), FMT_CLASSIC),
        (
            "Nov 28 19:45:39.250000 mx postfix/smtpd[4581]: x",
            ts(2026, 11, 28, 19, 45, 39) + 0.25,
            FMT_CLASSIC_FRACTION,
        ),
        (
            "2026-11-28T19:45:39.123456+01:00 mx postfix/smtpd[4581]: x",
            ts(2026, 11, 28, 18, 45, 39) + 0.123456,
            FMT_ISO,
        ),
        ("2026-11-28T19:45:39Z mx postfix/smtpd[4581]: x", ts(2026, 11, 28, 19, 45, 39), FMT_ISO),
        ("2026-11-28T19:45:39+0100 mx postfix/smtpd[4581]: x", ts(2026, 11, 28, 18, 45, 39), FMT_ISO_OTHER),
        (
            "<22>1 2026-11-28T19:45:39.5Z mx postfix/smtpd 4581 - - x",
            ts(2026, 11, 28, 19, 45, 39) + 0.5,
            FMT_RFC5424,
        ),
        (
            '<22>1 2026-11-28T19:45:39Z mx postfix/smtpd 4581 ID47 [ex@1 a="]"] x',
            ts(2026, 11, 28, 19, 45, 39),
            FMT_RFC5424,
        ),
        (
            "2026-11-28T19:45:39.000000001Z Nov 28 19:45:38 mx postfix/smtpd[4581]: x",
            ts(2026, 11, 28, 19, 45, 39),
            FMT_DOCKER,
        ),
        ("<22>Nov 28 19:45:39 mx postfix/smtpd[4581]: x", ts(2026, 11, 28, 19, 45, 39), FMT_CLASSIC),
    ],
)
def test_timestamp_formats(text: str, when: float, fmt: int) -> None:
    line = parser().parse(text)
    assert line is not None
    assert line.ts == pytest.approx(when, abs=1e-6)
    assert line.fmt == fmt
    assert line.host == "mx"
    assert line.program == "postfix/smtpd"
    assert line.pid == "4581"
    assert line.payload == "x"


def test_fast_path_gives_what_the_slow_path_gives() -> None:
    p = parser()
    first = p.parse("Nov 28 19:45:39 mx postfix/smtpd[1]: a")
    again = p.parse("Nov 28 19:45:59 mx postfix/qmgr[2]: b")
    assert first is not None and again is not None
    assert again.ts - first.ts == 20
    assert (again.program, again.pid, again.payload) == ("postfix/qmgr", "2", "b")


def test_year_from_mtime_and_new_year_crossing() -> None:
    mtime = ts(2027, 1, 2, 12, 0, 0)
    p = parser(year=None, mtime=mtime)
    dec = p.parse("Dec 31 23:59:59 mx postfix/qmgr[1]: a")
    jan = p.parse("Jan  1 00:00:01 mx postfix/qmgr[1]: b")
    assert dec is not None and jan is not None
    assert dec.ts == ts(2026, 12, 31, 23, 59, 59)
    assert jan.ts == ts(2027, 1, 1, 0, 0, 1)


def test_explicit_year_is_the_year_of_the_first_line() -> None:
    p = parser(year=2020)
    line = p.parse("Dec 31 23:59:59 mx postfix/qmgr[1]: a")
    assert line is not None and line.ts == ts(2020, 12, 31, 23, 59, 59)


def test_zone_applies_to_zoneless_stamps_only() -> None:
    p = parser(tz="Europe/Berlin")
    classic = p.parse("Jul  1 12:00:00 mx postfix/qmgr[1]: a")
    iso = p.parse("2026-07-01T12:00:00Z mx postfix/qmgr[1]: a")
    assert classic is not None and iso is not None
    assert classic.ts == ts(2026, 7, 1, 10, 0, 0)
    assert iso.ts == ts(2026, 7, 1, 12, 0, 0)


@pytest.mark.parametrize(
    "text",
    ["", "garbage", "Foo 28 19:45:39 mx postfix/smtpd[1]: x", "Nov 28 25:61:39 mx p[1]: x", "\x00\x00\x00"],
)
def test_malformed_lines_give_none(text: str) -> None:
    assert parser().parse(text) is None


@pytest.mark.parametrize(
    ("program", "kind", "instance", "service", "daemon"),
    [
        ("postfix/smtpd", KIND_POSTFIX, "postfix", "", "smtpd"),
        ("postfix-out/smtp", KIND_POSTFIX, "postfix-out", "", "smtp"),
        ("postfix/submission/smtpd", KIND_POSTFIX, "postfix", "submission", "smtpd"),
        ("postfix/10025/smtpd", KIND_POSTFIX, "postfix", "10025", "smtpd"),
        ("postfix/amavis/smtp", KIND_POSTFIX, "postfix", "amavis", "smtp"),
        ("postfix/postfix-script", KIND_POSTFIX, "postfix", "", "postfix-script"),
        ("dovecot", KIND_DOVECOT, "dovecot", "", "dovecot"),
        ("imap-login", KIND_DOVECOT, "dovecot", "", "imap-login"),
        ("amavis", KIND_OTHER_MAIL, "amavis", "", "amavis"),
        ("opendkim", KIND_OTHER_MAIL, "opendkim", "", "opendkim"),
        ("policyd-spf", KIND_OTHER_MAIL, "policyd-spf", "", "policyd-spf"),
        ("postgrey", KIND_OTHER_MAIL, "postgrey", "", "postgrey"),
        ("sshd", KIND_FOREIGN, "sshd", "", "sshd"),
    ],
)
def test_program_tags(program: str, kind: int, instance: str, service: str, daemon: str) -> None:
    tag = TagReader().read(program)
    assert (tag.kind, tag.instance, tag.service, tag.daemon) == (kind, instance, service, daemon)


def test_custom_syslog_name() -> None:
    tags = TagReader(r"mail(-\w+)?")
    tag = tags.read("mail-relay/smtpd")
    assert (tag.kind, tag.instance, tag.daemon) == (KIND_POSTFIX, "mail-relay", "smtpd")
    assert tags.read("mailman/x").kind == KIND_FOREIGN
