"""The remote MX hosts of a hermetic world, served on loopback for sender-verify callouts.

The sender domains a scenario lists in `world.mailboxes` (in a hermetic world, every
domain) have MX records naming simulated public addresses (192.0.2.25 and the like) that
nothing listens on. The callout client never connects to them: it sends every such
connection to one `MailboxResponder` on 127.0.0.1, which answers as the MX of every
domain in `world.mailboxes`:

- RCPT for a local part that `exists` (or any, at an `accept_all` domain): 250;
- RCPT for a local part listed under `tempfail`, or any at a `tempfail_all` domain: 451;
- RCPT for an unknown local part, or at a domain the table does not list: 550 5.1.1;
- `MAIL FROM:<>` at a domain with `null_sender: reject`: 550, as the broken firewalls and
  filters that refuse bounces do (the callout then fails before the address is asked).

Which domain a connection is about is told by the callout client right after it connects
(`announce`), because the null-sender decision comes at MAIL, before any RCPT names the
domain. An unannounced connection (a test calling the responder as an ordinary MX, or a
person trying it by hand) is judged by the domain each RCPT names: its null sender is
refused in reply to RCPT, as a Postfix MX with smtpd_delay_reject refuses it.

The texts are Postfix's (smtpd_check.c), so a callout's "host said:" detail reads like a
real one.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as AioSession

from ..verdict import printable
from .mailboxes import Mailboxes

Peer = tuple[str, int]

#: Connections remembered in `probes` (the count in `connections` is never trimmed).
MAX_PROBES = 1000

# Postfix smtpd_check.c, a check_sender_access "REJECT" of <>.
NULL_SENDER_REFUSED = "550 5.7.1 <>: Sender address rejected: Access denied"


@dataclass
class ProbeLog:
    """One connection the responder served: which MX and domain it was for, what it sent."""

    peer: Peer
    domain: str | None = None  # announced by the callout client, else None
    mx: str | None = None  # the MX host name the client meant to call
    commands: list[str] = field(default_factory=list)


class MailboxResponder:
    """An aiosmtpd server on loopback that answers as every mailbox domain's MX."""

    def __init__(
        self,
        mailboxes: Mailboxes,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        hostname: str = "mx.mailboxes.strictmx.test",
    ) -> None:
        self.mailboxes = mailboxes
        self.host = host
        self.port = port
        self.hostname = hostname
        #: Every connection accepted since start.
        self.connections = 0
        #: The latest connections, oldest first.
        self.probes: collections.deque[ProbeLog] = collections.deque(maxlen=MAX_PROBES)
        self._announced: dict[Peer, ProbeLog] = {}
        self._server: asyncio.base_events.Server | None = None
        self._open: set[_ResponderSMTP] = set()
        self._handler = _Handler(self)

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def address(self) -> Peer:
        """Where the responder listens (host, port); only while running."""
        if self._server is None:
            raise RuntimeError("the mailbox responder is not running")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, self.port)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        # Probes end within their own timeouts; an open one must not hold the receiver.
        for protocol in list(self._open):
            if protocol.transport is not None:
                protocol.transport.close()
        await self._server.wait_closed()
        self._server = None
        self._announced.clear()

    def announce(self, client: Peer, domain: str, mx: str) -> None:
        """The connection from `client` asks `mx` about an address at `domain`."""
        self._announced[_peer(client)] = ProbeLog(_peer(client), domain.lower(), mx)

    def release(self, client: Peer) -> None:
        """The connection from `client` is over; forget an announcement it did not use."""
        self._announced.pop(_peer(client), None)

    # -- the MX's answers ----------------------------------------------------------------

    def answer_mail(self, probe: ProbeLog, address: str) -> str:
        if address == "<>" and probe.domain is not None and self._refuses_bounces(probe.domain):
            return NULL_SENDER_REFUSED
        return "250 2.1.0 Ok"

    def answer_rcpt(self, probe: ProbeLog, sender: str, address: str) -> str:
        domain = address.rpartition("@")[2]
        if sender == "<>" and probe.domain is None and self._refuses_bounces(domain):
            return NULL_SENDER_REFUSED
        try:
            state = self.mailboxes.lookup(address)
        except ValueError:
            return "501 5.1.3 Bad recipient address syntax"
        if state == "exists":
            return "250 2.1.5 Ok"
        # Quoted as a reply may hold it (8-bit bytes of the probe's address as '?'), as
        # Postfix quotes the address it refuses.
        address = printable(address)
        if state == "tempfail":
            return f"451 4.3.0 <{address}>: Temporary lookup failure"
        if state == "no_domain":
            return f"550 5.1.1 <{address}>: Recipient address rejected: domain not served here"
        return (
            f"550 5.1.1 <{address}>: Recipient address rejected: "
            "User unknown in virtual mailbox table"
        )

    def _refuses_bounces(self, domain: str) -> bool:
        table = self.mailboxes.domain(domain)
        return table is not None and table.null_sender == "reject"

    # -- internals -------------------------------------------------------------------------

    def _protocol(self) -> SMTP:
        self.connections += 1
        return _ResponderSMTP(self)

    def probe_for(self, server: SMTP) -> ProbeLog:
        """The record of `server`'s connection, made at its first command (after any
        announcement, which the client makes before it sends one)."""
        assert isinstance(server, _ResponderSMTP)
        if server.probe is None:
            assert server.session is not None
            peer = _peer(server.session.peer)
            server.probe = self._announced.pop(peer, None) or ProbeLog(peer)
            self.probes.append(server.probe)
        return server.probe


def _peer(address: Any) -> Peer:
    # IPv6 socket names carry flow info and scope id as well.
    return str(address[0]), int(address[1])


class _ResponderSMTP(SMTP):
    def __init__(self, responder: MailboxResponder) -> None:
        super().__init__(
            responder._handler, hostname=responder.hostname, ident="ESMTP", enable_SMTPUTF8=True
        )
        self.responder = responder
        self.probe: ProbeLog | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.responder._open.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.responder._open.discard(self)
        super().connection_lost(error)


class _Handler:
    """aiosmtpd hooks: record every command, answer MAIL and RCPT from the mailbox table."""

    def __init__(self, responder: MailboxResponder) -> None:
        self.responder = responder

    async def handle_EHLO(
        self,
        server: SMTP,
        session: AioSession,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        self.responder.probe_for(server).commands.append(f"EHLO {hostname}")
        session.host_name = hostname  # a hook of its own replaces aiosmtpd's bookkeeping
        return responses

    async def handle_HELO(
        self, server: SMTP, session: AioSession, envelope: Envelope, hostname: str
    ) -> str:
        self.responder.probe_for(server).commands.append(f"HELO {hostname}")
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_MAIL(
        self,
        server: SMTP,
        session: AioSession,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        probe = self.responder.probe_for(server)
        shown = address if address == "<>" else f"<{address}>"
        probe.commands.append(f"MAIL FROM:{shown}")
        reply = self.responder.answer_mail(probe, address)
        if reply.startswith("2"):
            envelope.mail_from = address  # "<>" for the null sender: truthy, as RCPT needs
            envelope.mail_options.extend(options)
        return reply

    async def handle_RCPT(
        self,
        server: SMTP,
        session: AioSession,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        probe = self.responder.probe_for(server)
        probe.commands.append(f"RCPT TO:<{address}>")
        reply = self.responder.answer_rcpt(probe, envelope.mail_from or "", address)
        if reply.startswith("2"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_RSET(self, server: SMTP, session: AioSession, envelope: Envelope) -> str:
        self.responder.probe_for(server).commands.append("RSET")
        return "250 2.0.0 Ok"

    async def handle_QUIT(self, server: SMTP, session: AioSession, envelope: Envelope) -> str:
        self.responder.probe_for(server).commands.append("QUIT")
        return "221 2.0.0 Bye"
