"""The world served over real DNS is the world the receiver believes in.

Every bundled scenario with expect cases is played twice: in `hermetic` mode, and in
`system` mode with the receiver's resolver pointed at a DnsServer serving the same
scenario; the results must be the same. A session's cached view of DNS asks the network
once per name and type, counted at that server. And `strictmx serve --dns-listen` starts
it, for dig and staging MTAs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from strictmx.receiver import runner
from strictmx.receiver import scenario as scenarios
from strictmx.receiver.scenario import Scenario
from strictmx.receiver.server import Receiver, ServerOptions
from strictmx.receiver.world.dns import DnsFailure, WorldDNS
from strictmx.receiver.world.dns_config import DnsConfig
from strictmx.receiver.world.dnsserver import DnsServer

from .conftest import Factory
from .test_cli import Server, command, environment
from .wire import Wire

pytestmark = pytest.mark.e2e

T = TypeVar("T")

#: Seconds a system-mode lookup may take: loopback answers in a millisecond, and a
#: scripted timeout costs this much each time it is asked.
LIFETIME = 1.0


class DnsThread:
    """A DnsServer on its own event loop, so synchronous SMTP clients can run beside it."""

    def __init__(self, cfg: DnsConfig) -> None:
        self.server = DnsServer.from_config(cfg, "127.0.0.1", 0)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def __enter__(self) -> DnsThread:
        self._thread.start()
        self.call(self.server.start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.call(self.server.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def queries(self) -> dict[tuple[str, str], int]:
        async def snapshot() -> dict[tuple[str, str], int]:
            return dict(self.server.queries)

        return self.call(snapshot())


def system_dns(cfg: DnsConfig, nameserver: str) -> DnsConfig:
    return cfg.model_copy(
        update={"mode": "system", "nameservers": [nameserver], "lifetime": LIFETIME}
    )


def in_system_mode(scenario: Scenario, nameserver: str) -> Scenario:
    world = scenario.world.model_copy(update={"dns": system_dns(scenario.world.dns, nameserver)})
    return dataclasses.replace(scenario, world=world)


def results(checks: list[runner.Check]) -> list[tuple[str, bool, bool, str | None, int | None]]:
    return [
        (c.case.name, c.passed, c.observed.accepted, c.observed.at, c.observed.code) for c in checks
    ]


# Scenarios in overlay/system mode need real DNS already; the comparison is for hermetic ones.
WITH_CASES = [
    name
    for name in scenarios.bundled_names()
    if (s := scenarios.load(name)).expect and s.world.dns.mode == "hermetic"
]


@pytest.mark.parametrize("name", WITH_CASES)
def test_system_mode_at_the_served_zone_gives_the_hermetic_results(name: str) -> None:
    scenario = scenarios.load(name)
    hermetic = runner.run(scenario)
    with DnsThread(scenario.world.dns) as served:
        system = runner.run(in_system_mode(scenario, served.nameserver))
        asked = served.queries()
    assert results(system) == results(hermetic)
    if any(e.cls.name == "sender_domain" for e in scenario.entries):
        assert asked, "the system-mode receiver never asked the served zone"


# -- lookup by lookup -----------------------------------------------------------------------

ZONE: dict[str, Any] = {
    "records": {
        "example.net": {"MX": "10 mail.example.net.", "TXT": "v=spf1 mx -all"},
        "mail.example.net": {"A": "203.0.113.10", "AAAA": "2001:db8::10"},
        "alias.example.net": {"CNAME": "alias2.example.net."},
        "alias2.example.net": {"CNAME": "mail.example.net."},
        "dangling.example.net": {"CNAME": "gone.example.net."},
        "loop1.example": {"CNAME": "loop2.example."},
        "loop2.example": {"CNAME": "loop1.example."},
        "*.wild.example": {"A": "192.0.2.99"},
        "deep.empty.example": {"A": "192.0.2.7"},
        "nullmx.example": {"MX": "0 ."},
        "big.example": {"TXT": [f"{n:02d} " + "x" * 90 for n in range(12)]},
    },
    "ptr": {"203.0.113.10": "mail.example.net", "2001:db8::10": "mail.example.net"},
    "servfail": ["broken.example"],
    "timeout": ["slow.example"],
}

LOOKUPS = [
    (name, rdtype)
    for name in (
        "example.net",
        "mail.example.net",
        "alias.example.net",
        "dangling.example.net",
        "loop1.example",
        "host.wild.example",
        "empty.example",
        "nowhere.example",
        "nullmx.example",
        "big.example",
        "broken.example",
        "slow.example",
        "10.113.0.203.in-addr.arpa",
    )
    for rdtype in ("A", "AAAA", "MX", "TXT", "CNAME", "PTR")
]


async def outcome(world_dns: WorldDNS, name: str, rdtype: str) -> object:
    try:
        return sorted(r.to_text() for r in await world_dns.resolve(name, rdtype))
    except DnsFailure as exc:
        return exc.kind


@pytest.fixture
def served_zone() -> Iterator[DnsThread]:
    with DnsThread(DnsConfig.model_validate(ZONE)) as served:
        yield served


async def test_every_lookup_agrees(served_zone: DnsThread) -> None:
    cfg = DnsConfig.model_validate(ZONE)
    hermetic = WorldDNS.from_config(cfg)
    system = WorldDNS.from_config(system_dns(cfg, served_zone.nameserver))
    for name, rdtype in LOOKUPS:
        if name == "slow.example" and rdtype != "A":
            continue  # each scripted timeout costs LIFETIME; one shows it
        want = await outcome(hermetic, name, rdtype)
        got = await outcome(system, name, rdtype)
        assert got == want, (name, rdtype)
    assert await system.mx("nullmx.example") == [(0, ".")]
    assert await system.ptr("2001:db8::10") == ["mail.example.net"]


async def test_a_session_asks_the_network_once_per_name_and_type(served_zone: DnsThread) -> None:
    cfg = system_dns(DnsConfig.model_validate(ZONE), served_zone.nameserver)
    world_dns = WorldDNS.from_config(cfg)
    view = world_dns.for_session()
    for _ in range(3):
        assert await view.addresses("mail.example.net") == ["203.0.113.10", "2001:db8::10"]
        assert await view.mx("alias.example.net") == []
        assert await outcome(view, "nowhere.example", "MX") == "nxdomain"
        assert await outcome(view, "broken.example", "A") == "servfail"
        assert await outcome(view, "slow.example", "TXT") == "timeout"
    assert served_zone.queries() == {
        ("mail.example.net", "A"): 1,
        ("mail.example.net", "AAAA"): 1,
        ("alias.example.net", "MX"): 1,
        ("nowhere.example", "MX"): 1,
        ("broken.example", "A"): 1,
        ("slow.example", "TXT"): 1,
    }
    # Another session asks again; the world itself caches nothing.
    await view.for_session().mx("alias.example.net")
    await world_dns.mx("alias.example.net")
    assert served_zone.queries()[("alias.example.net", "MX")] == 3


def test_an_smtp_session_asks_once_for_the_sender_domain(
    serve: Factory, served_zone: DnsThread
) -> None:
    cfg = system_dns(DnsConfig.model_validate(ZONE), served_zone.nameserver)
    running = serve(
        {
            "receiver": {"delay_reject": False},
            "policies": {"mail": [{"policy": "sender_domain"}]},
            "world": {"dns": cfg.model_dump(exclude={"records", "ptr"})},
        }
    )
    with Wire(running.host, running.port) as wire:
        assert wire.command("EHLO mail.example.net")[-1] == "250 HELP"
        for _ in range(3):
            assert wire.command("MAIL FROM:<alice@example.net>") == ["250 2.1.0 Ok"]
            assert wire.command("RSET")[0].startswith("250")
        assert wire.command("MAIL FROM:<alice@nowhere.example>") == [
            "450 4.1.8 <alice@nowhere.example>: Sender address rejected: Domain not found"
        ]
        assert wire.command("MAIL FROM:<alice@nowhere.example>")[0].startswith("450")
    assert served_zone.queries() == {("example.net", "MX"): 1, ("nowhere.example", "MX"): 1}
    with Wire(running.host, running.port) as wire:
        wire.command("EHLO mail.example.net")
        assert wire.command("MAIL FROM:<alice@example.net>") == ["250 2.1.0 Ok"]
    assert served_zone.queries()[("example.net", "MX")] == 2


# -- strictmx serve --------------------------------------------------------------------------

DIG = shutil.which("dig")


def test_serve_with_dns_listen_answers_dig(tmp_path: Path) -> None:
    assert DIG is not None, "dig is needed (Debian: bind9-dnsutils; scripts/test installs it)"
    server = Server(tmp_path, "--scenario", "sender_domain-postfix", "--dns-listen", "127.0.0.1:0")
    try:
        shown = [line for line in server.started if line.startswith("strictmx: DNS on ")]
        assert len(shown) == 1, server.started
        port = shown[0].rsplit(":", 1)[1]
        dig = subprocess.run(
            [
                DIG,
                "@127.0.0.1",
                "-p",
                port,
                "+short",
                "+tries=1",
                "+time=2",
                "no-mail.example",
                "MX",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        assert dig.stdout.strip() == "0 ."
        assert server.terminate() == 0
    finally:
        server.kill()


async def test_the_scenario_key_starts_and_stops_the_dns_server() -> None:
    scenario = scenarios.from_dict(
        {"world": {"dns": {"serve": "127.0.0.1:0", "records": ZONE["records"]}}}
    )
    receiver = Receiver(scenario, ServerOptions(port=0, db=":memory:"))
    await receiver.start()
    try:
        assert receiver.dns_server is not None
        host, port = receiver.dns_server.address
        assert host == "127.0.0.1" and port > 0
        system = WorldDNS.from_config(system_dns(DnsConfig(), f"127.0.0.1:{port}"))
        assert await system.mx("example.net") == [(10, "mail.example.net")]
    finally:
        await receiver.stop()
    assert receiver.dns_server is None
    # The port is free again.
    again = DnsServer(WorldDNS(), "127.0.0.1", port)
    await again.start()
    await again.stop()


async def test_dns_listen_option_overrides_the_key() -> None:
    scenario = scenarios.from_dict({"world": {"dns": {"serve": "127.0.0.1:1"}}})
    options = ServerOptions(port=0, db=":memory:", dns_listen=("127.0.0.1", 0))
    receiver = Receiver(scenario, options)
    await receiver.start()
    try:
        assert receiver.dns_server is not None
        assert receiver.dns_server.port not in (0, 1)
    finally:
        await receiver.stop()


async def test_no_dns_server_unless_asked() -> None:
    receiver = Receiver(scenarios.from_dict({}), ServerOptions(port=0, db=":memory:"))
    await receiver.start()
    try:
        assert receiver.dns_server is None
    finally:
        await receiver.stop()


def test_a_dns_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with DnsThread(DnsConfig()) as taken:
        busy = taken.nameserver
        done = subprocess.run(
            command(
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--db",
                ":memory:",
                "--dns-listen",
                busy,
            ),
            cwd=tmp_path,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 2
    assert done.stderr.strip() == (f"strictmx: cannot listen on {busy}: address already in use")
