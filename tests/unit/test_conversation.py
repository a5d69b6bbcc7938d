"""The sans-IO conversation, driven directly: events in, Steps out, no socket anywhere.

Its transport-facing behaviour (what goes on the wire) is covered over real sockets by
tests/e2e and tests/hostile; here, each state transition with a trigger and a control.
"""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

from strictmx.receiver import conversation
from strictmx.receiver import scenario as scenarios
from strictmx.receiver.conversation import Conversation, Step
from strictmx.receiver.persona import Persona
from strictmx.receiver.session import Client
from strictmx.receiver.verdict import Stage, Verdict

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def talk(text: str, peer: str = "203.0.113.10") -> tuple[Conversation, list[Verdict]]:
    persona = Persona.build(scenarios.loads(text))
    recorded: list[Verdict] = []
    conv = Conversation(persona, persona.context.for_session(), record=recorded.append)
    conv.open(Client(peer), NOW)
    return conv, recorded


def wire(step: Step) -> list[str]:
    assert step.reply is not None
    return step.reply.wire_lines()


HELO_SYNTAX = "policies: {helo: [{policy: helo_syntax}]}\n"


async def test_the_greeting_and_a_refused_connect() -> None:
    conv, _ = talk("receiver: {hostname: mx.example.org}\n")
    assert wire(await conv.connect()) == ["220 mx.example.org ESMTP"]
    assert conv.command("MAIL") is None  # control: nothing refused
    refused, recorded = talk(
        "receiver: {delay_reject: false}\n"
        "policies: {connect: [{policy: reverse_dns}]}\n"  # no PTR in an empty world
    )
    step = await refused.connect()
    assert step.reply is not None and step.reply.code >= 450 and not step.close
    assert [v.replied_at for v in recorded] == [Stage.CONNECT]
    # Every later command but QUIT gets the same refusal.
    assert refused.command("EHLO") == step.reply
    assert refused.command("QUIT") is None


async def test_a_refused_first_helo_is_kept_for_the_journal() -> None:
    conv, _ = talk("receiver: {delay_reject: false}\n" + HELO_SYNTAX)
    await conv.connect()
    assert (await conv.hello("EHLO", "localhost")).reply is not None
    assert conv.session is not None and conv.session.helo is None
    assert conv.fields == {"helo": "localhost"}
    # Control: no name, nothing kept.
    conv2, _ = talk("receiver: {delay_reject: false}\n" + HELO_SYNTAX)
    await conv2.connect()
    await conv2.hello("EHLO", None)
    assert conv2.fields == {}


async def test_a_refused_helo_leaves_the_session_as_it_was() -> None:
    conv, recorded = talk("receiver: {delay_reject: false}\n" + HELO_SYNTAX)
    await conv.connect()
    assert await conv.hello("EHLO", "mail.example.net") == Step()
    conv.hello_done(True)
    assert conv.session is not None and conv.session.helo == "mail.example.net"
    assert conv.helo_accepted and conv.fields == {"helo": "mail.example.net"}
    step = await conv.hello("EHLO", "localhost")
    assert wire(step) == [
        "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"
    ]
    assert (conv.session.helo, conv.session.helo_history) == ("mail.example.net", [])
    # The accepted name stays the journal's too.
    assert conv.fields == {"helo": "mail.example.net"}
    assert [v.outcome for v in recorded] == ["HELO_NOT_FQDN"]


async def test_delay_reject_answers_the_first_rcpt_and_postmaster_is_exempt() -> None:
    conv, recorded = talk(HELO_SYNTAX)  # delay_reject on by default
    await conv.connect()
    assert await conv.hello("HELO", "localhost") == Step()  # remembered, not sent
    conv.hello_done(True)
    assert recorded == []
    assert wire(await conv.mail("alice@example.net", [])) == ["250 2.1.0 Ok"]
    assert wire(await conv.rcpt("postmaster@example.org")) == ["250 2.1.5 Ok"]
    assert wire(await conv.rcpt("bob@example.org")) == [
        "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"
    ]
    assert [(v.outcome, v.replied_at) for v in recorded] == [("HELO_NOT_FQDN", Stage.RCPT)]


async def test_unknown_user_and_the_recipient_limit() -> None:
    conv, recorded = talk("receiver: {local_recipients: ['bob@*'], max_recipients: 1}\n")
    await conv.connect()
    await conv.hello("EHLO", "mail.example.net")
    conv.hello_done(True)
    await conv.mail("alice@example.net", [])
    assert wire(await conv.rcpt("carol@example.org")) == [
        "550 5.1.1 <carol@example.org>: Recipient address rejected: "
        "User unknown in local recipient table"
    ]
    assert wire(await conv.rcpt("bob@example.org")) == ["250 2.1.5 Ok"]
    assert wire(await conv.rcpt("bob@example.org")) == ["452 4.5.3 Error: too many recipients"]
    assert conv.session is not None and conv.session.counters.bad_rcpts == 2
    # Both are verdicts, journaled with the stage that sent them.
    assert [(v.policy, v.outcome, v.replied_at) for v in recorded] == [
        ("local_recipients", "UNKNOWN_USER", Stage.RCPT),
        ("smtpd", "TOO_MANY_RECIPIENTS", Stage.RCPT),
    ]


async def rcpt_replies(text: str, *rcpts: str) -> list[list[str]]:
    conv, _ = talk(text)
    await conv.connect()
    await conv.hello("EHLO", "mail.example.net")
    conv.hello_done(True)
    await conv.mail("alice@example.net", [])
    return [wire(await conv.rcpt(rcpt)) for rcpt in rcpts]


async def test_soft_bounce_and_warn_only_apply_to_the_builtin_refusals() -> None:
    table = "receiver: {local_recipients: ['bob@*'], max_recipients: 1"
    assert await rcpt_replies(table + ", soft_bounce: true}\n", "carol@x.org", "bob@x.org") == [
        [
            "450 4.1.1 <carol@x.org>: Recipient address rejected: "
            "User unknown in local recipient table"
        ],
        ["250 2.1.5 Ok"],
    ]
    # warn_only: recorded, nothing refused (the second recipient is over the limit).
    assert await rcpt_replies(table + ", warn_only: true}\n", "carol@x.org", "bob@x.org") == [
        ["250 2.1.5 Ok"],
        ["250 2.1.5 Ok"],
    ]


async def test_a_persona_rewords_and_places_the_builtin_refusals() -> None:
    text = (
        "receiver: {local_recipients: ['bob@*'], max_recipients: 1}\n"
        "policies:\n"
        "  rcpt:\n"
        "    - {policy: local_recipients, recipients: ['dave@*'], replies: "
        "{UNKNOWN_USER: '550 5.1.1 The email account that you tried to reach does not exist.'}}\n"
        "    - {policy: smtpd, replies: "
        "{TOO_MANY_RECIPIENTS: '452 4.5.3 Your message has too many recipients.'}}\n"
    )
    assert await rcpt_replies(text, "bob@x.org", "dave@x.org", "dave@x.org") == [
        ["550 5.1.1 The email account that you tried to reach does not exist."],
        ["250 2.1.5 Ok"],
        ["452 4.5.3 Your message has too many recipients."],
    ]


async def test_errors_are_counted_and_the_error_stage_closes() -> None:
    conv, recorded = talk("policies: {session: [{policy: session_limits, hard_error_limit: 2}]}\n")
    await conv.connect()
    assert await conv.sent(250) == Step()  # control: no error
    assert await conv.sent(501) == Step()
    step = await conv.sent(550)
    assert step.reply is not None and step.reply.code == 421 and step.close and conv.closing
    # The 421 itself is counted, and no further stage runs once the line is closing.
    assert await conv.sent(421) == Step()
    assert conv.session is not None
    assert (conv.session.counters.errors, conv.session.counters.rejections) == (3, 2)
    assert [v.outcome for v in recorded] == ["TOO_MANY_ERRORS"]


async def test_the_unknown_stage_runs_only_after_an_unknown_command() -> None:
    conv, _ = talk("")
    await conv.connect()
    assert await conv.unknown() == Step()  # nothing pending
    conv.line("FOO", bare_lf=False, known=False)
    conv.line("NOOP", bare_lf=True, known=True)
    assert conv.session is not None
    assert conv.session.counters.unknown_commands == 1 and conv.session.bare_lf


async def test_a_message_is_queued_or_its_write_failure_deferred() -> None:
    conv, recorded = talk("")
    await conv.connect()
    await conv.hello("EHLO", "mail.example.net")
    conv.hello_done(True)
    await conv.mail("alice@example.net", [])
    await conv.rcpt("bob@example.org")
    assert await conv.data() == Step()
    assert await conv.message(b"Subject: x\r\n\r\nhi\r\n") == Step()
    assert wire(conv.queued("abc-1")) == ["250 2.0.0 Ok: queued as abc-1"]
    assert conv.session is not None and conv.session.counters.messages == 1
    assert conv.session.mail_from is None
    await conv.mail("alice@example.net", [])
    assert wire(conv.queue_failed("disk full")) == ["451 4.3.0 Error: queue file write error"]
    assert conv.session.mail_from is None and conv.session.counters.messages == 1
    assert recorded == []
    # Even in warn_only: a message that was not kept is never claimed.
    warn, _ = talk("receiver: {warn_only: true}\n")
    await warn.connect()
    assert wire(warn.queue_failed("disk full")) == ["451 4.3.0 Error: queue file write error"]


async def test_xclient_needs_trust_no_transaction_and_attributes() -> None:
    conv, _ = talk("")
    await conv.connect()
    assert wire(await conv.xclient("ADDR=192.0.2.1", trusted=False)) == [
        "550 5.7.0 Error: insufficient authorization"
    ]
    assert wire(await conv.xclient("", trusted=True)) == [
        "501 5.5.4 Syntax: XCLIENT attribute=value..."
    ]
    assert wire(await conv.xclient("COLOUR=red", trusted=True)) == [
        "501 5.5.4 Bad XCLIENT attribute name: COLOUR"
    ]
    await conv.mail("alice@example.net", [])
    assert wire(await conv.xclient("ADDR=192.0.2.1", trusted=True)) == [
        "503 5.5.1 Error: MAIL transaction in progress"
    ]
    conv.reset()
    assert await conv.xclient("ADDR=192.0.2.1 NAME=[TEMPUNAVAIL]", trusted=True) == Step()
    assert conv.session is not None and conv.session.client.address == "192.0.2.1"
    assert conv.session.client.name_status == "tempunavail"
    assert conv.fields["client_address"] == "192.0.2.1" and not conv.helo_accepted


async def test_the_end_records_what_was_never_sent() -> None:
    conv, recorded = talk(HELO_SYNTAX)
    await conv.connect()
    await conv.hello("HELO", "localhost")
    assert conv.end(in_data=False, stopping=False) == "idle"
    assert [(v.outcome, v.replied_at) for v in recorded] == [("HELO_NOT_FQDN", None)]
    quitting, _ = talk("")
    await quitting.connect()
    await quitting.mail("alice@example.net", [])
    assert quitting.end(in_data=False, stopping=False) == "aborted"  # cut mid-transaction


def test_the_conversation_imports_no_io() -> None:
    tree = ast.parse(Path(conversation.__file__).read_text())
    imported = {
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    forbidden = {"asyncio", "socket", "aiosmtpd", "aiohttp", "journal", "api", "smtp"}
    assert not {m for m in imported if m.lstrip(".").split(".")[0] in forbidden}, imported


async def test_vrfy_runs_the_rcpt_stage_and_counts_no_recipient() -> None:
    conv, recorded = talk(
        "receiver: {local_recipients: ['bob@strictmx.test']}\n"
        "policies: {rcpt: [{policy: relay, domains: [strictmx.test]}]}\n"
    )
    await conv.connect()
    await conv.hello("EHLO", "mail.example.net")
    conv.hello_done(True)
    await conv.mail("alice@example.net", [])
    state = conv.session
    assert state is not None
    assert await conv.vrfy("bob@strictmx.test") == Step()  # the control: a local user
    step = await conv.vrfy("bob@example.org")
    assert wire(step) == ["554 5.7.1 <bob@example.org>: Relay access denied"]
    assert [v.outcome for v in recorded] == ["RELAY_DENIED"]
    counters = state.counters
    assert (state.rcpts, state.rcpt, counters.rcpts_tried, counters.bad_rcpts) == ([], None, 0, 0)
    assert state.mail_from == "alice@example.net"  # the transaction goes on
