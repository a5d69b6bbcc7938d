"""`strictmx reproduce FILE --rcpt ADDRESS` on a bounce to several recipients reproduces
that recipient's refusal, and says so plainly when the bounce names no such recipient."""

from __future__ import annotations

from pathlib import Path

import pytest

from strictmx.receiver import cli
from strictmx.receiver.explain import Explainer
from strictmx.receiver.reproduce import ReproduceError, reproduce
from strictmx.receiver.verdict import Stage

EXPLAINER = Explainer()
BOUNCES = Path(__file__).resolve().parent.parent / "data" / "bounces"

RBL = "554 5.7.1 Service unavailable; Client host [203.0.113.9] blocked using zen.spamhaus.org"
RDNS = "450 4.7.1 Client host rejected: cannot find your reverse hostname, [203.0.113.77]"

#: A Postfix-style DSN: bob refused by a DNSBL, carol by reverse DNS, dave delivered.
THREE = f"""\
From: MAILER-DAEMON@out.example.net (Mail Delivery System)
To: alice@example.net
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain; charset=us-ascii

<bob@example.org>: host mx.example.org[198.51.100.25] said: {RBL} (in reply to RCPT TO
    command)

<carol@example.org>: host mx.example.org[198.51.100.25] said: {RDNS} (in reply to RCPT
    TO command)

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; out.example.net
X-Postfix-Sender: rfc822; alice@example.net

Final-Recipient: rfc822; bob@example.org
Action: failed
Status: 5.7.1
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; {RBL}

Final-Recipient: rfc822; carol@example.org
Action: delayed
Status: 4.7.1
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; {RDNS}

Final-Recipient: rfc822; dave@example.org
Action: relayed
Status: 2.0.0
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; 250 2.0.0 Ok: queued as 4W0Q7x1XYZ

--b1--
"""


def test_rcpt_picks_that_recipients_refusal() -> None:
    carol = reproduce(THREE, rcpt="carol@example.org", explainer=EXPLAINER)
    assert carol.entry.policy == "reverse_dns"
    assert carol.identity.rcpt == "carol@example.org"
    assert carol.identity.client_ip == "203.0.113.77"
    assert carol.expected[0].startswith("450 4.7.1")
    # Case and angle brackets do not matter in the address given.
    bob = reproduce(THREE, rcpt="<BOB@example.org>", explainer=EXPLAINER)
    assert bob.entry.policy == "dnsbl"
    assert bob.identity.client_ip == "203.0.113.9"


def test_the_control_without_rcpt_is_the_first_refused_recipient() -> None:
    first = reproduce(THREE, explainer=EXPLAINER)
    assert (first.entry.policy, first.identity.rcpt) == ("dnsbl", "bob@example.org")


def test_a_recipient_the_bounce_does_not_name_is_refused_with_those_it_names() -> None:
    with pytest.raises(ReproduceError) as caught:
        reproduce(THREE, rcpt="erin@example.org", explainer=EXPLAINER)
    message = str(caught.value)
    assert "erin@example.org" in message and "names no such recipient" in message
    for named in ("bob@example.org", "carol@example.org", "dave@example.org"):
        assert named in message


def test_a_delivered_recipient_has_nothing_to_reproduce() -> None:
    with pytest.raises(ReproduceError, match="nothing to reproduce, relayed"):
        reproduce(THREE, rcpt="dave@example.org", explainer=EXPLAINER)


def test_a_real_postfix_dsn_to_two_recipients_reproduces_the_second() -> None:
    text = (BOUNCES / "postfix-helo-two-recipients.eml").read_text(encoding="utf-8")
    carol = reproduce(text, rcpt="carol@strictmx.test", explainer=EXPLAINER)
    assert (carol.entry.policy, carol.entry.outcome) == ("helo_syntax", "HELO_NOT_FQDN")
    assert carol.identity.rcpt == "carol@strictmx.test"
    assert carol.at == Stage.RCPT.value


def test_a_reply_without_a_recipient_still_takes_rcpt_as_the_sessions() -> None:
    line = reproduce(RBL, rcpt="erin@example.org", explainer=EXPLAINER)
    assert line.identity.rcpt == "erin@example.org"


def test_the_command_line_names_the_missing_recipient(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bounce = tmp_path / "three.eml"
    bounce.write_text(THREE, encoding="utf-8")
    code = cli.main(["reproduce", str(bounce), "--rcpt", "erin@example.org", "-o", "-"])
    err = capsys.readouterr().err
    assert code == 2
    assert "names no such recipient; it names bob@example.org, carol@example.org" in err
    code = cli.main(["reproduce", str(bounce), "--rcpt", "carol@example.org", "-o", "-"])
    got = capsys.readouterr()
    assert code == 0
    assert "reverse_dns" in got.err and "carol@example.org" in got.out
