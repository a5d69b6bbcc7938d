"""DKIM over real SMTP: messages signed here, sent with smtplib to a receiver on loopback
whose world publishes the key; the stored message's Authentication-Results says what the
receiver concluded, and refusals come back on the wire."""

from __future__ import annotations

import smtplib
from typing import Any

import pytest

from strictmx.receiver.dkim_signing import sign
from tests.dkim_signing import MESSAGE, SIGNED_AT, keys, seal

from .conftest import Factory

pytestmark = pytest.mark.e2e


def scenario(**dkim: Any) -> dict[str, Any]:
    return {
        "receiver": {"hostname": "mx.strictmx.test"},
        "policies": {"eod": [{"policy": "dkim", "none": "reject", **dkim}]},
        "world": {
            "dns": {
                "records": {
                    "s2048._domainkey.example.com": {"TXT": keys()["rsa2048"].record},
                    "ed._domainkey.example.com": {"TXT": keys()["ed25519"].record},
                },
                "servfail": ["broken._domainkey.example.com"],
            },
            "clock": {"fixed": "2026-11-27T10:00:00Z"},
        },
    }


def signed(selector: str = "s2048", key: str = "rsa2048") -> bytes:
    return sign(MESSAGE, selector, "example.com", keys()[key], timestamp=SIGNED_AT) + MESSAGE


def send(port: int, message: bytes) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="mail.example.com", timeout=30) as c:
        try:
            return c.sendmail("alice@example.com", ["bob@example.org"], message)
        except smtplib.SMTPDataError as exc:
            return {"DATA": (exc.smtp_code, exc.smtp_error)}


@pytest.mark.parametrize(("selector", "key"), [("s2048", "rsa2048"), ("ed", "ed25519")])
def test_signed_message_accepted_with_dkim_pass(serve: Factory, selector: str, key: str) -> None:
    rx = serve(scenario())
    message = signed(selector, key)
    assert send(rx.port, message) == {}
    session = rx.assert_clean()
    raw = rx.message(session["id"], 1)
    assert raw is not None
    head = raw.partition(b"\r\n\r\n")[0]
    field = head.split(b"\r\nDKIM-Signature:")[0].replace(b"\r\n\t", b" ")
    assert field.startswith(b"Authentication-Results: mx.strictmx.test;")
    assert b"dkim=pass" in field
    assert b"header.d=example.com" in field
    assert f"header.s={selector}".encode() in field
    assert raw.endswith(message)


def test_unsigned_message_refused_with_the_default_reply(serve: Factory) -> None:
    rx = serve(scenario())
    assert send(rx.port, MESSAGE) == {"DATA": (550, b"5.7.20 No passing DKIM signatures found.")}
    verdict = rx.assert_rejected(policy="dkim", outcome="DKIM_NONE", code=550)
    assert verdict["stage"] == "eod"
    assert rx.message(rx.last()["id"], 1) is None


def test_tampered_message_refused(serve: Factory) -> None:
    rx = serve(scenario(failure="reject"))
    tampered = signed().replace(b"figures are", b"figures were")
    code, text = send(rx.port, tampered)["DATA"]
    assert (code, text) == (
        550,
        b"5.7.20 No passing DKIM signature found: body hash did not verify "
        b"(d=example.com, s=s2048)",
    )
    rx.assert_rejected(policy="dkim", outcome="DKIM_BODY_HASH")


def test_tampered_message_accepted_by_default_and_says_fail(serve: Factory) -> None:
    rx = serve(scenario())
    tampered = signed().replace(b"figures are", b"figures were")
    assert send(rx.port, tampered) == {}
    raw = rx.message(rx.last()["id"], 1)
    assert raw is not None
    assert b"dkim=fail" in raw.split(b"DKIM-Signature:")[0]


def test_servfail_on_the_key_is_a_4xx(serve: Factory) -> None:
    rx = serve(scenario(temperror="defer"))
    message = sign(MESSAGE, "broken", "example.com", keys()["rsa2048"]) + MESSAGE
    code, text = send(rx.port, message)["DATA"]
    assert code == 451
    assert text == b"4.7.20 DKIM key lookup failed temporarily for broken._domainkey.example.com"


def test_forwarded_message_with_an_arc_chain(serve: Factory) -> None:
    spec = scenario()
    spec["policies"]["eod"].append({"policy": "arc", "fail": "reject"})
    spec["world"]["dns"]["records"]["rsa2048._domainkey.lists.example.org"] = {
        "TXT": keys()["rsa2048"].record
    }
    rx = serve(spec)
    forwarded = seal(signed(), "lists.example.org", "dkim=pass header.d=example.com")
    assert send(rx.port, forwarded) == {}
    raw = rx.message(rx.last()["id"], 1)
    assert raw is not None
    results = raw.split(b"\r\nARC-Seal:")[0].replace(b"\r\n\t", b" ")
    assert b"dkim=pass" in results
    assert b"arc=pass" in results
    # The same chain with the body changed after sealing: refused with Stalwart's text.
    broken = forwarded.replace(b"figures are", b"figures were")
    code, text = send(rx.port, broken)["DATA"]
    assert (code, text) == (550, b"5.7.29 ARC validation failed.")
