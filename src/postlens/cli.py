"""The postlens command: parses options, calls the library, renders. Nothing else."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

import postlens
from postlens.dates import moment
from postlens.errors import EXIT_INPUT, EXIT_NO_MATCH, EXIT_USAGE, PostlensError
from postlens.export import EXPORT_FORMATS, TABLES
from postlens.history import DEFAULT_KEEP_DAYS
from postlens.output import write_output
from postlens.render import FORMATS, RenderOptions, render
from postlens.render.trace import TRACE_FORMATS, render_trace

T = TypeVar("T")
DEFAULT_LOGS = ("/var/log/mail.log", "/var/log/maillog")
CONTEXT = {"help_option_names": ["--help"], "max_content_width": 100}


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"postlens: {message}", err=True)
    sys.exit(code)


@click.group(context_settings=CONTEXT)
@click.version_option(
    postlens.__version__,
    prog_name="postlens",
    message=f"%(prog)s, version %(version)s ({'compiled' if postlens.compiled() else 'plain Python'})",
)
def main() -> None:
    """Postfix mail logs into answers."""


_DB_OPTION = click.option(
    "--db",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[PATH]",
    help="Read the history database (postlens ingest) instead of log files; PATH or the default one.",
)


def _targets(paths: tuple[str, ...], sample: bool, db: str | None = None) -> list[str]:
    """The logs to read: those named, the sample, standard input, or the system's mail log."""
    if db is not None:
        if paths or sample:
            _fail("give either log files or --db, not both", EXIT_USAGE)
        return []
    targets = list(paths)
    if sample:
        targets.append(postlens.sample_log())
    if targets:
        return targets
    if not sys.stdin.isatty():
        return ["-"]
    targets = _default_paths()
    if not targets:
        _fail("no log given and none at /var/log/mail.log or /var/log/maillog; try --sample", EXIT_USAGE)
    return targets


def _default_paths() -> list[str]:
    for base in DEFAULT_LOGS:
        if os.path.exists(base):
            return [base + "*"]
    return []


@main.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1)
@click.option(
    "-d",
    "--date",
    "date",
    metavar="DAY[..DAY]",
    help="Only this period: today, yesterday, 2026-11-27 or 2026-11-01..2026-11-27.",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("-o", "--output", metavar="FILE", help="Write here (whole or not at all) instead of stdout.")
@click.option("--year", type=int, help="Year of the first line for stamps without one (default: file time).")
@click.option("--tz", metavar="ZONE", help="Zone of stamps without one, and of the report (default: local).")
@click.option("--syslog-name", metavar="REGEX", help="A custom syslog_name, as a regular expression.")
@click.option("-h", "top_hosts", type=int, default=-1, metavar="N", help="Rows in host/domain summaries.")
@click.option("-u", "top_users", type=int, default=-1, metavar="N", help="Rows in sender/recipient lists.")
@click.option(
    "--detail", type=int, default=-1, metavar="N", help="Rows in problem sections (and -h/-u if unset)."
)
@click.option("--problems-first", is_flag=True, help="Problem sections right after the grand totals.")
@click.option("--rej-add-from", is_flag=True, help="Show the sender beside rejected recipients.")
@click.option(
    "--verp-mung",
    type=int,
    is_flag=False,
    flag_value=1,
    default=0,
    metavar="[N]",
    help="Fold VERP addresses (2: harder).",
)
@click.option("--zero-fill", is_flag=True, help="Show every day and hour, also without traffic.")
@click.option("-i", "--ignore-case", is_flag=True, help="pflogsumm view: compare addresses without case.")
@click.option("--smtpd-stats", is_flag=True, help="Add SMTP connection statistics.")
@click.option("--no-no-msg-size", "no_no_size", is_flag=True, help="Leave out 'Messages with no size data'.")
@click.option("--by-host", is_flag=True, help="Add the grand totals of each mail server.")
@click.option("--sample", is_flag=True, help="Report on the bundled sample log.")
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1),
    default=os.cpu_count() or 1,
    show_default="all cores",
    help="Processes to read with; any number gives the same report.",
)
@click.option(
    "--engine",
    type=click.Choice(postlens.ENGINES),
    default="local",
    show_default=True,
    help="Where chunks are read: worker processes here, or a Dask cluster (postlens[dask]).",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="The Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: a local cluster of -j workers).",
)
@click.option("--since", metavar="TIME", help="Only lines from this time: 30d, 2h or 2026-11-01T00:00.")
@click.option("--until", metavar="TIME", help="Only lines before this time.")
@_DB_OPTION
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show progress on standard error.  [default: when it is a terminal]",
)
def report(
    paths: tuple[str, ...], fmt: str, output: str | None, sample: bool, progress: bool | None, **opts: Any
) -> None:
    """A summary of the mail log: pflogsumm's report, counted right, and more.

    PATHS are files, globs, directories (their mail.log*/maillog* files) or - for
    standard input, in any order: rotated sets are read oldest first, compressed
    ones (gzip, bzip2, xz, zstd) as they are.
    """
    targets = _targets(paths, sample, opts["db"])
    detail = opts.pop("detail")
    top_hosts, top_users = opts.pop("top_hosts"), opts.pop("top_users")
    render_opts = RenderOptions(
        top_hosts=top_hosts if top_hosts >= 0 else detail,
        top_users=top_users if top_users >= 0 else detail,
        detail=detail,
        problems_first=opts.pop("problems_first"),
        smtpd_stats=opts.pop("smtpd_stats"),
        zero_fill=opts.pop("zero_fill"),
        no_no_size=opts.pop("no_no_size"),
        by_host=opts.pop("by_host"),
    )
    show = sys.stderr.isatty() if progress is None else progress
    result, problems = _run(lambda: postlens.report(targets, progress=sys.stderr if show else None, **opts))
    write_output(render(result, fmt, render_opts), output)
    _problems(problems)


def _many(values: tuple[str, ...]) -> tuple[str, ...]:
    """Options given several times or as comma-separated lists."""
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())


_SEARCH_OPTIONS = (
    click.option("--from", "senders", multiple=True, metavar="ADDR", help="Sender: address, domain or glob."),
    click.option("--to", "recipients", multiple=True, metavar="ADDR", help="Recipient (same forms)."),
    click.option("--qid", "qids", multiple=True, metavar="ID", help="Queue ID (either side of a filter)."),
    click.option("--msgid", "msgids", multiple=True, metavar="ID", help="Message-ID, with or without <>."),
    click.option("--client", "clients", multiple=True, metavar="IP/CIDR", help="Client address or network."),
    click.option("--sasl-user", "sasl_users", multiple=True, metavar="USER", help="Sender's SASL login."),
    click.option(
        "--status",
        "statuses",
        multiple=True,
        type=click.Choice(("sent", *postlens.TRACE_STATUSES)),
        help="Final state of the message or of one of its recipients.",
    ),
    click.option("--since", metavar="TIME", help="Messages active after: 2h, 3d, or 2026-11-27T08:00."),
    click.option("--until", metavar="TIME", help="Messages that began before this time."),
    click.option(
        "-o", "--output", metavar="FILE", help="Write here (whole or not at all) instead of stdout."
    ),
    click.option(
        "--year", type=int, help="Year of the first line for stamps without one (default: file time)."
    ),
    click.option("--tz", metavar="ZONE", help="Zone of stamps without one, and of --since/--until."),
    click.option("--syslog-name", metavar="REGEX", help="A custom syslog_name, as a regular expression."),
    click.option("--sample", is_flag=True, help="Search the bundled sample log."),
    _DB_OPTION,
)


def _search_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options trace and export share: what to select, and how to read the logs."""
    for option in reversed(_SEARCH_OPTIONS):
        command = option(command)
    return click.argument("paths", nargs=-1)(command)


def _search(run: Callable[..., Any], paths: tuple[str, ...], sample: bool, opts: dict[str, Any]) -> Any:
    """Call a search with the logs and options given; one line and an exit code on error."""
    for key in ("senders", "recipients", "qids", "msgids", "clients", "sasl_users"):
        opts[key] = _many(opts[key])
    targets = _targets(paths, sample, opts.get("db"))
    return _run(lambda: run(targets, **opts))


def _run(call: Callable[[], T]) -> T:
    """Run a library call; a problem it reports ends the command with one line and its exit code."""
    try:
        return call()
    except PostlensError as e:
        _fail(str(e), e.exit_code)
    except re.error as e:
        _fail(f"--syslog-name: not a regular expression: {e}", EXIT_USAGE)


def _problems(problems: list[Any]) -> None:
    for p in problems:
        click.echo(f"postlens: {p}", err=True)
    if problems:
        sys.exit(EXIT_INPUT)


@main.command(context_settings=CONTEXT)
@_search_options
@click.option("--raw", is_flag=True, help="Add the original log lines of each message (nothing else).")
@click.option("--format", "fmt", type=click.Choice(TRACE_FORMATS), default="text", show_default=True)
def trace(paths: tuple[str, ...], fmt: str, output: str | None, sample: bool, **opts: Any) -> None:
    """Where did a message go? Each message that matches, as a timeline with a verdict.

    Options combine (all must match); an option given several times, or with
    comma-separated values, matches any of them. Exit code 3 when nothing matches.
    """
    hits, problems = _search(postlens.trace, paths, sample, opts)
    write_output(render_trace(hits, fmt), output)
    _problems(problems)
    if not hits:
        click.echo("postlens: no message matches", err=True)
        sys.exit(EXIT_NO_MATCH)


@main.command(context_settings=CONTEXT)
@_search_options
@click.option(
    "--table",
    type=click.Choice(tuple(TABLES)),
    default="messages",
    show_default=True,
    help="One row per message, per delivery attempt, per reject, or per login.",
)
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), default="csv", show_default=True)
def export(paths: tuple[str, ...], sample: bool, **opts: Any) -> None:
    """Every message, delivery attempt, reject or login, as rows: CSV, JSON Lines,
    Elastic Common Schema JSON Lines, or SQLite (with -o). Selected like trace.
    """
    count, problems = _search(postlens.export, paths, sample, opts)
    click.echo(f"postlens: {count} rows", err=True)
    _problems(problems)


@main.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True)
@click.option("--db", metavar="PATH", help="The history database (default: $POSTLENS_DB or ~/.local/share).")
@click.option(
    "--keep-days",
    type=click.IntRange(0),
    default=DEFAULT_KEEP_DAYS,
    show_default=True,
    help="Remove stored lines older than this (0: keep everything).",
)
@click.option("--year", type=int, help="Year of the first line for stamps without one.")
@click.option("--tz", metavar="ZONE", help="Zone of stamps without one (default: local).")
def ingest(paths: tuple[str, ...], **opts: Any) -> None:
    """Append what is new in the logs to the history database.

    Run it as often as you like (from cron, say): each file is read on from where the last
    run stopped, across rotations, compression and copytruncate, and no line is stored twice.
    """
    result, problems = _run(lambda: postlens.ingest(list(paths), **opts))
    click.echo(
        f"postlens: {result.lines} new lines from {result.files} files, {result.skipped} skipped, "
        f"{result.pruned} pruned",
        err=True,
    )
    _problems(problems)


@main.command(context_settings=CONTEXT)
@click.option("--older-than", required=True, metavar="AGE", help="Age of the lines to remove: 28d, 12h.")
@click.option("--db", metavar="PATH", help="The history database (default: $POSTLENS_DB or ~/.local/share).")
def prune(older_than: str, db: str | None) -> None:
    """Remove old lines from the history database."""
    now = time.time()
    age_days = _run(lambda: (now - moment(older_than, None, "--older-than", now)) / 86400)
    removed = _run(lambda: postlens.prune(age_days, db=db))
    click.echo(f"postlens: {removed} lines removed", err=True)
