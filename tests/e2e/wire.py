"""A raw SMTP peer on a plain socket: for what real clients refuse to send.

Reads are bounded by the socket timeout, so a server that stops answering fails the
test instead of hanging it; nothing here sleeps.
"""

from __future__ import annotations

import socket
from types import TracebackType

TIMEOUT = 5.0


class Closed(Exception):
    """The server closed the connection before a complete reply arrived."""


class Wire:
    def __init__(
        self, host: str, port: int, *, greet: bool = True, source: str | None = None
    ) -> None:
        bind = (source, 0) if source else None
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT, source_address=bind)
        self._buffer = b""
        self.greeting: list[str] = self.reply() if greet else []

    def __enter__(self) -> Wire:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        """One line as sent, CRLF stripped; `Closed` if the server hung up first."""
        while b"\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed(self._buffer.decode("utf-8", "replace"))
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.rstrip(b"\r")

    def reply(self) -> list[str]:
        """Every line of one (possibly multi-line) reply."""
        lines = [self.line().decode("utf-8", "replace")]
        while lines[-1][3:4] == "-":
            lines.append(self.line().decode("utf-8", "replace"))
        return lines

    def command(self, text: str | bytes) -> list[str]:
        raw = text.encode() if isinstance(text, str) else text
        self.send(raw + b"\r\n")
        return self.reply()

    def closed_by_server(self) -> bool:
        """True once the server has closed its side (EOF with nothing left unread)."""
        if self._buffer:
            return False
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
