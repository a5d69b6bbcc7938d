"""DATA: a message's content read in whole buffers, with aiosmtpd's limits and replies.

aiosmtpd reads a message one line at a time, a `readuntil` coroutine per line, which is a
large share of what a session costs. `read_message` takes what the stream has buffered
at once and finds line ends, the lone-dot line and oversize lines with bytes methods.
What it returns is what aiosmtpd's loop gives for the same bytes however they arrive
(tests/unit/test_smtp_data.py holds the two together):

- lines end at CRLF only (a bare LF or CR is part of a line);
- the data ends at a line that is a lone dot; leading dots are unstuffed (RFC 5321 §4.5.2);
- a line longer than `line_limit` octets with its CRLF makes the message "too long", more
  than `size_limit` octets in all (dots and CRLFs counted, not the final dot line) "too
  much"; the first problem in line order is the one reported, and from then on the data
  is dropped as it arrives. The order within one line is aiosmtpd's: a line over the
  stream's limit is too long before its octets are counted, a shorter one after.

It reads the StreamReader's buffer directly (`_buffer`, `_wait_for_data`,
`_maybe_resume_transport`, `_eof`), as aiosmtpd itself does for STARTTLS.
"""

from __future__ import annotations

import asyncio
from enum import Enum

_CRLF = b"\r\n"
_END = b"\r\n.\r\n"  # a line end, then the lone-dot line


class Problem(Enum):
    TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"
    TOO_MUCH = "552 Error: Too much mail data"


async def read_message(
    reader: asyncio.StreamReader, line_limit: int, size_limit: int | None
) -> tuple[Problem | None, bytes]:
    """The data up to the lone-dot line: (None, content) or (problem, b"").

    `line_limit` is also the stream's own limit (aiosmtpd makes them the same), so a line
    over it is one aiosmtpd's readuntil refuses. IncompleteReadError if the stream ends.
    """
    buf: bytearray = reader._buffer  # type: ignore[attr-defined]
    kept = bytearray()
    problem: Problem | None = None
    size = 0
    in_line = False  # the buffer starts inside an overlong line whose start was dropped
    while True:
        last = buf.rfind(_CRLF)
        done = False
        if last >= 0:
            end = last + 2  # buf[:end] holds whole lines (the first maybe a line's rest)
            if not in_line and buf.startswith(b".\r\n"):
                end, done = 0, True
            else:
                found = buf.find(_END, 0, end)
                if found >= 0:
                    end, done = found + 2, True
            lines = buf[:end]
            if in_line:  # the rest of an overlong line: already too long, nothing to keep
                first = lines.find(_CRLF) + 2
                size += first
                lines = lines[first:]
                in_line = False
            if problem is None:
                problem, size = _take(lines, kept, size, line_limit, size_limit)
            del buf[: end + 3 if done else end]
        if problem is not None:
            kept.clear()
        if done:
            reader._maybe_resume_transport()  # type: ignore[attr-defined]
            break
        # What is left is part of one line. Longer than the stream's limit, aiosmtpd's
        # readuntil would refuse it: too long, and dropped (but the last octet, which
        # may be the CR of its CRLF).
        if len(buf) > line_limit + 1:
            if problem is None and not in_line:
                problem = Problem.TOO_LONG
                kept.clear()
            size += len(buf) - 1
            del buf[:-1]
            in_line = True
        reader._maybe_resume_transport()  # type: ignore[attr-defined]
        if reader._exception is not None:  # type: ignore[attr-defined]
            raise reader._exception  # type: ignore[attr-defined]
        if reader._eof:  # type: ignore[attr-defined]
            raise asyncio.IncompleteReadError(bytes(kept), None)
        await reader._wait_for_data("read_message")  # type: ignore[attr-defined]
    if problem is not None:
        return problem, b""
    content = bytes(kept)
    if content.startswith(b"."):
        content = content[1:]
    return None, content.replace(b"\r\n.", _CRLF)


def _take(
    lines: bytearray, kept: bytearray, size: int, line_limit: int, size_limit: int | None
) -> tuple[Problem | None, int]:
    """Whole lines, in the nominal state: kept, or the first problem among them."""
    total = size + len(lines)
    if (not size_limit or total <= size_limit) and (
        not lines or max(map(len, lines.split(_CRLF))) + 2 <= line_limit
    ):
        kept += lines
        return None, total
    # Some line is too long or crosses the size limit: which comes first, line by line.
    start = 0
    while start < len(lines):
        stop = lines.index(_CRLF, start) + 2
        octets = stop - start
        if octets - 2 > line_limit:  # over the stream's limit: refused before counted
            return Problem.TOO_LONG, size + len(lines) - start
        size += octets
        if size_limit and size > size_limit:
            return Problem.TOO_MUCH, size
        if octets > line_limit:
            return Problem.TOO_LONG, size
        kept += lines[start:stop]
        start = stop
    return None, size
