"""RDAP through the IANA bootstrap (RFC 9224), against a real aiohttp server on loopback.

The server plays both parts: it serves a bootstrap file at /dns.json, and RDAP domain
objects (RFC 9083) under the base URLs that file names, /a/ and /b/.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import pytest
from aiohttp import web

from strictmx.policies.domain_age import DomainAge, DomainAgeOptions
from strictmx.receiver.policy import ClientHistory, Context
from strictmx.receiver.session import Client, Session
from strictmx.receiver.verdict import Action, Stage
from strictmx.receiver.world import World, WorldConfig
from strictmx.receiver.world.registrations import (
    Registrations,
    RegistrationTempFail,
    bootstrap_services,
    server_for,
)

REGISTERED = {
    "old.test": "2001-02-03T04:05:06Z",
    "fresh.test": "2025-06-10T08:15:00Z",
    "shop.co.uk": "2010-10-10T10:10:10Z",
    "moved.redir": "2012-12-12T12:12:12Z",
}


def domain_object(name: str, registered: str) -> dict[str, Any]:
    return {
        "objectClassName": "domain",
        "ldhName": name,
        "rdapConformance": ["rdap_level_0"],
        "events": [{"eventAction": "registration", "eventDate": registered}],
    }


class Registry:
    """A bootstrap file and two RDAP servers behind one aiohttp server on 127.0.0.1."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.bootstrap: bytes | int = b""  # a status code answers with that status
        self.runner: web.AppRunner | None = None
        self.base = ""

    def services(self, *services: tuple[list[str], list[str]]) -> None:
        body = {"version": "1.0", "publication": "2025-06-01T00:00:00Z", "services": services}
        self.bootstrap = json.dumps(body).encode()

    async def _bootstrap(self, request: web.Request) -> web.Response:
        self.requests["/dns.json"] += 1
        if isinstance(self.bootstrap, int):
            return web.Response(status=self.bootstrap)
        return web.Response(body=self.bootstrap, content_type="application/json")

    async def _domain(self, request: web.Request) -> web.Response:
        self.requests[request.path] += 1
        name = request.match_info["name"]
        if name not in REGISTERED:
            return web.Response(status=404)
        body = json.dumps(domain_object(name, REGISTERED[name]))
        return web.Response(text=body, content_type="application/rdap+json")

    async def _moved(self, request: web.Request) -> web.Response:
        self.requests[request.path] += 1
        raise web.HTTPFound(f"/a/domain/{request.match_info['name']}")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/dns.json", self._bootstrap)
        app.router.add_get("/{server:[ab]}/domain/{name}", self._domain)
        app.router.add_get("/r/domain/{name}", self._moved)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"
        self.services(
            (["test"], [f"{self.base}/a/"]),
            (["co.uk"], [f"{self.base}/b"]),
            (["redir"], [f"{self.base}/r/"]),
        )

    def registrations(self, **options: Any) -> Registrations:
        options.setdefault("timeout", 2.0)
        return Registrations(mode="system", rdap_bootstrap=f"{self.base}/dns.json", **options)


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    served = Registry()
    await served.start()
    yield served
    assert served.runner is not None
    await served.runner.cleanup()


def free_port() -> int:
    with socket.socket() as sock:  # a port nothing listens on once it is closed
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- the bootstrap file ------------------------------------------------------------------


def test_services_prefer_https_and_end_with_a_slash() -> None:
    services = bootstrap_services(
        json.dumps(
            {
                "services": [
                    [["com", "NET"], ["http://rdap.example/", "https://rdap.example/v1"]],
                    [["org"], ["http://org.example/rdap"]],
                    [["gopher"], ["gopher://old.example/"]],
                ]
            }
        )
    )
    assert services == {
        "com": "https://rdap.example/v1/",
        "net": "https://rdap.example/v1/",
        "org": "http://org.example/rdap/",
    }


def test_the_longest_match_wins() -> None:
    services = {"uk": "https://uk.example/", "co.uk": "https://co.example/"}
    assert server_for(services, "shop.co.uk") == "https://co.example/"
    assert server_for(services, "shop.org.uk") == "https://uk.example/"
    assert server_for(services, "shop.example") is None


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"[]", "no 'services' array"),
        (b'{"services": [["com"]]}', "not an array of \\[entries, URLs\\]"),
        (b'{"services": [[["com"], "https://x/"]]}', "not arrays of strings"),
        (b"{", "Expecting"),
    ],
)
def test_a_malformed_bootstrap_file_is_refused(answer: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bootstrap_services(answer)


# -- asking the server the bootstrap names -------------------------------------------------


async def test_the_tld_server_named_by_the_bootstrap_is_asked(registry: Registry) -> None:
    r = registry.registrations()
    assert await r.registered("mail.old.test") == date(2001, 2, 3)
    assert await r.registered("shop.co.uk") == date(2010, 10, 10)
    assert registry.requests == {
        "/dns.json": 1,  # fetched once, kept for both
        "/a/domain/old.test": 1,
        "/b/domain/shop.co.uk": 1,  # co.uk's own entry beats none for uk
    }


async def test_a_redirect_is_followed(registry: Registry) -> None:
    # RFC 7480 §5.2: a server may send the client on to the one holding the answer.
    assert await registry.registrations().registered("moved.redir") == date(2012, 12, 12)
    assert registry.requests == {
        "/dns.json": 1,
        "/r/domain/moved.redir": 1,
        "/a/domain/moved.redir": 1,
    }


async def test_a_tld_without_rdap_service_is_unknown(registry: Registry) -> None:
    r = registry.registrations()
    assert await r.registered("example.net") is None
    assert await r.registered("example.net") is None  # cached like a 404
    assert registry.requests == {"/dns.json": 1}


async def test_404_from_the_named_server_is_unknown(registry: Registry) -> None:
    r = registry.registrations()
    assert await r.registered("nowhere.test") is None
    assert registry.requests["/a/domain/nowhere.test"] == 1


async def test_rdap_url_overrides_the_bootstrap(registry: Registry) -> None:
    r = registry.registrations(rdap_url=f"{registry.base}/b/domain/{{domain}}")
    assert await r.registered("old.test") == date(2001, 2, 3)
    assert registry.requests == {"/b/domain/old.test": 1}


async def test_the_bootstrap_is_kept_for_its_ttl(registry: Registry) -> None:
    now = [0.0]
    r = registry.registrations(bootstrap_ttl=100, ttl=0, monotonic=lambda: now[0])
    await r.registered("old.test")
    now[0] = 99.0
    await r.registered("old.test")
    assert registry.requests["/dns.json"] == 1
    now[0] = 101.0
    await r.registered("old.test")
    assert registry.requests["/dns.json"] == 2
    assert registry.requests["/a/domain/old.test"] == 3


async def test_sessions_asking_at_once_share_one_bootstrap_fetch(registry: Registry) -> None:
    r = registry.registrations()
    found = await asyncio.gather(*(r.registered(n) for n in ("old.test", "fresh.test") * 5))
    assert set(found) == {date(2001, 2, 3), date(2025, 6, 10)}
    assert registry.requests == {
        "/dns.json": 1,
        "/a/domain/old.test": 1,
        "/a/domain/fresh.test": 1,
    }


# -- failures are temporary, and not kept --------------------------------------------------


@pytest.mark.parametrize(
    ("bootstrap", "detail"),
    [
        (500, "RDAP bootstrap answered HTTP 500"),
        (404, "RDAP bootstrap answered HTTP 404"),
        (b"<html>maintenance</html>", "malformed RDAP bootstrap file"),
        (b'{"services": "all"}', "malformed RDAP bootstrap file: no 'services' array"),
    ],
)
async def test_a_failing_bootstrap_is_temporary(
    registry: Registry, bootstrap: bytes | int, detail: str
) -> None:
    good = registry.bootstrap
    registry.bootstrap = bootstrap
    r = registry.registrations()
    with pytest.raises(RegistrationTempFail) as info:
        await r.registered("old.test")
    assert info.value.detail.startswith(detail)
    registry.bootstrap = good  # the outage ends: asked again at once, not remembered
    assert await r.registered("old.test") == date(2001, 2, 3)
    assert registry.requests["/dns.json"] == 2


async def test_an_unreachable_bootstrap_is_temporary() -> None:
    r = Registrations(mode="system", rdap_bootstrap=f"http://127.0.0.1:{free_port()}/dns.json")
    with pytest.raises(RegistrationTempFail, match="RDAP bootstrap unreachable"):
        await r.registered("old.test")


async def test_an_unreachable_server_named_by_the_bootstrap_is_temporary(
    registry: Registry,
) -> None:
    registry.services((["test"], [f"http://127.0.0.1:{free_port()}/"]))
    r = registry.registrations()
    with pytest.raises(RegistrationTempFail, match="RDAP server unreachable"):
        await r.registered("old.test")


# -- the policy, configured from a scenario ------------------------------------------------


async def test_domain_age_through_the_bootstrap(registry: Registry) -> None:
    cfg = {
        "clock": {"fixed": "2025-06-15T12:00:00Z"},
        "registrations": {"mode": "system", "rdap_bootstrap": f"{registry.base}/dns.json"},
    }
    world = World.from_config(WorldConfig.model_validate(cfg))
    policy = DomainAge(DomainAgeOptions())

    async def judge(sender: str) -> Any:
        ctx = Context(world=world, hostname="mx.strictmx.test", history=ClientHistory())
        session = Session(Client("127.0.0.1", address="203.0.113.9"), helo="x", mail_from=sender)
        return await policy.check(Stage.MAIL, session, ctx.for_session())

    verdict = await judge("alice@fresh.test")
    assert verdict is not None and verdict.outcome == "DOMAIN_TOO_NEW"
    assert verdict.action is Action.REJECT
    assert await judge("alice@old.test") is None
    registry.bootstrap = 503
    world.registrations = Registrations(
        mode="system", rdap_bootstrap=f"{registry.base}/dns.json", timeout=2
    )
    deferred = await judge("alice@old.test")
    assert deferred is not None and deferred.outcome == "DOMAIN_AGE_TEMPFAIL"
    assert deferred.action is Action.DEFER
