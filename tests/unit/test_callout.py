"""The callout client and the mailbox responder, over real sockets on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest

from strictmx.receiver import scenario as scenarios
from strictmx.receiver.world import World, WorldConfig
from strictmx.receiver.world.callout import Callout, Probe, Result, Status, Style, _public
from strictmx.receiver.world.dns import WorldDNS
from strictmx.receiver.world.dns_config import DnsConfig
from strictmx.receiver.world.mailboxes import MailboxDomain, Mailboxes
from strictmx.receiver.world.mailserver import MailboxResponder

HOST = "mx.strictmx.test"
# Most tests here call real MX hosts on loopback, which a probe reaches only when allowed.
FAST = {"connect_timeout": 2.0, "command_timeout": 2.0, "allow_private": True}
TTLS = {"positive_ttl": 100.0, "negative_ttl": 10.0}

MAILBOXES: dict[str, Any] = {
    "example.net": {"exists": ["postmaster", "alice"], "tempfail": ["carol"]},
    "catchall.example": {"accept_all": True},
    "busy.example": {"tempfail_all": True},
    "firewalled.example": {"exists": ["postmaster", "alice"], "null_sender": "reject"},
    "no-postmaster.example": {"exists": ["alice"]},
    "a-only.example": {"exists": ["alice"]},
    "aaaa-only.example": {"exists": ["alice"]},
    "two-mx.example": {"exists": ["alice"]},
}


def mailboxes() -> Mailboxes:
    cfg: dict[str, MailboxDomain] = {
        name: MailboxDomain.model_validate(v) for name, v in MAILBOXES.items()
    }
    return Mailboxes.from_config(cfg)


def world(records: dict[str, Any], **dns: Any) -> World:
    return World.from_config(
        WorldConfig.model_validate(
            {"dns": {"records": records, **dns}, "mailboxes": MAILBOXES},
        )
    )


def mx_at(address: str, *domains: str) -> dict[str, Any]:
    """Records: each domain's single MX, whose address is `address`."""
    records: dict[str, Any] = {}
    for domain in domains:
        records[domain] = {"MX": f"10 mx.{domain}."}
        records[f"mx.{domain}"] = {"AAAA" if ":" in address else "A": address}
    return records


SIMULATED = mx_at("192.0.2.25", "example.net", "firewalled.example", "catchall.example")

LOOPBACK_WORLD = mx_at(
    "127.0.0.1",
    "example.net",
    "catchall.example",
    "busy.example",
    "firewalled.example",
    "no-postmaster.example",
    "unlisted.example",
)


def probe(port: int, style: Style = "postfix", **kw: Any) -> Probe:
    sender = "double-bounce@" + HOST if style == "postfix" else ""
    return Probe(style=style, helo=HOST, sender=sender, port=port, **{**FAST, **kw})


@pytest.fixture
async def responder() -> AsyncIterator[MailboxResponder]:
    server = MailboxResponder(mailboxes())
    await server.start()
    yield server
    await server.stop()


class FakeTimer:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def timer() -> FakeTimer:
    return FakeTimer()


async def verify(callout: Callout, address: str, w: World, p: Probe, **ttls: float) -> Result:
    return await callout.verify(address, w.dns, p, **{**TTLS, **ttls})


# -- the conversation on the wire ------------------------------------------------------


async def test_postfix_probe_on_the_wire(responder: MailboxResponder) -> None:
    result = await verify(
        Callout(), "alice@example.net", world(LOOPBACK_WORLD), probe(responder.address[1])
    )
    assert result.status is Status.VERIFIED
    assert (result.host, result.ip) == ("mx.example.net", "127.0.0.1")
    assert [p.commands for p in responder.probes] == [
        [
            f"EHLO {HOST}",
            f"MAIL FROM:<double-bounce@{HOST}>",
            "RCPT TO:<alice@example.net>",
            "RSET",
            "QUIT",
        ]
    ]


async def test_exim_probe_on_the_wire(responder: MailboxResponder) -> None:
    p = probe(responder.address[1], "exim")
    result = await verify(Callout(), "alice@example.net", world(LOOPBACK_WORLD), p)
    assert result.status is Status.VERIFIED
    assert responder.probes[0].commands == [
        f"HELO {HOST}",
        "MAIL FROM:<>",
        "RCPT TO:<alice@example.net>",
        "QUIT",
    ]


@pytest.mark.parametrize("style", ["postfix", "exim"])
async def test_unknown_mailbox_fails_with_the_mx_answer(
    responder: MailboxResponder, style: Style
) -> None:
    p = probe(responder.address[1], style)
    result = await verify(Callout(), "nobody@example.net", world(LOOPBACK_WORLD), p)
    assert result.status is Status.FAILED
    answer = (
        "550 5.1.1 <nobody@example.net>: Recipient address rejected: "
        "User unknown in virtual mailbox table"
    )
    assert result.response == answer
    assert result.sent == "RCPT TO:<nobody@example.net>"
    assert result.detail == (
        f"host mx.example.net[127.0.0.1] said: {answer} (in reply to RCPT TO command)"
    )


async def test_local_parts_are_compared_case_insensitively(responder: MailboxResponder) -> None:
    result = await verify(
        Callout(), "Alice@Example.NET", world(LOOPBACK_WORLD), probe(responder.address[1])
    )
    assert result.status is Status.VERIFIED
    assert responder.probes[0].commands[2] == "RCPT TO:<Alice@example.net>"


async def test_domain_the_mx_does_not_serve(responder: MailboxResponder) -> None:
    result = await verify(
        Callout(), "alice@unlisted.example", world(LOOPBACK_WORLD), probe(responder.address[1])
    )
    assert result.status is Status.FAILED
    assert result.response.startswith("550 5.1.1 <alice@unlisted.example>")


@pytest.mark.parametrize("address", ["carol@example.net", "anyone@busy.example"])
async def test_temporary_failure_defers(responder: MailboxResponder, address: str) -> None:
    result = await verify(Callout(), address, world(LOOPBACK_WORLD), probe(responder.address[1]))
    assert result.status is Status.TEMPFAIL
    assert result.response == f"451 4.3.0 <{address}>: Temporary lookup failure"


async def test_random_probe_detects_accept_all(responder: MailboxResponder) -> None:
    w = world(LOOPBACK_WORLD)
    p = probe(responder.address[1], "exim", random=True)
    result = await verify(Callout(), "whoever@catchall.example", w, p)
    assert result.status is Status.ACCEPT_ALL
    commands = responder.probes[0].commands
    assert commands[2].startswith(f"RCPT TO:<{HOST}-") and commands[2].endswith(
        "-testing@catchall.example>"
    )
    assert commands[3] == "QUIT"  # the sender itself is not asked


async def test_random_probe_control(responder: MailboxResponder) -> None:
    w = world(LOOPBACK_WORLD)
    result = await verify(
        Callout(), "alice@example.net", w, probe(responder.address[1], random=True)
    )
    assert result.status is Status.VERIFIED
    assert responder.probes[0].commands[3] == "RCPT TO:<alice@example.net>"
    # Without the random probe a catch-all domain simply verifies.
    result = await verify(Callout(), "whoever@catchall.example", w, probe(responder.address[1]))
    assert result.status is Status.VERIFIED


async def test_postmaster_check(responder: MailboxResponder) -> None:
    w = world(LOOPBACK_WORLD)
    p = probe(responder.address[1], "exim", postmaster=True)
    missing = await verify(Callout(), "alice@no-postmaster.example", w, p)
    assert missing.status is Status.POSTMASTER_FAILED
    assert missing.sent == "RCPT TO:<postmaster@no-postmaster.example>"
    present = await verify(Callout(), "alice@example.net", w, p)
    assert present.status is Status.VERIFIED


async def test_mx_refusing_the_null_sender_fails_exim_probes(
    responder: MailboxResponder,
) -> None:
    # seed-66: firewalls and filters that refuse MAIL FROM:<> break Exim's callouts ...
    w = world(SIMULATED)
    exim = probe(25, "exim")
    result = await verify(Callout(responder), "alice@firewalled.example", w, exim)
    assert result.status is Status.REFUSED
    assert result.sent == "MAIL FROM:<>"
    assert result.response == "550 5.7.1 <>: Sender address rejected: Access denied"
    assert responder.probes[0].commands == [f"HELO {HOST}", "MAIL FROM:<>", "QUIT"]


async def test_mx_refusing_the_null_sender_accepts_postfix_probes(
    responder: MailboxResponder,
) -> None:
    # ... but not Postfix's, whose MAIL FROM is double-bounce@<receiver>.
    w = world(SIMULATED)
    result = await verify(Callout(responder), "alice@firewalled.example", w, probe(25))
    assert result.status is Status.VERIFIED


async def test_null_sender_refused_at_rcpt_when_not_announced(
    responder: MailboxResponder,
) -> None:
    # Called as an ordinary MX, the responder learns the domain only from RCPT, and
    # refuses the null sender there (a Postfix MX with smtpd_delay_reject).
    w = world(LOOPBACK_WORLD)
    p = probe(responder.address[1], "exim")
    result = await verify(Callout(), "alice@firewalled.example", w, p)
    assert result.status is Status.FAILED
    assert result.sent == "RCPT TO:<alice@firewalled.example>"
    assert result.response == "550 5.7.1 <>: Sender address rejected: Access denied"
    control = await verify(Callout(), "alice@firewalled.example", w, probe(responder.address[1]))
    assert control.status is Status.VERIFIED


# -- hosts that do not answer ------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listening socket that accepts connections (in its backlog) and never speaks."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_mx_that_never_answers_times_out(silent_port: int) -> None:
    w = world(mx_at("127.0.0.1", "example.net"))
    result = await verify(
        Callout(), "alice@example.net", w, probe(silent_port, command_timeout=0.2)
    )
    assert result.status is Status.TEMPFAIL
    assert result.detail == "no answer from host mx.example.net[127.0.0.1]"
    assert result.full == (
        "conversation with mx.example.net[127.0.0.1] timed out while receiving the "
        "initial server greeting"
    )


async def test_refused_connection_defers(closed_port: int) -> None:
    w = world(mx_at("127.0.0.1", "example.net"))
    result = await verify(Callout(), "alice@example.net", w, probe(closed_port))
    assert result.status is Status.TEMPFAIL
    # Replies quote `detail`: the same words for a refused, a silent and a lost host, so a
    # callout cannot tell a client which ports are open; `full` (the journal) says why.
    assert result.detail == "no answer from host mx.example.net[127.0.0.1]"
    assert result.full == f"connect to mx.example.net[127.0.0.1]:{closed_port}: Connection refused"


class Scripted:
    """An SMTP server that sends a greeting and then one scripted reply per command
    (None: say nothing more)."""

    def __init__(self, greeting: str, replies: list[str | None]) -> None:
        self.greeting = greeting
        self.replies = replies
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(self.greeting.encode() + b"\r\n")
        for reply in self.replies:
            if not await reader.readline():
                break
            if reply is None:
                await reader.read()  # hold the line open and silent
                break
            writer.write(reply.encode() + b"\r\n")
        writer.close()


async def test_greeting_refusal_is_final() -> None:
    async with Scripted("554 5.7.1 No SMTP service here", []) as port:
        w = world(mx_at("127.0.0.1", "example.net"))
        result = await verify(Callout(), "alice@example.net", w, probe(port))
    assert result.status is Status.REFUSED
    assert result.detail == (
        "host mx.example.net[127.0.0.1] refused to talk to me: 554 5.7.1 No SMTP service here"
    )


async def test_temporary_greeting_defers() -> None:
    async with Scripted("421 4.3.2 Service not available", []) as port:
        w = world(mx_at("127.0.0.1", "example.net"))
        result = await verify(Callout(), "alice@example.net", w, probe(port))
    assert result.status is Status.TEMPFAIL
    assert "refused to talk to me: 421 4.3.2" in result.detail


async def test_silence_after_the_greeting_times_out() -> None:
    async with Scripted("220 mx ESMTP", [None]) as port:
        w = world(mx_at("127.0.0.1", "example.net"))
        result = await verify(Callout(), "alice@example.net", w, probe(port, command_timeout=0.2))
    assert result.status is Status.TEMPFAIL
    assert result.detail == "no answer from host mx.example.net[127.0.0.1]"
    assert result.full == "conversation with mx.example.net[127.0.0.1] timed out while sending EHLO"


async def test_lost_connection_defers() -> None:
    async with Scripted("220 mx ESMTP", ["250 mx"]) as port:  # hangs up after EHLO
        w = world(mx_at("127.0.0.1", "example.net"))
        result = await verify(Callout(), "alice@example.net", w, probe(port))
    assert result.status is Status.TEMPFAIL
    assert result.detail == "no answer from host mx.example.net[127.0.0.1]"
    assert result.full == "lost connection with mx.example.net[127.0.0.1] while sending MAIL FROM"


async def test_helo_refusal_is_final() -> None:
    async with Scripted("220 mx ESMTP", ["550 5.7.1 go away", "221 bye"]) as port:
        w = world(mx_at("127.0.0.1", "example.net"))
        result = await verify(Callout(), "alice@example.net", w, probe(port, "exim"))
    assert result.status is Status.REFUSED
    assert result.detail.endswith("550 5.7.1 go away (in reply to HELO command)")


# -- which hosts, in which order -------------------------------------------------------


async def test_mx_preference_order_with_the_first_mx_down(responder: MailboxResponder) -> None:
    records = {
        # Listed out of order: preference decides. 127.0.0.2 has nothing on the port.
        "two-mx.example": {"MX": ["20 backup.two-mx.example.", "10 primary.two-mx.example."]},
        "primary.two-mx.example": {"A": "127.0.0.2"},
        "backup.two-mx.example": {"A": "127.0.0.1"},
    }
    callout = Callout()
    result = await verify(
        callout, "alice@two-mx.example", world(records), probe(responder.address[1])
    )
    assert result.status is Status.VERIFIED
    assert (result.host, result.ip) == ("backup.two-mx.example", "127.0.0.1")
    assert callout.connections == 2
    assert responder.connections == 1


async def test_all_mx_down_defers_with_the_last_error(closed_port: int) -> None:
    records = {
        "example.net": {"MX": ["10 a.example.net.", "20 b.example.net."]},
        "a.example.net": {"A": "127.0.0.1"},
        "b.example.net": {"A": "127.0.0.1"},
    }
    callout = Callout()
    result = await verify(callout, "alice@example.net", world(records), probe(closed_port))
    assert result.status is Status.TEMPFAIL
    assert result.host == "b.example.net"
    assert callout.connections == 2


async def test_max_addresses(closed_port: int) -> None:
    records = {
        "example.net": {"MX": "10 mx.example.net."},
        "mx.example.net": {"A": ["127.0.0.1", "127.0.0.3", "127.0.0.4"]},
    }
    callout = Callout()
    await verify(callout, "alice@example.net", world(records), probe(closed_port, max_addresses=2))
    assert callout.connections == 2


async def test_a_record_fallback_without_mx(responder: MailboxResponder) -> None:
    w = world({"a-only.example": {"A": "127.0.0.1"}})
    result = await verify(Callout(), "alice@a-only.example", w, probe(responder.address[1]))
    assert result.status is Status.VERIFIED
    assert (result.host, result.ip) == ("a-only.example", "127.0.0.1")


async def test_aaaa_record_fallback_without_mx() -> None:
    server = MailboxResponder(mailboxes(), host="::1")
    await server.start()
    try:
        w = world({"aaaa-only.example": {"AAAA": "::1"}})
        result = await verify(Callout(), "alice@aaaa-only.example", w, probe(server.address[1]))
    finally:
        await server.stop()
    assert result.status is Status.VERIFIED
    assert result.ip == "::1"
    assert server.probes[0].peer[0] == "::1"


async def test_address_literal_is_called_directly(responder: MailboxResponder) -> None:
    result = await verify(Callout(), "alice@[127.0.0.1]", world({}), probe(responder.address[1]))
    assert result.status is Status.FAILED  # the responder serves no such domain
    assert (result.host, result.ip) == ("[127.0.0.1]", "127.0.0.1")


@pytest.mark.parametrize(
    ("records", "detail"),
    [
        (
            {},
            "Host or domain name not found. Name service error for name=example.net "
            "type=MX: Host not found",
        ),
        (
            {"example.net": {"TXT": "v=spf1 -all"}},
            "Host or domain name not found. Name service error for name=example.net "
            "type=MX: Host not found",
        ),
        ({"example.net": {"MX": "0 ."}}, "Domain example.net does not accept mail (nullMX)"),
        (
            {"example.net": {"MX": "10 gone.example.net."}},
            "Host or domain name not found. Name service error for name=gone.example.net "
            "type=A: Host not found",
        ),
    ],
)
async def test_no_host_to_call(records: dict[str, Any], detail: str) -> None:
    callout = Callout()
    result = await verify(callout, "alice@example.net", world(records), probe(25))
    assert (result.status, result.detail) == (Status.UNROUTABLE, detail)
    assert callout.connections == 0


@pytest.mark.parametrize("script", ["servfail", "timeout"])
async def test_dns_failure_defers(script: str) -> None:
    result = await verify(
        Callout(), "alice@example.net", world({}, **{script: ["example.net"]}), probe(25)
    )
    assert result.status is Status.TEMPFAIL
    assert result.detail.endswith("name=example.net type=MX: Host not found, try again")


async def test_mx_host_dns_failure_defers() -> None:
    w = world({"example.net": {"MX": "10 mx.example.net."}}, servfail=["mx.example.net"])
    result = await verify(Callout(), "alice@example.net", w, probe(25))
    assert result.status is Status.TEMPFAIL
    assert "name=mx.example.net type=A" in result.detail


# -- the cache -------------------------------------------------------------------------


async def test_second_session_does_not_connect(
    responder: MailboxResponder, timer: FakeTimer
) -> None:
    w = world(LOOPBACK_WORLD)
    callout = Callout(timer=timer)
    p = probe(responder.address[1])
    for address in ("alice@example.net", "nobody@example.net"):
        first = await verify(callout, address, w, p)
        again = await callout.verify(address, w.dns.for_session(), p, **TTLS)
        assert not first.cached and again.cached
        assert again.status is first.status
    assert responder.connections == 2


async def test_negative_ttl_expiry(responder: MailboxResponder, timer: FakeTimer) -> None:
    w = world(LOOPBACK_WORLD)
    callout = Callout(timer=timer)
    p = probe(responder.address[1])
    await verify(callout, "nobody@example.net", w, p, negative_ttl=5)
    await verify(callout, "alice@example.net", w, p, negative_ttl=5)
    timer.now += 4.9
    assert (await verify(callout, "nobody@example.net", w, p, negative_ttl=5)).cached
    timer.now += 0.2
    # The refusal expired; the positive answer lives on under its own TTL.
    assert not (await verify(callout, "nobody@example.net", w, p, negative_ttl=5)).cached
    assert (await verify(callout, "alice@example.net", w, p, negative_ttl=5)).cached
    assert responder.connections == 3


async def test_positive_ttl_expiry(responder: MailboxResponder, timer: FakeTimer) -> None:
    w = world(LOOPBACK_WORLD)
    callout = Callout(timer=timer)
    p = probe(responder.address[1])
    await verify(callout, "alice@example.net", w, p, positive_ttl=50)
    timer.now += 50
    assert not (await verify(callout, "alice@example.net", w, p, positive_ttl=50)).cached


async def test_zero_ttl_and_temporary_failures_are_not_cached(
    responder: MailboxResponder, timer: FakeTimer
) -> None:
    w = world(LOOPBACK_WORLD)
    callout = Callout(timer=timer)
    p = probe(responder.address[1])
    for _ in range(2):
        await verify(callout, "nobody@example.net", w, p, negative_ttl=0)
        await verify(callout, "carol@example.net", w, p)
    assert responder.connections == 4


async def test_domain_wide_results(responder: MailboxResponder, timer: FakeTimer) -> None:
    w = world(SIMULATED)
    callout = Callout(responder, timer=timer)
    exim = probe(25, "exim", random=True)
    assert (await verify(callout, "alice@firewalled.example", w, exim)).status is Status.REFUSED
    other = await verify(callout, "postmaster@firewalled.example", w, exim)
    assert other.status is Status.REFUSED and other.cached
    await verify(callout, "a@catchall.example", w, exim)
    assert (await verify(callout, "b@catchall.example", w, exim)).status is Status.ACCEPT_ALL
    assert responder.connections == 2
    # Another probe shape is another cache entry: Postfix's probe is not refused.
    postfix = await verify(callout, "alice@firewalled.example", w, probe(25))
    assert postfix.status is Status.VERIFIED and not postfix.cached


async def test_concurrent_sessions_share_one_probe(responder: MailboxResponder) -> None:
    w = world(LOOPBACK_WORLD)
    callout = Callout()
    p = probe(responder.address[1])
    results = await asyncio.gather(*(verify(callout, "alice@example.net", w, p) for _ in range(5)))
    assert {r.status for r in results} == {Status.VERIFIED}
    assert responder.connections == 1


async def test_a_session_going_away_does_not_end_a_shared_probe(
    responder: MailboxResponder,
) -> None:
    w = world(LOOPBACK_WORLD)
    callout = Callout()
    p = probe(responder.address[1])
    leaving = asyncio.create_task(verify(callout, "alice@example.net", w, p))
    await asyncio.sleep(0)  # let it start the probe
    staying = asyncio.create_task(verify(callout, "alice@example.net", w, p))
    await asyncio.sleep(0)
    leaving.cancel()
    assert (await staying).status is Status.VERIFIED
    assert leaving.cancelled()
    assert responder.connections == 1
    assert (await verify(callout, "alice@example.net", w, p)).cached


# -- hermetic worlds: the responder stands in for every MX -----------------------------


async def test_hermetic_connections_go_to_the_responder(responder: MailboxResponder) -> None:
    callout = Callout(responder)
    w = world(SIMULATED)
    result = await verify(callout, "alice@example.net", w, probe(25, connect_timeout=0.5))
    assert result.status is Status.VERIFIED
    assert (result.host, result.ip) == ("mx.example.net", "192.0.2.25")
    seen = responder.probes[0]
    assert (seen.domain, seen.mx) == ("example.net", "mx.example.net")
    unknown = await verify(callout, "nobody@example.net", w, probe(25, connect_timeout=0.5))
    assert unknown.detail.startswith("host mx.example.net[192.0.2.25] said: 550 5.1.1")


async def test_hermetic_null_sender_refusal_is_per_domain(responder: MailboxResponder) -> None:
    callout = Callout(responder)
    w = world(SIMULATED)
    exim = probe(25, "exim")
    assert (await verify(callout, "alice@firewalled.example", w, exim)).status is Status.REFUSED
    assert (await verify(callout, "alice@example.net", w, exim)).status is Status.VERIFIED


async def test_hermetic_without_a_running_responder_never_connects() -> None:
    callout = Callout(MailboxResponder(mailboxes()))
    result = await verify(callout, "alice@example.net", world(SIMULATED), probe(25))
    assert result.status is Status.TEMPFAIL
    assert "not running" in result.detail
    assert callout.connections == 0


async def test_unannounced_connection_is_judged_by_rcpt(responder: MailboxResponder) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", responder.address[1])
    replies = []
    await reader.readline()
    for line in (
        "HELO me.example",
        "MAIL FROM:<>",
        "RCPT TO:<alice@firewalled.example>",
        "RCPT TO:<alice@example.net>",
        "QUIT",
    ):
        writer.write(line.encode() + b"\r\n")
        replies.append((await reader.readline()).decode().split(" ", 1)[0])
    writer.close()
    assert replies == ["250", "250", "550", "250", "221"]
    assert responder.probes[0].domain is None


async def test_responder_stop_closes_open_connections(responder: MailboxResponder) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", responder.address[1])
    await reader.readline()
    await responder.stop()
    assert await reader.read() == b""
    assert not responder.running
    writer.close()


async def test_outside_hermetic_worlds_only_listed_domains_are_simulated(
    responder: MailboxResponder,
) -> None:
    # A real MX on loopback for a domain the world does not list.
    table = {"real.example": MailboxDomain.model_validate({"exists": ["alice"]})}
    real = MailboxResponder(Mailboxes.from_config(table))
    await real.start()
    try:
        records = {**SIMULATED, "real.example": {"A": "127.0.0.1"}}
        callout = Callout(responder, hermetic=False)
        p = probe(real.address[1])
        simulated = await verify(callout, "alice@example.net", world(records), p)
        direct = await verify(callout, "alice@real.example", world(records), p)
    finally:
        await real.stop()
    assert simulated.status is direct.status is Status.VERIFIED
    assert (simulated.ip, direct.ip) == ("192.0.2.25", "127.0.0.1")
    assert [x.domain for x in responder.probes] == ["example.net"]
    assert [x.commands[2] for x in real.probes] == ["RCPT TO:<alice@real.example>"]


# -- what a probe may reach (issue #19 item 7) -------------------------------------------


def no_private(p: Probe) -> Probe:
    return replace(p, allow_private=False)


async def test_domain_literal_is_not_called(responder: MailboxResponder) -> None:
    # `MAIL FROM:<x@[127.0.0.1]>` must not make strictmx connect where the client says.
    callout = Callout()
    p = no_private(probe(responder.address[1]))
    result = await verify(callout, "alice@[127.0.0.1]", world({}), p)
    assert result.status is Status.UNROUTABLE
    assert result.detail.startswith("domain literal [127.0.0.1] is not called")
    assert callout.connections == responder.connections == 0
    # Control: allowed, the literal is called (test_address_literal_is_called_directly).
    allowed = await verify(callout, "alice@[127.0.0.1]", world({}), probe(responder.address[1]))
    assert allowed.status is Status.FAILED and responder.connections == 1


@pytest.mark.parametrize("address", ["127.0.0.3", "10.1.2.3", "169.254.1.1", "::1", "0.0.0.0"])
async def test_mx_at_a_private_address_is_not_called(address: str) -> None:
    callout = Callout()
    result = await verify(
        callout, "alice@example.net", world(mx_at(address, "example.net")), no_private(probe(25))
    )
    assert result.status is Status.UNROUTABLE
    assert (result.host, result.ip) == ("mx.example.net", address)
    assert "not a public address" in result.detail
    assert callout.connections == 0


async def test_mx_at_loopback_is_called_when_allowed(responder: MailboxResponder) -> None:
    callout = Callout()
    w = world(mx_at("127.0.0.1", "example.net"))
    result = await verify(callout, "alice@example.net", w, probe(responder.address[1]))
    assert result.status is Status.VERIFIED
    assert callout.connections == 1


async def test_simulated_mx_hosts_are_reachable_at_any_address(
    responder: MailboxResponder,
) -> None:
    # The world's own MX hosts are served by the responder on loopback, whatever address
    # DNS gives them: the rule is about connections to where DNS points, not to them.
    callout = Callout(responder)
    w = world(mx_at("127.0.0.3", "example.net"))
    result = await verify(callout, "alice@example.net", w, no_private(probe(25)))
    assert result.status is Status.VERIFIED
    assert (result.ip, responder.connections) == ("127.0.0.3", 1)
    listed = Callout(responder, hermetic=False)  # overlay/system with world.mailboxes
    assert (await verify(listed, "bob@example.net", w, no_private(probe(25)))).status is (
        Status.FAILED
    )
    assert responder.connections == 2


@pytest.mark.parametrize(
    ("ip", "public"),
    [
        ("8.8.8.8", True),
        ("2a00:1450:4001:80b::200e", True),
        ("127.0.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # shared address space (RFC 6598)
        ("224.0.0.1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("2002:7f00:1::", False),  # 6to4 around 127.0.0.1
        ("64:ff9b::a01:203", False),  # NAT64 around 10.1.2.3
        ("64:ff9b::808:808", True),  # NAT64 around 8.8.8.8
    ],
)
def test_public_addresses(ip: str, public: bool) -> None:
    assert _public(ip) is public


@pytest.mark.parametrize("address", ['"a\rb"@example.net', "a\x00b@example.net", "a@exa\nmple.net"])
async def test_control_characters_are_never_sent(responder: MailboxResponder, address: str) -> None:
    # aiosmtplib refuses such a command with a ValueError, which once reached the wire.
    callout = Callout()
    result = await verify(callout, address, world(LOOPBACK_WORLD), probe(responder.address[1]))
    assert result.status is Status.UNROUTABLE
    assert result.detail == "bad address syntax: control character in address"
    assert callout.connections == 0


class BrokenDNS(WorldDNS):
    """A resolver with a bug: what a callout does when its own code fails."""

    async def mx(self, name: str) -> list[tuple[int, str]]:
        raise RuntimeError("secret internal detail")


async def test_an_internal_error_defers_without_its_text() -> None:
    broken = BrokenDNS.from_config(DnsConfig())
    result = await Callout().verify("alice@example.net", broken, probe(25), **TTLS)
    assert result.status is Status.TEMPFAIL
    assert result.detail == "local error in processing the callout"
    assert "secret" not in result.full and "RuntimeError" in result.full


def test_allow_private_targets_is_validated_at_load() -> None:
    text = "policies:\n  mail:\n    - policy: sender_verify\n      allow_private_targets: maybe\n"
    with pytest.raises(scenarios.ScenarioError) as error:
        scenarios.loads(text, source="x.yaml")
    assert "x.yaml:4 policies.mail[0].allow_private_targets" in str(error.value)
    loaded = scenarios.loads(text.replace("maybe", "true"), source="x.yaml")
    assert loaded.entries[0].options.allow_private_targets is True  # type: ignore[attr-defined]


async def test_a_bad_address_does_not_poison_its_domain(responder: MailboxResponder) -> None:
    # Cached domain-wide, one hostile sender would make every sender of the domain
    # unverifiable for the negative TTL.
    callout = Callout()
    w, p = world(LOOPBACK_WORLD), probe(responder.address[1])
    assert (await verify(callout, '"a\rb"@example.net', w, p)).status is Status.UNROUTABLE
    assert (await verify(callout, "alice@example.net", w, p)).status is Status.VERIFIED


async def test_a_domain_idna_refuses_is_unroutable_without_codec_text() -> None:
    callout = Callout()
    result = await verify(callout, "alice@" + "\u00e9" * 70 + ".example", world({}), probe(25))
    assert result.status is Status.UNROUTABLE
    assert result.detail.startswith("bad address syntax: domain ")
    assert "too long" not in result.detail and result.full.endswith("Label too long")
    assert callout.connections == 0


async def test_a_u_label_domain_is_called_at_its_idna_2008_a_label(
    responder: MailboxResponder,
) -> None:
    # IDNA 2003 would have asked strasse.example's MX; IDNA 2008 asks xn--strae-oqa.
    p = probe(responder.address[1])
    callout = Callout()
    found = await verify(
        callout, "alice@straße.example", world(mx_at("127.0.0.1", "xn--strae-oqa.example")), p
    )
    assert found.host == "mx.xn--strae-oqa.example"
    assert callout.connections == 1
    missed = Callout()
    await verify(missed, "alice@straße.example", world(mx_at("127.0.0.1", "strasse.example")), p)
    assert missed.connections == 0
