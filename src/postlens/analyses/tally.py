"""Mergeable tallies: the building blocks every aggregator keeps its state in.

A :class:`Tally` holds named counters, maxima, sets and first-seen samples; merging
two tallies adds counters, keeps maxima, unites sets and keeps the earliest samples,
so the result does not depend on how the input was split.
"""

from __future__ import annotations

from typing import Any, Final

SAMPLE_LIMIT: Final = 10

# A counter: plain dicts of ints, counted up with bump(). Compiled code reads and writes a plain
# dict directly; a Counter, being a subclass, costs it a Python-level method call each way
# (about a tenth of the report's time when the counters were Counters).
Counts = dict[Any, int]


def bump(counts: Counts, key: Any, n: int = 1) -> None:
    counts[key] = counts.get(key, 0) + n


def add_counts(counts: Counts, more: Counts) -> None:
    for key, n in more.items():
        bump(counts, key, n)


class Tally:
    def __init__(self) -> None:
        self.counts: dict[str, Counts] = {}
        self.vectors: dict[str, dict[Any, list[int]]] = {}
        self.maxima: dict[str, dict[Any, Any]] = {}
        self.sets: dict[str, set[Any]] = {}
        self.samples: dict[str, list[tuple[Any, str]]] = {}

    def counter(self, name: str) -> Counts:
        c = self.counts.get(name)
        if c is None:
            c = self.counts[name] = {}
        return c

    def vector(self, name: str) -> dict[Any, list[int]]:
        """Rows of integers added column by column on merge (one dict lookup per update)."""
        v = self.vectors.get(name)
        if v is None:
            v = self.vectors[name] = {}
        return v

    def maximum(self, name: str) -> dict[Any, Any]:
        m = self.maxima.get(name)
        if m is None:
            m = self.maxima[name] = {}
        return m

    def set(self, name: str) -> set[Any]:
        s = self.sets.get(name)
        if s is None:
            s = self.sets[name] = set()
        return s

    def sample(self, name: str, order: Any, text: str) -> None:
        """Keep ``text`` if it is among the first SAMPLE_LIMIT by ``order``."""
        lst = self.samples.setdefault(name, [])
        if len(lst) < SAMPLE_LIMIT:
            lst.append((order, text))
        elif order < lst[-1][0]:
            lst.append((order, text))
            lst.sort()
            del lst[SAMPLE_LIMIT:]

    def merge(self, other: Tally) -> None:
        for name, c in other.counts.items():
            add_counts(self.counter(name), c)
        for name, rows in other.vectors.items():
            mine_rows = self.vector(name)
            for k, row in rows.items():
                add_row(mine_rows, k, *row)
        for name, m in other.maxima.items():
            mine = self.maximum(name)
            for k, v in m.items():
                if k not in mine or v > mine[k]:
                    mine[k] = v
        for name, s in other.sets.items():
            self.set(name).update(s)
        for name, lst in other.samples.items():
            merged = sorted(self.samples.get(name, []) + lst)
            self.samples[name] = merged[:SAMPLE_LIMIT]


def bump_max(d: dict[Any, Any], key: Any, value: Any) -> None:
    old = d.get(key)
    if old is None or value > old:
        d[key] = value


def row_of(rows: dict[Any, list[int]], key: Any, width: int) -> list[int]:
    """The row ``key`` of a vector, made of ``width`` zeros on first use."""
    row = rows.get(key)
    if row is None:
        row = rows[key] = [0] * width
    return row


def add_one(rows: dict[Any, list[int]], key: Any, value: int) -> None:
    """Count one more in the row ``key`` of a vector and add ``value`` to its second column:
    ``add_row(rows, key, 1, value)`` without the argument tuple (a few per message)."""
    row = rows.get(key)
    if row is None:
        rows[key] = [1, value]
    else:
        row[0] += 1
        row[1] += value


def add_row(rows: dict[Any, list[int]], key: Any, *values: int) -> None:
    """Add ``values`` column by column to the row ``key`` of a vector, creating it if new."""
    row = rows.get(key)
    if row is None:
        rows[key] = list(values)
    else:
        for i, v in enumerate(values):
            row[i] += v
