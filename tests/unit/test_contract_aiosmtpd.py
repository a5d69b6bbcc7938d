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
import inspect
import re
from pathlib import Path

import aiosmtpd
from aiosmtpd.smtp import SMTP, Envelope

from strictmx.receiver import smtp as strict_smtp
from strictmx.receiver.smtp import StrictSMTP, _parse_path

#: Every private name of aiosmtpd, asyncio or the email package that smtp.py uses, and why.
PRIVATE = {
    # aiosmtpd.smtp.SMTP
    "_smtp_methods": "the command table: wrapped to route every command (and XCLIENT)",
    "_cb_client_connected": "passed on when the recording StreamReader is swapped in",
    "_reader": "the StreamReader DATA is read from (smtp_data.read_message)",
    "_writer": "written directly by the timeout reply, before aiosmtpd closes",
    "_timeout_cb": "overridden: Postfix's 421 timeout reply before the close",
    "_getaddr": "overridden: the same MAIL/RCPT path parse, remembered",
    # asyncio.StreamReader
    "_buffer": "plaintext left in the reader when STARTTLS completes (RFC 3207 §4.2)",
    # the email package
    "_header_value_parser": "get_angle_addr/get_addr_spec, aiosmtpd's own path parser",
}

#: Names smtp.py defines itself (its own helpers and attributes): not internals of others.
_OWN = re.compile(
    r"_(write|send_step|send_reply|conn|env|record|hook_reply|held|greeted|proxied|protocol|"
    r"now|lines|junk|close|rcpts|ok|in_data|flush|ehlo|reply_open|may_xclient|hello|greet|"
    r"ended|render|wire_lines|one_line|parse_path|on_[a-z]+|journal_verdict|end_session|command|begin_session|"
    r"aiosmtpd_greeting|handlers|flush_lines|control|reply_head|hooks|commands|recording_reader|"
    r"internal_error(_close)?|aiosmtpd_names)"
)


def test_every_private_name_smtp_py_uses_is_listed() -> None:
    source = Path(strict_smtp.__file__).read_text()
    used = {m for m in re.findall(r"\b(_[a-z][a-z_]*)\b", source) if not _OWN.fullmatch(m)}
    assert used == set(PRIVATE), (
        f"unlisted: {sorted(used - set(PRIVATE))}; no longer used: {sorted(set(PRIVATE) - used)}"
    )


def test_the_aiosmtpd_release_is_one_these_contracts_were_written_for() -> None:
    # 1.4.x is what was read; a new minor release may move any of the names below.
    assert aiosmtpd.__version__.startswith("1.4."), aiosmtpd.__version__


def test_the_command_table_is_a_dict_looked_up_with_get() -> None:
    server = SMTP(object())
    table = server._smtp_methods
    assert isinstance(table, dict)
    assert {"HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "VRFY"} <= set(table)
    assert all(callable(method) for method in table.values())
    # StrictSMTP's `_Commands` routes through `.get`: that is how the loop looks commands up.
    assert "self._smtp_methods.get(" in inspect.getsource(SMTP._handle_client)


def test_the_reader_and_writer_come_from_the_client_connected_callback() -> None:
    params = list(inspect.signature(SMTP._cb_client_connected).parameters)
    assert params == ["self", "reader", "writer"]
    source = inspect.getsource(SMTP._cb_client_connected)
    assert "self._reader = reader" in source and "self._writer = writer" in source
    # The command loop reads its lines from that reader with readuntil (the recording
    # reader hooks exactly that call).
    assert "await self._reader.readuntil()" in inspect.getsource(SMTP._handle_client)


def test_the_timeout_callback_takes_nothing_and_closes_the_transport() -> None:
    assert list(inspect.signature(SMTP._timeout_cb).parameters) == ["self"]
    assert "self.transport.close()" in inspect.getsource(SMTP._timeout_cb)
    assert StrictSMTP._timeout_cb is not SMTP._timeout_cb


def test_getaddr_is_what_mail_and_rcpt_parse_paths_with_and_ours_agrees() -> None:
    assert list(inspect.signature(SMTP._getaddr).parameters) == ["self", "arg"]
    assert "self._getaddr(" in inspect.getsource(SMTP.smtp_MAIL)
    assert "self._getaddr(" in inspect.getsource(SMTP.smtp_RCPT)
    server = SMTP(object())
    for arg in ("<a@example.org>", "<a@example.org> SIZE=10", "a@example.org", "<>", "<@", '"'):
        ours = _parse_path(arg, server.local_part_limit)
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
    from email._header_value_parser import get_addr_spec, get_angle_addr

    token, rest = get_angle_addr("<a@example.org> SIZE=1")
    assert token.addr_spec == "a@example.org" and rest.strip() == "SIZE=1"
    token, rest = get_addr_spec("a@example.org")
    assert token.addr_spec == "a@example.org" and rest == ""


def test_the_replies_smtp_py_recognises_by_their_text() -> None:
    # push() adds strictmx's EHLO keywords before aiosmtpd's last line, drops its AUTH
    # line, and runs the UNKNOWN stage on the reply to an unknown command (a 500).
    ehlo = inspect.getsource(SMTP.smtp_EHLO)
    assert "'250 HELP'" in ehlo and '"250-AUTH "' in ehlo
    assert "500 Error: command" in inspect.getsource(SMTP._handle_client)
    # Envelope() is what a fresh transaction starts from (after XCLIENT, an error).
    assert Envelope().rcpt_tos == [] and Envelope().mail_from is None
