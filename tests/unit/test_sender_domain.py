from __future__ import annotations

from typing import Any, cast

import dns.rdata
import pytest
from pydantic import ValidationError

from strictmx.policies import BUILTIN
from strictmx.policies.sender_domain import SenderDomain, SenderDomainOptions
from strictmx.receiver.policy import ClientHistory, Context
from strictmx.receiver.session import Client, Session
from strictmx.receiver.verdict import Action, Reply, Stage, Verdict
from strictmx.receiver.world import World, WorldConfig
from strictmx.receiver.world.dns import TempFail, WorldDNS

HOST = "mx.strictmx.test"
CLIENTS = ["203.0.113.9", "2001:db8:feed::9"]

INV = "SENDER_INVALID"
NF = "SENDER_NOT_FQDN"
NOT_FOUND = "SENDER_DOMAIN_NOT_FOUND"
NULL_MX = "SENDER_DOMAIN_NULL_MX"
TEMP = "SENDER_DOMAIN_TEMPFAIL"

WORLD: dict[str, Any] = {
    "dns": {
        "records": {
            "example.net": {"MX": "10 mail.example.net."},
            "mail.example.net": {"A": "203.0.113.10"},
            "a-only.example": {"A": "192.0.2.1"},
            "aaaa-only.example": {"AAAA": "2001:db8::1"},
            "alias.example": {"CNAME": "example.net."},
            "nullmx.example": {"MX": "0 ."},
            "txt-only.example": {"TXT": "v=spf1 -all"},
            "host.parent.example": {"A": "192.0.2.2"},
            "xn--bcher-kva.example": {"MX": "10 mail.example.net."},
            "localhost": {"A": "127.0.0.1"},
            "x_y.example": {"A": "192.0.2.3"},
        },
        "servfail": ["broken.example"],
        "timeout": ["*.slow.example"],
    }
}


def policy(replies: dict[str, Reply] | None = None, **options: Any) -> SenderDomain:
    return SenderDomain(SenderDomainOptions(**options), replies)


def make_ctx(world: World | None = None) -> Context:
    w = world or World.from_config(WorldConfig.model_validate(WORLD))
    return Context(world=w, hostname=HOST, history=ClientHistory()).for_session()


def make_session(
    sender: str | None, *, smtputf8: bool = False, client: str = CLIENTS[0]
) -> Session:
    return Session(
        Client("127.0.0.1", address=client),
        helo="mail.example.net",
        mail_from=sender,
        smtputf8=smtputf8,
    )


async def at_mail(
    sender: str | None,
    *,
    smtputf8: bool = False,
    client: str = CLIENTS[0],
    ctx: Context | None = None,
    replies: dict[str, Reply] | None = None,
    **options: Any,
) -> Verdict | None:
    session = make_session(sender, smtputf8=smtputf8, client=client)
    return await policy(replies, **options).check(Stage.MAIL, session, ctx or make_ctx())


async def outcome(sender: str, **kw: Any) -> str | None:
    verdict = await at_mail(sender, **kw)
    return verdict.outcome if verdict else None


def wire(verdict: Verdict | None) -> str:
    assert verdict is not None and verdict.reply is not None
    return verdict.reply.render()


# -- the null sender and domains that exist -----------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
async def test_null_sender_is_always_allowed(client: str) -> None:
    # Even in a world where nothing exists.
    empty = make_ctx(World.empty())
    assert await at_mail("", client=client, ctx=empty) is None
    assert await at_mail(None, client=client, ctx=empty) is None


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    "sender",
    [
        "alice@example.net",  # MX
        "alice@EXAMPLE.net",
        "alice@a-only.example",  # no MX, an A
        "alice@aaaa-only.example",  # no MX, an AAAA
        "alice@alias.example",  # CNAME to a domain with an MX
        "alice@[203.0.113.9]",  # literals are not looked up
        "alice@[IPv6:2001:db8::9]",
        '"john doe"@example.net',
        '"a\\"b"@example.net',
        "first.last+tag@example.net",
        "!#$%&'*+-/=?^_`{|}~@example.net",
    ],
)
async def test_existing_domains_pass(sender: str, client: str) -> None:
    assert await at_mail(sender, client=client) is None


# -- SENDER_DOMAIN_NOT_FOUND ----------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
async def test_nxdomain(client: str) -> None:
    verdict = await at_mail("alice@nowhere.example", client=client)
    assert verdict is not None
    assert verdict.outcome == NOT_FOUND
    assert verdict.stage is Stage.MAIL
    assert verdict.action is Action.DEFER  # Postfix's unknown_address_reject_code is 450
    assert verdict.rfc_compliant
    assert verdict.reason == "the sender domain nowhere.example does not exist (NXDOMAIN)"
    assert verdict.details["domain"] == "nowhere.example"
    assert wire(verdict) == (
        "450 4.1.8 <alice@nowhere.example>: Sender address rejected: Domain not found"
    )


@pytest.mark.parametrize("domain", ["txt-only.example", "parent.example"])
async def test_name_without_mx_or_address(domain: str) -> None:
    # parent.example exists only as the parent of a record (an empty non-terminal).
    verdict = await at_mail(f"alice@{domain}")
    assert verdict is not None
    assert verdict.outcome == NOT_FOUND
    assert verdict.reason == f"the sender domain {domain} has no MX, A or AAAA record"


async def test_override_makes_not_found_permanent() -> None:
    for text in ["550 Sender rejected - your domain part is not good", "550 Domain not found"]:
        verdict = await at_mail("alice@nowhere.example", replies={NOT_FOUND: Reply.parse(text)})
        assert verdict is not None
        assert verdict.action is Action.REJECT
        assert wire(verdict) == text


async def test_override_can_name_the_domain() -> None:
    reply = Reply.parse("550 5.1.8 <{sender}>: Domain {domain} not found")
    SenderDomain.validate_reply(NOT_FOUND, reply)
    verdict = await at_mail("alice@nowhere.example", replies={NOT_FOUND: reply})
    assert wire(verdict) == "550 5.1.8 <alice@nowhere.example>: Domain nowhere.example not found"


# -- SENDER_DOMAIN_NULL_MX --------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
async def test_null_mx(client: str) -> None:
    verdict = await at_mail("alice@nullmx.example", client=client)
    assert verdict is not None
    assert verdict.outcome == NULL_MX
    assert verdict.action is Action.REJECT
    assert "null MX (RFC 7505)" in verdict.reason
    assert wire(verdict) == (
        "550 5.7.27 <alice@nullmx.example>: Sender address rejected: "
        "Domain nullmx.example does not accept mail (nullMX)"
    )


async def test_null_mx_allowed_when_the_option_is_off() -> None:
    assert await at_mail("alice@nullmx.example", reject_null_mx=False) is None


async def test_a_null_mx_beside_real_mx_records_is_not_a_null_mx() -> None:
    world = World.from_config(
        WorldConfig.model_validate(
            {"dns": {"records": {"odd.example": {"MX": ["0 .", "10 mail.odd.example."]}}}}
        )
    )
    assert await at_mail("alice@odd.example", ctx=make_ctx(world)) is None


# -- SENDER_DOMAIN_TEMPFAIL -------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    ("domain", "kind"), [("broken.example", "servfail"), ("a.slow.example", "timeout")]
)
async def test_dns_failure_defers(domain: str, kind: str, client: str) -> None:
    verdict = await at_mail(f"alice@{domain}", client=client)
    assert verdict is not None
    assert verdict.outcome == TEMP
    assert verdict.action is Action.DEFER
    assert verdict.details["failure"] == kind
    assert verdict.reason == f"looking up the sender domain {domain} failed temporarily: MX {kind}"
    assert wire(verdict) == (
        f"450 4.1.8 <alice@{domain}>: Sender address rejected: Domain not found"
    )


class _MxFails(WorldDNS):
    """A real server can fail one record type only; scenario scripts fail every type."""

    async def resolve(self, name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        if rdtype == "MX":
            raise TempFail(name, rdtype, "servfail", "this server fails MX only")
        return await super().resolve(name, rdtype)


def mx_failing_ctx() -> Context:
    world = World.from_config(WorldConfig.model_validate(WORLD))
    world.dns = _MxFails(rrsets=world.dns.zone().values())
    return make_ctx(world)


async def test_mx_failure_with_an_address_passes() -> None:
    assert await at_mail("alice@a-only.example", ctx=mx_failing_ctx()) is None


async def test_mx_failure_without_an_address_defers() -> None:
    verdict = await at_mail("alice@txt-only.example", ctx=mx_failing_ctx())
    assert verdict is not None
    assert verdict.outcome == TEMP
    assert "MX servfail" in verdict.reason


# -- SENDER_NOT_FQDN --------------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
async def test_no_domain(client: str) -> None:
    verdict = await at_mail("alice", client=client)
    assert verdict is not None
    assert verdict.outcome == NF
    assert verdict.reason == "'alice' has no domain part"
    assert (
        wire(verdict) == "504 5.5.2 <alice>: Sender address rejected: need fully-qualified address"
    )


async def test_single_label_domain() -> None:
    # localhost has an A record here: the FQDN rule decides before DNS is asked.
    verdict = await at_mail("alice@localhost")
    assert verdict is not None
    assert verdict.outcome == NF
    assert verdict.reason == "domain 'localhost' has no dot: it is not fully qualified"


async def test_require_fqdn_off() -> None:
    assert await at_mail("alice@localhost", require_fqdn=False) is None
    assert await outcome("alice@nowhere", require_fqdn=False) == NOT_FOUND
    # Without a domain there is still no Mailbox.
    assert await outcome("alice", require_fqdn=False) == INV
    assert await at_mail("alice", require_fqdn=False, check_syntax=False) is None


# -- SENDER_INVALID ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "reason"),
    [
        (".alice@example.net", "local part '.alice' has an empty dot-separated part"),
        ("alice.@example.net", "local part 'alice.' has an empty dot-separated part"),
        ("a..b@example.net", "local part 'a..b' has an empty dot-separated part"),
        ("a(b)@example.net", "local part 'a(b)' has '('"),
        ('"unclosed@example.net', "opens a quote it does not close"),
        ('"a"b"@example.net', "has a quote inside the quoted string"),
        ('"a\\"@example.net', "ends with a lone backslash"),
        ('"a\x01"@example.net', "has the control character '\\x01'"),
        ("@example.net", "local part '' is empty"),
        ("a" * 65 + "@example.net", "is 65 octets, over 64"),
        ("ü@example.net", "has non-ASCII characters but MAIL FROM did not carry SMTPUTF8"),
        ("alice@-x.example.net", "has the label '-x' with a hyphen at one end"),
        ("alice@x-.example.net", "has the label 'x-' with a hyphen at one end"),
        ("alice@x_y.example", "has '_' in label 'x_y'"),
        ("alice@example.net.", "ends with a dot"),
        ("alice@example..net", "has an empty label"),
        ("alice@192.0.2.1", "is an IP address; an address domain is written [192.0.2.1]"),
        ("alice@" + "a" * 64 + ".example", "has a label of 64 characters, over 63"),
        ("alice@" + ".".join(["a" * 63] * 4) + ".example", "is 263 characters, over 255"),
        ("alice@bücher.example", "has the non-ASCII label 'bücher' but MAIL FROM did not carry"),
        ("alice@[300.1.2.3]", "does not hold a valid IPv4 address"),
        ("alice@[2001:db8::1]", "does not hold a valid IPv4 address"),
        ("alice@[IPv6:zz]", "does not hold a valid IPv6 address"),
        ("alice@[IPv6:192.0.2.1]", "does not hold a valid IPv6 address"),
        ("alice@[192.0.2.1", "has no closing ']'"),
    ],
)
async def test_invalid_sender(sender: str, reason: str) -> None:
    verdict = await at_mail(sender)
    assert verdict is not None
    assert verdict.outcome == INV, verdict.reason
    assert reason in verdict.reason
    assert wire(verdict) == "501 5.1.7 Bad sender address syntax"


@pytest.mark.parametrize("client", CLIENTS)
async def test_utf8_sender_with_smtputf8(client: str) -> None:
    # The U-label domain is looked up as its A-label.
    assert await at_mail("ü@bücher.example", smtputf8=True, client=client) is None
    assert await outcome("ü@nirgendwo.example", smtputf8=True) == NOT_FOUND


async def test_check_syntax_off_still_looks_the_domain_up() -> None:
    assert await at_mail("alice@x_y.example", check_syntax=False) is None
    assert await outcome("alice@x_z.example", check_syntax=False) == NOT_FOUND
    assert await at_mail("alice@[300.1.2.3]", check_syntax=False) is None
    assert await at_mail("a..b@example.net", check_syntax=False) is None


async def test_invalid_is_judged_before_fqdn_and_dns() -> None:
    assert await outcome("a..b@localhost") == INV
    assert await outcome("a..b@nowhere.example") == INV


# -- declaration ------------------------------------------------------------------------------


def test_declaration() -> None:
    assert SenderDomain in BUILTIN
    assert SenderDomain.name == "sender_domain"
    assert SenderDomain.stages == {Stage.MAIL}
    assert SenderDomain.summary and "\n" not in SenderDomain.summary
    assert SenderDomain.__doc__ and "RFC 7505" in SenderDomain.__doc__
    assert {o.id for o in SenderDomain.outcomes} == {INV, NF, NOT_FOUND, NULL_MX, TEMP}
    assert all(o.rfc_allows for o in SenderDomain.outcomes)
    for o in SenderDomain.outcomes:
        SenderDomain.validate_reply(o.id, o.default_reply())
    for name, spec in SenderDomainOptions.model_fields.items():
        assert spec.description, name


def test_options_are_validated() -> None:
    defaults = SenderDomainOptions()
    assert defaults.require_fqdn and defaults.check_syntax and defaults.reject_null_mx
    with pytest.raises(ValidationError):
        SenderDomainOptions(**cast(Any, {"reject_nullmx": False}))
    with pytest.raises(ValidationError):
        SenderDomainOptions(require_fqdn=cast(Any, "sometimes"))


def test_reply_override_validation() -> None:
    from strictmx.receiver.verdict import ReplyError

    with pytest.raises(ReplyError):
        SenderDomain.validate_reply(NF, Reply.parse("504 5.5.2 <{sender}> in {domain}"))
    SenderDomain.validate_reply(TEMP, Reply.parse("451 4.4.3 {domain}: {failure}"))
    # A persona may refuse for good where the default defers.
    SenderDomain.validate_reply(TEMP, Reply.parse("550 Domain not found"))


async def test_a_u_label_is_asked_by_its_idna_2008_a_label() -> None:
    # IDNA 2003 looked straße.example up as strasse.example; IDNA 2008 as xn--strae-oqa.
    def with_mx(domain: str) -> Context:
        cfg = {"dns": {"records": {domain: {"MX": "10 mail.example.net."}}}}
        return make_ctx(World.from_config(WorldConfig.model_validate(cfg)))

    sender = "alice@straße.example"
    assert await at_mail(sender, smtputf8=True, ctx=with_mx("xn--strae-oqa.example")) is None
    verdict = await at_mail(sender, smtputf8=True, ctx=with_mx("strasse.example"))
    assert verdict is not None and verdict.outcome == NOT_FOUND


async def test_a_label_idna_2008_refuses_is_invalid() -> None:
    verdict = await at_mail("alice@a\u200db.example", smtputf8=True)
    assert verdict is not None and verdict.outcome == INV
    assert "which is not valid IDNA" in verdict.reason


# -- bytes that are not UTF-8 ------------------------------------------------------------------
# The SMTP layer decodes 8-bit input with surrogateescape: "\udcff" stands for the byte 0xFF.


@pytest.mark.parametrize("smtputf8", [False, True])
@pytest.mark.parametrize(
    ("sender", "shown"),
    [
        ("\udcff@example.net", "\\xff"),
        ("a\udc80b@example.net", "\\x80"),
        ("\udced\udca0\udc80@example.net", "\\xed"),  # a surrogate's UTF-8 form
        ("alice@ex\udcffample.net", "\\xff"),
    ],
)
async def test_a_byte_that_is_not_utf8_is_invalid_syntax(
    sender: str, shown: str, smtputf8: bool
) -> None:
    verdict = await at_mail(sender, smtputf8=smtputf8)
    assert verdict is not None
    assert verdict.outcome == INV, verdict.reason
    assert f"has {shown}, not UTF-8" in verdict.reason
    assert wire(verdict) == "501 5.1.7 Bad sender address syntax"


async def test_without_the_syntax_check_an_8bit_domain_is_not_found() -> None:
    verdict = await at_mail("alice@ex\udcffample.net", check_syntax=False)
    assert verdict is not None and verdict.outcome == NOT_FOUND, verdict
    assert wire(verdict) == (
        "450 4.1.8 <alice@ex?ample.net>: Sender address rejected: Domain not found"
    )
    # The control: an 8-bit local part leaves the domain to DNS, which knows it.
    assert await at_mail("\udcff@example.net", check_syntax=False) is None
