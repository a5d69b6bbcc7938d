from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from pydantic import ValidationError

from strictmx.policies import BUILTIN
from strictmx.policies.spf import Spf, SpfOptions
from strictmx.receiver.policy import ClientHistory, Context
from strictmx.receiver.session import Client, Session
from strictmx.receiver.verdict import Action, Reply, Stage, Verdict
from strictmx.receiver.world import World, WorldConfig

HOST = "mx.strictmx.test"
FIXED = "2026-11-27T10:00:00+00:00"
FIXED_EPOCH = 1795773600  # FIXED as a Unix time: the %{t} macro

RECORDS: dict[str, dict[str, Any]] = {
    # ip4 / ip6
    "example.net": {
        "TXT": ["v=spf1 ip4:192.0.2.0/24 ip6:2001:db8:1::/48 -all", "site-verification=abc"],
    },
    # mx: the MX host's A and AAAA
    "mx.example": {"TXT": "v=spf1 mx -all", "MX": "10 mail.mx.example."},
    "mail.mx.example": {"A": "198.51.100.1", "AAAA": "2001:db8:2::1"},
    # a, bare and with a name and prefix length
    "a.example": {"TXT": "v=spf1 a -all", "A": "198.51.100.2", "AAAA": "2001:db8:3::1"},
    "cidr.example": {"TXT": "v=spf1 a:host.cidr.example/24 a:host.cidr.example//64 -all"},
    "host.cidr.example": {"A": "198.51.100.200", "AAAA": "2001:db8:4::1"},
    # include chains and redirect
    "include.example": {"TXT": "v=spf1 include:_spf.include.example -all"},
    "_spf.include.example": {"TXT": "v=spf1 ip4:192.0.2.128/25 include:_v6.include.example -all"},
    "_v6.include.example": {"TXT": "v=spf1 ip6:2001:db8:5::/48 -all"},
    "redirect.example": {"TXT": "v=spf1 redirect=_spf.include.example"},
    # the other results
    "soft.example": {"TXT": "v=spf1 ip4:192.0.2.1 ~all"},
    "neutral.example": {"TXT": "v=spf1 ip4:192.0.2.1 ?all"},
    "no-spf.example": {"TXT": "site-verification=abc", "A": "192.0.2.1"},
    "syntax.example": {"TXT": "v=spf1 ip4:192.0.2.300 -all"},
    "two.example": {"TXT": ["v=spf1 -all", "v=spf1 +all"]},
    "lookups.example": {
        "TXT": "v=spf1 " + " ".join(f"a:h{n}.lookups.example" for n in range(11)) + " -all"
    },
    **{f"h{n}.lookups.example": {"A": f"198.51.100.{n + 10}"} for n in range(11)},
    "void.example": {"TXT": "v=spf1 a:n1.void.example a:n2.void.example a:n3.void.example -all"},
    "broken-include.example": {"TXT": "v=spf1 include:_spf.broken.example -all"},
    "exp.example": {"TXT": "v=spf1 ip4:192.0.2.1 -all exp=why.exp.example"},
    "why.exp.example": {"TXT": "%{i} is not one of %{d}'s mail servers"},
    # macros, ptr, CNAME, the HELO identity
    "macro.example": {"TXT": "v=spf1 exists:%{i}.allow.macro.example -all"},
    "192.0.2.9.allow.macro.example": {"A": "127.0.0.2"},
    "clock.example": {"TXT": "v=spf1 -all exp=why.clock.example"},
    "why.clock.example": {"TXT": "refused at %{t} by %{r}"},
    "ptr.example": {"TXT": "v=spf1 ptr -all"},
    "mail.ptr.example": {"A": "203.0.113.25"},
    "alias.example": {"CNAME": "example.net."},
    "helo.example.net": {"TXT": "v=spf1 ip4:192.0.2.25 -all"},
}


def make_world(**dns: Any) -> World:
    config = {
        "dns": {
            "records": RECORDS,
            "ptr": {"203.0.113.25": "mail.ptr.example", "203.0.113.26": "mail.ptr.example"},
            "servfail": ["broken.example", "*.broken.example", "localhost"],
            "timeout": ["slow.example"],
            **dns,
        },
        "clock": {"fixed": FIXED},
    }
    return World.from_config(WorldConfig.model_validate(config))


WORLD = make_world()


def make_ctx(world: World = WORLD) -> Context:
    return Context(world=world, hostname=HOST, history=ClientHistory()).for_session()


def make_session(address: str, sender: str, helo: str = "mail.example.net") -> Session:
    session = Session(Client("127.0.0.1", address=address))
    session.helo = helo
    session.helo_verb = "EHLO"
    session.mail_from = sender
    return session


def policy(replies: dict[str, Reply] | None = None, **options: Any) -> Spf:
    return Spf(SpfOptions(**options), replies=replies)


async def at_mail(
    address: str,
    sender: str,
    *,
    helo: str = "mail.example.net",
    world: World = WORLD,
    replies: dict[str, Reply] | None = None,
    **options: Any,
) -> tuple[Verdict | None, Session]:
    session = make_session(address, sender, helo)
    verdict = await policy(replies, **options).check(Stage.MAIL, session, make_ctx(world))
    return verdict, session


async def outcome(address: str, sender: str, **options: Any) -> str | None:
    verdict, _ = await at_mail(address, sender, **options)
    return None if verdict is None else verdict.outcome


def header(session: Session) -> str:
    (line,) = session.add_headers
    return line


def test_registered_with_its_outcomes() -> None:
    assert Spf in BUILTIN
    assert {o.id for o in Spf.outcomes} == {
        "SPF_FAIL",
        "SPF_SOFTFAIL",
        "SPF_NEUTRAL",
        "SPF_NONE",
        "SPF_TEMPERROR",
        "SPF_PERMERROR",
    }
    assert Spf.stages == frozenset({Stage.MAIL})


# -- mechanisms: each with a passing and a failing client ----------------------------------


@pytest.mark.parametrize(
    ("sender", "passing", "failing"),
    [
        ("alice@example.net", "192.0.2.77", "192.0.3.77"),  # ip4
        ("alice@example.net", "2001:db8:1::25", "2001:db8:9::25"),  # ip6
        ("alice@mx.example", "198.51.100.1", "198.51.100.3"),  # mx, A
        ("alice@mx.example", "2001:db8:2::1", "2001:db8:2::2"),  # mx, AAAA
        ("alice@a.example", "198.51.100.2", "198.51.100.3"),  # a
        ("alice@a.example", "2001:db8:3::1", "2001:db8:3::2"),  # a, AAAA
        ("alice@cidr.example", "198.51.100.9", "198.51.101.9"),  # a:name/24
        ("alice@cidr.example", "2001:db8:4::ff", "2001:db8:4:1::1"),  # a:name//64
        ("alice@include.example", "192.0.2.200", "192.0.2.100"),  # include
        ("alice@include.example", "2001:db8:5::7", "2001:db8:6::7"),  # include in include
        ("alice@redirect.example", "192.0.2.200", "192.0.2.100"),  # redirect=
        ("alice@macro.example", "192.0.2.9", "192.0.2.10"),  # exists:%{i}
        ("alice@ptr.example", "203.0.113.25", "203.0.113.27"),  # ptr, validated
        ("alice@alias.example", "192.0.2.77", "192.0.3.77"),  # the record behind a CNAME
    ],
)
async def test_mechanism_passes_and_fails(sender: str, passing: str, failing: str) -> None:
    verdict, session = await at_mail(passing, sender)
    assert verdict is None
    assert header(session).startswith("Received-SPF: Pass ")
    assert await outcome(failing, sender) == "SPF_FAIL"


async def test_ptr_name_that_does_not_resolve_back_does_not_pass() -> None:
    # 203.0.113.26 points at mail.ptr.example, whose A record is another address.
    assert await outcome("203.0.113.26", "alice@ptr.example") == "SPF_FAIL"


async def test_exp_macros_use_the_scenario_clock_and_hostname() -> None:
    verdict, _ = await at_mail("192.0.2.1", "alice@clock.example")
    assert verdict is not None
    assert verdict.details["spf_explanation"] == (
        f"The domain clock.example explains: refused at {FIXED_EPOCH} by {HOST}"
    )


# -- fail --------------------------------------------------------------------------------


async def test_fail_reply_reason_and_fields() -> None:
    verdict, session = await at_mail("198.51.100.9", "alice@example.net")
    assert verdict is not None
    assert verdict.outcome == "SPF_FAIL"
    assert verdict.action is Action.REJECT
    assert verdict.stage is Stage.MAIL
    assert verdict.reply is not None
    assert verdict.reply.render() == (
        "550 5.7.1 SPF MAIL FROM check failed: domain of example.net does not designate "
        "198.51.100.9 as permitted sender"
    )
    assert verdict.reason == (
        "SPF MAIL FROM check of example.net for 198.51.100.9: fail (domain of example.net "
        "does not designate 198.51.100.9 as permitted sender; matched -all)"
    )
    assert verdict.details["spf_result"] == "fail"
    assert verdict.details["spf_domain"] == "example.net"
    assert verdict.details["spf_identity"] == "MAIL FROM"
    assert verdict.rfc_compliant
    assert session.add_headers == [], "a refused transaction gets no header"


async def test_fail_from_ipv6_client() -> None:
    verdict, _ = await at_mail("2001:db8:9::25", "alice@example.net")
    assert verdict is not None and verdict.reply is not None
    assert "does not designate 2001:db8:9::25 as permitted sender" in verdict.reply.text


async def test_fail_uses_the_domains_exp_text() -> None:
    verdict, _ = await at_mail("203.0.113.9", "alice@exp.example")
    assert verdict is not None and verdict.reply is not None
    assert verdict.reply.render() == (
        "550 5.7.1 SPF MAIL FROM check failed: The domain exp.example explains: "
        "203.0.113.9 is not one of exp.example's mail servers"
    )


@pytest.mark.parametrize(
    ("handling", "wire", "action"),
    [
        ("defer", "450 4.7.1 SPF MAIL FROM check failed", Action.DEFER),
        ("reject", "550 5.7.1 SPF MAIL FROM check failed", Action.REJECT),
    ],
)
async def test_fail_handling(handling: str, wire: str, action: Action) -> None:
    verdict, _ = await at_mail("203.0.113.9", "alice@example.net", fail=handling)
    assert verdict is not None and verdict.reply is not None
    assert verdict.reply.render().startswith(wire)
    assert verdict.action is action


async def test_fail_accepted_when_asked_gets_a_header() -> None:
    verdict, session = await at_mail("203.0.113.9", "alice@example.net", fail="accept")
    assert verdict is None
    assert header(session).startswith(
        "Received-SPF: Fail (mx.strictmx.test: domain of example.net does not designate "
        "203.0.113.9 as permitted sender) client-ip=203.0.113.9;"
    )


# -- softfail, neutral, none -------------------------------------------------------------


async def test_softfail_is_accepted_by_default_with_its_header() -> None:
    verdict, session = await at_mail("203.0.113.9", "alice@soft.example")
    assert verdict is None
    assert header(session).startswith("Received-SPF: SoftFail (mx.strictmx.test: ")


async def test_softfail_refused_when_asked_is_flagged() -> None:
    verdict, _ = await at_mail("203.0.113.9", "alice@soft.example", softfail="reject")
    assert verdict is not None and verdict.reply is not None
    assert verdict.outcome == "SPF_SOFTFAIL"
    assert verdict.reply.code == 550
    assert verdict.rfc_compliant  # RFC 5321 is silent; RFC 7208 §8.5 only advises against
    # the control: the domain's own host still passes
    assert await outcome("192.0.2.1", "alice@soft.example", softfail="reject") is None


async def test_softfail_deferred_when_asked() -> None:
    verdict, _ = await at_mail("203.0.113.9", "alice@soft.example", softfail="defer")
    assert verdict is not None and verdict.reply is not None
    assert verdict.action is Action.DEFER
    assert verdict.reply.render().startswith("450 4.7.1 SPF MAIL FROM check softfailed: ")


async def test_neutral() -> None:
    verdict, session = await at_mail("203.0.113.9", "alice@neutral.example")
    assert verdict is None
    assert header(session).startswith("Received-SPF: Neutral ")
    assert await outcome("203.0.113.9", "alice@neutral.example", neutral="reject") == "SPF_NEUTRAL"
    assert await outcome("192.0.2.1", "alice@neutral.example", neutral="reject") is None


@pytest.mark.parametrize("sender", ["alice@no-spf.example", "alice@no-such-domain.example"])
async def test_none(sender: str) -> None:
    verdict, session = await at_mail("203.0.113.9", sender)
    assert verdict is None
    assert header(session).startswith("Received-SPF: None ")
    verdict, _ = await at_mail("203.0.113.9", sender, none="reject")
    assert verdict is not None and verdict.reply is not None
    assert verdict.outcome == "SPF_NONE"
    domain = sender.split("@")[1]
    assert verdict.reply.render() == (
        f"550 5.7.1 SPF MAIL FROM check found no SPF record for {domain}"
    )
    assert await outcome("192.0.2.1", "alice@example.net", none="reject") is None


# -- temperror ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "why"),
    [
        ("alice@broken.example", "DNS lookup of broken.example TXT failed temporarily (SERVFAIL)"),
        (
            "alice@broken-include.example",
            "DNS lookup of _spf.broken.example TXT failed temporarily (SERVFAIL)",
        ),
        ("alice@slow.example", "DNS lookup of slow.example TXT failed temporarily (timeout)"),
    ],
)
async def test_dns_failure_defers(sender: str, why: str) -> None:
    verdict, session = await at_mail("192.0.2.1", sender)
    assert verdict is not None and verdict.reply is not None
    assert verdict.outcome == "SPF_TEMPERROR"
    assert verdict.action is Action.DEFER
    assert verdict.reply.render() == f"451 4.4.3 SPF MAIL FROM check temporarily failed: {why}"
    assert session.add_headers == []


async def test_temperror_accept_and_reject() -> None:
    verdict, session = await at_mail("192.0.2.1", "alice@broken.example", temperror="accept")
    assert verdict is None
    assert header(session).startswith("Received-SPF: TempError ")
    verdict, _ = await at_mail("192.0.2.1", "alice@broken.example", temperror="reject")
    assert verdict is not None and verdict.reply is not None
    assert verdict.action is Action.REJECT
    assert verdict.reply.render().startswith("550 5.4.3 SPF MAIL FROM check temporarily failed")


async def test_slow_dns_is_cut_off_by_the_timeout() -> None:
    world = make_world(timeout_seconds=30.0)
    started = time.monotonic()
    verdict, _ = await at_mail("192.0.2.1", "alice@slow.example", world=world, timeout=0.2)
    assert time.monotonic() - started < 10
    assert verdict is not None and verdict.reply is not None
    assert verdict.outcome == "SPF_TEMPERROR"
    assert verdict.reply.text.endswith("(timeout)")


# -- permerror ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "why"),
    [
        ("alice@syntax.example", "Invalid IP4 address: ip4:192.0.2.300"),
        ("alice@two.example", "Two or more type TXT spf records found."),
        ("alice@lookups.example", "Too many DNS lookups"),
        ("alice@void.example", "Void lookup limit of 2 exceeded"),
    ],
)
async def test_unusable_record_is_a_permerror(sender: str, why: str) -> None:
    verdict, _ = await at_mail("203.0.113.9", sender)
    assert verdict is not None and verdict.reply is not None
    assert verdict.outcome == "SPF_PERMERROR"
    assert verdict.reply.code == 550
    assert verdict.reply.status == "5.5.2"
    assert why in verdict.reply.text


async def test_permerror_accept_and_defer() -> None:
    verdict, session = await at_mail("203.0.113.9", "alice@syntax.example", permerror="accept")
    assert verdict is None
    assert header(session).startswith("Received-SPF: PermError ")
    verdict, _ = await at_mail("203.0.113.9", "alice@syntax.example", permerror="defer")
    assert verdict is not None and verdict.reply is not None
    assert verdict.action is Action.DEFER
    assert verdict.reply.render().startswith("450 4.5.2 ")


# -- the HELO identity -------------------------------------------------------------------


async def test_null_sender_is_checked_by_its_helo_name() -> None:
    verdict, session = await at_mail("192.0.2.25", "", helo="helo.example.net")
    assert verdict is None
    line = header(session)
    assert "identity=helo" in line and "envelope-from" not in line
    verdict, _ = await at_mail("192.0.2.26", "", helo="helo.example.net")
    assert verdict is not None and verdict.reply is not None
    assert verdict.outcome == "SPF_FAIL"
    assert verdict.details["spf_identity"] == "HELO"
    assert verdict.reply.render() == (
        "550 5.7.1 SPF HELO check failed: domain of helo.example.net does not designate "
        "192.0.2.26 as permitted sender"
    )


@pytest.mark.parametrize("helo", ["[192.0.2.26]", "localhost"])
async def test_helo_that_is_no_domain_is_none_without_lookup(helo: str) -> None:
    # 'localhost' is scripted to SERVFAIL: a lookup would give temperror.
    verdict, _ = await at_mail("192.0.2.26", "", helo=helo, none="reject")
    assert verdict is not None and verdict.reply is not None
    assert verdict.outcome == "SPF_NONE"
    assert "is not a multi-label domain name" in verdict.reason


async def test_check_helo_refuses_on_helo_fail_before_mail_from() -> None:
    # The MAIL FROM domain would pass; the HELO name's record fails the client.
    sender = "alice@example.net"
    assert await outcome("192.0.2.26", sender, helo="helo.example.net") is None
    verdict, _ = await at_mail("192.0.2.26", sender, helo="helo.example.net", check_helo=True)
    assert verdict is not None
    assert verdict.outcome == "SPF_FAIL"
    assert verdict.details["spf_identity"] == "HELO"


async def test_check_helo_leaves_other_helo_results_to_mail_from() -> None:
    verdict, session = await at_mail(
        "192.0.2.26", "alice@example.net", helo="mail.no-spf.example", check_helo=True
    )
    assert verdict is None
    assert [h.split(" ")[1] for h in session.add_headers] == ["None", "Pass"]
    assert "identity=helo" in session.add_headers[0]
    assert "identity=mailfrom" in session.add_headers[1]
    verdict, _ = await at_mail(
        "203.0.113.9", "alice@example.net", helo="mail.no-spf.example", check_helo=True
    )
    assert verdict is not None and verdict.details["spf_identity"] == "MAIL FROM"


# -- the Received-SPF header -------------------------------------------------------------


async def test_received_spf_header_rfc7208_fields() -> None:
    _, session = await at_mail("192.0.2.77", "alice@example.net")
    assert header(session) == (
        "Received-SPF: Pass (mx.strictmx.test: domain of example.net designates 192.0.2.77 "
        'as permitted sender) client-ip=192.0.2.77; envelope-from="alice@example.net"; '
        "helo=mail.example.net; receiver=mx.strictmx.test; "
        'mechanism="ip4:192.0.2.0/24"; identity=mailfrom'
    )


async def test_header_off() -> None:
    verdict, session = await at_mail("192.0.2.77", "alice@example.net", header=False)
    assert verdict is None
    assert session.add_headers == []


# -- replies and options -----------------------------------------------------------------


async def test_reply_override_with_fields() -> None:
    replies = {
        "SPF_FAIL": Reply.parse(
            "550 5.7.26 The MAIL FROM domain [{spf_domain}] has an SPF record with a hard "
            "fail policy (-all) but it fails to pass SPF checks with the ip: [{ip}]."
        )
    }
    verdict, _ = await at_mail("203.0.113.9", "alice@example.net", replies=replies)
    assert verdict is not None and verdict.reply is not None
    assert verdict.reply.render() == (
        "550 5.7.26 The MAIL FROM domain [example.net] has an SPF record with a hard fail "
        "policy (-all) but it fails to pass SPF checks with the ip: [203.0.113.9]."
    )


async def test_seed_76_override() -> None:
    replies = {"SPF_FAIL": Reply.parse("550 Rejecting spoofed message")}
    verdict, _ = await at_mail("203.0.113.9", "alice@example.net", replies=replies)
    assert verdict is not None and verdict.reply is not None
    assert verdict.reply.render() == "550 Rejecting spoofed message"


def test_reply_placeholders_are_validated() -> None:
    Spf.validate_reply("SPF_FAIL", Reply.parse("550 {spf_result} {spf_explanation}"))
    with pytest.raises(ValueError, match="unknown placeholder"):
        Spf.validate_reply("SPF_FAIL", Reply.parse("550 {spf_mechanism}"))


@pytest.mark.parametrize(
    "options",
    [{"fail": "bounce"}, {"temperror": "later"}, {"timeout": 0}, {"check_mx": True}],
)
def test_bad_options_fail_at_load(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SpfOptions(**options)


async def test_concurrent_checks_keep_their_own_answers() -> None:
    cases = [("192.0.2.77", None), ("203.0.113.9", "SPF_FAIL")] * 20
    ctx = make_ctx()
    spf = policy()

    async def one(address: str) -> str | None:
        verdict = await spf.check(Stage.MAIL, make_session(address, "alice@example.net"), ctx)
        return None if verdict is None else verdict.outcome

    got = await asyncio.gather(*(one(address) for address, _ in cases))
    assert got == [want for _, want in cases]


async def test_a_result_is_reused_by_later_sessions_for_its_ttl() -> None:
    spf = policy(cache_ttl=300)
    first = await spf.evaluate("192.0.2.25", "alice@example.net", "mail.example.net", make_ctx())
    # The same client, sender and HELO in a world that no longer has the record:
    # the result within the TTL is the one already worked out.
    empty = make_ctx(World.from_config(WorldConfig.model_validate({"clock": {"fixed": FIXED}})))
    again = await spf.evaluate("192.0.2.25", "alice@example.net", "mail.example.net", empty)
    assert again == first


async def test_control_without_a_ttl_every_session_evaluates() -> None:
    spf = policy(cache_ttl=0)
    first = await spf.evaluate("192.0.2.25", "alice@example.net", "mail.example.net", make_ctx())
    empty = make_ctx(World.from_config(WorldConfig.model_validate({"clock": {"fixed": FIXED}})))
    again = await spf.evaluate("192.0.2.25", "alice@example.net", "mail.example.net", empty)
    assert (first.result, again.result) == (first.result, "none")
    assert first.result != "none"


async def test_a_temperror_is_never_reused() -> None:
    spf = policy(cache_ttl=300)
    failed = await spf.evaluate(
        "192.0.2.25", "alice@broken.example", "mail.example.net", make_ctx()
    )
    assert failed.result == "temperror"
    fixed = make_world(servfail=[])
    again = await spf.evaluate(
        "192.0.2.25", "alice@broken.example", "mail.example.net", make_ctx(fixed)
    )
    assert again.result != "temperror"
