"""Hostile and broken input over raw sockets: the receiver answers, journals, keeps serving."""

from __future__ import annotations

import smtplib
from collections import Counter
from typing import Any

import pytest

from strictmx.receiver import scenario as scenarios
from strictmx.receiver.policy import Context, Policy, PolicyOptions
from strictmx.receiver.registry import load_registry
from strictmx.receiver.session import Session
from strictmx.receiver.verdict import Stage, Verdict

from .conftest import Factory, Running
from .wire import Closed, Wire

pytestmark = pytest.mark.e2e

EHLO = "EHLO mail.example.net"


def still_serving(rx: Running) -> None:
    with smtplib.SMTP(rx.host, rx.port, local_hostname="mail.example.net", timeout=5) as client:
        assert client.ehlo()[0] == 250
        assert client.noop()[0] == 250


def lines(session: dict[str, Any]) -> list[tuple[str, str]]:
    return [(t["direction"], t["line"]) for t in session["transcript"]]


def verdicts(session: dict[str, Any], outcome: str) -> list[dict[str, Any]]:
    return [v for v in session["verdicts"] if v["outcome"] == outcome]


def limits(**options: Any) -> dict[str, Any]:
    """A scenario with one session_limits policy and the given options."""
    return {"policies": {"session": [{"policy": "session_limits", **options}]}}


# -- malformed command lines -------------------------------------------------------------


def test_an_overlong_command_line_is_refused_and_the_session_goes_on(serve: Factory) -> None:
    rx = serve("default")
    with Wire(rx.host, rx.port) as wire:
        wire.command(EHLO)
        assert wire.command(b"NOOP " + b"X" * 4995) == ["500 Command line too long"]
        assert wire.command("NOOP") == ["250 OK"]
        assert wire.command("QUIT") == ["221 Bye"]
    session = rx.last()
    assert ("in", "<command line over the length limit>") in lines(session)
    assert ("out", "500 Command line too long") in lines(session)
    assert session["outcome"] == "rejected", "a 5xx was the only answer it got"
    still_serving(rx)


def test_binary_bytes_are_a_syntax_error_and_journaled_escaped(serve: Factory) -> None:
    rx = serve("default")
    with Wire(rx.host, rx.port) as wire:
        wire.command(EHLO)
        assert wire.command(b"\xff\xfe\x00garbage") == ["500 Error: bad syntax"]
        assert wire.command("NOOP") == ["250 OK"]
    session = rx.last()
    assert ("in", "\\xff\\xfe\x00garbage") in lines(session)
    assert session["outcome"] == "rejected"
    still_serving(rx)


@pytest.mark.parametrize("path", ["<@", '"', "0@[", "0@[\t", "<bench@>"])
def test_a_truncated_path_is_a_malformed_address(serve: Factory, path: str) -> None:
    # The email package's parser raises IndexError, AttributeError or UnboundLocalError on
    # these; aiosmtpd would answer 500 naming the exception. A well-formed MAIL afterwards
    # still works.
    rx = serve("default")
    with Wire(rx.host, rx.port) as wire:
        wire.command(EHLO)
        assert wire.command(f"MAIL FROM:{path}") == ["553 5.1.3 Error: malformed address"]
        assert wire.command("MAIL FROM:<bench@example.net>")[0].startswith("250 ")
    still_serving(rx)


def test_a_bare_lf_ends_a_command(serve: Factory) -> None:
    rx = serve("default")
    with Wire(rx.host, rx.port) as wire:
        wire.send(b"EHLO mail.example.net\n")
        assert wire.reply()[-1] == "250 HELP"
        wire.send(b"NOOP\n")
        assert wire.reply() == ["250 OK"]
    assert ("in", "NOOP") in lines(rx.last())


def test_a_bare_cr_inside_a_line_does_not_end_it(serve: Factory) -> None:
    rx = serve("default")
    with Wire(rx.host, rx.port) as wire:
        wire.command(EHLO)
        reply = wire.command(b"NO\rOP")
        assert len(reply) == 1 and reply[0].startswith("500 "), "one unknown command, not two"
        assert wire.command("NOOP") == ["250 OK"]
    assert ("in", "NO\rOP") in lines(rx.last())
    still_serving(rx)


@pytest.mark.parametrize("command", [b"NO\rOP", b"FOO\x00BAR", b"X\x1b[2J"])
def test_replies_never_echo_control_characters(serve: Factory, command: bytes) -> None:
    # RFC 5321 §4.2: reply text is HT, SP and printable US-ASCII only. aiosmtpd's
    # "command not recognized" reply quotes the command as received.
    rx = serve("default")
    with Wire(rx.host, rx.port) as wire:
        wire.command(EHLO)
        wire.send(command + b"\r\n")
        line = wire.line()
    assert line.startswith(b"500 ")
    assert all(b == 9 or 32 <= b < 127 for b in line), line


def test_an_empty_line_is_a_syntax_error(serve: Factory) -> None:
    rx = serve("default")
    with Wire(rx.host, rx.port) as wire:
        wire.command(EHLO)
        assert wire.command(b"") == ["500 Error: bad syntax"]
        assert wire.command("NOOP") == ["250 OK"]
    assert ("out", "500 Error: bad syntax") in lines(rx.last())


def test_a_flood_of_unknown_commands_is_cut_off(serve: Factory) -> None:
    rx = serve("default")
    replies = []
    with Wire(rx.host, rx.port) as wire:
        wire.command(EHLO)
        wire.send(b"".join(b"FOO%d\r\n" % i for i in range(30)))
        with pytest.raises(Closed):
            while True:
                replies.append(wire.reply())
    # aiosmtpd's own limit (five unknown commands) comes before session_limits' 20 errors.
    assert replies == [
        *([f'500 Error: command "FOO{i}" not recognized'] for i in range(4)),
        ["502 5.5.1 Too many unrecognized commands, goodbye."],
    ]
    session = rx.last()
    transcript = lines(session)
    assert ("out", "502 5.5.1 Too many unrecognized commands, goodbye.") in transcript
    assert transcript[-1] == ("note", "connection closed")
    assert session["ended"] is not None
    assert session["outcome"] not in (None, "accepted")
    still_serving(rx)


# -- error limits ------------------------------------------------------------------------


def test_a_thousand_recipients_then_too_many_then_421(serve: Factory) -> None:
    rx = serve(
        {
            "receiver": {"max_recipients": 1000},
            # No tarpit and no bad-recipient limit: only the hard error limit acts.
            **limits(hard_error_limit=20, soft_error_limit=None, max_bad_rcpts=None),
        }
    )
    replies: list[list[str]] = []
    with Wire(rx.host, rx.port) as wire:
        wire.command(EHLO)
        assert wire.command("MAIL FROM:<alice@example.net>") == ["250 2.1.0 Ok"]
        wire.send(b"".join(b"RCPT TO:<r%d@strictmx.test>\r\n" % i for i in range(1030)))
        with pytest.raises(Closed):
            while True:
                replies.append(wire.reply())
    flat = [reply[0] for reply in replies]
    assert Counter(flat) == {
        "250 2.1.5 Ok": 1000,
        "452 4.5.3 Error: too many recipients": 20,
        "421 4.7.0 mx.strictmx.test Error: too many errors": 1,
    }
    assert flat[:1000] == ["250 2.1.5 Ok"] * 1000, "the first thousand are all taken"
    assert flat[-1].startswith("421 "), "the 421 comes after the 20th error, then the close"
    session = rx.last()
    assert session["outcome"] == "aborted", "cut inside a mail transaction"
    (verdict,) = verdicts(session, "TOO_MANY_ERRORS")
    assert (verdict["stage"], verdict["replied_at"], verdict["code"]) == ("error", "error", 421)
    assert verdict["details"] == {"count": 20, "limit": 20}
    still_serving(rx)


def test_the_tarpit_is_journaled_with_its_delay(serve: Factory) -> None:
    rx = serve(limits(soft_error_limit=2, error_sleep_time=0.2))
    with Wire(rx.host, rx.port) as wire:
        wire.command(EHLO)
        assert wire.command("FOO")[0].startswith("500 ")
        assert wire.command("QUIT") == ["221 Bye"]
    assert verdicts(rx.last(), "ERROR_TARPIT") == [], "control: one error is not enough"
    with Wire(rx.host, rx.port) as wire:
        wire.command(EHLO)
        assert wire.command("FOO")[0].startswith("500 ")
        assert wire.command("BAR")[0].startswith("500 ")
        assert wire.command("NOOP") == ["250 OK"]
        assert wire.command("QUIT") == ["221 Bye"]
    session = rx.last()
    (tarpit,) = verdicts(session, "ERROR_TARPIT")
    assert tarpit["policy"] == "session_limits"
    assert tarpit["action"] == "dunno"
    assert tarpit["delay"] == 0.2
    assert tarpit["code"] is None, "the tarpit sends no reply of its own"
    assert tarpit["details"] == {"count": 2, "limit": 2}
    still_serving(rx)


def test_the_eleventh_rset_is_refused(serve: Factory) -> None:
    rx = serve("default")
    with Wire(rx.host, rx.port) as wire:
        wire.command(EHLO)
        for _ in range(10):
            assert wire.command("RSET") == ["250 OK"]
        assert wire.command("RSET") == ["550 Too many RSETs"]
        assert wire.command("NOOP") == ["250 OK"], "the connection stays open"
    session = rx.last()
    (verdict,) = verdicts(session, "TOO_MANY_RSETS")
    assert (verdict["stage"], verdict["replied_at"]) == ("rset", "rset")
    assert verdict["details"] == {"count": 11, "limit": 10}
    assert session["outcome"] == "rejected"


def test_a_changed_helo_name_is_refused(serve: Factory) -> None:
    rx = serve("default")
    with Wire(rx.host, rx.port) as wire:
        assert wire.command(EHLO)[-1] == "250 HELP"
        assert wire.command("EHLO other.example.net") == [
            "550 Sending system changed during session"
        ]
        assert wire.command("MAIL FROM:<alice@example.net>") == ["250 2.1.0 Ok"]
    session = rx.last()
    (verdict,) = verdicts(session, "HELO_CHANGED")
    assert (verdict["stage"], verdict["replied_at"]) == ("helo", "helo")
    assert verdict["details"] == {"previous": "mail.example.net"}
    assert session["helo"] == "mail.example.net", "the refused name did not replace it"


def test_the_same_helo_name_again_is_no_change(serve: Factory) -> None:
    rx = serve("default")
    with Wire(rx.host, rx.port) as wire:
        for _ in range(2):
            assert wire.command(EHLO)[-1] == "250 HELP"
        assert wire.command("HELO MAIL.Example.NET") == ["250 mx.strictmx.test"]
    session = rx.last()
    assert session["verdicts"] == []
    assert session["helo"] == "MAIL.Example.NET"


def test_errors_from_an_address_carry_over_to_its_next_sessions(serve: Factory) -> None:
    rx = serve(
        {"receiver": {"delay_reject": False}, **limits(max_errors_per_client=3)},
    )
    with Wire(rx.host, rx.port) as wire:
        wire.command(EHLO)
        for verb in ("FOO", "BAR"):
            assert wire.command(verb)[0].startswith("500 ")
        wire.command("QUIT")
    still_serving(rx)  # control: two errors are under the limit
    with Wire(rx.host, rx.port) as wire:
        assert wire.command("BAZ")[0].startswith("500 ")  # the third
        wire.command("QUIT")

    with pytest.raises(smtplib.SMTPConnectError) as refused:
        smtplib.SMTP(rx.host, rx.port, timeout=5)
    assert (refused.value.smtp_code, refused.value.smtp_error) == (
        550,
        b"Too many errors from your IP",
    )
    with Wire(rx.host, rx.port) as wire:
        assert wire.greeting == ["550 Too many errors from your IP"]
        for command in (
            EHLO,
            "HELO mail.example.net",
            "MAIL FROM:<alice@example.net>",
            "RCPT TO:<bob@example.org>",
            "DATA",
            "NOOP",
            "RSET",
            "VRFY bob",
        ):
            assert wire.command(command) == ["550 Too many errors from your IP"], command
        assert wire.command("QUIT") == ["221 Bye"]
    session = rx.last()
    (verdict,) = verdicts(session, "TOO_MANY_ERRORS_FROM_IP")
    assert (verdict["stage"], verdict["replied_at"], verdict["code"]) == (
        "connect",
        "connect",
        550,
    )
    assert verdict["details"]["limit"] == 3
    assert verdict["details"]["count"] >= 3
    assert session["outcome"] == "rejected"


# -- replies never carry client control bytes or exception text (issue #19 items 8, 9, 11) --


def printable(line: bytes) -> bool:
    return all(32 <= b < 127 for b in line)


@pytest.mark.parametrize(
    ("attribute", "shown"),
    [
        ("ADDR=+0D+0A250+20fake", "Bad ADDR syntax: ??250 fake"),
        ("ADDR=1.2.3.4+00", "Bad ADDR syntax: 1.2.3.4?"),
        ("NAME=a+0D+0A250+20fake", "Bad NAME syntax: a??250 fake"),
        ("HELO=x+00y", "Bad HELO syntax: x?y"),
        ("LOGIN=+1B[2J", "Bad LOGIN syntax: ?[2J"),
    ],
)
def test_xclient_errors_echo_no_control_characters(
    serve: Factory, attribute: str, shown: str
) -> None:
    rx = serve("default")
    with Wire(rx.host, rx.port) as wire:
        wire.command(EHLO)
        wire.send(f"XCLIENT {attribute}\r\n".encode())
        line = wire.line()
        assert line == f"501 5.5.4 {shown}".encode()
        # One reply, not two: the next command's answer is the next line.
        assert wire.command("NOOP") == ["250 OK"]
    assert rx.last()["client_address"] == "127.0.0.1", "the bad XCLIENT changed nothing"


def test_xclient_with_clean_values_still_works(serve: Factory) -> None:
    rx = serve("default")
    with Wire(rx.host, rx.port) as wire:
        wire.command(EHLO)
        assert wire.command("XCLIENT ADDR=203.0.113.10 NAME=mail.example.net")[0].startswith("220 ")
        wire.command("QUIT")
    assert rx.last()["client_address"] == "203.0.113.10"


def sender_verify(mode: str = "hermetic") -> dict[str, Any]:
    return {
        "receiver": {"delay_reject": False},
        "policies": {"mail": [{"policy": "sender_verify"}]},
        "world": {
            "dns": {
                "mode": mode,
                "nameservers": ["127.0.0.1:9"],
                "lifetime": 0.5,
                "records": {
                    "example.net": {"MX": "10 mx.example.net."},
                    "mx.example.net": {"A": "192.0.2.25"},
                },
            },
            "mailboxes": {"example.net": {"exists": ["postmaster", "alice"]}},
        },
    }


@pytest.mark.parametrize("mode", ["hermetic", "overlay"])
def test_a_control_character_in_the_sender_is_no_exception(serve: Factory, mode: str) -> None:
    rx = serve(sender_verify(mode))
    with Wire(rx.host, rx.port) as wire:
        wire.command(EHLO)
        wire.send(b'MAIL FROM:<"a\rb"@example.net>\r\n')
        line = wire.line()
        assert printable(line), line
        assert b"Error: (" not in line and b"ValueError" not in line
        assert line.startswith(b"550 5.1.7 "), line
        # Control: a clean sender of the same domain is verified and the session goes on.
        assert wire.command("MAIL FROM:<alice@example.net>") == ["250 2.1.0 Ok"]
        wire.command("QUIT")


def test_a_callout_to_a_domain_literal_is_refused_without_connecting(serve: Factory) -> None:
    rx = serve(sender_verify("overlay"))
    with Wire(rx.host, rx.port) as wire:
        wire.command(EHLO)
        reply = wire.command("MAIL FROM:<x@[127.0.0.3]>")
        wire.command("QUIT")
    assert reply[0].startswith("550 5.1.7 <x@[127.0.0.3]>: Sender address rejected: ")
    assert "domain literal [127.0.0.3] is not called" in reply[0]
    assert "refused" not in reply[0].lower().split("rejected:", 1)[1]
    assert rx.receiver.callout is not None and rx.receiver.callout.connections == 0


class Crashing(Policy[PolicyOptions]):
    """A policy with a bug: whatever it raises must not reach the wire."""

    name = "crashing"
    summary = "raises at MAIL and after every error reply"
    stages = frozenset({Stage.MAIL, Stage.ERROR})

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        raise RuntimeError("secret\r\n250 injected")


def test_an_exception_after_an_error_reply_does_not_end_the_session(serve: Factory) -> None:
    spec = {"policies": {"error": [{"policy": "crashing"}]}}
    registry = {**load_registry(), "crashing": Crashing}
    rx = serve(scenarios.from_dict(spec, registry=registry))
    with Wire(rx.host, rx.port) as wire:
        wire.command(EHLO)
        assert wire.command("BOGUS") == ['500 Error: command "BOGUS" not recognized']
        assert wire.command("NOOP") == ["250 OK"]
        wire.command("QUIT")
    session = rx.last()
    assert ("note", "internal error in the error stage") in lines(session)
    assert not any("secret" in line for _, line in lines(session))


def test_an_exception_becomes_a_fixed_451_and_the_session_goes_on(serve: Factory) -> None:
    spec = {"policies": {"mail": [{"policy": "crashing"}]}}
    registry = {**load_registry(), "crashing": Crashing}
    rx = serve(scenarios.from_dict(spec, registry=registry))
    with Wire(rx.host, rx.port) as wire:
        wire.command(EHLO)
        assert wire.command("MAIL FROM:<alice@example.net>") == [
            "451 4.3.0 Requested action aborted: local error in processing"
        ]
        # The transaction was dropped: RCPT needs a new MAIL, which fails the same way.
        assert wire.command("RCPT TO:<bob@example.org>") == ["503 Error: need MAIL command"]
        assert wire.command("NOOP") == ["250 OK"]
        wire.command("QUIT")
    session = rx.last()
    assert ("note", "internal error (RuntimeError); answered 451") in lines(session)
    assert not any("secret" in line for _, line in lines(session))


def test_help_counts_as_a_junk_command(serve: Factory) -> None:
    rx = serve(limits(junk_command_limit=3, hard_error_limit=2, soft_error_limit=None))
    with Wire(rx.host, rx.port) as wire:
        wire.command(EHLO)
        wire.send(b"HELP\r\n" * 50)  # pipelined, as a flood comes
        replies = []
        with pytest.raises(Closed):
            while True:
                replies.append(wire.reply())
    # As Postfix counts: a junk command after more than 3 earlier ones is an error (the
    # 5th and the 6th); the second error reaches the hard limit: 421, and the line closes.
    assert [r[0][:4] for r in replies] == ["250 "] * 5 + ["421 "]
    assert replies[-1] == ["421 4.7.0 mx.strictmx.test Error: too many errors"]
    still_serving(rx)


def test_help_under_the_junk_limit_is_answered(serve: Factory) -> None:
    rx = serve(limits(junk_command_limit=3, hard_error_limit=2, soft_error_limit=None))
    with Wire(rx.host, rx.port) as wire:
        wire.command(EHLO)
        for _ in range(3):
            assert wire.command("HELP")[0].startswith("250 Supported commands: ")
        assert wire.command("QUIT") == ["221 Bye"]


@pytest.mark.parametrize(
    ("rcpt", "shown"),
    [
        (b'"a\rb"@example.org', "a?b@example.org"),
        (b'"a\x0bb"@example.org', "a?b@example.org"),
        (b'"a\x1cb"@example.org', "a?b@example.org"),
        (b"nobody@example.org", "nobody@example.org"),  # control
    ],
)
def test_an_unknown_recipient_with_line_breaks_gets_one_550(
    serve: Factory, rcpt: bytes, shown: str
) -> None:
    # str.splitlines breaks at CR, VT, FS and more: the reply is built, not parsed.
    rx = serve({"receiver": {"local_recipients": ["bob@example.org"]}})
    with Wire(rx.host, rx.port) as wire:
        wire.command(EHLO)
        wire.command("MAIL FROM:<alice@example.net>")
        assert wire.command(b"RCPT TO:<" + rcpt + b">") == [
            f"550 5.1.1 <{shown}>: Recipient address rejected: "
            "User unknown in local recipient table"
        ]
        assert wire.command("RCPT TO:<bob@example.org>") == ["250 2.1.5 Ok"]
        wire.command("QUIT")
