"""bulk_sender: the large mailbox providers' sender rules (Gmail, Yahoo, Outlook.com, 2024-)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from strictmx.policies.reverse_dns import forward_confirm, host_names
from strictmx.receiver.alignment import aligned, author_domain
from strictmx.receiver.authentication import AuthResults
from strictmx.receiver.message import Header, header_of
from strictmx.receiver.outcome import HOST
from strictmx.receiver.policy import (
    FROM_CATALOGUE,
    Context,
    Outcome,
    Policy,
    PolicyOptions,
    client_names,
)
from strictmx.receiver.reproduction import (
    Build,
    Request,
    dns_world,
    domain_of,
    header_lines,
    is_name,
    message,
)
from strictmx.receiver.session import Session
from strictmx.receiver.verdict import Action, Reply, Stage, Verdict
from strictmx.receiver.world.dns import TempFail
from strictmx.receiver.world.names import public_ip

Handling = Literal["reject", "defer", "accept"]

#: ClientHistory kind under which messages are counted per From domain.
VOLUME_KIND = "bulk_sender"
#: Precedence values that mark list or bulk mail (RFC 2076 §3.9, as Gmail reads them).
_BULK_PRECEDENCE = frozenset({"bulk", "list"})
_ANGLED = re.compile(r"<\s*([^<>]*?)\s*>")
_ONE_CLICK = "list-unsubscribe=one-click"
#: Each outcome's rule: the option that says what its failure does.
RULES = {
    "FROM_IMPERSONATION": "impersonation",
    "SENDER_UNAUTHENTICATED": "unauthenticated",
    "BULK_SPF_NOT_PASSING": "spf",
    "BULK_DKIM_NOT_PASSING": "dkim",
    "BULK_NOT_ALIGNED": "alignment",
    "BULK_DMARC_MISSING": "dmarc_record",
    "BULK_NO_FCRDNS": "fcrdns",
    "BULK_NO_TLS": "tls",
    "BULK_UNSUBSCRIBE_MISSING": "unsubscribe",
    "BULK_UNSUBSCRIBE_NOT_SIGNED": "unsubscribe_signed",
}


def _handling(default: Handling, what: str) -> Any:
    return Field(default, description=f"{what}: reject, defer (4xx) or accept.")


class BulkSenderOptions(PolicyOptions):
    unauthenticated: Handling = _handling(
        "reject", "Any message that passes neither SPF nor DKIM (Gmail 5.7.26, Yahoo 5.7.9)"
    )
    impersonation: Handling = _handling(
        "reject", "Any message whose From: domain is one of own_domains, sent from elsewhere"
    )
    spf: Handling = _handling("defer", "Bulk mail whose SPF does not pass (Gmail 4.7.27)")
    dkim: Handling = _handling("defer", "Bulk mail without a passing DKIM signature (Gmail 4.7.30)")
    alignment: Handling = _handling(
        "defer",
        "Bulk mail whose From: domain is not aligned (relaxed, organisational domains) with "
        "the SPF or a passing DKIM domain (Gmail 4.7.32)",
    )
    dmarc_record: Handling = _handling(
        "defer", "Bulk mail whose From: domain publishes no DMARC record (Gmail 4.7.40)"
    )
    fcrdns: Handling = _handling(
        "defer", "Bulk mail from an address without forward-confirmed reverse DNS (Gmail 4.7.23)"
    )
    tls: Handling = _handling("defer", "Bulk mail sent without STARTTLS (Gmail 4.7.29)")
    unsubscribe: Handling = _handling(
        "defer", "Bulk mail without RFC 8058 one-click List-Unsubscribe (https) fields"
    )
    unsubscribe_signed: Handling = _handling(
        "defer",
        "Bulk mail whose unsubscribe fields no passing, From-aligned DKIM signature covers",
    )
    bulk_headers: bool = Field(
        True,
        description="A List-Id or List-Unsubscribe field, or Precedence: bulk or list, makes "
        "a message bulk mail.",
    )
    bulk_volume: int | None = Field(
        5000,
        ge=1,
        description="More messages than this with the same From: domain within bulk_window "
        "make its mail bulk (Gmail's and Microsoft's 5,000 a day); none: volume is not counted.",
    )
    bulk_window: float = Field(
        86400.0, gt=0, description="Seconds (scenario clock) over which bulk_volume is counted."
    )
    all_bulk: bool = Field(
        False, description="Judge every message as bulk mail (a CI check of a bulk stream)."
    )
    own_domains: list[str] = Field(
        default_factory=list,
        description="The provider's own From: domains (gmail.com, googlemail.com), with their "
        "subdomains; mail claiming them from outside own_networks is FROM_IMPERSONATION.",
    )
    own_networks: list[str] = Field(
        default_factory=list,
        description="Networks (CIDR) of the provider's own servers, allowed to send as "
        "own_domains.",
    )

    @field_validator("own_domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        for domain in value:
            if not domain or any(ch.isspace() or ch == "@" for ch in domain):
                raise ValueError(f"a domain is one name without '@', got {domain!r}")
        return [d.lower().strip(".") for d in value]

    @field_validator("own_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ValueError(f"not a network: {network!r} ({exc})") from None
        return value


class BulkSender(Policy[BulkSenderOptions]):
    """The sender rules Gmail and Yahoo enforce since 2024 and Outlook.com since 2025, at
    end of data, from what the `spf`, `dkim` and `dmarc` policies concluded
    (session.auth; the scenario must list those before it).

    Every message (Gmail's and Yahoo's rules for all senders):

    - FROM_IMPERSONATION: the From: domain is one of `own_domains` (or under one) and the
      client is not in `own_networks` (Gmail: "do not impersonate Gmail From: headers").
    - SENDER_UNAUTHENTICATED: SPF did not pass and no DKIM signature passed.

    Bulk mail only: a message is bulk when `all_bulk` says so; with `bulk_headers`, when it
    has a List-Id or List-Unsubscribe field or `Precedence: bulk` / `list`; or when the
    receiver has seen more than `bulk_volume` messages with its From: domain within
    `bulk_window` seconds of the scenario clock (counted across sessions in the receiver's
    client history, every message judged counting, this one included). In this order:

    - BULK_SPF_NOT_PASSING: SPF (the MAIL FROM identity, or HELO for the null sender) did
      not pass.
    - BULK_DKIM_NOT_PASSING: no DKIM signature passed.
    - BULK_NOT_ALIGNED: neither the passing SPF domain nor a passing DKIM d= has the From:
      domain's organisational domain (relaxed alignment, RFC 7489 §3.1, by the Public
      Suffix List shipped with publicsuffixlist: Gmail's "SPF or DKIM organizational
      domain" rule, whatever adkim/aspf the domain publishes).
    - BULK_DMARC_MISSING: the dmarc policy found no record for the From: domain or its
      organisational domain (a temporary DNS failure is not "missing").
    - BULK_NO_FCRDNS: no PTR name of the client address resolves back to it (the question
      reverse_dns asks with require: fcrdns; an XCLIENT NAME counts as verified; a
      temporary DNS failure is not judged).
    - BULK_NO_TLS: the session did not use STARTTLS.
    - BULK_UNSUBSCRIBE_MISSING: no List-Unsubscribe field with an https URI together with
      `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058 §3.1).
    - BULK_UNSUBSCRIBE_NOT_SIGNED: no passing DKIM signature aligned with From: covers
      both fields in h= (RFC 8058 §4).

    Each rule has an option saying what its failure does: `reject`, `defer` or `accept`
    (skip the rule). As in spf, the outcome's reply gives the words and the option the
    class: `defer` sends a 5xx reply as 4xx, `reject` a 4xx reply as 550. Defaults follow
    Gmail, which rate-limits (4xx) bulk mail that breaks a rule and blocks unauthenticated
    mail (5xx). The first rule broken decides; a message without exactly one From: address
    skips the From: rules (the headers policy refuses it).

    Default replies are Gmail's (SIS-G): `550 5.7.26 This mail has been blocked because
    the sender is unauthenticated. ...`, `421 4.7.27 ... SPF ...`, `421 4.7.30 ... DKIM
    ...`, `421 4.7.32 ... isn't aligned ...`, `421 4.7.23 ... PTR ...`, `421 4.7.29 ...
    TLS ...`; Yahoo's `550 5.7.9` and Microsoft's `550 5.7.515` are catalogue entries.
    No provider publishes texts for a missing DMARC record (4.7.40), for missing or
    unsigned unsubscribe fields, or for impersonation: those are strictmx's.

    RFC 5321 forbids none of these refusals; they are the providers' local policy.
    """

    name = "bulk_sender"
    summary = "Gmail, Yahoo and Outlook.com sender rules (authentication, DMARC, unsubscribe)"
    stages = frozenset({Stage.EOD})
    requires = ("spf", "dkim", "dmarc")
    Options = BulkSenderOptions
    outcomes: ClassVar[tuple[Outcome, ...]] = (
        Outcome(
            "SENDER_UNAUTHENTICATED",
            FROM_CATALOGUE,
            "Neither SPF nor any DKIM signature passed (every message).",
            fields={"from_domain": HOST, "spf_domain": HOST},
        ),
        Outcome(
            "BULK_SPF_NOT_PASSING",
            FROM_CATALOGUE,
            "Bulk mail whose SPF did not pass.",
            action=Action.DEFER,
            fields={"from_domain": HOST, "spf_domain": HOST},
        ),
        Outcome(
            "BULK_DKIM_NOT_PASSING",
            FROM_CATALOGUE,
            "Bulk mail without a passing DKIM signature.",
            action=Action.DEFER,
            fields={"from_domain": HOST},
        ),
        Outcome(
            "BULK_NOT_ALIGNED",
            FROM_CATALOGUE,
            "Bulk mail whose From: domain aligns with neither the SPF nor a DKIM domain.",
            action=Action.DEFER,
            fields={"from_domain": HOST},
        ),
        Outcome(
            "BULK_DMARC_MISSING",
            FROM_CATALOGUE,
            "Bulk mail whose From: domain publishes no DMARC record.",
            action=Action.DEFER,
            fields={"from_domain": HOST},
        ),
        Outcome(
            "BULK_UNSUBSCRIBE_MISSING",
            FROM_CATALOGUE,
            "Bulk mail without one-click unsubscribe fields (RFC 8058).",
            action=Action.DEFER,
            fields={"from_domain": HOST},
        ),
        Outcome(
            "BULK_UNSUBSCRIBE_NOT_SIGNED",
            FROM_CATALOGUE,
            "Bulk mail whose unsubscribe fields no aligned passing DKIM signature covers.",
            action=Action.DEFER,
            fields={"from_domain": HOST},
        ),
        Outcome(
            "BULK_NO_FCRDNS",
            FROM_CATALOGUE,
            "Bulk mail from an address without forward-confirmed reverse DNS.",
            action=Action.DEFER,
            fields={"from_domain": HOST},
        ),
        Outcome(
            "BULK_NO_TLS",
            FROM_CATALOGUE,
            "Bulk mail sent without STARTTLS.",
            action=Action.DEFER,
            fields={"from_domain": HOST},
        ),
        Outcome(
            "FROM_IMPERSONATION",
            FROM_CATALOGUE,
            "From: is at one of the provider's own domains, from outside its servers.",
            fields={"from_domain": HOST},
        ),
    )

    @classmethod
    def reproduce(cls, req: Request) -> Build:
        """Every rule but the outcome's accepted, every message bulk, and a world and
        message that break that rule: no SPF record and no signature for the
        authentication rules (spf, dkim and dmarc with their defaults accept both), an SPF
        pass for another domain than From: for alignment, no _dmarc record, no PTR, no
        STARTTLS, list mail without (or with unsigned) one-click unsubscribe fields."""
        outcome = req.entry.outcome
        ip = req.identity.client_ip
        sender = domain_of(req.identity.mail_from)
        shown = req.fields.get("from_domain", "")
        from_domain = shown.lower() if is_name(shown) else sender
        # The reply's class is the customer's: the rule's handling follows it.
        handling = "reject" if req.entry.template.code >= 500 else "defer"
        options: dict[str, Any] = {rule: "accept" for rule in RULES.values()}
        options[RULES[outcome]] = handling
        if outcome not in ("FROM_IMPERSONATION", "SENDER_UNAUTHENTICATED"):
            options["all_bulk"] = True
        extra: list[str] = []
        case: dict[str, Any] = {}
        records: dict[str, Any] = {}
        bound = {"from_domain": from_domain, "spf_domain": sender}
        if outcome == "FROM_IMPERSONATION":
            options["own_domains"] = [from_domain]
        elif outcome == "BULK_NOT_ALIGNED":
            # SPF passes, for a bulk mailer's domain that From: does not share.
            esp = (
                "mailer.example.com"
                if from_domain.endswith("example.org")
                else "mailer.example.org"
            )
            case["mail_from"] = f"bounces@{esp}"
            family = "ip6" if ":" in ip else "ip4"
            records[esp] = {"TXT": f"v=spf1 {family}:{ip} -all"}
            bound = {"from_domain": from_domain}
        elif outcome == "BULK_UNSUBSCRIBE_MISSING":
            extra = [f"List-Id: <news.{from_domain}>"]
        elif outcome == "BULK_UNSUBSCRIBE_NOT_SIGNED":
            extra = [
                f"List-Unsubscribe: <https://{from_domain}/unsubscribe/1>",
                "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            ]
        headers = header_lines(req.identity, From=f"<news@{from_domain}>") + extra
        case["message"] = message(req.identity, headers)
        return Build(
            options=options,
            world=dns_world(records),
            case=case,
            bound=bound,
            notes=[
                "spf, dkim and dmarc run with their defaults before it: the message is "
                "unsigned and the From: domain publishes no DMARC record"
            ],
        )

    def __init__(
        self, options: BulkSenderOptions, replies: Mapping[str, Reply] | None = None
    ) -> None:
        super().__init__(options, replies)
        self._networks = [ipaddress.ip_network(n, strict=False) for n in options.own_networks]

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        mail = _Mail.of(session)
        broken = [found async for found in self._broken(mail, session, ctx)]
        if not broken:
            return None
        # The first broken rule answers; the others are named in the reason, so that
        # `strictmx check` and the journal show everything a sender has to mend at once.
        (outcome, reason), others = broken[0], broken[1:]
        if others:
            reason += "; also broken: " + "; ".join(f"{o} ({why})" for o, why in others)
        return self.verdict(
            outcome,
            stage,
            session,
            ctx,
            reason,
            # A rule set to accept never yields: the class is reject's or defer's.
            refuse_as="reject" if self._handling(outcome) == "reject" else "defer",
            from_domain=mail.from_domain,
            spf_domain=mail.spf_domain,
        )

    def _handling(self, outcome: str) -> Handling:
        handling: Handling = getattr(self.options, RULES[outcome])
        return handling

    async def _broken(
        self, mail: _Mail, session: Session, ctx: Context
    ) -> AsyncIterator[tuple[str, str]]:
        """Each rule the message breaks, in order, with why; a rule whose handling is
        accept is not looked at (no DNS for FCrDNS then)."""

        def on(outcome: str) -> bool:
            return self._handling(outcome) != "accept"

        auth = session.auth
        # Counted before any rule decides: a refused message was sent all the same.
        why = self._bulk(mail.header, mail.from_domain or _domain(session.mail_from), ctx)
        if on("FROM_IMPERSONATION") and self._impersonates(mail.from_domain, session):
            yield (
                "FROM_IMPERSONATION",
                f"From: is at {mail.from_domain}, one of the receiver's own domains, but "
                f"{session.client.address} is not one of its servers",
            )
        if on("SENDER_UNAUTHENTICATED") and not mail.spf_pass and not mail.dkim_domains:
            yield (
                "SENDER_UNAUTHENTICATED",
                f"neither SPF ({_spf_text(auth)}) nor DKIM ({_dkim_text(auth)}) passed",
            )
        if why is None:
            return
        bulk = f"bulk mail ({why})"
        if on("BULK_SPF_NOT_PASSING") and not mail.spf_pass:
            yield "BULK_SPF_NOT_PASSING", f"{bulk}: {_spf_text(auth)}"
        if on("BULK_DKIM_NOT_PASSING") and not mail.dkim_domains:
            yield "BULK_DKIM_NOT_PASSING", f"{bulk}: DKIM: {_dkim_text(auth)}"
        if on("BULK_NOT_ALIGNED"):
            spf_domain = mail.spf_domain if mail.spf_pass else ""
            problem = _misaligned(mail.from_domain, spf_domain, mail.dkim_domains)
            if problem:
                yield "BULK_NOT_ALIGNED", f"{bulk}: {problem}"
        if on("BULK_DMARC_MISSING"):
            problem = _dmarc_missing(auth, mail.from_domain)
            if problem:
                yield "BULK_DMARC_MISSING", f"{bulk}: {problem}"
        if on("BULK_NO_FCRDNS"):
            problem = await _fcrdns_problem(session, ctx)
            if problem:
                yield "BULK_NO_FCRDNS", f"{bulk}: {problem}"
        if on("BULK_NO_TLS") and not session.tls:
            yield "BULK_NO_TLS", f"{bulk} sent without STARTTLS"
        problem = unsubscribe_problem(mail.header)
        if problem:
            if on("BULK_UNSUBSCRIBE_MISSING"):
                yield "BULK_UNSUBSCRIBE_MISSING", f"{bulk}: {problem}"
        elif on("BULK_UNSUBSCRIBE_NOT_SIGNED") and not _unsubscribe_signed(auth, mail.from_domain):
            yield (
                "BULK_UNSUBSCRIBE_NOT_SIGNED",
                f"{bulk}: no passing DKIM signature aligned with "
                f"{mail.from_domain or 'the From: domain'} covers List-Unsubscribe and "
                "List-Unsubscribe-Post",
            )

    def _impersonates(self, from_domain: str, session: Session) -> bool:
        if not from_domain:
            return False
        own = any(
            from_domain == d or from_domain.endswith("." + d) for d in self.options.own_domains
        )
        if not own:
            return False
        ip = public_ip(session.client.ip)
        return not any(ip.version == net.version and ip in net for net in self._networks)

    def _bulk(self, header: Header, domain: str, ctx: Context) -> str | None:
        """Why this message is bulk mail, or None. Counts it towards its domain's volume."""
        o = self.options
        volume = 0
        if o.bulk_volume is not None and domain:
            now = ctx.clock.monotonic()
            ctx.history.add(VOLUME_KIND, domain, now, keep=o.bulk_volume + 1)
            volume = ctx.history.count(VOLUME_KIND, domain, now - o.bulk_window)
        if o.all_bulk:
            return "all mail is judged as bulk"
        if o.bulk_headers:
            for name in ("List-Id", "List-Unsubscribe"):
                if header.get(name):
                    return f"it has a {name} field"
            for precedence in header.get("Precedence"):
                if precedence.value.strip().lower() in _BULK_PRECEDENCE:
                    return f"Precedence: {precedence.value.strip()}"
        if o.bulk_volume is not None and volume > o.bulk_volume:
            return f"more than {o.bulk_volume} messages from {domain} in {o.bulk_window:g} s"
        return None


@dataclass(frozen=True)
class _Mail:
    """What the rules read of the message and of the other policies' results."""

    header: Header
    #: The one From: address's domain, "" when there is not exactly one.
    from_domain: str
    #: The decisive SPF identity's domain and whether it passed.
    spf_domain: str
    spf_pass: bool
    #: d= of every passing DKIM signature.
    dkim_domains: list[str]

    @classmethod
    def of(cls, session: Session) -> _Mail:
        header = header_of(session.message or b"")
        spf_domain, spf_pass = _spf(session.auth)
        dkim = session.auth.dkim or ()
        return cls(
            header=header,
            from_domain=author_domain(session.message or b"")[0] or "",
            spf_domain=spf_domain,
            spf_pass=spf_pass,
            dkim_domains=[d.domain.lower() for d in dkim if d.result == "pass"],
        )


def unsubscribe_problem(header: Header) -> str | None:
    """What RFC 8058 §3.1 one-click unsubscription lacks in `header`, or None."""
    links = [uri for f in header.get("List-Unsubscribe") for uri in _ANGLED.findall(f.value)]
    posts = [f.value.strip().lower() for f in header.get("List-Unsubscribe-Post")]
    if not links:
        return "no List-Unsubscribe field with a <URI>"
    if not any(uri.lower().startswith("https://") for uri in links):
        return "List-Unsubscribe has no https URI (" + ", ".join(links) + ")"
    if not posts:
        return "no List-Unsubscribe-Post field"
    if _ONE_CLICK not in posts:
        return "List-Unsubscribe-Post is not List-Unsubscribe=One-Click"
    return None


def _domain(address: str | None) -> str:
    return (address or "").rpartition("@")[2].strip().strip(">").lower().rstrip(".")


def _spf(auth: AuthResults) -> tuple[str, bool]:
    """The decisive SPF identity's domain (the last evaluated: MAIL FROM, or HELO for the
    null sender) and whether it passed."""
    if not auth.spf:
        return "", False
    last = auth.spf[-1]
    return last.domain.lower(), last.result == "pass"


def _spf_text(auth: AuthResults) -> str:
    if not auth.spf:
        return "SPF was not evaluated"
    last = auth.spf[-1]
    return f"SPF {last.result} for {last.domain or 'no domain'}"


def _dkim_text(auth: AuthResults) -> str:
    if auth.dkim is None:
        return "not evaluated"
    if not auth.dkim:
        return "no signature"
    return "; ".join(
        f"d={d.domain or '?'} {d.result}" + (f" ({d.reason})" if d.reason else "")
        for d in auth.dkim
    )


def _misaligned(from_domain: str, spf_domain: str, dkim_domains: list[str]) -> str | None:
    if not from_domain:
        return None
    if aligned(spf_domain, from_domain) or any(aligned(d, from_domain) for d in dkim_domains):
        return None
    authenticated = [f"SPF {spf_domain}"] if spf_domain else []
    authenticated += [f"DKIM d={d}" for d in dkim_domains]
    return f"From: {from_domain} is not aligned with " + (
        ", ".join(authenticated) or "any authenticated domain"
    )


def _dmarc_missing(auth: AuthResults, from_domain: str) -> str | None:
    dmarc = auth.dmarc
    if dmarc is None or dmarc.record_domain or dmarc.result != "none":
        return None  # not evaluated, found, or failed temporarily: not known to be missing
    domain = dmarc.from_domain or from_domain
    return f"{domain} publishes no DMARC record (nor does its organisational domain)"


def _unsubscribe_signed(auth: AuthResults, from_domain: str) -> bool:
    return any(
        d.result == "pass"
        and aligned(d.domain.lower(), from_domain)
        and {"list-unsubscribe", "list-unsubscribe-post"} <= set(d.signed_headers)
        for d in auth.dkim or ()
    )


async def _fcrdns_problem(session: Session, ctx: Context) -> str | None:
    """Why the client has no forward-confirmed reverse DNS, or None (confirmed, or not
    known because a lookup failed temporarily)."""
    client = session.client
    if client.name_status == "given":
        return None  # an XCLIENT NAME is the verified name, as for reverse_dns
    ip = public_ip(client.ip)
    try:
        hosts = host_names(await client_names(client, str(ip), ctx))
    except TempFail:
        return None
    if not hosts:
        return f"{ip} has no PTR record naming a host"
    confirmation = await forward_confirm(ip, hosts, ctx)
    if confirmation.confirmed or confirmation.failure is not None:
        return None
    return f"no PTR name of {ip} resolves back to it: " + "; ".join(confirmation.defects)
