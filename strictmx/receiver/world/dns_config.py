"""The `world.dns` section of a scenario: records as zone-file text, scripts, the mode.

Scenario records are rdata text as in a zone file, parsed by dnspython, so every record
type dnspython knows can be written. `WorldDNS.from_config` (in `dns`) turns a `DnsConfig`
into the resolver policies ask.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Annotated, Any, Self

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.reversename
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from ..trust import Reach, reaches
from .config_types import DnsName, IPText, Mode, beyond_hermetic, distinct_keys, one_or_many
from .endpoints import split_listen, split_nameserver
from .names import name_text, normalise_ip, normalise_name

IN = dns.rdataclass.IN


def _quote_txt(text: str) -> str:
    """Zone-file text for one unquoted TXT value, split in 255-octet strings (RFC 1035 §3.3)."""
    data = text.encode()
    chunks = []
    for start in range(0, len(data), 255):
        chars = []
        for octet in data[start : start + 255]:
            if octet in b'"\\':
                chars.append("\\" + chr(octet))
            elif 0x20 <= octet < 0x7F:
                chars.append(chr(octet))
            else:
                chars.append(f"\\{octet:03d}")
        chunks.append('"' + "".join(chars) + '"')
    return " ".join(chunks) or '""'


def parse_rdata(rdtype: dns.rdatatype.RdataType, text: str) -> dns.rdata.Rdata:
    """One record's data from zone-file text; relative names are taken as absolute."""
    label = dns.rdatatype.to_text(rdtype)
    # dnspython's address errors only say "malformed"; say which family was expected.
    if rdtype == dns.rdatatype.A and not _is_ip(text, ipaddress.IPv4Address):
        raise ValueError(f"not an IPv4 address: {text!r}")
    if rdtype == dns.rdatatype.AAAA and not _is_ip(text, ipaddress.IPv6Address):
        raise ValueError(f"not an IPv6 address: {text!r}")
    if rdtype in (dns.rdatatype.TXT, dns.rdatatype.SPF) and not text.lstrip().startswith('"'):
        text = _quote_txt(text)
    try:
        return dns.rdata.from_text(IN, rdtype, text, origin=dns.name.root, relativize=False)
    except dns.exception.DNSException as exc:
        raise ValueError(f"bad {label} record {text!r}: {exc}") from None


def _is_ip(text: str, family: type[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> bool:
    try:
        family(text.strip())
    except ValueError:
        return False
    return True


def _nameserver_text(text: str) -> str:
    split_nameserver(text)
    return text


def _listen_text(value: Any) -> str:
    host, port = split_listen(str(value))
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


Nameserver = Annotated[str, AfterValidator(_nameserver_text), reaches(Reach.HOST)]


# -- schema ------------------------------------------------------------------------------

#: Every record type dnspython knows that can be stored (not query-only types like ANY).
STORABLE_TYPES = tuple(
    t for t in dns.rdatatype.RdataType if t != 0 and not dns.rdatatype.is_metatype(t)
)

#: RFC 4035 §2.5: DNSSEC records may sit beside a CNAME.
_CNAME_COMPANIONS = frozenset({"RRSIG", "NSEC"})


def _record_type(key: object) -> dns.rdatatype.RdataType:
    if not isinstance(key, str):
        raise ValueError(f"a record type is text such as A or MX, not {key!r}")
    try:
        rdtype = dns.rdatatype.from_text(key)
    except (dns.exception.DNSException, ValueError):
        raise ValueError(f"unknown DNS record type {key!r}") from None
    if rdtype not in STORABLE_TYPES:
        raise ValueError(f"{key!r} is not a record type a zone can hold")
    return rdtype


class _RecordSetBase(BaseModel):
    """The records at one name: record type -> rdata text, one value or a list."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_types(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out: dict[str, Any] = {}
        for key, value in data.items():
            label = dns.rdatatype.to_text(_record_type(key))
            if label in out:
                raise ValueError(f"record type {label} is given twice")
            out[label] = value
        return out

    @field_validator("*", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return one_or_many(value)

    @field_validator("*")
    @classmethod
    def _parse(cls, values: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if not values:
            return None
        rdtype = dns.rdatatype.RdataType[info.field_name or ""]
        return [parse_rdata(rdtype, value).to_text() for value in values]

    @model_validator(mode="after")
    def _cname_alone(self) -> Self:
        data = self.rdata()
        if not data:
            raise ValueError("no records here: give at least one TYPE: value")
        cname = data.get(dns.rdatatype.CNAME)
        if cname is None:
            return self
        others = sorted(
            label
            for label in map(dns.rdatatype.to_text, data)
            if label != "CNAME" and label not in _CNAME_COMPANIONS
        )
        if others:
            raise ValueError(
                "a CNAME cannot have other data at the same name (RFC 1034 §3.6.2), found: "
                + ", ".join(others)
            )
        if len(cname) > 1:
            raise ValueError("a name has at most one CNAME (RFC 2181 §10.1)")
        return self

    def rdata(self) -> dict[dns.rdatatype.RdataType, list[str]]:
        """The record texts by type, canonical as dnspython writes them."""
        out = {}
        for field in type(self).model_fields:
            values = getattr(self, field)
            if values:
                out[dns.rdatatype.RdataType[field]] = values
        return out


if TYPE_CHECKING:
    RecordSet = _RecordSetBase
else:
    RecordSet = create_model(
        "RecordSet",
        __base__=_RecordSetBase,
        __doc__=_RecordSetBase.__doc__,
        **{
            t.name: (
                list[str] | None,
                Field(
                    None,
                    alias=dns.rdatatype.to_text(t),
                    description=f"{dns.rdatatype.to_text(t)} rdata as in a zone file, "
                    "one value or a list.",
                ),
            )
            for t in STORABLE_TYPES
        },
    )


class DnsConfig(BaseModel):
    """The `world.dns` section."""

    model_config = ConfigDict(extra="forbid")

    mode: Annotated[Mode, beyond_hermetic(Reach.REAL_DNS)] = Field(
        "hermetic",
        description="hermetic: only these records, anything else NXDOMAIN; overlay: these "
        "records first, then real DNS; system: real DNS only (records and scripts unused).",
    )
    nameservers: list[Nameserver] = Field(
        default_factory=list,
        description="Real DNS servers for overlay/system, as IP, IP:PORT or [IPv6]:PORT; "
        "empty means the system's /etc/resolv.conf.",
    )
    lifetime: float = Field(5.0, gt=0, description="Seconds a real query may take in all.")
    ttl: int = Field(300, ge=0, le=2**31 - 1, description="TTL of the scenario's records.")
    records: Annotated[dict[DnsName, RecordSet], distinct_keys(normalise_name)] = Field(
        default_factory=dict,
        description="name -> {TYPE: rdata text or a list}; '*.x' names are RFC 4592 "
        "wildcards. TXT text without quotes is quoted and split in 255-octet strings.",
    )
    ptr: Annotated[
        dict[IPText, Annotated[list[DnsName], BeforeValidator(one_or_many)]],
        distinct_keys(normalise_ip),
    ] = Field(
        default_factory=dict,
        description="Shorthand: IPv4/IPv6 address -> name (or list), a PTR at its reverse name.",
    )
    servfail: list[DnsName] = Field(
        default_factory=list,
        description="Names answering SERVFAIL for every type: exact, or '*.x' for names under x.",
    )
    timeout: list[DnsName] = Field(
        default_factory=list,
        description="Names whose queries time out: exact, or '*.x' for names under x.",
    )
    timeout_seconds: float = Field(
        0.0, ge=0, description="How long a scripted timeout waits before failing (0: at once)."
    )
    serve: Annotated[str, BeforeValidator(_listen_text), reaches(Reach.LISTEN)] | None = Field(
        None,
        description="Also answer these records and scripts over real DNS, UDP and TCP, at "
        "IP:PORT (a port alone: 127.0.0.1); `strictmx serve --dns-listen` overrides it.",
    )

    @field_validator("ptr")
    @classmethod
    def _ptr_beside_cname(cls, value: dict[str, list[str]], info: ValidationInfo) -> Any:
        records: dict[str, _RecordSetBase] = info.data.get("records", {})
        for address in value:
            reverse = name_text(dns.reversename.from_address(address))
            if reverse in records and dns.rdatatype.CNAME in records[reverse].rdata():
                raise ValueError(
                    f"{address}: its reverse name {reverse} has a CNAME in records, "
                    "so it cannot hold a PTR (RFC 1034 §3.6.2)"
                )
        return value

    @field_validator("timeout")
    @classmethod
    def _not_both_scripts(cls, value: list[str], info: ValidationInfo) -> list[str]:
        both = sorted(set(value) & set(info.data.get("servfail", ())))
        if both:
            raise ValueError(f"listed under both servfail and timeout: {', '.join(both)}")
        return value
