"""Whole sessions over loopback with Python's smtplib: replies on the wire, rows in the journal.

The receivers come from the project's own pytest plugin (strictmx.receiver.pytest_plugin).
"""

from __future__ import annotations

import smtplib
import socket

import pytest

from strictmx.receiver.pytest_plugin import StrictmxFactory, StrictmxReceiver

MESSAGE = (
    b"From: Alice <alice@example.net>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: hello\r\n"
    b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <1@example.net>\r\n"
    b"\r\n"
    b"Hi Bob.\r\n"
)

pytestmark = pytest.mark.e2e


def test_bad_helo_is_refused_at_ehlo_and_journaled(strictmx_receiver: StrictmxReceiver) -> None:
    rx = strictmx_receiver
    with smtplib.SMTP(rx.host, rx.port, local_hostname="localhost") as client:
        code, text = client.ehlo()
        assert (code, text) == (550, b"Illegal HELO/EHLO greeting")
        code, _ = client.ehlo("mail.example.net")
        assert code == 250, "a refused EHLO leaves the session usable (RFC 5321 §4.1.4)"
    session = rx.last()
    assert session["helo"] == "mail.example.net"
    (verdict,) = session["verdicts"]
    assert verdict["policy"] == "helo_syntax"
    assert verdict["outcome"] == "HELO_NOT_FQDN"
    assert (verdict["stage"], verdict["replied_at"]) == ("helo", "helo")
    assert verdict["code"] == 550
    assert "not fully qualified" in verdict["reason"]
    lines = [(t["direction"], t["line"]) for t in session["transcript"]]
    assert ("in", "ehlo localhost") in lines  # smtplib sends lower case
    assert ("out", "550 Illegal HELO/EHLO greeting") in lines
    assert session["outcome"] == "rejected"
    assert rx.assert_rejected(policy="helo_syntax", stage="helo", at="helo", code=550) == verdict


def test_compliant_message_is_accepted_and_stored(strictmx_receiver: StrictmxReceiver) -> None:
    rx = strictmx_receiver
    with smtplib.SMTP(rx.host, rx.port, local_hostname="mail.example.net") as client:
        client.ehlo()
        assert client.has_extn("pipelining") and client.has_extn("enhancedstatuscodes")
        refused = client.sendmail("alice@example.net", ["bob@example.org"], MESSAGE)
        assert refused == {}
    session = rx.last()
    assert session["outcome"] == "accepted"
    assert session["verdicts"] == []
    assert rx.assert_clean()["id"] == session["id"]
    assert session["mail_from"] == "alice@example.net"
    assert rx.message(session["id"], 1) == MESSAGE
    queued = [t["line"] for t in session["transcript"] if t["line"].startswith("250 2.0.0")]
    assert queued and queued[0].startswith(f"250 2.0.0 Ok: queued as {session['id']}-1")


@pytest.mark.strictmx_scenario("postfix-strict")
def test_postfix_delays_the_helo_rejection_to_rcpt(strictmx_receiver: StrictmxReceiver) -> None:
    rx = strictmx_receiver
    # From the scenario's well-configured client, so that the HELO is the only objection.
    with smtplib.SMTP(
        rx.host, rx.port, local_hostname="localhost", source_address=("127.0.0.10", 0)
    ) as client:
        assert client.ehlo()[0] == 250
        assert client.mail("alice@example.net")[0] == 250
        code, text = client.rcpt("bob@example.org")
        assert code == 504
        assert text == b"5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"
        # Postfix exempts the bare <postmaster> alone (RFC 5321 §4.5.1), not its domain's.
        assert client.rcpt("postmaster")[0] == 250, "postmaster is always reachable"
        assert client.rcpt("postmaster@strictmx.test")[0] == 504
        assert client.rcpt("abuse@strictmx.test")[0] == 504
        assert client.data(MESSAGE)[0] == 250
    session = rx.last()
    (verdict,) = session["verdicts"]
    assert (verdict["stage"], verdict["replied_at"]) == ("helo", "rcpt")
    assert session["outcome"] == "accepted"
    rx.assert_accepted()
    rx.assert_rejected(policy="helo_syntax", outcome="HELO_NOT_FQDN", stage="helo", at="rcpt")


def test_client_addresses_map_to_the_scenario_world(strictmx: StrictmxFactory) -> None:
    rx = strictmx("default")
    with smtplib.SMTP(
        rx.host, rx.port, local_hostname="mail.example.net", source_address=("127.0.0.10", 0)
    ) as client:
        client.ehlo()
    session = rx.last()
    assert session["peer"] == "127.0.0.10"
    assert session["client_address"] == "203.0.113.10"


def test_address_literal_must_match_the_simulated_client(strictmx: StrictmxFactory) -> None:
    rx = strictmx("default")
    with smtplib.SMTP(rx.host, rx.port, source_address=("127.0.0.10", 0)) as client:
        assert client.ehlo("[127.0.0.10]")[0] == 550, "the world says this client is 203.0.113.10"
        assert client.ehlo("[203.0.113.10]")[0] == 250


def test_unknown_local_recipient_is_refused_and_counted(strictmx: StrictmxFactory) -> None:
    rx = strictmx(
        {
            "receiver": {"local_recipients": ["*@strictmx.test"], "delay_reject": False},
            "policies": {"session": [{"policy": "session_limits", "max_bad_rcpts": 2}]},
        }
    )
    with smtplib.SMTP(rx.host, rx.port, local_hostname="mail.example.net") as client:
        client.ehlo()
        client.mail("alice@example.net")
        code, text = client.rcpt("nobody@elsewhere.example")
        assert code == 550
        assert text == (
            b"5.1.1 <nobody@elsewhere.example>: Recipient address rejected: "
            b"User unknown in local recipient table"
        )
        assert client.rcpt("bob@strictmx.test")[0] == 250
        assert client.rcpt("x@elsewhere.example")[0] == 550
        assert client.rcpt("bob@strictmx.test") == (550, b"Too many bad addresses")


@pytest.mark.strictmx_scenario("exchange-classic")
def test_exim_like_persona_sends_no_enhanced_codes(strictmx_receiver: StrictmxReceiver) -> None:
    rx = strictmx_receiver
    with smtplib.SMTP(rx.host, rx.port) as client:
        code, text = client.ehlo("[192.0.2.1]")
        assert (code, text) == (550, b"HELO/EHLO must not be an IP address")
        client.ehlo("mail.example.net")
        assert not client.has_extn("enhancedstatuscodes")
        client.mail("a@example.net")
        code, text = client.rcpt("b@strictmx.test")
        # The exchange dialect's words (RFC 5321 §4.2.2's generic 250 text), without a code.
        assert (code, text) == (250, b"Requested mail action okay, completed")


def test_the_server_keeps_serving_after_a_client_vanishes_mid_data(
    strictmx: StrictmxFactory,
) -> None:
    rx = strictmx("default")
    with socket.create_connection((rx.host, rx.port)) as raw:
        f = raw.makefile("rwb")
        f.readline()
        for line in (b"EHLO mail.example.net", b"MAIL FROM:<a@example.net>", b"RCPT TO:<b@x.test>"):
            f.write(line + b"\r\n")
            f.flush()
            while f.readline()[3:4] == b"-":
                pass
        f.write(b"DATA\r\n")
        f.flush()
        assert f.readline().startswith(b"354")
        f.write(b"Subject: half a message\r\n")
        f.flush()
        f.close()  # the socket's file descriptor closes only with its last file object
    first = rx.last()
    assert first["outcome"] == "aborted"
    assert first["transcript"][-1]["line"] == "connection lost: session aborted"
    with smtplib.SMTP(rx.host, rx.port, local_hostname="mail.example.net") as client:
        assert client.noop()[0] == 250


def test_a_large_message_with_dot_lines_arrives_intact(strictmx_receiver: StrictmxReceiver) -> None:
    # Many reads of the socket per message; smtplib dot-stuffs, the receiver unstuffs.
    body = b"".join(b".line %d: %s\r\n" % (i, b"x" * (i % 900)) for i in range(9000))
    message = MESSAGE + body + b".\r\n..\r\n"
    rx = strictmx_receiver
    with smtplib.SMTP(rx.host, rx.port, local_hostname="mail.example.net") as client:
        assert client.sendmail("alice@example.net", ["bob@example.org"], message) == {}
        assert client.noop()[0] == 250
    assert len(message) > 4_000_000
    assert rx.message(rx.last()["id"], 1) == message


def test_a_message_over_the_size_limit_is_refused_and_the_session_goes_on(
    strictmx: StrictmxFactory,
) -> None:
    rx = strictmx({"receiver": {"max_message_size": 50_000}})
    with smtplib.SMTP(rx.host, rx.port, local_hostname="mail.example.net") as client:
        client.ehlo()
        # No SIZE parameter (sendmail would send one, and be refused at MAIL already).
        assert client.mail("alice@example.net")[0] == 250
        assert client.rcpt("bob@example.org")[0] == 250
        assert client.data(MESSAGE + (b"y" * 70 + b"\r\n") * 1000)[0] == 552
        assert client.sendmail("alice@example.net", ["bob@example.org"], MESSAGE) == {}
    lines = [t["line"] for t in rx.last()["transcript"]]
    assert "552 Error: Too much mail data" in lines


def test_the_journal_keeps_less_of_a_message_than_smtp_accepts_when_told_to(
    strictmx: StrictmxFactory,
) -> None:
    # The SIZE limit (scenario) decides what is accepted; the journal's own cap (receiver
    # option) only how much of it is kept.
    rx = strictmx({"receiver": {"max_message_size": 50_000}}, max_stored_message_bytes=1000)
    big = MESSAGE + (b"y" * 70 + b"\r\n") * 100  # over the journal's cap, under SIZE
    with smtplib.SMTP(rx.host, rx.port, local_hostname="mail.example.net") as client:
        assert client.sendmail("alice@example.net", ["bob@example.org"], big) == {}
        assert client.sendmail("alice@example.net", ["bob@example.org"], MESSAGE) == {}
    messages = rx.session(rx.last()["id"])["messages"]
    assert [(m["size"], m["truncated"]) for m in messages] == [
        (len(big), True),
        (len(MESSAGE), False),
    ]
    session_id = rx.last()["id"]
    assert rx.message(session_id, 1) == big[:1000]
    assert rx.message(session_id, 2) == MESSAGE
