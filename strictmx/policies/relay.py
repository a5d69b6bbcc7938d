"""relay: a recipient this receiver is not the destination for is refused at RCPT.

Postfix's `reject_unauth_destination` (smtpd_check.c, permit_auth_destination;
postconf(5) smtpd_relay_restrictions), for a receiver that relays for no one: a RCPT
whose domain is not one of the receiver's own gets
`554 5.7.1 <{rcpt}>: Relay access denied` -> RELAY_DENIED.

A domain is the receiver's own when it is one of `domains` (default: the receiver's
hostname, as Postfix's mydestination = $myhostname), compared without case and without
one trailing dot; an entry written with a leading dot (`.example.net`) stands for every
name below that domain. An address literal is the receiver's own when `domains` lists it
as written (`[127.0.0.1]`: Postfix takes the literal of an address it listens on as
local). Refused whatever the domain, as Postfix refuses them:

- an address without a domain (`<bob>`); Postfix accepts the bare `<postmaster>` before
  any restriction (RFC 5321 §4.5.1), which strictmx's engine does for every persona
  whose `receiver.always_accepted` lists `postmaster`;
- a local part that routes on, with '%', '!' or '@' (`bob%other.example@strictmx.test`:
  Postfix's allow_untrusted_routing = no).

A source route (`<@a.example:bob@strictmx.test>`) is ignored, as RFC 5321 §4.1.1.3 lets a
server ignore it and Postfix does.

Replies recorded live from Postfix 3.7.11 smtpd with smtpd_relay_restrictions =
reject_unauth_destination and mydestination = strictmx.test: `RCPT TO:<bob@other.example>`
-> `554 5.7.1 <bob@other.example>: Relay access denied`, `RCPT TO:<bob>` -> `554 5.7.1
<bob>: Relay access denied`. Postfix runs its relay restrictions before
smtpd_recipient_restrictions: list this policy first in the RCPT chain to do the same.

RFC 5321 §3.6.2 lets a server refuse to relay (550/554 5.7.1 by RFC 3463 §3.8).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator

from strictmx.receiver.policy import FROM_CATALOGUE, Context, Outcome, Policy, PolicyOptions
from strictmx.receiver.reproduction import Build, Request
from strictmx.receiver.session import Session
from strictmx.receiver.verdict import Stage, Verdict

#: Characters of a local part that route the mail on (Postfix: '%' and '!' with
#: allow_untrusted_routing = no; '@' of a quoted local part).
ROUTING = frozenset("%!@")


class RelayOptions(PolicyOptions):
    domains: tuple[str, ...] | None = Field(
        default=None,
        description="Domains this receiver is the destination for ('.example.net': every "
        "name below it; '[192.0.2.1]': that address literal); default: its hostname.",
    )

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("list at least one domain (every recipient would be refused)")
        for domain in value:
            if not domain.strip(".") or "@" in domain or any(ch.isspace() for ch in domain):
                raise ValueError(f"{domain!r} is not a domain, '.domain' or '[address]'")
        return tuple(_folded(d) for d in value)


class Relay(Policy[RelayOptions]):
    """Refuse recipients in domains that are not this receiver's (Postfix
    reject_unauth_destination)."""

    name = "relay"
    summary = "Recipients must be in this receiver's domains (Postfix reject_unauth_destination)"
    stages = frozenset({Stage.RCPT})
    Options = RelayOptions
    outcomes: ClassVar[tuple[Outcome, ...]] = (
        Outcome(
            "RELAY_DENIED",
            FROM_CATALOGUE,
            "The recipient is not in a domain this receiver is the destination for "
            "(Postfix reject_unauth_destination).",
        ),
    )

    @classmethod
    def reproduce(cls, req: Request) -> Build:
        # The receiver's own domain is one the customer's recipient is not in.
        rcpt = req.fields.get("rcpt") or req.identity.rcpt
        domain = rcpt.rpartition("@")[2].lower()
        own = "strictmx.test" if not domain.endswith("strictmx.test") else "local.example"
        return Build(options={"domains": [own]}, case={"rcpt": [rcpt]}, at="rcpt")

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        rcpt = session.rcpt
        if rcpt is None:
            return None
        why = self.refusal(rcpt, self.options.domains or (_folded(ctx.hostname),))
        if why is None:
            return None
        return self.verdict("RELAY_DENIED", stage, session, ctx, why)

    @staticmethod
    def refusal(rcpt: str, domains: tuple[str, ...]) -> str | None:
        """Why `rcpt` is not for this receiver, or None when it is."""
        address = _without_route(rcpt)
        local, at, domain = address.rpartition("@")
        if not at:
            return f"{rcpt} has no domain: it names no destination this receiver serves"
        bad = next((ch for ch in local if ch in ROUTING), None)
        if bad is not None:
            return f"the local part of {rcpt} routes on with {bad!r} (untrusted routing)"
        name = _folded(domain)
        if name in domains or any(d.startswith(".") and name.endswith(d) for d in domains):
            return None
        return f"{domain or '(empty)'} is not one of this receiver's domains ({', '.join(domains)})"


def _without_route(address: str) -> str:
    """The mailbox of a path: an RFC 5321 source route `@a,@b:` before it dropped."""
    if address.startswith("@") and ":" in address:
        return address.split(":", 1)[1]
    return address


def _folded(domain: str) -> str:
    return domain.lower().removesuffix(".")
