from __future__ import annotations

from typing import Any, cast

import dns.reversename
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from strictmx.policies import BUILTIN
from strictmx.policies.helo_dns import (
    HeloDns,
    HeloDnsOptions,
    host_name,
    literal_address,
)
from strictmx.receiver.policy import ClientHistory, Context
from strictmx.receiver.session import Client, Session
from strictmx.receiver.verdict import Action, Reply, ReplyError, Stage, Verdict
from strictmx.receiver.world import World, WorldConfig
from strictmx.receiver.world.suffixes import owner_domain, registry_domain

HOST = "mx.strictmx.test"
GOOD4 = "203.0.113.10"  # mail.example.net, forward-confirmed both ways
GOOD6 = "2001:db8::10"
STRANGER4 = "203.0.113.11"  # no PTR
STRANGER6 = "2001:db8::11"
RELAY4 = "203.0.113.20"  # PTR relay-20.example.net
PTR_FAIL4 = "203.0.113.99"  # its PTR lookup fails (SERVFAIL)
PTR_SLOW6 = "2001:db8::99"  # its PTR lookup times out


def reverse(address: str) -> str:
    return dns.reversename.from_address(address).to_text(omit_final_dot=True)


WORLD_CONFIG: dict[str, Any] = {
    "dns": {
        "records": {
            "mail.example.net": {"A": GOOD4, "AAAA": GOOD6},
            "other.example.net": {"A": "198.51.100.7"},
            "alias.example.net": {"CNAME": "mail.example.net."},
            "mxonly.example.net": {"MX": "10 mail.example.net."},
            "nullmx.example.net": {"MX": "0 ."},
            "relay-20.example.net": {"A": RELAY4},
            "out.example.net": {"A": RELAY4},
            "xn--bcher-kva.example": {"A": GOOD4},
            # Same public suffix (co.uk), different registered domains.
            "mx.example.co.uk": {"A": "192.0.2.30"},
            "smtp.example.co.uk": {"A": "192.0.2.30"},
            "host.other.co.uk": {"A": "192.0.2.30"},
            "liar.example.net": {"A": "192.0.2.99"},
            "mail2.example.net": {"A": "203.0.113.42"},
            "good44.example.net": {"A": "203.0.113.44"},
            "v6.example.net": {"AAAA": "2001:db8::50"},
        },
        "ptr": {
            GOOD4: "mail.example.net",
            GOOD6: "mail.example.net",
            RELAY4: "relay-20.example.net",
            "192.0.2.30": "host.other.co.uk",
            "192.0.2.31": "smtp.example.co.uk",
            "203.0.113.40": "liar.example.net",
            "203.0.113.42": ["dead.example.net", "mail2.example.net"],
            "203.0.113.43": ["broken.example.net", "liar.example.net"],
            "203.0.113.44": ["broken.example.net", "good44.example.net"],
            "2001:db8::50": "v6.example.net",
            "203.0.113.45": "x.servfail.example",
        },
        "servfail": ["broken.example.net", "*.servfail.example", reverse(PTR_FAIL4)],
        "timeout": ["slow.example.net", reverse(PTR_SLOW6)],
    }
}
WORLD = World.from_config(WorldConfig.model_validate(WORLD_CONFIG))


def make_ctx(world: World = WORLD) -> Context:
    return Context(world=world, hostname=HOST, history=ClientHistory()).for_session()


def make_session(
    helo: str, address: str = GOOD4, *, name: str | None = None, verb: str = "EHLO"
) -> Session:
    session = Session(Client("127.0.0.1", address=address, name=name))
    session.helo = helo
    session.helo_verb = verb
    return session


async def judge(
    helo: str,
    address: str = GOOD4,
    *,
    name: str | None = None,
    verb: str = "EHLO",
    replies: dict[str, Reply] | None = None,
    world: World = WORLD,
    **options: Any,
) -> Verdict | None:
    policy = HeloDns(HeloDnsOptions(**options), replies=replies)
    session = make_session(helo, address, name=name, verb=verb)
    return await policy.check(Stage.HELO, session, make_ctx(world))


async def refused(helo: str, address: str = GOOD4, **kwargs: Any) -> Verdict:
    verdict = await judge(helo, address, **kwargs)
    assert verdict is not None, f"{helo} from {address} was accepted"
    assert verdict.policy == "helo_dns"
    assert verdict.stage is Stage.HELO
    assert not verdict.rfc_compliant  # RFC 5321 §4.1.4
    assert verdict.reason
    return verdict


def wire(verdict: Verdict) -> str:
    assert verdict.reply is not None
    return verdict.reply.render()


# -- what gets no opinion ------------------------------------------------------------------

EVERY_CHECK: dict[str, Any] = {
    "require_a_record": True,
    "forward_confirm": True,
    "ptr_match": "exact",
    "literal_match": True,
    "literal_ptr": True,
    "reject_my_name": True,
}


@pytest.mark.parametrize(
    "helo",
    [
        "",
        "   ",
        "mail..example.net",
        ".mail.example.net",
        "-mail.example.net",
        "mail-.example.net",
        "mail example.net",
        "mail@example.net",
        "mail\\.example.net",
        "mx.example.123",
        "192.0.2.1",
        "2001:db8::1",
        "[300.1.2.3]",
        "[mail.example.net]",
        "[192.0.2.1",
        "[IPv6:fe80::1%eth0]",
        "a" * 64 + ".example.net",
        ".",
    ],
)
async def test_what_is_no_host_name_gets_no_opinion(helo: str) -> None:
    # The hermetic world has no such names, so any lookup would have refused them.
    assert await judge(helo, STRANGER4, **EVERY_CHECK) is None


def test_host_name_is_the_dns_form() -> None:
    assert host_name("Mail.Example.NET") == "mail.example.net"
    assert host_name("mail.example.net.") == "mail.example.net"
    assert host_name("bücher.example") == "xn--bcher-kva.example"
    assert host_name("mail_1.example.net") == "mail_1.example.net"  # Postfix allows '_'
    assert host_name("localhost") == "localhost"  # FQDN is helo_syntax's call
    for bad in ["1.2.3.4", "1.2.3", "a..b", "a b", "", ".", "x\\065.example"]:
        assert host_name(bad) is None, bad


def test_literal_address_parses_rfc_and_exim_forms() -> None:
    assert str(literal_address("[192.0.2.1]")) == "192.0.2.1"
    assert str(literal_address("[IPv6:2001:DB8::1]")) == "2001:db8::1"
    assert str(literal_address("[ipv6:::ffff:192.0.2.1]")) == "192.0.2.1"
    assert str(literal_address("[IPv4:192.0.2.1]")) == "192.0.2.1"
    for bad in ["192.0.2.1", "[]", "[192.0.2.1", "[x]", "[IPv6:zz]", "[fe80::1%1]"]:
        assert literal_address(bad) is None, bad


# -- HELO_NOT_FOUND (resolve, on by default) -------------------------------------------------


async def test_name_without_records_is_not_found() -> None:
    verdict = await refused("nope.example.net")
    assert verdict.outcome == "HELO_NOT_FOUND"
    assert verdict.action is Action.DEFER  # Postfix unknown_hostname_reject_code = 450
    assert wire(verdict) == "450 4.7.1 <nope.example.net>: Helo command rejected: Host not found"
    assert "no A, AAAA or MX record" in verdict.reason


@pytest.mark.parametrize(
    "helo",
    [
        "mail.example.net",
        "MAIL.Example.NET.",
        "alias.example.net",  # the CNAME is followed, as by Postfix's resolver
        "mxonly.example.net",  # Postfix accepts an MX
        "nullmx.example.net",  # "MTA names may have nullMX"
        "bücher.example",
        "v6.example.net",
    ],
)
@pytest.mark.parametrize("address", [GOOD4, GOOD6, STRANGER4, STRANGER6])
async def test_name_that_resolves_is_found(helo: str, address: str) -> None:
    assert await judge(helo, address) is None


async def test_mx_counts_only_with_accept_mx() -> None:
    verdict = await refused("mxonly.example.net", accept_mx=False)
    assert verdict.outcome == "HELO_NOT_FOUND"
    assert "no A or AAAA record" in verdict.reason
    assert await judge("mail.example.net", accept_mx=False) is None


async def test_a_name_above_records_exists_but_has_no_address() -> None:
    # example.net is an empty non-terminal here: NODATA, refused like NXDOMAIN.
    assert (await refused("example.net")).outcome == "HELO_NOT_FOUND"


async def test_resolve_can_be_switched_off() -> None:
    assert await judge("nope.example.net", resolve=False, reject_my_name=True) is None


# -- HELO_IS_CNAME -----------------------------------------------------------------------------


async def test_alias_is_refused_with_require_a_record() -> None:
    verdict = await refused("alias.example.net", require_a_record=True)
    assert verdict.outcome == "HELO_IS_CNAME"
    assert verdict.action is Action.REJECT
    assert verdict.details["target"] == "mail.example.net"
    assert "alias (CNAME) for mail.example.net" in verdict.reason
    assert wire(verdict) == (
        "550 5.7.1 <alias.example.net>: Helo command rejected: "
        "Host name is an alias (CNAME), not an A record"
    )


@pytest.mark.parametrize("address", [GOOD4, GOOD6])
async def test_a_record_passes_require_a_record(address: str) -> None:
    assert await judge("mail.example.net", address, require_a_record=True) is None
    assert await judge("alias.example.net", address) is None


# -- HELO_NOT_CONFIRMED (forward_confirm) ------------------------------------------------------


@pytest.mark.parametrize("address", [GOOD4, GOOD6, "::ffff:203.0.113.10", "2001:DB8:0::10"])
async def test_forward_confirmed_name_passes(address: str) -> None:
    assert await judge("mail.example.net", address, forward_confirm=True) is None


@pytest.mark.parametrize("address", [STRANGER4, STRANGER6])
async def test_name_not_resolving_to_the_client_is_not_confirmed(address: str) -> None:
    verdict = await refused("mail.example.net", address, forward_confirm=True)
    assert verdict.outcome == "HELO_NOT_CONFIRMED"
    assert verdict.action is Action.REJECT
    assert verdict.details["addresses"] == f"{GOOD4}, {GOOD6}"
    assert f"resolves to {GOOD4}, {GOOD6}, not to the client address {address}" in (verdict.reason)
    assert wire(verdict) == (
        "550 5.7.1 <mail.example.net>: Helo command rejected: HELO host has no forward DNS match"
    )


async def test_name_with_only_an_mx_is_not_confirmed() -> None:
    verdict = await refused("mxonly.example.net", forward_confirm=True)
    assert verdict.outcome == "HELO_NOT_CONFIRMED"
    assert "has no A or AAAA record" in verdict.reason


async def test_resolve_decides_before_forward_confirm() -> None:
    assert (await refused("nope.example.net", forward_confirm=True)).outcome == "HELO_NOT_FOUND"
    verdict = await refused("nope.example.net", forward_confirm=True, resolve=False)
    assert verdict.outcome == "HELO_NOT_CONFIRMED"


# -- HELO_PTR_MISMATCH (ptr_match) ------------------------------------------------------------


@pytest.mark.parametrize("address", [GOOD4, GOOD6])
@pytest.mark.parametrize("mode", ["exact", "domain"])
async def test_ptr_name_matches(address: str, mode: str) -> None:
    assert await judge("mail.example.net", address, ptr_match=mode) is None
    assert await judge("Mail.Example.Net.", address, ptr_match=mode) is None


async def test_other_name_does_not_match_exactly() -> None:
    verdict = await refused("out.example.net", RELAY4, ptr_match="exact")
    assert verdict.outcome == "HELO_PTR_MISMATCH"
    assert verdict.details["ptr"] == "relay-20.example.net"
    assert "not the client's reverse DNS name (relay-20.example.net)" in verdict.reason
    assert wire(verdict) == (
        "550 5.7.25 <out.example.net>: Helo command rejected: HELO host does not match rDNS"
    )


async def test_same_registered_domain_matches_in_domain_mode() -> None:
    assert await judge("out.example.net", RELAY4, ptr_match="domain") is None
    assert await judge("mx.example.co.uk", "192.0.2.31", ptr_match="domain") is None


async def test_same_public_suffix_is_not_the_same_domain() -> None:
    # example.co.uk and other.co.uk share only co.uk, a public suffix.
    verdict = await refused("mx.example.co.uk", "192.0.2.30", ptr_match="domain")
    assert verdict.outcome == "HELO_PTR_MISMATCH"
    assert "nor in its registered domain example.co.uk" in verdict.reason


@pytest.mark.parametrize("address", [STRANGER4, STRANGER6])
async def test_client_without_ptr_matches_nothing(address: str) -> None:
    verdict = await refused("mail.example.net", address, ptr_match="domain")
    assert verdict.outcome == "HELO_PTR_MISMATCH"
    assert verdict.details["ptr"] == "none"
    assert f"{address} has no PTR record" in verdict.reason


async def test_xclient_name_stands_in_for_the_ptr_lookup() -> None:
    assert (
        await judge("out.example.net", STRANGER4, name="OUT.example.net", ptr_match="exact") is None
    )
    verdict = await refused("mail.example.net", GOOD4, name="out.example.net", ptr_match="exact")
    assert verdict.details["ptr"] == "out.example.net"


async def test_xclient_name_unavailable_leaves_nothing_to_match() -> None:
    # NAME=[UNAVAILABLE]: no name for the client, though the world has its PTR.
    assert await judge("mail.example.net", GOOD4, ptr_match="exact") is None  # the control
    policy = HeloDns(HeloDnsOptions(ptr_match="exact"))
    session = make_session("mail.example.net", GOOD4)
    session.client.name_status = "unavailable"
    verdict = await policy.check(Stage.HELO, session, make_ctx(WORLD))
    assert verdict is not None and verdict.outcome == "HELO_PTR_MISMATCH"
    assert verdict.details["ptr"] == "none"


def test_owner_domain_uses_the_public_suffix_list() -> None:
    assert owner_domain("mx.example.co.uk") == "example.co.uk"
    assert owner_domain("a.b.mail.example.net") == "example.net"
    assert owner_domain("co.uk") is None
    # The private section counts: each blogspot.com site is its own domain.
    assert owner_domain("x.foo.blogspot.com") == "foo.blogspot.com"
    # The registry's view differs exactly there: blogspot.com is what was registered.
    assert registry_domain("x.foo.blogspot.com") == "blogspot.com"


# -- address literals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "address"),
    [
        ("[203.0.113.10]", GOOD4),
        ("[IPv6:2001:db8::10]", GOOD6),
        ("[203.0.113.10]", "::ffff:203.0.113.10"),
        ("[203.0.113.42]", "203.0.113.42"),  # the second PTR name confirms it
        ("[203.0.113.44]", "203.0.113.44"),  # confirmed despite the other name's SERVFAIL
    ],
)
async def test_literal_confirmed_by_reverse_dns_passes(literal: str, address: str) -> None:
    assert await judge(literal, address, literal_ptr=True, literal_match=True) is None


@pytest.mark.parametrize(
    ("literal", "ptr"),
    [
        ("[203.0.113.11]", "none"),
        ("[203.0.113.40]", "liar.example.net"),
        ("[IPv6:2001:db8::11]", "none"),
    ],
)
async def test_literal_without_confirming_ptr_is_refused(literal: str, ptr: str) -> None:
    address = literal.strip("[]").removeprefix("IPv6:")
    verdict = await refused(literal, address, literal_ptr=True)
    assert verdict.outcome == "HELO_LITERAL_NO_PTR"
    assert verdict.details == {"verb": "EHLO", "address": address, "ptr": ptr}
    assert "not confirmed by reverse DNS" in verdict.reason
    assert wire(verdict) == (
        f"550 5.7.25 <{literal}>: Helo command rejected: "
        "no PTR name of the address literal resolves back to it"
    )


@pytest.mark.parametrize(
    ("literal", "address"),
    [("[203.0.113.10]", STRANGER4), ("[IPv6:2001:db8::10]", STRANGER6), ("[203.0.113.10]", GOOD6)],
)
async def test_literal_of_another_address_is_a_mismatch(literal: str, address: str) -> None:
    verdict = await refused(literal, address, literal_match=True)
    assert verdict.outcome == "HELO_LITERAL_MISMATCH"
    assert f"not the client's address {address}" in verdict.reason
    assert wire(verdict) == (
        f"550 5.7.1 <{literal}>: Helo command rejected: "
        "HELO IP literal does not match your IP address"
    )


async def test_literal_gets_no_name_checks() -> None:
    # Postfix's reject_unknown_helo_hostname looks nothing up for a literal.
    options: dict[str, Any] = {
        "forward_confirm": True,
        "ptr_match": "exact",
        "require_a_record": True,
    }
    assert await judge("[192.0.2.1]", STRANGER4, **options) is None


# -- HELO_IS_ME ---------------------------------------------------------------------------------


@pytest.mark.parametrize("helo", [HOST, "MX.strictmx.TEST.", "strictmx.test"])
async def test_helo_naming_this_receiver_is_refused(helo: str) -> None:
    verdict = await refused(helo, GOOD4, reject_my_name=True, my_names=["StrictMX.test."])
    assert verdict.outcome == "HELO_IS_ME"
    assert wire(verdict) == "550 5.7.506 Access Denied, Bad HELO"
    assert "this receiver's own name" in verdict.reason


async def test_literal_of_this_receiver_is_refused() -> None:
    options: dict[str, Any] = {
        "reject_my_name": True,
        "my_addresses": ["192.0.2.25", "2001:db8::25"],
    }
    for literal in ["[192.0.2.25]", "[IPv6:2001:db8::25]"]:
        verdict = await refused(literal, STRANGER4, **options)
        assert verdict.outcome == "HELO_IS_ME"
    assert await judge("[192.0.2.26]", STRANGER4, **options) is None


async def test_the_receiver_itself_may_use_its_name() -> None:
    options: dict[str, Any] = {"reject_my_name": True, "my_addresses": [GOOD4], "resolve": False}
    assert await judge(HOST, GOOD4, **options) is None
    assert await judge(f"[{GOOD4}]", GOOD4, **options) is None


async def test_own_name_is_not_judged_without_reject_my_name() -> None:
    assert (await refused(HOST)).outcome == "HELO_NOT_FOUND"
    assert await judge("mail.example.net", reject_my_name=True) is None


# -- verify: any (Exim verify = helo) -----------------------------------------------------------

EXIM: dict[str, Any] = {
    "resolve": False,
    "forward_confirm": True,
    "ptr_match": "exact",
    "literal_match": True,
    "verify": "any",
}


async def test_any_passes_on_forward_alone() -> None:
    # out.example.net resolves to the client; its PTR is another name.
    assert await judge("out.example.net", RELAY4, **EXIM) is None


async def test_any_passes_on_ptr_alone() -> None:
    assert await judge("mail.example.net", "198.51.100.8", name="mail.example.net", **EXIM) is None


@pytest.mark.parametrize(("verb", "address"), [("EHLO", STRANGER4), ("helo", STRANGER6)])
async def test_any_refuses_when_nothing_verifies(verb: str, address: str) -> None:
    verdict = await refused("mail.example.net", address, verb=verb, **EXIM)
    assert verdict.outcome == "HELO_NOT_VERIFIED"
    assert wire(verdict) == f"550 5.7.1 {verb.upper()} argument does not match calling host"
    assert "resolves to" in verdict.reason and "no PTR record" in verdict.reason


async def test_any_judges_a_literal_by_literal_match() -> None:
    assert await judge(f"[{GOOD4}]", GOOD4, **EXIM) is None
    verdict = await refused(f"[{GOOD4}]", STRANGER4, **EXIM)
    assert verdict.outcome == "HELO_NOT_VERIFIED"


async def test_any_keeps_the_other_checks_required() -> None:
    # forward_confirm passes, yet the name is an alias.
    options = {**EXIM, "require_a_record": True}
    assert (await refused("alias.example.net", GOOD4, **options)).outcome == "HELO_IS_CNAME"
    literal = {**EXIM, "literal_ptr": True}
    verdict = await refused("[203.0.113.41]", "203.0.113.41", **literal)
    assert verdict.outcome == "HELO_LITERAL_NO_PTR"


async def test_any_defers_when_the_check_that_could_pass_failed_temporarily() -> None:
    # Forward fails for certain; the PTR lookup could not be made.
    verdict = await refused("mail.example.net", PTR_FAIL4, **EXIM)
    assert verdict.outcome == "HELO_DNS_TEMPFAIL"
    assert verdict.action is Action.DEFER
    # ... but a passing check settles it: here the forward lookup fails, the PTR matches.
    assert await judge("x.servfail.example", "203.0.113.45", **EXIM) is None


# -- HELO_DNS_TEMPFAIL --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("helo", "kind"),
    [
        ("broken.example.net", "servfail"),
        ("x.servfail.example", "servfail"),
        ("slow.example.net", "timeout"),
    ],
)
async def test_temporary_failure_resolving_the_name_defers(helo: str, kind: str) -> None:
    verdict = await refused(helo)
    assert verdict.outcome == "HELO_DNS_TEMPFAIL"
    assert verdict.action is Action.DEFER
    assert verdict.details["error"] == kind
    assert verdict.details["lookup"] == f"{helo} A"
    assert f"failed temporarily ({kind})" in verdict.reason
    assert wire(verdict) == f"450 4.7.1 <{helo}>: Helo command rejected: Host not found"


async def test_temporary_failure_of_the_cname_lookup_defers() -> None:
    verdict = await refused("slow.example.net", require_a_record=True)
    assert verdict.outcome == "HELO_DNS_TEMPFAIL"
    assert verdict.details["lookup"] == "slow.example.net CNAME"


@pytest.mark.parametrize(("address", "kind"), [(PTR_FAIL4, "servfail"), (PTR_SLOW6, "timeout")])
async def test_temporary_failure_of_the_ptr_lookup_defers(address: str, kind: str) -> None:
    verdict = await refused("mail.example.net", address, ptr_match="exact")
    assert verdict.outcome == "HELO_DNS_TEMPFAIL"
    assert verdict.details == {"verb": "EHLO", "lookup": f"{reverse(address)} PTR", "error": kind}


async def test_temporary_failure_behind_a_literal_ptr_defers() -> None:
    verdict = await refused("[203.0.113.43]", "203.0.113.43", literal_ptr=True)
    assert verdict.outcome == "HELO_DNS_TEMPFAIL"
    assert verdict.details["lookup"] == "broken.example.net A"


async def test_a_persona_may_refuse_permanently_on_temporary_failure() -> None:
    permanent = Reply.parse("550 5.7.1 <{helo}>: cannot check your name ({error})")
    HeloDns.validate_reply("HELO_DNS_TEMPFAIL", permanent)
    verdict = await refused("slow.example.net", replies={"HELO_DNS_TEMPFAIL": permanent})
    assert verdict.action is Action.REJECT
    assert wire(verdict) == "550 5.7.1 <slow.example.net>: cannot check your name (timeout)"


async def test_nothing_is_looked_up_without_a_check_that_needs_it() -> None:
    assert await judge("broken.example.net", resolve=False, reject_my_name=True) is None


# -- reply overrides ----------------------------------------------------------------------------


async def test_seed_texts_fill_the_base_placeholders() -> None:
    seed03 = Reply.parse(
        "550 No reverse DNS PTR for the remote address [{ip}] has a hostname matching '{helo}'"
    )
    HeloDns.validate_reply("HELO_PTR_MISMATCH", seed03)
    verdict = await refused(
        "other.example.net", RELAY4, ptr_match="exact", replies={"HELO_PTR_MISMATCH": seed03}
    )
    assert wire(verdict) == (
        "550 No reverse DNS PTR for the remote address [203.0.113.20] has a hostname matching "
        "'other.example.net'"
    )


async def test_outcome_fields_are_usable_in_overrides() -> None:
    text = Reply.parse("550 {helo} is at {addresses}, you are {ip}")
    HeloDns.validate_reply("HELO_NOT_CONFIRMED", text)
    verdict = await refused(
        "other.example.net", forward_confirm=True, replies={"HELO_NOT_CONFIRMED": text}
    )
    assert wire(verdict) == f"550 other.example.net is at 198.51.100.7, you are {GOOD4}"
    with pytest.raises(ReplyError, match="unknown placeholder"):
        HeloDns.validate_reply("HELO_NOT_FOUND", Reply.parse("550 {addresses}"))


async def test_not_found_override_with_5xx_refuses() -> None:
    seed15 = Reply.parse("550 HELO name rejected")
    verdict = await refused("nope.example.net", replies={"HELO_NOT_FOUND": seed15})
    assert verdict.action is Action.REJECT
    assert wire(verdict) == "550 HELO name rejected"


# -- declaration and options --------------------------------------------------------------------


def test_declaration() -> None:
    assert HeloDns in BUILTIN
    assert HeloDns.name == "helo_dns"
    assert HeloDns.stages == {Stage.HELO}
    assert HeloDns.summary and "\n" not in HeloDns.summary
    assert HeloDns.__doc__ and "RFC 5321 §4.1.4" in HeloDns.__doc__
    assert {o.id for o in HeloDns.outcomes} == {
        "HELO_IS_ME",
        "HELO_LITERAL_MISMATCH",
        "HELO_LITERAL_NO_PTR",
        "HELO_IS_CNAME",
        "HELO_NOT_FOUND",
        "HELO_NOT_CONFIRMED",
        "HELO_PTR_MISMATCH",
        "HELO_NOT_VERIFIED",
        "HELO_DNS_TEMPFAIL",
    }
    for o in HeloDns.outcomes:
        HeloDns.validate_reply(o.id, o.default_reply())
        assert not o.rfc_allows, o.id
        assert o.doc, o.id
    deferring = {o.id for o in HeloDns.outcomes if o.action is Action.DEFER}
    assert deferring == {"HELO_NOT_FOUND", "HELO_DNS_TEMPFAIL"}
    for name, spec in HeloDnsOptions.model_fields.items():
        assert spec.description, name


def test_defaults_are_postfix_reject_unknown_helo_hostname() -> None:
    options = HeloDnsOptions()
    assert options.resolve and options.accept_mx
    assert not (options.require_a_record or options.forward_confirm or options.literal_match)
    assert not (options.literal_ptr or options.reject_my_name)
    assert options.ptr_match == "off" and options.verify == "each"


def test_options_are_normalised() -> None:
    options = HeloDnsOptions(
        reject_my_name=True,
        my_names=cast(Any, ["MX.Example.NET."]),
        my_addresses=cast(Any, ["2001:DB8:0::1"]),
    )
    assert options.my_names == ("mx.example.net",)
    assert options.my_addresses == ("2001:db8::1",)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"verify": "any"}, "verify: any needs"),
        ({"my_names": ["mx.example.net"]}, "only with reject_my_name"),
        ({"my_addresses": ["192.0.2.1"]}, "only with reject_my_name"),
        ({"resolve": False}, "every check is off"),
        ({"ptr_match": "loose"}, "ptr_match"),
        ({"verify": "all"}, "verify"),
        ({"reject_my_name": True, "my_addresses": ["192.0.2.300"]}, "not an IP address"),
        ({"reject_my_name": True, "my_names": ["a..b"]}, "not a domain name"),
        ({"forward_confirmed": True}, "forward_confirmed"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        HeloDnsOptions(**options)


# -- properties ---------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_parsers_never_raise(text: str) -> None:
    name = host_name(text)
    if name is not None:
        assert name == name.lower() and not name.endswith(".")
        assert host_name(name) == name
    literal_address(text)
