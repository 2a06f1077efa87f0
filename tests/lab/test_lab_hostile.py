"""The lab's hostile traffic (Sizes.hostile): a real Postfix log whose stranger-controlled
fields (HELO name, envelope addresses, a remote server's SMTP replies) carry HTML/script
markup, for the dashboard's escaping tests. Checks that Postfix logs each injected string as
the truth says, and what ``postlens report --format json`` makes of those lines."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import postfixlab
import pytest

N = 2  # hostile messages
RETRY_ROUNDS = 1


def _sizes(**extra: Any) -> postfixlab.Sizes:
    return postfixlab.Sizes.tiny().updated({"hostile": N, "retry_rounds": RETRY_ROUNDS, **extra})


@pytest.fixture(scope="module")
def hostile_maillog(lab_runner: Any) -> postfixlab.LabResult:
    return lab_runner("lab-hostile-maillog_file", _sizes(), "maillog_file")


@pytest.fixture(scope="module")
def hostile_syslog(lab_runner: Any) -> postfixlab.LabResult:
    return lab_runner("lab-hostile-syslog", _sizes(), "syslog")


@pytest.fixture(params=["hostile_maillog", "hostile_syslog"])
def hostile(request: pytest.FixtureRequest) -> postfixlab.LabResult:
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def hostile_report(hostile_maillog: postfixlab.LabResult) -> tuple[postfixlab.LabResult, dict[str, Any]]:
    """The maillog_file run and the report of the installed CLI on its log."""
    cli = Path(sys.executable).with_name("postlens")
    cmd = [str(cli)] if cli.exists() else [shutil.which("postlens") or "postlens"]
    done = subprocess.run(
        [*cmd, "report", "--format", "json", str(hostile_maillog.log_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return hostile_maillog, json.loads(done.stdout)


def _payloads(log: Path) -> list[str]:
    """The text after "postfix/daemon[pid]: " of every line."""
    return [line.split("]: ", 1)[1] for line in log.read_text().splitlines() if "]: " in line]


# --------------------------------------------------------------------------------------------
# no lab needed


def test_hostile_is_off_by_default() -> None:
    for make in (postfixlab.Sizes.small, postfixlab.Sizes.tiny, postfixlab.Sizes.large):
        sizes = make()
        assert sizes.hostile == 0
        plan = postfixlab.build_plan(sizes)
        assert not any(m.category == "hostile" or m.helo for m in plan.messages)
        assert postfixlab.compute_truth(plan)["hostile"] == {}


@pytest.mark.parametrize(
    "changes",
    [
        {"hostile": -1},
        {"hostile": "2"},
        {"hostile": 1.5},
        {"auth_spray": {postfixlab.IP_HOSTILE: 3}},  # the hostile client is a fixed one
    ],
)
def test_hostile_sizes_are_validated(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        postfixlab.build_plan(postfixlab.Sizes.tiny().updated(changes))


def test_hostile_truth() -> None:
    sizes = _sizes()
    base = postfixlab.compute_truth(
        postfixlab.build_plan(postfixlab.Sizes.tiny().updated({"retry_rounds": 1}))
    )
    truth = postfixlab.compute_truth(postfixlab.build_plan(sizes))
    assert postfixlab.Sizes.from_any(json.loads(json.dumps(sizes.to_dict()))) == sizes
    h = truth["hostile"]
    assert h == {
        "client": "127.0.0.8",
        "helo": "x'onmouseover='window.pwned_helo=1'",
        "address": '"<img src=x onerror=window.pwned_addr=1>"@accept.test',
        "rejected_rcpt": '"<svg onload=window.pwned_rcpt=1>"@lab.test',
        "reject_reply": "550 5.1.1 <<svg onload=window.pwned_rcpt=1>@lab.test>: "
        "Recipient address rejected: User unknown in local recipient table",
        "reply": "451 4.7.1 <script>window.pwned_reply=1</script> try later",
        "bounce_reply": "550 5.7.1 <img src=x onerror=window.pwned_bounce=1> go away",
        "defer_domain": "hostile.test",
        "bounce_domain": "hostile-bounce.test",
        "messages": N,
        "rejects": N,
        "deferrals": N * (1 + RETRY_ROUNDS),
        "bounced": N,
        "notifications": N,
    }
    # each message: one RCPT reject, one recipient deferred (and queued at the end), one
    # bounced with a notice delivered to the hostile sender at the accept sink
    assert truth["received"] == base["received"] + N
    assert truth["rejects"]["RCPT"] == base["rejects"]["RCPT"] + N
    assert truth["rejects_by_client"]["127.0.0.8"] == N
    assert truth["deferrals"] == base["deferrals"] + N * (1 + RETRY_ROUNDS)
    assert truth["deferred"] == base["deferred"] + N
    assert truth["bounced"] == base["bounced"] + N
    assert truth["notifications"] == base["notifications"] + N
    assert truth["delivered"] == base["delivered"] + N
    assert truth["queue_at_end"]["deferred"] == base["queue_at_end"]["deferred"] + N
    assert truth["senders"] == base["senders"] + 1
    assert truth["recipients"] == base["recipients"] + 2 * N
    assert truth["recipients_delivered"] == base["recipients_delivered"] + 1
    assert truth["per_domain"]["hostile.test"]["deferred"] == N * (1 + RETRY_ROUNDS)
    assert truth["per_domain"]["hostile-bounce.test"]["bounced"] == N


# --------------------------------------------------------------------------------------------
# the log


def test_log_carries_each_hostile_string(hostile: postfixlab.LabResult) -> None:
    h = hostile.truth["hostile"]
    lines = _payloads(hostile.log_path)
    shown: dict[str, list[str]] = {}

    def find(what: str, pattern: str, n: int) -> None:
        found = [ln for ln in lines if re.search(pattern, ln)]
        shown[what] = found
        assert len(found) == n, (what, pattern, found)

    esc = re.escape
    qid = r"[0-9A-F]{6,}"
    # smtpd: the RCPT reject names the client, the markup address, the reply and the HELO
    find(
        "reject (helo, from, to, reply)",
        rf"^NOQUEUE: reject: RCPT from unknown\[{esc(h['client'])}\]: {esc(h['reject_reply'])}; "
        rf"from=<{esc(h['address'])}> to=<{esc(h['rejected_rcpt'])}> proto=ESMTP helo=<{esc(h['helo'])}>$",
        h["rejects"],
    )
    # qmgr: the sender, once per message and retry round
    find(
        "qmgr from=",
        rf"^{qid}: from=<{esc(h['address'])}>, size=\d+, nrcpt=2 \(queue active\)$",
        h["messages"] * (1 + RETRY_ROUNDS),
    )
    # smtp: the remote servers' replies
    find(
        "deferred reply",
        rf"^{qid}: to=<h\d{{3}}@{esc(h['defer_domain'])}>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*"
        rf"status=deferred \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: {esc(h['reply'])} "
        r"\(in reply to RCPT TO command\)\)$",
        h["deferrals"],
    )
    find(
        "bounced reply",
        rf"^{qid}: to=<h\d{{3}}@{esc(h['bounce_domain'])}>, relay=.*status=bounced "
        rf"\(host 127\.0\.0\.1\[127\.0\.0\.1\] said: {esc(h['bounce_reply'])} "
        r"\(in reply to RCPT TO command\)\)$",
        h["bounced"],
    )
    # the non-delivery notices go back to the markup address (from=<> first)
    find(
        "notice to=",
        rf"^{qid}: to=<{esc(h['address'])}>, relay=.* status=sent \(250 2\.0\.0 Ok\)$",
        h["notifications"],
    )
    # nothing else mentions the HELO; no line shows a neutered one ("?" for "<" etc.)
    assert sum(h["helo"] in ln for ln in lines) == h["rejects"]
    assert not any("pwned_helo" in ln and h["helo"] not in ln for ln in lines)
    print(f"\n[hostile] {hostile.log_format}: what Postfix logged ({hostile.log_path})")
    for what, found in shown.items():
        print(f"  {what}:\n    {found[0]}")


def test_postqueue_snapshot_carries_hostile_text(hostile: postfixlab.LabResult) -> None:
    h = hostile.truth["hostile"]
    entries = [json.loads(ln) for ln in hostile.postqueue_path.read_text().splitlines()]
    mine = [e for e in entries if e["sender"] == h["address"]]
    assert len(mine) == h["messages"]
    for e in mine:
        assert e["queue_name"] == "deferred"
        [rcpt] = e["recipients"]
        assert rcpt["address"].endswith("@" + h["defer_domain"])
        assert rcpt["delay_reason"] == (
            f"host 127.0.0.1[127.0.0.1] said: {h['reply']} (in reply to RCPT TO command)"
        )


# --------------------------------------------------------------------------------------------
# postlens on that log


def test_report_shows_the_hostile_replies(hostile_report: tuple[postfixlab.LabResult, dict]) -> None:
    res, rep = hostile_report
    h = res.truth["hostile"]
    # postlens groups reasons with every <...> collapsed to "<>" (addresses), which also
    # removes the tags of the replies; the rest of each reply text is there
    deferral = [d for d in rep["deferrals"] if "pwned_reply" in d["reason"]]
    assert deferral == [
        {
            "daemon": "smtp",
            "reason": "host 127.0.0.1[127.0.0.1] said: 451 4.7.1 <>window.pwned_reply=1<> try later",
            "count": h["deferrals"],
        }
    ]
    bounce = [b for b in rep["bounces"] if "go away" in b["reason"]]
    assert [(b["reason"], b["count"]) for b in bounce] == [
        ("host 127.0.0.1[127.0.0.1] said: 550 5.7.1 <> go away", h["bounced"])
    ]
    assert rep["rejects"]["by_client"][h["client"]] == h["rejects"]
    print(f"\n[hostile] postlens report: {deferral[0]['reason']!r}, {bounce[0]['reason']!r}")


def test_report_recognises_every_hostile_line(hostile_report: tuple[postfixlab.LabResult, dict]) -> None:
    _res, rep = hostile_report
    assert rep["coverage"]["unrecognised"] == 0, rep["coverage"]["unrecognised_examples"]


def test_report_lists_the_hostile_address(hostile_report: tuple[postfixlab.LabResult, dict]) -> None:
    res, rep = hostile_report
    h = res.truth["hostile"]
    senders = {s["address"]: s["count"] for s in rep["senders"]["by_count"]}
    recipients = {r["address"]: r["count"] for r in rep["recipients"]["by_count"]}
    assert senders.get(h["address"]) == h["messages"], senders
    assert recipients.get(h["address"]) == h["notifications"], recipients


def test_report_reject_detail_names_the_hostile_recipient(
    hostile_report: tuple[postfixlab.LabResult, dict],
) -> None:
    res, rep = hostile_report
    h = res.truth["hostile"]
    # like ghost0@lab.test: "who" is the unknown recipient, the reason has no envelope in it
    mine = [r for r in rep["rejects"]["detail"] if r["stage"] == "RCPT" and "pwned_rcpt" in r["who"]]
    assert [r["count"] for r in mine] == [h["rejects"]], rep["rejects"]["detail"]
    assert "from=" not in mine[0]["reason"] and "helo=" not in mine[0]["reason"], mine
