"""postlens against a real Postfix: its report must equal what the lab knows it sent.

Each lab run returns the log and the ground truth it injected (see docs/lab.md); the
assertions compare postlens's JSON with that truth field by field, and postlens's
``pflogsumm`` object with pflogsumm 1.1.5 run on the same log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import postfixlab
import pytest

from postlens.analyses.pflogsumm import REUSE_AFFECTED, as_printed, parse_grand_totals, reuses_queue_ids
from postlens.parallel import analyse_parallel
from postlens.pipeline import Settings, analyse

TOTALS_FROM_TRUTH = (
    "received", "delivered", "forwarded", "deferred", "deferrals", "bounced", "expired", "rejected",
    "reject_warnings", "held", "discarded", "notifications", "senders",
)  # fmt: skip


def postlens_json(log: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "postlens", "report", "--format", "json", *args, str(log)],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    return json.loads(out.stdout)


def assert_report_equals_truth(r: dict[str, Any], truth: dict[str, Any]) -> None:
    totals = r["totals"]
    assert {k: totals[k] for k in TOTALS_FROM_TRUTH} == {k: truth[k] for k in TOTALS_FROM_TRUTH}
    assert totals["recipients"] == truth["recipients_delivered"]
    assert r["messages"]["hops"] == truth["filter_hops"]
    domains = {d["domain"]: d for d in r["delivery_domains"]}
    for name, want in truth["per_domain"].items():
        got = domains.get(name, {"delivered": 0, "deferred": 0, "bounced": 0})
        assert (got["delivered"], got["deferred"], got["bounced"]) == (
            want["delivered"], want["deferred"], want["bounced"],
        ), name  # fmt: skip
    assert r["rejects"]["by_kind"] == truth["rejects"]
    assert r["rejects"]["by_client"] == truth["rejects_by_client"]
    for side, key in (("failures", "auth_failures"), ("successes", "auth_successes")):
        got, want = r["auth"][side], truth[key]
        assert (got["total"], got["by_ip"], got["by_username"], got["by_method"]) == (
            want["total"], want["by_ip"], want["by_username"], want["by_method"],
        ), side  # fmt: skip


def assert_pflogsumm_view_equals_pflogsumm(r: dict[str, Any], log: Path) -> None:
    report = subprocess.run(["/usr/sbin/pflogsumm", str(log)], capture_output=True, text=True, check=True)
    theirs = parse_grand_totals(report.stdout)
    # pflogsumm's own bug on reused queue IDs is not copied (docs/architecture.md)
    skip = REUSE_AFFECTED if reuses_queue_ids(log) else set()
    ours = {k: as_printed(v) for k, v in r["pflogsumm"].items() if k in theirs and k not in skip}
    assert ours == {k: v for k, v in theirs.items() if k not in skip}


def assert_documented_differences(r: dict[str, Any], truth: dict[str, Any]) -> None:
    """pflogsumm's totals differ from the truth exactly where docs/cli.md says they do."""
    p = r["pflogsumm"]
    header_rejects = truth["rejects"].get("header", 0) + truth["rejects"].get("body", 0)
    # every client= line counts to pflogsumm: the re-injected copies and the header-rejected ones
    assert p["received"] == truth["received"] + r["messages"]["reinjected"] + header_rejects
    assert p["delivered"] == truth["delivered"] + truth["filter_hops"]
    assert p["bounced"] == truth["bounced"]  # expiry is not a bounce to pflogsumm
    assert r["totals"]["expired"] == truth["expired"]


@pytest.mark.parametrize("fixture", ["lab_small", "lab_small_syslog"])
def test_report_equals_the_truth(fixture: str, request: pytest.FixtureRequest) -> None:
    lab: postfixlab.LabResult = request.getfixturevalue(fixture)
    r = postlens_json(lab.log_path)
    assert_report_equals_truth(r, lab.truth)
    assert_pflogsumm_view_equals_pflogsumm(r, lab.log_path)
    assert_documented_differences(r, lab.truth)
    assert r["coverage"]["unrecognised"] == 0, r["coverage"]["unrecognised_examples"]
    # split at many points, messages cut in two included, and read in two processes
    one, _ = analyse([str(lab.log_path)], Settings())
    for chunk_bytes in (4096, 65536):
        many, _ = analyse_parallel([str(lab.log_path)], Settings(), jobs=2, chunk_bytes=chunk_bytes)
        assert json.dumps(many, sort_keys=True) == json.dumps(one, sort_keys=True)


def faked(offset: str) -> dict[str, str]:
    lib = postfixlab.faketime_library()
    assert lib, "libfaketime is installed with the lab packages"
    return {**os.environ, "LD_PRELOAD": lib, "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def test_today_and_yesterday_on_days_one_to_nine(lab_runner) -> None:
    """maillog_file pads days with a zero ("Jan 05"); -d today must still find the lines."""
    lab = lab_runner("lab-report-jan05", postfixlab.Sizes.tiny(), "maillog_file", "@2026-01-05 10:00:00")
    assert lab.faketime is not None
    today = postlens_json(lab.log_path, "-d", "today", env=faked(lab.faketime))
    assert_report_equals_truth(today, lab.truth)
    next_day = f"{int(lab.faketime) + 86400:+d}"
    yesterday = postlens_json(lab.log_path, "-d", "yesterday", env=faked(next_day))
    assert yesterday["totals"] == today["totals"]
    assert postlens_json(lab.log_path, "-d", "today", env=faked(next_day))["totals"]["received"] == 0
    # pflogsumm itself looks for "Jan  5" and finds nothing in this log
    pfl = subprocess.run(
        ["/usr/sbin/pflogsumm", "-d", "today", str(lab.log_path)],
        capture_output=True, text=True, env=faked(lab.faketime), check=True,
    )  # fmt: skip
    assert parse_grand_totals(pfl.stdout)["received"] == (0, " ")


def test_new_year_inside_one_syslog_file(lab_runner) -> None:
    lab = lab_runner(
        "lab-report-newyear", postfixlab.Sizes.tiny(), "syslog", "@2025-12-31 23:59:58", min_seconds=4
    )
    r = postlens_json(lab.log_path)
    assert_report_equals_truth(r, lab.truth)
    assert r["per_day"][0]["date"] == "2025-12-31"
    # the year comes from the file's time; the lines after midnight belong to the next year
    lines = lab.log_path.read_text().splitlines()
    december = sum(1 for line in lines if line.startswith("Dec 31"))
    assert 0 < december < len(lines)
    new_year = postlens_json(lab.log_path, "-d", "2026-01-01")
    assert new_year["coverage"]["outside_period"] == december
    assert new_year["coverage"]["lines"] == len(lines)


@pytest.mark.slow
def test_large_scenario_equals_the_truth(lab_large: postfixlab.LabResult) -> None:
    r = postlens_json(lab_large.log_path)
    assert_report_equals_truth(r, lab_large.truth)
    assert_pflogsumm_view_equals_pflogsumm(r, lab_large.log_path)
    assert_documented_differences(r, lab_large.truth)
