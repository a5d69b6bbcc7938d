"""`strictmx run` and `strictmx check` as a CI job runs them: exit codes, the table, and the
JUnit and JSON reports read back with real parsers."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from strictmx.receiver import cli, runner
from strictmx.receiver import scenario as scenarios
from strictmx.receiver.fixes import fix_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
COMMAND = [sys.executable, "-m", "strictmx.receiver.cli"]

# delay_reject off: each refusal is sent in reply to the command whose stage decided it.
SCENARIO = """\
name: ci-strict
description: reverse DNS, a block list, HELO syntax and headers, refused where they happen
receiver:
  hostname: mx.strictmx.test
  delay_reject: false
policies:
  connect:
    - policy: reverse_dns
      require: fcrdns
    - policy: dnsbl
      zones:
        - zone: zen.example
  helo:
    - policy: helo_syntax
      mode: rfc1035
      require_fqdn: true
  eod:
    - policy: headers
world:
  dns:
    mode: hermetic
    records:
      example.net: {MX: "10 mail.example.net."}
      mail.example.net: {A: [203.0.113.10, 198.51.100.7, 198.51.100.9]}
      9.100.51.198.zen.example: {A: 127.0.0.2}
    ptr:
      203.0.113.10: mail.example.net
      198.51.100.9: mail.example.net
  clients:
    127.0.0.10: {address: 203.0.113.10}
  clock: {fixed: "2026-11-27T12:00:00Z"}
"""

CASES = """\
expect:
  - name: a well-configured sender is accepted
    client: 127.0.0.10
    result: accepted
  - name: an address with the PTR the case gives is accepted
    address: 198.51.100.7
    ptr: mail.example.net
    result: accepted
  - name: the same address without a PTR is refused at connect
    address: 198.51.100.7
    result:
      refused:
        policy: reverse_dns
        outcome: NO_PTR
        stage: connect
        at: connect
        code: 450
        reply: "450 4.7.1 Client host rejected: cannot find your reverse hostname, [198.51.100.7]"
  - name: a listed address is refused at connect
    address: 198.51.100.9
    result:
      refused: {policy: dnsbl, outcome: DNSBL_LISTED, at: connect, code: 554}
  - name: a message file with a bad Date is refused at end of data
    client: 127.0.0.10
    message_file: mail/bad-date.eml
    result:
      refused: {policy: headers, outcome: DATE_INVALID, at: eod, code: 550}
"""

WRONG = """\
  - name: a short HELO name expected to pass (it does not)
    client: 127.0.0.10
    helo: localhost
    result: accepted
  - name: a refusal expected with the wrong code
    address: 198.51.100.9
    result:
      refused: {policy: dnsbl, at: connect, code: 550}
"""

GOOD_MESSAGE = (
    "From: Alice <alice@example.net>\n"
    "To: Bob <bob@example.org>\n"
    "Subject: hello\n"
    "Date: Fri, 27 Nov 2026 10:00:00 +0000\n"
    "Message-ID: <1@example.net>\n"
    "\n"
    "Hi Bob.\n"
)
BAD_DATE = GOOD_MESSAGE.replace("Fri, 27 Nov 2026 10:00:00 +0000", "yesterday at noon")


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "good.eml").write_text(GOOD_MESSAGE)
    (tmp_path / "mail" / "bad-date.eml").write_text(BAD_DATE)
    (tmp_path / "ci.yaml").write_text(SCENARIO + CASES)
    (tmp_path / "wrong.yaml").write_text(SCENARIO + CASES + WRONG)
    (tmp_path / "plain.yaml").write_text(SCENARIO)
    return tmp_path


def strictmx(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- strictmx run ------------------------------------------------------------------------


def test_run_passes_and_reports_every_case(files: Path) -> None:
    done = strictmx(files, "run", "ci.yaml", "--junit", "out/run.xml", "--json", "out/run.json")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["CASE", "EXPECTED", "OBSERVED"]
    rows = [line for line in lines if line.startswith(("PASS", "FAIL"))]
    assert len(rows) == 5 and all(row.startswith("PASS") for row in rows)
    assert "450 at connect by reverse_dns/NO_PTR" in rows[2]
    assert lines[-1] == "5 passed, 0 failed"

    root = ET.parse(files / "out" / "run.xml").getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert (suite.get("name"), suite.get("tests"), suite.get("failures")) == ("ci-strict", "5", "0")
    cases = suite.findall("testcase")
    assert cases[0].get("name") == "a well-configured sender is accepted"
    assert all(c.get("classname") == "strictmx.ci-strict" for c in cases)
    assert not suite.findall(".//failure") and not suite.findall(".//error")

    report = json.loads((files / "out" / "run.json").read_text())
    assert (report["scenario"], report["passed"], report["failed"]) == ("ci-strict", 5, 0)
    listed = report["cases"][3]
    assert listed["expected"] == {
        "result": "refused",
        "policy": "dnsbl",
        "outcome": "DNSBL_LISTED",
        "at": "connect",
        "code": 554,
    }
    assert listed["observed"]["policy"] == "dnsbl"
    assert listed["observed"]["reply"] == [
        "554 5.7.1 Service unavailable; Client host [198.51.100.9] blocked using zen.example"
    ]
    assert listed["session"]


def test_run_fails_with_a_readable_table_and_junit_failures(files: Path) -> None:
    done = strictmx(files, "run", "wrong.yaml", "--junit", "run.xml", "--json", "run.json")
    assert done.returncode == 1, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert [row[:4] for row in rows] == ["PASS"] * 5 + ["FAIL"] * 2
    assert "504 at helo by helo_syntax/HELO_NOT_FQDN" in rows[5]
    assert (
        "failed: a refusal expected with the wrong code\n  code 554, expected 550\n" in done.stdout
    )
    assert "  code 554, expected 550" in done.stdout
    assert done.stdout.splitlines()[-1] == "5 passed, 2 failed"

    suite = ET.parse(files / "run.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("7", "2", "0")
    failed = {c.get("name"): c for c in suite.iter("testcase") if c.find("failure") is not None}
    assert set(failed) == {
        "a short HELO name expected to pass (it does not)",
        "a refusal expected with the wrong code",
    }
    helo = failed["a short HELO name expected to pass (it does not)"]
    failure = helo.find("failure")
    assert failure is not None
    assert failure.get("message", "").startswith("expected accepted, was refused at helo: 504")
    assert "observed: 504 at helo by helo_syntax/HELO_NOT_FQDN" in (failure.text or "")
    out = helo.findtext("system-out") or ""
    assert "C: ehlo localhost" in out
    assert "S: 504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname" in out
    code = failed["a refusal expected with the wrong code"].find("failure")
    assert code is not None and code.get("message") == "code 554, expected 550"

    report = json.loads((files / "run.json").read_text())
    assert (report["passed"], report["failed"]) == (5, 2)
    assert [c["passed"] for c in report["cases"]] == [True] * 5 + [False] * 2
    assert report["cases"][6]["problems"] == ["code 554, expected 550"]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("plain.yaml", None, "has no expect: cases to play"),
        ("broken.yaml", "expect: [{name: x, result: maybe}]", "expect[0].result"),
        (
            "nofile.yaml",
            SCENARIO + "expect: [{name: gone, message_file: nowhere.eml, result: accepted}]",
            "cannot read message_file",
        ),
        (
            "both.yaml",
            SCENARIO + "expect: [{name: two, client: 127.0.0.10, address: 192.0.2.1, "
            "result: accepted}]",
            "give client (a loopback address world.clients maps) or address",
        ),
    ],
)
def test_run_bad_input_exits_2_with_one_message(
    files: Path, name: str, text: str | None, message: str
) -> None:
    if text is not None:
        (files / name).write_text(text)
    code, out, err = invoke("run", str(files / name), "--junit", str(files / "never.xml"))
    assert code == 2
    assert out == ""
    assert err.startswith("strictmx: ") and message in err
    assert not (files / "never.xml").exists()


def test_run_of_a_missing_file_exits_2(files: Path) -> None:
    done = strictmx(files, "run", "missing.yaml")
    assert done.returncode == 2
    assert (done.stdout, done.stderr) == ("", "strictmx: missing.yaml: no such scenario file\n")


def test_run_in_process_with_a_case_address_and_ptr(files: Path) -> None:
    scenario = scenarios.load(str(files / "ci.yaml"))
    checks = runner.run(scenario)
    assert [c.passed for c in checks] == [True] * 5, [c.problems for c in checks]
    with_ptr, without = checks[1], checks[2]
    for check in (with_ptr, without):
        assert check.session is not None
        assert check.session["client_address"] == "198.51.100.7"
        assert check.session["peer"].startswith("127.88.")
    assert with_ptr.session is not None and with_ptr.session["outcome"] == "accepted"
    assert without.sent is not None and without.sent["outcome"] == "NO_PTR"
    # The PTR of one case does not leak into the next: the world is the scenario's again.
    assert scenario.world.dns.ptr == {
        "203.0.113.10": ["mail.example.net"],
        "198.51.100.9": ["mail.example.net"],
    }


# -- strictmx check ----------------------------------------------------------------------


def invoke(*args: str) -> tuple[int, str, str]:
    """The command line in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(args))
    return code, out.getvalue(), err.getvalue()


def check(files: Path, *args: str, fmt: str = "json") -> tuple[int, Any]:
    scenario = str(files / "plain.yaml")
    code, out, err = invoke("check", "--scenario", scenario, "--format", fmt, *args)
    assert err == ""
    if fmt == "json":
        return code, json.loads(out)
    if fmt == "junit":
        return code, ET.fromstring(out)
    return code, out


def envelope(ip: str, helo: str = "mail.example.net") -> list[str]:
    return [
        "--client-ip",
        ip,
        "--helo",
        helo,
        "--mail-from",
        "alice@example.net",
        "--rcpt",
        "bob@example.org",
    ]


def test_check_clean_envelope_and_message_exits_0(files: Path) -> None:
    good = str(files / "mail" / "good.eml")
    code, report = check(files, *envelope("203.0.113.10"), good)
    assert code == 0
    assert report["clean"] is True and report["objections"] == []
    assert report["message"] == good
    code, text = check(files, *envelope("127.0.0.10"), good, fmt="text")
    assert code == 0
    assert "client 203.0.113.10 (from 127.0.0.10)" in text
    assert "no objection: a receiver running ci-strict accepts this." in text


def only(report: dict[str, Any]) -> dict[str, Any]:
    (objection,) = report["objections"]
    assert isinstance(objection, dict)
    return objection


def test_check_lists_a_bad_helo(files: Path) -> None:
    code, report = check(files, *envelope("203.0.113.10", helo="localhost"))
    assert code == 1
    o = only(report)
    assert (o["policy"], o["outcome"], o["stage"], o["replied_at"]) == (
        "helo_syntax",
        "HELO_NOT_FQDN",
        "helo",
        "helo",
    )
    assert o["reply"] == [
        "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"
    ]
    assert o["fix"] == fix_for("helo_syntax", "HELO_NOT_FQDN")
    assert "fully-qualified" in o["fix"]


def test_check_lists_a_missing_ptr(files: Path) -> None:
    code, report = check(files, *envelope("198.51.100.50"))
    assert code == 1
    o = only(report)
    assert (o["policy"], o["outcome"], o["code"]) == ("reverse_dns", "NO_PTR", 450)
    assert o["reply"] == [
        "450 4.7.1 Client host rejected: cannot find your reverse hostname, [198.51.100.50]"
    ]
    assert o["fix"] == fix_for("reverse_dns", "NO_PTR")
    assert "PTR" in o["fix"]


def test_check_lists_a_dnsbl_listing(files: Path) -> None:
    code, report = check(files, *envelope("198.51.100.9"))
    assert code == 1
    o = only(report)
    assert (o["policy"], o["outcome"], o["stage"]) == ("dnsbl", "DNSBL_LISTED", "connect")
    assert o["reply"] == [
        "554 5.7.1 Service unavailable; Client host [198.51.100.9] blocked using zen.example"
    ]
    assert "delisting" in o["fix"]


def test_check_lists_a_bad_date_in_the_message_file(files: Path) -> None:
    code, report = check(files, *envelope("203.0.113.10"), str(files / "mail" / "bad-date.eml"))
    assert code == 1
    o = only(report)
    assert (o["policy"], o["outcome"], o["stage"]) == ("headers", "DATE_INVALID", "eod")
    assert o["reply"] == ["550 5.6.0 The Date header is not an RFC 5322 date-time"]
    assert o["rfc_compliant"] is False
    assert "RFC 5322" in o["fix"]


def test_check_lists_every_objection_in_text_and_junit(files: Path) -> None:
    args = (*envelope("198.51.100.50", helo="localhost"), str(files / "mail" / "bad-date.eml"))
    code, text = check(files, *args, fmt="text")
    assert code == 1
    assert "3 objections:" in text
    assert "1. reverse_dns NO_PTR, decided at connect" in text
    assert "2. helo_syntax HELO_NOT_FQDN, decided at helo" in text
    assert "3. headers DATE_INVALID, decided at eod" in text
    assert "   fix:    " in text
    assert "   note:   RFC 5321 does not allow refusing mail for this reason" in text

    code, root = check(files, *args, fmt="junit")
    assert code == 1
    suite = root.find("testsuite")
    assert suite is not None
    names = [c.get("name") for c in suite.iter("testcase")]
    assert names == [
        "reverse_dns at connect",
        "dnsbl at connect",
        "helo_syntax at helo",
        "headers at eod",
    ]
    assert (suite.get("tests"), suite.get("failures")) == ("4", "3")
    failures = {c.get("name"): c.find("failure") for c in suite.iter("testcase")}
    assert failures["dnsbl at connect"] is None
    helo = failures["helo_syntax at helo"]
    assert helo is not None
    assert helo.get("message") == (
        "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"
    )
    assert f"fix: {fix_for('helo_syntax', 'HELO_NOT_FQDN')}" in (helo.text or "")


def test_check_under_delay_reject_says_when_the_reply_is_sent() -> None:
    code, out, _ = invoke(
        "check",
        "--scenario",
        "postfix-strict",
        *envelope("127.0.0.10", helo="localhost"),
        "--format",
        "json",
    )
    assert code == 1
    found = {(o["policy"], o["outcome"]): o for o in json.loads(out)["objections"]}
    fqdn = found[("helo_syntax", "HELO_NOT_FQDN")]
    assert (fqdn["stage"], fqdn["replied_at"], fqdn["code"]) == ("helo", "rcpt", 504)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([*envelope("203.0.113.10"), "gone.eml"], "cannot read gone.eml"),
        (["--scenario", "no-such-scenario", *envelope("203.0.113.10")], "no scenario named"),
    ],
)
def test_check_bad_input_exits_2_with_one_line(args: list[str], message: str) -> None:
    code, out, err = invoke("check", *args)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1 and message in err


def test_check_of_a_bad_address_exits_2(files: Path) -> None:
    done = strictmx(files, "check", "--scenario", "plain.yaml", *envelope("not-an-ip"))
    assert done.returncode == 2
    assert (done.stdout, done.stderr) == (
        "",
        "strictmx: --client-ip: not an IP address: 'not-an-ip'\n",
    )


def test_check_reads_the_message_from_stdin(files: Path) -> None:
    args = ["check", "--scenario", "plain.yaml", *envelope("203.0.113.10"), "--format", "json"]
    done = subprocess.run(
        [*COMMAND, *args, "-"],
        cwd=files,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        input=BAD_DATE,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["message"] == "<stdin>"
    assert only(report)["outcome"] == "DATE_INVALID"


# -- authentication: what a message file lacks, with the record to publish or the header
# to sign -------------------------------------------------------------------------------

#: Bulk mail (List-Id) from a domain whose DMARC record says p=reject, sent from an address
#: its SPF record does not list, unsigned: modern-strict's world (scenarios/modern-strict.yaml).
UNSIGNED_BULK = (
    b"From: Shop <news@bank.example>\r\nTo: bob@example.org\r\nSubject: offers\r\n"
    b"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <n1@bank.example>\r\n"
    b"List-Id: <offers.bank.example>\r\n\r\nHello.\r\n"
)


def _check_modern_strict(tmp_path: Path, *extra: str) -> dict[str, Any]:
    message = tmp_path / "offers.eml"
    message.write_bytes(UNSIGNED_BULK)
    code, out, err = invoke(
        "check", "--scenario", "modern-strict", "--format", "json",
        "--client-ip", "203.0.113.10", "--helo", "mail.example.net",
        "--mail-from", "news@bank.example", "--rcpt", "bob@example.org",
        *extra, str(message),
    )  # fmt: skip
    assert err == "" and code == 1
    report: dict[str, Any] = json.loads(out)
    return report


def test_check_lists_every_authentication_objection_with_its_fix(tmp_path: Path) -> None:
    report = _check_modern_strict(tmp_path)
    found = [(o["policy"], o["outcome"]) for o in report["objections"]]
    assert found == [
        ("tls_required", "TLS_REQUIRED"),
        ("spf", "SPF_FAIL"),
        ("dkim", "DKIM_NONE"),
        ("dmarc", "DMARC_REJECT"),
        ("bulk_sender", "SENDER_UNAUTHENTICATED"),
    ]
    for objection in report["objections"]:
        assert objection["fix"] == fix_for(objection["policy"], objection["outcome"])
    fixes = {o["outcome"]: o["fix"] for o in report["objections"]}
    assert "._domainkey." in fixes["DKIM_NONE"]  # which DNS record to publish
    # The bulk rules the message also breaks are named with the one that answers.
    (bulk,) = [o for o in report["objections"] if o["policy"] == "bulk_sender"]
    for rule in ("BULK_DKIM_NOT_PASSING", "BULK_NOT_ALIGNED", "BULK_UNSUBSCRIBE_MISSING"):
        assert rule in bulk["reason"]


def test_check_over_starttls_drops_the_tls_objection_only(tmp_path: Path) -> None:
    report = _check_modern_strict(tmp_path, "--tls", "TLSv1.3")
    assert report["tls"] == "TLSv1.3"
    found = [(o["policy"], o["outcome"]) for o in report["objections"]]
    assert ("tls_required", "TLS_REQUIRED") not in found
    assert ("dkim", "DKIM_NONE") in found
    (bulk,) = [o for o in report["objections"] if o["policy"] == "bulk_sender"]
    assert "BULK_NO_TLS" not in bulk["reason"]
    # TLS 1.2 is under modern-strict's floor of 1.3: the policy says so.
    old = _check_modern_strict(tmp_path, "--tls", "TLSv1.2")
    assert ("tls_required", "TLS_VERSION_TOO_OLD") in [
        (o["policy"], o["outcome"]) for o in old["objections"]
    ]
