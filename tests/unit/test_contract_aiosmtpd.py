"""The aiosmtpd and asyncio internals strictmx/receiver/smtp.py still relies on, pinned.

aiosmtpd stays strictmx's transport (connections, STARTTLS, PROXY, timeouts), but some of
what the SMTP layer needs has no public hook. Each private name smtp.py uses is listed in
PRIVATE below, and each test here fails when aiosmtpd (or asyncio, or the email package)
changes that name's existence, kind, signature or the behaviour smtp.py counts on -- so an
upgrade breaks here, by name, rather than on the wire. A test also fails when smtp.py
starts using a private name that is not listed.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import re
from pathlib import Path

import aiosmtpd
from aiosmtpd.smtp import SMTP, Envelope

from strictmx.receiver import smtp as strict_smtp
from strictmx.receiver import smtp_commands as strict_commands
from strictmx.receiver.grammar import parse_path
from strictmx.receiver.smtp import StrictSMTP

#: Every private name of aiosmtpd, asyncio or the email package that smtp.py uses, and why.
PRIVATE = {
    # aiosmtpd.smtp.SMTP
    "_handle_client": "overridden: strictmx's own command loop, started by connection_made",
    "_reader": "the StreamReader command lines and DATA are read from",
    "_reset_timeout": "restarts the idle timer (PROXY's own time, then each command)",
    "_timeout_cb": "overridden: Postfix's 421 timeout reply before the close",
    # asyncio.StreamReader
    "_buffer": "plaintext left in the reader when STARTTLS completes (RFC 3207 §4.2)",
}

#: Names smtp.py defines itself (its own helpers and attributes): not internals of others.
_OWN = re.compile(
    r"_(write|send_step|send_reply|conn|env|record|hook_reply|held|greeted|proxied|protocol|"
    r"now|lines|junk|close|rcpts|ok|in_data|flush|ehlo|reply_open|may_xclient|hello|greet|"
    r"ended|render|wire_lines|one_line|parse_path|ehlo_reply|state_tls|on_[a-z]+|journal_verdict|end_session|command|begin_session|"
    r"aiosmtpd_greeting|handlers|flush_lines|control|reply_head|hooks|commands|command_line|"
    r"internal_error(_close)?|aiosmtpd_names|refuse_line|run|skip_line|vrfy|"
    r"data_lines|dsn|enhanced|first_lines|has_helo|known|line|need_helo|push_as|say|"
    r"helo_first|header|cut|offers|piece|hello_fields|first_word|vrfy_address|"
    r"kept|first_rcpts|rcpt_count|summary|text_or_none|not_aiosmtpd_auth|shut_down)"
)


def test_every_private_name_smtp_py_uses_is_listed() -> None:
    # smtp_commands.py holds the transport's smaller commands: its names count too.
    source = Path(strict_smtp.__file__).read_text() + Path(strict_commands.__file__).read_text()
    used = {m for m in re.findall(r"\b(_[a-z][a-z_]*)\b", source) if not _OWN.fullmatch(m)}
    assert used == set(PRIVATE), (
        f"unlisted: {sorted(used - set(PRIVATE))}; no longer used: {sorted(set(PRIVATE) - used)}"
    )


def test_the_aiosmtpd_release_is_one_these_contracts_were_written_for() -> None:
    # 1.4.x is what was read; a new minor release may move any of the names below.
    assert aiosmtpd.__version__.startswith("1.4."), aiosmtpd.__version__


class _Probe(SMTP):
    """aiosmtpd's SMTP with the two internals strictmx overrides replaced by probes."""

    def __init__(self, started: asyncio.Event, timed_out: asyncio.Event) -> None:
        super().__init__(object())
        self.started, self.timed_out = started, timed_out
        self.streams: tuple[object, object] | None = None

    async def _handle_client(self) -> None:
        self.streams = (self._reader, self._writer)
        self._reset_timeout(0.05)  # the idle timer, restarted with a duration of our own
        self.started.set()

    def _timeout_cb(self) -> None:
        self.timed_out.set()
        super()._timeout_cb()  # type: ignore[no-untyped-call]


def test_a_connection_runs_the_overridden_command_loop_with_reader_writer_and_timer() -> None:
    async def connect() -> _Probe:
        started, timed_out = asyncio.Event(), asyncio.Event()
        probe = _Probe(started, timed_out)
        server = await asyncio.get_running_loop().create_server(lambda: probe, "127.0.0.1", 0)
        try:
            port = server.sockets[0].getsockname()[1]
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            # connection_made starts `_handle_client` as the loop's task ...
            await asyncio.wait_for(started.wait(), 10)
            # ... and `_reset_timeout(duration)` schedules `_timeout_cb` after it.
            await asyncio.wait_for(timed_out.wait(), 10)
            writer.close()
        finally:
            server.close()
        return probe

    probe = asyncio.run(connect())
    assert probe.streams is not None
    reader, writer = probe.streams
    assert isinstance(reader, asyncio.StreamReader) and isinstance(writer, asyncio.StreamWriter)


def test_the_loop_and_timer_keep_the_signatures_strictmx_calls() -> None:
    assert list(inspect.signature(SMTP._handle_client).parameters) == ["self"]
    assert inspect.iscoroutinefunction(SMTP._handle_client)
    assert list(inspect.signature(SMTP._reset_timeout).parameters) == ["self", "duration"]
    assert "self._handle_client()" in inspect.getsource(SMTP.connection_made)
    assert StrictSMTP._handle_client is not SMTP._handle_client


def test_the_timeout_callback_takes_nothing_and_closes_the_transport() -> None:
    assert list(inspect.signature(SMTP._timeout_cb).parameters) == ["self"]
    assert "self.transport.close()" in inspect.getsource(SMTP._timeout_cb)
    assert StrictSMTP._timeout_cb is not SMTP._timeout_cb


def test_our_path_parse_agrees_with_aiosmtpds() -> None:
    # MAIL and RCPT paths are parsed by strictmx (grammar.parse_path), with
    # aiosmtpd's rules and replies: where aiosmtpd's parser answers, ours answers alike.
    server = SMTP(object())
    for arg in ("<a@example.org>", "<a@example.org> SIZE=10", "a@example.org", "<>", "<@", '"'):
        ours = parse_path(arg, server.local_part_limit)
        try:
            theirs = server._getaddr(arg)
        except Exception:  # aiosmtpd's parser is not total: it answers 500 with the error
            theirs = (None, None)
        assert ours == theirs, arg


def test_a_stream_readers_unread_bytes_are_a_bytearray_named_buffer() -> None:
    async def fed() -> asyncio.StreamReader:
        reader = asyncio.StreamReader()
        reader.feed_data(b"EHLO x\r\n")
        return reader

    reader = asyncio.run(fed())
    assert isinstance(reader._buffer, bytearray)  # type: ignore[attr-defined]
    assert bytes(reader._buffer) == b"EHLO x\r\n"  # type: ignore[attr-defined]


def test_the_email_parsers_aiosmtpd_uses_are_there() -> None:
    # grammar.parse_path uses them as aiosmtpd does: a private module of the stdlib.
    from email._header_value_parser import get_addr_spec, get_angle_addr

    token, rest = get_angle_addr("<a@example.org> SIZE=1")
    assert token.addr_spec == "a@example.org" and rest.strip() == "SIZE=1"
    token, rest = get_addr_spec("a@example.org")
    assert token.addr_spec == "a@example.org" and rest == ""


def test_a_fresh_envelope_is_an_empty_transaction() -> None:
    # Envelope() is what a fresh transaction starts from (after EHLO, XCLIENT, an error).
    assert Envelope().rcpt_tos == [] and Envelope().mail_from is None


def test_the_mail_line_allowances_are_a_shared_table_strictmx_adds_to_as_aiosmtpd_does() -> None:
    # smtp.py's EHLO reply raises MAIL's line limit for SIZE and SMTPUTF8 the way
    # aiosmtpd's smtp_EHLO does, on the same table its loop reads the limit from.
    assert "self.command_size_limits['MAIL'] += 26" in inspect.getsource(SMTP.smtp_EHLO)
    assert "self.command_size_limits[command]" in inspect.getsource(SMTP._handle_client)
    table = SMTP.command_size_limits
    assert isinstance(table, collections.defaultdict)
    assert table.default_factory is not None and table.default_factory() == SMTP.command_size_limit
