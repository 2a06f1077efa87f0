"""Report results the renderer tests share: real ones from the corpus, and an empty one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from postlens.pipeline import Settings, analyse
from tests.conftest import CORPUS, need

BUSY = "kdent__postfix_log_analysis__mail.log"  # one day, many rejects and domains
MULTI_DAY = "LadyWhyFi__Task-Mail-dovecot-postfix-squirrelmail__mail.log"


def _result(name: str) -> dict[str, Any]:
    path = CORPUS / name
    need(path.exists(), f"{name} is not in the corpus at {CORPUS}")
    result, _ = analyse([str(path)], Settings(year=2024))
    return result


@pytest.fixture(scope="module")
def busy() -> dict[str, Any]:
    return _result(BUSY)


@pytest.fixture(scope="module")
def multi_day() -> dict[str, Any]:
    return _result(MULTI_DAY)


@pytest.fixture(scope="module")
def empty(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The result of an empty log, from the real pipeline: every key, no rows."""
    log: Path = tmp_path_factory.mktemp("log") / "empty.log"
    log.write_text("")
    result, _ = analyse([str(log)], Settings(year=2024))
    return result
