#!/usr/bin/env python3
"""How fast each decompressor postlens could use reads a compressed mail log, in one run.

    bench/decompress.py LOG

Compresses LOG with gzip, bzip2, xz and zstd, then times reading each back in 1 MiB blocks:
gzip through the standard library's zlib and through python-isal (what postlens uses),
zstd through zstandard, bzip2 and xz through the standard library. Prints MB/s of
uncompressed log, to compare with the rate postlens parses at (bench/report_vs_pflogsumm.py):
decompression must not be the bottleneck.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import zstandard
from isal import igzip


def drain(stream: BinaryIO) -> int:
    total = 0
    while block := stream.read(1 << 20):
        total += len(block)
    return total


def rate(open_: Callable[[bytes], BinaryIO], packed: bytes, repeat: int = 3) -> float:
    best = float("inf")
    size = 0
    for _ in range(repeat):
        start = time.perf_counter()
        size = drain(open_(packed))
        best = min(best, time.perf_counter() - start)
    return size / best / 1e6


def main() -> int:
    raw = Path(sys.argv[1]).read_bytes()
    print(f"log: {sys.argv[1]} ({len(raw) / 1e6:.1f} MB uncompressed)")
    gz = gzip.compress(raw, 6)
    cases = [
        ("gzip, zlib (stdlib)", gz, lambda b: gzip.GzipFile(fileobj=io.BytesIO(b))),
        ("gzip, python-isal", gz, lambda b: igzip.IGzipFile(fileobj=io.BytesIO(b))),
        ("zstd, zstandard", zstandard.ZstdCompressor().compress(raw),
         lambda b: zstandard.ZstdDecompressor().stream_reader(io.BytesIO(b), read_across_frames=True)),
        ("bzip2 (stdlib)", bz2.compress(raw), lambda b: bz2.BZ2File(io.BytesIO(b))),
        ("xz (stdlib)", lzma.compress(raw, preset=1), lambda b: lzma.LZMAFile(io.BytesIO(b))),  # noqa: SIM115
    ]  # fmt: skip
    for name, packed, open_ in cases:
        print(f"{name:24s} {rate(open_, packed):8.0f} MB/s   (compressed {len(packed) / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
