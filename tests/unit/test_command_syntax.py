"""strictmx/receiver/command_syntax.py: lines and arguments understood, or refused with
aiosmtpd 1.4's texts (tests/e2e/test_command_syntax.py compares them on the wire)."""

from __future__ import annotations

import ast
from pathlib import Path

from strictmx.receiver import command_syntax
from strictmx.receiver.command_syntax import (
    Envelope,
    mail_argument,
    rcpt_argument,
    split_command,
    vrfy_reply,
)


def test_a_command_line_is_split_or_refused() -> None:
    # Controls: an ordinary line, one without argument, 8-bit kept under SMTPUTF8.
    assert split_command(b"mail FROM:<a@example.net> ", smtputf8=False) == (
        "MAIL",
        "FROM:<a@example.net>",
    )
    assert split_command(b"NOOP", smtputf8=False) == ("NOOP", None)
    assert split_command(b"NOOP \xc3\xa9\xff", smtputf8=True) == ("NOOP", "\u00e9\udcff")
    # Triggers.
    assert split_command(b"", smtputf8=True) == "500 Error: bad syntax"
    assert split_command(b"\xff\xfe garbage", smtputf8=True) == "500 Error: bad syntax"
    assert split_command(b"NOOP \xc3\xa9", smtputf8=False) == "500 Error: strict ASCII mode"


def mail(arg: str, *, extended: bool = True, nested: bool = False) -> Envelope | str:
    return mail_argument(arg, extended=extended, nested=nested, smtputf8=False, size_limit=100)


def test_mail_arguments() -> None:
    assert mail("FROM:<a@example.net> size=10 BODY=8BITMIME") == Envelope(
        "a@example.net", ["SIZE=10", "BODY=8BITMIME"]
    )
    assert mail("FROM:<a@example.net> SIZE=101") == (
        "552 Error: message size exceeds fixed maximum message size"
    )
    assert mail("FROM:<a@example.net> SMTPUTF8") == "501 Error: SMTPUTF8 disabled"
    assert mail("FROM:<a@example.net>", nested=True) == "503 Error: nested MAIL command"
    assert mail("FROM:<a@example.net> SIZE=1", extended=False) == (
        "501 Syntax: MAIL FROM: <address>"
    )
    assert mail("FROM:<@") == "553 5.1.3 Error: malformed address"


def test_rcpt_arguments_and_vrfy() -> None:
    assert rcpt_argument("TO:<b@example.net>", extended=True) == Envelope("b@example.net", [])
    assert rcpt_argument("TO:<b@example.net> NOTIFY=NEVER", extended=True) == (
        "555 RCPT TO parameters not recognized or not implemented"
    )
    assert rcpt_argument("<b@example.net>", extended=False) == "501 Syntax: RCPT TO: <address>"
    assert vrfy_reply("b@example.net").startswith("252 ")
    assert vrfy_reply("<@") == "502 Could not VRFY <@"
    assert vrfy_reply(None) == "501 Syntax: VRFY <address>"


def test_command_syntax_imports_no_io_and_no_aiosmtpd() -> None:
    tree = ast.parse(Path(command_syntax.__file__).read_text())
    imported = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    forbidden = {"asyncio", "socket", "aiosmtpd", "aiohttp"}
    assert imported and not {m for m in imported if m.lstrip(".").split(".")[0] in forbidden}
