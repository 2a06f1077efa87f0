"""postlens queue against Postfix's own /usr/sbin/qshape, on the same queues: per domain and
per bucket the counts must be equal, and the table lines too.

qshape reads queue files; postlens reads what ``postqueue -j`` makes of them. Two kinds of test:

* hand-made queue files (qshape's record format) with tricky addresses and ages on every
  bucket boundary, under many option sets: qshape's rules, exactly;
* a real lab's queue: mail dated 3 h 10 min back with libfaketime, more mail added at the
  real time, held and force-expired messages, null senders, parent domains, and mail left in
  the maildrop; read live with ``postqueue -j -c DIR`` and from a saved file, at several
  moments. qshape's clock is frozen at the moment postlens is given (libfaketime).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import postfixlab
import pytest

import postlens
from postlens.analyses.reasons import Rules, split_reply
from postlens.render.queue import render_queue

QSHAPE = "/usr/sbin/qshape"
SENDMAIL, POSTSUPER, POSTQUEUE = "/usr/sbin/sendmail", "/usr/sbin/postsuper", "/usr/sbin/postqueue"

# qshape options, and the same for postlens.queue()
OPTION_SETS: list[tuple[list[str], dict[str, Any]]] = [
    ([], {}),
    (["-s"], {"senders": True}),
    (["-p"], {"parents": True}),
    (["-p", "-m", "2"], {"parents": True, "min_subdomains": 2}),
    (["-s", "-p", "-m", "1"], {"senders": True, "parents": True, "min_subdomains": 1}),
    (["-t", "1"], {"bucket_minutes": 1}),
    (["-t", "0.5", "-b", "14"], {"bucket_minutes": 0.5, "buckets": 14}),
    (["-l"], {"linear": True}),
    (["-l", "-t", "30", "-b", "12"], {"linear": True, "bucket_minutes": 30, "buckets": 12}),
    (["-b", "3"], {"buckets": 3}),
    (["-b", "1"], {"buckets": 1}),
    (["-p", "-w", "120"], {"parents": True, "width": 120}),
]


# ---------------------------------------------------------------------------------------------
# running and reading qshape


def run_qshape(queue_dirs: list[Path], args: list[str], now: int) -> str:
    """qshape's output with its clock frozen at ``now``.

    The queue directories are given as absolute paths, so qshape runs no postconf: under a
    frozen clock postconf would wait for ever for its main.cf to be older than "this second".
    """
    lib = postfixlab.faketime_library()
    assert lib is not None
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LD_PRELOAD": lib,
        "FAKETIME": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)),  # no "@": stopped
        "TZ": "UTC",
    }
    proc = subprocess.run([QSHAPE, *args, *map(str, queue_dirs)], env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def table_of(text: str) -> tuple[list[str], dict[str, list[int]]]:
    """(headings, {row name: [total, bucket counts...]}) of qshape's table at the top of text."""
    lines = text.splitlines()
    heads = lines[0].split()
    rows: dict[str, list[int]] = {}
    for line in lines[1:]:
        parts = line.split()
        if len(parts) < len(heads) or not all(p.isdigit() for p in parts[-len(heads) :]):
            break  # the end of the table: postlens goes on with its notes
        rows[" ".join(parts[: -len(heads)])] = [int(p) for p in parts[-len(heads) :]]
    return heads, rows


def postlens_text(result: dict[str, Any], width: int) -> list[str]:
    """The table lines of postlens's text: the headings, TOTAL and one line per row."""
    lines = render_queue(result, "text", width=width).splitlines()
    return lines[: 2 + len(result["shape"]["rows"])]


def assert_same(qshape_out: str, result: dict[str, Any], width: int = 80) -> dict[str, list[int]]:
    """postlens's table equals qshape's: headings and every row's counts; and, where qshape kept
    to the width, the lines themselves (in any order: qshape orders ties by hash order)."""
    heads, rows = table_of(qshape_out)
    shape = result["shape"]
    assert heads == ["T", *(c["label"] for c in shape["columns"])]
    ours = {"TOTAL": [shape["total"]["count"], *shape["total"]["buckets"]]}
    domain_width = qshape_out.splitlines()[1].index("TOTAL") + len("TOTAL")
    ours.update({shown_name(r["domain"], domain_width): [r["count"], *r["buckets"]] for r in shape["rows"]})
    assert ours == rows
    qlines = qshape_out.splitlines()
    if max(len(line) for line in qlines) <= width:
        assert Counter(postlens_text(result, width)) == Counter(qlines)
    order = [(-r["count"], len(r["domain"])) for r in shape["rows"]]
    assert order == sorted(order)
    return rows


def shown_name(name: str, width: int) -> str:
    """How qshape shows a row name in a domain column of ``width``: long ones cut from the left."""
    if len(name) <= width:
        return name
    return (".+" + name[-(width - 2) :]) if name.startswith(".") else ("+" + name[-(width - 1) :])


def shape_kwargs(options: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """(postlens.queue()'s keywords, the text width) of an OPTION_SETS entry."""
    kwargs = {k: v for k, v in options.items() if k != "width"}
    return kwargs, options.get("width", 80)


# ---------------------------------------------------------------------------------------------
# hand-made queue files


def record(kind: str, data: bytes) -> bytes:
    """One queue file record: its type, its length in 7-bit groups (low first), its data."""
    size = bytearray()
    n = len(data)
    while True:
        size.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            break
    return kind.encode() + bytes(size) + data


def queue_file(arrival: int, sender: str, recipients: list[str]) -> bytes:
    """A finished queue file as cleanup writes it, with an empty message content."""
    return b"".join([
        record("C", f"{0:15d} {0:15d} {len(recipients):15d}".encode()),
        record("T", f"{arrival} 0".encode()),
        record("S", sender.encode()),
        *(record("R", r.encode()) for r in recipients),
        record("M", b""), record("X", b""), record("E", b""),
    ])  # fmt: skip


DOMAINS = [
    "example.com", "Example.COM", "mx1.example.com", "a.b.example.com", "x.y.z.example.org",
    *(f"h{i}.shop.example.net" for i in range(1, 8)), "shop.example.net", "SHOP.example.NET",
    "localhost", ".lead.example", "trail.example.", "dou..ble.example", "a...b.example", ".",
    "", "deep.er.still.example.org", "io", "x.io",
]  # fmt: skip
LOCALS = ["u", "User.Name", "a@b", "x+tag"]


def random_queue(rng: random.Random, now: int, count: int) -> list[dict[str, Any]]:
    """Messages as postqueue -j would list them, with ages on qshape's bucket boundaries."""
    boundaries = [60 * 5 * 2**k + d for k in range(12) for d in (-1, 0, 1)]
    ages = [0, 1, 59, 60, 61, -30, *boundaries, 1799, 1800, 1801, 3600, 86400 * 3]
    messages = []
    for i in range(count):

        def address() -> str:
            kind = rng.random()
            if kind < 0.05:
                return ""
            if kind < 0.1:
                return rng.choice(["noat", "No.At.All"])
            return f"{rng.choice(LOCALS)}@{rng.choice(DOMAINS)}"

        age = rng.choice(ages) if rng.random() < 0.6 else rng.randrange(0, 20 * 86400)
        messages.append({
            "queue_name": "deferred", "queue_id": f"Q{i:05d}ABC", "arrival_time": now - age,
            "message_size": 100 + i, "forced_expire": rng.random() < 0.05, "sender": address(),
            "recipients": [{"address": address()} for _ in range(rng.choice([0, 1, 1, 1, 2, 3, 5]))],
        })  # fmt: skip
    return messages


def write_queue(root: Path, messages: list[dict[str, Any]]) -> tuple[Path, Path]:
    """The queue files of ``messages`` under root/deferred (0700, or 0710 when postsuper -e
    marked them), and the same queue as showq lists it (null addresses as MAILER-DAEMON)."""
    deferred = root / "deferred"
    deferred.mkdir()
    for m in messages:
        path = deferred / m["queue_id"]
        path.write_bytes(queue_file(m["arrival_time"], m["sender"], [r["address"] for r in m["recipients"]]))
        path.chmod(0o710 if m["forced_expire"] else 0o700)
    listing = root / "postqueue.json"
    with listing.open("w") as f:
        for m in messages:
            shown = {**m, "sender": m["sender"] or "MAILER-DAEMON",
                     "recipients": [{"address": r["address"] or "MAILER-DAEMON"} for r in m["recipients"]]}  # fmt: skip
            f.write(json.dumps(shown) + "\n")
    return deferred, listing


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_hand_made_queue_files_are_counted_as_qshape_counts_them(
    lab_ready: None, tmp_path: Path, seed: int
) -> None:
    now = 1_790_000_000 + seed * 7777
    deferred, listing = write_queue(tmp_path, random_queue(random.Random(seed), now, 120))
    for args, options in OPTION_SETS:
        kwargs, width = shape_kwargs(options)
        result, problems = postlens.queue(str(listing), queues=["deferred"], now=now, **kwargs)
        assert not problems
        assert_same(run_qshape([deferred], args, now), result, width)
    assert result["shape"]["left_out"]["forced_expire"] > 0
    assert result["shape"]["left_out"]["no_recipients"] > 0


# ---------------------------------------------------------------------------------------------
# a real lab's queue

# added at the real time once the lab's Postfix runs again: (sender, recipients); none is
# deliverable with defer_transports = smtp, so all stay deferred
LATER = [
    ("<>", ["u1@a.shop.example.org", "U2@B.Shop.Example.ORG"]),
    ("Bob@Sender.EXAMPLE", ["u3@c.shop.example.org", "u4@d.shop.example.org", "u5@e.shop.example.org",
                            "v@x.y.shop.example.org"]),
    ("carol@lab.test", ["w@host.example.org", "z@example.org", "q@q.example"]),
    ("n1@accept.test", ["r1@later.example"]),
    ("s01@sender1.example", ["h@held.example.org"]),  # then put on hold
]  # fmt: skip
MAILDROP = [("m@drop.example", ["md@x.drop.example"]), ("<>", ["md2@y.drop.example", "md3@y.drop.example"])]
DATED_BACK = 3 * 3600 + 600  # the lab's own mail: 190 minutes, the middle of bucket 160-320


def submit(pf: postfixlab.RunningAgain, sender: str, recipients: list[str]) -> None:
    body = b"Subject: postlens queue test\n\nhello\n"
    pf.run(SENDMAIL, "-C", str(pf.etc), "-f", sender, "--", *recipients, input=body)


def listing(pf: postfixlab.RunningAgain) -> list[dict[str, Any]]:
    out = pf.run(POSTQUEUE, "-c", str(pf.etc), "-j").stdout.decode()
    return [json.loads(line) for line in out.splitlines()]


def wait_queues(
    pf: postfixlab.RunningAgain, want: dict[str, int], timeout: float = 30
) -> list[dict[str, Any]]:
    """The listing once the queues hold exactly ``want`` messages (and nothing else)."""
    deadline = time.monotonic() + timeout
    while True:
        entries = listing(pf)
        have = Counter(e["queue_name"] for e in entries)
        if have == Counter(want):
            return entries
        assert time.monotonic() < deadline, f"queues {dict(have)}, waiting for {want}"
        time.sleep(0.2)


def ids(entries: list[dict[str, Any]], queue: str, recipient_domain: str) -> list[str]:
    return sorted(e["queue_id"] for e in entries if e["queue_name"] == queue
                  and any(r["address"].endswith("@" + recipient_domain) for r in e["recipients"]))  # fmt: skip


@pytest.fixture(scope="module")
def lab_queue(lab_runner: Any) -> Any:
    """A real lab queue in every state, with its Postfix running: (RunningAgain, spool, LabResult)."""
    sizes = postfixlab.Sizes.tiny().updated({"defer": 4, "refused": 3, "mixed": 2, "held": 2})
    dated = time.strftime("@%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - DATED_BACK))
    lab = lab_runner("lab-queue", sizes, "maillog_file", dated)
    truth = lab.truth["queue_at_end"]
    # no inet service: the ports the lab used may be another lab's by now
    with postfixlab.RunningAgain(lab, defer_transports="smtp", master_service_disable="inet") as pf:
        for sender, recipients in LATER:
            submit(pf, sender, recipients)
        entries = wait_queues(pf, {"deferred": truth["deferred"] + len(LATER), "hold": truth["hold"]})
        pf.run(POSTSUPER, "-c", str(pf.etc), "-h", ids(entries, "deferred", "held.example.org")[0])
        pf.run(POSTSUPER, "-c", str(pf.etc), "-e", ids(entries, "deferred", "refused.test")[0])
        pf.run(POSTSUPER, "-c", str(pf.etc), "-e", ids(entries, "hold", "accept.test")[0])
        # mail left in the maildrop: pickup off
        pf.postconf(master_service_disable="inet pickup.unix")
        pf.reload()
        time.sleep(1)  # the old pickup process may take a moment to go
        for sender, recipients in MAILDROP:
            submit(pf, sender, recipients)
        time.sleep(1)
        wait_queues(pf, {"deferred": truth["deferred"] + len(LATER) - 1, "hold": truth["hold"] + 1,
                         "maildrop": len(MAILDROP)})  # fmt: skip
        yield pf, lab.lab_dir / "spool", lab


def test_the_live_queue_on_the_real_clock(lab_queue: Any) -> None:
    """qshape and postlens each on their own clock: the ages are far from any boundary."""
    pf, spool, _lab = lab_queue
    dirs = [spool / "deferred", spool / "hold"]
    proc = subprocess.run([QSHAPE, *map(str, dirs)], capture_output=True, text=True, check=True)
    result, problems = postlens.queue(config_dir=str(pf.etc), queues=["deferred", "hold"])
    assert not problems
    rows = assert_same(proc.stdout, result)
    print(f"\n[queue] real clock, deferred+hold:\n{proc.stdout}", file=sys.stderr)
    # the lab's mail is 190 minutes old (160-320), the mail added since minutes at most
    assert rows["TOTAL"][7] > 0 and rows["TOTAL"][1] > 0 and sum(rows["TOTAL"][1:]) == rows["TOTAL"][0]


def test_the_saved_queue_at_several_moments_and_options(lab_queue: Any, tmp_path: Path) -> None:
    pf, spool, _lab = lab_queue
    saved = tmp_path / "postqueue.json"
    saved.write_text(pf.run(POSTQUEUE, "-c", str(pf.etc), "-j").stdout.decode())
    now = int(time.time())
    dirs = [spool / "deferred", spool / "hold"]
    seen: dict[str, list[int]] = {}
    for moment in (now, now + 7 * 60, now + 2 * 86400):
        for args, options in OPTION_SETS:
            kwargs, width = shape_kwargs(options)
            result, _ = postlens.queue(str(saved), queues=["deferred", "hold"], now=moment, **kwargs)
            rows = assert_same(run_qshape(dirs, args, moment), result, width)
            seen[f"{moment - now}s {' '.join(args)}"] = rows["TOTAL"]
    for queues in (["incoming", "active"], ["deferred"], ["hold"]):
        result, _ = postlens.queue(str(saved), queues=queues, now=now)
        assert_same(run_qshape([spool / q for q in queues], [], now), result)
    print("\n[queue] TOTAL rows seen (moment, qshape options):", file=sys.stderr)
    for key, total in seen.items():
        print(f"  {key}: {total}", file=sys.stderr)
    # held and force-expired mail, the null sender and parent rows were all in play
    result, _ = postlens.queue(str(saved), queues=["deferred", "hold"], now=now, senders=True, parents=True)
    assert result["shape"]["left_out"] == {"forced_expire": 2, "no_recipients": 0}
    assert "MAILER-DAEMON" in {r["domain"] for r in result["shape"]["rows"]}
    result, _ = postlens.queue(str(saved), queues=["deferred", "hold"], now=now, parents=True)
    assert ".shop.example.org" in {r["domain"] for r in result["shape"]["rows"]}


def test_the_command_line_live_and_from_a_file(lab_queue: Any, tmp_path: Path) -> None:
    pf, spool, _lab = lab_queue
    now = int(time.time())
    base = [sys.executable, "-m", "postlens", "queue", "--now", str(now), "--queue", "deferred,hold", "-p"]
    live = subprocess.run([*base, "-c", str(pf.etc)], capture_output=True, text=True, check=True)
    saved = tmp_path / "q.json"
    saved.write_text(pf.run(POSTQUEUE, "-c", str(pf.etc), "-j").stdout.decode())
    from_file = subprocess.run([*base, str(saved)], capture_output=True, text=True, check=True)
    expected = run_qshape([spool / "deferred", spool / "hold"], ["-p"], now).splitlines()
    for out in (live.stdout, from_file.stdout):
        assert Counter(out.splitlines()[: len(expected)]) == Counter(expected)
    # the Nagios check reads the same instance's queue (-c is --critical there)
    listed = sum(1 for text in saved.read_text().splitlines() if text.strip())
    check = subprocess.run(
        [sys.executable, "-m", "postlens", "check", "queue", "--config-dir", str(pf.etc)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert check.returncode == 0 and f"{listed} messages in the queue" in check.stdout, check.stdout
    # pflogsumm's --mailq: the report ends with the same instance's queue
    report = subprocess.run(
        [sys.executable, "-m", "postlens", "report", "--sample", "--mailq", "--config-dir", str(pf.etc)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    queue = report.split("Current Mail Queue\n------------------\n")[1]
    every = next(row for row in queue.splitlines() if row.startswith("all "))
    assert "TOTAL" in queue and int(every.split()[1]) == listed, queue


def test_maildrop_is_where_qshape_misreads_the_queue(lab_queue: Any) -> None:
    """Postfix 3.7's maildrop files start with a time record, which qshape does not expect:
    it counts no recipient of them, and in -s mode counts each as MAILER-DAEMON at the age of
    the epoch. postlens takes showq's arrival time and addresses."""
    pf, spool, _lab = lab_queue
    now = int(time.time())
    result, _ = postlens.queue(config_dir=str(pf.etc), queues=["maildrop"], now=now)
    _heads, rows = table_of(run_qshape([spool / "maildrop"], [], now))
    assert rows == {"TOTAL": [0] * 11}
    assert result["shape"]["total"]["count"] == sum(len(r) for _s, r in MAILDROP)
    assert result["shape"]["total"]["buckets"][0] == result["shape"]["total"]["count"]  # minutes old
    senders, _ = postlens.queue(config_dir=str(pf.etc), queues=["maildrop"], now=now, senders=True)
    _heads, rows = table_of(run_qshape([spool / "maildrop"], ["-s"], now))
    n = len(MAILDROP)
    assert rows == {"TOTAL": [n, *[0] * 9, n], "MAILER-DAEMON": [n, *[0] * 9, n]}
    assert {r["domain"]: r["count"] for r in senders["shape"]["rows"]} == {
        "drop.example": 1,
        "MAILER-DAEMON": 1,
    }


def test_the_summary_and_the_delay_reasons(lab_queue: Any) -> None:
    pf, _spool, lab = lab_queue
    now = int(time.time())
    entries = listing(pf)
    result, _ = postlens.queue(config_dir=str(pf.etc), now=now)
    queues = {q["queue"]: q for q in result["queues"]}
    truth = lab.truth["queue_at_end"]
    assert queues["deferred"]["messages"] == truth["deferred"] + len(LATER) - 1
    assert queues["hold"]["messages"] == truth["hold"] + 1
    assert queues["maildrop"]["messages"] == len(MAILDROP)
    assert queues["deferred"]["forced_expire"] == queues["hold"]["forced_expire"] == 1
    assert result["all"]["bytes"] == sum(e["message_size"] for e in entries)
    assert result["all"]["recipients"] == sum(len(e["recipients"]) for e in entries)
    oldest = result["oldest"]
    assert oldest["arrival_time"] == min(e["arrival_time"] for e in entries)
    assert DATED_BACK - 120 < oldest["age_seconds"] < DATED_BACK + 600  # the lab's own mail
    # the reasons are those the classifier gives for the replies Postfix recorded
    rules = Rules.load()
    expected: Counter[tuple[str, str]] = Counter()
    for e in entries:
        for r in e["recipients"]:
            if r.get("delay_reason"):
                reason = rules.classify("deferred", *split_reply(r["delay_reason"])).reason.id
                expected[(r["address"].rsplit("@", 1)[1].lower(), reason)] += 1
    got = Counter(
        {(d["domain"], x["id"]): x["recipients"] for d in result["reasons_by_domain"] for x in d["reasons"]}
    )
    assert got == expected
    # the sink's 450 and the closed port are told apart, and neither is left unclassified
    by_domain = {d["domain"]: {x["id"] for x in d["reasons"]} for d in result["reasons_by_domain"]}
    assert by_domain["defer.test"].isdisjoint(by_domain["refused.test"])
    assert "unclassified" not in by_domain["defer.test"] | by_domain["refused.test"]


def test_root_reads_the_queue_with_postfix_stopped(lab_queue: Any) -> None:
    """With the mail system down, root's postqueue -j runs showq itself: the same queue, and
    postqueue's warning passed on. Last in this file: it stops the lab's Postfix."""
    pf, spool, _lab = lab_queue
    now = int(time.time())
    running, _ = postlens.queue(config_dir=str(pf.etc), queues=["deferred", "hold"], now=now)
    pf.stop()
    stopped, problems = postlens.queue(config_dir=str(pf.etc), queues=["deferred", "hold"], now=now)
    assert (stopped["shape"], stopped["queues"]) == (running["shape"], running["queues"])
    assert any("Mail system is down" in str(p) for p in problems), problems
    assert_same(run_qshape([spool / "deferred", spool / "hold"], [], now), stopped)
