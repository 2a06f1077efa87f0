"""Inline SVG charts drawn in Python: no script, no external asset, and the same input
always gives the same bytes (no generated ids, no timestamps, fixed number formatting).

Callers pass plain text; every label is cleaned of control characters and escaped here,
in <text>, <title> and attributes alike. Charts carry no ``xmlns``: they are meant to sit
inline in an HTML page, whose parser puts <svg> in its namespace. Sizes are viewBox
units and a chart scales to its container's width.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from postlens.render import clean

# Colour-blind-safe (Tableau 10); traffic keeps one colour per status on every chart.
PALETTE = ("#4e79a7", "#59a14f", "#f28e2b", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#9c755f")
STATUS_COLORS = {
    "received": "#4e79a7",
    "delivered": "#59a14f",
    "deferred": "#f28e2b",
    "bounced": "#e15759",
    "rejected": "#b07aa1",
}
INK = "#374151"
GRID = "#e5e7eb"
_CHAR_W = 6.2  # average advance of an 11px sans-serif glyph, to keep labels from overlapping
_LABEL_CHARS = 34

Format = Callable[[float], str]


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: tuple[float, ...]
    color: str


def color(name: str, index: int) -> str:
    """A status's own colour, else the palette's ``index``-th."""
    return STATUS_COLORS.get(name, PALETTE[index % len(PALETTE)])


def format_number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def nice_ticks(vmax: float, count: int = 4) -> list[float]:
    """Axis ticks from 0 in steps of 1, 2 or 5 times a power of ten, reaching at least ``vmax``."""
    if vmax <= 0:
        return [0.0, 1.0]
    raw = vmax / count
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    return [step * i for i in range(math.ceil(vmax / step - 1e-9) + 1)]


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


def bar_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    stacked: bool = False,
    fmt: Format = format_number,
    width: float = 720,
    height: float = 240,
) -> str:
    """Vertical bars, one slot per label, the series side by side or stacked."""
    left, right, top, bottom = 56.0, 8.0, 28.0, 22.0
    pw, ph = width - left - right, height - top - bottom
    n = len(labels)
    columns = [[s.values[i] for s in series] for i in range(n)]
    peak = max((sum(c) if stacked else max(c, default=0) for c in columns), default=0)
    ticks = nice_ticks(peak)
    scale = ph / ticks[-1]
    base = top + ph
    out = [_open(width, height, title), *_legend([(s.name, s.color) for s in series], left, 14)]
    for t in ticks:
        y = base - t * scale
        out.append(
            f'<line x1="{_n(left)}" x2="{_n(width - right)}" y1="{_n(y)}" y2="{_n(y)}" stroke="{GRID}"/>'
        )
        out.append(_text(left - 6, y + 4, fmt(t), "end"))
    slot = pw / max(n, 1)
    bar_w = slot * 0.8 if stacked else slot * 0.8 / max(len(series), 1)
    for i, (label, column) in enumerate(zip(labels, columns, strict=True)):
        x0, y_top = left + i * slot + slot * 0.1, base
        for j, (s, v) in enumerate(zip(series, column, strict=True)):
            if v <= 0:
                continue
            h = v * scale
            tip = f"{label}: {s.name} {fmt(v)}"
            if stacked:
                y_top -= h
                out.append(_rect(x0, y_top, bar_w, h, s.color, tip))
            else:
                out.append(_rect(x0 + j * bar_w, base - h, bar_w, h, s.color, tip))
    # Label every k-th slot so that neighbouring labels never overlap.
    widest = max((len(x) for x in labels), default=0) * _CHAR_W + 8
    every = max(1, math.ceil(widest / slot))
    out += [
        _text(left + (i + 0.5) * slot, height - 6, x, "middle")
        for i, x in enumerate(labels)
        if i % every == 0
    ]
    out.append("</svg>")
    return "".join(out)


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
