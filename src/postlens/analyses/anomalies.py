"""anomalies: spikes, drops and silences against the same hours of earlier days.

Series per step (an hour by default) of received, delivered, deferred, bounced,
rejected and failed logins, and per destination domain of deferrals and bounces. Each
step is compared with the same step of up to ``baseline_days`` earlier days found in
the input (the history database holds weeks, a log file what it covers): its median,
and a robust spread (the median absolute deviation, at least the square root of the
median, as for counts). A step whose score ``(value - median) / spread`` reaches
``score`` is a spike (or a drop, below ``-score``); a stretch of ``silence`` with no
delivery where the baseline expects some is a silence.

Hour of day by weekday (the periodic pattern) is kept too, in the report's zone.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from postlens.analyses.problems import domain
from postlens.analyses.report_result import weekly_pattern
from postlens.analyses.tally import Tally, add_row, bump, bump_max
from postlens.dates import iso_utc
from postlens.events import REJECTS, AuthFailure, Reject
from postlens.messages import ENDED_ABORTED, Arrived, Message, final_delivery

METRICS = ("received", "delivered", "deferred", "bounced", "rejected", "auth_failures")
# a drop is news only for what normally flows; a spike for everything
DROPS = frozenset(("received", "delivered"))
DAY = 86400


@dataclass(slots=True)
class AnomaliesOptions:
    step: int = 3600  # seconds per point of the series; divides a day
    baseline_days: int = 7
    min_count: int = 10
    score: float = 5.0
    silence: float = 3600.0  # seconds without a delivery
    start: float | None = None  # only steps from here are judged; earlier ones are the baseline


class Anomalies:
    def __init__(self, options: AnomaliesOptions, tz: tzinfo | None) -> None:
        self.options = options
        self.tz = tz
        self.t = t = Tally()
        self._series = t.counter("series")  # (step, metric) -> n
        self._domains = t.vector("domains")  # (step, domain) -> [attempts, deferred, bounced]
        self._delivered_at = t.set("delivered_minutes")
        self._received_at = t.counter("received_at")  # (local date, hour) -> received
        self._span = t.maximum("span")

    def _step(self, ts: float) -> int:
        bump_max(self._span, "last", ts)
        bump_max(self._span, "first", -ts)
        return int(ts // self.options.step)

    def handlers(self) -> dict[type, Callable[[Any], None]]:
        return {Reject: self._reject, AuthFailure: self._auth_failure}

    def _reject(self, ev: Reject) -> None:
        if ev.action in REJECTS:
            bump(self._series, (self._step(ev.line.ts), "rejected"))

    def _auth_failure(self, ev: AuthFailure) -> None:
        bump(self._series, (self._step(ev.line.ts), "auth_failures"))

    def settle(self, msg: Arrived) -> None:
        """Received, counted as the report counts it (held and discarded mail too, a content
        filter's re-injection not)."""
        if msg.entered and not msg.reinjected:
            bump(self._series, (self._step(msg.first_ts), "received"))
            local = datetime.fromtimestamp(msg.first_ts, self.tz)
            bump(self._received_at, (local.date().isoformat(), local.hour))

    def add_message(self, msg: Message) -> None:
        if msg.ended == ENDED_ABORTED:
            return
        if not msg.link_pending:
            self.settle(msg.arrived())
        for d in msg.deliveries:
            if d.status == "sent" and not final_delivery(d):  # counted as the report counts
                continue
            ts = d.line.ts
            step = self._step(ts)
            status = "delivered" if d.status == "sent" else d.status
            if status in METRICS:
                bump(self._series, (step, status))
            if status == "delivered":
                self._delivered_at.add(int(ts // 60))
            add_row(self._domains, (step, domain(d.to)), 1, status == "deferred", status == "bounced")

    def add_session(self, sess: Any) -> None:
        pass

    def merge(self, later: Anomalies) -> None:
        self.t.merge(later.t)

    # -- judging -----------------------------------------------------------------------

    def result(self) -> dict[str, Any]:
        o = self.options
        if "last" not in self._span:
            return {"step": o.step, "anomalies": [], "series": [], "pattern": self._pattern()}
        first = int(-self._span["first"] // o.step)
        last = int(self._span["last"] // o.step)
        judged = max(first, int(o.start // o.step)) if o.start is not None else first
        found: list[dict[str, Any]] = []
        for metric in METRICS:
            values = {s: n for (s, m), n in self._series.items() if m == metric}
            found += self._judge(metric, "", values, first, judged, last)
        for status, col in (("deferred", 1), ("bounced", 2)):
            per_domain: dict[str, dict[int, int]] = {}
            for (s, dom), row in self._domains.items():
                if row[col]:
                    per_domain.setdefault(dom, {})[s] = row[col]
            for dom, values in sorted(per_domain.items()):
                found += self._judge(status, dom, values, first, judged, last)
        found += self._silences(first, judged)
        found.sort(key=lambda a: (a["start"], a["metric"], a["domain"], a["kind"]))
        series = [
            {"start": iso_utc(s * o.step), **{m: self._series.get((s, m), 0) for m in METRICS}}
            for s in range(judged, last + 1)
        ]
        return {"step": o.step, "anomalies": found, "series": series, "pattern": self._pattern()}

    def _baseline(self, values: dict[int, int], step: int, first: int) -> list[int]:
        per_day = DAY // self.options.step
        earlier = (step - k * per_day for k in range(1, self.options.baseline_days + 1))
        return [values.get(s, 0) for s in earlier if s >= first]

    def _judge(
        self, metric: str, dom: str, values: dict[int, int], first: int, judged: int, last: int
    ) -> list[dict[str, Any]]:
        o = self.options
        found = []
        for step in range(judged, last + 1):
            base = self._baseline(values, step, first)
            if not base:
                continue
            value = values.get(step, 0)
            usual = statistics.median(base)
            spread = max(1.4826 * statistics.median(abs(v - usual) for v in base), math.sqrt(max(usual, 1)))
            score = (value - usual) / spread
            if score >= o.score and value >= o.min_count:
                kind = "spike"
            elif score <= -o.score and usual >= o.min_count and metric in DROPS and not dom:
                kind = "drop"
            else:
                continue
            what = f"{metric} to {dom}" if dom else metric
            if dom:
                # the share of the step's delivery attempts to the domain that failed so
                attempts = self._domains[step, dom][0]
                what += f" ({100 * value / attempts:.0f}% of {attempts} attempts)"
            found.append({
                "kind": kind, "metric": metric, "domain": dom, "start": iso_utc(step * o.step),
                "value": value, "usual": usual, "score": round(score, 1),
                "severity": "high" if abs(score) >= 2 * o.score else "medium",
                "explanation": f"{what}: {value} in the {_step_name(o.step)} from {iso_utc(step * o.step)}, "
                f"usually {usual:g} at this time of day (median of {len(base)} earlier days)",
            })  # fmt: skip
        return found

    def _silences(self, first: int, judged: int) -> list[dict[str, Any]]:
        """Stretches without a delivery, longer than ``silence``, when deliveries were due."""
        o = self.options
        delivered = {s: n for (s, m), n in self._series.items() if m == "delivered"}
        minutes = sorted(self._delivered_at)
        if not minutes:  # no delivery, so none on earlier days either: nothing was due
            return []
        end = int(self._span["last"] // 60)
        found = []
        for a, b in zip(minutes, [*minutes[1:], end], strict=True):
            if (b - a) * 60 < o.silence or (b * 60) // o.step < judged:
                continue
            steps = range((a * 60) // o.step + 1, (b * 60) // o.step)
            due = sum(statistics.median(base) for s in steps if (base := self._baseline(delivered, s, first)))
            if due >= o.min_count:
                found.append({
                    "kind": "silence", "metric": "delivered", "domain": "", "start": iso_utc(a * 60 + 60),
                    "value": 0, "usual": due, "score": 0.0, "severity": "high",
                    "explanation": f"no delivery for {(b - a) / 60:.1f} hours after {iso_utc(a * 60)}, "
                    f"where {due:g} are usual",
                })  # fmt: skip
        return found

    def _pattern(self) -> dict[str, Any]:
        return weekly_pattern(self._received_at, sorted({d for d, _ in self._received_at}))


def _step_name(step: int) -> str:
    return "hour" if step == 3600 else f"{step // 60} minutes"
