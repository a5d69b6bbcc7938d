"""sender_domain: must the envelope sender's domain exist and accept mail?"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import ClassVar

from dns.rdtypes.ANY.MX import MX
from pydantic import Field

from strictmx.receiver.finding import Finding
from strictmx.receiver.outcome import HOST, TEXT
from strictmx.receiver.policy import FROM_CATALOGUE, Context, Outcome, Policy, PolicyOptions
from strictmx.receiver.reproduction import Build, Request, dns_world, domain_of, sender_in
from strictmx.receiver.session import Session
from strictmx.receiver.verdict import Action, Stage, Verdict
from strictmx.receiver.world.dns import NoData, NXDomain, TempFail
from strictmx.receiver.world.names import a_label, ip_of, name_text

# RFC 5321 §4.1.2 atext (RFC 5322 §3.2.3): letters, digits and these.
_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")
_LDH = frozenset(string.ascii_letters + string.digits + "-")
MAX_LOCAL_PART = 64  # RFC 5321 §4.5.3.1.1, octets
MAX_DOMAIN = 255  # RFC 5321 §4.5.3.1.2, octets
MAX_LABEL = 63  # RFC 1035 §2.3.4


class SenderDomainOptions(PolicyOptions):
    require_fqdn: bool = Field(
        True,
        description="Refuse a sender without a domain or whose domain has no dot "
        "(Postfix reject_non_fqdn_sender).",
    )
    check_syntax: bool = Field(
        True,
        description="Refuse a sender that is not an RFC 5321 Mailbox "
        "(Postfix strict_rfc821_envelopes).",
    )
    reject_null_mx: bool = Field(
        True, description="Refuse a domain that publishes a null MX (RFC 7505)."
    )


@dataclass(frozen=True)
class Parsed:
    """A sender split for the DNS check: `domain` in the form DNS is asked (A-labels)."""

    domain: str | None  # None: a domain literal, which has nothing to look up
    finding: Finding | None = None


class SenderDomain(Policy[SenderDomainOptions]):
    """Refuse an envelope sender whose domain does not exist or accepts no mail.

    Runs at MAIL on the MAIL FROM address (without its angle brackets and source route).
    The null sender `<>` is always allowed: RFC 5321 §4.5.5 requires accepting it, it is
    how bounces arrive.

    In order:

    1. syntax (`check_syntax`): the local part is a Dot-string or Quoted-string of at most
       64 octets; the domain is a sequence of letter-digit-hyphen labels (no hyphen at
       either end, at most 63 octets, 255 in all, no trailing dot) or an address literal
       `[192.0.2.1]` / `[IPv6:2001:db8::1]` (RFC 5321 §4.1.2, §4.1.3, §4.5.3.1). With
       SMTPUTF8, UTF-8 is allowed in the local part and U-labels in the domain (RFC 6531
       §3.3); without it, they are errors. A bare IP address as domain is an error too.
       -> SENDER_INVALID.
    2. `require_fqdn`: an address without a domain (`MAIL FROM:<alice>`) or whose domain
       has no dot (`alice@localhost`) -> SENDER_NOT_FQDN. Address literals are exempt.
    3. DNS, as Postfix's reject_unknown_sender_domain (smtpd_check.c
       reject_unknown_mailhost): MX first; a null MX (the one MX record `0 .`, RFC 7505)
       -> SENDER_DOMAIN_NULL_MX (when `reject_null_mx`); any other MX record accepts. With
       no MX, an A or AAAA record accepts. A name that does not exist, or has none of
       them -> SENDER_DOMAIN_NOT_FOUND. A temporary DNS failure (SERVFAIL or timeout) that
       leaves no answer -> SENDER_DOMAIN_TEMPFAIL, a 4xx: it never refuses permanently.
       Address literals are not looked up (Postfix skips them too).

    Default replies are Postfix's: `501 5.1.7 Bad sender address syntax` (smtpd.c, with
    strict_rfc821_envelopes), `504 5.5.2 <addr>: Sender address rejected: need
    fully-qualified address` (non_fqdn_reject_code 504), `450 4.1.8 <addr>: Sender
    address rejected: Domain not found` (unknown_address_reject_code 450, so a missing
    domain is refused temporarily by default; a persona that refuses for good overrides
    the reply with a 5xx), `550 5.7.27 <addr>: Sender address rejected: Domain <domain>
    does not accept mail (nullMX)`, and for a DNS failure the same `Domain not found`
    text with 450 (Postfix's defer_if_permit path). The catalogue's texts
    (`550 Sender rejected - your domain part is not good`, seed-16; `550 Domain not
    found`, seed-71) are overrides of SENDER_DOMAIN_NOT_FOUND.

    RFC 5321 allows every one of these refusals: the reverse-path must be a Mailbox with a
    domain (§4.1.2), and RFC 7505 §4.2 lets a receiver refuse a sender whose domain
    publishes a null MX, with 550 5.7.27.
    """

    name = "sender_domain"
    summary = "Envelope sender must be a valid address whose domain exists and accepts mail"
    stages = frozenset({Stage.MAIL})
    pure = True  # judged from client, HELO, sender and DNS records alone
    Options = SenderDomainOptions
    outcomes: ClassVar[tuple[Outcome, ...]] = (
        Outcome(
            "SENDER_INVALID",
            FROM_CATALOGUE,
            "The sender is not an RFC 5321 Mailbox (Postfix smtpd, strict_rfc821_envelopes).",
        ),
        Outcome(
            "SENDER_NOT_FQDN",
            FROM_CATALOGUE,
            "The sender has no domain, or a domain without a dot (Postfix reject_non_fqdn_sender).",
        ),
        Outcome(
            "SENDER_DOMAIN_NOT_FOUND",
            FROM_CATALOGUE,
            "The sender's domain does not exist or has no MX, A or AAAA record "
            "(Postfix reject_unknown_sender_domain; 450 is its unknown_address_reject_code).",
            fields={"domain": HOST},
        ),
        Outcome(
            "SENDER_DOMAIN_NULL_MX",
            FROM_CATALOGUE,
            "The sender's domain publishes a null MX: it accepts no mail, so no bounce "
            "could reach it (RFC 7505; Postfix reject_unknown_sender_domain).",
            fields={"domain": HOST},
        ),
        Outcome(
            "SENDER_DOMAIN_TEMPFAIL",
            FROM_CATALOGUE,
            "Looking the sender's domain up failed temporarily (SERVFAIL or timeout).",
            action=Action.DEFER,
            fields={"domain": HOST, "failure": TEXT},
        ),
    )

    @classmethod
    def read_reply(cls, outcome: str, text: str) -> dict[str, str]:
        """Its refusals name the sender, in angle brackets or bare."""
        return sender_in(text)

    @classmethod
    def reproduce(cls, req: Request) -> Build:
        """A sender address that is malformed, or whose domain does not exist, has a null MX
        or fails."""
        ident = req.identity
        sender = ident.mail_from
        domain = domain_of(sender)
        outcome = req.entry.outcome
        if outcome == "SENDER_INVALID":
            local = sender.rpartition("@")[0] or "alice"
            for candidate in (sender, f"{local}..x@{domain}"):
                found = parse(candidate, SenderDomainOptions(), smtputf8=False).finding
                if found is not None and found.outcome == outcome:
                    break
            return Build(case={"mail_from": candidate})
        if outcome == "SENDER_NOT_FQDN":
            if "." in domain:
                sender = sender.rpartition("@")[0] + "@localhost"
            return Build(case={"mail_from": sender})
        if outcome == "SENDER_DOMAIN_NULL_MX":
            return Build(world=dns_world({domain: {"MX": "0 ."}}), bound={"domain": domain})
        if outcome == "SENDER_DOMAIN_TEMPFAIL":
            return Build(world=dns_world(servfail=[domain]), bound={"domain": domain})
        return Build(world=dns_world(), bound={"domain": domain})  # SENDER_DOMAIN_NOT_FOUND

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        sender = session.mail_from
        if not sender:  # the null sender <>, or no MAIL yet
            return None
        parsed = parse(sender, self.options, smtputf8=session.smtputf8)
        if parsed.finding is not None:
            f = parsed.finding
            return self.verdict(f.outcome, stage, session, ctx, f.reason, **f.fields)
        if parsed.domain is None:
            return None
        return await self._look_up(parsed.domain, stage, session, ctx)

    async def _look_up(
        self, domain: str, stage: Stage, session: Session, ctx: Context
    ) -> Verdict | None:
        mx_failure: TempFail | None = None
        try:
            records = await ctx.dns.resolve(domain, "MX")
        except NXDomain:
            return self.verdict(
                "SENDER_DOMAIN_NOT_FOUND",
                stage,
                session,
                ctx,
                f"the sender domain {domain} does not exist (NXDOMAIN)",
                domain=domain,
            )
        except NoData:
            records = []
        except TempFail as exc:
            mx_failure, records = exc, []
        exchanges = sorted(
            (mx.preference, name_text(mx.exchange)) for mx in records if isinstance(mx, MX)
        )
        if exchanges == [(0, ".")]:
            if not self.options.reject_null_mx:
                return None
            return self.verdict(
                "SENDER_DOMAIN_NULL_MX",
                stage,
                session,
                ctx,
                f"the sender domain {domain} publishes a null MX (RFC 7505): it accepts "
                "no mail, so bounces to this sender cannot be delivered",
                domain=domain,
            )
        if exchanges:
            return None
        try:
            found = await ctx.dns.addresses(domain)
        except TempFail as exc:
            return self._tempfail(domain, mx_failure or exc, stage, session, ctx)
        if found:
            return None
        if mx_failure is not None:
            return self._tempfail(domain, mx_failure, stage, session, ctx)
        return self.verdict(
            "SENDER_DOMAIN_NOT_FOUND",
            stage,
            session,
            ctx,
            f"the sender domain {domain} has no MX, A or AAAA record",
            domain=domain,
        )

    def _tempfail(
        self, domain: str, exc: TempFail, stage: Stage, session: Session, ctx: Context
    ) -> Verdict:
        return self.verdict(
            "SENDER_DOMAIN_TEMPFAIL",
            stage,
            session,
            ctx,
            f"looking up the sender domain {domain} failed temporarily: {exc.rdtype} {exc.kind}",
            domain=domain,
            failure=exc.kind,
        )


def parse(sender: str, options: SenderDomainOptions, *, smtputf8: bool) -> Parsed:
    """Split and judge a non-null sender; sans-IO, the part of the check before DNS."""
    local, at, domain = sender.rpartition("@")
    # The SMTP layer keeps bytes that are not UTF-8 as lone surrogates (surrogateescape);
    # no check below could encode them, and no DNS name holds them.
    stray = _not_utf8(sender)
    if stray is not None:
        if options.check_syntax:
            return _fail("SENDER_INVALID", f"<{_shown(sender)}> has {stray}, not UTF-8")
        stray = _not_utf8(domain)
        if stray is not None:
            return Parsed(
                None,
                Finding(
                    "SENDER_DOMAIN_NOT_FOUND",
                    f"the sender domain {_shown(domain)} has {stray}, not UTF-8: no DNS name"
                    " holds it",
                    {"domain": domain},
                ),
            )
    if not at:
        if options.require_fqdn:
            return _fail("SENDER_NOT_FQDN", f"{sender!r} has no domain part")
        if options.check_syntax:
            return _fail("SENDER_INVALID", f"{sender!r} has no '@' and no domain")
        return Parsed(None)
    if options.check_syntax:
        problem = _local_part_problem(local, smtputf8)
        if problem:
            return _fail("SENDER_INVALID", f"local part {local!r} {problem}")
    if domain.startswith("["):
        problem = _literal_problem(domain)
        if problem and options.check_syntax:
            return _fail("SENDER_INVALID", f"domain literal {domain!r} {problem}")
        return Parsed(None)
    ascii_domain, problem = _domain(domain, smtputf8)
    if problem and options.check_syntax:
        return _fail("SENDER_INVALID", f"domain {domain!r} {problem}")
    if options.require_fqdn and "." not in domain.rstrip("."):
        return _fail("SENDER_NOT_FQDN", f"domain {domain!r} has no dot: it is not fully qualified")
    return Parsed(ascii_domain)


def _not_utf8(text: str) -> str | None:
    """The first character of `text` that no UTF-8 input decodes to, written `\\xNN` for
    the byte it stands for; None when there is none."""
    for ch in text:
        if "\udc80" <= ch <= "\udcff":
            return f"\\x{ord(ch) - 0xDC00:02x}"
        if "\ud800" <= ch <= "\udfff":
            return f"\\u{ord(ch):04x}"
    return None


def _shown(text: str) -> str:
    """`text` with its undecodable bytes written `\\xNN` (as the journal shows them)."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no byte decoded to (text from JSON, say)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def _fail(outcome: str, reason: str) -> Parsed:
    return Parsed(None, Finding(outcome, reason))


def _local_part_problem(local: str, smtputf8: bool) -> str | None:
    if not local:
        return "is empty"
    if len(local.encode()) > MAX_LOCAL_PART:
        return f"is {len(local.encode())} octets, over {MAX_LOCAL_PART}"
    if not smtputf8 and not local.isascii():
        return "has non-ASCII characters but MAIL FROM did not carry SMTPUTF8"
    if local.startswith('"'):
        return _quoted_problem(local)
    for atom in local.split("."):
        if not atom:
            return "has an empty dot-separated part (a dot at either end, or two in a row)"
        bad = next((ch for ch in atom if ch not in _ATEXT and ch.isascii()), None)
        if bad is not None:
            return f"has {bad!r}, which only a quoted local part may hold"
    return None


def _quoted_problem(local: str) -> str | None:
    # RFC 5321 §4.1.2 Quoted-string: qtextSMTP or a backslash before any printable.
    if len(local) < 2 or not local.endswith('"'):
        return "opens a quote it does not close"
    escaped = False
    for ch in local[1:-1]:
        if escaped:
            if ch.isascii() and not " " <= ch <= "~":
                return f"escapes the control character {ch!r}"
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            return "has a quote inside the quoted string"
        elif ch.isascii() and not " " <= ch <= "~":
            return f"has the control character {ch!r}"
    if escaped:
        return "ends with a lone backslash"
    return None


def _literal_problem(domain: str) -> str | None:
    if not domain.endswith("]"):
        return "has no closing ']'"
    inner = domain[1:-1]
    if inner[:5].lower() == "ipv6:":
        return None if _is_ip(inner[5:], 6) else "does not hold a valid IPv6 address"
    # RFC 5321 §4.1.3: IPv4 untagged; no other tag is registered.
    return None if _is_ip(inner, 4) else "does not hold a valid IPv4 address"


def _is_ip(text: str, version: int) -> bool:
    try:
        return ip_of(text).version == version
    except ValueError:
        return False


def _domain(domain: str, smtputf8: bool) -> tuple[str, str | None]:
    """The domain in A-labels for DNS, and what is wrong with it (None: nothing)."""
    if _is_ip(domain, 4) or _is_ip(domain, 6):
        return domain, f"is an IP address; an address domain is written [{domain}]"
    if domain.endswith("."):
        return domain, "ends with a dot, which RFC 5321 does not allow"
    labels: list[str] = []
    for label in domain.split("."):
        if not label:
            return domain, "has an empty label"
        if not label.isascii():
            if not smtputf8:
                return domain, (
                    f"has the non-ASCII label {label!r} but MAIL FROM did not carry SMTPUTF8"
                )
            try:
                label = a_label(label)
            except UnicodeError as exc:
                return domain, f"has the label {label!r}, which is not valid IDNA ({exc})"
        labels.append(label)
    ascii_domain = ".".join(labels)
    for label in labels:
        bad = next((ch for ch in label if ch not in _LDH), None)
        if bad is not None:
            return ascii_domain, (
                f"has {bad!r} in label {label!r}; a host name has letters, digits and hyphens"
            )
        if label.startswith("-") or label.endswith("-"):
            return ascii_domain, f"has the label {label!r} with a hyphen at one end"
        if len(label) > MAX_LABEL:
            return ascii_domain, f"has a label of {len(label)} characters, over {MAX_LABEL}"
    if len(ascii_domain) > MAX_DOMAIN:
        return ascii_domain, f"is {len(ascii_domain)} characters, over {MAX_DOMAIN}"
    return ascii_domain, None
