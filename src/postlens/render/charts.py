"""Inline SVG charts of categories, drawn in Python: no script, no external asset, and the
same input always gives the same bytes (no generated ids, no timestamps, fixed number
formatting). The HTML report and the web dashboard both use them; charts over time are
drawn in the browser by ``postlens/web/static/charts.js`` instead.

Callers pass plain text; every label is cleaned of control characters and escaped here,
in <text>, <title> and attributes alike. Charts carry no ``xmlns``: they are meant to sit
inline in an HTML page, whose parser puts <svg> in its namespace. Sizes are viewBox
units and a chart scales to its container's width.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

from postlens.render import clean

# Colour-blind-safe (Tableau 10); charts.js has the same, and gives its first five to statuses.
PALETTE = ("#4e79a7", "#59a14f", "#f28e2b", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#9c755f")
INK = "#374151"
_CHAR_W = 6.2  # average advance of an 11px sans-serif glyph, to keep labels from overlapping
_LABEL_CHARS = 34

Format = Callable[[float], str]


def format_number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _esc(text: object) -> str:
    return html.escape(clean(text), quote=True)


def _n(x: float) -> str:
    s = f"{x:.1f}"
    return s.removesuffix(".0")


def _short(label: str) -> str:
    return label if len(label) <= _LABEL_CHARS else label[: _LABEL_CHARS - 1] + "\u2026"


def _open(width: float, height: float, title: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {_n(width)} {_n(height)}" role="img" aria-label="{_esc(title)}" '
        f'font-family="sans-serif" font-size="11" fill="{INK}"><title>{_esc(title)}</title>'
    )


def _rect(x: float, y: float, w: float, h: float, fill: str, tip: str) -> str:
    return (
        f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" fill="{fill}">'
        f"<title>{_esc(tip)}</title></rect>"
    )


def _text(x: float, y: float, text: str, anchor: str = "start", tip: str = "") -> str:
    inner = _esc(text) + (f"<title>{_esc(tip)}</title>" if tip else "")
    return f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}">{inner}</text>'


def _legend(names: Sequence[tuple[str, str]], x: float, y: float) -> list[str]:
    """Swatches and names in a row starting at (x, y): pairs of (text, colour)."""
    out = []
    for text, fill in names:
        out.append(f'<rect x="{_n(x)}" y="{_n(y - 9)}" width="10" height="10" fill="{fill}"/>')
        out.append(_text(x + 14, y, text))
        x += 14 + len(text) * _CHAR_W + 14
    return out


def hbar_chart(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    fill: str = PALETTE[0],
    fmt: Format = format_number,
    width: float = 720,
) -> str:
    """Horizontal bars, one row per (label, value); long labels are cut, in full on hover."""
    row, top = 20.0, 6.0
    label_w = _LABEL_CHARS * _CHAR_W + 8
    value_w = 72.0
    height = top * 2 + row * len(items)
    peak = max((v for _, v in items), default=0)
    scale = (width - label_w - value_w) / peak if peak > 0 else 0
    out = [_open(width, height, title)]
    for i, (label, v) in enumerate(items):
        y = top + i * row
        w = v * scale
        out.append(_text(label_w - 6, y + 14, _short(label), "end", label))
        out.append(_rect(label_w, y + 3, w, row - 6, fill, f"{label}: {fmt(v)}"))
        out.append(_text(label_w + w + 6, y + 14, fmt(v)))
    out.append("</svg>")
    return "".join(out)


def share_bar(
    parts: Sequence[tuple[str, float]],
    *,
    title: str,
    fmt: Format = format_number,
    width: float = 720,
) -> str:
    """One bar split into (label, value) parts by their share of the whole, legend below."""
    left, right, bar_h = 8.0, 8.0, 22.0
    total = sum(v for _, v in parts)
    pw = width - left - right
    out = [_open(width, 6 + bar_h + 12 + 18 * len(parts), title)]
    x = left
    for i, (label, v) in enumerate(parts):
        w = pw * v / total if total > 0 else 0
        if w > 0:
            out.append(_rect(x, 6, w, bar_h, PALETTE[i % len(PALETTE)], f"{label}: {fmt(v)}"))
        x += w
    for i, (label, v) in enumerate(parts):
        share = f" ({v / total:.0%})" if total > 0 else ""
        out += _legend(
            [(f"{label}: {fmt(v)}{share}", PALETTE[i % len(PALETTE)])], left, 6 + bar_h + 24 + 18 * i
        )
    out.append("</svg>")
    return "".join(out)


def heat_map(
    rows: Sequence[tuple[str, Sequence[float]]],
    columns: Sequence[str],
    *,
    title: str,
    fmt: Format = format_number,
    width: float = 720,
) -> str:
    """A grid of (row label, values) cells shaded from white to the palette's first colour
    by their share of the largest value; each cell names its value on hover."""
    left, top, cell_h = 40.0, 18.0, 20.0
    cell_w = (width - left - 4) / max(len(columns), 1)
    peak = max((v for _, values in rows for v in values), default=0)
    out = [_open(width, top + cell_h * len(rows) + 4, title)]
    for j, name in enumerate(columns):
        out.append(_text(left + (j + 0.5) * cell_w, 12, name, "middle"))
    for i, (label, values) in enumerate(rows):
        y = top + i * cell_h
        out.append(_text(left - 6, y + 14, label, "end"))
        for j, v in enumerate(values):
            share = v / peak if peak > 0 else 0
            fill = _mix("#ffffff", PALETTE[0], share)
            out.append(
                _rect(left + j * cell_w, y, cell_w - 1, cell_h - 1, fill, f"{label} {columns[j]}: {fmt(v)}")
            )
    out.append("</svg>")
    return "".join(out)


def _mix(a: str, b: str, share: float) -> str:
    """The colour ``share`` of the way from ``a`` to ``b`` (both #rrggbb)."""
    channels = (round(int(a[k : k + 2], 16) * (1 - share) + int(b[k : k + 2], 16) * share) for k in (1, 3, 5))
    return "#" + "".join(f"{c:02x}" for c in channels)
