"""Who a connection really is.

Staging MTAs connect from loopback, yet a strict receiver judges the public address a
mail server would have. The scenario maps peer addresses (or networks: all of 127.0.0.0/8
is loopback, so each test MTA can bind its own) to the address, and optionally the host
name, the policies should see. The most specific network wins, as in a routing table.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .config_types import IPText, distinct_keys
from .names import normalise_name

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(text: str) -> Network:
    """An address (a /32 or /128) or a CIDR network; ValueError with the reason if neither."""
    try:
        return ipaddress.ip_network(text)  # strict: host bits set is an error
    except ValueError as exc:
        if "/" in text:
            raise ValueError(f"not a network: {text!r} ({exc})") from None
        raise ValueError(f"not an IP address or network: {text!r}") from None


def _network_text(text: str) -> str:
    network = parse_network(text)
    return (
        str(network.network_address) if network.prefixlen == network.max_prefixlen else str(network)
    )


NetworkKey = Annotated[str, AfterValidator(_network_text)]


class ClientSpec(BaseModel):
    """What a peer matching this key is taken to be."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: IPText | None = Field(
        None, description="The public address policies judge; none keeps the peer's own."
    )
    name: Annotated[str, AfterValidator(normalise_name)] | None = Field(
        None,
        description="A client host name asserted as XCLIENT NAME does, in place of a PTR "
        "lookup; none means look it up.",
    )


ClientsConfig = Annotated[dict[NetworkKey, ClientSpec], distinct_keys(_network_text)]


@dataclass(frozen=True)
class ClientIdentity:
    address: str
    name: str | None


_SEEN_MAX = 4096


class ClientMap:
    """Longest-prefix lookup from peer address to the identity the policies see."""

    def __init__(self, entries: Mapping[str, ClientSpec] | None = None) -> None:
        rows = [(parse_network(key), spec) for key, spec in (entries or {}).items()]
        # Most specific first, so the first match is the longest prefix.
        self._rows = sorted(rows, key=lambda row: row[0].prefixlen, reverse=True)
        self._seen: dict[str, ClientIdentity] = {}  # every connection asks; peers repeat

    @classmethod
    def from_config(cls, cfg: Mapping[str, ClientSpec]) -> ClientMap:
        return cls(cfg)

    def lookup(self, peer: str) -> ClientIdentity:
        """The identity for `peer`; an unmapped peer keeps its own address and no name."""
        found = self._seen.get(peer)
        if found is None:
            found = self._seen[peer] = self._lookup(peer)
            if len(self._seen) > _SEEN_MAX:  # a flood of distinct peers must not grow it
                self._seen.clear()
        return found

    def _lookup(self, peer: str) -> ClientIdentity:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return ClientIdentity(peer, None)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket reports IPv4 peers this way
        for network, spec in self._rows:
            if address.version == network.version and address in network:
                return ClientIdentity(spec.address or peer, spec.name)
        return ClientIdentity(peer, None)
