"""postlens watch on the log of a real Postfix while it runs: a burst of failed logins fires
the auth-failure alert within seconds at a webhook, a resolved notice follows, /metrics
counts what the lab did, and every line is read once."""

from __future__ import annotations

import json
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import postfixlab
import pytest
from prometheus_client.parser import text_string_to_metric_families

import postlens

BRUTE = "127.0.0.10"


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[tuple[float, dict[str, Any]]]]]:
    """A local HTTP receiver: (its URL, the JSON bodies posted to it with their arrival time)."""
    received: list[tuple[float, dict[str, Any]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((time.time(), json.loads(body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_watch_alerts_and_counts_a_live_lab(lab_ready: None, lab_base: Path, webhook: Any) -> None:
    url, received = webhook
    workdir = Path(tempfile.mkdtemp(prefix="lab-watch-", dir=lab_base))
    log = workdir / "log" / "mail.log"
    settings = {
        "alert": [{"name": "logins", "kind": "auth_failures_ip", "window": "10s", "threshold": 5,
                   "severity": "critical", "cooldown": "1m"}],
        "alerts": {"webhook": [url]},
    }  # fmt: skip
    port = postfixlab.free_port()
    options = postlens.WatchOptions(
        paths=[str(log)], from_start=True, settings=settings, metrics=f"127.0.0.1:{port}",
        state=str(workdir / "watch.json"), year=time.gmtime().tm_year,
    )  # fmt: skip
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            postlens.watch(options, stop)
        except BaseException as e:  # surfaced by the test below
            failure.append(e)

    watcher = threading.Thread(target=run, daemon=True)
    watcher.start()
    try:
        sizes = postfixlab.Sizes.tiny().to_dict()
        sizes["auth_fail"] = {BRUTE: 12, "127.0.0.11": 2}
        lab = postfixlab.run_scenario(sizes, "maillog_file", workdir=workdir, install=False)
        last_failure = max(
            time.mktime(time.strptime(line[:15] + f" {time.gmtime().tm_year}", "%b %d %H:%M:%S %Y"))
            for line in log.read_text().splitlines()
            if "authentication failed" in line
        )
        deadline = time.time() + 30
        while time.time() < deadline and not any(b["state"] == "resolved" for _, b in received):
            time.sleep(0.5)
        metrics = _scrape(port)
    finally:
        stop.set()
        watcher.join(timeout=15)
    assert not failure, failure
    firing = [(at, b) for at, b in received if b["state"] == "firing"]
    resolved = [(at, b) for at, b in received if b["state"] == "resolved"]
    assert [b["key"] for _, b in firing] == [BRUTE], received
    assert firing[0][1]["rule"] == "logins" and firing[0][1]["severity"] == "critical"
    # fired while the burst was on: within seconds of the failures, not at the end of the run
    assert firing[0][0] <= last_failure + 10
    assert [b["key"] for _, b in resolved] == [BRUTE]
    truth = lab.truth
    assert (
        metrics[("postfix_smtpd_sasl_authentication_failures_total", ())] == truth["auth_failures"]["total"]
    )
    assert metrics[("postfix_qmgr_messages_expired_total", ())] == truth["expired"]
    # every line read once: the connects counted equal those in the log
    connects = sum(
        1 for line in log.read_text().splitlines() if "/smtpd[" in line and ": connect from " in line
    )
    assert metrics[("postfix_smtpd_connects_total", ())] == connects
    assert json.loads((workdir / "watch.json").read_text()), "the positions were saved"
