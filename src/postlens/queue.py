"""queue: the mail queue as ``postqueue -j`` lists it, shaped like qshape, and what qshape leaves out.

The input is ``postqueue -j`` output: live (the command is run, with ``-c DIR`` for another
instance), a saved file, or standard input. :class:`Shape` reproduces qshape's table (Postfix's
``/usr/sbin/qshape``, read for its exact rules): the same domain names, age buckets, parent
roll-up and minimum-subdomain rule, and the same messages left out. :class:`Summary` adds the
messages, recipients and bytes of each queue and the oldest message; :class:`Reasons` groups
the delay reasons of queued recipients into the reason classes of ``postlens problems``.
docs/queue.md says where the numbers differ from qshape's, and why.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from postlens.analyses.reasons import Rules, split_reply
from postlens.dates import iso_utc, moment
from postlens.errors import InputError, UsageError
from postlens.lines import digits
from postlens.sources import Source, iter_lines, open_source

QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")
DEFAULT_QUEUES = ("incoming", "active")  # qshape's
# showq writes the null address as empty_address_recipient, whose default this is; qshape
# names the null address's "domain" the same way
NULL_SENDER = "MAILER-DAEMON"
# where Postfix installs postqueue, for users whose PATH lacks the sbin directories
SBIN = ("/usr/sbin", "/usr/local/sbin", "/usr/lib/postfix/sbin")

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# qshape's own substitutions, applied the same way (Perl and Python agree on these patterns)
_LOCAL_PART_RE = re.compile(r".*@")
_DOUBLE_DOT_RE = re.compile(r"\.\.")
_OUTER_DOTS_RE = re.compile(r"\.?(.+?)\.?$")
_PARENT_RE = re.compile(r"^(?:\.)?[^.]+\.(.*\.)")
_SAID_RE = re.compile(r"^postqueue: (?:fatal: |warning: )?")


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    delay_reason: str  # "" when showq has none


@dataclass(frozen=True, slots=True)
class Queued:
    """One message as ``postqueue -j`` lists it."""

    queue_name: str
    queue_id: str
    arrival_time: int
    message_size: int
    forced_expire: bool
    sender: str
    recipients: tuple[Recipient, ...]


@dataclass(frozen=True, slots=True)
class ShapeOptions:
    """qshape's options: -s, -t, -b, -l, -p, -m and the queue names."""

    senders: bool = False
    bucket_minutes: float = 5
    buckets: int = 10
    linear: bool = False
    parents: bool = False
    min_subdomains: int = 5
    queues: tuple[str, ...] = DEFAULT_QUEUES

    def check(self) -> None:
        if not self.bucket_minutes > 0 or math.isinf(self.bucket_minutes):
            raise UsageError(f"-t: {self.bucket_minutes} is not a number of minutes above 0")
        if self.buckets < 1:
            raise UsageError(f"-b: {self.buckets} buckets; give 1 or more")
        if self.min_subdomains < 1:
            raise UsageError(f"-m: {self.min_subdomains} subdomains; give 1 or more")
        if not self.queues:
            raise UsageError("--queue: name at least one queue")
        for name in self.queues:
            if name not in QUEUES:
                raise UsageError(f"--queue: {name!r} is not one of {', '.join(QUEUES)}")


# ---------------------------------------------------------------------------------------------
# reading


def reference_time(text: str) -> int:
    """``--now``: epoch seconds, ISO 8601, or a time ago like ``2h``."""
    text = text.strip()
    if digits(text):
        return int(text)
    return int(moment(text, None, "--now"))


def read_live(config_dir: str | None = None) -> list[str]:
    """The lines of ``postqueue -j`` (``-c config_dir``); a failure is one InputError naming the fix."""
    return run_postqueue(config_dir)[0]


def run_postqueue(config_dir: str | None = None) -> tuple[list[str], list[InputError]]:
    """The lines of ``postqueue -j`` (``-c config_dir``), and the warnings it gave on the way
    (such as "Mail system is down -- accessing queue directly"); a failure is one InputError
    naming the fix."""
    if config_dir is not None and not os.path.isdir(config_dir):
        raise UsageError(f"-c {config_dir}: no such directory; give the instance's config directory")
    program = shutil.which("postqueue", path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN]))
    if program is None:
        raise InputError(
            "postqueue",
            "not found: install Postfix (3.1 or later for -j), or pass a saved `postqueue -j` file",
        )
    # absolute: with the mail system down, root's postqueue runs showq itself, from the queue
    # directory, where a relative config directory no longer leads anywhere
    instance = ["-c", os.path.abspath(config_dir)] if config_dir is not None else []
    try:
        done = subprocess.run(
            [program, "-j", *instance], capture_output=True, stdin=subprocess.DEVNULL, check=False
        )
    except OSError as e:
        raise InputError("postqueue", f"cannot run {program}: {e.strerror or e}") from e
    stderr = done.stderr.decode("utf-8", "replace")
    if done.returncode != 0:
        raise InputError("postqueue", explain_failure(stderr, config_dir))
    warnings = [
        InputError("postqueue", _SAID_RE.sub("", line)) for line in stderr.splitlines() if line.strip()
    ]
    return done.stdout.decode("utf-8", "replace").splitlines(), warnings


def explain_failure(stderr: str, config_dir: str | None) -> str:
    """What went wrong, from postqueue's own words on standard error, and what to do about it."""
    instance = f" -c {config_dir}" if config_dir else ""
    said = [_SAID_RE.sub("", line) for line in stderr.splitlines() if line.strip()]
    if re.search(r"(?i)mail system is down", stderr):
        return f"the mail system is down (no showq service): start it (postfix{instance} start) and try again"
    if re.search(r"showq service: (Permission denied|Operation not permitted)", stderr):
        return (
            "permission denied on the showq socket: run as root or a member of the postdrop group, "
            "or save `postqueue -j` output and pass the file"
        )
    if m := re.search(r"User (\S+) is not allowed to view the mail queue", stderr):
        return f"{m.group(1)} may not view the mail queue (authorized_mailq_users): run as root"
    if "unauthorized configuration directory name" in stderr:
        return (
            f"--config-dir {config_dir}: only root may name it, unless alternate_config_directories in the "
            "default main.cf lists it"
        )
    if m := re.search(r"open (\S*main\.cf): No such file", stderr):
        if config_dir:
            return f"--config-dir {config_dir}: no main.cf there; give the config directory of the instance"
        return (
            f"no {m.group(1)}: Postfix is not set up here; give --config-dir DIR for an instance, "
            "or a saved file"
        )
    if m := re.search(r"chdir (\S+): (.*)", stderr):
        return f"queue directory {m.group(1)}: {m.group(2)}; check queue_directory in main.cf"
    if re.search(r"usage: postqueue|invalid option -- '?j", stderr):
        return "this postqueue has no -j (it needs Postfix 3.1 or later): upgrade, or use qshape"
    return f"-j failed: {said[-1] if said else 'without a word'}"


def read_lines(path: str) -> Iterator[str]:
    """The lines of a saved ``postqueue -j`` file (compressed or not), or of standard input for ``-``."""
    if path != "-" and os.path.isdir(path):
        raise InputError(path, "is a directory; give a file saved from `postqueue -j`")
    src = Source(path)
    with open_source(src) as stream:
        yield from iter_lines(src, stream)


def parse(lines: Iterable[str], name: str) -> tuple[list[Queued], int, list[InputError]]:
    """The records of ``postqueue -j`` lines, how many lines were malformed, and one problem
    that says so; a source with nothing but malformed lines is not ``postqueue -j`` output."""
    records: list[Queued] = []
    bad = 0
    first = ""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        record = _record(line)
        if isinstance(record, Queued):
            records.append(record)
            continue
        bad += 1
        first = first or f"line {number}: {record}"
    if bad and not records:
        raise InputError(
            name, f"no `postqueue -j` records ({first}); save the output of `postqueue -j`, not of mailq"
        )
    if not bad:
        return records, 0, []
    return records, bad, [InputError(name, f"{bad} malformed line{'s' * (bad > 1)} skipped (first: {first})")]


def _record(line: str) -> Queued | str:
    """One message, or what is wrong with the line."""
    try:
        obj = json.loads(line)
    except ValueError:
        return "not JSON"
    if not isinstance(obj, dict):
        return "not a JSON object"
    try:
        return Queued(
            queue_name=_field(obj, "queue_name", str),
            queue_id=_field(obj, "queue_id", str),
            arrival_time=_field(obj, "arrival_time", int),
            message_size=_field(obj, "message_size", int),
            forced_expire=obj.get("forced_expire", False) is True,  # absent before Postfix 3.5
            sender=_field(obj, "sender", str),
            recipients=tuple(_recipient(r) for r in _field(obj, "recipients", list)),
        )
    except ValueError as e:
        return str(e)


_KIND_NAMES = {str: "a string", int: "a number", list: "a list"}


def _field(obj: dict[str, Any], key: str, kind: type) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{key} missing or not {_KIND_NAMES[kind]}")
    return value


def _recipient(obj: Any) -> Recipient:
    if not isinstance(obj, dict):
        raise ValueError("a recipient that is not an object")
    reason = obj.get("delay_reason", "")
    return Recipient(_field(obj, "address", str), reason if isinstance(reason, str) else "")


# ---------------------------------------------------------------------------------------------
# qshape's table


def domain_key(address: str) -> str:
    """qshape's row name for an address: ASCII lower case (Perl's lc on bytes), the part after
    the last @, doubled dots halved, one outer dot stripped; the null address is MAILER-DAEMON,
    which is also how showq writes it."""
    if address in ("", NULL_SENDER):
        return NULL_SENDER
    name = address.translate(_ASCII_LOWER)
    name = _LOCAL_PART_RE.sub("", name, count=1)
    name = _DOUBLE_DOT_RE.sub(".", name)
    return _OUTER_DOTS_RE.sub(r"\1", name, count=1)


def parent_key(key: str) -> str | None:
    """qshape's parent row (".example.com" for "mx.example.com"); None when it would be a TLD."""
    parent, found = _PARENT_RE.subn(r".\1", key, count=1)
    return parent if found else None


def bucket(age_seconds: int, options: ShapeOptions) -> int:
    """The age bucket, 1 to ``options.buckets``, by qshape's arithmetic (same floating point)."""
    m = age_seconds / (60 * options.bucket_minutes)
    if m < 1:
        return 1
    b = int(m + 1) if options.linear else 2 + int(math.log(m) / math.log(2))
    return min(b, options.buckets)


def columns(options: ShapeOptions) -> list[dict[str, Any]]:
    """Each bucket's qshape heading (its upper limit in minutes, the last one "N+") and range."""
    limits: list[float] = [0]
    for _ in range(options.buckets - 1):  # qshape's loop: t += t, or t += tick when linear
        t = limits[-1]
        limits.append(t + (t if t and not options.linear else options.bucket_minutes))
    out = [
        {"label": _perl_number(high), "from_minutes": _number(low), "to_minutes": _number(high)}
        for low, high in pairwise(limits)
    ]
    last = limits[-1]
    return [*out, {"label": f"{_perl_number(last)}+", "from_minutes": _number(last), "to_minutes": None}]


def _perl_number(x: float) -> str:
    return format(x, ".15g")  # how Perl prints a number, hence qshape's headings


def _number(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


class Shape:
    """qshape's counts: rows of [total, bucket 1 .. n] per domain, and the TOTAL row.

    Like qshape it leaves out messages that postsuper -e/-f marked for expiry (their mode fails
    qshape's check) and messages without recipients, in both modes."""

    def __init__(self, options: ShapeOptions, now: int) -> None:
        self.options = options
        self.now = now
        self.total = [0] * (options.buckets + 1)
        self.rows: dict[str, list[int]] = {}
        self.subdomains: Counter[str] = Counter()
        self.left_out: Counter[str] = Counter()

    def add(self, msg: Queued) -> None:
        if msg.queue_name not in self.options.queues:
            return
        if msg.forced_expire:
            self.left_out["forced_expire"] += 1
            return
        if not msg.recipients:
            self.left_out["no_recipients"] += 1
            return
        b = bucket(self.now - msg.arrival_time, self.options)
        if self.options.senders:
            self._count(msg.sender, b)
            return
        for r in msg.recipients:
            self._count(r.address, b)

    def _count(self, address: str, b: int) -> None:
        self.total[0] += 1
        self.total[b] += 1
        key: str | None = domain_key(address)
        child_is_new = False
        while key is not None:
            row = self.rows.get(key)
            is_new = row is None
            if row is None:
                row = self.rows[key] = [0] * (self.options.buckets + 1)
            row[0] += 1
            row[b] += 1
            # qshape counts a parent's subdomains as the children that first appear under it
            if child_is_new:
                self.subdomains[key] += 1
            child_is_new = is_new
            key = parent_key(key) if self.options.parents else None

    def result(self) -> dict[str, Any]:
        shown = [
            (key, row)
            for key, row in self.rows.items()
            if not (key.startswith(".") and self.subdomains[key] < self.options.min_subdomains)
        ]
        # qshape: most first, then shorter names first; the names break its remaining ties here
        shown.sort(key=lambda kv: (-kv[1][0], len(kv[0]), kv[0]))
        o = self.options
        return {
            "by": "sender" if o.senders else "recipient",
            "queues": list(o.queues),
            "bucket_minutes": _number(o.bucket_minutes),
            "buckets": o.buckets,
            "linear": o.linear,
            "parents": o.parents,
            "min_subdomains": o.min_subdomains,
            "columns": columns(o),
            "total": {"count": self.total[0], "buckets": self.total[1:]},
            "rows": [
                {"domain": key, "parent": key.startswith("."), "count": row[0], "buckets": row[1:]}
                for key, row in shown
            ],
            "left_out": {"forced_expire": self.left_out["forced_expire"],
                         "no_recipients": self.left_out["no_recipients"]},
        }  # fmt: skip


# ---------------------------------------------------------------------------------------------
# beyond qshape


class Summary:
    """Messages, recipients, bytes and force-expired messages per queue, and the oldest message."""

    def __init__(self, now: int) -> None:
        self.now = now
        self.counts: dict[str, Counter[str]] = {name: Counter() for name in QUEUES}
        self.oldest: dict[str, Queued] = {}

    def add(self, msg: Queued) -> None:
        c = self.counts.setdefault(msg.queue_name, Counter())
        c["messages"] += 1
        c["recipients"] += len(msg.recipients)
        c["bytes"] += msg.message_size
        c["forced_expire"] += msg.forced_expire
        old = self.oldest.get(msg.queue_name)
        if old is None or msg.arrival_time < old.arrival_time:
            self.oldest[msg.queue_name] = msg

    def result(self) -> dict[str, Any]:
        rows = [self._row(name, c, self.oldest.get(name)) for name, c in self.counts.items()]
        everything = sum(self.counts.values(), Counter())
        oldest = min(self.oldest.values(), key=lambda m: m.arrival_time, default=None)
        return {"queues": rows, "all": self._row("all", everything, oldest), "oldest": self._message(oldest)}

    def _row(self, name: str, c: Counter[str], oldest: Queued | None) -> dict[str, Any]:
        keys = ("messages", "recipients", "bytes", "forced_expire")
        return {"queue": name, **{k: c[k] for k in keys}, "oldest": self._message(oldest)}

    def _message(self, msg: Queued | None) -> dict[str, Any] | None:
        if msg is None:
            return None
        return {
            "queue": msg.queue_name,
            "queue_id": msg.queue_id,
            "arrival": iso_utc(msg.arrival_time),
            "arrival_time": msg.arrival_time,
            "age_seconds": self.now - msg.arrival_time,
            "sender": msg.sender,
            "recipients": len(msg.recipients),
        }


class Reasons:
    """The delay reasons of queued recipients by reason class, overall and per recipient domain."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.recipients: Counter[str] = Counter()
        self.messages: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.by_domain: dict[str, Counter[str]] = {}

    def add(self, msg: Queued) -> None:
        seen: set[str] = set()
        for r in msg.recipients:
            if not r.delay_reason:
                continue
            reason = self.rules.classify("deferred", *split_reply(r.delay_reason)).reason.id
            self.recipients[reason] += 1
            self.examples.setdefault(reason, r.delay_reason)
            self.by_domain.setdefault(domain_key(r.address), Counter())[reason] += 1
            if reason not in seen:
                seen.add(reason)
                self.messages[reason] += 1

    def result(self) -> dict[str, Any]:
        titles = {r.id: r.title for r in self.rules.reasons()}
        overall = [
            {"id": rid, "title": titles[rid], "recipients": n, "messages": self.messages[rid],
             "example": self.examples[rid]}
            for rid, n in _ranked(self.recipients)
        ]  # fmt: skip
        domains = sorted(self.by_domain.items(), key=lambda kv: (-kv[1].total(), kv[0]))
        per_domain = [
            {"domain": domain, "recipients": counts.total(),
             "reasons": [{"id": rid, "title": titles[rid], "recipients": n} for rid, n in _ranked(counts)]}
            for domain, counts in domains
        ]  # fmt: skip
        return {"reasons": overall, "reasons_by_domain": per_domain}


def _ranked(counts: Counter[str]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


# ---------------------------------------------------------------------------------------------


def analyse_queue(records: Iterable[Queued], options: ShapeOptions, now: int, rules: Rules) -> dict[str, Any]:
    """The whole result: qshape's table for the selected queues; the summary and the delay
    reasons of every queue."""
    shape, summary, reasons = Shape(options, now), Summary(now), Reasons(rules)
    for msg in records:
        shape.add(msg)
        summary.add(msg)
        reasons.add(msg)
    return {"now": iso_utc(now), "now_epoch": now, "shape": shape.result(), **summary.result(),
            **reasons.result()}  # fmt: skip


def load(source: str | None, config_dir: str | None) -> tuple[str, list[Queued], int, list[InputError]]:
    """(the source's name, its records, malformed lines, problems): the live queue when
    ``source`` is None, else a saved file or - for standard input."""
    if source is None:
        name = "postqueue -j" + (f" -c {config_dir}" if config_dir else "")
        lines, warnings = run_postqueue(config_dir)
        records, malformed, problems = parse(lines, "postqueue")
        return name, records, malformed, warnings + problems
    if config_dir is not None:
        raise UsageError("-c reads the live queue of an instance; give either -c or a FILE, not both")
    name = Source(source).name
    return (name, *parse(read_lines(source), name))
