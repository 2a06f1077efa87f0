#!/usr/bin/env python3
"""A trace by recipient on a big history database: how long one answer takes.

    bench/trace_db.py LOG --db history.db       # ingests LOG first unless the DB has lines
    (make a log of a million messages with tests/lab/make_bench_log.py SOURCE OUT --lines 5500000)

Prints the ingest rate, the number of messages stored, and the time of a trace by
recipient (found through the keys index) for a few recipients, next to a full scan. Measured,
never asserted.
"""

from __future__ import annotations

import argparse
import sqlite3
import time

import postlens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log")
    ap.add_argument("--db", required=True)
    ap.add_argument("--full-scan", action="store_true", help="also time a trace that reads every line")
    args = ap.parse_args()
    start = time.perf_counter()
    result, _ = postlens.ingest([args.log], db=args.db, keep_days=0)
    took = time.perf_counter() - start
    if result.lines:
        print(f"ingest: {result.lines:,} lines in {took:.0f} s ({result.lines / took:,.0f} lines/s)")
    with sqlite3.connect(args.db) as conn:
        messages = conn.execute("SELECT count(*) FROM keys WHERE kind = 'msgid'").fetchone()[0]
        lines = conn.execute("SELECT count(*) FROM lines").fetchone()[0]
        step = max(1, messages // 5)
        recipients = [
            r
            for (r,) in conn.execute(
                f"SELECT value FROM keys WHERE kind = 'to' AND rowid % {step} = 0 LIMIT 5"
            )
        ]
    print(f"database: {lines:,} lines, {messages:,} messages (Message-ID lines)")
    for rcpt in recipients:
        start = time.perf_counter()
        hits, _ = postlens.trace([], db=args.db, recipients=(rcpt,))
        print(f"trace --to {rcpt}: {len(hits)} messages in {time.perf_counter() - start:.3f} s")
    if args.full_scan and recipients:
        start = time.perf_counter()
        hits, _ = postlens.trace([], db=args.db, recipients=(f"*{recipients[0]}",))  # a glob reads every line
        print(f"full scan for comparison: {len(hits)} messages in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
