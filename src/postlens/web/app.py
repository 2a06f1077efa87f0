"""app: the dashboard, a read-only web application over the history database.

Pages are rendered on the server (Jinja2, every value escaped); the charts are drawn in the
browser by charts.js with the vendored uPlot, from JSON embedded in the page; the overview
follows new lines over server-sent events. Nothing in a page runs but the application's own
scripts: the Content-Security-Policy allows no inline script, style or foreign origin, so
markup in a log line (a HELO name, an address, a reply) stays text.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, tzinfo
from importlib.resources import files
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import postlens
from postlens import history
from postlens.access import Access
from postlens.analyses.reasons import Rules
from postlens.analyses.security import SecurityOptions
from postlens.blocklist import write_blocklist
from postlens.dates import iso_utc
from postlens.errors import PostlensError
from postlens.lines import zone
from postlens.lookup import newest_start
from postlens.render import charts
from postlens.render.html import script_json
from postlens.render.queue import QSHAPE_WIDTH, render_queue
from postlens.trace import duration
from postlens.web import data

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# a search reads the messages of at most about this many lines that name its key, the newest
SEARCH_LINES = 500
LIVE_EVERY = 1.0  # seconds between looks at the database for new lines


class Guard(BaseHTTPMiddleware):
    """Access control and the security headers, on every response."""

    def __init__(self, app: Any, access: Access) -> None:
        super().__init__(app)
        self.access = access

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        offered = request.query_params.get("token") or request.cookies.get("postlens_token", "")
        if not self.access.allows(request.headers.get("authorization", ""), offered):
            response: Response = PlainTextResponse("authentication required\n", status_code=401)
            response.headers.update(self.access.challenge())
        else:
            response = await call_next(request)
            token = request.query_params.get("token")
            if token and self.access.token:  # a link with ?token= logs the browser in
                response.set_cookie("postlens_token", token, httponly=True, samesite="strict")
        response.headers.update(HEADERS)
        return response


class Dashboard:
    def __init__(self, db: str, tz: str | None, rules: str | None, queue: Callable[[], Any] | None) -> None:
        self.db = db
        self.tz = tz
        self.zone = zone(tz) if tz else UTC  # the charts draw in the same zone (data.series)
        self.rules = Rules.load(rules)
        self.queue = queue
        self.threshold = SecurityOptions().brute_force
        env = Environment(loader=PackageLoader("postlens.web", "templates"), autoescape=select_autoescape())
        env.filters["json"] = lambda value: Markup(script_json(value))
        env.filters["when"] = self._when
        env.filters["delay"] = _delay
        env.globals["hbar"] = lambda items, title: Markup(charts.hbar_chart(items, title=title))
        env.globals["heat_map"] = lambda rows, cols, title: Markup(charts.heat_map(rows, cols, title=title))
        self.env = env

    def _when(self, ts: float | str | None) -> str:
        if ts is None:
            return "–"
        if isinstance(ts, str):
            ts = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        return datetime.fromtimestamp(ts, self.zone).strftime("%Y-%m-%d %H:%M:%S")

    def _period(self, db: history.Store, request: Request) -> data.Period:
        q = request.query_params
        start, end = _moment(q.get("from"), self.zone), _moment(q.get("to"), self.zone)
        return data.period(db, q.get("range", "24h"), start, end)

    def page(self, template: str, request: Request, **context: Any) -> Response:
        html = self.env.get_template(template).render(request=request, path=request.url.path, **context)
        return Response(html, media_type="text/html; charset=utf-8")

    # -- pages ---------------------------------------------------------------------------

    def overview(self, request: Request) -> Response:
        with history.connect(self.db) as db:
            p = self._period(db, request)
            found = data.overview(db, p, self.tz)
        return self.page("overview.html", request, o=found, period=p, live=p.name != "custom")

    def overview_json(self, request: Request) -> Response:
        with history.connect(self.db) as db:
            found = data.overview(db, self._period(db, request), self.tz)
        return JSONResponse(found)

    def problems(self, request: Request) -> Response:
        with history.connect(self.db) as db:
            p = self._period(db, request)
            found = data.problems(db, p, self.rules)
        return self.page("problems.html", request, o=found, period=p)

    def security(self, request: Request) -> Response:
        with history.connect(self.db) as db:
            p = self._period(db, request)
            found = data.security(db, p, self.tz, self.threshold)
        return self.page("security.html", request, o=found, period=p)

    def blocklist(self, request: Request) -> Response:
        fmt = request.query_params.get("format", "plain")
        if fmt not in ("plain", "access", "cidr", "nftables"):
            return PlainTextResponse(f"unknown blocklist format {fmt!r}\n", status_code=400)
        with history.connect(self.db) as db:
            found = data.alerts(db, self._period(db, request), self.threshold)
        entries = [(a["ip"], a["text"]) for a in found]
        out = io.StringIO()
        write_blocklist(entries, fmt, out)
        return PlainTextResponse(
            out.getvalue(),
            headers={"Content-Disposition": f'attachment; filename="postlens-blocklist.{fmt}"'},
        )

    def messages(self, request: Request) -> Response:
        q = request.query_params
        keys = {name: q.get(name, "").strip() for name in ("sender", "recipient", "msgid", "qid", "ip")}
        status, reason = q.get("status", "").strip(), q.get("reason", "").strip()
        error, rows, queued, since = "", None, None, None
        hits: list[dict[str, Any]] | None = None
        selection: dict[str, Any] = {
            "senders": (keys["sender"],) if keys["sender"] else (),
            "recipients": (keys["recipient"],) if keys["recipient"] else (),
            "msgids": (keys["msgid"],) if keys["msgid"] else (),
            "qids": (keys["qid"],) if keys["qid"] else (),
            "clients": (keys["ip"],) if keys["ip"] else (),
            "statuses": (status,) if status else (),
        }
        query = None
        if any(keys.values()):
            try:
                query = postlens.query(**selection)
            except PostlensError as e:  # a malformed search (a bad network, say) is said on the page
                error, hits = str(e), []
        with history.connect(self.db) as db:
            p = self._period(db, request)
            if not any(keys.values()):
                rows = data.messages(db, p, status=status, reason=reason)
                queued = data.messages(db, p, status=status, reason=reason, queue=True)
            elif query is not None:  # thousands of messages: the newest, at once
                since = newest_start(db, query, p.start, p.end, SEARCH_LINES)
        if query is not None:
            start, end = iso_utc(p.start if since is None else since), iso_utc(p.end)
            hits, _ = postlens.trace([], db=self.db, since=start, until=end, **selection)
        found = hits or []
        return self.page(
            "messages.html", request, period=p, keys=keys, status=status, reason=reason, rows=rows,
            queued=queued, error=error, since=since,
            hits=None if hits is None else [h for h in found if h["kind"] == "message"],
            refused=[h for h in found if h["kind"] == "noqueue"],
        )  # fmt: skip

    def message(self, request: Request) -> Response:
        host, qid = request.path_params["host"], request.path_params["qid"]
        hits, _ = postlens.trace([], db=self.db, qids=(qid,), raw=True)
        found = [h for h in hits if h["kind"] == "message" and h["host"] == host]
        if not found:
            return self.page("message.html", request, hit=None, qid=qid, host=host)
        return self.page("message.html", request, hit=found[-1], qid=qid, host=host)

    def queue_page(self, request: Request) -> Response:
        result, error, text = None, "", ""
        if self.queue is None:
            error = "this dashboard was started without access to the mail queue (postlens serve --queue)"
        else:
            try:
                result = self.queue()
                text = render_queue(result, "text", width=QSHAPE_WIDTH)
            except Exception as e:  # the queue is optional: say why it is not shown
                error = f"the mail queue cannot be read: {e}"
        return self.page("queue.html", request, q=result, error=error, text=text)

    def trends(self, request: Request) -> Response:
        q = request.query_params
        with history.connect(self.db) as db:
            p = self._period(db, request) if q.get("range") or q.get("from") else data.period(db, "30d")
            found = data.weekly(db, p, self.zone, self.tz)
        grid = list(zip(WEEKDAYS, found["grid"], strict=True))
        return self.page(
            "trends.html", request, o=found, period=p, grid=grid, hours=[str(h) for h in range(24)]
        )

    async def events(self, request: Request) -> Response:
        """Server-sent events: the overview's data again each time new lines were summarised."""

        async def stream() -> AsyncIterator[str]:
            seen = None
            while not await request.is_disconnected():
                version, found = await asyncio.to_thread(self._live, request, seen)
                if found is not None:
                    seen = version
                    yield f"event: overview\ndata: {json.dumps(found, separators=(',', ':'))}\n\n"
                else:
                    yield ": idle\n\n"
                await asyncio.sleep(LIVE_EVERY)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    def _live(self, request: Request, seen: Any) -> tuple[Any, dict[str, Any] | None]:
        """The summaries' version, and the overview if they changed since version ``seen``."""
        with history.connect(self.db) as db:
            row = db.execute("SELECT line_id FROM rollup_state WHERE id = 1").fetchone()
            version = row[0] if row else None
            if version == seen:
                return version, None
            return version, data.overview(db, self._period(db, request), self.tz)


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _delay(seconds: float | None) -> str:
    """A delivery delay: Postfix's own precision below a minute (live.js writes it alike)."""
    if seconds is None:
        return "–"
    return f"{seconds:g} s" if seconds < 60 else duration(seconds)


def _moment(text: str | None, tz: tzinfo | None) -> float | None:
    """A time from the period form: epoch seconds, or ISO 8601 (in the dashboard's zone when
    it names none). Anything else is no time: the page falls back to its default period."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=tz or UTC)).timestamp()


def create_app(
    db: str,
    *,
    access: Access | None = None,
    tz: str | None = None,
    rules: str | None = None,
    queue: Callable[[], Any] | None = None,
) -> Starlette:
    """The dashboard over the history database ``db`` (a path or postgresql:// URL)."""
    d = Dashboard(db, tz, rules, queue)
    static = StaticFiles(directory=str(files("postlens.web") / "static"))
    routes = [
        Route("/", d.overview),
        Route("/api/overview", d.overview_json),
        Route("/problems", d.problems),
        Route("/security", d.security),
        Route("/security/blocklist", d.blocklist),
        Route("/messages", d.messages),
        Route("/message/{host}/{qid}", d.message),
        Route("/queue", d.queue_page),
        Route("/trends", d.trends),
        Route("/events", d.events),
        Mount("/static", static, name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(Guard, access=access or Access())])
