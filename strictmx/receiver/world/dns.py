"""The world's DNS: the scenario's records, scripted failures, and real DNS behind them.

Policies ask `WorldDNS` and never a resolver of their own, so one scenario decides what
every name means:

- `hermetic`: only the scenario's records exist; any other name is NXDOMAIN.
- `overlay`: a name the scenario mentions (records, a wildcard that covers it, or a
  SERVFAIL/timeout script) is answered from the scenario alone; other names go to real DNS.
- `system`: real DNS only.

Scenario records are rdata text as in a zone file, parsed by dnspython, so every record
type dnspython knows can be written. Names in answers are lowercase without the final dot.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self, TypeVar

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.reversename
import dns.rrset
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.txtbase import TXTBase
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    create_model,
    field_validator,
    model_validator,
)

from ..trust import Reach, reaches

Mode = Literal["hermetic", "overlay", "system"]
FailureKind = Literal["nxdomain", "nodata", "servfail", "timeout"]

#: CNAME hops followed before the chain counts as a loop (answered as SERVFAIL, as
#: recursive resolvers do).
MAX_CNAME_CHAIN = 8

IN = dns.rdataclass.IN

R = TypeVar("R", bound=dns.rdata.Rdata)


# -- failures ----------------------------------------------------------------------------


class DnsFailure(Exception):
    """A lookup that found no answer; `kind` says why, `temporary` whether to retry later."""

    #: Made from the scenario's records alone (a NXDOMAIN/NODATA that cannot change).
    static = False

    def __init__(self, name: str, rdtype: str, kind: FailureKind, detail: str = "") -> None:
        self.name = name
        self.rdtype = rdtype
        self.kind = kind
        self.detail = detail
        super().__init__(f"{name} {rdtype}: {kind}" + (f" ({detail})" if detail else ""))

    @property
    def temporary(self) -> bool:
        return self.kind in ("servfail", "timeout")


_STATIC_MAX = 100_000

E = TypeVar("E", bound=DnsFailure)


def _static(failure: E) -> E:
    failure.static = True
    return failure


class NXDomain(DnsFailure):
    def __init__(self, name: str, rdtype: str, detail: str = "") -> None:
        super().__init__(name, rdtype, "nxdomain", detail)


class NoData(DnsFailure):
    def __init__(self, name: str, rdtype: str, detail: str = "") -> None:
        super().__init__(name, rdtype, "nodata", detail)


class TempFail(DnsFailure):
    def __init__(
        self, name: str, rdtype: str, kind: Literal["servfail", "timeout"], detail: str = ""
    ) -> None:
        super().__init__(name, rdtype, kind, detail)


# -- names and record text -----------------------------------------------------------------


def parse_name(text: str) -> dns.name.Name:
    """An absolute name from text, with or without the final dot; ValueError if malformed."""
    if not text:
        raise ValueError("empty domain name")
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException as exc:  # empty or long labels, bad IDNA, ...
        raise ValueError(f"not a domain name: {text!r} ({exc})") from None


def name_text(name: dns.name.Name) -> str:
    """The form every name takes here: lowercase, no final dot (the root stays '.')."""
    return _remembered(name, _name_text)


def _name_text(name: dns.name.Name) -> str:
    return name.canonicalize().to_text(omit_final_dot=True)


#: Texts of DNS objects by the object's identity, the object kept beside its text.
_TEXTS: dict[int, tuple[object, str]] = {}
_TEXTS_MAX = 16384
_T = TypeVar("_T")


def _remembered(thing: _T, convert: Callable[[_T], str]) -> str:
    """`convert(thing)`, remembered for this very object.

    The scenario's answers are the same Name and Rdata objects in every session, and
    dnspython's conversions to text are among the dearest steps of a cached lookup. By
    identity, not by value: hashing a Name or an Rdata costs about as much as converting
    it. Keeping the object in the entry keeps its id from being reused while remembered.
    """
    hit = _TEXTS.get(id(thing))
    if hit is not None and hit[0] is thing:
        return hit[1]
    text = convert(thing)
    if len(_TEXTS) >= _TEXTS_MAX:  # answers of real DNS are new objects: start over
        _TEXTS.clear()
    _TEXTS[id(thing)] = (thing, text)
    return text


def normalise_name(text: str) -> str:
    return name_text(parse_name(text))


def ip_of(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """`ipaddress.ip_address`, remembered: the same client, HELO and DNS answers come back
    in every session and several policies parse them (ValueError for a non-address)."""
    ip = _parsed_ip(text)
    if ip is None:
        raise ValueError(f"{text!r} does not appear to be an IPv4 or IPv6 address")
    return ip


@functools.lru_cache(maxsize=8192)
def _parsed_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # Host names are asked about as often as addresses ("is this HELO an IP?"): the
    # answer "no" is kept too.
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def public_ip(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address as DNS knows it: a dual-stack listener's ::ffff:a.b.c.d is a.b.c.d."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@functools.lru_cache(maxsize=8192)
def dnsbl_prefix(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """A DNS list's query prefix: reversed octets, or 32 reversed nibbles (RFC 5782 §2.1,
    §2.4): `192.0.2.1` -> `1.2.0.192`. Remembered: asked at every stage of a session."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ".".join(reversed(str(ip).split(".")))
    return ".".join(reversed(f"{int(ip):032x}"))


@functools.lru_cache(maxsize=8192)
def reverse_name(address: str) -> str:
    """`address`'s name under in-addr.arpa or ip6.arpa (clients repeat: kept)."""
    return name_text(dns.reversename.from_address(normalise_ip(address)))


#: What a lookup found: its records, or why there are none.
_Answer = list[dns.rdata.Rdata] | DnsFailure


def _rdata_text(rdata: dns.rdata.Rdata) -> str:
    return _remembered(rdata, dns.rdata.Rdata.to_text)


def normalise_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"not an IP address: {text!r}") from None


def distinct_keys(normalise: Callable[[str], str]) -> WrapValidator:
    """A mapping validator that refuses two keys meaning the same thing once normalised.

    Without it, `Example.com` and `example.com.` would silently overwrite each other.
    """

    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        result = handler(value)
        if isinstance(value, dict) and len(result) < len(value):
            seen: dict[str, str] = {}
            for key in value:
                canonical = normalise(key)
                if canonical in seen:
                    raise ValueError(
                        f"{seen[canonical]!r} and {key!r} are the same entry ({canonical})"
                    )
                seen[canonical] = key
        return result

    return WrapValidator(check)


def one_or_many(value: Any) -> Any:
    return value if value is None or isinstance(value, list) else [value]


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


def split_nameserver(text: str) -> tuple[str, int]:
    """`IP`, `IP:PORT` or `[IPv6]:PORT` as (address, port)."""
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not an IP address, IP:PORT or [IPv6]:PORT: {text!r}")
    return str(address), int(port)


def _nameserver_text(text: str) -> str:
    split_nameserver(text)
    return text


def split_listen(text: str) -> tuple[str, int]:
    """`IP:PORT`, `[IPv6]:PORT`, or a port alone (`5353`, `:5353`) on 127.0.0.1.

    Port 0 asks for any free port.
    """
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        address = ipaddress.ip_address(host.strip("[]") if bracketed else host or "127.0.0.1")
    except ValueError:
        address = None
    # Unbracketed, an IPv6 address's last group would be read as the port.
    unclear = address is not None and address.version == 6 and not bracketed
    if address is None or unclear or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"not IP:PORT, [IPv6]:PORT or a port alone: {text!r}")
    return str(address), int(port)


def _listen_text(value: Any) -> str:
    host, port = split_listen(str(value))
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


DnsName = Annotated[str, AfterValidator(normalise_name)]
Nameserver = Annotated[str, AfterValidator(_nameserver_text), reaches(Reach.HOST)]
IPText = Annotated[str, AfterValidator(normalise_ip)]


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

    mode: Annotated[Mode, reaches(Reach.REAL_DNS, when=lambda m: m != "hermetic")] = Field(
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


# -- runtime -----------------------------------------------------------------------------

Node = dict[dns.rdatatype.RdataType, dns.rrset.RRset]
_WILDCARD = b"*"


class _Script:
    """A scripted failure's names: exact, or every name under a '*.' suffix."""

    def __init__(self, names: Iterable[str]) -> None:
        self.exact: set[dns.name.Name] = set()
        self.under: list[dns.name.Name] = []
        for text in names:
            name = parse_name(text)
            if name.labels[:1] == (_WILDCARD,):
                self.under.append(name.parent())
            else:
                self.exact.add(name)

    def __contains__(self, name: dns.name.Name) -> bool:
        return name in self.exact or any(
            name != suffix and name.is_subdomain(suffix) for suffix in self.under
        )


class WorldDNS:
    """DNS as the scenario says it is; see the module docstring for the modes."""

    def __init__(
        self,
        mode: Mode = "hermetic",
        rrsets: Iterable[dns.rrset.RRset] = (),
        *,
        servfail: Iterable[str] = (),
        timeout: Iterable[str] = (),
        timeout_seconds: float = 0.0,
        resolver: dns.asyncresolver.Resolver | None = None,
    ) -> None:
        if mode != "hermetic" and resolver is None:
            raise ValueError(f"{mode} mode needs a resolver for real DNS")
        self.mode = mode
        self._resolver = resolver
        self._servfail = _Script(servfail)
        self._timeout = _Script(timeout)
        self._timeout_seconds = timeout_seconds
        self._nodes: dict[dns.name.Name, Node] = {}
        # A session view's answers, each with whether it was volatile (see `volatile`).
        self._cache: dict[tuple[str, str], tuple[_Answer, bool]] | None = None
        #: Set once the view gave an answer not made from the scenario's records alone (a
        #: real lookup, a scripted failure): what was judged from it may not be reused.
        self.volatile = False
        # Shared by every session's view (see `_resolve`).
        self._static: dict[tuple[str, str], list[dns.rdata.Rdata] | DnsFailure] = {}
        for rrset in rrsets:
            self._nodes.setdefault(rrset.name, {})[rrset.rdtype] = rrset
        # Names above a record exist without data (empty non-terminals, RFC 8020): NODATA,
        # not NXDOMAIN. The root is listed so the closest-encloser walk always stops.
        self._ancestors = {dns.name.root}
        for name in self._nodes:
            while name != dns.name.root:
                name = name.parent()
                self._ancestors.add(name)

    @classmethod
    def from_config(cls, cfg: DnsConfig) -> WorldDNS:
        rrsets: dict[tuple[dns.name.Name, dns.rdatatype.RdataType], dns.rrset.RRset] = {}

        def add(owner: dns.name.Name, rdtype: dns.rdatatype.RdataType, texts: list[str]) -> None:
            rrset = rrsets.setdefault((owner, rdtype), dns.rrset.RRset(owner, IN, rdtype))
            for text in texts:
                rrset.add(parse_rdata(rdtype, text), cfg.ttl)

        for name, recordset in cfg.records.items():
            for rdtype, texts in recordset.rdata().items():
                add(parse_name(name), rdtype, texts)
        for address, names in cfg.ptr.items():
            add(dns.reversename.from_address(address), dns.rdatatype.PTR, names)

        resolver = None
        if cfg.mode != "hermetic":
            resolver = _real_resolver(cfg.nameservers, cfg.lifetime)
        return cls(
            cfg.mode,
            rrsets.values(),
            servfail=cfg.servfail,
            timeout=cfg.timeout,
            timeout_seconds=cfg.timeout_seconds,
            resolver=resolver,
        )

    def zone(self) -> dict[tuple[str, str], dns.rrset.RRset]:
        """The scenario's records keyed by (name, type), for serving the same data elsewhere."""
        return {
            (name_text(name), dns.rdatatype.to_text(rdtype)): rrset
            for name, node in self._nodes.items()
            for rdtype, rrset in node.items()
        }

    # -- queries -------------------------------------------------------------------------

    def for_session(self) -> WorldDNS:
        """A view for one SMTP session: the same world, each answer looked up once.

        Strict receivers ask about the same names at HELO, MAIL and RCPT; a session asks
        the world (or real DNS) once per name and type, failures included.
        """
        # One per connection: a plain attribute copy, cheaper than copy.copy's protocol.
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view._cache = {}
        view.volatile = False
        return view

    async def resolve(self, name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        """The records of `rdtype` at `name`, following CNAMEs unless CNAME is asked for.

        Raises NXDomain, NoData or TempFail (kind "servfail" or "timeout").
        """
        if self._cache is None:
            answer, volatile = await self._resolve(name, rdtype)
        else:
            key = (name.lower().rstrip("."), rdtype.upper())
            entry = self._cache.get(key)
            if entry is None:
                entry = self._cache[key] = await self._resolve(name, rdtype)
            answer, volatile = entry
        if volatile:
            self.volatile = True
        if isinstance(answer, DnsFailure):
            raise answer.with_traceback(None)  # raised again and again: keep no old frames
        return list(answer)

    async def _resolve(self, name: str, rdtype: str) -> tuple[_Answer, bool]:
        """The answer or failure, and whether it is volatile (not the records' alone)."""
        # The scenario's own records never change: an answer made from them alone (no
        # real lookup, no scripted failure) is worked out once for every session.
        key = (name, rdtype)
        known = self._static.get(key)
        if known is not None:
            return known, False
        try:
            answer, static = await self._work_out(name, rdtype)
        except (NXDomain, NoData) as exc:
            if not exc.static:
                return exc, True
            return self._remember(key, exc), False
        except DnsFailure as exc:
            return exc, True
        if not static:
            return answer, True
        return self._remember(key, answer), False

    def _remember(
        self, key: tuple[str, str], answer: list[dns.rdata.Rdata] | DnsFailure
    ) -> list[dns.rdata.Rdata] | DnsFailure:
        if len(self._static) >= _STATIC_MAX:  # names from a flood of clients: start over
            self._static.clear()
        self._static[key] = answer
        return answer

    async def _work_out(self, name: str, rdtype: str) -> tuple[list[dns.rdata.Rdata], bool]:
        """The answer, and whether it came from the scenario's records alone."""
        try:
            wanted = dns.rdatatype.from_text(rdtype)
        except (dns.exception.DNSException, ValueError):
            raise ValueError(f"unknown DNS record type {rdtype!r}") from None
        label = dns.rdatatype.to_text(wanted)
        try:
            current = parse_name(name)
        except ValueError as exc:
            # A name that cannot be sent cannot exist; getaddrinfo says the same.
            raise _static(NXDomain(name, label, str(exc))) from None
        asked = name_text(current)
        for _hop in range(MAX_CNAME_CHAIN + 1):
            if not self._scenario_answers(current):
                return await self._real(current, wanted, asked, label), False
            await self._scripted(current, asked, label)
            node = self._node(current)
            if node is None:
                if current in self._ancestors:
                    raise _static(NoData(asked, label))
                raise _static(NXDomain(asked, label))
            if wanted in node:
                return list(node[wanted]), True
            alias = node.get(dns.rdatatype.CNAME)
            if alias is None or wanted == dns.rdatatype.CNAME:
                raise _static(NoData(asked, label))
            current = _typed(alias[0], CNAME).target
        raise TempFail(asked, label, "servfail", f"more than {MAX_CNAME_CHAIN} CNAMEs")

    async def addresses(self, name: str) -> list[str]:
        """IPv4 then IPv6 addresses; [] if the name does not exist or has neither.

        TempFail only when a lookup failed temporarily and the other found nothing.
        """
        found: list[str] = []
        failure: TempFail | None = None
        for rdtype in ("A", "AAAA"):
            try:
                found += [_rdata_text(rdata) for rdata in await self.resolve(name, rdtype)]
            except NXDomain:
                break  # the name does not exist for AAAA either
            except NoData:
                continue
            except TempFail as exc:
                failure = failure or exc
        if failure is not None and not found:
            raise failure
        return found

    async def ptr(self, address: str) -> list[str]:
        """The names at `address`'s reverse name; [] if none. ValueError if not an IP."""
        try:
            answers = await self.resolve(reverse_name(address), "PTR")
        except (NXDomain, NoData):
            return []
        return [name_text(_typed(rdata, PTR).target) for rdata in answers]

    async def mx(self, name: str) -> list[tuple[int, str]]:
        """(preference, exchange) sorted by preference; [] if none.

        A null MX (RFC 7505) reads [(0, ".")].
        """
        try:
            answers = await self.resolve(name, "MX")
        except (NXDomain, NoData):
            return []
        records = [_typed(rdata, MX) for rdata in answers]
        return sorted((mx.preference, name_text(mx.exchange)) for mx in records)

    async def txt(self, name: str) -> list[str]:
        """Each TXT record's strings joined; [] if none."""
        try:
            answers = await self.resolve(name, "TXT")
        except (NXDomain, NoData):
            return []
        return [
            b"".join(_typed(rdata, TXTBase).strings).decode(errors="replace") for rdata in answers
        ]

    async def cname(self, name: str) -> str | None:
        """The CNAME target at `name` itself (not followed), or None."""
        try:
            answers = await self.resolve(name, "CNAME")
        except (NXDomain, NoData):
            return None
        return name_text(_typed(answers[0], CNAME).target)

    # -- internals -----------------------------------------------------------------------

    def _scenario_answers(self, name: dns.name.Name) -> bool:
        if self.mode == "hermetic":
            return True
        if self.mode == "system":
            return False
        return name in self._servfail or name in self._timeout or self._node(name) is not None

    async def _scripted(self, name: dns.name.Name, asked: str, label: str) -> None:
        if name in self._servfail:
            raise TempFail(asked, label, "servfail", f"scripted for {name_text(name)}")
        if name in self._timeout:
            await asyncio.sleep(self._timeout_seconds)
            raise TempFail(asked, label, "timeout", f"scripted for {name_text(name)}")

    def _node(self, name: dns.name.Name) -> Node | None:
        """The records at `name`: its own, or those of the wildcard covering it (RFC 4592)."""
        node = self._nodes.get(name)
        if node is not None or name in self._ancestors:
            return node
        encloser = name.parent()
        while encloser not in self._nodes and encloser not in self._ancestors:
            encloser = encloser.parent()
        return self._nodes.get(dns.name.Name((_WILDCARD, *encloser.labels)))

    async def _real(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, asked: str, label: str
    ) -> list[dns.rdata.Rdata]:
        assert self._resolver is not None  # hermetic mode never gets here
        try:
            answer = await self._resolver.resolve(name, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            raise NXDomain(asked, label) from None
        except dns.resolver.NoAnswer:
            raise NoData(asked, label) from None
        except dns.exception.Timeout as exc:
            raise TempFail(asked, label, "timeout", str(exc)) from None
        except dns.exception.DNSException as exc:  # NoNameservers (SERVFAIL, refused), ...
            raise TempFail(asked, label, "servfail", str(exc)) from None
        return list(answer.rrset or ())


def _real_resolver(nameservers: list[str], lifetime: float) -> dns.asyncresolver.Resolver:
    if nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(*split_nameserver(text)) for text in nameservers
        ]
    else:
        try:
            resolver = dns.asyncresolver.Resolver()
        except dns.resolver.NoResolverConfiguration as exc:
            raise ValueError(f"no nameservers given and no system resolver to use: {exc}") from None
    resolver.lifetime = lifetime
    return resolver


def _typed(rdata: dns.rdata.Rdata, cls: type[R]) -> R:
    assert isinstance(rdata, cls)
    return rdata
