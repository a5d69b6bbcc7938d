"""Command syntax answered in dialect keys: today's parser, its refusals named by situation.

command_syntax.py parses command lines, MAIL/RCPT arguments and VRFY with aiosmtpd 1.4's
rules and answers with aiosmtpd's reply texts. The transport needs the situation instead
(a `Refusal`: a dialect reply key and its placeholder values), so that the persona's
dialect words the reply. This module maps each text to its key; it goes away when
command_syntax.py returns `Refusal`s itself, with the same shape as here.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import NamedTuple

from . import command_syntax as syntax
from .command_syntax import Envelope

_NO_FIELDS: Mapping[str, str] = {}


class Refusal(NamedTuple):
    """A refused command: the dialect's reply key, its placeholders, whether to close."""

    key: str
    fields: Mapping[str, str] = _NO_FIELDS
    close: bool = False


#: aiosmtpd's texts (command_syntax.py) -> the situation each answers.
_KEYS = {
    syntax.LINE_TOO_LONG: "line_too_long",
    syntax.BAD_SYNTAX: "bad_syntax",
    syntax.NOT_ASCII: "not_ascii",
    "501 Syntax: MAIL FROM: <address>": "mail_syntax",
    "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]": "mail_syntax_esmtp",
    "503 Error: nested MAIL command": "mail_nested",
    "501 Error: BODY can only be one of 7BIT, 8BITMIME": "body_syntax",
    "501 Error: SMTPUTF8 takes no arguments": "smtputf8_syntax",
    "501 Error: SMTPUTF8 disabled": "smtputf8_disabled",
    "552 Error: message size exceeds fixed maximum message size": "size_too_big",
    "555 MAIL FROM parameters not recognized or not implemented": "param_unknown",
    "501 Syntax: RCPT TO: <address>": "rcpt_syntax",
    "501 Syntax: RCPT TO: <address> [SP <mail-parameters>]": "rcpt_syntax_esmtp",
    "555 RCPT TO parameters not recognized or not implemented": "rcpt_param_unknown",
    "501 Syntax: VRFY <address>": "vrfy_syntax",
    "252 Cannot VRFY user, but will accept message and attempt delivery": "vrfy_ok",
}
#: command_syntax.split_command's refusals (texts) -> their keys; the transport calls it
#: itself, since it runs for every line.
LINE_KEYS = {syntax.LINE_TOO_LONG: "line_too_long", syntax.BAD_SYNTAX: "bad_syntax"}
LINE_KEYS[syntax.NOT_ASCII] = "not_ascii"
#: MAIL and RCPT parameters today's parser knows; the first other one is the unknown one.
_KNOWN_PARAMS = ("SIZE", "BODY", "SMTPUTF8")
#: Refusals about one parameter, which they quote (`{param}`).
_QUOTING = frozenset(
    {"param_unknown", "rcpt_param_unknown", "body_syntax", "smtputf8_syntax", "smtputf8_disabled"}
)
#: DSN parameters (RFC 3461 §4): accepted, not interpreted, where the persona offers DSN.
_DSN_MAIL = ("RET=", "ENVID=")
_DSN_RCPT = ("NOTIFY=", "ORCPT=")


def mail_argument(
    arg: str | None,
    *,
    extended: bool,
    nested: bool,
    smtputf8: bool,
    size_limit: int | None,
    dsn: bool,
) -> Envelope | Refusal:
    kept, dsn_params = _without(arg, _DSN_MAIL) if dsn and arg else (arg, [])
    parsed = syntax.mail_argument(
        kept, extended=extended, nested=nested, smtputf8=smtputf8, size_limit=size_limit
    )
    if isinstance(parsed, str):
        return _refusal(parsed, arg, "mail_bad_address")
    if dsn_params:  # the DSN parameters are the client's too: kept with the others
        return Envelope(parsed.address, parsed.options + dsn_params, parsed.smtputf8)
    return parsed


def rcpt_argument(arg: str | None, *, extended: bool, dsn: bool) -> Envelope | Refusal:
    kept, dsn_params = _without(arg, _DSN_RCPT) if dsn and arg else (arg, [])
    parsed = syntax.rcpt_argument(kept, extended=extended)
    if isinstance(parsed, str):
        return _refusal(parsed, arg, "rcpt_bad_address")
    if dsn_params:
        return Envelope(parsed.address, parsed.options + dsn_params)
    return parsed


def vrfy_argument(arg: str | None) -> str | Refusal:
    """The address to quote in VRFY's reply, or its refusal."""
    reply = syntax.vrfy_reply(arg)
    if reply.startswith("502 "):
        return Refusal("vrfy_bad_address", {"arg": arg or ""})
    if reply.startswith("252 "):
        return syntax.parse_path(arg or "")[0] or arg or ""
    return Refusal(_KEYS[reply])


@functools.lru_cache(maxsize=256)
def _refusal(text: str, arg: str | None, bad_address: str) -> Refusal:
    if text.startswith("553 "):
        return Refusal(bad_address)
    key = _KEYS[text]
    if key in _QUOTING:
        return Refusal(key, {"param": _param(arg or "", key)})
    return Refusal(key)


def _param(arg: str, key: str) -> str:
    """The parameter a refusal is about, as the client wrote it (Postfix quotes it)."""
    for option in arg.split()[1:]:
        name = option.partition("=")[0].upper()
        if key == "body_syntax" and name == "BODY":
            return option
        if key.startswith("smtputf8") and name == "SMTPUTF8":
            return option
        if key.endswith("param_unknown") and name not in _KNOWN_PARAMS:
            return option
    return ""


def _without(arg: str, names: tuple[str, ...]) -> tuple[str, list[str]]:
    """`arg` without the parameters named (not its first word, the path), and those."""
    words = arg.split(" ")
    taken = [w.upper() for w in words[1:] if w.upper().startswith(names)]
    if not taken:
        return arg, []
    return " ".join(w for n, w in enumerate(words) if n == 0 or w.upper() not in taken), taken
