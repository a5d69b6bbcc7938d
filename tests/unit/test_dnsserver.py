"""The DNS server on loopback, asked by dnspython (and dig) over UDP and TCP."""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from strictmx.receiver.world.dns_config import DnsConfig
from strictmx.receiver.world.dnsserver import CLASSIC_UDP, MAX_UDP, DnsServer
from strictmx.receiver.world.endpoints import split_listen

HOST = "127.0.0.1"
QUICK = 2.0  # seconds a client waits for an answer that is expected
SHORT = 0.3  # seconds a client waits for an answer that must not come

ZONE: dict[str, Any] = {
    "ttl": 120,
    "records": {
        "example.net": {"MX": "10 mail.example.net.", "TXT": "v=spf1 mx -all"},
        "mail.example.net": {"A": "203.0.113.10", "AAAA": "2001:db8::10"},
        "alias.example.net": {"CNAME": "alias2.example.net."},
        "alias2.example.net": {"CNAME": "mail.example.net."},
        "dangling.example.net": {"CNAME": "gone.example.net."},
        "loop1.example": {"CNAME": "loop2.example."},
        "loop2.example": {"CNAME": "loop1.example."},
        "*.wild.example": {"A": "192.0.2.99", "MX": "10 mx.wild.example."},
        "real.wild.example": {"TXT": "not covered by the wildcard"},
        "deep.empty.example": {"A": "192.0.2.7"},
        "big.example": {"TXT": [f"{n:02d} " + "x" * 90 for n in range(12)]},
    },
    "ptr": {"203.0.113.10": "mail.example.net", "2001:db8::10": "mail.example.net"},
    "servfail": ["broken.example", "*.failing.example"],
    "timeout": ["slow.example"],
    "timeout_seconds": 0,
}


@pytest.fixture
async def server() -> AsyncIterator[DnsServer]:
    running = DnsServer.from_config(DnsConfig.model_validate(ZONE), HOST, 0)
    await running.start()
    yield running
    await running.stop()


async def ask(
    server: DnsServer,
    name: str,
    rdtype: str,
    *,
    tcp: bool = False,
    timeout: float = QUICK,
    **query_options: Any,
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **query_options)
    if tcp:
        return await dns.asyncquery.tcp(query, HOST, timeout, server.port)
    return await dns.asyncquery.udp(query, HOST, timeout, server.port)


def texts(response: dns.message.Message) -> list[str]:
    return [line for rrset in response.answer for line in rrset.to_text().splitlines()]


TRANSPORTS = pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])


# -- answers ----------------------------------------------------------------------------------


@TRANSPORTS
@pytest.mark.parametrize(
    ("name", "rdtype", "expected"),
    [
        ("mail.example.net", "A", ["mail.example.net. 120 IN A 203.0.113.10"]),
        ("mail.example.net", "AAAA", ["mail.example.net. 120 IN AAAA 2001:db8::10"]),
        ("example.net", "MX", ["example.net. 120 IN MX 10 mail.example.net."]),
        ("example.net", "TXT", ['example.net. 120 IN TXT "v=spf1 mx -all"']),
        (
            "10.113.0.203.in-addr.arpa",
            "PTR",
            ["10.113.0.203.in-addr.arpa. 120 IN PTR mail.example.net."],
        ),
        (
            "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
            "PTR",
            [
                "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. "
                "120 IN PTR mail.example.net."
            ],
        ),
    ],
)
async def test_records(
    server: DnsServer, name: str, rdtype: str, expected: list[str], tcp: bool
) -> None:
    response = await ask(server, name, rdtype, tcp=tcp)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert not response.flags & dns.flags.RA  # authoritative only, no recursion
    assert texts(response) == expected
    assert response.authority == []


@TRANSPORTS
async def test_cname_chain_is_given_hop_by_hop(server: DnsServer, tcp: bool) -> None:
    response = await ask(server, "alias.example.net", "A", tcp=tcp)
    assert response.rcode() == dns.rcode.NOERROR
    assert texts(response) == [
        "alias.example.net. 120 IN CNAME alias2.example.net.",
        "alias2.example.net. 120 IN CNAME mail.example.net.",
        "mail.example.net. 120 IN A 203.0.113.10",
    ]
    # Asked for the CNAME itself, it is not followed.
    response = await ask(server, "alias.example.net", "CNAME", tcp=tcp)
    assert texts(response) == ["alias.example.net. 120 IN CNAME alias2.example.net."]


async def test_dangling_cname_is_nxdomain_with_the_chain(server: DnsServer) -> None:
    response = await ask(server, "dangling.example.net", "A")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert texts(response) == ["dangling.example.net. 120 IN CNAME gone.example.net."]
    assert response.authority[0].rdtype == dns.rdatatype.SOA


async def test_cname_loop_is_servfail(server: DnsServer) -> None:
    response = await ask(server, "loop1.example", "A")
    assert response.rcode() == dns.rcode.SERVFAIL
    assert response.answer == []


@TRANSPORTS
async def test_wildcard_is_expanded_to_the_name_asked(server: DnsServer, tcp: bool) -> None:
    response = await ask(server, "Host.Wild.Example", "A", tcp=tcp)
    assert response.rcode() == dns.rcode.NOERROR
    # Owner in the client's case (DNS 0x20 resolvers check it).
    assert texts(response) == ["Host.Wild.Example. 120 IN A 192.0.2.99"]
    assert texts(await ask(server, "a.b.wild.example", "MX", tcp=tcp)) == [
        "a.b.wild.example. 120 IN MX 10 mx.wild.example."
    ]
    # A name that exists is not covered by the wildcard (RFC 4592 §2.2.1).
    exists = await ask(server, "real.wild.example", "A", tcp=tcp)
    assert exists.rcode() == dns.rcode.NOERROR
    assert exists.answer == []


@TRANSPORTS
@pytest.mark.parametrize(
    ("name", "rdtype", "rcode", "apex"),
    [
        ("nowhere.example.net", "A", dns.rcode.NXDOMAIN, "example.net."),
        ("no.such.tld", "MX", dns.rcode.NXDOMAIN, "."),
        ("example.net", "AAAA", dns.rcode.NOERROR, "example.net."),  # NODATA
        ("empty.example", "A", dns.rcode.NOERROR, "empty.example."),  # empty non-terminal
        ("x.wild.example", "TXT", dns.rcode.NOERROR, "wild.example."),
    ],
)
async def test_nxdomain_and_nodata_carry_an_soa(
    server: DnsServer, name: str, rdtype: str, rcode: dns.rcode.Rcode, apex: str, tcp: bool
) -> None:
    response = await ask(server, name, rdtype, tcp=tcp)
    assert response.rcode() == rcode
    assert response.flags & dns.flags.AA
    assert response.answer == []
    (soa,) = response.authority
    assert soa.to_text() == (
        f"{apex} 120 IN SOA ns.strictmx.invalid. hostmaster.strictmx.invalid. 1 3600 600 86400 120"
    )


# -- scripted failures ------------------------------------------------------------------------


@TRANSPORTS
@pytest.mark.parametrize("name", ["broken.example", "a.failing.example"])
async def test_servfail_script(server: DnsServer, name: str, tcp: bool) -> None:
    response = await ask(server, name, "A", tcp=tcp)
    assert response.rcode() == dns.rcode.SERVFAIL
    assert not response.flags & dns.flags.AA
    assert response.answer == response.authority == []
    # Control: the parent of a '*.' script answers.
    assert (await ask(server, "failing.example", "A", tcp=tcp)).rcode() == dns.rcode.NXDOMAIN


@TRANSPORTS
async def test_timeout_script_gets_no_answer(server: DnsServer, tcp: bool) -> None:
    with pytest.raises(dns.exception.Timeout):
        await ask(server, "slow.example", "A", tcp=tcp, timeout=SHORT)
    assert server.queries[("slow.example", "A")] == 1
    # Control: the server still answers.
    assert (await ask(server, "mail.example.net", "A", tcp=tcp)).answer


# -- what the server refuses ------------------------------------------------------------------


@pytest.mark.parametrize("rdtype", ["ANY", "AXFR", "IXFR"])
async def test_meta_queries_are_refused(server: DnsServer, rdtype: str) -> None:
    response = await ask(server, "example.net", rdtype, tcp=True)
    assert response.rcode() == dns.rcode.REFUSED
    assert response.answer == []


async def test_other_classes_are_refused(server: DnsServer) -> None:
    response = await ask(server, "example.net", "TXT", rdclass=dns.rdataclass.CH)
    assert response.rcode() == dns.rcode.REFUSED


async def test_other_opcodes_are_not_implemented(server: DnsServer) -> None:
    query = dns.message.make_query("example.net", "SOA")
    query.set_opcode(dns.opcode.NOTIFY)
    response = await dns.asyncquery.udp(query, HOST, QUICK, server.port)
    assert response.rcode() == dns.rcode.NOTIMP


async def test_edns_version_above_zero_is_badvers(server: DnsServer) -> None:
    response = await ask(server, "example.net", "MX", use_edns=1)
    assert response.rcode() == dns.rcode.BADVERS
    assert (await ask(server, "example.net", "MX", use_edns=0)).rcode() == dns.rcode.NOERROR


async def test_no_question_is_formerr(server: DnsServer) -> None:
    query = dns.message.Message()
    response = await dns.asyncquery.udp(query, HOST, QUICK, server.port)
    assert response.rcode() == dns.rcode.FORMERR


# -- bad input ------------------------------------------------------------------------------


async def udp_exchange(server: DnsServer, *datagrams: bytes) -> bytes:
    """Send each datagram from one socket and return the first datagram that comes back."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for datagram in datagrams:
            await loop.sock_sendto(sock, datagram, (HOST, server.port))
        wire, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), QUICK)
        return wire


async def test_malformed_udp_is_dropped_and_the_next_query_answered(server: DnsServer) -> None:
    good = dns.message.make_query("mail.example.net", "A")
    as_response = dns.message.make_response(dns.message.make_query("example.net", "MX"))
    wire = await udp_exchange(
        server,
        b"",
        b"\x00",
        b"\xff" * 40,
        good.to_wire()[:-3],  # cut short
        as_response.to_wire(),  # a response, never answered
        good.to_wire(),
    )
    # Anything sent back for the junk would have arrived first.
    answer = dns.message.from_wire(wire)
    assert answer.id == good.id
    assert texts(answer) == ["mail.example.net. 120 IN A 203.0.113.10"]
    assert sum(server.queries.values()) == 1


async def test_malformed_tcp_closes_the_connection(server: DnsServer) -> None:
    reader, writer = await asyncio.open_connection(HOST, server.port)
    writer.write(struct.pack("!H", 12) + b"\xff" * 12)
    assert await asyncio.wait_for(reader.read(), QUICK) == b""  # closed, nothing said
    writer.close()
    await writer.wait_closed()
    # A connection that ends mid-message is just closed too.
    reader, writer = await asyncio.open_connection(HOST, server.port)
    writer.write(struct.pack("!H", 100) + b"\x00" * 10)
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), QUICK) == b""
    writer.close()
    await writer.wait_closed()
    # Control: the server answers on a new connection.
    assert (await ask(server, "mail.example.net", "A", tcp=True)).answer


async def test_tcp_answers_several_queries_on_one_connection(server: DnsServer) -> None:
    queries = [dns.message.make_query(n, "A") for n in ("mail.example.net", "x.wild.example")]
    reader, writer = await asyncio.open_connection(HOST, server.port)
    for query in queries:
        writer.write(query.to_wire(prepend_length=True))
    answers = []
    for _ in queries:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
        answers.append(dns.message.from_wire(await reader.readexactly(length)))
    writer.close()
    await writer.wait_closed()
    assert [a.id for a in answers] == [q.id for q in queries]
    assert [texts(a) for a in answers] == [
        ["mail.example.net. 120 IN A 203.0.113.10"],
        ["x.wild.example. 120 IN A 192.0.2.99"],
    ]


QUERY_WIRES = [
    dns.message.make_query(name, rdtype, use_edns=edns).to_wire()
    for name in ("example.net", "alias.example.net", "x.wild.example", "broken.example")
    for rdtype in ("A", "MX", "TXT", "CNAME")
    for edns in (False, 0)
]


FUZZED = DnsServer.from_config(DnsConfig.model_validate(ZONE), HOST, 0)  # never started


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=600),
        st.tuples(
            st.sampled_from(QUERY_WIRES),
            st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
        ).map(lambda t: bytes(_mutate(t[0], t[1]))),
    )
)
def test_any_input_is_answered_or_dropped_never_raises(data: bytes) -> None:
    server = FUZZED
    query = server.parse(data)
    if query is None:
        return
    response = asyncio.run(server.respond(query))
    if response is not None:
        assert len(server.udp_wire(query, response)) <= max(CLASSIC_UDP, query.payload)
        assert len(server.udp_wire(query, response)) <= MAX_UDP
        response.to_wire(max_size=65535)


def _mutate(wire: bytes, changes: list[tuple[int, int]]) -> bytearray:
    out = bytearray(wire)
    for offset, value in changes:
        out[offset % len(out)] = value
    return out


# -- truncation -----------------------------------------------------------------------------


async def test_large_udp_answer_without_edns_is_truncated(server: DnsServer) -> None:
    response = await ask(server, "big.example", "TXT", use_edns=False)
    assert response.flags & dns.flags.TC
    assert response.answer == []
    assert len(response.to_wire()) <= CLASSIC_UDP


async def test_large_answer_fits_an_edns_payload_and_tcp(server: DnsServer) -> None:
    edns = await ask(server, "big.example", "TXT", use_edns=0, payload=4096)
    assert not edns.flags & dns.flags.TC
    assert len(edns.answer[0]) == 12
    small = await ask(server, "big.example", "TXT", use_edns=0, payload=800)
    assert small.flags & dns.flags.TC
    assert len(small.to_wire()) <= 800
    tcp = await ask(server, "big.example", "TXT", tcp=True, use_edns=False)
    assert not tcp.flags & dns.flags.TC
    assert len(tcp.answer[0]) == 12


async def test_a_client_falls_back_to_tcp_on_truncation(server: DnsServer) -> None:
    query = dns.message.make_query("big.example", "TXT", use_edns=False)
    response, used_tcp = await dns.asyncquery.udp_with_fallback(query, HOST, QUICK, server.port)
    assert used_tcp
    assert len(response.answer[0]) == 12


# -- bookkeeping ----------------------------------------------------------------------------


async def test_queries_are_counted_by_name_and_type(server: DnsServer) -> None:
    await ask(server, "Example.NET", "MX")
    await ask(server, "example.net", "MX", tcp=True)
    await ask(server, "nowhere.example", "A")
    assert server.queries == {("example.net", "MX"): 2, ("nowhere.example", "A"): 1}


async def test_udp_and_tcp_share_one_port_and_stop_frees_it(server: DnsServer) -> None:
    host, port = server.address
    assert host == HOST and port > 0
    clash = DnsServer(server.dns, HOST, port)
    with pytest.raises(OSError) as info:
        await clash.start()
    assert info.value.filename == f"{HOST}:{port}"
    await server.stop()
    with pytest.raises(OSError):
        await dns.asyncquery.tcp(dns.message.make_query("example.net", "MX"), HOST, QUICK, port)
    again = DnsServer(server.dns, HOST, port)
    await again.start()
    try:
        assert (await ask(again, "example.net", "MX")).answer
    finally:
        await again.stop()


async def test_ipv6_loopback(server: DnsServer) -> None:
    v6 = DnsServer(server.dns, "::1", 0, ttl=server.ttl)
    await v6.start()
    try:
        query = dns.message.make_query("mail.example.net", "AAAA")
        response = await dns.asyncquery.udp(query, "::1", QUICK, v6.port)
        assert texts(response) == ["mail.example.net. 120 IN AAAA 2001:db8::10"]
    finally:
        await v6.stop()


# -- dig ------------------------------------------------------------------------------------

DIG = shutil.which("dig")


@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
async def test_dig_prints_the_record(server: DnsServer, transport: str) -> None:
    assert DIG is not None, "dig is needed (Debian: bind9-dnsutils; scripts/test installs it)"
    proc = await asyncio.create_subprocess_exec(
        DIG,
        f"@{HOST}",
        "-p",
        str(server.port),
        transport,
        "+tries=1",
        "+time=2",
        "example.net",
        "MX",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert "status: NOERROR" in text
    assert "flags: qr aa rd;" in text
    assert any(
        line.split() == ["example.net.", "120", "IN", "MX", "10", "mail.example.net."]
        for line in text.splitlines()
    ), text


async def test_dig_shows_nxdomain_with_the_soa(server: DnsServer) -> None:
    assert DIG is not None, "dig is needed (Debian: bind9-dnsutils; scripts/test installs it)"
    proc = await asyncio.create_subprocess_exec(
        DIG,
        f"@{HOST}",
        "-p",
        str(server.port),
        "+tries=1",
        "+time=2",
        "nowhere.example.net",
        "A",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    text = out.decode()
    assert "status: NXDOMAIN" in text
    assert "example.net.\t\t120\tIN\tSOA\tns.strictmx.invalid." in text


# -- the scenario key -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_value", "normalised"),
    [
        ("127.0.0.1:5353", "127.0.0.1:5353"),
        (5353, "127.0.0.1:5353"),
        (":5353", "127.0.0.1:5353"),
        ("[::1]:5353", "[::1]:5353"),
        ("127.0.0.2:0", "127.0.0.2:0"),
        (None, None),
    ],
)
def test_serve_key(given_value: object, normalised: str | None) -> None:
    assert DnsConfig.model_validate({"serve": given_value}).serve == normalised
    assert DnsConfig().serve is None


@pytest.mark.parametrize(
    "bad", ["localhost:5353", "::1:5353", "127.0.0.1", "127.0.0.1:65536", "127.0.0.1:-1", ""]
)
def test_serve_key_is_validated(bad: str) -> None:
    with pytest.raises(ValidationError, match="not IP:PORT"):
        DnsConfig.model_validate({"serve": bad})


def test_split_listen() -> None:
    assert split_listen("[::1]:53") == ("::1", 53)
    assert split_listen("5353") == ("127.0.0.1", 5353)


async def test_from_config_serves_the_records_whatever_the_mode() -> None:
    cfg = DnsConfig.model_validate({**ZONE, "mode": "overlay", "nameservers": ["192.0.2.53"]})
    overlay = DnsServer.from_config(cfg, HOST, 0)
    assert overlay.dns.mode == "hermetic"
    assert overlay.ttl == 120
    await overlay.start()
    try:
        assert (await ask(overlay, "not-in-the-scenario.example", "A")).rcode() == (
            dns.rcode.NXDOMAIN
        )
    finally:
        await overlay.stop()
