import bz2
import gzip
import lzma
import os
import random
import re
import zlib
from pathlib import Path

import pytest
import zstandard

import postlens
from postlens.errors import InputError
from postlens.sources import expand, iter_lines, open_source, order_rotated

LINES = [f"Nov  5 10:00:{i:02d} mx postfix/qmgr[1]: 4A3B2C1D{i:02d}: removed" for i in range(50)]
TEXT = ("\n".join(LINES) + "\n").encode()


def read_all(path: Path) -> list[str]:
    sources, problems = expand([str(path)])
    assert problems == []
    with open_source(sources[0]) as stream:
        return list(iter_lines(sources[0], stream))


def test_rotated_sets_are_read_oldest_first() -> None:
    names = ["/l/mail.log", "/l/mail.log.1", "/l/mail.log.10.gz", "/l/mail.log.2.gz", "/l/mail.log.3.xz"]
    assert order_rotated(names) == [
        "/l/mail.log.10.gz", "/l/mail.log.3.xz", "/l/mail.log.2.gz", "/l/mail.log.1", "/l/mail.log",
    ]  # fmt: skip
    dateext = ["/l/maillog", "/l/maillog-20261127.gz", "/l/maillog-20261120", "/l/maillog-20261126.bz2"]
    assert order_rotated(dateext) == [
        "/l/maillog-20261120", "/l/maillog-20261126.bz2", "/l/maillog-20261127.gz", "/l/maillog",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "pack"),
    [
        ("plain", lambda b: b),
        ("gz", gzip.compress),
        ("bz2", bz2.compress),
        ("xz", lzma.compress),
        ("zst", lambda b: zstandard.ZstdCompressor().compress(b)),
    ],
)
def test_compression_is_found_by_magic_bytes(tmp_path: Path, name: str, pack) -> None:
    path = tmp_path / "log-without-telling-suffix"
    path.write_bytes(pack(TEXT))
    assert read_all(path) == LINES


def test_gzip_members_one_after_another_with_padding(tmp_path: Path) -> None:
    """``cat a.gz b.gz`` and zero padding after a member, as gzip itself reads them."""
    half = len(TEXT) // 2
    path = tmp_path / "mail.log.gz"
    path.write_bytes(gzip.compress(TEXT[:half]) + b"\0" * 700 + gzip.compress(TEXT[half:]) + b"\0" * 9)
    assert read_all(path) == LINES


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda packed: packed + b"\x01garbage", "trailing garbage"),
        (lambda packed: packed[:-8] + bytes([packed[-8] ^ 1]) + packed[-7:], "unreadable after"),  # CRC
    ],
    ids=["garbage", "crc"],
)
def test_damaged_gzip_is_an_error_after_its_lines(tmp_path: Path, damage, message: str) -> None:
    path = tmp_path / "mail.log.gz"
    path.write_bytes(damage(gzip.compress(TEXT)))
    sources, _ = expand([str(path)])
    got: list[str] = []
    with pytest.raises(InputError, match=message), open_source(sources[0]) as stream:
        got.extend(iter_lines(sources[0], stream))
    assert got == LINES[: len(got)]


def test_directory_and_glob(tmp_path: Path) -> None:
    (tmp_path / "mail.log").write_bytes(TEXT)
    (tmp_path / "mail.log.1.gz").write_bytes(gzip.compress(TEXT))
    (tmp_path / "other.txt").write_bytes(b"x\n")
    sources, problems = expand([str(tmp_path)])
    assert problems == []
    assert [os.path.basename(s.path) for s in sources] == ["mail.log.1.gz", "mail.log"]
    sources, _ = expand([str(tmp_path / "mail.log*")])
    assert [os.path.basename(s.path) for s in sources] == ["mail.log.1.gz", "mail.log"]


def test_crlf_and_bad_utf8_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "mail.log"
    path.write_bytes(b"a line\r\nbad \xff\xfe bytes\nlast without newline")
    sources, _ = expand([str(path)])
    with open_source(sources[0]) as stream:
        lines = list(iter_lines(sources[0], stream))
    assert lines == ["a line", "bad \ufffd\ufffd bytes", "last without newline"]
    assert sources[0].stats["crlf"] == 1
    assert sources[0].stats["invalid_utf8"] == 1


def test_problems_are_collected_not_raised(tmp_path: Path) -> None:
    empty = tmp_path / "empty-dir"
    empty.mkdir()
    sources, problems = expand([str(tmp_path / "missing.log"), str(empty), str(tmp_path / "none*.log")])
    assert sources == []
    assert [p.problem for p in problems] == [
        "no such file", "directory holds no mail.log* or maillog* files", "no file matches this pattern",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"PK\x03\x04rest-of-zip", "unknown compression (zip)"),
        (b"\x04\x22\x4d\x18lz4", "unknown compression (lz4)"),
        (b"\x00\x01\x02\x00" * 100, "binary data, not a text log"),
        (random.Random(5).randbytes(4000), "binary data, not a text log"),  # few NULs, many controls
    ],
)
def test_unreadable_content(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "mail.log"
    path.write_bytes(content)
    sources, _ = expand([str(path)])
    with pytest.raises(InputError, match=re.escape(message)), open_source(sources[0]) as stream:
        list(iter_lines(sources[0], stream))


def _zstd_partial(cut: bytes) -> bytes:
    """What zstd's streaming decompressor makes of a cut-off file, frame by frame."""
    dctx, out = zstandard.ZstdDecompressor(), b""
    while cut:
        frame = dctx.decompressobj()
        out += frame.decompress(cut)
        cut = frame.unused_data if frame.eof else b""
    return out


def _zstd_frames(text: bytes) -> bytes:
    z = zstandard.ZstdCompressor()
    return z.compress(text[:5000]) + z.compress(text[5000:])


@pytest.mark.parametrize(
    ("pack", "partial"),
    [
        (gzip.compress, lambda cut: zlib.decompressobj(wbits=31).decompress(cut)),
        (bz2.compress, None),  # a cut bzip2 block is lost whole
        (lzma.compress, lambda cut: lzma.LZMADecompressor().decompress(cut)),
        (lambda b: zstandard.ZstdCompressor().compress(b), _zstd_partial),
        (_zstd_frames, _zstd_partial),
    ],
    ids=["gz", "bz2", "xz", "zst", "zst-frames"],
)
def test_a_truncated_archive_is_an_error_after_the_lines_it_gave(tmp_path: Path, pack, partial) -> None:
    """A rotated log cut off (a disk that filled while compressing): the lines before the cut
    are read and counted, and the source is named, for zstd too (its own reader ends quietly)."""
    text = b"".join(b"Nov  5 10:%02d:%02d mx postfix/qmgr[1]: A%05d: removed\n" % (i // 60 % 60, i % 60, i)
                    for i in range(40000))  # fmt: skip
    packed = pack(text)
    cut = packed[: len(packed) * 2 // 3]
    path = tmp_path / "mail.log.1"
    path.write_bytes(cut)
    result, problems = postlens.report([str(path)], year=2026, tz="UTC", jobs=1)
    assert [p.problem[:17] for p in problems] == ["unreadable after "]
    lines = result["coverage"]["lines"]
    assert result["coverage"]["recognised"] == lines  # whole lines only
    if partial is None:
        assert 0 < lines < 40000
    else:
        assert lines == partial(cut).count(b"\n") > 0
