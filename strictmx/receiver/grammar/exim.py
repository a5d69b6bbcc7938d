"""The `exim` grammar: Exim 4.96's smtp_in.c and parse.c (`MAIL FROM:` one keyword,
options taken off the end of the line, what is left parsed as an RFC 822 address whose
defects Exim names), recorded live from a private Exim 4.96
(tests/unit/test_command_syntax_exim.py)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import NamedTuple

from .common import DIGITS, Envelope, Refusal, notify_ok

# `MAIL FROM:` is one keyword, ESMTP options are taken off the end of the line after EHLO
# only, and anything Exim cannot use is left in the address, whose parser then names the
# defect. Every refusal carries `arg`
# (the operand as Exim quotes it) and `detail` (its parser's words), so the dialect's
# reply can be "501 {arg}: {detail}".

_EXIM_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+")
_EXIM_LABEL_ASCII = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_EXIM_LABEL_UTF8 = re.compile(r"[A-Za-z0-9\u0080-\U0010ffff][A-Za-z0-9\u0080-\U0010ffff-]*")


def split(line: bytes, smtputf8: bool) -> tuple[str, str | None] | Refusal:
    # smtp_in.c: a verb it does not know (an 8-bit one included) is unrecognized; the
    # argument may hold any octet, SMTPUTF8 or not (recorded: NOOP 0xFF -> 250 OK).
    # A line that starts with white space has no verb Exim knows (recorded: "  NOOP").
    verb_bytes, _, arg_bytes = line.rstrip().partition(b" ")
    if not verb_bytes or verb_bytes.strip() != verb_bytes:
        return Refusal("bad_syntax")
    try:
        verb = verb_bytes.upper().decode("ascii")
    except UnicodeDecodeError:
        return Refusal("not_ascii")
    arg = arg_bytes.strip().decode("utf-8", errors="surrogateescape")
    return verb, arg or None


def vrfy(arg: str) -> str | Refusal:
    # Exim parses VRFY's argument as a recipient and names the defect alone
    # (recorded: `VRFY <a b@x>` -> 501 "@" or "." expected after "a").
    parse = _exim_address(arg, null_ok=False, utf8=True)
    if parse.address is None:
        return Refusal("vrfy_bad_address", {"arg": arg, "detail": parse.detail})
    return arg


class _EximParse(NamedTuple):
    address: str | None  # None: refused, with `detail`
    detail: str = ""


def _exim_skip(text: str, i: int) -> int:
    """Past white space and (nested) comments, as parse.c's skip_comment."""
    n = len(text)
    while i < n:
        if text[i].isspace():
            i += 1
        elif text[i] == "(":
            depth = 0
            while i < n:
                if text[i] == "\\":
                    i += 1
                elif text[i] == "(":
                    depth += 1
                elif text[i] == ")":
                    depth -= 1
                    if not depth:
                        break
                i += 1
            i += 1
        else:
            break
    return i


def _exim_local_part(text: str, i: int) -> tuple[int, str, str | None]:
    """parse.c read_local_part: words and dots; (index, local part, error or None)."""
    local = ""
    n = len(text)
    while True:
        i = _exim_skip(text, i)
        if i < n and text[i] == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                return i, local, "unmatched doublequote in local part"
            local += text[i : j + 1]
            i = j + 1
        elif i < n and text[i] == ".":
            local += "."
            i += 1
            continue
        else:
            match = _EXIM_ATEXT.match(text, i)
            if match is None:
                return i, local, None
            local += match.group()
            i = match.end()
        i = _exim_skip(text, i)
        if i >= n or text[i] in "@>":
            return i, local, None
        if text[i] != ".":
            return i, local, f'"@" or "." expected after "{local}"'


def _exim_domain(text: str, i: int, utf8: bool) -> tuple[int, str, str | None]:
    """parse.c read_domain: labels of letters, digits and hyphens (not first), no domain
    literals (allow_domain_literals is off), U-labels only under SMTPUTF8."""
    i = _exim_skip(text, i)
    if i < len(text) and text[i] == "[":
        return i, "", "domain literals not allowed"
    label = _EXIM_LABEL_UTF8 if utf8 else _EXIM_LABEL_ASCII
    labels: list[str] = []
    while True:
        match = label.match(text, i)
        if match is None:
            return i, "", "domain missing or malformed"
        labels.append(match.group())
        i = match.end()
        if i < len(text) and text[i] == ".":
            i += 1
            continue
        return i, ".".join(labels), None


@functools.lru_cache(maxsize=4096)
def _exim_address(text: str, *, null_ok: bool, utf8: bool) -> _EximParse:
    """parse_extract_address on an operand: the address, or None and Exim's words."""
    n = len(text)
    i = _exim_skip(text, 0)
    bracket = i < n and text[i] == "<"
    if not bracket:
        angle = _exim_phrase_angle(text)
        if angle is not None:  # `Name <addr>`: the phrase goes
            i, bracket = angle, True
    if bracket:
        i = _exim_skip(text, i + 1)
        if i < n and text[i] == "@":  # a source route: @a,@b: goes
            colon = text.find(":", i)
            if colon < 0:
                return _EximParse(None, "no local part")
            i = _exim_skip(text, colon + 1)
        if i < n and text[i] == ">":
            if not null_ok:
                return _EximParse(None, "missing or malformed local part")
            return _exim_tail(text, _exim_skip(text, i + 1), "")
    i, local, error = _exim_local_part(text, i)
    if error is not None:
        return _EximParse(None, error)
    if not local:
        if i < n and text[i] == "@":
            return _EximParse(None, "no local part")
        return _EximParse(None, "missing or malformed local part")
    address = local
    if i < n and text[i] == "@":
        i, domain, error = _exim_domain(text, i + 1, utf8)
        if error is not None:
            return _EximParse(None, error)
        address += "@" + domain
    i = _exim_skip(text, i)
    if bracket:
        if i >= n:
            return _EximParse(None, "'>' missing at end of address")
        if text[i] == ">":
            i = _exim_skip(text, i + 1)
    return _exim_tail(text, i, address)


def _exim_phrase_angle(text: str) -> int | None:
    """Where `<` opens the route-addr of `phrase <addr>`, outside quotes; else None."""
    quoted = False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch == "<" and not quoted:
            return i
    return None


def _exim_tail(text: str, i: int, address: str) -> _EximParse:
    if i < len(text):
        return _EximParse(None, f"malformed address: {text[i : i + 32]} may not follow {text[:i]}")
    return _EximParse(address)


def _exim_options(
    operand: str, takes: Mapping[str, Callable[[str, bool], bool]], *, rcpt: bool
) -> tuple[str, list[tuple[str, str, bool]], bool]:
    """smtp_in.c extract_option, repeated: options taken off the end of the operand
    while each is `NAME=value` (NAME letters only) or a bare word, after white space,
    and the command `takes` it. Returns the operand left, the options taken (name,
    value, had '='), and whether one was put back (extraction stops there)."""
    taken: list[tuple[str, str, bool]] = []
    text = operand.rstrip()
    while True:
        v = len(text) - 1
        while v > 0 and text[v] != "=" and not text[v].isspace():
            if text[v] == '"':
                v -= 1
                while v > 0 and text[v] != '"':
                    v -= 1
            v -= 1
        if v <= 0:
            return text, taken, False
        if text[v] == "=":
            n = v
            while n > 0 and text[n - 1].isalpha():
                n -= 1
            if n <= 0 or not text[n - 1].isspace():
                return text, taken, False
            name, value, eq, cut = text[n:v], text[v + 1 :], True, n - 1
        else:
            name = value = text[v + 1 :]
            eq, cut = False, v
        check = takes.get(name.upper())
        if check is None or not check(value, eq):
            # Put back: MAIL restores the space; RCPT's restore leaves '=' where a bare
            # word's space was (recorded: `RCPT TO:<a b@x>` is taken as <a=b@x>).
            glue = "=" if rcpt and not eq else text[cut]
            return text[:cut] + glue + text[cut + 1 :], taken, True
        taken.append((name.upper(), value, eq))
        text = text[:cut].rstrip()


# The options MAIL and RCPT take off the line, and in which form (a bare word has no
# '='). Recorded: `SIZE` and `SIZE=abc` are taken and ignored, `BODY` and `BODY=9BIT`
# refused, `SMTPUTF8=yes` left as junk; RET and ENVID taken even without DSN; NOTIFY
# and ORCPT only when DSN is offered (else junk).
_EXIM_MAIL: dict[str, Callable[[str, bool], bool]] = {
    "SIZE": lambda value, eq: True,
    "BODY": lambda value, eq: True,
    "SMTPUTF8": lambda value, eq: not eq,
    "AUTH": lambda value, eq: eq,
    "RET": lambda value, eq: eq,
    "ENVID": lambda value, eq: eq,
}
_EXIM_RCPT: dict[str, Callable[[str, bool], bool]] = {
    "NOTIFY": lambda value, eq: eq,
    "ORCPT": lambda value, eq: eq,
}
_EXIM_NONE: dict[str, Callable[[str, bool], bool]] = {}


def _exim_refusal(key: str, operand: str, parse: _EximParse) -> Refusal:
    return Refusal(key, {"arg": operand, "detail": parse.detail})


def _exim_option(option: tuple[str, str, bool]) -> str:
    name, value, eq = option
    return f"{name}={value}" if eq else name


def mail(
    arg: str | None,
    extended: bool,
    nested: bool,
    smtputf8: bool,
    size_limit: int | None,
    dsn: bool,
) -> Envelope | Refusal:
    if nested:  # refused before the argument is read
        return Refusal("mail_nested")
    if arg is None or arg[:5].upper() != "FROM:":
        return Refusal("unknown_command", {"verb": "MAIL"})  # `MAIL FROM:` is one keyword
    operand = arg[5:].strip()
    if not operand:
        return Refusal("mail_syntax")
    options: list[tuple[str, str, bool]] = []
    put_back = False
    if extended:  # after HELO every option is junk after the address
        operand, options, put_back = _exim_options(operand, _EXIM_MAIL, rcpt=False)
    utf8 = False
    size = 0
    for name, value, _eq in options:
        if name == "BODY" and value.upper() not in ("7BIT", "8BITMIME"):
            return Refusal("body_syntax")
        if name == "SMTPUTF8":
            if not smtputf8:
                return Refusal("smtputf8_disabled")
            utf8 = True
        if name == "RET" and dsn and value.upper() not in ("FULL", "HDRS"):
            return Refusal("dsn_ret_syntax")
        if name == "SIZE" and DIGITS.fullmatch(value):
            size = int(value)
    parse = _exim_address(operand, null_ok=True, utf8=utf8)
    if parse.address is None:
        junk = parse.detail.startswith("malformed address")
        if junk and put_back:
            return _exim_refusal("param_unknown", operand, parse)
        if junk and not extended:
            return _exim_refusal("param_syntax", operand, parse)
        return _exim_refusal("mail_bad_address", operand, parse)
    if parse.address and "@" not in parse.address:
        return _exim_refusal(
            "mail_bad_address", operand, _EximParse(None, "sender address must contain a domain")
        )
    if size_limit and size > size_limit:  # checked once the address is known good
        return Refusal("size_too_big")
    return Envelope(parse.address, [_exim_option(o) for o in reversed(options)], utf8)


def rcpt(arg: str | None, extended: bool, smtputf8: bool, dsn: bool) -> Envelope | Refusal:
    if arg is None or arg[:3].upper() != "TO:":
        return Refusal("unknown_command", {"verb": "RCPT"})  # `RCPT TO:` is one keyword
    operand = arg[3:].strip()
    if not operand:
        return Refusal("rcpt_syntax")
    options: list[tuple[str, str, bool]] = []
    put_back = False
    if extended:
        takes = _EXIM_RCPT if dsn else _EXIM_NONE
        operand, options, put_back = _exim_options(operand, takes, rcpt=True)
    for name, value, _eq in options:
        if name == "NOTIFY" and not notify_ok(value):
            return Refusal("dsn_notify_syntax")
    parse = _exim_address(operand, null_ok=False, utf8=smtputf8)
    if parse.address is None:
        junk = parse.detail.startswith("malformed address")
        if junk and put_back:
            return _exim_refusal("rcpt_param_unknown", operand, parse)
        if junk and not extended:
            return _exim_refusal("param_syntax", operand, parse)
        return _exim_refusal("rcpt_bad_address", operand, parse)
    if "@" not in parse.address and parse.address.lower() != "postmaster":
        return _exim_refusal(
            "rcpt_bad_address", operand, _EximParse(None, "recipient address must contain a domain")
        )
    return Envelope(parse.address, [_exim_option(o) for o in reversed(options)], smtputf8)
