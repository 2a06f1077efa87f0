"""serve: the dashboard's web server (uvicorn), with an optional built-in watcher.

``postlens serve`` reads the history database that ``postlens ingest`` or ``postlens watch
--db`` fill; with ``--watch PATH`` it follows the logs itself and stores what they add
every few seconds, which the live overview then shows.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from postlens.access import Access
from postlens.addresses import is_loopback
from postlens.metrics import parse_address
from postlens.web.app import create_app

DEFAULT_LISTEN = "127.0.0.1:8025"
WATCH_DB_EVERY = 2.0  # seconds between the built-in watcher's writes: what "live" lags by


@dataclass(slots=True)
class ServeOptions:
    db: str
    listen: str = DEFAULT_LISTEN
    access: Access = field(default_factory=Access)
    tz: str | None = None
    rules: str | None = None
    queue: Callable[[], Any] | None = None  # the mail queue's qshape result, when readable
    watch: list[str] = field(default_factory=list)  # logs to follow into the database
    year: int | None = None


def local_only(host: str) -> bool:
    """Whether a listen host is this machine alone ("" listens on every address)."""
    return host == "localhost" or is_loopback(host)


def serve(options: ServeOptions) -> None:
    """Serve the dashboard until interrupted (SIGINT or SIGTERM)."""
    from postlens import history
    from postlens.watch import Watcher, WatchOptions

    host, port = parse_address(options.listen, "--listen")
    if not local_only(host) and not options.access.required:
        print(
            f"postlens: warning: the dashboard listens on {host or 'every address'}, beyond this "
            "machine, without a password: anyone who reaches the port reads the mail log "
            "(set [serve] token or password)",
            file=sys.stderr,
        )
    with history.connect(options.db, create=True):  # the schema, and a clear error early
        pass
    # lines stored by an older postlens have no summaries yet: made while the pages are served
    catch_up = threading.Thread(target=history.summarise, args=(options.db,), name="postlens-summarise")
    catch_up.daemon = True
    catch_up.start()
    stop = threading.Event()
    watcher: Watcher | None = None
    thread: threading.Thread | None = None
    if options.watch:
        watcher = Watcher(
            WatchOptions(
                paths=options.watch, db=options.db, tz=options.tz, year=options.year,
                db_every=WATCH_DB_EVERY,
            ),
            stop,
        )  # fmt: skip
        thread = threading.Thread(target=watcher.run, name="postlens-watch", daemon=True)
        thread.start()
    app = create_app(
        options.db, access=options.access, tz=options.tz, rules=options.rules, queue=options.queue
    )
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    print(f"postlens: dashboard at http://{options.listen}/", file=sys.stderr, flush=True)
    try:
        server.run()
    finally:
        stop.set()
        if thread is not None:
            thread.join(timeout=15)
