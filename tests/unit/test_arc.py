"""The arc policy against real chains: sealed here by dkimpy (one and two hops), the
sealers' keys published in a hermetic world."""

from __future__ import annotations

from typing import Any

from strictmx.policies.arc import Arc, ArcOptions
from strictmx.receiver.authentication import ArcAuth
from strictmx.receiver.dkim_signing import SigningKey
from strictmx.receiver.policy import Context
from strictmx.receiver.session import Client, Session
from strictmx.receiver.verdict import Action, Stage, Verdict
from tests.dkim_signing import MESSAGE, keys, make_ctx, seal
from tests.unit.worlds import objection_by, wire


def key() -> SigningKey:
    return keys()["rsa2048"]


def one_hop(selector: str = "rsa2048") -> bytes:
    return seal(MESSAGE, "example.com", "dkim=pass header.d=example.com", selector)


def two_hops() -> bytes:
    return seal(one_hop(), "forwarder.example", "arc=pass")


async def run(
    message: bytes, ctx: Context | None = None, **options: Any
) -> tuple[Verdict | None, Session]:
    session = Session(Client("127.0.0.1", address="192.0.2.25"))
    session.message = message
    policy = Arc(ArcOptions(**{"fail": "reject", **options}))
    return await policy.check(Stage.EOD, session, ctx or world()), session


def world() -> Context:
    """The test world, with the forwarder's key published too."""
    return make_ctx(**{"rsa2048._domainkey.forwarder.example": {"TXT": key().record}})


def altered(message: bytes, old: bytes, new: bytes) -> bytes:
    assert message.count(old) == 1
    return message.replace(old, new)


async def test_one_hop_passes() -> None:
    verdict, session = await run(one_hop())
    assert verdict is None
    assert session.auth.arc == ArcAuth("pass", 1, ("example.com",))
    assert "arc=pass" in session.auth.header("mx.strictmx.test")


async def test_two_hops_pass() -> None:
    verdict, session = await run(two_hops())
    assert verdict is None
    assert session.auth.arc == ArcAuth("pass", 2, ("example.com", "forwarder.example"))


async def test_no_chain_is_none() -> None:
    verdict, session = await run(MESSAGE)
    assert verdict is None
    assert session.auth.arc == ArcAuth("none")


async def test_body_altered_after_sealing_fails() -> None:
    message = altered(one_hop(), b"figures are", b"figures were")
    verdict, session = await run(message)
    verdict = objection_by("arc", verdict, "ARC_FAIL")
    assert wire(verdict) == "550 5.7.29 ARC validation failed."
    assert session.auth.arc is not None
    assert session.auth.arc.result == "fail"
    assert session.auth.arc.sealers == ("example.com",)


async def test_signed_header_altered_after_two_hops_fails() -> None:
    message = altered(two_hops(), b"Subject: Quarterly", b"Subject: Quarterlx")
    verdict, _ = await run(message)
    objection_by("arc", verdict, "ARC_FAIL")


async def test_seal_altered_fails() -> None:
    message = two_hops()
    at = message.index(b"ARC-Seal: i=1")
    at = message.index(b" b=", at) + 3 + 10
    flipped = b"B" if message[at : at + 1] != b"B" else b"C"
    verdict, session = await run(message[:at] + flipped + message[at + 1 :])
    objection_by("arc", verdict, "ARC_FAIL")
    assert session.auth.arc is not None
    assert "ARC-Seal[2] did not validate" in session.auth.arc.reason  # it seals seal 1


async def test_missing_set_fails() -> None:
    message = two_hops()
    start = message.index(b"ARC-Authentication-Results: i=1")
    end = message.index(b"\r\n", start) + 2
    while message[end : end + 1] in (b" ", b"\t"):
        end = message.index(b"\r\n", end) + 2
    verdict, _ = await run(message[:start] + message[end:])
    objection_by("arc", verdict, "ARC_FAIL")


async def test_fail_accepted_by_default_but_recorded() -> None:
    message = altered(one_hop(), b"figures are", b"figures were")
    session = Session(Client("127.0.0.1", address="192.0.2.25"))
    session.message = message
    assert await Arc(ArcOptions()).check(Stage.EOD, session, make_ctx()) is None
    assert session.auth.arc is not None
    assert session.auth.arc.result == "fail"


async def test_key_not_published_fails() -> None:
    verdict, _ = await run(one_hop("missing"))
    objection_by("arc", verdict, "ARC_FAIL")


async def test_servfail_on_a_sealers_key_defers() -> None:
    verdict, session = await run(one_hop("broken"))
    verdict = objection_by("arc", verdict, "ARC_TEMPERROR")
    assert verdict.action is Action.DEFER
    assert wire(verdict) == (
        "451 4.7.29 ARC validation failed temporarily: key lookup of "
        "broken._domainkey.example.com failed temporarily (SERVFAIL)"
    )
    assert session.auth.arc is not None
    assert session.auth.arc.result == "fail"


async def test_temperror_accepted_when_asked() -> None:
    verdict, _ = await run(one_hop("broken"), temperror="accept")
    assert verdict is None


async def test_garbled_seal_is_a_failure_not_a_crash() -> None:
    message = b"ARC-Seal: i=1; this is not a tag list\r\n" + MESSAGE
    verdict, _ = await run(message)
    objection_by("arc", verdict, "ARC_FAIL")


async def test_more_than_fifty_sets_fail_before_any_lookup() -> None:
    message = (
        b"ARC-Seal: i=51; a=rsa-sha256; cv=pass; d=example.com; s=broken; b=AAAA\r\n" + MESSAGE
    )
    verdict, session = await run(message)
    objection_by("arc", verdict, "ARC_FAIL")  # not ARC_TEMPERROR: broken. was never asked
    assert session.auth.arc is not None
    assert "more than 50" in session.auth.arc.reason


async def test_duplicate_arc_fields_fail_before_any_lookup() -> None:
    message = one_hop("broken")
    seal = message.split(b"\r\n", 1)[0] + b"\r\n"
    verdict, _ = await run(seal * 3 + message)
    objection_by("arc", verdict, "ARC_FAIL")
