"""SPF over real SMTP: the Received-SPF header lands on the stored message."""

from __future__ import annotations

import smtplib
import socket

import pytest

from .conftest import Factory

pytestmark = pytest.mark.e2e

SCENARIO = {
    "receiver": {"hostname": "mx.strictmx.test", "delay_reject": False},
    "policies": {"mail": [{"policy": "spf"}]},
    "world": {
        "dns": {"records": {"example.net": {"TXT": "v=spf1 ip6:2001:db8:25::/48 -all"}}},
        "clients": {"127.0.0.90": {"address": "2001:db8:25::1"}},
    },
}

MESSAGE = (
    b"From: Alice <alice@example.net>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: spf\r\n"
    b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <spf-1@example.net>\r\n"
    b"\r\n"
    b"Hi Bob.\r\n"
)


def connect(port: int, source: str) -> smtplib.SMTP:
    client = smtplib.SMTP(local_hostname="mail.example.net", timeout=30)
    client.sock = socket.create_connection(("127.0.0.1", port), 30, (source, 0))
    client.file = None
    assert client.getreply()[0] == 220
    return client


def test_accepted_message_carries_received_spf(serve: Factory) -> None:
    rx = serve(SCENARIO)
    with connect(rx.port, "127.0.0.90") as client:
        assert client.sendmail("alice@example.net", ["bob@example.org"], MESSAGE) == {}
    session = rx.last()
    raw = rx.message(session["id"], 1)
    assert raw is not None
    # Authentication-Results on top (RFC 8601 §5: added at the top), with SPF's result
    # (one folded field, two lines), then the Received-SPF header the spf policy adds.
    results, folded, received_spf, rest = raw.split(b"\r\n", 3)
    assert results == b"Authentication-Results: mx.strictmx.test;"
    assert folded == b"\tspf=pass smtp.mailfrom=alice@example.net"
    assert received_spf == (
        b"Received-SPF: Pass (mx.strictmx.test: domain of example.net designates "
        b"2001:db8:25::1 as permitted sender) client-ip=2001:db8:25::1; "
        b'envelope-from="alice@example.net"; helo=mail.example.net; '
        b'receiver=mx.strictmx.test; mechanism="ip6:2001:db8:25::/48"; identity=mailfrom'
    )
    assert rest == MESSAGE


def test_forged_sender_is_refused_and_nothing_is_stored(serve: Factory) -> None:
    rx = serve(SCENARIO)
    with connect(rx.port, "127.0.0.91") as client:
        client.ehlo()
        code, text = client.mail("alice@example.net")
    assert code == 550
    assert text == (
        b"5.7.1 SPF MAIL FROM check failed: domain of example.net does not designate "
        b"127.0.0.91 as permitted sender"
    )
    session = rx.last()
    (verdict,) = session["verdicts"]
    assert (verdict["policy"], verdict["outcome"]) == ("spf", "SPF_FAIL")
    assert rx.message(session["id"], 1) is None
