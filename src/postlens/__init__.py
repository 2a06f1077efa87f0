"""postlens: Postfix mail logs into answers.

The library API mirrors the command line: ``postlens.report(paths, ...)`` is what
``postlens report`` runs.
"""

from __future__ import annotations

import io
import json
import math
import sys
import threading
import time
import types
from collections.abc import Sequence
from datetime import tzinfo
from typing import TYPE_CHECKING, Any, TextIO

from postlens.addresses import ContentFilters
from postlens.analyses.report import ReportOptions
from postlens.config import DEFAULT_KEEP_DAYS
from postlens.dates import moment, period
from postlens.errors import InputError, PostlensError, UsageError
from postlens.lines import digits, zone
from postlens.pipeline import Analysis, Settings, analyse

# The other commands' modules are imported when first used: every command, and a Nagios
# check run each minute, starts without loading what it does not need.
if TYPE_CHECKING:
    from postlens.analyses.anomalies import AnomaliesOptions
    from postlens.analyses.security import SecurityOptions
    from postlens.anonymize import AnonymizeResult
    from postlens.checks import CHECKS, CheckResult, check
    from postlens.history import IngestResult
    from postlens.trace import STATUSES as TRACE_STATUSES
    from postlens.trace import Query
    from postlens.watch import WatchOptions
    from postlens.web.serve import ServeOptions  # the web extra may not be installed

_LAZY = {
    "AnomaliesOptions": ("postlens.analyses.anomalies", "AnomaliesOptions"),
    "CHECKS": ("postlens.checks", "CHECKS"),
    "CheckResult": ("postlens.checks", "CheckResult"),
    "SecurityOptions": ("postlens.analyses.security", "SecurityOptions"),
    "TRACE_STATUSES": ("postlens.trace", "STATUSES"),
    "WatchOptions": ("postlens.watch", "WatchOptions"),
    "check": ("postlens.checks", "check"),
}


class _Library(types.ModuleType):
    """This package. Some of its functions share their name with the module that implements
    them (``postlens.trace`` the function, ``postlens/trace.py`` its module); importing such a
    module when a command first needs it would bind the module over the function."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


_SHADOWED = frozenset(("anonymize", "export", "queue", "trace", "watch"))
sys.modules[__name__].__class__ = _Library


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'postlens' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


__version__ = "0.1.0"
ENGINES = ("local", "dask")
__all__ = [
    "CHECKS",
    "TRACE_STATUSES",
    "Analysis",
    "AnomaliesOptions",
    "CheckResult",
    "ContentFilters",
    "InputError",
    "PostlensError",
    "ReportOptions",
    "SecurityOptions",
    "Settings",
    "UsageError",
    "WatchOptions",
    "__version__",
    "anomalies",
    "anonymize",
    "check",
    "check_rbl",
    "compiled",
    "problems",
    "queue",
    "queue_entries",
    "render_blocklist",
    "report",
    "sample_log",
    "security",
    "serve",
    "summarise",
    "trace",
    "watch",
]  # fmt: skip


def compiled() -> bool:
    """Whether the per-line pipeline runs as compiled C (see setup.py) or as plain Python."""
    from postlens import lines

    return not lines.__file__.endswith(".py") and lines._fastparse is not None


def sample_log() -> str:
    """Path of the bundled sample log (a real Postfix's log from the test lab)."""
    from importlib import resources

    return str(resources.files("postlens") / "data" / "sample.log")


def report(
    paths: list[str],
    *,
    date: str | None = None,
    year: int | None = None,
    tz: str | None = None,
    syslog_name: str | None = None,
    content_filters: Sequence[str] = (),
    verp_mung: int = 0,
    ignore_case: bool = False,
    rej_add_from: bool = False,
    jobs: int = 1,
    engine: str = "local",
    scheduler: str | None = None,
    progress: TextIO | None = None,
    since: str | None = None,
    until: str | None = None,
    db: str | None = None,
) -> tuple[dict[str, Any], list[InputError]]:
    """Read the logs and return the report result and the inputs that could not be read.

    ``jobs`` > 1 reads chunks of the log in that many processes; the result is the same.
    ``engine="dask"`` reads them on the Dask cluster at ``scheduler`` (or a local one of
    ``jobs`` workers). ``db`` reads the history database instead of log files ("" for the
    default one); ``since``/``until`` (``30d``, ISO 8601) narrow the period like ``date``.
    With ``progress`` (a terminal, usually standard error), a progress line is kept there.
    ``content_filters``: addresses or networks of content filters that are not on loopback.
    """
    start, end = _period(date, since, until, tz)
    settings = Settings(
        year=year,
        tz=tz,
        syslog_name=syslog_name,
        filters=ContentFilters(content_filters),
        start=start,
        end=end,
        report=ReportOptions(verp_mung=verp_mung, ignore_case=ignore_case, rej_add_from=rej_add_from),
    )
    return _read(paths, settings, jobs, engine, scheduler, progress, db)


def problems(
    paths: list[str],
    *,
    rules: str | None = None,
    date: str | None = None,
    since: str | None = None,
    until: str | None = None,
    **reading: Any,
) -> tuple[dict[str, Any], list[InputError]]:
    """Why mail fails: every deferral, bounce, expiry and reject put into a reason, ranked
    (docs/problems.md). With a period, the period of the same length before it is read
    too, for the trend. ``reading`` takes report()'s options on how to read the logs."""
    from postlens.analyses.problems import ProblemsOptions
    from postlens.analyses.reasons import Rules

    start, end = _period(date, since, until, reading.get("tz"))
    options = ProblemsOptions(rules=rules, start=start, end=end)
    Rules.load(rules)  # a bad rule file is said before any log is read
    if start is not None:
        start -= (end if end is not None else time.time()) - start
    return _view("problems", options, paths, start, end, reading)


def security(
    paths: list[str],
    *,
    options: SecurityOptions | None = None,
    date: str | None = None,
    since: str | None = None,
    until: str | None = None,
    **reading: Any,
) -> tuple[dict[str, Any], list[InputError]]:
    """Who is attacking: failed logins, sprays, guessed passwords, compromised senders
    and floods (docs/security.md)."""
    from postlens.analyses.security import SecurityOptions

    start, end = _period(date, since, until, reading.get("tz"))
    return _view("security", options or SecurityOptions(), paths, start, end, reading)


def anomalies(
    paths: list[str],
    *,
    options: AnomaliesOptions | None = None,
    date: str | None = None,
    since: str | None = None,
    until: str | None = None,
    **reading: Any,
) -> tuple[dict[str, Any], list[InputError]]:
    """Spikes, drops and silences against the same hours of earlier days, and the weekly
    pattern (docs/anomalies.md). With a period, ``baseline_days`` before it are read too."""
    from postlens.analyses.anomalies import DAY, AnomaliesOptions

    options = options or AnomaliesOptions()
    if DAY % options.step:
        raise UsageError(f"--step: {options.step} seconds does not divide a day")
    start, end = _period(date, since, until, reading.get("tz"))
    options.start = start
    if start is not None:
        start -= options.baseline_days * DAY
    return _view("anomalies", options, paths, start, end, reading)


def render_blocklist(entries: list[tuple[str, str]], fmt: str, *, allow: Sequence[str] = ()) -> str:
    """The (ip, reason) ``entries`` as a blocklist in ``fmt`` (docs/blocklists.md); nothing
    inside an ``allow`` network is written."""
    from postlens.blocklist import write_blocklist

    out = io.StringIO()
    try:
        write_blocklist(entries, fmt, out, allow=allow)
    except ValueError as e:
        raise UsageError(str(e)) from e
    return out.getvalue()


def check_rbl(
    ips: Sequence[str],
    *,
    zones: Sequence[str] | None = None,
    nameserver: str | None = None,
    timeout: float = 3.0,
    asked_by: str = "--check-rbl",
) -> list[Any]:
    """Whether DNS blocklists list our ``ips``: one ``rbl.Listing`` per address and zone.
    ``nameserver`` is ``IP`` or ``IP:PORT`` (default: the system's resolver); ``asked_by``
    names the option or check in the message of a bad address."""
    from postlens import rbl

    port = 53
    if nameserver and nameserver.count(":") == 1:
        nameserver, _, number = nameserver.partition(":")
        if not digits(number):
            raise UsageError(f"--nameserver: {number!r} is not a port")
        port = int(number)
    try:
        return rbl.check(ips, zones or rbl.DEFAULT_ZONES, nameserver=nameserver, port=port, timeout=timeout)
    except ValueError as e:
        raise UsageError(f"{asked_by}: {e}") from e


def _view(
    name: str, options: Any, paths: list[str], start: float | None, end: float | None, reading: dict[str, Any]
) -> tuple[dict[str, Any], list[InputError]]:
    """Read the logs for the analysis ``name`` (analyses/views.py) and return its result,
    with the report's coverage and inputs beside it."""
    settings = Settings(
        year=reading.pop("year", None),
        tz=reading.get("tz"),
        syslog_name=reading.pop("syslog_name", None),
        filters=ContentFilters(reading.pop("content_filters", ())),
        start=start,
        end=end,
        views={name: options},
    )
    reading.pop("tz", None)
    result, failed = _read(paths, settings, **reading)
    out = result[name]
    out["coverage"] = result["coverage"]
    out["inputs"] = result.get("inputs", [])
    out["period"] = {
        **out.get("period", {}),
        "first_line": result["period"]["first"],
        "last_line": result["period"]["last"],
    }
    return out, failed


def _period(
    date: str | None, since: str | None, until: str | None, tz: str | None
) -> tuple[float | None, float | None]:
    """[start, end) from -d, --since and --until; None where open."""
    zone_ = _zone(tz)
    start = end = None
    if date:
        start, end = period(date, zone_)
    if since:
        start = max(start or -math.inf, moment(since, zone_, "--since"))
    if until:
        end = min(end or math.inf, moment(until, zone_, "--until"))
    return start, end


def _read(
    paths: list[str],
    settings: Settings,
    jobs: int = 1,
    engine: str = "local",
    scheduler: str | None = None,
    progress: TextIO | None = None,
    db: str | None = None,
) -> tuple[dict[str, Any], list[InputError]]:
    target = _history(db)
    if target is not None:
        from postlens.history import report_from

        return report_from(target, settings)
    if engine not in ENGINES:
        raise UsageError(f"--engine: {engine!r} is not one of {', '.join(ENGINES)}")
    if scheduler and engine != "dask":
        raise UsageError("--scheduler needs --engine dask")
    if progress is None:
        return _analyse(paths, settings, jobs, engine, scheduler)
    from postlens.progress import shown
    from postlens.sources import plain_total

    with shown(plain_total(paths), progress):
        return _analyse(paths, settings, jobs, engine, scheduler)


def query(
    *,
    senders: tuple[str, ...] = (),
    recipients: tuple[str, ...] = (),
    qids: tuple[str, ...] = (),
    msgids: tuple[str, ...] = (),
    clients: tuple[str, ...] = (),
    sasl_users: tuple[str, ...] = (),
    statuses: tuple[str, ...] = (),
    since: str | None = None,
    until: str | None = None,
    tz: str | None = None,
) -> Query:
    """What trace and export select (docs/trace.md); ``since``/``until`` take ``2h``, ``3d``
    or ISO 8601 times, in ``tz`` when they name no zone."""
    from postlens.trace import Query

    zone_ = _zone(tz)
    q = Query(
        senders=senders, recipients=recipients, qids=qids, msgids=msgids, clients=clients,
        sasl_users=sasl_users, statuses=statuses,
        since=moment(since, zone_, "--since") if since else None,
        until=moment(until, zone_, "--until") if until else None,
    )  # fmt: skip
    try:
        q.networks()
    except ValueError as e:
        raise UsageError(f"--client: {e}") from e
    return q


def trace(
    paths: list[str],
    *,
    raw: bool = False,
    year: int | None = None,
    tz: str | None = None,
    syslog_name: str | None = None,
    content_filters: Sequence[str] = (),
    db: str | None = None,
    **selection: Any,
) -> tuple[list[dict[str, Any]], list[InputError]]:
    """The messages and NOQUEUE rejects that match ``selection`` (see :func:`query`), oldest
    first, and the inputs that could not be read. What ``postlens trace`` prints."""
    from postlens.trace import trace as trace_logs

    q = query(tz=tz, **selection)
    filters = ContentFilters(content_filters)
    return trace_logs(
        paths, q, year=year, tz=tz, syslog_name=syslog_name, filters=filters, raw=raw, db=_history(db)
    )


def export(
    paths: list[str],
    *,
    table: str = "messages",
    fmt: str = "csv",
    output: str | None = None,
    year: int | None = None,
    tz: str | None = None,
    syslog_name: str | None = None,
    content_filters: Sequence[str] = (),
    db: str | None = None,
    **selection: Any,
) -> tuple[int, list[InputError]]:
    """Write the rows of ``table`` that match ``selection`` to ``output`` (stdout when None);
    return how many rows, and the inputs that could not be read. See docs/export.md."""
    from postlens.export import export as export_rows

    q = query(tz=tz, **selection)
    filters = ContentFilters(content_filters)
    return export_rows(
        paths, q, table, fmt, output, year=year, tz=tz, syslog_name=syslog_name, filters=filters,
        db=_history(db),
    )  # fmt: skip


def ingest(
    paths: list[str],
    *,
    db: str | None = None,
    keep_days: int = DEFAULT_KEEP_DAYS,
    year: int | None = None,
    tz: str | None = None,
) -> tuple[IngestResult, list[InputError]]:
    """Append what is new in the logs to the history database (docs/history.md)."""
    from postlens import history

    return history.ingest(paths, db or history.default_path(), keep_days=keep_days, year=year, tz=tz)


def prune(older_than_days: float, *, db: str | None = None) -> int:
    """Remove stored lines older than the given age from the history database."""
    from postlens import history

    return history.prune(db or history.default_path(), older_than_days)


def summarise(*, db: str | None = None) -> int:
    """Bring the dashboard's summaries up to the stored lines; how many lines were read.
    Ingest keeps them up to date; a database from an older postlens needs this once."""
    from postlens import history

    return history.summarise(db or history.default_path())


def serve(options: ServeOptions) -> None:
    """Serve the web dashboard until interrupted (docs/serve.md): what ``postlens serve`` runs.
    Needs the ``web`` extra."""
    from postlens.web.serve import serve as run

    run(options)


def _zone(tz: str | None) -> tzinfo | None:
    try:
        return zone(tz)
    except Exception as e:  # zoneinfo raises several kinds for a bad name
        raise UsageError(f"--tz: unknown time zone {tz!r}") from e


def _history(db: str | None) -> str | None:
    """The history database asked for: None to read log files, "" for the default one."""
    if db is None:
        return None
    from postlens.history import default_path

    return db or default_path()


def _analyse(
    paths: list[str], settings: Settings, jobs: int, engine: str, scheduler: str | None
) -> tuple[dict[str, Any], list[InputError]]:
    if engine == "dask":
        from postlens.cluster import analyse_dask

        return analyse_dask(paths, settings, scheduler, jobs)
    if jobs > 1:
        from postlens.parallel import analyse_parallel

        return analyse_parallel(paths, settings, jobs)
    return analyse(paths, settings)


def queue(
    source: str | None = None,
    *,
    config_dir: str | None = None,
    senders: bool = False,
    bucket_minutes: float = 5,
    buckets: int = 10,
    linear: bool = False,
    parents: bool = False,
    min_subdomains: int = 5,
    queues: Sequence[str] | None = None,
    rules: str | None = None,
    now: int | None = None,
) -> tuple[dict[str, Any], list[InputError]]:
    """The mail queue as qshape shapes it, and more (docs/queue.md): what ``postlens queue`` runs.

    ``source`` is a saved ``postqueue -j`` file, ``-`` for standard input, or None for the live
    queue (``postqueue -j``, with ``-c config_dir`` for another instance). The options are
    qshape's: ``senders`` (-s), ``bucket_minutes`` (-t), ``buckets`` (-b), ``linear`` (-l),
    ``parents`` (-p), ``min_subdomains`` (-m) and the ``queues`` of the table (qshape's by
    default). Ages are counted to ``now`` (epoch seconds; default: the present). Returns the
    result and the problems met on the way (malformed lines, which were skipped); a source that
    cannot be read raises.
    """
    from postlens.analyses.reasons import Rules
    from postlens.queue import DEFAULT_QUEUES, ShapeOptions, analyse_queue, load

    options = ShapeOptions(
        senders=senders, bucket_minutes=bucket_minutes, buckets=buckets, linear=linear, parents=parents,
        min_subdomains=min_subdomains, queues=tuple(queues) if queues is not None else DEFAULT_QUEUES,
    )  # fmt: skip
    options.check()
    loaded_rules = Rules.load(rules)  # a bad rule file is said before the queue is read
    name, records, malformed, problems = load(source, config_dir)
    at = int(time.time()) if now is None else int(now)
    result = {
        "source": name,
        **analyse_queue(records, options, at, loaded_rules),
        "malformed_lines": malformed,
    }
    return result, problems


def queue_entries(config_dir: str | None = None) -> list[dict[str, Any]]:
    """The live queue as ``postqueue -j`` gives it, one dict per message (``-c config_dir``)."""
    from postlens.queue import read_live

    return [json.loads(text) for text in read_live(config_dir) if text.strip()]


def watch(options: WatchOptions, stop: threading.Event) -> None:
    """Follow the logs, the journal or syslog listeners until ``stop`` is set (docs/watch.md):
    what ``postlens watch`` runs."""
    from postlens.watch import watch as follow

    follow(options, stop)


def anonymize(
    paths: list[str],
    output: str | None = None,
    *,
    key: str,
    new_key: bool = False,
    own_domains: Sequence[str] = (),
    keep_domains: bool = False,
    keep_prefix: bool = False,
    keep_nets: Sequence[str] = (),
    year: int | None = None,
    tz: str | None = None,
    syslog_name: str | None = None,
) -> tuple[AnonymizeResult, list[InputError]]:
    """Rewrite the logs with keyed pseudonyms for every address, host name, login, Message-ID
    and header text, to ``output`` (stdout when None; .gz, .bz2, .xz or .zst compress), as
    ``postlens anonymize`` does (docs/anonymize.md). ``key`` is the key file (made, 32 random
    bytes readable by its owner alone, with ``new_key`` when it does not exist). Returns the
    lines written and the inputs that could not be read."""
    from postlens.anonymize import AnonymizeOptions, anonymize_files, load_key

    _zone(tz)  # a bad zone is said before the output is begun
    options = AnonymizeOptions(
        own_domains=tuple(own_domains), keep_domains=keep_domains, keep_prefix=keep_prefix,
        keep_nets=tuple(keep_nets),
    )  # fmt: skip
    secret = load_key(key, create=new_key)
    return anonymize_files(paths, output, secret, options, year=year, tz=tz, syslog_name=syslog_name)
