"""strictmx/receiver/grammar/: lines and arguments understood, or refused with a
dialect reply key. The aiosmtpd grammar is today's wire (tests/e2e/test_command_syntax.py
compares it with bare aiosmtpd); Postfix's grammar has its own recorded cases
(test_command_syntax_postfix.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strictmx.receiver import grammar as grammar_package
from strictmx.receiver.grammar import (
    GRAMMARS,
    HELO_NEUTER,
    Envelope,
    Grammar,
    Refusal,
    mail_argument,
    neutered,
    rcpt_argument,
    split_command,
    vrfy_argument,
)


def key(result: object) -> str | None:
    return result.key if isinstance(result, Refusal) else None


# -- aiosmtpd: today's behaviour ------------------------------------------------------------


def test_aiosmtpd_command_line_is_split_or_refused() -> None:
    def split(line: bytes, smtputf8: bool) -> object:
        return split_command(line, grammar="aiosmtpd", smtputf8=smtputf8)

    # Controls: an ordinary line, one without argument, 8-bit kept under SMTPUTF8.
    assert split(b"mail FROM:<a@example.net> ", False) == ("MAIL", "FROM:<a@example.net>")
    assert split(b"NOOP", False) == ("NOOP", None)
    assert split(b"NOOP \xc3\xa9\xff", True) == ("NOOP", "\u00e9\udcff")
    # Triggers.
    assert split(b"", True) == Refusal("bad_syntax")
    assert split(b"\xff\xfe garbage", True) == Refusal("bad_syntax")
    assert split(b"NOOP \xc3\xa9", False) == Refusal("not_ascii")


def mail(
    arg: str | None, *, extended: bool = True, nested: bool = False, dsn: bool = False
) -> object:
    return mail_argument(
        arg,
        grammar="aiosmtpd",
        extended=extended,
        nested=nested,
        smtputf8=False,
        size_limit=100,
        dsn=dsn,
    )


def test_aiosmtpd_mail_arguments() -> None:
    assert mail("FROM:<a@example.net> size=10 BODY=8BITMIME") == Envelope(
        "a@example.net", ["SIZE=10", "BODY=8BITMIME"]
    )
    assert mail("FROM:<a@example.net> SIZE=101") == Refusal("size_too_big")
    assert mail("FROM:<a@example.net> SIZE=x") == Refusal("mail_syntax_esmtp")
    assert mail("FROM:<a@example.net> SMTPUTF8") == Refusal("smtputf8_disabled")
    assert mail("FROM:<a@example.net> SMTPUTF8=x") == Refusal("smtputf8_syntax")
    assert mail("FROM:<a@example.net> BODY=BINARYMIME") == Refusal("body_syntax")
    assert mail("FROM:<a@example.net>", nested=True) == Refusal("mail_nested")
    assert mail("FROM:<a@example.net> SIZE=1", extended=False) == Refusal("mail_syntax")
    assert mail("TO:<a@example.net>") == Refusal("mail_syntax_esmtp")
    assert mail("FROM:<@") == Refusal("mail_bad_address")
    assert mail("FROM:<a@example.net> RET=FULL") == Refusal("param_unknown", {"param": "RET"})


def test_aiosmtpd_dsn_parameters_only_when_offered() -> None:
    assert mail("FROM:<a@example.net> RET=HDRS ENVID=x+2B", dsn=True) == Envelope(
        "a@example.net", ["RET=HDRS", "ENVID=X+2B"]
    )
    assert key(mail("FROM:<a@example.net> RET=ALL", dsn=True)) == "dsn_ret_syntax"
    assert key(mail("FROM:<a@example.net> RET=ALL")) == "param_unknown"


def test_aiosmtpd_rcpt_arguments_and_vrfy() -> None:
    def rcpt(arg: str, extended: bool = True, dsn: bool = False) -> object:
        return rcpt_argument(arg, grammar="aiosmtpd", extended=extended, smtputf8=False, dsn=dsn)

    assert rcpt("TO:<b@example.net>") == Envelope("b@example.net", [])
    assert rcpt("TO:<b@example.net> NOTIFY=NEVER") == Refusal(
        "rcpt_param_unknown", {"param": "NOTIFY"}
    )
    assert rcpt("TO:<b@example.net> NOTIFY=NEVER", dsn=True) == Envelope(
        "b@example.net", ["NOTIFY=NEVER"]
    )
    assert rcpt("TO:<b@example.net> NOTIFY=NEVER,DELAY", dsn=True) == Refusal("dsn_notify_syntax")
    assert rcpt("<b@example.net>", extended=False) == Refusal("rcpt_syntax")
    assert rcpt("TO:<@") == Refusal("rcpt_bad_address")
    assert vrfy_argument("b@example.net", grammar="aiosmtpd") == "b@example.net"
    assert vrfy_argument("<@", grammar="aiosmtpd") == Refusal("vrfy_bad_address", {"arg": "<@"})
    assert vrfy_argument(None, grammar="aiosmtpd") == Refusal("vrfy_syntax")


# -- rfc5321 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("grammar", ["rfc5321"])
@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("FROM:<a@example.net>", None),
        ("FROM:<>", None),
        ("FROM:<@relay.example,@b.example:a@example.net>", None),
        ('FROM:<"a b"@example.net>', None),
        ("FROM:<a@[192.0.2.1]>", None),
        ("FROM:<a@[IPv6:2001:db8::1]>", None),
        ("FROM:<a@example.net> SIZE=100 BODY=8BITMIME", None),
        ("FROM: <a@example.net>", "mail_syntax"),  # no space after the colon (§4.1.1.2)
        ("FROM:a@example.net", "mail_syntax"),  # the brackets are not optional
        ("FROM:<a@example.net", "mail_bad_address"),
        ("FROM:<a b@example.net>", "mail_bad_address"),
        ("FROM:<a..b@example.net>", "mail_bad_address"),
        ("FROM:<a@example.net.>", "mail_bad_address"),
        ("FROM:<a@ex_ample.net>", "mail_bad_address"),
        ("FROM:<a@[192.0.2.300]>", "mail_bad_address"),
        ("FROM:<a>", "mail_bad_address"),
        ("FROM:<" + "x" * 65 + "@example.net>", "mail_bad_address"),
        ("FROM:<\u00e9@example.net>", "mail_bad_address"),  # UTF-8 needs SMTPUTF8
        ("FROM:<a@example.net>junk", "mail_syntax"),
        ("FROM:<a@example.net>  SIZE=1", "mail_syntax"),
        ("FROM:<a@example.net> SIZE=1x", "size_syntax"),
        ("FROM:<a@example.net> SIZE=1000", "size_too_big"),
        ("FROM:<a@example.net> BODY=BINARYMIME", "body_syntax"),
        ("FROM:<a@example.net> SMTPUTF8", "smtputf8_disabled"),
        ("FROM:<a@example.net> RET=FULL", "param_unknown"),  # DSN not offered
        ("FROM:<a@example.net> FOO", "param_unknown"),
        ("FROM:<a@example.net> SIZE=1 SIZE=2", "param_syntax"),
        ("FROM:<a@example.net> X=a=b", "param_syntax"),
    ],
)
def test_rfc5321_mail(grammar: Grammar, arg: str, expected: str | None) -> None:
    result = mail_argument(
        arg, grammar=grammar, extended=True, nested=False, smtputf8=False, size_limit=100, dsn=False
    )
    assert key(result) == expected, result


def test_rfc5321_helo_session_smtputf8_and_dsn() -> None:
    def mail(arg: str, **kw: bool) -> object:
        opts = {"extended": True, "nested": False, "smtputf8": False, "dsn": False} | kw
        return mail_argument(arg, grammar="rfc5321", size_limit=None, **opts)

    assert key(mail("FROM:<a@example.net> SIZE=1", extended=False)) == "mail_syntax"
    assert key(mail("FROM:<a@example.net>", extended=False)) is None
    assert key(mail("FROM:<a@example.net>", nested=True)) == "mail_nested"
    utf8 = mail("FROM:<\u00e9@b\u00fccher.example> SMTPUTF8", smtputf8=True)
    assert utf8 == Envelope("\u00e9@b\u00fccher.example", ["SMTPUTF8"], True)
    assert key(mail("FROM:<a@example.net> SMTPUTF8=yes", smtputf8=True)) == "smtputf8_syntax"
    assert key(mail("FROM:<a@example.net> RET=FULL ENVID=a+2Bb", dsn=True)) is None
    assert key(mail("FROM:<a@example.net> ENVID=a=b", dsn=True)) == "param_syntax"
    assert key(mail("FROM:<a@example.net> ENVID=a+zz", dsn=True)) == "dsn_envid_syntax"
    assert key(mail("FROM:<a@example.net> AUTH=<>")) is None
    assert key(mail("FROM:<a@example.net> AUTH=a+2Bb@example.net")) is None


def test_rfc5321_rcpt_and_vrfy() -> None:
    def rcpt(arg: str, dsn: bool = False) -> object:
        return rcpt_argument(arg, grammar="rfc5321", extended=True, smtputf8=False, dsn=dsn)

    assert rcpt("TO:<Postmaster>") == Envelope("Postmaster", [])
    assert rcpt("TO:<b@example.net>") == Envelope("b@example.net", [])
    assert key(rcpt("TO:<>")) == "rcpt_bad_address"
    assert key(rcpt("TO:<b>")) == "rcpt_bad_address"
    assert key(rcpt("TO: <b@example.net>")) == "rcpt_syntax"
    assert key(rcpt("TO:<b@example.net> NOTIFY=NEVER")) == "rcpt_param_unknown"
    assert key(rcpt("TO:<b@example.net> NOTIFY=SUCCESS,DELAY", dsn=True)) is None
    assert key(rcpt("TO:<b@example.net> NOTIFY=NEVER,DELAY", dsn=True)) == "dsn_notify_syntax"
    assert key(rcpt("TO:<b@example.net> ORCPT=rfc822;b+40x", dsn=True)) is None
    assert key(rcpt("TO:<b@example.net> ORCPT=b", dsn=True)) == "dsn_orcpt_syntax"
    assert vrfy_argument("Alice Smith", grammar="rfc5321") == "Alice Smith"
    assert vrfy_argument(None, grammar="rfc5321") == Refusal("vrfy_syntax")


def test_rfc5321_command_lines() -> None:
    assert split_command(b"NOOP \xc3\xa9", grammar="rfc5321", smtputf8=True) == ("NOOP", "\u00e9")
    assert split_command(b"NOOP \xe9", grammar="rfc5321", smtputf8=True) == Refusal("not_ascii")
    assert split_command(b"NOOP \xc3\xa9", grammar="rfc5321", smtputf8=False) == Refusal(
        "not_ascii"
    )
    assert split_command(b"", grammar="rfc5321", smtputf8=False) == Refusal("bad_syntax")


# -- neutered ----------------------------------------------------------------------------------


def test_neutered_neuters_client_text() -> None:
    # Controls: text that is already safe comes back as it is, UTF-8 included.
    assert neutered("mail.example.net") == "mail.example.net"
    assert neutered("a b@example.net") == "a b@example.net"
    assert neutered("\u00e9.example.net") == "\u00e9.example.net"
    # Triggers: controls, DEL and undecodable bytes; the HELO set; UTF-8 when it is off.
    assert neutered("a\tb\x7fc\udce9") == "a?b?c?"
    assert neutered("mail@example.com", HELO_NEUTER) == "mail?example.com"
    assert neutered('a"b<c>(d);e\\f g', HELO_NEUTER) == "a?b?c??d??e?f?g"
    assert neutered("\u00e9.example.net", utf8=False) == "??.example.net"


# Characters that steer the parsers: brackets, quotes, escapes, comments, separators,
# '=' and '+', 8-bit and an undecodable byte (as a surrogate), NUL.
_HOSTILE = st.text(alphabet='<>"\\()[]@,;:. \tAbFROMTO=+-_\u00e9\udce9\x00019', max_size=40)


@settings(max_examples=400, deadline=None)
@given(
    arg=_HOSTILE, grammar=st.sampled_from(GRAMMARS), flags=st.tuples(st.booleans(), st.booleans())
)
def test_every_grammar_answers_any_input_without_raising(
    arg: str, grammar: Grammar, flags: tuple[bool, bool]
) -> None:
    # Bad input gets a refusal, never an exception that could reach the wire.
    extended, offered = flags
    for text in ("FROM:" + arg, "TO:" + arg, arg):
        assert isinstance(
            mail_argument(
                text,
                grammar=grammar,
                extended=extended,
                nested=False,
                smtputf8=offered,
                size_limit=100,
                dsn=offered,
            ),
            (Envelope, Refusal),
        )
        assert isinstance(
            rcpt_argument(text, grammar=grammar, extended=extended, smtputf8=offered, dsn=offered),
            (Envelope, Refusal),
        )
        assert isinstance(vrfy_argument(text, grammar=grammar), (str, Refusal))
        line = ("MAIL " + text).encode("utf-8", "surrogateescape")
        split = split_command(line, grammar=grammar, smtputf8=offered)
        assert isinstance(split, Refusal) or split[0] == "MAIL", split


def test_command_syntax_imports_no_io_and_no_aiosmtpd() -> None:
    # Every module of the package; its own modules (`from .aiosmtpd import`: the
    # grammar named after aiosmtpd, not aiosmtpd) are relative imports, left out.
    imported: set[str] = set()
    for module in Path(grammar_package.__file__).parent.glob("*.py"):
        tree = ast.parse(module.read_text())
        imported |= {
            node.module or ""
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and not node.level
        }
        imported |= {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
    forbidden = {"asyncio", "socket", "aiosmtpd", "aiohttp"}
    assert imported and not {m for m in imported if m.split(".")[0] in forbidden}
