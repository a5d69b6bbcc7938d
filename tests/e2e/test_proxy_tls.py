"""PROXY protocol headers written by hand, and STARTTLS with a real TLS handshake."""

from __future__ import annotations

import ipaddress
import smtplib
import socket
import ssl
import struct
import tempfile
import time
from pathlib import Path

import pytest

from strictmx.receiver.tls import self_signed_context

from .conftest import Factory
from .wire import Closed, Wire

pytestmark = pytest.mark.e2e

# haproxy proxy-protocol.txt §2.2: the v2 signature, then version 2 / command PROXY.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_PROXY = 0x21
V2_TCP4 = 0x11

MESSAGE = b"From: a@example.net\r\nTo: b@example.org\r\nSubject: tls\r\n\r\nover TLS\r\n"

# Loopback is 127.0.0.0/8: a client bound to 127.0.0.2 is "the proxy", 127.0.0.1 is not.
PROXY_HOST = "127.0.0.2"
ONLY_PROXY_HOST = (ipaddress.ip_network(f"{PROXY_HOST}/32"),)


def v2_header(source: str, destination: str, source_port: int, destination_port: int) -> bytes:
    addresses = (
        ipaddress.IPv4Address(source).packed
        + ipaddress.IPv4Address(destination).packed
        + struct.pack("!HH", source_port, destination_port)
    )
    return V2_SIGNATURE + bytes([V2_PROXY, V2_TCP4]) + struct.pack("!H", len(addresses)) + addresses


def proxied(port: int, header: bytes, source: str = "127.0.0.1") -> Wire:
    """A connection from `source` that opens with `header` (greeting not read yet)."""
    wire = Wire("127.0.0.1", port, greet=False, source=source)
    wire.send(header)
    return wire


@pytest.mark.parametrize(
    ("header", "address"),
    [
        (b"PROXY TCP4 198.51.100.7 127.0.0.1 4444 25\r\n", "198.51.100.7"),
        (v2_header("198.51.100.9", "127.0.0.1", 4444, 25), "198.51.100.9"),
    ],
    ids=["v1", "v2"],
)
def test_proxy_header_sets_the_client_address(serve: Factory, header: bytes, address: str) -> None:
    rx = serve("default", proxy_protocol=True)
    with proxied(rx.port, header) as wire:
        assert wire.reply() == ["220 mx.strictmx.test ESMTP strictmx"]
        assert wire.command("EHLO mail.example.net")[-1] == "250 HELP"
        assert wire.command("QUIT") == ["221 Bye"]
    session = rx.last()
    assert (session["peer"], session["client_address"]) == ("127.0.0.1", address)
    assert session["outcome"] == "idle"


def test_proxy_unknown_keeps_the_socket_address(serve: Factory) -> None:
    rx = serve("default", proxy_protocol=True)
    with proxied(rx.port, b"PROXY UNKNOWN\r\n") as wire:
        assert wire.reply()[0].startswith("220 ")
        wire.command("QUIT")
    assert rx.last()["client_address"] == "127.0.0.1"


def test_proxy_header_from_an_untrusted_peer_gets_no_greeting(serve: Factory) -> None:
    rx = serve("default", proxy_protocol=True, trusted=ONLY_PROXY_HOST)
    with proxied(rx.port, b"PROXY TCP4 198.51.100.7 127.0.0.1 4444 25\r\n") as wire:
        with pytest.raises(Closed) as closed:
            wire.reply()
        assert str(closed.value) == "", "not a byte of greeting"
    # The receiver goes on serving: the trusted proxy is still heard.
    with proxied(rx.port, b"PROXY TCP4 198.51.100.7 127.0.0.1 4444 25\r\n", PROXY_HOST) as wire:
        assert wire.reply()[0].startswith("220 ")
        wire.command("QUIT")
    session = rx.last()
    assert (session["peer"], session["client_address"]) == (PROXY_HOST, "198.51.100.7")


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY TCP4 not-an-address 127.0.0.1 4444 25\r\n",
        b"PROXY TCP9 198.51.100.7 127.0.0.1 4444 25\r\n",
        b"EHLO mail.example.net\r\n",
        V2_SIGNATURE + bytes([0x2F, V2_TCP4]) + struct.pack("!H", 0),
    ],
    ids=["bad-address", "bad-family", "no-header", "v2-bad-command"],
)
def test_malformed_proxy_header_closes_the_connection(serve: Factory, header: bytes) -> None:
    rx = serve("default", proxy_protocol=True)
    with proxied(rx.port, header) as wire, pytest.raises(Closed):
        wire.reply()
    with proxied(rx.port, b"PROXY TCP4 198.51.100.7 127.0.0.1 4444 25\r\n") as wire:
        assert wire.reply()[0].startswith("220 "), "the receiver keeps serving"
        wire.command("QUIT")


@pytest.mark.parametrize(
    "partial",
    [V2_SIGNATURE + bytes([V2_PROXY]), b"PROXY TCP4 198.51.100.7", b"PRO", b""],
    ids=["v2", "v1", "signature", "nothing"],
)
def test_eof_inside_a_proxy_header_closes_at_once(serve: Factory, partial: bytes) -> None:
    # aiosmtpd stops reading at EOF but left the line half-open until the PROXY timeout.
    rx = serve("default", proxy_protocol=True)
    wire = proxied(rx.port, partial)
    wire.sock.shutdown(socket.SHUT_WR)
    started = time.monotonic()
    with wire, pytest.raises(Closed) as closed:
        wire.reply()
    assert str(closed.value) == ""
    waited, limit = time.monotonic() - started, rx.receiver.proxy_timeout
    assert limit is not None and waited < limit / 2
    # Control: the same receiver greets a complete header at once.
    with proxied(rx.port, b"PROXY TCP4 198.51.100.7 127.0.0.1 4444 25\r\n") as wire:
        assert wire.reply()[0].startswith("220 ")
        wire.command("QUIT")


def test_xclient_is_judged_by_the_proxied_client_not_the_proxy(serve: Factory) -> None:
    # The proxy is trusted to say who the client is; that client is not trusted. Postfix
    # matches smtpd_authorized_xclient_hosts against the proxied client address.
    rx = serve("default", proxy_protocol=True)
    with proxied(rx.port, b"PROXY TCP4 198.51.100.7 127.0.0.1 4444 25\r\n") as wire:
        wire.reply()
        ehlo = wire.command("EHLO mail.example.net")
        assert not any("XCLIENT" in line for line in ehlo)
        assert wire.command("XCLIENT ADDR=192.0.2.1") == [
            "550 5.7.0 Error: insufficient authorization"
        ]
    assert rx.last()["client_address"] == "198.51.100.7"


# -- STARTTLS --------------------------------------------------------------------------


def client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def test_starttls_then_a_message(serve: Factory) -> None:
    rx = serve("default", tls_context=self_signed_context("mx.strictmx.test"))
    with smtplib.SMTP(rx.host, rx.port, local_hostname="mail.example.net") as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert client.starttls(context=client_context())[0] == 220
        cert = client.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
        assert cert, "a certificate came with the handshake"
        client.ehlo()
        assert not client.has_extn("starttls"), "RFC 3207 §4.2: not offered twice"
        assert client.sendmail("alice@example.net", ["bob@example.org"], MESSAGE) == {}
    session = rx.last()
    assert session["tls"] is True
    assert session["outcome"] == "accepted"
    lines = [(t["direction"], t["line"]) for t in session["transcript"]]
    tls_at = lines.index(("note", "TLS established"))
    assert lines[tls_at - 1] == ("out", "220 Ready to start TLS")
    # Commands sent inside TLS are in the transcript as plainly as the ones before it.
    assert lines.count(("in", "ehlo mail.example.net")) == 2
    # smtplib writes "mail FROM:" up to Python 3.12 and "mail from:" from 3.13 on.
    mail = f"mail from:<alice@example.net> size={len(MESSAGE)}"
    assert [d for n, (d, line) in enumerate(lines) if n > tls_at and line.lower() == mail] == ["in"]
    assert rx.message(session["id"], 1) == MESSAGE


def test_without_starttls_the_session_is_not_marked_tls(serve: Factory) -> None:
    rx = serve("default", tls_context=self_signed_context("mx.strictmx.test"))
    with smtplib.SMTP(rx.host, rx.port, local_hostname="mail.example.net") as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert client.sendmail("alice@example.net", ["bob@example.org"], MESSAGE) == {}
    session = rx.last()
    assert session["tls"] is False
    assert "TLS established" not in [t["line"] for t in session["transcript"]]


def test_no_tls_context_means_no_starttls(serve: Factory) -> None:
    rx = serve("default")
    with smtplib.SMTP(rx.host, rx.port, local_hostname="mail.example.net") as client:
        client.ehlo()
        assert not client.has_extn("starttls")
        assert client.docmd("STARTTLS") == (454, b"TLS not available")


def test_a_second_starttls_is_refused_and_the_session_goes_on(serve: Factory) -> None:
    rx = serve("default", tls_context=self_signed_context("mx.strictmx.test"))
    with smtplib.SMTP(rx.host, rx.port, local_hostname="mail.example.net") as client:
        client.ehlo()
        assert client.starttls(context=client_context())[0] == 220
        client.ehlo()
        # RFC 3207 §4.2; Postfix smtpd's reply.
        assert client.docmd("STARTTLS") == (554, b"5.5.1 Error: TLS already active")
        assert client.noop()[0] == 250
        assert client.sendmail("alice@example.net", ["bob@example.org"], MESSAGE) == {}
    assert rx.last()["outcome"] == "accepted"


def test_plaintext_pipelined_after_starttls_is_not_run_inside_tls(serve: Factory) -> None:
    rx = serve("default", tls_context=self_signed_context("mx.strictmx.test"))
    with Wire(rx.host, rx.port) as wire:
        wire.command("EHLO mail.example.net")
        # The injection of RFC 3207 §6 (CVE-2011-0411 in Postfix): commands behind
        # STARTTLS in the same packet, to be run as if the client had sent them in TLS.
        injected = b"MAIL FROM:<evil@example.net>\r\nRCPT TO:<bob@example.org>\r\n"
        wire.send(b"STARTTLS\r\n" + injected)
        assert wire.reply() == ["220 Ready to start TLS"]
        wire.sock = client_context().wrap_socket(wire.sock)
        assert wire.command("EHLO mail.example.net")[-1] == "250 HELP"
        # Were the injected MAIL run, this would be a nested MAIL (503).
        assert wire.command("MAIL FROM:<alice@example.net>") == ["250 2.1.0 Ok"]
        assert wire.command("QUIT") == ["221 Bye"]
    session = rx.last()
    transcript = [(t["direction"], t["line"]) for t in session["transcript"]]
    assert not any("evil" in line for _, line in transcript)
    discarded = f"{len(injected)} octets sent in plaintext after STARTTLS discarded"
    assert ("note", discarded) in transcript


def test_self_signed_keys_are_not_left_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve: Factory
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where mkdtemp would put them
    context = self_signed_context("mx.strictmx.test")
    assert list(temp.iterdir()) == []
    rx = serve("default", tls_context=context)
    with smtplib.SMTP(rx.host, rx.port, local_hostname="mail.example.net") as client:
        client.ehlo()
        assert client.starttls(context=client_context())[0] == 220, "the context still works"


def test_self_signed_files_are_kept_where_asked(tmp_path: Path) -> None:
    self_signed_context("mx.strictmx.test", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cert.pem", "key.pem"]
    assert (tmp_path / "key.pem").stat().st_mode & 0o777 == 0o600
