"""The `aiosmtpd` grammar: aiosmtpd 1.4's checks in its order (aiosmtpd/smtp.py:
smtp_MAIL, smtp_RCPT, smtp_VRFY, _getaddr, _getparams), today's wire for the default
persona. aiosmtpd itself is not imported: its path parser is the email package's."""

from __future__ import annotations

import functools
from email._header_value_parser import get_addr_spec, get_angle_addr

from .common import DSN_CHECK, DSN_KEY, Envelope, Refusal, ascii_verb

# The checks and their order are aiosmtpd 1.4's, so the wire is as it was when aiosmtpd
# answered these commands itself. Keys whose aiosmtpd text depends on HELO vs EHLO get
# their own key (`*_syntax_esmtp`: aiosmtpd adds " [SP <mail-parameters>]").


def split(line: bytes, smtputf8: bool) -> tuple[str, str | None] | Refusal:
    """The verb is ASCII; the argument too unless the persona offers SMTPUTF8, under
    which aiosmtpd 1.4 keeps any byte (as a surrogate, for `printable` to show)."""
    split = ascii_verb(line)
    if isinstance(split, Refusal):
        return split
    verb, arg_bytes = split
    if not arg_bytes:
        return verb, None
    if smtputf8:
        return verb, str(arg_bytes.strip(), encoding="utf-8", errors="surrogateescape")
    try:
        text = str(arg_bytes.strip(), encoding="ascii")
    except UnicodeDecodeError:
        return Refusal("not_ascii")
    return verb, text


def mail(
    arg: str | None,
    extended: bool,
    nested: bool,
    smtputf8: bool,
    size_limit: int | None,
    dsn: bool,
) -> Envelope | Refusal:
    syntax = _MAIL_SYNTAX[extended]
    parsed = _aiosmtpd_path(arg, "FROM:", extended, syntax, _MAIL_BAD_ADDRESS)
    if isinstance(parsed, Refusal):
        return parsed
    address, options = parsed
    if nested:
        return Refusal("mail_nested")
    params = _aiosmtpd_params(options)
    if params is None:
        return syntax
    if params.pop("BODY", "7BIT") not in ("7BIT", "8BITMIME"):
        return Refusal("body_syntax")
    utf8 = params.pop("SMTPUTF8", False)
    if not isinstance(utf8, bool):
        return Refusal("smtputf8_syntax")
    if utf8 and not smtputf8:
        return Refusal("smtputf8_disabled")
    size = params.pop("SIZE", None)
    if size:
        if isinstance(size, bool) or not size.isdigit():
            return syntax
        if size_limit and int(size) > size_limit:
            return Refusal("size_too_big")
    if dsn:  # aiosmtpd knows no DSN; a persona speaking it may offer DSN all the same
        refusal = _dsn_params(params, ("RET", "ENVID"))
        if refusal is not None:
            return refusal
    if params:
        return Refusal("param_unknown", {"param": next(iter(params))})
    return Envelope(address, options, utf8)


def rcpt(arg: str | None, extended: bool, smtputf8: bool, dsn: bool) -> Envelope | Refusal:
    syntax = _RCPT_SYNTAX[extended]
    parsed = _aiosmtpd_path(arg, "TO:", extended, syntax, _RCPT_BAD_ADDRESS)
    if isinstance(parsed, Refusal):
        return parsed
    address, options = parsed
    params = _aiosmtpd_params(options)
    if params is None:
        return syntax
    if dsn:
        refusal = _dsn_params(params, ("NOTIFY", "ORCPT"))
        if refusal is not None:
            return refusal
    if params:
        return Refusal("rcpt_param_unknown", {"param": next(iter(params))})
    return Envelope(address, options)


def vrfy(arg: str) -> str | Refusal:
    if parse_path(arg)[0] is None:
        return Refusal("vrfy_bad_address", {"arg": arg})
    return arg


# Built once: these functions run for every MAIL and RCPT.
_MAIL_SYNTAX = {False: Refusal("mail_syntax"), True: Refusal("mail_syntax_esmtp")}
_RCPT_SYNTAX = {False: Refusal("rcpt_syntax"), True: Refusal("rcpt_syntax_esmtp")}
_MAIL_BAD_ADDRESS = Refusal("mail_bad_address")
_RCPT_BAD_ADDRESS = Refusal("rcpt_bad_address")


def _aiosmtpd_path(
    arg: str | None, keyword: str, extended: bool, syntax: Refusal, bad_address: Refusal
) -> tuple[str, list[str]] | Refusal:
    if arg is None or arg[: len(keyword)].upper() != keyword:
        return syntax
    address, rest = parse_path(arg[len(keyword) :].strip())
    if address is None:
        return bad_address
    if not address or (rest and not extended):
        return syntax
    return address, (rest or "").upper().split()


def _aiosmtpd_params(options: list[str]) -> dict[str, str | bool] | None:
    """RFC 1869 `keyword[=value]` parameters; None when one is malformed."""
    params: dict[str, str | bool] = {}
    for option in options:
        name, eq, value = option.partition("=")
        if not name.isalnum() or (eq and not value):
            return None
        params[name] = value if eq else True
    return params


def _dsn_params(params: dict[str, str | bool], names: tuple[str, ...]) -> Refusal | None:
    """Take RFC 3461's parameters `names` out of `params`, or the refusal of a bad one."""
    for name in names:
        if name in params:
            value = params.pop(name)
            if isinstance(value, bool) or not DSN_CHECK[name](value):
                return Refusal(DSN_KEY[name])
    return None


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
