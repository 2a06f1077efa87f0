"""The inputs of postlens watch: files across rotations and restarts, the journal, syslog senders.

Real tools only: logrotate rotates, systemd-journal-remote writes a journal that journalctl
follows, logger sends syslog over UDP and TCP.
"""

from __future__ import annotations

import gzip
import json
import lzma
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from postlens.errors import InputError, UsageError
from postlens.follow import FileFollower, SyslogListener, journal_lines
from postlens.history import fingerprint
from postlens.lines import Line, LineParser, YearGuess
from postlens.sources import Source
from tests.conftest import need

POLL = 0.02


def _line(n: int) -> str:
    """A distinct log line: its number is in the text, so each can be counted once."""
    return f"Nov  5 10:{n // 60 % 60:02d}:{n % 60:02d} mx postfix/anvil[9]: statistics: line {n:06d}"


def _numbers(lines: list[str]) -> list[int]:
    return [int(t.rsplit(" ", 1)[1]) for t in lines]


def _parse(text: str) -> Line:
    line = LineParser(YearGuess(None, None, None), None).parse(text)
    assert line is not None, text
    return line


class Collected:
    """The lines an input yields, gathered by a thread until the input is stopped."""

    def __init__(self, lines: Callable[[threading.Event], Iterator[str]]) -> None:
        self.lines: list[str] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(lines,))
        self._thread.start()

    def _run(self, lines: Callable[[threading.Event], Iterator[str]]) -> None:
        try:
            for text in lines(self.stop):
                self.lines.append(text)
        except BaseException as e:
            self.error = e

    def wait_for(self, count: int, timeout: float = 5.0) -> list[str]:
        """The lines, once there are ``count`` of them (or the time is up)."""
        return self.wait_until(lambda lines: len(lines) >= count, timeout)

    def wait_until(self, done: Callable[[list[str]], bool], timeout: float = 5.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while not done(self.lines) and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.01)
        assert self.error is None
        return self.lines

    def end(self) -> float:
        """Stop the input; how long it took to return."""
        began = time.monotonic()
        self.stop.set()
        self._thread.join(timeout=5)
        assert not self._thread.is_alive()
        return time.monotonic() - began


@contextmanager
def collecting(lines: Callable[[threading.Event], Iterator[str]]) -> Iterator[Collected]:
    got = Collected(lines)
    try:
        yield got
    finally:
        took = got.end()
    assert got.error is None
    assert took < 1.0  # an input returns within about its poll interval of stop


def _follow(log: Path, state: Path, count: int, **options: bool) -> tuple[list[str], FileFollower]:
    """What a follower that starts now yields: ``count`` lines, and nothing more for a while."""
    follower = FileFollower([str(log)], state=str(state), poll=POLL, **options)
    with collecting(follower.lines) as got:
        got.wait_for(count)
        time.sleep(0.15)
    return got.lines, follower


def _opened(follower: FileFollower, state: Path, count: int) -> None:
    """Wait until a follower has opened its ``count`` files (and so chosen where to start):
    then its state names them."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        follower.save()
        if state.exists() and len(json.loads(state.read_text())["files"]) == count:
            return
        time.sleep(0.01)
    raise AssertionError("the follower did not open its files")


class Writer:
    """Appends numbered lines as a syslog daemon does: one write() each to a descriptor opened
    for appending, reopened only when told (as rsyslog does on SIGHUP after a rotation)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self.lock = threading.Lock()  # held by the test to pause the writer
        self._stop = threading.Event()
        self._reopen = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _run(self) -> None:
        fd = self._open()
        try:
            while not self._stop.is_set():
                with self.lock:
                    if self._reopen.is_set():
                        os.close(fd)
                        fd = self._open()
                        self._reopen.clear()
                    self.count += 1
                    os.write(fd, (_line(self.count) + "\n").encode())
                time.sleep(0.0005)
        finally:
            os.close(fd)

    def reopen(self) -> None:
        self._reopen.set()
        while self._reopen.is_set() and self._thread.is_alive():
            time.sleep(0.001)

    def end(self) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def writing(path: Path) -> Iterator[Writer]:
    writer = Writer(path)
    try:
        yield writer
    finally:
        writer.end()


# -- files ---------------------------------------------------------------------------------


def test_rotation_by_rename_loses_and_repeats_no_line(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    follower = FileFollower([str(log)], poll=POLL, from_start=True)  # the writer may be first
    with collecting(follower.lines) as got:
        with writing(log) as writer:
            for i in range(1, 5):
                time.sleep(0.2)
                os.rename(log, f"{log}.{i}")
                time.sleep(0.05)  # the writer goes on in the renamed file, as before a HUP
                if i % 2:
                    log.touch()  # an empty new file for a while (logrotate's create), or none until the writer's
                    time.sleep(0.05)
                writer.reopen()
            time.sleep(0.1)
        lines = got.wait_for(writer.count)
        time.sleep(0.1)
    assert writer.count > 1000
    assert _numbers(lines) == list(range(1, writer.count + 1))
    assert lines[0] == _line(1)


def _logrotate(tmp_path: Path, log: Path, directives: str) -> Callable[[], None]:
    binary = shutil.which("logrotate") or "/usr/sbin/logrotate"
    need(os.path.exists(binary), "logrotate is not installed (apt-get install logrotate)")
    conf = tmp_path / "logrotate.conf"
    conf.write_text(f"{log} {{\n  rotate 9\n  missingok\n  {directives}\n}}\n")
    state = tmp_path / "logrotate.state"
    return lambda: subprocess.run(
        [binary, "-f", "-s", str(state), str(conf)], check=True, capture_output=True
    )


def _lines_in_files(tmp_path: Path) -> set[int]:
    found: list[int] = []
    for path in tmp_path.glob("mail.log*"):
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        found += _numbers(data.decode().splitlines())
    assert len(found) == len(set(found))
    return set(found)


@pytest.mark.parametrize("paused", [True, False], ids=["writer-paused", "writer-running"])
def test_logrotate_copytruncate_while_lines_arrive(tmp_path: Path, paused: bool) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    rotate = _logrotate(tmp_path, log, "copytruncate\n  compress\n  delaycompress")
    follower = FileFollower([str(log)], poll=POLL, from_start=True)  # the writer may be first
    with collecting(follower.lines) as got:
        with writing(log) as writer:
            for _ in range(3):
                time.sleep(0.3)
                if paused:
                    with writer.lock:
                        rotate()
                else:
                    rotate()
            time.sleep(0.1)
        in_files = _lines_in_files(tmp_path)
        got.wait_until(lambda lines: in_files <= set(_numbers(lines)))
        time.sleep(0.1)
    numbers = _numbers(got.lines)
    assert writer.count > 1000
    assert numbers == sorted(set(numbers))  # in order, none twice
    if paused:
        assert numbers == list(range(1, writer.count + 1))
    else:
        # logrotate loses the lines written between its copy and its truncation (in the copy
        # and in the file): the follower may have read them before, or not. Every line that
        # is in a file is followed, and nothing else.
        assert _lines_in_files(tmp_path) <= set(numbers) <= set(range(1, writer.count + 1))
    assert (tmp_path / "mail.log.2.gz").exists()


def test_logrotate_create_while_lines_arrive(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    rotate = _logrotate(tmp_path, log, "create\n  compress\n  delaycompress")
    follower = FileFollower([str(log)], poll=POLL, from_start=True)  # the writer may be first
    with collecting(follower.lines) as got:
        with writing(log) as writer:
            for _ in range(3):
                time.sleep(0.3)
                rotate()
                time.sleep(0.05)  # until the "HUP", the writer adds to the renamed file
                writer.reopen()
            time.sleep(0.1)
        got.wait_for(writer.count)
        time.sleep(0.1)
    assert _numbers(got.lines) == list(range(1, writer.count + 1))
    assert _lines_in_files(tmp_path) == set(range(1, writer.count + 1))


def _append(log: Path, numbers: range) -> None:
    with log.open("a") as f:
        f.write("".join(_line(n) + "\n" for n in numbers))


def test_restart_yields_exactly_the_new_lines(tmp_path: Path) -> None:
    log, state = tmp_path / "mail.log", tmp_path / "state" / "watch.json"
    _append(log, range(1, 11))
    lines, follower = _follow(log, state, 10, from_start=True)
    assert _numbers(lines) == list(range(1, 11))
    saved = json.loads(state.read_text())
    assert saved["version"] == 1
    entry = saved["files"][str(log)]
    assert entry["offset"] == log.stat().st_size and entry["inode"] == log.stat().st_ino
    assert entry["fingerprint"] == fingerprint(Source(str(log)))  # the history database's identity
    _append(log, range(11, 16))
    assert _numbers(_follow(log, state, 5)[0]) == list(range(11, 16))
    assert _follow(log, state, 0)[0] == []
    assert follower.problems == []


def test_a_line_still_being_written_waits_for_its_newline(tmp_path: Path) -> None:
    log, state = tmp_path / "mail.log", tmp_path / "watch.json"
    _append(log, range(1, 3))
    with log.open("a") as f:
        f.write(_line(3)[:20])
    assert _numbers(_follow(log, state, 2, from_start=True)[0]) == [1, 2]
    with log.open("a") as f:
        f.write(_line(3)[20:] + "\n")  # completed while no one was following: read whole next time
    assert _numbers(_follow(log, state, 1)[0]) == [3]


def test_a_last_line_without_newline_is_handed_on_when_its_file_is_rotated(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    _append(log, range(1, 2))
    with log.open("a") as f:
        f.write(_line(2))  # its writer died before the newline
    follower = FileFollower([str(log)], poll=POLL, from_start=True)
    with collecting(follower.lines) as got:
        got.wait_for(1)
        time.sleep(0.05)
        assert _numbers(got.lines) == [1]  # held while the file may still grow
        os.rename(log, f"{log}.1")
        _append(log, range(3, 4))
        got.wait_for(3)
    assert _numbers(got.lines) == [1, 2, 3]


@pytest.mark.parametrize("how", ["rename", "gzip", "xz-dateext", "copytruncate"])
def test_restart_reads_the_rest_of_a_file_rotated_while_stopped(tmp_path: Path, how: str) -> None:
    log, state = tmp_path / "mail.log", tmp_path / "watch.json"
    _append(log, range(1, 6))
    _follow(log, state, 5, from_start=True)
    _append(log, range(6, 9))  # not read before the rotation
    if how == "copytruncate":
        shutil.copyfile(log, f"{log}.1")
        os.truncate(log, 0)
    else:
        os.rename(log, f"{log}.1")
    if how == "gzip":  # compressed already (no delaycompress): read through the decompressor
        Path(f"{log}.1.gz").write_bytes(gzip.compress(Path(f"{log}.1").read_bytes()))
        os.unlink(f"{log}.1")
    if how == "xz-dateext":
        Path(f"{log}-20261105.xz").write_bytes(lzma.compress(Path(f"{log}.1").read_bytes()))
        os.unlink(f"{log}.1")
    _append(log, range(9, 12))
    lines, follower = _follow(log, state, 6)
    assert _numbers(lines) == list(range(6, 12))
    assert follower.problems == []
    assert _follow(log, state, 0)[0] == []


def test_restart_when_the_rest_is_gone_says_so_and_reads_the_new_file(tmp_path: Path) -> None:
    log, state = tmp_path / "mail.log", tmp_path / "watch.json"
    _append(log, range(1, 3))
    _follow(log, state, 2, from_start=True)
    _append(log, range(3, 5))
    log.unlink()  # rotated twice, or deleted: lines 3 and 4 are nowhere
    _append(log, range(5, 7))
    lines, follower = _follow(log, state, 2)
    assert _numbers(lines) == [5, 6]
    assert len(follower.problems) == 1 and "lines may be missing" in str(follower.problems[0])


def test_without_a_position_a_file_is_followed_from_its_end(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    _append(log, range(1, 4))
    with log.open("a") as f:
        f.write(_line(4)[:10])  # a last line still being written is read whole
    state = tmp_path / "watch.json"
    follower = FileFollower([str(log)], state=str(state), poll=POLL)
    with collecting(follower.lines) as got:
        _opened(follower, state, 1)
        with log.open("a") as f:
            f.write(_line(4)[10:] + "\n" + _line(5) + "\n")
        got.wait_for(2)
        time.sleep(0.1)
    assert _numbers(got.lines) == [4, 5]


def test_a_missing_file_is_waited_for_and_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    follower = FileFollower([str(log)], poll=POLL)
    with collecting(follower.lines) as got:
        time.sleep(0.1)
        log.write_bytes(
            b"Nov  5 10:00:01 mx postfix/anvil[9]: crlf\r\nNov  5 10:00:02 mx smtpd[1]: bad \xff\n"
        )
        got.wait_for(2)
    assert got.lines == [
        "Nov  5 10:00:01 mx postfix/anvil[9]: crlf",
        "Nov  5 10:00:02 mx smtpd[1]: bad \ufffd",
    ]


def test_several_files_at_once_each_once(tmp_path: Path) -> None:
    logs = [tmp_path / "mail.log", tmp_path / "other" / "maillog"]
    logs[1].parent.mkdir()
    for log in logs:
        log.touch()
    state = tmp_path / "watch.json"
    follower = FileFollower(
        [str(logs[0]), str(logs[1]), f"{tmp_path}/other/../mail.log"], state=str(state), poll=POLL
    )
    with collecting(follower.lines) as got:
        _opened(follower, state, 2)
        _append(logs[0], range(1, 4))
        _append(logs[1], range(4, 6))
        got.wait_for(5)
        time.sleep(0.1)
    assert sorted(_numbers(got.lines)) == [1, 2, 3, 4, 5]
    assert _numbers([t for t in got.lines if _numbers([t])[0] < 4]) == [1, 2, 3]


def test_a_bad_state_file_is_one_error(tmp_path: Path) -> None:
    state = tmp_path / "watch.json"
    state.write_text("{not json")
    with pytest.raises(InputError, match="cannot read the watch state"):
        FileFollower([str(tmp_path / "mail.log")], state=str(state))


# -- the journal ---------------------------------------------------------------------------

JOURNAL_REMOTE = next(
    (p for p in ("/usr/lib/systemd/systemd-journal-remote", "/lib/systemd/systemd-journal-remote")
     if os.path.exists(p)), None,
)  # fmt: skip
BOOT = "0123456789abcdef0123456789abcdef"
T0 = 1_795_000_000_000_000  # microseconds since the epoch


def _export_entry(n: int, message: bytes, unit: str = "postfix@-.service", **extra: str) -> bytes:
    """A journal entry in the journal export format (a binary field for MESSAGE)."""
    fields = {
        **extra,
        "__REALTIME_TIMESTAMP": str(T0 + n * 1_000_001),
        "__MONOTONIC_TIMESTAMP": str(1_000_000 + n),
        "_BOOT_ID": BOOT,
        "_HOSTNAME": "mx1",
        "SYSLOG_IDENTIFIER": "postfix/smtpd",
        "_PID": str(4000 + n),
        "_SYSTEMD_UNIT": unit,
        "PRIORITY": "6",
    }
    text = b"".join(f"{k}={v}\n".encode() for k, v in fields.items())
    return text + b"MESSAGE\n" + len(message).to_bytes(8, "little") + message + b"\n\n"


def _write_journal(path: Path, entries: list[bytes]) -> None:
    assert JOURNAL_REMOTE is not None
    done = subprocess.run(
        [JOURNAL_REMOTE, f"--output={path}", "-"], input=b"".join(entries), capture_output=True
    )
    assert done.returncode == 0, done.stderr


def _children(name: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("Name", "").strip() == name and fields.get("PPid", "").strip() == str(os.getpid()):
            found.append(int(pid))
    return found


def test_journal_entries_become_lines_and_resume_after_the_cursor(tmp_path: Path) -> None:
    need(shutil.which("journalctl") is not None, "journalctl is not installed (apt-get install systemd)")
    need(
        JOURNAL_REMOTE is not None,
        "systemd-journal-remote is not installed (apt-get install systemd-journal-remote)",
    )
    journal, cursor = tmp_path / "remote.journal", tmp_path / "journal.cursor"
    _write_journal(journal, [
        _export_entry(1, b"connect from a.example[192.0.2.1]"),
        _export_entry(2, b"not postfix", unit="cron.service"),
        _export_entry(3, b"bad byte \xff and a\nsecond line"),  # journalctl gives it as an array of bytes
    ])  # fmt: skip
    # journalctl --follow needs the journal's directory: an absolute path
    command = [
        "journalctl",
        "--file",
        str(journal.resolve()),
        "--follow",
        "--output=json",
        "--all",
        "--unit=postfix*",
    ]

    def follow(stop: threading.Event) -> Iterator[str]:
        return journal_lines(stop, command=command, cursor_file=str(cursor), from_start=True, poll=POLL)

    with collecting(follow) as got:
        got.wait_for(2)
        # written while followed; with the time the sender logged it, half a second earlier
        sent = T0 + 4 * 1_000_001 - 500_000
        _write_journal(journal, [_export_entry(4, "délivré".encode(), _SOURCE_REALTIME_TIMESTAMP=str(sent))])
        got.wait_for(3)
    lines = [_parse(text) for text in got.lines]
    assert [(x.host, x.program, x.pid) for x in lines] == [
        ("mx1", "postfix/smtpd", str(4000 + n)) for n in (1, 3, 4)
    ]
    assert [x.payload for x in lines] == [
        "connect from a.example[192.0.2.1]",
        "bad byte \ufffd and a second line",
        "délivré",
    ]
    assert [round(x.ts * 1e6) for x in lines] == [T0 + 1_000_001, T0 + 3 * 1_000_001, sent]
    assert _children("journalctl") == []
    assert cursor.read_text().startswith("s=")

    _write_journal(journal, [_export_entry(5, b"after the restart"), _export_entry(6, b"and one more")])
    with collecting(
        lambda stop: journal_lines(stop, command=command, cursor_file=str(cursor), poll=POLL)
    ) as got:
        got.wait_for(2)
        time.sleep(0.2)
    assert [_parse(t).payload for t in got.lines] == ["after the restart", "and one more"]
    assert _children("journalctl") == []


def test_a_journalctl_that_fails_is_one_error(tmp_path: Path) -> None:
    need(shutil.which("journalctl") is not None, "journalctl is not installed (apt-get install systemd)")
    stop = threading.Event()
    with pytest.raises(InputError) as failed:
        list(
            journal_lines(stop, command=["journalctl", "--file", str(tmp_path / "none.journal"), "--nosuch"])
        )
    assert "\n" not in str(failed.value)
    with pytest.raises(InputError, match="cannot run"):
        list(journal_lines(stop, command=[str(tmp_path / "no-journalctl")]))
    assert _children("journalctl") == []


# -- syslog --------------------------------------------------------------------------------


def _logger(port: int, *options: str, message: str = "", stdin: str | None = None) -> None:
    need(shutil.which("logger") is not None, "logger is not installed (apt-get install bsdutils)")
    argv = ["logger", "--server", "127.0.0.1", "--port", str(port), *options]
    subprocess.run(
        [*argv, message] if message else argv, input=stdin, text=True, check=True, capture_output=True
    )


def _hosts() -> set[str]:
    """What logger may send as this machine's name (RFC 3164 takes the short one)."""
    name = socket.gethostname()
    return {name, name.split(".")[0]}


def test_udp_from_logger_in_rfc3164_and_rfc5424() -> None:
    listener = SyslogListener("udp://127.0.0.1:0")
    port = listener.address[1]
    assert port != 0
    with collecting(listener.lines) as got:
        for n in range(3):
            _logger(port, "--udp", "--rfc3164", "-t", "postfix/smtpd", f"--id={100 + n}", message=f"bsd {n}")
            _logger(port, "--udp", "--rfc5424", "-t", "postfix/qmgr", f"--id={200 + n}", message=f"ietf {n}")
        _logger(port, "--udp", "--rfc5424", "--sd-id", "origin@32473", "--sd-param", 'note="a \\] b"',
                "-t", "postfix/cleanup", "--id=300", message="with structured data")  # fmt: skip
        got.wait_for(7)
    lines = sorted((_parse(t) for t in got.lines), key=lambda x: x.payload)
    assert [(x.program, x.pid, x.payload) for x in lines] == [
        ("postfix/smtpd", "100", "bsd 0"), ("postfix/smtpd", "101", "bsd 1"), ("postfix/smtpd", "102", "bsd 2"),
        ("postfix/qmgr", "200", "ietf 0"), ("postfix/qmgr", "201", "ietf 1"), ("postfix/qmgr", "202", "ietf 2"),
        ("postfix/cleanup", "300", "with structured data"),
    ]  # fmt: skip
    assert {x.host for x in lines} <= _hosts()
    assert all(abs(x.ts - time.time()) < 60 for x in lines)


def test_tcp_from_logger_with_octet_counting_and_newlines() -> None:
    listener = SyslogListener("tcp://127.0.0.1:0")
    port = listener.address[1]
    with collecting(listener.lines) as got:
        # several messages over one connection each
        _logger(
            port,
            "--tcp",
            "--octet-count",
            "--rfc5424",
            "-t",
            "postfix/smtp",
            "--id=7",
            stdin="one\ntwo\nthree\n",
        )
        _logger(port, "--tcp", "--rfc3164", "-t", "postfix/local", "--id=8", stdin="four\nfive\n")
        got.wait_for(5)
    lines = [_parse(t) for t in got.lines]
    assert [(x.program, x.pid, x.payload) for x in lines] == [
        ("postfix/smtp", "7", "one"), ("postfix/smtp", "7", "two"), ("postfix/smtp", "7", "three"),
        ("postfix/local", "8", "four"), ("postfix/local", "8", "five"),
    ]  # fmt: skip
    assert {x.host for x in lines} <= _hosts()


def _counted(message: bytes) -> bytes:
    return str(len(message)).encode() + b" " + message


def test_tcp_senders_at_once_with_split_frames_and_garbage() -> None:
    listener = SyslogListener("tcp://127.0.0.1:0")
    a5424 = b'<22>1 2026-11-05T10:00:00.5+01:00 mx2 postfix/smtpd 11 - [x@1 k="v\\]"] \xef\xbb\xbfcounted'
    with collecting(listener.lines) as got:
        senders = [socket.create_connection(listener.address) for _ in range(3)]
        try:
            one, two, three = senders
            frame = _counted(a5424)
            one.sendall(frame[:2])  # the length itself split
            two.sendall(b"<22>Nov  5 10:00:01 postfix/qmgr[12]: no host, CRLF\r\n<22>Nov  5 10:00:02 mx3 pos")
            three.sendall(b"\x00\xff\xfe garbage\n99999999999 <13>huge count\n12 not-a-frame\n")
            time.sleep(0.05)
            one.sendall(frame[2:] + _counted(b"<13>1 - - postfix/bounce - - - nil host and time"))
            two.sendall(
                b"tfix/pickup[13]: joined\n<22>Nov  5 10:00:03 mx3 postfix/pickup[13]: last, no newline"
            )
            three.sendall(b"<13>Nov  5 10:00:04 mx4 postfix/smtpd[14]: after the garbage\n")
        finally:
            for s in senders:
                s.close()
        got.wait_for(9)
        time.sleep(0.1)
    parsed = {t: LineParser(YearGuess(2026, None, None), None).parse(t) for t in got.lines}
    good = sorted((x.host, x.program, x.pid, x.payload) for x in parsed.values() if x is not None)
    assert good == sorted([
        ("mx2", "postfix/smtpd", "11", "counted"),
        ("127.0.0.1", "postfix/bounce", "", "nil host and time"),
        ("127.0.0.1", "postfix/qmgr", "12", "no host, CRLF"),
        ("mx3", "postfix/pickup", "13", "joined"),
        ("mx3", "postfix/pickup", "13", "last, no newline"),
        ("mx4", "postfix/smtpd", "14", "after the garbage"),
    ])  # fmt: skip
    assert len(got.lines) == 9  # the three garbage lines are handed on, for the parser to count as malformed
    stamps = {x.payload: x.ts for x in parsed.values() if x is not None}
    assert stamps["counted"] == 1793869200.5  # 2026-11-05T09:00:00.5Z
    assert abs(stamps["nil host and time"] - time.time()) < 60


def test_a_busy_tcp_stream_of_both_framings() -> None:
    listener = SyslogListener("tcp://127.0.0.1:0")
    messages = [f"<22>Nov  5 10:00:00 mx postfix/smtp[9]: message {n}".encode() for n in range(3000)]
    stream = b"".join(_counted(m) if n % 2 else m + b"\n" for n, m in enumerate(messages))
    with collecting(listener.lines) as got:
        with socket.create_connection(listener.address) as sender:
            for at in range(0, len(stream), 1000):  # cut anywhere, frames too
                sender.sendall(stream[at : at + 1000])
        got.wait_for(3000)
    assert [_parse(t).payload for t in got.lines] == [f"message {n}" for n in range(3000)]


def test_tls_senders_with_octet_counting(certificate: tuple[Path, Path]) -> None:
    """RFC 5425: syslog over TLS, with a certificate openssl made; a sender that does not speak
    TLS is dropped without harm to the others."""
    cert, key = certificate
    with pytest.raises(UsageError, match="TLS needs tls_cert and tls_key"):
        SyslogListener("tls://127.0.0.1:0")
    listener = SyslogListener("tls://127.0.0.1:0", tls=(str(cert), str(key)))
    messages = [f"<22>Nov  5 10:00:00 mx postfix/smtp[9]: message {n}".encode() for n in range(2000)]
    stream = b"".join(_counted(m) for m in messages)
    context = ssl.create_default_context(cafile=str(cert))
    with collecting(listener.lines) as got:
        with socket.create_connection(listener.address) as plain:
            plain.sendall(_counted(b"<22>Nov  5 10:00:00 mx postfix/smtp[9]: in clear"))
        with context.wrap_socket(
            socket.create_connection(listener.address), server_hostname="127.0.0.1"
        ) as tls:
            for at in range(0, len(stream), 5000):  # records cut anywhere, frames too
                tls.sendall(stream[at : at + 5000])
        got.wait_for(2000)
        time.sleep(0.1)
    assert [_parse(t).payload for t in got.lines] == [f"message {n}" for n in range(2000)]


def test_udp_edge_cases_from_raw_sockets() -> None:
    listener = SyslogListener("udp://127.0.0.1:0")
    datagrams = [
        b"<13>Nov  5 10:00:01 mx5 postfix/smtpd[1]: trailing newline\n",
        b"",  # nothing: dropped
        b"postfix/smtpd[2]: no PRI, no time, no host",
        b"<13>1 2026-11-05T10:00:00Z - postfix/smtpd 3 ID47 - nil host",
        b"<13>1 2026-11-05T10:00:00Z mx6 postfix/smtpd - - - no procid \xc3",
        b"<999999>",
    ]
    with collecting(listener.lines) as got:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for data in datagrams:
                sender.sendto(data, listener.address)
        got.wait_for(5)
        time.sleep(0.1)
    lines = [LineParser(YearGuess(2026, None, None), None).parse(t) for t in got.lines]
    assert [(x.host, x.program, x.pid, x.payload) for x in lines if x is not None] == [
        ("mx5", "postfix/smtpd", "1", "trailing newline"),
        ("127.0.0.1", "postfix/smtpd", "2", "no PRI, no time, no host"),
        ("127.0.0.1", "postfix/smtpd", "3", "nil host"),
        ("mx6", "postfix/smtpd", "", "no procid \ufffd"),
    ]
    assert len(got.lines) == 5 and lines[-1] is None  # "<999999>" is garbage, handed on


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:5514", "udp://127.0.0.1:99999", "tcp://127.0.0.1:port", "udp:5514",
            "udp://127.0.0.1:5514/x", "udp://"],
)  # fmt: skip
def test_a_bad_listen_url_is_one_usage_error(url: str) -> None:
    with pytest.raises(UsageError) as failed:
        SyslogListener(url)
    assert "\n" not in str(failed.value) and url in str(failed.value)


def test_a_listener_closes_its_sockets_when_it_ends() -> None:
    listener = SyslogListener("tcp://127.0.0.1:0")
    address = listener.address
    with pytest.raises(UsageError, match="cannot listen"):
        SyslogListener(f"tcp://127.0.0.1:{address[1]}")  # the port is taken
    with collecting(listener.lines) as got:
        client = socket.create_connection(address)
        client.sendall(b"<13>Nov  5 10:00:01 mx postfix/smtpd[1]: hello\n")
        got.wait_for(1)
    assert client.recv(1) == b""  # the listener closed the connection
    client.close()
    SyslogListener(f"tcp://127.0.0.1:{address[1]}").close()  # and the port is free again
    udp = SyslogListener("udp://127.0.0.1:0")
    port = udp.address[1]
    with collecting(udp.lines):
        pass
    SyslogListener(f"udp://127.0.0.1:{port}").close()
