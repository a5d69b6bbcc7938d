"""reverse_dns: the client address must have a PTR, and its name must point back at it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import Field

from strictmx.receiver.outcome import HOST, TEXT
from strictmx.receiver.policy import (
    FROM_CATALOGUE,
    Context,
    Outcome,
    Policy,
    PolicyOptions,
    client_names,
)
from strictmx.receiver.reproduction import Build, Request, dns_world, is_name, other_ip, reverse
from strictmx.receiver.session import IPAddress, Session
from strictmx.receiver.verdict import Action, Stage, Verdict
from strictmx.receiver.world.dns import NoData, NXDomain, TempFail
from strictmx.receiver.world.names import ip_of, public_ip

#: PTR names tried for forward confirmation: a bound on the lookups one client causes.
MAX_PTR_NAMES = 10


class ReverseDnsOptions(PolicyOptions):
    require: Literal["ptr", "fcrdns"] = Field(
        "fcrdns",
        description="ptr: the address needs a PTR (Postfix reject_unknown_reverse_client_"
        "hostname); fcrdns: a PTR name's A/AAAA must also include the address "
        "(reject_unknown_client_hostname, Exim verify = reverse_host_lookup).",
    )
    on_dns_tempfail: Literal["defer", "ignore"] = Field(
        "defer",
        description="A temporary DNS failure defers (4xx), or counts as a pass "
        "(Exim's verify = reverse_host_lookup/defer_ok).",
    )


class ReverseDns(Policy[ReverseDnsOptions]):
    """Refuse a client whose address has no PTR record or whose PTR name does not resolve
    back to it (forward-confirmed reverse DNS, FCrDNS).

    The check does not depend on the command, so it may be listed under connect, helo,
    mail, rcpt or eod: wherever the emulated receiver decides (Postfix: any restriction
    list, replied at RCPT with smtpd_delay_reject; Haraka: connect; Stalwart: MAIL FROM;
    Gmail: observed at end of DATA). List it under one stage only.

    - The PTR lookup of the client address (IPv4 in-addr.arpa, IPv6 ip6.arpa; an
      IPv4-mapped IPv6 address is judged as the IPv4 address) finds no name: NO_PTR.
      A PTR whose target is itself an IP address does not count, as in Postfix
      (smtpd_peer.c: "numeric hostname").
    - With `require: fcrdns` (default), no PTR name (at most 10 are tried) has an A
      record (IPv4 client) or AAAA record (IPv6 client) equal to the client address:
      FCRDNS_FAILED. One confirming name is enough (Exim tries every name, as iprev in
      RFC 8601 §3 does; Postfix has one name from getnameinfo).
    - A name asserted with XCLIENT NAME (or `world.clients` `name`) is taken as the
      client's verified name, as Postfix does: no lookup, no objection. XCLIENT
      NAME=[UNAVAILABLE] or [TEMPUNAVAIL] means "look it up".
    - A temporary failure (SERVFAIL, timeout) of the PTR lookup gives PTR_TEMPFAIL, of
      the forward lookups (when no name confirmed) FORWARD_TEMPFAIL. Postfix always
      answers 450 then, even where unknown_client_reject_code is 550. With
      `on_dns_tempfail: ignore` the client passes, as Exim's `defer_ok`.

    Default replies are Postfix's (smtpd_check.c reject_unknown_reverse_name and
    reject_unknown_client), with unknown_client_reject_code at its default 450, as when
    both restrictions are listed: `450 4.7.1 Client host rejected: cannot find your
    reverse hostname, [<IP>]` for a missing PTR, `450 4.7.25 Client host rejected:
    cannot find your hostname, [<IP>]` when the name does not confirm (4.7.25 is RFC
    7372's "reverse DNS validation failed"). A persona refusing permanently overrides
    them with 5xx (Postfix with unknown_client_reject_code = 550, Gmail's `550 5.7.25`,
    Exim's `550 Administrative prohibition`, Haraka's `554 client [<IP>] rejected; no
    rDNS`); `{ptr}` names the first PTR name, as seed-02 needs.

    RFC 5321 does not forbid refusing a client on its reverse DNS (§4.1.4 is about the
    EHLO argument); it is local policy, and widespread.
    """

    name = "reverse_dns"
    summary = "Client address must have a PTR whose name resolves back to it (FCrDNS)"
    stages = frozenset({Stage.CONNECT, Stage.HELO, Stage.MAIL, Stage.RCPT, Stage.EOD})
    pure = True  # judged from client, HELO, sender and DNS records alone
    Options = ReverseDnsOptions
    outcomes: ClassVar[tuple[Outcome, ...]] = (
        Outcome(
            "NO_PTR",
            FROM_CATALOGUE,
            "The client address has no PTR record naming a host "
            "(Postfix reject_unknown_reverse_client_hostname).",
            action=Action.DEFER,
            stage=Stage.CONNECT,
            also_at=frozenset({Stage.HELO, Stage.MAIL, Stage.RCPT, Stage.EOD}),
        ),
        Outcome(
            "FCRDNS_FAILED",
            FROM_CATALOGUE,
            "No PTR name of the client address resolves back to it "
            "(Postfix reject_unknown_client_hostname).",
            action=Action.DEFER,
            fields={"ptr": HOST},
            stage=Stage.CONNECT,
            also_at=frozenset({Stage.HELO, Stage.MAIL, Stage.RCPT, Stage.EOD}),
        ),
        Outcome(
            "PTR_TEMPFAIL",
            FROM_CATALOGUE,
            "The PTR lookup failed temporarily (SERVFAIL or timeout).",
            action=Action.DEFER,
            fields={"failure": TEXT},
            stage=Stage.CONNECT,
            also_at=frozenset({Stage.HELO, Stage.MAIL, Stage.RCPT, Stage.EOD}),
        ),
        Outcome(
            "FORWARD_TEMPFAIL",
            FROM_CATALOGUE,
            "No PTR name confirmed and a forward lookup failed temporarily.",
            action=Action.DEFER,
            fields={"ptr": HOST, "failure": TEXT},
            stage=Stage.CONNECT,
            also_at=frozenset({Stage.HELO, Stage.MAIL, Stage.RCPT, Stage.EOD}),
        ),
    )

    @classmethod
    def reproduce(cls, req: Request) -> Build:
        """The client address with no PTR, a PTR not resolving back, or lookups that fail."""
        ip = req.identity.client_ip
        outcome = req.entry.outcome
        ptr = req.fields.get("ptr", "")
        ptr = ptr if is_name(ptr) else "host-25.example.net"
        family = "AAAA" if ipaddress.ip_address(ip).version == 6 else "A"
        if outcome == "NO_PTR":
            return Build(options={"require": "ptr"}, world=dns_world())
        if outcome == "FCRDNS_FAILED":
            return Build(
                options={"require": "fcrdns"},
                world=dns_world({ptr: {family: other_ip(ip)}}, ptr={ip: ptr}),
                bound={"ptr": ptr},
            )
        if outcome == "PTR_TEMPFAIL":
            return Build(options={"require": "ptr"}, world=dns_world(servfail=[reverse(ip)]))
        # FORWARD_TEMPFAIL
        return Build(
            options={"require": "fcrdns"},
            world=dns_world(ptr={ip: ptr}, servfail=[ptr]),
            bound={"ptr": ptr},
        )

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        client = session.client
        if client.name_status == "given":
            return None  # Postfix takes an XCLIENT NAME as the verified name
        ip = public_ip(client.ip)
        address = str(ip)
        xclient = client.name_status != "lookup"
        try:
            names = await client_names(client, address, ctx)
        except TempFail as exc:
            return self._tempfail(
                "PTR_TEMPFAIL",
                stage,
                session,
                ctx,
                f"XCLIENT says the name lookup of {address} failed temporarily (NAME=[TEMPUNAVAIL])"
                if xclient
                else f"the PTR lookup of {address} failed temporarily ({exc.kind})",
                failure=exc.kind,
            )
        hosts = host_names(names)
        if not hosts:
            if xclient:
                reason = f"XCLIENT says {address} has no host name (NAME=[UNAVAILABLE])"
            elif names:
                reason = (
                    f"the PTR record of {address} names {names[0]}, an IP address, not a host name"
                )
            else:
                reason = f"{address} has no PTR record"
            return self.verdict("NO_PTR", stage, session, ctx, reason)
        if self.options.require == "ptr":
            return None

        confirmation = await forward_confirm(ip, hosts, ctx)
        if confirmation.confirmed:
            return None
        rdtype = confirmation.rdtype
        failure = confirmation.failure
        defects = confirmation.defects
        if failure is not None:
            return self._tempfail(
                "FORWARD_TEMPFAIL",
                stage,
                session,
                ctx,
                f"no PTR name of {address} confirmed it and the {rdtype} lookup of "
                f"{failure.name} failed temporarily ({failure.kind})",
                ptr=hosts[0],
                failure=failure.kind,
            )
        return self.verdict(
            "FCRDNS_FAILED",
            stage,
            session,
            ctx,
            f"no PTR name of {address} resolves back to it: " + "; ".join(defects),
            ptr=hosts[0],
        )

    def _tempfail(
        self,
        outcome_id: str,
        stage: Stage,
        session: Session,
        ctx: Context,
        reason: str,
        **fields: Any,
    ) -> Verdict | None:
        if self.options.on_dns_tempfail == "ignore":
            return None
        return self.verdict(outcome_id, stage, session, ctx, reason, **fields)


@dataclass(frozen=True)
class Confirmation:
    """Whether a PTR name of an address resolves back to it, and why not."""

    confirmed: bool
    #: The record type asked: A for an IPv4 client, AAAA for IPv6.
    rdtype: str
    #: Per name tried, why it did not confirm ("host has A 192.0.2.9, not 192.0.2.1").
    defects: list[str] = field(default_factory=list)
    #: The first temporary failure of a forward lookup, when no name confirmed.
    failure: TempFail | None = None


async def forward_confirm(ip: IPAddress, hosts: list[str], ctx: Context) -> Confirmation:
    """Whether one of `hosts` (at most MAX_PTR_NAMES, PTR names of `ip`) has an A (IPv4) or
    AAAA (IPv6) record equal to `ip`: forward-confirmed reverse DNS. The bulk-sender rules
    ask the same question as this policy's `fcrdns`."""
    rdtype = "A" if ip.version == 4 else "AAAA"
    address = str(ip)
    defects: list[str] = []
    failure: TempFail | None = None
    for host in hosts[:MAX_PTR_NAMES]:
        try:
            answers = await ctx.dns.resolve(host, rdtype)
        except (NXDomain, NoData) as exc:
            missing = "does not exist" if isinstance(exc, NXDomain) else f"has no {rdtype}"
            defects.append(f"{host} {missing}")
            continue
        except TempFail as exc:
            failure = failure or exc
            continue
        found = [ip_of(rdata.to_text()) for rdata in answers]
        if ip in found:
            return Confirmation(True, rdtype)
        shown = ", ".join(map(str, found))
        defects.append(f"{host} has {rdtype} {shown}, not {address}")
    return Confirmation(False, rdtype, defects, failure)


def host_names(names: list[str]) -> list[str]:
    """The PTR names that are host names: a PTR naming an IP address does not count, as
    in Postfix (smtpd_peer.c: "numeric hostname")."""
    return [name for name in names if not _is_address(name)]


def _is_address(name: str) -> bool:
    try:
        ip_of(name)
    except ValueError:
        return False
    return True
