"""Trace hits as readable text, JSON or JSON Lines (see docs/trace.md)."""

from __future__ import annotations

import json
from typing import Any

from postlens.render import clean

TRACE_FORMATS = ("text", "json", "jsonl")
_INTERNAL = ("first_ts", "last_ts")


def public(hit: dict[str, Any]) -> dict[str, Any]:
    """A hit without its sort keys: what JSON output carries."""
    out = {k: v for k, v in hit.items() if k not in _INTERNAL}
    out["recipients"] = [
        {**r, "attempts": [{k: v for k, v in a.items() if k != "ts"} for a in r["attempts"]]}
        for r in hit["recipients"]
    ]
    return out


def _hit_text(h: dict[str, Any]) -> list[str]:
    ids = " -> ".join(h["queue_ids"]) or "NOQUEUE"
    out = [f"{clean(h['host'])} {ids}  {clean(h['state'].upper())}: {clean(h['verdict'])}"]
    first = f"  {h['first']}  "
    pad = " " * len(first)
    who = f"from <{clean(h['sender'] or '')}>" if h["sender"] is not None else "sender not in the log"
    size = f" ({h['size']} bytes)" if h["size"] is not None else ""
    msgid = f", message-id <{clean(h['message_id'])}>" if h["message_id"] else ""
    out.append(f"{first}{who}{size}{msgid}")
    client = h["client"]
    if client["ip"]:
        sasl = f", SASL {clean(h['sasl_user'])} ({clean(h['sasl_method'])})" if h["sasl_user"] else ""
        helo = f", HELO {clean(h['helo'])}" if h["helo"] else ""
        out.append(f"{pad}client {clean(client['host'])}[{clean(client['ip'])}]{helo}{sasl}")
        if h["tls"]:
            t = h["tls"]
            out.append(f"{pad}{clean(t['trust'])} TLS, {clean(t['protocol'])} with {clean(t['cipher'])}")
    elif h["origin"]:
        out.append(f"{pad}submitted by {clean(h['origin'])}")
    for hop in h["filter_hops"][:1]:
        out.append(f"  {hop['time']}  content filter {clean(hop['relay'])}, re-queued as {clean(hop['as'])}")
    for r in h["recipients"]:
        orig = f" (was {clean(r['orig_to'])})" if r["orig_to"] else ""
        out.append(f"  {clean(r['to'])}{orig}: {clean(r['state'])}")
        for a in r["attempts"]:
            dsn = f" dsn {clean(a['dsn'])}" if a["dsn"] else ""
            out.append(
                f"      {a['time']}  {clean(a['status'])} via {clean(a['relay'])} after {a['delay']} s"
                f"{dsn}: {clean(a['reply'])}"
            )
    for rej in h["rejects"]:
        out.append(
            f"  {rej['time']}  {clean(rej['action'])} at {clean(rej['stage'])}: {clean(rej['reason'])}"
        )
    for n in h["notices"]:
        out.append(f"  notice to the {clean(n['kind'])}: queue ID {clean(n['queue_id'])}")
    if "raw" in h:
        out.append("  log lines:")
        out.extend(f"    {line}" for line in h["raw"])
    return out


def render_trace(hits: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([public(h) for h in hits], indent=2, ensure_ascii=False) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(public(h), ensure_ascii=False) + "\n" for h in hits)
    blocks = ["\n".join(_hit_text(h)) for h in hits]
    return "\n\n".join(blocks) + ("\n" if blocks else "")
