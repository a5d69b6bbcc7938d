"""`strictmx reproduce`: bounce -> scenario -> a real session refused with the same reply.

The round trip covers every catalogue entry: the entry's reply with sample values for its
placeholders stands for a customer's bounce; the reproduction is loaded as a scenario,
its expect case is played over SMTP (strictmx.receiver.runner.run), and the reply on the wire must
be the customer's, and the documented reply with its placeholders filled in.
"""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from strictmx.receiver import cli, runner
from strictmx.receiver import scenario as scenarios
from strictmx.receiver.catalogue import Entry
from strictmx.receiver.explain import Explainer
from strictmx.receiver.registry import bundled
from strictmx.receiver.reproduce import LOOPBACK_SOURCE, ReproduceError, reproduce
from strictmx.receiver.server import Receiver, ReceiverThread, ServerOptions
from tests.reply_samples import SAMPLES
from tests.unit.test_catalogue import seed_replies

from .conftest import Factory

pytestmark = pytest.mark.e2e

CATALOGUE = bundled()
EXPLAINER = Explainer(CATALOGUE)
SWAKS = shutil.which("swaks")


def customer_bounce(entry: Entry) -> list[str]:
    """The entry's reply as a customer would see it: placeholders filled, as wire lines."""
    reply = entry.template.format(SAMPLES)
    return reply.wire_lines(enhanced=reply.status is not None)


# The catalogue's and the seeds' own placeholders match whatever the reproduction filled in.
_PLACEHOLDER = re.compile(
    r"\\\{\w+\\\}|%s|\\\[IPaddress\\\]|NNNNN|someURLofaRBL|\\\(some\\ web\\ page\\ link\\\)"
    r"|\\\[number\\\]|kx+\\\.183"
)


def documented_pattern(entry: Entry) -> re.Pattern[str]:
    escaped = re.escape("\n".join(entry.documented))
    return re.compile(_PLACEHOLDER.sub(lambda _: ".+?", escaped))


def play_raw(scenario: scenarios.Scenario, raw: list[bytes]) -> list[str]:
    """Send `raw` lines (smtplib cannot) from the reproduction's loopback source."""
    receiver = Receiver(scenario, ServerOptions(host="127.0.0.1", port=0, db=":memory:"))
    with ReceiverThread(receiver) as running:
        sock = socket.create_connection(("127.0.0.1", running.port), 10, (LOOPBACK_SOURCE, 0))
        with sock, sock.makefile("rb") as replies:
            lines = _reply(replies)
            for data in raw:
                sock.sendall(data)
                lines = _reply(replies)
        return lines


def _reply(stream: Any) -> list[str]:
    lines: list[str] = []
    while True:
        line = stream.readline().decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            return lines
        lines.append(line)
        if len(line) < 4 or line[3] == " ":
            return lines


def played(reproduction: Any) -> list[str]:
    scenario = scenarios.from_dict(reproduction.scenario, source="<reproduction>")
    if reproduction.raw is not None:
        return play_raw(scenario, reproduction.raw)
    checks = runner.run(scenario)
    problems = [f"{c.case.name}: {'; '.join(c.problems)}" for c in checks if not c.passed]
    assert not problems, "\n".join(problems)
    lines: list[str] = checks[-1].observed.lines
    return lines


@pytest.mark.parametrize("entry", CATALOGUE.entries, ids=lambda e: e.id)
def test_every_catalogue_entry_round_trips(entry: Entry) -> None:
    bounce = customer_bounce(entry)
    reproduction = reproduce("\n".join(bounce), entry_id=entry.id, explainer=EXPLAINER)
    case = reproduction.scenario["expect"][-1] if reproduction.scenario["expect"] else None
    if case is not None:  # the case checks the policy and outcome in the journal, too
        assert case["result"]["refused"]["policy"] == entry.policy
        assert case["result"]["refused"]["outcome"] == entry.outcome
    wire = played(reproduction)
    assert wire == bounce == reproduction.expected
    assert documented_pattern(entry).fullmatch("\n".join(wire))


@pytest.mark.parametrize("seed", seed_replies(), ids=lambda s: s["id"])
def test_every_documented_reply_reproduces_as_written(seed: dict[str, Any]) -> None:
    text = "\n".join(seed["reply"]) if isinstance(seed["reply"], list) else seed["reply"]
    reproduction = reproduce(text, explainer=EXPLAINER)
    assert reproduction.entry.family == seed["family"]
    assert played(reproduction) == text.splitlines()


# -- the customer's identifiers ---------------------------------------------------------

POSTFIX_RBL = (
    "Jun 14 15:20:41 mx-out postfix/smtp[4410]: 4W0XyZ5Lq9z5Jkl: to=<sales@example.net>, "
    "relay=mx.example.net[192.0.2.25]:25, delay=0.8, dsn=5.7.1, status=bounced (host "
    "mx.example.net[192.0.2.25] said: 554 5.7.1 Service unavailable; Client host "
    "[198.51.100.23] blocked using bl.spamcop.net; Blocked - see "
    "https://www.spamcop.net/bl.shtml?198.51.100.23 (in reply to RCPT TO command))"
)


def test_a_dnsbl_refusal_keeps_the_address_the_zone_and_its_txt() -> None:
    reproduction = reproduce(POSTFIX_RBL, explainer=EXPLAINER)
    data = reproduction.scenario
    assert data["world"]["clients"] == {LOOPBACK_SOURCE: {"address": "198.51.100.23"}}
    listing = data["world"]["dns"]["records"]["23.100.51.198.bl.spamcop.net"]
    assert listing == {
        "A": "127.0.0.2",
        "TXT": "Blocked - see https://www.spamcop.net/bl.shtml?198.51.100.23",
    }
    policy = data["policies"]["connect"][0]
    assert policy["zones"] == [{"zone": "bl.spamcop.net"}]
    assert policy["replies"]["DNSBL_LISTED"] == (
        "554 5.7.1 Service unavailable; Client host [{ip}] blocked using {zone}; {txt}"
    )
    # The log says RCPT: the client check is decided at connect and given at RCPT.
    assert data["receiver"]["delay_reject"] is True
    case = data["expect"][-1]
    assert case["rcpt"] == ["sales@example.net"] and case["result"]["refused"]["at"] == "rcpt"
    assert played(reproduction) == [
        "554 5.7.1 Service unavailable; Client host [198.51.100.23] blocked using "
        "bl.spamcop.net; Blocked - see https://www.spamcop.net/bl.shtml?198.51.100.23"
    ]


def test_the_verb_inside_helo_slash_ehlo_stays_text() -> None:
    # "HELO/EHLO" names both verbs: it is no trace of the one the client sent, so an MTA
    # that retries with HELO after a refused EHLO still reads "HELO/EHLO", not "HELO/HELO".
    reproduction = reproduce("550 Illegal HELO/EHLO greeting", explainer=EXPLAINER)
    (policy,) = reproduction.scenario["policies"]["helo"]
    assert "550 Illegal HELO/EHLO greeting" in policy["replies"].values()
    # Control: a verb standing alone is the client's, and becomes its placeholder.
    alone = reproduce("501 Syntactically invalid EHLO argument(s)", explainer=EXPLAINER)
    (policy,) = alone.scenario["policies"]["helo"]
    assert "501 Syntactically invalid {verb} argument(s)" in policy["replies"].values()


def test_an_ipv6_client_is_listed_under_its_nibbles() -> None:
    text = "554 5.7.1 Service unavailable; Client host [2001:db8:5::52] blocked using zen.x.example"
    data = reproduce(text, explainer=EXPLAINER).scenario
    (name,) = data["world"]["dns"]["records"]
    assert name.endswith(".5.0.0.0.8.b.d.0.1.0.0.2.zen.x.example")
    assert len(name.removesuffix(".zen.x.example").split(".")) == 32


def test_a_reply_given_after_the_data_is_reproduced_there() -> None:
    line = (
        "Jun 14 13:01:55 mta postfix/smtp[9001]: 4W0TbQ0r1Xz3Def: to=<user@gmail.com>, "
        "relay=gmail-smtp-in.l.google.com[142.250.102.26]:25, dsn=5.7.25, status=bounced (host "
        "gmail-smtp-in.l.google.com[142.250.102.26] said: 550-5.7.25 [203.0.113.9] The IP "
        "address sending this message does not have a PTR record setup, or the "
        "550-5.7.25 corresponding forward DNS entry does not point to the sending IP. As a "
        "550 5.7.25 policy, Gmail does not accept messages from IPs with missing PTR records. "
        "(in reply to end of DATA command))"
    )
    reproduction = reproduce(line, explainer=EXPLAINER)
    assert (reproduction.entry.policy, reproduction.entry.outcome) == ("reverse_dns", "NO_PTR")
    assert list(reproduction.scenario["policies"]) == ["eod"]
    assert reproduction.at == "eod"
    assert "203.0.113.9" not in str(reproduction.scenario["world"]["dns"])  # no PTR for it
    assert played(reproduction)[0].startswith("550-5.7.25 [203.0.113.9] The IP address")


def test_a_date_in_the_future_sets_the_receivers_clock() -> None:
    reproduction = reproduce("550 Senders clock is broken - fix and resend", explainer=EXPLAINER)
    data = reproduction.scenario
    assert data["world"]["clock"] == {"fixed": "2024-06-14T12:00:00+00:00"}
    assert "Date: Thu, 20 Jun 2024" in data["expect"][-1]["message"]
    assert played(reproduction) == ["550 Senders clock is broken - fix and resend"]


def test_the_helo_and_sender_in_postfix_replies_become_the_sessions() -> None:
    helo = reproduce(
        "504 5.5.2 <SERVER01>: Helo command rejected: need fully-qualified hostname",
        explainer=EXPLAINER,
    )
    assert helo.scenario["expect"][-1]["helo"] == "SERVER01"
    assert helo.scenario["policies"]["helo"][0]["replies"]["HELO_NOT_FQDN"] == (
        "504 5.5.2 <{helo}>: Helo command rejected: need fully-qualified hostname"
    )
    sender = reproduce(
        "450 4.1.8 <noreply@shop.example.invalid>: Sender address rejected: Domain not found",
        explainer=EXPLAINER,
    )
    assert sender.entry.policy == "sender_domain"
    assert sender.scenario["expect"][-1]["mail_from"] == "noreply@shop.example.invalid"
    assert played(sender) == [
        "450 4.1.8 <noreply@shop.example.invalid>: Sender address rejected: Domain not found"
    ]


def test_the_command_line_identity_wins() -> None:
    reproduction = reproduce(
        "550 fix reverse DNS",
        client_ip="2001:db8::7",
        helo="out.example.com",
        mail_from="news@example.com",
        rcpt="carol@example.org",
        explainer=EXPLAINER,
    )
    data = reproduction.scenario
    assert data["world"]["clients"][LOOPBACK_SOURCE] == {"address": "2001:db8::7"}
    case = data["expect"][-1]
    assert (case["helo"], case["mail_from"], case["rcpt"]) == (
        "out.example.com",
        "news@example.com",
        ["carol@example.org"],
    )
    assert played(reproduction) == ["550 fix reverse DNS"]


def test_a_pinned_entry_overrides_the_match() -> None:
    text = "550 Administrative prohibition"
    for entry_id in ("exim-helo-prohibition", "exim-reverse-lookup", "exim-dnsbl-prohibition"):
        reproduction = reproduce(text, entry_id=entry_id, explainer=EXPLAINER)
        assert reproduction.entry.id == entry_id
        assert played(reproduction) == [text]


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("552 5.2.2 Mailbox full", {}, "not recognised"),
        ("250 2.0.0 Ok: queued", {"entry_id": "seed-10"}, "not a refusal"),
        ("550 fix reverse DNS", {"client_ip": "not-an-ip"}, "--client-ip: not an IP address"),
        ("550 fix reverse DNS", {"mail_from": "no at sign"}, "--mail-from: not an address"),
        ("550 fix reverse DNS", {"entry_id": "nope"}, "no catalogue entry 'nope'"),
        ("Sender verify failed", {}, "no reply code"),
    ],
)
def test_what_cannot_be_reproduced(text: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ReproduceError, match=message):
        reproduce(text, explainer=EXPLAINER, **options)


# -- the command line -------------------------------------------------------------------


def test_cli_writes_a_scenario_that_loads_and_prints_swaks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "repro.yaml"
    assert cli.main(["reproduce", POSTFIX_RBL, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}: dnsbl DNSBL_LISTED" in printed
    assert "swaks --server 127.0.0.1:2525 --local-interface 127.0.0.25" in printed
    assert "--xclient-addr 198.51.100.23" in printed
    text = out.read_text()
    assert text.startswith("# Written by strictmx reproduce from: Jun 14 15:20:41")
    loaded = scenarios.load(str(out))
    assert [c.passed for c in runner.run(loaded)] == [True]


def test_cli_to_stdout_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["reproduce", "550 rejected because rdns", "-o", "-"]) == 0
    captured = capsys.readouterr()
    assert yaml.safe_load(captured.out)["name"] == "reproduce-seed-18"
    assert "swaks" in captured.err
    assert cli.main(["reproduce", "552 5.2.2 Mailbox full", "-o", "-"]) == 1
    assert "not recognised" in capsys.readouterr().err
    assert cli.main(["reproduce", "550 fix reverse DNS", "--client-ip", "x", "-o", "-"]) == 2
    assert cli.main(["reproduce", "", "-o", "-"]) == 2
    assert "empty input" in capsys.readouterr().err


# -- swaks shows it ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry_id",
    [
        "seed-10",
        "postfix-rbl",
        "seed-13",
        "seed-20",
        "seed-36",
        "seed-60",
        "seed-62",
        "postfix-bare-lf",
    ],
)
def test_the_printed_swaks_commands_show_the_refusal(serve: Factory, entry_id: str) -> None:
    assert SWAKS is not None, "swaks is not installed (Debian: swaks; scripts/test installs it)"
    entry = CATALOGUE.get(entry_id)
    bounce = customer_bounce(entry)
    reproduction = reproduce("\n".join(bounce), entry_id=entry_id, explainer=EXPLAINER)
    rx = serve(reproduction.scenario)
    commands = [c for c in reproduction.swaks_commands()[1:] if not c.startswith("#")]
    assert len(commands) == 2, "a loopback source and an XCLIENT identity"
    for command in commands:
        command = command.replace("127.0.0.1:2525", f"{rx.host}:{rx.port}") + " --timeout 10"
        done = subprocess.run(
            ["bash", "-c", command],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        refused = [line[4:] for line in done.stdout.splitlines() if line.startswith("<** ")]
        assert refused[: len(bounce)] == bounce, shlex.split(command)[0] + "\n" + done.stdout
