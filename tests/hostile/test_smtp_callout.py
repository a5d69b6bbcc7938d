"""Sender-verify callouts as a port scanner: a client names the address strictmx connects
to (a domain literal, or a domain whose MX points at a private address), and reads the
connection's fate in the reply. Listeners on those addresses prove no connection is made.
"""

from __future__ import annotations

import contextlib
import select
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from strictmx.receiver.pytest_plugin import StrictmxFactory, StrictmxReceiver

from ._smtp import Peer, greets
from .conftest import Tally

#: What a reply must never say about a connection (the OS's and Postfix's words).
LEAKS = ("refused", "timed out", "timeout", "unreachable", "reset", "connect to", "errno")


@contextmanager
def listener(host: str, port: int = 0) -> Iterator[tuple[socket.socket, int]]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, port))
        sock.listen(16)
        yield sock, sock.getsockname()[1]


def accepted(sock: socket.socket) -> bool:
    """Whether a connection is waiting: the callout connects before it replies, so by the
    time the reply is read, any connection it made is in the backlog."""
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


def scenario(port: int, mode: str = "overlay", **options: Any) -> dict[str, Any]:
    return {
        "name": "hostile-callout",
        "receiver": {"delay_reject": False},
        "policies": {
            "mail": [
                {
                    "policy": "sender_verify",
                    "port": port,
                    "connect_timeout": 1,
                    "command_timeout": 0.5,
                    **options,
                }
            ]
        },
        "world": {
            "dns": {
                "mode": mode,
                "nameservers": ["127.0.0.1:9"],
                "lifetime": 0.5,
                "records": {
                    "loop.test": {"MX": "10 mx.loop.test."},
                    "mx.loop.test": {"A": "127.0.0.3", "AAAA": "::1"},
                    "private.test": {"MX": ["10 a.private.test.", "20 b.private.test."]},
                    "a.private.test": {"A": "10.255.0.1"},
                    "b.private.test": {"A": "169.254.0.1"},
                    "example.net": {"MX": "10 mx.example.net."},
                    "mx.example.net": {"A": "127.0.0.3"},
                },
            },
            "mailboxes": {"example.net": {"exists": ["postmaster", "alice"]}},
        },
    }


def mail_from(rx: StrictmxReceiver, sender: str) -> str:
    peer = Peer(rx)
    try:
        peer.reply()
        peer.command(b"EHLO mail.example.net")
        reply = peer.command(f"MAIL FROM:<{sender}>".encode())
        peer.command(b"QUIT")
    finally:
        peer.close()
    assert not peer.bad, peer.bad
    return b"\n".join(reply).decode("ascii")


SENDERS = [
    "x@[127.0.0.3]",
    "x@[127.0.0.1]",
    "x@[IPv6:::1]",
    "x@[0.0.0.0]",
    "x@[10.0.0.1]",
    "x@[169.254.169.254]",
    "x@[IPv6:::ffff:127.0.0.3]",
    "x@loop.test",
    "x@private.test",
]


def test_callouts_are_refused_to_literals_and_private_addresses(
    strictmx: StrictmxFactory, tally: Tally
) -> None:
    with listeners(["127.0.0.3", "127.0.0.1", "::1"]) as (socks, port):
        rx = strictmx(scenario(port))
        for sender in SENDERS:
            tally.tried()
            reply = mail_from(rx, sender)
            if not reply.startswith("550 5.1.7 "):
                tally.add("wrong_replies", example=f"{sender}: {reply}")
            if any(word in reply.lower() for word in LEAKS):
                tally.add("wrong_replies", example=f"{sender} leaks: {reply}")
            if any(accepted(sock) for sock in socks):
                tally.add("wrong_replies", example=f"{sender}: a connection was made")
    assert rx.receiver.callout is not None and rx.receiver.callout.connections == 0
    assert greets(rx)
    tally.assert_clean()


@contextmanager
def listeners(hosts: list[str]) -> Iterator[tuple[list[socket.socket], int]]:
    """Listeners on one port number at every host (127.0.0.1 is where [0.0.0.0] goes), so
    every target of the test would reach one. A few tries to find a port free on all."""
    for _ in range(5):
        with contextlib.ExitStack() as stack:
            first, port = stack.enter_context(listener(hosts[0]))
            socks = [first]
            try:
                for host in hosts[1:]:
                    socks.append(stack.enter_context(listener(host, port))[0])
            except OSError:
                continue
            yield socks, port
            return
    raise AssertionError(f"no port free on all of {hosts}")


def test_allowed_private_targets_are_called_but_the_reply_says_nothing_of_why(
    strictmx: StrictmxFactory, tally: Tally
) -> None:
    # Control for the test above: with the option on, the same listener does see the
    # callout, which proves it would have seen one. A silent port and a closed one read
    # the same in the reply.
    with listener("127.0.0.3") as (silent, port):
        rx = strictmx(scenario(port, allow_private_targets=True))
        tally.tried()
        reply = mail_from(rx, "x@[127.0.0.3]")
        if not accepted(silent):
            tally.add("wrong_replies", example="the allowed callout made no connection")
    with listener("127.0.0.3") as (_, closed_port):
        pass  # now nothing listens there
    closed = strictmx(scenario(closed_port, allow_private_targets=True))
    tally.tried()
    refused = mail_from(closed, "x@[127.0.0.3]")
    for text in (reply, refused):
        if not text.startswith("450 4.1.7 ") or any(w in text.lower() for w in LEAKS):
            tally.add("wrong_replies", example=text)
    if reply.replace(str(port), "P") != refused.replace(str(closed_port), "P"):
        tally.add(
            "wrong_replies", example=f"a silent and a closed port differ: {reply} / {refused}"
        )
    assert reply == (
        "450 4.1.7 <x@[127.0.0.3]>: Sender address rejected: unverified address: "
        "no answer from host [127.0.0.3][127.0.0.3]"
    )
    # The journal keeps the cause for the operator.
    verdict = closed.last()["verdicts"][0]
    assert "Connection refused" in verdict["reason"]
    tally.assert_clean()


@pytest.mark.parametrize("mode", ["hermetic", "overlay"])
def test_the_worlds_own_mx_still_works(strictmx: StrictmxFactory, tally: Tally, mode: str) -> None:
    # example.net's MX is at 127.0.0.3 in the scenario, but the world lists its mailboxes:
    # the receiver's own responder answers, on loopback, whatever DNS says.
    with listener("127.0.0.3") as (sock, port):
        rx = strictmx(scenario(port, mode))
        tally.tried(2)
        ok = mail_from(rx, "alice@example.net")
        unknown = mail_from(rx, "nobody@example.net")
        if accepted(sock):
            tally.add("wrong_replies", example="the simulated MX was called at its DNS address")
    assert ok == "250 2.1.0 Ok"
    assert unknown.startswith("550 5.1.7 <nobody@example.net>: Sender address rejected: ")
    assert "User unknown" in unknown
    tally.assert_clean()
