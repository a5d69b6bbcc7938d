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

It reads through the StreamReader's public methods only. `readuntil` finds the end of the
data in what is buffered; when that is more than the stream's limit (the command-line
limit, which aiosmtpd shares), the LimitOverrunError says how many octets can be taken
with `readexactly` without taking any part of an end: every end that begins in them is
wholly buffered, and `readuntil` would have found it (tests/unit/test_contract_asyncio_aiohttp.py
pins this). So a message arrives in whole buffers and nothing after its end is read:
commands pipelined after the dot stay in the stream for the command loop.
"""

from __future__ import annotations

import asyncio
from enum import Enum

_CRLF = b"\r\n"
_END = b"\r\n.\r\n"  # a line end, then the lone-dot line
_DOT_LINE = len(b".\r\n")
_END_STARTS = tuple(_END[:n] for n in range(len(_END) - 1, 0, -1))  # longest first
# Octets read before the lines in them are looked at: what the data holds at once, at
# most this much more than one line, before it is checked, kept or dropped.
_BATCH = 1 << 16


class Problem(Enum):
    TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"
    TOO_MUCH = "552 Error: Too much mail data"


# The stream's own search: a subclass (smtp.py's records command lines) may override
# `readuntil` for commands, and message data must not pass through that.
_readuntil = asyncio.StreamReader.readuntil


async def read_message(
    reader: asyncio.StreamReader, line_limit: int, size_limit: int | None
) -> tuple[Problem | None, bytes]:
    """The data up to the lone-dot line: (None, content) or (problem, b"").

    `line_limit` is also the stream's own limit (aiosmtpd makes them the same), so a line
    over it is one aiosmtpd's readuntil refuses. IncompleteReadError if the stream ends.
    """
    pending = bytearray()  # read, not yet taken: at most one line's start, then a read
    kept = bytearray()
    problem: Problem | None = None
    size = 0
    in_line = False  # `pending` starts inside an overlong line whose start was dropped
    # An end may begin before the stream's next octet: the data can end at once (its
    # "\r\n" is the DATA command's), and octets read a few at a time can hold an end's
    # start. While one may, read only as many octets as would complete it.
    tail = _CRLF
    done = False
    while not done:
        if tail:
            chunk = await reader.readexactly(len(_END) - _end_started(tail))
            seen = tail + chunk
            done = seen.endswith(_END)
            tail = seen[-4:] if _end_started(seen) else b""  # b"": every end is in the stream
        else:
            try:
                chunk = await _readuntil(reader, _END)
                done = True
            except asyncio.LimitOverrunError as exc:
                chunk = await reader.readexactly(exc.consumed)
        pending += chunk
        if not done and len(pending) < _BATCH:
            continue  # taken together: one pass over the lines costs less than many
        # Whole lines: up to the lone-dot line, or to the last line end read so far.
        end = len(pending) - _DOT_LINE if done else pending.rfind(_CRLF) + 2
        if end > 1:  # (1: no line end at all)
            lines = pending[:end]
            if in_line:  # the rest of an overlong line: already too long, nothing to keep
                first = lines.find(_CRLF) + 2
                size += first
                lines = lines[first:]
                in_line = False
            if problem is None:
                problem, size = _take(lines, kept, size, line_limit, size_limit)
            del pending[:end]
        if problem is not None:
            kept.clear()
        # What is left is part of one line. Longer than the stream's limit, aiosmtpd's
        # readuntil would have refused it: too long, and dropped (but the last octet,
        # which may be the CR of its CRLF).
        if not done and len(pending) > line_limit + 1:
            if problem is None and not in_line:
                problem = Problem.TOO_LONG
                kept.clear()
            size += len(pending) - 1
            del pending[:-1]
            in_line = True
    if problem is not None:
        return problem, b""
    content = bytes(kept)
    if content.startswith(b"."):
        content = content[1:]
    return None, content.replace(b"\r\n.", _CRLF)


def _end_started(tail: bytes) -> int:
    """How many octets of an end `tail` ends with (0 to 4)."""
    if not tail.endswith(_END_STARTS):
        return 0
    return next(len(start) for start in _END_STARTS if tail.endswith(start))


def _take(
    lines: bytes | bytearray, kept: bytearray, size: int, line_limit: int, size_limit: int | None
) -> tuple[Problem | None, int]:
    """Whole lines, in the nominal state: kept, or the first problem among them."""
    total = size + len(lines)
    if (not size_limit or total <= size_limit) and _lines_fit(lines, line_limit):
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


def _lines_fit(lines: bytes | bytearray, line_limit: int) -> bool:
    """Whether every line of `lines` (whole lines) is at most `line_limit` octets."""
    # The last line end within `line_limit` octets of a line's start: every line before
    # it fits. A window at a time rather than a line at a time.
    start = 0
    while start < len(lines):
        last = lines.rfind(_CRLF, start, start + line_limit)
        if last < 0:
            return False
        start = last + 2
    return True


async def read_message_lf(
    reader: asyncio.StreamReader, line_limit: int | None, size_limit: int | None
) -> tuple[Problem | None, bytes]:
    """The data up to the lone-dot line when a bare LF ends a line as CRLF does (a
    dialect's `data_bare_lf: line_end`; Postfix with smtpd_forbid_bare_newline = no): so
    `.` then LF ends the data too, and each line is kept with CRLF, as Postfix's queue
    file records lines. Leading dots are unstuffed; `line_limit` (None: none) and
    `size_limit` as `read_message`, counted on the lines as kept.

    A line at a time: this mode is the exception, and its lines must be looked at one
    by one anyway. IncompleteReadError if the stream ends.
    """
    kept = bytearray()
    problem: Problem | None = None
    size = 0
    line = bytearray()
    dropped = False  # the start of the line being read was dropped: it is no dot line
    while True:
        try:
            line += await _readuntil(reader, b"\n")
        except asyncio.LimitOverrunError as exc:  # a part of a long line: read on
            line += await reader.readexactly(exc.consumed)
            if problem is None and line_limit is not None and len(line) > line_limit + 2:
                problem = Problem.TOO_LONG
            if problem is not None:
                del line[:]  # dropped as it arrives; its end is still to be found
                dropped = True
            continue
        text = bytes(line[:-2] if line.endswith(_CRLF) else line[:-1])
        line = bytearray()
        if text == b"." and not dropped:
            break
        dropped = False
        if problem is not None:
            continue
        if text.startswith(b"."):
            text = text[1:]
        size += len(text) + 2
        if size_limit and size > size_limit:
            problem = Problem.TOO_MUCH
        elif line_limit is not None and len(text) > line_limit:
            problem = Problem.TOO_LONG
        else:
            kept += text + _CRLF
    if problem is not None:
        return problem, b""
    return None, bytes(kept)
