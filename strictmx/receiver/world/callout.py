"""Sender-verify callouts: ask the sender domain's MX, over SMTP, whether the address exists.

One `Callout` serves a receiver: every session's policy asks it, and it remembers the
answers (a positive and a negative cache, each entry judged fresh by the asking policy's
TTLs). Two sessions asking about the same address at the same time share one probe.

A probe walks the sender domain's MX hosts in preference order (the domain's own A/AAAA
addresses when it has no MX, RFC 5321 §5.1), at most `Probe.max_addresses` addresses,
and holds one SMTP conversation with each until one gives a final answer:

- Postfix (`reject_unverified_sender`, verify(8)): EHLO, `MAIL FROM:<double-bounce@...>`,
  RCPT, RSET, QUIT;
- Exim (`verify = sender/callout`): HELO, `MAIL FROM:<>`, RCPT, QUIT.

A 2xx to RCPT verifies the address; a 5xx at any step is final (at RCPT the address is
refused; before it, the MX refused the probe itself). A refused or timed-out connection,
a lost connection or a 4xx tries the next address; when none is left the result is a
temporary failure, never a refusal (Exim: "all hosts failing -> defer").

Where the connection goes: a domain the world's mailbox table lists is simulated, and so
are the MX addresses DNS gives for it (whether the scenario's records are read directly
or served over real DNS), so nothing may be sent to them: the connection goes to the
world's `MailboxResponder` on loopback, and the client tells it which domain and MX host
the connection is for. In a hermetic world every domain is simulated and every
connection goes there. Other domains (overlay and system modes) are called at the
resolved address on the probe's port. Results always name the MX host and address DNS
gave, as a real callout would.

What a callout may reach: a probe is a connection strictmx makes on a client's say-so (the
sender's domain names the MX), so without `Probe.allow_private` it never connects to a
domain literal (`x@[127.0.0.3]`) or to an address that is not public (private, loopback,
link-local, reserved, multicast; RFC 6890), whatever DNS says; such a sender is
unroutable and no connection is tried. The world's own simulated MX hosts are not
targets of this kind: their connections go to the responder. And whatever happened to a
connection (refused, timed out, lost), the result's `detail`, which replies quote, says
only that the host gave no answer; the OS's reason is in `reason`, for the journal, so a
callout cannot be used to probe which ports answer where.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal

import aiosmtplib

from . import World
from .dns import TempFail, WorldDNS
from .mailserver import MailboxResponder
from .names import a_label

Style = Literal["postfix", "exim"]

log = logging.getLogger(__name__)

#: No SMTP command line may carry these (aiosmtplib refuses them with a ValueError).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: NAT64's well-known prefix (RFC 6052): an IPv4 address inside an IPv6 one.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

#: Cache entries kept; the oldest go first.
MAX_ENTRIES = 100_000


class Status(StrEnum):
    VERIFIED = "verified"  # the MX accepted the address
    FAILED = "failed"  # the MX refused the address (5xx to RCPT)
    UNROUTABLE = "unroutable"  # no MX host to ask: no MX/A/AAAA, or a null MX
    REFUSED = "refused"  # the MX refused the probe before the address (greeting, HELO, MAIL)
    TEMPFAIL = "tempfail"  # no final answer: timeouts, refused connections, 4xx, DNS
    ACCEPT_ALL = "accept_all"  # the MX accepted a random local part too
    POSTMASTER_FAILED = "postmaster_failed"  # the MX refused postmaster@domain


POSITIVE = frozenset({Status.VERIFIED, Status.ACCEPT_ALL})
#: Results that hold for every address at the domain (Exim's domain cache).
DOMAIN_WIDE = frozenset(
    {Status.UNROUTABLE, Status.REFUSED, Status.ACCEPT_ALL, Status.POSTMASTER_FAILED}
)


@dataclass(frozen=True)
class Result:
    """What a callout (or a custom verifier) found out about one address.

    `detail` is the reason as Postfix words it ("host mx.example.net[192.0.2.25] said:
    550 5.1.1 ... (in reply to RCPT TO command)"), safe to quote in a reply: a connection
    that failed is only "no answer from host ...". `reason`, when set, is the full story
    for the journal (the OS's "Connection refused"). `host`, `ip`, `sent` and `response`
    are the MX host, the address called, the last command sent and the MX's reply to it,
    as Exim reports them ("Called:", "Sent:", "Response:").
    """

    status: Status
    detail: str
    host: str = ""
    ip: str = ""
    sent: str = ""
    response: str = ""
    cached: bool = False
    reason: str = ""

    @property
    def positive(self) -> bool:
        return self.status in POSITIVE

    @property
    def full(self) -> str:
        """What the journal records: `reason` if there is one, else `detail`."""
        return self.reason or self.detail


@dataclass(frozen=True)
class Probe:
    """The shape of the conversation and its limits; part of every cache key."""

    style: Style = "postfix"
    #: The HELO/EHLO argument: the receiver's own name.
    helo: str = "localhost"
    #: MAIL FROM; "" is the null sender <>.
    sender: str = ""
    port: int = 25
    connect_timeout: float = 30.0
    command_timeout: float = 30.0
    #: Ask for a random local part first; if it is accepted the domain accepts all.
    random: bool = False
    #: Also ask for postmaster@domain, which must be accepted.
    postmaster: bool = False
    #: Addresses tried in all (Postfix smtp_mx_address_limit).
    max_addresses: int = 5
    #: Connect to domain literals and to addresses that are not public too.
    allow_private: bool = False


class Callout:
    """The callout client and its cache, shared by every session of a receiver."""

    def __init__(
        self,
        responder: MailboxResponder | None = None,
        *,
        hermetic: bool | None = None,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.responder = responder
        #: Every domain is simulated: send every connection to the responder, never to the
        #: addresses DNS gave.
        self.hermetic = responder is not None if hermetic is None else hermetic
        self.timer = timer
        #: Connections opened so far (attempts, refused ones included).
        self.connections = 0
        self._cache: dict[tuple[Probe, str], tuple[Result, float]] = {}
        self._pending: dict[tuple[Probe, str], asyncio.Task[Result]] = {}

    @classmethod
    def for_world(cls, world: World) -> Callout:
        """A client for `world`. Whether one is needed at all is the persona's question
        (strictmx/receiver/persona.py: some policy of the scenario `calls_out`).

        The loopback responder is made when some MX is simulated: in a hermetic world, or
        when the world lists mailboxes.
        """
        hermetic = world.dns.mode == "hermetic"
        simulated = hermetic or len(world.mailboxes) > 0
        return cls(MailboxResponder(world.mailboxes) if simulated else None, hermetic=hermetic)

    async def start(self) -> None:
        if self.responder is not None:
            await self.responder.start()

    async def stop(self) -> None:
        for task in list(self._pending.values()):
            task.cancel()
        if self.responder is not None:
            await self.responder.stop()

    def use_world(self, world: World) -> None:
        """Answer for another world from now on: its mailboxes, its DNS mode, a new cache."""
        self.hermetic = world.dns.mode == "hermetic"
        if self.responder is not None:
            self.responder.mailboxes = world.mailboxes
        self._cache.clear()

    # -- verification --------------------------------------------------------------------

    async def verify(
        self,
        address: str,
        dns: WorldDNS,
        probe: Probe,
        *,
        positive_ttl: float,
        negative_ttl: float,
    ) -> Result:
        """Whether the MX of `address`'s domain accepts it; from the cache when fresh."""
        if _CONTROL.search(address):
            # No SMTP command can carry it (RFC 5321 §4.1.2): nothing to ask any MX. Not
            # cached: it says nothing about the domain, whose other senders are fine.
            return Result(Status.UNROUTABLE, "bad address syntax: control character in address")
        local, _, domain = address.rpartition("@")
        key = f"{local}@{domain.lower()}"
        for cache_key in ((probe, key), (probe, "@" + domain.lower())):
            cached = self._cached(cache_key, positive_ttl, negative_ttl)
            if cached is not None:
                return cached
        task = self._pending.get((probe, key))
        if task is None:
            # Its own task: a session that goes away does not end the probe others await.
            task = asyncio.create_task(
                self._probe_and_store(probe, local, domain, dns, positive_ttl, negative_ttl)
            )
            self._pending[(probe, key)] = task
            task.add_done_callback(lambda _: self._pending.pop((probe, key), None))
        return await asyncio.shield(task)

    async def _probe_and_store(
        self,
        probe: Probe,
        local: str,
        domain: str,
        dns: WorldDNS,
        positive_ttl: float,
        negative_ttl: float,
    ) -> Result:
        try:
            result = await self._call(local, domain, dns, probe)
        except Exception as exc:  # a bug of ours must defer the sender, not end the session
            log.exception("callout for %s@%s failed", local, domain)
            result = Result(
                Status.TEMPFAIL,
                "local error in processing the callout",
                reason=f"callout failed: {type(exc).__name__}",
            )
        key = f"{local}@{domain.lower()}"
        self._store(probe, key, domain.lower(), result, positive_ttl, negative_ttl)
        return result

    def _cached(
        self, key: tuple[Probe, str], positive_ttl: float, negative_ttl: float
    ) -> Result | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        result, stored = entry
        ttl = positive_ttl if result.positive else negative_ttl
        if self.timer() - stored >= ttl:
            return None
        return replace(result, cached=True)

    def _store(
        self,
        probe: Probe,
        key: str,
        domain: str,
        result: Result,
        positive_ttl: float,
        negative_ttl: float,
    ) -> None:
        if result.status is Status.TEMPFAIL:
            return
        if (positive_ttl if result.positive else negative_ttl) <= 0:
            return
        if result.status in DOMAIN_WIDE:
            key = "@" + domain
        self._cache.pop((probe, key), None)  # re-inserted last: the newest entry
        self._cache[(probe, key)] = (result, self.timer())
        while len(self._cache) > MAX_ENTRIES:
            del self._cache[next(iter(self._cache))]

    async def _call(self, local: str, domain: str, dns: WorldDNS, probe: Probe) -> Result:
        try:
            ascii_domain = _ascii_domain(domain)
        except UnicodeError as exc:  # the codec's words stay out of replies
            why = f"bad address syntax: domain {domain!r}"
            return Result(Status.UNROUTABLE, why, reason=f"{why}: {exc}")
        targets = await _targets(ascii_domain, dns)
        if isinstance(targets, Result):
            return targets
        if not probe.allow_private and not self.simulates(ascii_domain):
            targets = _reachable(ascii_domain, targets)
            if isinstance(targets, Result):
                return targets
        conversation = _Conversation(self, f"{local}@{ascii_domain}", ascii_domain, probe)
        result: Result | None = None
        for host, ip in targets[: probe.max_addresses]:
            result = await conversation.run(host, ip)
            if result.status is not Status.TEMPFAIL:
                return result
        assert result is not None  # _targets never gives an empty list
        return result

    def simulates(self, domain: str) -> bool:
        """Whether `domain`'s MX hosts are served by the loopback responder."""
        if self.hermetic:
            return True
        return self.responder is not None and self.responder.mailboxes.domain(domain) is not None

    def route(self, domain: str, ip: str, probe: Probe) -> tuple[str, int] | str:
        """Where a connection to `domain`'s MX at `ip` goes, or why it cannot be made."""
        if not self.simulates(domain):
            return ip, probe.port
        if self.responder is None or not self.responder.running:
            return "the world's simulated mail servers are not running on loopback"
        return self.responder.address


def _reachable(domain: str, targets: list[tuple[str, str]]) -> list[tuple[str, str]] | Result:
    """The targets a probe may connect to without `allow_private`, or why there is none."""
    if domain.startswith("["):
        return Result(
            Status.UNROUTABLE,
            f"domain literal {domain} is not called (callouts to address literals are off)",
        )
    public = [(host, ip) for host, ip in targets if _public(ip)]
    if public:
        return public
    host, ip = targets[0]
    return Result(
        Status.UNROUTABLE,
        f"host {host}[{ip}] is not called: not a public address "
        "(callouts to private, loopback and link-local addresses are off)",
        host,
        ip,
    )


def _public(ip: str) -> bool:
    """Whether a probe may connect to `ip`: globally routable, and so is any IPv4 address
    inside it (mapped, 6to4, Teredo, NAT64), which the host would otherwise reach."""
    address = ipaddress.ip_address(ip)
    inner: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        for embedded in (address.ipv4_mapped, address.sixtofour):
            if embedded is not None:
                inner.append(embedded)
        if address.teredo is not None:
            inner.append(address.teredo[1])
        if address in _NAT64:
            inner.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return all(a.is_global and not a.is_multicast for a in inner)


def _ascii_domain(domain: str) -> str:
    if domain.startswith("["):
        return domain
    return ".".join(
        a_label(label) if not label.isascii() else label.lower()
        for label in domain.rstrip(".").split(".")
    )


async def _targets(domain: str, dns: WorldDNS) -> list[tuple[str, str]] | Result:
    """(MX host, address) in the order to try, or why there is none."""
    if domain.startswith("[") and domain.endswith("]"):
        literal = domain[1:-1]
        if literal.lower().startswith("ipv6:"):
            literal = literal[5:]
        try:
            return [(domain, str(ipaddress.ip_address(literal)))]
        except ValueError:
            return Result(Status.UNROUTABLE, f"bad address syntax: domain literal {domain}")
    try:
        mx = await dns.mx(domain)
    except TempFail:
        return _dns_tempfail(domain, "MX")
    if mx == [(0, ".")]:
        return Result(Status.UNROUTABLE, f"Domain {domain} does not accept mail (nullMX)")
    hosts = [host for _, host in mx if host != "."]
    if not mx:
        hosts = [domain]  # RFC 5321 §5.1: the domain itself is the implicit MX
    targets: list[tuple[str, str]] = []
    failed: str | None = None
    for host in hosts:
        try:
            targets += [(host, ip) for ip in await dns.addresses(host)]
        except TempFail:
            failed = failed or host
    if targets:
        return targets
    if failed is not None:
        return _dns_tempfail(failed, "A")
    return Result(
        Status.UNROUTABLE,
        f"Host or domain name not found. Name service error for name={hosts[-1]} type="
        + ("A" if mx else "MX")
        + ": Host not found",
    )


def _dns_tempfail(name: str, rdtype: str) -> Result:
    return Result(
        Status.TEMPFAIL,
        "Host or domain name not found. Name service error for "
        f"name={name} type={rdtype}: Host not found, try again",
    )


class _Ended(Exception):
    """The conversation has its result."""

    def __init__(self, result: Result) -> None:
        self.result = result


class _Conversation:
    """The SMTP dialogue of one probe with one MX address after another."""

    def __init__(self, callout: Callout, address: str, domain: str, probe: Probe) -> None:
        self.callout = callout
        self.address = address
        self.domain = domain
        self.probe = probe
        self.host = ""
        self.ip = ""
        self.sent = ""
        self.doing = ""
        self.smtp: aiosmtplib.SMTP | None = None

    @property
    def where(self) -> str:
        return f"{self.host}[{self.ip}]"

    async def run(self, host: str, ip: str) -> Result:
        self.host, self.ip, self.sent, self.smtp = host, ip, "", None
        target = self.callout.route(self.domain, ip, self.probe)
        if isinstance(target, str):
            return Result(Status.TEMPFAIL, target, host, ip)
        announced: tuple[str, int] | None = None
        try:
            sock = await self._connect(target)
            if self.callout.simulates(self.domain) and self.callout.responder is not None:
                announced = sock.getsockname()[:2]
                self.callout.responder.announce(announced, self.domain, host)
            # aiosmtplib owns the socket from here and closes it.
            self.smtp = aiosmtplib.SMTP(
                sock=sock,
                timeout=self.probe.command_timeout,
                local_hostname=self.probe.helo,
                start_tls=False,
            )
            return await self._talk()
        except _Ended as ended:
            return ended.result
        finally:
            if self.smtp is not None:
                await self._leave(self.smtp)
            if announced is not None and self.callout.responder is not None:
                self.callout.responder.release(announced)

    async def _connect(self, target: tuple[str, int]) -> socket.socket:
        host, port = target
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        self.callout.connections += 1
        shown = f"connect to {self.where}:{self.probe.port}"
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().sock_connect(sock, (host, port)),
                self.probe.connect_timeout,
            )
        except TimeoutError:
            sock.close()
            raise self._no_answer(f"{shown}: Connection timed out") from None
        except OSError as exc:
            sock.close()
            # asyncio's own strerror reads "Connect call failed (...)"; Postfix prints %m.
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise self._no_answer(f"{shown}: {why}") from None
        return sock

    async def _talk(self) -> Result:
        assert self.smtp is not None
        self.doing = "receiving the initial server greeting"
        try:
            await self.smtp.connect()
        except aiosmtplib.SMTPConnectResponseError as exc:
            text = _text(exc.code, exc.message)
            status = Status.REFUSED if exc.code >= 500 else Status.TEMPFAIL
            raise self._ended(
                status, f"host {self.where} refused to talk to me: {text}", text
            ) from None
        except aiosmtplib.SMTPException as exc:
            raise self._lost(exc) from None
        probe = self.probe
        greeting = "EHLO" if probe.style == "postfix" else "HELO"
        await self._expect(f"{greeting} {probe.helo}", Status.REFUSED)
        await self._expect(f"MAIL FROM:<{probe.sender}>", Status.REFUSED)
        if probe.random:
            response = await self._command(f"RCPT TO:<{self._random_address()}>")
            if response.code < 300:
                raise self._ended(
                    Status.ACCEPT_ALL,
                    f"host {self.where} accepts any address at {self.domain}",
                    _text(response.code, response.message),
                )
            if response.code < 500:
                raise self._refusal(Status.TEMPFAIL, response)
        await self._expect(f"RCPT TO:<{self.address}>", Status.FAILED)
        if probe.postmaster:
            await self._expect(f"RCPT TO:<postmaster@{self.domain}>", Status.POSTMASTER_FAILED)
        return Result(
            Status.VERIFIED, f"host {self.where} accepts {self.address}", self.host, self.ip
        )

    def _random_address(self) -> str:
        # Exim's callout_random_local_part: $primary_hostname-$tod_epoch-testing
        return f"{self.probe.helo}-{int(time.time())}-testing@{self.domain}"

    async def _expect(self, line: str, on_5xx: Status) -> None:
        response = await self._command(line)
        if response.code >= 300:
            raise self._refusal(on_5xx if response.code >= 500 else Status.TEMPFAIL, response)

    async def _command(self, line: str) -> aiosmtplib.SMTPResponse:
        assert self.smtp is not None
        self.sent = line
        self.doing = "sending " + _verb(line)
        try:
            return await self.smtp.execute_command(_wire(line))
        except aiosmtplib.SMTPException as exc:
            raise self._lost(exc) from None

    def _ended(self, status: Status, detail: str, response: str = "") -> _Ended:
        return _Ended(Result(status, detail, self.host, self.ip, self.sent, response))

    def _no_answer(self, reason: str) -> _Ended:
        """A connection that failed: the same words in replies whatever the cause."""
        detail = f"no answer from host {self.where}"
        return _Ended(
            Result(Status.TEMPFAIL, detail, self.host, self.ip, self.sent, "", reason=reason)
        )

    def _refusal(self, status: Status, response: aiosmtplib.SMTPResponse) -> _Ended:
        text = _text(response.code, response.message)
        detail = f"host {self.where} said: {text} (in reply to {_verb(self.sent)} command)"
        return self._ended(status, detail, text)

    def _lost(self, exc: aiosmtplib.SMTPException) -> _Ended:
        if isinstance(exc, aiosmtplib.SMTPTimeoutError):
            reason = f"conversation with {self.where} timed out while {self.doing}"
        else:
            reason = f"lost connection with {self.where} while {self.doing}"
        return self._no_answer(reason)

    async def _leave(self, smtp: aiosmtplib.SMTP) -> None:
        """End politely while the line is up: RSET (Postfix only), then QUIT."""
        try:
            if smtp.is_connected and self.probe.style == "postfix":
                await smtp.execute_command(b"RSET")
            if smtp.is_connected:
                await smtp.execute_command(b"QUIT")
        except aiosmtplib.SMTPException:
            pass  # the answer is known; how the MX takes leave does not change it
        finally:
            smtp.close()


def _verb(line: str) -> str:
    """The command as Postfix names it in "(in reply to ... command)"."""
    if line.upper().startswith(("MAIL FROM:", "RCPT TO:")):
        return line.split(":", 1)[0].upper()
    return line.split(" ", 1)[0].upper()


def _text(code: int, message: str) -> str:
    return f"{code} " + " ".join(line.strip() for line in message.splitlines() if line.strip())


def _wire(line: str) -> bytes:
    """A command line as sent: the address's bytes as the client gave them. The SMTP layer
    keeps bytes that are not UTF-8 as lone surrogates (surrogateescape); a callout repeats
    them as they came rather than failing on them."""
    try:
        return line.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no byte decoded to (text from the API, say)
        return line.encode("utf-8", "surrogatepass")
