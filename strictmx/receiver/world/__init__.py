"""What the receiver believes about the outside: DNS, who connects, the time, remote mailboxes,
when domains were registered.

Policies see the outside only through `World`, so every policy runs the same against an
in-memory world in tests and against real DNS in `system` mode. A scenario's `world:`
section is a `WorldConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from .clients import ClientMap, ClientsConfig
from .clock import Clock, ClockConfig
from .dns import WorldDNS
from .dns_config import DnsConfig
from .mailboxes import Mailboxes, MailboxesConfig
from .registrations import Registrations, RegistrationsConfig


class WorldConfig(BaseModel):
    """The `world:` section of a scenario."""

    model_config = ConfigDict(extra="forbid")

    dns: DnsConfig = Field(
        default_factory=DnsConfig, description="Records, scripted failures and the DNS mode."
    )
    clients: ClientsConfig = Field(
        default_factory=dict,
        description="Peer address or CIDR network -> {address, name} the policies see; the "
        "longest prefix wins; unmapped peers are themselves.",
    )
    clock: ClockConfig = Field(
        default_factory=ClockConfig, description="A fixed or offset time for the receiver."
    )
    mailboxes: MailboxesConfig = Field(
        default_factory=dict,
        description="Remote domain -> its mailboxes, for sender-verify callouts.",
    )
    registrations: RegistrationsConfig = Field(
        default_factory=RegistrationsConfig,
        description="When domains were registered: a table, RDAP, or both.",
    )


@dataclass
class World:
    dns: WorldDNS
    clients: ClientMap
    clock: Clock
    mailboxes: Mailboxes
    registrations: Registrations = field(default_factory=Registrations)

    @classmethod
    def from_config(cls, cfg: WorldConfig) -> World:
        return cls(
            dns=WorldDNS.from_config(cfg.dns),
            clients=ClientMap.from_config(cfg.clients),
            clock=Clock.from_config(cfg.clock),
            mailboxes=Mailboxes.from_config(cfg.mailboxes),
            registrations=Registrations.from_config(cfg.registrations),
        )

    @classmethod
    def empty(cls) -> World:
        """Hermetic DNS without records, real time, no client mapping, no mailboxes, no
        registrations."""
        return cls.from_config(WorldConfig())


__all__ = ["World", "WorldConfig"]
