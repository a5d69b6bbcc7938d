"""Which mailboxes exist at remote domains, for sender-verify callouts.

A callout asks the sender domain's MX whether the sender's mailbox exists. In a scenario
that MX is simulated from this table: which local parts exist, which answer 4xx, and how
it treats the null sender that callouts use (some broken MXs refuse MAIL FROM:<>).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from .config_types import DnsName, distinct_keys, one_or_many
from .names import normalise_name

MailboxState = Literal["exists", "unknown", "tempfail", "no_domain"]


def _local_part(text: str) -> str:
    if "@" in text:
        raise ValueError(f"a local part has no '@' (the domain is the key above): {text!r}")
    return text.lower()


LocalPart = Annotated[str, AfterValidator(_local_part)]
LocalParts = Annotated[frozenset[LocalPart], BeforeValidator(one_or_many)]


class MailboxDomain(BaseModel):
    """One remote domain's mailboxes and how its MX answers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exists: LocalParts = Field(
        frozenset(), description="Local parts that exist (compared case-insensitively)."
    )
    accept_all: bool = Field(False, description="Every local part is accepted (a catch-all).")
    tempfail: LocalParts = Field(frozenset(), description="Local parts answered with 4xx.")
    null_sender: Literal["accept", "reject"] = Field(
        "accept",
        description="How the MX treats MAIL FROM:<>; reject emulates MXs that mishandle it.",
    )
    tempfail_all: bool = Field(False, description="Every recipient is answered with 4xx.")

    def state(self, local_part: str) -> MailboxState:
        local = local_part.lower()
        if self.tempfail_all or local in self.tempfail:
            return "tempfail"
        if self.accept_all or local in self.exists:
            return "exists"
        return "unknown"


MailboxesConfig = Annotated[dict[DnsName, MailboxDomain], distinct_keys(normalise_name)]


class Mailboxes:
    def __init__(self, domains: Mapping[str, MailboxDomain] | None = None) -> None:
        self._domains = dict(domains or {})

    def __len__(self) -> int:
        """Domains listed: none means no MX is simulated outside a hermetic world."""
        return len(self._domains)

    @classmethod
    def from_config(cls, cfg: Mapping[str, MailboxDomain]) -> Mailboxes:
        return cls(cfg)

    def domain(self, domain: str) -> MailboxDomain | None:
        try:
            return self._domains.get(normalise_name(domain))
        except ValueError:  # an address literal or a malformed name: no such domain here
            return None

    def lookup(self, address: str) -> MailboxState:
        """What the domain's MX says about `address` (local@domain)."""
        local, at, domain = address.rpartition("@")
        if not at:
            raise ValueError(f"not an address (local@domain): {address!r}")
        mailbox_domain = self.domain(domain)
        if mailbox_domain is None:
            return "no_domain"
        return mailbox_domain.state(local)
