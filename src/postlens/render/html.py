"""One self-contained HTML page: inline CSS, scripts and SVG, nothing fetched.

The sections are the Markdown report's (:func:`report_sections`). Charts over time are
drawn in the browser by the web dashboard's own chart code (uPlot and ``charts.js`` from
``postlens/web/static``, inlined), from JSON data in the page; the category charts are SVG
from :mod:`postlens.render.charts`. Log text is written by strangers, so every value goes
through :func:`clean` and :func:`html.escape` (quotes included) on its way into markup,
and through :func:`script_json` into the charts' data. The Content-Security-Policy runs
only the inlined scripts (by their hashes) and loads nothing, so that a mistake in that
would still run nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from importlib.resources import files
from itertools import count
from typing import Any

from postlens.render import RenderOptions, charts, clean
from postlens.render.markdown import (
    NUMERIC,
    Block,
    Figure,
    Heading,
    Kind,
    Para,
    Section,
    Table,
    cell_text,
    period_text,
    report_sections,
    seconds,
)


@dataclass(frozen=True, slots=True)
class Assets:
    """The dashboard's chart code, as the page inlines it."""

    css: str  # uPlot's
    scripts: tuple[str, ...]  # uPlot, then charts.js
    notice: str  # uPlot's version and licence, as an HTML comment
    csp: str  # loads nothing, runs these scripts alone (by their SHA-256)


@cache
def assets() -> Assets:
    """The files the web dashboard serves (``postlens/web/static``), read from the installed
    package, so that the report draws with the very same code."""
    static = files("postlens").joinpath("web", "static")
    vendor = static.joinpath("vendor")
    css = vendor.joinpath("uPlot.min.css").read_text("utf-8")
    scripts = (
        vendor.joinpath("uPlot.iife.min.js").read_text("utf-8"),
        static.joinpath("charts.js").read_text("utf-8"),
    )
    version = vendor.joinpath("VERSION").read_text("utf-8").strip()
    licence = vendor.joinpath("LICENSE").read_text("utf-8").strip()
    # Inline, none of them may end its element early or open a comment that hides the rest.
    for text, end in ((css, "</style"), *((js, "</script") for js in scripts)):
        if end in text.lower() or "<!--" in text:
            raise ValueError(f"{end[2:]} text that cannot be inlined")
    if "--" in version + licence:
        raise ValueError("a licence text that cannot be an HTML comment")
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(js.encode()).digest()).decode()}'" for js in scripts
    )
    csp = f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src {hashes}"
    return Assets(css, scripts, f"<!-- {version}, the chart library below:\n{licence}\n-->", csp)


CSP = assets().csp

_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2937;
  background: #fff; margin: 0 auto; max-width: 1100px; padding: 1.5rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .6rem; padding-bottom: .2rem; border-bottom: 2px solid #e5e7eb; }
h3 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
p { margin: .4rem 0; }
.period { color: #4b5563; margin-bottom: 1rem; }
nav ol { columns: 3 16rem; margin: 0; padding-left: 1.4rem; }
nav a, nav a:visited { color: #1d4ed8; text-decoration: none; }
.scroll { overflow-x: auto; margin: .5rem 0 1rem; }
table { border-collapse: collapse; font-size: 13px; }
caption { text-align: left; font-weight: 600; padding: .2rem 0; }
th, td { border-bottom: 1px solid #e5e7eb; padding: .2rem .6rem; vertical-align: top; text-align: left; }
th { background: #f3f4f6; font-weight: 600; }
td { overflow-wrap: anywhere; }
.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #f9fafb; }
figure { margin: .5rem 0 1rem; }
figcaption { font-weight: 600; font-size: 13px; }
svg.chart { width: 100%; height: auto; display: block; max-width: 720px; }
div.chart { width: 100%; }
.uplot th, .uplot td, .uplot tbody tr:nth-child(n) { background: none; border: 0; }
.chart-empty { color: #6b7280; font-style: italic; }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; }
  nav { display: none; }
  .scroll { overflow: visible; }
  h2 { break-after: avoid; }
  tr, figure { break-inside: avoid; }
}
"""


def esc(value: object) -> str:
    return html.escape(clean(value), quote=True)


def _cell(tag: str, text: str, kind: Kind) -> str:
    align = ' class="num"' if kind in NUMERIC else ""
    return f"<{tag}{align}>{esc(text)}</{tag}>"


def _table(t: Table) -> str:
    head = "".join(_cell("th", c.header, c.kind) for c in t.columns)
    body = "".join(
        "<tr>"
        + "".join(_cell("td", cell_text(v, c.kind), c.kind) for v, c in zip(row, t.columns, strict=True))
        + "</tr>"
        for row in t.rows
    )
    caption = f"<caption>{esc(t.caption)}</caption>" if t.caption else ""
    table = f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    # Long tables scroll sideways inside their box rather than widening the page.
    return f'<div class="scroll">{table}</div>'


def _svg(f: Figure) -> str:
    fmt = seconds if f.unit == "secs" else charts.format_number
    if f.kind == "hbars":
        return charts.hbar_chart(list(zip(f.labels, f.series[0][1], strict=True)), title=f.title, fmt=fmt)
    if f.kind == "heat":
        return charts.heat_map(f.series, f.labels, title=f.title, fmt=fmt)
    return charts.share_bar(list(zip(f.labels, f.series[0][1], strict=True)), title=f.title, fmt=fmt)


_JSON_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def script_json(data: Any) -> str:
    """``data`` as JSON to put inside a <script> element: no ``<``, ``>`` or ``&`` in it
    (they are written as \\u escapes, which JSON.parse reads back), so no text in it can
    close the element or open a comment."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.translate(_JSON_ESCAPES)


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_HOUR = re.compile(r"\d{2}")


def _time_axis(f: Figure) -> dict[str, Any]:
    """The x and series of a figure over time, for charts.js. Days (``2024-05-01``) become
    their midnight, every day from the first to the last (a day left out had no traffic:
    its counts are 0); hours of the day (``13``) become their time on no day in particular.
    The labels are in the report's zone already, so the chart shows them in UTC."""
    series = [(clean(name), dict(zip(f.labels, values, strict=True))) for name, values in f.series]
    if all(_DAY.fullmatch(x) for x in f.labels):
        first, last = (date.fromisoformat(f.labels[i]).toordinal() for i in (0, -1))
        labels = [date.fromordinal(d).isoformat() for d in range(first, last + 1)]
        x = [
            int(datetime.combine(date.fromisoformat(d), datetime.min.time(), UTC).timestamp()) for d in labels
        ]
        axis: dict[str, Any] = {"x": x, "step": 86400}
    elif all(_HOUR.fullmatch(x) for x in f.labels):
        labels = list(f.labels)
        axis = {"x": [int(x) * 3600 for x in labels], "step": 3600, "xformat": "time"}
    else:
        raise ValueError(f"not a time axis: {f.labels[:3]!r}")
    axis["series"] = [
        {"name": name, "values": [_number(values.get(x, 0.0)) for x in labels]} for name, values in series
    ]
    return axis


def _number(v: float) -> float | int:
    return int(v) if float(v).is_integer() else v


def _time_chart(name: str, f: Figure) -> str:
    """A chart drawn by charts.js: its element, and its data in a JSON script beside it.
    Stacked figures stay stacked; the others, unstacked, become lines (there is no side
    by side in charts.js)."""
    data = {"kind": "stacked" if f.kind == "stacked" else "lines", **_time_axis(f), "tz": "UTC"}
    # Shown until charts.js draws, and for good where scripts do not run (mail programs).
    note = '<p class="chart-empty">This chart needs JavaScript; the table below has its numbers.</p>'
    return (
        f'<div class="chart" data-chart="{esc(name)}">{note}</div>'
        f'<script type="application/json" id="{esc(name)}-data">{script_json(data)}</script>'
    )


def _block(b: Block, names: Iterator[str], scripts: bool) -> str:
    if isinstance(b, Heading):
        return f"<h3>{esc(b.text)}</h3>"
    if isinstance(b, Para):
        return f"<p>{esc(b.text)}</p>"
    if isinstance(b, Table):
        return _table(b)
    if b.kind in ("bars", "stacked"):
        if not scripts:
            return ""
        body = _time_chart(next(names), b)
    else:
        body = _svg(b)
    return f"<figure><figcaption>{esc(b.title)}</figcaption>{body}</figure>"


def _section(s: Section, scripts: bool) -> str:
    # Charts over time are named after their section (a key never from the log): per-day, per-day-2 ...
    names = (s.key if i == 1 else f"{s.key}-{i}" for i in count(1))
    body = "\n".join(filter(None, (_block(b, names, scripts) for b in s.blocks)))
    return f'<section id="{esc(s.key)}">\n<h2>{esc(s.title)}</h2>\n{body}\n</section>'


def _toc(sections: list[Section]) -> str:
    items = "".join(f'<li><a href="#{esc(s.key)}">{esc(s.title)}</a></li>' for s in sections)
    return f'<nav aria-label="Contents"><h2>Contents</h2><ol>{items}</ol></nav>'


def render_html(r: dict[str, Any], o: RenderOptions) -> str:
    sections = report_sections(r, o)
    a = assets()
    chart_css = f"<style>{a.css}</style>" if o.scripts else ""
    head = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{a.csp}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(o.title)}</title>\n<style>{_CSS}</style>\n{chart_css}\n</head>\n<body>\n"
    )
    top = f'<header>\n<h1>{esc(o.title)}</h1>\n<p class="period">{esc(period_text(r))}</p>\n</header>\n'
    main = "\n".join(_section(s, o.scripts) for s in sections)
    tail = "\n".join([a.notice, *(f"<script>{js}</script>" for js in a.scripts)]) if o.scripts else ""
    return f"{head}{top}{_toc(sections)}\n<main>\n{main}\n</main>\n{tail}\n</body>\n</html>\n"
