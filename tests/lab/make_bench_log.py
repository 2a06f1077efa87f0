#!/usr/bin/env python3
"""Build a big benchmark mail log (a million lines or more) from a real mail-lab log.

The output is whole copies of the source log, one after another. Copy k has

* every timestamp shifted forward by k * (span of the source + gap), so time only moves
  forward and copies never overlap;
* every Postfix queue ID renamed, consistently within the copy and unique across the whole
  output (also inside "queued as ID", "notification: ID" and Postfix-made Message-IDs);
* every other Message-ID made unique per copy (``<b3.lab-accept-0@...>``).

The timestamp format of each line is kept: classic syslog ``Nov  5 19:45:39`` (day padded
with a space, as rsyslog writes), Postfix's maillog_file ``Nov 05 19:45:39`` (zero-padded) or
RFC 3339. So pflogsumm and postlens both read the result, and every additive count of the
source is multiplied by the number of copies (distinct senders and recipients stay the same).

Usage:
    make_bench_log.py SOURCE.log OUT.log [--lines 1000000] [--truth truth.json]
    make_bench_log.py --from-lab OUT.log [--lines 1000000]     # runs a syslog lab scenario

With --truth (the lab's truth.json) the scaled ground truth is written to OUT.truth.json.
"""

from __future__ import annotations

import argparse
import calendar
import json
import math
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MONTH_NUM = {m: i + 1 for i, m in enumerate(MONTHS)}

CLASSIC_RE = re.compile(r"^([A-Z][a-z]{2}) ([ 0-9]?\d) (\d\d):(\d\d):(\d\d)(?= )")
ISO_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)(?= )")

# where Postfix writes queue IDs: "postfix/smtpd[123]: ID: ...", "queued as ID",
# "sender non-delivery notification: ID" (also delay/success notifications)
QID_AT_TAG_RE = re.compile(r"\S+ \S+?\[\d+\]: ([0-9A-Za-z]{6,}): ")  # used with .match(line, pos)
QID_MENTION_RE = re.compile(r"(?:queued as |notification: )([0-9A-Za-z]{6,})")
TOKEN_RE = re.compile(r"(?<![0-9A-Za-z])([0-9A-Za-z]{6,})(?![0-9A-Za-z])")
SHORT_QID_RE = re.compile(r"^[0-9A-F]{6,}$")  # 5 hex digits of microseconds + inode in hex
# long queue IDs (enable_long_queue_ids): base-52 time, "z", base-51 inode; no vowels
LONG_QID_RE = re.compile(r"^[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-y]{6,}z[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]+$")


def is_queue_id(token: str) -> bool:
    """Shaped like a Postfix queue ID ("warning", "statistics", "NOQUEUE" are not)."""
    return bool(SHORT_QID_RE.match(token) or LONG_QID_RE.match(token))


LONG_ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxy"  # no vowels, no "z"

# counts in the lab's truth that add up over copies (the rest are distinct counts or metadata)
_DISTINCT = {"senders", "recipients", "recipients_delivered", "sizes"}


def _short_id(n: int) -> str:
    # 11 uppercase hex digits, like a Postfix short queue ID (5 microsecond + inode digits)
    return format(0x100000000 * 16 + n, "X")


def _long_id(n: int) -> str:
    digits = []
    while True:
        n, r = divmod(n, len(LONG_ALPHABET))
        digits.append(LONG_ALPHABET[r])
        if not n:
            break
    body = "".join(reversed(digits)).rjust(10, "0")
    return f"4{body[:6]}z{body[6:]}"


class _Line:
    __slots__ = ("epoch", "frac", "has_msgid", "ids", "style", "texts", "tz")

    def __init__(self) -> None:
        self.epoch: int | None = None
        self.style = ""  # "space", "zero", "iso" or "" (no timestamp: copied unchanged)
        self.frac = ""
        self.tz = ""
        self.texts: list[str] = []
        self.ids: list[int] = []
        self.has_msgid = False


def _parse_source(lines: list[str], year: int, day_pad: str) -> tuple[list[_Line], list[str], int, int]:
    """Pre-parse the source once: timestamp, and the text split around queue IDs."""
    known: set[str] = set()
    for line in lines:
        m = QID_AT_TAG_RE.match(line, _header_end(line))
        if m and is_queue_id(m.group(1)):
            known.add(m.group(1))
        for m in QID_MENTION_RE.finditer(line):
            if is_queue_id(m.group(1)):
                known.add(m.group(1))
    ids = sorted(known)
    index = {q: i for i, q in enumerate(ids)}

    parsed: list[_Line] = []
    last_month = None
    cur_year = year
    first = last = None
    for line in lines:
        p = _Line()
        rest = line
        m = CLASSIC_RE.match(line)
        if m:
            mon = MONTH_NUM.get(m.group(1))
            if mon is not None:
                if last_month is not None and mon < last_month:
                    cur_year += 1  # Dec -> Jan inside the source
                last_month = mon
                day = int(m.group(2))
                p.epoch = calendar.timegm(
                    (cur_year, mon, day, int(m.group(3)), int(m.group(4)), int(m.group(5)))
                )
                day_text = m.group(2)
                if day_text.startswith("0"):
                    p.style = "zero"
                elif day_text.startswith(" "):
                    p.style = "space"
                else:
                    p.style = day_pad
                rest = line[m.end() :]
        else:
            m = ISO_RE.match(line)
            if m:
                dt = datetime.fromisoformat(m.group(1) + (m.group(3).replace("Z", "+00:00")))
                p.epoch = int(dt.timestamp())
                p.style, p.frac, p.tz = "iso", m.group(2) or "", m.group(3)
                rest = line[m.end() :]
        if p.epoch is not None:
            first = p.epoch if first is None else min(first, p.epoch)
            last = p.epoch if last is None else max(last, p.epoch)
        texts, qids = [], []
        buf = ""
        pos = 0
        for tm in TOKEN_RE.finditer(rest):
            tok = tm.group(1)
            if tok in index:
                texts.append(buf + rest[pos : tm.start()])
                qids.append(index[tok])
                buf = ""
                pos = tm.end()
        texts.append(buf + rest[pos:])
        p.texts, p.ids = texts, qids
        p.has_msgid = "message-id=<" in rest
        parsed.append(p)
    if first is None or last is None:
        raise ValueError("no timestamped lines in the source log")
    return parsed, ids, first, last


def _header_end(line: str) -> int:
    m = CLASSIC_RE.match(line) or ISO_RE.match(line)
    return m.end() + 1 if m else 0


def _detect_day_pad(lines: list[str]) -> str:
    for line in lines:
        m = CLASSIC_RE.match(line)
        if m and int(m.group(2)) < 10:
            return "zero" if m.group(2).startswith("0") else "space"
    return "space"


def make_bench_log(
    source: str | Path,
    output: str | Path,
    lines: int = 1_000_000,
    *,
    year: int | None = None,
    gap: int = 1,
    day_pad: str = "auto",
    truth: str | Path | dict[str, Any] | None = None,
    spread: int = 0,
) -> dict[str, Any]:
    """Write whole copies of source to output until it has at least ``lines`` lines.

    ``year`` is the year of the source's first (year-less) timestamp, by default the year of
    the source file's modification time; it only matters for February 29.
    Returns {"copies", "lines", "source_lines", "span_seconds", "truth"}; truth is the scaled
    ground truth when a truth dict or path is given (also written to OUT.truth.json).

    ``spread`` (seconds) gives each copy that long, its lines evenly spaced in their order, to
    fill days with traffic for a benchmark that needs every minute to have some (the
    dashboard's): the lines stay valid, but what depends on how close lines are (a content
    filter's hop is linked within two minutes) changes, so the scaled truth no longer holds.
    """
    if truth is not None and spread:
        raise ValueError("a stretched log has no scaled truth: the lab's counts depend on its timing")
    source, output = Path(source), Path(output)
    raw = source.read_bytes().decode("utf-8", "surrogateescape").split("\n")
    if raw and raw[-1] == "":
        raw.pop()
    if not raw:
        raise ValueError(f"{source} is empty")
    if year is None:
        year = time.gmtime(source.stat().st_mtime).tm_year
    pad = _detect_day_pad(raw) if day_pad == "auto" else day_pad
    parsed, ids, first, last = _parse_source(raw, year, pad)
    span = (spread or last - first) + max(1, gap)
    copies = max(1, math.ceil(lines / len(raw)))
    short = [bool(SHORT_QID_RE.match(q)) for q in ids]
    n_ids = len(ids)

    total = 0
    with open(output, "w", encoding="utf-8", errors="surrogateescape", newline="\n") as out:
        for c in range(copies):
            shift = c * span
            new_ids = [(_short_id if short[i] else _long_id)(c * n_ids + i) for i in range(n_ids)]
            stamp_cache: dict[tuple[int, str], str] = {}
            msgid_prefix = f"message-id=<b{c}." if c else None
            buf: list[str] = []
            for i, p in enumerate(parsed):
                if p.epoch is None:
                    head = ""
                elif spread:
                    head = _render_stamp(first + i * spread // len(parsed) + shift, p)
                else:
                    key = (p.epoch, p.style)
                    head = stamp_cache.get(key)  # type: ignore[assignment]
                    if head is None:
                        head = _render_stamp(p.epoch + shift, p)
                        stamp_cache[key] = head
                texts = p.texts
                if p.ids:
                    parts = [texts[0]]
                    for k, qi in enumerate(p.ids):
                        parts.append(new_ids[qi])
                        parts.append(texts[k + 1])
                    body = "".join(parts)
                else:
                    body = texts[0]
                if msgid_prefix and p.has_msgid:
                    body = _rename_msgid(body, msgid_prefix)
                buf.append(head + body + "\n")
            out.write("".join(buf))
            total += len(parsed)
    result: dict[str, Any] = {
        "copies": copies,
        "lines": total,
        "source_lines": len(raw),
        "span_seconds": span,
        "queue_ids_per_copy": n_ids,
    }
    if truth is not None:
        if not isinstance(truth, dict):
            truth = json.loads(Path(truth).read_text())
        scaled = scale_truth(truth, copies)
        Path(str(output) + ".truth.json").write_text(json.dumps(scaled, indent=1, sort_keys=True))
        result["truth"] = scaled
    return result


_MSGID_RE = re.compile(r"message-id=<")


def _rename_msgid(body: str, prefix: str) -> str:
    # Postfix-made Message-IDs already carry a renamed queue ID; client ones get a prefix.
    # Both get it: uniqueness is what matters.
    return _MSGID_RE.sub(prefix, body, count=1)


def _render_stamp(epoch: int, p: _Line) -> str:
    if p.style == "iso":
        tz = p.tz
        utc = datetime.fromtimestamp(epoch, UTC)
        if tz == "Z":
            return utc.strftime("%Y-%m-%dT%H:%M:%S") + p.frac + "Z"
        sign = 1 if tz[0] == "+" else -1
        off = sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
        dt = utc + timedelta(seconds=off)
        return dt.strftime("%Y-%m-%dT%H:%M:%S") + p.frac + tz
    t = time.gmtime(epoch)
    day = f"{t.tm_mday:02d}" if p.style == "zero" else f"{t.tm_mday:2d}"
    return f"{MONTHS[t.tm_mon - 1]} {day} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


def scale_truth(truth: dict[str, Any], copies: int) -> dict[str, Any]:
    """The lab's ground truth for ``copies`` concatenated copies of its log."""

    def scale(value: Any, key: str = "") -> Any:
        if key in _DISTINCT:
            return value
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value * copies
        if isinstance(value, dict):
            return {k: scale(v, k) for k, v in value.items()}
        return value

    out = {k: scale(v, k) for k, v in truth.items()}
    out["copies"] = copies
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("paths", nargs="+", metavar="SOURCE OUT", help="source log and output")
    ap.add_argument("--lines", type=int, default=1_000_000, help="at least this many lines")
    ap.add_argument("--truth", help="the lab's truth.json: write OUT.truth.json scaled")
    ap.add_argument("--year", type=int, help="year of the source's first timestamp")
    ap.add_argument("--gap", type=int, default=1, help="seconds between copies (default 1)")
    ap.add_argument("--day-pad", choices=("auto", "space", "zero"), default="auto")
    ap.add_argument("--spread", type=int, default=0, help="seconds each copy spans, lines evenly spaced")
    ap.add_argument(
        "--from-lab",
        action="store_true",
        help="run a small syslog lab scenario (root, Debian) and use its log and truth",
    )
    ns = ap.parse_args(argv)
    if ns.from_lab:
        if len(ns.paths) != 1:
            ap.error("with --from-lab give only the output path")
        ns.source, ns.output = None, ns.paths[0]
    elif len(ns.paths) != 2:
        ap.error("give a source log and an output path (or --from-lab OUT)")
    else:
        ns.source, ns.output = ns.paths
    if ns.from_lab:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import postfixlab

        res = postfixlab.run_scenario(postfixlab.Sizes.small(), "syslog")
        ns.source, ns.truth = str(res.log_path), str(res.truth_path)
        print(f"lab log {res.log_path} ({res.seconds}s)", file=sys.stderr)
    started = time.monotonic()
    info = make_bench_log(
        ns.source, ns.output, ns.lines, year=ns.year, gap=ns.gap, day_pad=ns.day_pad,
        truth=ns.truth, spread=ns.spread,
    )  # fmt: skip
    info.pop("truth", None)
    info["seconds"] = round(time.monotonic() - started, 1)
    info["output"] = str(ns.output)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
