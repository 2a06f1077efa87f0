"""pipeline: wires sources -> lines -> events -> messages -> analyses, once.

An :class:`Analysis` is the state of reading one stretch of log. Stretches read
apart merge exactly (:meth:`Analysis.merge`), which is what lets a log be split
into chunks, files or cluster partitions and still give one pass's answer.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from postlens.addresses import ContentFilters
from postlens.analyses.pflogsumm import PflogsummTotals
from postlens.analyses.report import Report, ReportOptions
from postlens.analyses.views import View, make_view
from postlens.errors import InputError
from postlens.events import EVENT_TYPES, EventParser, Unknown
from postlens.lines import LineParser, YearGuess, by_constructor, zone
from postlens.messages import Correlator
from postlens.sources import Source, expand, iter_lines, open_source

Handler = Callable[[Any], None]


def routes(*consumers: dict[type, Handler]) -> dict[type, tuple[Handler, ...]]:
    """Which consumers' handlers want which event type, in the order given, decided once:
    most lines concern one or none."""
    found: dict[type, tuple[Handler, ...]] = {}
    for kind in EVENT_TYPES:
        wanted = tuple(c[kind] for c in consumers if kind in c)
        if wanted:
            found[kind] = wanted
    return found


@dataclass(slots=True)
class Settings:
    """How to read the log: the year and zone of bare stamps, the tag, the period."""

    year: int | None = None
    tz: str | None = None
    syslog_name: str | None = None
    # content filters off loopback, whose hops link two queue IDs (postlens.addresses)
    filters: ContentFilters = field(default_factory=ContentFilters)
    start: float | None = None  # only lines at or after this time
    end: float | None = None  # only lines before this time
    report: ReportOptions = field(default_factory=ReportOptions)
    # the analyses to run besides the report, by name (analyses/views.py), with their options
    views: dict[str, Any] = field(default_factory=dict)


class Analysis:
    """Everything learned from one stretch of log; merges exactly with the stretch after it."""

    def __init__(self, settings: Settings, first: bool = True) -> None:
        self.settings = settings
        tz = zone(settings.tz)
        self.tz = tz
        self.report = Report(settings.report, tz)
        self.pflogsumm = PflogsummTotals(
            settings.syslog_name, settings.report.verp_mung, settings.report.ignore_case
        )
        self.events = EventParser(settings.syslog_name, settings.filters)
        self.views: list[View] = [make_view(name, opts, tz) for name, opts in settings.views.items()]
        on_session = self._session if self.views else self.report.add_session
        on_settled = self._settled if self.views else self.report.settle
        self.correlator = Correlator(self._message, on_session, on_settled, first)
        self._consumers = self._route()

    def __reduce__(self) -> tuple[Any, ...]:
        return by_constructor(self, self.settings, self.correlator.first)

    def _route(self) -> dict[type, tuple[Handler, ...]]:
        return routes(
            dict.fromkeys(Correlator.KINDS, self.correlator.feed),
            self.report.handlers(),
            dict.fromkeys(PflogsummTotals.HANDLED, self.pflogsumm.feed),
            *(view.handlers() for view in self.views),
        )

    def _message(self, msg: Any) -> None:
        self.report.add_message(msg)
        self.pflogsumm.add_message(msg)
        for view in self.views:
            view.add_message(msg)

    def _settled(self, msg: Any) -> None:
        self.report.settle(msg)
        for view in self.views:
            view.settle(msg)

    def _session(self, sess: Any) -> None:
        self.report.add_session(sess)
        for view in self.views:
            view.add_session(sess)

    def line_parser(self, source: Source) -> LineParser:
        return self.line_parser_for(source.mtime)

    def line_parser_for(self, mtime: float | None) -> LineParser:
        """A line parser for a source last modified at ``mtime`` (None: now)."""
        return LineParser(YearGuess(self.settings.year, mtime, self.tz), self.tz)

    def read(self, lines: Iterable[str], parser: LineParser, order: tuple[int, ...] = (0,)) -> None:
        """Feed text lines through the pipeline. ``order`` places them among other stretches."""
        with relaxed_gc():
            self._read(lines, parser, order)

    def _read(self, lines: Iterable[str], parser: LineParser, order: tuple[int, ...]) -> None:
        events = self.events
        consumers = self._consumers
        report = self.report
        start, end = self.settings.start, self.settings.end
        period = start is not None or end is not None
        lo = start if start is not None else float("-inf")
        hi = end if end is not None else float("inf")
        n = blank = malformed = outside = foreign = unknown = recognised = 0
        try:
            for n, text in enumerate(lines, 1):
                line = parser.parse(text)
                if line is None:
                    if not text.strip():
                        blank += 1
                        continue
                    malformed += 1
                    report.malformed((*order, n), text[:300])
                    continue
                if period and not (lo <= line.ts < hi):
                    outside += 1
                    continue
                ev = events.parse(line)
                if ev is None:
                    foreign += 1
                    continue
                kind = type(ev)
                if kind is Unknown:
                    unknown += 1
                    report.unrecognised((*order, n), text[:300])
                    continue
                recognised += 1
                for consume in consumers.get(kind, ()):
                    consume(ev)
        finally:  # a source that fails part way (a truncated archive) still counts what it gave
            report.coverage(
                lines=n - blank,
                malformed=malformed,
                outside=outside,
                foreign=foreign,
                unrecognised=unknown,
                recognised=recognised,
            )

    def read_source(self, source: Source) -> None:
        """Read one whole source; an unreadable one raises InputError after what it gave."""
        stream = open_source(source)
        try:
            self.read(iter_lines(source, stream), self.line_parser(source), (source.index,))
        finally:
            stream.close()
            self.report.coverage(
                crlf=source.stats.get("crlf", 0), invalid_utf8=source.stats.get("invalid_utf8", 0)
            )

    def merge(self, later: Analysis) -> None:
        """Continue this stretch with ``later``, read from the part of the log right after it."""
        self.report.merge(later.report)
        self.pflogsumm.merge(later.pflogsumm)
        for view, later_view in zip(self.views, later.views, strict=True):
            view.merge(later_view)
        self.correlator.absorb(later.correlator)

    def finish(self) -> dict[str, Any]:
        """The log ends here: settle what is in flight and return the report."""
        self.correlator.finish()
        result = self.report.result()
        result["pflogsumm"] = self.pflogsumm.result()
        for name, view in zip(self.settings.views, self.views, strict=True):
            result[name] = view.result()
        return result


# The cyclic collector's gen-0 threshold while a log is read and its result built
RELAXED_GC: Final = 100_000


@contextmanager
def relaxed_gc() -> Iterator[None]:
    """Events and messages make no reference cycles: the collector's frequent scans of the many
    young objects a log makes, and its full scans of the large state once reading is done,
    only cost time (7% of reading the benchmark log; 0.2 s of -j's merge)."""
    thresholds = gc.get_threshold()
    gc.set_threshold(RELAXED_GC, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def analyse(paths: list[str], settings: Settings) -> tuple[dict[str, Any], list[InputError]]:
    """Read every source in ``paths`` in order and return the report and the input problems."""
    with relaxed_gc():
        return _analyse(paths, settings)


def _analyse(paths: list[str], settings: Settings) -> tuple[dict[str, Any], list[InputError]]:
    sources, problems = expand(paths)
    analysis = Analysis(settings)
    failed: dict[str, str] = {}
    for source in sources:
        try:
            analysis.read_source(source)
        except InputError as e:
            problems.append(e)
            failed[source.name] = e.problem
    result = analysis.finish()
    result["inputs"] = input_table(sources, failed, problems)
    return result, problems


def input_table(
    sources: list[Source], failed: dict[str, str], problems: list[InputError]
) -> list[dict[str, str | None]]:
    """One row per input: each source read (with its error, if any), then the paths not found."""
    named = {s.name for s in sources}
    return [{"source": s.name, "error": failed.get(s.name)} for s in sources] + [
        {"source": p.source, "error": p.problem} for p in problems if p.source not in named
    ]
