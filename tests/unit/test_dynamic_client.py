from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from pydantic import ValidationError

from strictmx.policies import BUILTIN
from strictmx.policies.dynamic_client import (
    DynamicClient,
    DynamicClientOptions,
    embedded_form,
    sender_domain,
)
from strictmx.receiver.policy import Context
from strictmx.receiver.session import Client, Session
from strictmx.receiver.verdict import Action, Reply, ReplyError, Stage, Verdict
from strictmx.receiver.world.names import dnsbl_prefix

from .worlds import make_ctx, objection_by, wire

V4 = "203.0.113.9"
V6 = "2001:db8::25"
V4_REVERSE = "9.113.0.203.in-addr.arpa"
V6_REVERSE_ZONE = "*.8.b.d.0.1.0.0.2.ip6.arpa"
V6_NIBBLES = ".".join(reversed(f"{int(ipaddress.IPv6Address(V6)):032x}"))
ZEN = "zen.spamhaus.org"
HARAKA = "554 5.7.1 client {ptr} [{ip}] rejected; generic rDNS, please use your ISPs SMTP relay"


def failing(
    kind: str,
    *names: str,
    records: dict[str, Any] | None = None,
    ptr: dict[str, Any] | None = None,
) -> Context:
    """A world whose `names` answer with `kind` (servfail or timeout)."""
    if kind == "servfail":
        return make_ctx(records, ptr, servfail=names)
    return make_ctx(records, ptr, timeout=names)


def make_session(
    address: str = V4,
    *,
    name: str | None = None,
    helo: str | None = "mail.example.net",
    mail_from: str | None = None,
) -> Session:
    session = Session(Client("127.0.0.1", address=address, name=name))
    session.helo = helo
    session.mail_from = mail_from
    return session


def policy(replies: dict[str, str] | None = None, **options: Any) -> DynamicClient:
    parsed = {k: Reply.parse(v) for k, v in (replies or {}).items()}
    for outcome_id, reply in parsed.items():
        DynamicClient.validate_reply(outcome_id, reply)
    return DynamicClient(DynamicClientOptions(**options), replies=parsed)


async def run(
    ctx: Context,
    session: Session | None = None,
    *,
    stage: Stage = Stage.CONNECT,
    replies: dict[str, str] | None = None,
    **options: Any,
) -> Verdict | None:
    return await policy(replies, **options).check(stage, session or make_session(), ctx)


def objection(verdict: Verdict | None, outcome: str) -> Verdict:
    return objection_by("dynamic_client", verdict, outcome)


def ptr_world(name: str, address: str = V4, **records: Any) -> Context:
    return make_ctx(records, {address: name})


# -- shape and options -------------------------------------------------------------------------


def test_registered_and_staged() -> None:
    assert DynamicClient in BUILTIN
    assert DynamicClient.stages == {Stage.CONNECT, Stage.HELO, Stage.MAIL}
    for outcome in DynamicClient.outcomes:
        DynamicClient.validate_reply(outcome.id, outcome.default_reply())
        assert outcome.doc
    rfc = {o.id: o.rfc_allows for o in DynamicClient.outcomes}
    assert rfc == {
        "GENERIC_PTR": True,
        "DYNAMIC_PTR": True,
        "POLICY_BLOCK_LISTED": True,
        "DYNAMIC_HELO": False,  # RFC 5321 §4.1.4
        "DYNAMIC_UNKNOWN_SENDER_DOMAIN": True,
        "DNS_TEMPFAIL": True,
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"patterns": ["dyn(amic"]}, "bad regular expression 'dyn(amic'"),
        ({"dynamic_tokens": ["dsl", "dsl-pool"]}, "'dsl-pool' is not a word of letters"),
        ({"static_tokens": ["mx1"]}, "'mx1' is not a word of letters"),
        ({"pbl_codes": ["127.0.0.10", "10.0.0.1"]}, "not in 127.0.0.0/8"),
        ({"pbl_codes": ["::1"]}, "not an IPv4 address"),
        ({"pbl_zones": ["bad..zone"]}, "not a domain name"),
        ({"on_dns_tempfail": "reject"}, "on_dns_tempfail"),
        ({"check_rdns": True}, "check_rdns"),
    ],
)
def test_bad_options_fail_at_load(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(".", r"\.")):
        DynamicClientOptions(**options)


def test_options_are_normalised() -> None:
    options = DynamicClientOptions(
        dynamic_tokens=["DSL", "Pool"], pbl_zones=["PBL.Spamhaus.ORG."], pbl_codes=["127.0.0.10"]
    )
    assert options.dynamic_tokens == ("dsl", "pool")
    assert options.pbl_zones == ("pbl.spamhaus.org",)
    assert options.pbl_codes == ("127.0.0.10",)


# -- how a host part spells the address ------------------------------------------------------

IP4 = ipaddress.IPv4Address(V4)
IP6 = ipaddress.IPv6Address(V6)


@pytest.mark.parametrize(
    ("host", "form"),
    [
        ("203-0-113-9", "in order"),
        ("c-203-0-113-9.hsd1.ca", "in order"),
        ("ip203.000.113.009", "in order"),
        ("host203x0x113x9", "in order"),
        ("9-113-0-203", "reversed"),
        ("9.113.0.203.broadband", "reversed"),
        ("203000113009", "as twelve zero-padded digits"),
        ("009113000203", "as twelve zero-padded digits"),
        (f"h{int(IP4)}", "as one decimal number"),
        ("cb007109.pool", "as eight hex digits"),
        ("0xcb007109", "as eight hex digits"),
        ("cb-00-71-09", "as eight hex digits"),
        ("198-51-100-7", None),
        ("203-0-113", None),
        ("203-0-113-10", None),
        ("mail", None),
        ("", None),
    ],
)
def test_ipv4_forms(host: str, form: str | None) -> None:
    assert embedded_form(host, IP4) == form


@pytest.mark.parametrize(
    ("host", "form"),
    [
        ("2001-db8--25", "as IPv6 groups"),
        ("2001-0db8-0000-0000-0000-0000-0000-0025", "as 32 hex digits"),
        ("v6.2001-db8-0-0-0-0-0-25", "as IPv6 groups"),
        ("20010db8000000000000000000000025", "as 32 hex digits"),
        ("2001-0db8-0000-0000-00000000-00000025x", "as 32 hex digits"),
        (V6_NIBBLES, "as reversed nibbles"),
        ("2001-db8--26", None),
        ("2001-db8", None),
        ("mail6", None),
    ],
)
def test_ipv6_forms(host: str, form: str | None) -> None:
    assert embedded_form(host, IP6) == form


def test_reversed_address_is_the_dnsbl_prefix() -> None:
    assert dnsbl_prefix(IP4) == "9.113.0.203"
    assert dnsbl_prefix(IP6) == V6_NIBBLES
    assert V6_NIBBLES.startswith("5.2.0.0.") and V6_NIBBLES.endswith(".8.b.d.0.1.0.0.2")


@pytest.mark.parametrize(
    ("mail_from", "domain"),
    [
        ("alice@Example.NET", "example.net"),
        ("alice@example.net.", "example.net"),
        ('"a@b"@example.net', "example.net"),
        ("", None),
        (None, None),
        ("postmaster", None),
        ("alice@[203.0.113.9]", None),
        ("alice@", None),
    ],
)
def test_sender_domain(mail_from: str | None, domain: str | None) -> None:
    assert sender_domain(mail_from) == domain


# -- the client's host name --------------------------------------------------------------------

GEN = "GENERIC_PTR"
DYN = "DYNAMIC_PTR"

# PTR name of the client, then the outcome with the default options.
NAMES_V4: list[tuple[str, str | None]] = [
    ("203-0-113-9.dyn.example.net", GEN),
    ("c-203-0-113-9.hsd1.ca.example.net", GEN),
    ("host-9-113-0-203.example.net", GEN),
    ("cb007109.example.net", GEN),
    ("pool-198-51-100-7.dsl.example.net", DYN),
    ("198-51-100-7.dyn.example.net", DYN),
    ("adsl-1.example.net", DYN),
    ("dialup42.example.net", DYN),
    ("ppp12.res.example.co.uk", DYN),
    ("cpe-1-2.example.co.uk", DYN),
    ("DSL-1.Example.NET.", DYN),
    ("x.dynamic.example.net", DYN),
    # static ranges and mail servers are exempt (SpamAssassin __RDNS_STATIC, Haraka)
    ("static-203-0-113-9.example.net", None),
    ("203-0-113-9.static.example.net", None),
    ("203-0-113-9.business.example.net", None),
    ("mail.203-0-113-9.example.net", None),
    ("smtp2.dsl.example.net", None),
    ("mx1.pool.example.net", None),
    ("fixed-ip.cable.example.net", None),
    # the ISP's own domain (the last two labels) is not judged
    ("mx.dslextreme.com", None),
    ("host.dsl.net", None),
    ("dsl.example.net", DYN),
    ("203-0-113-9.net", None),
    # whole words only; four numbers that are not the client's address do not count
    ("prefix.example.net", None),
    ("resource.example.net", None),
    ("198-51-100-7.example.net", None),
    ("mail.example.net", None),
]


@pytest.mark.parametrize(("name", "expected"), NAMES_V4)
async def test_ipv4_ptr_names(name: str, expected: str | None) -> None:
    verdict = await run(ptr_world(name))
    got = None if verdict is None else verdict.outcome
    assert got == expected, verdict.reason if verdict else "passed"


NAMES_V6: list[tuple[str, str | None]] = [
    ("2001-db8--25.v6.example.net", GEN),
    ("20010db8000000000000000000000025.example.net", GEN),
    (f"{V6_NIBBLES}.ip6.example.net", GEN),
    ("cable-7.example.net", DYN),
    ("static.2001-db8--25.example.net", None),
    ("2001-db8--26.v6.example.net", None),
    ("mail6.example.net", None),
]


@pytest.mark.parametrize(("name", "expected"), NAMES_V6)
async def test_ipv6_ptr_names(name: str, expected: str | None) -> None:
    verdict = await run(ptr_world(name, V6), make_session(V6))
    got = None if verdict is None else verdict.outcome
    assert got == expected, verdict.reason if verdict else "passed"


@pytest.mark.parametrize(
    ("address", "name"),
    [(V4, "203-0-113-9.dyn.example.net"), (V6, "2001-db8--25.v6.example.net")],
)
async def test_generic_ptr_reply(address: str, name: str) -> None:
    verdict = objection(await run(ptr_world(name, address), make_session(address)), GEN)
    assert verdict.action is Action.REJECT
    assert verdict.stage is Stage.CONNECT
    assert verdict.rfc_compliant
    assert verdict.details["ptr"] == name
    assert f"holds the client address {address}" in verdict.reason
    assert wire(verdict) == (
        f"554 5.7.1 client {name} [{address}] rejected; generic rDNS, "
        "please use your ISPs SMTP relay"
    )


async def test_dynamic_ptr_names_the_word() -> None:
    verdict = objection(await run(ptr_world("x7.dsl.example.net")), DYN)
    assert verdict.details["match"] == "has the word 'dsl', which marks an end-user address"
    assert "the client's host name x7.dsl.example.net has the word 'dsl'" in verdict.reason


async def test_mapped_address_is_judged_as_ipv4() -> None:
    ctx = ptr_world("203-0-113-9.example.net")
    objection(await run(ctx, make_session("::ffff:203.0.113.9")), GEN)


async def test_only_the_first_ptr_name_is_judged() -> None:
    ctx = make_ctx(ptr={V4: ["mail.example.net", "203-0-113-9.dyn.example.net"]})
    assert await run(ctx) is None


async def test_no_ptr_is_not_this_policys_business() -> None:
    assert await run(make_ctx()) is None
    assert await run(make_ctx(), make_session(V6)) is None


@pytest.mark.parametrize("address", [V4, V6])
async def test_asserted_name_replaces_the_ptr(address: str) -> None:
    ctx = make_ctx(ptr={address: "mail.example.net"})
    session = make_session(address, name="Dsl-7.Example.NET")
    verdict = objection(await run(ctx, session), DYN)
    assert verdict.details["ptr"] == "dsl-7.example.net"
    assert await run(ctx, make_session(address, name="relay.example.net")) is None


@pytest.mark.parametrize("address", [V4, V6])
async def test_xclient_name_unavailable_leaves_no_name_to_judge(address: str) -> None:
    ctx = make_ctx(ptr={address: "dsl-7.example.net"})
    objection(await run(ctx, make_session(address)), DYN)  # the control: looked up
    session = make_session(address)
    session.client.name_status = "unavailable"
    assert await run(ctx, session) is None


async def test_check_ptr_off() -> None:
    ctx = ptr_world("203-0-113-9.dyn.example.net")
    assert await run(ctx, check_ptr=False) is None


async def test_embedded_address_off_keeps_the_words() -> None:
    assert await run(ptr_world("203-0-113-9.example.net"), embedded_address=False) is None
    objection(await run(ptr_world("203-0-113-9.dyn.example.net"), embedded_address=False), DYN)


async def test_own_token_lists() -> None:
    ctx = ptr_world("gw7.customers.example.net")
    assert await run(ctx) is None
    objection(await run(ctx, dynamic_tokens=["customers"]), DYN)
    assert await run(ptr_world("dsl-7.example.net"), dynamic_tokens=["customers"]) is None
    assert await run(ptr_world("dsl-7.office.example.net"), static_tokens=["office"]) is None


async def test_patterns_mark_a_name_dynamic() -> None:
    options: dict[str, Any] = {"patterns": [r"^h\d+-\d+\.", r"\.hsd\d\."]}
    verdict = objection(await run(ptr_world("H12-34.isp.example.net"), **options), DYN)
    assert "matches the dynamic pattern '^h\\\\d+-\\\\d+\\\\.'" in verdict.reason
    objection(await run(ptr_world("x.hsd1.example.net"), **options), DYN)
    assert await run(ptr_world("h12.example.net"), **options) is None
    # a static word exempts a name from the patterns too
    assert await run(ptr_world("static.hsd1.example.net"), **options) is None


@pytest.mark.parametrize("stage", [Stage.CONNECT, Stage.MAIL])
async def test_client_tests_run_at_connect_and_mail(stage: Stage) -> None:
    verdict = objection(await run(ptr_world("dsl-7.example.net"), stage=stage), DYN)
    assert verdict.stage is stage
    assert await run(ptr_world("dsl-7.example.net"), stage=Stage.HELO) is None


# -- policy block lists -----------------------------------------------------------------------


def pbl_world(
    answer: str | list[str], *, address: str = V4, zone: str = ZEN, txt: str | None = None
) -> Context:
    entry: dict[str, Any] = {"A": answer}
    if txt is not None:
        entry["TXT"] = txt
    return make_ctx({f"{dnsbl_prefix(ipaddress.ip_address(address))}.{zone}": entry})


@pytest.mark.parametrize("address", [V4, V6])
async def test_pbl_listing_with_txt(address: str) -> None:
    txt = f"https://www.spamhaus.org/query/ip/{address}"
    ctx = pbl_world("127.0.0.10", address=address, txt=txt)
    verdict = objection(
        await run(ctx, make_session(address), pbl_zones=[ZEN]), "POLICY_BLOCK_LISTED"
    )
    assert verdict.action is Action.REJECT
    assert verdict.details == {
        "zone": ZEN,
        "answer": "127.0.0.10",
        "txt": txt,
        "txt_suffix": f"; {txt}",
    }
    assert f"{address} is listed on {ZEN} as 127.0.0.10" in verdict.reason
    assert wire(verdict) == (
        f"554 5.7.1 Service unavailable; Client host [{address}] blocked using {ZEN}; {txt}"
    )


async def test_pbl_listing_without_txt() -> None:
    ctx = pbl_world("127.0.0.11", zone="pbl.spamhaus.org")
    verdict = objection(await run(ctx, pbl_zones=["pbl.spamhaus.org"]), "POLICY_BLOCK_LISTED")
    assert wire(verdict) == (
        f"554 5.7.1 Service unavailable; Client host [{V4}] blocked using pbl.spamhaus.org"
    )


@pytest.mark.parametrize("answer", ["127.0.0.2", "127.0.0.4", "127.255.255.254"])
async def test_other_answers_are_not_a_pbl_listing(answer: str) -> None:
    assert await run(pbl_world(answer), pbl_zones=[ZEN]) is None


async def test_one_pbl_code_among_several_answers() -> None:
    ctx = pbl_world(["127.0.0.4", "127.0.0.11"])
    verdict = objection(await run(ctx, pbl_zones=[ZEN]), "POLICY_BLOCK_LISTED")
    assert verdict.details["answer"] == "127.0.0.11"


async def test_own_pbl_codes() -> None:
    ctx = pbl_world("127.0.0.2", zone="dul.example.org")
    objection(
        await run(ctx, pbl_zones=["dul.example.org"], pbl_codes=["127.0.0.2"]),
        "POLICY_BLOCK_LISTED",
    )


async def test_second_zone_lists() -> None:
    ctx = pbl_world("127.0.0.10", zone="pbl.example.org")
    verdict = await run(ctx, pbl_zones=["pbl.example.com", "pbl.example.org"])
    assert objection(verdict, "POLICY_BLOCK_LISTED").details["zone"] == "pbl.example.org"


async def test_unlisted_and_no_zones() -> None:
    assert await run(make_ctx(), pbl_zones=[ZEN]) is None
    assert await run(pbl_world("127.0.0.10")) is None  # no zone configured


async def test_name_tests_come_before_the_lists() -> None:
    ctx = make_ctx({f"9.113.0.203.{ZEN}": {"A": "127.0.0.10"}}, {V4: "203-0-113-9.example.net"})
    objection(await run(ctx, pbl_zones=[ZEN]), GEN)
    objection(await run(ctx, pbl_zones=[ZEN], check_ptr=False), "POLICY_BLOCK_LISTED")


# -- temporary DNS failures -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["servfail", "timeout"])
@pytest.mark.parametrize(("address", "reverse"), [(V4, V4_REVERSE), (V6, V6_REVERSE_ZONE)])
async def test_ptr_failure_defers(kind: str, address: str, reverse: str) -> None:
    verdict = objection(await run(failing(kind, reverse), make_session(address)), "DNS_TEMPFAIL")
    assert verdict.action is Action.DEFER
    assert verdict.details["failure"] == kind
    assert "the PTR lookup of" in verdict.reason and f"({kind} on" in verdict.reason
    assert wire(verdict) == "451 4.7.0 DNS error during policy check"


@pytest.mark.parametrize("kind", ["servfail", "timeout"])
async def test_dnsbl_failure_defers(kind: str) -> None:
    ctx = failing(kind, f"*.{ZEN}", ptr={V4: "mail.example.net"})
    verdict = objection(await run(ctx, pbl_zones=[ZEN]), "DNS_TEMPFAIL")
    assert verdict.details == {"name": f"9.113.0.203.{ZEN}", "failure": kind}
    assert f"the {ZEN} lookup of {V4}" in verdict.reason


async def test_listing_wins_over_a_ptr_failure() -> None:
    ctx = make_ctx({f"9.113.0.203.{ZEN}": {"A": "127.0.0.10"}}, servfail=(V4_REVERSE,))
    objection(await run(ctx, pbl_zones=[ZEN]), "POLICY_BLOCK_LISTED")


async def test_a_dynamic_name_wins_over_a_dnsbl_failure() -> None:
    ctx = failing("servfail", f"*.{ZEN}", ptr={V4: "dsl-7.example.net"})
    objection(await run(ctx, pbl_zones=[ZEN]), DYN)


async def test_ignore_tempfail_passes() -> None:
    assert await run(failing("servfail", V4_REVERSE), on_dns_tempfail="ignore") is None
    # ... yet still refuses what it found
    ctx = make_ctx({f"9.113.0.203.{ZEN}": {"A": "127.0.0.10"}}, servfail=(V4_REVERSE,))
    objection(await run(ctx, pbl_zones=[ZEN], on_dns_tempfail="ignore"), "POLICY_BLOCK_LISTED")


# -- the HELO name ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "helo"),
    [
        (V4, "203-0-113-9.dyn.example.net"),
        (V4, "dsl-7.example.net"),
        (V6, "2001-db8--25.v6.example.net"),
        (V6, "cable-7.example.net"),
    ],
)
async def test_dynamic_helo(address: str, helo: str) -> None:
    session = make_session(address, helo=helo)
    verdict = objection(
        await run(make_ctx(), session, stage=Stage.HELO, check_helo=True), "DYNAMIC_HELO"
    )
    assert verdict.action is Action.REJECT
    assert verdict.stage is Stage.HELO
    assert not verdict.rfc_compliant
    assert verdict.reason.startswith(f"the HELO name {helo} ")
    assert wire(verdict) == "550 5.7.1 HELO is dynamic"


@pytest.mark.parametrize(
    "helo",
    [
        "mail.example.net",
        "static-203-0-113-9.example.net",
        "[203.0.113.9]",
        "203.0.113.9",
        "",
        None,
    ],
)
async def test_helo_controls(helo: str | None) -> None:
    session = make_session(helo=helo)
    assert await run(make_ctx(), session, stage=Stage.HELO, check_helo=True) is None


async def test_helo_test_is_off_by_default_and_only_at_helo() -> None:
    session = make_session(helo="dsl-7.example.net")
    assert await run(make_ctx(), session, stage=Stage.HELO) is None
    assert await run(make_ctx(), session, stage=Stage.CONNECT, check_helo=True) is None


# -- dynamic client and an unknown sender domain ------------------------------------------------

COMBINED = "DYNAMIC_UNKNOWN_SENDER_DOMAIN"
SENDER_RECORDS = {
    "example.net": {"MX": "10 mail.example.net."},
    "a-only.example": {"A": "192.0.2.1"},
    "v6-only.example": {"AAAA": "2001:db8::1"},
    "null-mx.example": {"MX": "0 ."},
    "txt-only.example": {"TXT": "v=spf1 -all"},
}


def sender_world(name: str, address: str = V4, **extra: Any) -> Context:
    return make_ctx({**SENDER_RECORDS, **extra}, {address: name})


async def at_mail(
    ctx: Context, mail_from: str, address: str = V4, **options: Any
) -> Verdict | None:
    session = make_session(address, mail_from=mail_from)
    return await run(ctx, session, stage=Stage.MAIL, require_unknown_sender_domain=True, **options)


@pytest.mark.parametrize(
    ("address", "name"),
    [(V4, "203-0-113-9.dyn.example.net"), (V6, "cable-7.example.net")],
)
async def test_dynamic_client_with_missing_domain(address: str, name: str) -> None:
    ctx = sender_world(name, address)
    verdict = objection(await at_mail(ctx, "alice@nowhere.example", address), COMBINED)
    assert verdict.action is Action.DEFER
    assert verdict.stage is Stage.MAIL
    assert verdict.details == {"domain": "nowhere.example", "ptr": name}
    assert verdict.reason.endswith("and the sender domain nowhere.example does not exist")
    assert wire(verdict) == (
        "450 4.1.8 <alice@nowhere.example>: Sender address rejected: Domain not found"
    )


async def test_domain_without_mail_records_is_missing() -> None:
    verdict = await at_mail(sender_world("dsl-7.example.net"), "alice@txt-only.example")
    assert objection(verdict, COMBINED).reason.endswith(
        "the sender domain txt-only.example has no MX, A or AAAA record"
    )


@pytest.mark.parametrize(
    "mail_from",
    [
        "alice@example.net",
        "alice@a-only.example",
        "alice@v6-only.example",
        "alice@null-mx.example",
        "",
        "alice@[192.0.2.1]",
    ],
)
async def test_existing_domain_or_no_domain_passes(mail_from: str) -> None:
    assert await at_mail(sender_world("dsl-7.example.net"), mail_from) is None


async def test_static_client_with_missing_domain_passes() -> None:
    assert await at_mail(sender_world("mail.example.net"), "alice@nowhere.example") is None


async def test_pbl_listed_client_with_missing_domain() -> None:
    ctx = make_ctx({f"9.113.0.203.{ZEN}": {"A": "127.0.0.10"}})
    verdict = objection(await at_mail(ctx, "a@nowhere.example", pbl_zones=[ZEN]), COMBINED)
    assert verdict.details == {"domain": "nowhere.example", "ptr": ""}


async def test_combined_mode_says_nothing_at_connect() -> None:
    ctx = sender_world("dsl-7.example.net")
    session = make_session(mail_from="alice@nowhere.example")
    assert await run(ctx, session, require_unknown_sender_domain=True) is None


@pytest.mark.parametrize("kind", ["servfail", "timeout"])
async def test_sender_domain_failure(kind: str) -> None:
    dynamic = failing(kind, "broken.example", ptr={V4: "dsl-7.example.net"})
    verdict = objection(await at_mail(dynamic, "alice@broken.example"), "DNS_TEMPFAIL")
    assert verdict.details == {"name": "broken.example", "failure": kind}
    assert "the lookup of the sender domain broken.example" in verdict.reason
    static = failing(kind, "broken.example", ptr={V4: "mail.example.net"})
    assert await at_mail(static, "alice@broken.example") is None


async def test_client_failure_with_missing_domain_defers() -> None:
    ctx = failing("servfail", V4_REVERSE)
    verdict = objection(await at_mail(ctx, "alice@nowhere.example"), "DNS_TEMPFAIL")
    assert verdict.details["name"] == V4_REVERSE
    assert await at_mail(ctx, "alice@nowhere.example", on_dns_tempfail="ignore") is None


# -- replies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "reply"),
    [
        (
            GEN,
            "550 Your IP address appears to be dynamically assigned. Please smarthost your "
            "mail though your ISP",
        ),
        (DYN, "550 dynamic mail rejected"),
        ("POLICY_BLOCK_LISTED", "550 Administrative prohibition exchange dynamic"),
        (COMBINED, "550 sendmail dynamic ip address Domain of sender address not exists"),
    ],
)
def test_catalogue_texts_are_valid_overrides(outcome: str, reply: str) -> None:
    DynamicClient.validate_reply(outcome, Reply.parse(reply))


async def test_override_refuses_permanently() -> None:
    ctx = sender_world("dsl-7.example.net")
    replies = {COMBINED: "550 sendmail dynamic ip address Domain of sender address not exists"}
    verdict = await at_mail(ctx, "alice@nowhere.example", replies=replies)
    verdict = objection(verdict, COMBINED)
    assert verdict.action is Action.REJECT
    assert wire(verdict) == replies[COMBINED]


async def test_override_with_fields() -> None:
    replies = {
        GEN: "550 {ptr} looks like {match}",
        "POLICY_BLOCK_LISTED": "550 [{ip}] is on {zone} ({answer}): {txt}",
    }
    verdict = objection(await run(ptr_world("203-0-113-9.example.net"), replies=replies), GEN)
    assert wire(verdict) == (
        "550 203-0-113-9.example.net looks like holds the client address 203.0.113.9 in order"
    )
    ctx = pbl_world("127.0.0.10", txt="see https://example.org/pbl")
    verdict = objection(await run(ctx, replies=replies, pbl_zones=[ZEN]), "POLICY_BLOCK_LISTED")
    assert wire(verdict) == (f"550 [{V4}] is on {ZEN} (127.0.0.10): see https://example.org/pbl")


def test_unknown_placeholders_are_refused() -> None:
    with pytest.raises(ReplyError, match="unknown placeholder"):
        DynamicClient.validate_reply("DYNAMIC_HELO", Reply.parse("550 {ptr}"))
    with pytest.raises(ReplyError, match="unknown placeholder"):
        DynamicClient.validate_reply("POLICY_BLOCK_LISTED", Reply.parse("550 {ptr}"))
    assert HARAKA.startswith("554")
    DynamicClient.validate_reply(DYN, Reply.parse(HARAKA))
