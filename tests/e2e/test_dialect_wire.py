"""A persona's dialect on the wire: a scenario naming `dialect: postfix` answers the
protocol as Postfix 3.7.11 does (each expected line was recorded live from a Postfix
configured like postfix-strict; strictmx/receiver/data/dialects/postfix.yaml names the
command that produced it), and the default persona keeps aiosmtpd's words (the control)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from .conftest import Factory, Running
from .wire import Closed, Wire

pytestmark = pytest.mark.e2e

HOST = "mx.strictmx.test"
EHLO = "EHLO mail.example.net"
SENDER = "MAIL FROM:<alice@example.net>"
RCPT = "RCPT TO:<bob@strictmx.test>"
#: Postfix's reply to EHLO, recorded live (no TLS, VRFY disabled, client not trusted).
POSTFIX_EHLO = [
    f"250-{HOST}",
    "250-PIPELINING",
    "250-SIZE 10485760",
    "250-ETRN",
    "250-ENHANCEDSTATUSCODES",
    "250-8BITMIME",
    "250-DSN",
    "250-SMTPUTF8",
    "250 CHUNKING",
]
#: The client connects from here; only 127.0.0.1 may use XCLIENT, as at the reference.
CLIENT = "127.0.0.10"
TRUSTED = [ipaddress.ip_network("127.0.0.1/32")]


def scenario(dialect: str = "postfix", **extra: Any) -> dict[str, Any]:
    receiver = {"dialect": dialect, "hostname": HOST, "local_recipients": ["*@strictmx.test"]}
    return {"name": f"{dialect}-wire", "receiver": receiver, **extra}


@pytest.fixture
def postfix(serve: Factory) -> Running:
    return serve(scenario(), trusted=TRUSTED)


@pytest.fixture
def aiosmtpd(serve: Factory) -> Running:
    return serve(scenario("aiosmtpd"), trusted=TRUSTED)


def wire(rx: Running) -> Wire:
    return Wire(rx.host, rx.port, source=CLIENT)


def closed(peer: Wire) -> bool:
    """The server closed the line after its last reply."""
    try:
        peer.reply()
    except (Closed, ConnectionResetError):
        return True
    return False


def test_the_greeting_and_ehlo_are_postfixs(postfix: Running, aiosmtpd: Running) -> None:
    with wire(postfix) as peer:
        assert peer.greeting == [f"220 {HOST} ESMTP Postfix"]
        assert peer.command(EHLO) == POSTFIX_EHLO
        assert peer.command("HELO mail.example.net") == [f"250 {HOST}"]
    with wire(aiosmtpd) as peer:  # the control: aiosmtpd's keywords, HELP last
        assert peer.greeting == [f"220 {HOST} ESMTP"]
        assert peer.command(EHLO) == [
            f"250-{HOST}",
            "250-SIZE 10485760",
            "250-8BITMIME",
            "250-SMTPUTF8",
            "250-PIPELINING",
            "250-ENHANCEDSTATUSCODES",
            "250 HELP",
        ]


def test_sequence_errors_have_postfixs_enhanced_codes(postfix: Running, aiosmtpd: Running) -> None:
    with wire(postfix) as peer:
        assert peer.command(SENDER) == ["503 5.5.1 Error: send HELO/EHLO first"]
        assert peer.command(RCPT) == ["503 5.5.1 Error: need MAIL command"]
        assert peer.command("DATA") == ["503 5.5.1 Error: need RCPT command"]
        assert peer.command("HELO") == ["501 Syntax: HELO hostname"]
        assert peer.command(EHLO)[-1] == "250 CHUNKING"
        assert peer.command(RCPT) == ["503 5.5.1 Error: need MAIL command"]
        assert peer.command("DATA") == ["503 5.5.1 Error: need RCPT command"]
        assert peer.command(SENDER) == ["250 2.1.0 Ok"]
        assert peer.command(SENDER) == ["503 5.5.1 Error: nested MAIL command"]
        assert peer.command(RCPT) == ["250 2.1.5 Ok"]
        assert peer.command("DATA x") == ["501 5.5.4 Syntax: DATA"]
    with wire(aiosmtpd) as peer:
        assert peer.command(SENDER) == ["503 Error: send HELO first"]
        assert peer.command(RCPT) == ["503 Error: send HELO first"]
        assert peer.command("DATA") == ["503 Error: send HELO first"]
        assert peer.command(EHLO)[-1] == "250 HELP"
        assert peer.command(RCPT) == ["503 Error: need MAIL command"]


def test_data_after_every_recipient_was_refused(postfix: Running) -> None:
    with wire(postfix) as peer:
        peer.command(EHLO)
        assert peer.command("DATA") == ["503 5.5.1 Error: need RCPT command"]  # control
        assert peer.command(SENDER) == ["250 2.1.0 Ok"]
        assert peer.command("RCPT TO:<nobody@example.org>")[0].startswith("550 ")
        assert peer.command("DATA") == ["554 5.5.1 Error: no valid recipients"]


def test_noop_rset_and_quit(postfix: Running, aiosmtpd: Running) -> None:
    with wire(postfix) as peer:
        assert peer.command("NOOP") == ["250 2.0.0 Ok"]
        assert peer.command("NOOP x") == ["250 2.0.0 Ok"]
        assert peer.command("RSET") == ["250 2.0.0 Ok"]
        assert peer.command("RSET x") == ["501 5.5.4 Syntax: RSET"]
        assert peer.command("QUIT now") == ["221 2.0.0 Bye"]
        assert closed(peer)
    with wire(postfix) as peer:
        assert peer.command("QUIT") == ["221 2.0.0 Bye"]
        assert closed(peer)
    with wire(aiosmtpd) as peer:  # the control: aiosmtpd refuses QUIT's argument
        assert peer.command("NOOP") == ["250 OK"]
        assert peer.command("QUIT now") == ["501 Syntax: QUIT"]
        assert peer.command("QUIT") == ["221 Bye"]
        assert closed(peer)


def test_unknown_commands_meet_no_aiosmtpd_cut_off(postfix: Running, aiosmtpd: Running) -> None:
    with wire(postfix) as peer:
        for n in range(8):
            assert peer.command(f"FOO{n}") == ["500 5.5.2 Error: command not recognized"]
        assert peer.command("NOOP") == ["250 2.0.0 Ok"]
    with wire(aiosmtpd) as peer:
        for n in range(4):
            assert peer.command(f"FOO{n}") == [f'500 Error: command "FOO{n}" not recognized']
        assert peer.command("FOO4") == ["502 5.5.1 Too many unrecognized commands, goodbye."]
        assert closed(peer)


def test_the_hard_error_limit_closes_as_postfix_does(serve: Factory) -> None:
    limits = {"policy": "session_limits", "hard_error_limit": 20, "soft_error_limit": 10}
    rx = serve(scenario(policies={"session": [{**limits, "error_sleep_time": 0}]}))
    with wire(rx) as peer:
        for n in range(19):
            assert peer.command(f"FOO{n}") == ["500 5.5.2 Error: command not recognized"]
        assert peer.command("FOO19") == ["500 5.5.2 Error: command not recognized"]
        assert peer.reply() == [f"421 4.7.0 {HOST} Error: too many errors"]
        assert closed(peer)


def test_long_lines_are_postfixs_to_take(postfix: Running, aiosmtpd: Running) -> None:
    long_noop = "NOOP " + "x" * 600
    with wire(postfix) as peer:
        assert peer.command(long_noop) == ["250 2.0.0 Ok"]
        assert peer.command("NOOP " + "x" * 5000) == ["250 2.0.0 Ok"]  # cut, not refused
        assert peer.command(EHLO)[-1] == "250 CHUNKING"
        assert peer.command(SENDER) == ["250 2.1.0 Ok"]
        assert peer.command(RCPT) == ["250 2.1.5 Ok"]
        assert peer.command("DATA")[0].startswith("354 ")
        message = b"Subject: long\r\n\r\n" + b"y" * 2100 + b"\r\n.\r\n"
        peer.send(message)
        assert peer.reply()[0].startswith("250 2.0.0 Ok: queued as ")
    with wire(aiosmtpd) as peer:
        assert peer.command(long_noop) == ["500 Command line too long"]
        peer.command(EHLO)
        peer.command(SENDER)
        peer.command(RCPT)
        peer.command("DATA")
        peer.send(message)
        assert peer.reply() == ["500 Line too long (see RFC5321 4.5.3.1.6)"]


def test_commands_postfix_has_not_or_refuses(postfix: Running) -> None:
    with wire(postfix) as peer:
        assert peer.command("ETRN #x") == ["503 Error: send HELO/EHLO first"]
        assert peer.command("AUTH PLAIN") == ["503 5.5.1 Error: send HELO/EHLO first"]
        assert peer.command(EHLO)[-1] == "250 CHUNKING"
        assert peer.command("VRFY bob") == ["502 5.5.1 VRFY command is disabled"]
        assert peer.command("EXPN bob") == ["500 5.5.2 Error: command not recognized"]
        assert peer.command("HELP") == ["500 5.5.2 Error: command not recognized"]
        assert peer.command("ETRN") == ["500 Syntax: ETRN domain"]
        assert peer.command("ETRN example.net") == ["459 <example.net>: service unavailable"]
        assert peer.command(SENDER) == ["250 2.1.0 Ok"]
        assert peer.command("ETRN x.example") == ["503 Error: MAIL transaction in progress"]
        assert peer.command("RSET") == ["250 2.0.0 Ok"]
        assert peer.command("AUTH PLAIN") == ["503 5.5.1 Error: authentication not enabled"]
        assert peer.command("STARTTLS x") == ["501 5.5.4 Syntax: STARTTLS"]
        assert peer.command("STARTTLS") == ["502 5.5.1 Error: command not implemented"]
        assert peer.command("") == ["500 5.5.2 Error: bad syntax"]


def test_a_line_ends_at_its_first_nul_as_postfixs_does(postfix: Running) -> None:
    # Recorded live: smtpd_token reads the line as a C string (differential session
    # junk-binary); the control is a verb before the NUL, which Postfix runs.
    with wire(postfix) as peer:
        assert peer.command(b"\x00\x01\x02") == ["500 5.5.2 Error: bad syntax"]
        assert peer.command(b"NOOP\x00junk") == ["250 2.0.0 Ok"]
        assert peer.command(b"HELO \x00x") == ["501 Syntax: HELO hostname"]
        assert peer.command(b"HELO\x1cx") == ["500 5.5.2 Error: command not recognized"]


def test_vrfy_follows_the_dialects_switch(serve: Factory) -> None:
    rx = serve({**scenario(), "dialect": {"vrfy": True}}, trusted=TRUSTED)
    with wire(rx) as peer:
        assert "250-VRFY" in peer.command(EHLO)
        assert peer.command("VRFY <bob@strictmx.test>") == ["252 2.0.0 <bob@strictmx.test>"]
        assert peer.command("VRFY") == ["501 5.5.4 Syntax: VRFY address [SMTPUTF8]"]


@pytest.mark.parametrize(
    "junk", ["GET / HTTP/1.0", "POST /x HTTP/1.0", "CONNECT a:25", "Subject: x"]
)
def test_forbidden_and_header_commands_are_answered_then_closed(
    postfix: Running, junk: str
) -> None:
    with wire(postfix) as peer:
        assert peer.command(junk) == ["221 2.7.0 Error: I can break rules, too. Goodbye."]
        assert closed(peer)


def test_a_forbidden_word_as_an_argument_is_nothing_special(postfix: Running) -> None:
    with wire(postfix) as peer:  # the control
        assert peer.command("NOOP GET Subject:") == ["250 2.0.0 Ok"]
        assert not peer.closed_by_server()


def test_a_bare_lf_in_a_command_is_refused_then_closed(postfix: Running, aiosmtpd: Running) -> None:
    with wire(postfix) as peer:
        assert peer.command("NOOP") == ["250 2.0.0 Ok"]  # the control: CRLF
        peer.send(b"NOOP\n")
        assert peer.reply() == [f"550 5.5.2 {HOST} Error: bare <LF> received"]
        assert closed(peer)
    with wire(aiosmtpd) as peer:  # aiosmtpd takes a bare LF as a line end
        peer.send(b"NOOP\n")
        assert peer.reply() == ["250 OK"]


def test_bdat_chunks_make_a_message(postfix: Running) -> None:
    with wire(postfix) as peer:
        peer.command(EHLO)
        peer.send(b"BDAT 5\r\nhello")
        assert peer.reply() == ["503 5.5.1 Error: need RCPT command"]  # read, dropped
        assert peer.command(SENDER) == ["250 2.1.0 Ok"]
        assert peer.command(RCPT) == ["250 2.1.5 Ok"]
        peer.send(b"BDAT 3\r\nabc")
        assert peer.reply() == ["250 2.0.0 Ok: 3 bytes"]
        peer.send(b"BDAT 2 LAST\r\nde")
        (queued,) = peer.reply()
        assert queued.startswith("250 2.0.0 Ok: 7 bytes queued as ")
        assert peer.command("BDAT x") == ["521 5.5.4 Syntax: BDAT count [LAST]"]
        assert closed(peer)
    postfix.settle()
    session = postfix.last()
    assert postfix.message(session["id"]) == b"abcde"


def test_a_bdat_chunk_over_the_size_limit_fails_the_transaction(serve: Factory) -> None:
    receiver = {**scenario()["receiver"], "max_message_size": 1000}
    rx = serve({**scenario(), "receiver": receiver}, trusted=TRUSTED)
    with wire(rx) as peer:
        peer.command(EHLO)
        peer.command(SENDER)
        peer.command(RCPT)
        peer.send(b"BDAT 600\r\n" + b"x" * 600)
        assert peer.reply() == ["250 2.0.0 Ok: 600 bytes"]  # the control: it fits
        peer.send(b"BDAT 600\r\n" + b"x" * 600)
        assert peer.reply() == ["552 5.3.4 Chunk exceeds message size limit"]
        peer.send(b"BDAT 3 LAST\r\nabc")
        assert peer.reply() == ["551 5.0.0 Discarded 3 bytes after earlier error"]
        assert peer.command(SENDER) == ["250 2.1.0 Ok"]  # the transaction is over


def test_bdat_is_an_unknown_command_where_the_dialect_has_none(aiosmtpd: Running) -> None:
    with wire(aiosmtpd) as peer:
        peer.command(EHLO)
        assert peer.command("BDAT 0 LAST") == ['500 Error: command "BDAT" not recognized']


def test_dsn_parameters_are_taken_where_dsn_is_offered(postfix: Running, aiosmtpd: Running) -> None:
    with wire(postfix) as peer:
        peer.command(EHLO)
        assert peer.command(SENDER + " RET=HDRS ENVID=x") == ["250 2.1.0 Ok"]
        assert peer.command(RCPT + " NOTIFY=NEVER ORCPT=rfc822;bob@strictmx.test") == [
            "250 2.1.5 Ok"
        ]
    with wire(aiosmtpd) as peer:
        peer.command(EHLO)
        assert peer.command(SENDER + " RET=HDRS") == [
            "555 MAIL FROM parameters not recognized or not implemented"
        ]


def test_message_too_big_in_postfixs_words(serve: Factory) -> None:
    rx = serve(
        {**scenario(), "receiver": {**scenario()["receiver"], "max_message_size": 1000}},
        trusted=TRUSTED,
    )
    with wire(rx) as peer:
        peer.command(EHLO)
        assert peer.command(SENDER + " SIZE=1001") == ["552 5.3.4 Message size exceeds fixed limit"]
        assert peer.command(SENDER + " SIZE=1000") == ["250 2.1.0 Ok"]  # the control
        peer.command(RCPT)
        peer.command("DATA")
        peer.send(b"x" * 2000 + b"\r\n.\r\n")
        assert peer.reply() == ["552 5.3.4 Error: message file too big"]


def test_bdat_then_rcpt_or_data_is_refused(postfix: Running) -> None:
    with wire(postfix) as peer:
        peer.command(EHLO)
        peer.command(SENDER)
        assert peer.command("RCPT TO:<nobody@example.org>")[0].startswith("550 ")
        peer.send(b"BDAT 2 LAST\r\nab")  # every recipient refused: as DATA
        assert peer.reply() == ["554 5.5.1 Error: no valid recipients"]
        assert peer.command(RCPT) == ["250 2.1.5 Ok"]
        peer.send(b"BDAT 2\r\nab")
        assert peer.reply() == ["250 2.0.0 Ok: 2 bytes"]
        assert peer.command(RCPT) == ["503 5.5.1 Error: RCPT after BDAT"]
        assert peer.command("DATA") == ["503 5.5.1 Error: DATA after BDAT"]
        assert peer.command("RSET") == ["250 2.0.0 Ok"]
        assert peer.command(SENDER) == ["250 2.1.0 Ok"]  # the control: a new transaction


def test_xforward_and_etrn_domains(postfix: Running) -> None:
    with wire(postfix) as peer:
        peer.command(EHLO)
        assert peer.command("XFORWARD") == ["501 5.5.4 Syntax: XFORWARD attribute=value..."]
        assert peer.command("XFORWARD NAME=x") == ["550 5.7.0 Error: insufficient authorization"]
        assert peer.command("ETRN @strictmx.test") == ["459 <strictmx.test>: service unavailable"]
        assert peer.command("ETRN #x.example") == ["459 <x.example>: service unavailable"]


def test_helo_required_off_lets_mail_come_first(serve: Factory, postfix: Running) -> None:
    receiver = {**scenario()["receiver"], "helo_required": False}
    rx = serve({**scenario(), "receiver": receiver}, trusted=TRUSTED)
    with wire(rx) as peer:
        assert peer.command(SENDER) == ["250 2.1.0 Ok"]
        assert peer.command(RCPT) == ["250 2.1.5 Ok"]
        assert peer.command("DATA")[0].startswith("354 ")
        peer.send(b"Subject: no helo\r\n\r\nbody\r\n.\r\n")
        assert peer.reply()[0].startswith("250 2.0.0 Ok: queued as ")
    with wire(postfix) as peer:  # the control: required
        assert peer.command(SENDER) == ["503 5.5.1 Error: send HELO/EHLO first"]
