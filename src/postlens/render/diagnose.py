"""The results of ``postlens problems``, ``security`` and ``anomalies`` as text or JSON.

Every value from the log passes through :func:`clean` before it reaches a terminal.
"""

from __future__ import annotations

from typing import Any

from postlens.render import clean, limit
from postlens.render.json import render_json

DIAGNOSE_FORMATS = ("text", "json")


def render_diagnosis(kind: str, result: dict[str, Any], fmt: str, top: int = 10) -> str:
    if fmt == "json":
        return render_json(result)
    lines = {"problems": _problems, "security": _security, "anomalies": _anomalies}[kind](result, top)
    return "\n".join(lines) + "\n"


def render_listings(listings: list[Any], fmt: str) -> str:
    """``security --check-rbl``: one row per address and blocklist."""
    rows = [{"ip": x.ip, "zone": x.zone, "listed": x.listed, "answers": list(x.answers), "text": x.text,
             "error": x.error} for x in listings]  # fmt: skip
    if fmt == "json":
        return render_json({"listings": rows})
    out = ["postlens security --check-rbl"]
    state = {True: "LISTED", False: "not listed"}
    _table(out, [[r["ip"], r["zone"], "error" if r["error"] else state[r["listed"]],
                  r["error"] or r["text"] or " ".join(r["answers"])] for r in rows],
           ["ip", "list", "state", "detail"])  # fmt: skip
    return "\n".join(out) + "\n"


def _title(out: list[str], title: str) -> None:
    out += ["", title, "-" * len(title)]


def _table(out: list[str], rows: list[list[Any]], header: list[str]) -> None:
    """Columns as wide as their widest cell; numbers right-aligned."""
    if not rows:
        out.append(" none")
        return
    cells = [header] + [[clean(c) for c in row] for row in rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(header))]
    numeric = [all(isinstance(row[i], int | float) for row in rows) for i in range(len(header))]
    for r in cells:
        out.append(
            " "
            + "  ".join(
                str(c).rjust(w) if num else str(c).ljust(w)
                for c, w, num in zip(r, widths, numeric, strict=True)
            ).rstrip()
        )


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _trend(row: dict[str, Any]) -> str:
    prev = row["previous"]
    if prev is None:
        return ""
    before, now = prev["messages"], row["messages"]
    if before == 0:
        return "new" if now else ""
    return f"{100 * (now - before) / before:+.0f}%"


def _problems(r: dict[str, Any], top: int) -> list[str]:
    out = ["postlens problems: why mail fails"]
    p = r["period"]
    span = f"{p['start'] or p['first_line'] or '-'} .. {p['end'] or p['last_line'] or '-'}"
    out.append(
        f"period {span}; {r['replies']} failure replies, {_share(r['classified'], r['replies'])} classified"
    )
    if not p["compared"]:
        out.append("(give -d or --since for a trend against the period before)")
    _title(out, "Problems by messages hit")
    rows = [
        [i, row["title"], row["messages"], row["recipients"], row["replies"]["deferred"],
         row["replies"]["bounced"], row["replies"]["expired"], row["replies"]["reject"], _trend(row)]
        for i, row in enumerate(r["problems"], 1)
    ]  # fmt: skip
    _table(out, rows, ["#", "reason", "messages", "recipients", "deferred", "bounced", "expired", "rejected",
                       "trend"])  # fmt: skip
    for i, row in enumerate(limit(r["problems"], top), 1):
        _title(out, f"{i}. {row['title']} ({row['id']})")
        out.append(f" {row['messages']} messages, {row['recipients']} recipients; "
                   f"first {row['first_seen'] or '-'}, last {row['last_seen'] or '-'}")  # fmt: skip
        out.append(f" why:  {row['explanation']}")
        out.append(f" do:   {row['action']}")
        for prov in row["providers"]:
            out.append(f" list: {clean(prov['name'])} ({prov['replies']} replies): {prov['url']}")
        if row["domains"]:
            out.append(
                " domains: " + ", ".join(f"{clean(d['domain'])} ({d['recipients']})" for d in row["domains"])
            )
        if row["hosts"]:
            out.append(
                " hosts:   " + ", ".join(f"{clean(h['host'])} ({h['recipients']})" for h in row["hosts"])
            )
        for c in row["codes"]:
            code = " ".join(x for x in (c["code"], c["dsn"]) if x) or "no code"
            meaning = f": {c['meaning']}" if c["meaning"] else ""
            out.append(f" code {clean(code)} x{c['replies']}{meaning}")
        if row["example"]:
            out.append(f" e.g.  {clean(row['example'])[:300]}")
    return out


def _security(r: dict[str, Any], top: int) -> list[str]:
    out = ["postlens security: who is attacking"]
    f = r["failures"]
    out.append(f"{f['total']} failed logins, {r['logins']} successful")
    _title(out, "Findings")
    _table(out, [[x["severity"], x["kind"].replace("_", " "), x["explanation"]] for x in r["findings"]],
           ["severity", "finding", "what"])  # fmt: skip
    _title(out, "Failed logins by client")
    rows = [
        [x["ip"], x["host"], x["failures"], x["usernames"], x["first"], x["last"]]
        for x in limit(f["by_ip"], top)
    ]
    _table(out, rows, ["ip", "host", "failures", "usernames", "first", "last"])
    _title(out, "Failed logins by subnet")
    _table(out, [[x["subnet"], x["failures"]] for x in limit(f["by_subnet"], top)], ["subnet", "failures"])
    _title(out, "Failed logins by username")
    users = [[x["username"] or "(not logged)", x["failures"]] for x in limit(f["by_username"], top)]
    _table(out, users, ["username", "failures"])
    _title(out, "Failed logins by method and service")
    _table(out, [[x["method"], x["failures"]] for x in f["by_method"]], ["method", "failures"])
    _table(out, [[x["service"], x["failures"]] for x in f["by_service"]], ["service", "failures"])
    _title(out, "Rejected clients")
    _table(out, [[x["ip"], x["host"], x["rejects"]] for x in limit(r["rejected_clients"], top)],
           ["ip", "host", "rejects"])  # fmt: skip
    _title(out, "Rejected by blocklists")
    _table(
        out,
        [[x["ip"], x["list"], x["count"]] for x in limit(r["rbl_rejects"], top)],
        ["ip", "list", "rejects"],
    )
    _title(out, "postscreen verdicts")
    _table(
        out,
        [[x["ip"], x["verdict"], x["count"]] for x in limit(r["postscreen"], top)],
        ["ip", "verdict", "count"],
    )
    _title(out, "Connections lost after AUTH")
    _table(out, [[x["ip"], x["count"]] for x in limit(r["lost_after_auth"], top)], ["ip", "count"])
    _title(out, "Mail by authenticated and local sender")
    rows = [
        [x["sender"], x["via"], x["messages"], x["recipients"], x["bounced"], x["deferred"], x["client_ips"],
         x["busiest_hour"]]
        for x in limit(r["senders"], top)
    ]  # fmt: skip
    _table(
        out, rows, ["sender", "via", "messages", "recipients", "bounced", "deferred", "IPs", "busiest hour"]
    )
    return out


def _anomalies(r: dict[str, Any], top: int) -> list[str]:
    out = ["postlens anomalies: what is abnormal"]
    _title(out, "Anomalies")
    _table(out, [[a["start"], a["severity"], a["kind"], a["explanation"]] for a in r["anomalies"]],
           ["from", "severity", "kind", "what"])  # fmt: skip
    _title(out, "Messages received per hour of day (average per day)")
    pattern = r["pattern"]
    rows = [
        [day, *(f"{v:g}" for v in values)]
        for day, values in zip(pattern["weekdays"], pattern["received"], strict=True)
    ]
    _table(out, rows, ["", *(f"{h:02d}" for h in range(24))])
    return out
