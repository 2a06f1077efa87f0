"""Self-checks of the mail lab: the log is real, and the ground truth agrees with it.

The truth (postfixlab.compute_truth) is what the scenario planned to inject. These tests count
the same things in the log with plain regular expressions, independently of the lab's code,
and compare pflogsumm's grand totals where pflogsumm's counting rules agree with ours.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import os
import re
import socket
import stat
import threading
from collections import Counter
from pathlib import Path

import make_bench_log
import postfixlab
import pytest

LAB_FIXTURES = ["lab_small", "lab_small_syslog"]


@pytest.fixture(params=LAB_FIXTURES)
def lab(request: pytest.FixtureRequest, lab_ready: None) -> postfixlab.LabResult:
    return request.getfixturevalue(request.param)


# --------------------------------------------------------------------------------------------
# an independent, deliberately simple reading of the log

HEADER_RE = re.compile(r"^[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d (\S+) (postfix/[\w/-]+)\[\d+\]: (.*)$")
QID = r"[0-9A-F]{6,}"
STATUS_RE = re.compile(rf"^({QID}): to=<([^>]*)>, (?:orig_to=<[^>]*>, )?relay=.*? status=(\w+) (.*)$")
REJECT_RE = re.compile(rf"^(?:NOQUEUE|{QID}): reject: (\S+) from [^\[\s]*\[([\d.]+)\]")
CLEANUP_REJECT_RE = re.compile(rf"^({QID}): reject: (header|body) .*? from [^\[\s]*\[([\d.]+)\];")
SASL_FAIL_RE = re.compile(
    r"^warning: [^\[\s]*\[([\d.]+)\]: SASL (\S+) authentication failed: .*?, sasl_username=(\S+)$"
)
SASL_OK_RE = re.compile(rf"^({QID}): client=[^\[\s]*\[([\d.]+)\], sasl_method=(\S+), sasl_username=(\S+)$")


def read_log(path: Path) -> list[tuple[str, str, str]]:
    """(host, program, payload) of every line; every line must have this shape."""
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        m = HEADER_RE.match(line)
        assert m, f"{path}:{n}: unexpected line shape: {line!r}"
        out.append((m.group(1), m.group(2), m.group(3)))
    return out


def log_counts(path: Path) -> dict:
    lines = read_log(path)
    c: dict = {
        "status": Counter(),
        "per_domain": {},
        "rejects": Counter(),
        "rejects_by_client": Counter(),
        "sasl_fail": [],
        "sasl_ok": [],
    }
    # counted per line, not per queue ID: a large run can reuse a queue ID for a second message
    arrivals, hops, cleanup_rejected = 0, set(), 0
    deferred_qids, expired_qids, rcpt_domains_of = set(), set(), {}
    for _host, prog, payload in lines:
        if m := STATUS_RE.match(payload):
            qid, rcpt, status, rest = m.groups()
            domain = rcpt.rsplit("@", 1)[1].lower()
            if status == "sent" and "queued as " in rest:
                c["status"]["filter_hop"] += 1
                hops.add((qid, rest.rsplit("queued as ", 1)[1].rstrip(")")))
                continue
            c["status"][status] += 1
            d = c["per_domain"].setdefault(domain, Counter())
            d[{"sent": "delivered"}.get(status, status)] += 1
            if status == "deferred":
                deferred_qids.add(qid)
                rcpt_domains_of.setdefault(qid, set()).add(domain)
        elif re.match(rf"^({QID}): from=<[^>]*>, status=expired, returned to sender$", payload):
            expired_qids.add(payload.split(":", 1)[0])
        elif re.match(rf"^({QID}): client=", payload):
            arrivals += 1
            if s := SASL_OK_RE.match(payload):
                c["sasl_ok"].append(s.groups()[1:])
        elif prog == "postfix/pickup" and re.match(rf"^({QID}): uid=\d+ from=", payload):
            arrivals += 1
        elif m := CLEANUP_REJECT_RE.match(payload):
            cleanup_rejected += 1
            c["rejects"][m.group(2)] += 1
            c["rejects_by_client"][m.group(3)] += 1
        elif m := REJECT_RE.match(payload):
            c["rejects"][m.group(1)] += 1
            c["rejects_by_client"][m.group(2)] += 1
        elif m := SASL_FAIL_RE.match(payload):
            c["sasl_fail"].append(m.groups())
        elif " sender non-delivery notification: " in payload:
            c["status"]["notice"] += 1
        elif ": reject_warning: " in payload:
            c["status"]["reject_warning"] += 1
        elif re.match(r"^(?:NOQUEUE|[0-9A-F]+): hold: ", payload):
            c["status"]["hold"] += 1
        elif re.match(r"^(?:NOQUEUE|[0-9A-F]+): discard: ", payload):
            c["status"]["discard"] += 1
    # each re-injection is one client= line, named by its hop lines (one per filtered recipient)
    c["received"] = arrivals - len(hops) - cleanup_rejected
    c["deferred_messages"] = len(deferred_qids)
    c["expired"] = len(expired_qids)
    for qid in expired_qids:
        for domain in rcpt_domains_of.get(qid, ()):
            c["per_domain"][domain]["expired"] += 1
    c["lines"] = lines
    return c


MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def epochs(lines: list[str]) -> list[int]:
    """Seconds since an arbitrary origin for classic year-less stamps (Dec -> Jan rolls over)."""
    year, last_month, out = 2001, 0, []
    for ln in lines:
        month = MONTHS.index(ln[:3]) + 1
        if month < last_month:
            year += 1
        last_month = month
        hh, mm, ss = (int(x) for x in ln[7:15].split(":"))
        out.append(calendar.timegm((year, month, int(ln[4:6]), hh, mm, ss)))
    return out


# --------------------------------------------------------------------------------------------
# tests that need no lab


def test_pflogsumm_totals_parser_handles_units() -> None:
    text = """
Grand Totals
------------
messages

   1234k  received
    850   deferred  (1650k deferrals)
     12m  bytes delivered
     14   rejected (17%)
      0   discarded (0%)

Per-Hour Traffic Summary
------------------------
"""
    got = postfixlab.parse_pflogsumm_totals(text)
    assert got["received"] == 1234 * 1024
    assert (got["deferred"], got["deferrals"]) == (850, 1650 * 1024)
    assert got["bytes_delivered"] == 12 * 1024 * 1024
    assert got["rejected"] == 14
    assert got["discarded"] == 0


def test_truth_is_internally_consistent() -> None:
    truth = postfixlab.compute_truth(postfixlab.build_plan(postfixlab.Sizes.small()))
    json.dumps(truth)  # JSON-serialisable
    per = truth["per_domain"]
    assert sum(d["delivered"] for d in per.values()) == truth["delivered"]
    assert sum(d["deferred"] for d in per.values()) == truth["deferrals"]
    assert sum(d["bounced"] for d in per.values()) == truth["bounced"]
    assert sum(truth["rejects"].values()) == truth["rejected"]
    assert sum(truth["rejects_by_client"].values()) == truth["rejected"]
    for kind in ("auth_failures", "auth_successes"):
        block = truth[kind]
        for key in ("by_ip", "by_username", "by_method"):
            assert sum(block[key].values()) == block["total"]
    # one IP is the brute-force source: most failures and several usernames
    fails = truth["auth_failures"]
    top_ip = max(fails["by_ip"], key=fails["by_ip"].get)
    assert fails["by_ip"][top_ip] > fails["total"] / 2
    assert len(fails["by_username"]) >= 4


def test_parse_faketime_start_at_becomes_a_shared_offset() -> None:
    now = 1_800_000_000.0
    assert postfixlab.parse_faketime("@2027-01-16 08:00:00", now=now) == "+86400"
    assert postfixlab.parse_faketime("-30d") == "-30d"


SECURITY_SIZES = {
    "auth_spray": {"127.0.0.14": 12},
    "auth_guess": {"127.0.0.15": (4, "alice")},
    "auth_burst": {"bob": 15},
    "defer_storm": 10,
}


def security_sizes() -> postfixlab.Sizes:
    """The tiny scenario plus the security / anomaly traffic kinds."""
    return postfixlab.Sizes.from_any({**postfixlab.Sizes.tiny().to_dict(), **SECURITY_SIZES})


def test_security_kinds_are_off_by_default() -> None:
    for make in (postfixlab.Sizes.small, postfixlab.Sizes.tiny, postfixlab.Sizes.large):
        sizes = make()
        assert (sizes.auth_spray, sizes.auth_guess, sizes.auth_burst, sizes.defer_storm) == ({}, {}, {}, 0)
        plan = postfixlab.build_plan(sizes)
        cats = {m.category for m in plan.messages}
        assert not cats & {"auth_guess", "auth_burst", "defer_storm"}
        truth = postfixlab.compute_truth(plan)
        assert truth["auth_guessed"] == {} and truth["auth_burst"] == {}


def test_sizes_json_round_trip() -> None:
    sizes = security_sizes()
    again = postfixlab.Sizes.from_any(json.loads(json.dumps(sizes.to_dict())))
    assert again == sizes
    assert again.auth_guess == {"127.0.0.15": (4, "alice")}  # a JSON list becomes a tuple again
    assert again.blocked_client_ips == ("127.0.0.2", "127.0.0.3")
    assert postfixlab.Sizes.tiny().updated({"auth_guess": {"127.0.0.16": [2, "bob"]}}).auth_guess == {
        "127.0.0.16": (2, "bob")
    }
    large = postfixlab.Sizes.large()
    assert postfixlab.Sizes.from_any(json.loads(json.dumps(large.to_dict()))) == large
    with pytest.raises(ValueError, match="unknown scenario sizes"):
        postfixlab.Sizes.tiny().updated({"auth_sprya": {}})
    with pytest.raises(ValueError, match="failures, username"):
        postfixlab.Sizes(auth_guess={"127.0.0.15": "alice"})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    "changes",
    [
        {"auth_spray": {"127.0.0.10": 3}},  # also in auth_fail
        {"auth_spray": {"127.0.0.2": 3}},  # a blocked client
        {"auth_spray": {"127.0.0.14": 1}, "auth_guess": {"127.0.0.14": (1, "bob")}},
        {"auth_guess": {"127.0.0.11": (1, "bob")}},  # also in auth_fail
        {"auth_guess": {"127.0.0.15": (2, "mallory")}},  # cannot succeed: no such user
        {"auth_guess": {"127.0.0.15": (0, "bob")}},
        {"auth_spray": {"127.0.0.7": 3}},  # a fixed client
        {"auth_burst": {"eve": 3}},
        {"defer_storm": -1},
    ],
)
def test_security_sizes_are_validated(changes: dict) -> None:
    with pytest.raises(ValueError):
        postfixlab.build_plan(postfixlab.Sizes.tiny().updated(changes))


def test_security_truth_is_internally_consistent() -> None:
    sizes = security_sizes()
    base = postfixlab.compute_truth(postfixlab.build_plan(postfixlab.Sizes.tiny()))
    truth = postfixlab.compute_truth(postfixlab.build_plan(sizes))
    json.dumps(truth)
    fails, oks = truth["auth_failures"], truth["auth_successes"]
    for block in (fails, oks):
        for key in ("by_ip", "by_username", "by_method"):
            assert sum(block[key].values()) == block["total"]
    assert fails["by_ip"]["127.0.0.14"] == 12
    assert sum(1 for u in fails["by_username"] if u.startswith("spray")) == 12
    assert fails["by_ip"]["127.0.0.15"] == 4
    assert fails["total"] == base["auth_failures"]["total"] + 12 + 4
    assert truth["auth_guessed"] == {"127.0.0.15": "alice"}
    assert oks["by_ip"]["127.0.0.15"] == 1
    assert truth["auth_burst"] == {"bob": 15}
    assert oks["by_username"]["bob"] == base["auth_successes"]["by_username"]["bob"] + 15
    assert oks["total"] == base["auth_successes"]["total"] + 1 + 15
    # one guessed message and 15 burst messages delivered to accept.test, 10 storm deferrals
    assert truth["received"] == base["received"] + 1 + 15 + 10
    assert truth["delivered"] == base["delivered"] + 1 + 15
    accepted, accepted0 = truth["per_domain"]["accept.test"], base["per_domain"]["accept.test"]
    assert accepted["delivered"] == accepted0["delivered"] + 16
    d, d0 = truth["per_domain"]["defer.test"], base["per_domain"]["defer.test"]
    assert (d["deferred"], d["deferred_messages"]) == (d0["deferred"] + 10, d0["deferred_messages"] + 10)
    assert truth["deferrals"] == base["deferrals"] + 10
    assert truth["queue_at_end"]["deferred"] == base["queue_at_end"]["deferred"] + 10
    assert truth["recipients"] == base["recipients"] + 1 + 15 + 10


# --------------------------------------------------------------------------------------------
# the lab


def test_log_has_lines_from_the_main_daemons(lab: postfixlab.LabResult) -> None:
    assert lab.log_path.is_file()
    programs = Counter(prog for _h, prog, _p in read_log(lab.log_path))
    for prog in ("smtpd", "qmgr", "smtp", "cleanup", "local", "bounce", "pickup", "master"):
        assert programs[f"postfix/{prog}"] > 0, f"no postfix/{prog} line in {lab.log_path}"
    hosts = {h for h, _prog, _p in read_log(lab.log_path)}
    assert hosts == {"mx"}  # the first label of myhostname


def test_maillog_file_pads_the_day_with_a_zero(lab_small: postfixlab.LabResult) -> None:
    first = lab_small.log_path.read_text().splitlines()[0]
    assert re.match(r"^[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d mx postfix/", first), first
    # postlogd stops before the master: its last words never reach maillog_file
    assert "terminating on signal" not in lab_small.log_path.read_text()


def test_syslog_is_classic_rsyslog_format(lab_small_syslog: postfixlab.LabResult) -> None:
    text = lab_small_syslog.log_path.read_text()
    assert re.match(r"^[A-Z][a-z]{2} [ 1-3]\d \d\d:\d\d:\d\d mx postfix/", text), text[:80]
    assert "postfix/master" in text and "terminating on signal 15" in text


def test_postqueue_snapshot_lists_the_deferred_mail(lab: postfixlab.LabResult) -> None:
    check_postqueue_snapshot(lab)


def check_postqueue_snapshot(lab: postfixlab.LabResult) -> None:
    entries = [json.loads(x) for x in lab.postqueue_path.read_text().splitlines()]
    queues = Counter(e["queue_name"] for e in entries)
    want = lab.truth["queue_at_end"]
    assert queues == Counter({"deferred": want["deferred"], "hold": want["hold"]})
    for e in entries:
        assert re.fullmatch(r"[0-9A-F]{6,}", e["queue_id"])
        if e["queue_name"] == "deferred":
            domains = {r["address"].rsplit("@", 1)[1] for r in e["recipients"]}
            assert domains <= {"defer.test", "refused.test"}
            assert all(r["delay_reason"] for r in e["recipients"])


def test_truth_matches_the_log(lab: postfixlab.LabResult) -> None:
    check_truth_matches_the_log(lab)


def check_truth_matches_the_log(lab: postfixlab.LabResult) -> None:
    t, c = lab.truth, log_counts(lab.log_path)
    assert c["received"] == t["received"]
    assert c["status"]["sent"] == t["delivered"]
    assert c["status"]["filter_hop"] == t["filter_hops"]
    assert c["status"]["deferred"] == t["deferrals"]
    assert c["deferred_messages"] == t["deferred"]
    assert c["status"]["bounced"] == t["bounced"]
    assert c["expired"] == t["expired"]
    assert c["status"]["notice"] == t["notifications"]
    assert c["status"]["reject_warning"] == t["reject_warnings"]
    assert c["status"]["hold"] == t["held"]
    assert c["status"]["discard"] == t["discarded"]
    assert dict(c["rejects"]) == t["rejects"]
    assert dict(c["rejects_by_client"]) == t["rejects_by_client"]
    assert sum(c["rejects"].values()) == t["rejected"]


def test_per_domain_truth_matches_the_log(lab: postfixlab.LabResult) -> None:
    check_per_domain_truth(lab)


def check_per_domain_truth(lab: postfixlab.LabResult) -> None:
    c = log_counts(lab.log_path)
    for domain, want in lab.truth["per_domain"].items():
        got = c["per_domain"].get(domain, Counter())
        for key in ("delivered", "deferred", "bounced", "expired"):
            assert got[key] == want[key], (domain, key)


def test_auth_truth_matches_the_log(lab: postfixlab.LabResult) -> None:
    check_auth_truth(lab)


def check_auth_truth(lab: postfixlab.LabResult) -> None:
    c = log_counts(lab.log_path)
    fails, oks = lab.truth["auth_failures"], lab.truth["auth_successes"]
    assert len(c["sasl_fail"]) == fails["total"]
    assert dict(Counter(ip for ip, _m, _u in c["sasl_fail"])) == fails["by_ip"]
    assert dict(Counter(m for _ip, m, _u in c["sasl_fail"])) == fails["by_method"]
    assert dict(Counter(u for _ip, _m, u in c["sasl_fail"])) == fails["by_username"]
    assert len(c["sasl_ok"]) == oks["total"]
    assert dict(Counter(ip for ip, _m, _u in c["sasl_ok"])) == oks["by_ip"]
    assert dict(Counter(m for _ip, m, _u in c["sasl_ok"])) == oks["by_method"]
    assert dict(Counter(u for _ip, _m, u in c["sasl_ok"])) == oks["by_username"]


def pflogsumm_expected(truth: dict) -> dict:
    """pflogsumm 1.1.5's grand totals for a lab log, derived from our truth.

    Where pflogsumm's rules differ from ours, by design:
    * received: it counts every smtpd "client=" line, so the content filter's re-injection
      counts again (+filter_hops), and so does a message cleanup then rejects (header_checks);
    * delivered: it counts every status=sent, so the hop into the filter counts (+filter_hops);
      the bounce notices Postfix sends count in both (they are delivered mail);
    * bounced: expired messages are not bounced, in both;
    * recipients: distinct addresses with a status=sent line (our recipients_delivered).
    """
    return {
        "received": truth["received"] + truth["filter_hops"] + truth["rejects"].get("header", 0),
        "delivered": truth["delivered"] + truth["filter_hops"],
        "forwarded": truth["forwarded"],
        "deferred": truth["deferred"],
        "deferrals": truth["deferrals"],
        "bounced": truth["bounced"],
        "rejected": truth["rejected"],
        "reject_warnings": truth["reject_warnings"],
        "held": truth["held"],
        "discarded": truth["discarded"],
        "senders": truth["senders"],
        "recipients": truth["recipients_delivered"],
    }


def test_pflogsumm_agrees_where_its_rules_agree(lab: postfixlab.LabResult) -> None:
    got = postfixlab.run_pflogsumm(lab.log_path)
    want = pflogsumm_expected(lab.truth)
    assert {k: got[k] for k in want} == want
    assert got["bytes_received"] > 0 and got["bytes_delivered"] > 0


def test_faketime_crosses_new_year_in_syslog(lab_runner) -> None:
    """Dec 31 -> Jan 1 with space-padded days; the clock runs forward across midnight."""
    res = lab_runner("lab-newyear", postfixlab.Sizes.tiny(), "syslog", "@2025-12-31 23:59:58", min_seconds=4)
    lines = res.log_path.read_text().splitlines()
    assert lines[0].startswith("Dec 31 23:59:5"), lines[0]
    assert lines[-1].startswith("Jan  1 00:00:0"), lines[-1]
    stamps = epochs(lines)
    assert stamps == sorted(stamps), "timestamps must not go backwards"
    assert postfixlab.run_pflogsumm(res.log_path)["bounced"] == res.truth["bounced"]


def test_faketime_early_day_in_maillog_file(lab_runner) -> None:
    """Days 1-9: maillog_file writes "Jan 05", where syslog would write "Jan  5"."""
    res = lab_runner("lab-jan05", postfixlab.Sizes.tiny(), "maillog_file", "@2026-01-05 10:00:00")
    lines = res.log_path.read_text().splitlines()
    assert all(ln.startswith("Jan 05 10:0") for ln in lines), lines[0]
    c = log_counts(res.log_path)
    assert c["status"]["sent"] == res.truth["delivered"]


def test_syslog_with_an_existing_dev_log_uses_a_private_mount_namespace(lab_runner) -> None:
    """When /dev/log exists (a system logger), the lab must not write to it: Postfix runs in
    a private mount namespace where the lab's rsyslog socket is bind-mounted on /dev/log.
    Where /dev/log is missing (containers), a stand-in is made for the test and removed."""
    stand_in = None
    received: list[bytes] = []
    if not os.path.lexists("/dev/log"):
        stand_in = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        stand_in.bind("/dev/log")
        stand_in.settimeout(0.2)
        inode = os.lstat("/dev/log").st_ino
        stop = threading.Event()

        def drain() -> None:
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    received.append(stand_in.recv(65536))

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
    try:
        res = lab_runner("lab-devlog-ns", postfixlab.Sizes.tiny(), "syslog")
    finally:
        if stand_in is not None:
            stop.set()
            reader.join()
            stand_in.close()
            if os.path.lexists("/dev/log"):
                info = os.lstat("/dev/log")
                if stat.S_ISSOCK(info.st_mode) and info.st_ino == inode:
                    os.unlink("/dev/log")
    assert "postfix/smtpd" in res.log_path.read_text()
    assert not [m for m in received if b"postfix/" in m], "Postfix logged to the system /dev/log"


SASL_FAIL_LINE_RE = re.compile(
    r"^warning: [^\[\s]*\[([\d.]+)\]: SASL (\S+) authentication failed: .*, sasl_username=(\S+)$"
)
SASL_OK_LINE_RE = re.compile(
    rf"^({QID}): client=[^\[\s]*\[([\d.]+)\], sasl_method=(\S+), sasl_username=(\S+)$"
)


def test_security_traffic_matches_the_log(lab_runner) -> None:
    """Password spray, a guessed password, a sender burst and a deferral storm, on top of
    the tiny scenario; the truth is exact and the log shows each pattern."""
    sizes = security_sizes()
    res = lab_runner("lab-security", sizes, "syslog")
    t = res.truth
    # everything the standard checks cover still holds with the new traffic
    check_truth_matches_the_log(res)
    check_per_domain_truth(res)
    check_auth_truth(res)
    check_postqueue_snapshot(res)
    got, want = postfixlab.run_pflogsumm(res.log_path), pflogsumm_expected(t)
    assert {k: got[k] for k in want} == want

    fails: list[tuple[int, str, str]] = []  # (line number, ip, username)
    oks: list[tuple[int, str, str, str]] = []  # (line number, queue ID, ip, username)
    sent_to: dict[str, list[str]] = {}  # queue ID -> recipients with status=sent
    deferred_to: list[str] = []
    for n, (_host, _prog, payload) in enumerate(read_log(res.log_path)):
        if m := SASL_FAIL_LINE_RE.match(payload):
            fails.append((n, m.group(1), m.group(3)))
        elif m := SASL_OK_LINE_RE.match(payload):
            oks.append((n, m.group(1), m.group(2), m.group(4)))
        elif m := STATUS_RE.match(payload):
            qid, rcpt, status, rest = m.groups()
            if status == "sent" and "queued as " not in rest:
                sent_to.setdefault(qid, []).append(rcpt)
            elif status == "deferred":
                deferred_to.append(rcpt)

    # password spray: one failure per distinct username, nothing else from the IP
    for ip, n in sizes.auth_spray.items():
        names = [u for _n, i, u in fails if i == ip]
        assert len(names) == n == t["auth_failures"]["by_ip"][ip]
        assert len(set(names)) == n
        assert set(names) == {f"spray{k:03d}" for k in range(1, n + 1)}
        assert not [o for o in oks if o[2] == ip]

    # guessed password: N failures for one user, then a login as that user and a message
    assert t["auth_guessed"] == {ip: user for ip, (_n, user) in sizes.auth_guess.items()}
    for ip, (n, user) in sizes.auth_guess.items():
        mine = [(line, u) for line, i, u in fails if i == ip]
        assert [u for _line, u in mine] == [user] * n
        success = [o for o in oks if o[2] == ip]
        assert len(success) == 1 and success[0][3] == user
        ok_line, qid = success[0][0], success[0][1]
        assert max(line for line, _u in mine) < ok_line, "the failures come before the success"
        assert [r.rsplit("@", 1)[1] for r in sent_to[qid]] == ["accept.test"]

    # sender burst: the user's submissions from 127.0.0.7, to n distinct burst recipients
    qid_user = {qid: u for _line, qid, ip, u in oks if ip == postfixlab.IP_SUBMIT}
    planned_ok = Counter({u: sizes.auth_ok_per_user for u in sizes.auth_users})
    assert t["auth_burst"] == sizes.auth_burst
    for user, n in sizes.auth_burst.items():
        assert Counter(qid_user.values())[user] == planned_ok[user] + n
        qids = [q for q, u in qid_user.items() if u == user]
        burst = [r for q in qids for r in sent_to.get(q, []) if r.startswith("burst")]
        assert len(burst) == len(set(burst)) == n
        assert all(r.endswith("@accept.test") for r in burst)

    # deferral storm: one deferral per distinct storm recipient at defer.test (no retries)
    storm = [r for r in deferred_to if r.startswith("storm")]
    assert len(storm) == len(set(storm)) == sizes.defer_storm
    assert all(r.endswith("@defer.test") for r in storm)
    planned_defer = t["per_domain"]["defer.test"]["deferred"]
    assert sum(1 for r in deferred_to if r.endswith("@defer.test")) == planned_defer
    print(f"\n[postfixlab] security scenario: {res.seconds}s")


def test_make_bench_log_keeps_a_valid_log(lab_small_syslog: postfixlab.LabResult, tmp_path: Path) -> None:
    src = lab_small_syslog.log_path
    n_src = len(src.read_text().splitlines())
    out = tmp_path / "bench.log"
    info = make_bench_log.make_bench_log(src, out, lines=3 * n_src, truth=lab_small_syslog.truth)
    assert info["copies"] == 3 and info["lines"] == 3 * n_src
    lines = out.read_text().splitlines()
    assert len(lines) == 3 * n_src
    # queue IDs: renamed per copy, never shared between copies
    qid_re = re.compile(r"\]: ([0-9A-F]{6,}): ")
    per_copy = [
        {m.group(1) for ln in lines[k * n_src : (k + 1) * n_src] if (m := qid_re.search(ln))}
        for k in range(3)
    ]
    assert all(per_copy) and not (per_copy[0] & per_copy[1] or per_copy[1] & per_copy[2])

    # apart from IDs and Message-IDs each copy is the source, and time only moves forward
    def norm(ln: str) -> str:
        ln = re.sub(r"\b[0-9A-F]{10,11}\b", "ID", ln[16:])
        return re.sub(r"message-id=<(?:b\d+\.)?", "message-id=<", ln)

    src_lines = [norm(ln) for ln in src.read_text().splitlines()]
    assert [norm(ln) for ln in lines[2 * n_src :]] == src_lines
    stamps = epochs(lines)
    assert stamps == sorted(stamps), "timestamps must not go backwards"
    assert stamps[n_src] > stamps[n_src - 1]
    # pflogsumm reads it and every additive count triples
    one = postfixlab.run_pflogsumm(src)
    three = postfixlab.run_pflogsumm(out)
    for key in ("received", "delivered", "deferred", "deferrals", "bounced", "rejected", "held"):
        assert three[key] == 3 * one[key], key
    assert three["senders"] == one["senders"]
    assert info["truth"]["delivered"] == 3 * lab_small_syslog.truth["delivered"]


@pytest.mark.slow
def test_large_scenario(lab_large: postfixlab.LabResult) -> None:
    t = lab_large.truth
    assert t["received"] > 20000
    c = log_counts(lab_large.log_path)
    assert c["received"] == t["received"]
    assert c["status"]["sent"] == t["delivered"]
    assert c["status"]["deferred"] == t["deferrals"] > t["deferred"]  # retry_rounds=1
    assert dict(c["rejects"]) == t["rejects"]
    got = postfixlab.run_pflogsumm(lab_large.log_path)
    want = pflogsumm_expected(t)
    assert {k: got[k] for k in want} == want
    print(f"\n[postfixlab] large scenario: {lab_large.seconds}s, {len(c['lines'])} log lines")
