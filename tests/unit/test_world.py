from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from strictmx.receiver.world import World, WorldConfig
from strictmx.receiver.world.clients import ClientIdentity, ClientMap
from strictmx.receiver.world.clock import Clock, ClockConfig, parse_duration
from strictmx.receiver.world.dns import NXDomain
from strictmx.receiver.world.mailboxes import Mailboxes


def world(**cfg: Any) -> World:
    return World.from_config(WorldConfig.model_validate(cfg))


def errors(cfg: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as info:
        WorldConfig.model_validate(cfg)
    return [(err["loc"], err["msg"].removeprefix("Value error, ")) for err in info.value.errors()]


# -- clients ---------------------------------------------------------------------------

CLIENTS = {
    "127.0.0.10": {"address": "203.0.113.10", "name": "MTA.Example.NET."},
    "127.0.0.0/24": {"address": "198.51.100.24"},
    "127.0.0.0/8": {"address": "198.51.100.1"},
    "::1": {"address": "2001:db8::25"},
    "127.0.1.0/24": {"name": "named.example"},
}


def test_clients_longest_prefix_wins() -> None:
    clients = world(clients=CLIENTS).clients
    assert clients.lookup("127.0.0.10") == ClientIdentity("203.0.113.10", "mta.example.net")
    assert clients.lookup("127.0.0.11") == ClientIdentity("198.51.100.24", None)
    assert clients.lookup("127.9.9.9") == ClientIdentity("198.51.100.1", None)
    assert clients.lookup("::1") == ClientIdentity("2001:db8::25", None)


def test_clients_ipv4_mapped_peer_matches_ipv4_networks() -> None:
    clients = world(clients=CLIENTS).clients
    assert clients.lookup("::ffff:127.0.0.10") == ClientIdentity("203.0.113.10", "mta.example.net")


def test_clients_name_only_entry_keeps_the_address() -> None:
    clients = world(clients=CLIENTS).clients
    assert clients.lookup("127.0.1.5") == ClientIdentity("127.0.1.5", "named.example")


def test_unmapped_peers_are_themselves() -> None:
    clients = world(clients=CLIENTS).clients
    assert clients.lookup("192.0.2.7") == ClientIdentity("192.0.2.7", None)
    assert clients.lookup("2001:db8::7") == ClientIdentity("2001:db8::7", None)
    assert ClientMap().lookup("127.0.0.10") == ClientIdentity("127.0.0.10", None)


@pytest.mark.parametrize(
    ("clients", "loc", "message"),
    [
        (
            {"127.0.0.1/8": {}},
            ("clients", "127.0.0.1/8", "[key]"),
            "not a network: '127.0.0.1/8' (127.0.0.1/8 has host bits set)",
        ),
        (
            {"127.0.0.0/33": {}},
            ("clients", "127.0.0.0/33", "[key]"),
            "not a network: '127.0.0.0/33' ('127.0.0.0/33' does not appear to be an IPv4 or "
            "IPv6 network)",
        ),
        (
            {"localhost": {}},
            ("clients", "localhost", "[key]"),
            "not an IP address or network: 'localhost'",
        ),
        (
            {"127.0.0.10": {"address": "203.0.113"}},
            ("clients", "127.0.0.10", "address"),
            "not an IP address: '203.0.113'",
        ),
        (
            {"127.0.0.10": {}, "127.0.0.10/32": {}},
            ("clients",),
            "'127.0.0.10' and '127.0.0.10/32' are the same entry (127.0.0.10)",
        ),
        (
            {"127.0.0.10": {"adress": "203.0.113.1"}},
            ("clients", "127.0.0.10", "adress"),
            "Extra inputs are not permitted",
        ),
    ],
)
def test_clients_validation(clients: dict[str, Any], loc: tuple[Any, ...], message: str) -> None:
    assert errors({"clients": clients}) == [(loc, message)]


# -- clock -----------------------------------------------------------------------------


def test_fixed_clock_stands_still_in_utc() -> None:
    clock = world(clock={"fixed": "2024-05-01T14:00:00+02:00"}).clock
    assert clock.now() == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert clock.now().tzinfo == UTC
    assert clock.now() == clock.now()


def test_offset_clock_runs_shifted() -> None:
    clock = world(clock={"offset": "-3h"}).clock
    expected = datetime.now(UTC) - timedelta(hours=3)
    assert abs(clock.now() - expected) < timedelta(seconds=5)
    assert clock.now().tzinfo == UTC
    assert world(clock={"offset": 90}).clock.offset == timedelta(seconds=90)


def test_real_clock() -> None:
    clock = World.empty().clock
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=5)


def test_monotonic_is_real_even_when_fixed() -> None:
    clock = Clock(fixed=datetime(2024, 1, 1, tzinfo=UTC))
    first = clock.monotonic()
    assert clock.monotonic() >= first


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("-3h", -10800),
        ("90m", 5400),
        ("2d", 172800),
        ("+1h30m", 5400),
        ("1.5w", 907200),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert ClockConfig.model_validate({"offset": text}).offset == seconds


@pytest.mark.parametrize(
    ("clock", "loc", "message"),
    [
        (
            {"fixed": "2024-05-01T12:00:00Z", "offset": 0},
            ("clock", "offset"),
            "fixed and offset cannot be combined: a fixed clock stands still",
        ),
        (
            {"fixed": "2024-05-01T12:00:00"},
            ("clock", "fixed"),
            "a fixed time needs a timezone, e.g. 'Z' or '+02:00': 2024-05-01T12:00:00",
        ),
        (
            {"offset": "3 hours"},
            ("clock", "offset"),
            "not a duration: '3 hours' (seconds, or e.g. '-3h', '90m', '2d')",
        ),
        ({"offset": True}, ("clock", "offset"), "not a duration: True"),
    ],
)
def test_clock_validation(clock: dict[str, Any], loc: tuple[Any, ...], message: str) -> None:
    assert errors({"clock": clock}) == [(loc, message)]


def test_clock_refuses_a_naive_fixed_time() -> None:
    with pytest.raises(ValueError, match="timezone"):
        Clock(fixed=datetime(2024, 1, 1))
    assert Clock(fixed=datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=-5)))).now().hour == 5


# -- mailboxes -------------------------------------------------------------------------

MAILBOXES = {
    "Example.com.": {"exists": ["Alice", "bob"], "tempfail": ["carol"]},
    "catchall.example": {"accept_all": True, "null_sender": "reject"},
    "down.example": {"exists": "alice", "tempfail_all": True},
}


def test_mailbox_lookup() -> None:
    boxes = world(mailboxes=MAILBOXES).mailboxes
    assert boxes.lookup("alice@example.com") == "exists"
    assert boxes.lookup("ALICE@EXAMPLE.COM.") == "exists"
    assert boxes.lookup("Bob@example.com") == "exists"
    assert boxes.lookup("mallory@example.com") == "unknown"
    assert boxes.lookup("carol@example.com") == "tempfail"
    assert boxes.lookup("anyone@catchall.example") == "exists"
    assert boxes.lookup("alice@down.example") == "tempfail"
    assert boxes.lookup("alice@elsewhere.example") == "no_domain"
    assert boxes.lookup("alice@[192.0.2.1]") == "no_domain"
    assert boxes.lookup('"odd@local"@example.com') == "unknown"
    with pytest.raises(ValueError, match="not an address"):
        boxes.lookup("postmaster")


def test_mailbox_domain_settings() -> None:
    boxes = world(mailboxes=MAILBOXES).mailboxes
    catchall = boxes.domain("CatchAll.Example")
    assert catchall is not None
    assert catchall.null_sender == "reject"
    example = boxes.domain("example.com")
    assert example is not None
    assert example.null_sender == "accept"
    assert example.exists == {"alice", "bob"}
    assert boxes.domain("elsewhere.example") is None
    assert Mailboxes().lookup("alice@example.com") == "no_domain"


@pytest.mark.parametrize(
    ("mailboxes", "loc", "message"),
    [
        (
            {"example.com": {"exists": ["alice@example.com"]}},
            ("mailboxes", "example.com", "exists", 0),
            "a local part has no '@' (the domain is the key above): 'alice@example.com'",
        ),
        (
            {"example.com": {"null_sender": "maybe"}},
            ("mailboxes", "example.com", "null_sender"),
            "Input should be 'accept' or 'reject'",
        ),
        (
            {"example.com": {}, "EXAMPLE.com": {}},
            ("mailboxes",),
            "'example.com' and 'EXAMPLE.com' are the same entry (example.com)",
        ),
    ],
)
def test_mailboxes_validation(
    mailboxes: dict[str, Any], loc: tuple[Any, ...], message: str
) -> None:
    assert errors({"mailboxes": mailboxes}) == [(loc, message)]


# -- the world -------------------------------------------------------------------------


async def test_world_from_config() -> None:
    w = world(
        dns={
            "records": {"mx.example.com": {"A": "192.0.2.10"}},
            "ptr": {"203.0.113.10": "mx.example.com"},
        },
        clients={"127.0.0.10": {"address": "203.0.113.10"}},
        clock={"fixed": "2024-05-01T12:00:00Z"},
        mailboxes={"example.com": {"exists": ["alice"]}},
    )
    identity = w.clients.lookup("127.0.0.10")
    assert await w.dns.ptr(identity.address) == ["mx.example.com"]
    assert await w.dns.addresses("mx.example.com") == ["192.0.2.10"]
    assert w.clock.now().year == 2024
    assert w.mailboxes.lookup("alice@example.com") == "exists"


async def test_empty_world() -> None:
    w = World.empty()
    assert w.dns.mode == "hermetic"
    with pytest.raises(NXDomain):
        await w.dns.resolve("example.com", "A")
    assert await w.dns.addresses("example.com") == []
    assert w.clients.lookup("127.0.0.1") == ClientIdentity("127.0.0.1", None)
    assert w.mailboxes.lookup("alice@example.com") == "no_domain"


def test_unknown_world_keys_are_errors() -> None:
    assert errors({"weather": {}}) == [(("weather",), "Extra inputs are not permitted")]
    assert errors({"clock": {"frozen": True}}) == [
        (("clock", "frozen"), "Extra inputs are not permitted")
    ]


def test_schema_documents_every_field() -> None:
    schema = WorldConfig.model_json_schema()
    for name, definition in schema["$defs"].items():
        if name == "RecordSet":
            continue  # one field per record type, described alike
        for field, spec in definition.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{field} has no description"
    assert all(spec.get("description") for spec in schema["properties"].values())
