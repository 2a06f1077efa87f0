"""The charts of the HTML report, drawn by the dashboard's chart code (uPlot and charts.js)
in a real Chromium: drawn, non-blank, no script errors, hostile names kept as text, live
updates in place, the window's width followed; and charts.js under the dashboard's policy."""

from __future__ import annotations

import functools
import http.server
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from postlens.render.html import script_json
from tests.conftest import DATA, screenshot

STATIC = Path(__file__).resolve().parents[2] / "src" / "postlens" / "web" / "static"
EVIL = "</script><script>window.pwned=1</script>"
EVIL_MARKUP = '<img src=x onerror="window.pwned=2"><b>bold</b>'
STATUS_RGB = ["78,121,167", "89,161,79", "242,142,43", "225,87,89", "176,122,161"]
DRAWN = (
    "name => Number((document.querySelector(`[data-chart='${name}']`) || {dataset: {}}).dataset.drawn) > 0"
)

# Pixels of a chart's canvas: how many are painted at all, and how many in a status's colour.
PIXELS = """([name, status]) => {
    const canvas = document.querySelector(`[data-chart='${name}'] canvas`);
    const px = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0, coloured = 0;
    for (let i = 0; i < px.length; i += 4) {
        if (px[i + 3] === 0) continue;
        painted += 1;
        if (px[i + 3] === 255 && status.includes(`${px[i]},${px[i + 1]},${px[i + 2]}`)) coloured += 1;
    }
    return {painted, coloured, total: px.length / 4};
}"""

# What a chart element holds: plots, canvases, the legend's names, its words when empty.
CONTENTS = """name => {
    const el = document.querySelector(`[data-chart='${name}']`);
    return {
        drawn: el.dataset.drawn,
        plots: el.querySelectorAll(".uplot").length,
        canvases: document.querySelectorAll("canvas").length,
        labels: [...el.querySelectorAll(".u-legend .u-label")].map(e => e.textContent),
        text: el.textContent,
        width: el.querySelector(".uplot") ? el.querySelector(".uplot").getBoundingClientRect().width : 0,
    };
}"""


def _pixels(page: Any, name: str, colours: list[str] = STATUS_RGB) -> dict[str, int]:
    counts: dict[str, int] = page.evaluate(PIXELS, [name, colours])
    return counts


def _postlens() -> str:
    return str(Path(sys.executable).with_name("postlens"))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML report of a small log, as the command line writes it."""
    out = tmp_path_factory.mktemp("report") / "report.html"
    subprocess.run(
        [_postlens(), "report", "--format", "html", "--tz", "UTC", "-o", str(out), str(DATA / "mixed.log")],
        check=True,
        timeout=120,
    )
    return out


def _open(page: Any, path: Path, chart: str = "per-hour") -> None:
    page.goto(path.as_uri())
    page.wait_for_function(DRAWN, arg=chart, timeout=10_000)


def test_report_draws_its_traffic_chart(page: Any, report: Path) -> None:
    _open(page, report)
    shown = page.evaluate(CONTENTS, "per-hour")
    assert shown["drawn"] == "24"  # the hours of the day
    assert shown["plots"] == 1 and shown["canvases"] == 1
    assert shown["labels"] == ["time", "received", "delivered", "deferred", "bounced", "rejected"]
    assert "needs JavaScript" not in shown["text"]  # the note for mail programs is gone
    pixels = _pixels(page, "per-hour")
    assert pixels["painted"] > 0
    assert pixels["coloured"] > 100  # the series' lines, not only the axes
    # Hovering shows each series' value at that hour.
    over = page.locator("[data-chart='per-hour'] .u-over")
    over.scroll_into_view_if_needed()
    box = over.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 10.5 / 24, box["y"] + box["height"] / 2)
    values = page.locator("[data-chart='per-hour'] .u-legend .u-value").all_text_contents()
    assert values[0] == "10:00\u201311:00" and all(re.fullmatch(r"\d+", v) for v in values[1:])
    assert page.errors == []
    screenshot(page, "report")


def _with_data(report: Path, tmp_path: Path, data: dict[str, Any]) -> Path:
    """The report with the per-hour chart's data replaced, escaped as the report escapes."""
    markup = report.read_text()
    markup, n = re.subn(
        r'(<script type="application/json" id="per-hour-data">).*?(</script>)',
        lambda m: m.group(1) + script_json(data) + m.group(2),
        markup,
        flags=re.DOTALL,
    )
    assert n == 1
    path = tmp_path / "hostile.html"
    path.write_text(markup)
    return path


def test_hostile_series_name_is_text(page: Any, report: Path, tmp_path: Path) -> None:
    series = [{"name": EVIL, "values": [3, 1]}, {"name": "delivered", "values": [1, 2]}]
    data = {"kind": "stacked", "x": [0, 3600], "series": series, "tz": "UTC", "xformat": "time"}
    _open(page, _with_data(report, tmp_path, data))
    shown = page.evaluate(CONTENTS, "per-hour")
    assert shown["drawn"] == "2"
    assert shown["labels"] == ["time", EVIL, "delivered"]  # whole, as text
    assert page.evaluate("typeof window.pwned") == "undefined"
    # Nothing broke out of the data: the page has its own scripts and no more.
    scripts = page.evaluate("[...document.scripts].map(s => s.type || 'code')")
    assert sorted(scripts) == sorted(["application/json", "code", "code"])
    # Names given live go in as text too.
    same = {**data, "series": [{"name": EVIL_MARKUP, "values": [1, 1]}], "title": EVIL_MARKUP}
    assert page.evaluate("d => window.PostlensCharts.update('per-hour', d)", same) is True
    shown = page.evaluate(CONTENTS, "per-hour")
    assert shown["labels"] == ["time", EVIL_MARKUP]
    assert EVIL_MARKUP in page.locator("[data-chart='per-hour'] .u-title").text_content()
    assert page.evaluate("document.querySelectorAll('img, b').length") == 0
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.errors == []


def test_updates_redraw_in_place(page: Any, report: Path) -> None:
    _open(page, report)
    hours = list(range(0, 48 * 3600, 3600))
    for i in range(40):
        kind = "stacked" if i % 2 else "lines"
        names = ["delivered", "deferred"] if i % 3 else ["received", f"other {i}"]
        data = {
            "kind": kind,
            "x": hours,
            "series": [
                {"name": n, "values": [(h * (j + 1) + i) % 7 for h in range(48)]} for j, n in enumerate(names)
            ],
            "tz": "Europe/Berlin",
        }
        assert page.evaluate("d => window.PostlensCharts.update('per-hour', d)", data) is True
        shown = page.evaluate(CONTENTS, "per-hour")
        assert shown["drawn"] == "48" and shown["plots"] == 1 and shown["canvases"] == 1
    assert _pixels(page, "per-hour")["coloured"] > 0
    # No data: no plot, and words saying so.
    page.evaluate("window.PostlensCharts.update('per-hour', {kind: 'lines', x: [], series: []})")
    shown = page.evaluate(CONTENTS, "per-hour")
    assert shown["drawn"] == "0" and shown["plots"] == 0 and shown["canvases"] == 0
    assert shown["text"] == "no data in this period"
    page.evaluate(
        "window.PostlensCharts.update('per-hour', {x: [0, 60], series: [{name: 'a', values: [null, null]}]})"
    )
    assert page.evaluate(CONTENTS, "per-hour")["drawn"] == "0"
    page.evaluate(
        "window.PostlensCharts.update('per-hour', {x: [0, 60], series: [{name: 'a', values: [1, null]}]})"
    )
    shown = page.evaluate(CONTENTS, "per-hour")
    assert shown["drawn"] == "2" and shown["plots"] == 1 and "no data" not in shown["text"]
    # draw() again keeps the live data; an unknown chart is refused.
    page.evaluate("window.PostlensCharts.draw()")
    assert page.evaluate(CONTENTS, "per-hour")["drawn"] == "2"
    assert page.evaluate("window.PostlensCharts.update('nosuch', {x: [1], series: []})") is False
    assert page.errors == []


def test_hover_shows_time_in_the_data_zone(page: Any, report: Path) -> None:
    _open(page, report)
    over = page.locator("[data-chart='per-hour'] .u-over")
    over.scroll_into_view_if_needed()
    shown = {}
    for tz in ("UTC", "Asia/Tokyo", "America/New_York"):
        data = {
            "kind": "lines",
            "x": [1714564800, 1714568400],
            "series": [{"name": "received", "values": [1, 2]}],
        }
        page.evaluate("d => window.PostlensCharts.update('per-hour', d)", {**data, "tz": tz})
        box = over.bounding_box()
        page.mouse.move(box["x"] + 5, box["y"] + box["height"] / 2)  # the first point, 2024-05-01 12:00 UTC
        shown[tz] = page.locator("[data-chart='per-hour'] .u-legend .u-value").first.text_content()
        page.mouse.move(0, 0)
    assert shown == {
        "UTC": "2024-05-01 12:00\u201313:00",
        "Asia/Tokyo": "2024-05-01 21:00\u201322:00",
        "America/New_York": "2024-05-01 08:00\u201309:00",
    }
    assert page.errors == []


def test_follows_the_window_width(page: Any, report: Path) -> None:
    _open(page, report)
    wide = page.evaluate(CONTENTS, "per-hour")["width"]
    page.set_viewport_size({"width": 640, "height": 900})
    page.wait_for_function(
        "w => document.querySelector(\"[data-chart='per-hour'] .uplot\").getBoundingClientRect().width < w",
        arg=wide - 200,
    )
    narrow = page.evaluate(CONTENTS, "per-hour")
    assert narrow["width"] <= 640 and narrow["canvases"] == 1
    assert page.evaluate("document.documentElement.scrollWidth") <= 640  # nothing sticks out
    assert page.errors == []


# -- the dashboard's way: files from the server, script-src 'self' ---------------------------

DASHBOARD = """<!DOCTYPE html>
<html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'">
<link rel="stylesheet" href="vendor/uPlot.min.css"></head>
<body>
<div class="chart" data-chart="traffic"></div>
<div class="chart" data-chart="nodata" data-height="120"></div>
<script type="application/json" id="traffic-data">%s</script>
<script src="vendor/uPlot.iife.min.js"></script>
<script src="charts.js"></script>
</body></html>
"""


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[str]:
    """A page laid out like the dashboard's, served over HTTP with the static files."""
    points = 1500
    x = [1714521600 + 300 * i for i in range(points)]
    names = ("delivered", "deferred", "bounced", "expired", "rejected")
    series = [
        {"name": n, "values": [(i * (j + 3)) % 17 + j for i in range(points)]} for j, n in enumerate(names)
    ]
    data = {
        "kind": "stacked",
        "x": x,
        "series": series,
        "tz": "Europe/Berlin",
        "step": 300,
        "title": "traffic",
    }
    (tmp_path / "index.html").write_text(DASHBOARD % script_json(data))
    (tmp_path / "charts.js").write_bytes((STATIC / "charts.js").read_bytes())
    (tmp_path / "vendor").mkdir()
    for name in ("uPlot.iife.min.js", "uPlot.min.css"):
        (tmp_path / "vendor" / name).write_bytes((STATIC / "vendor" / name).read_bytes())
    quiet = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(quiet, directory=str(tmp_path))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()
    server.server_close()


def test_dashboard_policy_and_many_points(page: Any, dashboard: str) -> None:
    page.goto(dashboard)
    page.wait_for_function(DRAWN, arg="traffic", timeout=10_000)
    shown = page.evaluate(CONTENTS, "traffic")
    assert shown["drawn"] == "1500" and shown["plots"] == 1
    assert shown["labels"] == ["time", "delivered", "deferred", "bounced", "expired", "rejected"]
    # expired is no status: it takes a colour no status has
    colours = page.evaluate(
        "[...document.querySelectorAll(\"[data-chart='traffic'] .u-marker\")].map(m => m.style.background)"
    )
    assert colours[1:] == [
        "rgb(89, 161, 79)", "rgb(242, 142, 43)", "rgb(225, 87, 89)", "rgb(118, 183, 178)", "rgb(176, 122, 161)",
    ]  # fmt: skip
    assert _pixels(page, "traffic")["coloured"] > 1000
    # A series clicked off in the legend leaves the stack.
    rejected = STATUS_RGB[4:]
    assert _pixels(page, "traffic", rejected)["coloured"] > 1000
    page.locator("[data-chart='traffic'] .u-legend .u-series", has_text="rejected").locator("th").click()
    page.wait_for_function("() => document.querySelector(\"[data-chart='traffic'] .u-series.u-off\")")
    assert _pixels(page, "traffic", rejected)["coloured"] == 0
    assert _pixels(page, "traffic")["coloured"] > 1000
    empty = page.evaluate(CONTENTS, "nodata")
    assert empty["drawn"] == "0" and empty["text"] == "no data in this period"
    assert page.errors == []  # a refused script or style would be a console error
    screenshot(page, "charts-1500-points")


def test_one_point_is_one_step_wide(page: Any, report: Path) -> None:
    """uPlot spans years when every point is at one x: a single day stays a day."""
    _open(page, report)
    day = {"kind": "stacked", "x": [1795910400], "series": [{"name": "delivered", "values": [60]}],
           "tz": "UTC", "step": 86400}  # fmt: skip
    assert page.evaluate("d => window.PostlensCharts.update('per-hour', d)", day) is True
    # the share of a row through the bar's middle that is the bar: most of the plot, as with
    # every bar chart here (before, the axis ran over years and the bar took a third of it)
    share = page.evaluate(
        """() => {
            const c = document.querySelector("[data-chart='per-hour'] canvas");
            const row = c.getContext("2d").getImageData(0, Math.floor(c.height * 0.6), c.width, 1).data;
            let bar = 0;
            for (let i = 0; i < row.length; i += 4)
                if (Math.abs(row[i] - 0x59) < 8 && Math.abs(row[i + 1] - 0xa1) < 8 && Math.abs(row[i + 2] - 0x4f) < 8) bar++;
            return bar / c.width;
        }"""
    )
    assert share > 0.6, share
    assert page.errors == []
