"""TLS on the wire: the tls_required policy and the receiver's protocol floor, with
Python's smtplib as the client over loopback."""

from __future__ import annotations

import smtplib
import ssl
from typing import Any

import pytest

from strictmx.receiver.tls import self_signed_context

from .conftest import Factory

MESSAGE = b"From: a@example.net\r\nTo: b@example.org\r\nSubject: tls\r\n\r\nover TLS\r\n"
HOST = "mx.strictmx.test"


def scenario(floor: str | None = None, **options: Any) -> dict[str, Any]:
    return {
        "name": "tls-required",
        "receiver": {"hostname": HOST, "tls_min_version": floor},
        "policies": {"mail": [{"policy": "tls_required", **options}]},
    }


def client_context(maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if maximum is not None:
        context.maximum_version = maximum
    return context


def connect(rx: Any) -> smtplib.SMTP:
    client = smtplib.SMTP(rx.host, rx.port, local_hostname="mail.example.net", timeout=10)
    client.ehlo()
    return client


# -- tls_required ----------------------------------------------------------------------------


def test_mail_in_clear_text_is_refused_at_rcpt_with_postfixs_words(serve: Factory) -> None:
    rx = serve(scenario(), tls_context=self_signed_context(HOST))
    with connect(rx) as client:
        assert client.mail("alice@example.net")[0] == 250  # delay_reject: told at RCPT
        code, text = client.rcpt("bob@example.org")
        assert (code, text) == (450, b"4.7.1 Session encryption is required")
        # RFC 5321 §4.5.1: postmaster is accepted whatever MAIL's check decided.
        assert client.rcpt("postmaster@example.org")[0] == 250
    verdict = next(v for v in rx.last()["verdicts"] if v["policy"] == "tls_required")
    assert verdict["outcome"] == "TLS_REQUIRED"


def test_the_same_mail_over_starttls_is_accepted(serve: Factory) -> None:
    rx = serve(scenario(), tls_context=self_signed_context(HOST))
    with connect(rx) as client:
        assert client.starttls(context=client_context())[0] == 220
        client.ehlo()
        assert client.sendmail("alice@example.net", ["bob@example.org"], MESSAGE) == {}
    assert rx.last()["outcome"] == "accepted"


def test_tls_1_2_under_the_policys_floor_is_refused_after_the_handshake(
    serve: Factory,
) -> None:
    rx = serve(scenario(min_version="TLSv1.3"), tls_context=self_signed_context(HOST))
    with connect(rx) as client:
        client.starttls(context=client_context(ssl.TLSVersion.TLSv1_2))
        assert client.sock.version() == "TLSv1.2"  # type: ignore[union-attr]
        client.ehlo()
        client.mail("alice@example.net")
        code, text = client.rcpt("bob@example.org")
    assert (code, text) == (450, b"4.7.1 TLS TLSv1.2 is not accepted, use TLSv1.3 or newer")


# -- the protocol floor: receiver.tls_min_version ----------------------------------------------


def test_a_client_offering_only_tls_1_2_fails_the_handshake_under_a_1_3_floor(
    serve: Factory,
) -> None:
    rx = serve(scenario("TLSv1.3"), tls_context=self_signed_context(HOST))
    client = connect(rx)
    try:
        with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
            client.starttls(context=client_context(ssl.TLSVersion.TLSv1_2))
    finally:
        client.close()
    # A client that offers 1.3 is served by the same receiver.
    with connect(rx) as modern:
        assert modern.starttls(context=client_context())[0] == 220
        assert modern.sock.version() == "TLSv1.3"  # type: ignore[union-attr]


def test_without_a_floor_tls_1_2_is_negotiated(serve: Factory) -> None:
    rx = serve(scenario(None, min_version="TLSv1.2"), tls_context=self_signed_context(HOST))
    with connect(rx) as client:
        assert client.starttls(context=client_context(ssl.TLSVersion.TLSv1_2))[0] == 220
        assert client.sock.version() == "TLSv1.2"  # type: ignore[union-attr]
        client.ehlo()
        assert client.sendmail("alice@example.net", ["bob@example.org"], MESSAGE) == {}
    assert rx.last()["outcome"] == "accepted"
