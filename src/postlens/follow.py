"""follow: the inputs of ``postlens watch``: log files followed like ``tail -F``, the journal, syslog.

Each input yields text lines that :class:`postlens.lines.LineParser` reads, one at a time,
until a ``threading.Event`` is set (docs/watch-inputs.md says how each one works and where
its limits are).

- :class:`FileFollower` follows log files across rotation by rename and by copytruncate,
  and resumes from the positions in its state file. A file is known, as in ``history.py``,
  by the hash of its first line and by how far it was read; a rotated file is found again
  among its siblings (``mail.log.1``, ``mail.log-20240101``, compressed or not) by that hash.
- :func:`journal_lines` runs ``journalctl -f -o json`` and resumes after a saved cursor.
- :class:`SyslogListener` receives RFC 3164 and RFC 5424 messages over UDP and TCP.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import selectors
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, BinaryIO
from urllib.parse import urlsplit

from postlens.access import server_tls
from postlens.errors import InputError, UsageError
from postlens.history import fingerprint, skip_bytes
from postlens.journal import UNITS, check_ended, journal_field, journal_line, json_object, one_line
from postlens.lines import MONTHS, digits
from postlens.output import output_path
from postlens.sources import BLOCK, Source, decode_lines, open_source

STATE_VERSION = 1
_HEAD = 65536  # a file's fingerprint hashes its first line, up to this long (as history.py's does)
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zstd")


# -- log files -------------------------------------------------------------------------


@dataclass(slots=True)
class _Where:
    """The file a followed path is read from, and how far its complete lines were handed out.

    Only ``offset`` changes in place (and ``fingerprint``, once the first line is complete);
    moving to another file replaces the whole object, so ``save`` from another thread always
    sees an identity with an offset of that file.
    """

    device: int
    inode: int
    fingerprint: str | None  # sha256 of the first line; None while it has no newline
    offset: int


def _start() -> _Where:
    """The position "from the start of whatever file is under the name": an offset of 0 needs no identity."""
    return _Where(0, 0, None, 0)


class _Followed:
    """One followed path, and the file it is being read from."""

    def __init__(self, path: str, where: _Where | None) -> None:
        self.path = path
        self.source = Source(path)  # decode_lines counts CRLF and bad UTF-8 in its stats
        self.where = where  # None: not opened yet and nothing saved, so start at its end
        self.fd: int | None = None
        self.head: bytes | None = None  # the open file's first line: a changed one means it was truncated
        self.read_to = 0  # bytes read from fd: where.offset + len(pending)
        self.pending = b""  # a last line still without its newline


def _digest(head: bytes | None) -> str | None:
    # the same fingerprint as history.fingerprint for a plain file (the test suite checks it)
    return hashlib.sha256(head).hexdigest() if head is not None else None


def _head(fd: int) -> bytes | None:
    """A file's first line with its newline, or None while it has none."""
    start = os.pread(fd, _HEAD, 0)
    end = start.find(b"\n")
    return start[: end + 1] if end >= 0 else None


def _line_end(fd: int, size: int) -> int:
    """Where following from the end starts: after the last newline, so a last line still
    being written is read whole."""
    start = max(0, size - _HEAD)
    end = os.pread(fd, size - start, start).rfind(b"\n")
    if end >= 0:
        return start + end + 1
    return 0 if start == 0 else size


def _holds(where: _Where, st: os.stat_result, head: bytes | None) -> bool:
    """Whether a file is the one ``where`` was read from, still at least as long."""
    if st.st_size < where.offset:
        return False
    if where.fingerprint is not None:
        return _digest(head) == where.fingerprint
    return (st.st_dev, st.st_ino) == (where.device, where.inode)


class FileFollower:
    """Follows log files like ``tail -F``, across rotations, resuming from a state file.

    ``lines`` yields each complete line of each file once, in order. Rotation by rename:
    the old file is read to its end (the writer may add to it until it reopens its log),
    then the new file from its start, once the new one has data. Copytruncate (the file's
    first line changed or it got shorter): the copy, found among the file's siblings by its
    first line, is read on from where reading stopped, then the file from its start. A
    missing file is waited for; a file that appears is read from its start. A last line
    without its newline is held until its newline arrives, and is not handed out at stop
    (the saved offset is before it, so the next run reads it whole); it is handed out
    when its file is finished (rotated away).

    Without a saved position a file is followed from its end, unless ``from_start``.
    Problems that do not stop the following (a rotated file that cannot be found, a file
    that cannot be opened) are added to ``problems``.
    """

    def __init__(self, paths: list[str], *, state: str | None = None, poll: float = 0.2,
                 from_start: bool = False) -> None:  # fmt: skip
        self.state = state
        self.poll = poll
        self.problems: list[InputError] = []
        self._saved = _load_state(state) if state else {}
        self._written = dict(self._saved)
        self._save_lock = threading.Lock()
        self._files: list[_Followed] = []
        for path in dict.fromkeys(os.path.abspath(p) for p in paths):
            where = self._saved.get(path)
            if where is None and from_start:
                where = _start()
            self._files.append(_Followed(path, where))

    def lines(self, stop: threading.Event) -> Iterator[str]:
        """The new lines of all files until ``stop`` is set; saves the positions when it is.

        A caller that leaves the loop otherwise calls ``save`` itself after handling the
        lines it took (until then the positions on disk are older: lines repeat, none is lost).
        """
        stopped = False
        try:
            while not stop.is_set():
                busy = False
                for f in self._files:
                    for text in self._poll(f):
                        busy = True
                        yield text
                        if stop.is_set():
                            break
                    if stop.is_set():
                        break
                if not busy:
                    stop.wait(self.poll)
            stopped = True
        finally:
            for f in self._files:
                self._close(f)
            if stopped:
                self.save()

    def save(self) -> None:
        """Write each file's position (what ``lines`` has handed out) to the state file, atomically."""
        if not self.state:
            return
        with self._save_lock:
            files = dict(self._written)
            for f in self._files:
                where = f.where
                if where is not None:
                    files[f.path] = _Where(where.device, where.inode, where.fingerprint, where.offset)
            if files == self._written:
                return
            data = {
                "version": STATE_VERSION,
                "files": {
                    path: {
                        "device": w.device,
                        "inode": w.inode,
                        "fingerprint": w.fingerprint,
                        "offset": w.offset,
                    }
                    for path, w in files.items()
                },
            }
            _write_atomically(self.state, json.dumps(data, indent=1) + "\n")
            self._written = files

    def _problem(self, path: str, text: str, *, once: bool = False) -> None:
        """Note a problem; with ``once``, not again while it lasts (a file that cannot be opened is
        tried again at every poll)."""
        problem = InputError(path, text)
        if not (once and any(str(p) == str(problem) for p in self.problems)):
            self.problems.append(problem)

    def _poll(self, f: _Followed) -> Iterator[str]:
        """The lines that are new in one followed path since the last poll."""
        if f.fd is None:
            yield from self._open(f)
            if f.fd is None:
                return
        yield from self._drain(f)
        if f.fd is None or f.where is None:
            return
        try:
            st = os.stat(f.path)
        except OSError:
            return  # rotated away and not replaced yet: the writer may still add to the open file
        if (st.st_dev, st.st_ino) == (f.where.device, f.where.inode) or st.st_size == 0:
            return
        # Another file with data is under the name: the writer has moved to it, so all it wrote
        # to the old one is there now. Finish the old one, then read the new one from its start.
        yield from self._drain(f)
        yield from self._finish(f)
        self._close(f)
        f.where = _start()
        yield from self._open(f)

    def _open(self, f: _Followed) -> Iterator[str]:
        """Open the file under the name at the saved position, or find where the saved file went."""
        try:
            fd = os.open(f.path, os.O_RDONLY)
        except FileNotFoundError:
            if f.where is None:
                f.where = _start()  # a file that appears while we wait is new: all of it is to read
            return
        except OSError as e:
            self._problem(f.path, f"cannot open: {e.strerror or e}", once=True)
            return
        try:
            st = os.fstat(fd)
            head = _head(fd)
            offset = _line_end(fd, st.st_size) if f.where is None else f.where.offset
        except OSError as e:
            os.close(fd)
            self._problem(f.path, f"cannot read: {e.strerror or e}", once=True)
            return
        where = f.where
        if where is not None and where.offset > 0 and not _holds(where, st, head):
            os.close(fd)
            yield from self._rescue(f, where)
            return
        self._use(f, fd, st, head, offset)

    def _use(self, f: _Followed, fd: int, st: os.stat_result, head: bytes | None, offset: int) -> None:
        f.fd, f.head, f.pending, f.read_to = fd, head, b"", offset
        f.where = _Where(st.st_dev, st.st_ino, _digest(head), offset)

    def _close(self, f: _Followed) -> None:
        if f.fd is not None:
            os.close(f.fd)
            f.fd = None

    def _drain(self, f: _Followed) -> Iterator[str]:
        """The complete lines written to the open file since it was last read."""
        while f.fd is not None and f.where is not None:
            data = os.pread(f.fd, BLOCK, f.read_to)
            # Checked after reading: if the content was replaced before this check the data
            # is discarded, and if after, the data was still the old content's.
            if self._replaced(f):
                where = f.where
                self._close(f)
                yield from self._rescue(f, where)
                return
            if not data:
                return
            f.read_to += len(data)
            if f.head is None:
                f.head = _head(f.fd)
                f.where.fingerprint = _digest(f.head)
            yield from self._lines_of(f, data)

    def _replaced(self, f: _Followed) -> bool:
        """Whether the open file was truncated (copytruncate, or emptied by hand) since it was read."""
        assert f.fd is not None
        if os.fstat(f.fd).st_size < f.read_to:
            return True
        return f.head is not None and os.pread(f.fd, len(f.head), 0) != f.head

    def _lines_of(self, f: _Followed, data: bytes) -> Iterator[str]:
        """The complete lines of ``pending + data``; the offset moves past each as it is handed out,
        so that ``save`` counts exactly the lines the caller has."""
        block = f.pending + data
        cut = block.rfind(b"\n")
        if cut < 0:
            f.pending = block
            return
        f.pending = block[cut + 1 :]
        where = f.where
        assert where is not None
        # decode_lines keeps one text per raw line: decoding never adds or removes a newline
        for raw, text in zip(block[:cut].split(b"\n"), decode_lines(f.source, block[:cut]), strict=True):
            where.offset += len(raw) + 1
            yield text

    def _finish(self, f: _Followed) -> Iterator[str]:
        """A finished file's last line, when its newline never came."""
        if f.pending and f.where is not None:
            text = decode_lines(f.source, f.pending)[0]
            f.where.offset += len(f.pending)
            f.pending = b""
            yield text

    def _rescue(self, f: _Followed, where: _Where) -> Iterator[str]:
        """Read on in the file ``where`` describes, now under a rotated name; then the name
        is read from its start. A plain file becomes the open file (its writer may not have
        finished with it); a compressed one is read out here."""
        found = _rotated(f.path, where)
        if found is None:
            self._problem(f.path, "replaced before it was read to its end, and its rest was not found "
                          "under a rotated name: lines may be missing")  # fmt: skip
        else:
            source = Source(found)
            try:
                with open_source(source) as stream:
                    if source.stats.get("compression"):
                        yield from self._read_out(f, source, stream, where)
                    else:
                        fd = os.open(found, os.O_RDONLY)
                        st = os.fstat(fd)
                        if st.st_size >= where.offset:
                            self._use(f, fd, st, _head(fd), where.offset)
                            return
                        os.close(fd)  # copied before the lines last read were written: nothing more in it
            except Exception as e:  # each decompressor has its own errors; none may stop the watch
                self._problem(f.path, f"its rest in {found} cannot be read: {e}")
        f.where = _start()

    def _read_out(self, f: _Followed, source: Source, stream: BinaryIO, where: _Where) -> Iterator[str]:
        """The lines of a compressed rotated file after ``where``; the position is kept in it meanwhile."""
        st = os.stat(source.path)
        f.where = _Where(st.st_dev, st.st_ino, where.fingerprint, where.offset)
        f.pending = b""
        skip_bytes(stream, where.offset)
        while block := stream.read(BLOCK):
            yield from self._lines_of(f, block)
        yield from self._finish(f)


def _rotated(path: str, where: _Where) -> str | None:
    """The sibling of ``path`` (``path.1``, ``path-DATE``, compressed or not) holding the file
    ``where`` was read from: plain ones first, the newest first."""
    found: list[tuple[bool, float, str, os.stat_result]] = []
    for name in glob.glob(glob.escape(path) + ".*") + glob.glob(glob.escape(path) + "-*"):
        try:
            st = os.stat(name)
        except OSError:
            continue
        if os.path.isfile(name):
            found.append((name.endswith(_COMPRESSED), -st.st_mtime, name, st))
    found.sort(key=lambda c: c[:3])
    for compressed, _, name, st in found:
        if where.fingerprint is None:  # a first line too long to hash: the inode tells
            if not compressed and (st.st_dev, st.st_ino) == (where.device, where.inode):
                return name
            continue
        try:
            if fingerprint(Source(name)) == where.fingerprint:
                return name
        except Exception:  # unreadable, or compressed and still being written: not the one
            continue
    return None


def _load_state(path: str) -> dict[str, _Where]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise InputError(path, f"cannot read the watch state: {e}") from e
    try:
        if data["version"] != STATE_VERSION:
            raise InputError(
                path, f"watch state version {data['version']}; this postlens knows {STATE_VERSION}"
            )
        return {
            str(name): _Where(int(w["device"]), int(w["inode"]), w["fingerprint"], int(w["offset"]))
            for name, w in data["files"].items()
        }
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise InputError(path, "not a postlens watch state file") from e


def _write_atomically(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with output_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


# -- the journal -----------------------------------------------------------------------

_CURSOR_EVERY = 1.0  # seconds: how often a busy journal's cursor is saved (a crash repeats at most this)


def stream_lines(stream: IO[bytes], stop: threading.Event, poll: float = 0.2) -> Iterator[str]:
    """The lines of a pipe as they come (``docker logs -f postfix | postlens watch -``), until it
    ends or ``stop`` is set; bytes that are not UTF-8 are replaced, CR LF endings taken off."""
    fd = stream.fileno()
    rest = b""
    with selectors.DefaultSelector() as selector:
        try:
            selector.register(fd, selectors.EVENT_READ)
            waits = True
        except (OSError, ValueError):  # a regular file (< mail.log): it never blocks, read it through
            waits = False
        while not stop.is_set():
            if waits and not selector.select(poll):
                continue
            data = os.read(fd, 1 << 16)
            if not data:
                break
            *complete, rest = (rest + data).split(b"\n")
            for raw in complete:
                yield raw.rstrip(b"\r").decode("utf-8", "replace")
    if rest and not stop.is_set():
        yield rest.rstrip(b"\r").decode("utf-8", "replace")


def journal_lines(
    stop: threading.Event,
    *,
    units: tuple[str, ...] = UNITS,
    command: list[str] | None = None,
    cursor_file: str | None = None,
    from_start: bool = False,
    poll: float = 0.2,
) -> Iterator[str]:
    """The journal entries of ``units`` as log lines (see :func:`journal_line`), as they come,
    until ``stop`` is set.

    Runs ``journalctl --follow --output=json`` (``command`` replaces it and its unit filters,
    e.g. ``["journalctl", "--file", PATH, "--follow", "--output=json"]``). With a cursor in
    ``cursor_file`` it starts after it; else at the end of the journal, or at its start with
    ``from_start``. The cursor of the lines the caller has taken is saved there every second,
    when the journal is quiet, and at the end. journalctl ending by itself with an error
    raises :class:`InputError`; its process is always ended when this ends.
    """
    argv = list(command) if command else [
        "journalctl", "--follow", "--output=json", "--all", "--no-pager", *(f"--unit={u}" for u in units)
    ]  # fmt: skip
    cursor = _read_cursor(cursor_file)
    if cursor:
        argv.append(f"--after-cursor={cursor}")
    else:
        argv.append("--no-tail" if from_start else "--lines=0")
    position = _Cursor(cursor_file, cursor)
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: journalctl never blocks on what it says
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
        except OSError as e:
            raise InputError("journal", f"cannot run {argv[0]}: {e.strerror or e}") from e
        try:
            yield from _entries(proc, errors, stop, position, poll, units)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
            position.save()


class _Cursor:
    """The journal cursor of the last entry the caller has handled, and the one in the cursor file."""

    def __init__(self, path: str | None, cursor: str | None) -> None:
        self.path = path
        self.handled = self.saved = cursor
        self.when = time.monotonic()

    def save(self, every: float = 0.0) -> None:
        """Write the handled cursor if it moved on, and if ``every`` seconds passed since the last write."""
        if self.path and self.handled != self.saved and time.monotonic() - self.when >= every:
            _write_atomically(self.path, f"{self.handled}\n")
            self.saved, self.when = self.handled, time.monotonic()


def _entries(proc: subprocess.Popen[bytes], errors: IO[bytes], stop: threading.Event, position: _Cursor,
             poll: float, units: tuple[str, ...]) -> Iterator[str]:  # fmt: skip
    assert proc.stdout is not None
    rest = b""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while not stop.is_set():
            if not selector.select(poll):
                position.save()  # the journal is quiet: a good moment to note the position
                continue
            data = os.read(proc.stdout.fileno(), 1 << 16)
            if not data:
                # without --follow journalctl ends when done: fine, unless it said why
                check_ended(proc, errors, "journal", units, said_fails=True)
                return
            *complete, rest = (rest + data).split(b"\n")
            for raw in complete:
                entry = json_object(raw)
                if entry is None:
                    continue
                text = journal_line(entry)
                if text is not None:
                    yield text
                # the caller asked for the next line: it has handled this one
                position.handled = journal_field(entry.get("__CURSOR")) or position.handled
                if stop.is_set():
                    return
            position.save(_CURSOR_EVERY)


def _read_cursor(path: str | None) -> str | None:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    except FileNotFoundError:
        return None
    except OSError as e:
        raise InputError(path, f"cannot read the journal cursor: {e.strerror or e}") from e


# -- syslog over the network -----------------------------------------------------------

MAX_MESSAGE = 65536  # longer messages are cut (rsyslog's default maximum is 8 kB)
_PRI_RE = re.compile(r"<(\d{1,3})>")
_BSD_STAMP_RE = re.compile(r"([A-Z][a-z]{2})  ?\d{1,2} \d\d:\d\d:\d\d(?:\.\d{1,6})?(?= )")
_ISO_STAMP_RE = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?(?= |$)")
_TAG_RE = re.compile(r"[^\s\[]+\[\d+\]:?")


def _now_stamp() -> str:
    return datetime.now().astimezone().isoformat(timespec="microseconds")


def _sd_end(text: str) -> int:
    """The index after RFC 5424 STRUCTURED-DATA at the start of ``text``: ``-`` or
    ``[id param="value"]...`` (``\\]``, ``\\"`` escaped in values); -1 when malformed."""
    if text.startswith("-"):
        return 1
    i = 0
    while i < len(text) and text[i] == "[":
        i += 1
        quoted = False
        while i < len(text):
            c = text[i]
            if quoted and c == "\\":
                i += 2
                continue
            if c == '"':
                quoted = not quoted
            elif c == "]" and not quoted:
                break
            i += 1
        if i >= len(text):
            return -1
        i += 1
    return i if i > 0 else -1


def syslog_line(data: bytes, sender: str) -> str | None:
    """A syslog message (RFC 5424, or RFC 3164 and what senders make of it) as a log line.

    RFC 5424 becomes ``ISO-TIME HOST APP[PROCID]: MSG`` (structured data dropped; the
    receipt time when it has none); RFC 3164 keeps its own stamp: ``Mmm dd hh:mm:ss HOST
    TAG: MSG``. A message whose sender gave no host gets ``sender`` (its IP address) as host;
    one without a time gets the time it was received. None for an empty message; garbage
    becomes a line the parser will count as malformed.
    """
    text = one_line(data.decode("utf-8", "replace").lstrip())
    if not text:
        return None
    m = _PRI_RE.match(text)
    if m is not None:
        text = text[m.end() :].lstrip(" ")
    if text.startswith("1 "):
        line = _rfc5424(text[2:], sender)
        if line is not None:
            return line
    m = _BSD_STAMP_RE.match(text)
    if m is None or m.group(1) not in MONTHS:
        m = _ISO_STAMP_RE.match(text)
    if m is not None:
        stamp = m.group(0)
        text = text[m.end() :].lstrip(" ")
    else:
        stamp = _now_stamp()  # RFC 3164 4.3.3: a relay gives a message without a time its own
    first, space, after = text.partition(" ")
    if not space or first.endswith(":") or _TAG_RE.fullmatch(first):
        return f"{stamp} {sender} {text}"  # no host: the first word is the tag
    return f"{stamp} {first} {after}"


def _rfc5424(text: str, sender: str) -> str | None:
    """``TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [MSG]`` after ``<PRI>1 ``, or None if not that."""
    parts = text.split(" ", 5)
    if len(parts) == 5:
        parts.append("")  # no STRUCTURED-DATA, not even "-": some senders leave it out
    if len(parts) != 6:
        return None
    stamp, host, app, procid, _msgid, rest = parts
    if stamp == "-":
        stamp = _now_stamp()
    elif not _ISO_STAMP_RE.fullmatch(stamp):
        return None
    end = _sd_end(rest) if rest else 0
    message = rest[max(end, 0) :].removeprefix(" ").removeprefix("\ufeff")  # malformed SD: kept as text
    host = sender if host == "-" else host
    tag = f"{app}[{procid}]" if digits(procid) else app
    return f"{stamp} {host} {tag}: {message}"


def _sender(address: Any) -> str:
    host = str(address[0]) if isinstance(address, tuple) and address else "-"
    return host.removeprefix("::ffff:")  # an IPv4 sender on a dual-stack socket


class _Framer:
    """Cuts a TCP stream into syslog messages (RFC 6587): octet counting (``LEN <PRI>...``)
    or newline framing, told apart per message by its first bytes as the RFC suggests."""

    def __init__(self, sender: str) -> None:
        self.sender = sender
        self.buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The messages ``data`` completes; the rest waits for more."""
        buf, pos, messages = self.buffer + data, 0, []
        size = len(buf)
        while pos < size:
            if buf[pos : pos + 1].isdigit():
                space = buf.find(b" ", pos, pos + 8)
                if space < 0 and size - pos < 8 and buf[pos:].isdigit():
                    break  # the length is still arriving
                count = buf[pos:space] if space >= 0 else b""
                if count.isdigit() and 0 < int(count) <= MAX_MESSAGE:
                    if size == space + 1:
                        break
                    if buf[space + 1 : space + 2] == b"<":  # a counted message starts with its PRI
                        end = space + 1 + int(count)
                        if size < end:
                            break
                        messages.append(buf[space + 1 : end])
                        pos = end
                        continue
            newline = buf.find(b"\n", pos)
            if newline < 0:
                if size - pos <= MAX_MESSAGE:
                    break
                newline = pos + MAX_MESSAGE  # too long: cut
            messages.append(buf[pos:newline])
            pos = newline + 1
        self.buffer = buf[pos:]
        return messages

    def close(self) -> list[bytes]:
        """What is left when the sender closes: its last message may have no newline."""
        rest, self.buffer = self.buffer, b""
        return [rest] if rest.strip() else []


_SCHEMES = ("udp", "tcp", "tls")
_RECEIVE = 1 << 20  # bytes one sender may hand over before the others get a turn


class SyslogListener:
    """Receives syslog messages on ``udp://HOST:PORT``, ``tcp://HOST:PORT`` or ``tls://HOST:PORT``
    (port 514 if none; port 0 picks a free one) and yields them as log lines
    (:func:`syslog_line`); ``tls`` is the certificate and key (PEM) a ``tls://`` listener shows.

    UDP: one message per datagram. TCP: several senders at once, each with octet counting or
    newline framing. The socket is bound here, so senders may start before ``lines`` does;
    ``lines`` closes it when it ends (or ``close``, when ``lines`` is never run).
    """

    def __init__(self, url: str, *, poll: float = 0.2, tls: tuple[str, str] | None = None) -> None:
        self.url = url
        self.poll = poll
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in _SCHEMES or not parts.netloc or parts.path.strip("/") or port == -1:
            raise UsageError(f"--listen {url}: expected udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT")
        self.tcp = parts.scheme in ("tcp", "tls")
        self._tls: ssl.SSLContext | None = None
        if parts.scheme == "tls":  # RFC 5425: syslog over TLS, octet counted (port 6514 by custom)
            if tls is None:
                raise UsageError(f"--listen {url}: TLS needs tls_cert and tls_key in [watch]")
            self._tls = server_tls(tls, f"--listen {url}:")
        kind = socket.SOCK_STREAM if self.tcp else socket.SOCK_DGRAM
        host = parts.hostname or "0.0.0.0"
        try:
            family, _, _, _, address = socket.getaddrinfo(host, 514 if port is None else port, type=kind,
                                                          flags=socket.AI_PASSIVE)[0]  # fmt: skip
        except OSError as e:
            raise UsageError(f"--listen {url}: {e.strerror or e}") from e
        self._sock = socket.socket(family, kind)
        try:
            if self.tcp:
                # a restarted watch binds again at once, though the old connections linger
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind(address)
            if self.tcp:
                self._sock.listen(64)
        except OSError as e:
            self._sock.close()
            raise UsageError(f"--listen {url}: cannot listen: {e.strerror or e}") from e
        self._sock.setblocking(False)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def close(self) -> None:
        self._sock.close()

    def lines(self, stop: threading.Event) -> Iterator[str]:
        """The received messages as log lines until ``stop`` is set; then every socket is closed."""
        selector = selectors.DefaultSelector()
        selector.register(self._sock, selectors.EVENT_READ)
        try:
            while not stop.is_set():
                for key, _ in selector.select(self.poll):
                    if key.data is not None:
                        yield from self._receive(selector, *key.data)
                    elif self.tcp:
                        self._accept(selector)
                    else:
                        yield from self._datagrams()
        finally:
            for key in list(selector.get_map().values()):
                if key.data is not None:
                    key.data[0].close()
            selector.close()
            self._sock.close()

    def _datagrams(self) -> Iterator[str]:
        for _ in range(1000):  # then look at stop again
            try:
                data, address = self._sock.recvfrom(65535)
            except BlockingIOError:
                return
            except OSError:
                continue  # an ICMP error reported on the socket; the next datagram is fine
            line = syslog_line(data, _sender(address))
            if line is not None:
                yield line

    def _accept(self, selector: selectors.BaseSelector) -> None:
        while True:
            try:
                conn, address = self._sock.accept()
            except OSError:
                return  # none waiting, or out of descriptors: then it waits in the backlog
            conn.setblocking(False)
            if self._tls is not None:  # the handshake is made as the first bytes come
                conn = self._tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
            selector.register(conn, selectors.EVENT_READ, (conn, _Framer(_sender(address))))

    def _receive(
        self, selector: selectors.BaseSelector, conn: socket.socket, framer: _Framer
    ) -> Iterator[str]:
        # Read all there is: TLS may hold whole records it already took off the socket, which
        # select() no longer signals. At most _RECEIVE bytes at a time, for the other senders.
        chunks: list[bytes] = []
        ended = False
        try:
            while sum(map(len, chunks)) < _RECEIVE:
                chunk = conn.recv(65536)
                if not chunk:
                    ended = True
                    break
                chunks.append(chunk)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass  # nothing more now, or the TLS handshake goes on
        except OSError:
            ended = True  # reset by the sender, or a failed handshake: what came before still counts
        messages = framer.feed(b"".join(chunks)) if chunks else []
        for message in messages + (framer.close() if ended else []):
            line = syslog_line(message, framer.sender)
            if line is not None:
                yield line
        if ended:
            selector.unregister(conn)
            conn.close()
