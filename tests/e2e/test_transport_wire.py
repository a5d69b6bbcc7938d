"""The transport's own rules on the wire, per dialect: the null sender is a MAIL like any
other, whatever the address grammar makes of `<>` (the aiosmtpd grammar keeps "<>", the
others give ""); each expected line is the dialect's, recorded live from Postfix 3.7.11
(strictmx/receiver/data/dialects/postfix.yaml names the command that produced it)."""

from __future__ import annotations

import typing

import pytest

from strictmx.receiver.grammar import Grammar

from .conftest import Factory
from .test_dialect_wire import EHLO, HOST, RCPT, TRUSTED, closed, scenario, wire
from .wire import Wire

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


FORBIDDEN = ["221 2.7.0 Error: I can break rules, too. Goodbye."]


@pytest.mark.parametrize(
    "line",
    [
        b"\xc3\x84HLO mail.example.net",
        b"\x16\x03\x01\x00\x05\x01",
        b"1HLO",
        b"@",
        b"_X",
        b" GET /",
        b"\x01NOOP",
        b"\xc4\xb1HLO",
        b"get / HTTP/1.0",
    ],
)
def test_a_verb_that_starts_with_no_letter_is_forbidden(serve: Factory, line: bytes) -> None:
    # Postfix 3.7's smtpd_forbidden_commands default ends in regexp:{{/^[^A-Z]/ Bogus}};
    # each line's answer was recorded live from Postfix 3.7.11.
    rx = serve(scenario(), trusted=TRUSTED)
    with wire(rx) as peer:
        assert peer.command(line) == FORBIDDEN
        assert closed(peer)


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"foo bar", "500 5.5.2 Error: command not recognized"),  # a lower-case verb
        (b"X-Y", "500 5.5.2 Error: command not recognized"),
        (b"noop", "250 2.0.0 Ok"),  # a known verb, whatever its case
        (b"\tNOOP", "250 2.0.0 Ok"),  # white space before the verb is skipped
        (b"\x00\x01\x02", "500 5.5.2 Error: bad syntax"),  # a NUL ends the line: empty
        (b"N\x00OP", "500 5.5.2 Error: command not recognized"),
        (b"NOOP\x00", "250 2.0.0 Ok"),
        (b"NOOP\x00\xe9", "500 5.5.2 Error: bad UTF-8 syntax"),  # the whole line is UTF-8 first
        (b"\xe9HLO", "500 5.5.2 Error: bad UTF-8 syntax"),
    ],
)
def test_what_the_forbidden_pattern_leaves_alone(serve: Factory, line: bytes, reply: str) -> None:
    rx = serve(scenario(), trusted=TRUSTED)
    with wire(rx) as peer:
        assert peer.command(line) == [reply]
        assert peer.command("QUIT") == ["221 2.0.0 Bye"]


def test_without_a_pattern_such_verbs_are_unknown(serve: Factory) -> None:
    rx = serve({**scenario(), "dialect": {"forbidden_pattern": None}}, trusted=TRUSTED)
    with wire(rx) as peer:
        assert peer.command(b"1HLO") == ["500 5.5.2 Error: command not recognized"]
        assert peer.command(b"\xc3\x84HLO x") == ["500 5.5.2 Error: command not recognized"]
        assert peer.command("QUIT") == ["221 2.0.0 Bye"]


def start_data(peer: Wire) -> None:
    peer.command(EHLO)
    assert peer.command("MAIL FROM:<alice@example.net>") == ["250 2.1.0 Ok"]
    assert peer.command(RCPT) == ["250 2.1.5 Ok"]
    assert peer.command("DATA") == ["354 End data with <CR><LF>.<CR><LF>"]


#: The headers policy as postfix-strict lists it: the bare LF and 8-bit checks alone.
HEADERS = {
    "eod": [
        {
            "policy": "headers",
            "max_line_length": None,
            "singular": [],
            "require_from": False,
            "from_syntax": False,
            "require_date": False,
            "date_syntax": False,
            "max_age_days": None,
            "max_future_minutes": None,
            "require_message_id": False,
            "message_id_syntax": False,
        }
    ]
}
BARE_LF = [f"550 5.5.2 {HOST} Error: bare <LF> received"]


def test_a_bare_lf_in_a_message_is_refused_and_the_session_goes_on(serve: Factory) -> None:
    # Postfix 3.7.11 with smtpd_forbid_bare_newline = reject, recorded live: the reply,
    # then QUIT gets 221; `.` LF is no end of the data.
    rx = serve(scenario(), trusted=TRUSTED)
    with wire(rx) as peer:
        start_data(peer)
        peer.send(b"Subject: lf dot\r\n\r\nbody\r\n.\nafter\nmore\r\n.\r\n")
        assert peer.reply() == BARE_LF
        assert peer.command(RCPT) == ["503 5.5.1 Error: need MAIL command"]  # it is over
        start_data(peer)  # the control: the same session takes a CRLF message
        peer.send(b"Subject: crlf\r\n\r\nbody\r\n.\r\n")
        assert peer.reply()[0].startswith("250 2.0.0 Ok: queued as ")
        assert peer.command("QUIT") == ["221 2.0.0 Bye"]
    assert [m["mail_from"] for m in rx.last()["messages"]] == ["alice@example.net"]


def test_with_lf_line_ends_a_bare_lf_is_a_line_end(serve: Factory) -> None:
    # Postfix 3.7.11 with smtpd_forbid_bare_newline = no, recorded live (the differential
    # suite's bare-lf-accepted sessions): queued, and `.` LF ends the data.
    over = {"dialect": {"data_bare_lf": "line_end"}, "policies": HEADERS}
    rx = serve({**scenario(), **over}, trusted=TRUSTED)
    with wire(rx) as peer:
        start_data(peer)
        peer.send(b"Subject: bare lf\r\n\r\nline one\nline two\n.\n")
        assert peer.reply()[0].startswith("250 2.0.0 Ok: queued as ")
        assert peer.command("QUIT") == ["221 2.0.0 Bye"]
    session = rx.last()
    assert len(session["messages"]) == 1
    assert rx.message(session["id"], 1) == b"Subject: bare lf\r\n\r\nline one\r\nline two\r\n"


def test_where_the_dialect_keeps_a_bare_lf_the_headers_policy_refuses_it(serve: Factory) -> None:
    over = {"dialect": {"data_bare_lf": "keep"}, "policies": HEADERS}
    rx = serve({**scenario(), **over}, trusted=TRUSTED)
    with wire(rx) as peer:
        start_data(peer)
        peer.send(b"Subject: bare lf\r\n\r\nline one\nline two\r\n.\r\n")
        assert peer.reply() == BARE_LF
        assert peer.command("QUIT") == ["221 2.0.0 Bye"]
    [verdict] = [v for v in rx.last()["verdicts"] if v["policy"] == "headers"]
    assert (verdict["outcome"], verdict["action"]) == ("BARE_LF", "reject")


def vrfy_scenario(**dialect: object) -> dict[str, object]:
    # Relay for strictmx.test alone, as postfix-strict: recipient_syntax, then relay.
    rcpt = [{"policy": "recipient_syntax"}, {"policy": "relay", "domains": ["strictmx.test"]}]
    base = scenario()
    receiver = {
        **base["receiver"],
        "local_recipients": ["bob@strictmx.test", "alice@strictmx.test"],
    }
    policies = {"rcpt": rcpt}
    return {
        **base,
        "receiver": receiver,
        "dialect": {"vrfy": True, **dialect},
        "policies": policies,
    }


def test_vrfy_runs_the_recipient_checks_and_quotes_the_argument_as_sent(serve: Factory) -> None:
    # Each reply recorded live from Postfix 3.7.11 with disable_vrfy_command=no (the
    # differential suite's vrfy-enabled sessions; smtpd.c vrfy_cmd -> smtpd_check_rcpt).
    rx = serve(vrfy_scenario(), trusted=TRUSTED)
    with wire(rx) as peer:
        peer.command(EHLO)
        assert peer.command("VRFY bob@strictmx.test") == ["252 2.0.0 bob@strictmx.test"]
        assert peer.command("VRFY <alice@strictmx.test>") == ["252 2.0.0 <alice@strictmx.test>"]
        assert peer.command("VRFY nobody@strictmx.test") == [
            "550 5.1.1 <nobody@strictmx.test>: Recipient address rejected: "
            "User unknown in local recipient table"
        ]
        assert peer.command("VRFY bob@example.org") == [
            "554 5.7.1 <bob@example.org>: Relay access denied"
        ]
        assert peer.command("VRFY bob") == [
            "504 5.5.2 <bob>: Recipient address rejected: need fully-qualified address"
        ]
        # No recipient for all that: the transaction is as it was.
        assert peer.command("MAIL FROM:<alice@example.net>") == ["250 2.1.0 Ok"]
        assert peer.command("VRFY bob@strictmx.test") == ["252 2.0.0 bob@strictmx.test"]
        assert peer.command("DATA") == ["554 5.5.1 Error: no valid recipients"]
    session = rx.last()
    assert session["rcpts"] == []  # the journal's recipients tried: VRFY is none
    assert [(v["policy"], v["outcome"]) for v in session["verdicts"]] == [
        ("local_recipients", "UNKNOWN_USER"),
        ("relay", "RELAY_DENIED"),
        ("recipient_syntax", "RCPT_NOT_FQDN"),
    ]


def test_vrfy_checks_nothing_where_the_dialect_says_so(serve: Factory) -> None:
    rx = serve(vrfy_scenario(vrfy_checks_recipient=False), trusted=TRUSTED)
    with wire(rx) as peer:
        peer.command(EHLO)
        assert peer.command("VRFY nobody@strictmx.test") == ["252 2.0.0 nobody@strictmx.test"]
        assert peer.command("VRFY bob@example.org") == ["252 2.0.0 bob@example.org"]
