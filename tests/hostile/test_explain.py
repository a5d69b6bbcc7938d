"""Hostile input to `explain` and `reproduce`: every input is read in linear time.

The inputs are built from the literal anchors the parsers look for (`in reply to `,
`status=`, `SMTP error from remote mailer after `, `said:`, `host `, `<`, `(`, `[`, ...),
repeated and nested, in the places where a pattern once ran from each occurrence to a
far delimiter and so took minutes on 1 MB. Each shape runs at 100 KB and at 1 MB through
`explain` and through reproduce's field reader (`read_fields`, what `reproduce` parses the
customer's reply with); a run over `BOUND` seconds, or a 1 MB run more than `MAX_RATIO`
times slower than the 100 KB one (quadratic growth gives about 100), counts as a hang.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strictmx.receiver.explain import Explainer, ExplainError
from strictmx.receiver.reproduce import ReproduceError, read_fields, reproduce
from strictmx.receiver.verdict import Reply, Stage

from .conftest import Tally

#: CPU seconds one 1 MB input may take (they take well under one here).
BOUND = 5.0
#: time(1 MB) / time(100 KB) above this is super-linear growth, not noise.
MAX_RATIO = 20.0
SMALL, LARGE = 100_000, 1_000_000

EXPLAINER = Explainer()
#: Entries whose field reading takes every branch of `read_fields`: a DNSBL zone, a sender.
FIELD_ENTRIES = [EXPLAINER.catalogue.get(i) for i in ("postfix-rbl", "exim-verification-failed")]

#: (name, text before, unit repeated to the size, text after).
SHAPES: list[tuple[str, str, str, str]] = [
    # the three the sweep reported
    ("in reply to", "", "in reply to ", ""),
    ("status=a (", "", "status=a (", ""),
    ("exim after ABC", "", "SMTP error from remote mailer after ABC ", ""),
    # the other anchors, bare
    ("said:", "", "said: ", ""),
    ("host", "", "host ", ""),
    ("<", "", "<", ""),
    ("(", "", "(", ""),
    ("[", "", "[", ""),
    # a Postfix status line around them
    ("postfix nested", "", "status=a (host a[b] said: 550 x (in reply to ", ""),
    ("postfix host a[", "status=bounced (host ", "a[", ")"),
    ("postfix (in reply to", "status=bounced (host a[1] said: 550 x", " (in reply to ", ")"),
    ("postfix to=<", "", "to=<", " status=bounced (host a[1] said: 550 x)"),
    ("postfix from=<", "", "from=<", "\nx status=bounced (host a[1] said: 550 x)"),
    ("postfix spaces", "status=bounced (host a[1] said: 550 a", " ", "b)"),
    # an Exim log line around them
    ("exim pipelined <", "", "SMTP error from remote mailer after pipelined RCPT TO:<", ""),
    ("exim F=<", "SMTP error from remote mailer after DATA: 550 x ", "F=<", ""),
    ("exim spaces", "SMTP error from remote mailer after DATA: 550 a", " ", "b"),
    ("exim local part", "SMTP error from remote mailer after RCPT TO:<", "a", ">: 550 x"),
    # replies, wrapped lines and DSN fields
    ("wrapped lines", "550 x\n", "a\n", ""),
    ("dsn folded field", "Content-Type: message/delivery-status\nStatus: 5.7.1\n", " a\n", ""),
    (
        "dsn field spaces",
        "Content-Type: message/delivery-status\n\nDiagnostic-Code: smtp; 550 x",
        " \t",
        "\n y\nStatus: 5.7.1\n",
    ),
    ("sender a.a.a", "550 5.7.1 <a>: Sender address rejected: ", "a.", ""),
    ("id punctuation", "550 ", "::", ""),
    # Sendmail log lines, Microsoft logs and SMTP dialogues (explain/bounce/logs.py,
    # transcript.py): their anchors repeated, and lines of them
    ("sendmail to=", "x sm-mta[1]: Q1: ", "to=<a@b.example>, ", "stat=x"),
    ("sendmail fields", "x sm-mta[1]: Q1: to=<a@b.example>, stat=Deferred: 450 a", ", a=", ""),
    ("sendmail lines", "", "x sm-mta[1]: Q1: to=<a@b.example>, dsn=5.1.1, stat=a\n", ""),
    ("LED", "", "{LED=", ""),
    ("LED row", 'a,b,FAIL,a@b.example,"[{LED=550 5.7.1 a', ",{FQDN=", '}]"'),
    ("tracking rows", "#Fields: event-id,recipient-status\n", "FAIL,550 5.1.1 a;\n", ""),
    ("csv quotes", "recipient,status\n", '"', ""),
    ("protocol rows", "", "a,b,s,1,l,r:25,<,550 5.7.1 x\na,b,s,2,l,r:25,>,RCPT TO:<a@b.c>\n", ""),
    ("swaks lines", "", " -> RCPT TO:<a@b.example>\n<-  250-ok\n", "<** 550 x\n"),
    ("s c lines", "", "C: DATA\nS: 354 go\nC: a\n", "C: .\nS: 550 x\n"),
    ("pipelined", "S: 220 x\n", "C: RCPT TO:<a@b.example>\n", "S: 550 x\n"),
]


def build(before: str, unit: str, after: str, size: int) -> str:
    n = size - len(before) - len(after)
    return before + (unit * (n // len(unit) + 1))[:n] + after


def run_explain(text: str) -> None:
    with contextlib.suppress(ExplainError):  # a clear refusal of the input is an answer too
        EXPLAINER.explain_bytes(text.encode())


def run_fields(text: str) -> None:
    reply = Reply(550, None, tuple(text[i : i + 500] for i in range(0, len(text), 500)))
    for entry in FIELD_ENTRIES:
        read_fields(entry, reply)


def timed(run: Callable[[str], None], text: str, tries: int = 1) -> float:
    """The CPU seconds this thread spends on `run(text)`, the least of `tries` runs.

    CPU time, not wall time: the growth measured is the parser's, and CI runs the suite on
    several Pythons side by side, so a 1 MB run's wall time also counts the moments the
    machine gave its core to another run (a 20x "growth" was once measured that way)."""
    best = float("inf")
    for _ in range(tries):
        start = time.thread_time()
        run(text)
        best = min(best, time.thread_time() - start)
    return best


@pytest.mark.parametrize(("name", "before", "unit", "after"), SHAPES, ids=[s[0] for s in SHAPES])
@pytest.mark.parametrize("what", ["explain", "read_fields"])
def test_a_megabyte_of_anchors_is_read_in_linear_time(
    tally: Tally, what: str, name: str, before: str, unit: str, after: str
) -> None:
    run = run_explain if what == "explain" else run_fields
    small = timed(run, build(before, unit, after, SMALL), tries=2)
    large_text = build(before, unit, after, LARGE)
    large = timed(run, large_text)
    if large / small >= MAX_RATIO and large < BOUND:
        large = min(large, timed(run, large_text))  # a stall of the machine, not the parser
    tally.tried(2)
    example = f"{what} {name!r}: 100 KB {small:.3f}s, 1 MB {large:.3f}s"
    if large > BOUND or large / small >= MAX_RATIO:
        tally.add("hangs", example=example)
    tally.assert_clean()


def test_reproduce_reads_a_megabyte_long_reply_in_linear_time(tally: Tally) -> None:
    """A recognised reply with 1 MB of continuation lines, through the whole `reproduce`."""
    head = (
        "550-5.7.1 Service unavailable; Client host [203.0.113.9] blocked using zen.spamhaus.org\n"
    )

    def run(text: str) -> None:
        # Pinned: 1 MB of junk after the first line is not a reply anyone recognises.
        found = reproduce(text, entry_id="postfix-rbl", explainer=EXPLAINER)
        assert found.identity.client_ip == "203.0.113.9"

    for unit in ("in reply to ", "status=a (", "SMTP error from remote mailer after ABC ", "a."):
        line = "550-5.7.1 " + unit * (400 // len(unit)) + "\n"
        small = timed(run, head + line * (SMALL // len(line)), tries=2)
        large = timed(run, head + line * (LARGE // len(line)))
        tally.tried(2)
        if large > BOUND or large / small >= MAX_RATIO:
            tally.add("hangs", example=f"reproduce {unit!r}: {small:.3f}s, {large:.3f}s")
    tally.assert_clean()


def test_a_control_reply_is_still_explained_and_reproduced(tally: Tally) -> None:
    """The parsers still find what they look for in the same shapes of input."""
    postfix = (
        "Jun 14 12:40:02 mta postfix/smtp[8812]: 4W0T9k2p4Jz2Abc: to=<billing@example.org>, "
        "relay=mx.example.org[198.51.100.25]:25, dsn=5.7.1, status=bounced (host "
        "mx.example.org[198.51.100.25] said: 554 5.7.1 Service unavailable; Client host "
        "[203.0.113.9] blocked using zen.spamhaus.org (in reply to RCPT TO command))"
    )
    exim = (
        "2024-06-14 10:00:01 1sI3Xy-000Abc-1x ** bob@example.org F=<alice@example.net> "
        "H=mx.example.org [203.0.113.25]: SMTP error from remote mail server after "
        "RCPT TO:<bob@example.org>: 550 Sender verify failed"
    )
    tally.tried(2)
    found = EXPLAINER.explain(postfix).input
    if (found.kind, found.stage, found.recipient, found.remote) != (
        "postfix-log",
        Stage.RCPT,
        "billing@example.org",
        "mx.example.org",
    ):
        tally.add("wrong_replies", example=f"postfix: {found}")
    found = EXPLAINER.explain(exim).input
    if (found.kind, found.stage, found.sender, found.text) != (
        "exim-log",
        Stage.RCPT,
        "alice@example.net",
        "Sender verify failed",
    ):
        tally.add("wrong_replies", example=f"exim: {found}")
    reproduction = reproduce(postfix, explainer=EXPLAINER)
    if reproduction.identity.client_ip != "203.0.113.9":
        tally.add("wrong_replies", example=f"reproduce: {reproduction.identity}")
    # The log and transcript readers' shapes above, as a real input has them.
    sendmail = (
        "x sm-mta[1]: Q1: to=<a@b.example>, dsn=4.7.1, stat=Deferred: 450 4.7.1 Client host "
        "rejected: cannot find your hostname, [203.0.113.9]"
    )
    swaks = " -> RCPT TO:<a@b.example>\n<** 550 5.7.1 Client host rejected: Access denied\n"
    tally.tried(2)
    for text, kind, stage in ((sendmail, "sendmail-log", None), (swaks, "transcript", Stage.RCPT)):
        found = EXPLAINER.explain(text).input
        if (found.kind, found.recipient, found.stage) != (kind, "a@b.example", stage):
            tally.add("wrong_replies", example=f"{kind}: {found}")
    tally.assert_clean()


ANCHORS = [
    "in reply to ",
    "status=",
    "status=bounced (",
    "SMTP error from remote mailer after ",
    "SMTP error from remote mail server after ",
    "said: ",
    "host ",
    "<",
    ">",
    "(",
    ")",
    "[",
    "]",
    ":",
    " command)",
    "RCPT TO:<",
    "pipelined ",
    "550 ",
    "550-",
    "5.7.1 ",
    "smtp; ",
    "Diagnostic-Code: ",
    "Status: ",
    "Content-Type: message/delivery-status\n",
    "to=<",
    "F=<",
    "** ",
    "a@b.example",
    "192.0.2.1",
    "sm-mta[1]: Q1: ",
    "stat=",
    "reply=",
    "{LED=",
    "};{FQDN=",
    "#Fields: ",
    ",<,",
    ",FAIL,",
    " -> ",
    "<** ",
    "C: ",
    "S: ",
    ">>> ",
    "<<< ",
    '"',
    "\n",
    " ",
    "\t",
    "x",
]


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(pieces=st.lists(st.sampled_from(ANCHORS), min_size=1, max_size=40))
def test_random_anchor_text_is_explained_or_refused_clearly(
    tally: Tally, pieces: list[str]
) -> None:
    """Anything but an answer or a clear `ExplainError`/`ReproduceError` is a crash."""
    text = "".join(pieces)
    tally.tried()
    for what, run in (
        ("explain", lambda: EXPLAINER.explain_bytes(text.encode())),
        ("reproduce", lambda: reproduce(text, explainer=EXPLAINER)),
    ):
        try:
            run()
        except (ExplainError, ReproduceError) as exc:
            if not str(exc):
                tally.add("crashes", example=f"{what} {text!r}: an error without a message")
        except Exception as exc:
            tally.add("crashes", example=f"{what} {text!r}: {type(exc).__name__}: {exc}")
    tally.assert_clean()
