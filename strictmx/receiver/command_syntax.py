"""SMTP command syntax, sans-IO: what a command line, a MAIL or RCPT argument and a
VRFY mean, or a `Refusal` naming the persona's reply before any policy sees them.

A refusal is a dialect reply key (strictmx/receiver/data/dialects/*.yaml) and the
values of its placeholders, never a text: the same defect is `501 5.1.7 Bad sender
address syntax` from Postfix and `553 5.1.3 Error: malformed address` from aiosmtpd.

Each grammar is what one family's receiver accepts:

- `aiosmtpd`: aiosmtpd 1.4's checks in its order (aiosmtpd/smtp.py: smtp_MAIL,
  smtp_RCPT, smtp_VRFY, _getaddr, _getparams), today's wire for the default persona;
- `postfix`: Postfix 3.7 smtpd (smtpd_token.c's tokenizer, extract_addr and
  smtpd_check_addr, mail_cmd/rcpt_cmd's parameters), recorded live from Postfix 3.7.11
  (tests/unit/test_command_syntax_postfix.py holds the probes and its answers);
- `rfc5321`: RFC 5321 §4.1.2's Path strictly, with the parameters of RFC 1870 (SIZE),
  RFC 6152 (BODY), RFC 6531 (SMTPUTF8), RFC 3461 (RET, ENVID, NOTIFY, ORCPT) and
  RFC 4954 (AUTH);
- `exim`: Exim 4.96's smtp_in.c and parse.c (`MAIL FROM:` one keyword, options taken
  off the end of the line, what is left parsed as an RFC 822 address whose defects
  Exim names), recorded live from a private Exim 4.96
  (tests/unit/test_command_syntax_exim.py).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Mapping
from email._header_value_parser import get_addr_spec, get_angle_addr
from types import MappingProxyType
from typing import Literal, NamedTuple, get_args

Grammar = Literal["aiosmtpd", "postfix", "rfc5321", "exim"]
GRAMMARS: tuple[Grammar, ...] = get_args(Grammar)

_NO_FIELDS: Mapping[str, str] = MappingProxyType({})


class Refusal(NamedTuple):
    """A command refused: the dialect reply key, its placeholder values (raw client text;
    the reply side makes them printable) and whether the connection closes after it."""

    key: str
    fields: Mapping[str, str] = _NO_FIELDS
    close: bool = False


class Envelope(NamedTuple):
    """A MAIL or RCPT argument understood: the path (in the grammar's internal form:
    Postfix's unquoted, without source route) and its parameters (upper case)."""

    address: str
    options: list[str]
    smtputf8: bool = False


# -- command lines ---------------------------------------------------------------------


def split_command(
    line: bytes, *, grammar: Grammar, smtputf8: bool
) -> tuple[str, str | None] | Refusal:
    """A command line without its end: (VERB, argument or None), or its refusal.

    `smtputf8`: the persona offers SMTPUTF8. Under it a line must be UTF-8 (Postfix
    checks the whole line, RFC 6531 §3.3 the argument); without it aiosmtpd and the RFC
    want ASCII (RFC 5321 §2.4) while Postfix takes any byte. Undecodable bytes that are
    let through are kept as surrogates (surrogateescape), for `printable` to show as '?'.
    """
    if grammar == "postfix":
        return _split_postfix(line, smtputf8)
    if grammar == "exim":
        return _split_exim(line)
    if not line:
        return Refusal("bad_syntax")
    verb_bytes, _, arg_bytes = line.partition(b" ")
    try:
        verb = verb_bytes.upper().decode("ascii")
    except UnicodeDecodeError:
        return Refusal("bad_syntax")
    if not arg_bytes:
        return verb, None
    if smtputf8 and grammar == "aiosmtpd":
        # aiosmtpd 1.4 keeps any byte under SMTPUTF8.
        return verb, str(arg_bytes.strip(), encoding="utf-8", errors="surrogateescape")
    try:
        text = str(arg_bytes.strip(), encoding="utf-8" if smtputf8 else "ascii")
    except UnicodeDecodeError:
        return Refusal("not_ascii")
    return verb, text


def _split_exim(line: bytes) -> tuple[str, str | None] | Refusal:
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


def _split_postfix(line: bytes, smtputf8: bool) -> tuple[str, str | None] | Refusal:
    # smtpd.c: with smtputf8_enable the whole line must be UTF-8 ("500 5.5.2 Error: bad
    # UTF-8 syntax"), even a HELO; whitespace before the verb is skipped.
    if smtputf8:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return Refusal("not_ascii")
    else:
        text = line.decode("utf-8", errors="surrogateescape")
    parts = text.split(None, 1)
    if not parts:
        return Refusal("bad_syntax")
    verb = parts[0].upper()
    arg = parts[1].strip() if len(parts) > 1 else ""
    return verb, arg or None


# -- MAIL, RCPT and VRFY arguments -------------------------------------------------------


def mail_argument(
    arg: str | None,
    *,
    grammar: Grammar,
    extended: bool,
    nested: bool,
    smtputf8: bool,
    size_limit: int | None,
    dsn: bool,
) -> Envelope | Refusal:
    """`FROM:<path> [params]`: the envelope, or its refusal.

    `extended`: the session said EHLO; `nested`: a transaction is open; `smtputf8`,
    `dsn`: the persona offers them; `size_limit`: its SIZE (None or 0: no limit)."""
    if grammar == "aiosmtpd":
        return _mail_aiosmtpd(arg, extended, nested, smtputf8, size_limit, dsn)
    if nested:  # Postfix and the RFC grammars refuse it before reading the argument
        return Refusal("mail_nested")
    if grammar == "postfix":
        return _mail_postfix(arg, smtputf8, size_limit, dsn)
    if grammar == "exim":
        return _mail_exim(arg, extended, smtputf8, size_limit, dsn)
    return _mail_rfc(arg, extended, smtputf8, size_limit, dsn)


def rcpt_argument(
    arg: str | None, *, grammar: Grammar, extended: bool, smtputf8: bool, dsn: bool
) -> Envelope | Refusal:
    """`TO:<path> [params]`: the envelope, or its refusal.

    `smtputf8`: the transaction is an SMTPUTF8 one (the MAIL said SMTPUTF8 to a persona
    offering it): only then may the domain be a U-label (RFC 6531 §3.3, Postfix's
    smtpd_check_addr). `dsn`: the persona offers DSN."""
    if grammar == "aiosmtpd":
        return _rcpt_aiosmtpd(arg, extended, dsn)
    if grammar == "postfix":
        return _rcpt_postfix(arg, smtputf8, dsn)
    if grammar == "exim":
        return _rcpt_exim(arg, extended, smtputf8, dsn)
    return _rcpt_rfc(arg, extended, smtputf8, dsn)


def vrfy_argument(arg: str | None, *, grammar: Grammar) -> str | Refusal:
    """VRFY's argument: the address its reply quotes, or its refusal (whether VRFY is
    enabled at all is the dialect's, decided before this)."""
    if not arg:
        return Refusal("vrfy_syntax")
    if grammar == "aiosmtpd":
        if parse_path(arg)[0] is None:
            return Refusal("vrfy_bad_address", {"arg": arg})
        return arg
    if grammar == "postfix":
        # vrfy_cmd joins its words and takes them as one recipient; the 252 quotes the
        # argument as sent. An empty address is refused (REJECT_EMPTY_ADDR).
        address = _postfix_address(" ".join(t.text for t in _tokens(arg)), utf8=True)
        if not address:
            return Refusal("vrfy_bad_address", {"arg": arg})
        return arg
    if grammar == "exim":
        # Exim parses VRFY's argument as a recipient and names the defect alone
        # (recorded: `VRFY <a b@x>` -> 501 "@" or "." expected after "a").
        parse = _exim_address(arg, null_ok=False, utf8=True)
        if parse.address is None:
            return Refusal("vrfy_bad_address", {"arg": arg, "detail": parse.detail})
        return arg
    # RFC 5321 §4.1.1.6: VRFY SP String; any string may name a user or mailbox.
    return arg


# -- printable client text ---------------------------------------------------------------

#: What Postfix's smtpd neuters in a HELO name it quotes (smtpd.c, neuter() after
#: neutered()): `HELO mail@example.com` comes back as `<mail?example.com>`.
HELO_NEUTER = ' <>()\\";@'


@functools.lru_cache(maxsize=1024)
def neutered(text: str, neuter: str = "", *, utf8: bool = True) -> str:
    """Client text as Postfix quotes it in a reply (printable_except(): '?' for an ASCII
    control character, DEL, an undecodable byte and each character of `neuter`).

    With `utf8` (Postfix with smtputf8_enable) a valid non-ASCII character is kept;
    without it each of its octets is a '?', as Postfix 3.7.11 answers a UTF-8 HELO
    when SMTPUTF8 is off (`<??.example.net>` for é.example.net, recorded live)."""
    if text.isascii() and text.isprintable() and not any(ch in neuter for ch in text):
        return text
    out: list[str] = []
    for ch in text:
        if ch in neuter or ch < " " or ch == "\x7f" or "\ud800" <= ch <= "\udfff":
            out.append("?")
        elif ch.isascii() or utf8:
            out.append(ch)
        else:
            out.append("?" * len(ch.encode("utf-8")))
    return "".join(out)


# == aiosmtpd ==============================================================================
# The checks and their order are aiosmtpd 1.4's, so the wire is as it was when aiosmtpd
# answered these commands itself. Keys whose aiosmtpd text depends on HELO vs EHLO get
# their own key (`*_syntax_esmtp`: aiosmtpd adds " [SP <mail-parameters>]").


def _mail_aiosmtpd(
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


def _rcpt_aiosmtpd(arg: str | None, extended: bool, dsn: bool) -> Envelope | Refusal:
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
            if isinstance(value, bool) or not _DSN_CHECK[name](value):
                return Refusal(_DSN_KEY[name])
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


# == RFC 3461 / 1870 / 4954 parameter values ==============================================

# xtext (RFC 3461 §4): '+' and two hex digits; Postfix's xtext_unquote also takes
# lower-case hex digits and any other octet as itself.
_XTEXT_PLUS = re.compile(r"\+(?![0-9A-Fa-f]{2})")
_XTEXT_RFC = re.compile(r"(?:[!-*,-<>-~]|\+[0-9A-F]{2})+")
_NOTIFY_WORDS = frozenset({"SUCCESS", "FAILURE", "DELAY"})
_DIGITS = re.compile(r"[0-9]+")


def _xtext_unquote(text: str) -> str | None:
    """Postfix's xtext_unquote: the decoded text, or None on a bad '+' escape."""
    if _XTEXT_PLUS.search(text):
        return None
    return re.sub(r"\+([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), text)


def _notify_ok(value: str) -> bool:
    words = value.upper().split(",")
    if words == ["NEVER"]:
        return True
    return all(word in _NOTIFY_WORDS for word in words)


def _orcpt_ok(value: str) -> bool:
    kind, semi, coded = value.partition(";")
    if not semi or not kind:
        return False
    if kind.lower() == "utf-8":  # RFC 6533 utf-8-addr-xtext: \x{HEX} escapes
        return re.fullmatch(r"(?:[^\\]|\\x\{[0-9A-Fa-f]{1,6}\})*", coded) is not None
    return _xtext_unquote(coded) is not None


def _envid_ok(value: str) -> bool:
    decoded = _xtext_unquote(value)
    return decoded is not None and decoded != "" and decoded.isascii() and decoded.isprintable()


_DSN_CHECK = {
    "RET": lambda value: value.upper() in ("FULL", "HDRS"),
    "ENVID": _envid_ok,
    "NOTIFY": _notify_ok,
    "ORCPT": _orcpt_ok,
}
_DSN_KEY = {
    "RET": "dsn_ret_syntax",
    "ENVID": "dsn_envid_syntax",
    "NOTIFY": "dsn_notify_syntax",
    "ORCPT": "dsn_orcpt_syntax",
}
# Past this Postfix's off_cvt_string overflows ("552 5.3.4 Message size exceeds file
# system imposed limit").
_OFF_MAX = 2**63 - 1


# == postfix ==============================================================================


class _Token(NamedTuple):
    text: str
    error: bool  # a '<' or '"' left open (smtpd_token.c's SMTPD_TOK_ERROR)


@functools.lru_cache(maxsize=4096)
def _tokens(arg: str) -> tuple[_Token, ...]:
    """smtpd_token.c: words split at white space, except inside `<...>` and `"..."`
    (nested, with backslash escapes), and `FROM:` / `TO:` ending a word of their own
    (which is why `MAIL FROM: <a@x>` and `MAIL FROM:a@x` are both accepted)."""
    out: list[_Token] = []
    word: list[str] = []
    error = False
    i, n = 0, len(arg)
    while i < n:
        ch = arg[i]
        i += 1
        if ch.isspace():
            if word:
                out.append(_Token("".join(word), error))
                word, error = [], False
        elif ch in '<"':
            i, closed = _quoted(arg, i, ch, word)
            error = error or not closed
        elif ch == ":":
            word.append(ch)
            if "".join(word).lower() in ("to:", "from:"):
                out.append(_Token("".join(word), error))
                word, error = [], False
        else:
            word.append(ch)
            if ch == "\\" and i < n:
                word.append(arg[i])
                i += 1
    if word:
        out.append(_Token("".join(word), error))
    return tuple(out)


def _quoted(arg: str, i: int, start: str, word: list[str]) -> tuple[int, bool]:
    """smtpd_token.c smtp_quoted: from after `start` to its closing partner, appended to
    `word`; (next index, closed)."""
    stack = [">" if start == "<" else '"']
    word.append(start)
    n = len(arg)
    while i < n:
        ch = arg[i]
        i += 1
        word.append(ch)
        if ch == "\\":
            if i >= n:
                break
            word.append(arg[i])
            i += 1
        elif ch == stack[-1]:
            stack.pop()
            if not stack:
                return i, True
        elif ch == '"':
            stack.append('"')
        elif ch == "<" and stack[-1] == ">":
            stack.append(">")
    return i, False


# RFC 822 lexical tokens, as Postfix's tok822 scanner sees an address: comments
# (dropped), quoted strings, domain literals, specials and atoms.
_LEX = re.compile(
    r"""(?P<space>\s+)
      | (?P<quoted>"(?:[^"\\]|\\.)*")
      | (?P<literal>\[(?:[^\]\\]|\\.)*\])
      | (?P<special>[<>@,;:.()\]])
      | (?P<atom>(?:[^\s"<>@,;:.()\[\]\\]|\\.)+)
      | (?P<bad>.)""",
    re.VERBOSE | re.DOTALL,
)


def _drop_comments(text: str) -> str | None:
    """The text without its (nested) RFC 822 comments; None if one is left open."""
    if "(" not in text:
        return text
    out: list[str] = []
    depth = 0
    quoted = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            if depth == 0:
                out.append(text[i : i + 2])
            i += 2
            continue
        if quoted:
            quoted = ch != '"'
            out.append(ch)
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
            if not depth:
                out.append(" ")  # a comment separates words like white space
        elif depth == 0:
            quoted = ch == '"'
            out.append(ch)
        i += 1
    return None if depth else "".join(out)


@functools.lru_cache(maxsize=4096)
def _postfix_address(token: str, *, utf8: bool) -> str | None:
    """extract_addr + smtpd_check_addr on one command word: the address in Postfix's
    internal (unquoted) form, "" for the null path, None when Postfix answers `Bad
    sender/recipient address syntax`. `utf8`: the transaction is SMTPUTF8 (a U-label
    domain is checked as such, else the domain must be ASCII)."""
    text = _drop_comments(token)
    if text is None:
        return None
    lexed: list[tuple[str, str]] = []
    for match in _LEX.finditer(text):
        kind = match.lastgroup or "bad"
        if kind == "space":
            lexed.append(("space", " "))
        elif kind == "bad":
            return None
        elif not (kind == "special" and match.group() in "<>"):
            lexed.append((kind, match.group()))  # brackets are ignored (extract_addr)
    # A source route (`@a,@b:`) or a group name (`a:`) before the last ':' goes, as
    # tok822 does; anything else there (`a@ex:ample.net`) is not an address.
    colons = [n for n, (kind, value) in enumerate(lexed) if value == ":" and kind == "special"]
    if colons:
        head = [t for t in lexed[: colons[-1]] if t[0] != "space"]
        route = bool(head) and head[0][1] == "@"
        if not route and any(kind not in ("atom", "quoted") for kind, _ in head):
            return None
        lexed = lexed[colons[-1] + 1 :]
    parts: list[tuple[str, str]] = []
    for kind, value in lexed:
        if kind == "space":
            continue
        if kind == "special" and value in ",;:":
            return None  # a list of addresses, or a group
        if kind != "special" and parts and parts[-1][0] != "special":
            return None  # two words side by side: `<a b@x>`, `<a@x>junk`
        parts.append((kind, _internal(kind, value)))
    address = "".join(value for _, value in parts)
    if "@" not in address:
        return address
    return address if _postfix_domain_ok(address.rpartition("@")[2], utf8) else None


def _internal(kind: str, value: str) -> str:
    if kind == "quoted":
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    if kind == "atom" and "\\" in value:
        return re.sub(r"\\(.)", r"\1", value)
    return value


_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?")


def _postfix_domain_ok(domain: str, utf8: bool) -> bool:
    """smtpd_check_addr: a domain literal must hold an address (valid_mailhost_literal),
    a name must pass valid_hostname (or valid_utf8_hostname under SMTPUTF8)."""
    if domain.startswith("["):
        return _literal_ok(domain[1:-1], general=False)
    if utf8 and not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return False
    if domain.endswith("."):
        domain = domain[:-1]
    if not domain or len(domain) > 255:
        return False
    labels = domain.split(".")
    if any(len(label) > 63 or not _HOST_LABEL.fullmatch(label) for label in labels):
        return False
    return not all(ch.isdigit() or ch == "." for ch in domain)


def _literal_ok(inner: str, *, general: bool) -> bool:
    tag, colon, rest = inner.partition(":")
    try:
        if not colon:
            if inner.count(".") != 3 or not all(p.isdigit() for p in inner.split(".")):
                return False
            ipaddress.IPv4Address(inner)
        elif tag.upper() == "IPV6":
            ipaddress.IPv6Address(rest)
        else:
            # RFC 5321 §4.1.3 General-address-literal: Standardized-tag ":" 1*dcontent
            return (
                general and re.fullmatch(r"[A-Za-z0-9-]*[A-Za-z0-9]:[!-Z^-~]+", inner) is not None
            )
    except ValueError:
        return False
    return True


def _mail_postfix(
    arg: str | None, smtputf8: bool, size_limit: int | None, dsn: bool
) -> Envelope | Refusal:
    words = _tokens(arg or "")
    if len(words) < 2 or words[0].text.lower() != "from:":
        return Refusal("mail_syntax")
    params = [w.text for w in words[2:]]
    utf8 = smtputf8 and any(p.upper() == "SMTPUTF8" for p in params)
    address = None if words[1].error else _postfix_address(words[1].text, utf8=utf8)
    if address is None:
        return Refusal("mail_bad_address")
    size = 0
    seen: set[str] = set()
    for param in params:
        upper = param.upper()
        name = upper.partition("=")[0]
        if upper in ("BODY=7BIT", "BODY=8BITMIME") or upper.startswith("AUTH="):
            continue  # AUTH= is ignored when no AUTH was offered (smtpd.c)
        if upper.startswith("SIZE="):
            if not _DIGITS.fullmatch(upper[5:]):
                return Refusal("size_syntax")
            size = int(upper[5:])
            if size > _OFF_MAX:
                return Refusal("size_overflow")
        elif smtputf8 and upper == "SMTPUTF8":
            continue
        elif name in ("RET", "ENVID") and "=" in upper:
            refusal = _postfix_dsn(name, param.partition("=")[2], dsn, seen)
            if refusal is not None:
                return refusal
        else:
            return Refusal("param_unknown", {"param": param})
    if size_limit and size > size_limit:
        return Refusal("size_too_big")
    return Envelope(address, [p.upper() for p in params], utf8)


def _rcpt_postfix(arg: str | None, smtputf8: bool, dsn: bool) -> Envelope | Refusal:
    words = _tokens(arg or "")
    if len(words) < 2 or words[0].text.lower() != "to:":
        return Refusal("rcpt_syntax")
    address = None if words[1].error else _postfix_address(words[1].text, utf8=smtputf8)
    if not address:  # the null path is not a recipient
        return Refusal("rcpt_bad_address")
    params = [w.text for w in words[2:]]
    seen: set[str] = set()
    for param in params:
        name = param.upper().partition("=")[0]
        if name in ("NOTIFY", "ORCPT") and "=" in param:
            refusal = _postfix_dsn(name, param.partition("=")[2], dsn, seen)
            if refusal is not None:
                return refusal
        else:
            return Refusal("rcpt_param_unknown", {"param": param})
    return Envelope(address, [p.upper() for p in params], smtputf8)


def _postfix_dsn(name: str, value: str, dsn: bool, seen: set[str]) -> Refusal | None:
    # smtpd.c: DSN parameters when DSN is not offered get their own refusal; a second
    # one of the same name is a syntax error like a bad value.
    if not dsn:
        return Refusal("dsn_disabled")
    if name in seen or not _DSN_CHECK[name](value):
        return Refusal(_DSN_KEY[name])
    seen.add(name)
    return None


# == rfc5321 ===============================================================================

_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_SUB_DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"


def _rfc_patterns(utf8: bool) -> tuple[re.Pattern[str], re.Pattern[str]]:
    # RFC 6531 §3.3 adds UTF8-non-ascii to atext, qtext and sub-domain (U-labels).
    extra = r"\u0080-\ud7ff\ue000-\U0010ffff" if utf8 else ""
    atom = f"[{_ATEXT}{extra}]+"
    quoted = rf'"(?:[ !#-\[\]-~{extra}]|\\[ -~])*"'
    local = re.compile(rf"(?:{atom}(?:\.{atom})*|{quoted})")
    label = rf"[A-Za-z0-9{extra}](?:[A-Za-z0-9{extra}-]*[A-Za-z0-9{extra}])?"
    domain = re.compile(rf"{label}(?:\.{label})*")
    return local, domain


_RFC_ASCII = _rfc_patterns(False)
_RFC_UTF8 = _rfc_patterns(True)
_ADL = re.compile(
    rf"@(?:{_SUB_DOMAIN}(?:\.{_SUB_DOMAIN})*)(?:,@{_SUB_DOMAIN}(?:\.{_SUB_DOMAIN})*)*:"
)
_ESMTP_PARAM = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*(?:=[!-<>-~]+)?")


@functools.lru_cache(maxsize=4096)
def _rfc_path(path: str, utf8: bool) -> str | None:
    """RFC 5321 §4.1.2 Path without its brackets: the Mailbox, or None. Lengths per
    §4.5.3.1: local part 64, domain 255, path 256 octets (with the brackets)."""
    if len(path.encode("utf-8", "surrogateescape")) + 2 > 256:
        return None
    route = _ADL.match(path)
    mailbox = path[route.end() :] if route else path
    local_re, domain_re = _RFC_UTF8 if utf8 else _RFC_ASCII
    local, at, domain = mailbox.rpartition("@")
    if not at or not local_re.fullmatch(local) or len(local.encode("utf-8")) > 64:
        return None
    if domain.startswith("[") and domain.endswith("]"):
        return mailbox if _literal_ok(domain[1:-1], general=True) else None
    if not domain_re.fullmatch(domain) or len(domain.encode("utf-8")) > 255:
        return None
    if not domain.isascii():
        try:
            domain.encode("idna")
        except UnicodeError:
            return None
    return mailbox


def _rfc_split(
    arg: str | None, keyword: str, extended: bool
) -> tuple[str, list[str]] | Literal["syntax", "address"]:
    """`KEYWORD:<path>[ SP params]` (no space after the colon: RFC 5321 §4.1.1.2)."""
    if (
        arg is None
        or arg[: len(keyword)].upper() != keyword
        or arg[len(keyword) : len(keyword) + 1] != "<"
    ):
        return "syntax"
    end = arg.find(">", len(keyword))
    if end < 0:
        return "address"
    path, rest = arg[len(keyword) + 1 : end], arg[end + 1 :]
    if rest and not rest.startswith(" "):
        return "syntax"
    params = rest.split(" ")[1:] if rest else []
    if params and (not extended or "" in params):
        return "syntax"  # parameters only after EHLO (RFC 5321 §4.1.1.2), one SP apart
    return path, params


def _rfc_params(
    params: list[str], unknown: str, known: Mapping[str, str], dsn: bool
) -> Refusal | None:
    seen: set[str] = set()
    for param in params:
        if not _ESMTP_PARAM.fullmatch(param):
            return Refusal("param_syntax", {"param": param})
        name, eq, value = param.partition("=")
        name = name.upper()
        if name in seen:  # RFC 1869 §6: a keyword at most once
            return Refusal("param_syntax", {"param": param})
        seen.add(name)
        kind = known.get(name)
        if kind == "dsn" and not dsn:
            kind = None
        if kind is None:
            return Refusal(unknown, {"param": param})
        if kind == "dsn":
            if (
                not eq
                or not _DSN_CHECK[name](value)
                or (name == "ENVID" and not _XTEXT_RFC.fullmatch(value))
            ):
                return Refusal(_DSN_KEY[name])
        elif kind == "size" and not (eq and _DIGITS.fullmatch(value) and len(value) <= 20):
            return Refusal("size_syntax")
        elif kind == "body" and value.upper() not in ("7BIT", "8BITMIME"):
            return Refusal("body_syntax")
        elif kind == "smtputf8" and eq:
            return Refusal("smtputf8_syntax")
        elif kind == "auth" and not (value == "<>" or _XTEXT_RFC.fullmatch(value)):
            return Refusal("param_syntax", {"param": param})
    return None


_MAIL_PARAMS = {
    "SIZE": "size",
    "BODY": "body",
    "SMTPUTF8": "smtputf8",
    "AUTH": "auth",
    "RET": "dsn",
    "ENVID": "dsn",
}
_RCPT_PARAMS = {"NOTIFY": "dsn", "ORCPT": "dsn"}


def _mail_rfc(
    arg: str | None, extended: bool, smtputf8: bool, size_limit: int | None, dsn: bool
) -> Envelope | Refusal:
    split = _rfc_split(arg, "FROM:", extended)
    if split == "syntax":
        return Refusal("mail_syntax")
    if split == "address":
        return Refusal("mail_bad_address")
    path, params = split
    upper = [p.upper() for p in params]
    if "SMTPUTF8" in upper and not smtputf8:
        return Refusal("smtputf8_disabled")
    utf8 = "SMTPUTF8" in upper
    address = "" if path == "" else _rfc_path(path, utf8)
    if address is None:
        return Refusal("mail_bad_address")
    refusal = _rfc_params(params, "param_unknown", _MAIL_PARAMS, dsn)
    if refusal is not None:
        return refusal
    size = next((int(p[5:]) for p in upper if p.startswith("SIZE=")), 0)
    if size_limit and size > size_limit:
        return Refusal("size_too_big")
    return Envelope(address, upper, utf8)


def _rcpt_rfc(arg: str | None, extended: bool, smtputf8: bool, dsn: bool) -> Envelope | Refusal:
    split = _rfc_split(arg, "TO:", extended)
    if split == "syntax":
        return Refusal("rcpt_syntax")
    if split == "address":
        return Refusal("rcpt_bad_address")
    path, params = split
    # RFC 5321 §4.1.1.3: "<Postmaster>" (any case) without a domain is a recipient.
    address = path if path.lower() == "postmaster" else _rfc_path(path, smtputf8)
    if not address:
        return Refusal("rcpt_bad_address")
    refusal = _rfc_params(params, "rcpt_param_unknown", _RCPT_PARAMS, dsn)
    if refusal is not None:
        return refusal
    return Envelope(address, [p.upper() for p in params], smtputf8)


# == exim ==================================================================================
# Exim 4.96's smtp_in.c and parse.c, as recorded live from a private Exim 4.96
# (tests/unit/test_command_syntax_exim.py): `MAIL FROM:` is one keyword, ESMTP options
# are taken off the end of the line after EHLO only, and anything Exim cannot use is
# left in the address, whose parser then names the defect. Every refusal carries `arg`
# (the operand as Exim quotes it) and `detail` (its parser's words), so the dialect's
# reply can be "501 {arg}: {detail}".

_EXIM_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+")
_EXIM_LABEL_ASCII = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_EXIM_LABEL_UTF8 = re.compile(r"[A-Za-z0-9\u0080-\U0010ffff][A-Za-z0-9\u0080-\U0010ffff-]*")


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


def _mail_exim(
    arg: str | None, extended: bool, smtputf8: bool, size_limit: int | None, dsn: bool
) -> Envelope | Refusal:
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
        if name == "SIZE" and _DIGITS.fullmatch(value):
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


def _rcpt_exim(arg: str | None, extended: bool, smtputf8: bool, dsn: bool) -> Envelope | Refusal:
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
        if name == "NOTIFY" and not _notify_ok(value):
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
