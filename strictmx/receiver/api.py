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
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol

import dns.asyncquery
import dns.exception
import dns.message
import dns.resolver
from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from . import scenario as scenarios
from . import trust as trusts
from .journal import Journal, JournalError
from .scenario import ReceiverSettings, Scenario, ScenarioError
from .world.endpoints import split_nameserver

log = logging.getLogger(__name__)

PREFIX: Final = "/api/v1"
#: Scenario YAML bodies can carry whole DNS zones; anything larger is a mistake.
MAX_BODY: Final = scenarios.MAX_SCENARIO_BYTES
#: Connections open at once; CI jobs use a handful, and each one is a file descriptor the
#: SMTP side also needs.
MAX_CONNECTIONS: Final = 32
#: Seconds a request body may take to arrive in full (4 MiB over any link that CI uses
#: takes well under a second).
BODY_DEADLINE: Final = 10.0
#: Bytes of request bodies held at once by all requests together.
MAX_BUFFERED: Final = 4 * MAX_BODY
#: Seconds an idle connection, or one that has not sent a whole request, stays open.
KEEPALIVE: Final = 15.0
#: Connections over MAX_CONNECTIONS that are answered 503 at once; beyond, they are reset.
BUSY_CAP: Final = 4 * MAX_CONNECTIONS
#: Seconds such an answered connection waits for the client to close.
BUSY_LINGER: Final = 1.0
YAML_TYPES: Final = frozenset(
    {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}
)
#: How long one real-DNS probe result stands, so a polling supervisor does not flood DNS.
DNS_PROBE_CACHE: Final = 5.0
#: Upper bound of a DNS probe; the scenario's own `world.dns.lifetime` is used if shorter.
DNS_PROBE_TIMEOUT: Final = 2.0
#: Seconds requests under way may finish when the receiver stops.
SHUTDOWN_TIMEOUT: Final = 2.0


# -- models: what the API sends and takes (the OpenAPI schemas come from these) ---------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Model):
    """One problem: a scenario's file, line and key path, or a request field (`path`)."""

    file: str | None = None
    line: int | None = None
    path: str = ""
    message: str


class Error(_Model):
    error: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ClientInfo(_Model):
    peer: str = Field(description="The socket's address as the receiver saw it.")
    port: int = Field(description="The socket's source port.")
    address: str = Field(
        description="The address policies judged: the scenario's simulated address for the "
        "peer, or an XCLIENT/PROXY override."
    )
    name: str | None = Field(
        description="The client's host name given by the scenario's client map or XCLIENT "
        "NAME; null when none was given (PTR lookups made by policies are in verdict details)."
    )


class Envelope(_Model):
    mail_from: str | None = Field(description="The last MAIL FROM address ('' is <>).")
    rcpts: list[str] = Field(description="Every RCPT TO tried, accepted or not.")


class VerdictInfo(_Model):
    policy: str
    outcome: str = Field(description="The policy's outcome id, e.g. HELO_NOT_FQDN.")
    action: str = Field(description="dunno, permit, reject, defer or disconnect.")
    stage: str = Field(description="The stage the verdict was decided at.")
    replied_at: str | None = Field(
        description="The stage whose reply carried it (later with delay_reject); null if never "
        "sent."
    )
    code: int | None
    status: str | None = Field(description="The enhanced status code (x.y.z), if any.")
    text: str | None
    reason: str
    rfc_compliant: bool = Field(description="Whether RFC 5321 allows this refusal.")
    warned: bool = Field(description="Recorded only (warn_only): nothing was refused.")
    delay: float
    when: datetime
    details: dict[str, Any]


Outcome = Literal["accepted", "rejected", "deferred", "aborted", "idle"]


class SessionInfo(_Model):
    id: str
    scenario: str
    started: datetime
    ended: datetime | None
    outcome: Outcome | None = Field(description="null while the session is open.")
    client: ClientInfo
    helo: str | None
    tls: bool
    envelope: Envelope
    verdicts: list[VerdictInfo]


class SessionPage(_Model):
    sessions: list[SessionInfo]
    limit: int
    offset: int


class TranscriptLine(_Model):
    when: datetime
    direction: Literal["in", "out", "note"]
    line: str


class MessageInfo(_Model):
    n: int
    when: datetime
    mail_from: str
    rcpts: list[str]
    size: int = Field(description="Octets received.")
    truncated: bool = Field(
        description="The message was larger than the receiver stores (its "
        "max_stored_message_bytes, 10 MiB by default): only that many octets were kept. The "
        "scenario's SIZE limit (receiver.max_message_size) decides what is accepted."
    )
    href: str = Field(description="Where the raw message is (message/rfc822).")


class SessionDetail(SessionInfo):
    transcript: list[TranscriptLine]
    messages: list[MessageInfo]


class ScenarioInfo(_Model):
    name: str
    description: str
    source: str
    receiver: ReceiverSettings
    dns_mode: str
    chains: dict[str, list[str]] = Field(description="Stage -> the policies run, in order.")


class ScenarioByName(_Model):
    name: str = Field(description="A bundled scenario (see `strictmx scenarios`).")


class Health(_Model):
    status: Literal["ready", "degraded"]
    reasons: list[str]


class SessionQuery(_Model):
    """The filters and paging of `GET /sessions`."""

    client: str | None = Field(
        None, description="Simulated address, socket address or client name (exact)."
    )
    helo: str | None = Field(None, description="Part of the HELO/EHLO name.")
    sender: str | None = Field(None, description="Part of a MAIL FROM address.")
    rcpt: str | None = Field(None, description="Part of a RCPT TO address.")
    outcome: Outcome | None = Field(None, description="How the session ended.")
    policy: str | None = Field(None, description="A policy that gave any verdict.")
    since: datetime | None = Field(
        None, description="Sessions started at or after this ISO 8601 time (UTC if no zone)."
    )
    limit: int = Field(50, ge=1, le=1000, description="At most this many sessions.")
    offset: int = Field(0, ge=0, description="Skip this many (newest first).")

    @field_validator("since")
    @classmethod
    def _utc_if_naive(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


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
        if request.path == f"{PREFIX}/health":
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
            sessions=[_session(row) for row in found], limit=query.limit, offset=query.offset
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
        detail = SessionDetail(
            **_session(found).model_dump(),
            transcript=[TranscriptLine.model_validate(line) for line in found["transcript"]],
            messages=[
                MessageInfo(**m, href=_message_href(session_id, m["n"])) for m in found["messages"]
            ],
        )
        return _json(detail)

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
    h = _Handlers(receiver, trusts.UPLOADED_ALLOWED if host_access else trusts.UPLOADED)
    app.router.add_get(f"{PREFIX}/sessions", h.sessions)
    app.router.add_delete(f"{PREFIX}/sessions", h.clear)
    app.router.add_get(f"{PREFIX}/sessions/{{id}}", h.session)
    app.router.add_get(f"{PREFIX}/sessions/{{id}}/messages/{{n}}", h.message)
    app.router.add_get(f"{PREFIX}/scenario", h.get_scenario)
    app.router.add_put(f"{PREFIX}/scenario", h.put_scenario)
    app.router.add_get(f"{PREFIX}/health", h.health)
    app.router.add_get(f"{PREFIX}/openapi.json", h.openapi)
    app[OPENAPI] = openapi_document(auth=token is not None)
    return app


def _json(model: BaseModel) -> web.Response:
    return web.Response(text=model.model_dump_json(), content_type="application/json")


def _message_href(session_id: str, n: int) -> str:
    return f"{PREFIX}/sessions/{session_id}/messages/{n}"


def _session(row: dict[str, Any]) -> SessionInfo:
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
        envelope=Envelope(mail_from=row["mail_from"], rcpts=row["rcpts"]),
        verdicts=[VerdictInfo.model_validate(v) for v in row["verdicts"]],
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


# -- serving -------------------------------------------------------------------------------


def exposed(host: str) -> bool:
    """Whether listening on `host` reaches beyond this machine's loopback."""
    try:
        return not ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return host != "localhost"


def _busy_answer() -> bytes:
    body = Error(
        error=f"too many API connections (at most {MAX_CONNECTIONS}); retry later"
    ).model_dump_json()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Retry-After: 1\r\n"
        "Connection: close\r\n\r\n"
    )
    return (head + body).encode()


class _Busy(asyncio.Protocol):
    """A connection over the cap: one 503, then closed.

    What the client sends is read and dropped until it closes or BUSY_LINGER passes:
    closing a socket with unread data makes the kernel send a reset, and a reset makes
    the client drop the 503 it has not read yet.
    """

    def __init__(self, listener: _CappedListener) -> None:
        self._listener = listener
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_busy_answer())
        if transport.can_write_eof():
            transport.write_eof()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(BUSY_LINGER, transport.close)

    def data_received(self, data: bytes) -> None:
        pass  # dropped

    def connection_lost(self, exc: Exception | None) -> None:
        self._listener.busy -= 1
        if self._timer is not None:
            self._timer.cancel()


class _Abort(asyncio.Protocol):
    """Over the cap and over the busy answers' cap too: closed without a word."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.abort()


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, counted in and out of the listener's cap."""

    def __init__(self, inner: asyncio.Protocol, listener: _CappedListener) -> None:
        self._inner = inner
        self._listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._listener.open -= 1
        self._inner.connection_lost(exc)


class _CappedListener:
    """The API's listening socket, with at most `cap` connections open; aiohttp has no
    such knob.

    Not an aiohttp site: a site hands its listener to aiohttp through private attributes.
    The runner's public protocol factory (`runner.server`, aiohttp's low-level server)
    serves each counted connection, and the runner's cleanup still closes them.
    """

    def __init__(self, runner: web.AppRunner, host: str, port: int, cap: int) -> None:
        self._runner = runner
        self._host = host
        self._port = port
        self._listener: asyncio.Server | None = None
        self.cap = cap
        self.open = 0
        #: Connections being told 503 (each lingers at most BUSY_LINGER seconds).
        self.busy = 0

    async def start(self) -> None:
        server = self._runner.server
        assert server is not None  # the runner is set up
        self._listener = await asyncio.get_running_loop().create_server(
            lambda: self._protocol(server), self._host, self._port, reuse_address=True
        )

    def close(self) -> None:
        """Stop listening; open connections are the runner's to close."""
        # Not wait_closed(): since Python 3.12 it also waits for every connection to
        # end, and those end in the runner's cleanup, which comes after.
        if self._listener is not None:
            self._listener.close()

    @property
    def address(self) -> tuple[str, int]:
        assert self._listener is not None and self._listener.sockets
        host, port = self._listener.sockets[0].getsockname()[:2]
        return str(host), int(port)

    def _protocol(self, server: web.Server) -> asyncio.Protocol:
        if self.open < self.cap:
            self.open += 1
            return _Counted(server(), self)
        if self.busy < BUSY_CAP:
            self.busy += 1
            return _Busy(self)
        return _Abort()


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
        self._listener: _CappedListener | None = None
        self._runner = web.AppRunner(
            build_app(receiver, token, host_access),
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            keepalive_timeout=KEEPALIVE,
            # An unread body is not drained: the connection closes after the answer.
            lingering_time=0,
        )

    async def start(self) -> None:
        await self._runner.setup()
        listener = _CappedListener(self._runner, self.host, self.requested_port, MAX_CONNECTIONS)
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


# -- the OpenAPI document ------------------------------------------------------------------

_RESPONSES: Final = (SessionPage, SessionDetail, ScenarioInfo, Health, Error)


def openapi_document(*, auth: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 description of this API; `auth` adds the bearer-token scheme."""
    refs: list[tuple[type[BaseModel], JsonSchemaMode]] = [(m, "serialization") for m in _RESPONSES]
    refs.append((ScenarioByName, "validation"))
    _, top = models_json_schema(refs, ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = top["$defs"]

    def ref(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{name}"}

    def json_body(name: str, description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": ref(name)}}}

    def errors(*codes: int) -> dict[str, Any]:
        reasons = {
            400: "Malformed request",
            401: "Missing or wrong bearer token",
            404: "No such session or message",
            405: "Method not allowed",
            408: f"Body not received within {BODY_DEADLINE:g}s (the connection is closed)",
            413: "Body too large",
            415: "Unsupported Content-Type",
            422: "Scenario rejected (file, line and key path in details)",
            500: "Unexpected error (logged by the server)",
            503: "Journal unavailable, or the server busy (too many connections or bodies "
            "at once; retry after Retry-After seconds)",
        }
        chosen = (*codes, *((401,) if auth else ()), 405, 500)
        return {str(code): json_body("Error", reasons[code]) for code in sorted(set(chosen))}

    query = SessionQuery.model_json_schema()["properties"]
    session_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    paths: dict[str, Any] = {
        "/sessions": {
            "get": {
                "operationId": "listSessions",
                "summary": "Sessions, newest first, with their verdicts",
                "parameters": [
                    {
                        "name": name,
                        "in": "query",
                        "required": False,
                        "description": spec.get("description", ""),
                        "schema": _without_null(spec),
                    }
                    for name, spec in query.items()
                ],
                "responses": {
                    "200": json_body("SessionPage", "A page of sessions"),
                    **errors(400, 503),
                },
            },
            "delete": {
                "operationId": "clearSessions",
                "summary": "Empty the journal",
                "responses": {"204": {"description": "Emptied"}, **errors(503)},
            },
        },
        "/sessions/{id}": {
            "get": {
                "operationId": "getSession",
                "summary": "One session with its transcript and messages",
                "parameters": [session_id],
                "responses": {
                    "200": json_body("SessionDetail", "The session"),
                    **errors(404, 503),
                },
            }
        },
        "/sessions/{id}/messages/{n}": {
            "get": {
                "operationId": "getMessage",
                "summary": "A stored message as received",
                "parameters": [
                    session_id,
                    {
                        "name": "n",
                        "in": "path",
                        "required": True,
                        "description": "The message's number in the session, from 1.",
                        "schema": {"type": "integer", "minimum": 1},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The raw message",
                        "content": {
                            "message/rfc822": {
                                "schema": {"type": "string", "contentMediaType": "message/rfc822"}
                            }
                        },
                    },
                    **errors(400, 404, 503),
                },
            }
        },
        "/scenario": {
            "get": {
                "operationId": "getScenario",
                "summary": "The running scenario",
                "responses": {"200": json_body("ScenarioInfo", "The scenario")},
            },
            "put": {
                "operationId": "putScenario",
                "summary": "Swap the scenario for new sessions",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": ref("ScenarioByName")},
                        **{
                            kind: {"schema": {"type": "string", "description": "Scenario YAML"}}
                            for kind in ("application/yaml", "text/yaml")
                        },
                    },
                },
                "responses": {
                    "200": json_body("ScenarioInfo", "The scenario now running"),
                    **errors(400, 408, 413, 415, 422, 503),
                },
            },
        },
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "ready, or degraded with the reasons",
                "responses": {"200": json_body("Health", "The receiver's health")},
                **({"security": []} if auth else {}),
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "The OpenAPI document",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "strictmx",
            "version": "1",
            "description": "The journal and the running scenario of a strictmx receiver.",
        },
        "servers": [{"url": PREFIX}],
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if auth:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: an absent parameter, not null, means 'no filter'."""
    (kind,) = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
    merged = {**kind, **schema}
    kept = {k: v for k, v in merged.items() if k not in ("anyOf", "title", "description")}
    if kept.get("default") is None:
        kept.pop("default", None)
    return kept
