"""The dashboard over HTTP (Starlette's test client): pages, escaping, headers, access."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import postlens
from postlens import history
from tests.conftest import need_module

SCRIPT = "<script>window.pwned=1</script>"
HOSTILE = f"""\
Nov 28 10:00:01 mx postfix/smtpd[10]: connect from unknown[192.0.2.9]
Nov 28 10:00:02 mx postfix/smtpd[10]: NOQUEUE: reject: RCPT from unknown[192.0.2.9]: 554 5.7.1 <a@lab.test>: Relay access denied; from=<"{SCRIPT}"@evil.test> to=<a@lab.test> proto=ESMTP helo=<{SCRIPT}>
Nov 28 10:00:03 mx postfix/smtpd[10]: 1A2B3C4D5E: client=unknown[192.0.2.9]
Nov 28 10:00:03 mx postfix/cleanup[11]: 1A2B3C4D5E: message-id=<{SCRIPT}@evil.test>
Nov 28 10:00:03 mx postfix/qmgr[12]: 1A2B3C4D5E: from=<x@evil.test>, size=300, nrcpt=1 (queue active)
Nov 28 10:00:03 mx amavis[14]: (00014-01) Blocked SPAM {{DiscardedInbound}}, [192.0.2.9]:5555 <x@evil.test> -> <u@remote.test>, Queue-ID: 1A2B3C4D5E, Hits: 12.5, size: 300, 40 ms
Nov 28 10:00:04 mx postfix/smtp[13]: 1A2B3C4D5E: to=<u@remote.test>, relay=mx.remote.test[198.51.100.1]:25, delay=1.2, delays=0.1/0/0.5/0.6, dsn=4.7.1, status=deferred (host mx.remote.test[198.51.100.1] said: 451 4.7.1 {SCRIPT} try later (in reply to RCPT TO command))
"""


@pytest.fixture
def db(tmp_path: Path, new_history: Callable[[], str]) -> str:
    """The sample log and hostile lines, in SQLite and in PostgreSQL."""
    log = tmp_path / "mail.log"
    log.write_text(HOSTILE + Path(postlens.sample_log()).read_text())
    target = new_history()
    history.ingest([str(log)], target, keep_days=0, year=2026, tz="UTC")
    return target


def client(db: str, **access: str):  # type: ignore[no-untyped-def]
    need_module("starlette")
    need_module("httpx2")
    from starlette.testclient import TestClient

    from postlens.access import Access
    from postlens.web.app import create_app

    return TestClient(create_app(db, access=Access(**access), tz="UTC"))


PAGES = ["/", "/problems", "/security", "/messages", "/messages?status=deferred", "/queue", "/trends",
         "/messages?msgid=*evil.test*", "/message/mx/1A2B3C4D5E", "/problems?range=1h", "/?from=2026-11-28T00:00&to=2026-11-29T00:00"]  # fmt: skip


@pytest.mark.parametrize("page", PAGES)
def test_every_page_escapes_log_text_and_forbids_inline_script(db: str, page: str) -> None:
    r = client(db).get(page)
    assert r.status_code == 200, r.text
    assert SCRIPT not in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"


def test_hostile_text_is_shown_as_text(db: str) -> None:
    c = client(db)
    escaped = "&lt;script&gt;window.pwned=1&lt;/script&gt;"
    assert escaped in c.get("/message/mx/1A2B3C4D5E").text  # the reply, in the attempt and the raw lines
    assert (
        escaped in c.get("/messages?ip=192.0.2.9").text
        or "1A2B3C4D5E" in c.get("/messages?ip=192.0.2.9").text
    )


def test_overview_numbers_are_the_reports(db: str) -> None:
    o = client(db).get("/api/overview?range=30d").json()
    assert o["totals"]["deferred"] == 11  # the sample's 10 and the hostile one
    assert o["totals"]["rejected"] == 15
    assert sum(o["traffic"]["series"][0]["values"]) == o["totals"]["delivered"]
    assert o["delays"]["p50"] is not None


def test_blocklist_download(db: str) -> None:
    c = client(db)
    r = c.get("/security/blocklist?format=plain&range=30d")
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    for line in r.text.splitlines():
        assert line.startswith("#") or line.split()[0].count(".") == 3
    assert c.get("/security/blocklist?format=exe").status_code == 400


def test_token_and_password(db: str) -> None:
    c = client(db, token="s3cret")
    assert c.get("/").status_code == 401
    assert c.get("/", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = c.get("/?token=s3cret")
    assert r.status_code == 200 and "postlens_token" in r.headers["set-cookie"]
    assert c.get("/problems").status_code == 200  # the cookie it set

    c = client(db, user="admin", password="pw")
    r = c.get("/security")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    good = base64.b64encode(b"admin:pw").decode()
    bad = base64.b64encode(b"admin:nope").decode()
    assert c.get("/security", headers={"Authorization": f"Basic {good}"}).status_code == 200
    assert c.get("/security", headers={"Authorization": f"Basic {bad}"}).status_code == 401
    assert c.get("/security", headers={"Authorization": "Basic !!!"}).status_code == 401


def test_messages_still_in_the_queue_are_listed(db: str) -> None:
    c = client(db)
    overview = c.get("/api/overview").json()
    page = c.get("/messages?status=deferred").text
    queued = page.split('id="queued"')[1].split("</table>")[0]
    assert "1A2B3C4D5E" in queued
    assert queued.count("<tr>") - 1 == overview["queue"]["messages"] - 1  # all but the held one
    held = c.get("/messages?status=hold").text.split('id="queued"')[1].split("</table>")[0]
    assert held.count("<tr>") - 1 == 1 and "16DF420FF88" in held
    delivered = c.get("/messages?status=delivered").text
    assert 'id="queued"' not in delivered and 'id="results"' in delivered
    by_reason = c.get("/messages?reason=temporary_failure").text.split('id="queued"')[1].split("</table>")[0]
    assert "1A2B3C4D5E" in by_reason and "DD61B20FDD1" in by_reason


def test_content_checks_and_authenticated_senders_on_the_security_page(db: str) -> None:
    page = client(db).get("/security?range=30d").text
    table = page.split('id="content-checks"')[1].split("</table>")[0]
    assert '<td>amavis</td><td>Blocked SPAM</td><td class="num">1</td>' in table
    senders = page.split('id="sasl-senders"')[1].split("</table>")[0]
    sample = Path(postlens.sample_log()).read_text().splitlines()
    alice = sum(1 for line in sample if ": client=" in line and "sasl_username=alice" in line)
    assert alice and f'<td>alice</td><td class="num">{alice}</td>' in senders


def test_unknown_message_and_bad_periods(db: str) -> None:
    c = client(db)
    assert "No message NOPE" in c.get("/message/mx/NOPE").text
    assert c.get("/?range=nonsense").status_code == 200
    assert c.get("/?from=yesterday&to=x").status_code == 200


def test_serve_warns_beyond_loopback_without_a_password(tmp_path: Path) -> None:
    need_module("uvicorn")
    from postlens.metrics import parse_address
    from postlens.web.serve import local_only

    proc = subprocess.Popen(
        [sys.executable, "-m", "postlens", "serve", "--db", str(tmp_path / "h.db"), "--listen", "0.0.0.0:0"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    first = proc.stderr.readline()
    proc.terminate()
    proc.wait(timeout=30)
    assert first.startswith("postlens: warning: the dashboard listens on 0.0.0.0") and "password" in first

    assert parse_address("[::1]:8025", "--listen") == ("::1", 8025)
    assert local_only("127.0.0.1") and local_only("::1") and not local_only("0.0.0.0")
    with pytest.raises(postlens.errors.UsageError):
        parse_address("8025", "--listen")


def test_a_malformed_search_is_said_on_the_page(db: str) -> None:
    r = client(db).get("/messages?ip=300.1.2.3/99")
    assert r.status_code == 200 and 'class="error"' in r.text and "300.1.2.3" in r.text


def test_a_search_with_many_matches_shows_the_newest(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from postlens.web import app

    c = client(db)
    everything = c.get("/messages?recipient=accept.test&range=30d").text
    assert 'id="newest-only"' not in everything
    monkeypatch.setattr(app, "SEARCH_LINES", 6)
    newest = c.get("/messages?recipient=accept.test&range=30d").text
    assert 'id="newest-only"' in newest

    def found(page: str) -> int:
        return int(page.split(" messages found")[0].rsplit(">", 1)[1])

    assert 0 < found(newest) < found(everything)
