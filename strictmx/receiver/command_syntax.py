"""SMTP command syntax, sans-IO: what a command line, a MAIL or RCPT argument and a
VRFY mean, or the reply refusing them before any policy sees them.

The checks, their order and their reply texts are aiosmtpd 1.4's (aiosmtpd/smtp.py),
which clients and strictmx's tests know; aiosmtpd stays the transport
(strictmx/receiver/smtp.py), strictmx answers the commands.
"""

from __future__ import annotations

import functools
from email._header_value_parser import get_addr_spec, get_angle_addr
from typing import NamedTuple

# -- command lines ---------------------------------------------------------------------
# What the command loop (strictmx/receiver/smtp.py) answers to a line no command sees:
# aiosmtpd 1.4's texts (aiosmtpd/smtp.py, SMTP._handle_client), which clients and the
# tests know.
LINE_TOO_LONG = "500 Command line too long"
BAD_SYNTAX = "500 Error: bad syntax"
NOT_ASCII = "500 Error: strict ASCII mode"
TOO_MANY_UNKNOWN = "502 5.5.1 Too many unrecognized commands, goodbye."
#: Unknown commands in a connection before TOO_MANY_UNKNOWN (aiosmtpd's BOGUS_LIMIT).
UNKNOWN_LIMIT = 5


def unknown_command(verb: str) -> str:
    return f'500 Error: command "{verb}" not recognized'


def split_command(line: bytes, *, smtputf8: bool) -> tuple[str, str | None] | str:
    """A command line without its end: (VERB, argument or None), or the reply refusing
    it. Verbs are ASCII (RFC 5321 §2.4); an argument is UTF-8 under SMTPUTF8, its
    undecodable bytes kept (surrogateescape), else ASCII (RFC 6531 §3.2)."""
    if not line:
        return BAD_SYNTAX
    verb_bytes, _, arg_bytes = line.partition(b" ")
    try:
        verb = verb_bytes.upper().decode("ascii")
    except UnicodeDecodeError:
        return BAD_SYNTAX
    if not arg_bytes:
        return verb, None
    if smtputf8:
        return verb, str(arg_bytes.strip(), encoding="utf-8", errors="surrogateescape")
    try:
        return verb, str(arg_bytes.strip(), encoding="ascii", errors="strict")
    except UnicodeDecodeError:
        return NOT_ASCII


# -- MAIL, RCPT and VRFY arguments ----------------------------------------------------------
# The checks and their reply texts are aiosmtpd 1.4's (aiosmtpd/smtp.py: smtp_MAIL,
# smtp_RCPT, smtp_VRFY, _getaddr, _getparams), in the same order, so the wire is as it
# was when aiosmtpd answered these commands itself; strictmx's own replies (the
# policies', `_OK_MAIL`, ...) come after the argument is understood.


class Envelope(NamedTuple):
    """A MAIL or RCPT argument understood: the path and its parameters (upper case)."""

    address: str
    options: list[str]
    smtputf8: bool = False


def mail_argument(
    arg: str | None, *, extended: bool, nested: bool, smtputf8: bool, size_limit: int | None
) -> Envelope | str:
    """`FROM:<path> [params]`: the envelope, or the reply line refusing it."""
    syntax_error = "501 Syntax: MAIL FROM: <address>" + (
        " [SP <mail-parameters>]" if extended else ""
    )
    parsed = _path_argument(arg, "FROM:", extended, syntax_error)
    if isinstance(parsed, str):
        return parsed
    address, options = parsed
    if nested:
        return "503 Error: nested MAIL command"
    params = _params(options)
    if params is None:
        return syntax_error
    if params.pop("BODY", "7BIT") not in ("7BIT", "8BITMIME"):
        return "501 Error: BODY can only be one of 7BIT, 8BITMIME"
    utf8 = params.pop("SMTPUTF8", False)
    if not isinstance(utf8, bool):
        return "501 Error: SMTPUTF8 takes no arguments"
    if utf8 and not smtputf8:
        return "501 Error: SMTPUTF8 disabled"
    size = params.pop("SIZE", None)
    if size:
        if isinstance(size, bool) or not size.isdigit():
            return syntax_error
        if size_limit and int(size) > size_limit:
            return "552 Error: message size exceeds fixed maximum message size"
    if params:
        return "555 MAIL FROM parameters not recognized or not implemented"
    return Envelope(address, options, utf8)


def rcpt_argument(arg: str | None, *, extended: bool) -> Envelope | str:
    """`TO:<path> [params]`: the envelope, or the reply line refusing it (no RCPT
    parameter is known)."""
    syntax_error = "501 Syntax: RCPT TO: <address>" + (
        " [SP <mail-parameters>]" if extended else ""
    )
    parsed = _path_argument(arg, "TO:", extended, syntax_error)
    if isinstance(parsed, str):
        return parsed
    address, options = parsed
    params = _params(options)
    if params is None:
        return syntax_error
    if params:
        return "555 RCPT TO parameters not recognized or not implemented"
    return Envelope(address, options)


def vrfy_reply(arg: str | None) -> str:
    """VRFY's reply: no address is ever confirmed (RFC 5321 §3.5.3's 252)."""
    if not arg:
        return "501 Syntax: VRFY <address>"
    if parse_path(arg)[0] is None:
        return "502 Could not VRFY " + arg
    return "252 Cannot VRFY user, but will accept message and attempt delivery"


def _path_argument(
    arg: str | None, keyword: str, extended: bool, syntax_error: str
) -> tuple[str, list[str]] | str:
    if arg is None or arg[: len(keyword)].upper() != keyword:
        return syntax_error
    address, rest = parse_path(arg[len(keyword) :].strip())
    if address is None:
        return "553 5.1.3 Error: malformed address"
    if not address or (rest and not extended):
        return syntax_error
    return address, (rest or "").upper().split()


def _params(options: list[str]) -> dict[str, str | bool] | None:
    """RFC 1869 `keyword[=value]` parameters; None when one is malformed."""
    params: dict[str, str | bool] = {}
    for option in options:
        name, eq, value = option.partition("=")
        if not name.isalnum() or (eq and not value):
            return None
        params[name] = value if eq else True
    return params


#: The longest local part a path may have (RFC 5321 §4.5.3.1.1; aiosmtpd's
#: local_part_limit, which strictmx leaves at its default: no limit).
LOCAL_PART_LIMIT = 0


@functools.lru_cache(maxsize=4096)
def parse_path(arg: str, local_part_limit: int = LOCAL_PART_LIMIT) -> tuple[str | None, str | None]:
    """MAIL/RCPT's `<path> params` as aiosmtpd parses it: (address, rest), (None, None)
    when unparsable or the local part is over the limit (0: no limit).

    The email package's parser is not total: on some truncated paths (`<@`, `"`, `0@[`,
    `0@[<TAB>`) it raises IndexError, AttributeError or UnboundLocalError. It is a pure
    function of the text, so here any exception it raises means a malformed address.
    """
    if not arg:
        return "", ""
    try:
        parse = get_angle_addr if arg.lstrip().startswith("<") else get_addr_spec
        token, rest = parse(arg)
        address: str = token.addr_spec
    except Exception:  # HeaderParseError, and the parser's own bugs (see above)
        return None, None
    if local_part_limit and len(address.rpartition("@")[0]) > local_part_limit:
        return None, None
    return address, rest
