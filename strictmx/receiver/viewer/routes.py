"""The viewer's routes on the API's aiohttp application (strictmx/receiver/api.py mounts
them with `setup`).

The viewer checks its own token: the API's middleware reads `Authorization` and leaves
every path outside /api/v1 to the viewer. A browser cannot send that header on a plain
link, so the token is asked for once on a form and an HMAC of it is kept in an HttpOnly,
SameSite=Strict cookie (never the token itself, never in a URL). A POST must come from
the viewer's own origin (the Origin header), so another site cannot switch the scenario
even when no token is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import jinja2
import yaml
from aiohttp import web

from .. import scenario as scenarios
from .. import trust as trusts
from ..journal import Journal
from ..registry import load_registry
from ..scenario import Scenario, ScenarioError
from . import pages

log = logging.getLogger(__name__)

COOKIE: Final = "strictmx_viewer"
#: Seconds between comments on an idle event stream: a closed tab is noticed that soon.
KEEPALIVE: Final = 15.0
#: Sessions pushed per event at most; more arriving at once are there on reload.
LIVE_BATCH: Final = 50
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; frame-src 'self'; frame-ancestors 'none';"
    " base-uri 'none'"
)
#: A stored message's HTML part in an iframe: no scripts, no forms, no requests out.
FRAME_CSP: Final = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # same-origin, not no-referrer: with no-referrer a browser sends `Origin: null` on a
    # form POST, and the origin check below could not tell the viewer from a stranger.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
STATIC_TYPES: Final = {".js": "text/javascript", ".css": "text/css"}


class Viewed(Protocol):
    """What the viewer reads and changes of a receiver (as strictmx/receiver/api.py's
    `Served`)."""

    @property
    def journal(self) -> Journal: ...

    @property
    def scenario(self) -> Scenario: ...

    async def switch_scenario(self, scenario: Scenario) -> None: ...


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("strictmx.receiver.viewer", "templates"),
        # Every value on every page is escaped; HELO names, addresses, headers and
        # bodies are the client's.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["reply"] = pages.reply_of
    env.filters["cursor"] = pages.cursor
    env.filters["short_time"] = lambda t: (t or "")[:19].replace("T", " ")
    env.filters["yaml"] = lambda v: yaml.safe_dump(v, sort_keys=False, allow_unicode=True)
    env.globals["deciding"] = pages.deciding
    env.globals["OUTCOMES"] = pages.OUTCOMES
    return env


def _static_files() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("strictmx.receiver.viewer") / "static"
    found = {}
    for entry in folder.iterdir():
        suffix = Path(entry.name).suffix
        if suffix in STATIC_TYPES:
            found[entry.name] = (entry.read_bytes(), STATIC_TYPES[suffix])
    return found


class Viewer:
    def __init__(self, receiver: Viewed, token: str | None, trust: trusts.Trust) -> None:
        self.receiver = receiver
        self.trust = trust
        # The cookie holds a MAC of the token: a leaked cookie does not give the API token.
        self._cookie = (
            None
            if token is None
            else hmac.new(token.encode(), b"strictmx viewer cookie", hashlib.sha256).hexdigest()
        )
        self._token = token
        self.env = _environment()
        self.static = _static_files()
        self.policy_names = sorted(load_registry())
        self._switching = asyncio.Lock()
        # The YAML last applied from the editor, shown again in it.
        self._edited: tuple[Scenario, str] | None = None
        # Open event streams, woken to end when the server stops (else stopping waits for
        # aiohttp's shutdown timeout whenever a browser has the list open).
        self._streams: set[asyncio.Event] = set()
        self._closing = False

    async def close_streams(self, app: web.Application) -> None:
        self._closing = True
        for ready in self._streams:
            ready.set()

    # -- plumbing ------------------------------------------------------------------------

    def page(self, template: str, status: int = 200, **values: Any) -> web.Response:
        values.setdefault("token_set", self._token is not None)
        html = self.env.get_template(template).render(**values)
        # 8-bit input the parsers kept as lone surrogates shows as \udcXX, never a 500.
        body = html.encode("utf-8", "backslashreplace")
        return web.Response(
            body=body, status=status, content_type="text/html", charset="utf-8", headers=HEADERS
        )

    def signed_in(self, request: web.Request) -> bool:
        if self._cookie is None:
            return True
        given = request.cookies.get(COOKIE, "")
        return hmac.compare_digest(given.encode(), self._cookie.encode())

    @staticmethod
    def same_origin(request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        return origin is None or origin == f"{request.scheme}://{request.host}"

    def guarded(
        self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def check(request: web.Request) -> web.StreamResponse:
            if request.method == "POST" and not self.same_origin(request):
                return self.page(
                    "error.html", 403, message="cross-origin form refused (Origin header)"
                )
            if not self.signed_in(request):
                if request.method == "GET" and request.path != "/events":
                    return self.page("login.html", 401, next=request.path_qs, wrong=False)
                return self.page("error.html", 401, message="sign in first: /login")
            try:
                return await handler(request)
            except pages.BadQuery as exc:
                return self.page("error.html", 400, message=str(exc))

        return check

    # -- sign in -------------------------------------------------------------------------

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        return self.page("login.html", next=_local(request.query.get("next", "/")), wrong=False)

    async def login(self, request: web.Request) -> web.StreamResponse:
        if not self.same_origin(request):
            return self.page("error.html", 403, message="cross-origin form refused")
        form = await request.post()
        target = _local(str(form.get("next", "/")))
        if self._token is None or self._cookie is None:
            return _see_other(target)
        given = str(form.get("token", ""))
        if not hmac.compare_digest(given.encode(), self._token.encode()):
            return self.page("login.html", 401, next=target, wrong=True)
        answer = _see_other(target)
        answer.set_cookie(COOKIE, self._cookie, httponly=True, samesite="Strict", path="/")
        return answer

    async def logout(self, request: web.Request) -> web.StreamResponse:
        answer = _see_other("/login")
        answer.del_cookie(COOKIE, path="/")
        return answer

    # -- pages ---------------------------------------------------------------------------

    async def sessions(self, request: web.Request) -> web.StreamResponse:
        filters = pages.filters_of(request.query)
        before = pages.cursor_of(request.query.get("before"), "before")
        journal = self.receiver.journal
        oldest = None
        if pages.SCANNING & filters.keys():
            oldest = await journal.cursor_at(before, pages.SCAN_WINDOW)
        # One more than shown tells whether an older page exists.
        found = await journal.sessions(
            limit=pages.PAGE_SIZE + 1,
            before=before,
            oldest=oldest,
            **pages.journal_filters(filters),
        )
        rows, more = found[: pages.PAGE_SIZE], len(found) > pages.PAGE_SIZE
        older = pages.cursor(rows[-1]) if more else None
        searched_to = None
        if not more and oldest is not None:
            # The window ran out before the page filled: the next page goes on below it.
            older, searched_to = f"{oldest[0]}|{oldest[1]}", oldest[0]
        return self.page(
            "list.html",
            rows=rows,
            filters=filters,
            older=older,
            searched_to=searched_to,
            window=pages.SCAN_WINDOW,
            first_page=before is None,
            top=pages.cursor(rows[0]) if rows else "",
            policies=self.policy_names,
        )

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: each ended session that passes the filters, as its row."""
        filters = pages.journal_filters(pages.filters_of(request.query))
        journal = self.receiver.journal
        pending: set[str] = set()
        ready = asyncio.Event()

        def ended(session_id: str) -> None:
            pending.add(session_id)
            ready.set()

        stream = web.StreamResponse(
            headers={**HEADERS, "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        await stream.prepare(request)
        unsubscribe = journal.subscribe(ended)
        self._streams.add(ready)
        try:
            await stream.write(b": connected\n\n")
            while not self._closing:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(KEEPALIVE):
                        await ready.wait()
                if self._closing:
                    break
                if not pending:
                    await stream.write(b": idle\n\n")  # fails once the browser is gone
                    continue
                ready.clear()
                ids, pending = sorted(pending), set()
                found = await journal.sessions(limit=LIVE_BATCH, ids=ids, **filters)
                if not found:
                    continue  # none of them passes the filters
                template = self.env.get_template("row.html")
                rows = [{"id": r["id"], "html": template.render(s=r)} for r in reversed(found)]
                data = json.dumps({"rows": rows})
                await stream.write(f"event: rows\ndata: {data}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            unsubscribe()
            self._streams.discard(ready)
        return stream

    async def session(self, request: web.Request) -> web.StreamResponse:
        session_id = request.match_info["id"]
        found = await self.receiver.journal.session(session_id)
        if found is None:
            return self.page("error.html", 404, message=f"no session {session_id!r}")
        lines, unplaced = pages.transcript(found["transcript"], found["verdicts"])
        messages = []
        for meta in found["messages"]:
            raw = await self.receiver.journal.message_raw(session_id, meta["n"])
            messages.append((meta, pages.parse_message(raw or b"")))
        server = _smtp_server(self.receiver)
        decided = pages.deciding(found["verdicts"])
        return self.page(
            "session.html",
            s=found,
            lines=lines,
            unplaced=unplaced,
            messages=messages,
            decided=None if decided is None else pages.explained(decided),
            swaks=pages.swaks_command(found, server),
            reproduce=pages.reproduce_command(found, decided),
            frame_csp=FRAME_CSP,
        )

    async def message(self, request: web.Request) -> web.StreamResponse:
        session_id, number = request.match_info["id"], request.match_info["n"]
        if not number.isdigit() or int(number) < 1:
            return self.page("error.html", 400, message="message number must be 1 or more")
        raw = await self.receiver.journal.message_raw(session_id, int(number))
        if raw is None:
            return self.page("error.html", 404, message=f"no message {number} in that session")
        return web.Response(
            body=raw,
            content_type="message/rfc822",
            headers={
                **HEADERS,
                "Content-Disposition": f'attachment; filename="session-message-{number}.eml"',
            },
        )

    async def scenario_page(self, request: web.Request) -> web.StreamResponse:
        return self._scenario_page(self.receiver.scenario, None, [], None)

    def _scenario_page(
        self,
        scenario: Scenario,
        text: str | None,
        issues: list[dict[str, Any]],
        error: str | None,
        status: int = 200,
        switched: bool = False,
    ) -> web.Response:
        stages = [
            {
                "listed_under": e.listed_under,
                "policy": e.cls.name,
                "options": e.options.model_dump(mode="json"),
                "replies": {k: str(v) for k, v in e.replies.items()},
            }
            for e in scenario.entries
        ]
        world = scenario.world
        return self.page(
            "scenario.html",
            status=status,
            sc=scenario,
            stages=stages,
            chains=scenario.describe_chains(),
            receiver=scenario.receiver.model_dump(mode="json"),
            dns=world.dns.model_dump(mode="json", include={"mode", "records", "ptr"}),
            clients=world.model_dump(mode="json")["clients"],
            mailboxes=world.model_dump(mode="json")["mailboxes"],
            bundled=scenarios.bundled_names(),
            text=text if text is not None else self._yaml_of(scenario),
            issues=issues,
            error=error,
            switched=switched,
        )

    def _yaml_of(self, scenario: Scenario) -> str:
        if self._edited is not None and self._edited[0] is scenario:
            return self._edited[1]
        path = Path(scenario.source)
        try:
            if path.suffix in (".yaml", ".yml") and path.is_file():
                return path.read_text(encoding="utf-8")[: scenarios.MAX_SCENARIO_BYTES]
        except (OSError, UnicodeDecodeError):
            pass
        return f"# {scenario.source} is not a file to show; a scenario to start from:\n" + (
            yaml.safe_dump({"name": scenario.name, "description": scenario.description})
        )

    async def scenario_post(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        current = self.receiver.scenario
        if "name" in form:
            name = str(form["name"])
            if name not in scenarios.bundled_names():
                return self._scenario_page(current, None, [], f"no bundled scenario {name!r}", 422)
            load: Callable[[], Scenario] = lambda: scenarios.load(name)  # noqa: E731
            text = None
        else:
            text = str(form.get("yaml", ""))
            if not text.strip():
                return self._scenario_page(current, text, [], "empty scenario", 400)
            if len(text.encode()) > scenarios.MAX_SCENARIO_BYTES:
                return self._scenario_page(current, "", [], "scenario too large", 413)
            load = lambda: scenarios.loads(  # noqa: E731
                text, source="<editor>", default_name="edited", trust=self.trust
            )
        try:
            async with self._switching:
                scenario = await asyncio.to_thread(load)
                await self.receiver.switch_scenario(scenario)
        except ScenarioError as exc:
            issues = [
                {"file": i.file, "line": i.line, "path": i.path, "message": i.message}
                for i in exc.issues
            ]
            return self._scenario_page(current, text, issues, str(exc), 422)
        except (ValueError, OSError) as exc:
            return self._scenario_page(current, text, [], f"scenario cannot be used: {exc}", 422)
        if text is not None:
            self._edited = (scenario, text)
        log.warning("viewer: scenario is now %s (%s)", scenario.name, scenario.source)
        return self._scenario_page(scenario, None, [], None, switched=True)

    async def dashboard(self, request: web.Request) -> web.StreamResponse:
        bucket = request.query.get("bucket", "hour")
        if bucket not in ("minute", "hour", "day"):
            raise pages.BadQuery(f"bucket must be minute, hour or day, not {bucket[:40]!r}")
        width: Literal["minute", "hour", "day"] = bucket  # type: ignore[assignment]
        counts = await self.receiver.journal.counts(width)
        return self.page(
            "dashboard.html",
            bucket=bucket,
            outcomes=pages.chart(counts["outcomes"], pages.OUTCOME_COLOURS, bucket),
            policies=pages.chart(counts["policies"], bucket=bucket),
        )

    async def static_file(self, request: web.Request) -> web.StreamResponse:
        found = self.static.get(request.match_info["name"])
        if found is None:
            return self.page("error.html", 404, message="no such file")
        body, kind = found
        return web.Response(body=body, content_type=kind, headers=HEADERS)


def _see_other(target: str) -> web.Response:
    return web.Response(status=303, headers={**HEADERS, "Location": target})


def _local(target: str) -> str:
    """A path on this server to go to after signing in; anything else goes home."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _smtp_server(receiver: Viewed) -> str:
    addresses = getattr(receiver, "addresses", None)
    if addresses:
        host, port = addresses[0][:2]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return "127.0.0.1:2525"


def setup(app: web.Application, receiver: Viewed, token: str | None, trust: trusts.Trust) -> None:
    """Add the viewer's routes to the API's application."""
    v = Viewer(receiver, token, trust)
    g = v.guarded
    app.router.add_get("/login", v.login_form)
    app.router.add_post("/login", v.login)
    app.router.add_post("/logout", v.logout)
    app.router.add_get("/static/{name}", v.static_file)
    app.router.add_get("/", g(v.sessions))
    app.router.add_get("/events", g(v.events))
    app.router.add_get("/sessions/{id}", g(v.session))
    app.router.add_get("/sessions/{id}/messages/{n}", g(v.message))
    app.router.add_get("/scenario", g(v.scenario_page))
    app.router.add_post("/scenario", g(v.scenario_post))
    app.router.add_get("/dashboard", g(v.dashboard))
    app.on_shutdown.append(v.close_streams)
