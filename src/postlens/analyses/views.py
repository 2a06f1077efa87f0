"""views: the analyses a command runs besides the report, looked up by name.

A view is fed like the report (events by type, finished messages and sessions, settled
arrivals) and
merges exactly with the view of the stretch of log after it, so it runs unchanged with
-j, on a Dask cluster and over the history database.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo
from typing import Any, Protocol


class View(Protocol):
    def handlers(self) -> dict[type, Callable[[Any], None]]: ...

    def add_message(self, msg: Any) -> None: ...

    def settle(self, msg: Any) -> None: ...  # an arrival, once known not a re-injection (Report.settle)

    def add_session(self, sess: Any) -> None: ...

    def merge(self, later: Any) -> None: ...

    def result(self) -> dict[str, Any]: ...


def make_view(name: str, options: Any, tz: tzinfo | None) -> View:
    # imported here: a report that runs no view does not load them
    if name == "problems":
        from postlens.analyses.problems import Problems

        return Problems(options, tz)
    if name == "security":
        from postlens.analyses.security import Security

        return Security(options, tz)
    if name == "anomalies":
        from postlens.analyses.anomalies import Anomalies

        return Anomalies(options, tz)
    raise ValueError(f"no analysis named {name!r}")
