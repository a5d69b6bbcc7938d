"""`strictmx check` without a process: the engine driven stage by stage, the fix table, the
expect-case fields that `strictmx run` adds, and the JUnit writer."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

import pytest

from strictmx.receiver import junit
from strictmx.receiver import scenario as scenarios
from strictmx.receiver.check import Envelope, evaluate
from strictmx.receiver.expect import as_sent
from strictmx.receiver.fixes import fix_for
from strictmx.receiver.registry import bundled, load_registry
from strictmx.receiver.scenario import ScenarioError

MESSAGE = as_sent(
    b"From: <alice@example.net>\n"
    b"To: <bob@example.org>\n"
    b"Subject: hi\n"
    b"Date: Fri, 27 Nov 2026 10:00:00 +0000\n"
    b"Message-ID: <1@example.net>\n"
    b"\n"
    b"hi\n"
)


def test_every_builtin_outcome_has_a_fix_from_the_catalogue() -> None:
    missing = [
        f"{name}/{outcome.id}"
        for name, cls in load_registry().items()
        for outcome in cls.outcomes
        if fix_for(name, outcome.id).startswith("See `strictmx policies`")
    ]
    assert not missing, f"the reply catalogue describes no fix for: {', '.join(missing)}"


def test_an_outcome_without_a_fix_points_to_its_documentation() -> None:
    assert fix_for("helo_syntax", "HELO_NOT_FQDN") == (
        bundled().outcomes[("helo_syntax", "HELO_NOT_FQDN")].fix
    )
    assert fix_for("vendor_policy", "ODD", "The odd thing.") == (
        "See `strictmx policies` (vendor_policy): The odd thing."
    )


async def test_every_policy_runs_and_each_objection_is_listed_once() -> None:
    # default lists helo_syntax at HELO and again at MAIL: one objection, as one is sent.
    report = await evaluate(
        scenarios.load("default"),
        Envelope("127.0.0.11", "localhost", "alice@example.net", ["bob@example.org"], MESSAGE),
    )
    assert report.client.address == "203.0.113.11"  # world.clients applies, as for serve
    assert [(o.verdict.policy, o.verdict.outcome) for o in report.objections] == [
        ("helo_syntax", "HELO_NOT_FQDN")
    ]
    objection = report.objections[0]
    assert objection.reply == ["550 Illegal HELO/EHLO greeting"]
    assert objection.verdict.warned, "evaluated in warn_only"
    assert objection.replied_at.value == "helo"  # default: delay_reject off
    assert [(stage.value, name) for stage, name in report.ran] == [
        ("connect", "session_limits"),
        ("helo", "session_limits"),
        ("helo", "helo_syntax"),
        ("mail", "helo_syntax"),
        ("rcpt", "session_limits"),
    ]


async def test_a_compliant_session_is_clean() -> None:
    report = await evaluate(
        scenarios.load("default"),
        Envelope("127.0.0.10", "mail.example.net", "alice@example.net", ["bob@example.org"]),
    )
    assert report.clean


async def test_without_a_message_end_of_data_policies_do_not_run() -> None:
    scenario = scenarios.load("headers-gmail")
    envelope = Envelope("203.0.113.10", "mail.example.net", "a@example.net", ["b@example.org"])
    assert (await evaluate(scenario, envelope)).ran == []
    envelope.message = as_sent(b"Subject: no Date, no From\n\nhi\n")
    report = await evaluate(scenario, envelope)
    assert [(s.value, name) for s, name in report.ran] == [("eod", "headers")]
    assert not report.clean


def case_scenario(case: dict[str, Any]) -> None:
    scenarios.from_dict(
        {"expect": [{"name": "c", "result": "accepted", **case}]}, source="cases.yaml"
    )


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ({"message": "x", "message_file": "m.eml"}, "give message or message_file, not both"),
        ({"ptr": "mail.example.net"}, "give the address too"),
        ({"client": "127.0.0.10", "address": "192.0.2.1"}, "not both"),
        ({"address": "192.0.2.300"}, "not an IP address"),
        ({"address": "192.0.2.1", "ptr": "bad..name"}, "not a domain name"),
    ],
)
def test_case_fields_are_validated_at_load(case: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match="expect\\[0\\]") as raised:
        case_scenario(case)
    assert message in str(raised.value)


def test_case_address_and_ptr_are_normalised() -> None:
    loaded = scenarios.from_dict(
        {
            "expect": [
                {
                    "name": "c",
                    "address": "2001:DB8::0:1",
                    "ptr": "Mail.Example.NET.",
                    "result": "accepted",
                }
            ]
        }
    )
    (case,) = loaded.expect
    assert (case.address, case.ptr) == ("2001:db8::1", ["mail.example.net"])


def test_junit_documents_parse_whatever_the_transcript_holds() -> None:
    case = junit.TestCase(
        "a case <with> markup & \x01control",
        "strictmx.x",
        1.5,
        failure=("550 <x>\x07", "details\x00"),
        output="C: EHLO \x1b[1m",
    )
    root = ET.fromstring(junit.document("x", [case], timestamp=datetime.now(UTC)))
    element = root.find("testsuite/testcase")
    assert element is not None
    assert element.get("name") == "a case <with> markup & ?control"
    failure = element.find("failure")
    assert failure is not None and failure.get("message") == "550 <x>?"
    assert element.findtext("system-out") == "C: EHLO ?[1m"


async def test_replied_at_honours_each_entrys_delay_reject() -> None:
    # The receiver delays (Postfix's default), but one entry refuses at once (as Exim's
    # built-in HELO syntax check): check reports the stage serve would really answer.
    def with_entry(delay: str) -> scenarios.Scenario:
        return scenarios.loads(
            "receiver: {delay_reject: true}\n"
            f"policies: {{helo: [{{policy: helo_syntax{delay}}}]}}\n"
        )

    envelope = Envelope("127.0.0.11", "localhost", "alice@example.net", ["bob@example.org"])
    at_once = await evaluate(with_entry(", delay_reject: false"), envelope)
    assert [(o.verdict.outcome, o.replied_at.value) for o in at_once.objections] == [
        ("HELO_NOT_FQDN", "helo")
    ]
    delayed = await evaluate(with_entry(""), envelope)  # the control: the receiver's setting
    assert [(o.verdict.outcome, o.replied_at.value) for o in delayed.objections] == [
        ("HELO_NOT_FQDN", "rcpt")
    ]
