"""postlens trace on tests/data/mixed.log, whose messages are known line by line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import postlens
from postlens.cli import main
from postlens.errors import EXIT_NO_MATCH, EXIT_USAGE, UsageError
from postlens.trace import duration
from tests.conftest import DATA

MIXED = str(DATA / "mixed.log")


def _trace(**query: object) -> list[dict]:
    hits, problems = postlens.trace([MIXED], year=2026, tz="UTC", **query)  # type: ignore[arg-type]
    assert problems == []
    return hits


def _ids(hits: list[dict]) -> list[str]:
    return [" ".join(h["queue_ids"]) or "NOQUEUE" for h in hits]


def test_every_message_once_with_its_state() -> None:
    states = {" ".join(h["queue_ids"]) or f"NOQUEUE {h['recipients'][0]['to']}": h["state"] for h in _trace()}
    assert states == {
        "3A1B2C3D4E 5F6A7B8C9D": "delivered",  # one story across the content filter
        "7D8E9F0A1B": "delivered",  # a local delivery and an alias forward
        "8E9F0A1B2C": "delivered",  # the forwarded copy
        "0A0B0C0D0E": "bounced",
        "1A1B1C1D1E": "delivered",
        "2B2C2D2E2F": "expired",
        "3C3D3E3F4A": "in queue",
        "NOQUEUE x@elsewhere.example": "rejected",
        "NOQUEUE nouser@mx.example.net": "rejected",
        "4D4E4F5A5B": "rejected",
        "NOQUEUE erin@mx.example.net": "rejected",  # by postscreen
        "5E5F6A6B6C": "aborted",
        "6F6A7B7C7D": "in queue",
    }


def test_the_filtered_message_as_one_timeline() -> None:
    (hit,) = _trace(msgids=("<m1@example.net>",))
    assert hit["queue_ids"] == ["3A1B2C3D4E", "5F6A7B8C9D"]
    assert hit["client"] == {"host": "client.example.net", "ip": "192.0.2.10"}
    assert (hit["sasl_user"], hit["sasl_method"], hit["size"]) == ("alice", "PLAIN", 1200)
    assert hit["tls"] == {"protocol": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384", "trust": "Anonymous"}
    (rejected,) = _trace(qids=("4D4E4F5A5B",))
    assert (rejected["helo"], rejected["tls"]) == ("evil.example", None)
    assert [hop["as"] for hop in hit["filter_hops"]] == ["5F6A7B8C9D", "5F6A7B8C9D"]
    carol = next(r for r in hit["recipients"] if r["to"] == "carol@example.org")
    assert [a["status"] for a in carol["attempts"]] == ["deferred", "sent"]
    assert hit["verdict"] == "delivered to 2 recipients via 2 relays after 1 deferral, 30 min in queue"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"senders": ("alice@example.net",)}, ["3A1B2C3D4E 5F6A7B8C9D"]),  # case does not matter
        ({"senders": ("*@EXAMPLE.net",)}, ["3A1B2C3D4E 5F6A7B8C9D", "2B2C2D2E2F", "6F6A7B7C7D"]),
        ({"recipients": ("example.org",)}, ["3A1B2C3D4E 5F6A7B8C9D"]),
        ({"recipients": ("frank@mx.example.net",)}, ["7D8E9F0A1B", "8E9F0A1B2C"]),  # orig_to too
        ({"qids": ("5F6A7B8C9D",)}, ["3A1B2C3D4E 5F6A7B8C9D"]),
        ({"msgids": ("m1@example.net",)}, ["3A1B2C3D4E 5F6A7B8C9D"]),
        ({"clients": ("192.0.2.64/28",)}, ["NOQUEUE", "NOQUEUE", "4D4E4F5A5B", "5E5F6A6B6C"]),
        ({"sasl_users": ("ALICE",)}, ["3A1B2C3D4E 5F6A7B8C9D"]),
        ({"statuses": ("bounced",)}, ["0A0B0C0D0E"]),
        ({"statuses": ("sent",), "clients": ("192.0.2.0/24",)}, ["3A1B2C3D4E 5F6A7B8C9D"]),  # not notices
        ({"since": "2026-11-05T13:30", "until": "2026-11-05T15:05"}, ["NOQUEUE", "NOQUEUE", "4D4E4F5A5B"]),
    ],
)
def test_filters(query: dict, expected: list[str]) -> None:
    assert _ids(_trace(**query)) == expected


def test_relative_times_and_bad_values() -> None:
    assert _trace(since="1d") == []  # the log is from 2026-11-05, long before "now"
    with pytest.raises(UsageError):
        _trace(since="yesterday-ish")
    with pytest.raises(UsageError):
        _trace(clients=("192.0.2.300",))


def test_raw_lines_are_the_message_and_its_sessions_only() -> None:
    (hit,) = _trace(qids=("3A1B2C3D4E",), raw=True)
    log = Path(MIXED).read_text().splitlines()
    mine = [
        line
        for line in log
        if "3A1B2C3D4E" in line.split(": ", 1)[-1][:12]
        or "5F6A7B8C9D: " in line
        or "smtpd[100]" in line
        or "smtpd[110]" in line
    ]
    assert hit["raw"] == mine


def test_raw_lines_carry_no_terminal_controls(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text(
        "Nov  5 10:00:00 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from unknown[192.0.2.9]: 554 5.7.1 "
        "<a@b.example>: Relay access denied \x1b]0;owned\x07; from=<x@y.example> to=<a@b.example> proto=ESMTP "
        "helo=<h>\n"
    )
    result = CliRunner().invoke(main, ["trace", "--year", "2026", "--raw", str(log)])
    assert result.exit_code == 0
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "Relay access denied" in result.output


def test_cli_formats_and_exit_codes() -> None:
    text = CliRunner().invoke(main, ["trace", "--year", "2026", "--to", "example.org", MIXED])
    assert text.exit_code == 0
    assert text.output.startswith("mx 3A1B2C3D4E -> 5F6A7B8C9D  DELIVERED: delivered to 2 recipients")
    as_json = CliRunner().invoke(
        main, ["trace", "--year", "2026", "--format", "json", "--status", "expired", MIXED]
    )
    (hit,) = json.loads(as_json.output)
    assert hit["queue_ids"] == ["2B2C2D2E2F"] and "first_ts" not in hit
    lines = CliRunner().invoke(
        main, ["trace", "--year", "2026", "--format", "jsonl", "--from", "example.biz", MIXED]
    )
    assert [json.loads(line)["state"] for line in lines.output.splitlines()] == ["rejected"] * 4
    nothing = CliRunner().invoke(main, ["trace", "--year", "2026", "--qid", "FFFFFFFFFF", MIXED])
    assert nothing.exit_code == EXIT_NO_MATCH and nothing.output == "postlens: no message matches\n"
    bad = CliRunner().invoke(main, ["trace", "--client", "nonsense", MIXED])
    assert bad.exit_code == EXIT_USAGE


def test_duration_words() -> None:
    assert [duration(s) for s in (4, 75, 1800, 11520, 190000)] == [
        "4 s",
        "1 min 15 s",
        "30 min",
        "3 h 12 min",
        "2 d 4 h",
    ]
