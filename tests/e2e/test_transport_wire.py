"""The transport's own rules on the wire, per dialect: the null sender is a MAIL like any
other, whatever the address grammar makes of `<>` (the aiosmtpd grammar keeps "<>", the
others give ""); each expected line is the dialect's, recorded live from Postfix 3.7.11
(strictmx/receiver/data/dialects/postfix.yaml names the command that produced it)."""

from __future__ import annotations

import typing

import pytest

from strictmx.receiver.command_syntax import Grammar

from .conftest import Factory
from .test_dialect_wire import EHLO, RCPT, TRUSTED, scenario, wire

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("grammar", typing.get_args(Grammar))
def test_the_null_sender_opens_a_transaction_in_every_grammar(serve: Factory, grammar: str) -> None:
    rx = serve({**scenario(), "dialect": {"address_grammar": grammar}}, trusted=TRUSTED)
    with wire(rx) as peer:
        peer.command(EHLO)
        assert peer.command(RCPT) == ["503 5.5.1 Error: need MAIL command"]  # the control
        assert peer.command("DATA") == ["503 5.5.1 Error: need RCPT command"]
        assert peer.command("MAIL FROM:<>") == ["250 2.1.0 Ok"]
        assert peer.command("MAIL FROM:<>") == ["503 5.5.1 Error: nested MAIL command"]
        assert peer.command(RCPT) == ["250 2.1.5 Ok"]
        assert peer.command("DATA") == ["354 End data with <CR><LF>.<CR><LF>"]
        peer.send(b"Subject: bounce\r\n\r\nA bounce.\r\n.\r\n")
        assert peer.reply()[0].startswith("250 2.0.0 Ok: queued as ")
        assert peer.command("QUIT") == ["221 2.0.0 Bye"]


@pytest.mark.parametrize("grammar", typing.get_args(Grammar))
def test_the_null_sender_then_a_refused_recipient(serve: Factory, grammar: str) -> None:
    rx = serve({**scenario(), "dialect": {"address_grammar": grammar}}, trusted=TRUSTED)
    with wire(rx) as peer:
        peer.command(EHLO)
        assert peer.command("MAIL FROM:<>") == ["250 2.1.0 Ok"]
        assert peer.command("RCPT TO:<nobody@example.org>")[0].startswith("550 ")
        assert peer.command("DATA") == ["554 5.5.1 Error: no valid recipients"]
        assert peer.command("ETRN example.net") == ["503 Error: MAIL transaction in progress"]
