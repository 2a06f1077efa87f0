#!/usr/bin/env python3
"""How fast ``postlens anonymize`` rewrites a log, against ``postlens report -j 1`` on the same log.

    bench/anonymize.py [LOG] [--repeat N]

LOG defaults to /tmp/pt/bench.log (tests/lab/make_bench_log.py builds one of a million lines)
when it exists, else the bundled sample log. Both commands read every line through the same
line and event parsers; the issue asks anonymize to be as fast. Prints lines per second of
each (the best of N runs of the whole command, start-up included; the output goes to
/dev/null) and their ratio, with the build that ran (compiled or plain Python).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

DEFAULT_LOG = "/tmp/pt/bench.log"


def best_seconds(args: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "postlens", *args], check=True, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", nargs="?")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each command; the best counts")
    opts = ap.parse_args()
    import postlens

    log = opts.log or (DEFAULT_LOG if os.path.exists(DEFAULT_LOG) else postlens.sample_log())
    with open(log, "rb") as f:
        lines = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))
    build = "compiled" if postlens.compiled() else "plain Python"
    print(f"log: {log} ({lines} lines), postlens {postlens.__version__} ({build})")
    with tempfile.TemporaryDirectory() as tmp:
        key = os.path.join(tmp, "key")
        anonymize = ["anonymize", "--key", key, "--new-key", "-o", os.devnull, log]
        report = ["report", "-j", "1", "--format", "json", "-o", os.devnull, log]
        rates = {}
        for name, args in (("report -j 1", report), ("anonymize", anonymize)):
            rates[name] = lines / best_seconds(args, opts.repeat)
            print(f"postlens {name:12s} {rates[name]:10.0f} lines/s")
    print(f"anonymize / report: {rates['anonymize'] / rates['report -j 1']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
