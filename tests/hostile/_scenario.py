"""Helpers for the hostile scenario and API tests: `strictmx serve` as a child process
with its API, raw HTTP over sockets, the SMTP banner's latency, the child's memory."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.serve_child import ServeChild, command, environment


def run(cwd: Path, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args),
        cwd=cwd,
        env=environment(api_token=False),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Serve(ServeChild):
    """`strictmx serve --api-listen` in a child process (tests/serve_child.py)."""

    def __init__(self, cwd: Path, *args: str) -> None:
        super().__init__(cwd, "--api-listen", "127.0.0.1:0", *args, api_token=False)
        assert self.api_port is not None, self.started
        self.smtp_port = self.port
        self.api_port: int = self.api_port


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    content_type: str | None = None,
    timeout: float = 10.0,
) -> Answer:
    """One HTTP/1.1 request on its own connection, the answer read to its end."""
    head = f"{method} /api/v1{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode() + body)
        return read_answer(sock)


def read_answer(sock: socket.socket) -> Answer:
    """Read an HTTP answer until the server closes (requests say Connection: close)."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 "):
        raise AssertionError(f"not an HTTP answer: {data[:200]!r}")
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return Answer(int(lines[0].split()[1]), headers, body)


def banner_seconds(port: int, timeout: float = 10.0) -> float:
    """Seconds from connecting to the SMTP port to a whole 220 greeting line."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = sock.recv(1024)
            if not chunk:
                break
            data += chunk
        elapsed = time.monotonic() - started
        sock.sendall(b"QUIT\r\n")
    if not data.startswith(b"220"):
        raise AssertionError(f"no greeting: {data!r}")
    return elapsed
