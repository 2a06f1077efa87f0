"""--engine and --scheduler on the command line."""

from __future__ import annotations

from click.testing import CliRunner

from postlens.cli import main
from tests.conftest import DATA, need_module

MIXED = str(DATA / "mixed.log")


def test_scheduler_needs_the_dask_engine() -> None:
    done = CliRunner().invoke(main, ["report", "--scheduler", "tcp://127.0.0.1:1", MIXED])
    assert done.exit_code == 2
    assert "--scheduler needs --engine dask" in done.output


def test_dask_engine_gives_the_same_report() -> None:
    need_module("distributed")
    args = ["report", "--year", "2026", "--format", "json", MIXED]
    local = CliRunner().invoke(main, args)
    on_dask = CliRunner().invoke(main, ["report", "--engine", "dask", "-j", "1", *args[1:]])
    assert on_dask.exit_code == 0, on_dask.output
    assert on_dask.output == local.output


def test_unreachable_scheduler_is_one_line_exit_2() -> None:
    need_module("distributed")
    done = CliRunner().invoke(main, ["report", "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9", MIXED])
    assert done.exit_code == 2
    assert "cannot reach tcp://127.0.0.1:9" in done.output
