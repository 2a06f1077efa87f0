"""render: format a report result; renderers compute nothing.

Each renderer takes the result dict of :meth:`postlens.analyses.report.Report.result`
(plus the ``pflogsumm`` object) and :class:`RenderOptions`, and returns text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

FORMATS = ("text", "json", "markdown", "html")

# C0 and C1 controls, and the bidirectional overrides that make text display other than it reads
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean(value: object) -> str:
    """Log text made safe for a terminal: control characters shown as \\xNN, never passed on."""
    return _CONTROL_RE.sub(
        lambda m: f"\\u{ord(m.group()):04x}" if ord(m.group()) > 0xFF else f"\\x{ord(m.group()):02x}",
        str(value),
    )


@dataclass(slots=True)
class RenderOptions:
    """pflogsumm's printing options: how many rows, which order, which sections."""

    top_hosts: int = -1  # -h: rows in host/domain summaries (-1 = all)
    top_users: int = -1  # -u: rows in sender/recipient lists
    detail: int = -1  # --detail: rows in problem sections
    # pflogsumm's --deferral-detail, --bounce-detail, --reject-detail, --smtp-detail and
    # --smtpd-warning-detail, by SECTION_GROUPS name: rows, 0 to leave the sections out
    section_detail: dict[str, int] = field(default_factory=dict)
    quiet: bool = False  # -q: leave out sections with nothing in them (text)
    problems_first: bool = False
    smtpd_stats: bool = False
    zero_fill: bool = False
    no_no_size: bool = False
    by_host: bool = False  # the grand totals of each mail server too
    title: str = "postlens report"
    # HTML: False for mail programs, which run no script: the charts over time (drawn by
    # script) are left out with their code; their tables and the SVG charts stay
    scripts: bool = True


# which of pflogsumm's per-section limits applies to each problem section of the result
SECTION_GROUPS = {
    "deferrals": "deferral", "bounces": "bounce", "rejects": "reject", "reject_warnings": "reject",
    "holds": "reject", "discards": "reject", "other_actions": "reject", "smtp_failures": "smtp",
    "warnings": "smtpd_warning",
}  # fmt: skip


def limit(rows: list[Any], n: int) -> list[Any]:
    return rows if n < 0 else rows[:n]


def own_rows(o: RenderOptions) -> int:
    """Rows in the lists of postlens's own sections: --detail's, but its 0 (which leaves the
    problem sections out) keeps them all."""
    return o.detail if o.detail != 0 else -1


def section_rows(o: RenderOptions, key: str) -> int:
    """Rows in the problem section ``key``: its group's own limit, else --detail (-1: all);
    0 leaves the section out, as in pflogsumm. Fatal errors, panics and master messages are
    always shown whole."""
    group = SECTION_GROUPS.get(key)
    if group is None:
        return -1
    n = o.section_detail.get(group, -1)
    return n if n >= 0 else o.detail


def unnamed_filters_note(result: dict[str, Any]) -> str:
    """A hint at relays that look like content filters, or "" when there is none."""
    found = result.get("unnamed_filters") or []
    if not found:
        return ""
    relays = ", ".join(f"{clean(f['relay'])} ({f['hops']:,})" for f in found[:5])
    return (
        f'Relays that answered "queued as" on a port mail servers do not use: {relays}. If they are '
        "content filters, name their addresses with --content-filter: their mail is now counted as "
        "delivered into them and received again."
    )


def render(result: dict[str, Any], fmt: str, options: RenderOptions | None = None) -> str:
    options = options or RenderOptions()
    if fmt == "json":
        from postlens.render.json import render_json

        return render_json(result)
    if fmt == "markdown":
        from postlens.render.markdown import render_markdown

        return render_markdown(result, options)
    if fmt == "html":
        from postlens.render.html import render_html

        return render_html(result, options)
    from postlens.render.text import render_text

    return render_text(result, options)


def per_day_rows(result: dict[str, Any], zero_fill: bool) -> list[dict[str, Any]]:
    """The per-day rows; with ``zero_fill`` every calendar day from the first to the last."""
    rows = result["per_day"]
    if not zero_fill or not rows:
        return rows
    from datetime import date, timedelta

    have = {row["date"]: row for row in rows}
    day, last = date.fromisoformat(rows[0]["date"]), date.fromisoformat(rows[-1]["date"])
    filled = []
    while day <= last:
        key = day.isoformat()
        filled.append(have.get(key) or {"date": key, **{k: 0 for k in rows[0] if k != "date"}})
        day += timedelta(days=1)
    return filled
