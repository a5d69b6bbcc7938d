"""The scenario's zone served over real DNS, UDP and TCP.

A staging MTA resolves names itself; pointed at this server it sees the same world the
receiver believes in, and `dig @127.0.0.1 -p 5353 name` shows it. Every answer comes from
`WorldDNS.resolve` on a hermetic view of the scenario's records, so what the receiver
decides in `hermetic` mode and what a `system`-mode receiver (or an MTA) learns from this
server agree:

- records found: NOERROR, authoritative (AA); a CNAME chain is given hop by hop in the
  answer section, wildcards (RFC 4592) are expanded to the name asked;
- a name that does not exist: NXDOMAIN; a name with no records of the type: NOERROR and
  no answer (NODATA). Both carry an SOA in the authority section (RFC 2308), synthesised
  for the closest name the zone holds at or above the name asked (the root when none);
- a name scripted to SERVFAIL: SERVFAIL; scripted to time out: no reply at all;
- ANY, AXFR, IXFR and the other meta types: REFUSED (this is not a zone to transfer);
  a class other than IN: REFUSED; an opcode other than QUERY: NOTIMP; EDNS above
  version 0: BADVERS (RFC 6891 §6.1.3); not exactly one question: FORMERR;
- over UDP, a reply larger than the client can take (512 octets, or its EDNS payload
  size up to 4096) goes out empty with TC set, so the client asks again over TCP (RFC 1035 §4.2.1,
  RFC 7766).

Packets that are not DNS queries are dropped over UDP, and end the connection over TCP:
a test server must not be made to talk by noise, nor fall over on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections import Counter
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.CNAME import CNAME

from .dns import IN, MAX_CNAME_CHAIN, DnsFailure, NoData, NXDomain, TempFail, WorldDNS
from .dns_config import DnsConfig
from .names import name_text

log = logging.getLogger(__name__)

#: Largest UDP reply without EDNS (RFC 1035 §4.2.1).
CLASSIC_UDP = 512
#: The EDNS payload size advertised (the DNS Flag Day 2020 value, avoids fragmentation).
OUR_PAYLOAD = 1232
#: The most sent in one datagram whatever a client offers (RFC 6891 §6.2.5's 4096).
MAX_UDP = 4096
#: Seconds an idle TCP connection is kept (RFC 7766 §6.2.3 wants servers to time out).
TCP_IDLE = 10.0
#: The synthetic SOA's names: .invalid (RFC 6761) says no real server is meant.
SOA_MNAME = "ns.strictmx.invalid."
SOA_RNAME = "hostmaster.strictmx.invalid."


@dataclass
class Answer:
    """What a query gets: a response code, answer RRsets, and whether to reply at all."""

    rcode: dns.rcode.Rcode
    rrsets: list[dns.rrset.RRset]
    failure: DnsFailure | None = None

    @property
    def silent(self) -> bool:
        return self.failure is not None and self.failure.kind == "timeout"


class DnsServer:
    """An authoritative DNS server for a `WorldDNS`'s records, on one address, UDP and TCP."""

    def __init__(
        self, world_dns: WorldDNS, host: str = "127.0.0.1", port: int = 5353, *, ttl: int = 300
    ) -> None:
        self.dns = world_dns
        self.host = host
        self.requested_port = port
        self.ttl = ttl
        #: Well-formed queries received, by (name, type): what a client really asked.
        self.queries: Counter[tuple[str, str]] = Counter()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._names = _zone_names(world_dns)

    @classmethod
    def from_config(cls, cfg: DnsConfig, host: str, port: int) -> DnsServer:
        """Serve a scenario's `world.dns`: its records and scripts, whatever its mode."""
        zone = cfg.model_copy(update={"mode": "hermetic", "nameservers": []})
        return cls(WorldDNS.from_config(zone), host, port, ttl=cfg.ttl)

    # -- life -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on UDP and TCP at the same port (port 0: a free one, the same for both)."""
        loop = asyncio.get_running_loop()
        attempts = 20 if self.requested_port == 0 else 1
        for attempt in range(attempts):
            try:
                self._tcp = await asyncio.start_server(
                    self._serve_tcp, self.host, self.requested_port
                )
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, self._shown(self.requested_port)) from None
            port = self._tcp.sockets[0].getsockname()[1]
            try:
                self._udp, _ = await loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self), local_addr=(self.host, port)
                )
                return
            except OSError as exc:
                self._tcp.close()
                await self._tcp.wait_closed()
                self._tcp = None
                # A free TCP port may be taken for UDP; pick another.
                if exc.errno != errno.EADDRINUSE or attempt == attempts - 1:
                    raise OSError(exc.errno, exc.strerror, self._shown(port)) from None

    def _shown(self, port: int) -> str:
        return f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"

    @property
    def address(self) -> tuple[str, int]:
        if self._tcp is None:
            raise RuntimeError("the DNS server is not running")
        host, port = self._tcp.sockets[0].getsockname()[:2]
        return host, port

    @property
    def port(self) -> int:
        return self.address[1]

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._writers):
                writer.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._tcp.wait_closed()
            self._tcp = None

    # -- answering ----------------------------------------------------------------------------

    def parse(self, wire: bytes) -> dns.message.Message | None:
        """A query from the wire, or None for anything that is not one."""
        try:
            message = dns.message.from_wire(wire)
        except (dns.exception.DNSException, ValueError) as exc:
            log.debug("dropping a malformed DNS packet (%d octets): %s", len(wire), exc)
            return None
        if message.flags & dns.flags.QR:
            return None  # a response: answering it could start a loop between two servers
        return message

    async def respond(self, query: dns.message.Message) -> dns.message.Message | None:
        """The response to `query`, or None when the world says it times out."""
        response = dns.message.make_response(query, our_payload=OUR_PAYLOAD)
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        if query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)
            return response
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        qname, qtype = question.name, question.rdtype
        self.queries[(name_text(qname), dns.rdatatype.to_text(qtype))] += 1
        if question.rdclass != IN or dns.rdatatype.is_metatype(qtype):
            response.set_rcode(dns.rcode.REFUSED)
            return response
        answer = await self.answer(qname, qtype)
        if answer.silent:
            return None
        response.set_rcode(answer.rcode)
        response.answer = answer.rrsets
        if answer.rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            response.flags |= dns.flags.AA
            if not answer.rrsets or answer.failure is not None:
                response.authority = [self._soa(qname)]
        return response

    async def answer(self, qname: dns.name.Name, qtype: dns.rdatatype.RdataType) -> Answer:
        """Walk the CNAME chain from `qname` as `WorldDNS.resolve` does, keeping each hop."""
        label = dns.rdatatype.to_text(qtype)
        rrsets: list[dns.rrset.RRset] = []
        current = qname
        try:
            for _hop in range(MAX_CNAME_CHAIN + 1):
                if qtype != dns.rdatatype.CNAME:
                    try:
                        alias = await self.dns.resolve(current.to_text(), "CNAME")
                    except NoData:
                        alias = []
                    if alias:
                        rrsets.append(self._rrset(current, dns.rdatatype.CNAME, alias))
                        assert isinstance(alias[0], CNAME)
                        current = alias[0].target
                        continue
                found = await self.dns.resolve(current.to_text(), label)
                rrsets.append(self._rrset(current, qtype, found))
                return Answer(dns.rcode.NOERROR, rrsets)
            raise TempFail(name_text(qname), label, "servfail", "CNAME chain too long")
        except NXDomain as exc:
            return Answer(dns.rcode.NXDOMAIN, rrsets, exc)
        except NoData as exc:
            return Answer(dns.rcode.NOERROR, rrsets, exc)
        except TempFail as exc:
            return Answer(dns.rcode.SERVFAIL, [], exc)

    def _rrset(
        self,
        owner: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        rdatas: list[dns.rdata.Rdata],
    ) -> dns.rrset.RRset:
        # The owner is the name asked (a wildcard's records take it), in the client's case.
        rrset = dns.rrset.RRset(owner, IN, rdtype)
        for rdata in rdatas:
            rrset.add(rdata, self.ttl)
        return rrset

    def _soa(self, qname: dns.name.Name) -> dns.rrset.RRset:
        apex = qname
        while apex.canonicalize() not in self._names:
            apex = apex.parent()
        soa = dns.rdata.from_text(
            IN,
            dns.rdatatype.SOA,
            f"{SOA_MNAME} {SOA_RNAME} 1 3600 600 86400 {self.ttl}",
        )
        return self._rrset(apex, dns.rdatatype.SOA, [soa])

    # -- transports ---------------------------------------------------------------------------

    def udp_wire(self, query: dns.message.Message, response: dns.message.Message) -> bytes:
        """The response as one datagram: emptied, with TC set, if the client cannot take it."""
        offered = min(max(CLASSIC_UDP, query.payload), MAX_UDP)
        limit = offered if query.edns >= 0 else CLASSIC_UDP
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer, response.authority, response.additional = [], [], []
            response.flags |= dns.flags.TC
            return response.to_wire(max_size=limit)

    def handle_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        query = self.parse(data)
        if query is None:
            return
        task = asyncio.create_task(self._reply_udp(query, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reply_udp(self, query: dns.message.Message, addr: tuple[str, int]) -> None:
        response = await self.respond(query)
        if response is not None and self._udp is not None:
            self._udp.sendto(self.udp_wire(query, response), addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                # RFC 1035 §4.2.2: each message is preceded by its length in two octets.
                try:
                    head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE)
                    data = await asyncio.wait_for(
                        reader.readexactly(int.from_bytes(head, "big")), TCP_IDLE
                    )
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    return
                query = self.parse(data)
                if query is None:
                    return
                response = await self.respond(query)
                if response is None:
                    continue  # scripted timeout: this query goes unanswered
                writer.write(response.to_wire(max_size=65535, prepend_length=True))
                await writer.drain()
        except ConnectionError:
            return
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def _zone_names(world_dns: WorldDNS) -> frozenset[dns.name.Name]:
    """Every name the zone holds, and every name above one (empty non-terminals)."""
    names = {dns.name.root}
    for rrset in world_dns.zone().values():
        name = rrset.name
        while name not in names:
            names.add(name)
            name = name.parent()
    return frozenset(names)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server.handle_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP unreachable for a client that went away: nothing to do.
        log.debug("DNS over UDP: %s", exc)
