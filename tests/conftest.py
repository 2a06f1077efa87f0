"""Shared fixtures: where the real corpus lives, and the rule for tests that need the machine."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
CORPUS = Path(os.environ.get("POSTLENS_CORPUS", ROOT.parent / "shared" / "corpus"))


def need(condition: bool, reason: str) -> None:
    """Skip with ``reason`` on a developer's machine; fail under CI, where it must have run."""
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"required under CI: {reason}")
    pytest.skip(reason)


def need_module(name: str) -> None:
    """``need`` an importable module of an optional extra."""
    need(importlib.util.find_spec(name) is not None, f"{name} is not installed (pip install '.[dask]')")


@pytest.fixture(scope="session")
def corpus() -> Path:
    need(CORPUS.is_dir(), f"the log corpus is not at {CORPUS}")
    return CORPUS


@pytest.fixture(scope="session")
def pflogsumm() -> str:
    path = shutil.which("pflogsumm") or "/usr/sbin/pflogsumm"
    need(os.path.exists(path), "pflogsumm is not installed (apt-get install pflogsumm)")
    return path


@pytest.fixture
def mixed_log() -> Path:
    return DATA / "mixed.log"
