"""Hostile API clients against a real `strictmx serve`: many connections holding partial
bodies, a body trickled a byte a second, more connections than the cap.

The server's memory is read from /proc/PID/status (VmHWM, the peak resident set), and
SMTP greetings on the same server must stay prompt throughout.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from strictmx.receiver.api_contract import (
    BODY_DEADLINE,
    KEEPALIVE,
    MAX_BODY,
    MAX_BUFFERED,
    MAX_CONNECTIONS,
)

from ._scenario import Answer, Serve, banner_seconds, read_answer, request
from .conftest import Tally

#: Connections of the flood, each announcing a body just under the limit.
FLOOD = 100
ANNOUNCED = 4_000_000
SENT = 3_900_000
#: The server may grow by this much at its peak (KiB); unbounded, 100 such connections
#: took it to about 940 MB.
GROWTH_BOUND_KIB = 96 * 1024
BANNER_BOUND = 0.5


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Serve]:
    running = Serve(tmp_path)
    yield running
    running.stop()


def put_head(length: int) -> bytes:
    return (
        "PUT /api/v1/scenario HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/yaml\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def answer_now(sock: socket.socket, wait: float) -> Answer | None:
    """The answer on `sock` if one arrives within `wait` seconds; None if none (yet)."""
    readable, _, _ = select.select([sock], [], [], wait)
    if not readable:
        return None
    sock.settimeout(5)
    try:
        return read_answer(sock)
    except (ConnectionResetError, AssertionError):
        return None


class Trickle(threading.Thread):
    """A PUT whose body comes one byte a second: when its answer came, and which."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.answer: Answer | None = None
        self.after: float | None = None
        self.started = threading.Event()

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(put_head(100))
            began = time.monotonic()
            self.started.set()
            for _ in range(int(BODY_DEADLINE) + 6):  # bounded: a few bytes past the deadline
                try:
                    sock.sendall(b"#")
                except OSError:
                    break
                self.answer = answer_now(sock, 1.0)
                if self.answer is not None:
                    self.after = time.monotonic() - began
                    return


class HeaderTrickle(threading.Thread):
    """A request whose headers come one byte a second: when the server closed it."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.closed_after: float | None = None

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(b"PUT /api/v1/scenario HTTP/1.1\r\n")
            began = time.monotonic()
            for _ in range(int(KEEPALIVE) + 6):  # bounded: a few bytes past the limit
                try:
                    sock.sendall(b"X")
                    closed = select.select([sock], [], [], 1.0)[0] and not sock.recv(1024)
                except OSError:
                    closed = True
                if closed:
                    self.closed_after = time.monotonic() - began
                    return


def test_partial_bodies_and_trickles_stay_bounded(server: Serve, tally: Tally) -> None:
    baseline = server.status("VmRSS")
    trickle = Trickle(server.api_port)
    trickle.start()
    trickle.started.wait(10)
    slow_headers = HeaderTrickle(server.api_port)
    slow_headers.start()

    socks: list[socket.socket] = []
    answers: dict[int, Answer] = {}
    for _ in range(FLOOD):
        sock = socket.create_connection(("127.0.0.1", server.api_port), timeout=10)
        sock.sendall(put_head(ANNOUNCED))
        socks.append(sock)
    tally.tried(FLOOD + 2)
    # Refusals (over the connection cap, over the bodies budget) come before any body.
    for n, sock in enumerate(socks):
        got = answer_now(sock, 0.5 if n == 0 else 0.05)
        if got is not None:
            answers[n] = got
    readers = [n for n in range(FLOOD) if n not in answers]
    # Feed the rest all but the last 100 kB of their bodies, as fast as they take it.
    sent = dict.fromkeys(readers, 0)
    chunk = b"#" * 65536
    feed_until = time.monotonic() + 8
    while time.monotonic() < feed_until:
        open_ = [socks[n] for n in sent if sent[n] < SENT]
        if not open_:
            break
        _, writable, _ = select.select([], open_, [], 0.5)
        for sock in writable:
            n = socks.index(sock)
            try:
                sent[n] += sock.send(chunk[: SENT - sent[n]])
            except OSError:
                sent[n] = SENT  # closed by the server: its answer is read below
    greeting = banner_seconds(server.smtp_port)
    health = request(server.api_port, "GET", "/health")
    # The readers' bodies never end: each must be cut at the body deadline.
    for n in readers:
        got = answer_now(socks[n], BODY_DEADLINE + 4)
        if got is not None:
            answers[n] = got
    trickle.join(timeout=BODY_DEADLINE + 8)
    slow_headers.join(timeout=KEEPALIVE + 8)
    peak = server.status("VmHWM")
    for sock in socks:
        sock.close()

    statuses = sorted(a.status for a in answers.values())
    busy = statuses.count(503)
    cut = statuses.count(408)
    print(
        f"flood: {FLOOD} connections, {busy} refused 503, {cut} cut 408 after partial bodies; "
        f"peak RSS {peak // 1024} MiB from {baseline // 1024} MiB; greeting {greeting:.3f}s; "
        f"body trickle cut after {trickle.after}s, "
        f"header trickle after {slow_headers.closed_after}s"
    )
    if not server.alive:
        tally.add("crashes", example="the server died")
    if len(answers) != FLOOD:
        tally.add("hangs", FLOOD - len(answers), example=f"answered {len(answers)} of {FLOOD}")
    if busy + cut != len(answers):
        tally.add("wrong_replies", example=f"statuses {statuses}")
    if busy < FLOOD - MAX_BUFFERED // ANNOUNCED:
        tally.add("wrong_replies", example=f"only {busy} refused: {statuses}")
    if peak - baseline > GROWTH_BOUND_KIB:
        tally.add("wrong_replies", example=f"peak RSS grew {(peak - baseline) // 1024} MiB")
    if greeting > BANNER_BOUND:
        tally.add("hangs", example=f"SMTP greeting after {greeting:.2f}s")
    if health.status != 200:
        tally.add("wrong_replies", example=f"health during the flood: {health.status}")
    if trickle.answer is None or trickle.answer.status != 408:
        tally.add("hangs", example=f"trickle: {trickle.answer and trickle.answer.status}")
    elif trickle.after is None or not BODY_DEADLINE - 1 <= trickle.after <= BODY_DEADLINE + 2:
        tally.add("wrong_replies", example=f"trickle cut after {trickle.after}s")
    after = slow_headers.closed_after
    if after is None or after > KEEPALIVE + 2:
        tally.add("hangs", example=f"header trickle closed after {after}s")
    # Control: once the flood is gone, an ordinary upload goes through.
    tally.tried()
    ok = request(
        server.api_port, "PUT", "/scenario", b"name: after-the-flood\n", "application/yaml"
    )
    if ok.status != 200:
        tally.add("wrong_replies", example=f"control: {ok.status} {ok.body[:200]!r}")
    tally.assert_clean()


def test_connections_over_the_cap_get_503_and_the_cap_frees_up(server: Serve, tally: Tally) -> None:
    held = [
        socket.create_connection(("127.0.0.1", server.api_port), timeout=10)
        for _ in range(MAX_CONNECTIONS)
    ]
    try:
        # The held ones are counted once aiohttp has them: a request on each proves it.
        for sock in held[:1]:
            sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert select.select([sock], [], [], 5)[0]
            sock.recv(65536)
        for _ in range(20):
            tally.tried()
            over = request(server.api_port, "GET", "/health", timeout=5)
            if over.status != 503 or "too many API connections" not in over.json()["error"]:
                tally.add("wrong_replies", example=f"over the cap: {over.status} {over.body!r}")
            if over.headers.get("retry-after") != "1":
                tally.add("wrong_replies", example=f"no Retry-After: {over.headers}")
        greeting = banner_seconds(server.smtp_port)
        if greeting > BANNER_BOUND:
            tally.add("hangs", example=f"SMTP greeting after {greeting:.2f}s")
    finally:
        for sock in held:
            # Half-close and wait for the server's close: asyncio closes a socket only after
            # the protocol's connection_lost, so each EOF here means its place is free.
            sock.shutdown(socket.SHUT_WR)
            while select.select([sock], [], [], 5)[0] and sock.recv(65536):
                pass
            sock.close()
    # Control: closed connections free their places.
    tally.tried()
    status = request(server.api_port, "GET", "/health").status
    if status != 200:
        tally.add("wrong_replies", example=f"after the cap freed: {status}")
    tally.assert_clean()


def test_a_body_over_the_limit_is_refused_before_it_is_read(server: Serve, tally: Tally) -> None:
    for length in (MAX_BODY + 1, 10 * MAX_BODY, 2**62):
        tally.tried()
        with socket.create_connection(("127.0.0.1", server.api_port), timeout=10) as sock:
            sock.sendall(put_head(length) + b"name: x\n")
            got = answer_now(sock, 2)
        if got is None or got.status != 413:
            tally.add("wrong_replies", example=f"{length}: {got and got.status}")
    tally.assert_clean()
