"""swaks, the SMTP test tool operators reach for, against a live receiver.

Each test runs the real swaks binary and checks both what swaks printed (its transcript:
`<-  ` a reply it liked, `<** ` a reply it did not, ` -> ` what it sent) and the rows the
receiver journaled for that session.
"""

from __future__ import annotations

import ipaddress
import shutil
import smtplib
import subprocess
from dataclasses import dataclass

import pytest

from .conftest import Factory, Running
from .wire import Wire

SWAKS = shutil.which("swaks")

pytestmark = pytest.mark.e2e

# Missing swaks is a failure, not a skip: scripts/test installs it (Debian's swaks).
assert SWAKS is not None, "swaks is not installed (Debian: swaks; scripts/test installs it)"

# swaks' exit codes (swaks(1), EXIT CODES)
EXIT_CLOSED = 6
EXIT_HELO = 22
EXIT_NO_RCPT = 24
EXIT_XCLIENT = 33
EXIT_EHLO_AFTER_XCLIENT = 34


@dataclass
class Swaks:
    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    @property
    def replies(self) -> list[str]:
        """Every reply line swaks read, accepted (`<-  `) or not (`<** `)."""
        return [line[4:] for line in self.lines if line.startswith(("<-  ", "<** "))]

    def after(self, sent: str) -> list[str]:
        """The reply lines that followed the command swaks sent as `sent`."""
        lines = self.lines
        start = lines.index(f" -> {sent}") + 1
        out = []
        for line in lines[start:]:
            if not line.startswith(("<-  ", "<** ")):
                break
            out.append(line)
        return out


def swaks(rx: Running, *args: str) -> Swaks:
    assert SWAKS is not None
    done = subprocess.run(
        [SWAKS, "--server", f"{rx.host}:{rx.port}", "--timeout", "10", *args],
        stdin=subprocess.DEVNULL,  # swaks prompts for anything missing; never wait on that
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return Swaks(done.returncode, done.stdout, done.stderr)


ENVELOPE = ("--from", "alice@example.net", "--to", "bob@example.org")
#: postfix-strict's own domain: its relay policy refuses every other one.
LOCAL_ENVELOPE = ("--from", "alice@example.net", "--to", "bob@strictmx.test")


def test_non_fqdn_helo_is_refused_as_swaks_sees_it(serve: Factory) -> None:
    rx = serve("default")
    run = swaks(rx, "--helo", "localhost", *ENVELOPE)
    assert run.code == EXIT_HELO
    # swaks falls back from EHLO to HELO; both are refused.
    assert run.after("EHLO localhost") == ["<** 550 Illegal HELO/EHLO greeting"]
    assert run.after("HELO localhost") == ["<** 550 Illegal HELO/EHLO greeting"]
    session = rx.last()
    assert session["outcome"] == "rejected"
    # Refused, yet the journal keeps the name sent (issue #16: `?helo=localhost` finds it).
    assert session["helo"] == "localhost"
    assert len(session["verdicts"]) == 2
    for verdict in session["verdicts"]:
        assert (verdict["policy"], verdict["outcome"]) == ("helo_syntax", "HELO_NOT_FQDN")
        assert (verdict["stage"], verdict["replied_at"], verdict["code"]) == ("helo", "helo", 550)


def test_compliant_swaks_message_is_queued_and_stored(serve: Factory) -> None:
    rx = serve("default")
    run = swaks(rx, "--helo", "mail.example.net", *ENVELOPE, "--header", "Subject: e2e swaks")
    assert run.code == 0, run.stdout + run.stderr
    session = rx.last()
    assert f"<-  250 2.0.0 Ok: queued as {session['id']}-1" in run.lines
    assert "<-  250-PIPELINING" in run.after("EHLO mail.example.net")
    assert session["outcome"] == "accepted"
    assert (session["helo"], session["mail_from"]) == ("mail.example.net", "alice@example.net")
    assert session["verdicts"] == []
    (stored,) = session["messages"]
    assert stored["rcpts"] == ["bob@example.org"]
    raw = rx.message(session["id"], 1)
    assert raw is not None
    assert b"Subject: e2e swaks\r\n" in raw
    assert b"X-Mailer: swaks" in raw


def test_postfix_persona_refuses_the_helo_at_rcpt(serve: Factory) -> None:
    rx = serve("postfix-strict")
    # From the persona's well-configured client (127.0.0.10): the HELO is its only fault.
    run = swaks(rx, "--local-interface", "127.0.0.10", "--helo", "localhost", *ENVELOPE)
    assert run.code == EXIT_NO_RCPT
    # Postfix's last EHLO keyword (the persona speaks the postfix dialect).
    assert run.after("EHLO localhost")[-1] == "<-  250 CHUNKING", "delay_reject: EHLO is accepted"
    assert run.after("MAIL FROM:<alice@example.net>") == ["<-  250 2.1.0 Ok"]
    assert run.after("RCPT TO:<bob@example.org>") == [
        "<** 504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"
    ]
    session = rx.last()
    (verdict,) = session["verdicts"]
    assert (verdict["outcome"], verdict["stage"], verdict["replied_at"]) == (
        "HELO_NOT_FQDN",
        "helo",
        "rcpt",
    )
    assert session["outcome"] == "rejected"


def test_postfix_persona_still_takes_mail_for_postmaster(serve: Factory) -> None:
    # Postfix's exemption is the bare <postmaster> (RFC 5321 §4.5.1), nobody else.
    rx = serve("postfix-strict")
    run = swaks(
        rx,
        *("--local-interface", "127.0.0.10", "--helo", "localhost"),
        *("--from", "a@example.net", "--to", "postmaster"),
    )
    assert run.code == 0, run.stdout
    assert run.after("RCPT TO:<postmaster>") == ["<-  250 2.1.5 Ok"]
    session = rx.last()
    assert session["outcome"] == "accepted"
    # Decided at HELO, never sent: journaled all the same.
    (verdict,) = session["verdicts"]
    assert verdict["outcome"] == "HELO_NOT_FQDN"
    assert verdict["replied_at"] is None


# -- XCLIENT -----------------------------------------------------------------------------


def test_xclient_from_loopback_changes_the_client(serve: Factory) -> None:
    rx = serve("default")
    run = swaks(
        rx,
        "--helo",
        "mail.example.net",
        "--xclient-addr",
        "203.0.113.50",
        "--xclient-name",
        "mail.example.net",
        *ENVELOPE,
    )
    assert run.code == 0, run.stdout + run.stderr
    advertised = run.after("EHLO mail.example.net")
    assert "<-  250-XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT" in advertised
    assert run.after("XCLIENT ADDR=203.0.113.50 NAME=mail.example.net") == [
        "<-  220 mx.strictmx.test ESMTP strictmx"
    ]
    session = rx.last()
    assert session["peer"] == "127.0.0.1"
    assert (session["client_address"], session["client_name"]) == (
        "203.0.113.50",
        "mail.example.net",
    )
    assert session["outcome"] == "accepted"
    notes = [t["line"] for t in session["transcript"] if t["direction"] == "note"]
    assert "XCLIENT: client is now 203.0.113.50 name=mail.example.net" in notes


def test_after_xclient_the_old_address_literal_no_longer_matches(serve: Factory) -> None:
    rx = serve("default")
    run = swaks(rx, "--helo", "[127.0.0.1]", "--xclient-addr", "203.0.113.50", *ENVELOPE)
    assert run.code == EXIT_EHLO_AFTER_XCLIENT
    before, after = [i for i, line in enumerate(run.lines) if line == " -> EHLO [127.0.0.1]"]
    assert run.lines[before + 1].startswith("<-  250-"), "[127.0.0.1] is loopback's literal"
    assert run.lines[after + 1] == (
        "<** 550 5.7.1 <[127.0.0.1]>: Helo command rejected: "
        "HELO IP literal does not match your IP address"
    )
    verdict = rx.last()["verdicts"][0]
    assert verdict["outcome"] == "HELO_LITERAL_MISMATCH"
    assert verdict["details"] == {"address": "127.0.0.1", "client_address": "203.0.113.50"}


def test_after_xclient_the_new_address_literal_matches(serve: Factory) -> None:
    # swaks sends one HELO string before and after XCLIENT; smtplib can send two.
    rx = serve("default")
    with smtplib.SMTP(rx.host, rx.port) as client:
        assert client.ehlo("[203.0.113.50]")[0] == 550, "control: not this client's literal yet"
        assert client.ehlo("mail.example.net")[0] == 250
        assert client.docmd("XCLIENT", "ADDR=203.0.113.50")[0] == 220
        assert client.ehlo("[203.0.113.50]")[0] == 250
    session = rx.last()
    assert session["client_address"] == "203.0.113.50"
    assert [v["outcome"] for v in session["verdicts"]] == ["HELO_LITERAL_MISMATCH"]


def test_xclient_from_an_untrusted_client_is_refused(serve: Factory) -> None:
    rx = serve("default", trusted=(ipaddress.ip_network("192.0.2.0/24"),))
    run = swaks(rx, "--helo", "mail.example.net", "--xclient-addr", "203.0.113.50", *ENVELOPE)
    assert run.code == EXIT_XCLIENT
    assert "Host did not advertise XCLIENT" in run.stderr
    assert not any("XCLIENT" in line for line in run.after("EHLO mail.example.net"))
    # swaks will not send what is not advertised; a raw client will.
    with Wire(rx.host, rx.port) as wire:
        wire.command("EHLO mail.example.net")
        assert wire.command("XCLIENT ADDR=203.0.113.50") == [
            "550 5.7.0 Error: insufficient authorization"
        ]
        assert wire.command("NOOP") == ["250 OK"]
    session = rx.last()
    assert session["client_address"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("attributes", "reply"),
    [
        ("FOO=bar", "501 5.5.4 Bad XCLIENT attribute name: FOO"),
        ("ADDR=nonsense", "501 5.5.4 Bad ADDR syntax: nonsense"),
        ("PORT=99999", "501 5.5.4 Bad PORT syntax: 99999"),
        ("PROTO=LMTP", "501 5.5.4 Bad PROTO syntax: LMTP"),
    ],
)
def test_xclient_with_bad_attributes_is_refused(
    serve: Factory, attributes: str, reply: str
) -> None:
    rx = serve("default")
    # --xclient sends its argument verbatim; --xclient-optional goes on after the refusal.
    run = swaks(
        rx, "--helo", "mail.example.net", "--xclient", attributes, "--xclient-optional", *ENVELOPE
    )
    assert run.after(f"XCLIENT {attributes}") == [f"<** {reply}"]
    assert "<-  250 2.1.5 Ok" in run.lines, "the session goes on as it was"
    session = rx.last()
    assert session["client_address"] == "127.0.0.1"


def test_xclient_inside_a_mail_transaction_is_refused(serve: Factory) -> None:
    rx = serve("default")
    with Wire(rx.host, rx.port) as wire:
        wire.command("EHLO mail.example.net")
        assert wire.command("MAIL FROM:<alice@example.net>") == ["250 2.1.0 Ok"]
        assert wire.command("XCLIENT ADDR=203.0.113.50") == [
            "503 5.5.1 Error: MAIL transaction in progress"
        ]
        assert wire.command("RCPT TO:<bob@example.org>") == ["250 2.1.5 Ok"]
    assert rx.last()["client_address"] == "127.0.0.1"


def test_after_xclient_a_new_helo_name_is_no_change(serve: Factory) -> None:
    # XCLIENT_README: the server acts as if the new client just connected, HELO included.
    rx = serve("default")  # forbid_helo_change: true
    with Wire(rx.host, rx.port) as wire:
        for _ in range(2):
            assert wire.command("EHLO mail.example.net")[-1] == "250 HELP"
        assert wire.command("XCLIENT ADDR=203.0.113.10") == ["220 mx.strictmx.test ESMTP strictmx"]
        assert wire.command("EHLO relay.example.net")[-1] == "250 HELP"
    session = rx.last()
    assert session["verdicts"] == []
    assert session["helo"] == "relay.example.net"


# -- PROXY protocol ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "family", "source"),
    [("1", "TCP4", "198.51.100.7"), ("2", "AF_INET", "198.51.100.8")],
)
def test_proxy_header_from_swaks_sets_the_client(
    serve: Factory, version: str, family: str, source: str
) -> None:
    rx = serve("default", proxy_protocol=True)
    run = swaks(
        rx,
        "--proxy-version",
        version,
        "--proxy-family",
        family,
        "--proxy-source",
        source,
        "--proxy-source-port",
        "4444",
        "--proxy-dest",
        "127.0.0.1",
        "--proxy-dest-port",
        "25",
        "--helo",
        "mail.example.net",
        *ENVELOPE,
    )
    assert run.code == 0, run.stdout + run.stderr
    assert run.replies[0] == "220 mx.strictmx.test ESMTP strictmx"
    session = rx.last()
    assert session["peer"] == "127.0.0.1"
    assert session["client_address"] == source
    assert session["outcome"] == "accepted"
    notes = [t["line"] for t in session["transcript"] if t["direction"] == "note"]
    assert f"client {source} is seen as {source} (proxy)" in notes


# -- the identity the policies judge ------------------------------------------------------
# reverse_dns-postfix defers a client without forward-confirmed reverse DNS at RCPT:
# 203.0.113.10 has it (mail.example.net), 203.0.113.11 has no PTR, and loopback itself is
# unknown to the hermetic world.


def no_ptr(address: str) -> str:
    return f"<** 450 4.7.1 Client host rejected: cannot find your reverse hostname, [{address}]"


def test_without_xclient_the_connection_itself_is_judged(serve: Factory) -> None:
    rx = serve("reverse_dns-postfix")
    run = swaks(rx, "--helo", "mail.example.net", *ENVELOPE)
    assert run.code == EXIT_NO_RCPT
    assert run.after("RCPT TO:<bob@example.org>") == [no_ptr("127.0.0.1")]


@pytest.mark.parametrize(
    ("xclient", "refused_as"),
    [
        (["--xclient-addr", "203.0.113.10"], None),
        (["--xclient-addr", "203.0.113.11"], "203.0.113.11"),
        # Postfix takes XCLIENT NAME as the verified name: no lookup, nothing to refuse.
        (["--xclient-addr", "203.0.113.11", "--xclient-name", "relay.example.net"], None),
        (["--xclient-addr", "203.0.113.11", "--xclient-name", "[UNAVAILABLE]"], "203.0.113.11"),
        # XCLIENT_README: [UNAVAILABLE] is a failed name lookup, whatever the world's PTR.
        (["--xclient-addr", "203.0.113.10", "--xclient-name", "[UNAVAILABLE]"], "203.0.113.10"),
    ],
    ids=["confirmed", "no-ptr", "name-given", "name-unavailable", "name-unavailable-has-ptr"],
)
def test_xclient_from_a_trusted_peer_is_the_client_the_policies_judge(
    serve: Factory, xclient: list[str], refused_as: str | None
) -> None:
    rx = serve("reverse_dns-postfix")
    run = swaks(rx, "--helo", "mail.example.net", *xclient, *ENVELOPE)
    session = rx.last()
    assert (session["peer"], session["client_address"]) == ("127.0.0.1", xclient[1])
    if refused_as is None:
        assert run.code == 0, run.stdout + run.stderr
        assert session["verdicts"] == []
    else:
        assert run.code == EXIT_NO_RCPT
        assert run.after("RCPT TO:<bob@example.org>") == [no_ptr(refused_as)]
        assert [v["outcome"] for v in session["verdicts"]] == ["NO_PTR"]


def test_xclient_name_tempunavail_defers_as_a_failed_lookup(serve: Factory) -> None:
    rx = serve("reverse_dns-postfix")
    xclient = ("--xclient-addr", "203.0.113.10", "--xclient-name", "[TEMPUNAVAIL]")
    run = swaks(rx, "--helo", "mail.example.net", *xclient, *ENVELOPE)
    assert run.code == EXIT_NO_RCPT
    assert run.after("RCPT TO:<bob@example.org>") == [no_ptr("203.0.113.10")]
    session = rx.last()
    (verdict,) = session["verdicts"]
    assert (verdict["outcome"], verdict["action"]) == ("PTR_TEMPFAIL", "defer")
    assert "NAME=[TEMPUNAVAIL]" in verdict["reason"]
    notes = [t["line"] for t in session["transcript"] if t["direction"] == "note"]
    assert "XCLIENT: client is now 203.0.113.10 name=[TEMPUNAVAIL]" in notes


@pytest.mark.parametrize(
    ("xclient_helo", "helo", "refused"),
    [("localhost", "mail.example.net", False), ("mail.example.net", "localhost", True)],
)
def test_xclient_helo_gives_way_to_the_ehlo_that_follows(
    serve: Factory, xclient_helo: str, helo: str, refused: bool
) -> None:
    # XCLIENT HELO= stands until the client greets again, as in Postfix; swaks always
    # greets again after XCLIENT, so the policies judge its --helo.
    rx = serve("postfix-strict")
    run = swaks(rx, "--helo", helo, "--xclient-addr", "203.0.113.10",
                "--xclient-helo", xclient_helo, *LOCAL_ENVELOPE)  # fmt: skip
    assert run.after(f"XCLIENT ADDR=203.0.113.10 HELO={xclient_helo}") == [
        "<-  220 mx.strictmx.test ESMTP Postfix"
    ]
    session = rx.last()
    notes = [t["line"] for t in session["transcript"] if t["direction"] == "note"]
    assert f"XCLIENT: client is now 203.0.113.10 name=unknown helo={xclient_helo}" in notes
    assert session["helo"] == helo
    if refused:
        assert run.code == EXIT_NO_RCPT
        assert [v["outcome"] for v in session["verdicts"]] == ["HELO_NOT_FQDN"]
    else:
        assert run.code == 0, run.stdout + run.stderr
        assert session["verdicts"] == []


def proxy(version: str, source: str) -> list[str]:
    """swaks options for a PROXY header (v1 text or v2 binary) claiming `source`."""
    family = "TCP4" if version == "1" else "AF_INET"
    return [
        "--proxy-version", version, "--proxy-family", family, "--proxy-source", source,
        "--proxy-source-port", "4444", "--proxy-dest", "127.0.0.1", "--proxy-dest-port", "25",
    ]  # fmt: skip


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize(("source", "refused"), [("203.0.113.10", False), ("203.0.113.11", True)])
def test_a_proxied_client_is_the_client_the_policies_judge(
    serve: Factory, version: str, source: str, refused: bool
) -> None:
    rx = serve("reverse_dns-postfix", proxy_protocol=True)
    run = swaks(rx, *proxy(version, source), "--helo", "mail.example.net", *ENVELOPE)
    session = rx.last()
    assert (session["peer"], session["client_address"]) == ("127.0.0.1", source)
    if refused:
        assert run.code == EXIT_NO_RCPT
        assert run.after("RCPT TO:<bob@example.org>") == [no_ptr(source)]
    else:
        assert run.code == 0, run.stdout + run.stderr
        assert session["verdicts"] == []


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_proxy_header_from_an_untrusted_peer_is_refused(serve: Factory, version: str) -> None:
    rx = serve("default", proxy_protocol=True, trusted=(ipaddress.ip_network("192.0.2.0/24"),))
    run = swaks(rx, *proxy(version, "203.0.113.10"), "--helo", "mail.example.net", *ENVELOPE)
    assert run.code == EXIT_CLOSED
    assert run.replies == [], "not even a greeting"
    assert "*** Remote host closed connection unexpectedly." in run.stderr
