"""The HTTP JSON API: the journal and the running scenario, for CI jobs in any language.

Served by aiohttp in the receiver's own event loop (`strictmx serve --api-listen`), under
`/api/v1`:

- `GET /sessions` (filters, paging, newest first), `GET /sessions/{id}` (with transcript
  and messages), `GET /sessions/{id}/messages/{n}` (raw, `message/rfc822`),
  `DELETE /sessions` (empty the journal between CI steps);
- `GET /scenario`, `PUT /scenario` (a bundled name as JSON, or a scenario as YAML):
  sessions that start afterwards use the new scenario, sessions under way keep theirs;
- `GET /health`: `ready`, or `degraded` with the reasons (journal writes failing, real
  DNS unreachable in overlay/system mode);
- `GET /openapi.json`: the OpenAPI 3.1 document, generated from the models below, so
  it describes exactly what the handlers send.

With a token, every request but `GET /health` needs `Authorization: Bearer <token>`
(health stays open so supervisors and readiness loops need no secret). Every error is a
JSON `Error`; an unexpected exception is logged here and answered as a bare 500.

The API shares the receiver's process and event loop with SMTP, so what a client can make
it hold is bounded: at most MAX_CONNECTIONS connections (more are answered 503 and
closed), bodies of at most MAX_BODY bytes received within BODY_DEADLINE seconds (else
408, connection closed), at most MAX_BUFFERED bytes of bodies held at once across all
requests (else 503), idle connections closed after KEEPALIVE seconds. An uploaded
scenario is parsed in a thread, one at a time, and may not reach outside the process
(files, modules, URLs, listen addresses, real DNS) unless the receiver was started with
`--api-allow-host-access` (strictmx/receiver/trust.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Final, Protocol

import dns.asyncquery
import dns.exception
import dns.message
import dns.resolver
from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import BaseModel, ValidationError

from . import scenario as scenarios
from . import trust as trusts
from . import viewer
from .api_contract import (
    BODY_DEADLINE,
    KEEPALIVE,
    MAX_BODY,
    MAX_BUFFERED,
    MAX_CONNECTIONS,
    PREFIX,
    YAML_TYPES,
    ClientInfo,
    Envelope,
    Error,
    ErrorDetail,
    Health,
    MessageInfo,
    ScenarioByName,
    ScenarioInfo,
    SessionDetail,
    SessionInfo,
    SessionPage,
    SessionQuery,
    TranscriptLine,
    VerdictInfo,
)
from .api_listener import CappedListener
from .api_openapi import openapi_document
from .journal import Journal, JournalError
from .scenario import Scenario, ScenarioError
from .world.endpoints import split_nameserver

log = logging.getLogger(__name__)

#: How long one real-DNS probe result stands, so a polling supervisor does not flood DNS.
DNS_PROBE_CACHE: Final = 5.0
#: Upper bound of a DNS probe; the scenario's own `world.dns.lifetime` is used if shorter.
DNS_PROBE_TIMEOUT: Final = 2.0
#: Seconds requests under way may finish when the receiver stops.
SHUTDOWN_TIMEOUT: Final = 2.0


# -- errors --------------------------------------------------------------------------------


class ApiError(Exception):
    """A request the API refuses: answered as an `Error` with this status."""

    def __init__(
        self,
        status: int,
        error: str,
        details: list[ErrorDetail] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.details = details or []
        self.headers = dict(headers or {})


def _validation_details(exc: ValidationError) -> list[ErrorDetail]:
    return [
        ErrorDetail(
            path=".".join(str(p) for p in err["loc"]),
            message="unknown field" if err["type"] == "extra_forbidden" else err["msg"],
        )
        for err in exc.errors()
    ]


def _error_response(
    status: int,
    error: str,
    details: list[ErrorDetail] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = Error(error=error, details=details or []).model_dump_json()
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return _error_response(exc.status, exc.error, exc.details, exc.headers)
    except web.HTTPException as exc:  # aiohttp's own: no such route, wrong method, too large
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
        return _error_response(exc.status, exc.reason.lower(), headers=allow)
    except JournalError as exc:
        log.error("API %s %s: %s", request.method, request.path, exc)
        return _error_response(503, f"journal unavailable: {exc}")
    except Exception:
        # The traceback goes to the log, never to the client.
        log.exception("API %s %s failed", request.method, request.path)
        return _error_response(500, "internal error (logged by the server)")


def _auth(token: str) -> Middleware:
    expected = token.encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        # The viewer's pages check the same token themselves, from a cookie (viewer/).
        if request.path == f"{PREFIX}/health" or not request.path.startswith(f"{PREFIX}/"):
            return await handler(request)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="strictmx"'}
        if scheme.lower() != "bearer" or not given.strip():
            return _error_response(
                401, "authentication required: Authorization: Bearer <token>", headers=challenge
            )
        if not hmac.compare_digest(given.strip().encode(), expected):
            return _error_response(401, "invalid token", headers=challenge)
        return await handler(request)

    return check


# -- health --------------------------------------------------------------------------------


class DnsProbe:
    """Is real DNS reachable? One query to each nameserver; any answer at all will do."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._cached: tuple[object, float, str | None] | None = None

    async def problem(self, scenario: Scenario) -> str | None:
        """Why real DNS cannot be used, or None; hermetic worlds never ask real DNS."""
        cfg = scenario.world.dns
        if cfg.mode == "hermetic":
            return None
        key = (cfg.mode, tuple(cfg.nameservers), cfg.lifetime)
        async with self._lock:  # concurrent health checks share one probe
            if self._cached is not None:
                cached_key, at, found = self._cached
                if cached_key == key and time.monotonic() - at < DNS_PROBE_CACHE:
                    return found
            found = await self._probe(cfg.nameservers, min(cfg.lifetime, DNS_PROBE_TIMEOUT))
            self._cached = (key, time.monotonic(), found)
            return found

    @staticmethod
    async def _probe(nameservers: list[str], timeout: float) -> str | None:
        if nameservers:
            servers = [split_nameserver(text) for text in nameservers]
        else:
            try:
                system = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                return "DNS unreachable: no nameservers configured on this system"
            servers = [(str(ns), system.port) for ns in system.nameservers]
        query = dns.message.make_query(".", "NS")

        async def ask(host: str, port: int) -> bool:
            try:
                await dns.asyncquery.udp(query, host, timeout=timeout, port=port)
            except (dns.exception.DNSException, OSError):
                return False
            return True

        answered = await asyncio.gather(*(ask(host, port) for host, port in servers))
        if any(answered):
            return None
        shown = ", ".join(f"{host}:{port}" for host, port in servers)
        return f"DNS unreachable: no answer from {shown} within {timeout:g}s"


# -- the application -----------------------------------------------------------------------


class _Budget:
    """Bytes of request bodies that may be held at once, shared by every request."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.held = 0

    @contextlib.contextmanager
    def hold(self, size: int) -> Iterator[None]:
        if self.held + size > self.total:
            raise ApiError(
                503,
                "the server is receiving too many request bodies at once; retry later",
                headers={"Retry-After": "1"},
            )
        self.held += size
        try:
            yield
        finally:
            self.held -= size


class Served(Protocol):
    """What the API reads and changes of a receiver (strictmx/receiver/server.py's
    Receiver is one): its journal, its scenario, and a swap of that scenario."""

    @property
    def journal(self) -> Journal: ...

    @property
    def scenario(self) -> Scenario: ...

    async def switch_scenario(self, scenario: Scenario) -> None:
        """Sessions that start afterwards use `scenario`. ValueError: its world cannot be
        built; OSError: its DNS cannot be served."""
        ...


class _Handlers:
    def __init__(self, receiver: Served, trust: trusts.Trust) -> None:
        self.receiver = receiver
        self.trust = trust
        self.dns_probe = DnsProbe()
        self.budget = _Budget(MAX_BUFFERED)
        self._switching = asyncio.Lock()
        # Parsing is CPU work in a thread; one at a time keeps the loop's share of the CPU.
        self._parsing = asyncio.Lock()

    async def sessions(self, request: web.Request) -> web.Response:
        repeated = sorted({k for k in request.query if len(request.query.getall(k)) > 1})
        if repeated:
            raise ApiError(400, f"query parameters given more than once: {', '.join(repeated)}")
        try:
            query = SessionQuery.model_validate(dict(request.query))
        except ValidationError as exc:
            raise ApiError(400, "invalid query parameters", _validation_details(exc)) from None
        found = await self.receiver.journal.sessions(**query.model_dump())
        page = SessionPage(
            sessions=[session_info(row) for row in found], limit=query.limit, offset=query.offset
        )
        return _json(page)

    async def clear(self, request: web.Request) -> web.Response:
        await self.receiver.journal.clear()
        return web.Response(status=204)

    async def session(self, request: web.Request) -> web.Response:
        session_id = request.match_info["id"]
        found = await self.receiver.journal.session(session_id)
        if found is None:
            raise ApiError(404, f"no session {session_id!r}")
        return _json(session_detail(found))

    async def message(self, request: web.Request) -> web.Response:
        session_id, number = request.match_info["id"], request.match_info["n"]
        if not number.isdigit() or int(number) < 1:
            raise ApiError(400, f"message number must be a positive integer, not {number!r}")
        raw = await self.receiver.journal.message_raw(session_id, int(number))
        if raw is None:
            raise ApiError(404, f"no message {number} in session {session_id!r}")
        return web.Response(body=raw, content_type="message/rfc822")

    async def get_scenario(self, request: web.Request) -> web.Response:
        return _json(_scenario_info(self.receiver.scenario))

    async def put_scenario(self, request: web.Request) -> web.Response:
        length = request.content_length
        if length is not None and length > MAX_BODY:
            raise ApiError(413, f"body of {length} bytes; the limit is {MAX_BODY}")
        # Held until the scenario is built: the body, its text and the parse all live here.
        with self.budget.hold(MAX_BODY if length is None else length):
            body = await _read_body(request)
            scenario = await self._scenario_from(request.content_type, body)
        async with self._switching:
            try:
                await self.receiver.switch_scenario(scenario)
            except ValueError as exc:  # the world cannot be built (no system resolver, ...)
                raise ApiError(422, f"scenario cannot be used: {exc}") from None
            except OSError as exc:
                raise ApiError(500, f"cannot serve the scenario's world: {exc}") from None
        log.warning("API: scenario is now %s (%s)", scenario.name, scenario.source)
        return _json(_scenario_info(scenario))

    async def _scenario_from(self, kind: str, body: bytes) -> Scenario:
        if kind == "application/json":
            try:
                data = json.loads(body)
            except ValueError as exc:  # JSONDecodeError and undecodable bytes
                raise ApiError(400, f"body is not JSON: {exc}") from None
            except RecursionError:
                raise ApiError(400, "body is not JSON: nested too deep") from None
            try:
                name = ScenarioByName.model_validate(data).name
            except ValidationError as exc:
                raise ApiError(
                    400, 'expected {"name": "<bundled scenario>"}', _validation_details(exc)
                ) from None
            # Names only: a path would let API clients read files on the server.
            if name not in scenarios.bundled_names():
                raise ApiError(
                    422,
                    f"no bundled scenario named {name!r}; bundled scenarios: "
                    + ", ".join(scenarios.bundled_names()),
                )
            return await self._parsed(lambda: scenarios.load(name))
        if kind in YAML_TYPES:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ApiError(400, f"body is not UTF-8: {exc}") from None
            if not text.strip():
                raise ApiError(400, "empty scenario body")
            return await self._parsed(
                lambda: scenarios.loads(
                    text, source="<request>", default_name="uploaded", trust=self.trust
                )
            )
        raise ApiError(
            415,
            f'unsupported Content-Type {kind!r}: send application/json {{"name": ...}}'
            " or a scenario as application/yaml",
        )

    async def _parsed(self, load: Callable[[], Scenario]) -> Scenario:
        """`load()` in a thread, so SMTP sessions go on while a scenario is parsed."""
        async with self._parsing:
            return await asyncio.to_thread(self._checked, load)

    @staticmethod
    def _checked(load: Callable[[], Scenario]) -> Scenario:
        try:
            return load()
        except ScenarioError as exc:
            details = [
                ErrorDetail(file=i.file, line=i.line, path=i.path, message=i.message)
                for i in exc.issues
            ]
            raise ApiError(422, str(exc), details) from None

    async def health(self, request: web.Request) -> web.Response:
        reasons = []
        journal = self.receiver.journal
        if not journal.healthy:
            reasons.append(f"journal writes failing: {journal.last_error}")
        dns_problem = await self.dns_probe.problem(self.receiver.scenario)
        if dns_problem is not None:
            reasons.append(dns_problem)
        return _json(Health(status="degraded" if reasons else "ready", reasons=reasons))

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(request.app[OPENAPI])


async def _read_body(request: web.Request) -> bytes:
    """The whole body within BODY_DEADLINE; aiohttp refuses one over MAX_BODY (413)."""
    try:
        async with asyncio.timeout(BODY_DEADLINE):
            return await request.read()
    except TimeoutError:
        # The connection closes after the answer: the rest of the body is not waited for.
        raise ApiError(408, f"request body not received within {BODY_DEADLINE:g}s") from None


OPENAPI: Final = web.AppKey("openapi", dict[str, Any])


def build_app(
    receiver: Served, token: str | None = None, host_access: bool = False
) -> web.Application:
    """The API's application; `host_access` lets uploaded scenarios reach outside the
    process (strictmx/receiver/trust.py)."""
    middlewares: list[Middleware] = [_errors] if token is None else [_errors, _auth(token)]
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY)
    trust = trusts.UPLOADED_ALLOWED if host_access else trusts.UPLOADED
    h = _Handlers(receiver, trust)
    app.router.add_get(f"{PREFIX}/sessions", h.sessions)
    app.router.add_delete(f"{PREFIX}/sessions", h.clear)
    app.router.add_get(f"{PREFIX}/sessions/{{id}}", h.session)
    app.router.add_get(f"{PREFIX}/sessions/{{id}}/messages/{{n}}", h.message)
    app.router.add_get(f"{PREFIX}/scenario", h.get_scenario)
    app.router.add_put(f"{PREFIX}/scenario", h.put_scenario)
    app.router.add_get(f"{PREFIX}/health", h.health)
    app.router.add_get(f"{PREFIX}/openapi.json", h.openapi)
    app[OPENAPI] = openapi_document(auth=token is not None)
    viewer.setup(app, receiver, token, trust)
    return app


def _json(model: BaseModel) -> web.Response:
    return web.Response(text=model.model_dump_json(), content_type="application/json")


def _message_href(session_id: str, n: int) -> str:
    return f"{PREFIX}/sessions/{session_id}/messages/{n}"


def session_info(row: dict[str, Any]) -> SessionInfo:
    """A journal session row as the API sends it (the pytest plugin's sessions too)."""
    return SessionInfo(
        id=row["id"],
        scenario=row["scenario"],
        started=row["started"],
        ended=row["ended"],
        outcome=row["outcome"],
        client=ClientInfo(
            peer=row["peer"],
            port=row["peer_port"],
            address=row["client_address"],
            name=row["client_name"],
        ),
        helo=row["helo"],
        tls=row["tls"],
        auth_user=row.get("auth_user"),
        envelope=Envelope(mail_from=row["mail_from"], rcpts=row["rcpts"]),
        verdicts=[VerdictInfo.model_validate(v) for v in row["verdicts"]],
    )


def session_detail(row: dict[str, Any]) -> SessionDetail:
    """A journal session with its transcript and messages, as the API sends it."""
    session_id = row["id"]
    return SessionDetail(
        **session_info(row).model_dump(),
        transcript=[TranscriptLine.model_validate(line) for line in row["transcript"]],
        messages=[
            MessageInfo(**m, href=_message_href(session_id, m["n"])) for m in row["messages"]
        ],
    )


def _scenario_info(scenario: Scenario) -> ScenarioInfo:
    return ScenarioInfo(
        name=scenario.name,
        description=scenario.description,
        source=scenario.source,
        receiver=scenario.receiver,
        dns_mode=scenario.world.dns.mode,
        chains=dict(scenario.describe_chains()),
    )


class Api:
    """The API on one address, in the running event loop.

    `strictmx serve --api-listen` and the pytest plugin attach it to their receiver
    (`Receiver.attach`), which starts it once SMTP listens and stops it first.
    """

    def __init__(
        self,
        receiver: Served,
        host: str = "127.0.0.1",
        port: int = 8025,
        token: str | None = None,
        host_access: bool = False,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.token_required = token is not None
        self.host_access = host_access
        self._listener: CappedListener | None = None
        self._runner = web.AppRunner(
            build_app(receiver, token, host_access),
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            keepalive_timeout=KEEPALIVE,
            # An unread body is not drained: the connection closes after the answer.
            lingering_time=0,
        )

    async def start(self) -> None:
        await self._runner.setup()
        listener = CappedListener(self._runner, self.host, self.requested_port, MAX_CONNECTIONS)
        try:
            await listener.start()
        except OSError as exc:
            await self._runner.cleanup()
            shown = f"[{self.host}]" if ":" in self.host else self.host
            raise OSError(exc.errno, exc.strerror, f"{shown}:{self.requested_port}") from None
        self._listener = listener

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        await self._runner.cleanup()

    @property
    def address(self) -> tuple[str, int]:
        assert self._listener is not None, "the API is not started"
        return self._listener.address

    @property
    def url(self) -> str:
        """The API's base URL, e.g. `http://127.0.0.1:8025/api/v1`."""
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}{PREFIX}"
