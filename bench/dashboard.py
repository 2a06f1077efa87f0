#!/usr/bin/env python3
"""The dashboard's pages on a big history database: how long the slowest one takes.

    bench/dashboard.py --db history.db [LOG]      # ingests LOG first when given
    (a million messages: tests/lab/make_bench_log.py SOURCE OUT --lines 5500000)

Brings the summaries up to the stored lines (timed: what a database from an older postlens
needs once), starts `postlens serve` on it, and fetches each page over HTTP for the last
day, week and month of the data, three times each (the median counts). Prints every page's
time and the slowest. Measured, never asserted.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "lab"))

import postfixlab  # for free_port

import postlens

RANGES = ("24h", "7d", "30d")
PAGES = ("/", "/api/overview", "/problems", "/security", "/messages", "/messages?status=deferred", "/trends")


def _fetch(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as r:
        r.read()
        assert r.status == 200, (url, r.status)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log", nargs="?")
    ap.add_argument("--db", required=True)
    args = ap.parse_args()
    if args.log:
        start = time.perf_counter()
        result, _ = postlens.ingest([args.log], db=args.db, keep_days=0)
        took = time.perf_counter() - start
        rate = result.lines / took
        print(f"ingest with summaries: {result.lines:,} lines in {took:.0f} s ({rate:,.0f} lines/s)")
    start = time.perf_counter()
    caught_up = postlens.summarise(db=args.db)
    if caught_up:
        took = time.perf_counter() - start
        rate = caught_up / took
        print(f"summaries of stored lines: {caught_up:,} lines in {took:.0f} s ({rate:,.0f} lines/s)")
    with sqlite3.connect(args.db) as conn:
        messages = conn.execute("SELECT count(*) FROM rollup_messages").fetchone()[0]
        lines = conn.execute("SELECT max(id) FROM lines").fetchone()[0]
        host, qid, rcpt = conn.execute(
            "SELECT host, qid, recipients FROM rollup_messages "
            "WHERE rowid = (SELECT max(rowid) / 2 FROM rollup_messages)"
        ).fetchone()
    print(f"database: {lines:,} lines, {messages:,} finished messages")
    port = postfixlab.free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "postlens", "serve", "--db", args.db, "--listen", f"127.0.0.1:{port}"],
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                _fetch(base + "/static/app.css")
                break
            except OSError:
                time.sleep(0.2)
        pages = [f"{p}{'&' if '?' in p else '?'}range={r}" for r in RANGES for p in PAGES]
        rcpt_q = urllib.parse.quote(rcpt.split()[0])
        pages += [f"/messages?recipient={rcpt_q}&range=30d", f"/message/{host}/{qid}"]
        times = {}
        for page in pages:
            times[page] = statistics.median(_fetch(base + page) for _ in range(3))
            print(f"{times[page] * 1000:9.1f} ms  {page}")
        slowest = max(times, key=lambda p: times[p])
        print(f"slowest page: {slowest} in {times[slowest] * 1000:.0f} ms")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
