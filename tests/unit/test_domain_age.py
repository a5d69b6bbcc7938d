from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import pytest
from pydantic import ValidationError

from strictmx.policies import BUILTIN
from strictmx.policies.domain_age import DomainAge, DomainAgeOptions
from strictmx.receiver.policy import ClientHistory, Context
from strictmx.receiver.session import Client, Session
from strictmx.receiver.verdict import Action, Reply, Stage, Verdict
from strictmx.receiver.world import World, WorldConfig
from strictmx.receiver.world.registrations import (
    Registrations,
    RegistrationsConfig,
    RegistrationTempFail,
    registration_date,
)
from strictmx.receiver.world.suffixes import owner_domain, registry_domain

HOST = "mx.strictmx.test"
NOW = "2025-06-15T12:00:00Z"
CLIENTS = ("203.0.113.9", "2001:db8::25")

# -- an RDAP responder on loopback --------------------------------------------------------


def rdap_domain(name: str, *events: tuple[str, str]) -> dict[str, Any]:
    """An RFC 9083 domain object with the given (eventAction, eventDate) events."""
    return {
        "objectClassName": "domain",
        "ldhName": name,
        "rdapConformance": ["rdap_level_0"],
        "events": [{"eventAction": a, "eventDate": d} for a, d in events],
    }


ANSWERS: dict[str, Any] = {
    "old.example": rdap_domain(
        "old.example",
        ("registration", "1997-03-29T05:00:00Z"),
        ("expiration", "2030-03-28T04:00:00Z"),
        ("last update of RDAP database", "2025-06-15T10:00:00Z"),
    ),
    "fresh.example": rdap_domain("fresh.example", ("registration", "2025-06-10T08:15:00Z")),
    "quiet.example": rdap_domain("quiet.example", ("expiration", "2030-01-01T00:00:00Z")),
    "broken.example": 500,
    "throttled.example": 429,
    "garbled.example": b'{"objectClassName": "domain", "events": [',
    "listy.example": b"[]",
    "slow.example": "slow",
}


class Rdap:
    """A tiny RDAP server: /domain/<name> answers from ANSWERS, 404 for the rest."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.accept: list[str] = []
        self.release = threading.Event()  # lets "slow" answers finish at teardown
        rdap = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.removeprefix("/domain/")
                rdap.requests[name] += 1
                rdap.accept.append(self.headers.get("Accept", ""))
                answer = ANSWERS.get(name, 404)
                if answer == "slow":
                    rdap.release.wait(10)
                    answer = ANSWERS["old.example"]
                if isinstance(answer, int):
                    self.send_error(answer)
                    return
                body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/rdap+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/domain/{{domain}}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def registrations(self, mode: str = "system", **options: Any) -> Registrations:
        options.setdefault("timeout", 0.3)
        return Registrations(mode=cast(Any, mode), rdap_url=self.url, **options)


@pytest.fixture(scope="module")
def rdap_server() -> Iterator[Rdap]:
    server = Rdap()
    server.thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.server.shutdown()
        server.server.server_close()
        server.thread.join()


@pytest.fixture
def rdap(rdap_server: Rdap) -> Iterator[Rdap]:
    """The module's RDAP server with fresh counters; slow answers finish after the test."""
    rdap_server.requests.clear()
    rdap_server.accept.clear()
    rdap_server.release = threading.Event()
    yield rdap_server
    rdap_server.release.set()


# -- helpers ------------------------------------------------------------------------------


def world(**registrations: Any) -> World:
    return World.from_config(
        WorldConfig.model_validate({"clock": {"fixed": NOW}, "registrations": registrations})
    )


def make_ctx(w: World) -> Context:
    return Context(world=w, hostname=HOST, history=ClientHistory()).for_session()


def make_session(sender: str | None, address: str = CLIENTS[0]) -> Session:
    session = Session(Client("127.0.0.1", address=address))
    session.helo = "mail.example.net"
    session.mail_from = sender
    return session


def policy(replies: dict[str, Reply] | None = None, **options: Any) -> DomainAge:
    return DomainAge(DomainAgeOptions(**options), replies=replies)


async def at_mail(
    sender: str | None,
    w: World,
    *,
    address: str = CLIENTS[0],
    replies: dict[str, Reply] | None = None,
    **options: Any,
) -> Verdict | None:
    return await policy(replies, **options).check(
        Stage.MAIL, make_session(sender, address), make_ctx(w)
    )


def objection(v: Verdict | None, outcome: str, action: Action) -> Verdict:
    assert v is not None
    assert v.policy == "domain_age"
    assert v.outcome == outcome
    assert v.action is action
    assert v.reply is not None
    return v


TABLE = {
    "new.example": "2025-06-10",  # 5 days before NOW
    "month.example": "2025-05-16",  # 30 days
    "almost.example": "2025-05-17",  # 29 days
    "oldshop.co.uk": "2001-01-01",
    "future.example": "2025-07-01",
}


# -- registered domains -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("example.net", "example.net"),
        ("mail.Example.NET.", "example.net"),
        ("a.b.c.example.co.uk", "example.co.uk"),
        ("foo.blogspot.com", "blogspot.com"),  # a private-section suffix is no registry
        ("shop.example", "shop.example"),  # an unlisted TLD counts as a suffix
        ("mail.bücher.example", "xn--bcher-kva.example"),
        ("co.uk", None),
        ("com", None),
        ("[192.0.2.1]", None),
        ("[IPv6:2001:db8::1]", None),
        ("a..example", None),
        ("", None),
    ],
)
def test_registry_domain(domain: str, expected: str | None) -> None:
    assert registry_domain(domain) == expected


def test_owner_domain_differs_on_private_suffixes() -> None:
    assert owner_domain("foo.blogspot.com") == "foo.blogspot.com"
    assert owner_domain("mail.example.net") == registry_domain("mail.example.net")


# -- RFC 9083 answers -----------------------------------------------------------------------


def test_registration_date_is_the_registration_event_in_utc() -> None:
    assert registration_date(json.dumps(ANSWERS["old.example"])) == date(1997, 3, 29)
    late = rdap_domain("x.example", ("registration", "2024-01-01T23:30:00.123-05:00"))
    assert registration_date(json.dumps(late)) == date(2024, 1, 2)
    naive = rdap_domain("x.example", ("registration", "2024-01-01T23:30:00"))
    assert registration_date(json.dumps(naive).encode()) == date(2024, 1, 1)


def test_registration_date_takes_the_latest_registration() -> None:
    again = rdap_domain(
        "x.example",
        ("registration", "2003-05-01T00:00:00Z"),
        ("deletion", "2024-02-01T00:00:00Z"),
        ("registration", "2024-03-01T00:00:00Z"),
    )
    assert registration_date(json.dumps(again)) == date(2024, 3, 1)


def test_registration_date_without_registration_event_is_unknown() -> None:
    assert registration_date(json.dumps(ANSWERS["quiet.example"])) is None
    assert registration_date(b'{"objectClassName": "domain"}') is None


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"[]", "not a JSON object"),
        (b'{"events": {}}', "'events' is not an array"),
        (b'{"events": ["registration"]}', "an event is not an object"),
        (b'{"events": [{"eventAction": "registration"}]}', "no eventDate"),
        (
            b'{"events": [{"eventAction": "registration", "eventDate": "last Tuesday"}]}',
            "'last Tuesday' is not an RFC 3339",
        ),
        (b'{"events": [', "Expecting"),
        (b"\xff\xfe\xfd", "decode|Expecting"),
    ],
)
def test_malformed_answers_raise(answer: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        registration_date(answer)


# -- the world's configuration ----------------------------------------------------------------


def config_errors(cfg: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        RegistrationsConfig.model_validate(cfg)
    return [err["msg"].removeprefix("Value error, ") for err in info.value.errors()]


def test_config_reads_iso_dates_and_normalises_names() -> None:
    cfg = RegistrationsConfig.model_validate(
        {"domains": {"Example.NET.": "2020-02-29", "bücher.example": date(2019, 1, 1)}}
    )
    assert cfg.domains == {
        "example.net": date(2020, 2, 29),
        "xn--bcher-kva.example": date(2019, 1, 1),
    }
    assert cfg.mode == "hermetic"


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (
            {"domains": {"mail.example.net": "2020-01-01"}},
            "mail.example.net is not a registered domain; look-ups use its registered domain "
            "example.net",
        ),
        ({"domains": {"co.uk": "2020-01-01"}}, "co.uk is a public suffix"),
        (
            {"domains": {"example.net": "2020-01-01", "EXAMPLE.net.": "2021-01-01"}},
            "'example.net' and 'EXAMPLE.net.' are the same entry (example.net)",
        ),
        ({"domains": {"example.net": "soon"}}, "Input should be a valid date"),
        ({"tempfail": ["www.example.net"]}, "not a registered domain"),
        ({"rdap_bootstrap": "file:///etc/dns.json"}, "bootstrap URL must be an http://"),
        ({"bootstrap_ttl": -1}, "greater than or equal to 0"),
        ({"rdap_url": "https://rdap.example/domain/"}, "needs a {domain} placeholder"),
        ({"rdap_url": "ftp://rdap.example/{domain}"}, "must be an http:// or https:// URL"),
        ({"timeout": 0}, "greater than 0"),
        ({"negative_ttl": -1}, "greater than or equal to 0"),
        ({"whois": True}, "Extra inputs are not permitted"),
    ],
)
def test_config_errors(cfg: dict[str, Any], message: str) -> None:
    assert any(message in e for e in config_errors(cfg)), config_errors(cfg)


@pytest.mark.parametrize("mode", ["overlay", "system"])
def test_rdap_modes_find_the_server_through_the_iana_bootstrap(mode: str) -> None:
    # Without rdap_url the RDAP server comes from the bootstrap file (RFC 9224).
    cfg = RegistrationsConfig.model_validate({"mode": mode})
    assert (cfg.rdap_url, cfg.rdap_bootstrap) == (None, "https://data.iana.org/rdap/dns.json")


def test_empty_world_knows_no_registrations() -> None:
    w = World.empty()
    assert w.registrations.mode == "hermetic"
    assert asyncio.run(w.registrations.registered("example.net")) is None


# -- hermetic and overlay tables ---------------------------------------------------------------


async def test_hermetic_table_is_looked_up_by_registered_domain() -> None:
    r = world(domains=TABLE, tempfail=["down.example"]).registrations
    assert await r.registered("new.example") == date(2025, 6, 10)
    assert await r.registered("smtp.out.NEW.example.") == date(2025, 6, 10)
    assert await r.registered("www.oldshop.co.uk") == date(2001, 1, 1)
    assert await r.registered("unknown.example") is None
    assert await r.registered("co.uk") is None
    with pytest.raises(RegistrationTempFail) as info:
        await r.registered("mx.down.example")
    assert str(info.value) == "down.example: registry look-up fails (scripted)"


async def test_overlay_answers_from_the_table_first_then_rdap(rdap: Rdap) -> None:
    r = rdap.registrations("overlay", domains={"old.example": date(2020, 1, 1)})
    assert await r.registered("old.example") == date(2020, 1, 1)
    assert rdap.requests["old.example"] == 0
    assert await r.registered("fresh.example") == date(2025, 6, 10)
    assert rdap.requests["fresh.example"] == 1


async def test_system_mode_ignores_the_table(rdap: Rdap) -> None:
    r = rdap.registrations("system", domains={"old.example": date(2020, 1, 1)})
    assert await r.registered("old.example") == date(1997, 3, 29)


# -- RDAP ----------------------------------------------------------------------------------


async def test_rdap_answer_and_request(rdap: Rdap) -> None:
    r = rdap.registrations()
    assert await r.registered("mail.old.example") == date(1997, 3, 29)
    assert rdap.requests == {"old.example": 1}
    assert rdap.accept == ["application/rdap+json, application/json;q=0.9"]


async def test_rdap_404_and_no_registration_event_are_unknown(rdap: Rdap) -> None:
    r = rdap.registrations()
    assert await r.registered("nowhere.example") is None
    assert await r.registered("quiet.example") is None


@pytest.mark.parametrize(
    ("domain", "detail"),
    [
        ("broken.example", "RDAP server answered HTTP 500"),
        ("throttled.example", "RDAP server answered HTTP 429"),
        ("garbled.example", "malformed RDAP answer"),
        ("listy.example", "malformed RDAP answer: the answer is not a JSON object"),
        ("slow.example", "RDAP server did not answer in 0.3s"),
    ],
)
async def test_rdap_failures_are_temporary(rdap: Rdap, domain: str, detail: str) -> None:
    with pytest.raises(RegistrationTempFail) as info:
        await rdap.registrations().registered(domain)
    assert info.value.domain == domain
    assert detail in info.value.detail


async def test_unreachable_rdap_server_is_temporary() -> None:
    with socket.socket() as sock:  # a port nothing listens on once it is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    r = Registrations(mode="system", rdap_url=f"http://127.0.0.1:{port}/{{domain}}", timeout=2)
    with pytest.raises(RegistrationTempFail, match="unreachable"):
        await r.registered("old.example")


async def test_rdap_answers_are_cached_until_their_ttl(rdap: Rdap) -> None:
    now = [1000.0]
    r = rdap.registrations(ttl=60, negative_ttl=10, monotonic=lambda: now[0])
    for _ in range(3):
        assert await r.registered("old.example") == date(1997, 3, 29)
        assert await r.registered("nowhere.example") is None
    assert rdap.requests == {"old.example": 1, "nowhere.example": 1}
    now[0] += 11  # the negative answer expired, the date did not
    await r.registered("old.example")
    await r.registered("nowhere.example")
    assert rdap.requests == {"old.example": 1, "nowhere.example": 2}
    now[0] += 60
    await r.registered("old.example")
    assert rdap.requests["old.example"] == 2


async def test_failures_are_not_cached(rdap: Rdap) -> None:
    r = rdap.registrations()
    for _ in range(2):
        with pytest.raises(RegistrationTempFail):
            await r.registered("broken.example")
    assert rdap.requests["broken.example"] == 2


async def test_cache_size_evicts_the_oldest(rdap: Rdap) -> None:
    r = rdap.registrations(cache_size=1)
    await r.registered("old.example")
    await r.registered("fresh.example")
    await r.registered("old.example")
    assert rdap.requests == {"old.example": 2, "fresh.example": 1}


async def test_sessions_asking_at_once_share_one_query(rdap: Rdap) -> None:
    r = rdap.registrations()
    found = await asyncio.gather(*(r.registered(f"mx{n}.fresh.example") for n in range(5)))
    assert found == [date(2025, 6, 10)] * 5
    assert rdap.requests == {"fresh.example": 1}


async def test_a_session_that_goes_away_does_not_cancel_the_others(rdap: Rdap) -> None:
    r = rdap.registrations(timeout=5)
    first = asyncio.ensure_future(r.registered("slow.example"))
    second = asyncio.ensure_future(r.registered("slow.example"))
    await asyncio.sleep(0)  # both are waiting on the one query
    first.cancel()
    rdap.release.set()
    assert await second == date(1997, 3, 29)
    assert rdap.requests == {"slow.example": 1}


# -- the policy ----------------------------------------------------------------------------


@pytest.mark.parametrize("address", CLIENTS)
async def test_new_domain_is_refused(address: str) -> None:
    v = objection(
        await at_mail("alice@new.example", world(domains=TABLE), address=address),
        "DOMAIN_TOO_NEW",
        Action.REJECT,
    )
    assert v.stage is Stage.MAIL
    assert v.rfc_compliant
    assert v.details == {
        "domain": "new.example",
        "registered": "2025-06-10",
        "age": 5,
        "min_age": 30,
    }
    assert v.reason == (
        "new.example was registered on 2025-06-10, 5 days ago; "
        "domains younger than 30 days are refused"
    )
    assert v.reply is not None
    assert v.reply.render() == (
        "554 5.7.1 <alice@new.example>: Sender address rejected: "
        "domain new.example was registered 5 days ago"
    )


@pytest.mark.parametrize("address", CLIENTS)
async def test_old_domain_is_accepted(address: str) -> None:
    assert await at_mail("bob@mail.oldshop.co.uk", world(domains=TABLE), address=address) is None


async def test_the_limit_is_whole_days_against_the_scenario_clock() -> None:
    w = world(domains=TABLE)
    assert await at_mail("a@month.example", w) is None  # exactly 30 days
    objection(await at_mail("a@almost.example", w), "DOMAIN_TOO_NEW", Action.REJECT)
    assert await at_mail("a@almost.example", w, min_age_days=29) is None
    objection(await at_mail("a@month.example", w, min_age_days=31), "DOMAIN_TOO_NEW", Action.REJECT)


async def test_subdomain_sender_is_judged_by_its_registered_domain() -> None:
    v = objection(
        await at_mail("bounce@mail.shop.new.example", world(domains=TABLE)),
        "DOMAIN_TOO_NEW",
        Action.REJECT,
    )
    assert v.details["domain"] == "new.example"
    assert "new.example (the registered domain of mail.shop.new.example)" in v.reason


async def test_registration_in_the_future_counts_as_new() -> None:
    v = objection(
        await at_mail("a@future.example", world(domains=TABLE)), "DOMAIN_TOO_NEW", Action.REJECT
    )
    assert v.details["age"] == -16
    assert "in the future" in v.reason


@pytest.mark.parametrize(
    "sender",
    ["", None, "postmaster", "alice@[192.0.2.1]", "alice@[IPv6:2001:db8::1]", "alice@co.uk"],
)
async def test_no_registration_to_judge_means_no_opinion(sender: str | None) -> None:
    assert await at_mail(sender, world(domains=TABLE), unknown="reject") is None


async def test_unknown_domain_accept_by_default() -> None:
    assert await at_mail("a@unknown.example", world(domains=TABLE)) is None


async def test_unknown_domain_reject() -> None:
    v = objection(
        await at_mail("a@unknown.example", world(domains=TABLE), unknown="reject"),
        "DOMAIN_AGE_UNKNOWN",
        Action.REJECT,
    )
    assert v.reason == "no registration date is known for unknown.example"
    assert v.reply is not None
    assert v.reply.render() == (
        "554 5.7.1 <a@unknown.example>: Sender address rejected: "
        "registration date of unknown.example is unknown"
    )
    assert await at_mail("a@oldshop.co.uk", world(domains=TABLE), unknown="reject") is None


async def test_unknown_domain_defer() -> None:
    v = objection(
        await at_mail("a@unknown.example", world(domains=TABLE), unknown="defer"),
        "DOMAIN_AGE_TEMPFAIL",
        Action.DEFER,
    )
    assert v.reply is not None
    assert v.reply.render() == (
        "450 4.7.1 <a@unknown.example>: Sender address rejected: "
        "cannot verify the registration date of unknown.example"
    )


async def test_scripted_registry_failure_defers() -> None:
    w = world(domains=TABLE, tempfail=["down.example"])
    v = objection(await at_mail("a@down.example", w), "DOMAIN_AGE_TEMPFAIL", Action.DEFER)
    assert (
        v.reason
        == "cannot learn when down.example was registered: registry look-up fails (scripted)"
    )


def rdap_world(rdap: Rdap) -> World:
    return world(mode="system", rdap_url=rdap.url, timeout=0.3)


@pytest.mark.parametrize("address", CLIENTS)
async def test_rdap_new_domain_is_refused_and_old_one_accepted(rdap: Rdap, address: str) -> None:
    w = rdap_world(rdap)
    objection(await at_mail("a@fresh.example", w, address=address), "DOMAIN_TOO_NEW", Action.REJECT)
    assert await at_mail("a@old.example", w, address=address) is None


@pytest.mark.parametrize(
    ("domain", "detail"),
    [
        ("broken.example", "HTTP 500"),
        ("garbled.example", "malformed RDAP answer"),
        ("slow.example", "did not answer in 0.3s"),
    ],
)
async def test_rdap_failure_defers_never_rejects(rdap: Rdap, domain: str, detail: str) -> None:
    v = objection(
        await at_mail(f"a@{domain}", rdap_world(rdap), unknown="reject"),
        "DOMAIN_AGE_TEMPFAIL",
        Action.DEFER,
    )
    assert v.reply is not None and v.reply.code == 450
    assert detail in v.reason


async def test_rdap_404_follows_the_unknown_option(rdap: Rdap) -> None:
    w = rdap_world(rdap)
    assert await at_mail("a@nowhere.example", w) is None
    objection(
        await at_mail("a@nowhere.example", w, unknown="reject"), "DOMAIN_AGE_UNKNOWN", Action.REJECT
    )


async def test_world_cache_is_shared_by_sessions(rdap: Rdap) -> None:
    w = rdap_world(rdap)
    p = policy()
    for _ in range(3):
        await p.check(Stage.MAIL, make_session("a@fresh.example"), make_ctx(w))
    assert rdap.requests == {"fresh.example": 1}


# -- replies and options ---------------------------------------------------------------------


async def test_reply_override_seed_57() -> None:
    override = Reply.parse("550 Message not sent - New domain not yet verified")
    DomainAge.validate_reply("DOMAIN_TOO_NEW", override)
    v = objection(
        await at_mail(
            "alice@new.example", world(domains=TABLE), replies={"DOMAIN_TOO_NEW": override}
        ),
        "DOMAIN_TOO_NEW",
        Action.REJECT,
    )
    assert v.reply is not None
    assert v.reply.render() == "550 Message not sent - New domain not yet verified"


async def test_override_may_use_the_outcome_fields() -> None:
    override = Reply.parse("550 5.7.1 {domain} is {age} days old, registered {registered}")
    DomainAge.validate_reply("DOMAIN_TOO_NEW", override)
    v = await at_mail("a@new.example", world(domains=TABLE), replies={"DOMAIN_TOO_NEW": override})
    assert v is not None and v.reply is not None
    assert v.reply.render() == "550 5.7.1 new.example is 5 days old, registered 2025-06-10"


async def test_temporary_outcome_may_be_made_permanent_by_a_persona() -> None:
    override = Reply.parse("550 5.7.1 cannot verify {domain}")
    DomainAge.validate_reply("DOMAIN_AGE_TEMPFAIL", override)
    v = await at_mail(
        "a@down.example",
        world(tempfail=["down.example"]),
        replies={"DOMAIN_AGE_TEMPFAIL": override},
    )
    objection(v, "DOMAIN_AGE_TEMPFAIL", Action.REJECT)


def test_override_placeholders_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown placeholder"):
        DomainAge.validate_reply("DOMAIN_AGE_UNKNOWN", Reply.parse("550 {age} days"))


def test_options_are_validated() -> None:
    defaults = DomainAgeOptions()
    assert defaults.min_age_days == 30 and defaults.unknown == "accept"
    with pytest.raises(ValidationError):
        DomainAgeOptions(min_age_days=0)
    with pytest.raises(ValidationError):
        DomainAgeOptions(unknown=cast(Any, "ignore"))
    with pytest.raises(ValidationError):
        DomainAgeOptions.model_validate({"days": 30})


def test_declaration() -> None:
    assert DomainAge in BUILTIN
    assert DomainAge.name == "domain_age"
    assert DomainAge.stages == {Stage.MAIL}
    assert DomainAge.summary and "\n" not in DomainAge.summary
    assert DomainAge.__doc__ and "RFC 9083" in DomainAge.__doc__
    assert {o.id for o in DomainAge.outcomes} == {
        "DOMAIN_TOO_NEW",
        "DOMAIN_AGE_UNKNOWN",
        "DOMAIN_AGE_TEMPFAIL",
    }
    for o in DomainAge.outcomes:
        DomainAge.validate_reply(o.id, o.default_reply())
        assert o.rfc_allows
    for name, spec in DomainAgeOptions.model_fields.items():
        assert spec.description, name
