"""parallel: read a log as chunks in worker processes and merge the partial results.

Plain files are cut at line boundaries into chunks (one per process, see chunk_size); compressed
files and standard input are one chunk each. Every chunk is read by its own
:class:`~postlens.pipeline.Analysis` (only the very first one knows it starts the log), and
the partial results are merged in log order, which gives exactly what one pass gives.

Year-less stamps need the year at each chunk's start: the month of each chunk's first
classic stamp is read up front, and the year is carried from chunk to chunk by the same
rule one pass applies line by line (a chunk would have to span more than half a year for
the two to differ).
"""

from __future__ import annotations

import copy
import functools
import gc
import mmap
import multiprocessing
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from postlens.errors import InputError
from postlens.lines import MONTH_NAMES, LineParser, YearGuess, classic_month, zone
from postlens.pipeline import RELAXED_GC, Analysis, Settings, input_table, relaxed_gc
from postlens.sources import Source, expand, is_plain, iter_lines, open_source

# Each chunk costs a pickled partial result and a merge, so a file gets one chunk per process,
# within these bounds (the upper one keeps a worker's in-flight state small).
MIN_CHUNK_BYTES = 8 << 20
MAX_CHUNK_BYTES = 256 << 20


def chunk_size(sources: list[Source], jobs: int) -> int:
    total = sum(s.size or 0 for s in sources if s.path != "-")
    return max(MIN_CHUNK_BYTES, min(MAX_CHUNK_BYTES, -(-total // max(1, jobs))))


@dataclass(slots=True)
class Chunk:
    source: Source
    start: int
    length: int | None  # None: to the end (compressed files, stdin)
    years: YearGuess
    first: bool


def _year_states(source: Source, starts: list[int], years: YearGuess) -> list[YearGuess]:
    """The year guess as one pass has it at each chunk start.

    A year-less stamp moves the guess only when its month differs from the last one, so
    only lines that start with a letter or "<" and not with the last month's name need a
    closer look; a regular expression finds them in the mapped file at C speed.
    """
    states: list[YearGuess] = []
    pending = list(starts)
    current = b""
    with open(source.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        pos = 0
        line_start: int | None = 0 if data[:1].isalpha() or data[:1] == b"<" else None
        while True:
            if line_start is None:
                m = _candidate(current).search(data, pos)
                if m is None:
                    break
                line_start = m.start() + 1
            while pending and pending[0] <= line_start:
                pending.pop(0)
                states.append(copy.copy(years))
            line_end = data.find(b"\n", line_start)
            line = data[line_start : line_end if line_end >= 0 else len(data)]
            month = classic_month(line.decode("utf-8", "replace"))
            if month:
                years.for_month(month)
                current = MONTH_NAMES[month].encode()
            pos, line_start = line_start, None
    while pending:
        pending.pop(0)
        states.append(copy.copy(years))
    return states


@functools.cache
def _candidate(current: bytes) -> re.Pattern[bytes]:
    """The newline before a line that may name another month than ``current``."""
    other = b"(?!" + re.escape(current) + b")" if current else b""
    return re.compile(b"\n" + other + b"[A-Za-z<]")


def _boundaries(source: Source, chunk_bytes: int) -> list[int]:
    """Chunk starts: every ``chunk_bytes``, moved forward to the next line start."""
    size = source.size or 0
    starts = [0]
    with open(source.path, "rb") as f:
        pos = chunk_bytes
        while pos < size:
            f.seek(pos)
            f.readline()
            start = f.tell()
            if start >= size:
                break
            if start > starts[-1]:
                starts.append(start)
            pos = start + chunk_bytes
    return starts


def plan(sources: list[Source], settings: Settings, chunk_bytes: int) -> list[Chunk]:
    """Cut the sources into chunks, each with the year guess its year-less stamps start from."""
    chunks: list[Chunk] = []
    tz = zone(settings.tz)
    for source in sources:
        years = YearGuess(settings.year, source.mtime, tz)
        starts = _boundaries(source, chunk_bytes) if is_plain(source) else [0]
        if len(starts) == 1:
            chunks.append(Chunk(source, 0, None, years, not chunks))
            continue
        ends = [*starts[1:], source.size or 0]
        states = _year_states(source, starts, years)
        for start, end, state in zip(starts, ends, states, strict=True):
            chunks.append(Chunk(source, start, end - start, state, not chunks))
    return chunks


def read_chunk(settings: Settings, chunk: Chunk) -> tuple[Analysis, InputError | None]:
    """Read one chunk into a fresh Analysis (runs in a worker process)."""
    analysis = Analysis(settings, first=chunk.first)
    parser = LineParser(chunk.years, analysis.tz)
    source = replace(chunk.source, stats={})  # this chunk's own CRLF and UTF-8 counts
    error = None
    try:
        stream = open_source(source)
        try:
            if chunk.start:
                stream.seek(chunk.start)
            analysis.read(iter_lines(source, stream, chunk.length), parser, (source.index, chunk.start))
        finally:
            stream.close()
    except InputError as e:
        error = e
    analysis.report.coverage(
        crlf=source.stats.get("crlf", 0), invalid_utf8=source.stats.get("invalid_utf8", 0)
    )
    return analysis, error


def _read_chunk_star(args: tuple[Settings, Chunk]) -> tuple[Analysis, InputError | None]:
    return read_chunk(*args)


def _results(
    chunks: list[Chunk], settings: Settings, jobs: int
) -> Iterator[tuple[Analysis, InputError | None]]:
    if jobs <= 1 or len(chunks) <= 1 or any(c.source.path == "-" for c in chunks):
        for chunk in chunks:
            yield read_chunk(settings, chunk)
        return
    # The last chunk is read here, while the workers read the others: this process, which waits
    # for them anyway, does a share of the work, and the state it keeps is never pickled. That
    # is the last chunk's because a later chunk's state is the largest: besides the messages
    # still open at its end, it holds the lines of messages begun before it.
    rest = chunks[:-1]
    workers = min(jobs - 1 if len(chunks) <= jobs else jobs, len(rest))
    context = multiprocessing.get_context("fork")
    # the workers, too, keep the collector relaxed until their state is pickled
    with context.Pool(workers, initializer=gc.set_threshold, initargs=(RELAXED_GC,)) as pool:
        earlier = pool.imap(_read_chunk_star, [(settings, c) for c in rest])
        last = read_chunk(settings, chunks[-1])
        yield from earlier
        yield last


def analyse_parallel(
    paths: list[str], settings: Settings, jobs: int | None = None, chunk_bytes: int | None = None
) -> tuple[dict[str, Any], list[InputError]]:
    """Like :func:`postlens.pipeline.analyse`, with the work spread over ``jobs`` processes."""
    sources, problems = expand(paths)
    jobs = jobs or os.cpu_count() or 1
    with relaxed_gc():
        chunks = plan(sources, settings, chunk_bytes or chunk_size(sources, jobs))
        return merge_parts(sources, problems, settings, chunks, _results(chunks, settings, jobs))


def merge_parts(
    sources: list[Source],
    problems: list[InputError],
    settings: Settings,
    chunks: list[Chunk],
    parts: Iterable[tuple[Analysis, InputError | None]],
) -> tuple[dict[str, Any], list[InputError]]:
    """Merge the chunks' partial results, given in log order, into the report."""
    whole: Analysis | None = None
    failed: dict[str, str] = {}
    for chunk, (part, error) in zip(chunks, parts, strict=True):
        if error is not None and chunk.source.name not in failed:
            failed[chunk.source.name] = error.problem
            problems.append(error)
        if whole is None:
            whole = part
        else:
            whole.merge(part)
    if whole is None:
        whole = Analysis(settings)
    result = whole.finish()
    result["inputs"] = input_table(sources, failed, problems)
    return result, problems
