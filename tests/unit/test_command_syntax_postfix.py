"""The postfix grammar against Postfix 3.7.11's smtpd, as recorded live.

Every case below is one probe sent to a reference Postfix 3.7.11 configured like the
postfix-strict persona (/work/postfix-ref/start.py: smtputf8_enable=yes, DSN offered,
message_size_limit=10485760, no SASL), from 127.0.0.10, each in its own session:
`EHLO mail.example.net` (or HELO), then for RCPT cases `MAIL FROM:<a@example.net>`, then
the command. A case holds the argument, Postfix's reply to it word for word, and the
dialect key strictmx's grammar must answer with (None: the grammar accepts it; the reply
is then 250 or a later check's, not the grammar's business). The recorded texts of the
keys are POSTFIX_TEXTS, which data/dialects/postfix.yaml must carry; each refusal is
checked to render to the recorded reply.

Cases marked PRIVATE came from a private instance with the same settings except
smtputf8_enable=no and smtpd_discard_ehlo_keywords=dsn (and, for VRFY,
disable_vrfy_command=no), started with tests/e2e/postfix.py's Postfix class.
"""

from __future__ import annotations

import pytest

from strictmx.receiver.grammar import (
    HELO_NEUTER,
    Envelope,
    Refusal,
    mail_argument,
    neutered,
    rcpt_argument,
    split_command,
    vrfy_argument,
)

#: Postfix 3.7.11 smtpd's texts for the grammar's keys, recorded live (the cases below
#: are their sources).
POSTFIX_TEXTS = {
    "bad_syntax": "500 5.5.2 Error: bad syntax",
    "not_ascii": "500 5.5.2 Error: bad UTF-8 syntax",
    "mail_syntax": "501 5.5.4 Syntax: MAIL FROM:<address>",
    "rcpt_syntax": "501 5.5.4 Syntax: RCPT TO:<address>",
    "mail_bad_address": "501 5.1.7 Bad sender address syntax",
    "rcpt_bad_address": "501 5.1.3 Bad recipient address syntax",
    "mail_nested": "503 5.5.1 Error: nested MAIL command",
    "size_syntax": "501 5.5.4 Bad message size syntax",
    "size_too_big": "552 5.3.4 Message size exceeds fixed limit",
    "size_overflow": "552 5.3.4 Message size exceeds file system imposed limit",
    "param_unknown": "555 5.5.4 Unsupported option: {param}",
    "rcpt_param_unknown": "555 5.5.4 Unsupported option: {param}",
    "dsn_ret_syntax": "501 5.5.4 Bad RET parameter syntax",
    "dsn_envid_syntax": "501 5.5.4 Bad ENVID parameter syntax",
    "dsn_notify_syntax": "501 5.5.4 Error: Bad NOTIFY parameter syntax",
    "dsn_orcpt_syntax": "501 5.5.4 Error: Bad ORCPT parameter syntax",
    "dsn_disabled": "501 5.7.1 DSN support is disabled",
    "vrfy_syntax": "501 5.5.4 Syntax: VRFY address [SMTPUTF8]",
    "vrfy_bad_address": "501 5.1.3 Bad recipient address syntax",
}
SIZE_LIMIT = 10485760

MAIL_AFTER_EHLO = [
    ("FROM:<a@example.net>", "250 2.1.0 Ok", None),
    ("FROM:<>", "250 2.1.0 Ok", None),
    ("FROM: <>", "250 2.1.0 Ok", None),
    ("FROM:< >", "250 2.1.0 Ok", None),
    ('FROM:<"">', "250 2.1.0 Ok", None),
    ("FROM:<a b@example.net>", "501 5.1.7 Bad sender address syntax", "mail_bad_address"),
    ("FROM:<a@example.net", "501 5.1.7 Bad sender address syntax", "mail_bad_address"),
    ("FROM:a@example.net", "250 2.1.0 Ok", None),
    ("FROM: <a@example.net>", "250 2.1.0 Ok", None),
    ('FROM:<"a b"@example.net>', "250 2.1.0 Ok", None),
    ("FROM:<@a,@b:u@example.net>", "250 2.1.0 Ok", None),
    ("FROM:<u@[192.0.2.1]>", "250 2.1.0 Ok", None),
    ("FROM:<u@[IPv6:2001:db8::1]>", "250 2.1.0 Ok", None),
    ("FROM:<u@[1.2.3.999]>", "501 5.1.7 Bad sender address syntax", "mail_bad_address"),
    ("FROM:<u@[IPv6:junk]>", "501 5.1.7 Bad sender address syntax", "mail_bad_address"),
    ("FROM:<u@[junk]>", "501 5.1.7 Bad sender address syntax", "mail_bad_address"),
    ("FROM:<a@example.net> junk", "555 5.5.4 Unsupported option: junk", "param_unknown"),
    ("FROM:<a@example.net>junk", "501 5.1.7 Bad sender address syntax", "mail_bad_address"),
    ("FROM:<<a@example.net>>", "250 2.1.0 Ok", None),
    ("FROM:<a@example.net>>", "250 2.1.0 Ok", None),
    ("FROM:<a@@example.net>", "250 2.1.0 Ok", None),
    ("FROM:<a@>", "501 5.1.7 Bad sender address syntax", "mail_bad_address"),
    ("FROM:<@example.net>", "250 2.1.0 Ok", None),
    ("FROM:<@>", "501 5.1.7 Bad sender address syntax", "mail_bad_address"),
    ("FROM:<a>", "250 2.1.0 Ok", None),
    ("FROM:<a.@example.net>", "250 2.1.0 Ok", None),
    ("FROM:<a@example..net>", "501 5.1.7 Bad sender address syntax", "mail_bad_address"),
    ("FROM:<a@-example.net>", "501 5.1.7 Bad sender address syntax", "mail_bad_address"),
    ("FROM:<a@example-.net>", "501 5.1.7 Bad sender address syntax", "mail_bad_address"),
    ("FROM:<a@ex_ample.net>", "250 2.1.0 Ok", None),
    ("FROM:<a@1.2.3.4>", "501 5.1.7 Bad sender address syntax", "mail_bad_address"),
    ("FROM:<a@123>", "501 5.1.7 Bad sender address syntax", "mail_bad_address"),
    ("FROM:<a@b.123>", "250 2.1.0 Ok", None),
    ("FROM:<a@example.net.>", "250 2.1.0 Ok", None),
    ("FROM:<a@.example.net>", "501 5.1.7 Bad sender address syntax", "mail_bad_address"),
    ("FROM:<a@exa mple.net>", "501 5.1.7 Bad sender address syntax", "mail_bad_address"),
    ("FROM:<(comment)a@example.net>", "250 2.1.0 Ok", None),
    ("FROM:<a@example.net(comment)>", "250 2.1.0 Ok", None),
    ("FROM:<a@example.net> (comment)", "555 5.5.4 Unsupported option: (comment)", "param_unknown"),
    ("FROM:Name <a@example.net>", "555 5.5.4 Unsupported option: <a@example.net>", "param_unknown"),
    (
        "FROM:<a@example.net>,<b@example.net>",
        "501 5.1.7 Bad sender address syntax",
        "mail_bad_address",
    ),
    (
        "FROM:<a@example.net,b@example.net>",
        "501 5.1.7 Bad sender address syntax",
        "mail_bad_address",
    ),
    ('FROM:<a"b@example.net>', "501 5.1.7 Bad sender address syntax", "mail_bad_address"),
    ('FROM:<"a@example.net>', "501 5.1.7 Bad sender address syntax", "mail_bad_address"),
    ("FROM:<a;b@example.net>", "501 5.1.7 Bad sender address syntax", "mail_bad_address"),
    ("FROM:<a:b@example.net>", "250 2.1.0 Ok", None),
    ("FROM:<a@ex:ample.net>", "501 5.1.7 Bad sender address syntax", "mail_bad_address"),
    ("FROM:<é@example.net>", "250 2.1.0 Ok", None),
    ("FROM:<é@example.net> SMTPUTF8", "250 2.1.0 Ok", None),
    ("FROM:<a@éxample.net>", "501 5.1.7 Bad sender address syntax", "mail_bad_address"),
    ("FROM:<a@éxample.net> SMTPUTF8", "250 2.1.0 Ok", None),
    (
        "FROM:<a@xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.net>",
        "501 5.1.7 Bad sender address syntax",
        "mail_bad_address",
    ),
    (
        "FROM:<xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx@example.net>",
        "250 2.1.0 Ok",
        None,
    ),
    (
        "FROM:<xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx@example.net>",
        "250 2.1.0 Ok",
        None,
    ),
    (
        "FROM:<a@abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.abcdefghi.net>",
        "501 5.1.7 Bad sender address syntax",
        "mail_bad_address",
    ),
    ("FROM:", "501 5.5.4 Syntax: MAIL FROM:<address>", "mail_syntax"),
    ("FROM", "501 5.5.4 Syntax: MAIL FROM:<address>", "mail_syntax"),
    ("", "501 5.5.4 Syntax: MAIL FROM:<address>", "mail_syntax"),
    ("TO:<a@example.net>", "501 5.5.4 Syntax: MAIL FROM:<address>", "mail_syntax"),
    ("from:<a@example.net>", "250 2.1.0 Ok", None),
    ("FROM:<a@example.net> SIZE=100", "250 2.1.0 Ok", None),
    ("FROM:<a@example.net> size=100", "250 2.1.0 Ok", None),
    ("FROM:<a@example.net> SIZE=abc", "501 5.5.4 Bad message size syntax", "size_syntax"),
    ("FROM:<a@example.net> SIZE=", "501 5.5.4 Bad message size syntax", "size_syntax"),
    ("FROM:<a@example.net> SIZE", "555 5.5.4 Unsupported option: SIZE", "param_unknown"),
    (
        "FROM:<a@example.net> SIZE=10485761",
        "552 5.3.4 Message size exceeds fixed limit",
        "size_too_big",
    ),
    (
        "FROM:<a@example.net> SIZE=99999999999999999999999",
        "552 5.3.4 Message size exceeds file system imposed limit",
        "size_overflow",
    ),
    ("FROM:<a@example.net> SIZE=1 SIZE=2", "250 2.1.0 Ok", None),
    ("FROM:<a@example.net> BODY=7BIT", "250 2.1.0 Ok", None),
    ("FROM:<a@example.net> BODY=8BITMIME", "250 2.1.0 Ok", None),
    (
        "FROM:<a@example.net> BODY=BINARYMIME",
        "555 5.5.4 Unsupported option: BODY=BINARYMIME",
        "param_unknown",
    ),
    ("FROM:<a@example.net> BODY=junk", "555 5.5.4 Unsupported option: BODY=junk", "param_unknown"),
    ("FROM:<a@example.net> BODY", "555 5.5.4 Unsupported option: BODY", "param_unknown"),
    ("FROM:<a@example.net> BODY=7BIT BODY=8BITMIME", "250 2.1.0 Ok", None),
    ("FROM:<a@example.net> SMTPUTF8", "250 2.1.0 Ok", None),
    (
        "FROM:<a@example.net> SMTPUTF8=yes",
        "555 5.5.4 Unsupported option: SMTPUTF8=yes",
        "param_unknown",
    ),
    ("FROM:<a@example.net> SMTPUTF8 SMTPUTF8", "250 2.1.0 Ok", None),
    ("FROM:<a@example.net> RET=FULL", "250 2.1.0 Ok", None),
    ("FROM:<a@example.net> RET=HDRS", "250 2.1.0 Ok", None),
    ("FROM:<a@example.net> ret=full", "250 2.1.0 Ok", None),
    ("FROM:<a@example.net> RET=junk", "501 5.5.4 Bad RET parameter syntax", "dsn_ret_syntax"),
    (
        "FROM:<a@example.net> RET=FULL RET=HDRS",
        "501 5.5.4 Bad RET parameter syntax",
        "dsn_ret_syntax",
    ),
    ("FROM:<a@example.net> ENVID=abc+2Bx", "250 2.1.0 Ok", None),
    ("FROM:<a@example.net> ENVID=a+2b", "250 2.1.0 Ok", None),
    ("FROM:<a@example.net> ENVID=a=b", "250 2.1.0 Ok", None),
    ("FROM:<a@example.net> ENVID=a+zz", "501 5.5.4 Bad ENVID parameter syntax", "dsn_envid_syntax"),
    ("FROM:<a@example.net> ENVID=", "501 5.5.4 Bad ENVID parameter syntax", "dsn_envid_syntax"),
    ("FROM:<a@example.net> ENVID=+00", "501 5.5.4 Bad ENVID parameter syntax", "dsn_envid_syntax"),
    (
        "FROM:<a@example.net> ENVID=abc ENVID=def",
        "501 5.5.4 Bad ENVID parameter syntax",
        "dsn_envid_syntax",
    ),
    ("FROM:<a@example.net> AUTH=<>", "250 2.1.0 Ok", None),
    ("FROM:<a@example.net> AUTH=a@example.net", "250 2.1.0 Ok", None),
    ("FROM:<a@example.net> AUTH=a+2Bb@example.net", "250 2.1.0 Ok", None),
    ("FROM:<a@example.net> FOO=bar", "555 5.5.4 Unsupported option: FOO=bar", "param_unknown"),
    ("FROM:<a@example.net> FOO", "555 5.5.4 Unsupported option: FOO", "param_unknown"),
    (
        "FROM:<a@example.net> NOTIFY=NEVER",
        "555 5.5.4 Unsupported option: NOTIFY=NEVER",
        "param_unknown",
    ),
    (
        "FROM:<a@example.net> ORCPT=rfc822;a@example.net",
        "555 5.5.4 Unsupported option: ORCPT=rfc822;a@example.net",
        "param_unknown",
    ),
    ("FROM:<a b@example.net> FOO", "501 5.1.7 Bad sender address syntax", "mail_bad_address"),
    (
        "FROM:<a@example.net> SIZE=99999999999 FOO",
        "555 5.5.4 Unsupported option: FOO",
        "param_unknown",
    ),
    ("FROM:<a@example.net> FOO SIZE=abc", "555 5.5.4 Unsupported option: FOO", "param_unknown"),
    ("FROM:<a@example.net> SIZE=abc FOO", "501 5.5.4 Bad message size syntax", "size_syntax"),
    (
        "FROM:<a@example.net> SIZE=20000000 FOO",
        "555 5.5.4 Unsupported option: FOO",
        "param_unknown",
    ),
    ("FROM:<a b@example.net> SIZE=abc", "501 5.1.7 Bad sender address syntax", "mail_bad_address"),
]
MAIL_AFTER_HELO = [
    ("FROM:<a@example.net> SIZE=100", "250 2.1.0 Ok", None),
    ("FROM:<a@example.net> BODY=8BITMIME", "250 2.1.0 Ok", None),
    ("FROM:<a@example.net> RET=FULL", "250 2.1.0 Ok", None),
    ("FROM:<a@example.net> junk", "555 5.5.4 Unsupported option: junk", "param_unknown"),
    ("FROM:<a@example.net> SMTPUTF8", "250 2.1.0 Ok", None),
    ("FROM:<a@example.net> ENVID=x", "250 2.1.0 Ok", None),
]
RCPT_AFTER_EHLO = [
    ("TO:<alice@strictmx.test>", "250 2.1.5 Ok", None),
    ("TO:<a b@strictmx.test>", "501 5.1.3 Bad recipient address syntax", "rcpt_bad_address"),
    ("TO:<alice@strictmx.test", "501 5.1.3 Bad recipient address syntax", "rcpt_bad_address"),
    ("TO:alice@strictmx.test", "250 2.1.5 Ok", None),
    ("TO: <alice@strictmx.test>", "250 2.1.5 Ok", None),
    (
        'TO:<"no body"@strictmx.test>',
        "550 5.1.1 <no body@strictmx.test>: Recipient address rejected: "
        "User unknown in local recipient table",
        None,
    ),
    ("TO:<@a,@b:alice@strictmx.test>", "250 2.1.5 Ok", None),
    (
        "TO:<alice@[127.0.0.1]>",
        "550 5.1.1 <alice@[127.0.0.1]>: Recipient address rejected: "
        "User unknown in local recipient table",
        None,
    ),
    ("TO:<alice@strictmx.test> junk", "555 5.5.4 Unsupported option: junk", "rcpt_param_unknown"),
    ("TO:<alice@strictmx.test>junk", "501 5.1.3 Bad recipient address syntax", "rcpt_bad_address"),
    ("TO:<>", "501 5.1.3 Bad recipient address syntax", "rcpt_bad_address"),
    (
        "TO:<é@strictmx.test>",
        "550 5.1.1 <é@strictmx.test>: Recipient address rejected: "
        "User unknown in local recipient table",
        None,
    ),
    ("TO:<nobody@é.strictmx.test>", "501 5.1.3 Bad recipient address syntax", "rcpt_bad_address"),
    ("TO:<Postmaster>", "250 2.1.5 Ok", None),
    ("TO:", "501 5.5.4 Syntax: RCPT TO:<address>", "rcpt_syntax"),
    ("TO", "501 5.5.4 Syntax: RCPT TO:<address>", "rcpt_syntax"),
    ("", "501 5.5.4 Syntax: RCPT TO:<address>", "rcpt_syntax"),
    ("FROM:<alice@strictmx.test>", "501 5.5.4 Syntax: RCPT TO:<address>", "rcpt_syntax"),
    ("TO:<alice@strictmx.test> NOTIFY=NEVER", "250 2.1.5 Ok", None),
    ("TO:<alice@strictmx.test> NOTIFY=SUCCESS,FAILURE,DELAY", "250 2.1.5 Ok", None),
    ("TO:<alice@strictmx.test> NOTIFY=success", "250 2.1.5 Ok", None),
    ("TO:<alice@strictmx.test> NOTIFY=SUCCESS,SUCCESS", "250 2.1.5 Ok", None),
    (
        "TO:<alice@strictmx.test> NOTIFY=NEVER,SUCCESS",
        "501 5.5.4 Error: Bad NOTIFY parameter syntax",
        "dsn_notify_syntax",
    ),
    (
        "TO:<alice@strictmx.test> NOTIFY=junk",
        "501 5.5.4 Error: Bad NOTIFY parameter syntax",
        "dsn_notify_syntax",
    ),
    (
        "TO:<alice@strictmx.test> NOTIFY=",
        "501 5.5.4 Error: Bad NOTIFY parameter syntax",
        "dsn_notify_syntax",
    ),
    (
        "TO:<alice@strictmx.test> NOTIFY",
        "555 5.5.4 Unsupported option: NOTIFY",
        "rcpt_param_unknown",
    ),
    (
        "TO:<alice@strictmx.test> NOTIFY=SUCCESS NOTIFY=DELAY",
        "501 5.5.4 Error: Bad NOTIFY parameter syntax",
        "dsn_notify_syntax",
    ),
    ("TO:<alice@strictmx.test> ORCPT=rfc822;alice@strictmx.test", "250 2.1.5 Ok", None),
    ("TO:<alice@strictmx.test> ORCPT=RFC822;a+2Bb@x", "250 2.1.5 Ok", None),
    ("TO:<alice@strictmx.test> ORCPT=x400;abc", "250 2.1.5 Ok", None),
    ("TO:<alice@strictmx.test> ORCPT=rfc822;", "250 2.1.5 Ok", None),
    ("TO:<alice@strictmx.test> ORCPT=utf-8;a-b", "250 2.1.5 Ok", None),
    (
        "TO:<alice@strictmx.test> ORCPT=rfc822;a+zz",
        "501 5.5.4 Error: Bad ORCPT parameter syntax",
        "dsn_orcpt_syntax",
    ),
    (
        "TO:<alice@strictmx.test> ORCPT=junk",
        "501 5.5.4 Error: Bad ORCPT parameter syntax",
        "dsn_orcpt_syntax",
    ),
    (
        "TO:<alice@strictmx.test> ORCPT=",
        "501 5.5.4 Error: Bad ORCPT parameter syntax",
        "dsn_orcpt_syntax",
    ),
    ("TO:<alice@strictmx.test> ORCPT", "555 5.5.4 Unsupported option: ORCPT", "rcpt_param_unknown"),
    (
        "TO:<alice@strictmx.test> ORCPT=rfc822;a ORCPT=rfc822;b",
        "501 5.5.4 Error: Bad ORCPT parameter syntax",
        "dsn_orcpt_syntax",
    ),
    (
        "TO:<alice@strictmx.test> SIZE=10",
        "555 5.5.4 Unsupported option: SIZE=10",
        "rcpt_param_unknown",
    ),
    (
        "TO:<alice@strictmx.test> BODY=8BITMIME",
        "555 5.5.4 Unsupported option: BODY=8BITMIME",
        "rcpt_param_unknown",
    ),
    ("TO:<alice@strictmx.test> FOO", "555 5.5.4 Unsupported option: FOO", "rcpt_param_unknown"),
    (
        "TO:<alice@strictmx.test> NOTIFY=NEVER ORCPT=junk",
        "501 5.5.4 Error: Bad ORCPT parameter syntax",
        "dsn_orcpt_syntax",
    ),
    (
        "TO:<no body@strictmx.test> FOO",
        "501 5.1.3 Bad recipient address syntax",
        "rcpt_bad_address",
    ),
]
RCPT_AFTER_HELO = [
    ("TO:<alice@strictmx.test> NOTIFY=NEVER", "250 2.1.5 Ok", None),
    ("TO:<alice@strictmx.test> junk", "555 5.5.4 Unsupported option: junk", "rcpt_param_unknown"),
]

# PRIVATE: smtputf8_enable=no, DSN not offered (smtpd_discard_ehlo_keywords=dsn).
MAIL_PRIVATE = [
    ("FROM:<\udce9@example.net>", "250 2.1.0 Ok", None),  # a raw 0xE9 octet
    ("FROM:<a@example.net> SMTPUTF8", "555 5.5.4 Unsupported option: SMTPUTF8", "param_unknown"),
    ("FROM:<a@example.net> RET=FULL", "501 5.7.1 DSN support is disabled", "dsn_disabled"),
    ("FROM:<a@example.net> ENVID=x", "501 5.7.1 DSN support is disabled", "dsn_disabled"),
    ("FROM:<a@example.net> AUTH=<>", "250 2.1.0 Ok", None),
]
RCPT_PRIVATE = [
    ("TO:<alice@strictmx.test> NOTIFY=NEVER", "501 5.7.1 DSN support is disabled", "dsn_disabled"),
    (
        "TO:<alice@strictmx.test> ORCPT=rfc822;a",
        "501 5.7.1 DSN support is disabled",
        "dsn_disabled",
    ),
]
# PRIVATE, disable_vrfy_command=no (the reference instance answers every VRFY with
# "502 5.5.1 VRFY command is disabled" before reading its argument).
VRFY_PRIVATE = [
    ("", "501 5.5.4 Syntax: VRFY address [SMTPUTF8]", "vrfy_syntax"),
    ("alice@strictmx.test", "252 2.0.0 alice@strictmx.test", None),
    ("<alice@strictmx.test>", "252 2.0.0 <alice@strictmx.test>", None),
    ("<a b@strictmx.test>", "501 5.1.3 Bad recipient address syntax", "vrfy_bad_address"),
    (
        "<alice@strictmx.test",
        "550 5.1.1 <<alice@strictmx.test>: Recipient address rejected: "
        "User unknown in local recipient table",
        None,
    ),
    ("alice", "554 5.7.1 <alice>: Relay access denied", None),
    ("<>", "501 5.1.3 Bad recipient address syntax", "vrfy_bad_address"),
    ("Alice Smith", "501 5.1.3 Bad recipient address syntax", "vrfy_bad_address"),
    ("<a@[1.2.3.999]>", "501 5.1.3 Bad recipient address syntax", "vrfy_bad_address"),
]
# Command lines (after EHLO). "é x" is split like any line; Postfix 3.7 then refuses it
# as a forbidden command (smtpd_forbidden_commands' default /^[^A-Z]/), which is the
# dialect's forbidden_commands, not the grammar's.
LINES = [
    (b"", "500 5.5.2 Error: bad syntax", "bad_syntax"),
    (b" NOOP", "250 2.0.0 Ok", ("NOOP", None)),
    (b"\tNOOP", "250 2.0.0 Ok", ("NOOP", None)),
    (b"noop", "250 2.0.0 Ok", ("NOOP", None)),
    (b"NOOP \xe9", "500 5.5.2 Error: bad UTF-8 syntax", "not_ascii"),
    (b"HELO \xe9.example.net", "500 5.5.2 Error: bad UTF-8 syntax", "not_ascii"),
    (b"\xc3\xa9 x", "221 2.7.0 Error: I can break rules, too. Goodbye.", ("\u00c9", "x")),
    # smtpd_token reads the line as a C string: it ends at the first NUL (differential
    # session junk-binary). Trigger: nothing before the NUL; control: a verb before it.
    (b"\x00\x01\x02", "500 5.5.2 Error: bad syntax", "bad_syntax"),
    (b"\x00", "500 5.5.2 Error: bad syntax", "bad_syntax"),
    (b"\x00NOOP", "500 5.5.2 Error: bad syntax", "bad_syntax"),
    (b" \x00NOOP", "500 5.5.2 Error: bad syntax", "bad_syntax"),
    (b"\x00 ", "500 5.5.2 Error: bad syntax", "bad_syntax"),
    (b"\t", "500 5.5.2 Error: bad syntax", "bad_syntax"),
    (b"   ", "500 5.5.2 Error: bad syntax", "bad_syntax"),
    (b"A\x00", "500 5.5.2 Error: command not recognized", ("A", None)),
    (b"NOOP\x00junk", "250 2.0.0 Ok", ("NOOP", None)),
    (b"NOOP \x00x", "250 2.0.0 Ok", ("NOOP", None)),
    (b"HELO \x00x", "501 Syntax: HELO hostname", ("HELO", None)),
    (b"HELO x\x00", "250 mx.strictmx.test", ("HELO", "x")),
    # The UTF-8 check sees the whole line, past a NUL.
    (b"NOOP\x00\xff", "500 5.5.2 Error: bad UTF-8 syntax", "not_ascii"),
    # Words end at ASCII white space only (ISSPACE): a vertical tab splits, a 0x1c or a
    # U+00A0 (white space to Python's str.split) does not.
    (b"HELO\x0bx", "250 mx.strictmx.test", ("HELO", "x")),
    (b"HELO\x1cx", "500 5.5.2 Error: command not recognized", ("HELO\x1cX", None)),
    (b"HELO\xc2\xa0x", "500 5.5.2 Error: command not recognized", ("HELO\u00a0X", None)),
    (b"HELO \x1c", "250 mx.strictmx.test", ("HELO", "\x1c")),
]
LINES_PRIVATE = [  # smtputf8_enable=no: any octet is taken
    (b"NOOP \xe9", "250 2.0.0 Ok", ("NOOP", "\udce9")),
    # Not recorded (the reference Postfix has smtputf8_enable=yes): smtpd.c's
    # smtpd_token reads a C string with or without SMTPUTF8.
    (b"\x00\xe9", "500 5.5.2 Error: bad syntax", Refusal("bad_syntax")),
    (b"NOOP\x00\xe9", "250 2.0.0 Ok", ("NOOP", None)),
]


def check(result: object, reply: str, key: str | None) -> None:
    """`result` is what the recorded `reply` says: the refusal `key`, rendering to it."""
    if key is None:
        assert isinstance(result, (Envelope, str)), (result, reply)
        assert not any(reply == text for text in POSTFIX_TEXTS.values()), reply
        return
    assert isinstance(result, Refusal), (result, reply)
    assert result.key == key, (result, reply)
    assert POSTFIX_TEXTS[key].format_map(result.fields) == reply


def mail(arg: str, *, extended: bool = True, smtputf8: bool = True, dsn: bool = True) -> object:
    return mail_argument(
        arg or None,
        grammar="postfix",
        extended=extended,
        nested=False,
        smtputf8=smtputf8,
        size_limit=SIZE_LIMIT,
        dsn=dsn,
    )


def rcpt(arg: str, *, extended: bool = True, dsn: bool = True) -> object:
    return rcpt_argument(arg or None, grammar="postfix", extended=extended, smtputf8=False, dsn=dsn)


@pytest.mark.parametrize(("arg", "reply", "key"), MAIL_AFTER_EHLO)
def test_mail_after_ehlo(arg: str, reply: str, key: str | None) -> None:
    check(mail(arg), reply, key)


@pytest.mark.parametrize(("arg", "reply", "key"), MAIL_AFTER_HELO)
def test_mail_after_helo(arg: str, reply: str, key: str | None) -> None:
    # Postfix takes ESMTP parameters after HELO as after EHLO.
    check(mail(arg, extended=False), reply, key)


@pytest.mark.parametrize(("arg", "reply", "key"), MAIL_PRIVATE)
def test_mail_without_smtputf8_and_dsn(arg: str, reply: str, key: str | None) -> None:
    check(mail(arg, smtputf8=False, dsn=False), reply, key)


@pytest.mark.parametrize(("arg", "reply", "key"), RCPT_AFTER_EHLO)
def test_rcpt_after_ehlo(arg: str, reply: str, key: str | None) -> None:
    check(rcpt(arg), reply, key)


@pytest.mark.parametrize(("arg", "reply", "key"), RCPT_AFTER_HELO)
def test_rcpt_after_helo(arg: str, reply: str, key: str | None) -> None:
    check(rcpt(arg, extended=False), reply, key)


@pytest.mark.parametrize(("arg", "reply", "key"), RCPT_PRIVATE)
def test_rcpt_without_dsn(arg: str, reply: str, key: str | None) -> None:
    check(rcpt(arg, dsn=False), reply, key)


@pytest.mark.parametrize(("arg", "reply", "key"), VRFY_PRIVATE)
def test_vrfy(arg: str, reply: str, key: str | None) -> None:
    result = vrfy_argument(arg or None, grammar="postfix")
    check(result, reply, key)
    if key is None and reply.startswith("252 "):
        assert reply == f"252 2.0.0 {result}"  # the argument as sent


@pytest.mark.parametrize(("line", "reply", "expected"), LINES)
def test_command_lines(line: bytes, reply: str, expected: object) -> None:
    result = split_command(line, grammar="postfix", smtputf8=True)
    if isinstance(expected, str):
        check(result, reply, expected)
    else:
        assert result == expected, reply


@pytest.mark.parametrize(("line", "reply", "expected"), LINES_PRIVATE)
def test_command_lines_without_smtputf8(line: bytes, reply: str, expected: object) -> None:
    assert split_command(line, grammar="postfix", smtputf8=False) == expected, reply


def test_nested_mail_is_refused_before_its_argument_is_read() -> None:
    # Recorded: MAIL FROM:<a@example.net>, then `MAIL FROM:<a b@example.net>` and
    # `MAIL junk` -> "503 5.5.1 Error: nested MAIL command"; control: first MAIL is 250.
    for arg in ("FROM:<a b@example.net>", "junk"):
        result = mail_argument(
            arg,
            grammar="postfix",
            extended=True,
            nested=True,
            smtputf8=True,
            size_limit=0,
            dsn=True,
        )
        assert result == Refusal("mail_nested")
    assert POSTFIX_TEXTS["mail_nested"] == "503 5.5.1 Error: nested MAIL command"


@pytest.mark.parametrize(
    ("arg", "quoted"),
    [
        # Postfix quotes the address it extracted in its later refusals (recorded:
        # `550 5.1.1 <no body@strictmx.test>: Recipient address rejected: ...`).
        ('TO:<"no body"@strictmx.test>', "no body@strictmx.test"),
        ("TO:<alice@[127.0.0.1]>", "alice@[127.0.0.1]"),
        ("TO:<\u00e9@strictmx.test>", "\u00e9@strictmx.test"),
        # Source route dropped (RFC 5321 §4.1.1.3 lets a server ignore it).
        ("TO:<@a,@b:alice@strictmx.test>", "alice@strictmx.test"),
        ("TO:alice@strictmx.test", "alice@strictmx.test"),
    ],
)
def test_the_address_is_postfix_internal_form(arg: str, quoted: str) -> None:
    result = rcpt(arg)
    assert isinstance(result, Envelope)
    assert result.address == quoted


def test_smtputf8_on_mail_lets_a_u_label_domain_through() -> None:
    # Recorded: `MAIL FROM:<a@éxample.net>` -> 501 5.1.7, with ` SMTPUTF8` -> 250.
    assert mail("FROM:<a@\u00e9xample.net> SMTPUTF8") == Envelope(
        "a@\u00e9xample.net", ["SMTPUTF8"], True
    )
    assert mail("FROM:<a@\u00e9xample.net>") == Refusal("mail_bad_address")
    utf8_rcpt = rcpt_argument(
        "TO:<nobody@\u00e9.strictmx.test>",
        grammar="postfix",
        extended=True,
        smtputf8=True,
        dsn=True,
    )
    assert isinstance(utf8_rcpt, Envelope)


@pytest.mark.parametrize(
    ("helo", "utf8", "quoted"),
    [
        # Recorded on the reference instance (smtputf8_enable=yes): HELO name, MAIL,
        # RCPT -> `501 5.5.2 <QUOTED>: Helo command rejected: Invalid name`.
        ("mail@example.com", True, "mail?example.com"),
        ('a"b<c>.example.net', True, "a?b?c?.example.net"),
        ("a\tb.net", True, "a?b.net"),
        ("mail.example.net extra", True, "mail.example.net?extra"),
        ("a%b!c.example.net", True, "a%b!c.example.net"),
        ("\u00e9.example.net", True, "\u00e9.example.net"),
        # PRIVATE (smtputf8_enable=no): every octet of a UTF-8 or 8-bit name is a '?'.
        ("\u00e9.example.net", False, "??.example.net"),
        ("\udce9.example.net", False, "?.example.net"),
    ],
)
def test_neutered_quotes_a_helo_name_as_postfix(helo: str, utf8: bool, quoted: str) -> None:
    assert neutered(helo, HELO_NEUTER, utf8=utf8) == quoted
