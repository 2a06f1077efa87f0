"""Turns a report's tally into the documented result dict (docs/json.md).

Every list is sorted by count, then by name, so the same input always gives the
same bytes.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

from postlens.analyses.report import TOTAL_FIELDS, TRAFFIC, percentile
from postlens.analyses.tally import Tally

SCHEMA_VERSION = 1
PERCENTILES = (50, 90, 99)


def _ranked(counter: Counter[Any] | dict[Any, int]) -> list[tuple[Any, int]]:
    return sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))


def _grouped(counter: Counter[tuple[str, str]], prefix: str) -> dict[str, int]:
    return {k[1]: v for k, v in _ranked(counter) if k[0] == prefix}


def _secs(centis: int) -> float:
    return round(centis / 100, 2)


def _by_key(counter: Counter[tuple[Any, str]]) -> dict[Any, dict[str, int]]:
    out: dict[Any, dict[str, int]] = defaultdict(dict)
    for (key, field), value in counter.items():
        out[key][field] = value
    return out


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def build_result(t: Tally) -> dict[str, Any]:
    c = t.counts.get
    totals_c = c("totals", Counter())
    totals = {f: totals_c.get(f, 0) for f in TOTAL_FIELDS}
    totals["senders"] = len(t.sets.get("senders", ()))
    totals["sending_hosts_domains"] = len(t.sets.get("sending_domains", ()))
    totals["recipients"] = len(t.sets.get("recipients", ()))
    totals["recipient_hosts_domains"] = len(t.sets.get("recipient_domains", ()))
    span = t.maxima.get("span", {})
    first = -span["neg_first"] if "neg_first" in span else None
    last = span.get("last")

    day_c = c("day", Counter())
    days = sorted({d for d, _ in day_c} | set(c("days", Counter())))
    per_day = [{"date": d, **{f: day_c.get((d, f), 0) for f in TRAFFIC}} for d in days]
    hour_c = c("hour", Counter())
    per_hour = [{"hour": h, **{f: hour_c.get((h, f), 0) for f in TRAFFIC}} for h in range(24)]

    hist_all: dict[str, Counter[int]] = defaultdict(Counter)
    for (scope, value), n in c("delay_hist", Counter()).items():
        hist_all[scope][value] += n

    rdom = _by_key(c("rdom", Counter()))
    rmax = t.maxima.get("rdom_max", {})
    delivery_domains = []
    for dom, f in rdom.items():
        n = f.get("count", 0)
        hist = hist_all.get(dom, Counter())
        delivery_domains.append(
            {
                "domain": dom,
                "delivered": n,
                "bytes": f.get("bytes", 0),
                "deferred": f.get("defers", 0),
                "bounced": f.get("bounced", 0),
                "avg_delay": round(f.get("delay", 0) / n / 100, 2) if n else 0.0,
                "max_delay": _secs(rmax.get(dom, 0)),
                **{f"p{p}": percentile(hist, p) for p in PERCENTILES},
            }
        )
    delivery_domains.sort(key=lambda r: (-r["delivered"], -r["deferred"], -r["bounced"], r["domain"]))

    sdom = _by_key(c("sdom", Counter()))
    receiving = [
        {"domain": d, "received": f.get("count", 0), "bytes": f.get("bytes", 0)} for d, f in sdom.items()
    ]
    receiving.sort(key=lambda r: (-r["received"], r["domain"]))

    def users(name: str) -> dict[str, list[dict[str, Any]]]:
        per = _by_key(c(name, Counter()))
        rows = [
            {"address": a, "count": f.get("count", 0), "bytes": f.get("bytes", 0)} for a, f in per.items()
        ]
        return {
            "by_count": sorted(rows, key=lambda r: (-r["count"], r["address"])),
            "by_size": sorted(rows, key=lambda r: (-r["bytes"], r["address"])),
        }

    overall = hist_all.get("", Counter())
    n_del = sum(overall.values())
    split = c("delay_split", Counter())
    n_split = split.get("n", 0)
    delays = {
        "deliveries": n_del,
        "avg": round(sum(v * k for k, v in overall.items()) / n_del / 100, 2) if n_del else 0.0,
        "max": _secs(max(overall)) if overall else 0.0,
        **{f"p{p}": percentile(overall, p) for p in PERCENTILES},
        "split": {
            name: {
                "total": _secs(split.get(key, 0)),
                "avg": round(split.get(key, 0) / n_split / 100, 3) if n_split else 0.0,
            }
            for key, name in (
                ("a", "before_qmgr"),
                ("b", "in_queue"),
                ("c", "connection"),
                ("d", "transmission"),
            )
        },
    }

    def detail(name: str) -> list[dict[str, Any]]:
        return [
            {"daemon": k[0], "stage": k[1], "reason": k[2], "who": k[3], "count": v}
            for k, v in _ranked(c(name, Counter()))
        ]

    def diag(level: str) -> list[dict[str, Any]]:
        return [{"daemon": k[0], "text": k[1], "count": v} for k, v in _ranked(c("diag_" + level, Counter()))]

    def auth(name: str) -> dict[str, Any]:
        a = c(name, Counter())
        return {
            "total": a.get(("total", ""), 0),
            "by_ip": _grouped(a, "ip"),
            "by_username": _grouped(a, "user"),
            "by_method": _grouped(a, "method"),
            "by_service": _grouped(a, "service"),
        }

    def tls(name: str) -> dict[str, Any]:
        a = c(name, Counter())
        return {
            "connections": a.get(("total", ""), 0),
            "by_protocol": _grouped(a, "protocol"),
            "by_trust": _grouped(a, "trust"),
            "by_cipher": _grouped(a, "cipher"),
        }

    conn = c("smtpd_conn", Counter())
    smax = t.maxima.get("smtpd_max", {})
    n_conn = conn.get(("all", ""), 0)

    def conn_rows(kind: str, keys: list[Any]) -> list[dict[str, Any]]:
        return [
            {
                kind: k,
                "connections": conn.get((kind, k), 0),
                "seconds": conn.get((kind + "_secs", k), 0),
                "avg": round(conn.get((kind + "_secs", k), 0) / conn[(kind, k)], 1)
                if conn.get((kind, k))
                else 0.0,
                "max": smax.get((kind, k), 0),
            }
            for k in keys
        ]

    conn_doms = [k for (kind, k), _ in _ranked(conn) if kind == "dom"]
    smtpd = {
        "connects": c("smtpd", Counter()).get("connects", 0),
        "connections": n_conn,
        "hosts_domains": len(conn_doms),
        "avg_connect_time": round(conn.get(("secs", ""), 0) / n_conn, 1) if n_conn else 0.0,
        "total_connect_time": conn.get(("secs", ""), 0),
        "per_day": conn_rows("day", sorted(k for (kind, k) in conn if kind == "day")),
        "per_hour": conn_rows("hour", list(range(24))),
        "by_domain": conn_rows("dom", conn_doms),
    }

    cov = c("coverage", Counter())
    messages = c("messages", Counter())
    return {
        "schema": SCHEMA_VERSION,
        "period": {"first": _iso(first), "last": _iso(last), "days": len(days)},
        "totals": totals,
        "messages": {
            k: messages.get(k, 0)
            for k in (
                "complete",
                "incomplete",
                "aborted",
                "reinjected",
                "hops",
                "notice_deliveries",
                "no_size",
            )
        },
        "per_day": per_day,
        "per_hour": per_hour,
        "delivery_domains": delivery_domains,
        "receiving_domains": receiving,
        "senders": users("sender"),
        "recipients": users("recipient"),
        "no_size": [text for _, text in sorted(t.samples.get("no_size", []))],
        "delays": delays,
        "deferrals": [
            {"daemon": k[0], "reason": k[1], "count": v} for k, v in _ranked(c("deferral_reasons", Counter()))
        ],
        "bounces": [
            {"relay": k[0], "reason": k[1], "count": v} for k, v in _ranked(c("bounce_reasons", Counter()))
        ],
        "rejects": {
            "by_kind": dict(_ranked(c("reject_kind", Counter()))),
            "by_client": dict(_ranked(c("reject_client", Counter()))),
            "by_code": dict(_ranked(c("reject_code", Counter()))),
            "detail": detail("detail_rejected"),
        },
        "reject_warnings": detail("detail_reject_warnings"),
        "holds": detail("detail_held"),
        "discards": detail("detail_discarded"),
        "other_actions": dict(_ranked(c("actions", Counter()))),
        "smtp_failures": [
            {"reason": k[0], "peer": k[1], "count": v} for k, v in _ranked(c("smtp_failures", Counter()))
        ],
        "warnings": diag("warning"),
        "errors": diag("error"),
        "fatal": diag("fatal"),
        "panics": diag("panic"),
        "master": [{"text": k, "count": v} for k, v in _ranked(c("master", Counter()))],
        "notifications": {
            "total": totals["notifications"],
            "by_kind": dict(_ranked(c("notice_kind", Counter()))),
        },
        "tls": {"inbound": tls("tls_in"), "outbound": tls("tls_out")},
        "postscreen": {
            "by_action": dict(_ranked(c("screen", Counter()))),
            "dnsbl_listings": dict(_ranked(c("dnsbl", Counter()))),
        },
        "auth": {"failures": auth("auth_fail"), "successes": auth("auth_ok")},
        "smtpd": smtpd,
        "verify": dict(_ranked(c("verify", Counter()))),
        "coverage": {
            "lines": cov.get("lines", 0),
            "recognised": cov.get("recognised", 0),
            "unrecognised": cov.get("unrecognised", 0),
            "malformed": cov.get("malformed", 0),
            "other_programs": cov.get("foreign", 0),
            "outside_period": cov.get("outside", 0),
            "crlf": cov.get("crlf", 0),
            "invalid_utf8": cov.get("invalid_utf8", 0),
            "unrecognised_examples": [text for _, text in sorted(t.samples.get("unrecognised", []))],
            "malformed_examples": [text for _, text in sorted(t.samples.get("malformed", []))],
        },
    }
