"""postlens: Postfix mail logs into answers.

The library API mirrors the command line: ``postlens.report(paths, ...)`` is what
``postlens report`` runs.
"""

from __future__ import annotations

import math
from datetime import tzinfo
from importlib import resources
from typing import Any, TextIO

from postlens import history
from postlens.analyses.report import ReportOptions
from postlens.dates import moment, period
from postlens.errors import InputError, PostlensError, UsageError
from postlens.export import export as export_rows
from postlens.lines import zone
from postlens.pipeline import Analysis, Settings, analyse
from postlens.progress import shown
from postlens.sources import plain_total
from postlens.trace import STATUSES as TRACE_STATUSES
from postlens.trace import Query
from postlens.trace import trace as trace_logs

__version__ = "0.1.0"
ENGINES = ("local", "dask")
__all__ = [
    "TRACE_STATUSES",
    "Analysis",
    "InputError",
    "PostlensError",
    "ReportOptions",
    "Settings",
    "UsageError",
    "__version__",
    "compiled",
    "report",
    "sample_log",
    "trace",
]  # fmt: skip


def compiled() -> bool:
    """Whether the per-line pipeline runs as compiled C (see setup.py) or as plain Python."""
    from postlens import lines

    return not lines.__file__.endswith(".py")


def sample_log() -> str:
    """Path of the bundled sample log (a real Postfix's log from the test lab)."""
    return str(resources.files("postlens") / "data" / "sample.log")


def report(
    paths: list[str],
    *,
    date: str | None = None,
    year: int | None = None,
    tz: str | None = None,
    syslog_name: str | None = None,
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
    """
    zone_ = _zone(tz)
    start = end = None
    if date:
        start, end = period(date, zone_)
    if since:
        start = max(start or -math.inf, moment(since, zone_, "--since"))
    if until:
        end = min(end or math.inf, moment(until, zone_, "--until"))
    settings = Settings(
        year=year,
        tz=tz,
        syslog_name=syslog_name,
        start=start,
        end=end,
        report=ReportOptions(verp_mung=verp_mung, ignore_case=ignore_case, rej_add_from=rej_add_from),
    )
    target = _history(db)
    if target is not None:
        return history.report_from(target, settings)
    if engine not in ENGINES:
        raise UsageError(f"--engine: {engine!r} is not one of {', '.join(ENGINES)}")
    if scheduler and engine != "dask":
        raise UsageError("--scheduler needs --engine dask")
    if progress is None:
        return _analyse(paths, settings, jobs, engine, scheduler)
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
    db: str | None = None,
    **selection: Any,
) -> tuple[list[dict[str, Any]], list[InputError]]:
    """The messages and NOQUEUE rejects that match ``selection`` (see :func:`query`), oldest
    first, and the inputs that could not be read. What ``postlens trace`` prints."""
    q = query(tz=tz, **selection)
    return trace_logs(paths, q, year=year, tz=tz, syslog_name=syslog_name, raw=raw, db=_history(db))


def export(
    paths: list[str],
    *,
    table: str = "messages",
    fmt: str = "csv",
    output: str | None = None,
    year: int | None = None,
    tz: str | None = None,
    syslog_name: str | None = None,
    db: str | None = None,
    **selection: Any,
) -> tuple[int, list[InputError]]:
    """Write the rows of ``table`` that match ``selection`` to ``output`` (stdout when None);
    return how many rows, and the inputs that could not be read. See docs/export.md."""
    q = query(tz=tz, **selection)
    return export_rows(
        paths, q, table, fmt, output, year=year, tz=tz, syslog_name=syslog_name, db=_history(db)
    )


def ingest(
    paths: list[str],
    *,
    db: str | None = None,
    keep_days: int = history.DEFAULT_KEEP_DAYS,
    year: int | None = None,
    tz: str | None = None,
) -> tuple[history.IngestResult, list[InputError]]:
    """Append what is new in the logs to the history database (docs/history.md)."""
    return history.ingest(paths, db or history.default_path(), keep_days=keep_days, year=year, tz=tz)


def prune(older_than_days: float, *, db: str | None = None) -> int:
    """Remove stored lines older than the given age from the history database."""
    return history.prune(db or history.default_path(), older_than_days)


def _zone(tz: str | None) -> tzinfo | None:
    try:
        return zone(tz)
    except Exception as e:  # zoneinfo raises several kinds for a bad name
        raise UsageError(f"--tz: unknown time zone {tz!r}") from e


def _history(db: str | None) -> str | None:
    """The history database asked for: None to read log files, "" for the default one."""
    return None if db is None else db or history.default_path()


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
