"""rbl: lookups against a real DNS server (dnsmasq on loopback) serving a made-up blocklist zone."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postlens.errors import UsageError
from postlens.rbl import DEFAULT_ZONES, Listing, check, query_name
from tests.conftest import need

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
ZONE = "bl.test"
REFUSED_ZONE = "refused.test"  # dnsmasq has no upstream for it, so it answers REFUSED

LISTED = "127.0.0.2"  # RFC 5782: every IPv4 list must list 127.0.0.2
LISTED_V6 = "2001:db8::1"
NOT_LISTED = "192.0.2.1"
PUBLIC_RESOLVER = "192.0.2.99"  # Spamhaus's answer to a query through a public resolver
REWRITTEN = "192.0.2.66"  # a resolver that answers with an address of its own


def need_dnspython() -> None:
    need(importlib.util.find_spec("dns") is not None, "dnspython is not installed (pip install '.[dns]')")


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (dnsmasq listens on both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port


def answered(port: int) -> bool:
    import dns.exception
    import dns.message
    import dns.query

    try:
        dns.query.udp(dns.message.make_query(f"2.0.0.127.{ZONE}.", "A"), "127.0.0.1", timeout=0.2, port=port)
    except (dns.exception.Timeout, OSError):
        return False
    return True


@pytest.fixture(scope="module")
def dnsbl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A dnsmasq serving zone bl.test on 127.0.0.1; yields its port."""
    need_dnspython()
    need(os.path.exists(DNSMASQ), "dnsmasq is not installed (apt-get install dnsmasq-base)")
    tmp = tmp_path_factory.mktemp("dnsmasq")
    port = free_port()
    records = {
        query_name(LISTED, ZONE): ["127.0.0.2", "127.0.0.10"],
        query_name(LISTED_V6, ZONE): ["127.0.0.4"],
        query_name(PUBLIC_RESOLVER, ZONE): ["127.255.255.254"],
        query_name(REWRITTEN, ZONE): ["198.51.100.1"],
    }
    command = [
        DNSMASQ,
        "--keep-in-foreground",
        "--conf-file=/dev/null",  # not the machine's /etc/dnsmasq.conf
        "--no-resolv",
        "--no-hosts",
        f"--port={port}",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        f"--local=/{ZONE}/",  # NXDOMAIN for names it does not hold
        f"--pid-file={tmp / 'dnsmasq.pid'}",
        f"--log-facility={tmp / 'dnsmasq.log'}",
        *(f"--host-record={name.rstrip('.')},{a}" for name, addrs in records.items() for a in addrs),
        f"--txt-record={query_name(LISTED, ZONE).rstrip('.')},listed for testing",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not answered(port):
            if proc.poll() is not None:
                pytest.fail(f"dnsmasq exited: {proc.stderr.read() if proc.stderr else ''}")
            if time.monotonic() > deadline:
                pytest.fail(f"dnsmasq did not answer on port {port}")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_query_names_follow_rfc_5782() -> None:
    assert query_name("192.0.2.99", "bl.example") == "99.2.0.192.bl.example."
    assert query_name("2001:db8:1:2:3:4:567:89ab", "bl.example") == (
        "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.example."
    )


def test_check_reads_listed_not_listed_and_refusals(dnsbl: int) -> None:
    ips = [LISTED, NOT_LISTED, PUBLIC_RESOLVER, REWRITTEN, LISTED_V6]
    results = check(ips, [ZONE], nameserver="127.0.0.1", port=dnsbl, timeout=2.0)
    by_ip = {r.ip: r for r in results}
    assert [r.ip for r in results] == ips
    assert by_ip[LISTED] == Listing(LISTED, ZONE, True, ("127.0.0.2", "127.0.0.10"), "listed for testing")
    assert by_ip[LISTED_V6] == Listing(LISTED_V6, ZONE, True, ("127.0.0.4",))
    assert by_ip[NOT_LISTED] == Listing(NOT_LISTED, ZONE, False)
    refused = by_ip[PUBLIC_RESOLVER]
    assert (refused.listed, refused.answers) == (False, ("127.255.255.254",))
    assert "127.255.255.254 (queried through a public or open resolver)" in refused.error
    assert "not a listing" in refused.error
    stray = by_ip[REWRITTEN]
    assert (stray.listed, stray.answers) == (False, ("198.51.100.1",))
    assert "outside 127.0.0.0/8" in stray.error


def test_results_come_in_the_order_asked_without_repeats(dnsbl: int) -> None:
    ips = [NOT_LISTED, LISTED, " 127.0.0.2 ", "2001:DB8::1"]
    zones = [ZONE, REFUSED_ZONE, f"{ZONE}.", " "]
    results = check(ips, zones, nameserver="127.0.0.1", port=dnsbl, timeout=2.0)
    assert [(r.ip, r.zone) for r in results] == [
        (NOT_LISTED, ZONE),
        (NOT_LISTED, REFUSED_ZONE),
        (LISTED, ZONE),
        (LISTED, REFUSED_ZONE),
        (LISTED_V6, ZONE),
        (LISTED_V6, REFUSED_ZONE),
    ]
    for result in results:
        assert result.listed == (result.zone == ZONE and result.ip != NOT_LISTED)
        assert ("REFUSED" in result.error) == (result.zone == REFUSED_ZONE)


def test_no_server_answering_is_an_error_not_an_exception() -> None:
    need_dnspython()
    started = time.monotonic()
    (result,) = check([LISTED], [ZONE], nameserver="127.0.0.1", port=free_port(), timeout=1.0)
    assert time.monotonic() - started < 5
    assert not result.listed
    assert result.error


def test_bad_input_raises() -> None:
    need_dnspython()
    with pytest.raises(ValueError, match=re.escape("not an IP address: 'mail.example.com'")):
        check(["mail.example.com"], [ZONE], nameserver="127.0.0.1")
    with pytest.raises(ValueError, match="not an IP address: 'localhost'"):
        check([LISTED], [ZONE], nameserver="localhost")
    assert check([], [ZONE]) == []
    assert check([LISTED], []) == []


def test_default_zones_are_plain_zone_names() -> None:
    assert "zen.spamhaus.org" in DEFAULT_ZONES
    assert all(z == z.strip().strip(".").lower() and "." in z for z in DEFAULT_ZONES)
    assert len(set(DEFAULT_ZONES)) == len(DEFAULT_ZONES)


def test_without_dnspython_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dns", None)  # import dns now fails as if it were not installed
    with pytest.raises(UsageError, match=re.escape("needs dnspython: pip install 'postlens[dns]'")):
        check([LISTED])


def test_the_command_says_listed_with_exit_code_5(dnsbl: int, tmp_path: Path) -> None:
    base = [sys.executable, "-m", "postlens", "security", "--check-rbl", "--zone", ZONE,
            "--nameserver", f"127.0.0.1:{dnsbl}"]  # fmt: skip
    listed = subprocess.run([*base, LISTED, NOT_LISTED], capture_output=True, text=True)
    assert listed.returncode == 5, listed.stderr
    assert "LISTED" in listed.stdout and "not listed" in listed.stdout
    clean = subprocess.run([*base, "--format", "json", NOT_LISTED], capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["listings"] == [
        {"ip": NOT_LISTED, "zone": ZONE, "listed": False, "answers": [], "text": "", "error": ""}
    ]
    # our own addresses from the settings file when none are given
    conf = tmp_path / "config.toml"
    conf.write_text(f'[security]\nown_ips = ["{LISTED}"]\n')
    configured = subprocess.run([*base, "--config", str(conf)], capture_output=True, text=True)
    assert configured.returncode == 5 and LISTED in configured.stdout
    bad = subprocess.run([*base, "not-an-ip"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr


def test_the_nagios_check_is_critical_when_listed(dnsbl: int) -> None:
    base = [
        sys.executable,
        "-m",
        "postlens",
        "check",
        "rbl",
        "--zone",
        ZONE,
        "--nameserver",
        f"127.0.0.1:{dnsbl}",
    ]

    def run(*args: str) -> tuple[int, str]:
        done = subprocess.run([*base, *args], capture_output=True, text=True)
        assert done.stderr == "" and done.stdout.count("\n") == 1, (done.stdout, done.stderr)
        return done.returncode, done.stdout

    code, out = run(NOT_LISTED)
    assert code == 0 and out.startswith("POSTFIX RBL OK: 1 address listed on none of 1 blocklists")
    assert "'listed'=0;;0;0" in out and "'lookups'=1;;;0" in out
    code, out = run(LISTED, NOT_LISTED)
    assert code == 2 and f"listed: {LISTED} on {ZONE}" in out
    code, out = run("-w", "0", "-c", "5", LISTED)
    assert code == 1
    code, out = run(PUBLIC_RESOLVER)  # the list refused to answer: we do not know
    assert code == 3 and "no answer from" in out
    code, out = run("not-an-ip")
    assert code == 3 and "rbl: " in out and "--check-rbl" not in out
    code, out = run()
    assert code == 3 and "give our own IP addresses" in out


def test_watch_tells_when_we_get_listed(dnsbl: int, tmp_path: Path) -> None:
    """A blocklisted alert rule: watch asks the lists at start and every window."""
    conf = tmp_path / "config.toml"
    conf.write_text(
        f'[security]\nown_ips = ["{LISTED}", "{NOT_LISTED}"]\n[rbl]\nzones = ["{ZONE}"]\n'
        f'nameserver = "127.0.0.1:{dnsbl}"\n[[alert]]\nname = "blocklisted"\nkind = "blocklisted"\n'
        'severity = "critical"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "postlens", "watch", "-", "--no-queue", "--no-view", "--config", str(conf),
         "--state", str(tmp_path / "state.json")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    try:
        line = proc.stdout.readline()  # the first tick after the lookup
    finally:
        proc.stdin.close()  # standard input ends: so does the watch
        proc.wait(timeout=60)
    assert f"{LISTED} is listed on {ZONE}" in line and "critical" in line.lower(), line
    assert NOT_LISTED not in line
    no_ips = tmp_path / "no-ips.toml"
    no_ips.write_text('[[alert]]\nname = "blocklisted"\nkind = "blocklisted"\n')
    refused = subprocess.run(
        [sys.executable, "-m", "postlens", "watch", "-", "--no-queue", "--no-view", "--config", str(no_ips)],
        input="", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "own_ips in [security]" in refused.stderr
