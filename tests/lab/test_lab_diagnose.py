"""problems, security and anomalies on logs of the real Postfix lab: every planted attack and
storm is found with the right IP, user or domain, and normal lab traffic raises nothing.
The blocklists are checked by the real postmap and nft."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import postfixlab
import pytest

import postlens

BRUTE, QUIET, SPRAY, GUESS = "127.0.0.10", "127.0.0.11", "127.0.0.14", "127.0.0.15"


def _tiny(**extra: Any) -> dict[str, Any]:
    sizes = postfixlab.Sizes.tiny().to_dict()
    sizes["auth_fail"] = {QUIET: 2}
    sizes.update(extra)
    return sizes


@pytest.fixture(scope="module")
def attacked(lab_runner: Any) -> postfixlab.LabResult:
    sizes = _tiny(
        auth_fail={BRUTE: 14, QUIET: 2},
        auth_spray={SPRAY: 12},
        auth_guess={GUESS: (4, "alice")},
    )
    return lab_runner("lab-attacked", sizes, "syslog")


@pytest.fixture(scope="module")
def four_days(lab_runner: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    """Three ordinary days, then a day on which bob sends 40 messages and defer.test
    defers 30 more: (log of the first three days, log of all four, the fourth day's truth)."""
    logs = []
    truth = None
    for day in (2, 3, 4, 5):
        extra = {"auth_burst": {"bob": 40}, "defer_storm": 30} if day == 5 else {}
        res = lab_runner(f"lab-day{day}", _tiny(**extra), "syslog", f"@2026-03-0{day} 10:00:00")
        logs.append(res.log_path.read_text())
        truth = res.truth
    out = tmp_path_factory.mktemp("four-days")
    ordinary, everything = out / "ordinary.log", out / "all.log"
    ordinary.write_text("".join(logs[:3]))
    everything.write_text("".join(logs))
    return ordinary, everything, truth


def _kinds(result: dict[str, Any]) -> set[tuple[str, str]]:
    return {(f["kind"], f["subject"]) for f in result["findings"]}


def test_security_finds_each_planted_attack(attacked: postfixlab.LabResult) -> None:
    r, problems = postlens.security([str(attacked.log_path)], year=2026)
    assert problems == []
    assert _kinds(r) == {
        ("brute_force", BRUTE),
        ("password_spray", SPRAY),
        ("guessed_password", GUESS),
    }, r["findings"]
    guessed = next(f for f in r["findings"] if f["kind"] == "guessed_password")
    assert guessed["severity"] == "critical" and guessed["count"] == 4
    assert "alice" in guessed["explanation"]
    truth = attacked.truth["auth_failures"]
    assert r["failures"]["total"] == truth["total"]
    by_ip = {row["ip"]: row["failures"] for row in r["failures"]["by_ip"]}
    assert by_ip == truth["by_ip"]


def _security_cli(log: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "postlens", "security", "--year", "2026", *args, str(log)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_blocklists_are_accepted_by_postmap_and_nft(attacked: postfixlab.LabResult, tmp_path: Path) -> None:
    allow = ("--allow", "127.0.0.1/32")  # the lab's own clients are on loopback, like the attackers
    plain = _security_cli(attacked.log_path, "--blocklist", "plain", *allow)
    assert [x for x in plain.splitlines() if not x.startswith("#")] == sorted([BRUTE, SPRAY, GUESS])
    assert (
        _security_cli(attacked.log_path, "--blocklist", "plain").count("127.0.0.") == 0
    )  # allowed by default

    access = tmp_path / "access"
    access.write_text(_security_cli(attacked.log_path, "--blocklist", "access", *allow))
    postmap = ["postmap", "-c", str(attacked.config_dir)]  # the lab's main.cf: the system has none
    subprocess.run([*postmap, f"hash:{access}"], check=True)
    hit = subprocess.run([*postmap, "-q", BRUTE, f"hash:{access}"], capture_output=True, text=True)
    assert hit.stdout.startswith("REJECT"), hit
    miss = subprocess.run([*postmap, "-q", QUIET, f"hash:{access}"], capture_output=True, text=True)
    assert miss.returncode == 1 and miss.stdout == ""

    cidr = tmp_path / "block.cidr"
    cidr.write_text(_security_cli(attacked.log_path, "--blocklist", "cidr", *allow))
    hit = subprocess.run([*postmap, "-q", SPRAY, f"cidr:{cidr}"], capture_output=True, text=True)
    assert hit.stdout.startswith("REJECT"), hit

    nft = tmp_path / "block.nft"
    nft.write_text(_security_cli(attacked.log_path, "--blocklist", "nftables", *allow))
    assert shutil.which("nft"), "nftables is installed by the test command"
    checked = subprocess.run(["nft", "-c", "-f", str(nft)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    for ip in (BRUTE, SPRAY, GUESS):
        assert ip in nft.read_text()


def test_ordinary_days_raise_nothing(four_days: tuple[Path, Path, Any]) -> None:
    ordinary = str(four_days[0])
    security, _ = postlens.security([ordinary], year=2026)
    assert security["findings"] == []
    anomalies, _ = postlens.anomalies([ordinary], year=2026, tz="UTC")
    assert anomalies["anomalies"] == []


def test_a_sender_burst_and_a_deferral_storm_are_found(four_days: tuple[Path, Path, Any]) -> None:
    everything = str(four_days[1])
    security, _ = postlens.security([everything], year=2026)
    assert _kinds(security) == {("compromised_sender", "bob")}, security["findings"]
    anomalies, _ = postlens.anomalies([everything], year=2026, tz="UTC")
    found = {
        (a["metric"], a["domain"]) for a in anomalies["anomalies"] if a["start"] == "2026-03-05T10:00:00Z"
    }
    assert ("deferred", "defer.test") in found
    assert ("deferred", "") in found and ("received", "") in found
    assert {a["start"] for a in anomalies["anomalies"]} == {"2026-03-05T10:00:00Z"}

    problems, _ = postlens.problems([everything], year=2026, date="2026-03-05", tz="UTC")
    top = problems["problems"][0]
    truth = four_days[2]["per_domain"]["defer.test"]
    assert top["domains"][0]["domain"] == "defer.test"
    assert top["messages"] >= truth["deferred_messages"]
    assert top["previous"]["messages"] < top["messages"]
    json.dumps(problems)


def test_anomalies_take_their_baseline_from_the_history_database(
    four_days: tuple[Path, Path, Any], tmp_path: Path
) -> None:
    everything = str(four_days[1])
    db = str(tmp_path / "history.db")
    postlens.ingest([everything], db=db, keep_days=0, year=2026, tz="UTC")
    from_db, _ = postlens.anomalies([], db=db, date="2026-03-05", tz="UTC")
    from_log, _ = postlens.anomalies([everything], year=2026, date="2026-03-05", tz="UTC")
    assert from_db["anomalies"] == from_log["anomalies"]
    assert {a["start"] for a in from_db["anomalies"]} == {"2026-03-05T10:00:00Z"}
