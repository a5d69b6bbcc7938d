"""The `postfix` grammar: Postfix 3.7 smtpd (smtpd_token.c's tokenizer, extract_addr and
smtpd_check_addr, mail_cmd/rcpt_cmd's parameters), recorded live from Postfix 3.7.11
(tests/unit/test_command_syntax_postfix.py holds the probes and its answers)."""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

from .common import DIGITS, DSN_CHECK, DSN_KEY, Envelope, Refusal, literal_ok

# Past this Postfix's off_cvt_string overflows ("552 5.3.4 Message size exceeds file
# system imposed limit").
_OFF_MAX = 2**63 - 1


def split(line: bytes, smtputf8: bool) -> tuple[str, str | None] | Refusal:
    # smtpd.c smtpd_proto: with smtputf8_enable the whole line must be UTF-8 ("500 5.5.2
    # Error: bad UTF-8 syntax"), even a HELO, octets after a NUL included; then
    # smtpd_token splits the line as a C string, so it ends at its first NUL, at ASCII
    # white space only (ISSPACE: a 0x1c or a U+00A0 is part of a word), white space
    # before the verb skipped; no word at all is "500 5.5.2 Error: bad syntax".
    # Recorded live: "\0\1\2", "\0NOOP", " \0" -> bad syntax; "NOOP\0junk" -> 250;
    # "HELO \0x" -> 501 Syntax: HELO hostname; "NOOP\0\xff" -> bad UTF-8 syntax;
    # "HELO\x1cx", "HELO\xc2\xa0x" -> command not recognized; "HELO\x0bx" -> 250.
    if smtputf8 and not line.isascii():
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return Refusal("not_ascii")
    nul = line.find(b"\0")
    if nul >= 0:
        line = line[:nul]
    parts = line.split(None, 1)  # bytes: ASCII white space, as ISSPACE
    if not parts:
        return Refusal("bad_syntax")
    verb = parts[0].decode("utf-8", errors="surrogateescape").upper()
    if len(parts) == 1:
        return verb, None
    arg = parts[1].rstrip()
    return verb, arg.decode("utf-8", errors="surrogateescape") if arg else None


def vrfy(arg: str) -> str | Refusal:
    # vrfy_cmd joins its words and takes them as one recipient; the 252 quotes the
    # argument as sent. An empty address is refused (REJECT_EMPTY_ADDR).
    address = _postfix_address(" ".join(t.text for t in _tokens(arg)), utf8=True)
    if not address:
        return Refusal("vrfy_bad_address", {"arg": arg})
    return arg


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
        return literal_ok(domain[1:-1], general=False)
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
            if not DIGITS.fullmatch(upper[5:]):
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


def rcpt(arg: str | None, extended: bool, smtputf8: bool, dsn: bool) -> Envelope | Refusal:
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
    if name in seen or not DSN_CHECK[name](value):
        return Refusal(DSN_KEY[name])
    seen.add(name)
    return None
