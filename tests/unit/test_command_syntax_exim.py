"""The exim grammar against Exim 4.96, as recorded live.

Every case is one probe sent to a private Exim 4.96 (tests/differential/exim.py of the
dialect-exim branch: Debian's exim4-daemon-light unpacked, configured like the
exim-strict persona: SIZE 52428800, SMTPUTF8 offered, DSN not offered, no domain
literals, local domain strictmx.test), from 127.0.0.10, each in its own session:
`EHLO mail.example.net` (or HELO), for RCPT cases then `MAIL FROM:<a@example.net>`,
then the command. A case holds the argument (None: the verb alone), Exim's reply word
for word, and the key the grammar must answer with (None: accepted; the reply is then
250 or a later check's). EXIM_TEXTS are the templates data/dialects/exim.yaml needs for
the replies to come out exact: Exim names each address defect, so the grammar gives
`{arg}` (the operand as Exim quotes it) and `{detail}` (Exim's words).

DSN_OFFERED cases came from a second private Exim 4.96 with dsn_advertise_hosts = *
and smtputf8_advertise_hosts = : (nothing).
"""

from __future__ import annotations

import pytest

from strictmx.receiver.grammar import (
    Envelope,
    Refusal,
    mail_argument,
    rcpt_argument,
    split_command,
    vrfy_argument,
)

#: Exim 4.96's texts for the grammar's keys, recorded live (the cases are the sources).
EXIM_TEXTS = {
    "mail_bad_address": "501 {arg}: {detail}",
    "rcpt_bad_address": "501 {arg}: {detail}",
    "param_unknown": "501 {arg}: {detail}",
    "rcpt_param_unknown": "501 {arg}: {detail}",
    "param_syntax": "501 {arg}: {detail}",
    "vrfy_bad_address": "501 {detail}",
    "vrfy_syntax": "501 empty address",
    "mail_syntax": "501 MAIL must have an address operand",
    "rcpt_syntax": "501 RCPT must have an address operand",
    "unknown_command": "500 unrecognized command",
    "bad_syntax": "500 unrecognized command",
    "not_ascii": "500 unrecognized command",
    "body_syntax": "501 invalid data for BODY",
    "size_too_big": "552 Message size exceeds maximum permitted",
    "smtputf8_disabled": "501 SMTPUTF8 used when not advertised",
    "dsn_ret_syntax": "501 Value for RET is invalid",
    "dsn_notify_syntax": "501 Invalid value for NOTIFY parameter",
}
SIZE_LIMIT = 52428800

MAIL_AFTER_EHLO = [
    ("FROM:<a@example.net>", "250 OK", None),
    ("FROM:<>", "250 OK", None),
    ("FROM: <a@example.net>", "250 OK", None),
    ("FROM:a@example.net", "250 OK", None),
    ("FROM:", "501 MAIL must have an address operand", "mail_syntax"),
    ("FROM:   ", "501 MAIL must have an address operand", "mail_syntax"),
    (None, "500 unrecognized command", "unknown_command"),
    ("FROM <a@example.net>", "500 unrecognized command", "unknown_command"),
    (
        "FROM:<a b@example.net>",
        '501 <a b@example.net>: "@" or "." expected after "a"',
        "mail_bad_address",
    ),
    (
        "FROM:<a@example.net",
        "501 <a@example.net: '>' missing at end of address",
        "mail_bad_address",
    ),
    ("FROM:<a@>", "501 <a@>: domain missing or malformed", "mail_bad_address"),
    ("FROM:<alice>", "501 <alice>: sender address must contain a domain", "mail_bad_address"),
    ("FROM:<jörg@example.net>", "250 OK", None),
    ("FROM:<@relay.example.net:a@example.net>", "250 OK", None),
    ("FROM:<@a,@b:u@example.net>", "250 OK", None),
    ('FROM:<"a b"@example.net>', "250 OK", None),
    (
        "FROM:<a@example.net> junk",
        "501 <a@example.net> junk: malformed address: junk may not follow <a@example.net> ",
        "param_unknown",
    ),
    (
        "FROM:<a@example.net>junk",
        "501 <a@example.net>junk: malformed address: junk may not follow <a@example.net>",
        "mail_bad_address",
    ),
    ("FROM:<@example.net>", "501 <@example.net>: no local part", "mail_bad_address"),
    ("FROM:<a.@example.net>", "250 OK", None),
    ("FROM:<.a@example.net>", "250 OK", None),
    ("FROM:<a..b@example.net>", "250 OK", None),
    ("FROM:<a . b@example.net>", "250 OK", None),
    (
        "FROM:<a@-example.net>",
        "501 <a@-example.net>: domain missing or malformed",
        "mail_bad_address",
    ),
    ("FROM:<a@example-.net>", "250 OK", None),
    (
        "FROM:<a@example.net.>",
        "501 <a@example.net.>: domain missing or malformed",
        "mail_bad_address",
    ),
    (
        "FROM:<a@.example.net>",
        "501 <a@.example.net>: domain missing or malformed",
        "mail_bad_address",
    ),
    (
        "FROM:<a@[192.0.2.1]>",
        "501 <a@[192.0.2.1]>: domain literals not allowed",
        "mail_bad_address",
    ),
    (
        "FROM:<a@@example.net>",
        "501 <a@@example.net>: domain missing or malformed",
        "mail_bad_address",
    ),
    (
        "FROM:<<a@example.net>>",
        "501 <<a@example.net>>: missing or malformed local part",
        "mail_bad_address",
    ),
    (
        "FROM:<a@example.net>>",
        "501 <a@example.net>>: malformed address: > may not follow <a@example.net>",
        "mail_bad_address",
    ),
    (
        'FROM:<"a@example.net>',
        '501 <"a@example.net>: unmatched doublequote in local part',
        "mail_bad_address",
    ),
    (
        'FROM:<a"b@example.net>',
        '501 <a"b@example.net>: "@" or "." expected after "a"',
        "mail_bad_address",
    ),
    ("FROM:Name <a@example.net>", "250 OK", None),
    ("FROM:<a@example.net(c)>", "250 OK", None),
    ("FROM:<a@example.net> (c)", "250 OK", None),
    (
        "FROM:<a:b@example.net>",
        '501 <a:b@example.net>: "@" or "." expected after "a"',
        "mail_bad_address",
    ),
    (
        "FROM:<a;b@example.net>",
        '501 <a;b@example.net>: "@" or "." expected after "a"',
        "mail_bad_address",
    ),
    (
        "FROM:<a@ex%ample.net>",
        "501 <a@ex%ample.net>: malformed address: %ample.net> may not follow <a@ex",
        "mail_bad_address",
    ),
    (
        "FROM:<a@ex_ample.net>",
        "501 <a@ex_ample.net>: malformed address: _ample.net> may not follow <a@ex",
        "mail_bad_address",
    ),
    ("FROM:<a@_b.net>", "501 <a@_b.net>: domain missing or malformed", "mail_bad_address"),
    ("FROM:<a@1.2.3.4>", "250 OK", None),
    ("FROM:<a@b>", "250 OK", None),
    (
        "FROM:<a@[1.2.3.999]>",
        "501 <a@[1.2.3.999]>: domain literals not allowed",
        "mail_bad_address",
    ),
    (
        "FROM:<a@éxample.net>",
        "501 <a@éxample.net>: domain missing or malformed",
        "mail_bad_address",
    ),
    ("FROM:<a@éxample.net> SMTPUTF8", "250 OK", None),
    (
        "FROM:<a@example.net>, <b@example.net>",
        "501 <a@example.net>, <b@example.net>: malformed address: , <b@example.net> may not follow "
        "<a@example.net>",
        "param_unknown",
    ),
    ("FROM:a@example.net SIZE=10", "250 OK", None),
    (
        "FROM:a@example.net FOO=bar",
        "501 a@example.net FOO=bar: malformed address: FOO=bar may not follow a@example.net ",
        "param_unknown",
    ),
    (
        "FROM:<a@example.net>  FOO=bar",
        "501 <a@example.net>  FOO=bar: malformed address: FOO=bar may not follow <a@example.net>  ",
        "param_unknown",
    ),
    (
        "FROM:<a@example.net>FOO=bar",
        "501 <a@example.net>FOO=bar: malformed address: FOO=bar may not follow <a@example.net>",
        "mail_bad_address",
    ),
    ("FROM:<a@example.net> SIZE=1000", "250 OK", None),
    (
        "FROM:<a@example.net> SIZE=52428801",
        "552 Message size exceeds maximum permitted",
        "size_too_big",
    ),
    ("FROM:<a@example.net> SIZE=abc", "250 OK", None),
    ("FROM:<a@example.net> SIZE", "250 OK", None),
    ("FROM:<a@example.net> SIZE=", "250 OK", None),
    ("FROM:<a@example.net> SIZE=100 SIZE=200", "250 OK", None),
    (
        "FROM:<a b@example.net> SIZE=999999999",
        '501 <a b@example.net>: "@" or "." expected after "a"',
        "mail_bad_address",
    ),
    ("FROM:<a@example.net> BODY=8BITMIME", "250 OK", None),
    ("FROM:<a@example.net> BODY=7bit", "250 OK", None),
    ("FROM:<a@example.net> BODY=9BIT", "501 invalid data for BODY", "body_syntax"),
    ("FROM:<a@example.net> BODY", "501 invalid data for BODY", "body_syntax"),
    ("FROM:<a@example.net> SMTPUTF8", "250 OK", None),
    (
        "FROM:<a@example.net> SMTPUTF8=yes",
        "501 <a@example.net> SMTPUTF8=yes: malformed address: SMTPUTF8=yes may not follow "
        "<a@example.net> ",
        "mail_bad_address",
    ),
    (
        "FROM:<a@example.net> FOO=bar",
        "501 <a@example.net> FOO=bar: malformed address: FOO=bar may not follow <a@example.net> ",
        "param_unknown",
    ),
    (
        "FROM:<a@example.net> FOO",
        "501 <a@example.net> FOO: malformed address: FOO may not follow <a@example.net> ",
        "param_unknown",
    ),
    (
        "FROM:<a@example.net> =x",
        "501 <a@example.net> =x: malformed address: =x may not follow <a@example.net> ",
        "param_unknown",
    ),
    (
        "FROM:<a@example.net> X-FOO=1",
        "501 <a@example.net> X-FOO=1: malformed address: X-FOO=1 may not follow <a@example.net> ",
        "mail_bad_address",
    ),
    (
        "FROM:<a@example.net> FOO=bar SIZE=10",
        "501 <a@example.net> FOO=bar: malformed address: FOO=bar may not follow <a@example.net> ",
        "param_unknown",
    ),
    (
        "FROM:<a@example.net> SIZE=10 FOO=bar BODY=7BIT",
        "501 <a@example.net> SIZE=10 FOO=bar: malformed address: SIZE=10 FOO=bar may not follow "
        "<a@example.net> ",
        "param_unknown",
    ),
    ("FROM:<a@example.net> RET=FOO", "250 OK", None),
    ("FROM:<a@example.net> RET=HDRS", "250 OK", None),
    ("FROM:<a@example.net> ENVID=abc", "250 OK", None),
    ("FROM:<a@example.net> ENVID=a+zz", "250 OK", None),
    (
        "FROM:<a@example.net> ENVID=a b",
        "501 <a@example.net> ENVID=a b: malformed address: ENVID=a b may not follow "
        "<a@example.net> ",
        "param_unknown",
    ),
    (
        "FROM:<a@example.net> NOTIFY=NEVER",
        "501 <a@example.net> NOTIFY=NEVER: malformed address: NOTIFY=NEVER may not follow "
        "<a@example.net> ",
        "param_unknown",
    ),
    ("FROM:<a@example.net> AUTH=<>", "250 OK", None),
    ("FROM:<a@example.net> AUTH=x", "250 OK", None),
]
MAIL_AFTER_HELO = [
    (
        "FROM:<a@example.net> SIZE=1000",
        "501 <a@example.net> SIZE=1000: malformed address: SIZE=1000 may not follow "
        "<a@example.net> ",
        "param_syntax",
    ),
    (
        "FROM:<a@example.net> SMTPUTF8",
        "501 <a@example.net> SMTPUTF8: malformed address: SMTPUTF8 may not follow <a@example.net> ",
        "param_syntax",
    ),
    (
        "FROM:<a@example.net> FOO",
        "501 <a@example.net> FOO: malformed address: FOO may not follow <a@example.net> ",
        "param_syntax",
    ),
    ("FROM:<a@example.net>", "250 OK", None),
]
RCPT_AFTER_EHLO = [
    ("TO:<alice@strictmx.test>", "250 Accepted", None),
    (None, "500 unrecognized command", "unknown_command"),
    ("TO:", "501 RCPT must have an address operand", "rcpt_syntax"),
    ("TO:<>", "501 <>: missing or malformed local part", "rcpt_bad_address"),
    ("TO:<bob>", "501 <bob>: recipient address must contain a domain", "rcpt_bad_address"),
    ("TO:<Postmaster>", "250 Accepted", None),
    ("TO:<postmaster>", "250 Accepted", None),
    ("TO:alice@strictmx.test", "250 Accepted", None),
    ("TO: <alice@strictmx.test>", "250 Accepted", None),
    ("TO:<a b@strictmx.test>", "550 Unrouteable address", None),
    (
        "TO:<a b c@strictmx.test>",
        '501 <a b=c@strictmx.test>: "@" or "." expected after "a"',
        "rcpt_bad_address",
    ),
    (
        "TO:<a b;c@strictmx.test>",
        '501 <a=b;c@strictmx.test>: "@" or "." expected after "a=b"',
        "rcpt_bad_address",
    ),
    (
        "TO:<a;b@strictmx.test>",
        '501 <a;b@strictmx.test>: "@" or "." expected after "a"',
        "rcpt_bad_address",
    ),
    (
        "TO:<alice@strictmx.test",
        "501 <alice@strictmx.test: '>' missing at end of address",
        "rcpt_bad_address",
    ),
    (
        "TO:<alice@strictmx.test> FOO",
        "501 <alice@strictmx.test>=FOO: malformed address: =FOO may not follow "
        "<alice@strictmx.test>",
        "rcpt_param_unknown",
    ),
    (
        "TO:<alice@strictmx.test> FOO=bar",
        "501 <alice@strictmx.test> FOO=bar: malformed address: FOO=bar may not follow "
        "<alice@strictmx.test> ",
        "rcpt_param_unknown",
    ),
    ("TO:<@strictmx.test>", "501 <@strictmx.test>: no local part", "rcpt_bad_address"),
    (
        "TO:<alice@[127.0.0.1]>",
        "501 <alice@[127.0.0.1]>: domain literals not allowed",
        "rcpt_bad_address",
    ),
    (
        "TO:<alice@strictmx.test> NOTIFY=NEVER",
        "501 <alice@strictmx.test> NOTIFY=NEVER: malformed address: NOTIFY=NEVER may not follow "
        "<alice@strictmx.test> ",
        "rcpt_param_unknown",
    ),
    (
        "TO:<alice@strictmx.test> ORCPT=rfc822;alice@strictmx.test",
        "501 <alice@strictmx.test> ORCPT=rfc822;alice@strictmx.test: malformed address: "
        "ORCPT=rfc822;alice@strictmx.test may not follow "
        "<alice@strictmx.test> ",
        "rcpt_param_unknown",
    ),
    (
        "TO:<nobody@é.strictmx.test>",
        "501 <nobody@é.strictmx.test>: domain missing or malformed",
        "rcpt_bad_address",
    ),
]
RCPT_AFTER_HELO = [
    (
        "TO:<alice@strictmx.test> NOTIFY=NEVER",
        "501 <alice@strictmx.test> NOTIFY=NEVER: malformed address: NOTIFY=NEVER may not follow "
        "<alice@strictmx.test> ",
        "param_syntax",
    ),
    ("TO:<alice@strictmx.test>", "250 Accepted", None),
]
DSN_OFFERED_MAIL = [
    ("FROM:<a@example.net> SMTPUTF8", "501 SMTPUTF8 used when not advertised", "smtputf8_disabled"),
    ("FROM:<a@example.net> RET=FOO", "501 Value for RET is invalid", "dsn_ret_syntax"),
    ("FROM:<a@example.net> RET=hdrs", "250 OK", None),
    ("FROM:<a@example.net> ENVID=a+zz", "250 OK", None),
    (
        "FROM:<a@example.net> ENVID=a b",
        "501 <a@example.net> ENVID=a b: malformed address: ENVID=a b may not follow "
        "<a@example.net> ",
        "param_unknown",
    ),
    (
        "FROM:<a@\u00e9xample.net>",
        "501 <a@\u00e9xample.net>: domain missing or malformed",
        "mail_bad_address",
    ),
]
DSN_OFFERED_RCPT = [
    (
        "TO:<alice@strictmx.test> NOTIFY=SOMETIMES",
        "501 Invalid value for NOTIFY parameter",
        "dsn_notify_syntax",
    ),
    (
        "TO:<alice@strictmx.test> NOTIFY=NEVER,DELAY",
        "501 Invalid value for NOTIFY parameter",
        "dsn_notify_syntax",
    ),
    ("TO:<alice@strictmx.test> NOTIFY=success,delay", "250 Accepted", None),
    ("TO:<alice@strictmx.test> ORCPT=nosemicolon", "250 Accepted", None),
    (
        "TO:<alice@strictmx.test> NOTIFY=NEVER ORCPT=rfc822;alice@strictmx.test",
        "250 Accepted",
        None,
    ),
]
VRFY = [
    ("<a b@x>", '501 "@" or "." expected after "a"', "vrfy_bad_address"),
    ("<a@[1.2.3.4]>", "501 domain literals not allowed", "vrfy_bad_address"),
    ("<>", "501 missing or malformed local part", "vrfy_bad_address"),
    ("alice@strictmx.test", "252 Administrative prohibition", None),
    ("", "501 empty address", "vrfy_syntax"),
]
LINES = [
    (b"", "500 unrecognized command", "bad_syntax"),
    (b"  NOOP", "500 unrecognized command", "bad_syntax"),
    (b"\xc3\x84HLO x", "500 unrecognized command", "not_ascii"),
    (b"NOOP \xff", "250 OK", ("NOOP", "\udcff")),
]


def check(result: object, reply: str, key: str | None) -> None:
    if key is None:
        assert isinstance(result, (Envelope, str)), (result, reply)
        assert reply[:1] in "25", reply
        return
    assert isinstance(result, Refusal), (result, reply)
    assert result.key == key, (result, reply)
    assert EXIM_TEXTS[key].format_map(dict(result.fields)) == reply


def mail(
    arg: str | None, *, extended: bool = True, smtputf8: bool = True, dsn: bool = False
) -> object:
    return mail_argument(
        arg,
        grammar="exim",
        extended=extended,
        nested=False,
        smtputf8=smtputf8,
        size_limit=SIZE_LIMIT,
        dsn=dsn,
    )


def rcpt(arg: str | None, *, extended: bool = True, dsn: bool = False) -> object:
    return rcpt_argument(arg, grammar="exim", extended=extended, smtputf8=False, dsn=dsn)


@pytest.mark.parametrize(("arg", "reply", "key"), MAIL_AFTER_EHLO)
def test_mail_after_ehlo(arg: str | None, reply: str, key: str | None) -> None:
    check(mail(arg), reply, key)


@pytest.mark.parametrize(("arg", "reply", "key"), MAIL_AFTER_HELO)
def test_mail_after_helo(arg: str, reply: str, key: str | None) -> None:
    # After HELO Exim takes no option: every one is junk after the address.
    check(mail(arg, extended=False), reply, key)


@pytest.mark.parametrize(("arg", "reply", "key"), RCPT_AFTER_EHLO)
def test_rcpt_after_ehlo(arg: str | None, reply: str, key: str | None) -> None:
    check(rcpt(arg), reply, key)


@pytest.mark.parametrize(("arg", "reply", "key"), RCPT_AFTER_HELO)
def test_rcpt_after_helo(arg: str, reply: str, key: str | None) -> None:
    check(rcpt(arg, extended=False), reply, key)


@pytest.mark.parametrize(("arg", "reply", "key"), DSN_OFFERED_MAIL)
def test_mail_with_dsn_offered_and_no_smtputf8(arg: str, reply: str, key: str | None) -> None:
    check(mail(arg, smtputf8=False, dsn=True), reply, key)


@pytest.mark.parametrize(("arg", "reply", "key"), DSN_OFFERED_RCPT)
def test_rcpt_with_dsn_offered(arg: str, reply: str, key: str | None) -> None:
    check(rcpt(arg, dsn=True), reply, key)


@pytest.mark.parametrize(("arg", "reply", "key"), VRFY)
def test_vrfy(arg: str, reply: str, key: str | None) -> None:
    check(vrfy_argument(arg or None, grammar="exim"), reply, key)


@pytest.mark.parametrize(("line", "reply", "expected"), LINES)
def test_command_lines(line: bytes, reply: str, expected: object) -> None:
    result = split_command(line, grammar="exim", smtputf8=True)
    if isinstance(expected, str):
        check(result, reply, expected)
    else:
        assert result == expected, reply


def test_rcpt_puts_a_bare_word_back_with_an_equals_sign() -> None:
    # Recorded: `RCPT TO:<a b@strictmx.test>` -> 550 Unrouteable address: Exim took
    # `b@strictmx.test>` for an option, put it back as `<a=b@strictmx.test>` and routed
    # that. The control: at MAIL the same put-back keeps the space, and it is refused.
    result = rcpt("TO:<a b@strictmx.test>")
    assert result == Envelope("a=b@strictmx.test", [])
    assert isinstance(mail("FROM:<a b@example.net>"), Refusal)
