"""The headers policy over a raw socket: what smtplib and expect cases cannot send."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Factory
from .wire import Wire

pytestmark = pytest.mark.e2e

CLIENT = "127.0.0.40"
SCENARIO: dict[str, Any] = {
    "receiver": {"hostname": "mx.strictmx.test", "delay_reject": False},
    "policies": {"eod": [{"policy": "headers"}]},
    "world": {
        "clock": {"fixed": "2024-06-14T12:00:00Z"},
        "clients": {CLIENT: {"address": "203.0.113.40"}},
    },
}


def message(subject: bytes, *, subject_eol: bytes = b"\r\n") -> bytes:
    """A compliant message as sent after DATA, up to and including the final dot."""
    return b"".join(
        [
            b"From: Alice <alice@example.net>\r\n",
            b"To: Bob <bob@example.org>\r\n",
            b"Subject: " + subject + subject_eol,
            b"Date: Fri, 14 Jun 2024 11:58:00 +0000\r\n",
            b"Message-ID: <20240614115800.1@mail.example.net>\r\n",
            b"\r\n",
            b"Hello.\r\n",
            b".\r\n",
        ]
    )


def send(wire: Wire, mail_from: str, data: bytes) -> list[str]:
    assert wire.command(f"MAIL FROM:{mail_from}")[0].startswith("250")
    assert wire.command("RCPT TO:<bob@example.org>")[0].startswith("250")
    assert wire.command("DATA")[0].startswith("354")
    wire.send(data)
    return wire.reply()


def test_8bit_header_bytes_and_a_bare_lf_on_the_wire(serve: Factory) -> None:
    rx = serve(SCENARIO)
    utf8_subject = "Grüße".encode()

    with Wire(rx.host, rx.port, source=CLIENT) as wire:
        wire.command("EHLO mail.example.net")
        refused = send(wire, "<alice@example.net>", message(utf8_subject))
        assert refused == ["550 5.6.0 improper use of 8-bit data in message header"]
        # The session goes on; the same header is fine once MAIL FROM asks for SMTPUTF8.
        accepted = send(wire, "<alice@example.net> SMTPUTF8", message(utf8_subject))
        assert accepted[0].startswith("250 2.0.0 Ok: queued as ")
        assert wire.command("QUIT") == ["221 Bye"]
    eight_bit = rx.last()
    [verdict] = [v for v in eight_bit["verdicts"] if v["policy"] == "headers"]
    assert verdict["outcome"] == "HEADER_8BIT"
    assert verdict["replied_at"] == "eod"
    assert verdict["rfc_compliant"]
    assert "(Subject) is 8-bit and MAIL FROM did not ask for SMTPUTF8" in verdict["reason"]
    assert len(eight_bit["messages"]) == 1
    assert rx.message(eight_bit["id"], 1) == message(utf8_subject)[: -len(b".\r\n")]

    with Wire(rx.host, rx.port, source=CLIENT) as wire:
        wire.command("EHLO mail.example.net")
        data = message(b"Bare", subject_eol=b"\n")
        assert send(wire, "<alice@example.net>", data) == [
            "550 5.5.2 mx.strictmx.test Error: bare <LF> received"
        ]
        # Postfix 3.7.11 keeps the session after refusing it (recorded live).
        assert wire.command("QUIT") == ["221 Bye"]
    bare = rx.last()
    [verdict] = [v for v in bare["verdicts"] if v["policy"] == "headers"]
    assert verdict["outcome"] == "BARE_LF"
    assert verdict["action"] == "reject"
    assert verdict["replied_at"] == "eod"
    assert verdict["reason"].startswith("line 3 of the message ends in a bare LF")
    assert bare["messages"] == []
