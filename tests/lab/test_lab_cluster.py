"""The Dask engine on a real dask.distributed cluster: a scheduler and two worker processes
on loopback, reading the logs of two real Postfix runs as two mail servers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import need_module

import postlens
from postlens.analyses.report import COUNTED_FIELDS
from postlens.cluster import analyse_dask
from postlens.lines import LineParser, YearGuess
from postlens.pipeline import Settings, analyse

SETTINGS = Settings(year=2026, tz="UTC")


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    need_module("distributed")
    from distributed import Client

    work = tmp_path_factory.mktemp("dask")
    address_file = work / "scheduler.json"
    common = ["--no-dashboard"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--scheduler-file", str(address_file), *common],
            cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not address_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert address_file.exists(), "the scheduler did not start"
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(address_file),
                 "--nworkers", "2", "--nthreads", "1", *common],
                cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        address = json.loads(address_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=90)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _as_second_server(log: Path, out: Path) -> Path:
    """The same real log, as if written by a mail server with another name."""
    lines = log.read_text().splitlines(keepends=True)
    parser = LineParser(YearGuess(2026, None, None), None)
    host = next(parsed.host for line in lines if (parsed := parser.parse(line.rstrip("\n"))) is not None)
    out.write_text("".join(line.replace(f" {host} ", " mx2 ", 1) for line in lines))
    return out


@pytest.fixture(scope="module")
def two_servers(lab_small: Any, lab_small_syslog: Any, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    second = _as_second_server(lab_small_syslog.log_path, tmp_path_factory.mktemp("mx2") / "mail.log")
    return [str(lab_small.log_path), str(second)]


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_cluster_equals_one_process(scheduler: str, two_servers: list[str]) -> None:
    local, local_problems = analyse(two_servers, SETTINGS)
    # small chunks: messages are cut between chunks read by different workers
    size = min(Path(p).stat().st_size for p in two_servers)
    remote, problems = analyse_dask(two_servers, SETTINGS, scheduler, chunk_bytes=size // 5)
    assert problems == local_problems == []
    assert local["totals"]["delivered"] > 100
    _same(remote, local)


def test_cluster_reads_urls(scheduler: str, two_servers: list[str]) -> None:
    local, _ = analyse(two_servers, SETTINGS)
    remote, problems = analyse_dask([Path(p).as_uri() for p in two_servers], SETTINGS, scheduler)
    assert problems == []
    assert [row["source"] for row in remote.pop("inputs")] == [Path(p).as_uri() for p in two_servers]
    local.pop("inputs")
    _same(remote, local)


def test_servers_are_kept_apart(scheduler: str, two_servers: list[str]) -> None:
    both, _ = postlens.report(two_servers, year=2026, tz="UTC", engine="dask", scheduler=scheduler)
    alone = [analyse([p], SETTINGS)[0] for p in two_servers]
    assert [h["host"] for h in both["hosts"]] == sorted(h["host"] for a in alone for h in a["hosts"])
    per_host = {h["host"]: h for h in both["hosts"]}
    for a in alone:
        (row,) = a["hosts"]
        assert per_host[row["host"]] == row
    for field in COUNTED_FIELDS:
        assert both["totals"][field] == sum(a["totals"][field] for a in alone), field


def test_local_cluster_without_scheduler(two_servers: list[str]) -> None:
    need_module("distributed")
    local, _ = analyse(two_servers, SETTINGS)
    remote, _ = analyse_dask(two_servers, SETTINGS, jobs=2)
    _same(remote, local)
