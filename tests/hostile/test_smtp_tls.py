"""STARTTLS attacked: commands injected behind it in plaintext, a second negotiation inside
TLS, and garbage where the handshake should be. Real TLS over loopback sockets.
"""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from strictmx.receiver.pytest_plugin import StrictmxFactory, StrictmxReceiver
from strictmx.receiver.tls import self_signed_context

from ._smtp import Closed, Hung, Peer, greets
from .conftest import Tally

#: Plaintext sent in the same packet as STARTTLS; none of it may run inside TLS
#: (RFC 3207 §6; Postfix's CVE-2011-0411).
INJECTIONS = [
    b"MAIL FROM:<evil@example.net>\r\n",
    b"MAIL FROM:<evil@example.net>\r\nRCPT TO:<bob@example.org>\r\n",
    b"XCLIENT ADDR=198.51.100.66\r\n",
    b"RSET\r\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n",
    b"QUIT\r\n",
    b"EHLO evil.example\r\n",
    b"NOOP\r\n" * 50,
    b"MAIL FROM:<evil@example.net>",  # no line end: a partial command waiting in the buffer
]


def client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@pytest.fixture
def rx(strictmx: StrictmxFactory) -> StrictmxReceiver:
    return strictmx("default", tls_context=self_signed_context("mx.strictmx.test"))


def into_tls(peer: Peer) -> None:
    assert not peer.buffer, "nothing may be left of the plaintext replies"
    peer.sock = client_context().wrap_socket(peer.sock)


def test_plaintext_injected_after_starttls_never_runs(rx: StrictmxReceiver, tally: Tally) -> None:
    for injected in INJECTIONS:
        tally.tried()
        peer = Peer(rx)
        try:
            peer.reply()
            peer.command(b"EHLO mail.example.net")
            peer.send(b"STARTTLS\r\n" + injected)
            if peer.reply() != [b"220 Ready to start TLS"]:
                tally.add("wrong_replies", example=f"STARTTLS refused with {injected!r}")
                continue
            into_tls(peer)
            ehlo = peer.command(b"EHLO mail.example.net")
            # Were an injected MAIL run, RCPT would be accepted without a MAIL of ours.
            rcpt = peer.command(b"RCPT TO:<bob@example.org>")
            mail = peer.command(b"MAIL FROM:<alice@example.net>")
            peer.command(b"QUIT")
        except (Hung, Closed, ssl.SSLError, OSError) as exc:
            tally.add("crashes", example=f"{injected!r}: {exc!r}")
            continue
        finally:
            peer.close()
        if ehlo[-1] != b"250 HELP" or not rcpt[0].startswith(b"503 ") or mail != [b"250 2.1.0 Ok"]:
            tally.add("wrong_replies", example=f"{injected!r}: {ehlo[-1]!r} {rcpt!r} {mail!r}")
        for why, line in peer.bad:
            tally.add("wrong_replies", example=f"{why}: {line!r}")
        session = rx.last()
        transcript = [(t["direction"], t["line"]) for t in session["transcript"]]
        if any("evil" in line or "198.51.100.66" in line for _, line in transcript):
            tally.add("wrong_replies", example=f"{injected!r} reached the session")
        note = f"{len(injected)} octets sent in plaintext after STARTTLS discarded"
        if ("note", note) not in transcript or session["client_address"] != "127.0.0.1":
            tally.add("wrong_replies", example=f"{injected!r}: not noted as discarded")
    assert greets(rx)
    tally.assert_clean()


def test_a_second_starttls_is_refused_each_time(rx: StrictmxReceiver, tally: Tally) -> None:
    peer = Peer(rx)
    try:
        peer.reply()
        peer.command(b"EHLO mail.example.net")
        assert peer.command(b"STARTTLS") == [b"220 Ready to start TLS"]
        into_tls(peer)
        ehlo = peer.command(b"EHLO mail.example.net")
        assert b"250-STARTTLS" not in ehlo, "RFC 3207 §4.2: not offered inside TLS"
        for attempt in (b"STARTTLS", b"starttls", b"STARTTLS now"):
            tally.tried()
            reply = peer.command(attempt)
            if reply != [b"554 5.5.1 Error: TLS already active"]:
                tally.add("wrong_replies", example=f"{attempt!r}: {reply!r}")
            # The connection stays usable: a command after the refusal is answered in TLS.
            if peer.command(b"NOOP") != [b"250 OK"]:
                tally.add("wrong_replies", example=f"NOOP after {attempt!r}")
        assert peer.command(b"MAIL FROM:<alice@example.net>") == [b"250 2.1.0 Ok"]
        assert peer.command(b"QUIT") == [b"221 Bye"]
    finally:
        peer.close()
    session = rx.last()
    assert session["tls"] is True
    assert greets(rx)
    tally.assert_clean()


@pytest.mark.parametrize(
    "garbage",
    [b"EHLO mail.example.net\r\n", b"\x16\x03\x01\x00\x05hello", b"\x00" * 600, b""],
    ids=["plaintext", "broken-record", "zeros", "hang-up"],
)
def test_garbage_instead_of_a_handshake(rx: StrictmxReceiver, tally: Tally, garbage: bytes) -> None:
    # The client says STARTTLS, gets 220, then sends no handshake. The server drops that
    # connection without a plaintext reply, and serves the next one.
    tally.tried()
    peer = Peer(rx)
    try:
        peer.reply()
        peer.command(b"EHLO mail.example.net")
        assert peer.command(b"STARTTLS") == [b"220 Ready to start TLS"]
        if garbage:
            peer.send(garbage)
        else:
            peer.sock.shutdown(socket.SHUT_WR)
        try:
            leftover = peer.sock.recv(4096)
        except (TimeoutError, OSError):
            leftover = b"<no close>"
        # What may come is a TLS alert record (0x15), never a plaintext reply.
        if leftover and not leftover.startswith(b"\x15"):
            tally.add("wrong_replies", example=f"{garbage!r} -> {leftover!r}")
    finally:
        peer.close()
    if not greets(rx):
        tally.add("crashes", example=f"no greeting after {garbage!r}")
    session = rx.last()
    assert session["tls"] is False
    tally.assert_clean()


def test_an_idle_line_inside_tls_hears_the_timeout_reply_encrypted(
    strictmx: StrictmxFactory,
) -> None:
    # The 421 is written to the transport the session has then: after STARTTLS, TLS's.
    rx = strictmx(
        {"name": "tls-idle", "receiver": {"timeout": 2.0}},
        tls_context=self_signed_context("mx.strictmx.test"),
    )
    peer = Peer(rx, timeout=10)
    try:
        peer.reply()
        peer.command(b"EHLO mail.example.net")
        assert peer.command(b"STARTTLS") == [b"220 Ready to start TLS"]
        into_tls(peer)
        assert peer.command(b"NOOP") == [b"250 OK"]  # the control: a live line is answered
        started = time.monotonic()
        assert peer.reply() == [b"421 4.4.2 mx.strictmx.test Error: timeout exceeded"]
        assert time.monotonic() - started < 8
    finally:
        peer.close()
    transcript = [(t["direction"], t["line"]) for t in rx.last()["transcript"]]
    assert ("out", "421 4.4.2 mx.strictmx.test Error: timeout exceeded") in transcript
