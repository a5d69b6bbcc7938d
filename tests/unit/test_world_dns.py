from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from dns.rdtypes.txtbase import TXTBase
from pydantic import ValidationError

from strictmx.receiver.world import WorldConfig
from strictmx.receiver.world.dns import DnsFailure, NoData, NXDomain, TempFail, WorldDNS
from strictmx.receiver.world.dns_config import DnsConfig

RECORDS: dict[str, Any] = {
    "Example.COM.": {
        "MX": ["20 mx2.example.com", "10 mx.example.com."],
        "TXT": "v=spf1 ip4:192.0.2.0/24 -all",
    },
    "mx.example.com": {"A": "192.0.2.10", "AAAA": "2001:db8::10"},
    "mx2.example.com": {"AAAA": "2001:db8::20"},
    "alias.example.com": {"CNAME": "mx.example.com."},
    "dangling.example.com": {"CNAME": "gone.example.com"},
    "*.wild.example": {"A": "192.0.2.99"},
    "real.wild.example": {"TXT": "not covered by the wildcard"},
    "2.0.0.127.zen.spamhaus.org": {"A": "127.0.0.2", "TXT": "listed"},
    "nullmx.example": {"MX": "0 ."},
}


def world_dns(**dns_cfg: Any) -> WorldDNS:
    return WorldDNS.from_config(DnsConfig.model_validate({"records": RECORDS, **dns_cfg}))


def addresses_of(rdatas: list[Any]) -> list[str]:
    return [r.to_text() for r in rdatas]


async def failure(coro: Any) -> DnsFailure:
    with pytest.raises(DnsFailure) as info:
        await coro
    return info.value


# -- hermetic answers ------------------------------------------------------------------


async def test_a_and_aaaa() -> None:
    d = world_dns()
    assert d.mode == "hermetic"
    assert addresses_of(await d.resolve("mx.example.com", "A")) == ["192.0.2.10"]
    assert addresses_of(await d.resolve("MX.Example.Com.", "aaaa")) == ["2001:db8::10"]
    assert await d.addresses("mx.example.com") == ["192.0.2.10", "2001:db8::10"]
    assert await d.addresses("mx2.example.com") == ["2001:db8::20"]


async def test_mx_sorted_by_preference_and_null_mx() -> None:
    d = world_dns()
    assert await d.mx("example.com") == [(10, "mx.example.com"), (20, "mx2.example.com")]
    assert await d.mx("nullmx.example") == [(0, ".")]
    assert await d.mx("mx.example.com") == []  # NODATA
    assert await d.mx("nowhere.example") == []  # NXDOMAIN


async def test_txt_quoting_and_long_strings() -> None:
    long = "k=" + "x" * 300
    d = world_dns(
        records={
            "t.example": {"TXT": [long, 'say "hi" \\ déjà', '"two" "strings"']},
        }
    )
    assert sorted(await d.txt("t.example")) == sorted([long, 'say "hi" \\ déjà', "twostrings"])
    rrset = d.zone()[("t.example", "TXT")]
    strings = {tuple(len(s) for s in cast(TXTBase, r).strings) for r in rrset}
    assert (255, 47) in strings  # split in 255-octet chunks (RFC 1035 §3.3)
    assert (3, 7) in strings  # quoted text keeps its own strings
    assert await world_dns().txt("example.com") == ["v=spf1 ip4:192.0.2.0/24 -all"]


async def test_cname_is_followed_unless_asked_for() -> None:
    d = world_dns()
    assert addresses_of(await d.resolve("alias.example.com", "A")) == ["192.0.2.10"]
    assert await d.addresses("alias.example.com") == ["192.0.2.10", "2001:db8::10"]
    assert addresses_of(await d.resolve("alias.example.com", "CNAME")) == ["mx.example.com."]
    assert await d.cname("alias.example.com") == "mx.example.com"
    assert await d.cname("mx.example.com") is None
    # The last name in the chain decides NXDOMAIN, as in a real answer.
    err = await failure(d.resolve("dangling.example.com", "A"))
    assert isinstance(err, NXDomain)
    assert err.name == "dangling.example.com"


async def test_cname_chain_limit() -> None:
    chain = {f"c{i}.example": {"CNAME": f"c{i + 1}.example"} for i in range(9)}
    chain["c9.example"] = {"A": "192.0.2.9"}
    d = world_dns(records=chain)
    assert addresses_of(await d.resolve("c1.example", "A")) == ["192.0.2.9"]  # 8 hops
    err = await failure(d.resolve("c0.example", "A"))  # 9 hops
    assert isinstance(err, TempFail)
    assert err.kind == "servfail"
    loop = world_dns(
        records={"a.example": {"CNAME": "b.example"}, "b.example": {"CNAME": "a.example"}}
    )
    assert (await failure(loop.resolve("a.example", "A"))).kind == "servfail"


async def test_nxdomain_versus_nodata() -> None:
    d = world_dns()
    nx = await failure(d.resolve("nowhere.example", "A"))
    assert isinstance(nx, NXDomain)
    assert (nx.name, nx.rdtype, nx.kind, nx.temporary) == (
        "nowhere.example",
        "A",
        "nxdomain",
        False,
    )
    nodata = await failure(d.resolve("mx2.example.com", "A"))
    assert isinstance(nodata, NoData)
    assert (nodata.kind, nodata.temporary) == ("nodata", False)
    # A name above a record exists without data (RFC 8020), it is not NXDOMAIN.
    assert isinstance(await failure(d.resolve("zen.spamhaus.org", "A")), NoData)
    assert await d.addresses("nowhere.example") == []
    assert await d.addresses("example.com") == []
    # A name no query can carry does not exist.
    assert isinstance(await failure(d.resolve("a..example", "A")), NXDomain)
    with pytest.raises(ValueError, match="unknown DNS record type 'BOGUS'"):
        await d.resolve("example.com", "BOGUS")


async def test_wildcards() -> None:
    d = world_dns()
    assert await d.addresses("host.wild.example") == ["192.0.2.99"]
    assert await d.addresses("a.b.wild.example") == ["192.0.2.99"]
    # The wildcard's parent exists but has no data.
    assert isinstance(await failure(d.resolve("wild.example", "A")), NoData)
    # RFC 4592 §2.2: an existing name is not covered by the wildcard, nor is what is below it.
    assert isinstance(await failure(d.resolve("real.wild.example", "A")), NoData)
    assert isinstance(await failure(d.resolve("x.real.wild.example", "A")), NXDomain)


async def test_dnsbl_entry() -> None:
    d = world_dns()
    assert await d.addresses("2.0.0.127.zen.spamhaus.org") == ["127.0.0.2"]
    assert await d.txt("2.0.0.127.zen.spamhaus.org") == ["listed"]
    assert await d.addresses("3.0.0.127.zen.spamhaus.org") == []


async def test_ptr_shorthand_ipv4_and_ipv6() -> None:
    d = world_dns(
        ptr={
            "192.0.2.10": "MX.example.com.",
            "2001:db8::10": ["mx.example.com", "other.example"],
        }
    )
    assert await d.ptr("192.0.2.10") == ["mx.example.com"]
    assert sorted(await d.ptr("2001:0db8:0::10")) == ["mx.example.com", "other.example"]
    assert await d.ptr("192.0.2.11") == []
    assert ("10.2.0.192.in-addr.arpa", "PTR") in d.zone()
    with pytest.raises(ValueError, match="not an IP address"):
        await d.ptr("mx.example.com")


async def test_ptr_records_written_out_and_merged_with_shorthand() -> None:
    d = world_dns(
        records={"10.2.0.192.in-addr.arpa": {"PTR": "a.example"}},
        ptr={"192.0.2.10": "b.example"},
    )
    assert sorted(await d.ptr("192.0.2.10")) == ["a.example", "b.example"]


# -- scripted failures ---------------------------------------------------------------


async def test_servfail_script() -> None:
    d = world_dns(servfail=["broken.example", "*.2.0.192.in-addr.arpa"])
    for rdtype in ("A", "MX", "TXT"):
        err = await failure(d.resolve("broken.example", rdtype))
        assert isinstance(err, TempFail)
        assert (err.kind, err.temporary, err.rdtype) == ("servfail", True, rdtype)
    with pytest.raises(TempFail):
        await d.addresses("broken.example")
    with pytest.raises(TempFail):
        await d.ptr("192.0.2.10")
    with pytest.raises(TempFail):
        await d.mx("broken.example")
    # "*.x" scripts the names under x, not x itself.
    assert await d.ptr("198.51.100.1") == []
    assert isinstance(await failure(d.resolve("2.0.192.in-addr.arpa", "PTR")), NXDomain)


async def test_servfail_script_on_a_cname_target() -> None:
    d = world_dns(servfail=["mx.example.com"])
    err = await failure(d.resolve("alias.example.com", "A"))
    assert (err.name, err.kind) == ("alias.example.com", "servfail")


async def test_timeout_script() -> None:
    d = world_dns(timeout=["slow.example", "*.slow.example"])
    err = await failure(d.resolve("slow.example", "A"))
    assert isinstance(err, TempFail)
    assert (err.kind, err.temporary) == ("timeout", True)
    assert (await failure(d.resolve("a.slow.example", "TXT"))).kind == "timeout"
    assert await d.addresses("mx.example.com")  # control


async def test_timeout_script_takes_timeout_seconds() -> None:
    d = world_dns(timeout=["slow.example"], timeout_seconds=0.05)
    start = time.monotonic()
    assert (await failure(d.resolve("slow.example", "A"))).kind == "timeout"
    assert time.monotonic() - start >= 0.05


def test_zone_exports_rrsets() -> None:
    d = world_dns(ttl=60)
    zone = d.zone()
    assert ("example.com", "MX") in zone
    assert ("*.wild.example", "A") in zone
    rrset = zone[("mx.example.com", "A")]
    assert isinstance(rrset, dns.rrset.RRset)
    assert rrset.ttl == 60
    assert rrset.name.to_text() == "mx.example.com."
    assert [r.to_text() for r in rrset] == ["192.0.2.10"]


def test_empty_world_dns_is_hermetic_and_empty() -> None:
    d = WorldDNS()
    assert d.mode == "hermetic"
    assert d.zone() == {}


# -- validation ----------------------------------------------------------------------


def errors(dns_cfg: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as info:
        WorldConfig.model_validate({"dns": dns_cfg})
    return [(err["loc"], err["msg"].removeprefix("Value error, ")) for err in info.value.errors()]


@pytest.mark.parametrize(
    ("cfg", "loc", "message"),
    [
        (
            {"records": {"a.example": {"A": "1.2.3"}}},
            ("dns", "records", "a.example", "A"),
            "not an IPv4 address: '1.2.3'",
        ),
        (
            {"records": {"a.example": {"AAAA": "192.0.2.1"}}},
            ("dns", "records", "a.example", "AAAA"),
            "not an IPv6 address: '192.0.2.1'",
        ),
        (
            {"records": {"a.example": {"MX": "mx.example"}}},
            ("dns", "records", "a.example", "MX"),
            "bad MX record 'mx.example': expecting an integer",
        ),
        (
            {"records": {"a.example": {"FOO": "x"}}},
            ("dns", "records", "a.example"),
            "unknown DNS record type 'FOO'",
        ),
        (
            {"records": {"a.example": {"ANY": "x"}}},
            ("dns", "records", "a.example"),
            "'ANY' is not a record type a zone can hold",
        ),
        (
            {"records": {"a.example": {"CNAME": "b.example", "A": "192.0.2.1"}}},
            ("dns", "records", "a.example"),
            "a CNAME cannot have other data at the same name (RFC 1034 §3.6.2), found: A",
        ),
        (
            {"records": {"a.example": {"CNAME": ["b.example", "c.example"]}}},
            ("dns", "records", "a.example"),
            "a name has at most one CNAME (RFC 2181 §10.1)",
        ),
        (
            {"records": {"a.example": {}}},
            ("dns", "records", "a.example"),
            "no records here: give at least one TYPE: value",
        ),
        (
            {"records": {"a..example": {"A": "192.0.2.1"}}},
            ("dns", "records", "a..example", "[key]"),
            "not a domain name: 'a..example' (A DNS label is empty.)",
        ),
        (
            {"records": {"A.example": {"A": "192.0.2.1"}, "a.example.": {"A": "192.0.2.2"}}},
            ("dns", "records"),
            "'A.example' and 'a.example.' are the same entry (a.example)",
        ),
        (
            {"ptr": {"192.0.2": "a.example"}},
            ("dns", "ptr", "192.0.2", "[key]"),
            "not an IP address: '192.0.2'",
        ),
        (
            {
                "records": {"10.2.0.192.in-addr.arpa": {"CNAME": "x.example"}},
                "ptr": {"192.0.2.10": "a.example"},
            },
            ("dns", "ptr"),
            "192.0.2.10: its reverse name 10.2.0.192.in-addr.arpa has a CNAME in records, "
            "so it cannot hold a PTR (RFC 1034 §3.6.2)",
        ),
        (
            {"servfail": ["x.example"], "timeout": ["X.example."]},
            ("dns", "timeout"),
            "listed under both servfail and timeout: x.example",
        ),
        (
            {"nameservers": ["127.0.0.1:70000"]},
            ("dns", "nameservers", 0),
            "not an IP address, IP:PORT or [IPv6]:PORT: '127.0.0.1:70000' "
            "(port 70000 is outside 1-65535)",
        ),
        (
            {"mode": "recursive"},
            ("dns", "mode"),
            "Input should be 'hermetic', 'overlay' or 'system'",
        ),
        ({"colour": "blue"}, ("dns", "colour"), "Extra inputs are not permitted"),
    ],
)
def test_validation_errors(cfg: dict[str, Any], loc: tuple[Any, ...], message: str) -> None:
    assert errors(cfg) == [(loc, message)]


def test_valid_config_normalises() -> None:
    cfg = DnsConfig.model_validate(
        {
            "records": {
                "Example.COM.": {"mx": "10 MX.example.com", "caa": '0 issue "ca.example"'},
                "svc.example": {"SRV": "0 5 25 mx.example.com", "HTTPS": "1 . alpn=h2"},
                "sshfp.example": {"SSHFP": "1 1 0123456789abcdef0123456789abcdef01234567"},
            },
            "ptr": {"2001:DB8:0::1": "Host.Example."},
            "nameservers": ["127.0.0.1", "127.0.0.1:5353", "::1", "[::1]:5353"],
            "servfail": ["*.Broken.Example."],
        }
    )
    assert cfg.records["example.com"].rdata() == {
        dns.rdatatype.MX: ["10 MX.example.com."],
        dns.rdatatype.CAA: ['0 issue "ca.example"'],
    }
    assert cfg.ptr == {"2001:db8::1": ["host.example"]}
    assert cfg.servfail == ["*.broken.example"]
    assert cfg.nameservers == ["127.0.0.1", "127.0.0.1:5353", "::1", "[::1]:5353"]


# -- real DNS over loopback ------------------------------------------------------------


class Responder(asyncio.DatagramProtocol):
    """A DNS server on loopback UDP answering from a table, so dnspython's real path runs."""

    def __init__(self, records: dict[tuple[str, str], list[str]]) -> None:
        self.records = records
        self.servfail: set[tuple[str, str]] = set()
        self.silent = False
        self.asked: list[tuple[str, str]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    @property
    def address(self) -> str:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return f"{host}:{port}"

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        key = (
            question.name.to_text(omit_final_dot=True).lower(),
            dns.rdatatype.to_text(question.rdtype),
        )
        self.asked.append(key)
        if self.silent:
            return
        response = dns.message.make_response(query)
        if key in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif key in self.records:
            response.answer.append(
                dns.rrset.from_text_list(
                    question.name, 60, "IN", question.rdtype, self.records[key]
                )
            )
        elif all(name != key[0] for name, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


@pytest.fixture
async def responder() -> AsyncIterator[Responder]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: Responder(
            {
                ("example.com", "A"): ["198.51.100.7"],
                ("example.com", "MX"): ["5 real-mx.example.com."],
                ("real.test", "A"): ["198.51.100.8"],
                ("real.test", "TXT"): ['"from the responder"'],
                ("dual.test", "A"): ["198.51.100.9"],
            }
        ),
        local_addr=("127.0.0.1", 0),
    )
    try:
        yield protocol
    finally:
        transport.close()


def real_dns(mode: str, responder: Responder, **extra: Any) -> WorldDNS:
    cfg = {"mode": mode, "nameservers": [responder.address], "lifetime": 2.0, **extra}
    return WorldDNS.from_config(DnsConfig.model_validate(cfg))


async def test_system_mode_asks_the_nameserver(responder: Responder) -> None:
    d = real_dns("system", responder, records={"example.com": {"A": "192.0.2.1"}})
    assert d.mode == "system"
    assert await d.addresses("example.com") == ["198.51.100.7"]  # the scenario's A is unused
    assert await d.mx("example.com") == [(5, "real-mx.example.com")]
    assert await d.txt("real.test") == ["from the responder"]
    assert isinstance(await failure(d.resolve("real.test", "MX")), NoData)
    assert isinstance(await failure(d.resolve("nowhere.test", "A")), NXDomain)
    assert ("real.test", "TXT") in responder.asked


async def test_system_mode_servfail_and_partial_failure(responder: Responder) -> None:
    responder.servfail |= {("real.test", "A"), ("dual.test", "AAAA")}
    d = real_dns("system", responder)
    err = await failure(d.resolve("real.test", "A"))
    assert isinstance(err, TempFail)
    assert err.kind == "servfail"
    # One family failed temporarily, the other answered: the answer is enough.
    assert await d.addresses("dual.test") == ["198.51.100.9"]


async def test_overlay_prefers_the_scenario(responder: Responder) -> None:
    d = real_dns(
        "overlay",
        responder,
        records={
            "example.com": {"A": "192.0.2.1"},
            "alias.example": {"CNAME": "real.test"},
        },
        servfail=["broken.test"],
    )
    assert d.mode == "overlay"
    assert await d.addresses("example.com") == ["192.0.2.1"]
    # The scenario owns example.com: no MX there, whatever real DNS says.
    assert await d.mx("example.com") == []
    assert await d.addresses("real.test") == ["198.51.100.8"]
    assert await d.addresses("alias.example") == ["198.51.100.8"]
    assert (await failure(d.resolve("broken.test", "A"))).kind == "servfail"
    assert all(name not in ("example.com", "broken.test") for name, _ in responder.asked)


async def test_real_dns_timeout_within_lifetime(responder: Responder) -> None:
    responder.silent = True
    d = real_dns("system", responder, lifetime=0.5)
    start = time.monotonic()
    err = await failure(d.resolve("example.com", "A"))
    elapsed = time.monotonic() - start
    assert isinstance(err, TempFail)
    assert err.kind == "timeout"
    assert elapsed < 1.5
    assert responder.asked  # the query did go out
