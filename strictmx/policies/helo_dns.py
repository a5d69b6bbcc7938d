"""helo_dns: does the HELO/EHLO name agree with DNS and with the client's address?"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Awaitable, Callable
from typing import ClassVar, Literal, Self

from pydantic import Field, model_validator

from strictmx.receiver.finding import Finding
from strictmx.receiver.outcome import HOST, IP, TEXT, VERB
from strictmx.receiver.policy import (
    FROM_CATALOGUE,
    Context,
    Outcome,
    Policy,
    PolicyOptions,
    client_names,
)
from strictmx.receiver.reproduction import (
    DEFAULT_HELO,
    RECEIVER_HOSTNAME,
    Build,
    Request,
    dns_world,
    is_name,
    literal,
    other_ip,
)
from strictmx.receiver.session import IPAddress, Session
from strictmx.receiver.verdict import Action, Stage, Verdict
from strictmx.receiver.world.config_types import DnsName, IPText
from strictmx.receiver.world.dns import TempFail
from strictmx.receiver.world.names import ip_of, parse_name, public_ip
from strictmx.receiver.world.suffixes import owner_domain

# A label as DNS carries it (A-labels for IDNs), '_' allowed as Postfix allows it. Only
# what could be a host name is looked up; finer syntax rules are helo_syntax's.
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
_IPV6_TAG = "ipv6:"
_IPV4_TAG = "ipv4:"  # Exim's; RFC 5321 defines only IPv6:


class HeloDnsOptions(PolicyOptions):
    resolve: bool = Field(
        True,
        description="The name must have an A or AAAA record (or MX with accept_mx): "
        "Postfix reject_unknown_helo_hostname.",
    )
    accept_mx: bool = Field(
        True, description="An MX record (even a null MX) is enough for resolve, as in Postfix."
    )
    require_a_record: bool = Field(
        False, description="The name itself must not be a CNAME (an alias is refused)."
    )
    forward_confirm: bool = Field(
        False, description="The name's A/AAAA records must include the client address."
    )
    ptr_match: Literal["off", "exact", "domain"] = Field(
        "off",
        description="The name must be one of the client's PTR names (exact), or share a "
        "registered domain with one (domain, by the Public Suffix List).",
    )
    literal_match: bool = Field(False, description="An address literal must be the client address.")
    literal_ptr: bool = Field(
        False,
        description="An address literal's address must have a PTR name that resolves back to it.",
    )
    verify: Literal["each", "any"] = Field(
        "each",
        description="each: every enabled identity check must pass; any: one passing "
        "literal_match, forward_confirm or ptr_match is enough (Exim verify = helo).",
    )
    reject_my_name: bool = Field(
        False,
        description="Refuse a HELO naming this receiver (its hostname, my_names) or a "
        "literal of my_addresses.",
    )
    my_names: tuple[DnsName, ...] = Field(
        (), description="reject_my_name: names besides the receiver's hostname that are its own."
    )
    my_addresses: tuple[IPText, ...] = Field(
        (), description="reject_my_name: this receiver's addresses, refused as literals."
    )

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        identity = self.forward_confirm or self.ptr_match != "off" or self.literal_match
        if self.verify == "any" and not identity:
            raise ValueError(
                "verify: any needs at least one of forward_confirm, ptr_match or literal_match"
            )
        if (self.my_names or self.my_addresses) and not self.reject_my_name:
            raise ValueError("my_names and my_addresses are used only with reject_my_name: true")
        if not (
            identity
            or self.resolve
            or self.require_a_record
            or self.literal_ptr
            or self.reject_my_name
        ):
            raise ValueError("every check is off: enable at least one, or drop the policy")
        return self


Check = Callable[[], Awaitable[Finding | None]]


class HeloDns(Policy[HeloDnsOptions]):
    """Refuse a HELO/EHLO name that DNS does not back, or that is not the client's own.

    Runs at HELO. Each check is switched on by its option; a persona enables the ones the
    receiver it emulates runs. They run in the order below and the first that fails decides.

    For a host name:

    - `reject_my_name`: the HELO is this receiver's name (`ctx.hostname` or `my_names`) and
      the client is not one of `my_addresses` -> HELO_IS_ME, `550 5.7.506 Access Denied, Bad
      HELO` (Microsoft Exchange Online; Exim's helo_lookup_domains `@:@[]` singles out the
      same names).
    - `require_a_record`: the name itself must not be an alias -> HELO_IS_CNAME. Strict
      receivers want the name of an A record; a resolver follows the CNAME, this does not.
    - `resolve` (on by default): the name must have an A or AAAA record, or with `accept_mx`
      an MX record (a null MX counts) -> HELO_NOT_FOUND,
      `450 4.7.1 <name>: Helo command rejected: Host not found`. This is Postfix's
      reject_unknown_helo_hostname (smtpd_check.c: dns_lookup_l A, AAAA, MX; CNAMEs followed;
      unknown_hostname_reject_code = 450), which does no forward confirmation.
    - `forward_confirm`: the name's A/AAAA records include the client address ->
      HELO_NOT_CONFIRMED (Haraka helo.checks forward_dns, "HELO host has no forward DNS match").
    - `ptr_match`: the name agrees with the client's reverse DNS -> HELO_PTR_MISMATCH (Haraka
      helo.checks rdns_match, "HELO host does not match rDNS"). `exact`: it is one of the PTR
      names; `domain`: it is, or shares its registered domain with one of them (the Public
      Suffix List as bundled with the `publicsuffixlist` package: nothing is fetched). A
      client name asserted by XCLIENT NAME stands in for the PTR lookup, as in Postfix.

    For an address literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`; Postfix looks nothing up
    for one):

    - `reject_my_name`: the literal is one of `my_addresses` and the client is not -> HELO_IS_ME.
    - `literal_ptr`: a PTR name of the literal's address must resolve back to it ->
      HELO_LITERAL_NO_PTR (seed-01 "Host domain literal A name does not match any reverse
      DNS PTR").
    - `literal_match`: the literal must be the client's address -> HELO_LITERAL_MISMATCH
      (Haraka helo.checks literal_mismatch; helo_syntax has the same check without DNS).

    With `verify: any`, the identity checks (`literal_match` for a literal, `forward_confirm`
    and `ptr_match` for a name) pass together when one of them passes, as Exim's `verify =
    helo` does ("an IP literal matching the calling address", "the name Exim got by reverse
    lookup", or "resolves in DNS to the calling address"); when none does -> HELO_NOT_VERIFIED,
    `550 EHLO argument does not match calling host` (Exim helo_verify_hosts). The other
    checks must still pass each on its own.

    A name that is not syntactically a host name, a malformed literal and a bare IP address get
    no opinion: judging syntax is helo_syntax's job, and a scenario lists it first.

    A DNS lookup that fails temporarily (SERVFAIL, timeout) defers -> HELO_DNS_TEMPFAIL, with
    Postfix's `450 4.7.1 <name>: Helo command rejected: Host not found` (Postfix sends the same
    text through unknown_helo_hostname_tempfail_action); only a persona's 5xx reply override
    turns it into a permanent refusal. A check stays undecided by a temporary failure when
    another lookup already settled it (one confirming PTR name is enough).

    RFC 5321 §4.1.4: a server "MAY verify that the domain name argument in the EHLO command
    actually corresponds to the IP address of the client. However, if the verification fails,
    the server MUST NOT refuse to accept a message on that basis." Every outcome here is such
    a verification, so every verdict carries rfc_compliant = False.
    """

    name = "helo_dns"
    summary = "HELO/EHLO name must resolve, and agree with the client's address and rDNS"
    stages = frozenset({Stage.HELO})
    pure = True  # judged from client, HELO, sender and DNS records alone
    Options = HeloDnsOptions
    outcomes: ClassVar[tuple[Outcome, ...]] = (
        Outcome(
            "HELO_IS_ME",
            FROM_CATALOGUE,
            "The HELO names this receiver, or is a literal of its address (Microsoft "
            "Exchange Online).",
            rfc_allows=False,
            fields={"verb": VERB},
        ),
        Outcome(
            "HELO_LITERAL_MISMATCH",
            FROM_CATALOGUE,
            "The address literal is not the client's address (Haraka literal_mismatch).",
            rfc_allows=False,
            fields={"verb": VERB, "address": IP},
        ),
        Outcome(
            "HELO_LITERAL_NO_PTR",
            FROM_CATALOGUE,
            "No PTR name of the literal's address has an A/AAAA record for that address (seed-01).",
            rfc_allows=False,
            fields={"verb": VERB, "address": IP, "ptr": HOST},
        ),
        Outcome(
            "HELO_IS_CNAME",
            FROM_CATALOGUE,
            "The name is a CNAME; the receiver wants the name of an A/AAAA record.",
            rfc_allows=False,
            fields={"verb": VERB, "target": HOST},
        ),
        Outcome(
            "HELO_NOT_FOUND",
            FROM_CATALOGUE,
            "The name has no A, AAAA (or MX) record (Postfix reject_unknown_helo_hostname).",
            action=Action.DEFER,
            rfc_allows=False,
            fields={"verb": VERB},
        ),
        Outcome(
            "HELO_NOT_CONFIRMED",
            FROM_CATALOGUE,
            "The name's A/AAAA records do not include the client address (Haraka forward_dns).",
            rfc_allows=False,
            fields={"verb": VERB, "addresses": TEXT},
        ),
        Outcome(
            "HELO_PTR_MISMATCH",
            FROM_CATALOGUE,
            "The name is not the client's PTR name, nor (ptr_match: domain) in its registered "
            "domain (Haraka rdns_match).",
            rfc_allows=False,
            fields={"verb": VERB, "ptr": HOST},
        ),
        Outcome(
            "HELO_NOT_VERIFIED",
            FROM_CATALOGUE,
            "verify: any, and no identity check passed (Exim verify = helo, helo_verify_hosts).",
            rfc_allows=False,
            fields={"verb": VERB},
        ),
        Outcome(
            "HELO_DNS_TEMPFAIL",
            FROM_CATALOGUE,
            "A lookup the checks need failed temporarily (SERVFAIL or timeout); defers "
            "(Postfix unknown_helo_hostname_tempfail_action).",
            action=Action.DEFER,
            rfc_allows=False,
            fields={"verb": VERB, "lookup": TEXT, "error": TEXT},
        ),
    )

    @classmethod
    def reproduce(cls, req: Request) -> Build:
        """A HELO name and the DNS records that make its lookups fail the way the outcome says."""
        ip = req.identity.client_ip
        outcome = req.entry.outcome
        given = req.fields.get("helo", "")
        name = given if is_name(given) else DEFAULT_HELO
        other = other_ip(ip)
        family = "AAAA" if ipaddress.ip_address(ip).version == 6 else "A"
        if outcome == "HELO_IS_ME":
            return Build(
                options={"resolve": False, "reject_my_name": True},
                case={"helo": RECEIVER_HOSTNAME},
            )
        if outcome == "HELO_LITERAL_MISMATCH":
            helo = given if given.startswith("[") and ip not in given else literal(other)
            return Build(options={"resolve": False, "literal_match": True}, case={"helo": helo})
        if outcome == "HELO_LITERAL_NO_PTR":
            return Build(
                options={"resolve": False, "literal_ptr": True},
                case={"helo": literal(ip)},
                world=dns_world(),
            )
        if outcome == "HELO_IS_CNAME":
            target = "host." + name
            return Build(
                options={"resolve": False, "require_a_record": True},
                case={"helo": name},
                world=dns_world({name: {"CNAME": target + "."}, target: {family: ip}}),
                bound={"target": target},
            )
        if outcome == "HELO_NOT_FOUND":
            return Build(options={"resolve": True}, case={"helo": name}, world=dns_world())
        if outcome == "HELO_NOT_CONFIRMED":
            return Build(
                options={"resolve": True, "forward_confirm": True},
                case={"helo": name},
                world=dns_world({name: {family: other}}),
            )
        if outcome == "HELO_PTR_MISMATCH":
            ptr = req.fields.get("ptr", "")
            ptr = ptr if is_name(ptr) and ptr != name else "host-25.example.org"
            return Build(
                options={"resolve": False, "ptr_match": "exact"},
                case={"helo": name},
                world=dns_world({name: {family: ip}, ptr: {family: ip}}, ptr={ip: ptr}),
                bound={"ptr": ptr},
            )
        if outcome == "HELO_NOT_VERIFIED":
            return Build(
                options={"resolve": False, "verify": "any", "forward_confirm": True},
                case={"helo": name},
                world=dns_world({name: {family: other}}),
            )
        # HELO_DNS_TEMPFAIL
        return Build(
            options={"resolve": True}, case={"helo": name}, world=dns_world(servfail=[name])
        )

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        helo = session.helo or ""
        try:
            finding = await self._judge(helo, session, ctx)
        except TempFail as exc:
            finding = Finding(
                "HELO_DNS_TEMPFAIL",
                f"the {exc.rdtype} lookup of {exc.name} failed temporarily ({exc.kind}), so "
                f"{helo!r} cannot be checked now",
                {"lookup": f"{exc.name} {exc.rdtype}", "error": exc.kind},
            )
        if finding is None:
            return None
        return self.verdict(
            finding.outcome,
            stage,
            session,
            ctx,
            finding.reason,
            verb=(session.helo_verb or "HELO").upper(),
            **finding.fields,
        )

    async def _judge(self, helo: str, session: Session, ctx: Context) -> Finding | None:
        opts = self.options
        client = public_ip(session.client.ip)
        required: list[Check] = []
        identity: list[Check] = []
        literal = literal_address(helo)
        if literal is not None:
            found = self._is_me_literal(helo, literal, client)
            if opts.literal_ptr:
                required.append(lambda: _literal_confirmed(helo, literal, ctx))
            if opts.literal_match:
                identity.append(lambda: _literal_is_client(helo, literal, client))
        else:
            name = host_name(helo)
            if name is None:
                return None
            found = self._is_me_name(helo, name, client, ctx)
            if opts.require_a_record:
                required.append(lambda: _not_alias(helo, name, ctx))
            if opts.resolve:
                required.append(lambda: _resolves(helo, name, ctx, accept_mx=opts.accept_mx))
            if opts.forward_confirm:
                identity.append(lambda: _forward_confirmed(helo, name, client, ctx))
            if opts.ptr_match != "off":
                domain = opts.ptr_match == "domain"
                identity.append(lambda: _ptr_matches(helo, name, session, ctx, domain=domain))
        if found is not None:
            return found
        for check in required:
            found = await check()
            if found is not None:
                return found
        if opts.verify == "any":
            return await _any_passes(identity)
        for check in identity:
            found = await check()
            if found is not None:
                return found
        return None

    def _is_me_name(self, helo: str, name: str, client: IPAddress, ctx: Context) -> Finding | None:
        if not self.options.reject_my_name or client in self._my_addresses:
            return None
        own = name == host_name(ctx.hostname) or name in self.options.my_names
        if not own:
            return None
        return Finding(
            "HELO_IS_ME",
            f"{helo!r} is this receiver's own name, but the client {client} is not one of "
            "its addresses",
        )

    def _is_me_literal(self, helo: str, literal: IPAddress, client: IPAddress) -> Finding | None:
        if not self.options.reject_my_name or client in self._my_addresses:
            return None
        if literal not in self._my_addresses:
            return None
        return Finding(
            "HELO_IS_ME",
            f"{helo!r} is this receiver's own address, but the client is {client}",
            {"address": str(literal)},
        )

    @functools.cached_property
    def _my_addresses(self) -> frozenset[IPAddress]:
        return frozenset(public_ip(ip_of(a)) for a in self.options.my_addresses)


async def _any_passes(checks: list[Check]) -> Finding | None:
    """verify: any. One passing check is enough; a lookup that failed temporarily might
    have passed, so it defers unless another check passed."""
    failures: list[Finding] = []
    deferred: TempFail | None = None
    for check in checks:
        try:
            found = await check()
        except TempFail as exc:
            deferred = deferred or exc
            continue
        if found is None:
            return None
        failures.append(found)
    if deferred is not None:
        raise deferred
    if not failures:
        return None
    return Finding(
        "HELO_NOT_VERIFIED",
        "no identity check passed: " + "; ".join(f.reason for f in failures),
        {k: v for f in failures for k, v in f.fields.items()},
    )


# -- what the argument is ------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)  # a staging MTA greets with the same name every time
def host_name(text: str) -> str | None:
    """`text` as DNS has it (lowercase A-labels, no final dot), or None if no host name.

    A bare IP address, an all-numeric top label, a backslash escape or any label that is
    not letters, digits, '-' and '_' make it no host name.
    """
    if "\\" in text or _ip(text) is not None:
        return None
    try:
        name = parse_name(text)
    except ValueError:
        return None
    labels = [label.decode("ascii", "replace").lower() for label in name.labels[:-1]]
    if not labels or labels[-1].isdigit():
        return None
    if not all(_LABEL.match(label) for label in labels):
        return None
    return ".".join(labels)


def literal_address(text: str) -> IPAddress | None:
    """The address of a well-formed `[literal]`, or None (malformed ones are helo_syntax's)."""
    if len(text) < 3 or text[0] != "[" or text[-1] != "]":
        return None
    inner = text[1:-1]
    if inner[:5].lower() in (_IPV6_TAG, _IPV4_TAG):
        inner = inner[5:]
    ip = _ip(inner)
    return None if ip is None else public_ip(ip)


def _ip(text: str) -> IPAddress | None:
    if "%" in text:  # a scoped address means nothing outside the sender's own link
        return None
    try:
        return ip_of(text)
    except ValueError:
        return None


# -- the checks ------------------------------------------------------------------------------


async def _addresses_of(name: str, ctx: Context) -> list[IPAddress]:
    return [public_ip(ip_of(text)) for text in await ctx.dns.addresses(name)]


def _shown(addresses: list[IPAddress]) -> str:
    return ", ".join(map(str, addresses))


async def _literal_is_client(helo: str, literal: IPAddress, client: IPAddress) -> Finding | None:
    if literal == client:
        return None
    return Finding(
        "HELO_LITERAL_MISMATCH",
        f"address literal {helo!r} is not the client's address {client}",
        {"address": str(literal)},
    )


async def _literal_confirmed(helo: str, literal: IPAddress, ctx: Context) -> Finding | None:
    names = await ctx.dns.ptr(str(literal))
    if await _one_resolves_to(names, literal, ctx):
        return None
    if names:
        why = f"none of its PTR names ({', '.join(names)}) has an address record for it"
    else:
        why = "it has no PTR record"
    return Finding(
        "HELO_LITERAL_NO_PTR",
        f"address literal {helo!r} is not confirmed by reverse DNS: {why}",
        {"address": str(literal), "ptr": ", ".join(names) or "none"},
    )


async def _one_resolves_to(names: list[str], address: IPAddress, ctx: Context) -> bool:
    """Whether one of `names` has `address`; TempFail only if none has and a lookup failed."""
    failure: TempFail | None = None
    for name in names:
        try:
            if address in await _addresses_of(name, ctx):
                return True
        except TempFail as exc:
            failure = failure or exc
    if failure is not None:
        raise failure
    return False


async def _not_alias(helo: str, name: str, ctx: Context) -> Finding | None:
    target = await ctx.dns.cname(name)
    if target is None:
        return None
    return Finding(
        "HELO_IS_CNAME",
        f"{helo!r} is an alias (CNAME) for {target}; the HELO must name a host with its own "
        "A or AAAA record",
        {"target": target},
    )


async def _resolves(helo: str, name: str, ctx: Context, *, accept_mx: bool) -> Finding | None:
    failure: TempFail | None = None
    try:
        if await ctx.dns.addresses(name):
            return None
    except TempFail as exc:
        failure = exc
    if accept_mx:
        try:
            if await ctx.dns.mx(name):
                return None
        except TempFail as exc:
            failure = failure or exc
    if failure is not None:
        raise failure
    wanted = "A, AAAA or MX" if accept_mx else "A or AAAA"
    return Finding("HELO_NOT_FOUND", f"{helo!r} has no {wanted} record in DNS")


async def _forward_confirmed(
    helo: str, name: str, client: IPAddress, ctx: Context
) -> Finding | None:
    addresses = await _addresses_of(name, ctx)
    if client in addresses:
        return None
    if addresses:
        why = f"resolves to {_shown(addresses)}, not to the client address {client}"
    else:
        why = f"has no A or AAAA record, so it cannot resolve to the client address {client}"
    return Finding(
        "HELO_NOT_CONFIRMED", f"{helo!r} {why}", {"addresses": _shown(addresses) or "none"}
    )


async def _ptr_matches(
    helo: str, name: str, session: Session, ctx: Context, *, domain: bool
) -> Finding | None:
    found = await client_names(session.client, session.client.address, ctx)
    names = [host_name(n) or n for n in found]  # as DNS has them, to compare with `name`
    if name in names:
        return None
    if not names:
        return Finding(
            "HELO_PTR_MISMATCH",
            f"the client address {session.client.address} has no PTR record, so nothing "
            f"in reverse DNS matches {helo!r}",
            {"ptr": "none"},
        )
    shown = ", ".join(names)
    if domain:
        mine = owner_domain(name)
        if mine is not None and any(owner_domain(n) == mine for n in names):
            return None
        where = f" nor in its registered domain {mine}" if mine else ""
    else:
        where = ""
    return Finding(
        "HELO_PTR_MISMATCH",
        f"{helo!r} is not the client's reverse DNS name ({shown}){where}",
        {"ptr": shown},
    )
