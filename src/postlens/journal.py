"""journal: the systemd journal as log lines, for the commands that read logs.

A source spelled ``journal:`` reads this machine's journal, ``journal:PATH`` a journal file or
directory copied from another (``journalctl --file`` / ``--directory``): the entries of the
Postfix and Dovecot units, oldest first, each as one line ``ISO-TIME HOST IDENTIFIER[PID]:
MESSAGE`` that the line parser reads like any other (:func:`journal_line`, shared with
``watch --journal``, which follows the journal as it grows).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from postlens.errors import InputError
from postlens.lines import digits
from postlens.sources import JOURNAL

UNITS = ("postfix*", "dovecot*")  # Postfix (every instance) and the logins Dovecot checks
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def one_line(text: str) -> str:
    """A message as one log line: a trailing newline dropped, inner ones made spaces."""
    return text.rstrip("\r\n\x00").replace("\r", " ").replace("\n", " ")


def journal_field(value: Any) -> str | None:
    """A field of ``journalctl -o json``: a string, an array of bytes (not UTF-8 or with
    control characters), or an array of those when the entry has the field more than once."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        if all(isinstance(b, int) for b in value):
            try:
                return bytes(value).decode("utf-8", "replace")
            except ValueError:
                return None
        return journal_field(value[0])
    return None


def journal_line(entry: dict[str, Any]) -> str | None:
    """A journal entry as a log line: ``ISO-TIME HOST IDENTIFIER[PID]: MESSAGE``, or None without a message.

    The time is the sender's (``_SOURCE_REALTIME_TIMESTAMP``) when known, else the journal's,
    as journalctl's own short output does, in local time with its offset.
    """
    message = journal_field(entry.get("MESSAGE"))
    if message is None:
        return None
    stamp = None
    for key in ("_SOURCE_REALTIME_TIMESTAMP", "__REALTIME_TIMESTAMP"):
        usec = journal_field(entry.get(key))
        if usec is not None and digits(usec):
            stamp = (_EPOCH + timedelta(microseconds=int(usec))).astimezone()
            break
    if stamp is None:
        return None
    host = journal_field(entry.get("_HOSTNAME")) or "localhost"
    ident = journal_field(entry.get("SYSLOG_IDENTIFIER")) or journal_field(entry.get("_COMM")) or "-"
    pid = journal_field(entry.get("_PID")) or journal_field(entry.get("SYSLOG_PID"))
    tag = f"{ident}[{pid}]" if pid and digits(pid) else ident
    return f"{stamp.isoformat(timespec='microseconds')} {host} {tag}: {one_line(message)}"


def json_object(raw: bytes) -> dict[str, Any] | None:
    """One line of ``journalctl --output=json``: an entry, or None for anything else."""
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def check_ended(
    proc: subprocess.Popen[bytes], errors: IO[bytes], name: str, units: tuple[str, ...], *, said_fails: bool
) -> None:
    """journalctl has ended: an InputError for the source ``name`` when it failed (its exit
    status, or with ``said_fails`` anything it said), with the last line it said."""
    code = proc.wait(timeout=5)
    errors.seek(0)
    said = [x.strip() for x in errors.read().decode("utf-8", "replace").splitlines() if x.strip()]
    if code == 0 and not (said_fails and said):
        return
    if said and "filter for units" in said[-1]:  # no unit of the journal matches ours
        raise InputError(name, f"no entries of the units {', '.join(units)} in this journal")
    raise InputError(name, said[-1] if said else f"journalctl ended with status {code}")


def journal_command(spec: str, units: tuple[str, ...] = UNITS) -> list[str]:
    """journalctl's arguments for the source ``spec``: its whole journal, oldest entry first."""
    where = spec[len(JOURNAL) :]
    argv = ["journalctl", "--output=json", "--all", "--no-pager", *(f"--unit={u}" for u in units)]
    if where:
        argv.append(f"--directory={where}" if os.path.isdir(where) else f"--file={where}")
    return argv


class JournalReader(io.RawIOBase):
    """journalctl's JSON output as the bytes of log lines; journalctl failing is an
    :class:`InputError` once the lines it gave are read."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        # a file, not a pipe: journalctl never blocks on what it says; closed by close()
        self._errors: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        argv = journal_command(spec)
        try:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._errors
            )
        except OSError as e:
            self._errors.close()
            raise InputError(spec, f"cannot run {argv[0]}: {e.strerror or e}") from e
        self._pending = b""
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            if not self._fill():
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _fill(self) -> bool:
        """Convert the next block of journalctl's output; False at its end."""
        assert self._proc.stdout is not None
        data = os.read(self._proc.stdout.fileno(), 1 << 16)
        if not data:
            check_ended(self._proc, self._errors, self.spec, UNITS, said_fails=False)
            return False
        *complete, self._rest = (self._rest + data).split(b"\n")
        out = []
        for raw in complete:
            entry = json_object(raw)
            text = journal_line(entry) if entry is not None else None
            if text is not None:
                out.append(text)
        if out:
            self._pending = ("\n".join(out) + "\n").encode()
        return True

    def close(self) -> None:
        if not self.closed:
            if self._proc.poll() is None:
                self._proc.terminate()
                self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._errors.close()
        super().close()
