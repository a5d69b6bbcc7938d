"""Shared pieces of the SMTP hostile tests: a raw peer whose every read is bounded, and
the checks every reply line must pass.

A reply line is `^\\d{3}[ -]` and printable US-ASCII only (RFC 5321 §4.2), and never
names an exception: no "Error: (" (aiosmtpd's generic handler), no class name such as
ValueError, no "Traceback". strictmx's fixed reply to an exception (451 "local error in
processing", 421 4.3.0) is safe on the wire but still a bug, so it counts too.
"""

from __future__ import annotations

import re
import socket
import time
from typing import Any

from strictmx.receiver.pytest_plugin import StrictmxReceiver

#: Seconds a reply may take before the server counts as hung.
REPLY_TIMEOUT = 5.0

_HEAD = re.compile(rb"^\d{3}[ -]")
_EXCEPTION = re.compile(rb"Error: \(|Traceback|\b[A-Z][A-Za-z]*(?:Error|Exception)\b")

#: A scenario that exercises much of strictmx on every input and answers fast: the session
#: limits (no tarpit, which would make a fuzzed session slow on purpose), HELO syntax,
#: sender-verify callouts to the world's simulated MX on loopback, header checks at EOD.
FUZZ_SCENARIO: dict[str, Any] = {
    "name": "hostile-smtp",
    "receiver": {
        "hostname": "mx.strictmx.test",
        "delay_reject": False,
        "local_recipients": ["bob@example.org", "postmaster@*"],
    },
    "policies": {
        "session": [
            {
                "policy": "session_limits",
                "soft_error_limit": None,
                "hard_error_limit": 20,
                "max_unknown_commands": None,
            }
        ],
        "helo": [{"policy": "helo_syntax", "mode": "rfc1035"}],
        "mail": [{"policy": "sender_verify", "connect_timeout": 2, "command_timeout": 2}],
        "eod": [{"policy": "headers"}],
    },
    "world": {
        "dns": {
            "mode": "hermetic",
            "records": {
                "example.net": {"MX": "10 mx.example.net."},
                "mx.example.net": {"A": "192.0.2.25"},
                "example.org": {"MX": "10 mx.example.org."},
                "mx.example.org": {"A": "127.0.0.3"},
            },
        },
        "mailboxes": {
            "example.net": {"exists": ["postmaster", "alice", "bob"]},
            "example.org": {"exists": ["postmaster", "bob"]},
        },
    },
}


#: The same world as another persona: Exim-style replies without enhanced status codes,
#: delayed rejections, soft bounces, Exim's callout (HELO, MAIL FROM:<>, random local part).
EXIM_FUZZ_SCENARIO: dict[str, Any] = {
    **FUZZ_SCENARIO,
    "name": "hostile-smtp-exim",
    "receiver": {
        **FUZZ_SCENARIO["receiver"],
        "enhanced_status_codes": False,
        "delay_reject": True,
        "soft_bounce": True,
        "smtputf8": False,
    },
    "policies": {
        **FUZZ_SCENARIO["policies"],
        "mail": [{"policy": "sender_verify", "style": "exim", "random": True, "postmaster": True}],
    },
}


class Hung(Exception):
    """No complete reply within REPLY_TIMEOUT."""


class Closed(Exception):
    """The server closed the connection."""


def bad_line(line: bytes) -> str | None:
    """Why a reply line breaks the rules, or None."""
    if not _HEAD.match(line):
        return "no reply code"
    if any(not 32 <= b < 127 for b in line):
        return "unprintable"
    if _EXCEPTION.search(line):
        return "exception text"
    if line.endswith(b"local error in processing") or line.startswith(b"421 4.3.0 "):
        return "internal error"  # strictmx's fixed reply to an exception: a bug to find
    return None


class Peer:
    """A raw SMTP client; every read waits at most REPLY_TIMEOUT in all."""

    def __init__(self, rx: StrictmxReceiver, *, timeout: float = REPLY_TIMEOUT) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection((rx.host, rx.port), timeout=timeout)
        self.buffer = b""
        self.bad: list[tuple[str, bytes]] = []  # (why, line) of every rule-breaking line
        self.closed = False

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:  # the server hung up (after a 421); the next read says so
            self.closed = True

    def line(self, deadline: float) -> bytes:
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Hung(self.buffer.decode("latin-1"))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise Hung(self.buffer.decode("latin-1")) from None
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
                raise Closed(self.buffer.decode("latin-1"))
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        if not line.endswith(b"\r"):
            self.bad.append(("bare LF", line))
        line = line.removesuffix(b"\r")
        why = bad_line(line)
        if why is not None:
            self.bad.append((why, line))
        return line

    def reply(self) -> list[bytes]:
        """One complete reply, its lines checked; Hung or Closed."""
        deadline = time.monotonic() + self.timeout
        lines = [self.line(deadline)]
        while lines[-1][3:4] == b"-":
            lines.append(self.line(deadline))
        return lines

    def command(self, raw: bytes) -> list[bytes]:
        self.send(raw + b"\r\n")
        return self.reply()


def greets(rx: StrictmxReceiver) -> bool:
    """Whether a fresh connection gets a 220 greeting in time (the server is alive)."""
    try:
        peer = Peer(rx)
    except OSError:
        return False
    try:
        return peer.reply()[0].startswith(b"220 ")
    except (Hung, Closed):
        return False
    finally:
        peer.close()
