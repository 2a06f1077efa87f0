import bz2
import gzip
import lzma
import os
import re
from pathlib import Path

import pytest
import zstandard

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
    ],
)
def test_unreadable_content(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "mail.log"
    path.write_bytes(content)
    sources, _ = expand([str(path)])
    with pytest.raises(InputError, match=re.escape(message)), open_source(sources[0]) as stream:
        list(iter_lines(sources[0], stream))


def test_truncated_gzip_keeps_what_was_read(tmp_path: Path) -> None:
    path = tmp_path / "mail.log.1.gz"
    path.write_bytes(gzip.compress(TEXT * 2000)[:-100])
    sources, _ = expand([str(path)])
    got: list[str] = []
    with pytest.raises(InputError, match="unreadable after"), open_source(sources[0]) as stream:
        for line in iter_lines(sources[0], stream):
            got.append(line)
    assert len(got) > 0
