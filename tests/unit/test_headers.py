from __future__ import annotations

import email.utils
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from email.headerregistry import AddressHeader, HeaderRegistry
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from strictmx.policies import BUILTIN
from strictmx.policies.headers import RFC5322_SINGULAR, Headers, HeadersOptions
from strictmx.receiver.message import parse_header
from strictmx.receiver.policy import ClientHistory, Context
from strictmx.receiver.rfc5322 import SIMPLE_MAILBOX, message_id_problem, parse_date, strip_comments
from strictmx.receiver.session import Client, Session
from strictmx.receiver.verdict import Action, Reply, Stage, Verdict
from strictmx.receiver.world import World, WorldConfig

HOST = "mx.strictmx.test"
NOW = datetime(2024, 6, 14, 12, 0, tzinfo=UTC)  # a Friday
CLIENT_V4 = "203.0.113.9"
CLIENT_V6 = "2001:db8::9"

#: A compliant header, field by field; tests replace, drop or add fields.
BASE: tuple[tuple[str, str], ...] = (
    ("From", "Alice <alice@example.net>"),
    ("To", "Bob <bob@example.org>"),
    ("Subject", "Quarterly report"),
    ("Date", "Fri, 14 Jun 2024 13:58:00 +0200"),
    ("Message-ID", "<20240614115800.4711@mail.example.net>"),
)


def compose(
    *,
    replace: Mapping[str, str] | None = None,
    drop: Iterable[str] = (),
    add: Iterable[tuple[str, str]] = (),
    body: bytes = b"The figures are attached.\r\n",
) -> bytes:
    """A message from BASE: `replace` sets values, `drop` removes fields, `add` appends."""
    replaced = dict(replace or {})
    dropped = {name.lower() for name in drop}
    fields = [(n, replaced.pop(n, v)) for n, v in BASE if n.lower() not in dropped]
    fields += list(replaced.items()) + list(add)
    head = "".join(f"{name}:{' ' if value else ''}{value}\r\n" for name, value in fields)
    return head.encode("utf-8") + b"\r\n" + body


def make_ctx(now: datetime = NOW) -> Context:
    world = World.from_config(WorldConfig.model_validate({"clock": {"fixed": now.isoformat()}}))
    return Context(world=world, hostname=HOST, history=ClientHistory()).for_session()


def make_session(
    message: bytes | None,
    *,
    address: str = CLIENT_V4,
    smtputf8: bool = False,
    bare_lf: bool | None = None,
) -> Session:
    session = Session(Client("127.0.0.1", address=address))
    session.helo = "mail.example.net"
    session.mail_from = "alice@example.net"
    session.rcpts = ["bob@example.org"]
    session.smtputf8 = smtputf8
    session.message = message
    if bare_lf is None:  # as strictmx.receiver.smtp computes it for the data
        bare_lf = message is not None and message.count(b"\n") != message.count(b"\r\n")
    session.bare_lf = bare_lf
    return session


def policy(replies: Mapping[str, Reply] | None = None, **options: Any) -> Headers:
    return Headers(HeadersOptions(**options), replies)


async def judge(
    message: bytes,
    *,
    smtputf8: bool = False,
    bare_lf: bool | None = None,
    address: str = CLIENT_V4,
    now: datetime = NOW,
    replies: Mapping[str, Reply] | None = None,
    **options: Any,
) -> Verdict | None:
    session = make_session(message, address=address, smtputf8=smtputf8, bare_lf=bare_lf)
    return await policy(replies, **options).check(Stage.EOD, session, make_ctx(now))


async def outcome(message: bytes, **kwargs: Any) -> str | None:
    verdict = await judge(message, **kwargs)
    return verdict.outcome if verdict else None


def rendered(verdict: Verdict | None) -> str:
    assert verdict is not None and verdict.reply is not None
    return verdict.reply.render()


# -- the compliant path ------------------------------------------------------------------------


@pytest.mark.parametrize("address", [CLIENT_V4, CLIENT_V6])
async def test_a_compliant_message_passes(address: str) -> None:
    assert await judge(compose(), address=address) is None


async def test_no_message_no_opinion() -> None:
    session = make_session(None)
    assert await policy().check(Stage.EOD, session, make_ctx()) is None


async def test_a_typical_mailer_header_passes() -> None:
    message = (
        b"Received: from mail.example.net (mail.example.net [203.0.113.10])\r\n"
        b"\tby mx.example.org with ESMTPS id 4W0xyz; Fri, 14 Jun 2024 11:59:01 +0000\r\n"
        b"Received: from [10.0.0.5] by mail.example.net; Fri, 14 Jun 2024 11:59:00 +0000\r\n"
        b"MIME-Version: 1.0\r\n"
        b'From: "Smith, Alice" <alice@example.net>\r\n'
        b"To: bob@example.org, Carol <carol@example.org>\r\n"
        b"Cc: undisclosed-recipients:;\r\n"
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
        b"Date: Fri, 14 Jun 2024 11:58:00 +0000 (UTC)\r\n"
        b"Message-ID: <CAF=abc+123@mail.gmail.com>\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\n"
        b"Gr\xc3\xbc\xc3\x9fe \xe2\x80\x94 8-bit bodies are not the header's business.\r\n"
    )
    assert await judge(message) is None


# -- parsing the header section ----------------------------------------------------------------


def test_parse_header_fields_folding_and_lengths() -> None:
    header = parse_header(b"From: a@b.example\r\nSubject: one\r\n  two\r\nX-A:1\r\n\r\nbody\r\n")
    assert [(f.name, f.value, f.line, f.last_line) for f in header.fields] == [
        ("From", " a@b.example", 1, 1),
        ("Subject", " one  two", 2, 3),
        ("X-A", "1", 4, 4),
    ]
    assert header.lengths == [17, 12, 5, 5]
    assert header.raw.endswith(b"X-A:1\r\n\r\n")
    assert [f.name for f in header.get("SUBJECT")] == ["Subject"]


def test_parse_header_stops_at_a_line_that_is_no_field() -> None:
    # As Postfix's cleanup and Python's email parser: the body starts there.
    header = parse_header(b"From: a@b.example\r\nthis is text\r\nTo: c@d.example\r\n")
    assert [f.name for f in header.fields] == ["From"]
    assert header.raw == b"From: a@b.example\r\n"


@pytest.mark.parametrize(
    ("message", "names"),
    [
        (b"From: a@b.example", ["From"]),  # no blank line, no line end: all header
        (b"\r\nFrom: a@b.example\r\n", []),  # a blank first line: no header at all
        (b" continued\r\nFrom: a@b.example\r\n", []),  # a continuation with nothing to continue
        (b"From : a@b.example\r\n\r\n", ["From"]),  # obs-optional: WSP before the colon
        (b"From: a@b.example\nTo: c@d.example\n\nbody\n", ["From", "To"]),  # bare LF ends
    ],
)
def test_parse_header_edges(message: bytes, names: list[str]) -> None:
    assert [f.name for f in parse_header(message).fields] == names


# -- BARE_LF ---------------------------------------------------------------------------------


async def test_bare_lf_in_the_header_refuses_the_message() -> None:
    message = compose().replace(b"Subject: Quarterly report\r\n", b"Subject: Quarterly report\n")
    verdict = await judge(message)
    assert verdict is not None
    assert verdict.outcome == "BARE_LF"
    # Postfix 3.7.11 keeps the session after refusing it (recorded live: QUIT gets 221).
    assert verdict.action is Action.REJECT
    assert verdict.rfc_compliant  # RFC 5321 §2.3.8: CRLF only
    assert verdict.reason.startswith("line 3 of the message ends in a bare LF")
    assert verdict.details["line"] == 3
    assert rendered(verdict) == f"550 5.5.2 {HOST} Error: bare <LF> received"


async def test_bare_lf_in_the_body_is_found_too() -> None:
    verdict = await judge(compose(body=b"one\r\ntwo\nthree\r\n"))
    assert verdict is not None and verdict.outcome == "BARE_LF"
    assert verdict.details["line"] == 8


async def test_bare_lf_in_a_command_of_the_transaction() -> None:
    verdict = await judge(compose(), bare_lf=True)
    assert verdict is not None and verdict.outcome == "BARE_LF"
    assert verdict.reason == "a command of this transaction ended in a bare LF instead of CRLF"


async def test_bare_lf_allowed_then_lf_lines_are_read_as_lines() -> None:
    message = compose().replace(b"\r\n", b"\n")
    assert await outcome(message) == "BARE_LF"
    assert await judge(message, forbid_bare_lf=False) is None


# -- LINE_TOO_LONG -----------------------------------------------------------------------------


def subject_of_length(octets: int) -> str:
    return "x" * (octets - len("Subject: "))


async def test_998_octets_pass_999_do_not() -> None:
    assert await judge(compose(replace={"Subject": subject_of_length(998)})) is None
    verdict = await judge(compose(replace={"Subject": subject_of_length(999)}))
    assert verdict is not None
    assert verdict.outcome == "LINE_TOO_LONG"
    assert verdict.rfc_compliant
    assert verdict.reason == "header line 3 (Subject) is 999 octets, over the limit of 998"
    assert rendered(verdict) == (
        "550 5.6.0 Message header line 3 is 999 octets long, over the limit of 998"
    )


async def test_line_length_is_judged_per_folded_line() -> None:
    folded = subject_of_length(900) + "\r\n " + "y" * 900
    assert await judge(compose(replace={"Subject": folded})) is None
    folded = subject_of_length(900) + "\r\n " + "y" * 998
    verdict = await judge(compose(replace={"Subject": folded}))
    assert verdict is not None and verdict.outcome == "LINE_TOO_LONG"
    assert verdict.details == {"line": 4, "length": 999, "limit": 998}


async def test_max_line_length_option() -> None:
    long_subject = compose(replace={"Subject": subject_of_length(79)})
    assert await outcome(long_subject, max_line_length=78) == "LINE_TOO_LONG"
    assert await judge(long_subject, max_line_length=79) is None
    assert (
        await judge(compose(replace={"Subject": subject_of_length(5000)}), max_line_length=None)
        is None
    )


async def test_long_body_lines_are_not_the_header_check() -> None:
    assert await judge(compose(body=b"z" * 999 + b"\r\n")) is None


# -- HEADER_8BIT -------------------------------------------------------------------------------


async def test_8bit_header_without_smtputf8() -> None:
    message = compose(replace={"Subject": "Grüße"})
    verdict = await judge(message)
    assert verdict is not None
    assert verdict.outcome == "HEADER_8BIT"
    assert verdict.rfc_compliant
    assert verdict.reason == (
        "byte 0xc3 in header line 3 (Subject) is 8-bit and MAIL FROM did not ask for SMTPUTF8"
    )
    assert verdict.details == {"field": "Subject", "line": 3}
    assert rendered(verdict) == "550 5.6.0 improper use of 8-bit data in message header"


async def test_utf8_header_with_smtputf8_passes() -> None:
    message = compose(replace={"Subject": "Grüße", "From": "Jörg <jörg@bücher.example>"})
    assert await judge(message, smtputf8=True) is None


async def test_non_utf8_bytes_are_refused_even_with_smtputf8() -> None:
    message = compose().replace(b"Quarterly report", b"Gr\xfc\xdfe")
    verdict = await judge(message, smtputf8=True)
    assert verdict is not None and verdict.outcome == "HEADER_8BIT"
    assert verdict.reason == "byte 0xfc in header line 3 (Subject) is not UTF-8"


async def test_8bit_body_is_not_a_header_defect() -> None:
    assert await judge(compose(body="Grüße\r\n".encode())) is None


async def test_forbid_8bit_off() -> None:
    assert await judge(compose(replace={"Subject": "Grüße"}), forbid_8bit=False) is None


async def test_strict_7bit_refuses_utf8_even_with_smtputf8() -> None:
    # Postfix strict_7bit_headers = yes ignores SMTPUTF8 (Postfix 3.7.11, recorded live:
    # MAIL FROM:<alice@example.net> SMTPUTF8, `Subject: Grüße` -> 550 5.6.0 improper use
    # of 8-bit data in message header).
    message = compose(replace={"Subject": "Grüße"})
    verdict = await judge(message, smtputf8=True, strict_7bit=True)
    assert verdict is not None and verdict.outcome == "HEADER_8BIT_SMTPUTF8"
    assert not verdict.rfc_compliant  # RFC 6532 allows UTF-8 headers under SMTPUTF8
    assert verdict.details == {"field": "Subject", "line": 3}
    assert rendered(verdict) == "550 5.6.0 improper use of 8-bit data in message header"
    # Without SMTPUTF8, and bytes that are not UTF-8 with it, stay HEADER_8BIT.
    verdict = await judge(message, strict_7bit=True)
    assert verdict is not None and verdict.outcome == "HEADER_8BIT"
    bad = compose().replace(b"Quarterly report", b"Gr\xfc\xdfe")
    verdict = await judge(bad, smtputf8=True, strict_7bit=True)
    assert verdict is not None and verdict.outcome == "HEADER_8BIT"


async def test_strict_7bit_control_ascii_header_passes() -> None:
    assert await judge(compose(), smtputf8=True, strict_7bit=True) is None
    body = compose(body="Grüße\r\n".encode())
    assert await judge(body, smtputf8=True, strict_7bit=True) is None


def test_strict_7bit_needs_forbid_8bit() -> None:
    with pytest.raises(ValidationError, match="strict_7bit: true needs forbid_8bit: true"):
        HeadersOptions(strict_7bit=True, forbid_8bit=False)


# -- FIELD_REPEATED ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", RFC5322_SINGULAR)
async def test_each_singular_field_once(name: str) -> None:
    value = dict(BASE).get(name, "<x@example.net>" if name != "Subject" else "again")
    twice = compose(replace={name: value}, add=[(name, value)])
    verdict = await judge(twice)
    assert verdict is not None
    assert verdict.outcome == "FIELD_REPEATED"
    assert not verdict.rfc_compliant  # RFC 5321 §3.3: SHOULD NOT reject for header defects
    assert verdict.details["field"] == name
    assert verdict.details["count"] == 2
    assert rendered(verdict) == (
        f"550 5.6.0 Only one {name} header allowed. See RFC 5322, Section 3.6"
    )


async def test_repeats_are_counted_case_insensitively_and_named_canonically() -> None:
    verdict = await judge(compose(add=[("MESSAGE-ID", "<other@mail.example.net>")]))
    assert verdict is not None and verdict.outcome == "FIELD_REPEATED"
    assert verdict.reason == (
        "Message-ID appears 2 times (lines 5, 6); RFC 5322 section 3.6 allows it once"
    )
    assert rendered(verdict) == (
        "550 5.6.0 Only one Message-ID header allowed. See RFC 5322, Section 3.6"
    )


async def test_fields_that_may_repeat() -> None:
    extra = [
        ("Received", "from a by b; Fri, 14 Jun 2024 11:59:00 +0000"),
        ("Received", "from c by a; Fri, 14 Jun 2024 11:58:30 +0000"),
        ("Comments", "one"),
        ("Comments", "two"),
        ("Keywords", "x"),
        ("Keywords", "y"),
        ("Resent-Date", "Fri, 14 Jun 2024 11:59:00 +0000"),
        ("Resent-Date", "Fri, 14 Jun 2024 11:59:30 +0000"),
    ]
    assert await judge(compose(add=extra)) is None


async def test_singular_option() -> None:
    two_subjects = compose(add=[("Subject", "again")])
    assert await judge(two_subjects, singular=[]) is None
    two_mailers = compose(add=[("X-Mailer", "a"), ("x-mailer", "b")])
    assert await judge(two_mailers) is None
    verdict = await judge(two_mailers, singular=["X-Mailer"])
    assert verdict is not None and verdict.details["field"] == "X-Mailer"


# -- FROM_MISSING, FROM_INVALID, FROM_MULTIPLE -------------------------------------------------


async def test_from_missing() -> None:
    verdict = await judge(compose(drop=["From"]))
    assert verdict is not None
    assert verdict.outcome == "FROM_MISSING"
    assert not verdict.rfc_compliant
    assert verdict.reason == "the header has no From field"
    assert rendered(verdict) == "550 5.6.0 Required header 'From' missing"
    assert await judge(compose(drop=["From"]), require_from=False) is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "holds no address"),
        ("   ", "holds no address"),
        ("alice", "addr-spec local part with no domain"),
        # Python 3.11 and 3.12's parser raises IndexError here; 3.13's reports a defect.
        ("alice@", ("cannot be parsed", "invalid address in address-list")),
        ("<>", "null addr-spec in angle-addr"),
        ("Alice <alice@example.net", "missing trailing '>'"),
        ("alice@example.net>", "invalid address"),
        ("a..b@example.net", "local-part is not dot-atom"),
        ("Alice alice@example.net", "is not a valid mailbox list"),
        ("undisclosed-recipients:;", "holds no address"),
    ],
)
async def test_from_invalid(value: str, reason: str | tuple[str, ...]) -> None:
    verdict = await judge(compose(replace={"From": value}))
    assert verdict is not None
    assert verdict.outcome == "FROM_INVALID"
    assert not verdict.rfc_compliant
    reasons = (reason,) if isinstance(reason, str) else reason
    assert any(r in verdict.reason for r in reasons), verdict.reason
    assert verdict.details["value"] == value.strip()
    assert rendered(verdict) == (
        "550 5.7.1 Messages missing a valid address in the From: header, or having no "
        "From: header, are not accepted."
    )
    assert await judge(compose(replace={"From": value}), from_syntax=False) is None


@pytest.mark.parametrize(
    "value",
    [
        "alice@example.net",
        "<alice@example.net>",
        '"Smith, Alice" <alice@example.net>',
        "Alice <alice@[192.0.2.1]>",
        "alice@example.net (Alice)",
        "=?utf-8?q?J=C3=B6rg?= <joerg@example.net>",
        '"alice smith"@example.net',
    ],
)
async def test_valid_from(value: str) -> None:
    assert await judge(compose(replace={"From": value})) is None


async def test_obsolete_from_syntax() -> None:
    routed = compose(replace={"From": "Alice <@relay.example:alice@example.net>"})
    assert await judge(routed) is None
    verdict = await judge(routed, allow_obsolete=False)
    assert verdict is not None and verdict.outcome == "FROM_INVALID"
    assert "obsolete" in verdict.reason


async def test_non_ascii_local_part_needs_smtputf8() -> None:
    message = compose(replace={"From": "jörg@example.net"})
    assert await judge(message, smtputf8=True) is None
    verdict = await judge(message, forbid_8bit=False)
    assert verdict is not None and verdict.outcome == "FROM_INVALID"
    assert "non-ASCII local part without SMTPUTF8" in verdict.reason


TWO_AUTHORS = "Alice <alice@example.net>, Carol <carol@example.net>"


async def test_several_authors_need_a_sender() -> None:
    verdict = await judge(compose(replace={"From": TWO_AUTHORS}))
    assert verdict is not None
    assert verdict.outcome == "FROM_MULTIPLE"
    assert not verdict.rfc_compliant
    assert verdict.reason == (
        f"From {TWO_AUTHORS!r} holds 2 addresses and there is no Sender field "
        "(RFC 5322 section 3.6.2 requires one)"
    )
    assert verdict.details == {"value": TWO_AUTHORS, "count": 2}
    assert rendered(verdict) == (
        "550 5.7.1 Messages with multiple addresses in From: header are not accepted."
    )
    with_sender = compose(replace={"From": TWO_AUTHORS}, add=[("Sender", "alice@example.net")])
    assert await judge(with_sender) is None


async def test_multiple_from_modes() -> None:
    with_sender = compose(replace={"From": TWO_AUTHORS}, add=[("Sender", "alice@example.net")])
    verdict = await judge(with_sender, multiple_from="refuse")
    assert verdict is not None and verdict.outcome == "FROM_MULTIPLE"
    assert "this receiver takes one author only" in verdict.reason
    assert await judge(compose(replace={"From": TWO_AUTHORS}), multiple_from="allow") is None
    assert await judge(compose(), multiple_from="refuse") is None


# -- DATE_* ------------------------------------------------------------------------------------


async def test_date_missing() -> None:
    verdict = await judge(compose(drop=["Date"]))
    assert verdict is not None
    assert verdict.outcome == "DATE_MISSING"
    assert not verdict.rfc_compliant
    assert rendered(verdict) == "550 5.6.0 Required header 'Date' missing"
    assert await judge(compose(drop=["Date"]), require_date=False) is None


STRICT_DATES = [
    "Fri, 14 Jun 2024 12:00:00 +0000",
    "14 Jun 2024 12:00 +0000",
    "Fri,14 Jun 2024 12:00:00 +0000",
    "fri, 14 jun 2024 12:00:00 +0000",  # ABNF strings are case-insensitive
    "Fri, 14 Jun 2024 14:00:00 +0200 (CEST)",
    "Fri, 14 Jun 2024 12:00:00 +0000 (a (nested) comment)",
    "Fri,  14  Jun  2024  12:00:00  -0000",
    "Fri, 14 Jun 2024 12:00:00 +0000\t",
]
OBSOLETE_DATES = [
    "Fri, 14 Jun 2024 12:00:00 GMT",
    "Fri, 14 Jun 2024 12:00:00 UT",
    "Fri, 14 Jun 2024 08:00:00 EDT",
    "Fri, 14 Jun 2024 12:00:00 Z",
    "Fri, 14 Jun 24 12:00:00 +0000",
    "Fri, 14 Jun 124 12:00:00 +0000",
    "Fri , 14 Jun 2024 12:00:00 +0000",
    "Fri, 14 (day) Jun 2024 12:00:00 +0000",
    "(sent) Fri, 14 Jun 2024 12:00:00 +0000",
    "Fri, 14 Jun 2024 12 : 00 : 00 +0000",
    "Fri, 14Jun2024 12:00:00 +0000",
]


@pytest.mark.parametrize("value", STRICT_DATES)
@pytest.mark.parametrize("obsolete", [True, False])
async def test_rfc5322_dates_pass(value: str, obsolete: bool) -> None:
    assert await judge(compose(replace={"Date": value}), allow_obsolete=obsolete) is None


@pytest.mark.parametrize("value", OBSOLETE_DATES)
async def test_obsolete_dates_pass_only_with_allow_obsolete(value: str) -> None:
    message = compose(replace={"Date": value})
    assert await judge(message) is None
    verdict = await judge(message, allow_obsolete=False)
    assert verdict is not None and verdict.outcome == "DATE_INVALID"
    assert verdict.reason.endswith("uses the obsolete syntax of RFC 5322 section 4.3")


@pytest.mark.parametrize(
    ("value", "defect"),
    [
        ("", "is empty"),
        ("2024-06-14T12:00:00Z", "is not [day-name ','] day month year hh:mm[:ss] zone"),
        ("Fri, 14 Jun 2024 12:00:00", "is not [day-name ','] day month year"),  # no zone
        ("Fri, 14 Jun 2024", "is not [day-name ','] day month year"),
        ("Friday, 14 June 2024 12:00:00 +0000", "is not [day-name ','] day month year"),
        ("Fri, 14 Jun 2024 12:00:00 CEST", "is not [day-name ','] day month year"),
        ("Fri, 14 Jun 2024 12:00:00 +00:00", "is not [day-name ','] day month year"),
        ("Thu, 14 Jun 2024 12:00:00 +0000", "says Thu but 14 Jun 2024 is a Friday"),
        ("Sat, 31 Jun 2024 12:00:00 +0000", "names 31 Jun 2024, not a date"),
        ("Thu, 29 Feb 2023 12:00:00 +0000", "names 29 Feb 2023, not a date"),
        ("Fri, 14 Jun 2024 24:00:00 +0000", "has 24:00:00, not a time of day"),
        ("Fri, 14 Jun 2024 12:60:00 +0000", "has 12:60:00, not a time of day"),
        ("Fri, 14 Jun 2024 12:00:61 +0000", "has 12:00:61, not a time of day"),
        ("Fri, 14 Jun 2024 12:00:00 +2400", "has zone +2400, not an offset from UTC"),
        ("Fri, 14 Jun 2024 12:00:00 +0160", "has zone +0160, not an offset from UTC"),
        ("Wed, 14 Jun 1899 12:00:00 +0000", "has year 1899, before 1900"),
        ("Fri, 14 Jun 2024 12:00:00 +0000 (unclosed", "has an unclosed comment"),
        ("Fri, 14 Jun 2024 12:00:00 +0000)", "has a ')' without its '('"),
    ],
)
async def test_invalid_dates(value: str, defect: str) -> None:
    message = compose(replace={"Date": value})
    verdict = await judge(message)
    assert verdict is not None
    assert verdict.outcome == "DATE_INVALID"
    assert not verdict.rfc_compliant
    assert verdict.reason.startswith(f"Date {value.strip()!r} {defect}")
    assert verdict.details == {"value": value.strip()}
    assert rendered(verdict) == "550 5.6.0 The Date header is not an RFC 5322 date-time"
    assert await judge(message, date_syntax=False) is None


def test_date_values() -> None:
    assert parse_date("Fri, 14 Jun 2024 14:00:00 +0200", allow_obsolete=False) == NOW
    assert parse_date("14 Jun 2024 07:00:00 -0500", allow_obsolete=False) == NOW
    assert parse_date("Fri, 14 Jun 2024 08:00:00 EDT", allow_obsolete=True) == NOW
    assert parse_date("Fri, 14 Jun 2024 12:00:00 A", allow_obsolete=True) == NOW  # as -0000
    # RFC 5322 §4.3: 00-49 -> 20xx, 50-99 -> 19xx, three digits + 1900.
    assert parse_date("1 Jan 49 00:00 +0000", allow_obsolete=True).year == 2049
    assert parse_date("1 Jan 50 00:00 +0000", allow_obsolete=True).year == 1950
    assert parse_date("1 Jan 124 00:00 +0000", allow_obsolete=True).year == 2024
    # A leap second is the instant after :59.
    leap = parse_date("Sat, 31 Dec 2016 23:59:60 +0000", allow_obsolete=False)
    assert leap == datetime(2017, 1, 1, tzinfo=UTC)


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
)
def test_formatted_dates_parse_back(when: datetime, offset_minutes: int) -> None:
    aware = when.replace(microsecond=0, tzinfo=timezone(timedelta(minutes=offset_minutes)))
    text = email.utils.format_datetime(aware)
    assert parse_date(text, allow_obsolete=False) == aware
    gmt = email.utils.format_datetime(aware.astimezone(UTC), usegmt=True)
    assert parse_date(gmt, allow_obsolete=True) == aware
    with pytest.raises(ValueError, match="obsolete"):
        parse_date(gmt, allow_obsolete=False)


async def test_date_too_old() -> None:
    old = compose(replace={"Date": "Tue, 2 Jan 2024 09:00:00 +0000"})
    verdict = await judge(old)
    assert verdict is not None
    assert verdict.outcome == "DATE_TOO_OLD"
    assert not verdict.rfc_compliant
    assert verdict.reason == (
        "Date 'Tue, 2 Jan 2024 09:00:00 +0000' is 164.1 days before the receiver's clock "
        "(2024-06-14T12:00:00Z), over the limit of 15"
    )
    assert verdict.details == {
        "value": "Tue, 2 Jan 2024 09:00:00 +0000",
        "days": 164.1,
        "limit": 15.0,
    }
    assert rendered(verdict) == "550 5.6.0 The Date header is too old"
    assert await judge(old, max_age_days=None) is None
    assert await judge(old, max_age_days=200) is None


async def test_date_age_boundary() -> None:
    limit = compose(replace={"Date": "Thu, 30 May 2024 12:00:00 +0000"})  # exactly 15 days
    assert await judge(limit) is None
    assert await outcome(limit, now=NOW + timedelta(seconds=1)) == "DATE_TOO_OLD"


async def test_date_in_future() -> None:
    ahead = compose(replace={"Date": "Thu, 20 Jun 2024 12:00:00 +0000"})
    verdict = await judge(ahead)
    assert verdict is not None
    assert verdict.outcome == "DATE_IN_FUTURE"
    assert not verdict.rfc_compliant
    assert verdict.reason == (
        "Date 'Thu, 20 Jun 2024 12:00:00 +0000' is 8640 minutes after the receiver's clock "
        "(2024-06-14T12:00:00Z), over the limit of 2880"
    )
    assert verdict.details["minutes"] == 8640
    assert rendered(verdict) == "550 5.6.0 The Date header is too far in the future"
    assert await judge(ahead, max_future_minutes=None) is None


async def test_future_boundary_and_zones() -> None:
    # 12:10 at +0000 is ten minutes ahead; 14:10 at +0200 is the same instant.
    for value in ("Fri, 14 Jun 2024 12:10:00 +0000", "Fri, 14 Jun 2024 14:10:00 +0200"):
        message = compose(replace={"Date": value})
        assert await judge(message, max_future_minutes=10) is None
        assert await outcome(message, max_future_minutes=9.5) == "DATE_IN_FUTURE"


async def test_the_clock_is_the_worlds() -> None:
    message = compose(replace={"Date": "Fri, 14 Jun 2024 12:00:00 +0000"})
    assert await outcome(message, now=NOW + timedelta(days=16)) == "DATE_TOO_OLD"
    assert await outcome(message, now=NOW - timedelta(days=3)) == "DATE_IN_FUTURE"


async def test_an_unparsable_date_has_no_age() -> None:
    # As Haraka: with syntax checks off, a date that cannot be read is not judged by age.
    message = compose(replace={"Date": "yesterday"})
    assert await judge(message, date_syntax=False, max_age_days=1) is None


# -- MESSAGE_ID_* ------------------------------------------------------------------------------


async def test_message_id_missing() -> None:
    verdict = await judge(compose(drop=["Message-ID"]))
    assert verdict is not None
    assert verdict.outcome == "MESSAGE_ID_MISSING"
    assert not verdict.rfc_compliant
    assert rendered(verdict) == (
        "550 5.7.1 Messages missing a valid Message-ID: header are not accepted."
    )
    assert await judge(compose(drop=["Message-ID"]), require_message_id=False) is None


@pytest.mark.parametrize(
    ("value", "defect"),
    [
        ("", "is empty"),
        ("20240614.1@mail.example.net", "is not enclosed in angle brackets"),
        ("<20240614.1@mail.example.net", "is not enclosed in angle brackets"),
        ("<20240614.1>", "has no '@' between its left and right parts"),
        ("<a@example.net> <b@example.net>", "holds more than one id"),
        ("<a b@example.net>", "is not '<' dot-atom-text"),
        ("<a..b@example.net>", "is not '<' dot-atom-text"),
        ("<a@example..net>", "is not '<' dot-atom-text"),
        ("<a@@example.net>", "is not '<' dot-atom-text"),
        ("<@example.net>", "is not '<' dot-atom-text"),
        ("(unclosed <a@example.net>", "has an unclosed comment"),
    ],
)
async def test_invalid_message_ids(value: str, defect: str) -> None:
    message = compose(replace={"Message-ID": value})
    verdict = await judge(message)
    assert verdict is not None
    assert verdict.outcome == "MESSAGE_ID_INVALID"
    assert not verdict.rfc_compliant
    assert verdict.reason.startswith(f"Message-ID {value!r} {defect}")
    assert verdict.reason.endswith("(RFC 5322 section 3.6.4)")
    assert rendered(verdict) == (
        "550 5.7.1 Messages missing a valid Message-ID: header are not accepted."
    )
    assert await judge(message, message_id_syntax=False) is None


@pytest.mark.parametrize(
    "value",
    [
        "<CAF=abc+123@mail.gmail.com>",
        "<a.b.c@example.net>",
        "<1234@[192.0.2.1]>",
        "  <x@y>  ",
        "(comment) <x@example.net> (another)",
        "<!#$%&'*+/=?^_`{|}~-@example.net>",
    ],
)
async def test_valid_message_ids(value: str) -> None:
    assert await judge(compose(replace={"Message-ID": value}), allow_obsolete=False) is None


@pytest.mark.parametrize(
    "value", ['<"quoted id"@example.net>', "<a . b@example.net>", "<a@example.net (c)>"]
)
async def test_obsolete_message_ids(value: str) -> None:
    message = compose(replace={"Message-ID": value})
    assert await judge(message) is None
    verdict = await judge(message, allow_obsolete=False)
    assert verdict is not None and verdict.outcome == "MESSAGE_ID_INVALID"
    assert "obsolete syntax" in verdict.reason


def test_message_id_utf8_needs_smtputf8() -> None:
    assert message_id_problem("<jörg@bücher.example>", smtputf8=True, obsolete=False) is None
    assert message_id_problem("<jörg@bücher.example>", smtputf8=False, obsolete=True) == (
        "has non-ASCII characters without SMTPUTF8"
    )


def test_strip_comments() -> None:
    assert strip_comments("a (b (c) \\) d) e") == ("a   e", True)
    assert strip_comments('"(not a comment)" x') == ('"(not a comment)" x', False)
    assert strip_comments("x (trailing)") == ("x  ", False)
    with pytest.raises(ValueError, match="unclosed"):
        strip_comments("x (y")
    with pytest.raises(ValueError, match="without its"):
        strip_comments("x y)")


# -- order, several defects, replies -------------------------------------------------------------


async def test_first_defect_decides_and_the_others_are_listed() -> None:
    message = compose(
        replace={"Subject": "Grüße", "Date": "yesterday"}, drop=["Message-ID"], add=[("To", "x@y")]
    )
    verdict = await judge(message)
    assert verdict is not None
    assert verdict.outcome == "HEADER_8BIT"
    also = cast(list[str], verdict.details["also"])
    assert [entry.split(":")[0] for entry in also] == [
        "FIELD_REPEATED",
        "DATE_INVALID",
        "MESSAGE_ID_MISSING",
    ]
    assert also[1] == "DATE_INVALID: Date 'yesterday' " + (
        "is not [day-name ','] day month year hh:mm[:ss] zone (RFC 5322 section 3.3)"
    )


async def test_one_defect_has_no_also() -> None:
    verdict = await judge(compose(drop=["Date"]))
    assert verdict is not None and "also" not in verdict.details


GMAIL = Reply.parse(
    [
        "550-5.7.1 [{ip}] Our system has detected that this message is",
        "550-5.7.1 not RFC 5322 compliant. To reduce the amount of spam sent to Gmail,",
        "550-5.7.1 this message has been blocked. Please review",
        "550 5.7.1  RFC 5322 specifications for more information. {tag} - gsmtp",
    ]
)


@pytest.mark.parametrize("address", [CLIENT_V4, CLIENT_V6])
async def test_gmail_multi_line_override_fills_ip_and_tag(address: str) -> None:
    Headers.validate_reply("FIELD_REPEATED", GMAIL)
    session = make_session(compose(add=[("From", "mallory@example.net")]), address=address)
    p = policy({"FIELD_REPEATED": GMAIL})
    verdict = await p.check(Stage.EOD, session, make_ctx())
    assert verdict is not None and verdict.reply is not None
    assert verdict.action is Action.REJECT
    assert verdict.reply.wire_lines() == [
        f"550-5.7.1 [{address}] Our system has detected that this message is",
        "550-5.7.1 not RFC 5322 compliant. To reduce the amount of spam sent to Gmail,",
        "550-5.7.1 this message has been blocked. Please review",
        f"550 5.7.1  RFC 5322 specifications for more information. {session.tag} - gsmtp",
    ]


async def test_override_with_fields_and_a_temporary_code() -> None:
    override = Reply.parse("451 4.7.1 {count} {field} fields: try again with one")
    Headers.validate_reply("FIELD_REPEATED", override)
    verdict = await judge(
        compose(add=[("Subject", "b"), ("Subject", "c")]), replies={"FIELD_REPEATED": override}
    )
    assert verdict is not None
    assert verdict.action is Action.DEFER
    assert rendered(verdict) == "451 4.7.1 3 Subject fields: try again with one"


def test_an_override_cannot_use_another_outcomes_fields() -> None:
    from strictmx.receiver.verdict import ReplyError

    with pytest.raises(ReplyError, match="unknown placeholder"):
        Headers.validate_reply("DATE_MISSING", Reply.parse("550 bad date {value}"))


# -- declaration and options ---------------------------------------------------------------------


def test_declaration() -> None:
    assert Headers in BUILTIN
    assert Headers.name == "headers"
    assert Headers.stages == {Stage.EOD}
    assert Headers.summary and "\n" not in Headers.summary
    assert Headers.__doc__ and "RFC" in Headers.__doc__
    ids = {o.id for o in Headers.outcomes}
    assert ids == {
        "BARE_LF",
        "LINE_TOO_LONG",
        "HEADER_8BIT",
        "HEADER_8BIT_SMTPUTF8",
        "FIELD_REPEATED",
        "FROM_MISSING",
        "FROM_INVALID",
        "FROM_MULTIPLE",
        "DATE_MISSING",
        "DATE_INVALID",
        "DATE_TOO_OLD",
        "DATE_IN_FUTURE",
        "MESSAGE_ID_MISSING",
        "MESSAGE_ID_INVALID",
    }
    for o in Headers.outcomes:
        Headers.validate_reply(o.id, o.default_reply())
    allowed = {o.id for o in Headers.outcomes if o.rfc_allows}
    assert allowed == {"BARE_LF", "LINE_TOO_LONG", "HEADER_8BIT"}
    for name, spec in HeadersOptions.model_fields.items():
        assert spec.description, name


def test_option_defaults() -> None:
    o = HeadersOptions()
    assert o.forbid_bare_lf and o.forbid_8bit and o.allow_obsolete
    assert o.max_line_length == 998
    assert o.singular == RFC5322_SINGULAR
    assert o.max_age_days == 15 and o.max_future_minutes == 2880  # Haraka's 15 and 2 days
    assert o.multiple_from == "need_sender"


@pytest.mark.parametrize(
    "options",
    [
        {"max_age_days": 0},
        {"max_future_minutes": -1},
        {"max_line_length": 0},
        {"multiple_from": "sometimes"},
        {"singular": ["Subject", "Bad Name"]},
        {"singular": ["X:Y"]},
        {"require_dates": True},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        HeadersOptions(**options)


async def test_the_header_is_parsed_once_per_message(monkeypatch: pytest.MonkeyPatch) -> None:
    import strictmx.receiver.message as module

    calls: list[bytes] = []

    def counting(message: bytes) -> Any:
        calls.append(message)
        return parse_header(message)

    monkeypatch.setattr(module, "parse_header", counting)
    message = compose(replace={"Subject": "Grüße", "Date": "x"}, drop=["Message-ID"])
    verdict = await judge(message)
    assert verdict is not None and len(cast(list[str], verdict.details["also"])) == 2
    assert calls == [message]


@settings(max_examples=300, deadline=None)
@given(st.from_regex(SIMPLE_MAILBOX, fullmatch=True))
def test_the_from_fast_path_accepts_only_what_the_stdlib_accepts(value: str) -> None:
    parsed = HeaderRegistry()("From", value)
    assert isinstance(parsed, AddressHeader)
    assert not parsed.defects, value
    assert len(parsed.addresses) == 1
    assert parsed.addresses[0].username and parsed.addresses[0].domain
