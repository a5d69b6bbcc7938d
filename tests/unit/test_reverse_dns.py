from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from strictmx.policies import BUILTIN
from strictmx.policies.reverse_dns import ReverseDns, ReverseDnsOptions
from strictmx.receiver.policy import Context
from strictmx.receiver.session import Client, Session
from strictmx.receiver.verdict import Action, Reply, ReplyError, Stage, Verdict

from .worlds import make_ctx, objection_by, wire

V4 = "203.0.113.9"
V6 = "2001:db8::25"
V6_REVERSE_ZONE = "*.8.b.d.0.1.0.0.2.ip6.arpa"

NO_PTR = "NO_PTR"
FAILED = "FCRDNS_FAILED"


def failing(kind: str, *names: str, ptr: dict[str, Any] | None = None) -> Context:
    """A world whose `names` answer with `kind` (servfail or timeout)."""
    if kind == "servfail":
        return make_ctx(ptr=ptr, servfail=names)
    return make_ctx(ptr=ptr, timeout=names)


def make_session(address: str = V4, name: str | None = None) -> Session:
    return Session(Client("127.0.0.1", address=address, name=name))


def policy(replies: dict[str, str] | None = None, **options: Any) -> ReverseDns:
    parsed = {k: Reply.parse(v) for k, v in (replies or {}).items()}
    for outcome_id, reply in parsed.items():
        ReverseDns.validate_reply(outcome_id, reply)
    return ReverseDns(ReverseDnsOptions(**options), replies=parsed)


async def run(
    ctx: Context,
    address: str = V4,
    *,
    stage: Stage = Stage.CONNECT,
    name: str | None = None,
    replies: dict[str, str] | None = None,
    **options: Any,
) -> Verdict | None:
    return await policy(replies, **options).check(stage, make_session(address, name), ctx)


def objection(verdict: Verdict | None, outcome: str) -> Verdict:
    return objection_by("reverse_dns", verdict, outcome)


# -- shape -------------------------------------------------------------------------------


def test_registered_and_staged() -> None:
    assert ReverseDns in BUILTIN
    assert ReverseDns.stages == {Stage.CONNECT, Stage.HELO, Stage.MAIL, Stage.RCPT, Stage.EOD}
    for outcome in ReverseDns.outcomes:
        ReverseDns.validate_reply(outcome.id, outcome.default_reply())
        assert outcome.action is Action.DEFER  # Postfix's unknown_client_reject_code is 450
        assert outcome.rfc_allows
        assert outcome.doc


@pytest.mark.parametrize(
    "options",
    [{"require": "helo"}, {"on_dns_tempfail": "reject"}, {"unknown_option": True}],
)
def test_bad_options_fail_at_load(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ReverseDnsOptions(**options)


# -- a confirmed name passes ---------------------------------------------------------------

CONFIRMED = {
    "mail.example.net": {"A": V4, "AAAA": V6},
}


@pytest.mark.parametrize("address", [V4, V6, "::ffff:203.0.113.9"])
@pytest.mark.parametrize("stage", sorted(ReverseDns.stages))
async def test_forward_confirmed_client_passes(address: str, stage: Stage) -> None:
    ctx = make_ctx(CONFIRMED, {V4: "mail.example.net", V6: "mail.example.net"})
    assert await run(ctx, address, stage=stage) is None


async def test_one_confirming_name_among_several_is_enough() -> None:
    ctx = make_ctx(
        {"other.example.org": {"A": "192.0.2.1"}, "mail.example.net": {"A": V4}},
        {V4: ["other.example.org", "mail.example.net"]},
    )
    assert await run(ctx) is None


async def test_ptr_name_that_is_a_cname_is_followed() -> None:
    ctx = make_ctx(
        {"alias.example.net": {"CNAME": "host.example.net."}, "host.example.net": {"A": V4}},
        {V4: "alias.example.net"},
    )
    assert await run(ctx) is None


# -- NO_PTR --------------------------------------------------------------------------------


@pytest.mark.parametrize("address", [V4, V6])
async def test_no_ptr_defers_with_postfix_text(address: str) -> None:
    verdict = objection(await run(make_ctx(), address), NO_PTR)
    assert verdict.action is Action.DEFER
    assert verdict.stage is Stage.CONNECT
    assert verdict.rfc_compliant
    assert f"{address} has no PTR record" in verdict.reason
    assert wire(verdict) == (
        f"450 4.7.1 Client host rejected: cannot find your reverse hostname, [{address}]"
    )


@pytest.mark.parametrize("stage", sorted(ReverseDns.stages))
async def test_verdict_names_the_stage_it_ran_at(stage: Stage) -> None:
    assert objection(await run(make_ctx(), stage=stage), NO_PTR).stage is stage


async def test_mapped_address_is_judged_as_ipv4() -> None:
    verdict = objection(await run(make_ctx(), "::ffff:203.0.113.9"), NO_PTR)
    assert "203.0.113.9 has no PTR record" in verdict.reason


async def test_ptr_naming_an_address_is_no_host_name() -> None:
    ctx = make_ctx({"203.0.113.9": {"A": V4}}, {V4: "203.0.113.9"})
    verdict = objection(await run(ctx), NO_PTR)
    assert "an IP address, not a host name" in verdict.reason


async def test_no_ptr_in_ptr_mode_too() -> None:
    objection(await run(make_ctx(), require="ptr"), NO_PTR)


# -- FCRDNS_FAILED ------------------------------------------------------------------------


async def test_ptr_name_without_address_fails() -> None:
    ctx = make_ctx(ptr={V4: "ghost.example.net"})
    verdict = objection(await run(ctx), FAILED)
    assert verdict.action is Action.DEFER
    assert verdict.details["ptr"] == "ghost.example.net"
    assert "ghost.example.net does not exist" in verdict.reason
    assert wire(verdict) == (f"450 4.7.25 Client host rejected: cannot find your hostname, [{V4}]")


async def test_ptr_name_with_other_address_fails() -> None:
    ctx = make_ctx(
        {"mail.example.net": {"A": ["192.0.2.1", "192.0.2.2"]}}, {V4: "mail.example.net"}
    )
    verdict = objection(await run(ctx), FAILED)
    assert "mail.example.net has A 192.0.2.1, 192.0.2.2, not 203.0.113.9" in verdict.reason


async def test_ipv6_client_needs_an_aaaa_record() -> None:
    # The name's A record is the right host, but an IPv6 client is confirmed by AAAA only.
    ctx = make_ctx({"mail.example.net": {"A": V4}}, {V6: "mail.example.net"})
    verdict = objection(await run(ctx, V6), FAILED)
    assert "mail.example.net has no AAAA" in verdict.reason
    assert wire(verdict) == f"450 4.7.25 Client host rejected: cannot find your hostname, [{V6}]"


async def test_ipv6_client_with_other_aaaa_fails() -> None:
    ctx = make_ctx({"mail.example.net": {"AAAA": "2001:db8::26"}}, {V6: "mail.example.net"})
    verdict = objection(await run(ctx, V6), FAILED)
    assert "has AAAA 2001:db8::26, not 2001:db8::25" in verdict.reason


async def test_every_name_is_reported() -> None:
    ctx = make_ctx({"b.example.net": {"A": "192.0.2.7"}}, {V4: ["a.example.net", "b.example.net"]})
    verdict = objection(await run(ctx), FAILED)
    assert "a.example.net does not exist; b.example.net has A 192.0.2.7" in verdict.reason


async def test_ptr_mode_accepts_an_unconfirmed_name() -> None:
    ctx = make_ctx(ptr={V4: "ghost.example.net"})
    assert await run(ctx, require="ptr") is None
    objection(await run(ctx, require="fcrdns"), FAILED)


# -- a name asserted with XCLIENT NAME ---------------------------------------------------


@pytest.mark.parametrize("address", [V4, V6])
async def test_asserted_name_is_taken_as_verified(address: str) -> None:
    # Postfix's XCLIENT NAME sets the verified name: no lookup, even with DNS failing.
    ctx = make_ctx(servfail=("9.113.0.203.in-addr.arpa", V6_REVERSE_ZONE))
    assert await run(ctx, address, name="relay.example.net") is None
    objection(await run(ctx, address), "PTR_TEMPFAIL")


@pytest.mark.parametrize("address", [V4, V6])
async def test_xclient_name_unavailable_is_no_name_whatever_dns_says(address: str) -> None:
    # XCLIENT_README: NAME=[UNAVAILABLE] - the client's name lookup failed; Postfix then
    # has no name for it and does not look again. The control: the same address, looked up.
    ctx = make_ctx(CONFIRMED, {V4: "mail.example.net", V6: "mail.example.net"})
    assert await run(ctx, address) is None
    session = make_session(address)
    session.client.name_status = "unavailable"
    verdict = objection(await policy().check(Stage.CONNECT, session, ctx), "NO_PTR")
    assert "NAME=[UNAVAILABLE]" in verdict.reason


@pytest.mark.parametrize("address", [V4, V6])
async def test_xclient_name_tempunavail_defers(address: str) -> None:
    ctx = make_ctx(CONFIRMED, {V4: "mail.example.net", V6: "mail.example.net"})
    session = make_session(address)
    session.client.name_status = "tempunavail"
    verdict = objection(await policy().check(Stage.CONNECT, session, ctx), "PTR_TEMPFAIL")
    assert verdict.action is Action.DEFER
    assert "NAME=[TEMPUNAVAIL]" in verdict.reason


# -- temporary DNS failures -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["servfail", "timeout"])
@pytest.mark.parametrize(
    ("address", "reverse"),
    [(V4, "9.113.0.203.in-addr.arpa"), (V6, V6_REVERSE_ZONE)],
)
async def test_ptr_lookup_failure_defers(kind: str, address: str, reverse: str) -> None:
    ctx = failing(kind, reverse)
    verdict = objection(await run(ctx, address), "PTR_TEMPFAIL")
    assert verdict.action is Action.DEFER
    assert verdict.details["failure"] == kind
    assert f"failed temporarily ({kind})" in verdict.reason
    assert wire(verdict) == (
        f"450 4.7.1 Client host rejected: cannot find your reverse hostname, [{address}]"
    )


@pytest.mark.parametrize("kind", ["servfail", "timeout"])
@pytest.mark.parametrize("address", [V4, V6])
async def test_forward_lookup_failure_defers(kind: str, address: str) -> None:
    ctx = failing(kind, "mail.example.net", ptr={address: "mail.example.net"})
    verdict = objection(await run(ctx, address), "FORWARD_TEMPFAIL")
    assert verdict.action is Action.DEFER
    assert verdict.details == {"ptr": "mail.example.net", "failure": kind}
    assert wire(verdict) == (
        f"450 4.7.25 Client host rejected: cannot find your hostname, [{address}]"
    )


async def test_forward_failure_does_not_matter_once_a_name_confirms() -> None:
    ctx = make_ctx(
        {"mail.example.net": {"A": V4}},
        {V4: ["broken.example.net", "mail.example.net"]},
        servfail=("broken.example.net",),
    )
    assert await run(ctx) is None


async def test_forward_failure_beats_a_definite_mismatch() -> None:
    # One name failed, the other did not confirm: the failed one might have.
    ctx = make_ctx(
        {"other.example.net": {"A": "192.0.2.1"}},
        {V4: ["other.example.net", "slow.example.net"]},
        timeout=("slow.example.net",),
    )
    objection(await run(ctx), "FORWARD_TEMPFAIL")


@pytest.mark.parametrize(
    ("ptr", "script"),
    [({}, "9.113.0.203.in-addr.arpa"), ({V4: "mail.example.net"}, "mail.example.net")],
)
async def test_ignore_tempfail_passes(ptr: dict[str, str], script: str) -> None:
    ctx = make_ctx(ptr=ptr, servfail=(script,))
    assert await run(ctx, on_dns_tempfail="ignore") is None
    assert await run(ctx, on_dns_tempfail="defer") is not None


async def test_ignore_tempfail_still_refuses_definite_failures() -> None:
    objection(await run(make_ctx(), on_dns_tempfail="ignore"), NO_PTR)


# -- replies ---------------------------------------------------------------------------------


SEED_02 = (
    "550 Hostname '{ptr}' (from reverse DNS PTR record) does not have an address matching "
    "[{ip}]!  Is this a DNS spoofing attack, or just badly mis-configured DNS?"
)


async def test_override_may_name_the_ptr_and_refuse_permanently() -> None:
    ctx = make_ctx({"mail.example.net": {"A": "192.0.2.1"}}, {V4: "mail.example.net"})
    verdict = objection(await run(ctx, replies={FAILED: SEED_02}), FAILED)
    assert verdict.action is Action.REJECT
    assert wire(verdict) == (
        "550 Hostname 'mail.example.net' (from reverse DNS PTR record) does not have an "
        "address matching [203.0.113.9]!  Is this a DNS spoofing attack, or just badly "
        "mis-configured DNS?"
    )


@pytest.mark.parametrize(
    ("outcome", "reply", "address"),
    [
        (NO_PTR, "550 fix reverse DNS", V4),
        (NO_PTR, "554 client [{ip}] rejected; no rDNS", V6),
        (
            NO_PTR,
            "550 5.7.25 Access denied, the sending IPv6 address [{ip}] must have a "
            "reverse DNS record",
            V6,
        ),
    ],
)
async def test_no_ptr_overrides(outcome: str, reply: str, address: str) -> None:
    verdict = objection(await run(make_ctx(), address, replies={outcome: reply}), outcome)
    assert verdict.action is Action.REJECT
    assert wire(verdict) == reply.replace("{ip}", address)


async def test_tempfail_overrides() -> None:
    ctx = make_ctx(timeout=("9.113.0.203.in-addr.arpa",))
    replies = {"PTR_TEMPFAIL": "421 client [{ip}] rDNS lookup error ({failure})"}
    verdict = objection(await run(ctx, replies=replies), "PTR_TEMPFAIL")
    assert verdict.action is Action.DEFER
    assert wire(verdict) == "421 client [203.0.113.9] rDNS lookup error (timeout)"


def test_ptr_placeholder_only_where_there_is_a_name() -> None:
    ReverseDns.validate_reply(FAILED, Reply.parse(SEED_02))
    ReverseDns.validate_reply("FORWARD_TEMPFAIL", Reply.parse("451 {ptr} {failure}"))
    with pytest.raises(ReplyError, match="unknown placeholder"):
        ReverseDns.validate_reply(NO_PTR, Reply.parse("550 no PTR for {ptr}"))
    with pytest.raises(ReplyError, match="unknown placeholder"):
        ReverseDns.validate_reply("PTR_TEMPFAIL", Reply.parse("451 {ptr}"))
