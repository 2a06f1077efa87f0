"""watch: follow the log as it is written, and keep metrics, alerts, the history database
and a live terminal view up to date.

Each input (files followed like ``tail -F``, the journal, syslog listeners) runs in a
thread of its own and hands whole lines to one queue; the main loop parses them once and
feeds every consumer. About once a second it evaluates the alert rules, redraws the view
and saves the file positions; every ``queue_every`` seconds it reads the mail queue for the
queue metrics and the queue-size rule. Lines reach the history database in batches: files
through :func:`postlens.history.ingest` (its own rotation-aware positions), network and
journal lines as they come.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from postlens import history
from postlens.access import Access
from postlens.addresses import ContentFilters
from postlens.errors import PostlensError, UsageError
from postlens.events import REJECTS, Arrival, AuthFailure, Delivery, Event, EventParser, Reject
from postlens.lines import LineParser, YearGuess, zone
from postlens.messages import final_delivery
from postlens.render import clean
from postlens.sources import is_journal

TICK = 1.0  # seconds between alert evaluations, redraws and position saves
DB_EVERY = 10.0  # seconds between history writes


@dataclass(slots=True)
class WatchOptions:
    paths: list[str] = field(default_factory=list)
    journal: bool = False
    listen: list[str] = field(default_factory=list)
    state: str | None = None  # where file positions are kept between runs
    from_start: bool = False
    metrics: str | None = None  # HOST:PORT to serve /metrics on
    db: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # the settings file
    view: TextIO | None = None  # the terminal to draw the live view on
    year: int | None = None
    tz: str | None = None
    syslog_name: str | None = None
    filters: ContentFilters = field(default_factory=ContentFilters)  # --content-filter
    queue_every: float = 30.0
    db_every: float = DB_EVERY  # seconds between history writes
    queue_reader: Callable[[], list[dict[str, Any]]] | None = None  # postqueue -j entries


def default_state() -> str:
    """``$XDG_STATE_HOME/postlens/watch.json`` (~/.local/state by default)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "postlens", "watch.json")


class Live:
    """What the terminal view shows: totals, the last minute, top deferred domains, alerts."""

    KINDS = ("smtpd accepted", "delivered", "deferred", "bounced", "rejected", "auth failures")

    def __init__(self) -> None:
        self.totals: Counter[str] = Counter()
        self.recent: deque[tuple[float, str]] = deque()
        self.deferred_domains: Counter[str] = Counter()
        self.alerts: deque[str] = deque(maxlen=8)
        self.lines = 0
        self.newest = 0.0

    def feed(self, ev: Event) -> None:
        ts = ev.line.ts
        self.newest = max(self.newest, ts)
        kind = ""
        if isinstance(ev, Delivery) and (ev.status != "sent" or final_delivery(ev)):
            kind = {"sent": "delivered", "deferred": "deferred", "bounced": "bounced"}.get(ev.status, "")
            if kind == "deferred":
                self.deferred_domains[ev.to.rpartition("@")[2].lower()] += 1
        elif isinstance(ev, Reject) and ev.action in REJECTS:
            kind = "rejected"
        elif isinstance(ev, AuthFailure):
            kind = "auth failures"
        elif isinstance(ev, Arrival):
            kind = "smtpd accepted"
        if kind:
            self.totals[kind] += 1
            self.recent.append((ts, kind))

    def draw(self, out: TextIO) -> None:
        while self.recent and self.recent[0][0] < self.newest - 60:
            self.recent.popleft()
        minute = Counter(kind for _, kind in self.recent)
        rows = ["postlens watch", f"{self.lines} lines read", "", f"{'':16}{'total':>10}{'last minute':>14}"]
        rows += [f"{k:16}{self.totals[k]:>10}{minute[k]:>14}" for k in self.KINDS]
        rows += ["", "top deferred domains"]
        rows += [f"  {d:40} {n}" for d, n in self.deferred_domains.most_common(5)] or ["  none"]
        rows += ["", "recent alerts"] + ([f"  {a}" for a in self.alerts] or ["  none"])
        out.write("\x1b[H\x1b[2J" + "\n".join(clean(r) for r in rows) + "\n")
        out.flush()


def _pump(name: str, lines: Iterator[str], into: queue.Queue[tuple[str, str]]) -> None:
    """Hand an input's lines to the main loop; an input that fails says so and ends alone."""
    try:
        for text in lines:
            into.put((name, text))
    except PostlensError as e:
        print(f"postlens: {name}: {e}", file=sys.stderr)


def _start(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


class Watcher:
    """The main loop's state: the inputs' threads, and what each parsed line goes to."""

    def __init__(self, options: WatchOptions, stop: threading.Event) -> None:
        from postlens import alerts as alerting

        self.options = options
        self.stop = stop
        tz = zone(options.tz)
        self.parser = LineParser(YearGuess(options.year, None, tz), tz)
        self.events = EventParser(options.syslog_name, options.filters)
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue(maxsize=100_000)
        self.lock = threading.Lock()
        settings = options.settings
        if options.view is not None and "terminal" not in settings.get("alerts", {}):
            # the live view lists the alerts itself: printed lines would tear it
            settings = {**settings, "alerts": {**settings.get("alerts", {}), "terminal": "none"}}
        rules = alerting.rules_from_config(settings)
        self.engine = alerting.AlertEngine(rules, alerting.destinations_from_config(settings))
        self.listed_every = min((r.window for r in rules if r.kind == "blocklisted"), default=None)
        self.live = Live()
        self.unstored: list[Any] = []
        self.threads: list[threading.Thread] = []
        self.follower: Any = None
        self.told = 0  # follower problems already said
        self.metrics: Any = None
        self.closer: Callable[[], None] | None = None
        try:
            self._start(options, stop)
        except BaseException:  # nothing started may outlive a watch that could not start
            stop.set()
            for thread in self.threads:
                thread.join(timeout=5)
            self.engine.close()
            raise

    def _start(self, options: WatchOptions, stop: threading.Event) -> None:
        """Start reading the inputs, then serve the metrics."""
        from postlens.follow import FileFollower, SyslogListener, journal_lines, stream_lines

        if any(is_journal(p) for p in options.paths):
            raise UsageError("watch follows the journal with --journal, not a journal: path")
        access = _metrics_access(options.settings) if options.metrics else None
        if self.listed_every is not None:
            ask = _blocklist_lookup(options.settings)
            every = self.listed_every
            self.threads.append(_start(lambda: self._check_listings(ask, every)))
        files = _files(options)
        if files:
            if options.state:
                os.makedirs(os.path.dirname(os.path.abspath(options.state)), exist_ok=True)
            follower = self.follower = FileFollower(files, state=options.state, from_start=options.from_start)
            self.threads.append(_start(lambda: _pump("file", follower.lines(stop), self.lines)))
        if "-" in options.paths:
            alone = not files and not options.listen and not options.journal
            self.threads.append(_start(lambda: self._stdin(stream_lines(sys.stdin.buffer, stop), alone)))
        for url in options.listen:
            listener = SyslogListener(url, tls=_tls_files(options.settings, "watch"))
            pump = functools.partial(_pump, url, listener.lines(stop), self.lines)
            self.threads.append(_start(pump))
        if options.journal:
            cursor = options.state + ".journal" if options.state else None
            journal = journal_lines(stop, cursor_file=cursor)
            self.threads.append(_start(lambda: _pump("journal", journal, self.lines)))
        if options.metrics and access is not None:  # served once the inputs listen: a scrape means "ready"
            from postlens.metrics import Metrics, serve

            self.metrics = Metrics()
            self.closer = serve(self.metrics, options.metrics, self.lock, *access)

    def _check_listings(self, ask: Callable[[], list[Any]], every: float) -> None:
        """Ask the DNS blocklists about our own addresses now and every ``every`` seconds."""
        while not self.stop.is_set():
            listings = ask()
            with self.lock:
                self.engine.set_listings(listings, time.time())
            self.stop.wait(every)

    def _stdin(self, lines: Iterator[str], alone: bool) -> None:
        """Standard input's lines; when it ends and nothing else is followed, so does the watch."""
        _pump("stdin", lines, self.lines)
        if alone:
            self.stop.set()

    def handle(self, source: str, text: str) -> None:
        line = self.parser.parse(text)
        ev = self.events.parse(line) if line is not None else None
        self.live.lines += 1
        if ev is not None:
            with self.lock:
                if self.metrics is not None:
                    self.metrics.feed(ev)
                self.engine.feed(ev)
                self.live.feed(ev)
        if line is not None and source != "file" and self.options.db is not None:
            self.unstored.append(line)

    def tick(self) -> None:
        """Alerts, the view, and the file positions, about once a second."""
        with self.lock:
            # a live log's time is the clock's: windows empty when nothing more happens
            for alert in self.engine.tick(time.time()):
                self.live.alerts.append(alert.text)
        if self.options.view is not None:
            self.live.draw(self.options.view)
        if self.follower is not None:
            for problem in self.follower.problems[self.told :]:
                print(f"postlens: {problem}", file=sys.stderr)
            self.told = len(self.follower.problems)
            if self.lines.empty():  # a position is saved only once its lines are handled
                self.follower.save()

    def run(self) -> None:
        o = self.options
        last_tick = last_db = last_queue = 0.0
        try:
            while not self.stop.is_set():
                with contextlib.suppress(queue.Empty):
                    self.handle(*self.lines.get(timeout=0.2))
                now = time.monotonic()
                if o.queue_reader is not None and now - last_queue >= o.queue_every:
                    last_queue = now
                    _read_queue(o.queue_reader, self.metrics, self.engine, self.lock)
                if now - last_tick >= TICK:
                    last_tick = now
                    self.tick()
                if o.db is not None and now - last_db >= o.db_every:
                    last_db = now
                    _store(o, self.unstored)
        finally:
            self.close()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)
        while not self.lines.empty():  # what the inputs handed over before they stopped
            self.handle(*self.lines.get_nowait())
        if self.follower is not None:
            self.follower.save()
        if self.options.db is not None:
            _store(self.options, self.unstored)
        if self.closer is not None:
            self.closer()
        self.engine.close()  # lets the destinations send what is still queued


def watch(options: WatchOptions, stop: threading.Event) -> None:
    """Follow the inputs until ``stop`` is set (by a signal handler, or a test)."""
    Watcher(options, stop).run()


def _read_queue(
    reader: Callable[[], list[dict[str, Any]]], metrics: Any, engine: Any, lock: threading.Lock
) -> None:
    try:
        entries = reader()
    except Exception as e:  # the queue is optional to a watcher: say so once and go on
        print(f"postlens: the mail queue cannot be read: {e}", file=sys.stderr)
        return
    now = time.time()
    with lock:
        if metrics is not None:
            metrics.set_queue(entries, now)
        engine.set_queue(len(entries), now)


def _metrics_access(settings: dict[str, Any]) -> tuple[Access, tuple[str, str] | None]:
    """Who may scrape the metrics page, and its TLS certificate and key, from [metrics]."""
    return Access.of(settings.get("metrics", {})), _tls_files(settings, "metrics")


def _tls_files(settings: dict[str, Any], name: str) -> tuple[str, str] | None:
    """The TLS certificate and key files of the settings file's section ``name``, if any."""
    section = settings.get(name, {})
    cert, key = section.get("tls_cert"), section.get("tls_key")
    if bool(cert) != bool(key):
        raise UsageError(f"[{name}]: tls_cert and tls_key go together")
    return (cert, key) if cert and key else None


def _blocklist_lookup(settings: dict[str, Any]) -> Callable[[], list[Any]]:
    """The lookup blocklisted alert rules run: [security] own_ips on the [rbl] zones."""
    import postlens

    ips = settings.get("security", {}).get("own_ips", [])
    if not ips:
        raise UsageError("[[alert]] blocklisted rules need our own addresses: own_ips in [security]")
    rbl = settings.get("rbl", {})
    zones = tuple(rbl.get("zones", ())) or None
    nameserver, timeout = rbl.get("nameserver"), rbl.get("timeout", 3.0)
    # no zone: the addresses, the resolver and dnspython are checked now, nothing is asked
    postlens.check_rbl(ips, zones=("",), nameserver=nameserver, asked_by="[security] own_ips")
    return lambda: postlens.check_rbl(ips, zones=zones, nameserver=nameserver, timeout=timeout)


def _files(options: WatchOptions) -> list[str]:
    """The log files followed (``-``, standard input, is read apart)."""
    return [p for p in options.paths if p != "-"]


def _store(options: WatchOptions, unstored: list[Any]) -> None:
    """Write what arrived since the last time into the history database."""
    assert options.db is not None
    files = _files(options)
    if files:
        history.ingest(files, options.db, year=options.year, tz=options.tz)
    if unstored:
        history.store_lines(options.db, unstored)
        unstored.clear()
