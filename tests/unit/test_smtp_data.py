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

from strictmx.receiver import smtp_data
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
    data_lines = StrictSMTP.data_lines  # aiosmtpd's replies: the default dialect's
    data_line_limit = LINE_LIMIT
    helo_required = True
    data_lf_ends_line = False


async def converse(
    server_class: type[SMTP], chunks: list[bytes], framed: bool = True
) -> tuple[bytes, list[bytes]]:
    """Replies and contents for `chunks`, each sent once the server has read the last;
    `framed`: after OPENING and before CLOSING, else the chunks are the whole session."""
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
        for chunk in [OPENING, *chunks, CLOSING] if framed else chunks:
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


@st.composite
def whole_sessions(draw: st.DrawFn) -> list[bytes]:
    """A whole session cut anywhere: data in the DATA command's read, commands in the data's."""
    data = OPENING + b"".join(draw(st.lists(PIECES, max_size=20))) + CLOSING
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=whole_sessions())
@example(chunks=[OPENING + b".\r\nNOOP\r\n" + CLOSING])  # empty data, then a command, at once
@example(chunks=[OPENING + b"\r\n\r\n.\r\n.\r\n" + CLOSING])
def test_reads_stop_at_the_end_of_the_data_however_the_session_is_cut(chunks: list[bytes]) -> None:
    expected = asyncio.run(converse(LineByLine, chunks, framed=False))
    assert asyncio.run(converse(WholeBuffers, chunks, framed=False)) == expected


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=chunked(), batch=st.sampled_from([1, 7, LINE_LIMIT + 3]))
@example(chunks=[b"v" * 45 + b"\r", b"\n.\r\n"], batch=1)
def test_lines_taken_a_few_reads_at_a_time_answer_the_same(chunks: list[bytes], batch: int) -> None:
    # Messages here are shorter than the octets strictmx reads before it looks at their
    # lines (smtp_data._BATCH): a smaller batch takes the lines read by read, as a long
    # message's are, with overlong lines begun in one read and ended in another.
    expected = asyncio.run(converse(LineByLine, chunks))
    saved, smtp_data._BATCH = smtp_data._BATCH, batch
    try:
        assert asyncio.run(converse(WholeBuffers, chunks)) == expected
    finally:
        smtp_data._BATCH = saved


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


def test_commands_in_the_same_read_as_a_long_message_reach_the_command_loop() -> None:
    # Longer than the stream's limit, so the data is taken in more than one read of the
    # stream; the RSET and NOOP after the dot must be left for the command loop.
    lines = b"".join(b"%02d" % n + b"y" * 30 + b"\r\n" for n in range(8))
    replies, contents = converse_once(WholeBuffers, lines + b".\r\nRSET\r\nNOOP\r\n")
    assert contents == [lines]
    after_data = replies.split(b"354 ", 1)[1]
    assert after_data.count(b"250 OK") == 4  # the message, RSET, NOOP, the closing NOOP
    assert converse_once(LineByLine, lines + b".\r\nRSET\r\nNOOP\r\n") == (replies, contents)


def test_a_message_of_blank_lines_sent_an_octet_at_a_time_ends_at_its_dot() -> None:
    data = b"\r\n" * 6 + b".\r\n" + b"NOOP\r\n"
    chunks = [data[i : i + 1] for i in range(len(data))]
    replies, contents = converse_once(WholeBuffers, *chunks)
    assert contents == [b"\r\n" * 6]
    assert converse_once(LineByLine, *chunks) == (replies, contents)
    # Control: the same octets, the dot line not alone (a dot then a space), do not end it.
    data = b"\r\n" * 6 + b". \r\n"
    chunks = [data[i : i + 1] for i in range(len(data))]
    replies, contents = converse_once(WholeBuffers, *chunks)
    # Ended by CLOSING's dot, after its empty line; the line's leading dot unstuffed.
    assert contents == [b"\r\n" * 6 + b" \r\n\r\n"]
    assert converse_once(LineByLine, *chunks) == (replies, contents)


class LfLineEnds(WholeBuffers):
    """A dialect with data_bare_lf: line_end (Postfix, smtpd_forbid_bare_newline = no)."""

    data_lf_ends_line = True


def test_with_lf_line_ends_a_dot_then_lf_ends_the_data_and_lines_get_crlf() -> None:
    replies, contents = converse_once(LfLineEnds, b"..one\ntwo\r\nthree\n.\nNOOP\r\n")
    assert contents == [b".one\r\ntwo\r\nthree\r\n"]
    after_data = replies.split(b"354 ", 1)[1]
    assert after_data.count(b"250 OK") == 3  # the message, the pipelined NOOP, the closing NOOP
    # Control: CRLF-only reading keeps the LF as part of its line, and `.` LF ends nothing.
    replies, contents = converse_once(WholeBuffers, b"one\ntwo\r\n.\nx\r\n")
    # (ended by CLOSING's dot; the line ".\nx" has its leading dot unstuffed)
    assert contents == [b"one\ntwo\r\n\nx\r\n\r\n"]


def test_with_lf_line_ends_the_limits_still_hold() -> None:
    replies, contents = converse_once(LfLineEnds, b"x" * 30, b"x" * 30 + b"\n.\n")
    assert b"500 Line too long (see RFC5321 4.5.3.1.6)" in replies
    assert contents == []
    replies, contents = converse_once(LfLineEnds, (b"y" * 30 + b"\n") * 11 + b".\n")
    assert b"552 Error: Too much mail data" in replies
    assert contents == []
    # A dot at the end of an overlong line, its start dropped, does not end the data.
    replies, contents = converse_once(LfLineEnds, b"z" * 80 + b".\n", b"ok\n.\n")
    assert replies.split(b"354 ", 1)[1].count(b"500 Line too long") == 1
