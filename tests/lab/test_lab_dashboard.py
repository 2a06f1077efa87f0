"""The dashboard end to end: a real Postfix's log, `postlens serve --watch` on it, a real
headless Chromium reading every page (screenshots in screenshots/ for review)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import postfixlab
import pytest
from tests.conftest import need_module, screenshot

PWNED = ("pwned", "pwned_helo", "pwned_addr", "pwned_rcpt", "pwned_reply", "pwned_bounce")
BRUTE_FORCE_IP = "127.0.0.10"


@pytest.fixture(scope="module")
def lab(lab_runner: Callable[..., postfixlab.LabResult]) -> postfixlab.LabResult:
    return lab_runner("dashboard", postfixlab.Sizes.small().updated({"hostile": 1}))


@pytest.fixture(scope="module")
def served(lab: postfixlab.LabResult, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`postlens serve --watch` on the first part of the lab's log; the test appends the rest."""
    need_module("uvicorn")
    work = tmp_path_factory.mktemp("dashboard")
    lines = lab.log_path.read_text().splitlines(keepends=True)
    cut = len(lines) * 2 // 3
    live = work / "mail.log"
    live.write_text("".join(lines[:cut]))
    db = work / "history.db"
    port = postfixlab.free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "postlens", "serve", "--db", str(db), "--listen", f"127.0.0.1:{port}",
         "--watch", str(live), "--queue-file", str(lab.postqueue_path), "--tz", "UTC"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "XDG_STATE_HOME": str(work / "state")},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # up, and the watcher has stored and summarised the first part
            try:
                urllib.request.urlopen(base + "/api/overview", timeout=5).read()
                if db.exists() and _stored(db) >= cut:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the dashboard did not start and store the log"
            time.sleep(0.3)
        yield {"base": base, "live": live, "rest": lines[cut:], "db": db}
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        assert "Traceback" not in err, err


def _stored(db: Path) -> int:
    con = sqlite3.connect(db, timeout=30)
    try:
        row = con.execute("SELECT line_id FROM rollup_state").fetchone()
        return int(row[0]) if row else 0
    except sqlite3.OperationalError:  # the schema is not made yet
        return 0
    finally:
        con.close()


def _safe(page: Any) -> None:
    """No markup from the log ran, and nothing failed in the page (a script injected and
    then blocked by the Content-Security-Policy would show as a console error)."""
    ran = page.evaluate(f"[{', '.join(f'window.{name}' for name in PWNED)}]")
    assert ran == [None] * len(PWNED), ran
    assert page.errors == []


def _drawn(page: Any, name: str) -> int:
    """Waits for chart ``name`` to be drawn; the number of its canvas's non-blank pixels."""
    page.wait_for_selector(f'[data-chart="{name}"][data-drawn]', timeout=15_000)
    assert int(page.get_attribute(f'[data-chart="{name}"]', "data-drawn")) > 0
    inked: int = page.evaluate(
        """name => {
            const canvas = document.querySelector(`[data-chart="${name}"] canvas`);
            const px = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
            let n = 0;
            for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++;
            return n;
        }""",
        name,
    )
    return inked


def _totals(page: Any) -> dict[str, str]:
    return page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('[data-total]')].map(e => [e.dataset.total, e.textContent]))"
    )


def test_overview_draws_and_follows_the_log_live(served: dict[str, Any], page: Any) -> None:
    page.goto(served["base"] + "/")
    assert _drawn(page, "traffic") > 500
    assert _drawn(page, "received") > 100
    page.wait_for_function("Number(document.body.dataset.liveUpdates || 0) >= 1", timeout=15_000)
    before = _totals(page)
    assert int(before["delivered"]) > 0
    screenshot(page, "dashboard-overview")
    page.evaluate("window.notReloaded = true")
    with served["live"].open("a") as f:
        f.writelines(served["rest"])
    page.wait_for_function(
        "b => JSON.stringify(Object.fromEntries([...document.querySelectorAll('[data-total]')]"
        ".map(e => [e.dataset.total, e.textContent]))) !== b",
        arg=__import__("json").dumps(before, separators=(",", ":")),
        timeout=30_000,
    )
    after = _totals(page)
    assert page.evaluate("window.notReloaded") is True  # changed in place
    assert after != before
    assert sum(int(v) for v in after.values()) > sum(int(v) for v in before.values())
    _safe(page)


def test_security_lists_the_brute_force_ip(served: dict[str, Any], page: Any) -> None:
    page.goto(served["base"] + "/security")
    alert = page.locator(f'li.alert[data-ip="{BRUTE_FORCE_IP}"]')
    assert alert.count() == 1
    assert BRUTE_FORCE_IP in alert.inner_text()
    assert _drawn(page, "failures") > 100
    assert BRUTE_FORCE_IP in page.locator("#auth-ips").inner_text()
    screenshot(page, "dashboard-security")
    _safe(page)


def test_search_finds_a_message_and_opens_its_timeline(served: dict[str, Any], page: Any) -> None:
    con = sqlite3.connect(served["db"])
    qid, recipient = con.execute(
        # one recipient: the lab also sends to several at once, and which queue ID comes first varies
        "SELECT qid, recipients FROM rollup_messages WHERE status = 'delivered' AND recipients LIKE '%@accept.test' "
        "AND recipients NOT LIKE '% %' ORDER BY qid LIMIT 1"
    ).fetchone()
    con.close()
    page.goto(served["base"] + "/messages")
    page.fill("input[name=recipient]", recipient)
    page.click("#search")
    page.wait_for_selector("#results a.timeline")
    assert recipient in page.locator("#results").inner_text()
    screenshot(page, "dashboard-messages")
    page.click(f"#results a.timeline:has-text('{qid}')")
    page.wait_for_selector("#timeline li")
    assert page.url.endswith(f"/{qid}")
    timeline = page.locator("#timeline").inner_text()
    assert f"{qid}: removed" in timeline and f"to=<{recipient}>" in timeline
    screenshot(page, "dashboard-message")
    _safe(page)


def test_markup_from_the_log_is_shown_as_text_and_never_runs(served: dict[str, Any], page: Any) -> None:
    base = served["base"]
    page.goto(f"{base}/messages?ip={postfixlab.IP_HOSTILE}&range=30d")
    page.wait_for_selector("#refused")
    refused = page.locator("#refused").inner_text()
    assert postfixlab.HOSTILE_HELO in refused
    assert postfixlab.HOSTILE_SENDER in page.locator("#results").inner_text()
    _safe(page)
    page.click("#results a.timeline >> nth=0")
    page.wait_for_selector("#timeline li")
    text = page.locator("main").inner_text()
    assert postfixlab.HOSTILE_REPLY.split(" ", 2)[2] in text or postfixlab.HOSTILE_BOUNCE_REPLY in text
    screenshot(page, "dashboard-hostile-message")
    _safe(page)
    for path in ("/", "/problems", "/security", "/messages?status=bounced&range=30d", "/queue", "/trends"):
        page.goto(base + path)
        page.wait_for_load_state("networkidle") if path != "/" else page.wait_for_selector("[data-drawn]")
        _safe(page)


def test_problems_queue_and_trends_pages(served: dict[str, Any], page: Any) -> None:
    base = served["base"]
    page.goto(base + "/problems")
    problems = page.locator("table.problems").inner_text()
    assert "defer.test" in problems and "hostile.test" in problems
    screenshot(page, "dashboard-problems")
    page.click("table.problems a >> nth=0")
    page.wait_for_selector("#results")
    page.goto(base + "/queue")
    qshape = page.locator("#qshape").inner_text()
    assert "TOTAL" in qshape and "defer.test" in qshape
    screenshot(page, "dashboard-queue")
    page.goto(base + "/trends")
    assert page.locator("main svg").count() == 1
    assert _drawn(page, "per-day") > 0
    assert page.locator("#days tr").count() >= 2
    screenshot(page, "dashboard-trends")
    _safe(page)
