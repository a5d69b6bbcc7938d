"""Whole bounce e-mails read recipient by recipient (strictmx.receiver.explain.bounce).

The DSNs in tests/data/bounces/ are what a real Postfix wrote after strictmx personas
refused it (tests/data/bounces/generate.py makes them again), each beside strictmx's own
journal of the refusal (NAME.verdicts.json): explain must name that policy and outcome.
The plain-text formats (Exim, Sendmail, qmail, Exchange, Gmail, Yahoo) and an ARF report
are short hand-written samples in tests/data/bounces/samples/ around each format's fixed
lines, since no such MTA runs here.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from strictmx.receiver import cli
from strictmx.receiver.explain import Explainer, ExplainError, extract, extract_all, read_bounce
from strictmx.receiver.reproduce import reproduce
from strictmx.receiver.verdict import Stage

BOUNCES = Path(__file__).resolve().parent.parent / "data" / "bounces"
SAMPLES = BOUNCES / "samples"
EXPLAINER = Explainer()


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# -- real DSNs from Postfix --------------------------------------------------------------

#: Per fixture, per failed recipient: address, Status, reply code, stage, start of the
#: Diagnostic-Code's reply text. Remote-MTA is strictmx's loopback address in all of them.
REAL: dict[str, list[tuple[str, str, int, Stage | None, str]]] = {
    "postfix-helo-two-recipients": [
        ("bob@strictmx.test", "5.5.2", 504, Stage.RCPT, "<localhost>: Helo command rejected"),
        ("carol@strictmx.test", "5.5.2", 504, Stage.RCPT, "<localhost>: Helo command rejected"),
    ],
    "postfix-reverse-dns-expired": [
        ("bob@strictmx.test", "4.7.1", 450, Stage.RCPT, "Client host rejected: cannot find"),
    ],
    "gmail-spf-fail": [
        ("bob@gmail.strictmx.test", "5.7.26", 550, Stage.RCPT, "The MAIL FROM domain"),
    ],
    "local-recipients-mixed": [
        ("nobody@strictmx.test", "5.1.1", 550, Stage.RCPT, "<nobody@strictmx.test>: Recipient"),
    ],
    # Relayed, not failed: strictmx accepted it (the fixture's verdicts are empty).
    "local-recipients-relayed": [
        ("bob@strictmx.test", "2.0.0", 250, None, "Ok: queued as"),
    ],
    "headers-missing-eod": [
        ("bob@strictmx.test", "5.0.0", 550, Stage.EOD, "Date is not RFC2822"),
    ],
    "sender-domain-not-found": [
        ("bob@strictmx.test", "5.0.0", 550, Stage.MAIL, "Domain not found"),
    ],
    "dnsbl-spamhaus": [
        ("bob@strictmx.test", "5.7.1", 554, Stage.RCPT, "Service unavailable; Client host"),
    ],
}


def test_every_real_dsn_has_its_expectations() -> None:
    assert sorted(p.stem for p in BOUNCES.glob("*.eml")) == sorted(REAL)
    assert len(REAL) >= 5


@pytest.mark.parametrize("name", sorted(REAL))
def test_a_real_dsn_is_read_per_recipient(name: str) -> None:
    bounce = read_bounce(text(BOUNCES / f"{name}.eml"))
    assert bounce is not None and bounce.format == "dsn"
    assert bounce.reporting_mta == "staging.strictmx.test"
    assert bounce.fields["x-postfix-sender"].endswith(bounce.sender or "?")
    assert "arrival-date" in bounce.fields
    got = [
        (r.address, r.status, r.stage, r.remote_mta, r.action, r.diagnostic_type)
        for r in bounce.recipients
    ]
    action = "relayed" if name.endswith("-relayed") else "failed"
    assert got == [(a, s, st, "127.0.0.1", action, "smtp") for a, s, _, st, _ in REAL[name]]
    for recipient, (_, status, code, _, start) in zip(bounce.recipients, REAL[name], strict=True):
        assert recipient.diagnostic is not None
        # Postfix's Status is 5.0.0 for a reply without an enhanced code: none to repeat.
        given = f"{code} {start}" if status == "5.0.0" else f"{code} {status} {start}"
        assert recipient.diagnostic.startswith(given)
        assert "\n" not in recipient.diagnostic  # folded lines unfolded


@pytest.mark.parametrize("name", sorted(REAL))
def test_explain_names_the_policy_and_outcome_strictmx_refused_with(name: str) -> None:
    truth: list[dict[str, str]] = json.loads((BOUNCES / f"{name}.verdicts.json").read_text())
    explanations = EXPLAINER.explain_all(text(BOUNCES / f"{name}.eml"))
    assert len(explanations) == len(REAL[name])
    if not truth:
        # strictmx refused nothing: the DSN reports a hand-off, and explain says so.
        assert [(e.input.action, e.matches) for e in explanations] == [("relayed", [])]
        assert explanations[0].not_a_refusal is not None
        return
    assert len(truth) == 1
    for explanation in explanations:
        assert explanation.best is not None, explanation.render()
        entry = explanation.best.entry
        assert (entry.policy, entry.outcome) == (truth[0]["policy"], truth[0]["outcome"])
        # The stage the bounce gives is the one strictmx answered at.
        assert explanation.input.stage is not None
        assert explanation.input.stage.value == truth[0]["replied_at"]


def test_a_single_recipient_dsn_still_extracts_as_before() -> None:
    found = extract(text(BOUNCES / "postfix-reverse-dns-expired.eml"))
    assert (found.kind, found.code, found.dsn, found.stage) == ("dsn", 450, "4.7.1", Stage.RCPT)
    assert (found.recipient, found.sender, found.remote) == (
        "bob@strictmx.test",
        "alice@example.net",
        "127.0.0.1",
    )
    assert found.action == "failed" and found.bounce_format == "dsn"
    assert found.original_headers["subject"] == "quarterly report"


# -- delivered, relayed and failed in one DSN ---------------------------------------------


def test_relayed_recipients_are_reported_as_such_never_as_a_refusal() -> None:
    explanations = EXPLAINER.explain_all(text(SAMPLES / "dsn-relayed-and-failed.eml"))
    by = {e.input.recipient: e for e in explanations}
    assert list(by) == ["carol@example.org", "dave@example.org", "bob@example.org"]
    relayed = by["bob@example.org"]
    assert relayed.input.action == "relayed" and relayed.matches == []
    assert relayed.not_a_refusal is not None and "nothing was refused" in relayed.not_a_refusal
    # The controls: the failed ones are explained, each with its own stage.
    carol, dave = by["carol@example.org"], by["dave@example.org"]
    assert carol.best is not None and carol.best.entry.outcome == "UNKNOWN_USER"
    assert (carol.input.stage, dave.input.stage) == (Stage.RCPT, Stage.MAIL)
    assert (dave.input.code, dave.input.dsn) == (554, "5.7.1")
    assert carol.not_a_refusal is None and dave.not_a_refusal is None


# -- ARF ---------------------------------------------------------------------------------


def test_an_arf_report_is_a_complaint_not_a_refusal() -> None:
    bounce = read_bounce(text(SAMPLES / "arf.eml"))
    assert bounce is not None and bounce.complaint and bounce.feedback_type == "abuse"
    assert bounce.sender == "alice@example.net"
    assert [(r.address, r.action) for r in bounce.recipients] == [("bob@example.org", "complaint")]
    assert bounce.failures == []
    explanation = EXPLAINER.explain(text(SAMPLES / "arf.eml"))
    assert explanation.matches == [] and explanation.not_a_refusal is not None
    assert "RFC 5965" in explanation.render()
    data = explanation.to_json()
    assert data["action"] == "complaint" and "nearest_families" not in data


# -- the plain-text formats -------------------------------------------------------------

#: Per sample: format, then per recipient: address, action, status, stage, remote, reply.
INFORMAL: dict[str, tuple[str, list[tuple[Any, ...]]]] = {
    "exim": (
        "exim",
        [
            ("bob@example.org", "failed", "5.7.1", Stage.RCPT, "mx.example.org",
             "550 5.7.1 <bob@example.org>: Recipient address rejected: Access denied"),
            ("carol@example.org", "failed", "5.7.1", Stage.EOD, "mx.example.org",
             "550 5.7.1 Message rejected as spam by content filter"),
        ],
    ),
    "sendmail": (
        "sendmail",
        [("bob@example.org", "failed", "5.1.1", Stage.RCPT, "mx.example.org",
          "550 5.1.1 <bob@example.org>... User unknown")],
    ),
    "qmail": (
        "qmail",
        [("bob@example.org", "failed", "5.2.2", Stage.RCPT, None,
          "550 5.2.2 <bob@example.org>: mailbox full")],
    ),
    "exchange": (
        "exchange",
        [("bob@example.org", "failed", "5.7.1", None, None,
          "550 5.7.1 Service unavailable, Client host [203.0.113.77] blocked using Spamhaus.")],
    ),
    "gmail": (
        "gmail",
        [("bob@example.org", "failed", "5.1.1", None, None,
          "550 5.1.1 The email account that you tried to reach does not exist.")],
    ),
    "yahoo": (
        "yahoo",
        [("bob@example.org", "failed", "5.7.9", None, None,
          "554 5.7.9 Message not accepted for policy reasons. [BODY]")],
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(INFORMAL))
def test_a_plain_text_bounce_is_read_per_recipient(name: str) -> None:
    form, expected = INFORMAL[name]
    bounce = read_bounce(text(SAMPLES / f"{name}.eml"))
    assert bounce is not None and bounce.format == form
    assert len(bounce.recipients) == len(expected)
    for recipient, (who, action, status, stage, remote, reply) in zip(
        bounce.recipients, expected, strict=True
    ):
        assert (recipient.address, recipient.action, recipient.status) == (who, action, status)
        assert (recipient.stage, recipient.remote_mta) == (stage, remote)
        assert recipient.diagnostic is not None and recipient.diagnostic.startswith(reply)
    # The returned copy is context: its sender is kept, its text is in no reply.
    assert bounce.sender == "alice@example.net"
    assert all("Subject" not in (r.diagnostic or "") for r in bounce.recipients)


def test_text_that_is_no_bounce_is_not_read_as_one() -> None:
    assert read_bounce("550 5.7.1 Client host rejected: Access denied") is None
    assert read_bounce("From: a@example.net\nSubject: hello\n\nJust a letter.\n") is None


# -- the returned message is never evidence -----------------------------------------------


def test_the_returned_messages_headers_are_not_matched_as_a_refusal() -> None:
    """An Exim bounce whose reply says nothing but `550 Rejected`: the copy of the message
    below it (with its Message-ID and Date fields) was read as the reply, and explain
    claimed headers / MESSAGE_ID_MISSING at 0.53."""
    explanation = EXPLAINER.explain(text(SAMPLES / "exim-returned-copy.eml"))
    assert explanation.input.text == "Rejected"
    assert (explanation.input.code, explanation.input.stage) == (550, Stage.EOD)
    assert explanation.input.original_headers["message-id"] == "<x1@example.net>"
    assert not explanation.recognised
    assert all(m.entry.family != "headers" for m in explanation.matches)


def test_a_refusal_for_missing_headers_is_still_recognised_in_a_bounce() -> None:
    # The control: strictmx refused the message for its missing Date, and the DSN says so.
    explanation = EXPLAINER.explain(text(BOUNCES / "headers-missing-eod.eml"))
    assert explanation.best is not None
    assert explanation.best.entry.outcome == "DATE_MISSING"
    assert "message-id" not in explanation.input.original_headers


def test_boilerplate_and_copied_headers_in_a_dsn_are_not_matched() -> None:
    dsn = text(SAMPLES / "dsn-relayed-and-failed.eml")
    for explanation in EXPLAINER.explain_all(dsn):
        assert "no message id" not in explanation.input.text.lower()
        assert all(m.entry.family != "headers" for m in explanation.matches)


# -- the command line ---------------------------------------------------------------------


def test_the_command_prints_one_explanation_per_recipient(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = str(BOUNCES / "postfix-helo-two-recipients.eml")
    assert cli.main(["explain", path]) == 0
    out = capsys.readouterr().out
    assert "== recipient 1 of 2: bob@strictmx.test ==" in out
    assert "== recipient 2 of 2: carol@strictmx.test ==" in out
    assert out.count("best match: helo_syntax HELO_NOT_FQDN") == 2
    assert cli.main(["explain", path, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["input_kind"] == "dsn" and data["sender"] == "alice@example.net"
    assert [(r["recipient"], r["action"], r["stage"]) for r in data["recipients"]] == [
        ("bob@strictmx.test", "failed", "rcpt"),
        ("carol@strictmx.test", "failed", "rcpt"),
    ]
    assert {r["matches"][0]["outcome"] for r in data["recipients"]} == {"HELO_NOT_FQDN"}
    # `reproduce FILE` reproduces the first failed recipient; a later one is pinned.
    first, second = (r["matches"][0]["reproduce"] for r in data["recipients"])
    assert first == f"strictmx reproduce {path} -o reproduce-postfix-helo-not-fqdn.yaml"
    assert second == (
        f"strictmx reproduce {path} --entry postfix-helo-not-fqdn --rcpt carol@strictmx.test "
        "-o reproduce-postfix-helo-not-fqdn.yaml"
    )


def test_the_command_keeps_its_output_for_a_single_reply(
    capsys: pytest.CaptureFixture[str],
) -> None:
    reply = "450 4.7.1 Client host rejected: cannot find your reverse hostname, [203.0.113.77]"
    assert cli.main(["explain", reply, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "recipients" not in data and "action" not in data
    assert data["matches"][0]["outcome"] == "NO_PTR"
    assert cli.main(["explain", reply]) == 0
    assert "== recipient" not in capsys.readouterr().out


def test_the_command_reports_a_delivery_and_a_complaint_plainly(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # (The exit code says whether dave's generic "Access denied" is claimed: the model's.)
    assert cli.main(["explain", str(SAMPLES / "dsn-relayed-and-failed.eml")]) in (0, 1)
    out = capsys.readouterr().out
    assert "recipient: bob@example.org: relayed at mx.example.org" in out
    assert "relayed: the message reached this recipient's server" in out
    assert cli.main(["explain", str(SAMPLES / "arf.eml")]) == 0
    assert "feedback report (RFC 5965)" in capsys.readouterr().out


def test_every_recipient_of_a_bounce_is_extracted_failed_first() -> None:
    found = extract_all(text(SAMPLES / "dsn-relayed-and-failed.eml"))
    assert [f.action for f in found] == ["failed", "failed", "relayed"]


# -- linear time on hostile input ---------------------------------------------------------

_HEAD = "From: a@example.net\nSubject: x\n\n"
_DSN_HEAD = (
    "Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n"
    "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; a\n\n"
)
#: (name, text before, unit repeated to the size): each format's anchors, many times over.
SHAPES = [
    ("exim", _HEAD + "This message was created automatically by mail delivery software.\n\n",
     "  a@b.c\n    SMTP error from remote mail server after RCPT TO:<"),
    ("exim host", _HEAD + "This message was created automatically by mail delivery software.\n",
     "  a@b.c\n host a [host a ["),
    ("gmail", _HEAD, "The response was:\n"),
    ("gmail addresses", _HEAD + "The response was:\n", "a@b.c "),
    ("qmail", _HEAD + "Hi. This is the qmail-send program\n\n", "<a@b.c>:\n"),
    ("qmail <", _HEAD + "Hi. This is the qmail-send program\n\n<", "<"),
    ("sendmail", _HEAD + "--- Transcript of session follows ---\n",
     ">>> RCPT To:<a@b.c>\n<<< 550 x\n"),
    ("sendmail reason", _HEAD + "--- Transcript of session follows ---\n", "<a@b.c>\n"),
    ("exchange", _HEAD + "Diagnostic information for administrators\n",
     "a@b.c\nRemote Server returned '"),
    ("postfix", _HEAD + "This is the mail system at host x.\n\n",
     "<a@b.c>: host a[1] said: 550 (in reply to "),
    ("copy lines", _HEAD + "The response was:\n550 x\n\n", "------ This is a copy of\n"),
    ("html tags", "From: a@example.net\nContent-Type: text/html\n\n", "<p a@b.c<"),
    ("html ndr", "From: a@example.net\nContent-Type: text/html\n\n",
     "<p>Diagnostic information for administrators</p><br>a@b.c<br>Remote Server returned '"),
    ("dsn recipients", _DSN_HEAD,
     "Final-Recipient: rfc822; a@b.c\nAction: failed\nStatus: 5.0.0\n"
     "Diagnostic-Code: smtp; 550 x\n\n"),
    ("dsn folded", _DSN_HEAD + "Final-Recipient: rfc822; a@b.c\nDiagnostic-Code: smtp; 550 x\n",
     " y\n"),
]  # fmt: skip


def _timed(data: str) -> float:
    """CPU seconds of this thread: the reader's growth, not the machine's other work (CI
    runs several Pythons side by side; see tests/hostile/test_explain.py's `timed`)."""
    start = time.thread_time()
    with contextlib.suppress(ExplainError):
        EXPLAINER.explain_all(data)
    return time.thread_time() - start


@pytest.mark.parametrize(("name", "before", "unit"), SHAPES, ids=[s[0] for s in SHAPES])
def test_a_megabyte_of_a_formats_anchors_is_read_in_linear_time(
    name: str, before: str, unit: str
) -> None:
    def build(size: int) -> str:
        return before + unit * ((size - len(before)) // len(unit) + 1)

    small = min(_timed(build(100_000)) for _ in range(2))
    large = _timed(build(1_000_000))
    if large / max(small, 0.001) >= 20:
        large = min(large, _timed(build(1_000_000)))  # a stall of the machine, not the reader
    assert large < 5.0, f"{name}: 1 MB took {large:.2f}s"
    assert large / max(small, 0.001) < 20, f"{name}: 100 KB {small:.3f}s, 1 MB {large:.3f}s"


# -- the stage, where the bounce says it --------------------------------------------------

EXIM = """\
From: Mail Delivery System <Mailer-Daemon@smtp.example.net>
Subject: Mail delivery failed: returning message to sender

This message was created automatically by mail delivery software.

  bob@example.org
    host mx.example.org [198.51.100.25]
    SMTP error from remote mail server after {after}:
    {reply}
"""


@pytest.mark.parametrize(
    ("after", "stage"),
    [
        ("initial connection", Stage.CONNECT),
        ("EHLO smtp.example.net", Stage.HELO),
        ("MAIL FROM:<alice@example.net> SIZE=1234", Stage.MAIL),
        ("RCPT TO:<bob@example.org>", Stage.RCPT),
        ("pipelined RCPT TO:<bob@example.org>", Stage.RCPT),
        ("DATA", Stage.DATA),
        ("end of data", Stage.EOD),
    ],
)
def test_the_stage_comes_from_the_bounce_where_it_says_so(after: str, stage: Stage) -> None:
    found = extract(EXIM.format(after=after, reply="554 5.7.1 Refused by local policy"))
    assert (found.kind, found.stage, found.code, found.dsn) == ("bounce-exim", stage, 554, "5.7.1")
    assert found.text == "Refused by local policy"
    assert found.remote == "mx.example.org"


def test_no_stage_is_made_up_where_the_bounce_names_none() -> None:
    # The control: Exim's own words without an SMTP error name no command.
    bounce = EXIM.replace("SMTP error from remote mail server after {after}:", "retry timeout")
    found = extract(bounce.format(reply="550 5.7.1 Refused by local policy"))
    assert found.stage is None and found.code == 550


def test_a_postfix_bounce_without_its_delivery_status_part_is_read_from_the_human_part() -> None:
    """Postfix's own words, cut from a real DSN: one paragraph per recipient."""
    real = text(BOUNCES / "postfix-helo-two-recipients.eml")
    human = real.split("Content-Transfer-Encoding: 8bit\n\n")[1].split("\n--", 1)[0]
    plain = "From: MAILER-DAEMON@staging.strictmx.test\nSubject: Undelivered Mail\n\n" + human
    bounce = read_bounce(plain)
    assert bounce is not None and bounce.format == "postfix"
    assert [(r.address, r.status, r.stage, r.remote_mta) for r in bounce.recipients] == [
        ("bob@strictmx.test", "5.5.2", Stage.RCPT, "127.0.0.1"),
        ("carol@strictmx.test", "5.5.2", Stage.RCPT, "127.0.0.1"),
    ]
    assert bounce.recipients[0].diagnostic == (
        "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"
    )


# -- DSNs that leave things out, and broken ones ------------------------------------------

DSN = """\
From: MAILER-DAEMON@out.example.net
Subject: Delivery status
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

<bob@example.org>: host mx.example.org[198.51.100.25] said: 451 4.7.1 Try again
    later, greylisted (in reply to RCPT TO command)

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; out.example.net

{recipient}
--B--
"""


def test_a_delayed_recipient_is_explained_as_a_temporary_refusal() -> None:
    block = "Final-Recipient: rfc822; bob@example.org\nAction: delayed\nStatus: 4.7.1\n"
    found = extract(DSN.format(recipient=block))
    assert (found.action, found.dsn, found.stage) == ("delayed", "4.7.1", Stage.RCPT)
    # No Diagnostic-Code: the human part's words for this recipient are its reply.
    assert (found.code, found.text) == (451, "Try again later, greylisted")


def test_a_recipient_without_any_reason_is_reported_not_guessed() -> None:
    block = "Final-Recipient: rfc822; carol@example.org\nAction: failed\nStatus: 5.0.0\n"
    explanation = EXPLAINER.explain(DSN.format(recipient=block))
    assert explanation.input.recipient == "carol@example.org"
    assert explanation.input.dsn == "5.0.0" and explanation.matches == []


@pytest.mark.parametrize(
    "block",
    [
        "Action: failed\n",  # no recipient named
        "Final-Recipient: rfc822;\nAction: \nStatus: x.y\nDiagnostic-Code: smtp;\n",
        "Final-Recipient: nonsense\nStatus: 5.1.1\n",
        "Diagnostic-Code: smtp; 550\n  \n  5.7.1\n",
    ],
)
def test_a_broken_delivery_status_part_gives_an_answer_not_a_crash(block: str) -> None:
    try:
        explanations = EXPLAINER.explain_all(DSN.format(recipient=block))
    except ExplainError as exc:
        assert str(exc)  # a clear refusal of the input names the problem
        return
    assert explanations
    for explanation in explanations:
        assert explanation.render() and json.dumps(explanation.to_json())


def test_the_per_message_fields_are_kept() -> None:
    bounce = read_bounce(text(BOUNCES / "dnsbl-spamhaus.eml"))
    assert bounce is not None
    assert bounce.fields["original-envelope-id"] == "q1-envid"
    assert "x-postfix-queue-id" in bounce.fields
    assert bounce.recipients[0].original_recipient == "bob@strictmx.test"
    assert bounce.recipients[0].fields["remote-mta"] == "dns; 127.0.0.1"


# -- reproduce ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "at", "mail_from", "rcpt"),
    [
        ("gmail-spf-fail", "rcpt", "alice@example.net", "bob@gmail.strictmx.test"),
        ("sender-domain-not-found", "mail", "alice@parked.example", "bob@strictmx.test"),
        ("local-recipients-mixed", "rcpt", "alice@example.net", "nobody@strictmx.test"),
    ],
)
def test_reproduce_refuses_a_real_dsn_at_its_stage_with_its_envelope(
    name: str, at: str, mail_from: str, rcpt: str
) -> None:
    made = reproduce(text(BOUNCES / f"{name}.eml"))
    truth = json.loads((BOUNCES / f"{name}.verdicts.json").read_text())[0]
    assert (made.entry.policy, made.entry.outcome) == (truth["policy"], truth["outcome"])
    assert made.at == at == truth["replied_at"]
    assert (made.identity.mail_from, made.identity.rcpt) == (mail_from, rcpt)


def test_an_older_exchange_ndr_gives_its_hashed_reply_lines() -> None:
    ndr = (
        "From: postmaster@corp.example\nSubject: Undeliverable: hello\n\n"
        "Delivery has failed to these recipients or distribution lists:\n\n"
        "Diagnostic information for administrators:\n\n"
        "Generating server: EX01.corp.example\n\n"
        "bob@corp.example\n#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##\n\n"
        "carol@corp.example\n#< #5.7.1 smtp;550 5.7.1 Client host rejected> #SMTP#\n\n"
        "Original message headers:\n\nFrom: alice@example.net\nTo: bob@corp.example\n"
    )
    bounce = read_bounce(ndr)
    assert bounce is not None and bounce.format == "exchange"
    assert [(r.address, r.status, r.diagnostic) for r in bounce.recipients] == [
        ("bob@corp.example", "5.1.1", "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found"),
        ("carol@corp.example", "5.7.1", "550 5.7.1 Client host rejected"),
    ]
    assert bounce.sender == "alice@example.net"


def test_a_bounces_text_pasted_without_its_header_is_read_the_same() -> None:
    whole = text(SAMPLES / "exim-returned-copy.eml")
    pasted = whole.split("\n\n", 1)[1]
    found = extract(pasted)
    assert (found.kind, found.text, found.code, found.stage) == (
        "bounce-exim",
        "Rejected",
        550,
        Stage.EOD,
    )
    assert not EXPLAINER.explain(pasted).recognised  # the copy's headers are not evidence


def test_an_html_only_ndr_with_the_original_attached_is_read() -> None:
    ndr = """\
From: postmaster@outlook.example.com
Subject: Undeliverable: report
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="M"

--M
Content-Type: text/html; charset=utf-8

<html><body><p>Your message to <b>bob@example.org</b> couldn't be delivered.</p>
<p><b>Diagnostic information for administrators:</b></p>
<p>Generating server: AM0PR01MB0001.example.com</p>
<p><a href="mailto:bob@example.org">bob@example.org</a><br>
Remote Server returned &#39;550 5.7.606 Access denied, banned sending IP [203.0.113.77]&#39;</p>
</body></html>
--M
Content-Type: message/rfc822

From: alice@example.net
To: bob@example.org
Subject: report
Message-ID: <r1@example.net>

body
--M--
"""
    bounce = read_bounce(ndr)
    assert bounce is not None and bounce.format == "exchange"
    assert [(r.address, r.status, r.diagnostic) for r in bounce.recipients] == [
        (
            "bob@example.org",
            "5.7.606",
            "550 5.7.606 Access denied, banned sending IP [203.0.113.77]",
        )
    ]
    assert (bounce.sender, bounce.original_headers["message-id"]) == (
        "alice@example.net",
        "<r1@example.net>",
    )
    # The control: the attached original's fields are not the reply.
    assert "r1@example.net" not in (bounce.recipients[0].diagnostic or "")
