"""The result of ``postlens queue`` as text or JSON.

The text starts with qshape's table, laid out as qshape lays it out: the domain column right
aligned and as wide as what the count columns leave of the line (at least 18), each count column
one wider than its heading or TOTAL (at least 3), names too long cut from the left with "+".
Where qshape would run past the width, the oldest buckets are merged into one "N+" column
(down to five buckets), then the domain column narrows down to 12 (merging more buckets if it
must), so no line is ever wider than asked.
"""

from __future__ import annotations

import shutil
import textwrap
from dataclasses import dataclass
from typing import Any

from postlens.errors import UsageError
from postlens.render import clean, limit
from postlens.render.json import render_json

QUEUE_FORMATS = ("text", "json")
QSHAPE_WIDTH = 80  # qshape's width when it is not told otherwise
MIN_WIDTH = 40  # room for the domain, TOTAL and one merged bucket of any realistic count
MIN_TEXT = 10  # the least of a text column worth showing cut
QSHAPE_DOMAIN = 18  # qshape's narrowest domain column
NARROW_DOMAIN = 12  # ours, when the width leaves no room for that and KEEP_BUCKETS buckets
KEEP_BUCKETS = 5  # buckets kept apart before the domain column narrows below 18


def text_width(to_terminal: bool, requested: int | None) -> int:
    """The width to fit: the one asked for, else the terminal's, else qshape's 80."""
    if requested is not None:
        if requested < MIN_WIDTH:
            raise UsageError(f"-w: {requested} columns is too narrow; give {MIN_WIDTH} or more")
        return requested
    if to_terminal:
        return max(MIN_WIDTH, shutil.get_terminal_size().columns)
    return QSHAPE_WIDTH


def render_queue(result: dict[str, Any], fmt: str, *, width: int = QSHAPE_WIDTH, top: int = -1) -> str:
    """``top`` limits the domain rows of each table (-1: all)."""
    if fmt == "json":
        return render_json(_limited(result, top))
    out = _table(result["shape"], width, top)
    out += _about_table(result, top, width)
    out += _queues(result, width)
    out += _reasons(result, top, width)
    return "\n".join(out) + "\n"


def _limited(result: dict[str, Any], top: int) -> dict[str, Any]:
    shape = {**result["shape"], "rows": limit(result["shape"]["rows"], top)}
    return {**result, "shape": shape, "reasons_by_domain": limit(result["reasons_by_domain"], top)}


# ---------------------------------------------------------------------------------------------
# qshape's table


def _table(shape: dict[str, Any], width: int, top: int) -> list[str]:
    labels = ["T", *(c["label"] for c in shape["columns"])]
    total = [shape["total"]["count"], *shape["total"]["buckets"]]
    layout = _fit(labels, total, width)
    rows = [(clean(r["domain"]), [r["count"], *r["buckets"]]) for r in limit(shape["rows"], top)]
    lines = [layout.heading(), layout.row("TOTAL", total)]
    return lines + [layout.row(name, counts) for name, counts in rows]


@dataclass(frozen=True, slots=True)
class _Layout:
    first: int  # the bucket from which on the buckets are one column
    labels: list[str]
    widths: list[int]
    domain: int  # the domain column's width

    def heading(self) -> str:
        return self._line("", self.labels)

    def row(self, name: str, counts: list[int]) -> str:
        return self._line(name, _sum_from(counts, self.first))

    def _line(self, name: str, cells: list[Any]) -> str:
        return _domain(name, self.domain) + "".join(
            str(c).rjust(w) for c, w in zip(cells, self.widths, strict=True)
        )


def _fit(labels: list[str], total: list[int], width: int) -> _Layout:
    """qshape's layout when its domain column fits (18 or more); else the oldest buckets merged
    until it does, keeping at least KEEP_BUCKETS; else a domain column narrowed down to 12 with
    as few buckets merged as that needs."""
    layouts = []
    for first in range(len(labels) - 1, 0, -1):
        heads = _merged(labels, first)
        widths = [_column_width(h, v) for h, v in zip(heads, _sum_from(total, first), strict=True)]
        layouts.append(_Layout(first, heads, widths, width - sum(widths)))
    keep = min(KEEP_BUCKETS, len(labels) - 1)
    for least, buckets in ((QSHAPE_DOMAIN, keep), (NARROW_DOMAIN, 1)):
        for layout in layouts:
            if layout.domain >= least and layout.first >= buckets:
                return layout
    last = layouts[-1]
    return _Layout(last.first, last.labels, last.widths, NARROW_DOMAIN)


def _merged(labels: list[str], first: int) -> list[str]:
    """The headings when the buckets from ``first`` on are one column: qshape's headings are
    upper limits, so that column is "at least the limit of the bucket before it"."""
    if first == len(labels) - 1:
        return labels
    return [*labels[:first], f"{labels[first - 1]}+" if first > 1 else "0+"]


def _sum_from(counts: list[int], first: int) -> list[int]:
    return [*counts[:first], sum(counts[first:])]


def _column_width(label: str, total: int) -> int:
    n = max(len(str(total)), len(label))
    return n + 1 if n > 2 else 3


def _domain(name: str, width: int) -> str:
    if len(name) <= width:
        return name.rjust(width)
    if name.startswith("."):
        return ".+" + name[len(name) - width + 2 :]
    return "+" + name[len(name) - width + 1 :]


def _about_table(result: dict[str, Any], top: int, width: int) -> list[str]:
    shape = result["shape"]
    counted = "messages per sender domain" if shape["by"] == "sender" else "recipients per domain"
    notes = [
        f"T: {counted} in {', '.join(shape['queues'])}; then by minutes in the queue at {result['now']}."
    ]
    hidden = len(shape["rows"]) - len(limit(shape["rows"], top))
    if hidden:
        notes.append(f"{hidden} more domain rows (--top).")
    left = shape["left_out"]
    if left["forced_expire"]:
        expiring = _messages(left["forced_expire"])
        notes.append(f"Not counted, as by qshape: {expiring} marked to expire (postsuper -e/-f).")
    if left["no_recipients"]:
        notes.append(f"Not counted, as by qshape: {_messages(left['no_recipients'])} without recipients.")
    return [line for note in notes for line in textwrap.wrap(note, width)]


# ---------------------------------------------------------------------------------------------
# beyond qshape


def _queues(result: dict[str, Any], width: int) -> list[str]:
    header = ["queue", "messages", "recipients", "bytes", "expiring", "oldest"]
    cells = [
        [q["queue"], q["messages"], q["recipients"], q["bytes"], q["forced_expire"], _oldest_age(q["oldest"])]
        for q in [*result["queues"], result["all"]]
    ]
    out = ["", *_columns(header, cells, width)]
    oldest = result["oldest"]
    if oldest is not None:
        n = oldest["recipients"]
        text = (
            f"Oldest: {clean(oldest['queue_id'])} in {oldest['queue']}, arrived {oldest['arrival']} "
            f"({_age(oldest['age_seconds'])} ago), from {clean(oldest['sender'])} "
            f"to {n} recipient{'s' * (n != 1)}."
        )
        out += textwrap.wrap(text, width)
    return out


def _reasons(result: dict[str, Any], top: int, width: int) -> list[str]:
    if not result["reasons"]:
        return ["", "No delay reasons in the queue."]
    rows = [[r["title"], r["recipients"], r["messages"]] for r in result["reasons"]]
    lines = _columns(["delay reason", "recipients", "messages"], rows, width)
    out = ["", lines[0]]
    for line, r in zip(lines[1:], result["reasons"], strict=True):
        out += [line, _cut(f"   e.g. {clean(r['example'])}", width)]
    by_domain = [
        [d["domain"], d["recipients"], ", ".join(f"{x['title']} {x['recipients']}" for x in d["reasons"])]
        for d in limit(result["reasons_by_domain"], top)
    ]
    out += ["", *_columns(["domain", "recipients", "reasons"], by_domain, width)]
    hidden = len(result["reasons_by_domain"]) - len(by_domain)
    return out + ([f"{hidden} more domains (--top)."] if hidden else [])


def _columns(header: list[str], rows: list[list[Any]], width: int) -> list[str]:
    """Left-aligned text, right-aligned numbers, two spaces apart; columns that do not fit the
    width are left out from the right, and a last column of text is cut instead when it can
    keep some of its text."""
    cells = [header, *([clean(c) if isinstance(c, str) else c for c in row] for row in rows)]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(header))]
    numeric = [bool(rows) and all(isinstance(row[i], int) for row in rows) for i in range(len(header))]
    shown = len(header)
    while shown > 1 and sum(widths[:shown]) + 2 * (shown - 1) > width:
        text_room = width - sum(widths[: shown - 1]) - 2 * (shown - 1)
        if not numeric[shown - 1] and text_room >= MIN_TEXT:
            break
        shown -= 1
    return [
        _cut(
            "  ".join(
                str(c).rjust(w) if num else str(c).ljust(w)
                for c, w, num in zip(r[:shown], widths, numeric, strict=False)
            ).rstrip(),
            width,
        )
        for r in cells
    ]


def _oldest_age(oldest: dict[str, Any] | None) -> str:
    return "-" if oldest is None else _age(oldest["age_seconds"])


def _age(seconds: int) -> str:
    if seconds < 0:
        return f"-{_age(-seconds)}"
    for unit, size, smaller, small_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} {seconds % size // small_size}{smaller}"
    return f"{seconds // 60}m" if seconds >= 60 else f"{seconds}s"


def _messages(n: int) -> str:
    return f"{n} message{'s' * (n != 1)}"


def _cut(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 3] + "..."
