"""The `rfc5321` grammar: RFC 5321 §4.1.2's Path strictly, with the parameters of
RFC 1870 (SIZE), RFC 6152 (BODY), RFC 6531 (SMTPUTF8), RFC 3461 (RET, ENVID, NOTIFY,
ORCPT) and RFC 4954 (AUTH)."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Literal

from .common import DIGITS, DSN_CHECK, DSN_KEY, XTEXT_RFC, Envelope, Refusal, ascii_verb, literal_ok


def split(line: bytes, smtputf8: bool) -> tuple[str, str | None] | Refusal:
    """An ASCII line (RFC 5321 §2.4); under SMTPUTF8 the argument may be UTF-8 (RFC 6531
    §3.3), the verb stays ASCII."""
    split = ascii_verb(line)
    if isinstance(split, Refusal):
        return split
    verb, arg_bytes = split
    if not arg_bytes:
        return verb, None
    try:
        text = str(arg_bytes.strip(), encoding="utf-8" if smtputf8 else "ascii")
    except UnicodeDecodeError:
        return Refusal("not_ascii")
    return verb, text


def vrfy(arg: str) -> str | Refusal:
    # RFC 5321 §4.1.1.6: VRFY SP String; any string may name a user or mailbox.
    return arg


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
        return mailbox if literal_ok(domain[1:-1], general=True) else None
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
                or not DSN_CHECK[name](value)
                or (name == "ENVID" and not XTEXT_RFC.fullmatch(value))
            ):
                return Refusal(DSN_KEY[name])
        elif kind == "size" and not (eq and DIGITS.fullmatch(value) and len(value) <= 20):
            return Refusal("size_syntax")
        elif kind == "body" and value.upper() not in ("7BIT", "8BITMIME"):
            return Refusal("body_syntax")
        elif kind == "smtputf8" and eq:
            return Refusal("smtputf8_syntax")
        elif kind == "auth" and not (value == "<>" or XTEXT_RFC.fullmatch(value)):
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


def rcpt(arg: str | None, extended: bool, smtputf8: bool, dsn: bool) -> Envelope | Refusal:
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
