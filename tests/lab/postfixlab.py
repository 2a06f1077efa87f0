"""A private, real Postfix instance on loopback that writes mail logs with known true counts.

This module is test plumbing for postlens. It does not import postlens. As root on Debian it:

* installs the packages it needs when they are missing (:func:`ensure_packages`);
* builds a private Postfix instance under a temporary directory (:class:`Lab`): its own
  config_directory, queue_directory and data_directory, smtpd on a free loopback port,
  smtp-sink destinations that accept, defer (4xx) and bounce (5xx), a closed port (connection
  refused), a content filter that re-injects into a second smtpd (two queue IDs), local
  delivery to maildirs, SASL through a private dovecot, and restrictions that reject;
* drives a scenario whose sizes are parameters and returns the ground truth it injected
  (:func:`run_scenario`), after checking the log agrees with it;
* runs pflogsumm and parses its "Grand Totals" (:func:`run_pflogsumm`).

The system's own Postfix (/etc/postfix) is never configured or started. Every daemon started
here is stopped by PID or with ``postfix -c DIR stop`` (try/finally and atexit).

Run ``python3 tests/lab/postfixlab.py --help`` for a command line that runs a scenario by hand.
See docs/lab.md.
"""

from __future__ import annotations

import argparse
import atexit
import calendar
import contextlib
import dataclasses
import glob
import json
import math
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

PACKAGES = (
    "postfix",
    "postfix-pcre",
    "pflogsumm",
    "swaks",
    "dovecot-core",
    "rsyslog",
    "libfaketime",
)

LOCAL_DOMAIN = "lab.test"
MYHOSTNAME = "mx.lab.test"  # the first label, "mx", is the host field of every log line
LOCAL_USERS = ("alice", "bob", "carol", "dave")
SASL_PASSWORD = "labsecret"

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
POSTQUEUE = "/usr/sbin/postqueue"
POSTMAP = "/usr/sbin/postmap"
POSTALIAS = "/usr/sbin/postalias"
SENDMAIL = "/usr/sbin/sendmail"
SMTP_SINK = "/usr/sbin/smtp-sink"
PFLOGSUMM = "/usr/sbin/pflogsumm"
DOVECOT = "/usr/sbin/dovecot"
RSYSLOGD = "/usr/sbin/rsyslogd"
DEV_LOG = "/dev/log"

# Client source addresses (all on loopback; Linux routes all of 127/8 to lo).
IP_NORMAL = "127.0.0.1"
IP_RELAY = "127.0.0.4"  # relay attempts -> "Relay access denied"
IP_UNKNOWN = "127.0.0.5"  # unknown local recipients -> "User unknown in local recipient table"
IP_BAD_SENDER = "127.0.0.6"  # blocked sender domain -> reject at MAIL
IP_SUBMIT = "127.0.0.7"  # successful SASL submissions
IP_HOSTILE = "127.0.0.8"  # the hostile traffic (Sizes.hostile): markup in HELO, addresses, replies

# Text that strangers control, with HTML/script markup, for the hostile traffic kind
# (Sizes.hostile). Each string is logged verbatim by Postfix (see docs/lab.md).
# smtpd replaces space and < > ( ) \ " ; @ in a HELO name with "?" (a HELO of
# <script>window.pwned_helo=1</script> is logged as helo=<?script?window.pwned_helo=1?/script?>),
# so the HELO breaks out of a single-quoted HTML attribute instead: logged verbatim as helo=<...>
HOSTILE_HELO = "x'onmouseover='window.pwned_helo=1'"
HOSTILE_SENDER = '"<img src=x onerror=window.pwned_addr=1>"@accept.test'  # from=<...>, to=<...>
HOSTILE_RCPT = '"<svg onload=window.pwned_rcpt=1>"@lab.test'  # rejected: unknown local user
# smtpd's reply to it names the address unquoted (its internal form)
HOSTILE_RCPT_REPLY = (
    "550 5.1.1 <<svg onload=window.pwned_rcpt=1>@lab.test>: Recipient address rejected: "
    "User unknown in local recipient table"
)
HOSTILE_DOMAIN = "hostile.test"  # its sink defers every RCPT with HOSTILE_REPLY
HOSTILE_REPLY = "451 4.7.1 <script>window.pwned_reply=1</script> try later"
HOSTILE_BOUNCE_DOMAIN = "hostile-bounce.test"  # its sink refuses every RCPT: HOSTILE_BOUNCE_REPLY
HOSTILE_BOUNCE_REPLY = "550 5.7.1 <img src=x onerror=window.pwned_bounce=1> go away"


class LabError(RuntimeError):
    """The lab could not be built or the scenario did not behave as planned."""


class LabUnavailable(LabError):
    """This machine cannot run the lab (not root, no apt-get, not Debian ...)."""


# --------------------------------------------------------------------------------------------
# small helpers


def _run(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 120,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise LabError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return proc


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to port 0 and close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise LabError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours still "exists": reap it if we can
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def _kill_pid(pid: int, timeout: float = 10) -> None:
    """SIGTERM one process by PID, then SIGKILL it after timeout."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _make_traversable(path: Path) -> None:
    """Postfix (user postfix), local(8) (nobody) and dovecot must reach files under path."""
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(p, stat.S_IMODE(mode) | stat.S_IXOTH)


def faketime_library() -> str | None:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    return found[0] if found else None


def parse_faketime(spec: str, now: float | None = None) -> str:
    """Turn a user faketime spec into a libfaketime FAKETIME value shared by all processes.

    ``"@2025-12-31 23:59:30"`` (libfaketime "start at") restarts the clock at that time in
    *every* process that loads the library, so a Postfix daemon spawned 20 s later would log
    23:59:30 again (non-monotonic logs). We therefore convert it to a relative offset in
    seconds ("-29876543"), computed once, which every process applies to the real clock: the
    instance starts at the requested time and the clock advances in real time. A spec that
    already starts with "+" or "-" is passed through.
    """
    spec = spec.strip()
    if spec[:1] in "+-":
        return spec
    text = spec[1:] if spec.startswith("@") else spec
    target = calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S"))
    # rounded up: the clock starts at the requested time, never a fraction of a second before
    offset = math.ceil(target - (time.time() if now is None else now))
    return f"{offset:+d}"


# --------------------------------------------------------------------------------------------
# packages


def unavailable_reason() -> str | None:
    """Why the lab cannot run here, or None when it can (packages may still need installing)."""
    if not sys.platform.startswith("linux"):
        return f"the mail lab needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "the mail lab needs root (it runs a private Postfix and installs packages)"
    if not Path("/etc/debian_version").exists():
        return "the mail lab needs Debian or a derivative (apt, Debian's postfix layout)"
    missing = missing_packages()
    if missing and shutil.which("apt-get") is None:
        return f"packages {' '.join(missing)} are missing and there is no apt-get"
    return None


def missing_packages(packages: tuple[str, ...] | list[str] = PACKAGES) -> list[str]:
    missing = []
    for pkg in packages:
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
        if proc.returncode != 0 or "install ok installed" not in proc.stdout:
            missing.append(pkg)
    return missing


_POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


def ensure_packages(packages: tuple[str, ...] | list[str] = PACKAGES) -> list[str]:
    """Install the missing packages with apt-get; return the list that was installed.

    No service is started by the install: a temporary /usr/sbin/policy-rc.d that exits 101
    is put in place (an existing one is left alone and restored), and Postfix is preseeded
    with "No configuration" so /etc/postfix gets no main.cf. The system's Postfix is never
    configured, started or relied on.
    """
    missing = missing_packages(packages)
    if not missing:
        return []
    if os.geteuid() != 0:
        raise LabUnavailable(f"need root to install {' '.join(missing)}")
    if shutil.which("apt-get") is None:
        raise LabUnavailable(f"no apt-get to install {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(
        ["debconf-set-selections"],
        input="postfix postfix/main_mailer_type select No configuration\n",
        env=env,
    )
    made_policy = False
    if not _POLICY_RC_D.exists():
        _POLICY_RC_D.write_text("#!/bin/sh\n# postfixlab: start no service while installing\nexit 101\n")
        _POLICY_RC_D.chmod(0o755)
        made_policy = True
    try:
        _run(["apt-get", "update"], env=env, timeout=600)
        _run(
            ["apt-get", "install", "-y", "--no-install-recommends", *missing],
            env=env,
            timeout=1200,
        )
    finally:
        if made_policy:
            _POLICY_RC_D.unlink(missing_ok=True)
    still = missing_packages(packages)
    if still:
        raise LabError(f"apt-get did not install {' '.join(still)}")
    return missing


# --------------------------------------------------------------------------------------------
# scenario sizes and plan


@dataclass
class Sizes:
    """How much of each kind of traffic a scenario sends. Counts are messages unless noted."""

    accept: int = 20  # one recipient at accept.test (smtp-sink accepts)
    accept_multi: int = 3  # three recipients at accept.test each
    local: int = 6  # to local users alice/bob/carol/dave@lab.test (maildirs)
    pickup: int = 2  # submitted with sendmail(1) -> pickup, to accept.test
    filter: int = 4  # to filter.test: content filter hop, re-injection, then accept sink
    defer: int = 3  # to defer.test (4xx at RCPT) -> stays deferred
    refused: int = 3  # to refused.test (closed port) -> stays deferred
    mixed: int = 2  # one recipient accept.test + one defer.test
    bounce: int = 4  # to bounce.test (550 at RCPT) -> bounced + non-delivery notice
    bounce_partial: int = 1  # one recipient accept.test + one bounce.test
    expire: int = 2  # to defer.test during the expiry phase -> expired + notice
    held: int = 1  # recipient hold@accept.test -> HOLD action, stays in the hold queue
    discarded: int = 1  # recipient discard@accept.test -> DISCARD action
    warned: int = 1  # recipient warn@accept.test -> reject_warning, then delivered
    header_reject: int = 1  # Subject LABREJECT -> rejected by cleanup header_checks
    partial_reject: int = 1  # accept.test + unknown local user: one RCPT reject with a queue ID
    relay_denied: int = 3  # RCPT to an outside domain from 127.0.0.4 (recipients)
    unknown_local: int = 3  # RCPT to an unknown local user from 127.0.0.5 (recipients)
    blocked_client: int = 2  # connections per blocked client IP (reject at CONNECT)
    blocked_client_ips: tuple[str, ...] = ("127.0.0.2", "127.0.0.3")
    blocked_sender: int = 2  # MAIL FROM a blocked domain from 127.0.0.6 (reject at MAIL)
    auth_users: tuple[str, ...] = ("alice", "bob", "carol")
    auth_ok_per_user: int = 2  # authenticated submissions per user, PLAIN and LOGIN alternating
    # failed SASL logins per client IP; the first IP is the brute-force source
    auth_fail: dict[str, int] = field(
        default_factory=lambda: {"127.0.0.10": 24, "127.0.0.11": 3, "127.0.0.12": 2}
    )
    retry_rounds: int = 0  # extra "postqueue -f" rounds: each adds one deferral per deferred rcpt
    msgs_per_connection: int = 50
    workers: int = 4  # parallel SMTP client threads
    # Security / anomaly traffic, off by default (the scenarios above do not use it).
    # password spray: client IP -> n; the IP fails one login each as spray001 .. sprayNNN
    # (usernames that do not exist), PLAIN and LOGIN alternating
    auth_spray: dict[str, int] = field(default_factory=dict)
    # guessed password: client IP -> (n, user); the IP fails n logins as user (a real user,
    # wrong password), then, once the log shows them, logs in as user with the right password
    # (PLAIN) and submits one message to guessNN@accept.test. JSON lists are accepted.
    auth_guess: dict[str, tuple[int, str]] = field(default_factory=dict)
    # sender volume burst: SASL user -> n extra submissions from 127.0.0.7 (PLAIN), to n
    # distinct recipients burst001@accept.test .. burstNNN@accept.test, delivered
    auth_burst: dict[str, int] = field(default_factory=dict)
    # deferral storm: n extra messages to distinct recipients storm001 .. stormNNN@defer.test
    defer_storm: int = 0
    # hostile text: n messages from 127.0.0.8 with HELO HOSTILE_HELO and sender HOSTILE_SENDER,
    # each to HOSTILE_RCPT (rejected at RCPT: the reject line logs the HELO), hNNN@hostile.test
    # (deferred, the sink's reply is HOSTILE_REPLY) and hNNN@hostile-bounce.test (bounced with
    # HOSTILE_BOUNCE_REPLY; the notice goes back to HOSTILE_SENDER at the accept sink)
    hostile: int = 0

    def __post_init__(self) -> None:
        # JSON (--sizes-json, truth["sizes"]) brings lists where tuples are declared
        self.blocked_client_ips = tuple(self.blocked_client_ips)
        self.auth_users = tuple(self.auth_users)
        guess: dict[str, tuple[int, str]] = {}
        for ip, value in dict(self.auth_guess).items():
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise ValueError(f"auth_guess[{ip!r}] must be (failures, username), not {value!r}")
            n, user = value
            guess[ip] = (int(n), str(user))
        self.auth_guess = guess

    @classmethod
    def small(cls) -> Sizes:
        return cls()

    @classmethod
    def tiny(cls) -> Sizes:
        """Just enough of each kind for date/format checks (faketime runs)."""
        return cls(
            accept=4, accept_multi=1, local=2, pickup=1, filter=2, defer=1, refused=1,
            mixed=1, bounce=2, bounce_partial=1, expire=1, held=1, discarded=1, warned=1,
            header_reject=1, partial_reject=1, relay_denied=1, unknown_local=1,
            blocked_client=1, blocked_sender=1, auth_ok_per_user=1,
            auth_fail={"127.0.0.10": 6, "127.0.0.11": 2},
        )  # fmt: skip

    @classmethod
    def large(cls) -> Sizes:
        """Tens of thousands of messages: about 28,000 submitted, 90-100 s on 2 cores."""
        return cls(
            accept=20000, accept_multi=1000, local=1500, pickup=50, filter=3000, defer=300,
            refused=300, mixed=200, bounce=1200, bounce_partial=100, expire=50, held=20,
            discarded=20, warned=50, header_reject=50, partial_reject=50, relay_denied=300,
            unknown_local=300, blocked_client=50, blocked_sender=100, auth_ok_per_user=200,
            auth_fail={"127.0.0.10": 2000, "127.0.0.11": 150, "127.0.0.12": 60,
                       "127.0.0.13": 10},
            retry_rounds=1, msgs_per_connection=100, workers=6,
        )  # fmt: skip

    @classmethod
    def from_any(cls, value: Sizes | dict[str, Any] | None) -> Sizes:
        if value is None:
            return cls()
        if isinstance(value, Sizes):
            return value
        return cls().updated(value)

    def updated(self, changes: dict[str, Any]) -> Sizes:
        """A copy with some fields changed (e.g. from JSON); unknown names are an error."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown scenario sizes: {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (lists for tuples); ``Sizes.from_any(s.to_dict()) == s``."""
        d = dataclasses.asdict(self)
        d["blocked_client_ips"] = list(self.blocked_client_ips)
        d["auth_users"] = list(self.auth_users)
        d["auth_guess"] = {ip: [n, user] for ip, (n, user) in self.auth_guess.items()}
        return d


# Outcome of one envelope recipient of an accepted message.
DELIVERED, DEFERRED, BOUNCED, EXPIRED, HELD, DISCARDED = (
    "delivered", "deferred", "bounced", "expired", "held", "discarded"
)  # fmt: skip


@dataclass
class Msg:
    """One message the scenario submits, with the outcome planned for each recipient."""

    category: str
    sender: str
    rcpts: list[str]  # every RCPT TO the client sends
    outcome: dict[str, str]  # accepted recipient -> planned outcome
    rejected_rcpts: list[str] = field(default_factory=list)
    ip: str = IP_NORMAL
    via: str = "smtp"  # smtp | pickup
    auth: tuple[str, str, str] | None = None  # (user, password, method)
    subject: str = ""
    message_id: str = ""
    phase: str = "main"  # expire | main
    filtered: bool = False  # passes the content filter (two queue IDs)
    accepted: bool = True  # the client gets 250 at end of DATA
    helo: str = ""  # the EHLO name; "" means clientN.lab-clients.test (N: the IP's last byte)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["auth"] = None if self.auth is None else {"user": self.auth[0], "method": self.auth[2]}
        return d


@dataclass
class Plan:
    messages: list[Msg]
    relay_attempts: list[tuple[str, str]]  # (sender, recipient) from IP_RELAY
    unknown_attempts: list[tuple[str, str]]  # (sender, recipient) from IP_UNKNOWN
    blocked_connections: list[str]  # one entry per connection, the client IP
    blocked_senders: list[str]  # sender addresses rejected at MAIL from IP_BAD_SENDER
    auth_failures: list[tuple[str, str, str]]  # (ip, username, method)
    sizes: Sizes


def _domain(addr: str) -> str:
    return addr.rsplit("@", 1)[1]


def build_plan(sizes: Sizes) -> Plan:
    """Deterministic list of everything the scenario sends (no randomness)."""
    unknown_users = set(sizes.auth_users) - set(LOCAL_USERS)
    if unknown_users:
        raise ValueError(f"auth_users must be among {LOCAL_USERS}: {sorted(unknown_users)}")
    fixed = {IP_NORMAL, IP_RELAY, IP_UNKNOWN, IP_BAD_SENDER, IP_SUBMIT, IP_HOSTILE}
    client_groups = {
        "blocked_client_ips": set(sizes.blocked_client_ips),
        "auth_fail": set(sizes.auth_fail),
        "auth_spray": set(sizes.auth_spray),
        "auth_guess": set(sizes.auth_guess),
    }
    for ips in client_groups.values():
        for ip in ips:
            if ip in fixed or not ip.startswith("127."):
                raise ValueError(f"{ip}: use a loopback address other than {sorted(fixed)}")
    kinds = list(client_groups)
    for i, a in enumerate(kinds):
        for b in kinds[i + 1 :]:
            if client_groups[a] & client_groups[b]:
                raise ValueError(f"{sorted(client_groups[a] & client_groups[b])} in both {a} and {b}")
    for what, counts in (("auth_fail", sizes.auth_fail), ("auth_spray", sizes.auth_spray),
                         ("auth_burst", sizes.auth_burst)):  # fmt: skip
        for key, n in counts.items():
            if not isinstance(n, int) or n < 0:
                raise ValueError(f"{what}[{key!r}]: a count >= 0, not {n!r}")
    for ip, (n, user) in sizes.auth_guess.items():
        if n < 1 or user not in LOCAL_USERS:
            raise ValueError(f"auth_guess[{ip!r}]: (failures >= 1, one of {LOCAL_USERS}), not {(n, user)}")
    bad_burst = set(sizes.auth_burst) - set(LOCAL_USERS)
    if bad_burst:
        raise ValueError(f"auth_burst users must be among {LOCAL_USERS}: {sorted(bad_burst)}")
    for what in ("defer_storm", "hostile"):
        n = getattr(sizes, what)
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"{what}: a count >= 0, not {n!r}")
    msgs: list[Msg] = []
    counter = Counter()

    def ext_sender(i: int) -> str:
        return f"s{i % 12:02d}@sender{i % 5}.example"

    def notice_sender(i: int) -> str:
        # senders of mail that bounces or expires must be able to receive the notice:
        # alternate local users (local delivery) and accept.test (the accept sink)
        if i % 2 == 0:
            return f"{LOCAL_USERS[(i // 2) % len(LOCAL_USERS)]}@{LOCAL_DOMAIN}"
        return f"n{(i // 2) % 3}@accept.test"

    def add(category: str, sender: str, rcpts: dict[str, str], **kw: Any) -> Msg:
        n = counter[category]
        counter[category] += 1
        m = Msg(
            category=category,
            sender=sender,
            rcpts=list(kw.pop("all_rcpts", rcpts)),
            outcome=dict(rcpts),
            subject=kw.pop("subject", f"lab {category} {n}"),
            message_id=f"<lab-{category}-{n}@client.lab-clients.test>",
            **kw,
        )
        msgs.append(m)
        return m

    for i in range(sizes.expire):
        add("expire", notice_sender(i), {f"x{i % 4}@defer.test": EXPIRED}, phase="expire")
    for i in range(sizes.accept):
        add("accept", ext_sender(i), {f"r{i % 15:02d}@accept.test": DELIVERED})
    for i in range(sizes.accept_multi):
        add(
            "accept_multi",
            ext_sender(i + 3),
            {f"m{(i + k) % 9}@accept.test": DELIVERED for k in range(3)},
        )
    for i in range(sizes.local):
        add("local", ext_sender(i + 1), {f"{LOCAL_USERS[i % 4]}@{LOCAL_DOMAIN}": DELIVERED})
    for i in range(sizes.pickup):
        add(
            "pickup",
            f"{LOCAL_USERS[i % 4]}@{LOCAL_DOMAIN}",
            {f"p{i % 3}@accept.test": DELIVERED},
            via="pickup",
        )
    for i in range(sizes.filter):
        add("filter", ext_sender(i + 2), {f"f{i % 5}@filter.test": DELIVERED}, filtered=True)
    for i in range(sizes.defer):
        add("defer", notice_sender(i), {f"d{i % 6}@defer.test": DEFERRED})
    for i in range(sizes.refused):
        add("refused", notice_sender(i + 1), {f"c{i % 6}@refused.test": DEFERRED})
    for i in range(sizes.mixed):
        add(
            "mixed",
            notice_sender(i),
            {f"r{i % 15:02d}@accept.test": DELIVERED, f"d{i % 6}@defer.test": DEFERRED},
        )
    for i in range(sizes.bounce):
        add("bounce", notice_sender(i), {f"b{i % 7}@bounce.test": BOUNCED})
    for i in range(sizes.bounce_partial):
        add(
            "bounce_partial",
            notice_sender(i + 1),
            {f"r{i % 15:02d}@accept.test": DELIVERED, f"b{i % 7}@bounce.test": BOUNCED},
        )
    for i in range(sizes.held):
        add("held", ext_sender(i), {"hold@accept.test": HELD})
    for i in range(sizes.discarded):
        add("discarded", ext_sender(i), {"discard@accept.test": DISCARDED})
    for i in range(sizes.warned):
        add("warned", ext_sender(i), {"warn@accept.test": DELIVERED})
    for i in range(sizes.header_reject):
        add(
            "header_reject",
            ext_sender(i),
            {},
            all_rcpts=[f"r{i % 15:02d}@accept.test"],
            subject=f"LABREJECT {i}",
            accepted=False,
        )
    for i in range(sizes.partial_reject):
        good, bad = f"r{i % 15:02d}@accept.test", f"ghost{i % 4}@{LOCAL_DOMAIN}"
        add(
            "partial_reject",
            ext_sender(i),
            {good: DELIVERED},
            all_rcpts=[good, bad],
            rejected_rcpts=[bad],
        )
    for u_i, user in enumerate(sizes.auth_users):
        for j in range(sizes.auth_ok_per_user):
            method = ("PLAIN", "LOGIN")[(u_i + j) % 2]
            add(
                "auth_ok",
                f"{user}@{LOCAL_DOMAIN}",
                {f"a{j % 4}@accept.test": DELIVERED},
                ip=IP_SUBMIT,
                auth=(user, SASL_PASSWORD, method),
            )
    # security / anomaly traffic (empty by default), after everything else: the plan of the
    # standard scenarios is unchanged
    for g_i, (ip, (_n, user)) in enumerate(sizes.auth_guess.items()):
        # sent only once the log shows the n failed logins from ip (see _send_main)
        add(
            "auth_guess",
            f"{user}@{LOCAL_DOMAIN}",
            {f"guess{g_i:02d}@accept.test": DELIVERED},
            ip=ip,
            auth=(user, SASL_PASSWORD, "PLAIN"),
        )
    for user, n in sizes.auth_burst.items():
        for k in range(1, n + 1):
            add(
                "auth_burst",
                f"{user}@{LOCAL_DOMAIN}",
                {f"burst{k:03d}@accept.test": DELIVERED},
                ip=IP_SUBMIT,
                auth=(user, SASL_PASSWORD, "PLAIN"),
            )
    for k in range(1, sizes.defer_storm + 1):
        add("defer_storm", notice_sender(k), {f"storm{k:03d}@defer.test": DEFERRED})
    for k in range(1, sizes.hostile + 1):
        add(
            "hostile",
            HOSTILE_SENDER,
            {f"h{k:03d}@{HOSTILE_DOMAIN}": DEFERRED, f"h{k:03d}@{HOSTILE_BOUNCE_DOMAIN}": BOUNCED},
            # the rejected recipient first: "NOQUEUE: reject: RCPT ... helo=<HOSTILE_HELO>"
            all_rcpts=[HOSTILE_RCPT, f"h{k:03d}@{HOSTILE_DOMAIN}", f"h{k:03d}@{HOSTILE_BOUNCE_DOMAIN}"],
            rejected_rcpts=[HOSTILE_RCPT],
            ip=IP_HOSTILE,
            helo=HOSTILE_HELO,
        )

    relay = [(ext_sender(i), f"victim{i % 5}@outside.example") for i in range(sizes.relay_denied)]
    unknown = [(ext_sender(i), f"nobody{i % 6}@{LOCAL_DOMAIN}") for i in range(sizes.unknown_local)]
    blocked = [ip for ip in sizes.blocked_client_ips for _ in range(sizes.blocked_client)]
    bad_senders = [f"spam{i % 4}@blocked.example" for i in range(sizes.blocked_sender)]
    brute_names = ("admin", "root", "test", "info", "alice")
    failures: list[tuple[str, str, str]] = []
    for ip_i, (ip, count) in enumerate(sizes.auth_fail.items()):
        names = brute_names if ip_i == 0 else (("bob",), ("guest", "webmaster"), ("sales",))[(ip_i - 1) % 3]
        for k in range(count):
            failures.append((ip, names[k % len(names)], ("PLAIN", "LOGIN")[k % 2]))
    for ip, count in sizes.auth_spray.items():
        for k in range(count):
            failures.append((ip, f"spray{k + 1:03d}", ("PLAIN", "LOGIN")[k % 2]))
    for ip, (count, user) in sizes.auth_guess.items():
        for k in range(count):
            failures.append((ip, user, ("PLAIN", "LOGIN")[k % 2]))
    return Plan(msgs, relay, unknown, blocked, bad_senders, failures, sizes)


def compute_truth(plan: Plan) -> dict[str, Any]:
    """The true counts of what the plan injects. See docs/lab.md for the meaning of each key."""
    sizes = plan.sizes
    rounds = 1 + sizes.retry_rounds
    per_domain: dict[str, Counter] = {}

    def dom(d: str) -> Counter:
        return per_domain.setdefault(d, Counter())

    received = delivered = deferred_msgs = deferrals = bounced = expired = 0
    held = discarded = notifications = filter_hops = 0
    received_by = Counter()
    senders: set[str] = set()
    recipients: set[str] = set()
    recipients_delivered: set[str] = set()
    queue_deferred = queue_hold = 0

    for m in plan.messages:
        if not m.accepted:
            continue
        received += 1
        received_by["pickup" if m.via == "pickup" else "smtpd"] += 1
        senders.add(m.sender.lower())
        if m.filtered:
            filter_hops += len(m.outcome)
        outcomes = Counter(m.outcome.values())
        if outcomes[HELD]:
            held += 1
            queue_hold += 1
        if outcomes[DISCARDED]:
            discarded += 1
        if outcomes[DEFERRED] or outcomes[EXPIRED]:
            deferred_msgs += 1
        if outcomes[DEFERRED]:
            queue_deferred += 1
        for rcpt, out in m.outcome.items():
            rcpt = rcpt.lower()
            recipients.add(rcpt)
            d = dom(_domain(rcpt))
            if out == DELIVERED:
                delivered += 1
                d["delivered"] += 1
                recipients_delivered.add(rcpt)
            elif out == DEFERRED:
                deferrals += rounds
                d["deferred"] += rounds
            elif out == EXPIRED:
                deferrals += 1  # tried once, deferred, then expired (maximal_queue_lifetime=0)
                d["deferred"] += 1
                d["expired"] += 1
            elif out == BOUNCED:
                bounced += 1
                d["bounced"] += 1
        for d_name in {_domain(r) for r, o in m.outcome.items() if o in (DEFERRED, EXPIRED)}:
            dom(d_name)["deferred_messages"] += 1
        if outcomes[EXPIRED]:
            expired += 1
        if outcomes[BOUNCED] or outcomes[EXPIRED]:
            # one non-delivery notice per message, delivered to the (local or accept.test) sender
            notifications += 1
            delivered += 1
            dom(_domain(m.sender))["delivered"] += 1
            recipients_delivered.add(m.sender.lower())

    rejects = Counter()
    by_client = Counter()
    for m in plan.messages:
        for _ in m.rejected_rcpts:
            rejects["RCPT"] += 1
            by_client[m.ip] += 1
        if m.category == "header_reject":
            rejects["header"] += 1
            by_client[m.ip] += 1
    for _sender, _rcpt in plan.relay_attempts:
        rejects["RCPT"] += 1
        by_client[IP_RELAY] += 1
    for _sender, _rcpt in plan.unknown_attempts:
        rejects["RCPT"] += 1
        by_client[IP_UNKNOWN] += 1
    for ip in plan.blocked_connections:
        rejects["CONNECT"] += 1
        by_client[ip] += 1
    for _ in plan.blocked_senders:
        rejects["MAIL"] += 1
        by_client[IP_BAD_SENDER] += 1

    def auth_block(items: list[tuple[str, str, str]]) -> dict[str, Any]:
        return {
            "total": len(items),
            "by_ip": dict(sorted(Counter(i for i, _, _ in items).items())),
            "by_username": dict(sorted(Counter(u for _, u, _ in items).items())),
            "by_method": dict(sorted(Counter(me for _, _, me in items).items())),
        }

    successes = [(m.ip, m.auth[0], m.auth[2]) for m in plan.messages if m.auth and m.accepted]

    return {
        "received": received,
        "delivered": delivered,
        "forwarded": 0,
        "deferred": deferred_msgs,
        "deferrals": deferrals,
        "bounced": bounced,
        "expired": expired,
        "rejected": sum(rejects.values()),
        "reject_warnings": sum(1 for m in plan.messages if m.category == "warned"),
        "held": held,
        "discarded": discarded,
        "notifications": notifications,
        "senders": len(senders),
        "recipients": len(recipients),
        "recipients_delivered": len(recipients_delivered),
        "per_domain": {
            d: {k: c[k] for k in ("delivered", "deferred", "deferred_messages", "bounced", "expired")}
            for d, c in sorted(per_domain.items())
        },
        "rejects": dict(sorted(rejects.items())),
        "rejects_by_client": dict(sorted(by_client.items())),
        "auth_failures": auth_block(plan.auth_failures),
        "auth_successes": auth_block(successes),
        "auth_guessed": {ip: user for ip, (_n, user) in sorted(sizes.auth_guess.items())},
        "auth_burst": {u: n for u, n in sorted(sizes.auth_burst.items()) if n},
        "hostile": _hostile_truth(sizes),
        "received_by_source": dict(sorted(received_by.items())),
        "filter_hops": filter_hops,
        "queue_at_end": {"deferred": queue_deferred, "hold": queue_hold},
        "sizes": sizes.to_dict(),
    }


def _hostile_truth(sizes: Sizes) -> dict[str, Any]:
    """The strings the hostile traffic injects, as Postfix logs them, and its counts;
    {} when there is none."""
    n = sizes.hostile
    if not n:
        return {}
    return {
        "client": IP_HOSTILE,
        "helo": HOSTILE_HELO,
        "address": HOSTILE_SENDER,
        "rejected_rcpt": HOSTILE_RCPT,
        "reject_reply": HOSTILE_RCPT_REPLY,
        "reply": HOSTILE_REPLY,
        "bounce_reply": HOSTILE_BOUNCE_REPLY,
        "defer_domain": HOSTILE_DOMAIN,
        "bounce_domain": HOSTILE_BOUNCE_DOMAIN,
        "messages": n,
        "rejects": n,
        "deferrals": n * (1 + sizes.retry_rounds),
        "bounced": n,
        "notifications": n,
    }


# --------------------------------------------------------------------------------------------
# the content filter: a tiny SMTP server that re-injects into the second smtpd


def serve_filter(listen_port: int, forward_port: int) -> None:
    """Accept SMTP on listen_port; pass each message on to 127.0.0.1:forward_port.

    The reply to DATA is the downstream reply, so Postfix logs the real two-queue-ID pattern
    "status=sent (250 2.0.0 Ok: queued as NEWQID)". Runs until SIGTERM.
    """
    import socketserver

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            out: smtplib.SMTP | None = None

            def reply(text: str) -> None:
                self.wfile.write(text.encode() + b"\r\n")
                self.wfile.flush()

            reply("220 filter.lab.test ESMTP labfilter")
            sender, rcpts = "", []
            try:
                while True:
                    raw = self.rfile.readline()
                    if not raw:
                        break
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    verb = line[:4].upper()
                    if verb in ("EHLO", "HELO"):
                        reply("250 filter.lab.test")
                    elif verb == "MAIL":
                        sender = line[line.index(":") + 1 :].strip().split(" ")[0].strip("<>")
                        rcpts = []
                        reply("250 2.1.0 Ok")
                    elif verb == "RCPT":
                        rcpts.append(line[line.index(":") + 1 :].strip().split(" ")[0].strip("<>"))
                        reply("250 2.1.5 Ok")
                    elif verb == "DATA":
                        reply("354 End data with <CR><LF>.<CR><LF>")
                        chunks = []
                        while True:
                            d = self.rfile.readline()
                            if not d or d in (b".\r\n", b".\n"):
                                break
                            if d.startswith(b".."):
                                d = d[1:]
                            chunks.append(d)
                        try:
                            if out is None:
                                out = smtplib.SMTP("127.0.0.1", forward_port, timeout=60)
                                out.ehlo("filter.lab.test")
                            out.mail(sender)
                            for r in rcpts:
                                code, msg = out.rcpt(r)
                                if code >= 400:
                                    raise smtplib.SMTPRecipientsRefused({r: (code, msg)})
                            code, msg = out.data(b"".join(chunks))
                            reply(f"{code} {msg.decode('utf-8', 'replace')}")
                        except Exception as exc:
                            out = None
                            reply(f"451 4.3.0 labfilter: {type(exc).__name__}")
                    elif verb == "RSET":
                        sender, rcpts = "", []
                        reply("250 2.0.0 Ok")
                    elif verb == "NOOP":
                        reply("250 2.0.0 Ok")
                    elif verb == "QUIT":
                        reply("221 2.0.0 Bye")
                        break
                    else:
                        reply("502 5.5.2 Error: command not recognized")
            finally:
                if out is not None:
                    with contextlib.suppress(Exception):
                        out.quit()

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    server = Server(("127.0.0.1", listen_port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever(poll_interval=0.2)


# --------------------------------------------------------------------------------------------
# the lab


_LIVE_LABS: set[Lab] = set()
DEVLOG_LOCK = "/tmp/.postfixlab-devlog.lock"


def _lock_devlog(timeout: float) -> Any:
    """An exclusive flock on DEVLOG_LOCK (waits for another lab that owns /dev/log)."""
    import fcntl

    f = open(DEVLOG_LOCK, "a")  # noqa: SIM115 - held until the lab stops
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f
        except BlockingIOError:
            if time.monotonic() > deadline:
                f.close()
                raise LabError(f"another lab held {DEVLOG_LOCK} for {timeout}s") from None
            time.sleep(0.2)


@atexit.register
def _stop_live_labs() -> None:
    for lab in list(_LIVE_LABS):
        with contextlib.suppress(Exception):
            lab.stop()


STATUS_RE = re.compile(r" status=(sent|deferred|bounced|expired)\b")
SASL_FAIL_RE = re.compile(r"\]: warning: [^\[\s]*\[([\d.]+)\]: SASL \S+ authentication failed: ")
SASL_OK_RE = re.compile(r"\]: [0-9A-F]+: client=[^,]*, sasl_method=\S+, sasl_username=(\S+)$")


class LogCounter:
    """Counts delivery statuses in a growing log file (complete lines only).

    Also SASL: "sasl_fail" and "sasl_fail IP" (failed logins), "sasl_ok" and "sasl_ok USER"
    (messages with sasl_username=), and "hostile_helo" (lines with helo=<HOSTILE_HELO>)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.counts: Counter = Counter()
        self._partial = b""
        self.fatal_line = ""

    def poll(self) -> Counter:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return self.counts
        self.offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            m = STATUS_RE.search(line)
            if m:
                self.counts[m.group(1)] += 1
            elif "sender non-delivery notification: " in line:
                self.counts["notice"] += 1
            elif m := SASL_FAIL_RE.search(line):
                self.counts["sasl_fail"] += 1
                self.counts[f"sasl_fail {m.group(1)}"] += 1
            elif m := SASL_OK_RE.search(line):
                self.counts["sasl_ok"] += 1
                self.counts[f"sasl_ok {m.group(1)}"] += 1
            elif "reload -- version" in line:
                self.counts["reload"] += 1
            elif "daemon started -- version" in line:
                self.counts["started"] += 1
            if f" helo=<{HOSTILE_HELO}>" in line:  # the hostile traffic's reject lines
                self.counts["hostile_helo"] += 1
            if " fatal: " in line or " panic: " in line:
                self.counts["fatal"] += 1
                self.fatal_line = line
        return self.counts


class Lab:
    """A private Postfix instance with its helpers, under ``tmpdir``.

    Use as a context manager or call :meth:`start` and :meth:`stop` (stop is idempotent and
    also registered with atexit). ``log_format`` is "maillog_file" (Postfix's postlogd) or
    "syslog" (a private rsyslogd, classic format). ``faketime`` is a libfaketime spec; see
    :func:`parse_faketime`.
    """

    def __init__(
        self,
        tmpdir: str | os.PathLike[str],
        *,
        log_format: str = "maillog_file",
        faketime: str | None = None,
        myhostname: str = MYHOSTNAME,
        devlog: str = "auto",
        blocked_client_ips: tuple[str, ...] | list[str] = ("127.0.0.2", "127.0.0.3"),
        overrides: dict[str, str] | None = None,
        verbose: bool = False,
    ) -> None:
        if log_format not in ("maillog_file", "syslog"):
            raise ValueError(f"log_format must be 'maillog_file' or 'syslog', not {log_format!r}")
        if devlog not in ("auto", "create", "namespace"):
            raise ValueError("devlog must be auto, create or namespace")
        self.root = Path(tmpdir).resolve()
        self.log_format = log_format
        self.faketime_spec = faketime
        self.faketime: str | None = None  # the FAKETIME value actually used
        self.myhostname = myhostname
        self.devlog_mode = devlog
        self.verbose = verbose
        self.blocked_client_ips = tuple(blocked_client_ips)
        self.overrides = dict(overrides or {})
        self.etc = self.root / "etc"
        self.spool = self.root / "spool"
        self.data = self.root / "data"
        self.maildir = self.root / "mail"
        self.logdir = self.root / "log"
        self.dovecot_dir = self.root / "dovecot"
        self.log_path = self.logdir / "mail.log"
        (
            self.smtpd_port,
            self.reinject_port,
            self.filter_port,
            self.accept_port,
            self.defer_port,
            self.bounce_port,
            self.refused_port,
            self.hostile_port,
            self.hostile_bounce_port,
        ) = _free_ports(9)
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._postfix_started = False
        self._made_devlog = False
        self._devlog_socket: Path | None = None
        self._devlog_lock: Any = None
        self._rsyslog_pidfile = self.logdir / "rsyslogd.pid"
        self._stopped = True
        self.started_at = 0.0  # time.monotonic() when Postfix was started
        self.counter = LogCounter(self.log_path)

    def _say(self, text: str) -> None:
        if self.verbose:
            print(f"[postfixlab] {text}", file=sys.stderr, flush=True)

    # ---- configuration -----------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C",
            "MAIL_CONFIG": str(self.etc),
        }
        if self.faketime:
            env.update(self._faketime_env())
        return env

    def _faketime_env(self) -> dict[str, str]:
        lib = faketime_library()
        if lib is None:
            raise LabError("libfaketime is not installed (package libfaketime)")
        return {
            "LD_PRELOAD": lib,
            "FAKETIME": self.faketime or "+0",
            # Postfix and rsyslog measure intervals with CLOCK_MONOTONIC; leave it real
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FAKETIME_DONT_RESET": "1",
        }

    def main_cf(self) -> dict[str, str]:
        e = self.etc
        cf = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.spool),
            "data_directory": str(self.data),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": self.myhostname,
            "mydomain": LOCAL_DOMAIN,
            "myorigin": LOCAL_DOMAIN,
            "mydestination": f"{LOCAL_DOMAIN}, localhost",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            # nobody is trusted by IP: normal mail relies on relay_domains, submissions on SASL
            "mynetworks": "",
            "relay_domains": (
                "accept.test, defer.test, bounce.test, refused.test, filter.test, "
                f"{HOSTILE_DOMAIN}, {HOSTILE_BOUNCE_DOMAIN}"
            ),
            "transport_maps": f"hash:{e}/transport",
            "alias_maps": f"hash:{e}/aliases",
            "alias_database": f"hash:{e}/aliases",
            "local_recipient_maps": "$alias_maps",
            "allow_mail_to_files": "alias",
            "default_privs": "nobody",
            "biff": "no",
            "append_dot_mydomain": "no",
            "smtpd_banner": "$myhostname ESMTP",
            "smtpd_peername_lookup": "no",
            "smtp_dns_support_level": "disabled",
            "smtp_connect_timeout": "5s",
            # evaluate client and sender restrictions at CONNECT and MAIL (not deferred to RCPT)
            "smtpd_delay_reject": "no",
            "smtpd_client_restrictions": f"check_client_access cidr:{e}/client_access.cidr",
            "smtpd_sender_restrictions": f"check_sender_access hash:{e}/sender_access",
            "smtpd_relay_restrictions": "permit_sasl_authenticated, reject_unauth_destination",
            "smtpd_recipient_restrictions": (
                f"warn_if_reject check_recipient_access hash:{e}/warn_access, "
                f"check_recipient_access hash:{e}/recipient_access"
            ),
            "header_checks": f"regexp:{e}/header_checks",
            "smtpd_sasl_auth_enable": "yes",
            "smtpd_sasl_type": "dovecot",
            "smtpd_sasl_path": "private/auth",
            "smtpd_sasl_security_options": "noanonymous",
            # many failures per connection without sleeping or disconnecting
            "smtpd_error_sleep_time": "0s",
            "smtpd_soft_error_limit": "10000",
            "smtpd_hard_error_limit": "10000",
            "smtpd_junk_command_limit": "10000",
            # Determinism: each deferred message is tried exactly once during a run. The
            # deferred queue is never rescanned (queue_run_delay) and a deferred message's
            # next try is an hour away (minimal_backoff_time); only "postqueue -f" retries.
            "queue_run_delay": "3600s",
            "minimal_backoff_time": "3600s",
            "maximal_backoff_time": "7200s",
            "maximal_queue_lifetime": "5d",
            "bounce_queue_lifetime": "5d",
            "delay_warning_time": "0h",  # no delay notices
            "notify_classes": "",  # no postmaster notices: every notice is a sender's NDR
            "default_destination_concurrency_limit": "20",
            "smtputf8_enable": "no",
        }
        if self.log_format == "maillog_file":
            cf["maillog_file"] = str(self.log_path)
            cf["maillog_file_prefixes"] = str(self.logdir)
        if self.faketime_spec:
            cf["import_environment"] = (
                "MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ XAUTHORITY DISPLAY LANG=C "
                "POSTLOG_SERVICE POSTLOG_HOSTNAME LD_PRELOAD FAKETIME "
                "FAKETIME_DONT_FAKE_MONOTONIC FAKETIME_DONT_RESET"
            )
        cf.update(self.overrides)
        return cf

    def master_cf(self) -> str:
        rows = [
            # chroot column is n everywhere: a private instance has no chroot jail
            f"127.0.0.1:{self.smtpd_port} inet n - n - - smtpd",
            f"127.0.0.1:{self.reinject_port} inet n - n - 10 smtpd",
            "  -o content_filter=",
            "  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters",
            "  -o smtpd_client_restrictions=",
            "  -o smtpd_helo_restrictions=",
            "  -o smtpd_sender_restrictions=",
            "  -o smtpd_recipient_restrictions=permit_mynetworks,reject",
            "  -o smtpd_relay_restrictions=permit_mynetworks,reject",
            "  -o mynetworks=127.0.0.0/8",
            "  -o smtpd_sasl_auth_enable=no",
            "pickup    unix  n       -       n       60      1       pickup",
            "cleanup   unix  n       -       n       -       0       cleanup",
            "qmgr      unix  n       -       n       300     1       qmgr",
            "rewrite   unix  -       -       n       -       -       trivial-rewrite",
            "bounce    unix  -       -       n       -       0       bounce",
            "defer     unix  -       -       n       -       0       bounce",
            "trace     unix  -       -       n       -       0       bounce",
            "verify    unix  -       -       n       -       1       verify",
            "flush     unix  n       -       n       1000?   0       flush",
            "proxymap  unix  -       -       n       -       -       proxymap",
            "proxywrite unix -       -       n       -       1       proxymap",
            "smtp      unix  -       -       n       -       -       smtp",
            "relay     unix  -       -       n       -       -       smtp",
            "lfilter   unix  -       -       n       -       4       smtp",
            "  -o smtp_send_xforward_command=no",
            "  -o smtp_connection_cache_on_demand=no",
            "showq     unix  n       -       n       -       -       showq",
            "error     unix  -       -       n       -       -       error",
            "retry     unix  -       -       n       -       -       error",
            "discard   unix  -       -       n       -       -       discard",
            "local     unix  -       n       n       -       -       local",
            "anvil     unix  -       -       n       -       1       anvil",
            "scache    unix  -       -       n       -       1       scache",
            "postlog   unix-dgram n  -       n       -       1       postlogd",
        ]
        return "\n".join(rows) + "\n"

    def _write_config(self) -> None:
        if self.spool.exists() and any(self.spool.iterdir()):
            raise LabError(f"{self.root} was used by an earlier lab; give a fresh directory")
        for d in (self.etc, self.spool, self.data, self.maildir, self.logdir, self.dovecot_dir):
            d.mkdir(parents=True, exist_ok=True)
        _make_traversable(self.root)
        for d in (self.root, self.etc, self.logdir, self.dovecot_dir):
            os.chmod(d, 0o755)
        pw = pwd.getpwnam("postfix")
        os.chown(self.data, pw.pw_uid, pw.pw_gid)  # else master.lock: Permission denied
        nobody = pwd.getpwnam("nobody")
        os.chmod(self.maildir, 0o755)
        for user in (*LOCAL_USERS, "postmaster"):
            d = self.maildir / user
            d.mkdir(exist_ok=True)
            os.chown(d, nobody.pw_uid, nobody.pw_gid)
        main = "".join(f"{k} = {v}\n" for k, v in self.main_cf().items())
        (self.etc / "main.cf").write_text(main)
        (self.etc / "master.cf").write_text(self.master_cf())
        self._age_config()
        sink = "smtp:[127.0.0.1]:{}"
        (self.etc / "transport").write_text(
            f"accept.test {sink.format(self.accept_port)}\n"
            f"filter.test {sink.format(self.accept_port)}\n"
            f"defer.test {sink.format(self.defer_port)}\n"
            f"bounce.test {sink.format(self.bounce_port)}\n"
            f"refused.test {sink.format(self.refused_port)}\n"
            f"{HOSTILE_DOMAIN} {sink.format(self.hostile_port)}\n"
            f"{HOSTILE_BOUNCE_DOMAIN} {sink.format(self.hostile_bounce_port)}\n"
        )
        aliases = (
            "".join(f"{u}: {self.maildir / u}/\n" for u in (*LOCAL_USERS, "postmaster"))
            + "root: postmaster\nmailer-daemon: postmaster\n"
        )
        (self.etc / "aliases").write_text(aliases)
        (self.etc / "client_access.cidr").write_text(
            "".join(f"{ip}/32 REJECT\n" for ip in self.blocked_client_ips)
        )
        (self.etc / "sender_access").write_text("blocked.example REJECT\n")
        (self.etc / "warn_access").write_text("warn@accept.test REJECT lab warning test\n")
        (self.etc / "recipient_access").write_text(
            "hold@accept.test HOLD lab hold test\n"
            "discard@accept.test DISCARD lab discard test\n"
            f"filter.test FILTER lfilter:[127.0.0.1]:{self.filter_port}\n"
        )
        (self.etc / "header_checks").write_text("/^Subject: LABREJECT/ REJECT lab header test\n")
        for name in ("transport", "sender_access", "warn_access", "recipient_access"):
            _run([POSTMAP, "-c", str(self.etc), f"hash:{self.etc / name}"])
        _run([POSTALIAS, "-c", str(self.etc), f"hash:{self.etc / 'aliases'}"])

    def postconf(self, **settings: str) -> None:
        """Change main.cf settings (takes effect at the next reload)."""
        args = [f"{k}={v}" for k, v in settings.items()]
        _run([POSTCONF, "-c", str(self.etc), "-e", *args])
        self._age_config()

    def _age_config(self) -> None:
        # Postfix re-reads a config file modified in the current second (it may be half
        # written), dozing 300 ms each time: every command would wait up to 1.5 s.
        # Backdate main.cf and master.cf by a minute (real time; faketime plays no part).
        past = time.time() - 60
        for name in ("main.cf", "master.cf"):
            os.utime(self.etc / name, (past, past))

    # ---- helper daemons ----------------------------------------------------------------

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.logdir / f"{name}.out", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        self._procs.append((name, proc))
        with open(self.logdir / "pids", "a") as f:  # for "postfixlab.py stop DIR" after a crash
            f.write(f"{proc.pid} {name}\n")
        self._say(f"started {name} pid {proc.pid}")

    def _start_sinks(self) -> None:
        base = [SMTP_SINK, "-u", "nobody", "-4", "-h", "sink.lab.test"]
        self._spawn("sink-accept", [*base, f"127.0.0.1:{self.accept_port}", "256"])
        self._spawn("sink-defer", [*base, "-r", "RCPT", "-b", "450 4.2.0 Mailbox busy, try again",
                                   f"127.0.0.1:{self.defer_port}", "256"])  # fmt: skip
        self._spawn("sink-bounce", [*base, "-f", "RCPT", "-B", "550 5.1.1 User unknown",
                                    f"127.0.0.1:{self.bounce_port}", "256"])  # fmt: skip
        self._spawn("sink-hostile", [*base, "-r", "RCPT", "-b", HOSTILE_REPLY,
                                     f"127.0.0.1:{self.hostile_port}", "256"])  # fmt: skip
        self._spawn("sink-hostile-bounce", [*base, "-f", "RCPT", "-B", HOSTILE_BOUNCE_REPLY,
                                            f"127.0.0.1:{self.hostile_bounce_port}", "256"])  # fmt: skip
        self._spawn(
            "filter",
            [sys.executable, str(Path(__file__).resolve()), "filter",
             str(self.filter_port), str(self.reinject_port), str(self.root)],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )  # fmt: skip
        for port in (self.accept_port, self.defer_port, self.bounce_port, self.filter_port,
                     self.hostile_port, self.hostile_bounce_port):  # fmt: skip
            _wait_port(port)

    def _dovecot_conf(self) -> str:
        d = self.dovecot_dir
        return f"""# postfixlab: SASL backend only, no IMAP/POP
instance_name = postfixlab-{self.smtpd_port}
base_dir = {d}/run
state_dir = {d}/state
log_path = {self.logdir}/dovecot.log
protocols = none
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
# no delay after a failed login (else each failure from one IP waits 2-15 s)
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home=/nonexistent
}}
service auth {{
  unix_listener {self.spool}/private/auth {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""

    def _start_dovecot(self) -> None:
        d = self.dovecot_dir
        (d / "run").mkdir(exist_ok=True)
        (d / "state").mkdir(exist_ok=True)
        (d / "dovecot.conf").write_text(self._dovecot_conf())
        (d / "users").write_text("".join(f"{u}:{{PLAIN}}{SASL_PASSWORD}::::::\n" for u in LOCAL_USERS))
        os.chmod(d / "users", 0o644)
        self._spawn("dovecot", [DOVECOT, "-F", "-c", str(d / "dovecot.conf")])
        sock = self.spool / "private" / "auth"
        deadline = time.monotonic() + 15
        while not sock.exists():
            if time.monotonic() > deadline:
                raise LabError(f"dovecot did not create {sock}; see {self.logdir}/dovecot.log")
            self._check_procs()
            time.sleep(0.05)

    def _rsyslog_conf(self, socket_path: str) -> str:
        return f"""# postfixlab: private rsyslogd writing classic (RFC 3164) mail.log
global(workDirectory="{self.logdir}" localHostname="{self.myhostname.split(".")[0]}"
       processInternalMessages="on")
module(load="imuxsock" SysSock.Use="off")
# Stamp each line with rsyslogd's own clock (faked with libfaketime when asked). Not the
# kernel's receive time (SO_TIMESTAMP, the default), which libfaketime cannot fake, and not
# the time in the message: glibc's syslog(3) reads the clock inside libc, past LD_PRELOAD.
input(type="imuxsock" Socket="{socket_path}" CreatePath="off" RateLimit.Interval="0"
      UseSysTimeStamp="off" IgnoreTimestamp="on")
module(load="builtin:omfile" Template="RSYSLOG_TraditionalFileFormat")
mail.* action(type="omfile" file="{self.log_path}")
"""

    def _start_rsyslog(self) -> None:
        """Start a private rsyslogd listening on /dev/log (or on a private socket that is
        bind-mounted over /dev/log in a private mount namespace when /dev/log exists)."""
        mode = self.devlog_mode
        if mode in ("auto", "create"):
            # Labs that create /dev/log take turns (a lock held until stop): a second lab must
            # not mistake the first one's socket for a system logger, which the first one
            # removes when it stops.
            self._devlog_lock = _lock_devlog(timeout=600)
            if mode == "auto":
                mode = "namespace" if os.path.lexists(DEV_LOG) else "create"
            if mode == "namespace":
                self._release_devlog_lock()
        if mode == "create":
            if os.path.lexists(DEV_LOG):
                raise LabUnavailable(f"{DEV_LOG} exists; use devlog='namespace'")
            sock_path = DEV_LOG
        else:
            if not os.path.lexists(DEV_LOG):
                raise LabUnavailable(f"devlog='namespace' needs an existing {DEV_LOG} to mount on")
            if shutil.which("unshare") is None:
                raise LabUnavailable("unshare(1) is missing for a private /dev/log")
            probe = _run(["unshare", "--mount", "--propagation", "private", "true"], check=False)
            if probe.returncode != 0:
                raise LabUnavailable(
                    f"{DEV_LOG} exists and no private mount namespace can be made to hide it "
                    f"(unshare: {probe.stderr.strip()}); the syslog lab needs one"
                )
            sock_path = str(self.logdir / "devlog.sock")
        self.devlog_mode = mode
        conf = self.logdir / "rsyslog.conf"
        conf.write_text(self._rsyslog_conf(sock_path))
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        if self.faketime:
            env.update(self._faketime_env())
        self._spawn("rsyslogd", [RSYSLOGD, "-n", "-f", str(conf), "-i", str(self._rsyslog_pidfile)],
                    env=env)  # fmt: skip
        if mode == "create":
            self._made_devlog = True
            (self.logdir / "devlog-created").write_text(DEV_LOG + "\n")
        deadline = time.monotonic() + 10
        while not os.path.exists(sock_path):
            if time.monotonic() > deadline:
                raise LabError(f"rsyslogd did not create {sock_path}")
            self._check_procs()
            time.sleep(0.05)
        self._devlog_socket = Path(sock_path)

    def _release_devlog_lock(self) -> None:
        lock, self._devlog_lock = self._devlog_lock, None
        if lock is not None:
            lock.close()  # closing the file releases the flock

    def _check_procs(self) -> None:
        for name, proc in self._procs:
            if proc.poll() is not None:
                out = (self.logdir / f"{name}.out").read_text(errors="replace")[-2000:]
                raise LabError(f"{name} exited with {proc.returncode}:\n{out}")

    # ---- postfix -----------------------------------------------------------------------

    def _postfix_cmd(self, *args: str) -> list[str]:
        cmd = [POSTFIX, "-c", str(self.etc), *args]
        if self.log_format == "syslog" and self.devlog_mode == "namespace":
            # the master and all its children see our rsyslog socket as /dev/log
            script = f'mount --bind "$1" {DEV_LOG} && shift && exec "$@"'
            cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                   "sh", str(self._devlog_socket), *cmd]  # fmt: skip
        return cmd

    def master_pid(self) -> int | None:
        try:
            return int((self.spool / "pid" / "master.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def start(self) -> Lab:
        reason = unavailable_reason()
        if reason:
            raise LabUnavailable(reason)
        self._stopped = False
        _LIVE_LABS.add(self)
        try:
            self._write_config()
            self._start_sinks()
            if self.faketime_spec:
                # computed now, so the log starts at (about) the requested time
                self.faketime = parse_faketime(self.faketime_spec)
            if self.log_format == "syslog":
                self._start_rsyslog()
            self.started_at = time.monotonic()
            _run(self._postfix_cmd("start"), env=self._env())
            self._postfix_started = True
            self._start_dovecot()
            self.wait_log(lambda c: c["started"] >= 1, "the master's start line", timeout=20)
        except BaseException:
            self.stop()
            raise
        self._say(f"postfix up: config {self.etc}, smtpd 127.0.0.1:{self.smtpd_port}")
        return self

    def daemon_pids(self, name: str) -> list[int]:
        """PIDs of the master's children running the named daemon (e.g. "qmgr")."""
        master = self.master_pid()
        pids = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                text = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            comm = text[text.index("(") + 1 : text.rindex(")")]
            ppid = int(text[text.rindex(")") + 2 :].split()[1])
            if comm == name and ppid == master:
                pids.append(int(entry.name))
        return pids

    def reload(self) -> None:
        """postfix reload, then wait until the old qmgr (old settings) has exited."""
        before = self.counter.poll()["reload"]
        old_qmgr = self.daemon_pids("qmgr")
        _run(self._postfix_cmd("reload"), env=self._env())
        self.wait_log(lambda c: c["reload"] > before, "the reload line", timeout=20)
        deadline = time.monotonic() + 20
        while any(_pid_alive(p) for p in old_qmgr):
            if time.monotonic() > deadline:
                raise LabError(f"qmgr {old_qmgr} did not exit after postfix reload")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            if self._postfix_started:
                pid = self.master_pid()
                _run(self._postfix_cmd("stop"), env=self._env(), check=False)
                if pid:
                    deadline = time.monotonic() + 20
                    while _pid_alive(pid) and time.monotonic() < deadline:
                        time.sleep(0.05)
                    if _pid_alive(pid):
                        _kill_pid(pid, timeout=2)
                self._postfix_started = False
            # rsyslogd last, so it writes the final lines
            for name, proc in sorted(self._procs, key=lambda p: p[0] == "rsyslogd"):
                if proc.poll() is None:
                    if name == "rsyslogd":
                        time.sleep(0.3)
                    _kill_pid(proc.pid)
                    with contextlib.suppress(Exception):
                        proc.wait(timeout=5)
            self._procs.clear()
        finally:
            if self._made_devlog:
                # rsyslog unlinks its socket on exit; remove it if it did not
                with contextlib.suppress(FileNotFoundError):
                    if stat.S_ISSOCK(os.lstat(DEV_LOG).st_mode):
                        os.unlink(DEV_LOG)
                self._made_devlog = False
            self._release_devlog_lock()
            _LIVE_LABS.discard(self)

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- observing ---------------------------------------------------------------------

    def wait_log(self, cond: Any, what: str, timeout: float = 60) -> Counter:
        deadline = time.monotonic() + timeout
        while True:
            counts = self.counter.poll()
            if counts["fatal"]:
                raise LabError(f"Postfix logged a fatal error: {self.counter.fatal_line}")
            if cond(counts):
                return counts
            if time.monotonic() > deadline:
                raise LabError(f"timed out after {timeout}s waiting for {what}; counts {dict(counts)}")
            self._check_procs()
            time.sleep(0.1)

    def postqueue_json(self) -> list[dict[str, Any]]:
        proc = _run([POSTQUEUE, "-c", str(self.etc), "-j"])
        return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]

    def flush(self) -> None:
        _run([POSTQUEUE, "-c", str(self.etc), "-f"])

    # ---- sending -----------------------------------------------------------------------

    def _connect(self, ip: str, helo: str = "") -> smtplib.SMTP:
        s = smtplib.SMTP(timeout=60)
        s.source_address = (ip, 0)
        s.connect("127.0.0.1", self.smtpd_port)
        s.ehlo(helo or f"client{ip.rsplit('.', 1)[1]}.lab-clients.test")
        return s

    @staticmethod
    def _message_bytes(m: Msg, n: int) -> bytes:
        body = "".join(f"line {k} of a lab message body\r\n" for k in range(3 + n % 7))
        return (
            f"From: <{m.sender}>\r\nTo: {', '.join(f'<{r}>' for r in m.rcpts)}\r\n"
            f"Subject: {m.subject}\r\nMessage-ID: {m.message_id}\r\n"
            f"Date: {formatdate(localtime=False)}\r\n\r\n{body}"
        ).encode()

    def send_batch(self, msgs: list[Msg]) -> None:
        """Send messages sharing one source IP, EHLO name and login over one SMTP connection."""
        if not msgs:
            return
        first = msgs[0]
        s = self._connect(first.ip, first.helo)
        try:
            if first.auth:
                user, password, method = first.auth
                s.user, s.password = user, password
                s.auth(method, getattr(s, f"auth_{method.lower()}"))
            for n, m in enumerate(msgs):
                data = self._message_bytes(m, n)
                try:
                    refused = s.sendmail(m.sender, m.rcpts, data)
                except smtplib.SMTPDataError as exc:
                    if m.accepted:
                        raise LabError(f"{m.category}: DATA refused: {exc}") from exc
                    continue
                if not m.accepted:
                    raise LabError(f"{m.category}: expected a reject at end of DATA")
                if set(refused) != set(m.rejected_rcpts):
                    raise LabError(f"{m.category}: refused {refused}, planned {m.rejected_rcpts}")
        finally:
            with contextlib.suppress(Exception):
                s.quit()

    def send_pickup(self, m: Msg) -> None:
        data = self._message_bytes(m, 0)
        proc = subprocess.run(
            [SENDMAIL, "-C", str(self.etc), "-f", m.sender, "--", *m.rcpts],
            input=data, capture_output=True, env=self._env(), timeout=30,
        )  # fmt: skip
        if proc.returncode != 0:
            raise LabError(f"sendmail failed: {proc.stderr.decode(errors='replace')}")

    def send_rejected_rcpts(self, ip: str, attempts: list[tuple[str, str]]) -> None:
        """Each (sender, recipient) must be refused at RCPT; nothing is queued."""
        for chunk in _chunks(attempts, 50):
            s = self._connect(ip)
            try:
                for sender, rcpt in chunk:
                    try:
                        s.sendmail(sender, [rcpt], b"Subject: never sent\r\n\r\nx\r\n")
                    except smtplib.SMTPRecipientsRefused:
                        continue
                    raise LabError(f"{rcpt} from {ip} was accepted, expected a reject")
            finally:
                with contextlib.suppress(Exception):
                    s.quit()

    def send_rejected_senders(self, ip: str, senders: list[str]) -> None:
        s = self._connect(ip)
        try:
            for sender in senders:
                try:
                    s.sendmail(sender, ["r00@accept.test"], b"Subject: x\r\n\r\nx\r\n")
                except smtplib.SMTPSenderRefused:
                    continue
                raise LabError(f"sender {sender} was accepted, expected a reject at MAIL")
        finally:
            with contextlib.suppress(Exception):
                s.quit()

    def connect_blocked(self, ip: str) -> None:
        """One connection from a client that check_client_access rejects at CONNECT."""
        s = smtplib.SMTP(timeout=30)
        s.source_address = (ip, 0)
        try:
            code, _msg = s.connect("127.0.0.1", self.smtpd_port)
            code, _msg = s.ehlo(f"client{ip.rsplit('.', 1)[1]}.lab-clients.test")
            code, _msg = s.docmd("MAIL FROM:<probe@sender0.example>")
            if code < 400:
                raise LabError(f"client {ip} was not rejected (MAIL got {code})")
        except (smtplib.SMTPConnectError, smtplib.SMTPServerDisconnected):
            pass
        finally:
            with contextlib.suppress(Exception):
                s.quit()
            with contextlib.suppress(Exception):
                s.close()

    def fail_auth(self, ip: str, attempts: list[tuple[str, str]]) -> None:
        """Failed SASL logins (username, method) from ip, ten per connection."""
        for chunk in _chunks(attempts, 10):
            s = self._connect(ip)
            try:
                for user, method in chunk:
                    s.user, s.password = user, "wrong-" + user
                    try:
                        s.auth(method, getattr(s, f"auth_{method.lower()}"))
                    except smtplib.SMTPAuthenticationError:
                        continue
                    raise LabError(f"login {user} from {ip} succeeded, expected a failure")
            finally:
                with contextlib.suppress(Exception):
                    s.quit()


def _chunks(items: list[Any], n: int) -> list[list[Any]]:
    return [items[i : i + n] for i in range(0, len(items), max(1, n))]


# --------------------------------------------------------------------------------------------
# scenario


@dataclass
class LabResult:
    log_path: Path
    postqueue_path: Path  # JSON lines from "postqueue -j", taken while deferred mail is queued
    config_dir: Path
    truth: dict[str, Any]
    truth_path: Path
    messages_path: Path  # every planned message with its planned outcome per recipient
    lab_dir: Path
    log_format: str
    faketime: str | None  # the FAKETIME value used (relative offset), None without faketime
    seconds: float
    dovecot_log: Path

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in d.items() if k != "truth"}


def _send_all(lab: Lab, plan: Plan, msgs: list[Msg], workers: int, per_conn: int) -> None:
    batches: list[list[Msg]] = []
    groups: dict[tuple[str, Any, str], list[Msg]] = {}
    pickups = []
    for m in msgs:
        if m.via == "pickup":
            pickups.append(m)
        else:
            groups.setdefault((m.ip, m.auth, m.helo), []).append(m)
    for group in groups.values():
        # interleave categories a little: a batch holds consecutive plan entries
        batches.extend(_chunks(group, per_conn))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(lab.send_batch, b) for b in batches]
        futures += [pool.submit(lab.send_pickup, m) for m in pickups]
        for f in futures:
            f.result()


def _reject_and_auth_jobs(lab: Lab, plan: Plan) -> tuple[list[Any], list[Any]]:
    """(reject jobs, auth-failure jobs) as (function, args) pairs."""
    jobs: list[tuple[Any, tuple[Any, ...]]] = []
    if plan.relay_attempts:
        jobs.append((lab.send_rejected_rcpts, (IP_RELAY, plan.relay_attempts)))
    if plan.unknown_attempts:
        jobs.append((lab.send_rejected_rcpts, (IP_UNKNOWN, plan.unknown_attempts)))
    for chunk in _chunks(plan.blocked_senders, 50):
        jobs.append((lab.send_rejected_senders, (IP_BAD_SENDER, chunk)))
    for ip in plan.blocked_connections:
        jobs.append((lab.connect_blocked, (ip,)))
    auth_jobs: list[tuple[Any, tuple[Any, ...]]] = []
    by_ip: dict[str, list[tuple[str, str]]] = {}
    for ip, user, method in plan.auth_failures:
        by_ip.setdefault(ip, []).append((user, method))
    for ip, attempts in by_ip.items():
        for chunk in _chunks(attempts, AUTH_FAILURES_PER_CONNECTION):
            auth_jobs.append((lab.fail_auth, (ip, chunk)))
    return jobs, auth_jobs


# dovecot answers failed logins in batches every 500 ms (AUTH_FAILURE_DELAY_CHECK_MSECS),
# even with auth_failure_delay = 0, so one connection manages about 2 failures a second:
# many failures need many connections in parallel.
AUTH_FAILURES_PER_CONNECTION = 4
AUTH_WORKERS = 40


def _send_main(lab: Lab, plan: Plan, msgs: list[Msg], timeout: float = 60) -> None:
    """Send the main phase: messages, rejects and failed logins, all concurrently; then the
    guessed-password logins (auth_guess), once the log shows their IPs' failed logins."""
    sizes = plan.sizes
    jobs, auth_jobs = _reject_and_auth_jobs(lab, plan)
    guessed = [m for m in msgs if m.category == "auth_guess"]
    msgs = [m for m in msgs if m.category != "auth_guess"]
    with ThreadPoolExecutor(max_workers=AUTH_WORKERS) as auth_pool:
        auth_futures = [auth_pool.submit(fn, *args) for fn, args in auth_jobs]
        _send_all(lab, plan, msgs, sizes.workers, sizes.msgs_per_connection)
        with ThreadPoolExecutor(max_workers=max(1, sizes.workers)) as pool:
            for f in [pool.submit(fn, *args) for fn, args in jobs]:
                f.result()
        for f in auth_futures:
            f.result()
    if guessed:
        # the failures must be in the log before the successful login from the same IP
        fails = Counter(ip for ip, _u, _m in plan.auth_failures)
        want = {f"sasl_fail {m.ip}": fails[m.ip] for m in guessed}
        lab.wait_log(
            lambda c: all(c[k] >= n for k, n in want.items()),
            "the failed logins before the guessed ones",
            timeout,
        )
        for m in guessed:
            lab.send_batch([m])


def run_scenario(
    sizes: Sizes | dict[str, Any] | None = None,
    log_format: str = "maillog_file",
    faketime: str | None = None,
    *,
    workdir: str | os.PathLike[str] | None = None,
    devlog: str = "auto",
    verbose: bool = False,
    install: bool = True,
    min_seconds: float = 0,
) -> LabResult:
    """Run a whole scenario on a fresh private Postfix and return its log and ground truth.

    Phases: (1) expiry: with maximal_queue_lifetime=0 and bounce_queue_lifetime=0 the expiry
    messages are tried once, deferred, expired and returned to sender; then the lifetimes are
    restored and Postfix reloaded. (2) main: everything else is sent; the run waits until the
    log shows exactly the planned numbers of sent/deferred/bounced/expired lines and notices.
    (3) optional retry rounds (postqueue -f). (4) a postqueue -j snapshot (deferred and held
    mail still queued). (5) stop everything. Raises LabError when the log disagrees with the
    plan (a lab bug or an unexpected Postfix behaviour), so the truth returned is checked.

    ``min_seconds`` keeps Postfix running (idle) until that many seconds after it started, so
    that a faked clock started just before midnight surely crosses it.
    """
    sizes = Sizes.from_any(sizes)
    if install:
        ensure_packages()
    if workdir is None:
        workdir = tempfile.mkdtemp(prefix="postfixlab-")  # kept, for a look at the results
    plan = build_plan(sizes)
    truth = compute_truth(plan)
    started = time.monotonic()
    expire_msgs = [m for m in plan.messages if m.phase == "expire"]
    # Postfix reads maximal_queue_lifetime when qmgr starts: start with 0 for the expiry phase
    expiry = {"maximal_queue_lifetime": "0", "bounce_queue_lifetime": "0"} if expire_msgs else {}
    lab = Lab(
        workdir,
        log_format=log_format,
        faketime=faketime,
        devlog=devlog,
        blocked_client_ips=sizes.blocked_client_ips,
        overrides=expiry,
        verbose=verbose,
    )
    main_msgs = [m for m in plan.messages if m.phase == "main"]
    budget = 60 + len(plan.messages) / 50 + len(plan.auth_failures) / 100
    try:
        lab.start()
        expected = Counter()
        if expire_msgs:
            _send_all(lab, plan, expire_msgs, sizes.workers, sizes.msgs_per_connection)
            n = len(expire_msgs)
            expected.update(
                {"expired": n, "deferred": n, "notice": n, "sent": n}  # notices are delivered
            )
            lab.wait_log(_reached(expected), f"{n} expired messages and their notices", budget)
            lab.postconf(maximal_queue_lifetime="5d", bounce_queue_lifetime="5d")
            lab.reload()
        _send_main(lab, plan, main_msgs, budget)
        expected = Counter(
            {
                "sent": truth["delivered"] + truth["filter_hops"],
                "deferred": truth["deferrals"] - sizes.retry_rounds * _deferred_rcpts(plan),
                "bounced": truth["bounced"],
                "expired": truth["expired"],
                "notice": truth["notifications"],
                "sasl_fail": truth["auth_failures"]["total"],
                "sasl_ok": truth["auth_successes"]["total"],
            }
        )
        expected.update({f"sasl_fail {ip}": n for ip, n in truth["auth_failures"]["by_ip"].items()})
        expected.update({f"sasl_ok {u}": n for u, n in truth["auth_successes"]["by_username"].items()})
        if sizes.hostile:
            expected["hostile_helo"] = truth["hostile"]["rejects"]  # one reject line each
        lab.wait_log(_reached(expected), "the planned delivery results", budget)
        for _ in range(sizes.retry_rounds):
            expected["deferred"] += _deferred_rcpts(plan)
            lab.flush()
            lab.wait_log(_reached(expected), "a retry round", budget)
        _wait_queue_settled(lab, truth, timeout=30)
        idle = min_seconds - (time.monotonic() - lab.started_at)
        if idle > 0:
            time.sleep(idle)
        time.sleep(0.5)  # anything unplanned would show up now
        counts = lab.counter.poll()
        extra = {k: (counts[k], v) for k, v in expected.items() if counts[k] != v}
        if extra:
            raise LabError(f"log counts differ from the plan (found, planned): {extra}")
        snapshot = lab.postqueue_json()
        postqueue_path = lab.logdir / "postqueue.json"
        postqueue_path.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in snapshot))
    finally:
        lab.stop()
    truth_path = lab.logdir / "truth.json"
    truth_path.write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    messages_path = lab.logdir / "messages.json"
    messages_path.write_text(json.dumps([m.to_dict() for m in plan.messages], indent=0) + "\n")
    return LabResult(
        log_path=lab.log_path,
        postqueue_path=postqueue_path,
        config_dir=lab.etc,
        truth=truth,
        truth_path=truth_path,
        messages_path=messages_path,
        lab_dir=lab.root,
        log_format=log_format,
        faketime=lab.faketime,
        seconds=round(time.monotonic() - started, 1),
        dovecot_log=lab.logdir / "dovecot.log",
    )


def _deferred_rcpts(plan: Plan) -> int:
    return sum(1 for m in plan.messages for o in m.outcome.values() if o == DEFERRED)


def _reached(expected: Counter) -> Any:
    def cond(counts: Counter) -> bool:
        over = {k: counts[k] for k, v in expected.items() if counts[k] > v}
        if over:
            raise LabError(f"more log lines than planned: {over} > {dict(expected)}")
        return all(counts[k] >= v for k, v in expected.items())

    return cond


def _wait_queue_settled(lab: Lab, truth: dict[str, Any], timeout: float) -> None:
    want = truth["queue_at_end"]
    deadline = time.monotonic() + timeout
    while True:
        queues = Counter(e["queue_name"] for e in lab.postqueue_json())
        if (
            queues["deferred"] == want["deferred"]
            and queues["hold"] == want["hold"]
            and sum(queues.values()) == want["deferred"] + want["hold"]
        ):
            return
        if time.monotonic() > deadline:
            raise LabError(f"queue did not settle: {dict(queues)}, planned {want}")
        time.sleep(0.2)


# --------------------------------------------------------------------------------------------
# pflogsumm

_GRAND_KEYS = {
    "received": "received",
    "delivered": "delivered",
    "forwarded": "forwarded",
    "deferred": "deferred",
    "bounced": "bounced",
    "rejected": "rejected",
    "reject warnings": "reject_warnings",
    "held": "held",
    "discarded": "discarded",
    "bytes received": "bytes_received",
    "bytes delivered": "bytes_delivered",
    "senders": "senders",
    "sending hosts/domains": "sending_hosts_domains",
    "recipients": "recipients",
    "recipient hosts/domains": "recipient_hosts_domains",
}
_UNITS = {"": 1, "k": 1024, "m": 1024 * 1024}
# "    850   deferred  (1650  deferrals)", "  16774k  bytes received", "  14   rejected (17%)":
# a number, then its unit ("k", "m" or a space), then the label
_GRAND_RE = re.compile(r"^\s*(\d+)([km]?)\s+([a-z /]+?)(?:\s+\((\d+)([km]?)\s+deferrals\)|\s+\(\d+%\))?\s*$")


def parse_pflogsumm_totals(text: str) -> dict[str, int]:
    """Parse the "Grand Totals" section of pflogsumm's output.

    pflogsumm 1.1.5 prints a number above 512k (524288) divided by 1024 with a "k", and above
    512m divided by 1048576 with an "m", truncated to an integer (printf %d); it has no
    option for exact numbers. Such values are multiplied back, so they are exact only to the
    unit. ``deferrals`` comes from "(N deferrals)"; it is 0 when pflogsumm omits it.
    """
    out: dict[str, int] = {v: 0 for v in _GRAND_KEYS.values()}
    out["deferrals"] = 0
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Grand Totals")
    except StopIteration as exc:
        raise ValueError("no 'Grand Totals' section in pflogsumm output") from exc
    seen = 0
    for line in lines[start + 1 :]:
        if seen and line[:1].isalpha() and line.strip() != "messages":
            break  # the next section ("Per-Hour Traffic Summary", "smtpd", ...)
        m = _GRAND_RE.match(line)
        if not m:
            continue
        label = m.group(3).strip()
        key = _GRAND_KEYS.get(label)
        if key is None:
            continue
        out[key] = int(m.group(1)) * _UNITS[m.group(2)]
        if m.group(4) is not None:
            out["deferrals"] = int(m.group(4)) * _UNITS[m.group(5)]
        seen += 1
    if not seen:
        raise ValueError("empty 'Grand Totals' section in pflogsumm output")
    return out


def run_pflogsumm(log_path: str | os.PathLike[str], *args: str) -> dict[str, int]:
    """Run /usr/sbin/pflogsumm on a log and return its Grand Totals (see
    :func:`parse_pflogsumm_totals`). Extra args are passed to pflogsumm."""
    proc = _run([PFLOGSUMM, *args, str(log_path)], timeout=3600)
    return parse_pflogsumm_totals(proc.stdout)


# --------------------------------------------------------------------------------------------
# command line


def stop_leftovers(lab_dir: str | os.PathLike[str]) -> list[str]:
    """Stop what a lab in lab_dir left running after its Python process died (SIGKILL ...).

    Stops the private Postfix with "postfix -c DIR/etc stop", kills the helpers listed in
    DIR/log/pids whose command line still mentions DIR (or is smtp-sink), and removes a
    /dev/log that this lab created and nobody listens on any more. Returns what it did.
    """
    root = Path(lab_dir).resolve()
    done = []
    if (root / "spool" / "pid" / "master.pid").exists():
        proc = _run([POSTFIX, "-c", str(root / "etc"), "stop"], check=False)
        done.append(f"postfix stop: {proc.returncode}")
    pids = root / "log" / "pids"
    if pids.exists():
        for line in pids.read_text().split("\n"):
            if not line.strip():
                continue
            pid_text, name = line.split(" ", 1)
            try:
                cmdline = Path(f"/proc/{pid_text}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if str(root).encode() in cmdline or b"smtp-sink" in cmdline:
                _kill_pid(int(pid_text))
                done.append(f"killed {name} {pid_text}")
    if (root / "log" / "devlog-created").exists() and os.path.lexists(DEV_LOG):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            try:
                s.connect(DEV_LOG)
            except ConnectionRefusedError:
                os.unlink(DEV_LOG)  # a stale socket of ours: nobody listens
                done.append(f"removed stale {DEV_LOG}")
            except OSError:
                pass
    return done


def _main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["filter"]:  # filter LISTEN_PORT FORWARD_PORT [LAB_DIR, for "stop"]
        serve_filter(int(argv[1]), int(argv[2]))
        return 0
    if argv[:1] == ["stop"]:
        if len(argv) != 2:
            print("usage: postfixlab.py stop LAB_DIR", file=sys.stderr)
            return 2
        print("\n".join(stop_leftovers(argv[1])) or "nothing left running")
        return 0
    ap = argparse.ArgumentParser(
        description="Run a mail-lab scenario on a private Postfix. "
        "Also: 'postfixlab.py stop LAB_DIR' stops what a crashed run left behind."
    )
    ap.add_argument("--size", choices=("tiny", "small", "large"), default="small")
    ap.add_argument("--sizes-json", help="JSON object overriding scenario sizes")
    ap.add_argument("--log-format", choices=("maillog_file", "syslog"), default="maillog_file")
    ap.add_argument("--faketime", help='e.g. "@2025-12-31 23:59:45" or "-30d"')
    ap.add_argument("--workdir", help="directory for the lab (default: a new /tmp/postfixlab-*)")
    ap.add_argument("--pflogsumm", action="store_true", help="print pflogsumm's grand totals")
    ap.add_argument("-v", "--verbose", action="store_true")
    ns = ap.parse_args(argv)
    sizes = getattr(Sizes, ns.size)()
    if ns.sizes_json:
        sizes = sizes.updated(json.loads(ns.sizes_json))
    res = run_scenario(sizes, ns.log_format, ns.faketime, workdir=ns.workdir, verbose=ns.verbose)
    print(json.dumps(res.to_dict(), indent=1))
    print(json.dumps(res.truth, indent=1))
    if ns.pflogsumm:
        print(json.dumps(run_pflogsumm(res.log_path), indent=1))
    return 0


# --------------------------------------------------------------------------------------------
# the queue a lab leaves behind


class RunningAgain:
    """A finished lab's Postfix started again on the queue it left (deferred and held mail),
    to add mail to that queue (sendmail needs pickup, cleanup and qmgr to queue it) and to
    read it the way a running system is read (``postqueue -j`` asks the showq service; with
    Postfix stopped, root's postqueue runs showq itself).

    Use as a context manager; ``settings`` change main.cf first. Only for labs logged with
    maillog_file (a syslog lab's rsyslogd is gone). The helpers (sinks, filter, dovecot) stay
    stopped, and the leftover deferred mail is not retried while Postfix runs: each deferred
    file's next-retry time (its mtime, which qmgr reads) is set a day ahead first.
    """

    def __init__(self, result: LabResult, **settings: str) -> None:
        if result.log_format != "maillog_file":
            raise LabError("RunningAgain needs a lab logged with maillog_file")
        self.etc = result.config_dir
        self.spool = result.lab_dir / "spool"
        self.settings = settings
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "MAIL_CONFIG": str(self.etc)}
        self._master: int | None = None

    def run(self, *cmd: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """A Postfix command run for this instance (its MAIL_CONFIG); raises when it fails."""
        proc = subprocess.run(list(cmd), env=self.env, input=input, capture_output=True, timeout=60)
        if proc.returncode != 0:
            raise LabError(
                f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}"
            )
        return proc

    def postconf(self, **settings: str) -> None:
        """Change main.cf; ``reload`` makes the running instance read it."""
        self.run(POSTCONF, "-c", str(self.etc), "-e", *(f"{k}={v}" for k, v in settings.items()))
        past = time.time() - 60  # see Lab._age_config
        for name in ("main.cf", "master.cf"):
            os.utime(self.etc / name, (past, past))

    def reload(self) -> None:
        self.run(POSTFIX, "-c", str(self.etc), "reload")

    def __enter__(self) -> RunningAgain:
        later = time.time() + 86400
        for path in (self.spool / "deferred").rglob("*"):
            if path.is_file():
                os.utime(path, (later, later))
        if self.settings:
            self.postconf(**self.settings)
        self.run(POSTFIX, "-c", str(self.etc), "start")
        atexit.register(self.stop)
        deadline = time.monotonic() + 10
        while self._master is None:
            with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
                self._master = int((self.spool / "pid" / "master.pid").read_text().split()[0])
            if self._master is None and time.monotonic() > deadline:
                raise LabError(f"no master.pid in {self.spool} after postfix start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """postfix stop, then wait for the master to exit (kill it after 20 s); idempotent."""
        atexit.unregister(self.stop)
        master, self._master = self._master, None
        if master is None:
            return
        subprocess.run([POSTFIX, "-c", str(self.etc), "stop"], env=self.env, capture_output=True, timeout=60)
        deadline = time.monotonic() + 20
        while _pid_alive(master) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _pid_alive(master):
            _kill_pid(master, timeout=2)


if __name__ == "__main__":
    sys.exit(_main())
