"""The receiver: one scenario, its world and engine, a journal, and the listening socket.

Services that live beside SMTP for as long as the receiver listens (the HTTP API) are
attached by whoever composes the process (`strictmx serve`, the pytest plugin), so this
module knows none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import ssl
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from .engine import Engine
from .journal import DEFAULT_MAX_STORED_MESSAGE_BYTES, Journal
from .persona import Persona
from .policy import ClientHistory, Context
from .scenario import Scenario
from .session_log import SessionEnd
from .smtp import StrictSMTP
from .tls import Floor
from .world import World
from .world.callout import Callout
from .world.dnsserver import DnsServer
from .world.endpoints import split_listen

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


@dataclass
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 2525
    db: str = "strictmx.db"
    #: Peers allowed to send XCLIENT and PROXY headers.
    trusted: Sequence[Network] = LOOPBACK
    proxy_protocol: bool = False
    tls_context: ssl.SSLContext | None = None
    #: Seconds sessions may go on after a stop is asked for.
    grace: float = 5.0
    #: How much of each accepted message the journal keeps (the scenario's
    #: `receiver.max_message_size`, the SIZE limit, decides what is accepted).
    max_stored_message_bytes: int = DEFAULT_MAX_STORED_MESSAGE_BYTES
    #: A second listener with implicit TLS (SMTPS, RFC 8314 §3.3): the same scenario and
    #: journal, the certificate of `tls_context` (required with it). None: no SMTPS.
    smtps_listen: tuple[str, int] | None = None
    #: Serve the scenario's DNS here (overrides the scenario's `world.dns.serve`).
    dns_listen: tuple[str, int] | None = None
    #: Keep the objects of the running scenario out of the cyclic collector's walks
    #: (`gc.freeze`). Process-wide, so only for a process that is the receiver: `serve`.
    freeze_gc: bool = False


class Service(Protocol):
    """Something served beside SMTP while the receiver listens, e.g. the HTTP API."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Receiver:
    scenario: Scenario
    options: ServerOptions = field(default_factory=ServerOptions)

    def __post_init__(self) -> None:
        self.history = ClientHistory()
        self.persona = Persona.build(self.scenario, history=self.history)
        # Sender-verify callouts and the simulated MX hosts they call (world.mailboxes),
        # kept across swaps: a started responder serves the next persona too.
        self.callout = self.persona.callout
        self.journal = Journal(
            self.options.db, max_stored_message_bytes=self.options.max_stored_message_bytes
        )
        self.sessions_open: set[StrictSMTP] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.stopping = False
        #: Told of every session that ends (`strictmx serve` prints a line for each).
        self.session_log: Callable[[SessionEnd], None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._smtps_server: asyncio.base_events.Server | None = None
        self.dns_server: DnsServer | None = None
        #: Started after the SMTP listener, in order; stopped before it, in reverse.
        self.services: list[Service] = []
        # Callout clients replaced by a scenario swap: sessions under way may still use them.
        self._retired_callouts: list[Callout] = []
        # The scenario's receiver.tls_min_version, on the context STARTTLS uses. A context
        # cannot be copied: the receiver sets the floor on the one it is given (its own).
        context = self.options.tls_context
        self._tls_floor = Floor(context) if context is not None else None
        self._apply_tls_floor()

    # -- the running persona -----------------------------------------------------------
    @property
    def world(self) -> World:
        return self.persona.world

    @property
    def engine(self) -> Engine:
        return self.persona.engine

    @property
    def context(self) -> Context:
        return self.persona.context

    def _apply_tls_floor(self) -> None:
        """The scenario's protocol floor on the STARTTLS context (sessions under way keep
        the protocol they negotiated; new handshakes follow the running scenario)."""
        if self._tls_floor is not None:
            self._tls_floor.apply(self.scenario.receiver.tls_min_version)

    # -- what the SMTP layer asks -------------------------------------------------------
    @property
    def tls_context(self) -> ssl.SSLContext | None:
        return self.options.tls_context

    @property
    def proxy_timeout(self) -> float | None:
        return 5.0 if self.options.proxy_protocol else None

    def trusts(self, peer: Any) -> bool:
        host = peer[0] if isinstance(peer, tuple) else peer
        try:
            address = ipaddress.ip_address(str(host).split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in net for net in self.options.trusted)

    def session_opened(self, protocol: StrictSMTP) -> None:
        self.sessions_open.add(protocol)
        self._idle.clear()

    def session_closed(self, protocol: StrictSMTP) -> None:
        self.sessions_open.discard(protocol)
        if not self.sessions_open:
            self._idle.set()

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until no session is open and the journal has committed everything."""
        await asyncio.wait_for(self._idle.wait(), timeout)
        await self.journal.flush()

    def use_scenario(self, scenario: Scenario) -> None:
        """Swap the persona for new sessions; sessions under way keep the old one."""
        self.use_persona(Persona.build(scenario, history=self.history, callout=self.callout))

    def use_persona(self, persona: Persona) -> None:
        self.scenario = persona.scenario
        self.persona = persona
        self._apply_tls_floor()
        if persona.callout is None:
            pass
        elif persona.callout is self.callout:
            persona.callout.use_world(persona.world)  # its responder serves the new world
        else:
            if self.callout is not None:
                self._retired_callouts.append(self.callout)
            self.callout = persona.callout

    async def switch_scenario(self, scenario: Scenario) -> None:
        """`use_scenario` for a running receiver, with the servers its world needs.

        The DNS server (`dns_listen`, else the new scenario's `world.dns.serve`) restarts
        with the new records, on the port it had when the address asked for is the same.
        A new callout client starts when the new scenario calls out and the running one
        cannot serve it (there is none, or a simulated MX is needed and it has no
        responder); the old one stays up for sessions under way until the receiver stops.
        ValueError: the world cannot be built (nothing changed); OSError: its DNS cannot
        be served (the old DNS server is stopped, the scenario unchanged).
        """
        persona = Persona.build(scenario, history=self.history, callout=self.callout)
        listen = self._dns_listen(scenario)
        if self.dns_server is not None:
            if listen == (self.dns_server.host, self.dns_server.requested_port):
                listen = self.dns_server.address
            await self.dns_server.stop()
            self.dns_server = None
        if listen is not None:
            server = DnsServer.from_config(scenario.world.dns, *listen)
            await server.start()
            self.dns_server = server
        if persona.callout is not None and persona.callout is not self.callout:
            await persona.callout.start()
        self.use_persona(persona)
        self._freeze_heap()

    def _freeze_heap(self) -> None:
        """With `freeze_gc`: what exists now (scenario, world, engine, caches) is kept out
        of the collector's walks. A receiver builds its persona once and keeps it, and a
        full collection under load otherwise walks all of it again (about 30 ms each, once
        per thousand sessions or so). Re-done after a swap, so the old persona can go."""
        if self.options.freeze_gc:
            gc.unfreeze()
            gc.collect()
            gc.freeze()

    def attach(self, service: Service) -> None:
        """Start `service` with the receiver and stop it first (attach before `start`)."""
        self.services.append(service)

    # -- life -----------------------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.journal.open()
        started: list[Service] = []
        try:
            await self._start_dns()
            if self.callout is not None:
                await self.callout.start()
            self._server = await self.loop.create_server(
                lambda: StrictSMTP(self), self.options.host, self.options.port
            )
            if self.options.smtps_listen is not None:
                if self.options.tls_context is None:
                    raise ValueError("SMTPS (smtps_listen) needs a TLS context")
                # The handshake first, then the session: a StrictSMTP whose transport is
                # already TLS (smtp.py marks the session so at its start).
                self._smtps_server = await self.loop.create_server(
                    lambda: StrictSMTP(self),
                    *self.options.smtps_listen,
                    ssl=self.options.tls_context,
                )
            for service in self.services:
                await service.start()
                started.append(service)
            self._freeze_heap()
        except BaseException:
            for service in reversed(started):
                try:
                    await service.stop()
                except Exception:  # the start's own error is the one to report
                    log.exception("cannot stop %r after a failed start", service)
            for server in (self._server, self._smtps_server):
                if server is not None:
                    server.close()
                    await server.wait_closed()
            self._server = self._smtps_server = None
            if self.dns_server is not None:
                await self.dns_server.stop()
                self.dns_server = None
            if self.callout is not None:
                await self.callout.stop()
            await self.journal.close()
            raise

    def _dns_listen(self, scenario: Scenario) -> tuple[str, int] | None:
        serve = scenario.world.dns.serve
        return self.options.dns_listen or (split_listen(serve) if serve else None)

    async def _start_dns(self) -> None:
        listen = self._dns_listen(self.scenario)
        if listen is not None:
            self.dns_server = DnsServer.from_config(self.scenario.world.dns, *listen)
            await self.dns_server.start()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        if self._server is None:
            return []
        return [s.getsockname()[:2] for s in self._server.sockets]

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    @property
    def smtps_addresses(self) -> list[tuple[str, int]]:
        """Where the SMTPS listener is (none: no SMTPS)."""
        if self._smtps_server is None:
            return []
        return [s.getsockname()[:2] for s in self._smtps_server.sockets]

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let sessions finish for `grace` seconds, abort the rest, flush."""
        if self._server is None:
            return
        for service in reversed(self.services):
            await service.stop()
        self._server.close()
        if self._smtps_server is not None:
            self._smtps_server.close()
        wait = self.options.grace if grace is None else grace
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), wait)
        self.stopping = True
        for protocol in list(self.sessions_open):
            protocol.shut_down()  # 421 4.3.2, then the close
        with contextlib.suppress(TimeoutError):  # connection_lost journals each as aborted
            await asyncio.wait_for(self._idle.wait(), 2.0)
        await self._server.wait_closed()
        self._server = None
        if self._smtps_server is not None:
            await self._smtps_server.wait_closed()
            self._smtps_server = None
        if self.dns_server is not None:
            await self.dns_server.stop()
            self.dns_server = None
        if self.callout is not None:
            await self.callout.stop()
        for callout in self._retired_callouts:
            await callout.stop()
        await self.journal.mark_open_aborted(datetime.now(UTC))
        await self.journal.close()
        if self.options.freeze_gc:
            gc.unfreeze()


class ReceiverThread:
    """A receiver on its own event loop in a background thread (tests, the pytest plugin)."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> ReceiverThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.receiver.start(), self._loop).result(timeout=30)
        return self

    def call(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the receiver's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=timeout)

    def stop(self, grace: float = 0.5) -> None:
        try:
            self.call(self.receiver.stop(grace))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    @property
    def port(self) -> int:
        return self.receiver.port

    def __enter__(self) -> ReceiverThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def parse_networks(items: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)
