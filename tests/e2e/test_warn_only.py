"""warn_only: a message that breaks every rule is accepted, and every objection is journaled."""

from __future__ import annotations

import smtplib

import pytest
import yaml

from strictmx.receiver import scenario as scenarios

from .conftest import Factory

pytestmark = pytest.mark.e2e

# No PTR (127.0.0.11), a HELO that is not fully qualified, a sender whose SPF record does
# not list the client, and a message with two Date fields and no Message-ID.
MESSAGE = (
    b"From: <alice@forged.example>\r\n"
    b"To: <bob@example.org>\r\n"
    b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
    b"Date: Fri, 27 Nov 2026 10:00:01 +0000\r\n"
    b"Subject: everything wrong\r\n"
    b"\r\n"
    b"Hello.\r\n"
)


def persona(warn_only: bool) -> dict[str, object]:
    text = (scenarios.bundled_dir() / "postfix-strict.yaml").read_text()
    data: dict[str, object] = yaml.safe_load(text)
    data.pop("expect")
    receiver = data["receiver"]
    assert isinstance(receiver, dict)
    receiver["warn_only"] = warn_only
    eod = data["policies"]["eod"]  # type: ignore[index]
    eod.append({"policy": "headers", "require_message_id": True})
    return data


def send(rx_host: str, rx_port: int) -> dict[str, bytes | int]:
    with smtplib.SMTP(
        rx_host, rx_port, local_hostname="localhost", source_address=("127.0.0.11", 0)
    ) as client:
        client.ehlo()
        client.mail("alice@forged.example")
        code, _ = client.rcpt("bob@example.org")
        if code != 250:
            return {"rcpt": code}
        return {"data": client.data(MESSAGE)[0]}


def test_warn_only_accepts_and_journals_every_objection(serve: Factory) -> None:
    rx = serve(persona(warn_only=True))
    assert send(rx.host, rx.port) == {"data": 250}
    session = rx.last()
    assert session["outcome"] == "accepted"
    seen = {(v["policy"], v["outcome"]) for v in session["verdicts"]}
    assert {
        ("reverse_dns", "NO_PTR"),
        ("helo_syntax", "HELO_NOT_FQDN"),
        ("spf", "SPF_FAIL"),
        ("headers", "FIELD_REPEATED"),
    } <= seen, seen
    assert all(v["warned"] for v in session["verdicts"])
    assert all(v["replied_at"] is None for v in session["verdicts"])


def test_control_without_warn_only_the_first_objection_refuses(serve: Factory) -> None:
    rx = serve(persona(warn_only=False))
    assert send(rx.host, rx.port) == {"rcpt": 450}
    session = rx.last()
    assert session["outcome"] == "deferred"
    assert [v["policy"] for v in session["verdicts"] if v["replied_at"]] == ["reverse_dns"]
