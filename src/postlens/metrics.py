"""metrics: Prometheus metrics from the event stream, under postfix_exporter's names.

:class:`Metrics` counts parsed events (not the raw text, but for the TLS key sizes that no
event carries) into the metrics of postfix_exporter (kumina's original and Hsn723's
maintained fork): the same names, types, labels and histogram buckets, so existing
dashboards and alert rules keep working. It adds
postlens's own: deliveries by recipient domain (a bounded set of label values), failures by
reason class (the rules of ``postlens problems``) and login failures by reason.
:func:`serve` answers ``GET /metrics`` over HTTP. docs/metrics.md lists every metric.

The text format is written here rather than by the ``prometheus_client`` library: that
library appends ``_total`` to every counter (postfix_exporter has a counter without it,
``postfix_smtp_status_deferred``) and writes numbers the Python way (``le="1.0"``), where
Go's client, and so every query written for postfix_exporter, has ``le="1"`` and
``le="1e+06"``. Written here, names, numbers and order are the ones Go's client writes.
"""

from __future__ import annotations

import bisect
import re
import socket
import socketserver
import ssl
import sys
import threading
from collections.abc import Callable
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from postlens.access import Access, server_tls
from postlens.analyses.reasons import Rules, split_reply
from postlens.errors import UsageError
from postlens.events import (
    REJECTS,
    Arrival,
    AuthFailure,
    Connect,
    ConnectFailure,
    Delivery,
    Diagnostic,
    Disconnect,
    Event,
    Expired,
    MessageId,
    Notice,
    QueueAction,
    Queued,
    Reject,
    Removed,
    Screen,
    SessionProblem,
    Tls,
    Unknown,
    Verdict,
)
from postlens.lines import KIND_POSTFIX, digits
from postlens.messages import filter_discard, final_delivery, hop_target

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# postfix_exporter's buckets
TIME_BUCKETS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 60.0, 3600.0, 86400.0, 172800.0)
SIZE_BUCKETS = (1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9)
RECIPIENT_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
AGE_BUCKETS = (1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8)
RANK_BUCKETS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0)

# the stages of Postfix's delays=a/b/c/d, as postfix_exporter names them
STAGES = ("before_queue_manager", "queue_manager", "connection_setup", "transmission")
# the queues postfix_exporter always shows once it has read the queue (Postfix 3's showq)
QUEUES = ("active", "deferred", "hold", "incoming", "maildrop")
STATUSES = ("sent", "deferred", "bounced")  # shown at 0 from the start, so ratios are defined

OTHER = "other"  # the label value of the domains without one of their own
PROMOTE_MIN = 10  # deliveries a domain needs before it can get a label of its own
CANDIDATES_PER_LABEL = 50  # domains followed (for promotion) per label value that may be given

_POSTSCREEN_TESTS = frozenset(
    ("PREGREET", "NON-SMTP COMMAND", "COMMAND PIPELINING", "COMMAND TIME LIMIT", "COMMAND COUNT LIMIT",
     "COMMAND LENGTH LIMIT", "BARE NEWLINE")
)  # fmt: skip
_POSTSCREEN_LISTS = {
    "WHITELISTED": "allow",
    "ALLOWLISTED": "allow",
    "BLACKLISTED": "deny",
    "DENYLISTED": "deny",
}
_FCRDNS_RE = re.compile(r"hostname \S+ does not resolve to address ")
_DKIM_SIGNED_RE = re.compile(r"DKIM-Signature field added \(s=(\S+), d=([^)\s]+)\)")
_TLS_BITS_RE = re.compile(r"\((\d+)/(\d+) bits\)")

# Login failure texts -> a reason class. Postfix passes on what its SASL server said: Dovecot
# says "(reason unavailable)", Cyrus "authentication failure" (or, for LOGIN, the last
# challenge in base64: "UGFzc3dvcmQ6" is "Password:", "VXNlcm5hbWU6" is "Username:").
AUTH_REASONS = (
    ("(reason unavailable)", "bad_credentials"),
    ("authentication failure", "bad_credentials"),
    ("auth failed", "bad_credentials"),  # Dovecot's own login processes
    ("ugfzc3dvcmq6", "bad_credentials"),
    ("vxnlcm5hbwu6", "protocol_error"),
    ("invalid base64", "protocol_error"),
    ("invalid authentication mechanism", "bad_mechanism"),
    ("no mechanism available", "bad_mechanism"),
    ("connection lost to authentication server", "server_error"),
    ("generic failure", "server_error"),
)


def auth_reason(text: str) -> str:
    """The reason class of a login failure's text (docs/metrics.md has the table)."""
    folded = text.strip().casefold()
    if not folded:
        return "bad_credentials"
    for start, reason in AUTH_REASONS:
        if folded.startswith(start):
            return reason
    return "other"


def go_number(value: float) -> str:
    """``value`` as Go's ``strconv.FormatFloat(v, 'g', -1, 64)`` writes it (Go's client does).

    The shortest digits that read back as ``value``; exponent form from 1e+06 up and below
    1e-04, as in ``le="1e+06"`` and ``le="3600"``.
    """
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr() gives the shortest round-tripping digits, as Go's shortest formatting does
    _, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    assert isinstance(exponent, int)  # a finite number
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + exponent  # where the decimal point goes, counted from the first digit
    if point - 1 < -4 or point - 1 >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if point - 1 < 0 else '+'}{abs(point - 1):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


class _Family:
    """One metric: its name, type, help, label names (sorted, as Go writes them) and series."""

    def __init__(self, name: str, kind: str, doc: str, labels: tuple[str, ...]) -> None:
        if list(labels) != sorted(labels):
            raise ValueError(f"{name}: label names must be sorted")
        self.name = name
        self.kind = kind
        self.doc = doc
        self.labels = labels

    def _pairs(self, key: tuple[str, ...]) -> list[str]:
        return [f'{n}="{_label_value(v)}"' for n, v in zip(self.labels, key, strict=True)]

    def render(self, out: list[str]) -> None:
        raise NotImplementedError

    def _header(self, out: list[str]) -> None:
        doc = self.doc.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {self.name} {doc}\n# TYPE {self.name} {self.kind}\n")


class Scalar(_Family):
    """A counter or a gauge: one number per label set."""

    def __init__(self, name: str, kind: str, doc: str, labels: tuple[str, ...] = ()) -> None:
        super().__init__(name, kind, doc, labels)
        # as in Go's client, a metric without labels exists (at 0) from the start
        self.series: dict[tuple[str, ...], float] = {} if labels else {(): 0.0}

    def inc(self, *key: str) -> None:
        self.series[key] = self.series.get(key, 0.0) + 1

    def touch(self, *key: str) -> None:
        self.series.setdefault(key, 0.0)

    def render(self, out: list[str]) -> None:
        if not self.series:
            return  # a labelled metric with no series yet is left out, as Go's client does
        self._header(out)
        for key in sorted(self.series):
            pairs = self._pairs(key)
            labels = "{" + ",".join(pairs) + "}" if pairs else ""
            out.append(f"{self.name}{labels} {go_number(self.series[key])}\n")


class Histogram(_Family):
    """Observations counted into fixed buckets, with their sum and count, per label set."""

    def __init__(self, name: str, doc: str, buckets: tuple[float, ...], labels: tuple[str, ...] = ()) -> None:
        super().__init__(name, "histogram", doc, labels)
        self.buckets = buckets
        self._les = [go_number(b) for b in buckets] + ["+Inf"]
        # per label set: one count per bucket (not cumulative) and +Inf, then the sum
        self.series: dict[tuple[str, ...], list[float]] = {}
        if not labels:
            self.touch()

    def touch(self, *key: str) -> list[float]:
        row = self.series.get(key)
        if row is None:
            row = self.series[key] = [0.0] * (len(self.buckets) + 2)
        return row

    def observe(self, value: float, *key: str) -> None:
        row = self.touch(*key)
        row[bisect.bisect_left(self.buckets, value)] += 1  # the first bucket whose bound is >= value
        row[-1] += value

    def clear(self) -> None:
        self.series.clear()

    def render(self, out: list[str]) -> None:
        if not self.series:
            return
        self._header(out)
        for key in sorted(self.series):
            row = self.series[key]
            pairs = self._pairs(key)
            cumulative = 0.0
            for le, n in zip(self._les, row[:-1], strict=True):
                cumulative += n
                labels = ",".join([*pairs, f'le="{le}"'])
                out.append(f"{self.name}_bucket{{{labels}}} {go_number(cumulative)}\n")
            labels = "{" + ",".join(pairs) + "}" if pairs else ""
            out.append(f"{self.name}_sum{labels} {go_number(row[-1])}\n")
            out.append(f"{self.name}_count{labels} {go_number(cumulative)}\n")


class TopDomains:
    """Which recipient domains get a label value of their own: at most ``n``, kept for good.

    A domain gets its label once it has had ``PROMOTE_MIN`` deliveries and at least 1/n of
    all deliveries so far (which puts it among the n busiest), while fewer than n domains have
    one; the others count as "other". A label once given is never taken back, so no exported
    series ever goes down. The decision depends only on the order of the deliveries, never on
    when the page is read. Counts of domains without a label are followed for at most
    ``CANDIDATES_PER_LABEL * n`` domains (the Space-Saving algorithm: a newcomer takes the
    place and the count of the smallest), so memory stays bounded however many domains mail
    goes to; once all n labels are given, nothing more is followed.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.total = 0
        self.labelled: set[str] = set()
        self.candidates: dict[str, int] = {}

    def label(self, domain: str) -> str:
        """The label value for one more delivery to ``domain``: the domain itself, or "other"."""
        self.total += 1
        if domain in self.labelled:
            return domain
        if len(self.labelled) >= self.n or not domain:
            return OTHER
        count = self.candidates.pop(domain, None)
        if count is None and len(self.candidates) >= CANDIDATES_PER_LABEL * self.n:
            smallest = min(self.candidates.items(), key=lambda item: (item[1], item[0]))
            count = self.candidates.pop(smallest[0])
        count = (count or 0) + 1
        if count >= PROMOTE_MIN and count * self.n >= self.total:
            self.labelled.add(domain)
            if len(self.labelled) >= self.n:
                self.candidates.clear()
            return domain
        self.candidates[domain] = count
        return OTHER


class Metrics:
    """The metrics of one stream of events; not thread-safe (:func:`serve` takes a lock)."""

    def __init__(self, *, top_domains: int = 20, rules: Rules | None = None) -> None:
        if top_domains < 0:
            raise UsageError(f"top domains: {top_domains} is below 0")
        self.rules = rules if rules is not None else Rules.load()
        self.domains = TopDomains(top_domains)
        # the reason of each queued message's last deferral, for its expiry (as `postlens problems`)
        self._last_deferral: dict[tuple[str, str, str], str] = {}
        families: list[_Family] = []

        def counter(name: str, doc: str, *labels: str, kind: str = "counter") -> Scalar:
            family = Scalar(name, kind, doc, labels)
            families.append(family)
            return family

        def histogram(name: str, doc: str, buckets: tuple[float, ...], *labels: str) -> Histogram:
            family = Histogram(name, doc, buckets, labels)
            families.append(family)
            return family

        tls = ("algorithm_bits", "cipher", "protocol", "secret_bits", "trust")
        # postfix_exporter's
        self.bounce_non_delivery = counter(
            "postfix_bounce_non_delivery_notification_total",
            "Total number of non delivery notification sent by bounce.",
        )
        self.cleanup_processed = counter(
            "postfix_cleanup_messages_processed_total", "Total number of messages processed by cleanup."
        )
        self.cleanup_rejected = counter(
            "postfix_cleanup_messages_rejected_total", "Total number of messages rejected by cleanup."
        )
        # postfix_exporter declares it and never counts anything into it; kept at 0 so that
        # queries naming it still find it
        counter("postfix_cleanup_messages_not_accepted_total", "Always 0, as in postfix_exporter.")
        self.lmtp_delays = histogram(
            "postfix_lmtp_delivery_delay_seconds",
            "LMTP message processing time in seconds.",
            TIME_BUCKETS,
            "stage",
        )
        self.pipe_delays = histogram(
            "postfix_pipe_delivery_delay_seconds",
            "Pipe message processing time in seconds.",
            TIME_BUCKETS,
            "relay",
            "stage",
        )
        self.qmgr_recipients_legacy = histogram(
            "postfix_qmgr_messages_inserted_receipients",
            "Legacy metric, please switch to postfix_qmgr_messages_inserted_recipients.",
            RECIPIENT_BUCKETS,
        )
        self.qmgr_recipients = histogram(
            "postfix_qmgr_messages_inserted_recipients",
            "Number of recipients per message inserted into the mail queues.",
            RECIPIENT_BUCKETS,
        )
        self.qmgr_size = histogram(
            "postfix_qmgr_messages_inserted_size_bytes",
            "Size of messages inserted into the mail queues in bytes.",
            SIZE_BUCKETS,
        )
        self.qmgr_removed = counter(
            "postfix_qmgr_messages_removed_total", "Total number of messages removed from mail queues."
        )
        self.qmgr_expired = counter(
            "postfix_qmgr_messages_expired_total", "Total number of messages expired from mail queues."
        )
        self.showq_age = histogram(
            "postfix_showq_message_age_seconds",
            "Age of messages in Postfix's message queue, in seconds",
            AGE_BUCKETS,
            "queue",
        )
        self.showq_size = histogram(
            "postfix_showq_message_size_bytes",
            "Size of messages in Postfix's message queue, in bytes",
            SIZE_BUCKETS,
            "queue",
        )
        self.showq_depth = counter(
            "postfix_showq_queue_depth",
            "Number of messages in Postfix's message queue",
            "queue",
            kind="gauge",
        )
        self.smtp_bounced_dsn = counter(
            "postfix_smtp_bounced_messages_by_dsn_total",
            "Total number of messages that have been bounced on SMTP by DSN.",
            "dsn",
        )
        self.smtp_timed_out = counter(
            "postfix_smtp_connection_timed_out_total",
            "Total number of SMTP connection attempts that timed out.",
        )
        self.smtp_deferred_dsn = counter(
            "postfix_smtp_deferred_messages_by_dsn_total",
            "Total number of messages that have been deferred on SMTP by DSN.",
            "dsn",
        )
        self.smtp_deferred = counter(
            "postfix_smtp_deferred_messages_total",
            "Total number of messages that have been deferred on SMTP.",
        )
        self.smtp_delays = histogram(
            "postfix_smtp_delivery_delay_seconds",
            "SMTP message processing time in seconds.",
            TIME_BUCKETS,
            "stage",
        )
        self.smtp_processed = counter(
            "postfix_smtp_messages_processed_total",
            "Total number of messages that have been processed by the smtp process.",
            "status",
        )
        self.smtp_status_deferred = counter(
            "postfix_smtp_status_deferred", "Total number of messages deferred."
        )
        self.smtp_tls = counter(
            "postfix_smtp_tls_connections_total", "Total number of outgoing TLS connections.", *tls
        )
        self.smtpd_lost = counter(
            "postfix_smtpd_connections_lost_total", "Total number of connections lost.", "after_stage"
        )
        self.smtpd_connects = counter("postfix_smtpd_connects_total", "Total number of incoming connections.")
        self.smtpd_disconnects = counter(
            "postfix_smtpd_disconnects_total", "Total number of incoming disconnections."
        )
        self.smtpd_fcrdns = counter(
            "postfix_smtpd_forward_confirmed_reverse_dns_errors_total",
            "Total number of connections for which forward-confirmed DNS cannot be resolved.",
        )
        self.smtpd_processed = counter(
            "postfix_smtpd_messages_processed_total", "Total number of messages processed.", "sasl_method"
        )
        self.smtpd_rejected = counter(
            "postfix_smtpd_messages_rejected_total", "Total number of smtpd rejects, by reply code.", "code"
        )
        self.smtpd_sasl_failures = counter(
            "postfix_smtpd_sasl_authentication_failures_total",
            "Total number of SASL authentication failures.",
        )
        self.smtpd_tls = counter(
            "postfix_smtpd_tls_connections_total", "Total number of incoming TLS connections.", *tls
        )
        self.unsupported = counter(
            "postfix_unsupported_log_entries_total",
            'Postfix log entries that postlens does not recognise (level "") and warning, error, fatal '
            "and panic entries, by daemon.",
            "level",
            "service",
        )
        self.virtual_delivered = counter(
            "postfix_virtual_delivered_total", "Total number of mail delivered to a virtual mailbox."
        )
        self.opendkim_signatures = counter(
            "opendkim_signatures_added_total", "Total number of messages signed.", "domain", "subject"
        )
        self.postscreen_lists = counter(
            "postfix_postscreen_access_list_matches_total",
            "Total number of clients allow/deny-listed by postscreen (ALLOWLISTED/WHITELISTED/DENYLISTED/"
            "BLACKLISTED).",
            "action",
        )
        self.postscreen_connects = counter(
            "postfix_postscreen_connects_total", "Total number of connections handled by postscreen."
        )
        self.postscreen_connects_rejected = counter(
            "postfix_postscreen_connects_rejected_total",
            "Total number of connections rejected by postscreen, by reject reason.",
            "reason",
        )
        self.postscreen_rank = histogram(
            "postfix_postscreen_dnsbl_rank", "DNSBL rank assigned to clients by postscreen.", RANK_BUCKETS
        )
        self.postscreen_hangups = counter(
            "postfix_postscreen_hangups_total",
            "Total client disconnects reported by postscreen while testing.",
        )
        self.postscreen_rejected = counter(
            "postfix_postscreen_messages_rejected_total",
            "Total number of NOQUEUE rejects issued by postscreen, by response code.",
            "code",
        )
        self.postscreen_passes = counter(
            "postfix_postscreen_passes_total",
            "Total number of clients passed by postscreen, by allowlist status (new/old).",
            "type",
        )
        self.postscreen_tests = counter(
            "postfix_postscreen_tests_failed_total",
            "Total number of postscreen pre-greet/protocol test failures, by test name.",
            "test",
        )
        # postlens's own
        self.auth_failures = counter(
            "postlens_auth_failures_total",
            "Failed logins (Postfix SMTP AUTH and Dovecot), by mechanism, reason class and daemon.",
            "method",
            "reason",
            "service",
        )
        self.domain_deliveries = counter(
            "postlens_domain_deliveries_total",
            "Delivery attempts by every delivery agent, by recipient domain (the busiest ones, the rest "
            "as other) and status; content-filter hops left out.",
            "domain",
            "status",
        )
        self.failures = counter(
            "postlens_failures_total",
            "Deferrals, bounces, expiries and rejects, by reason class (the rules of postlens problems).",
            "kind",
            "reason",
        )
        self.filter_hops = counter(
            "postlens_filter_hops_total", "Deliveries into a content filter on a loopback address (hops)."
        )
        for status in STATUSES:
            self.domain_deliveries.touch(OTHER, status)
        self._families = sorted(families, key=lambda f: f.name)
        self._handlers: dict[type, Callable[[Any], None]] = {
            Arrival: self._arrival,
            AuthFailure: self._auth_failure,
            Connect: self._connect,
            ConnectFailure: self._connect_failure,
            Delivery: self._delivery,
            Diagnostic: self._diagnostic,
            Disconnect: self._disconnect,
            Expired: self._expired,
            MessageId: self._message_id,
            Notice: self._notice,
            QueueAction: self._queue_action,
            Queued: self._queued,
            Reject: self._reject,
            Removed: self._removed,
            Screen: self._screen,
            SessionProblem: self._session_problem,
            Tls: self._tls,
            Unknown: self._unknown,
            Verdict: self._verdict,
        }

    def feed(self, ev: Event) -> None:
        """Count one parsed event; events no metric counts are ignored."""
        handler = self._handlers.get(type(ev))
        if handler is not None:
            handler(ev)

    def set_queue(self, entries: list[dict[str, Any]], now: float) -> None:
        """Replace the queue metrics with a snapshot: ``postqueue -j`` objects, read at ``now``.

        Like postfix_exporter, the histograms describe the queue as it is now (they are not
        accumulated across snapshots), and the five queues are always shown.
        """
        self.showq_age.clear()
        self.showq_size.clear()
        depth: dict[str, float] = dict.fromkeys(QUEUES, 0.0)
        for queue in QUEUES:
            self.showq_age.touch(queue)
            self.showq_size.touch(queue)
        for entry in entries:
            queue = str(entry.get("queue_name", "unknown"))
            depth[queue] = depth.get(queue, 0.0) + 1
            self.showq_size.observe(float(entry.get("message_size", 0)), queue)
            self.showq_age.observe(now - float(entry.get("arrival_time", now)), queue)
        self.showq_depth.series = {(queue,): n for queue, n in depth.items()}

    def exposition(self) -> bytes:
        """The Prometheus text format (0.0.4): families by name, series by label values."""
        out: list[str] = []
        for family in self._families:
            family.render(out)
        return "".join(out).encode("utf-8")

    # -- one handler per event type

    def _arrival(self, ev: Arrival) -> None:
        if ev.tag.daemon == "smtpd":
            self.smtpd_processed.inc(ev.sasl_method)

    def _auth_failure(self, ev: AuthFailure) -> None:
        if ev.tag.kind == KIND_POSTFIX and ev.tag.daemon == "smtpd":
            self.smtpd_sasl_failures.inc()
        self.auth_failures.inc(ev.method, auth_reason(ev.reason), ev.tag.daemon)

    def _connect(self, ev: Connect) -> None:
        if ev.tag.daemon == "smtpd":
            self.smtpd_connects.inc()

    def _connect_failure(self, ev: ConnectFailure) -> None:
        if ev.tag.daemon == "smtp" and ev.reason == "Connection timed out":
            self.smtp_timed_out.inc()

    def _delivery(self, ev: Delivery) -> None:
        daemon = ev.tag.daemon
        status = ev.status
        if daemon == "smtp":
            # postfix_exporter counts the hop into a content filter here too: it is an smtp delivery
            self.smtp_processed.inc(status)
            self._delays(self.smtp_delays, ev)
            if status == "deferred":
                self.smtp_status_deferred.inc()
                self.smtp_deferred.inc()
                self.smtp_deferred_dsn.inc(ev.dsn)
            elif status == "bounced":
                self.smtp_bounced_dsn.inc(ev.dsn)
        elif daemon == "lmtp":
            self._delays(self.lmtp_delays, ev)
        elif daemon == "pipe":
            self._delays(self.pipe_delays, ev, ev.relay)
        elif daemon == "virtual" and status == "sent":
            self.virtual_delivered.inc()
        if hop_target(ev):
            self.filter_hops.inc()
            return
        if status == "sent" and not final_delivery(ev):  # as the report counts: not delivered
            status = "discarded" if filter_discard(ev) else "forwarded"
        domain = self.domains.label(ev.to.rpartition("@")[2].lower())
        if (domain, status) not in self.domain_deliveries.series:
            for known in STATUSES:
                self.domain_deliveries.touch(domain, known)
        self.domain_deliveries.inc(domain, status)
        if status in ("deferred", "bounced"):
            code, dsn, _ = split_reply(ev.reply)
            reason = self.rules.classify(status, code, ev.dsn or dsn, ev.reply).reason.id
            self.failures.inc(status, reason)
            if status == "deferred":
                self._last_deferral[ev.line.host, ev.tag.instance, ev.qid] = reason

    @staticmethod
    def _delays(histogram: Histogram, ev: Delivery, *labels: str) -> None:
        parts = ev.delays.split("/")
        if len(parts) != 4:
            return
        try:
            values = [float(p) for p in parts]
        except ValueError:
            return
        for stage, value in zip(STAGES, values, strict=True):
            histogram.observe(value, *labels, stage)

    def _diagnostic(self, ev: Diagnostic) -> None:
        if ev.tag.kind != KIND_POSTFIX:
            return
        if ev.tag.daemon == "smtpd" and ev.level == "warning" and _FCRDNS_RE.match(ev.text):
            self.smtpd_fcrdns.inc()
        else:
            self.unsupported.inc(ev.level, ev.tag.daemon)

    def _disconnect(self, ev: Disconnect) -> None:
        if ev.tag.daemon == "smtpd":
            self.smtpd_disconnects.inc()

    def _expired(self, ev: Expired) -> None:
        self.qmgr_expired.inc()
        # an expiry has no reply of its own: it failed for the reason of its last deferral
        reason = self._last_deferral.pop((ev.line.host, ev.tag.instance, ev.qid), None)
        if reason is None:
            reason = self.rules.classify("expired", "", "", "").reason.id
        self.failures.inc("expired", reason)

    def _message_id(self, ev: MessageId) -> None:
        if ev.tag.daemon == "cleanup":
            self.cleanup_processed.inc()

    def _notice(self, ev: Notice) -> None:
        if ev.kind == "non-delivery":  # "sender non-delivery notification", as postfix_exporter
            self.bounce_non_delivery.inc()

    def _queue_action(self, ev: QueueAction) -> None:
        if ev.action == "removed":  # postsuper -d
            self._last_deferral.pop((ev.line.host, ev.tag.instance, ev.qid), None)

    def _queued(self, ev: Queued) -> None:
        self.qmgr_size.observe(float(ev.size))
        self.qmgr_recipients.observe(float(ev.nrcpt))
        self.qmgr_recipients_legacy.observe(float(ev.nrcpt))

    def _reject(self, ev: Reject) -> None:
        if ev.action in REJECTS:
            reason = self.rules.classify("reject", ev.code, ev.dsn, ev.reason, ev.stage).reason.id
            self.failures.inc("reject", reason)
        if ev.action != "reject":
            return
        daemon = ev.tag.daemon
        if daemon == "smtpd":
            self.smtpd_rejected.inc(ev.code)
        elif daemon == "cleanup":
            self.cleanup_rejected.inc()
        elif daemon == "postscreen":
            if ev.stage == "CONNECT":
                self.postscreen_connects_rejected.inc(" ".join(p for p in (ev.code, ev.dsn, ev.reason) if p))
            elif ev.stage == "RCPT":
                self.postscreen_rejected.inc(ev.code)

    def _removed(self, ev: Removed) -> None:
        self.qmgr_removed.inc()
        self._last_deferral.pop((ev.line.host, ev.tag.instance, ev.qid), None)

    def _screen(self, ev: Screen) -> None:
        if ev.tag.daemon != "postscreen":
            return
        action = ev.action
        if action == "CONNECT":
            self.postscreen_connects.inc()
        elif action in ("PASS NEW", "PASS OLD"):
            self.postscreen_passes.inc(action[5:].lower())
        elif action == "DNSBL" and digits(ev.detail):
            self.postscreen_rank.observe(float(ev.detail))
        elif action == "HANGUP":
            self.postscreen_hangups.inc()
        elif action in _POSTSCREEN_TESTS:
            self.postscreen_tests.inc(action.replace("-", "_").replace(" ", "_"))
        elif action in _POSTSCREEN_LISTS:
            self.postscreen_lists.inc(_POSTSCREEN_LISTS[action])

    def _session_problem(self, ev: SessionProblem) -> None:
        if ev.tag.daemon == "smtpd" and ev.problem == "lost connection":
            self.smtpd_lost.inc(ev.after)

    def _verdict(self, ev: Verdict) -> None:
        if ev.check == "dkim" and ev.verdict == "signed":
            m = _DKIM_SIGNED_RE.search(ev.line.payload)
            if m is not None:
                self.opendkim_signatures.inc(m.group(2), m.group(1))

    def _tls(self, ev: Tls) -> None:
        if ev.direction == "in" and ev.tag.daemon == "smtpd":
            family = self.smtpd_tls
        elif ev.direction == "out" and ev.tag.daemon == "smtp":
            family = self.smtp_tls
        else:
            return
        # the event has no key sizes: they are read from the line's "(256/256 bits)"
        bits = _TLS_BITS_RE.search(ev.line.payload)
        secret, algorithm = bits.groups() if bits is not None else ("", "")
        family.inc(algorithm, ev.cipher, ev.protocol, secret, ev.trust)

    def _unknown(self, ev: Unknown) -> None:
        if ev.tag.kind == KIND_POSTFIX:
            self.unsupported.inc("", ev.tag.daemon)


# -- the HTTP server

_ADDRESS_RE = re.compile(r"(?:\[([^\]]*)\]|([^:\[\]]*)):(\d{1,5})$")
INDEX = (
    b"<!DOCTYPE html>\n<html><head><title>postlens</title></head><body>\n"
    b'<h1>postlens</h1>\n<p><a href="/metrics">Metrics</a></p>\n</body></html>\n'
)


def parse_address(address: str, what: str = "metrics address") -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (every address) -> (host, port)."""
    m = _ADDRESS_RE.match(address.strip())
    if m is None or int(m.group(3)) > 65535:
        raise UsageError(f"{what} {address!r}: expected HOST:PORT or :PORT, the port 0 to 65535")
    host = m.group(1) if m.group(1) is not None else m.group(2)
    return host, int(m.group(3))


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, family: int, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.address_family = family
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that failed the TLS handshake or hung up is nothing for the log; a bug is
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, ssl.SSLError)):
            super().handle_error(request, client_address)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6 and self.server_address[0] == "::":
            # every address: IPv4 too, as Go's ":9154" listens
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # HTTPServer.server_bind would also look the host name up in DNS, for nothing
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class MetricsServer:
    """What :func:`serve` started: the address it listens on, and ``close()`` (or call it)."""

    def __init__(self, server: _Server, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.host = str(server.server_address[0])
        self.port = int(server.server_address[1])

    def close(self) -> None:
        """Stop answering and free the port; closing twice does nothing."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __call__(self) -> None:
        self.close()


def _handler(metrics: Metrics, lock: threading.Lock, access: Access) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "postlens"

        def do_GET(self) -> None:
            path = self.path.partition("?")[0]
            if not access.allows(self.headers.get("Authorization", "")):
                self._answer(
                    401, "text/plain; charset=utf-8", b"authentication required\n", access.challenge()
                )
            elif path == "/metrics":
                with lock:
                    body = metrics.exposition()
                self._answer(200, CONTENT_TYPE, body)
            elif path == "/":
                self._answer(200, "text/html; charset=utf-8", INDEX)
            else:
                self._answer(404, "text/plain; charset=utf-8", b"404 page not found\n")

        def _answer(
            self, status: int, content_type: str, body: bytes, headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per scrape would bury postlens's own messages

    return Handler


def serve(
    metrics: Metrics,
    address: str,
    lock: threading.Lock,
    access: Access | None = None,
    tls: tuple[str, str] | None = None,
) -> MetricsServer:
    """Answer ``GET /metrics`` (and ``/``) on ``address`` from a daemon thread.

    ``address`` is ``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (every address); port 0 takes
    a free one (``.port`` tells which). The page is made under ``lock``, the one the caller
    holds while it feeds events. ``access`` asks for a token or a password; ``tls`` is a
    certificate and key file (PEM) to answer HTTPS with. An address that cannot be used, or
    a certificate that cannot be loaded, is a UsageError.
    """
    context = server_tls(tls, "metrics TLS") if tls is not None else None
    host, port = parse_address(address)
    try:
        if host:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        elif socket.has_dualstack_ipv6():
            family, host = socket.AF_INET6, "::"
        else:
            family, host = socket.AF_INET, "0.0.0.0"
        server = _Server(family, (host, port), _handler(metrics, lock, access or Access()))
    except OSError as e:
        raise UsageError(f"metrics address {address!r}: cannot listen: {e.strerror or e}") from e
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    # close() waits until the loop next looks up from select(): a tenth of a second at most
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), name="postlens-metrics", daemon=True)
    thread.start()
    return MetricsServer(server, thread)
