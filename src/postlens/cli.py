"""The postlens command: parses options, calls the library, renders. Nothing else."""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

import postlens
from postlens import config
from postlens.blocklist import FORMATS as BLOCKLIST_FORMATS
from postlens.checks import unknown as check_unknown
from postlens.config import DEFAULT_KEEP_DAYS
from postlens.dates import duration, moment
from postlens.errors import EXIT_INPUT, EXIT_LISTED, EXIT_NO_MATCH, EXIT_USAGE, PostlensError
from postlens.export import EXPORT_FORMATS, TABLES
from postlens.output import write_output
from postlens.render import FORMATS, RenderOptions, render
from postlens.render.diagnose import DIAGNOSE_FORMATS, render_diagnosis, render_listings
from postlens.render.trace import TRACE_FORMATS, render_trace

if TYPE_CHECKING:  # the modules of a few commands are imported when they run
    from postlens.checks import CheckResult
    from postlens.mail import ReportMail

T = TypeVar("T")
DEFAULT_LOGS = ("/var/log/mail.log", "/var/log/maillog")
# networks a blocklist never names unless the config's [security] allow says otherwise
DEFAULT_ALLOW = ("127.0.0.0/8", "::1/128")
DB_HELP = "The history database (default: $POSTLENS_DB, [history] db, or ~/.local/share)."
CONTEXT = {"help_option_names": ["--help"], "max_content_width": 100}


def _default_db() -> str:
    from postlens.history import default_path

    return default_path()


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"postlens: {message}", err=True)
    sys.exit(code)


@click.group(context_settings=CONTEXT)
@click.version_option(
    postlens.__version__,
    prog_name="postlens",
    message=f"%(prog)s, version %(version)s ({'compiled' if postlens.compiled() else 'plain Python'})",
)
@click.pass_context
def main(ctx: click.Context) -> None:
    """Postfix mail logs into answers."""
    # each command chooses its own settings file (--config), for as long as it runs
    config.chosen = None
    ctx.call_on_close(lambda: setattr(config, "chosen", None))


_CONTENT_FILTER_OPTION = click.option(
    "--content-filter",
    "content_filters",
    multiple=True,
    metavar="ADDR",
    callback=lambda _ctx, _param, values: _many(values),
    help="A content filter off loopback (IP or network; repeatable): its hops are not mail in and out.",
)

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


class _PflogsummCommand(click.Command):
    """pflogsumm takes --problems_first for --problems-first; so does postlens report, so that
    a crontab's pflogsumm line works unchanged."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        end = args.index("--") if "--" in args else len(args)
        given: list[str] = []
        for arg in map(_dashed, args[:end]):
            # pflogsumm takes --verp-mung's level only as --verp-mung=2: a bare --verp-mung never
            # takes the log path after it
            given += ["--verp-mung-level", arg[12:]] if arg.startswith("--verp-mung=") else [arg]
        return super().parse_args(ctx, given + args[end:])


def _dashed(arg: str) -> str:
    if not arg.startswith("--"):
        return arg
    name, eq, value = arg.partition("=")
    return name.replace("_", "-") + eq + value


@main.command(context_settings=CONTEXT, cls=_PflogsummCommand)
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
@_CONTENT_FILTER_OPTION
@click.option("-h", "top_hosts", type=int, default=-1, metavar="N", help="Rows in host/domain summaries.")
@click.option("-u", "top_users", type=int, default=-1, metavar="N", help="Rows in sender/recipient lists.")
@click.option(
    "--detail", type=int, default=-1, metavar="N", help="Rows in problem sections (and -h/-u if unset)."
)
@click.option("--deferral-detail", type=int, metavar="N", help="Rows in the deferral detail (0: none).")
@click.option("--bounce-detail", type=int, metavar="N", help="Rows in the bounce detail (0: none).")
@click.option(
    "--reject-detail", type=int, metavar="N", help="Rows in the reject, warning, hold and discard details."
)
@click.option("--smtp-detail", type=int, metavar="N", help="Rows in the smtp delivery failures.")
@click.option("--smtpd-warning-detail", type=int, metavar="N", help="Rows in the Warnings (0: none).")
@click.option("-q", "--quiet", is_flag=True, help="Leave out sections with nothing in them (text).")
@click.option("--mailq", is_flag=True, help="Add the live mail queue's shape at the end (text).")
@click.option("--config-dir", metavar="DIR", help="--mailq: another instance's queue (postqueue -c DIR).")
@click.option("--iso-date-time", is_flag=True, hidden=True)  # pflogsumm's: postlens's times always are
@click.option("--no-bounce-detail", is_flag=True, hidden=True)  # pflogsumm's older forms of ... 0
@click.option("--no-deferral-detail", is_flag=True, hidden=True)
@click.option("--no-reject-detail", is_flag=True, hidden=True)
@click.option("--no-smtpd-warnings", is_flag=True, hidden=True)
@click.option("--problems-first", is_flag=True, help="Problem sections right after the grand totals.")
@click.option("--rej-add-from", is_flag=True, help="Show the sender beside rejected recipients.")
@click.option("--verp-mung", is_flag=True, help="Fold VERP addresses (--verp-mung=2: harder).")
@click.option("--verp-mung-level", type=click.IntRange(0, 2), hidden=True)  # what --verp-mung=N becomes
@click.option(
    "--zero-fill",
    is_flag=True,
    help="Show every calendar day (and, in Markdown, every smtpd hour), also without traffic.",
)
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
@click.option(
    "--mail-to",
    multiple=True,
    metavar="ADDR",
    help="Mail the report (text, and HTML as the alternative) instead of printing it; repeatable.",
)
@click.option("--mail-from", metavar="ADDR", help="Sender of the mail.  [postlens@<this host's FQDN>]")
@click.option("--smtp", metavar="HOST[:PORT]", help="The SMTP server to send through.  [localhost:25]")
@click.option("--subject", metavar="TEXT", help="Subject of the mail; {period} and {host} are filled in.")
def report(
    paths: tuple[str, ...], fmt: str, output: str | None, sample: bool, progress: bool | None, **opts: Any
) -> None:
    """A summary of the mail log: pflogsumm's report, counted right, and more.

    PATHS are files, globs, directories (their mail.log*/maillog* files) or - for
    standard input, in any order: rotated sets are read oldest first, compressed
    ones (gzip, bzip2, xz, zstd) as they are.
    """
    targets = _targets(paths, sample, opts["db"])
    mail = _report_mail(opts)
    detail = opts.pop("detail")
    top_hosts, top_users = opts.pop("top_hosts"), opts.pop("top_users")
    mailq, config_dir = opts.pop("mailq"), opts.pop("config_dir")
    if mailq and (fmt != "text" or mail is not None):
        _fail("--mailq is for the printed text report", EXIT_USAGE)
    level = opts.pop("verp_mung_level")
    opts["verp_mung"] = level if level is not None else int(opts["verp_mung"])
    if config_dir and not mailq:
        _fail("--config-dir is for --mailq", EXIT_USAGE)
    opts.pop("iso_date_time")
    render_opts = RenderOptions(
        top_hosts=top_hosts if top_hosts >= 0 else detail,
        top_users=top_users if top_users >= 0 else detail,
        detail=detail,
        section_detail=_section_detail(opts),
        quiet=opts.pop("quiet"),
        problems_first=opts.pop("problems_first"),
        smtpd_stats=opts.pop("smtpd_stats"),
        zero_fill=opts.pop("zero_fill"),
        no_no_size=opts.pop("no_no_size"),
        by_host=opts.pop("by_host"),
    )
    show = sys.stderr.isatty() if progress is None else progress
    result, problems = _run(lambda: postlens.report(targets, progress=sys.stderr if show else None, **opts))
    if mail is None or output is not None:
        text = render(result, fmt, render_opts)
        write_output(text + _mail_queue(config_dir) if mailq else text, output)
    if mail is not None:
        _run(lambda: mail.send(result, render_opts, date=opts["date"], tz=opts["tz"]))
    _problems(problems)


def _section_detail(opts: dict[str, Any]) -> dict[str, int]:
    """pflogsumm's per-section limits, its deprecated --no-...-detail forms as 0."""
    limits = {}
    for group in ("deferral", "bounce", "reject", "smtp", "smtpd_warning"):
        n = opts.pop(f"{group}_detail")
        if n is not None:
            limits[group] = max(n, 0)
    for flag, group in (("no_bounce_detail", "bounce"), ("no_deferral_detail", "deferral"),
                        ("no_reject_detail", "reject"), ("no_smtpd_warnings", "smtpd_warning")):  # fmt: skip
        if opts.pop(flag):
            limits[group] = 0
    return limits


def _mail_queue(config_dir: str | None) -> str:
    """pflogsumm's --mailq: the live queue at the end of the report, as postlens queue shows
    it; a queue that cannot be read is said there, and the report is still printed."""
    from postlens.render.queue import render_queue

    try:
        text = render_queue(postlens.queue(config_dir=config_dir)[0], "text")
    except PostlensError as e:
        text = f" {e}\n"
    return "\nCurrent Mail Queue\n------------------\n" + text


def _report_mail(opts: dict[str, Any]) -> ReportMail | None:
    """--mail-to and the options that go with it, checked before any log is read."""
    given = [opts.pop(key) for key in ("mail_to", "mail_from", "smtp", "subject")]
    if not any(given):
        return None
    from postlens.mail import ReportMail

    return _run(lambda: ReportMail.of(*given))


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
    _CONTENT_FILTER_OPTION,
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
    Elastic Common Schema JSON Lines, SQLite or Parquet (with -o). Selected like trace.
    """
    count, problems = _search(postlens.export, paths, sample, opts)
    click.echo(f"postlens: {count} rows", err=True)
    _problems(problems)


@main.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--db",
    metavar="PATH",
    help=DB_HELP,
)
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
@click.option(
    "--db",
    metavar="PATH",
    help=DB_HELP,
)
def prune(older_than: str, db: str | None) -> None:
    """Remove old lines from the history database."""
    now = time.time()
    age_days = _run(lambda: (now - moment(older_than, None, "--older-than", now)) / 86400)
    removed = _run(lambda: postlens.prune(age_days, db=db))
    click.echo(f"postlens: {removed} lines removed", err=True)


_READING_OPTIONS = (
    click.option(
        "-d", "--date", "date", metavar="DAY[..DAY]", help="Only this period: today, yesterday, 2026-11-27."
    ),
    click.option("--since", metavar="TIME", help="Only from this time: 30d, 2h or 2026-11-01T00:00."),
    click.option("--until", metavar="TIME", help="Only before this time."),
    click.option(
        "--year", type=int, help="Year of the first line for stamps without one (default: file time)."
    ),
    click.option("--tz", metavar="ZONE", help="Zone of stamps without one (default: local)."),
    click.option("--syslog-name", metavar="REGEX", help="A custom syslog_name, as a regular expression."),
    _CONTENT_FILTER_OPTION,
    click.option(
        "-j",
        "--jobs",
        type=click.IntRange(1),
        default=os.cpu_count() or 1,
        show_default="all cores",
        help="Processes to read with; any number gives the same answer.",
    ),
    click.option(
        "--engine",
        type=click.Choice(postlens.ENGINES),
        default="local",
        show_default=True,
        help="Where chunks are read: worker processes here, or a Dask cluster.",
    ),
    click.option("--scheduler", metavar="ADDRESS", help="The Dask scheduler (default: a local cluster)."),
    _DB_OPTION,
    click.option("--sample", is_flag=True, help="Read the bundled sample log."),
    click.option("--format", "fmt", type=click.Choice(DIAGNOSE_FORMATS), default="text", show_default=True),
    click.option(
        "-o", "--output", metavar="FILE", help="Write here (whole or not at all) instead of stdout."
    ),
    click.option("--top", type=click.IntRange(0), default=10, show_default=True, help="Rows per table."),
    click.option("--config", "config_path", metavar="FILE", help="The settings file (docs/config.md)."),
)


def _reading_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options problems, security and anomalies share: which logs and period, how to read."""
    for option in reversed(_READING_OPTIONS):
        command = option(command)
    return click.argument("paths", nargs=-1)(command)


def _diagnose(
    kind: str, run: Callable[..., Any], paths: tuple[str, ...], opts: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """Run one of the diagnosing analyses over the logs and write its rendering."""
    fmt, output, top, sample = opts.pop("fmt"), opts.pop("output"), opts.pop("top"), opts.pop("sample")
    targets = _targets(paths, sample, opts["db"])
    result, problems = _run(lambda: run(targets, **opts, **extra))
    write_output(render_diagnosis(kind, result, fmt, top), output)
    _problems(problems)
    return result


def _length(text: str, option: str) -> int:
    return _run(lambda: duration(text, option))


def _config(path: str | None) -> dict[str, dict[str, Any]]:
    """The settings file given with --config, else the usual one. A given file is the
    command's, so that what reads settings by itself (the history database's [history] db,
    key_file and content_filters) reads the same file."""
    config.chosen = path
    return _run(lambda: config.load(path))


def _settings(path: str | None, name: str) -> dict[str, Any]:
    return config.section(_config(path), name)


@main.command(context_settings=CONTEXT)
@_reading_options
@click.option("--rules", metavar="FILE", help="Your own reason rules, tried before the shipped ones.")
def problems(paths: tuple[str, ...], config_path: str | None, rules: str | None, **opts: Any) -> None:
    """Why mail fails: every deferral, bounce, expiry and reject, put into a reason and
    ranked by the messages it hit, with what to do about it (docs/problems.md)."""
    rules = rules or _settings(config_path, "problems").get("rules")
    _diagnose("problems", postlens.problems, paths, opts, rules=rules)


_SECURITY_NUMBERS = (
    ("brute_force", "failed logins from one IP within --window that make a brute force"),
    ("spray_usernames", "usernames tried by one IP that make a password spray"),
    ("spray_ips", "addresses one username failed from that make a distributed attack"),
    ("guess_failures", "failures before a successful login from the same IP"),
    ("burst_min", "messages in an hour a sender must reach to be a burst"),
    ("many_ips", "addresses a sender uses within an hour that are suspicious"),
    ("flood_min", "messages in an hour to one recipient that make a flood"),
    ("reject_limit", "rejects of one client within --window that make it a finding (and blocked)"),
)


def _security_options(command: Callable[..., None]) -> Callable[..., None]:
    for name, text in reversed(_SECURITY_NUMBERS):
        default = getattr(postlens.SecurityOptions(), name)
        command = click.option(
            "--" + name.replace("_", "-"), type=click.IntRange(1), metavar="N", help=f"{text} [{default}]"
        )(command)
    return command


@main.command(context_settings=CONTEXT)
@_reading_options
@click.option("--window", metavar="TIME", help="Window for brute force, like 10m.  [10m]")
@_security_options
@click.option(
    "--burst-factor", type=click.FloatRange(1), metavar="X", help="Times a sender's usual hour.  [5]"
)
@click.option(
    "--blocklist",
    type=click.Choice(BLOCKLIST_FORMATS),
    help="Write the attacking IPs in this format instead of the report.",
)
@click.option(
    "--allow", "allow", multiple=True, metavar="NET", help="Never block these networks (repeatable)."
)
@click.option("--check-rbl", is_flag=True, help="Ask DNS blocklists about our own IPs (given as arguments).")
@click.option("--zone", "zones", multiple=True, metavar="ZONE", help="A DNS blocklist to ask (repeatable).")
@click.option(
    "--nameserver", metavar="IP[:PORT]", help="The resolver for --check-rbl (default: the system's)."
)
def security(paths: tuple[str, ...], config_path: str | None, **opts: Any) -> None:
    """Who is attacking: failed logins by IP, subnet, username and method; brute force,
    password sprays, guessed passwords; compromised senders and mail floods (docs/security.md).

    With --blocklist, the attacking IPs as a plain list, a Postfix access or cidr table, or
    an nftables set. With --check-rbl, PATHS are our own IP addresses to look up instead.
    """
    conf = _settings(config_path, "security")
    if opts.pop("check_rbl"):
        _check_rbl(paths, opts, conf, _settings(config_path, "rbl"))
        return
    options = postlens.SecurityOptions()
    for name, _ in (*_SECURITY_NUMBERS, ("burst_factor", "")):
        value = opts.pop(name)
        value = conf.get(name) if value is None else value
        if value is not None:
            setattr(options, name, value)
    window = opts.pop("window") or conf.get("window")
    if window:
        options.window = _length(window, "--window")
    fmt = opts.pop("blocklist")
    allow = _many(opts.pop("allow")) or tuple(conf.get("allow", DEFAULT_ALLOW))
    for key in ("zones", "nameserver"):
        opts.pop(key)
    if fmt is None:
        _diagnose("security", postlens.security, paths, opts, options=options)
        return
    output = opts.pop("output")
    for key in ("fmt", "top"):
        opts.pop(key)
    targets = _targets(paths, opts.pop("sample"), opts["db"])
    result, problems = _run(lambda: postlens.security(targets, options=options, **opts))
    entries = [
        (f["ip"], f"{f['kind'].replace('_', ' ')}: {f['explanation']}")
        for f in result["findings"]
        if "ip" in f
    ]
    text = _run(lambda: postlens.render_blocklist(entries, fmt, allow=allow))
    write_output(text, output)
    _problems(problems)


def _check_rbl(
    paths: tuple[str, ...], opts: dict[str, Any], conf: dict[str, Any], rbl: dict[str, Any]
) -> None:
    ips = list(paths) or list(conf.get("own_ips", []))
    if not ips:
        _fail(
            "--check-rbl: give the IP addresses to check, or own_ips in [security] of the config", EXIT_USAGE
        )
    zones = _many(opts["zones"]) or tuple(rbl.get("zones", ())) or None
    nameserver = opts["nameserver"] or rbl.get("nameserver")
    listings = _run(
        lambda: postlens.check_rbl(ips, zones=zones, nameserver=nameserver, timeout=rbl.get("timeout", 3.0))
    )
    write_output(render_listings(listings, opts["fmt"]), opts["output"])
    if any(x.listed for x in listings):
        sys.exit(EXIT_LISTED)


@main.command(context_settings=CONTEXT)
@_reading_options
@click.option("--step", metavar="TIME", help="Length of one point of the series, dividing a day.  [1h]")
@click.option(
    "--baseline-days", type=click.IntRange(1), metavar="N", help="Earlier days to compare with.  [7]"
)
@click.option(
    "--min-count", type=click.IntRange(1), metavar="N", help="Smallest count worth reporting.  [10]"
)
@click.option(
    "--score",
    type=click.FloatRange(0, min_open=True),
    metavar="X",
    help="Robust score that is abnormal.  [5]",
)
@click.option("--silence", metavar="TIME", help="Time without a delivery that is a silence.  [1h]")
def anomalies(paths: tuple[str, ...], config_path: str | None, **opts: Any) -> None:
    """What is abnormal: spikes, drops and silences of the traffic, per hour and per
    destination domain, against the same hours of earlier days; and the weekly pattern
    (docs/anomalies.md)."""
    conf = _settings(config_path, "anomalies")
    options = postlens.AnomaliesOptions()
    for name in ("baseline_days", "min_count", "score"):
        value = opts.pop(name)
        value = conf.get(name) if value is None else value
        if value is not None:
            setattr(options, name, value)
    for name in ("step", "silence"):
        text: str | None = opts.pop(name) or conf.get(name)
        if text:
            setattr(options, name, _length(text, "--" + name))
    _diagnose("anomalies", postlens.anomalies, paths, opts, options=options)


@main.command(context_settings=CONTEXT)
@click.argument("file", required=False)
@click.option("-c", "--config-dir", metavar="DIR", help="Another instance's live queue (postqueue -c DIR).")
@click.option("-s", "--senders", is_flag=True, help="Sender domains (counting messages) instead.")
@click.option(
    "-t",
    "--bucket-minutes",
    type=click.FloatRange(0, min_open=True),
    default=5,
    show_default=True,
    metavar="MINUTES",
    help="Age limit of the first bucket.",
)
@click.option(
    "-b", "--buckets", type=click.IntRange(1), default=10, show_default=True, metavar="N", help="Age buckets."
)
@click.option("-l", "--linear", is_flag=True, help="Buckets t, 2t, 3t ... instead of each twice the last.")
@click.option("-p", "--parents", is_flag=True, help="Add rows for parent domains (.example.com).")
@click.option(
    "-m",
    "--min-subdomains",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    metavar="N",
    help="With -p, the subdomains a parent needs for a row of its own.",
)
@click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="NAME",
    help="A queue of the table: maildrop, incoming, active, deferred or hold; repeatable or "
    "comma-separated.  [incoming,active]",
)
@click.option("--top", type=click.IntRange(0), metavar="N", help="Domain rows per table.  [all]")
@click.option("-w", "--width", type=int, metavar="COLUMNS", help="Width of the text.  [terminal's, else 80]")
@click.option("--now", metavar="TIME", help="Age the mail at this time: epoch seconds, ISO 8601, or 2h ago.")
@click.option("--rules", metavar="FILE", help="Your own reason rules, tried before the shipped ones.")
@click.option("--format", "fmt", type=click.Choice(("text", "json")), default="text", show_default=True)
@click.option("-o", "--output", metavar="FILE", help="Write here (whole or not at all) instead of stdout.")
def queue(
    file: str | None,
    queues: tuple[str, ...],
    top: int | None,
    width: int | None,
    now: str | None,
    fmt: str,
    output: str | None,
    **opts: Any,
) -> None:
    """How old the queued mail is, per domain, like qshape; and per queue, the messages, bytes,
    the oldest message and why mail waits (docs/queue.md).

    FILE is saved `postqueue -j` output, or - for standard input; without it the live queue
    is read with postqueue -j (Postfix 3.1 or later).
    """
    from postlens.queue import DEFAULT_QUEUES, reference_time
    from postlens.render.queue import render_queue, text_width

    to_terminal = output in (None, "-") and sys.stdout.isatty()
    columns = _run(lambda: text_width(to_terminal, width))
    at = _run(lambda: reference_time(now)) if now else None
    chosen = _many(queues) or DEFAULT_QUEUES
    result, problems = _run(lambda: postlens.queue(file, queues=chosen, now=at, **opts))
    write_output(render_queue(result, fmt, width=columns, top=-1 if top is None else top), output)
    for problem in problems:
        click.echo(f"postlens: {problem}", err=True)


@main.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1)
@click.option("--journal", is_flag=True, help="Follow the journal (journalctl -f): postfix, dovecot units.")
@click.option(
    "--listen", multiple=True, metavar="URL", help="Receive syslog: udp://0.0.0.0:5514, tcp://..., tls://..."
)
@click.option("--state", metavar="FILE", help="Where file positions are kept.  [~/.local/state/postlens]")
@click.option("--from-start", is_flag=True, help="Read files from their start when no position is saved.")
@click.option("--metrics", metavar="[HOST]:PORT", help="Serve Prometheus metrics on /metrics here.")
@click.option("--db", is_flag=False, flag_value="", default=None, metavar="[PATH]",
              help="Store what is read in the history database (PATH or the default one).")  # fmt: skip
@click.option("--queue/--no-queue", "read_queue", default=True, show_default=True,
              help="Read the mail queue (postqueue -j) every 30 s for metrics and alerts.")  # fmt: skip
@click.option("-c", "--config-dir", metavar="DIR", help="The Postfix configuration directory of the queue.")
@click.option("--view/--no-view", default=None, help="The live view.  [default: when stdout is a terminal]")
@click.option("--year", type=int, help="Year of stamps without one (default: now).")
@click.option("--tz", metavar="ZONE", help="Zone of stamps without one (default: local).")
@click.option("--syslog-name", metavar="REGEX", help="A custom syslog_name, as a regular expression.")
@_CONTENT_FILTER_OPTION
@click.option("--config", "config_path", metavar="FILE", help="The settings file (alert rules).")
def watch(
    paths: tuple[str, ...],
    config_path: str | None,
    read_queue: bool,
    config_dir: str | None,
    view: bool | None,
    db: str | None,
    **opts: Any,
) -> None:
    """Follow the log as it is written: alerts, Prometheus metrics, the history database and a
    live view (docs/watch.md). PATHS are files followed like tail -F, across rotations, and - for
    standard input (docker logs -f postfix | postlens watch -)."""
    if not paths and not opts["journal"] and not opts["listen"]:
        _fail("give log files to follow, --journal or --listen", EXIT_USAGE)
    show = sys.stdout.isatty() if view is None else view
    settings = _config(config_path)
    from postlens.watch import default_state

    opts["state"] = opts["state"] or default_state()
    opts["filters"] = _run(lambda: postlens.ContentFilters(opts.pop("content_filters")))
    options = postlens.WatchOptions(
        paths=list(paths), settings=settings, view=sys.stdout if show else None,
        db=None if db is None else db or _run(_default_db), **opts,
        queue_reader=(lambda: postlens.queue_entries(config_dir)) if read_queue else None,
    )  # fmt: skip
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    _run(lambda: postlens.watch(options, stop))


@main.command(context_settings=CONTEXT)
@click.option(
    "--db",
    metavar="PATH",
    help=DB_HELP,
)
@click.option("--listen", metavar="HOST:PORT", help="Where to listen.  [127.0.0.1:8025, or [serve] listen]")
@click.option("--watch", "watch_paths", multiple=True, metavar="PATH",
              help="Follow this log into the database too (repeat for more).")  # fmt: skip
@click.option(
    "--queue/--no-queue", "read_queue", default=False, help="Show the live mail queue (postqueue -j)."
)
@click.option("-c", "--config-dir", metavar="DIR", help="The Postfix configuration directory of the queue.")
@click.option("--queue-file", metavar="FILE", help="Show this saved `postqueue -j` listing as the queue.")
@click.option("--tz", metavar="ZONE", help="Zone of the times shown, and of log stamps without one.")
@click.option("--year", type=int, help="Year of stamps without one in watched logs (default: now).")
@click.option("--rules", metavar="FILE", help="Your reason rules, tried before the shipped ones.")
@click.option("--config", "config_path", metavar="FILE", help="The settings file ([serve] token, password).")
def serve(
    db: str | None,
    listen: str | None,
    watch_paths: tuple[str, ...],
    read_queue: bool,
    config_dir: str | None,
    queue_file: str | None,
    config_path: str | None,
    **opts: Any,
) -> None:
    """The web dashboard over the history database: overview, problems, security, messages,
    queue and trends, live while lines arrive (docs/serve.md). Read-only."""
    try:
        from postlens.access import Access
        from postlens.web.serve import DEFAULT_LISTEN, ServeOptions
    except ImportError as e:
        _fail(f"the dashboard needs: pip install 'postlens[web]' ({e.name} is missing)", EXIT_USAGE)

    settings = _config(config_path)
    section = config.section(settings, "serve")
    queue = None
    if queue_file or read_queue:

        def queue() -> Any:
            return postlens.queue(queue_file, config_dir=config_dir)[0]

    options = ServeOptions(
        db=db or _run(_default_db), listen=listen or section.get("listen", DEFAULT_LISTEN),
        access=Access.of(section),
        queue=queue, watch=list(watch_paths), **opts,
    )  # fmt: skip
    _run(lambda: postlens.serve(options))


def _plugin_exit(result: CheckResult) -> NoReturn:
    click.echo(result.line())
    sys.exit(int(result.status))


class _PluginCommand(click.Command):
    """A monitoring plugin's command: a mistake on its command line is UNKNOWN (exit 3), one
    line on standard output, as the plugin guidelines ask; click's usage text and its exit
    code 2 would reach Nagios as a CRITICAL state of the service."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        given = list(args)  # click's parser consumes the list it is given
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as e:
            name = next((a for a in given if a in postlens.CHECKS), "")
            _plugin_exit(check_unknown(name, e.format_message()))


@main.command(context_settings=CONTEXT, cls=_PluginCommand)
@click.argument("name", metavar="CHECK", type=click.Choice(postlens.CHECKS))
@click.argument("paths", nargs=-1)
@click.option("-w", "--warning", metavar="RANGE", help="WARNING outside RANGE: 10, 10:, ~:10, 10:20, @10:20.")
@click.option("-c", "--critical", metavar="RANGE", help="CRITICAL outside RANGE.")
@click.option("--window", metavar="TIME", help="The window checks count the last TIME: 15m, 1h.  [15m]")
@click.option(
    "--now",
    metavar="clock|log|TIME",
    help="Where the window ends: now, the log's newest line, or a time.  [clock]",
)
@click.option(
    "--queue-file", metavar="FILE", help="queue: a saved `postqueue -j` listing, not the live queue."
)
@click.option("--config-dir", metavar="DIR", help="queue: another instance's live queue (postqueue -c DIR).")
@click.option("--year", type=int, help="Year of the first line for stamps without one (default: file time).")
@click.option("--tz", metavar="ZONE", help="Zone of stamps without one, and of --now (default: local).")
@click.option("--syslog-name", metavar="REGEX", help="A custom syslog_name, as a regular expression.")
@_CONTENT_FILTER_OPTION
@click.option(
    "--zone", "zones", multiple=True, metavar="ZONE", help="rbl: a DNS blocklist to ask (repeatable)."
)
@click.option("--nameserver", metavar="IP[:PORT]", help="rbl: the resolver to ask (default: the system's).")
def check(name: str, paths: tuple[str, ...], **opts: Any) -> None:
    """A Nagios/Icinga check: one line of status with performance data, and the plugin exit
    code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (docs/checks.md).

    CHECK is queue, deferred, bounce-rate, auth-failures, rejects, errors, silence or rbl. PATHS
    are the logs; by default /var/log/mail.log (or maillog) alone, not its older generations.
    For rbl, PATHS are our own IP addresses, looked up on DNS blocklists.
    """
    logless = name in ("queue", "rbl")
    targets = list(paths) or ([] if logless else [p for p in DEFAULT_LOGS if os.path.exists(p)][:1])
    if not logless and not targets:
        _plugin_exit(check_unknown(name, "no log given, and none at /var/log/mail.log or /var/log/maillog"))
    try:
        result = postlens.check(name, targets, **opts)
    except Exception as e:  # a traceback's exit code 1 would read as WARNING: any failure is UNKNOWN
        result = check_unknown(name, f"unexpected {type(e).__name__}: {e}")
    _plugin_exit(result)


@main.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1)
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    help="Write here (whole or not at all; .gz, .bz2, .xz, .zst compress) instead of stdout.",
)
@click.option("--key", metavar="FILE", help="The secret key file.  [key_file in [anonymize] of the config]")
@click.option("--new-key", is_flag=True, help="Make the key file (32 random bytes, mode 0600) if missing.")
@click.option(
    "--own-domain",
    "own_domains",
    multiple=True,
    metavar="DOMAIN",
    help="Our own domain: kept in addresses and host names (repeatable).",
)
@click.option("--keep-domains", is_flag=True, help="Keep the domain of every e-mail address.")
@click.option("--keep-prefix", is_flag=True, help="IP pseudonyms keep shared prefixes: subnets stay subnets.")
@click.option(
    "--keep-net",
    "keep_nets",
    multiple=True,
    metavar="NET",
    help="Keep the addresses of this network as they are, like loopback (repeatable).",
)
@click.option("--year", type=int, help="Year of the first line for stamps without one (default: file time).")
@click.option("--tz", metavar="ZONE", help="Zone of stamps without one (default: local).")
@click.option("--syslog-name", metavar="REGEX", help="A custom syslog_name, as a regular expression.")
@click.option("--config", "config_path", metavar="FILE", help="The settings file (docs/config.md).")
def anonymize(paths: tuple[str, ...], config_path: str | None, key: str | None, **opts: Any) -> None:
    """Rewrite mail logs with keyed pseudonyms for every address, host name, login,
    Message-ID and header text, keeping them valid Postfix logs that report the same
    (docs/anonymize.md).

    The same key gives a value the same pseudonym in every file and run; without the key
    nobody can reverse one or confirm a guess. PATHS are read like report's.
    """
    conf = _settings(config_path, "anonymize")
    key = key or conf.get("key_file")
    if not key:
        _fail("give the key: --key FILE (--new-key makes one), or key_file in [anonymize]", EXIT_USAGE)
    opts["own_domains"] = _many(opts["own_domains"]) or tuple(str(d) for d in conf.get("own_domains", ()))
    opts["keep_nets"] = _many(opts["keep_nets"]) or tuple(str(n) for n in conf.get("keep_nets", ()))
    targets = _targets(paths, False)
    result, problems = _run(lambda: postlens.anonymize(targets, key=key, **opts))
    from postlens.anonymize import key_is_private  # imported by then; not at the start of every command

    if not key_is_private(key):
        click.echo(f"postlens: warning: others than its owner can read the key {key}; chmod 600 it", err=True)
    click.echo(f"postlens: {result.lines} lines anonymised from {result.inputs} inputs", err=True)
    _problems(problems)
