from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from strictmx.policies import BUILTIN
from strictmx.policies.helo_syntax import HeloSyntax, HeloSyntaxOptions
from strictmx.receiver.policy import ClientHistory, Context
from strictmx.receiver.session import Client, Session
from strictmx.receiver.verdict import Action, Reply, Stage, Verdict

HOST = "mx.strictmx.test"
CLIENT = "203.0.113.9"
MODES = ("rfc1035", "rfc1123", "postfix", "exim")

OK = None
INV = "HELO_INVALID"
NF = "HELO_NOT_FQDN"
BL = "HELO_BAD_LITERAL"
MM = "HELO_LITERAL_MISMATCH"

# name, then the outcome at HELO in modes rfc1035, rfc1123, postfix, exim (require_fqdn on,
# literals must match the client 203.0.113.9, bare IPs follow the mode).
TABLE: list[tuple[str, str | None, str | None, str | None, str | None]] = [
    # plain, valid names
    ("mx.example.com", OK, OK, OK, OK),
    ("MX.Example.COM", OK, OK, OK, OK),
    ("mail-1.example.net", OK, OK, OK, OK),
    ("a.b", OK, OK, OK, OK),
    ("a1.example", OK, OK, OK, OK),
    ("example.c0m", OK, OK, OK, OK),
    ("a-b-c.d-e", OK, OK, OK, OK),
    ("mx--1.example.com", OK, OK, OK, OK),
    ("x.y.z.example.museum", OK, OK, OK, OK),
    ("xn--bcher-kva.example", OK, OK, OK, OK),
    # digits first: RFC 1035 says no, RFC 1123 and the MTAs say yes
    ("1mx.example.com", INV, OK, OK, OK),
    ("123.example.com", INV, OK, OK, OK),
    ("mx.123example.com", INV, OK, OK, OK),
    ("0x1.example", INV, OK, OK, OK),
    # all-numeric labels
    ("mx.example.123", INV, INV, OK, OK),
    ("a.1", INV, INV, OK, OK),
    ("300.1.2.3", INV, INV, INV, OK),
    ("1.2.3", INV, INV, INV, OK),
    ("12-34.56", INV, INV, INV, OK),
    ("123", INV, INV, INV, NF),
    ("1", INV, INV, INV, NF),
    # single labels
    ("mailserver", NF, NF, NF, NF),
    ("localhost", NF, NF, NF, NF),
    ("EXAMPLE", NF, NF, NF, NF),
    # dots
    ("mx.example.com.", INV, INV, OK, OK),
    ("localhost.", INV, INV, NF, NF),
    ("mx.example.com..", INV, INV, INV, OK),
    (".mx.example.com", INV, INV, INV, OK),
    ("mx..example.com", INV, INV, INV, OK),
    (".", INV, INV, INV, NF),
    ("...", INV, INV, INV, NF),
    # hyphens
    ("-mx.example.com", INV, INV, INV, OK),
    ("mx-.example.com", INV, INV, INV, OK),
    ("mx.-example.com", INV, INV, INV, OK),
    ("mx.example-.com", INV, INV, INV, OK),
    ("xn--.example", INV, INV, INV, OK),
    ("-", INV, INV, INV, NF),
    # underscore: only Postfix takes it ("grr..")
    ("mx_1.example.com", INV, INV, OK, INV),
    ("_mx.example.com", INV, INV, OK, INV),
    ("mx.example_.com", INV, INV, OK, INV),
    # other characters
    ("mx example.com", INV, INV, INV, INV),
    ("mx.example.com ", INV, INV, INV, INV),
    ("mx\t.example.com", INV, INV, INV, INV),
    ("mx.example.com\x00", INV, INV, INV, INV),
    ("mx@example.com", INV, INV, INV, INV),
    ("mx.exa!mple.com", INV, INV, INV, INV),
    ("mx/1.example.com", INV, INV, INV, INV),
    ("mx:25.example.com", INV, INV, INV, INV),
    ("*.example.com", INV, INV, INV, INV),
    ("mx.example.com]", INV, INV, INV, INV),
    ("203.0.113.9]", INV, INV, INV, INV),
    # bare IP addresses
    ("192.0.2.1", INV, INV, NF, OK),
    ("203.0.113.9", INV, INV, NF, OK),
    ("2001:db8::1", INV, INV, NF, INV),
    ("::1", INV, INV, NF, INV),
    # address literals
    ("[203.0.113.9]", OK, OK, OK, OK),
    ("[IPv6:::ffff:203.0.113.9]", OK, OK, OK, OK),
    ("[192.0.2.1]", MM, MM, MM, MM),
    ("[127.0.0.1]", MM, MM, MM, MM),
    ("[IPv6:2001:db8::1]", MM, MM, MM, MM),
    ("[ipv6:2001:db8::1]", MM, MM, MM, MM),
    ("[2001:db8::1]", BL, BL, BL, MM),
    ("[::ffff:203.0.113.9]", BL, BL, BL, OK),
    ("[IPv4:203.0.113.9]", BL, BL, BL, OK),
    ("[IPv6:203.0.113.9]", BL, BL, BL, BL),
    ("[300.1.2.3]", BL, BL, BL, BL),
    ("[192.0.2.256]", BL, BL, BL, BL),
    ("[01.2.3.4]", BL, BL, BL, BL),
    ("[IPv6:zz]", BL, BL, BL, BL),
    ("[IPv6:2001:db8::zz1]", BL, BL, BL, BL),
    ("[IPv6:fe80::1%eth0]", BL, BL, BL, BL),
    ("[1.2.3.4", BL, BL, BL, BL),
    ("[]", BL, BL, BL, BL),
    ("[", BL, BL, BL, BL),
    ("[mx.example.com]", BL, BL, BL, BL),
    ("[ 203.0.113.9]", BL, BL, BL, BL),
    # label length
    ("a" * 63 + ".example.com", OK, OK, OK, OK),
    ("a" * 64 + ".example.com", INV, INV, INV, OK),
    ("mx." + "b" * 64 + ".com", INV, INV, INV, OK),
    # U-labels: no opinion at HELO (SMTPUTF8 is judged at MAIL), except in Exim and
    # Postfix (valid_hostname is ASCII only; Postfix 3.7.11, recorded live)
    ("bücher.example", OK, OK, INV, INV),
    ("мх.пример", OK, OK, INV, INV),
    ("www.例子.测试", OK, OK, INV, INV),
    ("bü_cher.example", INV, INV, INV, INV),
    ("bücher-.example", INV, INV, INV, INV),
    ("1ü.example", INV, OK, INV, INV),
    ("ü" * 64 + ".example", INV, INV, INV, INV),
]


def make_ctx() -> Context:
    return Context(world=cast(Any, None), hostname=HOST, history=ClientHistory())


def make_session(
    helo: str, *, address: str = CLIENT, verb: str = "EHLO", smtputf8: bool = False
) -> Session:
    session = Session(Client("127.0.0.1", address=address))
    session.helo = helo
    session.helo_verb = verb
    session.smtputf8 = smtputf8
    return session


def policy(replies: dict[str, Reply] | None = None, **options: Any) -> HeloSyntax:
    return HeloSyntax(HeloSyntaxOptions(**options), replies=replies)


async def at_helo(name: str, *, address: str = CLIENT, **options: Any) -> Verdict | None:
    return await policy(**options).check(
        Stage.HELO, make_session(name, address=address), make_ctx()
    )


async def outcome(name: str, **options: Any) -> str | None:
    verdict = await at_helo(name, **options)
    return None if verdict is None else verdict.outcome


def name_of_length(n: int) -> str:
    """A name of exactly n characters made of labels of at most 63."""
    labels: list[str] = []
    while n > 0:
        size = min(63, n)
        if n - size == 1:  # a name cannot end with the dot before an empty label
            size -= 1
        labels.append("x" * size)
        n -= size
        if n:
            n -= 1  # the dot before the next label
    return ".".join(labels)


def test_table_is_large_and_unique() -> None:
    names = [row[0] for row in TABLE]
    assert len(names) >= 60
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(
    ("name", "mode", "expected"),
    [(row[0], mode, row[1 + i]) for row in TABLE for i, mode in enumerate(MODES)],
    ids=lambda v: repr(v)[:40] if isinstance(v, str) else str(v),
)
async def test_table(name: str, mode: str, expected: str | None) -> None:
    verdict = await at_helo(name, mode=mode)
    got = None if verdict is None else verdict.outcome
    assert got == expected, verdict.reason if verdict else "accepted"
    if verdict is not None:
        assert verdict.policy == "helo_syntax"
        assert verdict.stage is Stage.HELO
        assert verdict.action is Action.REJECT
        assert verdict.reason


# -- require_fqdn ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_single_label_passes_without_require_fqdn(mode: str) -> None:
    assert await outcome("mailserver", mode=mode) == NF
    assert await outcome("mailserver", mode=mode, require_fqdn=False) is None
    assert await outcome("mail_server", mode=mode, require_fqdn=False) == (
        None if mode == "postfix" else INV
    )


async def test_require_fqdn_off_keeps_syntax_rules() -> None:
    assert await outcome("localhost.", mode="postfix", require_fqdn=False) is None
    assert await outcome("localhost.", mode="rfc1123", require_fqdn=False) == INV
    assert await outcome("123", mode="postfix", require_fqdn=False) == INV
    assert await outcome("123", mode="exim", require_fqdn=False) is None


async def test_postfix_bare_ip_passes_syntax_but_is_not_fqdn() -> None:
    # reject_invalid_helo_hostname accepts it ("back compat"); reject_non_fqdn does not.
    verdict = await at_helo("192.0.2.1", mode="postfix")
    assert verdict is not None and verdict.outcome == NF
    assert "[192.0.2.1]" in verdict.reason
    assert await outcome("192.0.2.1", mode="postfix", require_fqdn=False) is None
    assert await outcome("2001:db8::1", mode="postfix", require_fqdn=False) is None


# -- address literals ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "address"),
    [
        ("[203.0.113.9]", "203.0.113.9"),
        ("[IPv6:2001:db8::25]", "2001:db8::25"),
        ("[IPv6:2001:DB8:0:0::25]", "2001:db8::25"),
        ("[203.0.113.9]", "::ffff:203.0.113.9"),
    ],
)
async def test_literal_matching_the_client_is_accepted(literal: str, address: str) -> None:
    assert await at_helo(literal, address=address) is None


@pytest.mark.parametrize(
    ("literal", "address"),
    [
        ("[192.0.2.1]", "203.0.113.9"),
        ("[IPv6:2001:db8::26]", "2001:db8::25"),
        ("[203.0.113.9]", "2001:db8::25"),
        ("[IPv6:2001:db8::25]", "203.0.113.9"),
    ],
)
async def test_literal_not_matching_the_client_is_refused(literal: str, address: str) -> None:
    verdict = await at_helo(literal, address=address)
    assert verdict is not None
    assert verdict.outcome == MM
    assert not verdict.rfc_compliant  # RFC 5321 §4.1.4
    assert address in verdict.reason
    assert verdict.details["client_address"] == address
    assert verdict.reply is not None
    assert verdict.reply.render() == (
        f"550 5.7.1 <{literal}>: Helo command rejected: "
        "HELO IP literal does not match your IP address"
    )


@pytest.mark.parametrize("literal", ["[203.0.113.9]", "[192.0.2.1]", "[IPv6:2001:db8::1]"])
async def test_address_literal_reject_refuses_every_literal(literal: str) -> None:
    verdict = await at_helo(literal, address_literal="reject")
    assert verdict is not None
    assert verdict.outcome == "HELO_LITERAL_REFUSED"
    assert not verdict.rfc_compliant  # RFC 5321 §4.1.3/§2.3.5 allow a literal
    assert verdict.reply is not None
    assert verdict.reply.render() == "550 HELO/EHLO must not be an IP address"
    assert await at_helo("mx.example.com", address_literal="reject") is None


@pytest.mark.parametrize("literal", ["[203.0.113.9]", "[192.0.2.1]", "[IPv6:2001:db8::1]"])
async def test_address_literal_accept_takes_any_valid_literal(literal: str) -> None:
    assert await at_helo(literal, address_literal="accept") is None


@pytest.mark.parametrize("setting", ["match", "reject", "accept"])
@pytest.mark.parametrize(
    "literal", ["[300.1.2.3]", "[IPv6:zz]", "[1.2.3.4", "[IPv6:1.2.3.4]", "[IPv4:1.2.3.4]"]
)
async def test_malformed_literal_is_invalid_whatever_the_setting(
    literal: str, setting: str
) -> None:
    verdict = await at_helo(literal, address_literal=setting)
    assert verdict is not None
    assert verdict.outcome == BL
    assert verdict.rfc_compliant
    assert verdict.reply is not None
    assert verdict.reply.render() == (
        f"501 5.5.2 <{literal}>: Helo command rejected: invalid ip address"
    )


async def test_bad_literal_reasons_name_the_defect() -> None:
    reasons = {
        name: (await at_helo(name, mode="rfc1123") or pytest.fail(name)).reason
        for name in ["[1.2.3.4", "[]", "[::1]", "[IPv6:1.2.3.4]", "[IPv4:1.2.3.4]", "[300.1.2.3]"]
    }
    assert "no closing ']'" in reasons["[1.2.3.4"]
    assert "is empty" in reasons["[]"]
    assert "without the 'IPv6:' tag" in reasons["[::1]"]
    assert "tagged IPv6 but holds an IPv4 address" in reasons["[IPv6:1.2.3.4]"]
    assert "'IPv4:' tag" in reasons["[IPv4:1.2.3.4]"]
    assert "'300.1.2.3'" in reasons["[300.1.2.3]"]


# -- missing argument ------------------------------------------------------------------


@pytest.mark.parametrize("argument", ["", "   "])
@pytest.mark.parametrize("verb", ["HELO", "EHLO"])
async def test_missing_argument(argument: str, verb: str) -> None:
    session = make_session(argument, verb=verb)
    verdict = await policy().check(Stage.HELO, session, make_ctx())
    assert verdict is not None
    assert verdict.outcome == "HELO_MISSING"
    assert verdict.reply is not None
    assert verdict.reply.render() == f"501 5.5.2 Syntax: {verb} hostname"


async def test_helo_never_sent_is_missing() -> None:
    session = Session(Client("127.0.0.1", address=CLIENT))
    verdict = await policy().check(Stage.HELO, session, make_ctx())
    assert verdict is not None
    assert verdict.reply is not None
    assert verdict.reply.render() == "501 5.5.2 Syntax: HELO hostname"


# -- bare_ip ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["192.0.2.1", "203.0.113.9", "2001:db8::1"])
async def test_bare_ip_reject(mode: str, name: str) -> None:
    verdict = await at_helo(name, mode=mode, bare_ip="reject")
    assert verdict is not None
    assert verdict.outcome == "HELO_BARE_IP"
    assert verdict.reply is not None
    assert verdict.reply.render() == (
        f"501 5.5.2 <{name}>: Helo command rejected: Invalid address format in HELO"
    )
    assert "without brackets" in verdict.reason


@pytest.mark.parametrize("name", ["mx.example.com", "[203.0.113.9]", "300.1.2.3"])
async def test_bare_ip_reject_leaves_other_names_alone(name: str) -> None:
    # 300.1.2.3 is no address: in exim mode it is just digits and dots.
    assert await at_helo(name, mode="exim", bare_ip="reject") is None


# -- U-labels and SMTPUTF8 ---------------------------------------------------------------


async def at_mail(name: str, *, smtputf8: bool, **options: Any) -> Verdict | None:
    session = make_session(name, smtputf8=smtputf8)
    return await policy(**options).check(Stage.MAIL, session, make_ctx())


@pytest.mark.parametrize("mode", ["rfc1035", "rfc1123"])
async def test_u_label_needs_smtputf8_at_mail(mode: str) -> None:
    assert await at_helo("bücher.example", mode=mode) is None
    assert await at_mail("bücher.example", smtputf8=True, mode=mode) is None
    verdict = await at_mail("bücher.example", smtputf8=False, mode=mode)
    assert verdict is not None
    assert verdict.outcome == "HELO_UTF8_WITHOUT_SMTPUTF8"
    assert verdict.stage is Stage.MAIL
    assert "SMTPUTF8" in verdict.reason
    assert verdict.reply is not None
    # The reply builder sends printable ASCII only.
    assert verdict.reply.render() == (
        "553 5.6.7 <b?cher.example>: Helo command rejected: non-ASCII name without SMTPUTF8"
    )


async def test_ascii_name_has_nothing_to_answer_at_mail() -> None:
    assert await at_mail("mx.example.com", smtputf8=False) is None
    assert await at_mail("xn--bcher-kva.example", smtputf8=False) is None
    assert await at_mail("", smtputf8=False) is None


async def test_u_label_refused_at_helo_when_utf8_is_off() -> None:
    verdict = await at_helo("bücher.example", allow_utf8=False)
    assert verdict is not None
    assert verdict.outcome == INV
    assert "'ü'" in verdict.reason
    # Already refused at HELO: MAIL adds no second verdict.
    assert await at_mail("bücher.example", smtputf8=False, allow_utf8=False) is None


@pytest.mark.parametrize("mode", ["exim", "postfix"])
async def test_exim_and_postfix_refuse_u_labels_even_with_smtputf8(mode: str) -> None:
    assert await outcome("bücher.example", mode=mode) == INV
    assert await at_mail("bücher.example", smtputf8=False, mode=mode) is None
    assert await at_mail("bücher.example", smtputf8=True, mode=mode) is None


async def test_invalid_u_label_name_is_judged_at_helo_only() -> None:
    assert await outcome("bücher-.example") == INV
    assert await at_mail("bücher-.example", smtputf8=False) is None


async def test_u_label_length_counts_the_a_label() -> None:
    # 58 characters as sent, but the A-label DNS would carry is over 63.
    verdict = await at_helo("ü" * 58 + ".example")
    assert verdict is not None
    assert verdict.outcome == INV
    assert "A-label would be over 63 characters" in verdict.reason
    assert await at_helo("ü" * 55 + ".example") is None  # xn--tdaaa...: 61


# -- trailing dot ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "one_dot", "single_label_dot", "two_dots"),
    [
        ("rfc1035", INV, INV, INV),
        ("rfc1123", INV, INV, INV),
        ("postfix", OK, NF, INV),  # dup_if_truncate strips one dot, never two
        ("exim", OK, NF, OK),
    ],
)
async def test_trailing_dot(
    mode: str, one_dot: str | None, single_label_dot: str | None, two_dots: str | None
) -> None:
    assert await outcome("mx.example.com.", mode=mode) == one_dot
    assert await outcome("mailserver.", mode=mode) == single_label_dot
    assert await outcome("mx.example.com..", mode=mode) == two_dots


async def test_trailing_dot_reason() -> None:
    verdict = await at_helo("mx.example.com.", mode="rfc1035")
    assert verdict is not None
    assert "trailing dot" in verdict.reason


# -- lengths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "ok_63", "ok_64"),
    [
        ("rfc1035", True, False),
        ("rfc1123", True, False),
        ("postfix", True, False),
        ("exim", True, True),
    ],
)
async def test_label_63_vs_64(mode: str, ok_63: bool, ok_64: bool) -> None:
    assert (await outcome("mx." + "a" * 63 + ".example", mode=mode) is None) is ok_63
    assert (await outcome("mx." + "a" * 64 + ".example", mode=mode) is None) is ok_64


async def test_long_label_reason_names_the_label() -> None:
    verdict = await at_helo("mx." + "a" * 64 + ".example")
    assert verdict is not None
    assert verdict.reason == "label 2 is 64 characters, over 63"
    assert verdict.details["label_index"] == 2
    assert verdict.details["length"] == 64


@pytest.mark.parametrize(
    ("length", "rfc", "postfix"),
    [(253, OK, OK), (254, INV, OK), (255, INV, OK), (256, INV, INV)],
)
async def test_name_length(length: int, rfc: str | None, postfix: str | None) -> None:
    name = name_of_length(length)
    assert len(name) == length
    assert max(len(label) for label in name.split(".")) <= 63
    assert await outcome(name, mode="rfc1035") == rfc
    assert await outcome(name, mode="rfc1123") == rfc
    assert await outcome(name, mode="postfix") == postfix
    assert await outcome(name, mode="exim") is None


async def test_name_length_reason_and_postfix_dot_stripping() -> None:
    verdict = await at_helo(name_of_length(254), mode="rfc1123")
    assert verdict is not None
    assert verdict.reason == "name is 254 characters, over 253"
    # Postfix counts the name after dropping the one trailing dot.
    assert await outcome(name_of_length(255) + ".", mode="postfix") is None
    assert await outcome(name_of_length(256) + ".", mode="postfix") == INV


# -- underscore --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "allow_chars", "expected"),
    [
        ("rfc1035", "", INV),
        ("rfc1123", "", INV),
        ("postfix", "", OK),
        ("exim", "", INV),
        ("exim", "_", OK),  # helo_allow_chars = _
    ],
)
async def test_underscore(mode: str, allow_chars: str, expected: str | None) -> None:
    got = await outcome("mail_1.example.com", mode=mode, allow_chars=allow_chars)
    assert got == expected


async def test_underscore_reason_names_the_character() -> None:
    verdict = await at_helo("mail_1.example.com")
    assert verdict is not None
    assert verdict.reason == "character '_' in label 'mail_1' is not allowed in a host name"
    assert verdict.details["character"] == "_"


async def test_exim_allow_chars_extends_only_exim() -> None:
    assert await outcome("2001:db8::1", mode="exim", allow_chars=":", require_fqdn=False) is None
    assert await outcome("mail_1.example.com", mode="rfc1123", allow_chars="_") == INV


# -- reasons and replies -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "mode", "reason"),
    [
        ("mx-.example.com", "rfc1123", "label 'mx-' ends with a hyphen"),
        ("-mx.example.com", "postfix", "label '-mx' starts with a hyphen"),
        ("mailserver", "rfc1123", "no dot: 'mailserver' is not fully qualified"),
        ("1mx.example.com", "rfc1035", "label '1mx' starts with a digit"),
        ("mx..example.com", "rfc1123", "label 2 of 'mx..example.com' is empty"),
        ("mx.example.123", "rfc1123", "top-level label '123' is all digits"),
        ("300.1.2.3", "postfix", "'300.1.2.3' has no letters"),
        ("192.0.2.1", "rfc1123", "send it as a literal [192.0.2.1]"),
        ("2001:db8::1", "rfc1035", "send it as a literal [IPv6:2001:db8::1]"),
        ("mx_1.example.com", "exim", "character '_' is not allowed: Exim takes"),
    ],
)
async def test_reason_names_the_defect(name: str, mode: str, reason: str) -> None:
    verdict = await at_helo(name, mode=mode)
    assert verdict is not None
    assert reason in verdict.reason


async def test_reply_text_rendering() -> None:
    verdict = await at_helo("mailserver")
    assert verdict is not None
    assert verdict.rfc_compliant
    assert verdict.reply is not None
    assert verdict.reply.render() == (
        "504 5.5.2 <mailserver>: Helo command rejected: need fully-qualified hostname"
    )
    invalid = await at_helo("mx-.example.com")
    assert invalid is not None and invalid.reply is not None
    assert (
        invalid.reply.render() == "501 5.5.2 <mx-.example.com>: Helo command rejected: Invalid name"
    )


async def test_reply_override_is_used() -> None:
    override = Reply.parse("550 HELO/EHLO domain invalid exchange.")
    HeloSyntax.validate_reply("HELO_LITERAL_REFUSED", override)
    p = policy(replies={"HELO_LITERAL_REFUSED": override}, address_literal="reject")
    verdict = await p.check(Stage.HELO, make_session("[203.0.113.9]"), make_ctx())
    assert verdict is not None
    assert verdict.outcome == "HELO_LITERAL_REFUSED"
    assert verdict.action is Action.REJECT
    assert verdict.reply is not None
    assert verdict.reply.render() == "550 HELO/EHLO domain invalid exchange."


async def test_override_with_a_temporary_code_defers() -> None:
    p = policy(replies={"HELO_NOT_FQDN": Reply.parse("450 4.7.1 <{helo}>: try a real name")})
    verdict = await p.check(Stage.HELO, make_session("mailserver"), make_ctx())
    assert verdict is not None
    assert verdict.action is Action.DEFER
    assert verdict.reply is not None
    assert verdict.reply.render() == "450 4.7.1 <mailserver>: try a real name"


# -- declaration ---------------------------------------------------------------------------


def test_declaration() -> None:
    assert HeloSyntax in BUILTIN
    assert HeloSyntax.name == "helo_syntax"
    assert HeloSyntax.stages == {Stage.HELO, Stage.MAIL}
    assert HeloSyntax.summary and "\n" not in HeloSyntax.summary
    assert HeloSyntax.__doc__ and "RFC 5321" in HeloSyntax.__doc__
    ids = {o.id for o in HeloSyntax.outcomes}
    assert ids == {
        "HELO_MISSING",
        INV,
        NF,
        BL,
        MM,
        "HELO_LITERAL_REFUSED",
        "HELO_BARE_IP",
        "HELO_UTF8_WITHOUT_SMTPUTF8",
    }
    for o in HeloSyntax.outcomes:
        HeloSyntax.validate_reply(o.id, o.default_reply())
    refused_by_rfc = {o.id for o in HeloSyntax.outcomes if not o.rfc_allows}
    assert refused_by_rfc == {MM, "HELO_LITERAL_REFUSED"}
    for name, spec in HeloSyntaxOptions.model_fields.items():
        assert spec.description, name


def test_options_are_validated() -> None:
    defaults = HeloSyntaxOptions()
    assert defaults.mode == "rfc1123"
    assert defaults.require_fqdn and defaults.allow_utf8
    assert defaults.address_literal == "match" and defaults.bare_ip == "mode"
    with pytest.raises(ValidationError):
        HeloSyntaxOptions(mode=cast(Any, "sendmail"))
    with pytest.raises(ValidationError):
        HeloSyntaxOptions(**cast(Any, {"require_fdqn": False}))


# -- property --------------------------------------------------------------------------------

RFC1035_LABEL = st.from_regex(r"[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(RFC1035_LABEL, min_size=1, max_size=8).map(".".join).filter(lambda n: len(n) <= 253)
)
def test_rfc1035_names_are_accepted_in_every_mode(name: str) -> None:
    for mode in MODES:
        verdict = asyncio.run(at_helo(name, mode=mode, require_fqdn="." in name))
        assert verdict is None, (mode, verdict.reason if verdict else "")


# -- IDNA 2008 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "a\u200db.example",  # a joiner outside its context: IDNA 2003 dropped it ("ab")
        "\u2603.example",  # a symbol: IDNA 2003 encoded it (xn--n3h)
    ],
)
async def test_labels_idna_2008_refuses(name: str) -> None:
    verdict = await at_helo(name)
    assert verdict is not None and verdict.outcome == INV
    assert "not a valid internationalized label" in verdict.reason


async def test_labels_idna_2008_keeps() -> None:
    # ß has its own A-label (xn--strae-oqa) where IDNA 2003 made it "ss": both valid.
    assert await at_helo("straße.example") is None
    assert await at_helo("bücher.example") is None


# -- Postfix mode: the name in the reply as smtpd quotes it ---------------------------------


@pytest.mark.parametrize(
    ("helo", "reply"),
    [
        # Postfix 3.7.11, recorded live: HELO NAME, MAIL FROM:<a@example.net>, RCPT TO:
        # <alice@strictmx.test> with reject_invalid_helo_hostname.
        ("mail@example.com", "501 5.5.2 <mail?example.com>: Helo command rejected: Invalid name"),
        (
            'a"b<c>.example.net',
            "501 5.5.2 <a?b?c?.example.net>: Helo command rejected: Invalid name",
        ),
        ("a\tb.net", "501 5.5.2 <a?b.net>: Helo command rejected: Invalid name"),
        (
            "mail.example.net extra",
            "501 5.5.2 <mail.example.net?extra>: Helo command rejected: Invalid name",
        ),
        # A raw 0xE9 octet, taken when SMTPUTF8 is off (smtputf8_enable=no instance).
        ("\udce9.example.net", "501 5.5.2 <?.example.net>: Helo command rejected: Invalid name"),
        ("mail", "504 5.5.2 <mail>: Helo command rejected: need fully-qualified hostname"),
    ],
)
async def test_postfix_mode_quotes_the_name_as_smtpd(helo: str, reply: str) -> None:
    verdict = await at_helo(helo, mode="postfix")
    assert verdict is not None and verdict.reply is not None
    assert verdict.reply.render() == reply


async def test_postfix_mode_refuses_a_utf8_name() -> None:
    # Recorded: `EHLO é.example.net`, MAIL ... SMTPUTF8, RCPT -> 501 5.5.2 <é.example.net>:
    # Helo command rejected: Invalid name. The reply builder sends ASCII only, so the é
    # goes out as '?' (a deliberate difference: Postfix sends the UTF-8).
    verdict = await at_helo("\u00e9.example.net", mode="postfix")
    assert verdict is not None and verdict.reply is not None
    assert verdict.outcome == INV
    assert (
        verdict.reply.render() == "501 5.5.2 <?.example.net>: Helo command rejected: Invalid name"
    )
    # Control: its A-label is a valid name (recorded: EHLO xn--9ca.example.net -> 250 at RCPT).
    assert await at_helo("xn--9ca.example.net", mode="postfix") is None


async def test_postfix_mode_refused_at_helo_quotes_the_name_as_sent() -> None:
    # smtpd_delay_reject = no: smtpd.c helo_cmd runs the restrictions before it stores the
    # neutered name (Postfix 3.7.11, recorded live: `EHLO mail@example.net` -> 501 5.5.2
    # <mail@example.net>: Helo command rejected: Invalid name).
    ctx = replace(make_ctx(), delay_reject=False)
    verdict = await policy(mode="postfix").check(Stage.HELO, make_session("mail@example.net"), ctx)
    assert verdict is not None and verdict.reply is not None
    assert verdict.reply.render() == (
        "501 5.5.2 <mail@example.net>: Helo command rejected: Invalid name"
    )
    # The entry's own delay_reject decides over the receiver's, both ways.
    delayed = policy(mode="postfix")
    delayed.delay_reject = True
    verdict = await delayed.check(Stage.HELO, make_session("mail@example.net"), ctx)
    assert verdict is not None and verdict.reply is not None
    assert "<mail?example.net>" in verdict.reply.render()
    at_once = policy(mode="postfix")
    at_once.delay_reject = False
    verdict = await at_once.check(Stage.HELO, make_session("mail@example.net"), make_ctx())
    assert verdict is not None and verdict.reply is not None
    assert "<mail@example.net>" in verdict.reply.render()


async def test_postfix_mode_without_smtputf8_shows_each_octet_as_a_question_mark() -> None:
    # smtputf8_enable = no, refusal delayed to RCPT (Postfix 3.7.11, recorded live:
    # `EHLO mäil.example.net` ... RCPT -> 501 5.5.2 <m??il.example.net>: ... Invalid name).
    ctx = replace(make_ctx(), smtputf8=False)
    verdict = await policy(mode="postfix").check(
        Stage.HELO, make_session("m\u00e4il.example.net"), ctx
    )
    assert verdict is not None and verdict.reply is not None
    assert verdict.reply.render() == (
        "501 5.5.2 <m??il.example.net>: Helo command rejected: Invalid name"
    )
    # Control: with SMTPUTF8 offered the character is kept (one '?' from the ASCII-only
    # reply builder, see test_postfix_mode_refuses_a_utf8_name).
    verdict = await at_helo("m\u00e4il.example.net", mode="postfix")
    assert verdict is not None and verdict.reply is not None
    assert "<m?il.example.net>" in verdict.reply.render()


async def test_other_modes_quote_the_name_as_sent() -> None:
    # Neutering is Postfix's; rfc1123 mode's reply (Postfix's words by default) keeps '@'.
    verdict = await at_helo("mail@example.com")
    assert verdict is not None and verdict.reply is not None
    assert "<mail@example.com>" in verdict.reply.render()
