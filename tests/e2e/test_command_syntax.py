"""Command lines strictmx's own loop refuses before any policy sees them, answered with
aiosmtpd 1.4's texts: the same lines, sent to strictmx and to a bare aiosmtpd server over
loopback, get the same reply. A well-formed line (the control) gets strictmx's own reply
from the same session."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP

from .conftest import Factory
from .wire import Wire

pytestmark = pytest.mark.e2e

SIZE = 10 * 1024 * 1024  # strictmx's default max_message_size
SENDER = "MAIL FROM:<bench@example.net>"

#: (commands before, the probe line): the probe's reply must be aiosmtpd's.
PROBES: list[tuple[list[str], str]] = [
    (["EHLO mail.example.net"], "MAIL"),
    (["EHLO mail.example.net"], "MAIL FROM:"),
    (["EHLO mail.example.net"], "MAIL FROM <bench@example.net>"),
    (["EHLO mail.example.net"], "MAIL FROM:<bench@example.net> FOO=1"),
    (["EHLO mail.example.net"], "MAIL FROM:<bench@example.net> SIZE="),
    (["EHLO mail.example.net"], "MAIL FROM:<bench@example.net> SIZE=x"),
    (["EHLO mail.example.net"], f"MAIL FROM:<bench@example.net> SIZE={SIZE + 1}"),
    (["EHLO mail.example.net"], "MAIL FROM:<bench@example.net> BODY=BINARY"),
    (["EHLO mail.example.net"], "MAIL FROM:<bench@example.net> SMTPUTF8=1"),
    (["HELO mail.example.net"], "MAIL FROM:<bench@example.net> SIZE=10"),
    (["HELO mail.example.net"], "RCPT TO:<alice@example.net>"),
    (["EHLO mail.example.net", SENDER], SENDER),
    (["EHLO mail.example.net", SENDER], "RCPT"),
    (["EHLO mail.example.net", SENDER], "RCPT TO alice@example.net"),
    (["EHLO mail.example.net", SENDER], "RCPT TO:<alice@example.net> NOTIFY=NEVER"),
    (["HELO mail.example.net", SENDER], "RCPT TO:<alice@example.net> X=1"),
    (["EHLO mail.example.net"], "VRFY"),
    (["EHLO mail.example.net"], "MAIL FROM:<bench@example.net> " + "X" * 600),
    ([], "FOO bar"),
]


@pytest.fixture(scope="module")
def bare() -> Iterator[tuple[str, int]]:
    """A bare aiosmtpd server, as strictmx's default persona configures it, on loopback."""
    ready = threading.Event()
    where: dict[str, Any] = {}
    loop = asyncio.new_event_loop()

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(
            loop.create_server(
                lambda: SMTP(object(), data_size_limit=SIZE, enable_SMTPUTF8=True),
                "127.0.0.1",
                0,
            )
        )
        where["port"] = server.sockets[0].getsockname()[1]
        ready.set()
        loop.run_forever()
        server.close()
        loop.run_until_complete(server.wait_closed())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10), "the bare aiosmtpd server did not start"
    yield "127.0.0.1", where["port"]
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    assert not thread.is_alive()


def probe(host: str, port: int, before: list[str], line: str) -> list[str]:
    with Wire(host, port) as wire:
        for command in before:
            assert wire.command(command)[-1][0] == "2", command
        return wire.command(line)


@pytest.mark.parametrize(("before", "line"), PROBES)
def test_a_malformed_command_gets_aiosmtpds_reply(
    serve: Factory, bare: tuple[str, int], before: list[str], line: str
) -> None:
    rx = serve("default")
    theirs = probe(*bare, before, line)
    assert theirs[0][0] in "45", f"not a refusal: {theirs}"
    assert probe(rx.host, rx.port, before, line) == theirs


def test_the_well_formed_command_gets_strictmxs_own_reply(serve: Factory) -> None:
    rx = serve("default")
    reply = probe(rx.host, rx.port, ["EHLO mail.example.net"], SENDER + " SIZE=10 BODY=8BITMIME")
    assert reply == ["250 2.1.0 Ok"]
    assert probe(
        rx.host, rx.port, ["EHLO mail.example.net", SENDER], "RCPT TO:<alice@example.net>"
    )[0].startswith("250")


def test_vrfy_confirms_nothing_and_names_no_parser_error(serve: Factory) -> None:
    # aiosmtpd would answer `<@` with its parser's exception text (see test_bad_input).
    rx = serve("default")
    ehlo = ["EHLO mail.example.net"]
    assert probe(rx.host, rx.port, ehlo, "VRFY <@") == ["502 Could not VRFY <@"]
    assert probe(rx.host, rx.port, ehlo, "VRFY alice@example.net") == [
        "252 Cannot VRFY user, but will accept message and attempt delivery"
    ]


def test_without_smtputf8_an_8bit_argument_and_the_parameter_are_refused(
    serve: Factory,
) -> None:
    rx = serve({"receiver": {"smtputf8": False}})
    ehlo = ["EHLO mail.example.net"]
    assert probe(rx.host, rx.port, ehlo, SENDER + " SMTPUTF8") == ["501 Error: SMTPUTF8 disabled"]
    assert probe(rx.host, rx.port, ehlo, "NOOP \u00e9") == ["500 Error: strict ASCII mode"]
    assert probe(rx.host, rx.port, ehlo, "NOOP e") == ["250 OK"]  # the control


def test_the_ehlo_reply_lists_aiosmtpds_keywords_then_strictmxs(serve: Factory) -> None:
    rx = serve("default")
    with Wire(rx.host, rx.port) as wire:
        hostname = wire.greeting[0].split()[1]
        reply = wire.command("EHLO mail.example.net")
        assert reply == [
            f"250-{hostname}",
            f"250-SIZE {SIZE}",
            "250-8BITMIME",
            "250-SMTPUTF8",
            "250-PIPELINING",
            "250-ENHANCEDSTATUSCODES",
            "250-XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT",  # loopback: trusted
            "250 HELP",
        ]
        # The control: a second EHLO is answered alike, and no AUTH is ever offered.
        assert wire.command("EHLO mail.example.net") == reply


@pytest.mark.parametrize(
    ("helo", "refusal"),
    [
        # Postfix 3.7.11 with reject_invalid_helo_hostname, recorded live (HELO, MAIL,
        # RCPT): the name neutered in the reply; a UTF-8 name refused even with SMTPUTF8
        # (Postfix sends the é itself; strictmx's reply builder sends ASCII, so '?').
        (
            b"EHLO mail@example.com",
            "501 5.5.2 <mail?example.com>: Helo command rejected: Invalid name",
        ),
        (
            b"EHLO \xc3\xa9.example.net",
            "501 5.5.2 <?.example.net>: Helo command rejected: Invalid name",
        ),
        (b"EHLO mail.example.net", None),  # the control
    ],
)
def test_postfix_mode_quotes_and_refuses_helo_names_as_postfix(
    serve: Factory, helo: bytes, refusal: str | None
) -> None:
    rx = serve(
        {
            "receiver": {"delay_reject": True, "enhanced_status_codes": True},
            "policies": {"helo": [{"policy": "helo_syntax", "mode": "postfix"}]},
        }
    )
    with Wire(rx.host, rx.port) as wire:
        assert wire.command(helo)[-1].startswith("250")
        mail = wire.command("MAIL FROM:<alice@example.net> SMTPUTF8")
        assert mail[-1].startswith("250"), mail
        reply = wire.command("RCPT TO:<alice@strictmx.test>")
    if refusal is None:
        assert not reply[-1].startswith("5"), reply
    else:
        assert reply == [refusal]
