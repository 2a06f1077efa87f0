"""The compiled build: in use where it should be, and giving what plain Python gives."""

from __future__ import annotations

import os
import subprocess
import sys

from click.testing import CliRunner

import postlens
from postlens.cli import main
from tests.conftest import CORPUS, DATA, ROOT, need


def test_the_installed_pipeline_is_compiled() -> None:
    need(postlens.compiled(), "postlens is installed as plain Python (POSTLENS_PURE or no compiler)")


def test_version_names_the_build() -> None:
    out = CliRunner().invoke(main, ["--version"]).output
    assert postlens.__version__ in out
    assert ("(compiled)" in out) == postlens.compiled()


def _report(logs: list[str], pure: bool) -> bytes:
    env = dict(os.environ)
    if pure:
        env["PYTHONPATH"] = str(ROOT / "src")  # the sources, not the installed build
    cmd = [sys.executable, "-m", "postlens", "report", "-j", "1", "--format", "json", "--year", "2026"]
    done = subprocess.run([*cmd, *logs], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_compiled_and_plain_python_agree() -> None:
    need(postlens.compiled(), "only one build is installed")
    need(CORPUS.is_dir(), f"the log corpus is not at {CORPUS}")
    logs = [str(DATA / "mixed.log"), *(str(p) for p in sorted(CORPUS.glob("*.log")))]
    assert _report(logs, pure=True) == _report(logs, pure=False)
