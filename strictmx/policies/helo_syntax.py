"""helo_syntax: is the HELO/EHLO argument a well-formed host name or address literal?"""

from __future__ import annotations

import string
from typing import Any, ClassVar, Literal

from pydantic import Field

from strictmx.receiver.finding import Finding
from strictmx.receiver.grammar import HELO_NEUTER, neutered
from strictmx.receiver.outcome import VERB
from strictmx.receiver.policy import FROM_CATALOGUE, Context, Outcome, Policy, PolicyOptions
from strictmx.receiver.reproduction import Build, Request, literal, other_ip
from strictmx.receiver.session import IPAddress, Session
from strictmx.receiver.verdict import Stage, Verdict
from strictmx.receiver.world.names import a_label, ip_of, public_ip

Mode = Literal["rfc1035", "rfc1123", "postfix", "exim"]

_LETTERS = frozenset(string.ascii_letters)
_DIGITS = frozenset(string.digits)
_LET_DIG = _LETTERS | _DIGITS
_LDH = _LET_DIG | {"-"}
# Postfix valid_hostname.c accepts '_' like a letter ("grr..").
_POSTFIX_CHARS = _LDH | {"_"}
_EXIM_CHARS = _LET_DIG | {".", "-"}

MAX_LABEL = 63  # RFC 1035 §2.3.4; Postfix VALID_LABEL_LEN
MAX_NAME = 253  # 255 octets on the wire, without the length bytes and root
POSTFIX_MAX_NAME = 255  # Postfix VALID_HOSTNAME_LEN counts text characters


class HeloSyntaxOptions(PolicyOptions):
    mode: Mode = Field(
        "rfc1123",
        description="Whose syntax rules to apply: rfc1035, rfc1123, postfix or exim.",
    )
    require_fqdn: bool = Field(
        True, description="The name must contain a dot; address literals are exempt."
    )
    address_literal: Literal["match", "reject", "accept"] = Field(
        "match",
        description="A valid [literal] must equal the client address, is always refused, "
        "or is always accepted.",
    )
    bare_ip: Literal["mode", "reject"] = Field(
        "mode",
        description="An unbracketed IP address follows the mode's rule, or is refused "
        "(Haraka's bare_ip).",
    )
    allow_utf8: bool = Field(
        True,
        description="Accept non-ASCII (U-label) names when MAIL FROM carries SMTPUTF8; "
        "false refuses them at HELO.",
    )
    allow_chars: str = Field(
        "", description="exim mode only: extra characters allowed, as Exim's helo_allow_chars."
    )


class HeloSyntax(Policy[HeloSyntaxOptions]):
    """Refuse a HELO/EHLO argument that is not a well-formed host name or address literal.

    Runs at HELO, on the argument exactly as the client sent it (before aiosmtpd's own
    check), and at MAIL, where a non-ASCII (U-label) name is judged against whether the
    MAIL FROM carried SMTPUTF8.

    Modes (option `mode`):

    - `rfc1035`: every label starts with a letter, ends with a letter or digit and holds
      only letters, digits and hyphens; labels of at most 63 characters, names of at most
      253; no empty label and no trailing dot (RFC 1035 §2.3.1, RFC 5321 §4.1.2 Domain).
    - `rfc1123` (default): as rfc1035, but a label may start with a digit (RFC 1123 §2.1);
      the top-level label must not be all digits, so a dotted quad is not a host name.
    - `postfix`: Postfix's `reject_invalid_helo_hostname` and, with `require_fqdn`,
      `reject_non_fqdn_helo_hostname` (valid_hostname.c, smtpd_check.c): one trailing dot
      is stripped first; letters, digits, '-', '_' and '.'; no empty label; labels of at
      most 63, names of at most 255 characters; no hyphen at either end of a label; a
      name without letters or '_' fails, except that a valid bare IPv4/IPv6 address
      passes the syntax check ("back compat") while still failing the FQDN check (504);
      non-ASCII is always invalid, SMTPUTF8 or not. A refusal delayed to RCPT quotes the
      name neutered, as smtpd stores it (control characters and any of ` <>()\\";@`
      become '?', and each octet of a non-ASCII character too when the receiver does not
      offer SMTPUTF8); one sent at HELO itself quotes it as sent.
    - `exim`: Exim's built-in check_helo (smtp_in.c): letters, digits, '.', '-' and the
      characters of `allow_chars` (Exim's helo_allow_chars), with no label or length
      rules, so a bare IPv4 address passes; non-ASCII is always invalid.

    Other options: `require_fqdn` (the name must contain a dot), `address_literal`
    (`match` accepts only the client's own address, `reject` refuses every literal as
    some receivers do, `accept` takes any valid one), `bare_ip` (`reject` refuses an
    unbracketed address, Haraka's "Invalid address format in HELO") and `allow_utf8`.
    Literals are `[192.0.2.1]` and `[IPv6:2001:db8::1]` (RFC 5321 §4.1.3); Exim also
    takes `[IPv4:...]` and an untagged IPv6 address in brackets. A malformed literal is
    always refused.

    Default replies are Postfix's (smtpd_check.c): `501 5.5.2 <name>: Helo command
    rejected: Invalid name`, `504 5.5.2 <name>: Helo command rejected: need
    fully-qualified hostname`, `501 5.5.2 <[literal]>: Helo command rejected: invalid ip
    address`; a missing argument gets `501 5.5.2 Syntax: HELO hostname`. The literal
    outcomes speak Haraka's helo.checks and the catalogue ("550 HELO/EHLO must not be an
    IP address", seed-09); seed-06, seed-12 and seed-13 are overrides of HELO_INVALID.

    RFC 5321 §2.3.5 and §4.1.4 require an FQDN or, from a host without a name, an
    address literal, so refusing a malformed or unqualified name is allowed. Refusing a
    valid literal is not (HELO_LITERAL_REFUSED), nor is refusing a literal because it is
    not the client's address (HELO_LITERAL_MISMATCH: §4.1.4 forbids refusing when
    verification of the EHLO argument fails); those verdicts say so.
    """

    name = "helo_syntax"
    summary = "HELO/EHLO argument must be a well-formed host name or address literal"
    stages = frozenset({Stage.HELO, Stage.MAIL})
    pure = True  # judged from client, HELO, sender and DNS records alone
    Options = HeloSyntaxOptions
    outcomes: ClassVar[tuple[Outcome, ...]] = (
        Outcome(
            "HELO_MISSING",
            FROM_CATALOGUE,
            "HELO/EHLO was sent without an argument (Postfix helo_cmd/ehlo_cmd).",
            fields={"verb": VERB},
            stage=Stage.HELO,
        ),
        Outcome(
            "HELO_INVALID",
            FROM_CATALOGUE,
            "The name breaks the mode's host name syntax (Postfix reject_invalid_helo_hostname).",
            stage=Stage.HELO,
        ),
        Outcome(
            "HELO_NOT_FQDN",
            FROM_CATALOGUE,
            "The name has no dot, or (postfix mode) is a bare IP address "
            "(Postfix reject_non_fqdn_helo_hostname).",
            stage=Stage.HELO,
        ),
        Outcome(
            "HELO_BAD_LITERAL",
            FROM_CATALOGUE,
            "A bracketed address literal that is not a valid IPv4 or IPv6 address.",
            stage=Stage.HELO,
        ),
        Outcome(
            "HELO_LITERAL_MISMATCH",
            FROM_CATALOGUE,
            "The address literal is not the client's address (Haraka literal_mismatch).",
            rfc_allows=False,
            stage=Stage.HELO,
        ),
        Outcome(
            "HELO_LITERAL_REFUSED",
            FROM_CATALOGUE,
            "Every address literal is refused, as some receivers do (seed-09).",
            rfc_allows=False,
            stage=Stage.HELO,
        ),
        Outcome(
            "HELO_BARE_IP",
            FROM_CATALOGUE,
            "An IP address sent without brackets (Haraka bare_ip).",
            stage=Stage.HELO,
        ),
        Outcome(
            "HELO_UTF8_WITHOUT_SMTPUTF8",
            FROM_CATALOGUE,
            "A U-label name in a session whose MAIL FROM did not ask for SMTPUTF8 "
            "(RFC 6531 §3.3 adds U-labels to the Domain syntax only under SMTPUTF8).",
            stage=Stage.MAIL,
        ),
    )

    @classmethod
    def reproduce(cls, req: Request) -> Build:
        """A HELO its syntax rules refuse for the outcome: the customer's when it is one, else
        a sample."""
        ip = req.identity.client_ip
        outcome = req.entry.outcome
        given = req.fields.get("helo", "")
        options: dict[str, Any] = {}
        fallback = {
            "HELO_INVALID": "mail_relay.example.net",
            "HELO_NOT_FQDN": "mailserver",
            "HELO_BAD_LITERAL": "[192.0.2.300]",
            "HELO_LITERAL_MISMATCH": literal(other_ip(ip)),
            "HELO_LITERAL_REFUSED": literal(ip),
            "HELO_BARE_IP": ip,
        }
        if outcome == "HELO_MISSING":
            verb = req.fields.get("verb", "EHLO").upper()
            verb = verb if verb in ("HELO", "EHLO") else "EHLO"
            return Build(
                case={"script": [verb]},
                bound={"verb": verb},
                at="helo",
                swaks_cannot="swaks always sends a HELO name; the expect case sends a bare " + verb,
            )
        if outcome == "HELO_UTF8_WITHOUT_SMTPUTF8":
            helo = "mäil.example.net"
            ident = req.identity
            return Build(
                case={"helo": helo},
                raw=[
                    f"EHLO {helo}\r\n".encode(),
                    f"MAIL FROM:<{ident.mail_from}>\r\n".encode(),
                ],
                notes=["Python's smtplib cannot send a UTF-8 HELO, so there is no expect case"],
                swaks_cannot=(
                    "swaks sends the HELO as given; try: swaks --helo mäil.example.net ..."
                ),
            )
        if outcome == "HELO_LITERAL_REFUSED":
            options["address_literal"] = "reject"
        elif outcome == "HELO_BARE_IP":
            options["bare_ip"] = "reject"
        elif outcome == "HELO_LITERAL_MISMATCH":
            options["address_literal"] = "match"
        checked = HeloSyntaxOptions.model_validate(options)
        helo = fallback[outcome]
        if given:
            finding = judge(given, checked, ip)
            if finding is not None and finding.outcome == outcome:
                helo = given
        return Build(options=options, case={"helo": helo})

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        helo = session.helo or ""
        if stage is Stage.HELO:
            finding = judge(helo, self.options, session.client.address)
            if finding is None:
                return None
            fields = dict(finding.fields)
            if finding.outcome == "HELO_MISSING":
                fields["verb"] = session.helo_verb or "HELO"
            if self.options.mode == "postfix" and self.delays(ctx):
                # smtpd.c helo_cmd stores the name neutered, and a refusal delayed to RCPT
                # quotes what it stored: `HELO mail@example.com` comes back as
                # <mail?example.com>; without smtputf8_enable each octet of a UTF-8
                # character is a '?' too (<m??il.example.net>). Refused at HELO itself
                # (smtpd_delay_reject = no), the check runs before the name is stored and
                # the reply quotes it as sent (Postfix 3.7.11, all recorded live).
                fields["helo"] = neutered(helo, HELO_NEUTER, utf8=ctx.smtputf8)
            return self.verdict(finding.outcome, stage, session, ctx, finding.reason, **fields)
        # MAIL: only now is it known whether a U-label name came with SMTPUTF8. A name
        # judged bad at HELO already has its verdict there.
        if (
            helo.isascii()
            or session.smtputf8
            or judge(helo, self.options, session.client.address) is not None
        ):
            return None
        return self.verdict(
            "HELO_UTF8_WITHOUT_SMTPUTF8",
            stage,
            session,
            ctx,
            f"{helo!r} has non-ASCII labels but MAIL FROM did not carry SMTPUTF8",
        )


def judge(name: str, options: HeloSyntaxOptions, client_address: str) -> Finding | None:
    """The first defect of a HELO argument, or None; sans-IO, for the HELO stage."""
    if not name.strip():
        return Finding("HELO_MISSING", "HELO/EHLO without a host name or address literal")
    if name.startswith("["):
        return _judge_literal(name, options, client_address)
    ip = _bare_ip(name)
    if ip is not None and options.bare_ip == "reject":
        return Finding(
            "HELO_BARE_IP",
            f"{name!r} is an IP address without brackets; send it as a literal {_literal_form(ip)}",
            {"address": str(ip)},
        )
    if not name.isascii():
        offender = next(ch for ch in name if not ch.isascii())
        if options.mode == "exim":
            return _invalid(f"non-ASCII character {offender!r}: Exim allows only ASCII names")
        if options.mode == "postfix":
            # reject_invalid_helo_hostname is valid_hostname(): ASCII only, SMTPUTF8 or
            # not (Postfix 3.7.11, recorded live: `EHLO é.example.net`, then MAIL with
            # SMTPUTF8, then RCPT -> 501 5.5.2 <é.example.net>: ... Invalid name).
            return _invalid(
                f"non-ASCII character {offender!r}: Postfix takes ASCII host names only, "
                "even under SMTPUTF8"
            )
        if not options.allow_utf8:
            return _invalid(f"non-ASCII character {offender!r}: U-labels are not accepted")
    if options.mode == "exim":
        return _judge_exim(name, options)
    if options.mode == "postfix":
        return _judge_postfix(name, ip, options)
    return _judge_rfc(name, ip, options)


def _invalid(reason: str, **fields: object) -> Finding:
    return Finding("HELO_INVALID", reason, dict(fields))


def _not_fqdn(name: str, require_fqdn: bool) -> Finding | None:
    # Only the root dot at the end does not count: "localhost." is still one label.
    if require_fqdn and "." not in name.rstrip("."):
        return Finding("HELO_NOT_FQDN", f"no dot: {name!r} is not fully qualified")
    return None


def _bare_ip(name: str) -> IPAddress | None:
    if "%" in name:  # a scope id is local to the sender; never a usable HELO
        return None
    try:
        return ip_of(name)
    except ValueError:
        return None


def _literal_form(ip: IPAddress) -> str:
    return f"[{ip}]" if ip.version == 4 else f"[IPv6:{ip}]"


def _judge_literal(name: str, options: HeloSyntaxOptions, client_address: str) -> Finding | None:
    def bad(why: str) -> Finding:
        return Finding("HELO_BAD_LITERAL", f"address literal {name!r} {why}")

    if len(name) < 2 or not name.endswith("]"):
        return bad("has no closing ']'")
    if name == "[]":
        return bad("is empty")
    inner = name[1:-1]
    tag, sep, text = inner.partition(":")
    tag = tag.lower() if sep else ""
    if tag == "ipv6":
        want: int | None = 6
    elif tag == "ipv4" and options.mode == "exim":
        want = 4  # Exim accepts [IPv4:...]; RFC 5321 defines no such tag
    else:
        # RFC 5321 §4.1.3: IPv4 untagged, IPv6 tagged; Exim takes either untagged.
        want, text = (None if options.mode == "exim" else 4), inner
    ip = _bare_ip(text)
    if ip is None and tag == "ipv4":
        return bad("uses the 'IPv4:' tag, which RFC 5321 does not define (only Exim takes it)")
    if ip is None:
        return bad(f"does not hold a valid IP address ({text!r})")
    if want is not None and ip.version != want:
        if want == 4 and ip.version == 6:
            return bad("holds an IPv6 address without the 'IPv6:' tag (RFC 5321 §4.1.3)")
        return bad(f"is tagged IPv{want} but holds an IPv{ip.version} address")
    if options.address_literal == "reject":
        return Finding(
            "HELO_LITERAL_REFUSED",
            f"address literal {name!r} refused: this receiver wants a host name",
            {"address": str(ip)},
        )
    if options.address_literal == "accept":
        return None
    return _literal_match(name, ip, client_address)


def _literal_match(name: str, ip: IPAddress, client_address: str) -> Finding | None:
    try:
        client = ip_of(client_address)
    except ValueError:
        client = None
    if client is not None and public_ip(client) == public_ip(ip):
        return None
    return Finding(
        "HELO_LITERAL_MISMATCH",
        f"address literal {name!r} is not the client's address {client_address}",
        {"address": str(ip), "client_address": client_address},
    )


def _judge_exim(name: str, options: HeloSyntaxOptions) -> Finding | None:
    allowed = _EXIM_CHARS | set(options.allow_chars)
    for ch in name:
        if ch not in allowed:
            return _invalid(
                f"character {ch!r} is not allowed: Exim takes letters, digits, '.', '-'"
                + (f" and {options.allow_chars!r}" if options.allow_chars else ""),
                character=ch,
            )
    return _not_fqdn(name, options.require_fqdn)


def _judge_postfix(name: str, ip: IPAddress | None, options: HeloSyntaxOptions) -> Finding | None:
    # smtpd_check.c dup_if_truncate: one trailing dot goes, "name.." stays and fails.
    core = name[:-1] if len(name) > 1 and name.endswith(".") and name[-2] != "." else name
    if ip is not None:
        if options.require_fqdn:
            # valid_hostname() fails on it, and reject_non_fqdn_helo_hostname needs it.
            return Finding(
                "HELO_NOT_FQDN",
                f"{name!r} is a bare IP address, not a fully-qualified host name; "
                f"send it as a literal {_literal_form(ip)}",
                {"address": str(ip)},
            )
        return None
    labels = _a_labels(core)
    if isinstance(labels, Finding):
        return labels
    for n, (shown, label) in enumerate(labels, 1):
        if not label:
            return _empty_label(name, n)
        bad = next((ch for ch in label if ch not in _POSTFIX_CHARS), None)
        if bad is not None:
            return _bad_char(bad, shown)
        if len(label) > MAX_LABEL:
            return _long_label(n, label)
        hyphen = _end_hyphen(shown)
        if hyphen:
            return hyphen
    ascii_name = ".".join(label for _, label in labels)
    if not any(ch in _LETTERS or ch == "_" for ch in ascii_name):
        return _invalid(f"{name!r} has no letters: an all-numeric name is not a host name")
    if len(ascii_name) > POSTFIX_MAX_NAME:
        return _invalid(
            f"name is {len(ascii_name)} characters, over {POSTFIX_MAX_NAME}",
            length=len(ascii_name),
        )
    return _not_fqdn(core, options.require_fqdn)


def _judge_rfc(name: str, ip: IPAddress | None, options: HeloSyntaxOptions) -> Finding | None:
    if ip is not None:
        return _invalid(
            f"{name!r} is an IP address, not a host name; send it as a literal {_literal_form(ip)}",
            address=str(ip),
        )
    if name.endswith("."):
        return _invalid(f"{name!r} ends with a dot: a domain in SMTP has no trailing dot")
    labels = _a_labels(name)
    if isinstance(labels, Finding):
        return labels
    rfc1035 = options.mode == "rfc1035"
    for n, (shown, label) in enumerate(labels, 1):
        if not label:
            return _empty_label(name, n)
        bad = next((ch for ch in label if ch not in _LDH), None)
        if bad is not None:
            return _bad_char(bad, shown)
        if len(label) > MAX_LABEL:
            return _long_label(n, label)
        hyphen = _end_hyphen(shown)
        if hyphen:
            return hyphen
        if rfc1035 and shown[0] in _DIGITS:
            return _invalid(
                f"label {shown!r} starts with a digit (RFC 1035 wants a letter; "
                "RFC 1123 allows it)",
                label=shown,
            )
    ascii_name = ".".join(label for _, label in labels)
    if len(ascii_name) > MAX_NAME:
        return _invalid(
            f"name is {len(ascii_name)} characters, over {MAX_NAME}", length=len(ascii_name)
        )
    top = labels[-1][1]
    if not rfc1035 and all(ch in _DIGITS for ch in top):
        # RFC 1123 §2.1: the highest-level label of a host name is alphabetic, which is
        # what keeps a name apart from a dotted-decimal address.
        return _invalid(
            f"top-level label {top!r} is all digits: not a host name (RFC 1123 §2.1)",
            label=top,
        )
    return _not_fqdn(name, options.require_fqdn)


def _a_labels(name: str) -> list[tuple[str, str]] | Finding:
    """Each label as sent and in its ASCII form; U-labels become A-labels (xn--)."""
    labels: list[tuple[str, str]] = []
    for label in name.split("."):
        if label.isascii():
            labels.append((label, label))
            continue
        try:
            # Lengths and characters are judged on the A-label, the form DNS carries.
            labels.append((label, a_label(label)))
        except UnicodeError as exc:
            why = str(exc)
            if why == "Label too long":  # the idna package's words
                why = f"its A-label would be over {MAX_LABEL} characters"
            return _invalid(
                f"label {label!r} is not a valid internationalized label: {why}", label=label
            )
    return labels


def _empty_label(name: str, n: int) -> Finding:
    where = "leading dot" if n == 1 else "two dots in a row or a trailing '..'"
    return _invalid(f"label {n} of {name!r} is empty ({where})", label_index=n)


def _end_hyphen(label: str) -> Finding | None:
    # Judged on the label as sent: a U-label's A-label never ends with its hyphen.
    if label.startswith("-"):
        return _invalid(f"label {label!r} starts with a hyphen", label=label)
    if label.endswith("-"):
        return _invalid(f"label {label!r} ends with a hyphen", label=label)
    return None


def _bad_char(ch: str, label: str) -> Finding:
    return _invalid(
        f"character {ch!r} in label {label!r} is not allowed in a host name",
        character=ch,
        label=label,
    )


def _long_label(n: int, label: str) -> Finding:
    return _invalid(
        f"label {n} is {len(label)} characters, over {MAX_LABEL}",
        label_index=n,
        length=len(label),
    )
