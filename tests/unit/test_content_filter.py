from __future__ import annotations

import asyncio
import email.policy
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from strictmx.policies import BUILTIN
from strictmx.policies.content_filter import ContentFilter, ContentFilterOptions
from strictmx.receiver.policy import ClientHistory, Context
from strictmx.receiver.session import Client, Session
from strictmx.receiver.verdict import Action, Reply, Stage, Verdict
from strictmx.receiver.world import World

HOST = "mx.strictmx.test"
CLIENTS = ("203.0.113.9", "2001:db8::25")

PLAIN = (
    b"From: Alice <alice@example.net>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: Quarterly report\r\n"
    b"Date: Sun, 15 Jun 2025 12:00:00 +0000\r\n"
    b"Message-ID: <report.1@example.net>\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b"the figures are attached.\r\n"
)


def mail(
    *,
    subject: str = "Quarterly report",
    text: str = "Hello Bob,\nthe figures are attached.\n",
    attachments: tuple[tuple[bytes, str, str], ...] = (),
    html: str | None = None,
    cte: str | None = None,
) -> bytes:
    """A message built by the stdlib; attachments are (data, 'type/subtype', filename)."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "Alice <alice@example.net>"
    msg["To"] = "bob@example.org"
    msg["Subject"] = subject
    msg.set_content(text, cte=cte)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for data, content_type, filename in attachments:
        maintype, subtype = content_type.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


def make_session(message: bytes | None, address: str = CLIENTS[0]) -> Session:
    session = Session(Client("127.0.0.1", address=address))
    session.helo = "mail.example.net"
    session.mail_from = "alice@example.net"
    session.rcpts = ["bob@example.org"]
    session.message = message
    return session


def make_ctx() -> Context:
    return Context(world=World.empty(), hostname=HOST, history=ClientHistory()).for_session()


def policy(*rules: dict[str, Any], replies: dict[str, Reply] | None = None) -> ContentFilter:
    return ContentFilter(ContentFilterOptions.model_validate({"rules": list(rules)}), replies)


async def at_eod(
    message: bytes | None,
    *rules: dict[str, Any],
    address: str = CLIENTS[0],
    replies: dict[str, Reply] | None = None,
) -> Verdict | None:
    return await policy(*rules, replies=replies).check(
        Stage.EOD, make_session(message, address), make_ctx()
    )


def objection(v: Verdict | None, outcome: str, rule: str) -> Verdict:
    assert v is not None
    assert v.policy == "content_filter"
    assert v.outcome == outcome
    assert v.stage is Stage.EOD
    assert v.details["rule"] == rule
    assert v.reply is not None
    return v


def rejected(v: Verdict | None, rule: str) -> Verdict:
    v = objection(v, "CONTENT_REJECTED", rule)
    assert v.action is Action.REJECT
    return v


SUBJECT = {"name": "lottery", "header": "Subject", "regex": r"you (have )?won"}
BODY = {"name": "wire", "body": True, "regex": r"wire transfer"}
EXE = {"name": "executables", "attachment_types": ["application/x-msdownload", ".exe", ".scr"]}
BIG = {"name": "size", "max_size": 2000}


# -- header rules ------------------------------------------------------------------------


@pytest.mark.parametrize("address", CLIENTS)
async def test_header_regex_refuses(address: str) -> None:
    v = rejected(
        await at_eod(mail(subject="You have WON a prize"), SUBJECT, address=address), "lottery"
    )
    assert v.details == {"rule": "lottery", "what": "the Subject header"}
    assert v.reason == (
        "rule 'lottery': the Subject header 'You have WON a prize' matches "
        "'you (have )?won' at 'You have WON'"
    )
    assert v.reply is not None
    assert v.reply.render() == "550 5.7.1 Error: message content rejected"
    assert v.rfc_compliant


@pytest.mark.parametrize("address", CLIENTS)
async def test_header_regex_control(address: str) -> None:
    assert await at_eod(PLAIN, SUBJECT, address=address) is None


async def test_header_folded_over_lines_is_unfolded() -> None:
    folded = PLAIN.replace(b"Subject: Quarterly report", b"Subject: Congratulations, you\r\n won")
    rejected(await at_eod(folded, SUBJECT), "lottery")
    # Unfolding removes only the line break (RFC 5322 §2.2.3): the tab stays.
    tabbed = PLAIN.replace(b"Subject: Quarterly report", b"Subject: Congratulations, you\r\n\twon")
    assert await at_eod(tabbed, SUBJECT) is None
    rejected(await at_eod(tabbed, {**SUBJECT, "regex": r"you\s+won"}), "lottery")


async def test_header_encoded_words_are_decoded() -> None:
    encoded = PLAIN.replace(
        b"Subject: Quarterly report", b"Subject: =?UTF-8?B?WW91IHdvbiDigqwxMDAw?="
    )
    v = rejected(await at_eod(encoded, SUBJECT), "lottery")
    assert "'You won €1000'" in v.reason
    euro = {"name": "euro", "header": "subject", "regex": "€[0-9]+"}
    rejected(await at_eod(encoded, euro), "euro")


async def test_header_in_utf8_as_sent_under_smtputf8() -> None:
    raw = PLAIN.replace(
        b"Subject: Quarterly report", "Subject: Sie haben gewonnen: 1000 €".encode()
    )
    rule = {"name": "de", "header": "Subject", "regex": "gewonnen: [0-9]+ €"}
    rejected(await at_eod(raw, rule), "de")


async def test_header_name_is_case_insensitive_and_every_value_is_searched() -> None:
    raw = PLAIN.replace(
        b"Subject:",
        b"Received: from a.example by b.example\r\n"
        b"received: from spamhost.example by a.example\r\n"
        b"Subject:",
    )
    rule = {"name": "relay", "header": "RECEIVED", "regex": r"from spamhost\."}
    v = rejected(await at_eod(raw, rule), "relay")
    assert v.details["what"] == "the RECEIVED header"


async def test_case_sensitive_regex() -> None:
    rule = {**SUBJECT, "case_sensitive": True}
    assert await at_eod(mail(subject="YOU WON"), rule) is None
    rejected(await at_eod(mail(subject="you won"), rule), "lottery")


async def test_header_rule_ignores_part_headers_and_missing_headers() -> None:
    raw = mail(attachments=((b"x", "application/pdf", "won.pdf"),))
    rule = {"name": "disposition", "header": "Content-Disposition", "regex": "won"}
    assert await at_eod(raw, rule) is None
    assert await at_eod(PLAIN, {"name": "x", "header": "X-Mailer", "regex": "."}) is None


async def test_malformed_structured_header_is_searched_as_sent() -> None:
    raw = PLAIN.replace(b"Message-ID: <report.1@example.net>", b"Message-ID: <<bulk@\r\n spam>")
    rule = {"name": "msgid", "header": "Message-ID", "regex": r"<<bulk@ spam"}
    rejected(await at_eod(raw, rule), "msgid")


# -- body rules --------------------------------------------------------------------------


async def test_body_regex_refuses_and_control_passes() -> None:
    v = rejected(await at_eod(mail(text="Please make the wire transfer today.\n"), BODY), "wire")
    assert v.details["what"] == "the body (text/plain part)"
    assert "at 'wire transfer'" in v.reason
    assert await at_eod(PLAIN, BODY) is None


@pytest.mark.parametrize("cte", ["base64", "quoted-printable"])
async def test_body_is_decoded(cte: str) -> None:
    text = "Grüße — " + "x" * 90 + " please send a wire transfer.\n"
    raw = mail(text=text, cte=cte)
    assert f"Content-Transfer-Encoding: {cte}".encode() in raw
    assert cte != "base64" or b"wire transfer" not in raw
    rejected(await at_eod(raw, BODY), "wire")


async def test_quoted_printable_soft_break_inside_the_words() -> None:
    raw = PLAIN.replace(
        b"Message-ID: <report.1@example.net>\r\n",
        b"Message-ID: <report.1@example.net>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n",
    ).replace(b"the figures are attached.", b"a wire tran=\r\nsfer, please.")
    rejected(await at_eod(raw, BODY), "wire")


async def test_html_alternative_is_searched() -> None:
    raw = mail(html="<p>Urgent <b>wire transfer</b> needed</p>")
    v = rejected(
        await at_eod(raw, {"name": "wire", "body": True, "regex": "wire transfer"}), "wire"
    )
    assert v.details["what"] == "the body (text/html part)"


async def test_text_attachment_is_not_body() -> None:
    raw = mail(attachments=((b"wire transfer details", "text/plain", "notes.txt"),))
    assert await at_eod(raw, BODY) is None


async def test_body_caret_matches_at_line_starts() -> None:
    rule = {"name": "sig", "body": True, "regex": r"^the figures"}
    rejected(await at_eod(PLAIN, rule), "sig")
    assert await at_eod(PLAIN, {"name": "sig", "body": True, "regex": r"^figures"}) is None


async def test_unknown_charset_is_read_as_utf8() -> None:
    raw = PLAIN.replace(
        b"Message-ID: <report.1@example.net>\r\n",
        b"Message-ID: <report.1@example.net>\r\nContent-Type: text/plain; charset=x-klingon\r\n",
    ).replace(b"Hello Bob", "Grüße, wire transfer".encode())
    rejected(await at_eod(raw, BODY), "wire")


async def test_header_and_body_in_one_rule() -> None:
    rule = {"name": "both", "header": "Subject", "body": True, "regex": "invoice"}
    v = rejected(await at_eod(mail(subject="Your invoice"), rule), "both")
    assert v.details["what"] == "the Subject header"
    v = rejected(await at_eod(mail(text="see the invoice\n"), rule), "both")
    assert v.details["what"] == "the body (text/plain part)"
    assert await at_eod(PLAIN, rule) is None


# -- size ----------------------------------------------------------------------------------


async def test_size_limit() -> None:
    big = mail(text="x" * 3000 + "\n")
    v = objection(await at_eod(big, BIG), "MESSAGE_TOO_BIG", "size")
    assert v.action is Action.REJECT
    assert v.details == {"rule": "size", "size": len(big), "limit": 2000}
    assert v.reason == f"rule 'size': the message is {len(big)} octets, over the limit of 2000"
    assert v.reply is not None
    assert v.reply.render() == "552 5.3.4 Error: message file too big"


async def test_size_limit_is_inclusive() -> None:
    assert await at_eod(PLAIN, {"name": "size", "max_size": len(PLAIN)}) is None
    objection(
        await at_eod(PLAIN, {"name": "size", "max_size": len(PLAIN) - 1}), "MESSAGE_TOO_BIG", "size"
    )


# -- attachments ---------------------------------------------------------------------------


async def test_attachment_by_content_type() -> None:
    raw = mail(attachments=((b"MZ\x90\x00", "application/x-msdownload", "setup.bin"),))
    v = rejected(await at_eod(raw, EXE), "executables")
    assert v.details["what"] == "attachment 'setup.bin' (application/x-msdownload)"
    assert v.reason.endswith("type application/x-msdownload is refused")


async def test_attachment_by_extension_whatever_its_type() -> None:
    raw = mail(attachments=((b"MZ\x90\x00", "application/octet-stream", "Invoice.pdf.EXE"),))
    v = rejected(await at_eod(raw, EXE), "executables")
    assert v.reason.endswith("extension .exe is refused")


async def test_attachment_control() -> None:
    raw = mail(attachments=((b"%PDF-1.7", "application/pdf", "report.exe.pdf"),))
    assert await at_eod(raw, EXE) is None
    assert await at_eod(PLAIN, EXE) is None


@pytest.mark.parametrize(
    ("content_type", "seen_as"),
    [
        (None, "text/plain"),  # RFC 2045 §5.2: no Content-Type is text/plain
        ("text/plain; charset=utf-8", "text/plain"),
        ("TEXT/HTML", "text/html"),
        ("image/png;\r\n name=chart.png", "image/png"),
        ("nonsense", "text/plain"),  # malformed: the default again
    ],
)
async def test_a_single_part_message_is_typed_from_its_header(
    content_type: str | None, seen_as: str
) -> None:
    header = b"" if content_type is None else f"Content-Type: {content_type}\r\n".encode()
    raw = b"From: a@example.net\r\nSubject: hi\r\n" + header + b"\r\nbody\r\n"
    rule = {"name": "typed", "attachment_types": [seen_as]}
    v = rejected(await at_eod(raw, rule), "typed")
    assert seen_as in v.reason
    other = "application/zip"
    assert await at_eod(raw, {"name": "zips", "attachment_types": [other]}) is None


async def test_wildcard_type() -> None:
    raw = mail(attachments=((b"\x89PNG", "image/png", "chart.png"),))
    rejected(await at_eod(raw, {"name": "images", "attachment_types": ["image/*"]}), "images")
    assert await at_eod(raw, {"name": "video", "attachment_types": ["video/*"]}) is None


def multipart(*part_headers: bytes) -> bytes:
    head = PLAIN.split(b"\r\n\r\n")[0]
    parts = [
        b"--B\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n",
        *(b"--B\r\n" + h + b"\r\n\r\nTVqQAAMAAAAEAAAA\r\n" for h in part_headers),
    ]
    return (
        head
        + b"\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
        + b"".join(parts)
        + b"--B--\r\n"
    )


@pytest.mark.parametrize(
    ("header", "filename"),
    [
        (  # RFC 2231 extended parameter, UTF-8 and percent-encoded
            b"Content-Type: application/octet-stream\r\n"
            b"Content-Disposition: attachment; filename*=UTF-8''%E2%82%AC%20Rechnung.exe",
            "€ Rechnung.exe",
        ),
        (  # RFC 2231 continuations
            b"Content-Type: application/octet-stream\r\n"
            b'Content-Disposition: attachment;\r\n filename*0="very-long-";\r\n'
            b' filename*1="name.scr"',
            "very-long-name.scr",
        ),
        (  # RFC 2047 encoded-word in the Content-Type name parameter (Outlook style)
            b'Content-Type: application/octet-stream; name="=?UTF-8?B?w6TDtsO8LmV4ZQ==?="',
            "äöü.exe",
        ),
        (  # a trailing dot, which Windows drops
            b"Content-Type: application/octet-stream\r\n"
            b'Content-Disposition: attachment; filename="x.exe."',
            "x.exe.",
        ),
    ],
)
async def test_encoded_filenames(header: bytes, filename: str) -> None:
    v = rejected(await at_eod(multipart(header), EXE), "executables")
    assert v.details["what"] == f"attachment {filename!r} (application/octet-stream)"


async def test_attachment_inside_an_attached_message() -> None:
    inner = mail(attachments=((b"MZ", "application/octet-stream", "tool.exe"),))
    outer = EmailMessage(policy=email.policy.SMTP)
    outer["From"] = "alice@example.net"
    outer["Subject"] = "Fwd"
    outer.set_content("forwarded\n")
    outer.add_attachment(email.message_from_bytes(inner, policy=email.policy.default))
    rejected(await at_eod(outer.as_bytes(), EXE), "executables")


# -- order and replies ---------------------------------------------------------------------


async def test_first_matching_rule_decides() -> None:
    raw = mail(subject="you won", text="x" * 3000 + "\n")
    rejected(await at_eod(raw, SUBJECT, BIG), "lottery")
    objection(await at_eod(raw, BIG, SUBJECT), "MESSAGE_TOO_BIG", "size")


async def test_no_rules_or_no_message_means_no_opinion() -> None:
    assert await at_eod(mail(subject="you won")) is None
    assert await at_eod(None, SUBJECT) is None


YAHOO = (
    "554 Message not allowed - UP Email not accepted for policy reasons. "
    "Please visit https://help.yahoo.com/kb/postmaster/SLN5067.html [120]"
)


async def test_rule_reply_replaces_the_outcome_reply() -> None:
    rule = {**SUBJECT, "reply": YAHOO}
    v = rejected(await at_eod(mail(subject="you won"), rule), "lottery")
    assert v.reply is not None
    assert v.reply.render() == YAHOO


@pytest.mark.parametrize("address", CLIENTS)
async def test_rule_reply_placeholders(address: str) -> None:
    rule = {**EXE, "reply": "554 5.7.1 [{ip}] {rule}: {what} not accepted"}
    raw = mail(attachments=((b"MZ", "application/octet-stream", "a.scr"),))
    v = rejected(await at_eod(raw, rule, address=address), "executables")
    assert v.reply is not None
    assert v.reply.render() == (
        f"554 5.7.1 [{address}] executables: attachment 'a.scr' "
        "(application/octet-stream) not accepted"
    )


async def test_rule_reply_takes_precedence_over_the_scenario_override() -> None:
    override = Reply.parse("550 5.7.1 Message refused by {rule}")
    ContentFilter.validate_reply("CONTENT_REJECTED", override)
    replies = {"CONTENT_REJECTED": override}
    raw = mail(subject="you won", text="wire transfer\n")
    plain = rejected(await at_eod(raw, SUBJECT, replies=replies), "lottery")
    assert plain.reply is not None
    assert plain.reply.render() == "550 5.7.1 Message refused by lottery"
    own = rejected(await at_eod(raw, {**SUBJECT, "reply": YAHOO}, replies=replies), "lottery")
    assert own.reply is not None and own.reply.render() == YAHOO


async def test_temporary_rule_reply_defers() -> None:
    rule = {**BIG, "reply": "452 4.3.1 {size} octets is more than we take today ({limit})"}
    big = mail(text="x" * 3000 + "\n")
    v = objection(await at_eod(big, rule), "MESSAGE_TOO_BIG", "size")
    assert v.action is Action.DEFER
    assert v.reply is not None
    assert v.reply.render() == f"452 4.3.1 {len(big)} octets is more than we take today (2000)"


# -- options ---------------------------------------------------------------------------------


def option_errors(*rules: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        ContentFilterOptions.model_validate({"rules": list(rules)})
    return "\n".join(e["msg"].removeprefix("Value error, ") for e in info.value.errors())


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            {"name": "broken", "header": "Subject", "regex": "(unclosed"},
            "rule 'broken': bad regex '(unclosed': missing ), unterminated subpattern",
        ),
        ({"name": "empty"}, "rule 'empty': give exactly one of regex, max_size, attachment_types"),
        (
            {"name": "two", "regex": "x", "body": True, "max_size": 10},
            "rule 'two': give exactly one of regex, max_size, attachment_types "
            "(found: regex, max_size)",
        ),
        ({"name": "where", "regex": "x"}, "rule 'where': a regex needs a header to search"),
        ({"name": "what", "header": "Subject", "max_size": 5}, "rule 'what': header and body say"),
        ({"name": "what", "body": True, "attachment_types": [".exe"]}, "this rule has no regex"),
        (
            {"name": "types", "attachment_types": ["exe"]},
            "rule 'types': 'exe' is neither a MIME type",
        ),
        ({"name": "types", "attachment_types": ["application/"]}, "is neither a MIME type"),
        ({"name": "hdr", "header": "Sub ject", "regex": "x"}, "not a header field name"),
        ({"name": "hdr", "header": "Subject:", "regex": "x"}, "not a header field name"),
        ({"name": "", "max_size": 5}, "at least 1 character"),
        ({"name": "zero", "max_size": 0}, "greater than or equal to 1"),
        ({"name": "x", "max_size": 5, "action": "drop"}, "Extra inputs are not permitted"),
        (
            {"name": "r", "max_size": 5, "reply": "550 too big: {what}"},
            "rule 'r': reply: unknown placeholder {what}",
        ),
        (
            {"name": "r", "body": True, "regex": "x", "reply": "550 {size}"},
            "rule 'r': reply: unknown placeholder {size}",
        ),
        (
            {"name": "r", "max_size": 5, "reply": "250 fine"},
            "rule 'r': reply: an objection needs a 4xx or 5xx code",
        ),
        ({"name": "r", "max_size": 5, "reply": "too big"}, "rule 'r': reply: a reply must start"),
    ],
)
def test_rules_are_validated_at_load(rule: dict[str, Any], message: str) -> None:
    assert message in option_errors(rule)


def test_rule_names_are_unique() -> None:
    assert "two rules are named 'a'" in option_errors(
        {"name": "a", "max_size": 5}, {"name": "a", "max_size": 6}
    )


def test_valid_rules_compile_once() -> None:
    options = ContentFilterOptions.model_validate(
        {"rules": [SUBJECT, {**EXE, "attachment_types": ["Application/X-MSDownload", ".EXE"]}]}
    )
    subject, exe = options.rules
    assert subject.pattern is not None and subject.pattern.search("YOU WON")
    assert exe.types == {"application/x-msdownload"}
    assert exe.extensions == (".exe",)
    assert exe.outcome == "CONTENT_REJECTED"
    assert ContentFilterOptions().rules == []


def test_declaration() -> None:
    assert ContentFilter in BUILTIN
    assert ContentFilter.name == "content_filter"
    assert ContentFilter.stages == {Stage.EOD}
    assert ContentFilter.summary and "\n" not in ContentFilter.summary
    assert ContentFilter.__doc__ and "RFC 5321" in ContentFilter.__doc__
    assert {o.id for o in ContentFilter.outcomes} == {"CONTENT_REJECTED", "MESSAGE_TOO_BIG"}
    for o in ContentFilter.outcomes:
        ContentFilter.validate_reply(o.id, o.default_reply())
        assert o.rfc_allows
    for name, spec in ContentFilterOptions.model_fields.items():
        assert spec.description, name


# -- robustness --------------------------------------------------------------------------

ALL_KINDS = (
    {"name": "subject", "header": "Subject", "regex": "won"},
    {"name": "msgid", "header": "Message-ID", "regex": "<<"},
    {"name": "to", "header": "To", "regex": "@"},
    {"name": "body", "body": True, "regex": "wire"},
    {"name": "exe", "attachment_types": [".exe", "application/*"]},
)
_LINE = st.sampled_from(
    [
        b"Subject: =?utf-8?b?####?=",
        b"Subject: =?x-unknown?q?a?=",
        b"Message-ID: <<a@b",
        b'To: :;,<>@@"',
        b"Content-Type: multipart/mixed; boundary=B",
        b"Content-Type: text/plain; charset=x-unknown",
        b"Content-Type: ;;;=",
        b"Content-Transfer-Encoding: base64",
        b"Content-Transfer-Encoding: quoted-printable",
        b"Content-Disposition: attachment; filename*=bogus''%ZZ%",
        b"Content-Disposition: attachment; filename*0*=utf-8''%E2; filename*1=x.exe",
        b"Content-Type: message/rfc822",
        b'Content-Type: text/html; charset="utf-16"',
        b"Content-Transfer-Encoding: x-uuencode",
        b"begin 644 a.exe",
        b'Content-Type: application/octet-stream; name*="bad',
        b"--B",
        b"--B--",
        b"",
        b" folded",
        b"\xff\xfe",
        b"=?=",
        b"won wire",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_LINE, st.binary(max_size=40)), max_size=20))
def test_any_message_is_judged_without_error(lines: list[bytes]) -> None:
    raw = b"\r\n".join(lines) + b"\r\n"
    verdict = asyncio.run(at_eod(raw, *ALL_KINDS))
    assert verdict is None or verdict.outcome == "CONTENT_REJECTED"
