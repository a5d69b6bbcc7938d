"""What strictmx relies on in asyncio and aiohttp, outside the SMTP command loop.

No private names: smtp_data.py, api.py, api_listener.py and tls.py touch no underscore
attribute of another object (asyncio's StreamReader and aiohttp's sites were read that way before).
What they do rely on is public but not every detail of it is written down, so it is
pinned here, on the Python this runs on (scripts/test runs 3.11, 3.12 and 3.13):

- StreamReader.readuntil over the stream's limit raises LimitOverrunError and leaves the
  data buffered; `consumed` octets can be taken with readexactly without taking the start
  of a separator (smtp_data.py reads a message that way and must not read past its end);
- aiohttp's runner.server is a protocol factory for loop.create_server, and the runner's
  cleanup closes connections made through it though no aiohttp site holds the listener
  (api_listener.py).
"""

from __future__ import annotations

import ast
import asyncio
import socket
from pathlib import Path

import pytest
from aiohttp import web

RECEIVER = Path(__file__).resolve().parents[2] / "strictmx" / "receiver"
# The files whose use of asyncio and aiohttp this contract covers (the SMTP command loop,
# smtp.py, has its own: tests/unit/test_contract_aiosmtpd.py).
COVERED = ("smtp_data.py", "api.py", "api_listener.py", "tls.py")
END = b"\r\n.\r\n"
LIMIT = 64


def private_uses(source: str) -> list[str]:
    """`x._name` for any x but self and cls, getattr/setattr/hasattr of a "_name", and
    imports of underscore modules: each as `line: text`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
        ):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if any(_private(part) for part in node.module.split(".")):
                found.append(f"{node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if any(_private(part) for part in alias.name.split(".")):
                    found.append(f"{node.lineno}: import {alias.name}")
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@pytest.mark.parametrize("name", COVERED)
def test_no_private_names_of_other_objects(name: str) -> None:
    assert private_uses((RECEIVER / name).read_text()) == []


def test_the_scan_finds_private_names() -> None:
    # Control: the scan sees each form it looks for, and passes self's own attributes.
    source = (
        "import asyncio._private\n"
        "from aiohttp.web_runner import TCPSite\n"
        "from aiohttp._http_parser import X\n"
        "buf = reader._buffer\n"
        "site._server = None\n"
        "getattr(reader, '_eof')\n"
        "self._mine = cls._too = reader.__class__\n"
    )
    assert private_uses(source) == [
        "1: import asyncio._private",
        "3: from aiohttp._http_parser import ...",
        "4: reader._buffer",
        "5: site._server",
        "6: getattr(reader, '_eof')",
    ]


def reader_with(*chunks: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=LIMIT)
    for chunk in chunks:
        reader.feed_data(chunk)
    return reader


async def test_overrun_without_separator_leaves_the_separators_start_buffered() -> None:
    # The separator's first four octets arrive, then its last: `consumed` stops short of
    # them, so the separator is still whole for the next readuntil.
    data = b"x" * (LIMIT + 10) + END[:-1]
    reader = reader_with(data)
    with pytest.raises(asyncio.LimitOverrunError) as overrun:
        await reader.readuntil(END)
    assert overrun.value.consumed == len(data) - (len(END) - 1)
    assert await reader.readexactly(overrun.value.consumed) == data[: overrun.value.consumed]
    reader.feed_data(END[-1:] + b"QUIT\r\n")
    assert await reader.readuntil(END) == END
    assert await reader.readuntil(b"\r\n") == b"QUIT\r\n"  # nothing after it was taken


async def test_overrun_with_separator_beyond_the_limit_stops_at_it() -> None:
    data = b"y" * (LIMIT + 10)
    reader = reader_with(data + END + b"NOOP\r\n")
    with pytest.raises(asyncio.LimitOverrunError) as overrun:
        await reader.readuntil(END)
    assert overrun.value.consumed == len(data)
    assert await reader.readexactly(overrun.value.consumed) == data
    assert await reader.readuntil(END) == END
    assert await reader.readuntil(b"\r\n") == b"NOOP\r\n"


async def test_within_the_limit_readuntil_returns_through_the_first_separator() -> None:
    # Control: no overrun when the separator is within the limit.
    reader = reader_with(b"short\r\nlines" + END + b"NOOP\r\n")
    assert await reader.readuntil(END) == b"short\r\nlines" + END
    assert await reader.readuntil(b"\r\n") == b"NOOP\r\n"


async def test_stream_end_inside_readuntil_is_an_incomplete_read() -> None:
    reader = reader_with(b"partial")
    reader.feed_eof()
    with pytest.raises(asyncio.IncompleteReadError):
        await reader.readuntil(END)
    reader = reader_with(b"ab")
    reader.feed_eof()
    with pytest.raises(asyncio.IncompleteReadError):
        await reader.readexactly(3)


async def test_runner_server_serves_a_listener_and_cleanup_closes_its_connections() -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, shutdown_timeout=5)
    await runner.setup()
    server = runner.server
    assert isinstance(server, web.Server)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: server(), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.setblocking(False)
    try:
        request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"  # keep-alive: the server keeps it open
        await loop.sock_sendall(client, request)
        answer = b""
        while not answer.endswith(b"hello"):
            answer += await asyncio.wait_for(loop.sock_recv(client, 4096), 5)
        assert answer.startswith(b"HTTP/1.1 200")
        listener.close()
        await asyncio.wait_for(runner.cleanup(), 10)
        # The runner closed the connection it served: the client reads the end.
        assert await asyncio.wait_for(loop.sock_recv(client, 4096), 5) == b""
    finally:
        client.close()
        listener.close()
