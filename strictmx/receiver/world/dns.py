"""The world's DNS: the scenario's records, scripted failures, and real DNS behind them.

Policies ask `WorldDNS` and never a resolver of their own, so one scenario decides what
every name means:

- `hermetic`: only the scenario's records exist; any other name is NXDOMAIN.
- `overlay`: a name the scenario mentions (records, a wildcard that covers it, or a
  SERVFAIL/timeout script) is answered from the scenario alone; other names go to real DNS.
- `system`: real DNS only.

Names in answers are lowercase without the final dot. The scenario's section is
`dns_config.DnsConfig`; names and addresses as text are in `names`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Literal, TypeVar

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

from .config_types import Mode
from .dns_config import DnsConfig, parse_rdata
from .endpoints import split_nameserver
from .names import name_text, parse_name, rdata_text, reverse_name

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


#: What a lookup found: its records, or why there are none.
_Answer = list[dns.rdata.Rdata] | DnsFailure


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
                found += [rdata_text(rdata) for rdata in await self.resolve(name, rdtype)]
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
