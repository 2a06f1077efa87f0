#!/usr/bin/env python3
"""postlens report against pflogsumm on the same big log, in one run.

Prints both wall times, the ratio, peak memory (max RSS of each process), and whether
the grand totals agree (postlens's ``pflogsumm`` object against pflogsumm's own print).
Memory is also measured on the first tenth of the log, to show it does not grow with
the log's length. With the dask extra installed, the Dask engine (a local cluster) runs too.

    bench/report_vs_pflogsumm.py LOG            # a log of a million lines or more
    bench/report_vs_pflogsumm.py --from-lab     # build one from a real Postfix lab run (root)

Times are measured, never asserted: machines here are shared and noisy. Each command runs
--repeat times and the best time is kept.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from postlens.analyses.pflogsumm import REUSE_AFFECTED, as_printed, parse_grand_totals, reuses_queue_ids

ROOT = Path(__file__).resolve().parents[1]


def measure(cmd: list[str], out_path: str) -> tuple[float, int]:
    """Run ``cmd`` with stdout to ``out_path``; return wall seconds and peak RSS in MiB."""
    with open(out_path, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0,):
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        sys.exit(f"{cmd[0]} failed ({proc.returncode}): {err[:500]}")
    return elapsed, usage.ru_maxrss // 1024


def best(cmd: list[str], out_path: str, repeat: int) -> tuple[float, int]:
    runs = [measure(cmd, out_path) for _ in range(repeat)]
    return min(r[0] for r in runs), max(r[1] for r in runs)


def head(log: Path, lines: int, tmp: str) -> Path:
    """The first ``lines`` lines of the log, copied without holding them in this process
    (a big parent would inflate the children's peak memory)."""
    part = Path(tmp) / f"head-{log.name}"
    with log.open("rb") as src, part.open("wb") as dst:
        for i, line in enumerate(src):
            if i == lines:
                break
            dst.write(line)
    return part


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log", nargs="?", type=Path)
    ap.add_argument("--from-lab", action="store_true", help="build the log from a real Postfix lab run")
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--pflogsumm", default="/usr/sbin/pflogsumm")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="postlens-bench-")
    log = args.log
    if args.from_lab or log is None:
        log = Path(tmp) / "bench.log"
        maker = ROOT / "tests" / "lab" / "make_bench_log.py"
        subprocess.run(
            [sys.executable, str(maker), "--from-lab", str(log), "--lines", str(args.lines)], check=True
        )
    n_lines = sum(1 for _ in log.open("rb"))
    size_mb = log.stat().st_size / 1e6
    print(f"log: {log} ({n_lines} lines, {size_mb:.1f} MB)")
    build = subprocess.run([sys.executable, "-m", "postlens", "--version"], capture_output=True, text=True)
    print(f"build: {build.stdout.strip()}")

    pfl_out, pl_out = str(Path(tmp) / "pflogsumm.txt"), str(Path(tmp) / "postlens.json")
    postlens = [sys.executable, "-m", "postlens", "report", "--format", "json"]
    single = [*postlens, "-j", "1"]
    t_pfl, m_pfl = best([args.pflogsumm, str(log)], pfl_out, args.repeat)
    t_pl, m_pl = best([*single, str(log)], pl_out, args.repeat)
    cores = os.cpu_count() or 1
    all_out = str(Path(tmp) / f"postlens-j{cores}.json")
    t_all, m_all = best([*postlens, "-j", str(cores), str(log)], all_out, args.repeat)
    same = Path(all_out).read_bytes() == Path(pl_out).read_bytes()
    dask = None
    if importlib.util.find_spec("distributed") is not None:
        dask_out = str(Path(tmp) / "postlens-dask.json")
        on_dask = [*postlens, "--engine", "dask", "-j", str(cores), str(log)]
        t_dask, m_dask = best(on_dask, dask_out, args.repeat)
        dask = (t_dask, m_dask, Path(dask_out).read_bytes() == Path(pl_out).read_bytes())
    tenth = head(log, n_lines // 10, tmp)
    _, m_pl_tenth = measure([*single, str(tenth)], str(Path(tmp) / "tenth.json"))

    theirs = parse_grand_totals(Path(pfl_out).read_text(errors="replace"))
    ours = json.loads(Path(pl_out).read_text())["pflogsumm"]
    differ = {k: (v, as_printed(ours[k])) for k, v in theirs.items() if as_printed(ours[k]) != v}
    reused = reuses_queue_ids(log)

    print(f"pflogsumm          {t_pfl:8.2f} s   {n_lines / t_pfl:10.0f} lines/s   peak {m_pfl:5d} MiB")
    print(f"postlens -j 1      {t_pl:8.2f} s   {n_lines / t_pl:10.0f} lines/s   peak {m_pl:5d} MiB")
    print(f"postlens -j {cores:<4d}   {t_all:8.2f} s   {n_lines / t_all:10.0f} lines/s   peak {m_all:5d} MiB")
    if dask:
        print(
            f"postlens dask       {dask[0]:8.2f} s   {n_lines / dask[0]:10.0f} lines/s   "
            f"peak {dask[1]:5d} MiB (client; {cores} local workers not counted)"
        )
    print(
        f"speed ratio (pflogsumm time / postlens time): {t_pfl / t_pl:.2f} with -j 1, "
        f"{t_pfl / t_all:.2f} with -j {cores}"
    )
    print(f"speed-up of -j {cores} over -j 1: {t_pl / t_all:.2f}; reports byte-identical: {same}")
    if dask:
        print(f"dask local cluster: ratio {t_pfl / dask[0]:.2f}, report byte-identical to -j 1: {dask[2]}")
    print(f"postlens peak memory: {m_pl_tenth} MiB on {n_lines // 10} lines, {m_pl} MiB on {n_lines} lines")
    if not differ:
        print("grand totals identical")
    elif reused and set(differ) <= REUSE_AFFECTED:
        print(f"grand totals identical except where pflogsumm miscounts reused queue IDs: {differ}")
    else:
        print(f"grand totals DIFFER: {differ}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
