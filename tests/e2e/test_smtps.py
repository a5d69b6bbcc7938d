"""SMTPS (implicit TLS, RFC 8314 §3.3) on a second listener: the same scenario and journal,
the STARTTLS certificate; smtplib.SMTP_SSL as the client, a plain socket as the control."""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from strictmx.receiver.tls import self_signed_context
from tests.serve_child import ServeChild, command, environment

from .conftest import Factory, Running

pytestmark = pytest.mark.e2e

HOST = "smtp.strictmx.test"
MESSAGE = b"From: app@example.net\r\nTo: bob@example.org\r\nSubject: smtps\r\n\r\nimplicit\r\n"
SMTPS_ON = re.compile(r"^strictmx: SMTPS \(implicit TLS\) on 127\.0\.0\.1:(\d+)$")


def tls_client() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def with_smtps(serve: Factory, spec: str | dict[str, object] = "default") -> Running:
    return serve(spec, tls_context=self_signed_context(HOST), smtps_listen=("127.0.0.1", 0))


def smtps_port(rx: Running) -> int:
    [(_, port)] = rx.receiver.smtps_addresses
    return int(port)


def test_smtp_ssl_sends_a_message_and_it_is_journaled(serve: Factory) -> None:
    rx = with_smtps(serve)
    with smtplib.SMTP_SSL(
        rx.host, smtps_port(rx), local_hostname="mail.example.net", context=tls_client(), timeout=10
    ) as client:
        code, _ = client.ehlo()
        assert code == 250
        # Already encrypted: STARTTLS is not offered again (RFC 3207 §4.2).
        assert not client.has_extn("starttls")
        assert client.sendmail("alice@example.net", ["bob@example.org"], MESSAGE) == {}
    session = rx.last()
    assert (session["outcome"], session["tls"]) == ("accepted", True)
    detail = rx.session(session["id"])
    assert "TLS established (implicit TLS)" in [line["line"] for line in detail["transcript"]]
    assert detail["messages"][0]["mail_from"] == "alice@example.net"


def test_the_plain_listener_beside_it_still_speaks_clear_text_first(serve: Factory) -> None:
    rx = with_smtps(serve)
    with smtplib.SMTP(rx.host, rx.port, local_hostname="mail.example.net", timeout=10) as client:
        client.ehlo()
        assert client.has_extn("starttls")  # the control: TLS only once asked for
        assert client.sendmail("alice@example.net", ["bob@example.org"], MESSAGE) == {}
    assert rx.last()["tls"] is False


def test_a_plain_text_client_on_the_smtps_port_gets_no_smtp_banner(serve: Factory) -> None:
    rx = with_smtps(serve)
    with socket.create_connection((rx.host, smtps_port(rx)), timeout=10) as plain:
        plain.sendall(b"EHLO mail.example.net\r\n")
        received = b""
        for _ in range(16):  # bounded: the server answers with a TLS alert or closes
            try:
                chunk = plain.recv(4096)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            received += chunk
    assert not received.startswith(b"220")
    assert b"ESMTP" not in received
    # No SMTP session opened for it: nothing is journaled.
    assert rx.sessions() == []


def test_smtps_logs_in_with_auth_at_once(serve: Factory) -> None:
    # Implicit TLS counts as TLS for require_tls: AUTH is offered from the first EHLO.
    rx = with_smtps(serve, "submission")
    with smtplib.SMTP_SSL(
        rx.host, smtps_port(rx), local_hostname="app.example.net", context=tls_client(), timeout=10
    ) as client:
        client.ehlo()
        assert client.has_extn("auth")
        assert client.login("app@example.net", "app-password")[0] == 235
        assert client.sendmail("app@example.net", ["bob@example.org"], MESSAGE) == {}
    assert rx.last()["auth_user"] == "app@example.net"


# -- strictmx serve --smtps-listen ---------------------------------------------------------------


def test_serve_needs_tls_for_smtps(tmp_path: Path) -> None:
    done = subprocess.run(
        command(
            "serve", "--db", ":memory:", "--listen", "127.0.0.1:0", "--smtps-listen", "127.0.0.1:0"
        ),
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "--smtps-listen needs --tls" in done.stderr


def test_serve_announces_the_smtps_listener_and_serves_it(tmp_path: Path) -> None:
    server = ServeChild(tmp_path, "--tls", "self-signed", "--smtps-listen", "127.0.0.1:0")
    try:
        announced = [m for m in map(SMTPS_ON.match, server.started) if m]
        assert announced, server.started
        port = int(announced[0].group(1))
        with smtplib.SMTP_SSL(
            "127.0.0.1", port, local_hostname="mail.example.net", context=tls_client(), timeout=10
        ) as client:
            assert client.ehlo()[0] == 250
    finally:
        server.kill()
