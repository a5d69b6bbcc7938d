"""The HTTP API's listening socket, with its connection cap: aiohttp's server behind a
plain asyncio listener that counts connections, answers 503 over the cap and resets
beyond a second cap, so a flood cannot take the file descriptors SMTP needs."""

from __future__ import annotations

import asyncio
import ipaddress

from aiohttp import web

from .api_contract import BUSY_CAP, BUSY_LINGER, MAX_CONNECTIONS, Error

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

    def __init__(self, listener: CappedListener) -> None:
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

    def __init__(self, inner: asyncio.Protocol, listener: CappedListener) -> None:
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


class CappedListener:
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
