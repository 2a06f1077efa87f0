"""Inputs named by fsspec URLs: globs, folders, missing files and unknown schemes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import postlens
from postlens.sources import expand
from tests.conftest import DATA, need_module


@pytest.fixture(autouse=True)
def _fsspec() -> None:
    need_module("fsspec")


def _logs(tmp_path: Path) -> Path:
    for name in ("mail.log", "mail.log.1", "notes.txt"):
        shutil.copy(DATA / "mixed.log", tmp_path / name)
    return tmp_path


def test_folder_and_glob_urls_are_ordered_like_paths(tmp_path: Path) -> None:
    folder = _logs(tmp_path)
    by_url, problems = expand([folder.as_uri()])
    assert problems == []
    by_path, _ = expand([str(folder)])
    assert [s.path for s in by_url] == [Path(s.path).as_uri() for s in by_path]
    assert [s.size for s in by_url] == [s.size for s in by_path]
    globbed, _ = expand([folder.as_uri() + "/mail.log*"])
    assert [s.path for s in globbed] == [s.path for s in by_url]


def test_bad_urls_are_problems_not_crashes(tmp_path: Path) -> None:
    sources, problems = expand([(tmp_path / "none.log").as_uri(), "nosuchscheme://x/mail.log"])
    assert sources == []
    assert problems[0].problem == "no such file"
    assert problems[1].problem.startswith("cannot open this URL")


def test_a_url_reads_like_its_path() -> None:
    by_path, _ = postlens.report([str(DATA / "mixed.log")], year=2026)
    by_url, _ = postlens.report([(DATA / "mixed.log").as_uri()], year=2026)
    by_path.pop("inputs")
    by_url.pop("inputs")
    assert by_url == by_path
