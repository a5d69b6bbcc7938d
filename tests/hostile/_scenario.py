"""Helpers for the hostile scenario and API tests: `strictmx serve` as a child process
with its API, raw HTTP over sockets, the SMTP banner's latency, the child's memory."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"^strictmx: listening on 127\.0\.0\.1:(\d+)$")
API_ON = re.compile(r"^strictmx: API on http://127\.0\.0\.1:(\d+)/api/v1$")
START_TIMEOUT = 20.0
EXIT_TIMEOUT = 10.0


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "strictmx.receiver.cli", *args]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "STRICTMX_API_TOKEN"}
    env["PYTHONPATH"] = str(ROOT)
    return env


def run(cwd: Path, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args),
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Serve:
    """`strictmx serve --api-listen` in a child process, ready once its start-up lines are
    printed (they end with the indented per-stage policy lines)."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            command(
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--api-listen",
                "127.0.0.1:0",
                "--db",
                "journal.db",
                *args,
            ),
            cwd=cwd,
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()
        try:
            lines = self._read_start()
            self.smtp_port = int(next(m.group(1) for m in map(LISTENING.match, lines) if m))
            self.api_port = int(next(m.group(1) for m in map(API_ON.match, lines) if m))
        except BaseException:
            self.stop()
            raise

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _read_start(self) -> list[str]:
        lines: list[str] = []
        deadline = time.monotonic() + START_TIMEOUT
        while not lines or not lines[-1].startswith("  "):
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no start-up lines in {START_TIMEOUT}s: {lines}") from None
            if line is None:
                raise AssertionError(f"serve exited while starting: {lines}")
            lines.append(line)
        return lines

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> str:
        """Stop the child (SIGTERM, then SIGKILL) and return its stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=EXIT_TIMEOUT)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return err

    def status(self, key: str) -> int:
        """A `/proc/PID/status` figure in KiB (VmRSS now, VmHWM the peak)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {key} in /proc/{self.proc.pid}/status")


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
