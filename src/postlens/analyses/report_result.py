"""Turns a report's tally into the documented result dict (docs/json.md).

Every list is sorted by count, then by name, so the same input always gives the
same bytes.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date
from typing import Any

from postlens.analyses.report import COUNTED_FIELDS, TOTAL_FIELDS, TRAFFIC, TimeBuckets, centis, percentile
from postlens.analyses.tally import Counts, Tally
from postlens.dates import iso_utc

SCHEMA_VERSION = 1
PERCENTILES = (50, 90, 99)


def _ranked(counter: Counts) -> list[tuple[Any, int]]:
    return sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))


def _content_checks(verdicts: Counts) -> dict[str, dict[str, int]]:
    """Verdicts by check (amavis, spamassassin, spf, dkim, dmarc, greylisting), most first."""
    out: dict[str, dict[str, int]] = {}
    for (check, verdict), n in _ranked(verdicts):
        out.setdefault(check, {})[verdict] = n
    return dict(sorted(out.items()))


def _grouped(counter: Counts, prefix: str) -> dict[str, int]:
    return {k[1]: v for k, v in _ranked(counter) if k[0] == prefix}


def _secs(centis: int) -> float:
    return round(centis / 100, 2)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else iso_utc(ts)


def build_result(t: Tally, buckets: TimeBuckets) -> dict[str, Any]:
    c = t.counts.get
    v = t.vectors.get
    totals = dict.fromkeys(TOTAL_FIELDS, 0)
    by_host: dict[str, dict[str, Any]] = {}
    for host, row in v("host_totals", {}).items():
        by_host[host] = {"host": host, **dict(zip(COUNTED_FIELDS, row, strict=True))}
        for field, n in zip(COUNTED_FIELDS, row, strict=True):
            totals[field] += n
    hosts = [by_host[h] for h in sorted(by_host)]
    senders = v("sender", {})
    recipients = v("recipient", {})
    rdom = v("rdom", {})
    sdom = v("sdom", {})
    totals["senders"] = len(senders)
    totals["sending_hosts_domains"] = len(sdom)
    totals["recipients"] = len(recipients)
    totals["recipient_hosts_domains"] = sum(1 for row in rdom.values() if row[0])
    span = t.maxima.get("span", {})
    first = -span["neg_first"] if "neg_first" in span else None
    last = span.get("last")

    by_day: Counter[tuple[str, str]] = Counter()
    by_hour: Counter[tuple[int, str]] = Counter()
    received_at: Counter[tuple[str, int]] = Counter()
    for quarter, row in v("traffic", {}).items():
        day, hour = buckets.day_hour(quarter)
        for what, n in zip(TRAFFIC, row, strict=True):
            if n:
                by_day[(day, what)] += n
                by_hour[(hour, what)] += n
                if what == "received":
                    received_at[day, hour] += n
    days = sorted({d for d, _ in by_day})
    per_day = [{"date": d, **{f: by_day.get((d, f), 0) for f in TRAFFIC}} for d in days]
    per_hour = [{"hour": h, **{f: by_hour.get((h, f), 0) for f in TRAFFIC}} for h in range(24)]

    hist_by_dom: dict[str, Counter[int]] = defaultdict(Counter)
    overall: Counter[int] = Counter()
    for (dom, value), n in c("delay_hist", Counter()).items():
        hist_by_dom[dom][value] += n
        overall[value] += n

    rmax = t.maxima.get("rdom_max", {})
    delivery_domains = []
    for dom, (n, size, delay, defers, bounced) in rdom.items():
        hist = hist_by_dom.get(dom, Counter())
        delivery_domains.append(
            {
                "domain": dom,
                "delivered": n,
                "bytes": size,
                "deferred": defers,
                "bounced": bounced,
                "avg_delay": round(delay / n / 100, 2) if n else 0.0,
                "max_delay": _secs(rmax.get(dom, 0)),
                **{f"p{p}": percentile(hist, p) for p in PERCENTILES},
            }
        )
    delivery_domains.sort(key=lambda r: (-r["delivered"], -r["deferred"], -r["bounced"], r["domain"]))

    receiving = [{"domain": d, "received": row[0], "bytes": row[1]} for d, row in sdom.items()]
    receiving.sort(key=lambda r: (-r["received"], r["domain"]))

    def users(rows_by_addr: dict[Any, list[int]]) -> dict[str, list[dict[str, Any]]]:
        rows = [{"address": a, "count": row[0], "bytes": row[1]} for a, row in rows_by_addr.items()]
        return {
            "by_count": sorted(rows, key=lambda r: (-r["count"], r["address"])),
            "by_size": sorted(rows, key=lambda r: (-r["bytes"], r["address"])),
        }

    n_del = sum(overall.values())
    split = delay_split(c("delays", Counter()))
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

    conn_q = v("conn_quarter", {})
    conn_q_max = t.maxima.get("conn_quarter", {})
    by_day_conn: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    by_hour_conn: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    for quarter, (n, secs) in conn_q.items():
        day, hour = buckets.day_hour(quarter)
        for row in (by_day_conn[day], by_hour_conn[hour]):
            row[0] += n
            row[1] += secs
            row[2] = max(row[2], conn_q_max.get(quarter, 0))
    conn_dom = v("conn_dom", {})
    dom_max = t.maxima.get("conn_dom", {})

    def conn_row(kind: str, key: Any, n: int, secs: int, mx: int) -> dict[str, Any]:
        avg = round(secs / n, 1) if n else 0.0
        return {kind: key, "connections": n, "seconds": secs, "avg": avg, "max": mx}

    n_conn = sum(row[0] for row in conn_dom.values())
    total_secs = sum(row[1] for row in conn_dom.values())
    smtpd = {
        "connects": c("smtpd", Counter()).get("connects", 0),
        "connections": n_conn,
        "hosts_domains": len(conn_dom),
        "avg_connect_time": round(total_secs / n_conn, 1) if n_conn else 0.0,
        "total_connect_time": total_secs,
        "per_day": [conn_row("day", d, *by_day_conn[d]) for d in sorted(by_day_conn)],
        "per_hour": [conn_row("hour", h, *by_hour_conn.get(h, [0, 0, 0])) for h in range(24)],
        "by_domain": [
            conn_row("domain", d, row[0], row[1], dom_max.get(d, 0))
            for d, row in sorted(conn_dom.items(), key=lambda kv: (-kv[1][0], kv[0]))
        ],
    }

    cov = c("coverage", Counter())
    messages = c("messages", Counter())
    return {
        "schema": SCHEMA_VERSION,
        "period": {"first": _iso(first), "last": _iso(last), "days": len(days)},
        "totals": totals,
        "hosts": hosts,
        "messages": {
            k: messages.get(k, 0)
            for k in (
                "complete",
                "incomplete",
                "aborted",
                "reinjected",
                "hops",
                "filter_discards",
                "notice_deliveries",
                "no_size",
            )
        },
        # relays that look like content filters --content-filter does not name (their hops count
        # as delivered and their re-injections as received)
        "unnamed_filters": [{"relay": k, "hops": v} for k, v in _ranked(c("unnamed_filters", Counter()))],
        "per_day": per_day,
        "per_hour": per_hour,
        "weekly": weekly_pattern(received_at, days),
        "delivery_domains": delivery_domains,
        "receiving_domains": receiving,
        "senders": users(senders),
        "recipients": users(recipients),
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
        "content_checks": _content_checks(c("verdicts", Counter())),
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


def delay_split(written: Counts) -> Counter[str]:
    """Centiseconds in each stage (a, b, c, d) of Postfix's ``delays=a/b/c/d`` and the number
    of deliveries (n), from how often each value was written."""
    split: Counter[str] = Counter()
    for delays, n in written.items():
        try:
            a, b, c, d = (centis(float(part)) for part in delays.split("/"))
        except ValueError:  # not four numbers
            continue
        for stage, value in zip("abcd", (a, b, c, d), strict=True):
            split[stage] += value * n
        split["n"] += n
    return split


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def weekly_pattern(counts: Counts, days: list[str]) -> dict[str, Any]:
    """Messages per hour of day by weekday, averaged over the ``days`` (ISO dates) of each
    weekday: when the server is busy, for planning campaigns and capacity."""
    per_weekday = [0] * 7
    for d in days:
        per_weekday[date.fromisoformat(d).weekday()] += 1
    totals: Counter[tuple[int, int]] = Counter()
    for (d, hour), n in counts.items():
        totals[date.fromisoformat(d).weekday(), hour] += n
    return {
        "weekdays": list(WEEKDAYS),
        "received": [
            [round(totals[w, h] / per_weekday[w], 1) if per_weekday[w] else 0 for h in range(24)]
            for w in range(7)
        ],
    }
