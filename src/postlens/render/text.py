"""Plain text, laid out like pflogsumm's report so its readers feel at home.

Every value that comes from the log passes through :func:`clean`, so control
characters in HELO names or reply texts never reach the terminal.
"""

from __future__ import annotations

from typing import Any

from postlens.render import (
    RenderOptions,
    clean,
    limit,
    own_rows,
    per_day_rows,
    section_rows,
    unnamed_filters_note,
)

_TRAFFIC = ("received", "delivered", "deferred", "bounced", "rejected")


def _units(n: int) -> str:
    """pflogsumm's number style: 512k and above in k, 512m and above in m."""
    if n > 536870912:
        return f"{n // 1048576:6d}m"
    if n > 524288:
        return f"{n // 1024:6d}k"
    return f"{n:6d} "


def _secs(value: float) -> str:
    if value > 3600:
        return f"{value / 3600:.1f} h"
    if value > 60:
        return f"{value / 60:.1f} m"
    return f"{value:.1f} s"


def _title(out: list[str], title: str) -> None:
    out += ["", title, "-" * len(title)]


def _none(out: list[str], quiet: bool) -> None:
    """An empty section: " none" under its title; with -q, not even the title."""
    if quiet:
        del out[-3:]
    else:
        out.append(" none")


def _grand_totals(r: dict[str, Any], out: list[str]) -> None:
    t, p = r["totals"], r["pflogsumm"]
    _title(out, "Grand Totals")
    out.append("messages                    postlens   pflogsumm")
    out.append("")
    rows = (
        ("received", "received"), ("delivered", "delivered"), ("forwarded", "forwarded"),
        ("deferred", "deferred"), ("deferrals", "deferrals"), ("bounced", "bounced"),
        ("expired", None), ("rejected", "rejected"), ("reject warnings", "reject_warnings"),
        ("held", "held"), ("discarded", "discarded"), ("notifications", None),
    )  # fmt: skip
    for label, key in rows:
        mine = t[label.replace(" ", "_")]
        theirs = _units(p[key]) if key else "      - "
        out.append(f" {label:<24}{_units(mine)}    {theirs}")
    out.append("")
    for label, key in (
        ("bytes received", "bytes_received"), ("bytes delivered", "bytes_delivered"),
        ("senders", "senders"), ("sending hosts/domains", "sending_hosts_domains"),
        ("recipients", "recipients"), ("recipient hosts/domains", "recipient_hosts_domains"),
    ):  # fmt: skip
        out.append(f" {label:<24}{_units(t[key])}    {_units(p[key])}")
    m = r["messages"]
    out.append("")
    out.append(
        f" postlens counts a content-filter re-injection once ({m['reinjected']} re-injected, "
        f"{m['hops']} hops into filters not counted as delivered), a filter's discards as discarded "
        f"({m['filter_discards']} recipients), expiry apart and notices as notifications; pflogsumm does not."
    )
    out.append(
        f" {m['complete']} messages complete, {m['incomplete']} incomplete "
        f"(start or end outside the log), {m['aborted']} aborted."
    )
    note = unnamed_filters_note(r)
    if note:
        out.append(f" {note}")


def _per_host(r: dict[str, Any], o: RenderOptions, out: list[str]) -> None:
    _title(out, "Per Mail Server")
    if not r["hosts"]:
        return _none(out, o.quiet)
    out.append(" received delivered deferred  bounced rejected  expired   bytes in  bytes out mail server")
    out.append(" -------- --------- -------- -------- -------- -------- ---------- ---------- -----------")
    for h in r["hosts"]:
        out.append(
            f" {h['received']:8d} {h['delivered']:9d} {h['deferred']:8d} {h['bounced']:8d} "
            f"{h['rejected']:8d} {h['expired']:8d} {h['bytes_received']:10d} {h['bytes_delivered']:10d} "
            f"{clean(h['host'])}"
        )


def _per_day(r: dict[str, Any], o: RenderOptions, out: list[str]) -> None:
    if len(r["per_day"]) <= 1:
        return
    _title(out, "Per-Day Traffic Summary")
    out.append("    date          received  delivered   deferred    bounced     rejected")
    out.append("    " + "-" * 68)
    for row in per_day_rows(r, o.zero_fill):
        out.append(f"    {row['date']}  " + "".join(f"{_units(row[f]):>11}" for f in _TRAFFIC))


def _per_hour(r: dict[str, Any], out: list[str]) -> None:
    days = max(1, r["period"]["days"])
    title = "Per-Hour Traffic Daily Average" if days > 1 else "Per-Hour Traffic Summary"
    _title(out, title)
    out.append("    time          received  delivered   deferred    bounced     rejected")
    out.append("    " + "-" * 68)
    for row in r["per_hour"]:
        h = row["hour"]
        cells = "".join(f"{(row[f] + days // 2) // days if days > 1 else row[f]:>11d}" for f in _TRAFFIC)
        out.append(f"    {h:02d}00-{(h + 1) % 24:02d}00  {cells}")


def _delivery_domains(r: dict[str, Any], o: RenderOptions, out: list[str]) -> None:
    if o.top_hosts == 0:  # -h 0 leaves the host/domain summaries out, as in pflogsumm
        return
    _title(out, "Host/Domain Summary: Message Delivery")
    rows = limit(r["delivery_domains"], o.top_hosts)
    if not rows:
        return _none(out, o.quiet)
    out.append(" sent cnt  bytes   defers   avg dly max dly     p50     p90     p99 host/domain")
    out.append(" -------- -------  -------  ------- ------- ------- ------- ------- -----------")
    for d in rows:
        out.append(
            f" {d['delivered']:8d} {_units(d['bytes'])} {d['deferred']:7d} "
            f"{_secs(d['avg_delay']):>8} {_secs(d['max_delay']):>7} {_secs(d['p50']):>7} "
            f"{_secs(d['p90']):>7} {_secs(d['p99']):>7} {clean(d['domain'])}"
        )


def _receiving_domains(r: dict[str, Any], o: RenderOptions, out: list[str]) -> None:
    if o.top_hosts == 0:
        return
    _title(out, "Host/Domain Summary: Messages Received")
    rows = limit(r["receiving_domains"], o.top_hosts)
    if not rows:
        return _none(out, o.quiet)
    out.append(" msg cnt   bytes   host/domain")
    out.append(" -------- -------  -----------")
    for d in rows:
        out.append(f" {d['received']:8d} {_units(d['bytes'])}  {clean(d['domain'])}")


def _smtpd(r: dict[str, Any], o: RenderOptions, out: list[str]) -> None:
    s = r["smtpd"]
    _title(out, "SMTPD Connections")
    out.append(f" {s['connections']:8d}  connections")
    out.append(f" {s['hosts_domains']:8d}  hosts/domains")
    out.append(f" {s['avg_connect_time']:8.1f}  avg. connect time (seconds)")
    total = s["total_connect_time"]
    out.append(f" {total // 3600:2d}:{total % 3600 // 60:02d}:{total % 60:02d}  total connect time")
    _title(out, "Host/Domain Summary: SMTPD Connections")
    out.append(" connections  time conn.  avg./conn.  max. time  host/domain")
    for d in limit(s["by_domain"], o.top_hosts):
        out.append(
            f" {d['connections']:11d} {d['seconds']:11d} {d['avg']:11.1f} {d['max']:10d}"
            f"  {clean(d['domain'])}"
        )


def _users(r: dict[str, Any], o: RenderOptions, out: list[str]) -> None:
    if o.top_users == 0:  # -u 0 leaves them out, as in pflogsumm
        return
    for who, key, field, label in (
        ("senders", "by_count", "count", "Senders by message count"),
        ("recipients", "by_count", "count", "Recipients by message count"),
        ("senders", "by_size", "bytes", "Senders by message size"),
        ("recipients", "by_size", "bytes", "Recipients by message size"),
    ):
        _title(out, label)
        rows = limit(r[who][key], o.top_users)
        if not rows:
            _none(out, o.quiet)
        for row in rows:
            value = f"{row[field]:8d} " if field == "count" else _units(row[field]) + "  "
            out.append(f" {value} {clean(row['address'])}")


def _no_size(r: dict[str, Any], o: RenderOptions, out: list[str]) -> None:
    if o.no_no_size:
        return
    _title(out, "Messages with no size data")
    if not r["no_size"]:
        return _none(out, o.quiet)
    for row in r["no_size"]:
        qid, _, addr = row.partition("\t")
        out.append(f" {clean(qid):<15} {clean(addr)}")
    more = r["messages"]["no_size"] - len(r["no_size"])
    if more > 0:
        out.append(f" ... and {more} more deliveries")


def _nested(out: list[str], title: str, rows: list[dict[str, Any]], keys: tuple[str, ...], n: int,
            quiet: bool) -> None:  # fmt: skip
    """pflogsumm's nested detail: group by the leading keys, count the last one."""
    _title(out, title)
    rows = [row for row in rows if row["count"]]
    if not rows:
        return _none(out, quiet)
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(str(row[k]) for k in keys[:-1]), []).append(row)
    ordered = sorted(groups.items(), key=lambda kv: (-sum(x["count"] for x in kv[1]), kv[0]))
    for head, members in limit(ordered, n):
        total = sum(x["count"] for x in members)
        out.append(f"  {clean(' / '.join(h for h in head if h))} (total: {total})")
        for row in limit(members, n):
            out.append(f"    {row['count']:6d}   {clean(row[keys[-1]])}")


_REJECT_KEYS = ("daemon", "stage", "reason", "who")
_PROBLEMS = (
    ("deferrals", "message deferral detail", ("daemon", "reason")),
    ("bounces", "message bounce detail (by relay)", ("relay", "reason")),
    ("rejects", "message reject detail", _REJECT_KEYS),
    ("reject_warnings", "message reject warning detail", _REJECT_KEYS),
    ("holds", "message hold detail", _REJECT_KEYS),
    ("discards", "message discard detail", _REJECT_KEYS),
    ("smtp_failures", "smtp delivery failures", ("reason", "peer")),
    ("warnings", "Warnings", ("daemon", "text")),
    ("errors", "Errors", ("daemon", "text")),
    ("fatal", "Fatal Errors", ("daemon", "text")),
    ("panics", "Panics", ("daemon", "text")),
)


def _problems(r: dict[str, Any], o: RenderOptions, out: list[str]) -> None:
    for key, title, keys in _PROBLEMS:
        n = section_rows(o, key)
        if n != 0:
            _nested(out, title, r["rejects"]["detail"] if key == "rejects" else r[key], keys, n, o.quiet)
    _title(out, "Master daemon messages")
    if not r["master"]:
        _none(out, o.quiet)
    for row in r["master"]:
        out.append(f" {row['count']:6d}   {clean(row['text'])}")


def _counts(out: list[str], title: str, counts: dict[str, int], o: RenderOptions) -> None:
    if not counts and o.quiet:
        return
    out.append(f" {title}:")
    if not counts:
        out.append("    none")
    for key, value in limit(list(counts.items()), own_rows(o)):
        out.append(f"    {value:8d}  {clean(key)}")


def _extras(r: dict[str, Any], o: RenderOptions, out: list[str]) -> None:
    """postlens's own sections; with -q, only those with something in them."""
    d = r["delays"]
    if d["deliveries"] or not o.quiet:
        _title(out, "Delivery delays")
        out.append(
            f" {d['deliveries']} deliveries: average {_secs(d['avg'])}, p50 {_secs(d['p50'])}, "
            f"p90 {_secs(d['p90'])}, p99 {_secs(d['p99'])}, max {_secs(d['max'])}"
        )
        out.append(" where the time goes (average per delivery):")
        for name, label in (
            ("before_qmgr", "before the queue manager"), ("in_queue", "in the queue"),
            ("connection", "connection setup"), ("transmission", "transmission"),
        ):  # fmt: skip
            out.append(f"    {d['split'][name]['avg']:10.3f} s  {label}")
    if r["notifications"]["total"] or not o.quiet:
        _title(out, "Notifications")
        out.append(f" {r['notifications']['total']} notices generated by Postfix")
        _counts(out, "by kind", r["notifications"]["by_kind"], o)
    if any(r["tls"][side]["connections"] for side in ("inbound", "outbound")) or not o.quiet:
        _title(out, "TLS")
        for side in ("inbound", "outbound"):
            tls = r["tls"][side]
            out.append(f" {side}: {tls['connections']} connections")
            _counts(out, "protocol", tls["by_protocol"], o)
            _counts(out, "trust", tls["by_trust"], o)
    screen = r["postscreen"]
    if screen["by_action"] or screen["dnsbl_listings"] or not o.quiet:
        _title(out, "Postscreen")
        _counts(out, "verdicts", screen["by_action"], o)
        _counts(out, "DNSBL listings", screen["dnsbl_listings"], o)
    checks = r["content_checks"]
    if checks or not o.quiet:
        _title(out, "Content checks")
        if not checks:
            out.append(" none (amavis, spamd, policyd-spf, OpenDKIM, OpenDMARC, postgrey)")
        for check, verdicts in checks.items():
            _counts(out, check, verdicts, o)
    auth = r["auth"]
    if auth["failures"]["total"] or auth["successes"]["total"] or not o.quiet:
        _title(out, "SASL authentication")
        for side in ("failures", "successes"):
            a = auth[side]
            out.append(f" {side}: {a['total']}")
            _counts(out, "by IP", a["by_ip"], o)
            _counts(out, "by username", a["by_username"], o)
            _counts(out, "by method", a["by_method"], o)


def _coverage(r: dict[str, Any], out: list[str]) -> None:
    c = r["coverage"]
    _title(out, "Coverage")
    for key in ("lines", "recognised", "unrecognised", "malformed", "other_programs",
                "outside_period", "crlf", "invalid_utf8"):  # fmt: skip
        out.append(f" {c[key]:10d}  {key.replace('_', ' ')}")
    for key in ("unrecognised_examples", "malformed_examples"):
        if c[key]:
            out.append(f" {key.replace('_', ' ')}:")
            out.extend("    " + clean(x) for x in c[key])
    bad = [i for i in r.get("inputs", []) if i["error"]]
    if bad:
        out.append(" inputs not read:")
        out.extend(f"    {clean(i['source'])}: {clean(i['error'])}" for i in bad)


def render_text(r: dict[str, Any], o: RenderOptions) -> str:
    out: list[str] = []
    period = r["period"]
    if period["first"]:
        out.append(f"{o.title}: {period['first']} to {period['last']}")
    else:
        out.append(f"{o.title}: no mail in the log")
    _grand_totals(r, out)
    if o.by_host:
        _per_host(r, o, out)
    if o.smtpd_stats:
        _smtpd(r, o, out)
    if o.problems_first:
        _problems(r, o, out)
    _per_day(r, o, out)
    _per_hour(r, out)
    _delivery_domains(r, o, out)
    _receiving_domains(r, o, out)
    _users(r, o, out)
    _no_size(r, o, out)
    if not o.problems_first:
        _problems(r, o, out)
    _extras(r, o, out)
    _coverage(r, out)
    return "\n".join(out) + "\n"
