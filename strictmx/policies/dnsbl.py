"""dnsbl: the client address on DNS block lists, the HELO name and sender domain on domain lists.

Lists (each a list of `{zone, codes, ...}` entries, checked in the order given):

- `zones` (DNSBL), at CONNECT: the client address is looked up under each zone, IPv4 as
  its four octets reversed (`192.0.2.1` -> `1.2.0.192.<zone>`), IPv6 as its 32 nibbles
  reversed, lowercase hex (`2001:db8::1` -> `1.0.0. ... .8.b.d.0.1.0.0.2.<zone>`), as
  Postfix's reject_rbl_client and Exim's dnslists do. An IPv4-mapped IPv6 client
  (`::ffff:192.0.2.1`) is looked up as the IPv4 address it is.
- `rhsbl` (domain lists), each with `check: helo` (the HELO/EHLO name, at HELO) or
  `check: sender` (the MAIL FROM domain, at MAIL): `<domain>.<zone>`, as Postfix's
  reject_rhsbl_helo and reject_rhsbl_sender. Address literals, bare IP addresses and the
  null sender are not looked up.
- `allow` (DNSWL, e.g. list.dnswl.org): the client address, as for `zones`. A hit is a
  PERMIT verdict (outcome DNSWL_PERMIT, no reply) at every stage this policy judges
  (CONNECT when it has `zones` or `allow`, HELO when it has helo domain lists, MAIL when it
  has sender domain lists), so the policies after it at that stage do not run, as Postfix's
  permit_dnswl_client ends its restriction list. An allow list's lookup failure counts as
  not listed and never defers.

Only A records are asked for; TXT is looked up only after an A answer counted as a
listing (Postfix rbl_pagein: "Asking for an AAAA record makes no sense here"). Several
TXT records are joined with " / " and cut at 500 characters, as Postfix's $rbl_reason.

`codes` filters which A answers count: addresses (`127.0.0.2`), ranges
(`127.0.0.2-127.0.0.11`), networks (`127.0.0.0/24`) and Postfix's last-octet form
(`127.0.0.[2..11]`, `127.0.0.[2;4;10..11]`). The default, 127.0.0.0/8, is Exim's rule
(answers outside 127/8 are ignored). To reply differently per code range (Spamhaus ZEN:
127.0.0.2 SBL, .3 SBL CSS, .4-.7 XBL, .9 DROP, .10-.11 PBL), list the zone once per range
with its own `codes` and `reply`; the zone is asked once per session all the same.

Answers in `refused_codes` (Spamhaus's 127.255.255.x: .252 typo in the list name, .254
query through a public or open resolver, .255 too many queries) "must not be used to
reject email": they never count as a listing and are reported in a DUNNO verdict
(outcome DNSBL_QUERY_REFUSED, no reply) for the journal.

A temporary DNS failure (SERVFAIL, timeout) counts as not listed, as Postfix ("give the
requestor the benefit of the doubt") and Exim's default exclude_unknown do, and is
reported in a DUNNO verdict (DNSBL_LOOKUP_FAILED). With `defer_on_error` (Exim's
+defer_unknown) it defers instead: DNSBL_TEMPFAIL, `451 4.7.0 DNS error during policy
check` (maddy's text). A listing on another list still wins over a failure.

Replies: a block list entry's `reply` replaces the outcome's reply for hits on that entry
(validated at load like any reply override); otherwise the scenario's `replies:` override,
otherwise the default, Postfix's default_rbl_reply:
`554 5.7.1 Service unavailable; Client host [<IP>] blocked using <zone>; <TXT>` (the
`; <TXT>` part only when there is a TXT), with `Helo command [<name>]` and
`Sender address [<domain>]` for the domain lists. Placeholders besides the usual ones:
{zone}, {query} (the name looked up), {code} (the A answer, e.g. 127.0.0.2), {txt},
{txt_suffix} ("; " and the TXT, or nothing: Postfix's `${rbl_reason?; $rbl_reason}`) and,
for domain lists, {domain}. Exim's default-configuration form is the two-line reply
`550-rejected because {ip} is in a black list at {zone}` / `550 {txt}`.

Stage and exemptions: a listing is decided at CONNECT (HELO, MAIL for domain lists); with
delay_reject (the default) the refusal is given at RCPT, where the engine still accepts
postmaster@ and abuse@ (RFC 5321 §4.5.1; RFC 2142), as Exim's default configuration
accepts postmaster before its DNSBL checks.

RFC 5321 lets a server refuse mail by local policy, so every outcome is allowed.
RFC 5782 §5 test points: IPv4 lists list 127.0.0.2 and not 127.0.0.1; domain lists list
`test` and not `invalid`; the bundled dnsbl-spamhaus world honours them.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from strictmx.policies._dnsbl_codes import CodeSet as CodeSet
from strictmx.receiver.outcome import BASE, HOST, IP, TEXT, ZONE, Fields, check_placeholders
from strictmx.receiver.policy import FROM_CATALOGUE, Context, Outcome, Policy, PolicyOptions
from strictmx.receiver.reproduction import (
    DEFAULT_HELO,
    Build,
    Request,
    dns_world,
    dnsbl_query,
    domain_of,
    is_name,
    zone_in,
)
from strictmx.receiver.session import Session
from strictmx.receiver.verdict import Action, Reply, ReplyError, Stage, Verdict
from strictmx.receiver.world.config_types import DnsName
from strictmx.receiver.world.dns import NoData, NXDomain, TempFail
from strictmx.receiver.world.names import dnsbl_prefix, ip_of, public_ip

#: Postfix smtpd_check.c: the TXT records of a listing, joined and truncated.
TXT_SEPARATOR = " / "
TXT_MAX = 500

LISTED_FIELDS = {"zone": ZONE, "query": HOST, "code": IP, "txt": TEXT, "txt_suffix": TEXT}
DOMAIN_FIELDS = {**LISTED_FIELDS, "domain": HOST}
#: Block lists that replies name by their operator rather than their zone.
BLOCKLIST_OPERATORS = {
    "spamcop": "bl.spamcop.net",
    "spamhaus": "zen.spamhaus.org",
    "barracuda": "b.barracudacentral.org",
    "sorbs": "dnsbl.sorbs.net",
}

PERMIT = "DNSWL_PERMIT"
QUERY_REFUSED = "DNSBL_QUERY_REFUSED"
LOOKUP_FAILED = "DNSBL_LOOKUP_FAILED"

# Meanings for reasons only; which codes count is always the entry's `codes`. Spamhaus
# ZEN as Haraka's dns-list.ini and the public xlist database give it (receivers.md §5.1).
_SPAMHAUS_ERRORS = {
    252: "typo in the DNSBL name",
    254: "query through a public or open resolver",
    255: "excessive number of queries",
}
_ZEN_CODES = {
    2: "SBL",
    3: "SBL CSS",
    **dict.fromkeys(range(4, 8), "XBL, exploited host"),
    9: "DROP",
    10: "PBL, end-user address",
    11: "PBL, end-user address",
}


# -- options -----------------------------------------------------------------------------


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    zone: DnsName = Field(description="The list's DNS zone, e.g. zen.spamhaus.org.")
    codes: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8"],
        min_length=1,
        description="A answers that count as listed: addresses, a-b ranges, networks, "
        "Postfix's a.b.c.[x;y..z].",
    )

    @field_validator("zone")
    @classmethod
    def _not_root(cls, value: str) -> str:
        if value == ".":
            raise ValueError("a list needs a zone name, not the root")
        return value

    @field_validator("codes")
    @classmethod
    def _codes(cls, value: list[str]) -> list[str]:
        CodeSet.parse(value)
        return value


class AllowZone(_Entry):
    """An allow list (DNSWL) of client addresses."""


class ClientZone(_Entry):
    """A block list (DNSBL) of client addresses."""

    reply_fields: ClassVar[Fields] = LISTED_FIELDS

    reply: str | list[str] | None = Field(
        None, description="The reply for a hit on this entry, instead of the outcome's."
    )

    @field_validator("reply")
    @classmethod
    def _reply(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is not None:
            _zone_reply(value, cls.reply_fields)
        return value


class DomainZone(ClientZone):
    """A domain list (RHSBL) for the HELO name or the sender's domain."""

    reply_fields: ClassVar[Fields] = DOMAIN_FIELDS

    check: Literal["helo", "sender"] = Field(
        description="helo: the HELO/EHLO name, at HELO; sender: the MAIL FROM domain, at MAIL."
    )


def _zone_reply(spec: str | Sequence[str], fields: Fields) -> Reply:
    try:
        reply = Reply.parse(spec)
        check_placeholders(reply, {**BASE, **fields})
    except ReplyError as exc:
        raise ValueError(str(exc)) from None
    if reply.code < 400:
        raise ValueError(f"a listing needs a 4xx or 5xx reply, not {reply.code}")
    return reply


class DnsblOptions(PolicyOptions):
    zones: list[ClientZone] = Field(
        default_factory=list,
        description="Client address block lists (DNSBL), in order, at CONNECT: "
        "{zone, codes, reply}.",
    )
    rhsbl: list[DomainZone] = Field(
        default_factory=list,
        description="Domain block lists: {zone, check: helo|sender, codes, reply}; the HELO "
        "name at HELO, the sender domain at MAIL.",
    )
    allow: list[AllowZone] = Field(
        default_factory=list,
        description="Client address allow lists (DNSWL): {zone, codes}; a hit permits the "
        "stage and skips the block lists.",
    )
    refused_codes: list[str] = Field(
        default_factory=lambda: ["127.255.255.0/24"],
        description="A answers meaning 'query refused' (Spamhaus 127.255.255.x): never a "
        "listing, reported.",
    )
    defer_on_error: bool = Field(
        False, description="Defer (451) when a block list lookup fails temporarily."
    )

    @field_validator("refused_codes")
    @classmethod
    def _codes(cls, value: list[str]) -> list[str]:
        CodeSet.parse(value)
        return value

    @model_validator(mode="after")
    def _some_list(self) -> DnsblOptions:
        if not (self.zones or self.rhsbl or self.allow):
            raise ValueError("give at least one list under zones, rhsbl or allow")
        return self


def _domain(text: str | None) -> str | None:
    """A domain a domain list can be asked about, or None (no name, a literal, an IP)."""
    if not text:
        return None
    name = text.strip().lower().removesuffix(".")
    if not name or name.startswith("["):
        return None
    try:
        ip_of(name)
    except ValueError:
        return name
    return None


# -- the policy --------------------------------------------------------------------------


@dataclass(frozen=True)
class _List:
    """An option entry ready for use: parsed codes and reply."""

    zone: str
    codes: CodeSet
    reply: Reply | None
    check: Literal["client", "helo", "sender"]

    @property
    def outcome(self) -> str:
        return {
            "client": "DNSBL_LISTED",
            "helo": "RHSBL_HELO_LISTED",
            "sender": "RHSBL_SENDER_LISTED",
        }[self.check]


Answer = list[ipaddress.IPv4Address] | TempFail


@dataclass
class _Report:
    """Answers that did not count (query refused, lookup failed), for a DUNNO verdict."""

    refused: dict[str, str] = field(default_factory=dict)  # query name -> A answer
    failed: dict[str, str] = field(default_factory=dict)  # query name -> failure kind
    notes: list[str] = field(default_factory=list)

    def noted(self, policy: Policy[Any], stage: Stage) -> Verdict | None:
        if not self.notes:
            return None
        details: dict[str, Any] = {}  # Any: keyword arguments beside permit and delay
        if self.refused:
            details["refused"] = dict(self.refused)
        if self.failed:
            details["failed"] = dict(self.failed)
        outcome = QUERY_REFUSED if self.refused else LOOKUP_FAILED
        return policy.note(outcome, stage, "; ".join(self.notes), **details)


class Dnsbl(Policy[DnsblOptions]):
    """Client address on DNSBLs, HELO name and sender domain on RHSBLs, DNSWL allow lists."""

    name = "dnsbl"
    summary = "DNS block lists for the client address, HELO name and sender domain; allow lists"
    stages = frozenset({Stage.CONNECT, Stage.HELO, Stage.MAIL})
    pure = True  # judged from client, HELO, sender and DNS records alone
    Options = DnsblOptions
    outcomes: ClassVar[tuple[Outcome, ...]] = (
        Outcome(
            "DNSBL_LISTED",
            FROM_CATALOGUE,
            "The client address is listed on a block list (Postfix reject_rbl_client).",
            fields=LISTED_FIELDS,
            stage=Stage.CONNECT,
            also_at=frozenset({Stage.HELO, Stage.MAIL}),
        ),
        Outcome(
            "RHSBL_HELO_LISTED",
            FROM_CATALOGUE,
            "The HELO/EHLO name is listed on a domain list (Postfix reject_rhsbl_helo).",
            fields=DOMAIN_FIELDS,
            stage=Stage.HELO,
        ),
        Outcome(
            "RHSBL_SENDER_LISTED",
            FROM_CATALOGUE,
            "The MAIL FROM domain is listed on a domain list (Postfix reject_rhsbl_sender).",
            fields=DOMAIN_FIELDS,
            stage=Stage.MAIL,
        ),
        Outcome(
            "DNSBL_TEMPFAIL",
            FROM_CATALOGUE,
            "A block list lookup failed temporarily and defer_on_error is on (maddy's text).",
            action=Action.DEFER,
            fields={"zone": ZONE, "query": HOST, "failure": TEXT},
            stage=Stage.CONNECT,
            also_at=frozenset({Stage.HELO, Stage.MAIL}),
        ),
    )

    @classmethod
    def read_reply(cls, outcome: str, text: str) -> dict[str, str]:
        """Its refusals name the block list, by zone or by operator."""
        return zone_in(text, BLOCKLIST_OPERATORS)

    @classmethod
    def reproduce(cls, req: Request) -> Build:
        """The client address (or the HELO, or the sender domain) listed on the named zone,
        with the reply's TXT."""
        ident = req.identity
        ip = ident.client_ip
        outcome = req.entry.outcome
        zone = req.fields.get("zone", "")
        zone = zone if is_name(zone) else "dnsbl.example.net"
        txt = req.fields.get("txt", "")
        listed: dict[str, Any] = {"A": "127.0.0.2"}
        if txt:
            listed["TXT"] = txt
        bound = {"zone": zone, "txt": txt}
        if outcome == "RHSBL_HELO_LISTED":
            helo = ident.helo if is_name(ident.helo) else DEFAULT_HELO
            return Build(
                options={"rhsbl": [{"zone": zone, "check": "helo"}]},
                case={"helo": helo},
                world=dns_world({f"{helo}.{zone}": listed}),
                bound={**bound, "domain": helo},
            )
        if outcome == "RHSBL_SENDER_LISTED":
            domain = req.fields.get("domain") or domain_of(ident.mail_from)
            sender = ident.mail_from if domain_of(ident.mail_from) == domain else f"alice@{domain}"
            return Build(
                options={"rhsbl": [{"zone": zone, "check": "sender"}]},
                case={"mail_from": sender},
                world=dns_world({f"{domain}.{zone}": listed}),
                bound={**bound, "domain": domain},
            )
        if outcome == "DNSBL_TEMPFAIL":
            return Build(
                options={"zones": [{"zone": zone}], "defer_on_error": True},
                world=dns_world(servfail=[dnsbl_query(ip, zone)]),
            )
        return Build(
            options={"zones": [{"zone": zone}]},
            world=dns_world({dnsbl_query(ip, zone): listed}),
            bound=bound,
        )

    def __init__(self, options: DnsblOptions, replies: Mapping[str, Reply] | None = None) -> None:
        super().__init__(options, replies)
        self._refused = CodeSet.parse(options.refused_codes)
        self._allow = tuple(
            _List(z.zone, CodeSet.parse(z.codes), None, "client") for z in options.allow
        )
        client = [self._compile(z, "client") for z in options.zones]
        domains = [self._compile(z, z.check) for z in options.rhsbl]
        blocks = {
            Stage.CONNECT: tuple(client),
            Stage.HELO: tuple(d for d in domains if d.check == "helo"),
            Stage.MAIL: tuple(d for d in domains if d.check == "sender"),
        }
        self._blocks = {stage: lists for stage, lists in blocks.items() if lists}
        if self._allow:
            self._blocks.setdefault(Stage.CONNECT, ())

    @staticmethod
    def _compile(entry: ClientZone, check: Literal["client", "helo", "sender"]) -> _List:
        reply = None if entry.reply is None else _zone_reply(entry.reply, type(entry).reply_fields)
        return _List(entry.zone, CodeSet.parse(entry.codes), reply, check)

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        blocks = self._blocks.get(stage)
        if blocks is None:
            return None
        reversed_client = dnsbl_prefix(public_ip(ip_of(session.client.address)))
        domain = None
        if stage is Stage.HELO:
            domain = _domain(session.helo)
        elif stage is Stage.MAIL and session.mail_from:
            domain = _domain(session.mail_from.rpartition("@")[2])
        subject = reversed_client if stage is Stage.CONNECT else domain
        wanted = [(lst, f"{subject}.{lst.zone}") for lst in blocks if subject is not None]
        allowed = [(lst, f"{reversed_client}.{lst.zone}") for lst in self._allow]
        if not wanted and not allowed:
            return None
        answers = await _lookup_all(ctx, {name for _, name in (*allowed, *wanted)})

        report = _Report()
        for lst, name in allowed:
            hit = self._judge(lst, name, answers[name], report, "an allow list never defers")
            if hit is not None:
                return self.note(
                    PERMIT,
                    stage,
                    f"{session.client.address} is on the allow list {lst.zone} "
                    f"({name} has A {hit}): permitted",
                    permit=True,
                    zone=lst.zone,
                    query=name,
                    code=str(hit),
                )
        failure: tuple[_List, str, TempFail] | None = None
        for lst, name in wanted:
            answer = answers[name]
            if isinstance(answer, TempFail) and failure is None:
                failure = (lst, name, answer)
            hit = self._judge(lst, name, answer, report, "defer_on_error is off")
            if hit is not None:
                return await self._listed(lst, name, hit, stage, session, ctx, domain)
        if failure is not None and self.options.defer_on_error:
            lst, name, error = failure
            return self.verdict(
                "DNSBL_TEMPFAIL",
                stage,
                session,
                ctx,
                f"lookup of {name} failed ({error.kind}) and defer_on_error is on: try again later",
                zone=lst.zone,
                query=name,
                failure=error.kind,
            )
        return report.noted(self, stage)

    def _judge(
        self, lst: _List, name: str, answer: Answer, report: _Report, why_not_listed: str
    ) -> ipaddress.IPv4Address | None:
        """The first answer that counts as a listing; the report learns what did not count."""
        if isinstance(answer, TempFail):
            if name not in report.failed:
                report.failed[name] = answer.kind
                report.notes.append(
                    f"lookup of {name} failed ({answer.kind}): counted as not listed "
                    f"({why_not_listed})"
                )
            return None
        hit = next((a for a in answer if a in lst.codes and a not in self._refused), None)
        refused = next((a for a in answer if a in self._refused), None)
        if hit is None and refused is not None and name not in report.refused:
            report.refused[name] = str(refused)
            meaning = _SPAMHAUS_ERRORS.get(int(refused) & 0xFF)
            report.notes.append(
                f"{lst.zone} refused the query {name} with {refused}"
                + (f" ({meaning})" if meaning else "")
                + ": never a reason to reject, counted as not listed"
            )
        return hit

    async def _listed(
        self,
        lst: _List,
        name: str,
        code: ipaddress.IPv4Address,
        stage: Stage,
        session: Session,
        ctx: Context,
        domain: str | None,
    ) -> Verdict:
        try:
            texts = await ctx.dns.txt(name)
        except TempFail:
            texts = []  # Postfix sends the reply without $rbl_reason
        txt = TXT_SEPARATOR.join(texts)[:TXT_MAX]
        # Any: they travel as keyword arguments of Policy.verdict, next to action and delay.
        fields: dict[str, Any] = {
            "zone": lst.zone,
            "query": name,
            "code": str(code),
            "txt": txt,
            "txt_suffix": f"; {txt}" if txt else "",
        }
        meaning = _ZEN_CODES.get(int(code) & 0xFF) if _is_zen(lst.zone) else None
        found = f"{name} has A {code}" + (f" ({meaning})" if meaning else "")
        if lst.check == "client":
            reason = f"client address {session.client.address} is listed on {lst.zone}: {found}"
        else:
            fields["domain"] = domain
            what = "HELO name" if lst.check == "helo" else "sender domain"
            reason = f"{what} {domain} is listed on {lst.zone}: {found}"
        if txt:
            reason += f"; TXT: {txt}"
        return self.verdict(lst.outcome, stage, session, ctx, reason, reply=lst.reply, **fields)


def _is_zen(zone: str) -> bool:
    return zone == "zen.spamhaus.org" or zone.endswith(".zen.dq.spamhaus.net")


async def _lookup_all(ctx: Context, names: Iterable[str]) -> dict[str, Answer]:
    """A records of every name, asked concurrently (each once per session, by ctx.dns)."""
    ordered = sorted(names)
    if len(ordered) == 1:  # one zone: no tasks to schedule for it
        return {ordered[0]: await _lookup(ctx, ordered[0])}
    results = await asyncio.gather(*(_lookup(ctx, name) for name in ordered))
    return dict(zip(ordered, results, strict=True))


async def _lookup(ctx: Context, name: str) -> Answer:
    try:
        records = await ctx.dns.resolve(name, "A")
    except (NXDomain, NoData):
        return []
    except TempFail as exc:
        return exc
    return [ipaddress.IPv4Address(r.to_text()) for r in records]
