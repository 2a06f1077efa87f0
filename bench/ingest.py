#!/usr/bin/env python3
"""Ingest rate into the history database, SQLite and (with --postgres URL) PostgreSQL.

    bench/ingest.py LOG [--postgres postgresql://user@host/db]

Prints lines per second of a first ingest, the time of a second one (nothing new to
store), and the time of a report read back from the database. Measured, never asserted.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import postlens


def run(log: str, target: str) -> None:
    start = time.perf_counter()
    result, _ = postlens.ingest([log], db=target, keep_days=0)
    first = time.perf_counter() - start
    start = time.perf_counter()
    again, _ = postlens.ingest([log], db=target, keep_days=0)
    second = time.perf_counter() - start
    start = time.perf_counter()
    postlens.report([], db=target)
    report = time.perf_counter() - start
    kind = "postgresql" if target.startswith("postgres") else "sqlite"
    print(
        f"{kind:10s} first ingest {result.lines} lines in {first:.1f} s "
        f"({result.lines / first:,.0f} lines/s); "
        f"second ingest {again.lines} lines in {second:.2f} s; report from it {report:.1f} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log")
    ap.add_argument("--postgres", metavar="URL", help="an empty PostgreSQL database to ingest into")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(args.log, os.path.join(tmp, "history.db"))
    if args.postgres:
        run(args.log, args.postgres)


if __name__ == "__main__":
    main()
