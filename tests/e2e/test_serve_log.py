"""`strictmx serve`'s line per session, read from a real child process's stdout: smtplib and
raw-socket clients over loopback, the server stopped by its PID."""

from __future__ import annotations

import json
import re
import smtplib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from strictmx.receiver.session_log import JSON_KEYS
from tests.serve_child import ServeChild

pytestmark = pytest.mark.e2e

Start = Callable[..., ServeChild]
MESSAGE = b"From: alice@example.net\r\nTo: bob@example.org\r\nSubject: log\r\n\r\nhi\r\n"
#: The time a text line starts with.
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    started: list[ServeChild] = []

    def run(*args: str) -> ServeChild:
        server = ServeChild(tmp_path, *args)
        started.append(server)
        return server

    yield run
    for server in started:
        server.kill()


def deliver(port: int, rcpts: list[str], source: str = "127.0.0.10") -> None:
    """default's 127.0.0.10 is a well-configured public sender (203.0.113.10)."""
    with smtplib.SMTP(
        "127.0.0.1", port, local_hostname="mail.example.net", source_address=(source, 0)
    ) as client:
        assert client.sendmail("alice@example.net", rcpts, MESSAGE) == {}


def refused_helo(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="localhost") as client:
        assert client.ehlo()[0] == 550


def raw_session(port: int, *lines: bytes) -> None:
    """Send `lines` one by one, each after the previous reply, then QUIT."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        stream = sock.makefile("rb")
        assert stream.readline().startswith(b"220 ")
        for line in (*lines, b"QUIT"):
            sock.sendall(line + b"\r\n")
            reply = stream.readline()
            while reply[3:4] == b"-":
                reply = stream.readline()


def test_an_accepted_session_is_one_text_line(start: Start) -> None:
    server = start()
    deliver(server.port, ["bob@example.org"])
    line = server.line()
    assert re.fullmatch(
        TIME + r" 203\.0\.113\.10 \(peer 127\.0\.0\.10\) helo=mail\.example\.net"
        r" <alice@example\.net> -> <bob@example\.org> accepted",
        line,
    ), line


def test_a_refused_session_names_the_policy_and_its_reply(start: Start) -> None:
    server = start()
    refused_helo(server.port)
    line = server.line()
    # Control: a loopback client that is itself has no "(peer ...)".
    assert re.fullmatch(
        TIME + r" 127\.0\.0\.1 helo=localhost - rejected helo_syntax 550"
        r' "Illegal HELO/EHLO greeting"',
        line,
    ), line


def test_many_recipients_are_counted(start: Start) -> None:
    server = start()
    rcpts = [f"r{n}@example.org" for n in range(5)]
    deliver(server.port, rcpts)
    line = server.line()
    assert "<alice@example.net> -> <r0@example.org>,<r1@example.org>,<r2@example.org> +2" in (
        line
    ), line
    deliver(server.port, rcpts[:3])  # control: three are all shown, nothing counted
    assert server.line().endswith("<r2@example.org> accepted")


def test_json_lines_have_the_documented_keys(start: Start) -> None:
    server = start("--log-format", "json")
    deliver(server.port, ["bob@example.org"])
    refused_helo(server.port)
    accepted, rejected = (json.loads(server.line()) for _ in range(2))
    assert list(accepted) == list(JSON_KEYS) == list(rejected)
    assert accepted["client"] == "203.0.113.10"
    assert (accepted["peer"], accepted["helo"]) == ("127.0.0.10", "mail.example.net")
    assert (accepted["mail_from"], accepted["rcpts"]) == ("alice@example.net", ["bob@example.org"])
    assert (accepted["outcome"], accepted["policy"], accepted["code"]) == ("accepted", None, None)
    assert (rejected["helo"], rejected["outcome"]) == ("localhost", "rejected")
    assert (rejected["policy"], rejected["policy_outcome"]) == ("helo_syntax", "HELO_NOT_FQDN")
    assert (rejected["code"], rejected["text"]) == (550, "Illegal HELO/EHLO greeting")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", rejected["time"])


def test_quiet_prints_no_session_line(start: Start) -> None:
    server = start("-q")
    deliver(server.port, ["bob@example.org"])
    assert server.wait() == 0
    assert server.rest() == []
    loud = start()  # control: the same session, without -q, is a line
    deliver(loud.port, ["bob@example.org"])
    assert loud.wait() == 0
    (line,) = loud.rest()
    assert line.endswith(" accepted")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_hostile_helo_cannot_forge_a_line_or_colour_the_terminal(
    start: Start, log_format: str
) -> None:
    server = start("--log-format", log_format)
    forged = b"2026-01-01T00:00:00Z 203.0.113.99 helo=x - accepted"
    helo = b"evil\x1b[31m\x1b]0;owned\x07.example.net\r" + forged
    raw_session(server.port, b"EHLO " + helo)
    raw_session(server.port, b"EHLO rl\xe2\x80\xaeo.example.net")
    raw_session(
        server.port, b"EHLO mail.example.net", b"MAIL FROM:<rl\xe2\x80\xaeo@example.net> SMTPUTF8"
    )
    deliver(server.port, ["bob@example.org"])  # control: the next line is the next session
    lines = [server.line() for _ in range(4)]
    for line in lines:
        assert line.isprintable(), line
        assert not {"\x1b", "\u202e", "\r", "\x07"} & set(line), line
    escape, bidi, sender, control = lines
    assert "203.0.113.10" in control and "203.0.113.99" not in control
    if log_format == "json":
        assert json.loads(escape)["helo"] == helo.decode()
        assert json.loads(bidi)["helo"] == "rl\u202eo.example.net"
        assert json.loads(sender)["mail_from"] == "rl\u202eo@example.net"
    else:
        assert (
            r" helo=evil\x1b[31m\x1b]0;owned\x07.example.net\x0d2026-01-01T00:00:00Z\x20203"
            in escape
        )
        assert r" helo=rl\u202eo.example.net " in bidi
        assert r" <rl\u202eo@example.net> " in sender


@pytest.mark.parametrize("verbose", [0, 1, 2])
def test_aiosmtpd_speaks_only_at_vv_and_names_no_auth(tmp_path: Path, verbose: int) -> None:
    server = ServeChild(tmp_path, verbose=verbose)
    try:
        deliver(server.port, ["bob@example.org"])
        server.line()
    finally:
        stderr = server.stop()
    # aiosmtpd's wire log is there at -vv only (the control), and never its AUTH line:
    # strictmx offers no AUTH of aiosmtpd's.
    assert ("mail.log" in stderr) is (verbose == 2), stderr
    assert "AUTH" not in stderr
