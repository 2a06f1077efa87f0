"""The HTML page: sections, numbers, limits, escaping of hostile log text, no outside resources,
and the chart code it inlines (tests/web draws it in a real browser)."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from postlens.render import RenderOptions, charts, render
from postlens.render.html import CSP, assets, render_html, script_json
from postlens.render.markdown import TRAFFIC

STATIC = Path(__file__).resolve().parents[2] / "src" / "postlens" / "web" / "static"

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
EVIL = f"{SCRIPT}{IMG}\x1b[31m"

# Everything the page may contain: no embedded or linked resource; scripts only inline (checked apart).
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "nav", "main", "section", "h1", "h2",
    "h3", "p", "ol", "li", "a", "div", "table", "caption", "thead", "tbody", "tr", "th", "td",
    "figure", "figcaption", "svg", "rect", "text", "script",
}  # fmt: skip

SVG_ATTRIBUTES = {
    "class", "viewbox", "role", "aria-label", "font-family", "font-size", "fill", "x", "y", "width", "height",
    "text-anchor",
}  # fmt: skip


class Page(HTMLParser):
    """A rendered page taken apart: every tag, the text, each section's tables, and the
    scripts (their attributes and text, which is not counted as the page's)."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.titles: list[str] = []
        self.sections: dict[str, list[dict[str, Any]]] = {}
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._section = ""
        self._open: list[str] | None = None
        self._raw: list[str] | None = None  # the text of a script or style element
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._raw = []
        elif tag == "section":
            self._section = dict(attrs)["id"] or ""
            self.sections[self._section] = []
        elif tag == "table":
            self.sections[self._section].append({"caption": "", "rows": []})
        elif tag == "tr":
            self.sections[self._section][-1]["rows"].append([])
        elif tag in ("td", "th", "h2", "caption"):
            self._open = []

    def handle_endtag(self, tag: str) -> None:
        if self._raw is not None:
            if tag == "script":
                self.scripts.append((self.tags[-1][1], "".join(self._raw)))
            self._raw = None
            return
        if self._open is None:
            return
        text = "".join(self._open)
        if tag in ("td", "th"):
            self.sections[self._section][-1]["rows"][-1].append(text)
        elif tag == "caption":
            self.sections[self._section][-1]["caption"] = text
        elif tag == "h2":
            self.titles.append(text)
        self._open = None

    def handle_data(self, data: str) -> None:
        if self._raw is not None:
            self._raw.append(data)
            return
        self.text.append(data)
        if self._open is not None:
            self._open.append(data)

    def table(self, section: str, caption: str = "") -> list[list[str]]:
        """The data rows (header row left out) of a section's table."""
        found = [t["rows"][1:] for t in self.sections[section] if t["caption"] == caption]
        assert len(found) == 1, f"{section}/{caption}: {len(found)} tables"
        return found[0]

    def chart(self, name: str) -> dict[str, Any]:
        """The data of chart ``name``: its element is there, and its JSON beside it."""
        assert ("div", {"class": "chart", "data-chart": name}) in self.tags
        found = [text for attrs, text in self.scripts if attrs.get("id") == f"{name}-data"]
        assert len(found) == 1, f"{name}: {len(found)} data scripts"
        data: dict[str, Any] = json.loads(found[0])
        return data


@pytest.fixture(scope="module")
def hostile(empty: dict[str, Any]) -> dict[str, Any]:
    """A hand-built result with hostile text in every field a stranger can write."""
    r = copy.deepcopy(empty)
    r["period"] = {"first": "2024-05-01T00:00:00Z", "last": "2024-05-02T23:00:00Z", "days": 2}
    r["totals"].update(received=1234567, delivered=7654321, rejected=3, bytes_received=98765432100)
    r["per_day"] = [
        dict(zip(("date", *TRAFFIC), day, strict=True))
        for day in (("2024-05-01", 600000, 7654000, 1, 2, 1), ("2024-05-02", 634567, 321, 0, 0, 2))
    ]
    delay = {"avg_delay": 1.5, "max_delay": 3.0, "p50": 1.0, "p90": 2.0, "p99": 3.0}
    r["delivery_domains"] = [
        {"domain": f"d{i}.{EVIL}", "delivered": 10 - i, "bytes": 1000, "deferred": 1, "bounced": 0, **delay}
        for i in range(5)
    ]
    r["receiving_domains"] = [{"domain": f"r{i}.{EVIL}", "received": 9 - i, "bytes": 500} for i in range(5)]
    users = [{"address": f"u{i}@{EVIL}", "count": 9 - i, "bytes": 100 * i} for i in range(5)]
    r["senders"] = r["recipients"] = {"by_count": users, "by_size": users[::-1]}
    r["no_size"] = [f"4F2Q1XyZ\t{EVIL}"]
    r["messages"]["no_size"] = 3
    r["deferrals"] = [{"daemon": "smtp", "reason": EVIL, "count": 2}]
    r["bounces"] = [{"relay": EVIL, "reason": EVIL, "count": 1}]
    detail = [{"daemon": "smtpd", "stage": "RCPT", "reason": f"Helo command rejected: {EVIL}", "who": EVIL,
               "count": 3}]  # fmt: skip
    r["rejects"] = {"by_kind": {"RCPT": 3}, "by_client": {EVIL: 3}, "by_code": {"554": 3}, "detail": detail}
    r["reject_warnings"] = r["holds"] = r["discards"] = detail
    r["other_actions"] = {EVIL: 1}
    r["smtp_failures"] = [{"reason": EVIL, "peer": EVIL, "count": 1}]
    for level in ("warnings", "errors", "fatal", "panics"):
        r[level] = [{"daemon": EVIL, "text": EVIL, "count": 1}]
    r["master"] = [{"text": EVIL, "count": 1}]
    r["notifications"] = {"total": 1, "by_kind": {EVIL: 1}}
    r["verify"] = {EVIL: 1}
    r["delays"].update(deliveries=5, avg=1.5, max=3.0, p50=1.0, p90=2.0, p99=3.0)
    r["delays"]["split"]["transmission"] = {"total": 7.5, "avg": 1.5}
    tls_by = ("by_protocol", "by_trust", "by_cipher")
    r["tls"] = {
        side: {"connections": 1, **{k: {EVIL: 1} for k in tls_by}} for side in ("inbound", "outbound")
    }
    r["postscreen"] = {"by_action": {EVIL: 1}, "dnsbl_listings": {EVIL: 1}}
    auth_by = ("by_ip", "by_username", "by_method", "by_service")
    r["auth"] = {side: {"total": 1, **{k: {EVIL: 1} for k in auth_by}} for side in ("failures", "successes")}
    r["smtpd"]["by_domain"] = [{"domain": EVIL, "connections": 1, "seconds": 3, "avg": 3.0, "max": 3}]
    r["coverage"].update(unrecognised=4, malformed=1, unrecognised_examples=[EVIL], malformed_examples=[EVIL])
    r["inputs"] = [{"source": EVIL, "error": EVIL}]
    return r


def _page(result: dict[str, Any], **options: Any) -> tuple[str, Page]:
    markup = render(result, "html", RenderOptions(**options))
    return markup, Page(markup)


# -- sections ----------------------------------------------------------------------------


PFLOGSUMM_ORDER = [
    "Grand Totals",
    "Per-Hour Traffic Summary",
    "Host/Domain Summary: Message Delivery",
    "Host/Domain Summary: Messages Received",
    "Senders by message count",
    "Recipients by message count",
    "Senders by message size",
    "Recipients by message size",
    "Messages with no size data",
    "Message Deferral Detail",
    "Message Bounce Detail (by relay)",
    "Message Reject Detail",
    "Message Reject Warning Detail",
    "Message Hold Detail",
    "Message Discard Detail",
    "Other Actions (not counted in the totals)",
    "SMTP Delivery Failures",
    "Warnings",
    "Errors",
    "Fatal Errors",
    "Panics",
    "Master Daemon Messages",
]
OWN = [
    "Weekly Pattern",
    "Delivery Delays",
    "Notifications",
    "TLS",
    "Postscreen",
    "Content Checks",
    "SASL Authentication",
    "Coverage",
    "Inputs",
]


def test_sections_in_pflogsumm_order_then_postlens_own(busy: dict[str, Any]) -> None:
    _, page = _page(busy)
    assert page.titles == ["Contents", *PFLOGSUMM_ORDER, *OWN]


def test_table_of_contents_links_every_section(busy: dict[str, Any]) -> None:
    _, page = _page(busy)
    links = [a["href"] for tag, a in page.tags if tag == "a"]
    assert links == [f"#{key}" for key in page.sections]


def test_problems_first_puts_problems_after_grand_totals(busy: dict[str, Any]) -> None:
    _, page = _page(busy, problems_first=True)
    titles = page.titles[1:]
    assert titles[:3] == ["Grand Totals", "Message Deferral Detail", "Message Bounce Detail (by relay)"]
    assert titles.index("Master Daemon Messages") < titles.index("Per-Hour Traffic Summary")


def test_per_day_only_for_more_than_one_day(busy: dict[str, Any], multi_day: dict[str, Any]) -> None:
    assert "Per-Day Traffic Summary" not in _page(busy)[1].titles
    _, page = _page(multi_day)
    assert "Per-Day Traffic Summary" in page.titles
    assert "Per-Hour Traffic Daily Average" in page.titles
    expected = [[d["date"], *(f"{d[f]:,}" for f in TRAFFIC)] for d in multi_day["per_day"]]
    assert page.table("per-day") == expected


def test_optional_sections(busy: dict[str, Any]) -> None:
    assert "SMTPD Connections" not in _page(busy)[1].titles
    _, page = _page(busy, smtpd_stats=True, no_no_size=True)
    assert "SMTPD Connections" in page.titles
    assert "Messages with no size data" not in page.titles
    by_domain = page.table("smtpd", "by host/domain")
    assert len(by_domain) == len(busy["smtpd"]["by_domain"])


def test_empty_sections_say_none(empty: dict[str, Any]) -> None:
    markup, page = _page(empty)
    assert "no mail in the log" in markup
    assert "<h2>Message Bounce Detail (by relay)</h2>\n<p>none</p>" in markup
    assert "<figure>" not in markup  # nothing to plot
    assert page.sections["inputs"] == []


# -- numbers -------------------------------------------------------------------------------


def test_grand_totals_are_the_results(busy: dict[str, Any]) -> None:
    _, page = _page(busy)
    shown = {row[0]: row[1:] for row in page.table("grand-totals")}
    t, p = busy["totals"], busy["pflogsumm"]
    for key in ("received", "delivered", "deferred", "bounced", "rejected", "bytes_received", "senders"):
        assert shown[key.replace("_", " ")] == [f"{t[key]:,}", f"{p[key]:,}"]
    assert shown["expired"] == [f"{t['expired']:,}", "-"]  # pflogsumm has no such count
    assert shown["rejected %"] == ["-", f"{p['rejected_percent']:,}"]


def test_domain_rows_are_the_results(busy: dict[str, Any]) -> None:
    _, page = _page(busy)
    rows = page.table("delivery-domains")
    assert len(rows) == len(busy["delivery_domains"])
    first = busy["delivery_domains"][0]
    counts = ("delivered", "bytes", "deferred", "bounced")
    assert rows[0][:5] == [first["domain"], *(f"{first[k]:,}" for k in counts)]


def test_limits(busy: dict[str, Any]) -> None:
    markup, page = _page(busy, top_hosts=3, top_users=2, detail=4)
    assert len(page.table("delivery-domains")) == 3
    assert len(page.table("receiving-domains")) == 3
    for key in ("senders-count", "recipients-count", "senders-size", "recipients-size"):
        assert len(page.table(key)) == 2
    assert len(page.table("rejects", "detail")) == 4
    assert len(page.table("warnings")) == 4
    assert f"showing 3 of {len(busy['receiving_domains']):,} rows" in markup
    first = busy["senders"]["by_size"][0]
    assert page.table("senders-size")[0] == [first["address"], f"{first['count']:,}", f"{first['bytes']:,}"]


def test_hand_built_numbers(hostile: dict[str, Any]) -> None:
    markup, page = _page(hostile, top_hosts=2)
    shown = {row[0]: row[1] for row in page.table("grand-totals")}
    assert shown["received"] == "1,234,567"
    assert shown["bytes received"] == "98,765,432,100"
    assert [row[1] for row in page.table("delivery-domains")] == ["10", "9"]
    assert "showing 2 of 5 rows" in markup
    assert "... and 2 more deliveries" in markup


# -- safety ---------------------------------------------------------------------------------


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_hostile_text_is_escaped(hostile: dict[str, Any]) -> None:
    markup, page = _page(hostile, title=f"report {EVIL}", smtpd_stats=True)
    # The only scripts are the chart code, whole, and the charts' data, with nothing of the log in it.
    code = [text for attrs, text in page.scripts if not attrs]
    data = [(attrs, text) for attrs, text in page.scripts if attrs]
    assert code == list(assets().scripts)
    assert data and all(attrs == {"type": "application/json", "id": attrs["id"]} for attrs, _ in data)
    assert not [text for _, text in data if "alert" in text]
    for script in assets().scripts:
        markup = markup.replace(script, "")
    assert markup.count("<script") == len(page.scripts)
    assert markup.count("<script></script>") == len(code)
    assert "<script>alert" not in markup and "<img" not in markup
    assert "\x1b" not in markup
    assert {tag for tag, _ in page.tags} <= ALLOWED_TAGS
    assert not [name for _, attrs in page.tags for name in attrs if name.startswith("on")]
    # Still shown, as text: in tables, chart labels and tooltips alike.
    text = "".join(page.text)
    assert text.count(SCRIPT + IMG) >= 40
    assert "&lt;script&gt;" in markup and "&quot;&gt;&lt;img" in markup


def test_chart_data_cannot_close_its_script() -> None:
    hostile = {"name": f"</script><script>window.pwned=1</script><!--{EVIL}&amp;", "values": [1]}
    text = script_json(hostile)
    assert not set(text) & set("<>&")
    assert json.loads(text) == hostile
    assert script_json({"x": [1.5, 2], "s": "\u2028"}) == '{"x":[1.5,2],"s":"\u2028"}'


def test_hostile_text_in_chart_labels_and_tooltips(hostile: dict[str, Any]) -> None:
    markup, _ = _page(hostile)
    svgs = re.findall(r"<svg.*?</svg>", markup, re.DOTALL)
    assert svgs
    domains = next(s for s in svgs if "d0." in s)
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"
    assert f"<title>d0.{escaped}" in domains


def test_nothing_loaded_from_anywhere(busy: dict[str, Any], hostile: dict[str, Any]) -> None:
    for result in (busy, hostile):
        markup, page = _page(result, smtpd_stats=True)
        metas = [attrs for tag, attrs in page.tags if tag == "meta" and "http-equiv" in attrs]
        assert metas == [{"http-equiv": "Content-Security-Policy", "content": CSP}]
        assert "default-src 'none'" in CSP
        # Scripts run only if they are the chart code, known by its hashes; none is fetched.
        code = [text for attrs, text in page.scripts if not attrs]
        assert CSP.endswith("; script-src " + " ".join(_sha256(text) for text in code))
        assert "'unsafe-inline'" not in CSP.partition("script-src")[2]
        refs = [v for _, attrs in page.tags for k, v in attrs.items() if k in ("src", "href", "xlink:href")]
        assert all(v and v.startswith("#") for v in refs)
        assert "url(" not in markup and "@import" not in markup
        assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", markup)
    # This log text has no web address in it, so none may appear at all, but for the name of
    # uPlot's home in its own code.
    markup = render_html(hostile, RenderOptions())
    for script in assets().scripts:
        markup = markup.replace(script, "")
    assert "http://" not in markup and "https://" not in markup


def test_deterministic(busy: dict[str, Any], hostile: dict[str, Any]) -> None:
    for result in (busy, hostile):
        options = RenderOptions(smtpd_stats=True, top_hosts=5)
        assert render_html(result, options) == render_html(copy.deepcopy(result), options)


# -- charts ---------------------------------------------------------------------------------


def test_category_charts_escape_and_are_deterministic() -> None:
    for svg in (
        charts.hbar_chart([(EVIL, 3.0)], title=EVIL),
        charts.share_bar([(EVIL, 1.0), ("b", 3.0)], title=EVIL),
        charts.heat_map([(EVIL, (1.0, 0.0))], ["a", EVIL], title=EVIL),
    ):
        assert "<script" not in svg and "<img" not in svg and "\x1b" not in svg
        assert " id=" not in svg
        assert svg.startswith('<svg class="chart"') and svg.endswith("</svg>")
        tags = Page(svg).tags
        # The title survives whole inside its attribute: no quote broke out of it.
        assert tags[0][1]["aria-label"] == EVIL.replace("\x1b", "\\x1b")
        assert {name for _, attrs in tags for name in attrs} <= SVG_ATTRIBUTES
    again = charts.hbar_chart((("a", 1.0), ("b", 2.0)), title="t")
    assert charts.hbar_chart([("a", 1.0), ("b", 2.0)], title="t") == again


def test_traffic_charts_are_drawn_by_the_chart_code(busy: dict[str, Any]) -> None:
    markup, page = _page(busy)
    data = page.chart("per-hour")
    # Hours of the day, on no day in particular; the values are the table's.
    assert data["kind"] == "lines" and data["xformat"] == "time" and data["tz"] == "UTC"
    assert data["x"] == [h * 3600 for h in range(24)] and data["step"] == 3600
    assert [s["name"] for s in data["series"]] == list(TRAFFIC)
    rows = page.table("per-hour")
    for i, s in enumerate(data["series"]):
        assert [f"{v:,}" for v in s["values"]] == [row[i + 1] for row in rows]
    # The category charts stay SVG.
    sections = dict(re.findall(r'<section id="([^"]+)">(.*?)</section>', markup, re.DOTALL))
    assert "<svg" not in sections["per-hour"]
    for key in ("delivery-domains", "receiving-domains", "weekly", "delays"):
        assert '<svg class="chart"' in sections[key]


def test_per_day_chart_has_every_day(multi_day: dict[str, Any]) -> None:
    _, page = _page(multi_day)
    data = page.chart("per-day")
    days = [row["date"] for row in multi_day["per_day"]]
    assert data["kind"] == "lines" and data["step"] == 86400 and "xformat" not in data
    first = int(datetime.fromisoformat(days[0]).replace(tzinfo=UTC).timestamp())
    last = int(datetime.fromisoformat(days[-1]).replace(tzinfo=UTC).timestamp())
    assert data["x"] == list(range(first, last + 1, 86400))
    # A day the log has no row for had no traffic: 0, not a gap.
    received = dict(zip(data["x"], data["series"][0]["values"], strict=True))
    for x, v in received.items():
        day = datetime.fromtimestamp(x, UTC).date().isoformat()
        row = next((r for r in multi_day["per_day"] if r["date"] == day), None)
        assert v == (row["received"] if row else 0)


def test_many_days_are_stacked(multi_day: dict[str, Any]) -> None:
    result = copy.deepcopy(multi_day)
    row = result["per_day"][0]
    result["per_day"] = [{**row, "date": f"2024-{m:02d}-{d:02d}"} for m in (1, 2) for d in range(1, 29)]
    _, page = _page(result)
    data = page.chart("per-day")
    assert data["kind"] == "stacked"
    assert len(data["x"]) == 31 + 28  # January 29th to 31st too, at 0
    assert [s["values"][28] for s in data["series"]] == [0] * len(TRAFFIC)
    assert [s["values"][0] for s in data["series"]] == [row[f] for f in TRAFFIC]


def test_inlines_the_dashboards_chart_code(busy: dict[str, Any]) -> None:
    markup, page = _page(busy)
    vendor = STATIC / "vendor"
    code = [text for attrs, text in page.scripts if not attrs]
    assert code == [(vendor / "uPlot.iife.min.js").read_text(), (STATIC / "charts.js").read_text()]
    assert f"<style>{(vendor / 'uPlot.min.css').read_text()}</style>" in markup
    # uPlot's version and licence go with it.
    assert "<!-- uplot 1.6.32, the chart library below:\nThe MIT License (MIT)" in markup
    assert (vendor / "VERSION").read_text() == "uplot 1.6.32\n"


def test_chart_colours_are_the_category_charts() -> None:
    js = (STATIC / "charts.js").read_text()
    palette = re.search(r"const PALETTE = \[([^\]]*)\]", js)
    assert palette and re.findall(r'"(#[0-9a-f]{6})"', palette.group(1)) == list(charts.PALETTE)
    statuses = re.search(r"const STATUS_COLORS = \{([^}]*)\}", js)
    assert statuses and dict(re.findall(r'(\w+): "(#[0-9a-f]{6})"', statuses.group(1))) == dict(
        zip(TRAFFIC, charts.PALETTE, strict=False)
    )
