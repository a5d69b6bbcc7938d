"""dynamic_client: does the client look like an end-user address rather than a mail server?"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field, field_validator

from strictmx.policies.dnsbl import BLOCKLIST_OPERATORS
from strictmx.receiver.finding import Finding
from strictmx.receiver.outcome import HOST, IP, TEXT, ZONE
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
    dnsbl_query,
    domain_of,
    is_name,
    reverse,
    sender_in,
    zone_in,
)
from strictmx.receiver.session import IPAddress, Session
from strictmx.receiver.verdict import Action, Reply, Stage, Verdict
from strictmx.receiver.world.config_types import DnsName
from strictmx.receiver.world.dns import NoData, NXDomain, TempFail
from strictmx.receiver.world.names import dnsbl_prefix, ip_of, public_ip

# SpamAssassin 20_dynrdns.cf (__RDNS_DYNAMIC_DHCP, __RDNS_INDICATOR_DYN/_RES, _DIALIN) and
# the usual ISP pool names, as whole words of a name's host part.
DYNAMIC_TOKENS = (
    "dyn",
    "dynamic",
    "dynip",
    "dhcp",
    "dsl",
    "adsl",
    "vdsl",
    "xdsl",
    "cable",
    "catv",
    "docsis",
    "pool",
    "ppp",
    "pppoe",
    "dial",
    "dialup",
    "dialin",
    "dip",
    "cpe",
    "client",
    "clients",
    "res",
    "resnet",
    "residential",
    "broadband",
)
# SpamAssassin __RDNS_STATIC, Haraka fcrdns (static|business), and names mail servers use.
STATIC_TOKENS = (
    "static",
    "staticip",
    "fix",
    "fixed",
    "fixip",
    "dedicated",
    "business",
    "mail",
    "smtp",
    "mx",
    "mta",
    "relay",
    "outbound",
)
# Spamhaus ZEN/PBL: 127.0.0.10 listed by the ISP, 127.0.0.11 by Spamhaus.
PBL_CODES = ("127.0.0.10", "127.0.0.11")

_WORD = re.compile(r"[a-z]+")
_DIGITS = re.compile(r"[0-9]+")
_SEPARATORS = re.compile(r"[.\-_]")


def _tokens(values: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    for value in values:
        word = value.lower()
        if not _WORD.fullmatch(word):
            raise ValueError(
                f"{value!r} is not a word of letters: names are split into words at every "
                "non-letter, so it could never match"
            )
        out.append(word)
    return tuple(out)


def _pbl_code(value: str) -> str:
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"not an IPv4 address: {value!r}") from None
    if not address.is_loopback:
        # DNSBL answers live in 127.0.0.0/8: Exim ignores others, Haraka disables the zone.
        raise ValueError(f"{value} is not in 127.0.0.0/8, where DNSBL answers are")
    return str(address)


Tokens = Annotated[tuple[str, ...], AfterValidator(_tokens)]
PblCode = Annotated[str, AfterValidator(_pbl_code)]


class DynamicClientOptions(PolicyOptions):
    check_ptr: bool = Field(
        True,
        description="Judge the client's host name: its first PTR name, or the XCLIENT NAME.",
    )
    embedded_address: bool = Field(
        True,
        description="A host name holding the client's own address (dotted, dashed, "
        "zero-padded, reversed, decimal or hex; IPv6 groups, hex or nibbles) is dynamic.",
    )
    dynamic_tokens: Tokens = Field(
        DYNAMIC_TOKENS,
        description="Words of a name's host part (left of its last two labels) that mark "
        "an end-user address.",
    )
    static_tokens: Tokens = Field(
        STATIC_TOKENS,
        description="Words of the host part that exempt a name: a static range or a mail server.",
    )
    patterns: tuple[str, ...] = Field(
        (),
        description="More regular expressions (Python, case-insensitive) searched in the "
        "whole name; a match marks it dynamic.",
    )
    check_helo: bool = Field(
        False, description="Apply the name tests to the HELO/EHLO name too, at HELO."
    )
    pbl_zones: tuple[DnsName, ...] = Field(
        (),
        description="Policy block lists queried as <reversed address>.<zone> A, e.g. "
        "zen.spamhaus.org or pbl.spamhaus.org.",
    )
    pbl_codes: tuple[PblCode, ...] = Field(
        PBL_CODES,
        description="A answers that mean 'end-user address' (Spamhaus PBL); other "
        "answers are another policy's business.",
    )
    require_unknown_sender_domain: bool = Field(
        False,
        description="Object only at MAIL, and only when the sender's domain has no MX, A "
        "or AAAA record as well.",
    )
    on_dns_tempfail: Literal["defer", "ignore"] = Field(
        "defer",
        description="A temporary DNS failure with no finding defers (4xx), or counts as "
        "a pass (Postfix's benefit of the doubt for DNSBLs).",
    )

    @field_validator("patterns")
    @classmethod
    def _compile(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"bad regular expression {value!r}: {exc}") from None
        return values


class DynamicClient(Policy[DynamicClientOptions]):
    """Refuse a client that looks like an end-user (dynamic, residential) address.

    Tests, each of which can be turned off:

    - The client's host name (its first PTR name, as Postfix and SpamAssassin see one
      name; or the name asserted with XCLIENT NAME) holds the client's own address:
      GENERIC_PTR (Haraka fcrdns's "generic rDNS"). IPv4 forms: four numbers in order or
      reversed whatever separates them (`203-0-113-9`, `9.113.0.203`, `ip203.000.113.009`),
      twelve zero-padded digits, the address as one decimal number, or its eight hex
      digits (SpamAssassin __RDNS_DYNAMIC_HEXIP). IPv6 forms: a label that reads as the
      address with '-' for ':' (`2001-db8--25`), or its 32 hex digits in order or as
      reversed nibbles, whatever separates them.
    - A word of the name's host part is a dynamic token (dyn, dsl, cable, pool, ppp,
      dialup, cpe, client, res, ... after SpamAssassin 20_dynrdns.cf), or a `patterns`
      regular expression matches the whole name: DYNAMIC_PTR. Words are the runs of
      letters; the host part is the name without its last two labels, which roughly are
      the ISP's own domain, so `mx.dslextreme.com` is not judged by its domain.
    - Both name tests are off for a name whose host part has a static token (static,
      fixed, dedicated, business, mail, smtp, mx, ...): SpamAssassin's __RDNS_STATIC
      and Haraka's static|business exemption, and a mail server's usual names.
    - The address is listed on a `pbl_zones` zone with an answer in `pbl_codes`
      (Spamhaus PBL: 127.0.0.10-11 on zen.spamhaus.org or pbl.spamhaus.org):
      POLICY_BLOCK_LISTED. The query is the reversed octets or the 32 reversed nibbles,
      then the zone (Postfix, Exim); a TXT record at the same name becomes `{txt}`.
      Other answers (the SBL/XBL codes, 127.255.255.254 "query refused") are ignored.
    - `check_helo`: the HELO/EHLO name gets the same name tests at HELO: DYNAMIC_HELO
      (SpamAssassin HELO_DYNAMIC_*, Haraka helo.checks "dynamic"). Address literals and
      bare addresses are helo_syntax's business.

    Stages: the client tests run at connect and at mail (list it where the emulated
    receiver decides); the HELO test at helo. With `require_unknown_sender_domain`, the
    client tests object only at MAIL and only when the envelope sender's domain does not
    exist either (no MX, A or AAAA; a null MX counts as existing):
    DYNAMIC_UNKNOWN_SENDER_DOMAIN, the sendmail-style "dynamic ip address Domain of
    sender address not exists" (seed-34). The null sender and address literals pass.

    A temporary DNS failure (SERVFAIL, timeout) of the PTR, DNSBL or sender-domain lookup
    defers with DNS_TEMPFAIL when nothing else was found, unless `on_dns_tempfail` is
    `ignore`. A failed TXT lookup only leaves `{txt}` empty.

    Default replies: Haraka fcrdns's `554 client <ptr> [<IP>] rejected; generic rDNS,
    please use your ISPs SMTP relay` for both name outcomes, Postfix reject_rbl_client's
    `554 5.7.1 Service unavailable; Client host [<IP>] blocked using <zone>; <TXT>`,
    Haraka helo.checks's `550 HELO is dynamic`, Postfix reject_unknown_sender_domain's
    `450 4.1.8 <ADDR>: Sender address rejected: Domain not found`, and maddy's `451
    4.7.0 DNS error during policy check`; each with an enhanced status code. The
    catalogue's "dynamic" texts (seed-33 ... seed-50) are overrides.

    RFC 5321 leaves refusing a client for what its address is to local policy. Refusing
    a greeting for what its valid name looks like is refusing on the EHLO argument,
    which §4.1.4 forbids, so DYNAMIC_HELO is flagged.
    """

    name = "dynamic_client"
    summary = "Client must not look like an end-user address (PTR name, PBL, HELO)"
    stages = frozenset({Stage.CONNECT, Stage.HELO, Stage.MAIL})
    pure = True  # judged from client, HELO, sender and DNS records alone
    Options = DynamicClientOptions
    outcomes: ClassVar[tuple[Outcome, ...]] = (
        Outcome(
            "GENERIC_PTR",
            FROM_CATALOGUE,
            "The client's host name holds its address (Haraka fcrdns generic rDNS).",
            fields={"ptr": HOST, "match": TEXT},
            stage=Stage.CONNECT,
            also_at=frozenset({Stage.MAIL}),
        ),
        Outcome(
            "DYNAMIC_PTR",
            FROM_CATALOGUE,
            "The client's host name has a dynamic-pool word or matches a pattern "
            "(SpamAssassin RDNS_DYNAMIC).",
            fields={"ptr": HOST, "match": TEXT},
            stage=Stage.CONNECT,
            also_at=frozenset({Stage.MAIL}),
        ),
        Outcome(
            "POLICY_BLOCK_LISTED",
            FROM_CATALOGUE,
            "The address is on a policy block list of end-user ranges (Spamhaus PBL).",
            fields={"zone": ZONE, "answer": IP, "txt": TEXT, "txt_suffix": TEXT},
            stage=Stage.CONNECT,
            also_at=frozenset({Stage.MAIL}),
        ),
        Outcome(
            "DYNAMIC_HELO",
            FROM_CATALOGUE,
            "The HELO/EHLO name holds the client address or a dynamic-pool word.",
            rfc_allows=False,
            fields={"match": TEXT},
            stage=Stage.HELO,
        ),
        Outcome(
            "DYNAMIC_UNKNOWN_SENDER_DOMAIN",
            FROM_CATALOGUE,
            "A dynamic-looking client sends from a domain with no MX, A or AAAA record.",
            action=Action.DEFER,
            fields={"domain": HOST, "ptr": HOST},
            stage=Stage.MAIL,
        ),
        Outcome(
            "DNS_TEMPFAIL",
            FROM_CATALOGUE,
            "A lookup the verdict depends on failed temporarily (SERVFAIL or timeout).",
            action=Action.DEFER,
            fields={"name": HOST, "failure": TEXT},
            stage=Stage.CONNECT,
            also_at=frozenset({Stage.MAIL}),
        ),
    )

    @classmethod
    def read_reply(cls, outcome: str, text: str) -> dict[str, str]:
        """Its refusals name the policy block list (by zone or operator) or the sender."""
        return {**zone_in(text, BLOCKLIST_OPERATORS), **sender_in(text)}

    @classmethod
    def reproduce(cls, req: Request) -> Build:
        """A PTR or HELO that reads as dynamic or generic, or a PBL listing of the client."""
        ip = req.identity.client_ip
        outcome = req.entry.outcome
        version = ipaddress.ip_address(ip).version
        generic = (ip.replace(".", "-") if version == 4 else ip.replace(":", "-")) + ".example.net"
        dynamic = "dyn-pool25.isp.example.net"
        ptr = req.fields.get("ptr", "")
        if outcome in ("GENERIC_PTR", "DYNAMIC_PTR"):
            wanted = "address" if outcome == "GENERIC_PTR" else "token"
            if not (is_name(ptr) and _reproduction_kind(ptr, ip) == wanted):
                ptr = generic if outcome == "GENERIC_PTR" else dynamic
            return Build(world=dns_world(ptr={ip: ptr}), bound={"ptr": ptr})
        if outcome == "POLICY_BLOCK_LISTED":
            zone = req.fields.get("zone", "")
            zone = zone if is_name(zone) else "zen.spamhaus.org"
            txt = req.fields.get("txt", "")
            record: dict[str, Any] = {"A": "127.0.0.10"}
            if txt:
                record["TXT"] = txt
            return Build(
                options={"check_ptr": False, "pbl_zones": [zone]},
                world=dns_world({dnsbl_query(ip, zone): record}),
                bound={"zone": zone, "txt": txt},
            )
        if outcome == "DYNAMIC_HELO":
            helo = req.fields.get("helo", "")
            if not (is_name(helo) and _reproduction_kind(helo, ip) is not None):
                helo = dynamic
            return Build(options={"check_ptr": False, "check_helo": True}, case={"helo": helo})
        if outcome == "DYNAMIC_UNKNOWN_SENDER_DOMAIN":
            return Build(
                options={"require_unknown_sender_domain": True},
                world=dns_world(ptr={ip: dynamic}),
                bound={"domain": domain_of(req.identity.mail_from), "ptr": dynamic},
            )
        # DNS_TEMPFAIL: the PTR lookup fails and nothing else marks the client
        return Build(world=dns_world(servfail=[reverse(ip)]))

    def __init__(
        self, options: DynamicClientOptions, replies: Mapping[str, Reply] | None = None
    ) -> None:
        super().__init__(options, replies)
        self._names = NameTests(
            embedded_address=options.embedded_address,
            dynamic=frozenset(options.dynamic_tokens),
            static=frozenset(options.static_tokens),
            patterns=tuple(re.compile(p, re.IGNORECASE) for p in options.patterns),
        )
        self._pbl_codes = frozenset(options.pbl_codes)

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        if stage is Stage.HELO:
            return self._check_helo(stage, session, ctx)
        if not self.options.require_unknown_sender_domain:
            finding = await self._judge_client(session, ctx)
        elif stage is Stage.MAIL:
            finding = await self._judge_sender(session, ctx)
        else:
            return None  # the sender is not known yet
        if finding is None:
            return None
        if finding.outcome == "DNS_TEMPFAIL" and self.options.on_dns_tempfail == "ignore":
            return None
        return self.verdict(finding.outcome, stage, session, ctx, finding.reason, **finding.fields)

    def _check_helo(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        helo = (session.helo or "").strip().lower()
        if not self.options.check_helo or not helo or helo.startswith("[") or _is_address(helo):
            return None
        ip = public_ip(session.client.ip)
        match = self._names.judge(helo, ip)
        if match is None:
            return None
        return self.verdict(
            "DYNAMIC_HELO",
            stage,
            session,
            ctx,
            f"the HELO name {helo} {match.sentence}",
            match=match.sentence,
        )

    async def _judge_client(self, session: Session, ctx: Context) -> Finding | None:
        ip = public_ip(session.client.ip)
        address = str(ip)
        tempfail: Finding | None = None
        if self.options.check_ptr:
            try:
                names = await client_names(session.client, address, ctx)
            except TempFail as exc:
                tempfail = _tempfail(exc, f"the PTR lookup of {address}")
                names = []
            name = names[0] if names else None
            if name:
                ptr = name.lower().rstrip(".")
                match = self._names.judge(ptr, ip)
                if match is not None:
                    return Finding(
                        "GENERIC_PTR" if match.kind == "address" else "DYNAMIC_PTR",
                        f"the client's host name {ptr} {match.sentence}",
                        {"ptr": ptr, "match": match.sentence},
                    )
        for zone in self.options.pbl_zones:
            query = f"{dnsbl_prefix(ip)}.{zone}"
            try:
                answers = [rdata.to_text() for rdata in await ctx.dns.resolve(query, "A")]
            except (NXDomain, NoData):
                continue
            except TempFail as exc:
                tempfail = tempfail or _tempfail(exc, f"the {zone} lookup of {address}")
                continue
            listed = [a for a in answers if a in self._pbl_codes]
            if listed:
                txt = await _txt(query, ctx)
                return Finding(
                    "POLICY_BLOCK_LISTED",
                    f"{address} is listed on {zone} as {listed[0]}, a policy block list "
                    "code: an end-user address that should send through its ISP's relay",
                    {
                        "zone": zone,
                        "answer": listed[0],
                        "txt": txt,
                        "txt_suffix": f"; {txt}" if txt else "",
                    },
                )
        return tempfail

    async def _judge_sender(self, session: Session, ctx: Context) -> Finding | None:
        domain = sender_domain(session.mail_from)
        if domain is None:
            return None
        domain_failure: Finding | None = None
        try:
            missing = await _domain_missing(domain, ctx)
        except TempFail as exc:
            missing = None
            domain_failure = _tempfail(exc, f"the lookup of the sender domain {domain}")
        if missing is None and domain_failure is None:
            return None  # the domain exists, whoever the client is
        client = await self._judge_client(session, ctx)
        if client is None or client.outcome == "DNS_TEMPFAIL":
            return client
        if domain_failure is not None:
            return domain_failure
        return Finding(
            "DYNAMIC_UNKNOWN_SENDER_DOMAIN",
            f"{client.reason}, and {missing}",
            {"domain": domain, "ptr": client.fields.get("ptr", "")},
        )


@dataclass(frozen=True)
class NameMatch:
    kind: Literal["address", "token", "pattern"]
    sentence: str  # completes "the host name X ..."


@dataclass(frozen=True)
class NameTests:
    """The name tests, compiled once per policy instance; sans-IO."""

    embedded_address: bool
    dynamic: frozenset[str]
    static: frozenset[str]
    patterns: tuple[re.Pattern[str], ...]

    def judge(self, name: str, ip: IPAddress) -> NameMatch | None:
        name = name.lower().rstrip(".")
        host = ".".join(name.split(".")[:-2])
        words = _WORD.findall(host)
        exempt = next((w for w in words if w in self.static), None)
        if exempt is not None:
            return None
        if self.embedded_address:
            form = embedded_form(host, ip)
            if form is not None:
                return NameMatch("address", f"holds the client address {ip} {form}")
        word = next((w for w in words if w in self.dynamic), None)
        if word is not None:
            return NameMatch("token", f"has the word {word!r}, which marks an end-user address")
        for pattern in self.patterns:
            if pattern.search(name):
                return NameMatch("pattern", f"matches the dynamic pattern {pattern.pattern!r}")
        return None


def embedded_form(host: str, ip: IPAddress) -> str | None:
    """How `host` spells the address `ip`, or None if it does not."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _embedded_v4(host, ip)
    compact = _SEPARATORS.sub("", host)
    digits = f"{int(ip):032x}"
    if digits in compact:
        return "as 32 hex digits"
    if digits[::-1] in compact:
        return "as reversed nibbles"
    for label in host.split("."):
        if ":" in (text := label.replace("-", ":")) and _same_v6(text, ip):
            return "as IPv6 groups"
    return None


def _embedded_v4(host: str, ip: ipaddress.IPv4Address) -> str | None:
    octets = tuple(ip.packed)
    runs = _DIGITS.findall(host)
    values = [int(run) for run in runs]
    for start in range(len(values) - 3):
        window = tuple(values[start : start + 4])
        if window == octets:
            return "in order"
        if window == octets[::-1]:
            return "reversed"
    for run in runs:
        if len(run) == 12:
            padded = tuple(int(run[i : i + 3]) for i in range(0, 12, 3))
            if padded in (octets, octets[::-1]):
                return "as twelve zero-padded digits"
        if run == str(int(ip)):
            return "as one decimal number"
    if f"{int(ip):08x}" in _SEPARATORS.sub("", host):
        return "as eight hex digits"
    return None


def _same_v6(text: str, ip: IPAddress) -> bool:
    try:
        return ipaddress.IPv6Address(text) == ip
    except ValueError:
        return False


def sender_domain(mail_from: str | None) -> str | None:
    """The domain of MAIL FROM to look up; None for <>, a bare local part, or a literal."""
    if not mail_from or "@" not in mail_from:
        return None
    domain = mail_from.rsplit("@", 1)[1].rstrip(".").lower()
    if not domain or domain.startswith("["):
        return None
    return domain


async def _domain_missing(domain: str, ctx: Context) -> str | None:
    """Why `domain` cannot receive mail, or None if it has an MX, A or AAAA record."""
    try:
        await ctx.dns.resolve(domain, "MX")
    except NXDomain:
        return f"the sender domain {domain} does not exist"
    except NoData:
        if await ctx.dns.addresses(domain):
            return None
        return f"the sender domain {domain} has no MX, A or AAAA record"
    return None  # any MX, a null MX (RFC 7505) included: the domain exists


async def _txt(query: str, ctx: Context) -> str:
    # Postfix joins several TXT records with " / " ($rbl_reason).
    try:
        return " / ".join(await ctx.dns.txt(query))
    except TempFail:
        return ""


def _tempfail(exc: TempFail, what: str) -> Finding:
    return Finding(
        "DNS_TEMPFAIL",
        f"{what} failed temporarily ({exc.kind} on {exc.name} {exc.rdtype})",
        {"name": exc.name, "failure": exc.kind},
    )


def _is_address(name: str) -> bool:
    try:
        ip_of(name)
    except ValueError:
        return False
    return True


def _reproduction_kind(name: str, ip: str) -> str | None:
    tests = NameTests(True, frozenset(DYNAMIC_TOKENS), frozenset(STATIC_TOKENS), ())
    found = tests.judge(name, ipaddress.ip_address(ip))
    return found.kind if found else None
