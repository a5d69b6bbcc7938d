"""`strictmx explain`: finding the reply in a bounce, and matching it to the catalogue."""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from strictmx.receiver import cli
from strictmx.receiver.explain import (
    CLAIM,
    MAX_INPUT,
    Explainer,
    ExplainError,
    decode,
    extract,
    tokens,
)
from strictmx.receiver.explain.corpus import load as load_corpus
from strictmx.receiver.verdict import Stage

from .test_catalogue import seed_replies

CORPUS = Path(__file__).resolve().parent.parent / "data" / "explain_corpus"

EXPLAINER = Explainer()


def explain(text: str) -> Any:
    return EXPLAINER.explain(text)


@pytest.mark.parametrize("seed", seed_replies(), ids=lambda s: s["id"])
def test_every_documented_reply_is_classified_to_its_family(seed: dict[str, Any]) -> None:
    reply = seed["reply"]
    text = "\n".join(reply) if isinstance(reply, list) else reply
    found = explain(text)
    assert found.recognised
    assert found.best.entry.family == seed["family"]
    assert found.best.confidence > 0.9


def corpus() -> list[dict[str, str]]:
    return [{"family": i.label, "input": i.input} for i in load_corpus(CORPUS)]


def test_the_corpus_covers_every_family_and_every_input_kind() -> None:
    items = corpus()
    assert {i["family"] for i in items} >= set(EXPLAINER.catalogue.families)
    kinds = Counter(extract(i["input"]).kind for i in items)
    assert kinds["postfix-log"] >= 15 and kinds["exim-log"] >= 8 and kinds["dsn"] >= 3
    assert kinds["reply"] >= 100


# -- not recognised ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        # (An unknown user is a strictmx check now: local_recipients. A full mailbox, a
        # message too big and a greylisting are named by their signals now: see
        # test_signals.py and test_a_class_strictmx_does_not_emulate_is_named_not_claimed.)
        "550 Requested action not taken: mailbox unavailable",
        "554 5.0.0 Transaction failed, see the log",
        "The quick brown fox jumps over the lazy dog.",
    ],
)
def test_unknown_text_is_not_recognised_and_says_what_is_nearest(text: str) -> None:
    found = explain(text)
    assert not found.recognised
    assert found.matches == []
    assert found.families, "the nearest families are listed"
    assert found.families[0][1] < CLAIM
    data = found.to_json()
    assert data["matches"] == [] and data["recognised"] is False
    assert len(data["nearest_families"]) == 3
    assert "not recognised" in found.render()


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("552 5.2.2 Mailbox full", "mailbox_full"),
        ("451 4.7.1 Greylisting in action, please come back later", "greylisted"),
    ],
)
def test_a_class_strictmx_does_not_emulate_is_named_not_claimed(text: str, name: str) -> None:
    # These were "not recognised" before the signal layer: now the registry meaning (5.2.2)
    # or the implementation's fixed text (milter-greylist) names the class, plainly.
    found = explain(text)
    assert found.recognised and found.class_name == name
    assert found.matches == [] and found.best is None
    data = found.to_json()
    assert data["class"] == name and data["matches"] == []
    assert data["not_emulated"]["statement"].startswith("strictmx does not emulate this")
    assert "nearest_families" not in data
    rendered = found.render()
    assert f"class: {name} (confidence" in rendered
    assert "strictmx does not emulate this" in rendered


def test_a_near_text_is_claimed_and_a_stranger_is_not() -> None:
    near = explain("550 5.7.1 Dynamic IP blocked, use your ISP mail server")
    assert near.recognised and near.best.entry.family == "dynamic_client"
    assert near.best.confidence < 0.9, "no catalogue text is this reply's own"
    assert near.confidence is not None and near.confidence >= CLAIM
    far = explain("550 5.7.1 Your message could not be delivered to the mailbox")
    assert not far.recognised


# -- what the input is ------------------------------------------------------------------

DSN = """\
From: MAILER-DAEMON@out.example.net (Mail Delivery System)
To: alice@example.net
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="XyZ"

--XyZ
Content-Type: text/plain; charset=us-ascii

<bob@example.org>: host mx.example.org[198.51.100.25] said: 450 4.7.1 Client host
    rejected: cannot find your reverse hostname, [203.0.113.77] (in reply to RCPT TO
    command)

--XyZ
Content-Type: message/delivery-status

Reporting-MTA: dns; out.example.net
X-Postfix-Queue-ID: 4W0T9k2p4Jz2Abc
X-Postfix-Sender: rfc822; alice@example.net

Final-Recipient: rfc822; bob@example.org
Original-Recipient: rfc822;bob@example.org
Action: failed
Status: 4.7.1
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; 450 4.7.1 Client host rejected: cannot find your reverse
    hostname, [203.0.113.77]

--XyZ
Content-Type: text/rfc822-headers

Return-Path: <alice@example.net>
From: Alice <alice@example.net>
To: bob@example.org
Subject: Hello

--XyZ--
"""


def test_a_dsn_gives_status_diagnostic_remote_and_the_stage() -> None:
    found = extract(DSN)
    assert found.kind == "dsn"
    assert (found.code, found.dsn) == (450, "4.7.1")
    assert found.text == "Client host rejected: cannot find your reverse hostname, [203.0.113.77]"
    assert found.stage is Stage.RCPT
    assert found.recipient == "bob@example.org"
    assert found.sender == "alice@example.net"
    assert found.remote == "mx.example.org"
    assert explain(DSN).best.entry.outcome == "NO_PTR"


def test_a_dsn_with_a_large_attachment_is_explained() -> None:
    attachment = base64.encodebytes(bytes(range(256)) * 8000).decode()  # about 2.8 MB
    big = DSN.replace(
        "--XyZ--\n",
        "--XyZ\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
        + attachment
        + "--XyZ--\n",
    )
    assert len(big) > 2_000_000
    assert explain(decode(big.encode())).best.entry.outcome == "NO_PTR"


def test_a_delivery_status_block_pasted_alone() -> None:
    block = DSN.split("Content-Type: message/delivery-status\n\n")[1].split("--XyZ")[0]
    found = extract(block)
    assert found.kind == "dsn" and found.code == 450 and found.recipient == "bob@example.org"


POSTFIX = (
    "Jun 14 12:40:02 mta postfix/smtp[8812]: 4W0T9k2p4Jz2Abc: to=<billing@example.org>, "
    "relay=mx.example.org[198.51.100.25]:25, delay=1.2, delays=0.1/0/0.8/0.3, dsn=5.7.1, "
    "status=bounced (host mx.example.org[198.51.100.25] said: 554 5.7.1 Service unavailable; "
    "Client host [203.0.113.9] blocked using zen.spamhaus.org (in reply to RCPT TO command))"
)


def test_a_postfix_log_line() -> None:
    found = extract(POSTFIX)
    assert found.kind == "postfix-log"
    assert (found.code, found.dsn, found.stage) == (554, "5.7.1", Stage.RCPT)
    assert found.recipient == "billing@example.org"
    assert found.remote == "mx.example.org"
    assert found.lines == [
        "554 5.7.1 Service unavailable; Client host [203.0.113.9] blocked using zen.spamhaus.org"
    ]


def test_a_postfix_multi_line_reply_joined_in_the_log_is_split_again() -> None:
    line = POSTFIX.replace(
        "554 5.7.1 Service unavailable; Client host [203.0.113.9] blocked using zen.spamhaus.org",
        "550-5.7.1 [203.0.113.9] Our system has detected that this message is 550-5.7.1 not "
        "RFC 5322 compliant. 550 5.7.1  RFC 5322 specifications. k5si1437052qkb.183 - gsmtp",
    ).replace("RCPT TO command", "end of DATA command")
    found = extract(line)
    assert found.stage is Stage.EOD
    assert found.lines == [
        "550-5.7.1 [203.0.113.9] Our system has detected that this message is",
        "550-5.7.1 not RFC 5322 compliant.",
        "550 5.7.1  RFC 5322 specifications. k5si1437052qkb.183 - gsmtp",
    ]
    assert explain(line).best.entry.family == "headers"


def test_a_postfix_line_without_a_remote_reply_is_no_reply() -> None:
    line = (
        "Jun 14 23:00:00 relay postfix/smtp[9300]: 4W0jSs6Ff9zEJkl: to=<q@example.org>, "
        "relay=none, delay=30, dsn=4.4.1, status=deferred (connect to "
        "mx.example.org[198.51.100.25]:25: Connection timed out)"
    )
    found = extract(line)
    assert (found.kind, found.code, found.dsn) == ("postfix-log", None, "4.4.1")
    # No receiver refused: the registry's X.4.1 "No answer from host" names the class
    # `network`, which is no strictmx family (it was "not recognised" before the signals).
    answer = explain(line)
    assert answer.class_name == "network" and answer.matches == []


EXIM = (
    "2024-06-14 10:00:01 1sI3Xy-000Abc-1x ** bob@example.org F=<alice@example.net> "
    "R=dnslookup T=remote_smtp H=mx.example.org [203.0.113.25]: SMTP error from remote mail "
    "server after RCPT TO:<bob@example.org>: 550-rejected because 198.51.100.9 is in a black "
    "list at zen.spamhaus.org\\n550 https://www.spamhaus.org/query/ip/198.51.100.9"
)


def test_an_exim_log_line() -> None:
    found = extract(EXIM)
    assert found.kind == "exim-log"
    assert (found.code, found.stage) == (550, Stage.RCPT)
    assert found.recipient == "bob@example.org"
    assert found.sender == "alice@example.net"
    assert found.remote == "mx.example.org"
    assert found.lines == [
        "550-rejected because 198.51.100.9 is in a black list at zen.spamhaus.org",
        "550 https://www.spamhaus.org/query/ip/198.51.100.9",
    ]
    assert explain(EXIM).best.entry.id == "exim-dnslist"


def test_an_exim_refusal_after_mail_from() -> None:
    line = (
        "2024-06-14 18:00:00 1sIBbb-000Cc3-9D ** jo@example.com R=dnslookup T=remote_smtp "
        "H=mx.example.com [192.0.2.30]: SMTP error from remote mail server after "
        "MAIL FROM:<alerts@monitoring.local> SIZE=2048: 550 Domain not found"
    )
    found = extract(line)
    assert (found.stage, found.sender, found.text) == (
        Stage.MAIL,
        "alerts@monitoring.local",
        "Domain not found",
    )


@pytest.mark.parametrize(
    "text",
    [
        "550 Sender verify failed",
        "smtp; 550 Sender verify failed",
        "Diagnostic-Code: smtp; 550 Sender verify failed",
        "  > 550 Sender verify failed",
    ],
)
def test_reply_prefixes(text: str) -> None:
    found = extract(text)
    assert (found.code, found.text) == (550, "Sender verify failed")


def test_a_multi_line_reply_wrapped_by_a_mail_client() -> None:
    text = (
        "550-5.7.25 [203.0.113.9] The IP address sending this message does not have a\n"
        "550-5.7.25 PTR record setup, or the corresponding forward DNS entry does not point\n"
        "to the sending IP. As a policy, Gmail does not accept messages\n"
        "550 5.7.25 from IPs with missing PTR records."
    )
    found = extract(text)
    assert found.kind == "reply" and len(found.lines) == 3
    assert found.lines[1].endswith(
        "does not point to the sending IP. As a policy, Gmail does not accept messages"
    )
    # Gmail's PTR refusal: the catalogue holds it with and without the `- gsmtp` tail, and
    # this reply (its tail cut off by the client) is either; the check is one.
    best = explain(text).best.entry
    assert (best.policy, best.outcome, best.receiver) == ("reverse_dns", "NO_PTR", "Gmail")


def test_prose_around_a_reply() -> None:
    text = "Server returned '554 5.7.1 <bob@example.org>: Sender address rejected: Access denied'"
    found = extract(text)
    assert (found.kind, found.code, found.dsn) == ("text", 554, "5.7.1")
    assert explain(text).best.entry.family == "sender_blocklist"


# -- normalising ------------------------------------------------------------------------


def test_identifiers_and_session_tags_do_not_change_the_words() -> None:
    one = tokens(
        "[203.0.113.9] Our system has detected that this message is not RFC 5322 compliant. "
        "a640c23a62f3a-a6f0bbf1c2dsi123456766b.98 - gsmtp"
    )
    two = tokens(
        "[2001:db8::7] Our system has detected that this message is\nnot RFC 5322 "
        "compliant. k5si1437052qkb.183 - gsmtp"
    )
    assert one == two
    assert "rfc5322" in one and "gsmtp" not in one


def test_hosts_urls_and_addresses_become_classes() -> None:
    words = tokens("<bob@example.org> see https://x.example.net/a?b mx.example.org mail.local")
    assert words.count("xaddr") == 1 and words.count("xurl") == 1 and words.count("xhost") == 2
    assert tokens("RESOLVER.ADR.RecipNotFound") == ["resolver", "adr", "recipnotfound"]
    assert "xnum" in tokens("rejected 58213") and "xid" in tokens("ref 4W0T9k2p4Jz2Abc")


def test_a_block_list_named_in_a_host_counts_but_a_provider_does_not() -> None:
    labels = EXPLAINER.matcher.labels
    assert "@spamhaus" in tokens("blocked using zen.spamhaus.org", labels)
    assert not [w for w in tokens("see https://support.google.com/mail", labels) if "@" in w]


def test_the_stage_counts() -> None:
    at_data = "550 5.7.1 Sender address rejected: Blocked (in reply to end of DATA command)"
    plain = "550 5.7.1 Sender address rejected: Blocked"
    assert explain(at_data).best.confidence < explain(plain).best.confidence


def test_an_enhanced_status_code_no_check_uses_counts_against_every_match() -> None:
    assert explain("550 5.1.1 Sender verify failed").best is None or (
        explain("550 5.1.1 Sender verify failed").best.confidence
        < explain("550 5.1.7 Sender verify failed").best.confidence
    )


def test_a_text_shared_by_two_checks_ranks_its_owner_first_and_lists_the_other() -> None:
    found = explain(
        "550 5.7.1 Service unavailable; Client host [198.51.100.23] blocked using x.example"
    )
    assert [m.entry.outcome for m in found.matches[:2]] == ["DNSBL_LISTED", "POLICY_BLOCK_LISTED"]


# -- output -----------------------------------------------------------------------------


def test_json_shape() -> None:
    data = explain(POSTFIX).to_json("bounce.txt")
    assert list(data)[:4] == ["input_kind", "code", "dsn", "stage"]
    assert (data["input_kind"], data["code"], data["dsn"], data["stage"]) == (
        "postfix-log",
        554,
        "5.7.1",
        "rcpt",
    )
    match = data["matches"][0]
    required = ["family", "policy", "outcome", "confidence", "cause", "fix", "rfc_allows_refusal"]
    assert list(match)[: len(required)] == required
    assert match["family"] == "dnsbl" and match["outcome"] == "DNSBL_LISTED"
    assert 0.0 <= match["confidence"] <= 1.0
    assert match["rfc_allows_refusal"] is True
    assert match["reproduce"] == "strictmx reproduce bounce.txt -o reproduce-postfix-rbl.yaml"
    json.dumps(data)


def test_text_output_names_cause_fix_rfc_and_the_reproduce_command() -> None:
    out = explain("550 HELO/EHLO greeting is not RFC2821 compliant").render("'550 HELO ...'")
    assert "best match: helo_dns HELO_NOT_CONFIRMED" in out
    assert "cause:" in out and "fix:" in out
    assert "RFC 5321 does NOT allow this refusal" in out
    assert "reproduce: strictmx reproduce" in out


# -- unusable input ----------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"   \n\t\n"])
def test_empty_input(data: bytes) -> None:
    with pytest.raises(ExplainError, match="empty input"):
        decode(data)


@pytest.mark.parametrize(
    "data",
    [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", bytes(range(1, 32)) * 40],
    ids=["nul", "controls"],
)
def test_binary_input(data: bytes) -> None:
    with pytest.raises(ExplainError, match="binary input"):
        decode(data)


def test_huge_input() -> None:
    with pytest.raises(ExplainError, match="input too large"):
        decode(b"550 blocked\n" * (MAX_INPUT // 10))


def test_a_very_long_reply_is_cut_not_refused() -> None:
    found = explain("550 blocked " + "x" * 200_000)
    assert len(found.input.text) <= 4096


def test_latin1_input_is_read() -> None:
    assert decode("550 Grüße: blocked".encode("latin-1")) == "550 Grüße: blocked"


# -- the command line --------------------------------------------------------------------


def test_cli_explain_text_json_and_exit_codes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli.main(["explain", "550 Too many RSETs"]) == 0
    assert "session_limits TOO_MANY_RSETS" in capsys.readouterr().out
    assert cli.main(["explain", "--format", "json", "554 5.0.0 Transaction failed"]) == 1
    assert json.loads(capsys.readouterr().out)["recognised"] is False
    assert cli.main(["explain", "--format", "json", "552 5.2.2 Mailbox full"]) == 0
    assert json.loads(capsys.readouterr().out)["class"] == "mailbox_full"
    bounce = tmp_path / "bounce.eml"
    bounce.write_text(DSN)
    assert cli.main(["explain", str(bounce), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["input_kind"] == "dsn"
    assert data["matches"][0]["reproduce"].startswith(f"strictmx reproduce {bounce}")
    assert cli.main(["explain", str(tmp_path / "missing.eml")]) == 2
    assert "no such file" in capsys.readouterr().err
    binary = tmp_path / "x.bin"
    binary.write_bytes(b"\x00\x01\x02")
    assert cli.main(["explain", str(binary)]) == 2
    assert "binary input" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", _Stdin(POSTFIX.encode()))
    assert cli.main(["explain", "-"]) == 0
    assert "reproduce: strictmx reproduce -" in capsys.readouterr().out


class _Stdin:
    def __init__(self, data: bytes) -> None:
        import io

        self.buffer = io.BytesIO(data)

    def isatty(self) -> bool:
        return False


# -- the log parsers' edges (they read in linear time; tests/hostile/test_explain.py) ----


def test_postfix_detail_runs_to_the_last_parenthesis_and_the_host_to_its_address() -> None:
    line = (
        "Jun 14 mta postfix/smtp[1]: to=<b@example.org>, status=bounced (host "
        "mx.example.org[b][198.51.100.25] said: 550 5.7.1 Blocked (see https://x.example) "
        "(in reply to RCPT TO command))  "
    )
    found = extract(line)
    assert (found.kind, found.stage, found.recipient) == (
        "postfix-log",
        Stage.RCPT,
        "b@example.org",
    )
    assert found.remote == "mx.example.org[b]"  # the shortest name followed by [IP] said:
    assert found.text == "Blocked (see https://x.example)"
    unclosed = line.rstrip()[:-1] + " and more"
    assert extract(unclosed).kind != "postfix-log"


def test_exim_pipelined_command_and_host_prefix() -> None:
    line = (
        "2024-06-14 1sI ** b@example.org H=mx.example.org [192.0.2.30]: SMTP error from remote "
        "mail server after pipelined RCPT TO:<b@example.org> SIZE=1: host mx.example.org "
        "[192.0.2.30]: 550 Sender verify failed"
    )
    found = extract(line)
    assert (found.kind, found.stage, found.recipient) == ("exim-log", Stage.RCPT, "b@example.org")
    assert found.lines == ["550 Sender verify failed"]
    unclosed = "SMTP error from remote mailer after MAIL FROM:<a@example.net: 550 Domain not found"
    found = extract(unclosed)  # no `>`: the command is the capital words before the colon
    assert (found.kind, found.stage, found.text) == ("exim-log", Stage.MAIL, "Domain not found")


def test_in_reply_to_in_any_case_and_wrapped_lines_joined() -> None:
    found = extract("550 5.7.1 Sender address rejected: Blocked (In Reply To end of DATA command)")
    assert found.stage is Stage.EOD
    assert extract("550 5.7.1 Blocked (in reply to 42 command)").stage is None
    found = extract("550 x\n  wrapped\n\tand again\n550 y")
    assert found.lines == ["550-x wrapped and again", "550 y"]
