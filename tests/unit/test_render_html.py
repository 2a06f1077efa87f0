"""The HTML page: sections, numbers, limits, escaping of hostile log text, no outside resources."""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from postlens.render import RenderOptions, charts, render
from postlens.render.html import CSP, render_html
from postlens.render.markdown import TRAFFIC

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
EVIL = f"{SCRIPT}{IMG}\x1b[31m"

# Everything the page may contain: no script, no embedded or linked resource.
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "nav", "main", "section", "h1", "h2",
    "h3", "p", "ol", "li", "a", "div", "table", "caption", "thead", "tbody", "tr", "th", "td",
    "figure", "figcaption", "svg", "rect", "line", "text",
}  # fmt: skip

SVG_ATTRIBUTES = {
    "class", "viewbox", "role", "aria-label", "font-family", "font-size", "fill", "x", "y", "width", "height",
    "x1", "x2", "y1", "y2", "stroke", "text-anchor",
}  # fmt: skip


class Page(HTMLParser):
    """A rendered page taken apart: every tag, the text, and each section's tables."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.titles: list[str] = []
        self.sections: dict[str, list[dict[str, Any]]] = {}
        self._section = ""
        self._open: list[str] | None = None
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "section":
            self._section = dict(attrs)["id"] or ""
            self.sections[self._section] = []
        elif tag == "table":
            self.sections[self._section].append({"caption": "", "rows": []})
        elif tag == "tr":
            self.sections[self._section][-1]["rows"].append([])
        elif tag in ("td", "th", "h2", "caption"):
            self._open = []

    def handle_endtag(self, tag: str) -> None:
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
        self.text.append(data)
        if self._open is not None:
            self._open.append(data)

    def table(self, section: str, caption: str = "") -> list[list[str]]:
        """The data rows (header row left out) of a section's table."""
        found = [t["rows"][1:] for t in self.sections[section] if t["caption"] == caption]
        assert len(found) == 1, f"{section}/{caption}: {len(found)} tables"
        return found[0]


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


def test_hostile_text_is_escaped(hostile: dict[str, Any]) -> None:
    markup, page = _page(hostile, title=f"report {EVIL}", smtpd_stats=True)
    assert "<script" not in markup
    assert "<img" not in markup
    assert "\x1b" not in markup
    assert {tag for tag, _ in page.tags} <= ALLOWED_TAGS
    assert not [name for _, attrs in page.tags for name in attrs if name.startswith("on")]
    # Still shown, as text: in tables, chart labels and tooltips alike.
    text = "".join(page.text)
    assert text.count(SCRIPT + IMG) >= 40
    assert "&lt;script&gt;" in markup and "&quot;&gt;&lt;img" in markup


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
        refs = [v for _, attrs in page.tags for k, v in attrs.items() if k in ("src", "href", "xlink:href")]
        assert all(v and v.startswith("#") for v in refs)
        assert "url(" not in markup and "@import" not in markup
        assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", markup)
    # This log text has no web address in it, so none may appear at all.
    markup = render_html(hostile, RenderOptions())
    assert "http://" not in markup and "https://" not in markup


def test_deterministic(busy: dict[str, Any], hostile: dict[str, Any]) -> None:
    for result in (busy, hostile):
        options = RenderOptions(smtpd_stats=True, top_hosts=5)
        assert render_html(result, options) == render_html(copy.deepcopy(result), options)


# -- charts ---------------------------------------------------------------------------------


def test_charts_escape_and_are_deterministic() -> None:
    series = [charts.Series(EVIL, (1.0, 2.0), "#000")]
    for svg in (
        charts.bar_chart(["a", EVIL], series, title=EVIL),
        charts.bar_chart(["a", EVIL], series, title=EVIL, stacked=True),
        charts.hbar_chart([(EVIL, 3.0)], title=EVIL),
        charts.share_bar([(EVIL, 1.0), ("b", 3.0)], title=EVIL),
    ):
        assert "<script" not in svg and "<img" not in svg and "\x1b" not in svg
        assert " id=" not in svg
        assert svg.startswith('<svg class="chart"') and svg.endswith("</svg>")
        tags = Page(svg).tags
        # The title survives whole inside its attribute: no quote broke out of it.
        assert tags[0][1]["aria-label"] == EVIL.replace("\x1b", "\\x1b")
        assert {name for _, attrs in tags for name in attrs} <= SVG_ATTRIBUTES
    again = charts.bar_chart(("a", "b"), list(series), title="t")
    assert charts.bar_chart(["a", "b"], series, title="t") == again


def test_nice_ticks() -> None:
    assert charts.nice_ticks(0) == [0.0, 1.0]
    assert charts.nice_ticks(800) == [0, 200, 400, 600, 800]
    assert charts.nice_ticks(7)[-1] >= 7
    assert charts.nice_ticks(0.07)[-1] >= 0.07


def test_many_days_are_stacked(multi_day: dict[str, Any]) -> None:
    result = copy.deepcopy(multi_day)
    row = result["per_day"][0]
    result["per_day"] = [{**row, "date": f"2024-{m:02d}-{d:02d}"} for m in (1, 2) for d in range(1, 29)]
    markup, _ = _page(result)
    per_day = markup[markup.index('<section id="per-day">') : markup.index('<section id="per-hour">')]
    # Stacked: one slot per day, its bars sharing an x.
    xs = re.findall(r'<rect x="([\d.]+)" [^>]*fill="#[0-9a-f]{6}"><title>', per_day)
    assert len(set(xs)) == 56
