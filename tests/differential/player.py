"""Plays one scripted SMTP session over a raw socket and records every reply.

A session is a list of steps (see sessions.yaml):

- `LINE` or `send: LINE`  one command line, UTF-8, CRLF added; one reply is read;
- `raw: BYTES`      bytes exactly as given (each character U+0000..U+00FF is one octet: bare
                    LF, 8-bit, no line end at all); as many replies are read as the bytes hold
                    line ends, or `replies: N` when that is not the count (BDAT's chunk);
- `pipeline: [..]`  several command lines in one write, then one reply per line
                    (`repeat: N` sends the list N times over);
- `data: BODY`      the message body (lines split on "\\n", each sent with CRLF) and the
                    closing "."; one reply. `{body:, repeat: N}` sends the body N times.
                    Sent only after a 354, as a client would; else the turn is NOT_SENT;
- `bdat: OCTETS`    one RFC 3030 chunk (octets as in `raw`), sent as "BDAT <size>" and the
                    chunk, or "BDAT <size> LAST" with `last: true`; one reply;
- `pause: SECONDS`  nothing sent for that long (at most MAX_PAUSE);
- `close: true`     the client closes the connection.

`{{N*x}}` inside any text stands for N copies of `x` (long lines without a long file).

Deterministic by construction: replies are read in full (multi-line aware) before the
next step is sent; after a 221, 421 or 521, whose meaning is "closing", the player waits
for the server's close and sends nothing more; a server that closes at any other point shows
as a turn whose reply is None, and nothing more is sent; a server that does not answer
within TIMEOUT shows as the reply SILENT, and the client closes. Every read is bounded by
TIMEOUT, so a server that stops answering makes the session fail, not hang.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

TIMEOUT = 5.0  # seconds a reply may take (both servers answer in milliseconds)
QUIET = 0.3  # seconds of silence that end a session the client did not end
MAX_PAUSE = 2.0
MAX_REPLY_LINES = 200  # a reply longer than this is a server gone wrong, not SMTP

#: The reply recorded when none came within TIMEOUT; the player stops there.
SILENT = f"(no reply within {TIMEOUT:.0f} s)"

#: The reply recorded for a `data` step whose DATA was not answered with 354.
NOT_SENT = "(not sent: DATA was not answered with 354)"

_FILL = re.compile(r"\{\{(\d+)\*(.+?)\}\}")

Ended = Literal["server", "client"]
#: Codes that mean "closing the connection": 221 (RFC 5321 4.2.2), 421 (RFC 5321 3.8),
#: 521 (RFC 7504 section 3).
CLOSING = ("221", "421", "521")
STEP_KINDS = ("send", "raw", "pipeline", "data", "bdat", "pause", "close")


def expand(text: str) -> str:
    """`{{600*a}}` -> 600 copies of `a`."""
    return _FILL.sub(lambda m: m[2] * int(m[1]), text)


def octets(text: str) -> bytes:
    """A `raw` step's text as the octets it stands for (U+0000..U+00FF, one octet each)."""
    try:
        return expand(text).encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ValueError(f"raw step holds a character above U+00FF: {text!r}") from exc


@dataclass(frozen=True)
class Turn:
    """One reply the session waited for: what was sent before it, and the reply's lines
    (None: the server had closed instead of replying)."""

    step: int  # index in the session's steps; -1 for the greeting
    sent: str  # printable form of the octets sent (the greeting: "(connect)")
    reply: tuple[str, ...] | None


@dataclass
class Played:
    turns: list[Turn] = field(default_factory=list)
    ended: Ended = "client"
    #: Anything the server sent unasked once the steps were done (nothing, normally).
    trailing: tuple[str, ...] = ()


class _ServerClosed(Exception):
    pass


def shown(data: bytes, limit: int = 200) -> str:
    """Octets sent, printable and short enough to read: `\\r\\n` kept visible."""
    text = data.decode("latin-1").encode("unicode_escape").decode("ascii")
    if len(text) > limit:
        text = f"{text[: limit - 30]}...({len(data)} octets)...{text[-20:]}"
    return text


class _Conn:
    def __init__(self, host: str, port: int, source: str) -> None:
        self.sock = socket.create_connection(
            (host, port), timeout=TIMEOUT, source_address=(source, 0)
        )
        self.buffer = b""
        self.eof = False

    def _fill(self) -> None:
        if self.eof:
            raise _ServerClosed
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError) as exc:
            self.eof = True
            raise _ServerClosed from exc
        if not chunk:
            self.eof = True
            raise _ServerClosed
        self.buffer += chunk

    def line(self) -> bytes:
        while b"\n" not in self.buffer:
            self._fill()
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.rstrip(b"\r")

    def reply(self) -> tuple[str, ...] | None:
        """One reply's lines, or None when the server closed before a complete one."""
        lines: list[str] = []
        try:
            while len(lines) < MAX_REPLY_LINES:
                lines.append(self.line().decode("utf-8", "backslashreplace"))
                if lines[-1][3:4] != "-":
                    return tuple(lines)
        except _ServerClosed:
            return None
        except TimeoutError:
            return (SILENT,)
        raise AssertionError(f"a reply of more than {MAX_REPLY_LINES} lines: {lines[:5]}")

    def send(self, data: bytes) -> None:
        """Send what the server may still read. A server that has closed is not an error
        here: what it said before closing is still to be read, and the reads that follow
        find the close."""
        if self.eof:
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.sock.sendall(data)

    def wait_close(self, quiet: float) -> tuple[str, ...]:
        """Read until the server closes or `quiet` seconds pass without a byte; the
        lines it sent meanwhile."""
        self.sock.settimeout(quiet)
        try:
            while not self.eof:
                try:
                    self._fill()
                except TimeoutError:
                    break
                except _ServerClosed:
                    break
        finally:
            self.sock.settimeout(TIMEOUT)
        extra = self.buffer.decode("utf-8", "backslashreplace").splitlines()
        self.buffer = b""
        return tuple(extra)

    def close(self) -> None:
        self.sock.close()


def _closing(reply: tuple[str, ...] | None) -> bool:
    return reply is None or reply == (SILENT,) or reply[-1][:3] in CLOSING


def _step_kind(step: Any) -> str:
    if isinstance(step, str):
        return "send"
    if isinstance(step, Mapping):
        kinds = [k for k in STEP_KINDS if k in step]
        if len(kinds) == 1:
            return kinds[0]
    raise ValueError(f"not a step: {step!r}")


def _data_octets(value: Any) -> bytes:
    if isinstance(value, Mapping):
        body = str(value["body"])
        repeat = int(value.get("repeat", 1))
    else:
        body, repeat = str(value), 1
    lines = expand(body).split("\n") if body else []
    chunk = b"".join(line.encode("utf-8") + b"\r\n" for line in lines)
    return chunk * repeat + b".\r\n"


def play(host: str, port: int, steps: Sequence[Any], *, source: str) -> Played:
    """Connect from `source`, read the greeting, play `steps`; what the server said."""
    conn = _Conn(host, port, source)
    played = Played()
    try:
        greeting = conn.reply()
        played.turns.append(Turn(-1, "(connect)", greeting))
        closed = _closing(greeting)
        for index, step in enumerate(steps):
            if closed:
                break
            kind = _step_kind(step)
            if kind == "close":
                conn.close()
                played.ended = "client"
                return played
            if kind == "pause":
                time.sleep(min(float(step["pause"]), MAX_PAUSE))
                continue
            if kind == "send":
                line = step if isinstance(step, str) else str(step["send"])
                wire = [expand(line).encode("utf-8") + b"\r\n"]
            elif kind == "pipeline":
                lines = list(step["pipeline"]) * int(step.get("repeat", 1))
                wire = [expand(str(line)).encode("utf-8") + b"\r\n" for line in lines]
            elif kind == "data":
                # As a real client: the body follows a 354, else it would be read as
                # commands and every later reply would answer the wrong line.
                answer = played.turns[-1].reply
                if answer is None or not answer[-1].startswith("354"):
                    played.turns.append(Turn(index, "(the body: not sent)", (NOT_SENT,)))
                    continue
                wire = [_data_octets(step["data"])]
            elif kind == "bdat":
                chunk = octets(str(step["bdat"]))
                flag = " LAST" if step.get("last", False) else ""
                wire = [f"BDAT {len(chunk)}{flag}\r\n".encode() + chunk]
            else:
                data = octets(str(step["raw"]))
                count = int(step.get("replies", data.count(b"\n")))
                wire = ([data] + [b""] * (count - 1)) if count else []
                if not count:
                    conn.send(data)
            if wire:
                conn.send(b"".join(wire))
            for part in wire:
                reply = conn.reply()
                sent = shown(part) if part else "(same write)"
                if kind == "pipeline":
                    sent += "  [pipelined]"
                played.turns.append(Turn(index, sent, reply))
                if _closing(reply):
                    closed = True
                    break
        silent = played.turns[-1].reply == (SILENT,)
        played.trailing = () if silent else conn.wait_close(TIMEOUT if closed else QUIET)
        played.ended = "server" if conn.eof else "client"
        return played
    finally:
        conn.close()
