"""One self-contained HTML page: inline CSS and SVG, nothing fetched, nothing run.

The sections are the Markdown report's (:func:`report_sections`), drawn with charts.
Log text is written by strangers, so every value goes through :func:`clean` and
:func:`html.escape` (quotes included) on its way in; the Content-Security-Policy is
there so that a mistake in that would still load and run nothing.
"""

from __future__ import annotations

import html
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

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

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
    if f.kind == "share":
        return charts.share_bar(list(zip(f.labels, f.series[0][1], strict=True)), title=f.title, fmt=fmt)
    series = [charts.Series(name, values, charts.color(name, i)) for i, (name, values) in enumerate(f.series)]
    return charts.bar_chart(f.labels, series, title=f.title, stacked=f.kind == "stacked", fmt=fmt)


def _block(b: Block) -> str:
    if isinstance(b, Heading):
        return f"<h3>{esc(b.text)}</h3>"
    if isinstance(b, Para):
        return f"<p>{esc(b.text)}</p>"
    if isinstance(b, Table):
        return _table(b)
    return f"<figure><figcaption>{esc(b.title)}</figcaption>{_svg(b)}</figure>"


def _section(s: Section) -> str:
    body = "\n".join(_block(b) for b in s.blocks)
    return f'<section id="{esc(s.key)}">\n<h2>{esc(s.title)}</h2>\n{body}\n</section>'


def _toc(sections: list[Section]) -> str:
    items = "".join(f'<li><a href="#{esc(s.key)}">{esc(s.title)}</a></li>' for s in sections)
    return f'<nav aria-label="Contents"><h2>Contents</h2><ol>{items}</ol></nav>'


def render_html(r: dict[str, Any], o: RenderOptions) -> str:
    sections = report_sections(r, o)
    head = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(o.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
    )
    top = f'<header>\n<h1>{esc(o.title)}</h1>\n<p class="period">{esc(period_text(r))}</p>\n</header>\n'
    main = "\n".join(_section(s) for s in sections)
    return f"{head}{top}{_toc(sections)}\n<main>\n{main}\n</main>\n</body>\n</html>\n"
