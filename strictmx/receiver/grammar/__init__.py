"""SMTP command syntax, sans-IO: what a command line, a MAIL or RCPT argument and a
VRFY mean, or a `Refusal` naming the persona's reply before any policy sees them.

A refusal is a dialect reply key (strictmx/receiver/data/dialects/*.yaml) and the
values of its placeholders, never a text: the same defect is `501 5.1.7 Bad sender
address syntax` from Postfix and `553 5.1.3 Error: malformed address` from aiosmtpd.

Each grammar is what one family's receiver accepts, one module each:

- `aiosmtpd` (aiosmtpd.py): aiosmtpd 1.4's checks in its order, today's wire for the
  default persona;
- `postfix` (postfix.py): Postfix 3.7 smtpd, recorded live from Postfix 3.7.11;
- `rfc5321` (rfc5321.py): RFC 5321 §4.1.2's Path strictly, with the parameters of the
  ESMTP extensions strictmx offers;
- `exim` (exim.py): Exim 4.96's smtp_in.c and parse.c, recorded live from Exim 4.96.

What they share (`Refusal`, `Envelope`, xtext and DSN value checks, address literals,
printable client text) is in common.py. This module is the interface: each function
below hands the command to the persona's grammar.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal, get_args

from . import aiosmtpd, exim, postfix, rfc5321
from .aiosmtpd import parse_path
from .common import HELO_NEUTER, Envelope, Refusal, neutered

__all__ = [
    "GRAMMARS",
    "HELO_NEUTER",
    "Envelope",
    "Grammar",
    "Refusal",
    "mail_argument",
    "neutered",
    "parse_path",
    "rcpt_argument",
    "split_command",
    "vrfy_argument",
]

Grammar = Literal["aiosmtpd", "postfix", "rfc5321", "exim"]
GRAMMARS: tuple[Grammar, ...] = get_args(Grammar)

_Split = Callable[[bytes, bool], tuple[str, str | None] | Refusal]
_Mail = Callable[[str | None, bool, bool, bool, int | None, bool], Envelope | Refusal]
_Rcpt = Callable[[str | None, bool, bool, bool], Envelope | Refusal]
_Vrfy = Callable[[str], str | Refusal]

# One lookup per command: these run for every line a client sends.
_SPLIT: Mapping[str, _Split] = {
    "aiosmtpd": aiosmtpd.split,
    "postfix": postfix.split,
    "rfc5321": rfc5321.split,
    "exim": exim.split,
}
_MAIL: Mapping[str, _Mail] = {
    "aiosmtpd": aiosmtpd.mail,
    "postfix": postfix.mail,
    "rfc5321": rfc5321.mail,
    "exim": exim.mail,
}
_RCPT: Mapping[str, _Rcpt] = {
    "aiosmtpd": aiosmtpd.rcpt,
    "postfix": postfix.rcpt,
    "rfc5321": rfc5321.rcpt,
    "exim": exim.rcpt,
}
_VRFY: Mapping[str, _Vrfy] = {
    "aiosmtpd": aiosmtpd.vrfy,
    "postfix": postfix.vrfy,
    "rfc5321": rfc5321.vrfy,
    "exim": exim.vrfy,
}


def split_command(
    line: bytes, *, grammar: Grammar, smtputf8: bool
) -> tuple[str, str | None] | Refusal:
    """A command line without its end: (VERB, argument or None), or its refusal.

    `smtputf8`: the persona offers SMTPUTF8. Under it a line must be UTF-8 (Postfix
    checks the whole line, RFC 6531 §3.3 the argument); without it aiosmtpd and the RFC
    want ASCII (RFC 5321 §2.4) while Postfix takes any byte. Undecodable bytes that are
    let through are kept as surrogates (surrogateescape), for `printable` to show as '?'.
    """
    return _SPLIT[grammar](line, smtputf8)


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
    return _MAIL[grammar](arg, extended, nested, smtputf8, size_limit, dsn)


def rcpt_argument(
    arg: str | None, *, grammar: Grammar, extended: bool, smtputf8: bool, dsn: bool
) -> Envelope | Refusal:
    """`TO:<path> [params]`: the envelope, or its refusal.

    `smtputf8`: the transaction is an SMTPUTF8 one (the MAIL said SMTPUTF8 to a persona
    offering it): only then may the domain be a U-label (RFC 6531 §3.3, Postfix's
    smtpd_check_addr). `dsn`: the persona offers DSN."""
    return _RCPT[grammar](arg, extended, smtputf8, dsn)


def vrfy_argument(arg: str | None, *, grammar: Grammar) -> str | Refusal:
    """VRFY's argument: the address its reply quotes, or its refusal (whether VRFY is
    enabled at all is the dialect's, decided before this)."""
    if not arg:
        return Refusal("vrfy_syntax")
    return _VRFY[grammar](arg)
