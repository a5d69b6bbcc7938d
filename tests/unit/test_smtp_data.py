"""strictmx reads DATA in whole buffers (strictmx/receiver/smtp_data.py); aiosmtpd reads it a line
at a time. For the same bytes, however they arrive, both must answer the same replies
and hand over the same content: two servers, aiosmtpd's SMTP with and without strictmx's
DATA command, each fed the same chunks over a real socket pair."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from typing import Any

from aiosmtpd.smtp import SMTP
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from strictmx.receiver.smtp import StrictSMTP

LINE_LIMIT = 40  # small, so that overlong lines are easy to come by
SIZE_LIMIT = 300
OPENING = b"HELO client.example\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
CLOSING = b"\r\n.\r\nNOOP\r\nQUIT\r\n"  # ends any data that did not end itself


class Recorder:
    def __init__(self) -> None:
        self.contents: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.contents.append(envelope.original_content)
        return "250 OK"


class LineByLine(SMTP):
    line_length_limit = LINE_LIMIT


class WholeBuffers(LineByLine):
    smtp_DATA = StrictSMTP.smtp_DATA


async def converse(server_class: type[SMTP], chunks: list[bytes]) -> tuple[bytes, list[bytes]]:
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    transport, _ = await loop.connect_accepted_socket(
        lambda: server_class(recorder, hostname="rx.example", data_size_limit=SIZE_LIMIT),
        ours,
    )
    replies = bytearray()

    async def settle() -> None:
        for _ in range(4):  # the server reads what was sent, as one chunk
            await asyncio.sleep(0)
        while True:
            try:
                data = theirs.recv(65536)
            except BlockingIOError:
                return
            if not data:
                return
            replies.extend(data)

    await settle()
    try:
        for chunk in [OPENING, *chunks, CLOSING]:
            await loop.sock_sendall(theirs, chunk)
            await settle()
        theirs.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server hung up (too many bad commands after the data, say)
    with contextlib.suppress(ConnectionResetError):
        while chunk := await asyncio.wait_for(loop.sock_recv(theirs, 65536), 5):
            replies.extend(chunk)
    theirs.close()
    transport.close()
    return bytes(replies), recorder.contents


PIECES = st.sampled_from(
    [b"a", b"Subject: x", b"\r\n", b".", b"..", b"\r", b"\n", b".\r\n", b"\r\n.\r\n",
     b"y" * 37, b"z" * 38, b"w" * 39, b"v" * 45, b"u" * 120]
)  # fmt: skip


@st.composite
def chunked(draw: st.DrawFn) -> list[bytes]:
    data = b"".join(draw(st.lists(PIECES, max_size=30)))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=chunked())
# A line of exactly the limit that also crosses the size limit: aiosmtpd counts it first.
@example(chunks=[(b"y" * 38 + b"\r\n") * 7, b"z" * LINE_LIMIT + b"\r\n"])
@example(chunks=[(b"y" * 38 + b"\r\n") * 7 + b"z" * (LINE_LIMIT + 1) + b"\r\n"])
# An overlong line whose CRLF is split between two reads, then the end of the data.
@example(chunks=[b"v" * 45 + b"\r", b"\n.\r\n"])
@example(chunks=[b"v" * 45, b"\r", b"\n.\r\n"])
def test_whole_buffers_answer_as_aiosmtpd_does_line_by_line(chunks: list[bytes]) -> None:
    expected = asyncio.run(converse(LineByLine, chunks))
    assert asyncio.run(converse(WholeBuffers, chunks)) == expected


def converse_once(server_class: type[SMTP], *chunks: bytes) -> tuple[bytes, list[bytes]]:
    return asyncio.run(converse(server_class, list(chunks)))


def test_content_is_unstuffed_and_ends_at_the_lone_dot() -> None:
    replies, contents = converse_once(WholeBuffers, b"..one\r\ntwo\r\n", b".\r\nNOOP\r\n")
    assert contents == [b".one\r\ntwo\r\n"]
    after_data = replies.split(b"354 ", 1)[1]
    assert after_data.count(b"250 OK") == 3  # the message, the pipelined NOOP, the closing NOOP


def test_an_overlong_line_split_across_reads_is_too_long() -> None:
    replies, contents = converse_once(WholeBuffers, b"x" * 30, b"x" * 30 + b"\r\n")
    assert b"500 Line too long (see RFC5321 4.5.3.1.6)" in replies
    assert contents == []


def test_too_much_data_is_refused_after_the_end() -> None:
    replies, contents = converse_once(WholeBuffers, (b"y" * 30 + b"\r\n") * 11)
    assert b"552 Error: Too much mail data" in replies
    assert contents == []
