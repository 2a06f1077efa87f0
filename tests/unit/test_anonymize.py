"""postlens anonymize: keyed pseudonyms that keep a Postfix log valid and its counts equal."""

from __future__ import annotations

import bz2
import gzip
import ipaddress
import lzma
import os
import random
import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import postlens
from postlens.analyses import normalize as norm
from postlens.anonymize import AnonymizeOptions, Pseudonyms, Rewriter, load_key
from postlens.cli import main
from postlens.events import EventParser, QueueEvent
from postlens.history import stored_lines
from postlens.lines import LineParser, YearGuess, zone
from tests.conftest import DATA

MIXED = DATA / "mixed.log"
KEY = b"k" * 32

# Lines of what the mixed log lacks: Dovecot with sessions, IPv6, body checks, local(8)
# replies, DNS errors, amavis, opendkim, postgrey, the unknown user of a reply.
EXTRA = """\
Nov  5 17:00:00 mx postfix/smtpd[400]: connect from mail.example.org[2001:db8:5::25]
Nov  5 17:00:00 mx postfix/smtpd[400]: 7A7B7C7D7E: client=mail.example.org[2001:db8:5::25], sasl_method=LOGIN, sasl_username=judy@example.org
Nov  5 17:00:00 mx postfix/cleanup[101]: 7A7B7C7D7E: warning: body Call me at +1 555 0100, Judy from mail.example.org[2001:db8:5::25]; from=<judy@example.org> to=<kim@example.com> proto=ESMTP helo=<[IPv6:2001:db8:5::25]>
Nov  5 17:00:00 mx postfix/cleanup[101]: 7A7B7C7D7E: message-id=<two words@example.org>
Nov  5 17:00:00 mx postfix/qmgr[102]: 7A7B7C7D7E: from=<judy@example.org>, size=800, nrcpt=2 (queue active)
Nov  5 17:00:01 mx postfix/local[121]: 7A7B7C7D7E: to=<leo@mx.example.net>, relay=local, delay=0.1, delays=0/0/0/0.1, dsn=5.1.1, status=bounced (unknown user: "leo")
Nov  5 17:00:01 mx postfix/smtp[104]: 7A7B7C7D7E: to=<kim@example.com>, relay=none, delay=0.1, delays=0/0/0.1/0, dsn=4.4.3, status=deferred (Host or domain name not found. Name service error for name=example.com type=MX: Host not found, try again)
Nov  5 17:00:02 mx postfix/smtpd[400]: warning: hostname client7.example.net does not resolve to address 198.51.100.77: Name or service not known
Nov  5 17:00:02 mx postfix/smtpd[400]: NOQUEUE: reject: RCPT from unknown[198.51.100.77]: 550 5.1.1 <mallory>: Recipient address rejected: need fully-qualified address; from=<judy@example.org> to=<mallory> proto=ESMTP helo=<laptop-of-mallory>
Nov  5 17:00:03 mx dovecot: auth: passwd-file(nick,198.51.100.78,<abcd>): unknown user
Nov  5 17:00:03 mx dovecot: lmtp(olga@example.org)<500><Q2lZKlD5xWU>: msgid=<m9@example.org>: saved mail to INBOX
Nov  5 17:00:04 mx dovecot: pop3-login: Login: user=<Pat>, method=PLAIN, rip=2001:db8:9::1, lip=::1, mpid=501, session=<DFZ4YeCB1MrAqA1j>
Nov  5 17:00:05 mx opendkim[600]: 7A7B7C7D7E: mail.example.org [2001:db8:5::25] not internal
Nov  5 17:00:06 mx postfix/smtpd[400]: 8A8B8C8D8E: client=unknown[198.51.100.80], sasl_method=PLAIN, sasl_username=john doe
Nov  5 17:00:07 mx postfix/smtpd[400]: warning: unknown[198.51.100.80]: SASL PLAIN authentication failed: authentication failure, sasl_username=x;y<z>
Nov  5 17:00:05 mx postgrey[601]: action=greylist, reason=new, client_name=mail.example.org, client_address=198.51.100.79/32, sender=quinn@example.org, recipient=kim@example.com
"""
# Every value above and in the mixed log that must not survive, by kind.
SECRETS = {
    "address": ("alice@example.net", "Alice@Example.NET", "bob@example.com", "carol@example.org", "dave",
                "spam@example.biz", "x@elsewhere.example", "judy@example.org", "kim@example.com",
                "leo@mx.example.net", "mallory", "quinn@example.org", "olga@example.org"),
    "ip": ("192.0.2.10", "198.51.100.5", "203.0.113.7", "192.0.2.66", "192.0.2.90", "2001:db8:5::25",
           "198.51.100.77", "198.51.100.78", "2001:db8:9::1", "198.51.100.79", "203.0.113.9", "198.51.100.80"),
    "name": ("client.example.net", "mx.example.com", "mx.example.org", "evil.example", "mail.example.org",
             "client7.example.net", "laptop-of-mallory", "mx.example.biz", "example.com"),
    "user": ("alice", "admin", "nick", "Pat", "leo", "john doe", "doe", "x;y<z>", "y<z>"),
    "text": ("buy now", "Call me at +1 555 0100", "two words", "DFZ4YeCB1MrAqA1j", "Q2lZKlD5xWU"),
}  # fmt: skip


def _stand_alone(value: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w.@+-])" + re.escape(value) + r"(?![\w.@+=-])")


def _parse(text: str) -> list[Any]:
    utc = zone("UTC")
    parser, events = LineParser(YearGuess(2026, None, utc), utc), EventParser()
    out = []
    for raw in text.splitlines():
        line = parser.parse(raw)
        out.append(None if line is None else events.parse(line))
    return out


def _anonymize(tmp_path: Path, *logs: Path, key: bytes = KEY, name: str = "out.log", **options: Any) -> str:
    out = tmp_path / name
    _, problems = postlens.anonymize([str(p) for p in logs], str(out), key=_key(tmp_path, key), **options)
    assert problems == []
    return out.read_text()


def _key(tmp_path: Path, key: bytes) -> str:
    path = tmp_path / f"key-{key.hex()[:8]}"
    if not path.exists():
        path.write_bytes(key)
        path.chmod(0o600)
    return str(path)


@pytest.fixture
def logs(tmp_path: Path) -> list[Path]:
    """The mixed log and the extra lines as a rotated pair, read in this order."""
    older, newer = tmp_path / "mail.log.1", tmp_path / "mail.log"
    older.write_text(MIXED.read_text())
    newer.write_text(EXTRA)
    return [older, newer]


def test_every_kind_of_value_is_replaced(tmp_path: Path, logs: list[Path]) -> None:
    out = _anonymize(tmp_path, *logs)
    payloads = "\n".join(line.split(": ", 1)[1] for line in out.splitlines())
    for kind, values in SECRETS.items():
        for value in values:
            assert not _stand_alone(value).search(payloads), (kind, value)
    assert "uid=1000 " not in out  # a person's uid; system ones (below 1000) stay
    # what names no one stays: queue IDs, loopback relays, transports, replies, the DNSBL
    for kept in ("3A1B2C3D4E", "relay=127.0.0.1[127.0.0.1]:10024", "client=localhost[127.0.0.1]",
                 "relay=local", "status=deferred", "dsn=5.1.1", "zen.example-dnsbl.org as 127.0.0.2",
                 "lip=::1", "unknown[", "Recipient address rejected: need fully-qualified address"):  # fmt: skip
        assert kept in out, kept


def test_pseudonyms_have_the_shape_of_what_they_replace(tmp_path: Path, logs: list[Path]) -> None:
    p = Pseudonyms(KEY)
    assert re.fullmatch(r"[a-z2-7]{10}@d[a-z2-7]{10}\.com", p.address("bob@example.com"))
    assert re.fullmatch(r"h[a-z2-7]{10}\.d[a-z2-7]{10}\.com", p.name("mx.example.com"))
    domain = p.address("bob@example.com").split("@")[1]
    assert p.name("mx.example.com").endswith("." + domain)  # one domain, one pseudonym
    assert re.fullmatch(r"u[a-z2-7]{10}", p.user("alice"))
    assert p.user("judy@example.org") == p.address("judy@example.org")
    assert re.fullmatch(r"m[a-z2-7]{10}@d[a-z2-7]{10}\.net", p.message_id("m1@example.net"))
    assert p.header("Subject: buy now") == "Subject: " + p.text("buy now")
    assert ipaddress.ip_address(p.ip("192.0.2.10") or "").version == 4
    assert ipaddress.ip_address(p.ip("2001:db8::1") or "").version == 6
    assert (p.ip("::ffff:192.0.2.10") or "") == "::ffff:" + (p.ip("192.0.2.10") or "")
    assert p.ip("not an address") is None
    assert p.helo("[192.0.2.10]") == "[" + (p.ip("192.0.2.10") or "") + "]"
    assert p.address("") == "" and p.name("unknown") == "unknown" and p.name("localhost") == "localhost"


def test_the_output_is_the_same_log(tmp_path: Path, logs: list[Path]) -> None:
    """Line for line the same events, of the same messages, at the same times."""
    before = _parse("".join(p.read_text() for p in logs))
    after = _parse(_anonymize(tmp_path, *logs))
    assert len(before) == len(after)
    for b, a in zip(before, after, strict=True):
        assert type(a) is type(b)
        if isinstance(b, QueueEvent):
            assert a.qid == b.qid and a.line.ts == b.line.ts and a.line.program == b.line.program


def test_the_totals_stay_the_same(tmp_path: Path, logs: list[Path]) -> None:
    out = tmp_path / "out.log"
    out.write_text(_anonymize(tmp_path, *logs))
    before, _ = postlens.report([str(p) for p in logs], year=2026, tz="UTC")
    after, _ = postlens.report([str(out)], year=2026, tz="UTC")
    assert after["totals"] == before["totals"]
    assert after["pflogsumm"] == before["pflogsumm"]


def test_same_key_same_pseudonyms_in_every_file_and_run(tmp_path: Path, logs: list[Path]) -> None:
    whole = _anonymize(tmp_path, *logs, name="whole.log")
    assert _anonymize(tmp_path, *logs, name="again.log") == whole
    # each file alone gives the lines it gives as part of the whole
    first, second = _anonymize(tmp_path, logs[0], name="a.log"), _anonymize(tmp_path, logs[1], name="b.log")
    assert first + second == whole
    judy = Pseudonyms(KEY).address("judy@example.org")
    assert judy in second and Pseudonyms(KEY).address("judy@example.org") == judy


def test_a_different_key_gives_different_pseudonyms(tmp_path: Path, logs: list[Path]) -> None:
    one, other = Pseudonyms(KEY), Pseudonyms(b"o" * 32)
    for value in ("bob@example.com", "carol@example.org"):
        assert one.address(value) != other.address(value)
    assert one.name("mx.example.com") != other.name("mx.example.com")
    assert one.user("alice") != other.user("alice")
    assert one.ip("192.0.2.10") != other.ip("192.0.2.10")
    assert _anonymize(tmp_path, *logs, name="one.log") != _anonymize(tmp_path, *logs, key=b"o" * 32)


def _common_prefix(a: int, b: int, bits: int) -> int:
    return bits - (a ^ b).bit_length()


@pytest.mark.parametrize("bits", [32, 128])
def test_keep_prefix_keeps_exactly_the_shared_prefixes(bits: int) -> None:
    p = Pseudonyms(KEY, AnonymizeOptions(keep_prefix=True))
    rng = random.Random(bits)
    make = ipaddress.IPv4Address if bits == 32 else ipaddress.IPv6Address
    base = [rng.getrandbits(bits) | 1 << (bits - 1) for _ in range(30)]  # none in a kept network
    # neighbours of each: sharing 8 to bits-1 leading bits
    values = base + [b ^ (1 << rng.randrange(bits - 24)) for b in base]
    mapped = {v: int(make(p.ip(str(make(v))) or "")) for v in values}
    for a in values:
        for b in values:
            assert _common_prefix(mapped[a], mapped[b], bits) == _common_prefix(a, b, bits)


def test_kept_networks_stay_and_nothing_else_lands_in_them() -> None:
    for keep_prefix in (False, True):
        p = Pseudonyms(KEY, AnonymizeOptions(keep_prefix=keep_prefix, keep_nets=("10.1.0.0/16",)))
        assert p.ip("127.0.0.1") == "127.0.0.1" and p.ip("127.9.9.9") == "127.9.9.9"
        assert p.ip("::1") == "::1" and p.ip("10.1.2.3") == "10.1.2.3"
        assert p.ip("::ffff:127.0.0.1") == "::ffff:127.0.0.1"
        seen: set[str] = set()
        for n in range(3000):
            v4 = p.ip(str(ipaddress.IPv4Address(0x0B000000 + n * 7919)))  # 11.0.0.0 and up
            v6 = p.ip(str(ipaddress.IPv6Address((0x2001 << 112) + n)))
            assert v4 is not None and v6 is not None
            a4, a6 = ipaddress.IPv4Address(v4), ipaddress.IPv6Address(v6)
            assert not a4.is_loopback and a4 not in ipaddress.IPv4Network("10.1.0.0/16")
            assert not a6.is_loopback and a6.ipv4_mapped is None
            seen.update((v4, v6))
        assert len(seen) == 6000  # a permutation: no two addresses share a pseudonym


def test_case_variants_count_as_postlens_and_pflogsumm_count_them() -> None:
    """postlens compares addresses without case, pflogsumm local parts with case: both
    must see as many distinct addresses after as before."""
    p = Pseudonyms(KEY)
    variants = ["bob@example.com", "Bob@example.com", "BOB@Example.COM", "bOb@EXAMPLE.com", "bob@Example.com"]
    out = [p.address(v) for v in variants]
    assert out[0] == out[0].lower()  # lower case stays lower case
    assert len({o.lower() for o in out}) == 1

    def pflogsumm_key(a: str) -> str:
        return a[: a.find("@")] + a[a.find("@") :].lower()

    assert len({pflogsumm_key(o) for o in out}) == len({pflogsumm_key(v) for v in variants}) == 4
    assert p.user("Pat") != p.user("pat") and p.user("Pat").lower() == p.user("pat")


def test_pflogsumm_groups_client_names_alike() -> None:
    """pflogsumm counts a client's "domain" by label lengths (gimme_domain): names that it
    groups together must stay together, and no others."""
    p = Pseudonyms(KEY)
    names = ["a.example.com", "b.example.com", "example.com", "x.a.example.com", "mail.example.de",
             "mx.example.de", "a.mx.gmx.de", "b.mx.gmx.de", "mx.gmx.de", "gmx.de", "a.b.example.co.uk",
             "c.example.co.uk", "example.co.uk", "host", "Mail.Example.COM", "mail.example.com",
             "a.b.c.example.museum", "x.example.museum", "b.example.org"]  # fmt: skip

    def group(name: str) -> str:
        return norm.gimme_domain(f"{name}[192.0.2.1]")

    for a in names:
        for b in names:
            assert (group(a) == group(b)) == (group(p.name(a)) == group(p.name(b))), (a, b)


def test_own_domains_keep_domains_and_keep_nets(tmp_path: Path, logs: list[Path]) -> None:
    out = _anonymize(tmp_path, *logs, own_domains=["mx.example.net"], keep_nets=["192.0.2.0/24"])
    assert "@mx.example.net>" in out and "to=<leo@mx.example.net>" not in out
    assert "client.example.net[192.0.2.10]" not in out and "[192.0.2.10]" in out
    out = _anonymize(tmp_path, *logs, name="domains.log", keep_domains=True)
    assert "@example.com>" in out and "<bob@example.com>" not in out
    assert "mx.example.com[" not in out  # host names still get pseudonyms


def test_lines_of_other_programs_and_malformed_lines_are_scanned(tmp_path: Path) -> None:
    log = tmp_path / "other.log"
    log.write_text(
        "Nov  5 16:00:05 mx sshd[300]: Accepted publickey for ops from 203.0.113.50 port 50000 ssh2\n"
        "this is no log line, but bob@example.com and 203.0.113.51 and [2001:db8::51] are in it\n"
        "\n"
    )
    out = _anonymize(tmp_path, log)
    for value in ("203.0.113.50", "bob@example.com", "203.0.113.51", "2001:db8::51"):
        assert value not in out
    assert out.count("\n") == 3 and out.endswith("\n\n")


def test_compressed_in_and_out_and_standard_input(tmp_path: Path, logs: list[Path]) -> None:
    plain = _anonymize(tmp_path, MIXED)
    packed = tmp_path / "mail.log.1.xz"
    packed.write_bytes(lzma.compress(MIXED.read_bytes()))
    key = _key(tmp_path, KEY)
    for suffix, unpack in ((".gz", gzip.decompress), (".bz2", bz2.decompress), (".xz", lzma.decompress)):
        out = tmp_path / f"out.log{suffix}"
        postlens.anonymize([str(packed)], str(out), key=key)
        assert unpack(out.read_bytes()).decode() == plain
    zst = tmp_path / "out.log.zst"
    postlens.anonymize([str(packed)], str(zst), key=key)
    got, _ = postlens.report([str(zst)], year=2026, tz="UTC")
    assert got["totals"] == postlens.report([str(MIXED)], year=2026, tz="UTC")[0]["totals"]
    done = subprocess.run(
        [sys.executable, "-m", "postlens", "anonymize", "--key", key, "-"],
        input=MIXED.read_bytes(), capture_output=True, check=True,
    )  # fmt: skip
    assert done.stdout.decode() == plain
    assert done.stderr.decode() == f"postlens: {len(plain.splitlines())} lines anonymised from 1 inputs\n"


def test_the_key_file(tmp_path: Path) -> None:
    path = tmp_path / "anon.key"
    key = load_key(str(path), create=True)
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(str(path), create=True) == key  # never replaced
    runner = CliRunner()
    missing = runner.invoke(main, ["anonymize", "--key", str(tmp_path / "none"), str(MIXED)])
    assert missing.exit_code == 2
    assert missing.stderr == f"postlens: --key {tmp_path / 'none'}: no such file; add --new-key to make one\n"
    made = runner.invoke(main, ["anonymize", "--key", str(tmp_path / "new"), "--new-key", str(MIXED)])
    assert made.exit_code == 0 and (tmp_path / "new").stat().st_size == 32
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    no_key = runner.invoke(main, ["anonymize", str(MIXED)], env={"POSTLENS_CONFIG": str(empty)})
    assert no_key.exit_code == 2 and no_key.stderr.count("\n") == 1 and "--key FILE" in no_key.stderr
    short = tmp_path / "short.key"
    short.write_bytes(b"12345")
    assert runner.invoke(main, ["anonymize", "--key", str(short), str(MIXED)]).exit_code == 2
    os.chmod(path, 0o644)
    shared = runner.invoke(main, ["anonymize", "--key", str(path), str(MIXED)])
    assert shared.exit_code == 0 and "others than its owner can read the key" in shared.stderr


def test_the_key_and_domains_from_the_settings_file(tmp_path: Path) -> None:
    key = _key(tmp_path, KEY)
    settings = tmp_path / "config.toml"
    settings.write_text(f'[anonymize]\nkey_file = "{key}"\nown_domains = ["mx.example.net"]\n')
    done = CliRunner().invoke(main, ["anonymize", "--config", str(settings), str(MIXED)])
    assert done.exit_code == 0
    assert done.stdout == _anonymize(tmp_path, MIXED, own_domains=["mx.example.net"])


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    key = _key(tmp_path, KEY)
    binary = tmp_path / "binary.log"
    binary.write_bytes(b"\x00" * 4096)
    out = tmp_path / "out.log"
    cases = (
        ([str(tmp_path / "missing.log"), str(MIXED)], f"{tmp_path / 'missing.log'}: no such file"),
        ([str(binary), str(MIXED)], f"{binary}: binary data, not a text log"),
        (["--keep-net", "10.0.0.0/33", str(MIXED)], "--keep-net: "),
        (["--tz", "Nowhere/Else", str(MIXED)], "--tz: unknown time zone 'Nowhere/Else'"),
        (["--syslog-name", "(", str(MIXED)], "--syslog-name: not a regular expression"),
    )
    for args, message in cases:
        done = CliRunner().invoke(main, ["anonymize", "--key", key, "-o", str(out), *args])
        assert done.exit_code == 2, args
        problems = [line for line in done.stderr.splitlines() if "lines anonymised" not in line]
        assert len(problems) == 1 and message in problems[0], done.stderr
        assert "Traceback" not in done.stderr
    # the good input was still written
    CliRunner().invoke(main, ["anonymize", "--key", key, "-o", str(out), str(binary), str(MIXED)])
    assert out.read_text() == _anonymize(tmp_path, MIXED, name="good.log")
    nowhere = CliRunner().invoke(
        main, ["anonymize", "--key", key, "-o", str(tmp_path / "no" / "x"), str(MIXED)]
    )
    assert nowhere.exit_code == 2 and nowhere.stderr.endswith("No such file or directory\n")


def test_the_history_database_can_hold_pseudonyms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = _key(tmp_path, KEY)
    settings = tmp_path / "config.toml"
    settings.write_text(f'[history]\nkey_file = "{key}"\n')
    monkeypatch.setenv("POSTLENS_CONFIG", str(settings))
    db = str(tmp_path / "history.db")
    postlens.ingest([str(MIXED)], db=db, keep_days=0, year=2026)
    stored = "\n".join(stored_lines(db))
    for value in ("alice@example.net", "bob@example.com", "192.0.2.10", "client.example.net", "m1@"):
        assert value not in stored
    assert Pseudonyms(KEY).address("bob@example.com") in stored
    from_db, _ = postlens.report([], db=db, tz="UTC")
    plain, _ = postlens.report([str(MIXED)], year=2026, tz="UTC")
    assert from_db["totals"] == plain["totals"] and from_db["pflogsumm"] == plain["pflogsumm"]
    # the watcher's lines (journal, syslog) go the same way, and old ones are not kept
    utc = zone("UTC")
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 40 * 86400))
    parser = LineParser(YearGuess(None, None, utc), utc)
    connect = "mx postfix/smtpd[9]: connect from client.example.net[192.0.2.10]"
    lines = [parser.parse(f"{t} {connect}") for t in (old, stamp)]
    assert postlens.history.store_lines(db, [x for x in lines if x is not None]) == 1
    assert not any("client.example.net" in text for text in stored_lines(db))
    assert not any(text.startswith(old[:10]) for text in stored_lines(db))


def test_rewriting_a_parsed_line_is_rewriting_its_text() -> None:
    """The history database stores parsed lines: they get the pseudonyms files get."""
    rewriter = Rewriter(Pseudonyms(KEY))
    utc = zone("UTC")
    parser, again = LineParser(YearGuess(2026, None, utc), utc), LineParser(YearGuess(2026, None, utc), utc)
    for text in (MIXED.read_text() + EXTRA).splitlines():
        line = parser.parse(text)
        assert line is not None
        head = text[: len(text) - len(line.payload)]
        assert head + rewriter.line(line).payload == rewriter.rewrite(text, again)
