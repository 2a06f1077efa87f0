"""Shared fixtures: where the real corpus lives, the rule for tests that need the machine, and a browser."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from postlens.addresses import ContentFilters
from postlens.events import Event, EventParser
from postlens.lines import LineParser, YearGuess, zone

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
CORPUS = Path(os.environ.get("POSTLENS_CORPUS", ROOT.parent / "shared" / "corpus"))


def events_of(
    lines: Iterable[str], year: int = 2026, filters: ContentFilters | None = None
) -> Iterator[Event]:
    """The event of each line (stamps of ``year``, UTC); each must be a mail program's."""
    parser = LineParser(YearGuess(year, None, zone("UTC")), zone("UTC"))
    events = EventParser(None, filters)
    for text in lines:
        line = parser.parse(text)
        assert line is not None, text
        ev = events.parse(line)
        assert ev is not None, text
        yield ev


def need(condition: bool, reason: str) -> None:
    """Skip with ``reason`` on a developer's machine; fail under CI, where it must have run."""
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"required under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM), made by the real openssl."""
    need(shutil.which("openssl") is not None, "openssl is not installed (apt-get install openssl)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


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


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[tuple[str, int]]:
    """A private PostgreSQL server on a Unix socket: (socket directory, port)."""
    bindir = _postgres_bin()
    need(bindir is not None, "PostgreSQL is not installed (apt-get install postgresql)")
    need(os.geteuid() == 0, "starting a private PostgreSQL needs root (to run it as user postgres)")
    need(
        importlib.util.find_spec("psycopg") is not None,
        "psycopg is not installed (pip install '.[postgres]')",
    )
    assert bindir is not None
    base = Path(tempfile.mkdtemp(prefix="postlens-pg-"))
    shutil.chown(base, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    as_postgres = ["runuser", "-u", "postgres", "--"]
    data = base / "data"
    subprocess.run([*as_postgres, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
                   check=True, capture_output=True)  # fmt: skip
    options = f"-p {port} -k {base} -c listen_addresses=''"
    pg_ctl = [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log")]
    subprocess.run([*pg_ctl, "-o", options, "-w", "start"], check=True, capture_output=True)
    try:
        yield str(base), port
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def new_history(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes empty history databases of one kind: a path, or a postgresql:// URL."""
    made: list[str] = []
    if request.param == "sqlite":
        yield lambda: str(tmp_path / f"history-{len(list(tmp_path.glob('history-*')))}.db")
        return
    import psycopg

    sockdir, port = request.getfixturevalue("postgres_server")
    admin = f"postgresql://postgres@/postgres?host={sockdir}&port={port}"

    def make() -> str:
        name = f"postlens_{os.getpid()}_{len(made)}_{int(time.time() * 1000) % 10**8}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        made.append(name)
        return f"postgresql://postgres@/{name}?host={sockdir}&port={port}"

    yield make
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in made:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# A real headless Chromium (Debian's, driven by Playwright) for the pages postlens draws:
# one for the whole session (Playwright's sync API runs one instance per thread).
CHROMIUM = os.environ.get("POSTLENS_CHROMIUM", "/usr/bin/chromium")
# without these, Chromium keeps trying to reach Google's hosts through this closed network
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    need_module("playwright")
    need(shutil.which(CHROMIUM) is not None or os.path.exists(CHROMIUM), f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page that fails the test on any script error or console error it sees."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    pg.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    pg.on("response", lambda r: errors.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    pg.errors = errors
    yield pg
    context.close()


def screenshot(pg: Any, name: str) -> Path:
    """Saved under screenshots/ for review (not compared: fonts differ between machines)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    pg.screenshot(path=str(path), full_page=True)
    return path
