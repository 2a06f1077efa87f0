"""GitHub-flavoured Markdown, and the format-neutral sections it shares with the HTML page.

:func:`report_sections` lays the report out once, as sections of headings,
paragraphs, tables and figures that hold plain, unescaped values; each renderer
escapes for its own format. Markdown cannot draw, so it skips the figures.

Log text is written by strangers (HELO names, addresses, reply texts), so every
value passes through :func:`clean` and :func:`md` before it reaches the page.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from postlens.render import (
    RenderOptions,
    clean,
    limit,
    own_rows,
    per_day_rows,
    section_rows,
    unnamed_filters_note,
)

Kind = Literal["text", "int", "secs"]
NUMERIC: frozenset[Kind] = frozenset({"int", "secs"})
TRAFFIC = ("received", "delivered", "deferred", "bounced", "rejected")
FIGURE_ROWS = 15  # a bar chart taller than this stops being read at a glance


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    kind: Kind = "text"


@dataclass(frozen=True, slots=True)
class Table:
    columns: tuple[Column, ...]
    rows: list[tuple[Any, ...]]
    caption: str = ""


@dataclass(frozen=True, slots=True)
class Para:
    text: str


@dataclass(frozen=True, slots=True)
class Heading:
    text: str


@dataclass(frozen=True, slots=True)
class Figure:
    """What a section would plot: each series has one value per label."""

    kind: Literal["bars", "stacked", "hbars", "share", "heat"]
    title: str
    labels: tuple[str, ...]
    series: tuple[tuple[str, tuple[float, ...]], ...]
    unit: Kind = "int"


Block = Heading | Para | Table | Figure
Spec = tuple[tuple[str, str], ...]  # ("header[:kind]", key) per column of a list of result dicts


@dataclass(frozen=True, slots=True)
class Section:
    key: str  # stable anchor, never derived from the log
    title: str
    blocks: list[Block]


# -- values -------------------------------------------------------------------------


def seconds(value: float) -> str:
    if value >= 3600:
        return f"{value / 3600:,.1f} h"
    if value >= 60:
        return f"{value / 60:.1f} min"
    return f"{value:.1f} s" if value >= 10 else f"{value:.2f} s"


def cell_text(value: Any, kind: Kind) -> str:
    """A value as shown, unescaped; None (a count one side does not keep) shows as a dash."""
    if value is None:
        return "-"
    if kind == "int":
        return f"{value:,}"
    if kind == "secs":
        return seconds(value)
    return str(value)


def _cols(*spec: str) -> tuple[Column, ...]:
    """Columns from ``"header"`` or ``"header:kind"``."""
    parts = (s.partition(":") for s in spec)
    return tuple(Column(header, cast(Kind, kind or "text")) for header, _, kind in parts)


def _rows(dicts: Iterable[dict[str, Any]], *keys: str) -> list[tuple[Any, ...]]:
    return [tuple(d[k] for k in keys) for d in dicts]


def _table(
    columns: tuple[Column, ...], rows: list[tuple[Any, ...]], n: int = -1, caption: str = ""
) -> list[Block]:
    """A table limited to ``n`` rows, saying so when rows were left out; "none" when empty."""
    if not rows:
        return [Para(f"{caption}: none" if caption else "none")]
    shown = limit(rows, n)
    blocks: list[Block] = [Table(columns, shown, caption)] if shown else []
    if len(shown) < len(rows):
        blocks.append(Para(f"showing {len(shown):,} of {len(rows):,} rows"))
    return blocks


def _counts(caption: str, header: str, counts: dict[str, int], n: int = -1) -> list[Block]:
    return _table(_cols(header, "count:int"), list(counts.items()), n, caption)


def _hbars(title: str, labels: Sequence[Any], values: Sequence[float], unit: Kind = "int") -> list[Block]:
    if not any(values):
        return []
    return [Figure("hbars", title, tuple(str(x) for x in labels), (("", tuple(values)),), unit)]


def _traffic_figure(title: str, labels: list[str], rows: list[tuple[Any, ...]]) -> list[Block]:
    if not any(any(row[1:]) for row in rows):
        return []
    # Beyond a month, grouped bars get thinner than a pixel; stacked ones stay readable.
    kind: Literal["bars", "stacked"] = "stacked" if len(labels) > 31 else "bars"
    series = tuple((name, tuple(float(row[i + 1]) for row in rows)) for i, name in enumerate(TRAFFIC))
    return [Figure(kind, title, tuple(labels), series)]


# -- pflogsumm's sections -----------------------------------------------------------

_GRAND = (
    ("received", "received"), ("delivered", "delivered"), ("forwarded", "forwarded"),
    ("deferred", "deferred"), ("deferrals", "deferrals"), ("bounced", "bounced"),
    ("expired", "expired"), ("rejected", "rejected"), ("reject warnings", "reject_warnings"),
    ("held", "held"), ("discarded", "discarded"), ("notifications", "notifications"),
    ("bytes received", "bytes_received"), ("bytes delivered", "bytes_delivered"),
    ("senders", "senders"), ("sending hosts/domains", "sending_hosts_domains"),
    ("recipients", "recipients"), ("recipient hosts/domains", "recipient_hosts_domains"),
    ("rejected %", "rejected_percent"), ("discarded %", "discarded_percent"),
)  # fmt: skip


def _grand_totals(r: dict[str, Any]) -> Section:
    t, p, m = r["totals"], r["pflogsumm"], r["messages"]
    # Each side lacks some counts (pflogsumm has no expiry, postlens no percentages): shown as a dash.
    rows = [(label, t.get(key), p.get(key)) for label, key in _GRAND]
    why = (
        "Why the columns differ: pflogsumm counts a message re-injected by a content filter as received "
        f"twice and its hop into the filter as delivered (here {m['reinjected']:,} re-injected, "
        f"{m['hops']:,} hops), and mail a content filter dropped as delivered ({m['filter_discards']:,} "
        f"recipients); postlens also counts expired messages ({t['expired']:,}) and the notices "
        f"Postfix generates ({t['notifications']:,}), which pflogsumm does not."
    )
    state = (
        f"{m['complete']:,} messages complete, {m['incomplete']:,} incomplete (start or end outside "
        f"the log), {m['aborted']:,} aborted."
    )
    blocks: list[Block] = [Table(_cols("", "postlens:int", "pflogsumm:int"), rows), Para(why), Para(state)]
    note = unnamed_filters_note(r)
    if note:
        blocks.append(Para(note))
    return Section("grand-totals", "Grand Totals", blocks)


_PER_HOST: Spec = (
    ("mail server", "host"), ("received:int", "received"), ("delivered:int", "delivered"),
    ("forwarded:int", "forwarded"), ("deferred:int", "deferred"), ("bounced:int", "bounced"),
    ("expired:int", "expired"), ("rejected:int", "rejected"), ("held:int", "held"),
    ("discarded:int", "discarded"), ("notifications:int", "notifications"),
    ("bytes received:int", "bytes_received"), ("bytes delivered:int", "bytes_delivered"),
)  # fmt: skip


def _per_host(r: dict[str, Any]) -> Section:
    return Section("per-host", "Per Mail Server", _listing(r["hosts"], _PER_HOST))


def _per_day(r: dict[str, Any], o: RenderOptions) -> Section | None:
    if len(r["per_day"]) <= 1:
        return None
    rows = _rows(per_day_rows(r, o.zero_fill), "date", *TRAFFIC)
    blocks = _traffic_figure("messages per day", [row[0] for row in rows], rows)
    blocks.append(Table(_cols("date", *(f"{f}:int" for f in TRAFFIC)), rows))
    return Section("per-day", "Per-Day Traffic Summary", blocks)


def _hour(h: int) -> str:
    return f"{h:02d}00-{(h + 1) % 24:02d}00"


def _per_hour(r: dict[str, Any]) -> Section:
    days = max(1, r["period"]["days"])
    # pflogsumm's daily average, rounded half up, as the text report prints it.
    rows = [(_hour(h["hour"]), *((h[f] + days // 2) // days for f in TRAFFIC)) for h in r["per_hour"]]
    title = "Per-Hour Traffic Daily Average" if days > 1 else "Per-Hour Traffic Summary"
    blocks = _traffic_figure("messages per hour", [f"{h['hour']:02d}" for h in r["per_hour"]], rows)
    blocks.append(Table(_cols("hour", *(f"{f}:int" for f in TRAFFIC)), rows))
    return Section("per-hour", title, blocks)


def _weekly(r: dict[str, Any]) -> Section:
    w = r["weekly"]
    hours = tuple(f"{h:02d}" for h in range(24))
    series = tuple((day, tuple(values)) for day, values in zip(w["weekdays"], w["received"], strict=True))
    rows = [(day, *values) for day, values in series]
    if not any(any(values) for _, values in series):
        return Section("weekly", "Weekly Pattern", [Para("none")])
    blocks: list[Block] = [
        Para("Messages received per hour of the day, on average per day of each weekday."),
        Figure("heat", "messages received by weekday and hour", hours, series),
        Table(_cols("day", *(f"{h}:int" for h in hours)), rows),
    ]
    return Section("weekly", "Weekly Pattern", blocks)


_DELIVERY: Spec = (
    ("host/domain", "domain"), ("delivered:int", "delivered"), ("bytes:int", "bytes"),
    ("deferred:int", "deferred"), ("bounced:int", "bounced"), ("avg delay:secs", "avg_delay"),
    ("max delay:secs", "max_delay"), ("p50:secs", "p50"), ("p90:secs", "p90"), ("p99:secs", "p99"),
)  # fmt: skip
_RECEIVING: Spec = (("host/domain", "domain"), ("received:int", "received"), ("bytes:int", "bytes"))


def _listing(dicts: list[dict[str, Any]], spec: Spec, n: int = -1, caption: str = "") -> list[Block]:
    return _table(_cols(*(h for h, _ in spec)), _rows(dicts, *(k for _, k in spec)), n, caption)


def _domains(key: str, title: str, rows: list[dict[str, Any]], spec: Spec, n: int) -> Section:
    """A domain table, led by a chart of its first rows by the count in its second column."""
    count = spec[1][1]
    top = limit(rows, n)[:FIGURE_ROWS]
    figure = _hbars(
        f"top {len(top)} by messages {count}", [d["domain"] for d in top], [d[count] for d in top]
    )
    return Section(key, title, figure + _listing(rows, spec, n))


_CONNECTIONS: Spec = (
    ("connections:int", "connections"), ("total time:secs", "seconds"), ("avg time:secs", "avg"),
    ("max time:secs", "max"),
)  # fmt: skip


def _smtpd(r: dict[str, Any], o: RenderOptions) -> Section:
    s = r["smtpd"]
    summary = (
        f"{s['connections']:,} connections ({s['connects']:,} connect lines) from {s['hosts_domains']:,} "
        f"hosts/domains; average connect time {seconds(s['avg_connect_time'])}, total "
        f"{seconds(s['total_connect_time'])}."
    )
    # --zero-fill keeps the hours without a connection; otherwise they are left out to keep the table short.
    hours = [{**h, "hour": _hour(h["hour"])} for h in s["per_hour"] if o.zero_fill or h["connections"]]
    blocks: list[Block] = [Para(summary)]
    blocks += _listing(s["per_day"], (("day", "day"), *_CONNECTIONS), caption="per day")
    blocks += _listing(hours, (("hour", "hour"), *_CONNECTIONS), caption="per hour")
    by_domain = (("host/domain", "domain"), *_CONNECTIONS)
    blocks += _listing(s["by_domain"], by_domain, o.top_hosts, "by host/domain")
    return Section("smtpd", "SMTPD Connections", blocks)


def _users(r: dict[str, Any], o: RenderOptions) -> list[Section]:
    out = []
    for who, order, title in (
        ("senders", "by_count", "Senders by message count"),
        ("recipients", "by_count", "Recipients by message count"),
        ("senders", "by_size", "Senders by message size"),
        ("recipients", "by_size", "Recipients by message size"),
    ):
        spec = ((who.removesuffix("s"), "address"), ("messages:int", "count"), ("bytes:int", "bytes"))
        blocks = _listing(r[who][order], spec, o.top_users)
        out.append(Section(f"{who}-{order.removeprefix('by_')}", title, blocks))
    return out


def _no_size(r: dict[str, Any]) -> Section:
    rows = [tuple(text.partition("\t")[::2]) for text in r["no_size"]]
    blocks = _table(_cols("queue id", "recipient"), rows)
    more = r["messages"]["no_size"] - len(rows)
    if more > 0:
        blocks.append(Para(f"... and {more:,} more deliveries"))
    return Section("no-size", "Messages with no size data", blocks)


_DETAIL: Spec = (
    ("daemon", "daemon"), ("stage", "stage"), ("reason", "reason"), ("who", "who"), ("count:int", "count"),
)  # fmt: skip
_DIAG: Spec = (("daemon", "daemon"), ("message", "text"), ("count:int", "count"))


def _rejects(r: dict[str, Any], n: int) -> Section:
    rej = r["rejects"]
    if not rej["detail"]:
        return Section("rejects", "Message Reject Detail", [Para("none")])
    blocks = _counts("by stage", "stage", rej["by_kind"])
    blocks += _counts("by reply code", "code", rej["by_code"])
    blocks += _counts("by client", "client", rej["by_client"], n)
    blocks += _listing(rej["detail"], _DETAIL, n, "detail")
    return Section("rejects", "Message Reject Detail", blocks)


def _problems(r: dict[str, Any], o: RenderOptions) -> list[Section]:
    def listed(key: str, title: str, spec: Spec) -> Section:
        return Section(key.replace("_", "-"), title, _listing(r[key], spec, section_rows(o, key)))

    sections = [
        listed("deferrals", "Message Deferral Detail",
               (("daemon", "daemon"), ("reason", "reason"), ("count:int", "count"))),
        listed("bounces", "Message Bounce Detail (by relay)",
               (("relay", "relay"), ("reason", "reason"), ("count:int", "count"))),
        _rejects(r, section_rows(o, "rejects")),
        listed("reject_warnings", "Message Reject Warning Detail", _DETAIL),
        listed("holds", "Message Hold Detail", _DETAIL),
        listed("discards", "Message Discard Detail", _DETAIL),
        Section("other-actions", "Other Actions (not counted in the totals)",
                _counts("", "action", r["other_actions"], section_rows(o, "other_actions"))),
        listed("smtp_failures", "SMTP Delivery Failures",
               (("reason", "reason"), ("peer", "peer"), ("count:int", "count"))),
        listed("warnings", "Warnings", _DIAG),
        listed("errors", "Errors", _DIAG),
        listed("fatal", "Fatal Errors", _DIAG),
        listed("panics", "Panics", _DIAG),
        listed("master", "Master Daemon Messages", (("message", "text"), ("count:int", "count"))),
    ]  # fmt: skip
    # pflogsumm's --bounce-detail 0 and the like leave their sections out
    return [sec for sec in sections if section_rows(o, sec.key.replace("-", "_")) != 0]


# -- postlens's own sections ----------------------------------------------------------

_STAGES = (
    ("before_qmgr", "before the queue manager"),
    ("in_queue", "in the queue"),
    ("connection", "connection setup"),
    ("transmission", "transmission"),
)


def _delays(r: dict[str, Any]) -> Section:
    d = r["delays"]
    if not d["deliveries"]:
        return Section("delays", "Delivery Delays", [Para("none")])
    pcts = ("p50", "p90", "p99")
    blocks: list[Block] = [Para(f"{d['deliveries']:,} deliveries")]
    blocks += _hbars("delivery delay percentiles", pcts, [d[p] for p in pcts], "secs")
    blocks.append(Table(_cols("", "delay:secs"), [(k, d[k]) for k in ("avg", *pcts, "max")]))
    split = d["split"]
    avgs = tuple(float(split[k]["avg"]) for k, _ in _STAGES)
    if any(avgs):
        labels = tuple(label for _, label in _STAGES)
        title = "where the time goes (average per delivery)"
        blocks.append(Figure("share", title, labels, (("", avgs),), "secs"))
    blocks.append(
        Table(
            _cols("stage", "total:secs", "average per delivery:secs"),
            [(label, split[k]["total"], split[k]["avg"]) for k, label in _STAGES],
            "where the time goes",
        )
    )
    return Section("delays", "Delivery Delays", blocks)


def _notifications(r: dict[str, Any], n: int) -> Section:
    notes = r["notifications"]
    blocks: list[Block] = [Para(f"{notes['total']:,} notices generated by Postfix")]
    if notes["total"]:
        blocks += _counts("by kind", "kind", notes["by_kind"], n)
    if r["verify"]:
        blocks += _counts("address verification probes", "result", r["verify"], n)
    return Section("notifications", "Notifications", blocks)


def _tls(r: dict[str, Any], n: int) -> Section:
    blocks: list[Block] = []
    for side in ("inbound", "outbound"):
        tls = r["tls"][side]
        blocks += [Heading(side.capitalize()), Para(f"{tls['connections']:,} connections")]
        if not tls["connections"]:
            continue
        blocks += _counts("protocol", "protocol", tls["by_protocol"], n)
        blocks += _counts("trust", "trust", tls["by_trust"], n)
        blocks += _counts("cipher", "cipher", tls["by_cipher"], n)
    return Section("tls", "TLS", blocks)


def _postscreen(r: dict[str, Any], n: int) -> Section:
    ps = r["postscreen"]
    if not ps["by_action"] and not ps["dnsbl_listings"]:
        return Section("postscreen", "Postscreen", [Para("none")])
    blocks = _counts("verdicts", "action", ps["by_action"], n)
    blocks += _counts("DNSBL listings", "list", ps["dnsbl_listings"], n)
    return Section("postscreen", "Postscreen", blocks)


def _content_checks(r: dict[str, Any], n: int) -> Section:
    checks = r["content_checks"]
    if not checks:
        return Section("content-checks", "Content Checks", [Para("none")])
    blocks: list[Block] = []
    for check, verdicts in checks.items():
        blocks += _counts(check, "verdict", verdicts, n)
    return Section("content-checks", "Content Checks", blocks)


def _auth(r: dict[str, Any], n: int) -> Section:
    blocks: list[Block] = []
    for side in ("failures", "successes"):
        a = r["auth"][side]
        blocks += [Heading(side.capitalize()), Para(f"{a['total']:,} {side}")]
        if not a["total"]:
            continue
        blocks += _counts("by IP", "IP", a["by_ip"], n)
        blocks += _counts("by username", "username", a["by_username"], n)
        blocks += _counts("by method", "method", a["by_method"], n)
        blocks += _counts("by service", "service", a["by_service"], n)
    return Section("auth", "SASL Authentication", blocks)


def _coverage(r: dict[str, Any]) -> Section:
    c = r["coverage"]
    keys = ("lines", "recognised", "unrecognised", "malformed", "other_programs", "outside_period",
            "crlf", "invalid_utf8")  # fmt: skip
    blocks: list[Block] = [Table(_cols("", "lines:int"), [(k.replace("_", " "), c[k]) for k in keys])]
    for kind in ("unrecognised", "malformed"):
        examples = c[f"{kind}_examples"]
        if examples:
            blocks.append(Table(_cols("line"), [(x,) for x in examples], f"{kind} examples"))
            blocks.append(Para(f"showing {len(examples):,} of {c[kind]:,} {kind} lines"))
    return Section("coverage", "Coverage", blocks)


def _inputs(r: dict[str, Any]) -> Section:
    inputs = r.get("inputs", [])
    bad = [(i["source"], i["error"]) for i in inputs if i["error"]]
    if not bad:
        return Section("inputs", "Inputs", [Para(f"all {len(inputs):,} inputs read without error")])
    return Section("inputs", "Inputs", _table(_cols("source", "error"), bad))


def report_sections(r: dict[str, Any], o: RenderOptions) -> list[Section]:
    """The report in pflogsumm 1.1.5's order, then postlens's own sections."""
    problems = _problems(r, o)
    main = [_per_day(r, o), _per_hour(r)]
    if o.top_hosts != 0:  # -h 0 leaves them out, as in pflogsumm
        main += [
            _domains("delivery-domains", "Host/Domain Summary: Message Delivery", r["delivery_domains"],
                     _DELIVERY, o.top_hosts),
            _domains("receiving-domains", "Host/Domain Summary: Messages Received", r["receiving_domains"],
                     _RECEIVING, o.top_hosts),
        ]  # fmt: skip
    if o.smtpd_stats:
        main.append(_smtpd(r, o))
    if o.top_users != 0:
        main += _users(r, o)
    if not o.no_no_size:
        main.append(_no_size(r))
    ordered = [*problems, *main] if o.problems_first else [*main, *problems]
    n = own_rows(o)
    own = [_weekly(r), _delays(r), _notifications(r, n), _tls(r, n), _postscreen(r, n),
           _content_checks(r, n), _auth(r, n), _coverage(r), _inputs(r)]  # fmt: skip
    hosts = [_per_host(r)] if o.by_host else []
    return [s for s in (_grand_totals(r), *hosts, *ordered, *own) if s is not None]


def period_text(r: dict[str, Any]) -> str:
    p = r["period"]
    if not p["first"]:
        return "no mail in the log"
    return f"{p['first']} to {p['last']} ({p['days']:,} {'day' if p['days'] == 1 else 'days'})"


# -- Markdown -------------------------------------------------------------------------

_MD_PUNCT = re.compile(r"[\\`*_\[\]|~]")


def md(value: object) -> str:
    """Text safe in a Markdown paragraph or table cell: nothing in it can become markup."""
    text = clean(value).replace("\n", "\\x0a")
    text = _MD_PUNCT.sub(r"\\\g<0>", html.escape(text, quote=False))
    return "\\" + text if text.startswith("#") else text


def _md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _md_table(t: Table) -> str:
    lines = [f"**{md(t.caption)}**", ""] if t.caption else []
    lines.append(_md_row(md(c.header) for c in t.columns))
    lines.append("|" + "|".join("---:" if c.kind in NUMERIC else "---" for c in t.columns) + "|")
    for row in t.rows:
        lines.append(_md_row(md(cell_text(v, c.kind)) for v, c in zip(row, t.columns, strict=True)))
    return "\n".join(lines)


def _md_block(b: Block) -> str | None:
    if isinstance(b, Heading):
        return f"### {md(b.text)}"
    if isinstance(b, Para):
        return md(b.text)
    if isinstance(b, Table):
        return _md_table(b)
    return None  # figures need a drawing surface


def render_markdown(r: dict[str, Any], o: RenderOptions) -> str:
    parts = [f"# {md(o.title)}", md(period_text(r))]
    for s in report_sections(r, o):
        parts.append(f"## {md(s.title)}")
        parts += [text for b in s.blocks if (text := _md_block(b)) is not None]
    return "\n\n".join(parts) + "\n"
