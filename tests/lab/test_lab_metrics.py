"""postlens's Prometheus metrics against a real Postfix: scraped over HTTP, equal to the truth.

The lab's log is fed through :class:`postlens.metrics.Metrics` and its ``postqueue -j``
snapshot through ``set_queue``; the page is served on 127.0.0.1, fetched with urllib and read
with the official client's text parser. Every counter is then checked against the ground
truth the lab injected (docs/lab.md), minding, as for pflogsumm, that postfix_exporter's
smtpd and smtp counters see the content filter's re-injection and hop.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections import Counter
from datetime import datetime
from typing import Any

import postfixlab
import pytest
from prometheus_client.parser import text_string_to_metric_families

from postlens.events import EventParser
from postlens.lines import LineParser, YearGuess
from postlens.metrics import CONTENT_TYPE, Metrics, serve

Series = dict[tuple[tuple[str, str], ...], float]


class Page:
    """A scraped page: each sample by name and labels."""

    def __init__(self, text: str) -> None:
        self.samples: dict[str, Series] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                self.samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value

    def value(self, name: str, **labels: str) -> float:
        return self.samples[name][tuple(sorted(labels.items()))]

    def by(self, name: str, label: str) -> dict[str, float]:
        """Summed by one label, series of 0 left out."""
        out: Counter[str] = Counter()
        for labels, v in self.samples.get(name, {}).items():
            if v:
                out[dict(labels)[label]] += int(v)
        return dict(out)

    def total(self, name: str) -> float:
        return sum(self.samples.get(name, {}).values())


@pytest.fixture(scope="module", params=["lab_small", pytest.param("lab_large", marks=pytest.mark.slow)])
def lab(request: pytest.FixtureRequest) -> tuple[Page, dict[str, Any], str]:
    """The small scenario; and the large one (retry rounds, the error agent's deferrals)."""
    result: postfixlab.LabResult = request.getfixturevalue(request.param)
    metrics = Metrics()
    lines = LineParser(YearGuess(datetime.now().year, None, None), None)
    events = EventParser()
    log = result.log_path.read_text(encoding="utf-8", errors="replace")
    for text in log.splitlines():
        line = lines.parse(text)
        ev = events.parse(line) if line is not None else None
        if ev is not None:
            metrics.feed(ev)
    snapshot = result.postqueue_path.read_text().splitlines()
    metrics.set_queue([json.loads(entry) for entry in snapshot if entry.strip()], time.time())
    server = serve(metrics, "127.0.0.1:0", threading.Lock())
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as r:
            assert r.headers["Content-Type"] == CONTENT_TYPE
            page = r.read().decode("utf-8")
    finally:
        server.close()
    return Page(page), result.truth, log


def test_smtpd(lab: tuple[Page, dict[str, Any], str]) -> None:
    page, truth, _ = lab
    ok = truth["auth_successes"]
    # every client= line: received from smtpd, the filter's re-injections, and the messages
    # cleanup rejected after smtpd had logged client= (pflogsumm counts the same lines)
    client_lines = truth["received_by_source"]["smtpd"] + truth["filter_hops"] + truth["rejects"]["header"]
    assert page.by("postfix_smtpd_messages_processed_total", "sasl_method") == {
        **ok["by_method"], "": client_lines - ok["total"],
    }  # fmt: skip
    connects = page.value("postfix_smtpd_connects_total")
    assert connects > 0 and page.value("postfix_smtpd_disconnects_total") == connects


def test_logins(lab: tuple[Page, dict[str, Any], str]) -> None:
    page, truth, _ = lab
    failed = truth["auth_failures"]
    assert page.value("postfix_smtpd_sasl_authentication_failures_total") == failed["total"]
    assert page.by("postlens_auth_failures_total", "method") == failed["by_method"]
    assert page.by("postlens_auth_failures_total", "reason") == {"bad_credentials": failed["total"]}


def test_rejects(lab: tuple[Page, dict[str, Any], str]) -> None:
    page, truth, _ = lab
    kinds, clients = truth["rejects"], truth["rejects_by_client"]
    assert page.value("postfix_cleanup_messages_rejected_total") == kinds["header"]
    # the lab's policy (docs/lab.md): CONNECT and MAIL rejects and relay attempts (127.0.0.4)
    # get 554, unknown local users 550, at NOQUEUE (127.0.0.5) or after an accepted recipient
    # (127.0.0.1, whose other reject is cleanup's header check)
    assert page.by("postfix_smtpd_messages_rejected_total", "code") == {
        "554": kinds["CONNECT"] + kinds["MAIL"] + clients["127.0.0.4"],
        "550": clients["127.0.0.5"] + clients["127.0.0.1"] - kinds["header"],
    }
    assert page.total("postfix_smtpd_messages_rejected_total") == truth["rejected"] - kinds["header"]
    assert page.by("postlens_failures_total", "kind")["reject"] == truth["rejected"]


def test_deliveries(lab: tuple[Page, dict[str, Any], str]) -> None:
    page, truth, _ = lab
    statuses = page.by("postlens_domain_deliveries_total", "status")
    assert statuses == {
        "sent": truth["delivered"],
        "deferred": truth["deferrals"],
        "bounced": truth["bounced"],
    }
    assert page.value("postlens_filter_hops_total") == truth["filter_hops"]
    per_domain = truth["per_domain"]
    names = {"sent": "delivered", "deferred": "deferred", "bounced": "bounced"}
    for labels, v in page.samples["postlens_domain_deliveries_total"].items():
        domain, status = dict(labels)["domain"], dict(labels)["status"]
        if domain != "other":  # counted from when it got its label: at most the domain's all
            assert v <= per_domain[domain][names[status]], (domain, status)
    assert set(page.by("postlens_domain_deliveries_total", "domain")) - {"other"} <= set(per_domain)


def test_smtp_client(lab: tuple[Page, dict[str, Any], str]) -> None:
    page, truth, log = lab
    # postfix_exporter's smtp counters see the smtp client only: not local(8) (lab.test's
    # mail, notices to local senders included), nor the error(8) agent's deferrals of a
    # destination already marked dead; but the hop into the content filter is an smtp delivery
    local = truth["per_domain"]["lab.test"]["delivered"]
    deferred_elsewhere = len(
        re.findall(r" postfix/(?!smtp\[)[\w/-]+\[\d+\]: \w+: to=<.*status=deferred", log)
    )
    processed = page.by("postfix_smtp_messages_processed_total", "status")
    assert processed == {
        "sent": truth["delivered"] - local + truth["filter_hops"],
        "deferred": truth["deferrals"] - deferred_elsewhere,
        "bounced": truth["bounced"],
    }
    assert page.value("postfix_smtp_status_deferred_total") == processed["deferred"]
    assert page.value("postfix_smtp_deferred_messages_total") == processed["deferred"]
    assert page.total("postfix_smtp_deferred_messages_by_dsn_total") == processed["deferred"]
    assert page.total("postfix_smtp_bounced_messages_by_dsn_total") == truth["bounced"]
    for stage in ("before_queue_manager", "queue_manager", "connection_setup", "transmission"):
        assert page.value("postfix_smtp_delivery_delay_seconds_count", stage=stage) == sum(processed.values())


def test_failures_by_reason_class(lab: tuple[Page, dict[str, Any], str]) -> None:
    page, truth, _ = lab
    assert page.by("postlens_failures_total", "kind") == {
        "deferred": truth["deferrals"], "bounced": truth["bounced"], "expired": truth["expired"],
        "reject": truth["rejected"],
    }  # fmt: skip
    reasons = page.by("postlens_failures_total", "reason")
    assert reasons["user_unknown"] == truth["bounced"]  # bounce.test's sink: 550 5.1.1 User unknown
    assert reasons["relay_denied"] == truth["rejects_by_client"]["127.0.0.4"]


def test_queue_manager_cleanup_bounce(lab: tuple[Page, dict[str, Any], str]) -> None:
    page, truth, _ = lab
    assert page.value("postfix_qmgr_messages_expired_total") == truth["expired"]
    assert page.value("postfix_bounce_non_delivery_notification_total") == truth["notifications"]
    # qmgr sees every message that was queued: received ones but the held and discarded,
    # the notices Postfix made and the filter's re-injections
    queued = (
        truth["received"] - truth["held"] - truth["discarded"] + truth["notifications"] + truth["filter_hops"]
    )
    # and once more in each retry round (postqueue -f) for every message still deferred
    inserted = queued + truth["sizes"]["retry_rounds"] * truth["queue_at_end"]["deferred"]
    for name in ("postfix_qmgr_messages_inserted_size_bytes", "postfix_qmgr_messages_inserted_recipients",
                 "postfix_qmgr_messages_inserted_receipients"):  # fmt: skip
        assert page.value(name + "_count") == inserted
        assert page.value(name + "_bucket", le="+Inf") == inserted
    assert page.value("postfix_qmgr_messages_removed_total") == queued - truth["queue_at_end"]["deferred"]
    # cleanup logs message-id= for those and for the held message; not for the discarded one
    # (smtpd dropped it) nor for the one its header check rejected
    assert page.value("postfix_cleanup_messages_processed_total") == queued + truth["held"]


def test_queue_snapshot(lab: tuple[Page, dict[str, Any], str]) -> None:
    page, truth, _ = lab
    at_end = truth["queue_at_end"]
    depth = {
        "active": 0,
        "incoming": 0,
        "maildrop": 0,
        "deferred": at_end["deferred"],
        "hold": at_end["hold"],
    }
    assert {dict(k)["queue"]: v for k, v in page.samples["postfix_showq_queue_depth"].items()} == depth
    for queue, n in depth.items():
        assert page.value("postfix_showq_message_age_seconds_count", queue=queue) == n
        assert page.value("postfix_showq_message_size_bytes_count", queue=queue) == n
