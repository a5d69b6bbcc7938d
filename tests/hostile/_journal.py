"""Helpers for the journal's hostile tests: a small SMTP client and the journal's count.

The client speaks bytes, so that a hostile session can put 8-bit bytes in any field,
and keeps going after a refusal (a hostile client does); it reports the reply to the
end of the message, or the first refusal before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests.serve_child import ServeChild

HOST: Final = "127.0.0.1"
#: Seconds one session may take before it counts as a hang.
SESSION_TIMEOUT: Final = 30.0
#: The default scenario's world accepts this identity (bench/smtp_source.py uses it too).
HELO: Final = b"mail.example.net"
MAIL: Final = b"bench@example.net"
RCPT: Final = b"alice@example.net"
TOKEN: Final = re.compile(rb"<(honest|hostile|load|probe)-(\d+)@token\.example>")


@dataclass(frozen=True)
class Envelope:
    helo: bytes = HELO
    mail: bytes = MAIL
    rcpt: bytes = RCPT
    body: bytes = b"hello\r\n"


async def _reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One SMTP reply: its code and its last line (continuations skipped)."""
    while True:
        line = await reader.readline()
        if not line:
            return 0, b"connection closed"
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3]) if line[:3].isdigit() else 0, line.rstrip()


async def send(port: int, kind: str, n: int, envelope: Envelope = Envelope()) -> tuple[int, bytes]:
    """Send one message tagged `<kind-n@token.example>`; the reply that decided it."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        code, text = await _reply(reader)
        if code != 220:
            return code, text
        message = (
            b"From: <" + envelope.mail + b">\r\nTo: <" + envelope.rcpt + b">\r\n"
            b"Subject: journal test\r\nMessage-ID: <"
            + kind.encode()
            + b"-%d@token.example>\r\n\r\n" % n
            + envelope.body
        )
        steps = (
            b"EHLO " + envelope.helo,
            b"MAIL FROM:<" + envelope.mail + b">",
            b"RCPT TO:<" + envelope.rcpt + b">",
            b"DATA",
        )
        for step in steps:
            writer.write(step + b"\r\n")
            code, text = await _reply(reader)
            if code >= 400 or code == 0:
                return code, text
        writer.write(message + b".\r\n")
        code, text = await _reply(reader)
        writer.write(b"QUIT\r\n")
        await _reply(reader)
        return code, text
    finally:
        writer.close()
        with contextlib.suppress(OSError):  # the server went away first
            await writer.wait_closed()


async def bounded(
    port: int, kind: str, n: int, envelope: Envelope = Envelope()
) -> tuple[int, bytes]:
    """`send`, with a hang reported as code -1 and a refused connection as code -2."""
    try:
        return await asyncio.wait_for(send(port, kind, n, envelope), SESSION_TIMEOUT)
    except TimeoutError:
        return -1, b"hang"
    except OSError as exc:
        return -2, str(exc).encode()


def stored(db: Path) -> Counter[tuple[str, int]]:
    """How many times each tagged message is in the journal's file."""
    found: Counter[tuple[str, int]] = Counter()
    with sqlite3.connect(db, timeout=30) as conn:
        for (raw,) in conn.execute("SELECT raw FROM messages"):
            match = TOKEN.search(bytes(raw))
            if match is not None:
                found[match.group(1).decode(), int(match.group(2))] += 1
    conn.close()
    return found


class Serve(ServeChild):
    """`strictmx serve` of the default scenario on journal `db`, in a child process."""

    def __init__(self, db: Path, cwd: Path) -> None:
        super().__init__(cwd, "--db", str(db), "--scenario", "default")


def wait_exit(pid: int, timeout: float = 20.0) -> bool:
    """Whether process `pid` (an orphan, reaped by init) has gone within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split(") ", 1)[1].startswith("Z"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False
