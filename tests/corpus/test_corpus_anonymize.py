"""postlens anonymize on ../shared/corpus: nothing the parser saw survives, and every total
(postlens's, its pflogsumm view, and the real pflogsumm's) is the same before and after."""

from __future__ import annotations

import ipaddress
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import postlens
from postlens.analyses.pflogsumm import parse_grand_totals
from postlens.events import Delivery, EventParser
from postlens.lines import LineParser, YearGuess, zone
from tests.corpus.test_corpus import logs

# what stays as it is by design (docs/anonymize.md): it names no one
KEPT_NAMES = {"", "unknown", "localhost", "localhost.localdomain", "local", "none"}
FIELDS = ("client_host", "client_ip", "peer_host", "peer_ip", "sender", "recipient", "to", "orig_to",
          "sasl_username", "username", "helo", "message_id")  # fmt: skip


@pytest.fixture(scope="module")
def anonymised(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Path]:
    """Each corpus log and its anonymised copy."""
    out = tmp_path_factory.mktemp("anonymised")
    key = out / "key"
    copies = {}
    for path in logs(corpus):
        copy = out / path.name
        _, problems = postlens.anonymize([str(path)], str(copy), key=str(key), new_key=True, year=2024)
        assert problems == []
        copies[path] = copy
    return copies


def _kept(value: str) -> bool:
    if value.lower() in KEPT_NAMES:
        return True
    try:
        addr = ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return addr.is_loopback or addr.is_unspecified or (mapped is not None and mapped.is_loopback)


def _seen(text: str) -> Iterator[tuple[str, list[str]]]:
    """Each line's payload and the values the parser took from it that must be replaced."""
    utc = zone("UTC")
    parser, events = LineParser(YearGuess(2024, None, utc), utc), EventParser()
    for raw in text.splitlines():
        line = parser.parse(raw)
        ev = events.parse(line) if line is not None else None
        if line is None or ev is None:
            continue
        values = [v for v in (getattr(ev, f, None) for f in FIELDS) if v]
        if isinstance(ev, Delivery) and "[" in ev.relay:
            host, _, rest = ev.relay.partition("[")
            values += [host] if "/" in rest else [host, rest.partition("]")[0]]
        yield line.payload, [v for v in values if not _kept(v)]


def _stands_alone(value: str, text: str) -> bool:
    """Whether ``value`` is in ``text`` as itself, not as part of a longer word."""
    pattern = r"(?<![\w.@+-])" + re.escape(value) + r"(?![\w.@+=-])"
    return value in text and re.search(pattern, text) is not None


def test_nothing_the_parser_saw_survives(anonymised: dict[Path, Path]) -> None:
    """In the line it came from, no value survives; and no value that could name someone
    (one with an @, a dot, a colon or a digit) survives anywhere in the file. Words like
    "test" or "root" may still appear elsewhere as the words they are."""
    leaks = []
    checked = 0
    for path, copy in anonymised.items():
        before, after = path.read_text(errors="replace"), copy.read_text(errors="replace")
        assert len(before.splitlines()) == len(after.splitlines()), path.name
        distinctive = set()
        for (_, values), (payload, _) in zip(_seen(before), _seen(after), strict=True):
            for value in values:
                checked += 1
                if _stands_alone(value, payload):
                    leaks.append(f"{path.name}: {value!r} in {payload[:160]}")
                if len(value) >= 4 and re.search(r"[@.:\d]", value):
                    distinctive.add(value)
        leaks += [f"{path.name}: {v!r} elsewhere" for v in sorted(distinctive) if _stands_alone(v, after)]
    print(f"\n{checked} values the parser saw, in {len(anonymised)} logs")
    assert checked > 100000
    assert leaks == []


def test_totals_are_the_same(anonymised: dict[Path, Path]) -> None:
    mismatches = []
    for path, copy in anonymised.items():
        before, _ = postlens.report([str(path)], year=2024)
        after, _ = postlens.report([str(copy)], year=2024)
        for view in ("totals", "pflogsumm"):
            if after[view] != before[view]:
                mismatches.append(f"{path.name} {view}: {before[view]} -> {after[view]}")
    assert mismatches == []


def test_pflogsumm_counts_the_same(anonymised: dict[Path, Path], pflogsumm: str) -> None:
    mismatches = []
    for path, copy in anonymised.items():
        totals = [
            parse_grand_totals(subprocess.run([pflogsumm, str(p)], capture_output=True, text=True,
                                              errors="replace").stdout)
            for p in (path, copy)
        ]  # fmt: skip
        if totals[0] != totals[1]:
            mismatches.append(f"{path.name}: {totals[0]} -> {totals[1]}")
    assert mismatches == []
