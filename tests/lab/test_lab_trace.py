"""postlens trace against the lab's plan: every message a real Postfix handled is found by
its Message-ID, queue ID, sender and recipients, in the state the lab planned for it."""

from __future__ import annotations

import json
from typing import Any

import pytest

import postlens

LAB_FIXTURES = ["lab_small", "lab_small_syslog"]


@pytest.fixture(params=LAB_FIXTURES)
def lab(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(request.param)


def _planned(lab: Any) -> list[dict[str, Any]]:
    return json.loads(lab.messages_path.read_text())


def _trace(lab: Any, **query: Any) -> list[dict[str, Any]]:
    hits, problems = postlens.trace([str(lab.log_path)], **query)
    assert problems == []
    return hits


def _states(hit: dict[str, Any]) -> dict[str, str]:
    """Accepted recipient (as the client gave it) -> final state."""
    accepted = [r for r in hit["recipients"] if r["state"] != "rejected"] or hit["recipients"]
    return {r["orig_to"] or r["to"]: r["state"] for r in accepted}


def test_every_planned_message_by_message_id(lab: Any) -> None:
    everything = _trace(lab)
    by_msgid: dict[str, list[dict[str, Any]]] = {}
    for hit in everything:
        if hit["message_id"]:
            by_msgid.setdefault(hit["message_id"], []).append(hit)
    planned = _planned(lab)
    assert len(planned) > 40
    for m in planned:
        msgid = m["message_id"].strip("<>")
        hits = by_msgid.get(msgid, [])
        # dropped, or rejected at a header, before cleanup logs a Message-ID: found by sender
        unlogged = (
            "rejected" if not m["accepted"] else "discarded" if "discarded" in m["outcome"].values() else ""
        )
        if unlogged:
            hits = [
                h
                for h in everything
                if h["state"] == unlogged
                and h["sender"] == m["sender"]
                and [r["to"] for r in h["recipients"]] == m["rcpts"]
            ]
        assert len(hits) == 1, (m["category"], msgid, [h["queue_ids"] for h in hits])
        (hit,) = hits
        if not m["accepted"]:
            assert hit["state"] == "rejected"
            continue
        assert _states(hit) == m["outcome"], (m, hit["recipients"])
        assert len(hit["queue_ids"]) == (2 if m["filtered"] else 1), m
        assert hit["origin"] == ("pickup" if m["via"] == "pickup" else "smtpd")
        if m["auth"]:
            assert hit["sasl_user"] == m["auth"]["user"]


def test_found_by_queue_id_sender_and_recipient(lab: Any) -> None:
    hits = [h for h in _trace(lab) if h["kind"] == "message" and h["message_id"]]
    planned = {m["message_id"].strip("<>"): m for m in _planned(lab)}
    ours = [h for h in hits if h["message_id"] in planned]
    logged = {k for k, m in planned.items() if m["accepted"] and "discarded" not in m["outcome"].values()}
    assert sorted(h["message_id"] for h in ours) == sorted(logged)
    for hit in ours[:: max(1, len(ours) // 12)]:  # a dozen spread over the run: each query reads the log
        m = planned[hit["message_id"]]
        for qid in hit["queue_ids"]:
            assert [h["message_id"] for h in _trace(lab, qids=(qid,))] == [hit["message_id"]]
        assert hit["message_id"] in {h["message_id"] for h in _trace(lab, senders=(m["sender"],))}
        for rcpt in m["outcome"]:
            assert hit["message_id"] in {h["message_id"] for h in _trace(lab, recipients=(rcpt,))}


def test_noqueue_rejects_by_client(lab: Any) -> None:
    refused = _trace(lab, clients=("127.0.0.4", "127.0.0.5", "127.0.0.6"))
    assert refused and {h["kind"] for h in refused} == {"noqueue"}
    assert {h["state"] for h in refused} == {"rejected"}
    by_client = lab.truth["rejects_by_client"]
    assert len(refused) == sum(by_client[ip] for ip in ("127.0.0.4", "127.0.0.5", "127.0.0.6"))


def test_export_agrees_with_the_report(lab: Any, tmp_path: Any) -> None:
    out = tmp_path / "deliveries.jsonl"
    count, problems = postlens.export([str(lab.log_path)], table="deliveries", fmt="jsonl", output=str(out))
    assert problems == []
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == count
    totals = postlens.report([str(lab.log_path)])[0]["totals"]
    sent = [r for r in rows if r["status"] == "sent" and not r["reply"].startswith("forwarded as")]
    assert len(sent) == totals["delivered"] == lab.truth["delivered"]
    assert sum(r["status"] == "deferred" for r in rows) == totals["deferrals"]
    messages, _ = postlens.export([str(lab.log_path)], output=str(tmp_path / "m.csv"))
    assert messages == len([h for h in _trace(lab) if h["kind"] == "message"])


def test_database_trace_equals_file_trace(lab: Any, new_history: Any) -> None:
    """A trace from the history reads only the lines its keys lead to, and finds the same."""
    db = new_history()
    postlens.ingest([str(lab.log_path)], db=db, keep_days=0)
    planned = _planned(lab)[::3]
    everything = _trace(lab)
    queries: list[dict[str, Any]] = [{"msgids": (m["message_id"],)} for m in planned]
    queries += [{"senders": (m["sender"],)} for m in planned]
    queries += [{"recipients": (r,)} for m in planned for r in m["rcpts"]]
    queries += [{"qids": (h["queue_ids"][-1],)} for h in everything[::5] if h["queue_ids"]]
    queries += [{"recipients": ("accept.test",)}, {"clients": ("127.0.0.4",)}, {"sasl_users": ("alice",)}]
    for query in queries:
        from_files = _trace(lab, **query)
        from_db, problems = postlens.trace([], db=db, **query)
        assert problems == []
        assert from_db == from_files, query
