"""The whole pipeline on tests/data/mixed.log, whose true counts were worked out by hand.

The log holds: a submission that passes a content filter (hop + re-injection) to two
recipients, one of them deferred once; a local pickup with a local delivery and an alias
forward; a bounce with its notice; an expiry with its notice; NOQUEUE rejects, a reject
warning, a header reject, a transaction aborted before DATA; postscreen, TLS, SASL
failures, Dovecot logins, warnings, a fatal error and master messages.
"""

from pathlib import Path

import pytest

import postlens
from postlens.render import render


@pytest.fixture(scope="module")
def result(mixed_log: Path) -> dict:
    r, problems = postlens.report([str(mixed_log)], year=2026, tz="UTC")
    assert problems == []
    return r


@pytest.fixture(scope="module")
def mixed_log() -> Path:
    return Path(__file__).parents[1] / "data" / "mixed.log"


def test_totals(result: dict) -> None:
    assert result["totals"] == {
        "received": 3,  # submission, pickup, the bounced message; not the re-injection nor notices
        "delivered": 5,  # not the two hops into the filter, not the alias forward
        "forwarded": 1,
        "deferred": 2,
        "deferrals": 2,
        "bounced": 1,
        "expired": 1,
        "rejected": 4,
        "reject_warnings": 1,
        "held": 0,
        "discarded": 0,
        "notifications": 2,
        "bytes_received": 1200 + 500 + 2000,
        "bytes_delivered": 2 * 1650 + 500 + 650 + 3000,
        "senders": 3,
        "sending_hosts_domains": 3,
        "recipients": 5,
        "recipient_hosts_domains": 4,
    }


def test_pflogsumm_view_counts_the_way_pflogsumm_does(result: dict) -> None:
    p = result["pflogsumm"]
    # the re-injection is received again, the hops and the notice are delivered
    assert (p["received"], p["delivered"], p["bytes_received"], p["bytes_delivered"]) == (6, 7, 5350, 9850)
    assert (p["senders"], p["recipients"], p["rejected"], p["rejected_percent"]) == (4, 5, 4, 36)


def test_message_states(result: dict) -> None:
    assert result["messages"] == {
        "complete": 8,
        "incomplete": 3,
        "aborted": 1,
        "reinjected": 1,
        "hops": 2,
        "filter_discards": 0,
        "notice_deliveries": 1,
        "no_size": 0,
    }


def test_domains_and_delays(result: dict) -> None:
    rows = {r["domain"]: r for r in result["delivery_domains"]}
    assert rows["example.org"]["delivered"] == 1
    assert rows["example.org"]["deferred"] == 1
    assert rows["example.org"]["max_delay"] == 1803.0
    assert rows["example.com"]["delivered"] == 2
    assert rows["example.com"]["bounced"] == 1
    assert rows["example.biz"]["deferred"] == 1
    d = result["delays"]
    assert d["deliveries"] == 5
    assert d["p50"] == 1.0 and d["p99"] == 1803.0 and d["max"] == 1803.0
    assert d["split"]["before_qmgr"]["total"] == pytest.approx(0.02 + 1800 + 0.01 + 0.01 + 0)


def test_rejects_auth_and_problems(result: dict) -> None:
    assert result["rejects"]["by_kind"] == {"RCPT": 3, "header": 1}
    assert result["rejects"]["by_client"] == {"192.0.2.66": 2, "192.0.2.77": 1, "192.0.2.90": 1}
    fails = result["auth"]["failures"]
    assert fails["total"] == 3
    assert fails["by_ip"] == {"192.0.2.66": 3}
    assert fails["by_username"] == {"(unknown)": 1, "admin": 1, "root": 1}
    assert fails["by_method"] == {"PLAIN": 2, "LOGIN": 1}
    ok = result["auth"]["successes"]
    assert ok["total"] == 2 and ok["by_username"] == {"alice": 1, "erin": 1}
    assert [f["text"] for f in result["fatal"]] == [
        "open database /etc/postfix/access.db: No such file or directory"
    ]
    assert result["notifications"]["by_kind"] == {"non-delivery": 2}
    assert result["tls"]["inbound"]["by_protocol"] == {"TLSv1.3": 1}
    assert result["tls"]["outbound"]["by_trust"] == {"Trusted": 1}
    assert result["postscreen"]["dnsbl_listings"] == {"zen.example-dnsbl.org": 1}
    assert result["smtp_failures"][0]["reason"] == "connection refused"


def test_coverage(result: dict) -> None:
    c = result["coverage"]
    assert (c["lines"], c["recognised"], c["unrecognised"], c["malformed"], c["other_programs"]) == (
        77,
        76,
        0,
        0,
        1,
    )


def test_date_selection(mixed_log: Path) -> None:
    r, _ = postlens.report([str(mixed_log)], year=2026, tz="UTC", date="2026-11-06")
    assert r["coverage"]["outside_period"] == 77 and r["totals"]["received"] == 0
    r, _ = postlens.report([str(mixed_log)], year=2026, tz="UTC", date="2026-11-04..2026-11-05")
    assert r["totals"]["received"] == 3


def test_same_input_same_bytes(mixed_log: Path) -> None:
    a, _ = postlens.report([str(mixed_log)], year=2026, tz="UTC")
    b, _ = postlens.report([str(mixed_log)], year=2026, tz="UTC")
    assert render(a, "json") == render(b, "json")
    assert render(a, "text") == render(b, "text")


VIRUS = Path(__file__).parents[1] / "data" / "filter-discard.log"


def test_a_message_a_local_content_filter_discards_is_not_delivered() -> None:
    """amavis's "250 2.7.0 Ok, discarded" (a virus, or spam under D_DISCARD) drops the mail:
    it is counted discarded, never delivered; the same words from another server are its
    business, a delivery to it."""
    log = VIRUS
    r, _ = postlens.report([str(log)], year=2026, tz="UTC")
    assert (r["totals"]["received"], r["totals"]["delivered"], r["totals"]["discarded"]) == (1, 1, 1)
    assert r["messages"]["filter_discards"] == 2 and r["messages"]["hops"] == 0
    assert [d["domain"] for d in r["delivery_domains"]] == ["remote.example"]  # no empty row for mx.example
    hits, _ = postlens.trace([str(log)], year=2026, tz="UTC", msgids=("v1@a.example",))
    assert [row["state"] for row in hits[0]["recipients"]] == ["discarded", "discarded"]
    assert hits[0]["verdict"].startswith(
        "discarded by the content filter at 127.0.0.1[127.0.0.1]:10024: 250 2.7.0"
    )
    anomalies, _ = postlens.anomalies([str(log)], year=2026, tz="UTC")
    assert sum(row["delivered"] for row in anomalies["series"]) == 1


REMOTE_FILTER = Path(__file__).parents[1] / "data" / "remote-filter.log"


def _counts(r: dict) -> tuple[int, ...]:
    t, m = r["totals"], r["messages"]
    return (t["received"], t["delivered"], t["discarded"], m["hops"], m["reinjected"], m["filter_discards"])


def test_a_content_filter_off_loopback_once_named_counts_its_mail_once() -> None:
    """A filter on another machine (198.51.100.7:10024, re-injecting through port 10025):
    two messages pass it, one it discards, one goes through a smarthost. Unnamed, its hops
    look like deliveries and its re-injections like new mail; the report says so."""
    log = str(REMOTE_FILTER)
    plain, _ = postlens.report([log], year=2026, tz="UTC")
    assert _counts(plain) == (6, 6, 0, 0, 0, 0)
    assert plain["unnamed_filters"] == [{"relay": "filter.example[198.51.100.7]:10024", "hops": 2}]
    assert "--content-filter" in render(plain, "text")
    for named in (["198.51.100.7"], ["2001:db8::7", "198.51.100.0/24"]):
        r, _ = postlens.report([log], year=2026, tz="UTC", content_filters=named)
        # the second message's copy was delivered and removed before the filter's reply came
        assert _counts(r) == (4, 3, 1, 2, 2, 1), named
        assert r["unnamed_filters"] == []
        assert (r["totals"]["bytes_received"], r["totals"]["bytes_delivered"]) == (10000, 7200)
        assert "--content-filter" not in render(r, "text")
    hits, _ = postlens.trace(
        [log], year=2026, tz="UTC", msgids=("m2@b.example",), content_filters=["198.51.100.7"]
    )
    assert [h["queue_ids"] for h in hits] == [["3C4D5E6F70", "4D5E6F7081"]]


def test_content_filters_match_addresses_as_postfix_logs_them() -> None:
    from postlens.addresses import ContentFilters

    filters = ContentFilters(["198.51.100.0/28", "2001:db8::7"])
    assert "198.51.100.7" in filters and "::ffff:198.51.100.7" in filters
    assert "2001:db8:0::7" in filters and "IPv6:2001:db8::7" in filters
    assert "198.51.100.16" not in filters and "unknown" not in filters and "" not in filters
    assert not ContentFilters() and filters


def test_a_content_filter_that_is_not_an_address_is_a_usage_error() -> None:
    with pytest.raises(postlens.UsageError, match="--content-filter: not an address or network: 'filter'"):
        postlens.report([str(REMOTE_FILTER)], content_filters=["filter"])
