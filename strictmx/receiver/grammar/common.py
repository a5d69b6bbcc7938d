"""What every grammar shares: a command's `Refusal` and an understood `Envelope`, the
RFC 3461 / 1870 / 4954 parameter value checks (xtext, DSN), address literals, and
client text made printable as Postfix quotes it."""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

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


# == RFC 3461 / 1870 / 4954 parameter values ==============================================

# xtext (RFC 3461 §4): '+' and two hex digits; Postfix's xtext_unquote also takes
# lower-case hex digits and any other octet as itself.
_XTEXT_PLUS = re.compile(r"\+(?![0-9A-Fa-f]{2})")
XTEXT_RFC = re.compile(r"(?:[!-*,-<>-~]|\+[0-9A-F]{2})+")
_NOTIFY_WORDS = frozenset({"SUCCESS", "FAILURE", "DELAY"})
DIGITS = re.compile(r"[0-9]+")


def _xtext_unquote(text: str) -> str | None:
    """Postfix's xtext_unquote: the decoded text, or None on a bad '+' escape."""
    if _XTEXT_PLUS.search(text):
        return None
    return re.sub(r"\+([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), text)


def notify_ok(value: str) -> bool:
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


DSN_CHECK = {
    "RET": lambda value: value.upper() in ("FULL", "HDRS"),
    "ENVID": _envid_ok,
    "NOTIFY": notify_ok,
    "ORCPT": _orcpt_ok,
}
DSN_KEY = {
    "RET": "dsn_ret_syntax",
    "ENVID": "dsn_envid_syntax",
    "NOTIFY": "dsn_notify_syntax",
    "ORCPT": "dsn_orcpt_syntax",
}


def literal_ok(inner: str, *, general: bool) -> bool:
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


def ascii_verb(line: bytes) -> tuple[str, bytes] | Refusal:
    """A line's verb, upper case, and its argument's octets, split at the first space;
    bad_syntax for an empty line or a verb that is not ASCII (RFC 5321 §2.4)."""
    if not line:
        return Refusal("bad_syntax")
    verb_bytes, _, arg_bytes = line.partition(b" ")
    try:
        return verb_bytes.upper().decode("ascii"), arg_bytes
    except UnicodeDecodeError:
        return Refusal("bad_syntax")
