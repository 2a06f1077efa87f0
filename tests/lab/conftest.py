"""pytest plumbing for the mail lab (a real, private Postfix on loopback; see docs/lab.md).

The lab needs root on Debian with apt-get (it installs postfix, dovecot-core, rsyslog ... when
missing). Where that is not available the lab tests are skipped with a printed reason, except
when the environment variable CI is "true": then they fail, so CI can never pass without them.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import postfixlab


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: the large mail-lab scenario (tens of thousands of messages, 1-3 minutes); "
        "deselect with -m 'not slow'",
    )
    config.addinivalue_line("markers", "lab: needs the real Postfix mail lab (root, Debian, apt-get)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # every test that needs the real lab (directly or through a fixture) is marked "lab"
    for item in items:
        if "lab_ready" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.lab)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def lab_unavailable(reason: str) -> None:
    """Skip (printing why), or fail when CI=true."""
    message = f"mail lab unavailable: {reason}"
    print(f"\n[postfixlab] {message}", file=sys.stderr, flush=True)
    if in_ci():
        pytest.fail(f"{message} (CI=true: the lab tests must run in CI)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def lab_ready() -> None:
    """The machine can run the lab; missing packages are installed once per session."""
    reason = postfixlab.unavailable_reason()
    if reason:
        lab_unavailable(reason)
    try:
        installed = postfixlab.ensure_packages()
    except postfixlab.LabUnavailable as exc:
        lab_unavailable(str(exc))
    except postfixlab.LabError as exc:  # e.g. no route to the package mirror
        lab_unavailable(f"could not install the lab packages: {exc}")
    else:
        if installed:
            print(f"\n[postfixlab] installed {' '.join(installed)}", file=sys.stderr)


@pytest.fixture(scope="session")
def lab_base(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A directory for this session's labs, outside pytest's basetemp.

    pytest makes its basetemp parent (/tmp/pytest-of-root) mode 0700 again whenever a pytest
    session starts, and postfix, nobody (local delivery) and dovecot must traverse the path
    to the lab: a concurrent pytest run would break a running lab. Removed at the end unless
    a test failed or POSTFIXLAB_KEEP is set.
    """
    base = Path(tempfile.mkdtemp(prefix="postfixlab-pytest-"))
    base.chmod(0o755)
    yield base
    if request.session.testsfailed or os.environ.get("POSTFIXLAB_KEEP"):
        print(f"\n[postfixlab] lab directories kept in {base}", file=sys.stderr)
    else:
        shutil.rmtree(base, ignore_errors=True)


def _run_lab(
    base: Path,
    name: str,
    sizes: postfixlab.Sizes | dict[str, Any] | None = None,
    log_format: str = "maillog_file",
    faketime: str | None = None,
    **options: Any,
) -> postfixlab.LabResult:
    """Run one scenario in a fresh directory. A lab that breaks fails the test; only a
    machine that cannot run it (LabUnavailable) skips, or fails when CI=true."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))
    try:
        result = postfixlab.run_scenario(
            sizes, log_format, faketime, workdir=workdir, install=False, **options
        )
    except postfixlab.LabUnavailable as exc:  # e.g. /dev/log exists and unshare is not allowed
        lab_unavailable(str(exc))
    print(
        f"\n[postfixlab] {name}: {result.seconds}s, log {result.log_path}",
        file=sys.stderr,
        flush=True,
    )
    return result


@pytest.fixture(scope="session")
def lab_runner(lab_ready: None, lab_base: Path) -> Callable[..., postfixlab.LabResult]:
    """run(name, sizes=None, log_format="maillog_file", faketime=None, **run_scenario_options)
    -> LabResult, for tests that need their own scenario (each run takes a few seconds)."""

    def run(
        name: str,
        sizes: postfixlab.Sizes | dict[str, Any] | None = None,
        log_format: str = "maillog_file",
        faketime: str | None = None,
        **options: Any,
    ) -> postfixlab.LabResult:
        return _run_lab(lab_base, name, sizes, log_format, faketime, **options)

    return run


@pytest.fixture(scope="session")
def lab_small(lab_ready: None, lab_base: Path) -> postfixlab.LabResult:
    """The small scenario, logged by Postfix's own maillog_file (postlogd)."""
    return _run_lab(lab_base, "lab-small", postfixlab.Sizes.small(), "maillog_file")


@pytest.fixture(scope="session")
def lab_small_syslog(lab_ready: None, lab_base: Path) -> postfixlab.LabResult:
    """The small scenario, logged through a private rsyslogd in classic syslog format."""
    return _run_lab(lab_base, "lab-small-syslog", postfixlab.Sizes.small(), "syslog")


@pytest.fixture(scope="session")
def lab_large(lab_ready: None, lab_base: Path) -> postfixlab.LabResult:
    """The large scenario (classic syslog); use only from tests marked slow."""
    return _run_lab(lab_base, "lab-large", postfixlab.Sizes.large(), "syslog")
