"""Slow and idle clients must not starve honest ones: slowloris trickling commands a byte
at a time, and a flood of idle connections, while an honest client sends mail.

The trickle's pauses are the attack itself (a client that is slow on purpose), not a
wait for the server; every loop is bounded in count and in time.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

from strictmx.receiver.pytest_plugin import StrictmxFactory, StrictmxReceiver

from ._smtp import Closed, Hung, Peer, greets
from .conftest import Tally

#: Seconds between two bytes of a slowloris client.
TRICKLE = 0.2
#: An honest reply must come within this, whatever the attackers do.
PROMPT = 1.0
IDLE_CONNECTIONS = 300
#: The persona's idle timeout: a command not finished within it ends the session.
TIMEOUT = 3.0


def scenario() -> dict[str, Any]:
    return {
        "name": "hostile-load",
        "receiver": {"timeout": TIMEOUT},
        "policies": {"session": [{"policy": "session_limits", "soft_error_limit": None}]},
    }


MESSAGE = (
    b"From: alice@example.net\r\nTo: bob@example.org\r\nSubject: honest\r\n"
    b"Date: Thu, 3 Dec 2026 08:00:00 +0000\r\nMessage-ID: <honest@example.net>\r\n\r\nhi\r\n"
)


def honest_transaction(rx: StrictmxReceiver, tally: Tally) -> float:
    """One clean message; the slowest reply's wait in seconds (counted as a hang if over)."""
    slowest = 0.0
    peer = Peer(rx, timeout=PROMPT * 5)
    try:
        for command in (
            None,  # the greeting
            b"EHLO mail.example.net",
            b"MAIL FROM:<alice@example.net>",
            b"RCPT TO:<bob@example.org>",
            b"DATA",
            MESSAGE + b".",
            b"QUIT",
        ):
            tally.tried()
            started = time.monotonic()
            reply = peer.reply() if command is None else peer.command(command)
            slowest = max(slowest, time.monotonic() - started)
            if reply[-1][:1] not in (b"2", b"3"):
                tally.add("wrong_replies", example=f"honest {command!r}: {reply!r}")
    except (Hung, Closed) as exc:
        tally.add("hangs", example=f"honest client: {exc!r}")
    finally:
        peer.close()
    if slowest > PROMPT:
        tally.add("hangs", example=f"an honest reply took {slowest:.2f}s")
    return slowest


class Trickler(threading.Thread):
    """Clients sending `line` one byte every TRICKLE seconds, round-robin; what each heard."""

    def __init__(self, rx: StrictmxReceiver, line: bytes, clients: int) -> None:
        super().__init__(daemon=True)
        self.socks = [
            socket.create_connection((rx.host, rx.port), timeout=5) for _ in range(clients)
        ]
        for sock in self.socks:
            sock.recv(4096)  # the greeting
        self.line = line
        self.heard: list[bytes] = [b""] * clients
        self.stop = threading.Event()

    def run(self) -> None:
        for octet in range(len(self.line)):  # bounded: one pass over the line
            if self.stop.wait(TRICKLE):
                return
            for sock in self.socks:
                # Closed by the server's timeout: what `results` reads says so.
                with contextlib.suppress(OSError):
                    sock.sendall(self.line[octet : octet + 1])

    def results(self) -> list[bytes]:
        for n, sock in enumerate(self.socks):
            sock.settimeout(TIMEOUT + 2)
            try:
                while not self.heard[n].endswith(b"\n"):
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    self.heard[n] += chunk
            except OSError:
                pass
            sock.close()
        return self.heard


def test_slowloris_does_not_starve_an_honest_client(
    strictmx: StrictmxFactory, tally: Tally
) -> None:
    rx = strictmx(scenario())
    # 20 clients each: one finishes its command within the timeout, one never does.
    quick = Trickler(rx, b"NOOP\r\n", 20)  # 6 octets: ~1.2 s
    slow = Trickler(rx, b"EHLO " + b"a" * 40 + b".example.net\r\n", 20)  # ~12 s at most
    started = time.monotonic()
    quick.start()
    slow.start()
    rounds = 0
    while quick.is_alive() and rounds < 20:  # honest mail while the trickle goes on
        honest_transaction(rx, tally)
        rounds += 1
    quick.join(timeout=10)
    heard_quick = quick.results()
    heard_slow = slow.results()  # returns once the server's timeout closed them
    slow.stop.set()
    slow.join(timeout=10)
    elapsed = time.monotonic() - started
    tally.tried(len(heard_quick) + len(heard_slow))
    assert rounds >= 1
    # A slow but finished command is answered; a command that outlasts the timeout ends
    # the session (aiosmtpd resets its timer only on a whole command).
    for heard in heard_quick:
        if heard != b"250 OK\r\n":
            tally.add("wrong_replies", example=f"trickled NOOP got {heard!r}")
    for heard in heard_slow:
        if heard != b"421 4.4.2 mx.strictmx.test Error: timeout exceeded\r\n":
            tally.add("wrong_replies", example=f"a command slower than the timeout: {heard!r}")
    assert elapsed < TIMEOUT + 15
    assert greets(rx)
    tally.assert_clean()


def test_idle_flood_does_not_starve_an_honest_client(
    strictmx: StrictmxFactory, tally: Tally
) -> None:
    rx = strictmx(scenario())
    idle: list[socket.socket] = []
    try:
        for _ in range(IDLE_CONNECTIONS):
            sock = socket.create_connection((rx.host, rx.port), timeout=5)
            idle.append(sock)
        tally.tried(len(idle))
        greeted = 0
        for sock in idle:  # each gets its greeting, then says nothing
            if sock.recv(4096).startswith(b"220 "):
                greeted += 1
        if greeted != IDLE_CONNECTIONS:
            tally.add(
                "wrong_replies", IDLE_CONNECTIONS - greeted, example="an idle client not greeted"
            )
        for _ in range(3):
            honest_transaction(rx, tally)
    finally:
        for sock in idle:
            sock.close()
    assert greets(rx)
    tally.assert_clean()


def test_idle_connections_are_closed_at_the_timeout(
    strictmx: StrictmxFactory, tally: Tally
) -> None:
    # Control for the flood: idle connections do not live forever.
    rx = strictmx(scenario())
    socks = [socket.create_connection((rx.host, rx.port), timeout=TIMEOUT + 3) for _ in range(10)]
    started = time.monotonic()
    for sock in socks:
        tally.tried()
        data = b""
        try:
            while chunk := sock.recv(4096):
                data += chunk
        except TimeoutError:
            tally.add("hangs", example="an idle connection outlived the timeout")
        sock.close()
        if not data.endswith(b"\r\n421 4.4.2 mx.strictmx.test Error: timeout exceeded\r\n"):
            tally.add("wrong_replies", example=f"idle connection closed with {data!r}")
    assert time.monotonic() - started < TIMEOUT + 3
    tally.assert_clean()


def test_a_help_flood_is_cut_off(strictmx: StrictmxFactory, tally: Tally) -> None:
    # 5,000 pipelined HELPs once got 5,000 answers. session_limits' defaults (Postfix's
    # smtpd_junk_command_limit 100, smtpd_hard_error_limit 20), without the tarpit's
    # sleep so the test is quick: 101 junk commands are free, then each is an error, and
    # the 20th error ends the session with 421.
    rx = strictmx({"policies": {"session": [{"policy": "session_limits", "error_sleep_time": 0}]}})
    peer = Peer(rx)
    replies: list[list[bytes]] = []
    try:
        peer.reply()
        peer.command(b"EHLO mail.example.net")
        tally.tried(5000)
        peer.send(b"HELP\r\n" * 5000)
        with contextlib.suppress(Closed):
            for _ in range(5000):  # bounded: at most one reply per HELP
                replies.append(peer.reply())
    except Hung as hung:
        tally.add("hangs", example=f"HELP flood: {hung!r}")
    finally:
        peer.close()
    codes = [reply[-1][:3] for reply in replies]
    if codes != [b"250"] * 120 + [b"421"]:
        tally.add("wrong_replies", example=f"{len(codes)} replies, last {replies[-1:]!r}")
    for why, line in peer.bad:
        tally.add("wrong_replies", example=f"{why}: {line!r}")
    honest_transaction(rx, tally)
    tally.assert_clean()
