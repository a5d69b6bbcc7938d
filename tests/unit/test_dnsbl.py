from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

import pytest
from pydantic import ValidationError

from strictmx.policies import BUILTIN
from strictmx.policies.dnsbl import CodeSet, Dnsbl, DnsblOptions
from strictmx.policies.session_limits import ERROR_EVENT, SessionLimits, SessionLimitsOptions
from strictmx.receiver import scenario as scenarios
from strictmx.receiver.engine import Engine, EngineSettings
from strictmx.receiver.policy import ClientHistory, Context, Policy
from strictmx.receiver.session import Client, Session
from strictmx.receiver.verdict import Action, Reply, Stage, Verdict
from strictmx.receiver.world import World, WorldConfig
from strictmx.receiver.world.dns import TempFail, WorldDNS
from strictmx.receiver.world.names import dnsbl_prefix, ip_of, public_ip

HOST = "mx.strictmx.test"
ZEN = "zen.spamhaus.org"
DBL = "dbl.spamhaus.org"
CLIENT = "203.0.113.9"
CLIENT_V6 = "2001:db8::9"
#: 2001:db8::9 as a DNSBL asks for it: 32 nibbles reversed.
NIBBLES_V6 = "9.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
SBL_TXT = "https://www.spamhaus.org/sbl/query/SBL000009"


class RecordingDNS(WorldDNS):
    """The world's DNS, remembering every question a policy asks; TXT can be made to fail."""

    asked: list[tuple[str, str]]
    fail_txt: bool = False

    async def resolve(self, name: str, rdtype: str) -> list[Any]:
        self.asked.append((name, rdtype))
        if rdtype == "TXT" and self.fail_txt:
            raise TempFail(name, rdtype, "servfail", "test")
        return await super().resolve(name, rdtype)


def make_world(
    records: dict[str, Any] | None = None,
    *,
    servfail: list[str] | None = None,
    timeout: list[str] | None = None,
) -> World:
    config = WorldConfig.model_validate(
        {
            "dns": {
                "records": records or {},
                "servfail": servfail or [],
                "timeout": timeout or [],
            }
        }
    )
    world = World.from_config(config)
    dns = RecordingDNS.from_config(config.dns)
    assert isinstance(dns, RecordingDNS)
    dns.asked = []
    return dataclasses.replace(world, dns=dns)


def failing_zen(script: str) -> World:
    """A world where every ZEN lookup fails: SERVFAIL or timeout."""
    names = [f"*.{ZEN}"]
    return make_world(servfail=names) if script == "servfail" else make_world(timeout=names)


def asked(world: World) -> list[tuple[str, str]]:
    assert isinstance(world.dns, RecordingDNS)
    return world.dns.asked


def make_ctx(world: World, history: ClientHistory | None = None) -> Context:
    return Context(world=world, hostname=HOST, history=history or ClientHistory()).for_session()


def make_session(
    address: str = CLIENT,
    *,
    helo: str | None = "mail.example.net",
    mail_from: str | None = "alice@example.net",
) -> Session:
    session = Session(Client("127.0.0.1", address=address))
    session.helo = helo
    session.mail_from = mail_from
    return session


def policy(replies: dict[str, Reply] | None = None, **options: Any) -> Dnsbl:
    return Dnsbl(DnsblOptions.model_validate(options), replies)


async def run(
    p: Dnsbl, world: World, stage: Stage = Stage.CONNECT, session: Session | None = None
) -> Verdict | None:
    return await p.check(stage, session or make_session(), make_ctx(world))


def listed(verdict: Verdict | None, outcome: str = "DNSBL_LISTED") -> Verdict:
    assert verdict is not None
    assert verdict.policy == "dnsbl"
    assert verdict.outcome == outcome, verdict.reason
    assert verdict.action is Action.REJECT
    assert verdict.rfc_compliant
    assert verdict.reply is not None
    return verdict


def zen(**extra: Any) -> Dnsbl:
    return policy(zones=[{"zone": ZEN}], **extra)


def on_zen(answer: str | list[str], txt: str | list[str] | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"A": answer}
    if txt is not None:
        record["TXT"] = txt
    return {f"9.113.0.203.{ZEN}": record}


# -- declaration ---------------------------------------------------------------------------


def test_registered_with_its_stages_and_outcomes() -> None:
    assert Dnsbl in BUILTIN
    assert Dnsbl.stages == {Stage.CONNECT, Stage.HELO, Stage.MAIL}
    assert [o.id for o in Dnsbl.outcomes] == [
        "DNSBL_LISTED",
        "RHSBL_HELO_LISTED",
        "RHSBL_SENDER_LISTED",
        "DNSBL_TEMPFAIL",
    ]
    assert all(o.rfc_allows for o in Dnsbl.outcomes)


# -- query names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "name"),
    [
        ("192.0.2.1", "1.2.0.192.zen.spamhaus.org"),
        ("127.0.0.2", "2.0.0.127.zen.spamhaus.org"),
        (CLIENT_V6, f"{NIBBLES_V6}.zen.spamhaus.org"),
        # Exim's specification, "DNS lists and IPv6"
        (
            "3ffe:ffff:836f:0a00:000a:0800:200a:c031",
            "1.3.0.c.a.0.0.2.0.0.8.0.a.0.0.0.0.0.a.0.f.6.3.8.f.f.f.f.e.f.f.3.zen.spamhaus.org",
        ),
        ("2001:DB8::ABCD", "d.c.b.a." + "0." * 20 + "8.b.d.0.1.0.0.2.zen.spamhaus.org"),
        # an IPv4 client seen through a dual-stack socket is an IPv4 client
        ("::ffff:192.0.2.1", "1.2.0.192.zen.spamhaus.org"),
    ],
)
def test_query_name(address: str, name: str) -> None:
    # The name the policy asks about, built as the policy builds it.
    assert f"{dnsbl_prefix(public_ip(ip_of(address)))}.{ZEN}" == name
    assert len(name.removesuffix(".zen.spamhaus.org").split(".")) in (4, 32)


async def test_ipv4_client_listed() -> None:
    world = make_world(on_zen("127.0.0.2"))
    verdict = listed(await run(zen(), world))
    assert verdict.stage is Stage.CONNECT
    assert verdict.reply is not None
    assert verdict.reply.render() == (
        "554 5.7.1 Service unavailable; Client host [203.0.113.9] blocked using zen.spamhaus.org"
    )
    assert verdict.details["code"] == "127.0.0.2"
    assert verdict.details["query"] == f"9.113.0.203.{ZEN}"
    assert "SBL" in verdict.reason
    assert (f"9.113.0.203.{ZEN}", "A") in asked(world)


async def test_ipv4_client_not_listed() -> None:
    world = make_world(on_zen("127.0.0.2"))
    assert await run(zen(), world, session=make_session("203.0.113.10")) is None
    assert asked(world) == [(f"10.113.0.203.{ZEN}", "A")]


async def test_ipv6_client_listed_under_its_nibbles() -> None:
    world = make_world({f"{NIBBLES_V6}.{ZEN}": {"A": "127.0.0.3"}})
    verdict = listed(await run(zen(), world, session=make_session(CLIENT_V6)))
    assert verdict.reply is not None
    assert verdict.reply.render() == (
        "554 5.7.1 Service unavailable; Client host [2001:db8::9] blocked using zen.spamhaus.org"
    )
    assert asked(world)[0] == (f"{NIBBLES_V6}.{ZEN}", "A")


async def test_ipv6_client_not_listed() -> None:
    world = make_world({f"{NIBBLES_V6}.{ZEN}": {"A": "127.0.0.3"}})
    assert await run(zen(), world, session=make_session("2001:db8::a")) is None


async def test_ipv4_mapped_client_is_looked_up_as_ipv4() -> None:
    world = make_world(on_zen("127.0.0.2"))
    listed(await run(zen(), world, session=make_session("::ffff:203.0.113.9")))


# -- TXT ----------------------------------------------------------------------------------


async def test_txt_is_appended_to_the_default_reply() -> None:
    world = make_world(on_zen("127.0.0.2", SBL_TXT))
    verdict = listed(await run(zen(), world))
    assert verdict.reply is not None
    assert verdict.reply.render() == (
        "554 5.7.1 Service unavailable; Client host [203.0.113.9] blocked using "
        f"zen.spamhaus.org; {SBL_TXT}"
    )
    assert verdict.details["txt"] == SBL_TXT


async def test_several_txt_records_are_joined_and_cut_at_500() -> None:
    world = make_world(on_zen("127.0.0.2", ["first", "second"]))
    verdict = listed(await run(zen(), world))
    assert verdict.details["txt"] in ("first / second", "second / first")
    long = make_world(on_zen("127.0.0.2", ["x" * 300, "y" * 300]))
    txt = listed(await run(zen(), long)).details["txt"]
    assert isinstance(txt, str)
    assert len(txt) == 500


async def test_txt_is_asked_only_after_a_hit() -> None:
    world = make_world(on_zen("127.0.0.2", SBL_TXT))
    listed(await run(zen(), world))
    assert asked(world) == [(f"9.113.0.203.{ZEN}", "A"), (f"9.113.0.203.{ZEN}", "TXT")]

    not_listed = make_world(on_zen("127.0.0.2", SBL_TXT))
    assert await run(zen(), not_listed, session=make_session("203.0.113.10")) is None
    assert [t for _, t in asked(not_listed)] == ["A"]

    # An answer the codes do not count is no hit either: no TXT.
    filtered = make_world(on_zen("127.0.0.2", SBL_TXT))
    assert await run(policy(zones=[{"zone": ZEN, "codes": ["127.0.0.10"]}]), filtered) is None
    assert [t for _, t in asked(filtered)] == ["A"]


async def test_a_failing_txt_lookup_leaves_the_reply_without_reason() -> None:
    world = make_world(on_zen("127.0.0.2", SBL_TXT))
    assert isinstance(world.dns, RecordingDNS)
    world.dns.fail_txt = True
    verdict = listed(await run(zen(), world))
    assert verdict.reply is not None
    assert verdict.reply.render().endswith("blocked using zen.spamhaus.org")


# -- return codes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "inside", "outside"),
    [
        ("127.0.0.2", ["127.0.0.2"], ["127.0.0.3", "127.0.0.1"]),
        ("127.0.0.2-127.0.0.11", ["127.0.0.2", "127.0.0.7", "127.0.0.11"], ["127.0.0.12"]),
        ("127.0.0.0/24", ["127.0.0.0", "127.0.0.255"], ["127.0.1.0"]),
        ("127.0.0.[2..11]", ["127.0.0.2", "127.0.0.11"], ["127.0.0.1", "127.0.0.12"]),
        ("127.0.0.[2;4;10..11]", ["127.0.0.2", "127.0.0.4", "127.0.0.10"], ["127.0.0.3"]),
        (" 127.0.1.[2..99] ", ["127.0.1.2", "127.0.1.99"], ["127.0.0.2", "127.0.1.100"]),
    ],
)
def test_code_forms(spec: str, inside: list[str], outside: list[str]) -> None:
    codes = CodeSet.parse([spec])
    assert all(ipaddress.IPv4Address(a) in codes for a in inside)
    assert not any(ipaddress.IPv4Address(a) in codes for a in outside)


@pytest.mark.parametrize(
    "spec",
    [
        "127.0.0",
        "127.0.0.256",
        "127.0.0.11-127.0.0.2",
        "127.0.0.1/24",
        "127.0.0.[11..2]",
        "127.0.0.[2..300]",
        "127.0.0.[]",
        "127.0.[0..1].2",
        "::1",
        "listed",
    ],
)
def test_bad_code_forms(spec: str) -> None:
    with pytest.raises(ValueError, match="bad return code"):
        CodeSet.parse([spec])


async def test_codes_filter_the_answers() -> None:
    pbl_only = policy(zones=[{"zone": ZEN, "codes": ["127.0.0.10-127.0.0.11"]}])
    assert await run(pbl_only, make_world(on_zen("127.0.0.2"))) is None
    listed(await run(pbl_only, make_world(on_zen("127.0.0.11"))))
    # One counted answer among several is enough.
    listed(await run(pbl_only, make_world(on_zen(["127.0.0.2", "127.0.0.10"]))))


async def test_answers_outside_127_do_not_count_by_default() -> None:
    assert await run(zen(), make_world(on_zen("192.0.2.1"))) is None
    listed(
        await run(
            policy(zones=[{"zone": ZEN, "codes": ["0.0.0.0/0"]}]), make_world(on_zen("192.0.2.1"))
        )
    )


async def test_a_reply_per_code_range_asks_the_zone_once() -> None:
    p = policy(
        zones=[
            {
                "zone": ZEN,
                "codes": ["127.0.0.[2..9]"],
                "reply": "554 5.7.1 {ip} on {zone} ({code})",
            },
            {
                "zone": ZEN,
                "codes": ["127.0.0.[10..11]"],
                "reply": "550 5.7.1 {ip} is end-user space",
            },
        ]
    )
    sbl = make_world(on_zen("127.0.0.3"))
    verdict = listed(await run(p, sbl))
    assert verdict.reply is not None
    assert verdict.reply.render() == "554 5.7.1 203.0.113.9 on zen.spamhaus.org (127.0.0.3)"
    pbl = make_world(on_zen("127.0.0.10"))
    verdict = listed(await run(p, pbl))
    assert verdict.reply is not None
    assert verdict.reply.render() == "550 5.7.1 203.0.113.9 is end-user space"
    assert asked(pbl).count((f"9.113.0.203.{ZEN}", "A")) == 1


async def test_zones_are_judged_in_order() -> None:
    world = make_world({**on_zen("127.0.0.2"), "9.113.0.203.bl.spamcop.net": {"A": "127.0.0.2"}})
    p = policy(zones=[{"zone": "bl.spamcop.net"}, {"zone": ZEN}])
    assert listed(await run(p, world)).details["zone"] == "bl.spamcop.net"


# -- query refused -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        ("127.255.255.252", "typo in the DNSBL name"),
        ("127.255.255.254", "public or open resolver"),
        ("127.255.255.255", "excessive number of queries"),
    ],
)
async def test_query_refused_is_reported_never_rejected(code: str, meaning: str) -> None:
    world = make_world(on_zen(code))
    verdict = await run(zen(), world)
    assert verdict is not None
    assert verdict.outcome == "DNSBL_QUERY_REFUSED"
    assert verdict.action is Action.DUNNO
    assert verdict.reply is None
    assert meaning in verdict.reason
    assert verdict.details == {"refused": {f"9.113.0.203.{ZEN}": code}}
    assert [t for _, t in asked(world)] == ["A"]


async def test_query_refused_wins_over_a_code_filter_that_includes_it() -> None:
    p = policy(zones=[{"zone": ZEN, "codes": ["127.0.0.0/8"]}])
    verdict = await run(p, make_world(on_zen("127.255.255.254")))
    assert verdict is not None and verdict.action is Action.DUNNO


async def test_another_list_still_refuses_after_a_refused_query() -> None:
    world = make_world(
        {**on_zen("127.255.255.254"), "9.113.0.203.bl.spamcop.net": {"A": "127.0.0.2"}}
    )
    p = policy(zones=[{"zone": ZEN}, {"zone": "bl.spamcop.net"}])
    assert listed(await run(p, world)).details["zone"] == "bl.spamcop.net"


async def test_refused_codes_can_be_emptied() -> None:
    listed(await run(zen(refused_codes=[]), make_world(on_zen("127.255.255.254"))))


# -- lookup failures -----------------------------------------------------------------------


@pytest.mark.parametrize("script", ["servfail", "timeout"])
async def test_failure_counts_as_not_listed_by_default(script: str) -> None:
    world = failing_zen(script)
    verdict = await run(zen(), world)
    assert verdict is not None
    assert verdict.outcome == "DNSBL_LOOKUP_FAILED"
    assert verdict.action is Action.DUNNO
    assert verdict.reply is None
    assert verdict.details == {"failed": {f"9.113.0.203.{ZEN}": script}}
    assert "defer_on_error is off" in verdict.reason


@pytest.mark.parametrize("script", ["servfail", "timeout"])
async def test_failure_defers_with_defer_on_error(script: str) -> None:
    world = failing_zen(script)
    verdict = await run(zen(defer_on_error=True), world)
    assert verdict is not None
    assert verdict.outcome == "DNSBL_TEMPFAIL"
    assert verdict.action is Action.DEFER
    assert verdict.reply is not None
    assert verdict.reply.render() == "451 4.7.0 DNS error during policy check"
    assert verdict.details == {
        "zone": ZEN,
        "query": f"9.113.0.203.{ZEN}",
        "failure": script,
    }


async def test_defer_on_error_changes_nothing_when_the_list_answers() -> None:
    listed(await run(zen(defer_on_error=True), make_world(on_zen("127.0.0.2"))))
    assert await run(zen(defer_on_error=True), make_world()) is None


async def test_a_listing_wins_over_a_failure() -> None:
    world = make_world({"9.113.0.203.bl.spamcop.net": {"A": "127.0.0.2"}}, servfail=[f"*.{ZEN}"])
    p = policy(zones=[{"zone": ZEN}, {"zone": "bl.spamcop.net"}], defer_on_error=True)
    assert listed(await run(p, world)).details["zone"] == "bl.spamcop.net"


async def test_tempfail_reply_can_be_overridden() -> None:
    reply = Reply.parse("450 4.7.1 {zone} did not answer for {query} ({failure})")
    Dnsbl.validate_reply("DNSBL_TEMPFAIL", reply)
    p = policy(replies={"DNSBL_TEMPFAIL": reply}, zones=[{"zone": ZEN}], defer_on_error=True)
    verdict = await run(p, make_world(servfail=[f"*.{ZEN}"]))
    assert verdict is not None and verdict.reply is not None
    assert verdict.reply.render() == (
        f"450 4.7.1 zen.spamhaus.org did not answer for 9.113.0.203.{ZEN} (servfail)"
    )


# -- domain lists --------------------------------------------------------------------------


def rhsbl(*checks: str, **extra: Any) -> Dnsbl:
    return policy(rhsbl=[{"zone": DBL, "check": c} for c in checks], **extra)


DBL_WORLD = {
    f"bad.example.{DBL}": {
        "A": "127.0.1.2",
        "TXT": "https://www.spamhaus.org/query/domain/bad.example",
    },
}


async def test_helo_name_listed() -> None:
    world = make_world(DBL_WORLD)
    verdict = listed(
        await run(rhsbl("helo"), world, Stage.HELO, make_session(helo="bad.example")),
        "RHSBL_HELO_LISTED",
    )
    assert verdict.stage is Stage.HELO
    assert verdict.reply is not None
    assert verdict.reply.render() == (
        "554 5.7.1 Service unavailable; Helo command [bad.example] blocked using "
        "dbl.spamhaus.org; https://www.spamhaus.org/query/domain/bad.example"
    )
    assert verdict.details["domain"] == "bad.example"


async def test_helo_name_is_normalised() -> None:
    world = make_world(DBL_WORLD)
    verdict = await run(rhsbl("helo"), world, Stage.HELO, make_session(helo="BAD.Example."))
    assert listed(verdict, "RHSBL_HELO_LISTED").details["domain"] == "bad.example"


@pytest.mark.parametrize("helo", ["good.example", "[192.0.2.1]", "192.0.2.1", "", None])
async def test_helo_not_listed_or_not_a_name(helo: str | None) -> None:
    world = make_world(DBL_WORLD)
    assert await run(rhsbl("helo"), world, Stage.HELO, make_session(helo=helo)) is None
    if helo != "good.example":
        assert asked(world) == []


async def test_sender_domain_listed() -> None:
    world = make_world(DBL_WORLD)
    verdict = listed(
        await run(rhsbl("sender"), world, Stage.MAIL, make_session(mail_from="eve@bad.example")),
        "RHSBL_SENDER_LISTED",
    )
    assert verdict.stage is Stage.MAIL
    assert verdict.reply is not None
    assert verdict.reply.render() == (
        "554 5.7.1 Service unavailable; Sender address [bad.example] blocked using "
        "dbl.spamhaus.org; https://www.spamhaus.org/query/domain/bad.example"
    )


@pytest.mark.parametrize("sender", ["alice@good.example", "", "postmaster", "a@[192.0.2.1]"])
async def test_sender_not_listed_or_without_a_domain(sender: str) -> None:
    world = make_world(DBL_WORLD)
    assert await run(rhsbl("sender"), world, Stage.MAIL, make_session(mail_from=sender)) is None


async def test_each_domain_list_runs_only_at_its_stage() -> None:
    world = make_world(DBL_WORLD)
    session = make_session(helo="bad.example", mail_from="eve@bad.example")
    assert await run(rhsbl("helo"), world, Stage.MAIL, session) is None
    assert await run(rhsbl("sender"), world, Stage.HELO, session) is None
    assert await run(rhsbl("helo", "sender"), world, Stage.CONNECT, session) is None
    assert asked(world) == []
    # and client lists only at CONNECT
    assert await run(zen(), world, Stage.HELO, session) is None
    assert asked(world) == []


async def test_domain_list_reply_may_name_the_domain() -> None:
    p = policy(
        rhsbl=[
            {"zone": DBL, "check": "sender", "reply": "550 5.7.1 <{sender}>: {domain} is on {zone}"}
        ]
    )
    session = make_session(mail_from="eve@bad.example")
    verdict = listed(
        await run(p, make_world(DBL_WORLD), Stage.MAIL, session), "RHSBL_SENDER_LISTED"
    )
    assert verdict.reply is not None
    assert (
        verdict.reply.render() == "550 5.7.1 <eve@bad.example>: bad.example is on dbl.spamhaus.org"
    )


# -- allow lists ---------------------------------------------------------------------------

DNSWL = "list.dnswl.org"


def allow_world(**more: Any) -> World:
    return make_world(
        {**on_zen("127.0.0.2"), f"9.113.0.203.{DNSWL}": {"A": "127.0.10.2"}, **DBL_WORLD}, **more
    )


async def test_allow_list_permits() -> None:
    p = policy(allow=[{"zone": DNSWL}], zones=[{"zone": ZEN}])
    verdict = await run(p, allow_world())
    assert verdict is not None
    assert verdict.outcome == "DNSWL_PERMIT"
    assert verdict.action is Action.PERMIT
    assert verdict.reply is None
    assert verdict.details == {"zone": DNSWL, "query": f"9.113.0.203.{DNSWL}", "code": "127.0.10.2"}


async def test_allow_list_alone_permits_at_connect() -> None:
    verdict = await run(policy(allow=[{"zone": DNSWL}]), allow_world())
    assert verdict is not None and verdict.action is Action.PERMIT
    assert await run(policy(allow=[{"zone": DNSWL}]), allow_world(), Stage.HELO) is None


async def test_client_not_on_the_allow_list_is_judged() -> None:
    p = policy(allow=[{"zone": DNSWL}], zones=[{"zone": ZEN}])
    world = make_world({**on_zen("127.0.0.2"), f"10.113.0.203.{DNSWL}": {"A": "127.0.10.2"}})
    listed(await run(p, world))


async def test_allow_list_codes_filter() -> None:
    p = policy(allow=[{"zone": DNSWL, "codes": ["127.0.10.3"]}], zones=[{"zone": ZEN}])
    listed(await run(p, allow_world()))


async def test_allow_list_permits_at_the_domain_stages_too() -> None:
    p = policy(allow=[{"zone": DNSWL}], rhsbl=[{"zone": DBL, "check": "helo"}])
    verdict = await run(p, allow_world(), Stage.HELO, make_session(helo="bad.example"))
    assert verdict is not None and verdict.action is Action.PERMIT


async def test_failing_allow_list_never_defers() -> None:
    p = policy(allow=[{"zone": DNSWL}], zones=[{"zone": ZEN}], defer_on_error=True)
    listed(await run(p, allow_world(servfail=[f"*.{DNSWL}"])))
    clean = make_world(servfail=[f"*.{DNSWL}"])
    verdict = await run(p, clean)
    assert verdict is not None
    assert verdict.outcome == "DNSBL_LOOKUP_FAILED"
    assert "allow list never defers" in verdict.reason


async def test_allow_permit_stops_later_policies_at_the_stage() -> None:
    world = allow_world()
    history = ClientHistory()
    history.add(ERROR_EVENT, CLIENT, world.clock.monotonic())
    limits = SessionLimits(SessionLimitsOptions(max_errors_per_client=1))
    chain: list[Policy[Any]] = [policy(allow=[{"zone": DNSWL}]), limits]
    engine = Engine({Stage.CONNECT: chain}, EngineSettings(delay_reject=False))
    decision = await engine.run(Stage.CONNECT, make_session(), make_ctx(world, history))
    assert decision.reply is None
    assert [(v.policy, v.action) for v in decision.verdicts] == [("dnsbl", Action.PERMIT)]

    # control: a client not on the allow list meets the next policy
    history.add(ERROR_EVENT, "203.0.113.10", world.clock.monotonic())
    other = make_session("203.0.113.10")
    decision = await engine.run(Stage.CONNECT, other, make_ctx(world, history))
    assert decision.sent is not None
    assert decision.sent.outcome == "TOO_MANY_ERRORS_FROM_IP"


# -- delay_reject and the postmaster exemption ---------------------------------------------


async def test_listing_is_delayed_to_rcpt_and_postmaster_is_accepted() -> None:
    world = make_world(on_zen("127.0.0.2", SBL_TXT))
    chain: list[Policy[Any]] = [zen()]
    engine = Engine({Stage.CONNECT: chain}, EngineSettings(delay_reject=True))
    session = make_session()
    ctx = make_ctx(world)
    assert (await engine.run(Stage.CONNECT, session, ctx)).reply is None
    for rcpt in ("postmaster@strictmx.test", "Abuse@strictmx.test"):
        session.rcpt = rcpt
        assert (await engine.run(Stage.RCPT, session, ctx)).reply is None
    session.rcpt = "bob@strictmx.test"
    decision = await engine.run(Stage.RCPT, session, ctx)
    assert decision.reply is not None
    assert decision.reply.code == 554
    assert decision.sent is not None and decision.sent.stage is Stage.CONNECT


# -- RFC 5782 test points in the bundled world ---------------------------------------------


def bundled(name: str) -> tuple[Dnsbl, World]:
    loaded = scenarios.load(name)
    entry = next(e for e in loaded.entries if e.cls is Dnsbl)
    instance = entry.instantiate()
    assert isinstance(instance, Dnsbl)
    return instance, World.from_config(loaded.world)


async def test_rfc5782_test_points_in_the_bundled_world() -> None:
    p, world = bundled("dnsbl-spamhaus")
    verdict = listed(await run(p, world, session=make_session("127.0.0.2")))
    assert verdict.details["code"] == "127.0.0.2"
    assert await run(p, world, session=make_session("127.0.0.1")) is None
    listed(
        await run(p, world, Stage.HELO, make_session("127.0.0.1", helo="test")),
        "RHSBL_HELO_LISTED",
    )
    assert await run(p, world, Stage.HELO, make_session("127.0.0.1", helo="invalid")) is None


# -- replies -------------------------------------------------------------------------------


async def test_scenario_reply_override() -> None:
    reply = Reply.parse("550 Blocked - see http://www.spamcop.net/bl.shtml?{ip}")
    Dnsbl.validate_reply("DNSBL_LISTED", reply)
    p = policy(replies={"DNSBL_LISTED": reply}, zones=[{"zone": ZEN}])
    verdict = listed(await run(p, make_world(on_zen("127.0.0.2"))))
    assert verdict.reply is not None
    assert verdict.reply.render() == "550 Blocked - see http://www.spamcop.net/bl.shtml?203.0.113.9"


async def test_zone_reply_beats_the_scenario_override() -> None:
    override = Reply.parse("550 overridden")
    p = policy(
        replies={"DNSBL_LISTED": override},
        zones=[{"zone": ZEN, "reply": "553 5.7.1 [{ip}] is on {zone}"}],
    )
    verdict = listed(await run(p, make_world(on_zen("127.0.0.2"))))
    assert verdict.reply is not None
    assert verdict.reply.render() == "553 5.7.1 [203.0.113.9] is on zen.spamhaus.org"


async def test_exim_two_line_reply() -> None:
    p = policy(
        zones=[
            {
                "zone": ZEN,
                "reply": ["550-rejected because {ip} is in a black list at {zone}", "550 {txt}"],
            }
        ]
    )
    verdict = listed(await run(p, make_world(on_zen("127.0.0.2", SBL_TXT))))
    assert verdict.reply is not None
    assert verdict.reply.wire_lines(enhanced=False) == [
        "550-rejected because 203.0.113.9 is in a black list at zen.spamhaus.org",
        f"550 {SBL_TXT}",
    ]


async def test_zone_reply_with_a_temporary_code_defers() -> None:
    p = policy(zones=[{"zone": ZEN, "reply": "450 4.7.1 {ip} listed on {zone}, try later"}])
    verdict = await run(p, make_world(on_zen("127.0.0.2")))
    assert verdict is not None
    assert verdict.outcome == "DNSBL_LISTED"
    assert verdict.action is Action.DEFER


# -- options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "at least one list"),
        ({"zones": []}, "at least one list"),
        ({"zones": [{"zone": ""}]}, "empty domain name"),
        ({"zones": [{"zone": "a..b"}]}, "not a domain name"),
        ({"zones": [{"zone": "."}]}, "not the root"),
        ({"zones": [{}]}, "Field required"),
        ({"zones": [{"zone": ZEN, "codes": []}]}, "at least 1 item"),
        ({"zones": [{"zone": ZEN, "codes": ["127.0.0.[9..2]"]}]}, "bad return code"),
        ({"zones": [{"zone": ZEN, "reply": "554 {domain} listed"}]}, "unknown placeholder"),
        ({"zones": [{"zone": ZEN, "reply": "250 fine"}]}, "4xx or 5xx"),
        ({"zones": [{"zone": ZEN, "reply": "listed"}]}, "must start with"),
        ({"zones": [{"zone": ZEN, "reply": "554 5.7.1 {"}]}, "bad placeholder"),
        ({"zones": [{"zone": ZEN, "check": "helo"}]}, "Extra inputs"),
        ({"rhsbl": [{"zone": DBL}]}, "Field required"),
        ({"rhsbl": [{"zone": DBL, "check": "client"}]}, "'helo' or 'sender'"),
        ({"allow": [{"zone": DNSWL, "reply": "550 no"}]}, "Extra inputs"),
        ({"zones": [{"zone": ZEN}], "refused_codes": ["x"]}, "bad return code"),
        ({"zones": [{"zone": ZEN}], "weight": 2}, "Extra inputs"),
    ],
)
def test_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DnsblOptions.model_validate(options)


def test_zone_names_are_normalised() -> None:
    options = DnsblOptions.model_validate({"zones": [{"zone": "ZEN.Spamhaus.org."}]})
    assert options.zones[0].zone == "zen.spamhaus.org"
    assert options.zones[0].codes == ["127.0.0.0/8"]
    assert options.refused_codes == ["127.255.255.0/24"]
    assert options.defer_on_error is False


def test_scenario_errors_name_the_key_path() -> None:
    text = (
        "policies:\n"
        "  connect:\n"
        "    - policy: dnsbl\n"
        "      zones:\n"
        "        - zone: zen.spamhaus.org\n"
        "          reply: '554 {nope}'\n"
    )
    where = r":6 policies\.connect\[0\]\.zones\[0\]\.reply: unknown placeholder \{nope\}"
    with pytest.raises(scenarios.ScenarioError, match=where):
        scenarios.loads(text)
