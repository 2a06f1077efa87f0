"""The Markdown report: sections, numbers, limits, well-formed tables, escaping of hostile log text."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from postlens.render import RenderOptions, render
from postlens.render.markdown import md, render_markdown

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
# Markup in every dialect a Markdown viewer speaks, and a terminal escape.
EVIL = f"{SCRIPT}{IMG}|`code`|*b* _i_ [x](javascript:alert(1)) \\|\x1b[31m"
HEADING = "# not a heading | ## nor this"

_CELL = re.compile(r"(?:\\.|[^|\\])*")  # a backslash escapes whatever follows it, a pipe included


def cells(line: str) -> list[str]:
    """A table line split at its delimiters: the pipes no backslash escapes."""
    assert line.startswith("|"), line
    out, pos = [], 1
    while pos < len(line):
        m = _CELL.match(line, pos)
        assert m is not None and line[m.end() : m.end() + 1] == "|", line
        out.append(m.group().strip())
        pos = m.end() + 1
    return out


def sections(doc: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", doc, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def tables(text: str) -> list[list[list[str]]]:
    """Every table in ``text`` as rows of cells, header row and delimiter row included."""
    out: list[list[list[str]]] = []
    previous = ""
    for line in text.splitlines():
        if line.startswith("|"):
            if not previous.startswith("|"):
                out.append([])
            out[-1].append(cells(line))
        previous = line
    return out


def data_rows(doc: str, title: str, index: int = 0) -> list[list[str]]:
    return tables(sections(doc)[title])[index][2:]


@pytest.fixture(scope="module")
def hostile(empty: dict[str, Any]) -> dict[str, Any]:
    """A hand-built result with hostile text in the fields strangers write."""
    r = copy.deepcopy(empty)
    r["period"] = {"first": "2024-05-01T00:00:00Z", "last": "2024-05-01T23:00:00Z", "days": 1}
    r["totals"].update(received=1234567, delivered=5, rejected=3)
    r["delivery_domains"] = [
        {"domain": f"d{i}.{EVIL}", "delivered": 5 - i, "bytes": 10, "deferred": 0, "bounced": 0,
         "avg_delay": 1.0, "max_delay": 1.0, "p50": 1.0, "p90": 1.0, "p99": 1.0}
        for i in range(5)
    ]  # fmt: skip
    r["receiving_domains"] = [{"domain": HEADING, "received": 1, "bytes": 10}]
    users = [{"address": f"u{i}@{EVIL}", "count": 9 - i, "bytes": 100 * i} for i in range(6)]
    r["senders"] = r["recipients"] = {"by_count": users, "by_size": users[::-1]}
    r["bounces"] = [{"relay": EVIL, "reason": EVIL, "count": 1}]
    detail = [{"daemon": "smtpd", "stage": "RCPT", "reason": f"Helo command rejected: {EVIL}", "who": EVIL,
               "count": 3}]  # fmt: skip
    r["rejects"] = {"by_kind": {"RCPT": 3}, "by_client": {EVIL: 3}, "by_code": {"554": 3}, "detail": detail}
    r["warnings"] = [{"daemon": "smtpd", "text": f"line one\nline two {EVIL}", "count": 1}]
    r["auth"]["failures"] = {"total": 1, **{k: {EVIL: 1} for k in ("by_ip", "by_username", "by_method",
                                                                     "by_service")}}  # fmt: skip
    r["coverage"].update(unrecognised=1, unrecognised_examples=[HEADING])
    r["inputs"] = [{"source": EVIL, "error": EVIL}]
    return r


def _md(result: dict[str, Any], **options: Any) -> str:
    return render(result, "markdown", RenderOptions(**options))


# -- sections and numbers -----------------------------------------------------------------


def test_sections_in_order(busy: dict[str, Any]) -> None:
    titles = list(sections(_md(busy, smtpd_stats=True)))
    assert titles[:7] == [
        "Grand Totals",
        "Per-Hour Traffic Summary",
        "Host/Domain Summary: Message Delivery",
        "Host/Domain Summary: Messages Received",
        "SMTPD Connections",
        "Senders by message count",
        "Recipients by message count",
    ]
    assert titles.index("Messages with no size data") < titles.index("Message Deferral Detail")
    assert titles.index("Master Daemon Messages") < titles.index("Delivery Delays")
    assert titles[-3:] == ["SASL Authentication", "Coverage", "Inputs"]


def test_problems_first(busy: dict[str, Any]) -> None:
    titles = list(sections(_md(busy, problems_first=True)))
    assert titles[1] == "Message Deferral Detail"
    assert titles.index("Master Daemon Messages") < titles.index("Per-Hour Traffic Summary")


def test_per_day_only_for_more_than_one_day(busy: dict[str, Any], multi_day: dict[str, Any]) -> None:
    assert "Per-Day Traffic Summary" not in sections(_md(busy))
    doc = _md(multi_day)
    rows = data_rows(doc, "Per-Day Traffic Summary")
    fields = ("received", "delivered", "deferred", "bounced", "rejected")
    assert rows == [[d["date"], *(f"{d[f]:,}" for f in fields)] for d in multi_day["per_day"]]


def test_grand_totals_are_the_results(busy: dict[str, Any]) -> None:
    shown = {row[0]: row[1:] for row in data_rows(_md(busy), "Grand Totals")}
    t, p = busy["totals"], busy["pflogsumm"]
    for key in ("received", "delivered", "deferrals", "bounced", "rejected", "bytes_delivered", "recipients"):
        assert shown[key.replace("_", " ")] == [f"{t[key]:,}", f"{p[key]:,}"]
    assert shown["notifications"] == [f"{t['notifications']:,}", "-"]


def test_limits(busy: dict[str, Any]) -> None:
    doc = _md(busy, top_hosts=3, top_users=2, detail=5)
    assert len(data_rows(doc, "Host/Domain Summary: Message Delivery")) == 3
    assert len(data_rows(doc, "Senders by message size")) == 2
    rejects = tables(sections(doc)["Message Reject Detail"])
    assert len(rejects[-1]) - 2 == 5
    assert f"showing 3 of {len(busy['delivery_domains']):,} rows" in doc
    everything = _md(busy)
    assert len(data_rows(everything, "Recipients by message count")) == len(busy["recipients"]["by_count"])


def test_empty_result(empty: dict[str, Any]) -> None:
    found = sections(_md(empty))
    assert found["Message Bounce Detail (by relay)"].strip() == "none"
    assert found["Delivery Delays"].strip() == "none"


# -- well-formed and safe -------------------------------------------------------------------


def test_tables_have_consistent_columns(
    busy: dict[str, Any], multi_day: dict[str, Any], hostile: dict[str, Any]
) -> None:
    for result in (busy, multi_day, hostile):
        doc = _md(result, smtpd_stats=True, zero_fill=True)
        found = tables(doc)
        assert len(found) > 10
        for table in found:
            widths = {len(row) for row in table}
            assert len(widths) == 1, table
            assert all(re.fullmatch(r"-{3}:?", c) for c in table[1])


def test_hostile_text_is_escaped(hostile: dict[str, Any]) -> None:
    doc = _md(hostile, title=f"# {EVIL}")
    assert "<script" not in doc and "<img" not in doc
    assert "\x1b" not in doc and "\\\\x1b\\[31m" in doc
    assert "&lt;script&gt;" in doc
    assert not re.search(r"(?<!\\)`", doc)  # no code span can open
    assert not re.search(r"(?<!\\)\[x(?<!\\)\]", doc)  # nor a link
    assert doc.startswith("# \\# ")
    # The hostile domain is one cell, whole.
    first = data_rows(doc, "Host/Domain Summary: Message Delivery")[0]
    assert len(first) == 10 and first[0].startswith("d0.&lt;script&gt;")


def test_no_line_starts_a_heading_from_log_text(hostile: dict[str, Any]) -> None:
    doc = _md(hostile)
    headings = [line for line in doc.splitlines() if line.startswith("#")]
    assert all(line.startswith(("# postlens report", "## ", "### ")) for line in headings)
    assert "| \\# not a heading \\| ## nor this |" in doc


def test_newlines_stay_inside_their_cell(hostile: dict[str, Any]) -> None:
    rows = data_rows(_md(hostile), "Warnings")
    assert rows[0][1].startswith("line one\\\\x0aline two")


def test_md_escapes() -> None:
    assert md("a|b") == "a\\|b"
    assert md("`x`") == "\\`x\\`"
    assert md("<b>&") == "&lt;b&gt;&amp;"
    assert md("#x") == "\\#x"
    assert md("a\x07b") == "a\\\\x07b"
    assert md("[a](b)") == "\\[a\\](b)"


def test_deterministic(busy: dict[str, Any], hostile: dict[str, Any]) -> None:
    for result in (busy, hostile):
        options = RenderOptions(smtpd_stats=True, detail=10)
        assert render_markdown(result, options) == render_markdown(copy.deepcopy(result), options)
