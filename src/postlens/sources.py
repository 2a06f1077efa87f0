"""sources: find log files, put rotated sets in order, open them whatever their compression.

``expand`` turns command-line arguments (paths, globs, directories, ``-``, URLs and
``journal:`` sources) into an ordered list of :class:`Source`, collecting problems instead
of stopping at the first.
``iter_lines`` reads a source as text lines, counting CRLF endings and bytes that are
not UTF-8 on the way.
"""

from __future__ import annotations

import bz2
import glob
import io
import lzma
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from postlens import progress
from postlens.errors import InputError
from postlens.remote import expand_url, is_url, open_url

BLOCK = 1 << 20
JOURNAL = "journal:"  # a source read with journalctl (postlens.journal)

# Magic bytes of what we can read, and of what we recognise but cannot.
_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
_FOREIGN_MAGIC = (
    (b"PK\x03\x04", "zip"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"Rar!", "rar"),
    (b"\x89LZO", "lzo"),
    (b"\x5d\x00\x00", "lzma"),
    (b"\x1f\x9d", "compress (.Z)"),
)
_LOG_NAME_RE = re.compile(r"^(?:mail\.log|maillog|mail\.info|mail\.warn|mail\.err|mail)(?:[.-].*)?$")
_ROTATION_RE = re.compile(
    r"^(?P<base>.*?)(?:\.(?P<num>\d+)|-(?P<date>\d{8}(?:\d{2})?))?(?P<comp>\.(?:gz|bz2|xz|zst|zstd))?$"
)


@dataclass(slots=True)
class Source:
    """One input: a file path, a URL, ``-`` for standard input, or a ``journal:`` source."""

    path: str
    index: int = 0
    mtime: float | None = None
    size: int | None = None
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return "<stdin>" if self.path == "-" else self.path


def is_journal(spec: str) -> bool:
    return spec.startswith(JOURNAL)


def _rotation_key(path: str) -> tuple[str, int, str, int]:
    """Sort key putting a rotated set oldest first: .9.gz ... .1, dateext ascending, live file last."""
    name = os.path.basename(path)
    m = _ROTATION_RE.match(name)
    assert m is not None  # the pattern matches every string
    base = os.path.join(os.path.dirname(path), m.group("base"))
    if m.group("num") is not None:
        return (base, 0, "", -int(m.group("num")))
    if m.group("date") is not None:
        return (base, 1, m.group("date"), 0)
    return (base, 2, "", 0)


def order_rotated(paths: list[str]) -> list[str]:
    return sorted(paths, key=_rotation_key)


def expand(args: list[str]) -> tuple[list[Source], list[InputError]]:
    """Paths, globs and directories to an ordered list of sources, and the problems found."""
    problems: list[InputError] = []
    found: list[str] = []
    remote: dict[str, tuple[float | None, int | None]] = {}  # url -> (mtime, size)
    stdin = False
    journals: list[str] = []
    for arg in args:
        if arg == "-":
            stdin = True
            continue
        if is_journal(arg):
            where = arg.partition(":")[2]
            if where and not os.path.exists(where):
                problems.append(InputError(arg, "no such journal file or directory"))
            elif arg not in journals:
                journals.append(arg)
            continue
        if is_url(arg):
            try:
                for url, mtime, size in expand_url(arg, _LOG_NAME_RE):
                    remote[url] = (mtime, size)
                    found.append(url)
            except InputError as e:
                problems.append(e)
            continue
        if os.path.isdir(arg):
            names = sorted(n for n in os.listdir(arg) if _LOG_NAME_RE.match(n))
            files = [os.path.join(arg, n) for n in names if os.path.isfile(os.path.join(arg, n))]
            if not files:
                problems.append(InputError(arg, "directory holds no mail.log* or maillog* files"))
            found.extend(files)
            continue
        if not os.path.exists(arg) and glob.has_magic(arg):
            matches = [p for p in glob.glob(arg) if os.path.isfile(p)]
            if not matches:
                problems.append(InputError(arg, "no file matches this pattern"))
            found.extend(matches)
            continue
        if not os.path.exists(arg):
            problems.append(InputError(arg, "no such file"))
            continue
        found.append(arg)
    seen: set[str] = set()
    unique = []
    for p in found:
        real = p if p in remote else os.path.realpath(p)
        if real not in seen:
            seen.add(real)
            unique.append(p)
    sources = []
    for i, p in enumerate(order_rotated(unique)):
        if p in remote:
            sources.append(Source(p, i, *remote[p]))
            continue
        try:
            st = os.stat(p)
            sources.append(Source(p, i, st.st_mtime, st.st_size))
        except OSError as e:
            problems.append(InputError(p, e.strerror or str(e)))
    sources += [Source(spec, len(sources) + i) for i, spec in enumerate(journals)]
    if stdin:
        sources.append(Source("-", len(sources)))
    return sources, problems


def _gzip_reader(raw: BinaryIO) -> BinaryIO:
    try:
        from isal import isal_zlib as zlib_like  # several times as fast as zlib
    except ImportError:  # pragma: no cover - isal is a dependency; this is a fallback
        import zlib as zlib_like  # type: ignore[no-redef]
    return _Members(raw, lambda: zlib_like.decompressobj(wbits=31), _GZIP_MAGIC)  # type: ignore[return-value]


def _zstd_reader(raw: BinaryIO) -> BinaryIO:
    try:
        import zstandard
    except ImportError as e:
        raise InputError("", "zstd data needs the zstandard package") from e
    return _Members(raw, zstandard.ZstdDecompressor().decompressobj)  # type: ignore[return-value]


_GZIP_MAGIC = b"\x1f\x8b"


class _Members(io.RawIOBase):
    """The members of a gzip file, or the frames of a zstd file, one after another, fed block by
    block to the library's decompressor. All that comes before a cut is handed out, then the cut
    is an error: igzip's own reader drops the block it was decompressing when its input ends
    early, and zstandard's ends quietly."""

    def __init__(self, raw: BinaryIO, start: Callable[[], Any], magic: bytes = b"") -> None:
        self._raw = raw
        self._start = start
        self._magic = magic  # how a member begins, after zero padding (gzip); b"": not checked
        self._member = start()
        self._begun = False  # the current member has been given input
        self._out = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._out:
            data = self._raw.read(BLOCK)
            if not data:
                if self._begun:
                    raise EOFError("Compressed file ended before the end-of-stream marker was reached")
                return 0
            self._out = memoryview(self._decompress(data))
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def _decompress(self, data: bytes) -> bytes:
        out = []
        while data:
            if not self._begun and self._magic:
                data = data.lstrip(b"\x00")  # gzip members may be padded with zeros
                if not data:
                    break
                if not data.startswith(self._magic[: len(data)]):
                    raise OSError("not a gzipped file (trailing garbage)")
            self._begun = True
            try:
                out.append(self._member.decompress(data))
            except Exception as e:  # zlib.error, isal's IsalError, zstandard.ZstdError
                raise OSError(str(e)) from e
            if not self._member.eof:
                break
            data = self._member.unused_data  # the next member begins here
            self._member = self._start()
            self._begun = False
        return b"".join(out)


def _closing_both(stream: BinaryIO, under: BinaryIO) -> BinaryIO:
    """``stream``, whose close also closes the file it reads: the gzip, bzip2 and xz readers
    leave a file object they were given open."""
    close = stream.close

    def close_both() -> None:
        try:
            close()
        finally:
            if under is not sys.stdin.buffer:
                under.close()

    stream.close = close_both  # type: ignore[method-assign]
    return stream


def open_source(src: Source) -> BinaryIO:
    """Open a source for binary reading, decompressing by its magic bytes."""
    if src.path == "-":
        raw: BinaryIO = sys.stdin.buffer
    elif is_journal(src.path):
        from postlens.journal import JournalReader

        return io.BufferedReader(JournalReader(src.path))  # type: ignore[return-value]
    elif is_url(src.path):
        raw = open_url(src.path)
    else:
        try:
            raw = open(src.path, "rb")  # noqa: SIM115 - closed by the caller
        except OSError as e:
            raise InputError(src.name, e.strerror or str(e)) from e
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[arg-type,type-var]
    head = buffered.peek(8)[:8]
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            src.stats["compression"] = 1
            if kind == "gzip":
                return _closing_both(_gzip_reader(buffered), buffered)
            if kind == "bzip2":
                return _closing_both(bz2.BZ2File(buffered), buffered)  # type: ignore[arg-type]
            if kind == "xz":
                return _closing_both(lzma.LZMAFile(buffered), buffered)  # type: ignore[arg-type]
            return _closing_both(_zstd_reader(buffered), buffered)
    for magic, kind in _FOREIGN_MAGIC:
        if head.startswith(magic):
            buffered.close()
            raise InputError(src.name, f"unknown compression ({kind}); decompress it first")
    return buffered  # type: ignore[return-value]


def is_plain(source: Source) -> bool:
    """Whether a source is an uncompressed local file: one that can be cut at byte offsets."""
    if source.path == "-" or is_url(source.path) or is_journal(source.path):
        return False
    try:
        with open_source(source):
            return not source.stats.pop("compression", 0)
    except InputError:
        return False


def plain_total(paths: list[str]) -> int | None:
    """The bytes to read when every input is an uncompressed file; None when not known ahead."""
    sources, _ = expand(paths)
    if not sources or not all(is_plain(s) for s in sources):
        return None
    return sum(s.size or 0 for s in sources)


def decode_lines(src: Source, chunk: bytes) -> list[str]:
    """The text lines of a block of whole lines; CRLF endings and bad UTF-8 counted in ``src.stats``."""
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError:
        lines = []
        for raw in chunk.split(b"\n"):
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                lines.append(raw.decode("utf-8", "replace"))
                src.stats["invalid_utf8"] = src.stats.get("invalid_utf8", 0) + 1
        text = "\n".join(lines)
    if "\r" in text:
        n = text.count("\r\n") + (1 if text.endswith("\r") else 0)
        src.stats["crlf"] = src.stats.get("crlf", 0) + n
        text = text.replace("\r\n", "\n")
        if text.endswith("\r"):
            text = text[:-1]
    return text.split("\n")


def iter_lines(src: Source, stream: BinaryIO, limit: int | None = None) -> Iterator[str]:
    """Yield the text lines of a source; endings stripped, bad bytes replaced and counted.

    With ``limit``, read at most that many bytes (a chunk that ends at a line boundary).
    """
    rest = b""
    first = True
    done = 0
    left = limit
    # read1: what a decompressor gave before it found its input cut off is not thrown away
    read = getattr(stream, "read1", stream.read)
    try:
        while True:
            if left is None:
                block = read(BLOCK)
            else:
                block = read(min(BLOCK, left))
                left -= len(block)
            if first:
                first = False
                if _looks_binary(block):
                    raise InputError(src.name, "binary data, not a text log")
            if not block:
                break
            block = rest + block
            cut = block.rfind(b"\n")
            if cut < 0:
                rest = block
                continue
            rest = block[cut + 1 :]
            lines = decode_lines(src, block[:cut])
            done += cut + 1
            progress.advance(cut + 1)
            yield from lines
        if rest:
            progress.advance(len(rest))
            yield from decode_lines(src, rest)
    except (OSError, EOFError, lzma.LZMAError, ValueError) as e:
        raise InputError(src.name, f"unreadable after {done} bytes: {e}") from e


def each_line(sources: list[Source], problems: list[InputError]) -> Iterator[tuple[Source, str]]:
    """Every text line of every source in turn, with its source. A source that cannot be read
    adds its error to ``problems`` after the lines it gave, and the next one is read."""
    for source in sources:
        try:
            stream = open_source(source)
            try:
                for text in iter_lines(source, stream):
                    yield source, text
            finally:
                stream.close()
        except InputError as e:
            problems.append(e)
        except OSError as e:  # reading the first bytes, before iter_lines takes over
            problems.append(InputError(source.name, e.strerror or str(e)))


# control bytes a text log does not hold (tab, line ends, form feed and escape it may)
_CONTROL = bytes(b for b in range(32) if b not in b"\t\n\v\f\r\x1b") + b"\x7f"


def _looks_binary(block: bytes) -> bool:
    """Over 1% NUL bytes, or over 5% other control bytes, in the first 8 KiB: random or
    compressed data has about 10%, a log next to none."""
    head = block[:8192]
    if b"\x00" in head and head.count(b"\x00") > len(head) // 100:
        return True
    return len(head) - len(head.translate(None, _CONTROL)) > len(head) // 20
