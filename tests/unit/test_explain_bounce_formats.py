"""Log lines and raw SMTP dialogues read recipient by recipient (explain/bounce/logs.py and
transcript.py): Sendmail's delivery lines, Microsoft's message tracking, message trace and
send protocol logs, and transcripts as swaks, RFC 5321 (`S:`/`C:`) and Sendmail (`>>>`/`<<<`)
write them.

The swaks transcripts in tests/data/bounces/transcripts/ are what the real swaks printed
against strictmx personas (generate.py there makes them again), each beside strictmx's own
journal of the refusal: explain must name that policy, outcome and stage. The log lines are
hand-written around each format's fields (no Sendmail or Exchange runs here), with
documentation addresses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from strictmx.receiver.explain import Explainer, bounce, extract, extract_all
from strictmx.receiver.explain.batch import run as run_batch
from strictmx.receiver.explain.bounce import read_log
from strictmx.receiver.verdict import Stage

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "data" / "bounces" / "transcripts"
LOGS = TRANSCRIPTS.parent / "logs"
EXPLAINER = Explainer()

# -- real swaks transcripts ---------------------------------------------------------------

#: Per transcript: (recipient, stage, reply code) of each failed recipient.
REAL: dict[str, list[tuple[str | None, Stage, int]]] = {
    "swaks-helo-localhost": [("bob@strictmx.test", Stage.RCPT, 504)],
    # Pipelined: MAIL, RCPT and DATA went out together; the 504 answers the RCPT.
    "swaks-helo-pipelined": [("bob@strictmx.test", Stage.RCPT, 504)],
    "swaks-headers-missing-eod": [("bob@strictmx.test", Stage.EOD, 550)],
    "swaks-dnsbl-spamhaus": [("bob@strictmx.test", Stage.RCPT, 554)],
    # Refused at MAIL: no RCPT line was sent, so no recipient is named.
    "swaks-sender-domain": [(None, Stage.MAIL, 550)],
}


def test_every_real_transcript_has_its_expectations() -> None:
    assert sorted(p.stem for p in TRANSCRIPTS.glob("*.txt")) == sorted(REAL)


@pytest.mark.parametrize("name", sorted(REAL))
def test_a_real_swaks_transcript_names_what_strictmx_refused_with(name: str) -> None:
    given = (TRANSCRIPTS / f"{name}.txt").read_text(encoding="utf-8")
    truth = json.loads((TRANSCRIPTS / f"{name}.verdicts.json").read_text())
    explanations = EXPLAINER.explain_all(given)
    got = [(e.input.recipient, e.input.stage, e.input.code) for e in explanations]
    assert got == REAL[name]
    for explanation in explanations:
        assert explanation.input.kind == "transcript"
        assert explanation.input.sender is not None
        assert explanation.best is not None, explanation.render()
        entry = explanation.best.entry
        assert [(entry.policy, entry.outcome)] == [(v["policy"], v["outcome"]) for v in truth]
        assert explanation.input.stage.value == truth[0]["replied_at"]


# -- transcripts: the other markers, the stage, deliveries ------------------------------

RFC5321 = """\
S: 220 mx.example.org ESMTP
C: EHLO mail.example.net
S: 250-mx.example.org
S: 250 SIZE 10240000
C: MAIL FROM:<alice@example.net>
S: 250 OK
C: RCPT TO:<bob@example.org>
S: 250 OK
C: RCPT TO:<carol@example.org>
S: 250 OK
C: DATA
S: 354 Start mail input; end with <CRLF>.<CRLF>
C: Subject: hi
C: RCPT TO:<not-a-command@example.org>
C: .
S: 550 5.7.1 Message rejected: missing Date header
C: QUIT
S: 221 Bye
"""


def test_an_s_c_transcript_refused_at_end_of_data_names_each_accepted_recipient() -> None:
    found = extract_all(RFC5321)
    assert [(f.kind, f.recipient, f.stage, f.code, f.dsn) for f in found] == [
        ("transcript", "bob@example.org", Stage.EOD, 550, "5.7.1"),
        ("transcript", "carol@example.org", Stage.EOD, 550, "5.7.1"),
    ]
    # The message text's lines are not commands, even one that looks like RCPT.
    assert all(f.sender == "alice@example.net" for f in found)


def test_the_same_transcript_accepted_is_a_delivery_not_a_refusal() -> None:
    accepted = RFC5321.replace("550 5.7.1 Message rejected: missing Date header", "250 OK")
    found = EXPLAINER.explain_all(accepted)
    assert [(e.input.recipient, e.input.action, e.matches) for e in found] == [
        ("bob@example.org", "delivered", []),
        ("carol@example.org", "delivered", []),
    ]


SENDMAIL_TRANSCRIPT = """\
>>> EHLO relay.example.net
<<< 250-mx.example.org Hello
<<< 250 HELP
>>> MAIL From:<alice@example.net> SIZE=1200
<<< 250 2.1.0 Sender ok
>>> RCPT To:<bob@example.org>
<<< 550 5.1.1 <bob@example.org>... User unknown
"""


def test_a_sendmail_transcript_pasted_without_its_bounce() -> None:
    found = extract(SENDMAIL_TRANSCRIPT)
    assert (found.kind, found.recipient, found.stage, found.code) == (
        "transcript",
        "bob@example.org",
        Stage.RCPT,
        550,
    )


def test_a_refusal_of_the_greeting_is_at_connect_and_of_ehlo_at_helo() -> None:
    greeting = "<** 554 5.7.1 Service unavailable\n -> QUIT\n<-  221 Bye\n"
    assert extract(greeting).stage == Stage.CONNECT
    ehlo = "<-  220 mx.example.org\n -> EHLO localhost\n<** 501 5.5.2 Bad HELO\n"
    assert extract(ehlo).stage == Stage.HELO


def test_tls_markers_are_the_same_sides() -> None:
    tls = (
        " -> STARTTLS\n<-  220 2.0.0 Ready\n ~> EHLO mail.example.net\n<~  250 mx\n"
        " ~> MAIL FROM:<alice@example.net>\n<~  250 ok\n ~> RCPT TO:<bob@example.org>\n"
        "<~* 450 4.7.1 Client host rejected: cannot find your hostname\n"
    )
    found = extract(tls)
    assert (found.recipient, found.stage, found.action, found.dsn) == (
        "bob@example.org",
        Stage.RCPT,
        "delayed",
        "4.7.1",
    )


@pytest.mark.parametrize(
    "text",
    [
        # One side only: a list of replies, not a dialogue.
        "S: 550 5.7.1 refused\nS: 221 bye\n",
        # Both sides, nothing refused and no message accepted: no result to report.
        "S: 220 mx.example.org\nC: EHLO a.example.net\nS: 250 mx.example.org\n",
    ],
)
def test_a_dialogue_without_a_result_is_not_a_transcript(text: str) -> None:
    assert read_log(text) is None
    assert extract(text).kind != "transcript"


# -- Sendmail log lines --------------------------------------------------------------------

SENDMAIL_LOG = """\
Jun 14 10:00:00 gw sm-mta[1234]: 4AB1cD2e012345: from=<alice@example.net>, size=1200, \
class=0, nrcpts=3, msgid=<q1@example.net>, proto=ESMTP, daemon=MTA, relay=localhost [127.0.0.1]
Jun 14 10:00:02 gw sm-mta[1236]: 4AB1cD2e012345: to=<bob@example.org>, ctladdr=<alice@example.net> \
(1000/1000), delay=00:00:02, xdelay=00:00:01, mailer=esmtp, pri=121200, \
relay=mx.example.org. [198.51.100.25], dsn=5.1.1, stat=User unknown
Jun 14 10:00:02 gw sm-mta[1236]: 4AB1cD2e012345: to=<carol@example.org>, delay=00:00:02, \
xdelay=00:00:01, mailer=esmtp, pri=121200, relay=mx.example.org. [198.51.100.25], dsn=4.7.1, \
stat=Deferred: 450 4.7.1 Client host rejected: cannot find your hostname, [203.0.113.9]
Jun 14 10:00:03 gw sm-mta[1236]: 4AB1cD2e012345: to=<dave@example.org>, delay=00:00:03, \
xdelay=00:00:01, mailer=esmtp, pri=121200, relay=mx.example.org. [198.51.100.25], dsn=2.0.0, \
stat=Sent (Ok: queued as 4W0Q7x1XYZ)
"""


def test_sendmail_log_lines_each_recipient_with_its_status() -> None:
    found = extract_all(SENDMAIL_LOG)
    assert [(f.kind, f.recipient, f.action, f.dsn, f.code, f.remote) for f in found] == [
        ("sendmail-log", "bob@example.org", "failed", "5.1.1", None, "mx.example.org"),
        ("sendmail-log", "carol@example.org", "delayed", "4.7.1", 450, "mx.example.org"),
        ("sendmail-log", "dave@example.org", "delivered", "2.0.0", None, "mx.example.org"),
    ]
    assert {f.sender for f in found} == {"alice@example.net"}
    assert found[0].text == "User unknown"
    assert found[1].text.startswith("Client host rejected: cannot find your hostname")


def test_sendmail_reply_field_is_the_receivers_reply() -> None:
    line = (
        "May  3 10:22:31 relay sendmail[22211]: 4AB1cD2e012345: to=<dave@example.org>, "
        "delay=00:00:01, xdelay=00:00:01, mailer=esmtp, pri=30000, "
        "relay=mx.example.org. [198.51.100.25], dsn=5.7.1, stat=Service unavailable, "
        "reply=550 5.7.1 Client host rejected: cannot find your reverse hostname, [203.0.113.9]"
    )
    explanation = EXPLAINER.explain(line)
    assert (explanation.input.code, explanation.input.dsn) == (550, "5.7.1")
    assert explanation.class_name == "reverse_dns", explanation.render()


def test_a_postfix_sendmail_line_is_not_read_as_sendmail() -> None:
    postfix = (
        "Jun 14 10:00:00 gw postfix/sendmail[881]: 4W0Q7x1XYZ: to=<bob@example.org>, "
        "relay=mx.example.org[198.51.100.25]:25, dsn=5.1.1, stat=x, status=bounced "
        "(host mx.example.org[198.51.100.25] said: 550 5.1.1 User unknown (in reply to "
        "RCPT TO command))"
    )
    assert read_log(postfix) is None
    assert extract(postfix).kind == "postfix-log"


# -- Microsoft logs -------------------------------------------------------------------------

TRACKING = """\
#Software: Microsoft Exchange Server
#Version: 15.02.1118.007
#Log-type: Message Tracking Log
#Fields: date-time,client-ip,client-hostname,server-ip,server-hostname,source-context,\
connector-id,source,event-id,internal-message-id,message-id,network-message-id,\
recipient-address,recipient-status,total-bytes,recipient-count,related-recipient-address,\
reference,message-subject,sender-address,return-path,message-info,directionality,tenant-id
2024-06-14T10:00:00.000Z,192.0.2.10,EXCH01,,,,,SMTP,RECEIVE,123,<m1@example.net>,g1,\
bob@example.org;carol@example.org,250 2.1.5 Ok;250 2.1.5 Ok,5120,2,,,Report,\
alice@example.net,alice@example.net,,Originating,
2024-06-14T10:00:01.000Z,192.0.2.10,EXCH01,198.51.100.25,mx.example.org,,Outbound,SMTP,FAIL,\
123,<m1@example.net>,g1,bob@example.org;carol@example.org,\
550 5.1.1 RESOLVER.ADR.RecipNotFound; not found;250 2.1.5 Ok,5120,2,,,Report,\
alice@example.net,alice@example.net,,Originating,
"""


def test_exchange_message_tracking_reads_the_fail_event_per_recipient() -> None:
    found = extract_all(TRACKING)
    assert [(f.kind, f.recipient, f.action, f.dsn) for f in found] == [
        ("microsoft-log", "bob@example.org", "failed", "5.1.1"),
        ("microsoft-log", "carol@example.org", "delivered", None),
    ]
    assert found[0].sender == "alice@example.net"
    assert found[0].remote == "mx.example.org"
    assert found[0].text.startswith("RESOLVER.ADR.RecipNotFound")


LED_ROW = (
    "2024-06-14T10:00:01.123Z,203.0.113.9,EXCH01,198.51.100.25,mx.example.org,,"
    "Outbound to Internet,SMTP,FAIL,12345,<abc@example.net>,0f0e-aaaa,bob@example.org,"
    '"[{LED=550 5.7.509 Access denied, sending domain example.net does not pass DMARC '
    "verification and has a DMARC policy of reject.};{MSG=};{FQDN=mx.example.org};"
    '{IP=198.51.100.25};{LRT=}]",5120,1,,,Quarterly report,alice@example.net,'
    "alice@example.net,,Originating"
)


def test_a_tracking_row_pasted_without_its_header_gives_the_led_reply() -> None:
    found = extract(LED_ROW)
    assert (found.kind, found.recipient, found.sender, found.code, found.dsn, found.remote) == (
        "microsoft-log",
        "bob@example.org",
        "alice@example.net",
        550,
        "5.7.509",
        "mx.example.org",
    )
    assert found.text.startswith("Access denied, sending domain example.net")


def test_a_message_trace_export_and_a_trace_detail() -> None:
    export = (
        '"date_time_utc","sender_address","recipient_address","recipient_status",'
        '"event_id"\n"2024-06-14T10:00:01Z","alice@example.net","bob@example.org",'
        '"[{LED=451 4.7.500 Server busy. Please try again later from [203.0.113.9]. (AS761)};'
        '{MSG=};{FQDN=mx.example.org};{IP=198.51.100.25};{LRT=}]","DEFER"\n'
    )
    found = extract(export)
    assert (found.kind, found.recipient, found.action, found.code, found.dsn) == (
        "microsoft-log",
        "bob@example.org",
        "delayed",
        451,
        "4.7.500",
    )
    detail = (
        "Reason: [{LED=550 5.7.1 Unfortunately, messages from [203.0.113.9] weren't sent.};"
        "{MSG=};{FQDN=mx.example.org};{IP=198.51.100.25};{LRT=}]"
    )
    found = extract(detail)
    assert (found.kind, found.recipient, found.code, found.remote) == (
        "microsoft-log",
        None,
        550,
        "mx.example.org",
    )


def test_a_short_csv_row_with_a_reply_is_not_a_tracking_row() -> None:
    text = "550 5.1.1 recipient status unknown,bob@example.org"
    assert read_log(text) is None
    assert extract(text).kind == "reply"


#: Hand-written in the send protocol log's shape (its #Fields line is the log's own).
PROTOCOL = (LOGS / "exchange-send-protocol.log").read_text(encoding="utf-8")


def test_an_exchange_send_protocol_log_is_a_dialogue() -> None:
    found = extract(PROTOCOL)
    assert (found.kind, found.recipient, found.sender, found.stage, found.code, found.remote) == (
        "microsoft-protocol-log",
        "bob@example.org",
        "alice@example.net",
        Stage.RCPT,
        550,
        "198.51.100.25",
    )


def test_a_broken_csv_is_no_crash() -> None:
    text = '2024-06-14,a,b,"[{LED=550 5.7.1 never closed\n' + "x," * 50
    found = extract(text)
    assert found.kind in ("microsoft-log", "text", "reply")


# -- the package's public names ------------------------------------------------------------


def test_the_split_package_keeps_its_public_names() -> None:
    """bounce.py became a package; what other modules import from it is still there."""
    for name in ("read", "read_log", "Bounce", "Recipient", "DELIVERED_ACTIONS", "COMMAND_STAGE"):
        assert hasattr(bounce, name), name


# -- through the command line's batch ------------------------------------------------------


def test_explain_batch_takes_the_new_formats(tmp_path: Path) -> None:
    for name, body in (
        ("sendmail.log", SENDMAIL_LOG),
        ("tracking.log", TRACKING),
        ("protocol.log", PROTOCOL),
        ("swaks.txt", (TRANSCRIPTS / "swaks-dnsbl-spamhaus.txt").read_text(encoding="utf-8")),
    ):
        (tmp_path / name).write_text(body, encoding="utf-8")
    out: list[str] = []

    class Sink:
        def write(self, text: str) -> None:
            out.append(text)

        def isatty(self) -> bool:
            return False

        def flush(self) -> None:
            pass

    assert run_batch(str(tmp_path), EXPLAINER, "json", out=Sink(), err=Sink()) == 0  # type: ignore[arg-type]
    lines = [json.loads(line) for line in "".join(out).splitlines()]
    kinds = sorted(line["input_kind"] for line in lines)
    assert kinds == ["microsoft-log", "microsoft-protocol-log", "sendmail-log", "transcript"]
