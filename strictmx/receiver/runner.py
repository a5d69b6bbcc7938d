"""`strictmx run FILE`: play a scenario's `expect:` cases over real SMTP and report.

Each case (the model is strictmx/receiver/expect.py) is played with Python's smtplib
against an in-process receiver on a free loopback port, and what the client saw is
compared with the expectation using both the wire and the journal. The result is a table
on stdout, optionally a JUnit XML file (one test case per expectation, a failure element
naming what differed and the session's transcript) and a JSON file. Exit 0 when every
case holds, 1 when one does not, 2 when the scenario or a case cannot be used.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import re
import smtplib
import socket
import ssl
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import junit
from . import scenario as scenarios
from .expect import Case, CaseError, Command, Refusal, load_message, message_bytes
from .scenario import Scenario, ScenarioError
from .server import Receiver, ReceiverThread, ServerOptions
from .tls import FLOORS, self_signed_context
from .world.clients import ClientSpec

# -- playing the cases ------------------------------------------------------------------

_VERB_STAGE: dict[str, Command] = {
    "HELO": "helo",
    "EHLO": "helo",
    "MAIL": "mail",
    "RCPT": "rcpt",
    "DATA": "data",
    "RSET": "rset",
    "NOOP": "noop",
    "VRFY": "vrfy",
}


@dataclass
class Observation:
    """What the client saw: accepted, or the first refusal with its wire lines."""

    accepted: bool
    at: Command | None = None
    code: int | None = None
    lines: list[str] = field(default_factory=list)
    error: str | None = None  # the session could not be played (connection refused, ...)

    def describe(self) -> str:
        if self.error:
            return f"error: {self.error}"
        if self.accepted:
            return "accepted"
        return f"refused at {self.at}: " + " | ".join(self.lines)


def _wire(code: int, text: bytes | str) -> list[str]:
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    parts = raw.split("\n") if raw else [""]
    lines = [f"{code}-{p}" for p in parts[:-1]]
    lines.append(f"{code} {parts[-1]}".rstrip() if parts[-1] == "" else f"{code} {parts[-1]}")
    return lines


def play(
    case: Case,
    host: str,
    port: int,
    now: datetime,
    timeout: float = 30.0,
    *,
    source: str | None = None,
    message: bytes | None = None,
) -> Observation:
    """Play one case over SMTP and report the first refusal (or acceptance).

    `source` overrides the case's loopback address; `message` is the message as
    `message_bytes` gives it (when None, a message file is read from the working directory).
    """
    source = source or case.client

    def refused(at: Command, code: int, text: bytes | str) -> Observation:
        return Observation(False, at, code, _wire(code, text))

    client = smtplib.SMTP(timeout=timeout)
    try:
        try:
            client.sock = socket.create_connection((host, port), timeout, (source, 0))
            client.file = None
            code, text = client.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            return Observation(False, error=f"cannot connect from {source}: {exc}")
        if code != 220:
            return refused("connect", code, text)
        if case.script is not None:
            return _play_script(client, case.script)
        code, text = client.ehlo(case.helo) if case.ehlo else client.helo(case.helo)
        if code != 250:
            return refused("helo", code, text)
        if case.starttls:
            code, text = client.docmd("STARTTLS")
            if code != 220:
                return Observation(False, error=f"STARTTLS refused: {code} {text!r}")
            try:
                # As smtplib's starttls(), which needs the host name the socket set here
                # was not connected by: a fresh handshake, then forget the EHLO before it.
                client.sock = _client_tls(case.starttls).wrap_socket(client.sock)
            except (ssl.SSLError, OSError) as exc:
                return Observation(False, error=f"the TLS handshake failed: {exc}")
            client.file = None
            client.ehlo_resp = None
            client.esmtp_features = {}
            client.does_esmtp = False
            code, text = client.ehlo(case.helo)
            if code != 250:
                return refused("helo", code, text)
        sender = case.mail_from
        code, text = client.mail(sender if sender else "<>")
        if code != 250:
            return refused("mail", code, text)
        for rcpt in case.rcpt:
            code, text = client.rcpt(rcpt)
            if code not in (250, 251):
                return refused("rcpt", code, text)
        code, text = client.docmd("DATA")
        if code != 354:
            return refused("data", code, text)
        if message is None:
            message = message_bytes(case, now, load_message(case, Path.cwd()))
        data = message
        data = re.sub(rb"(?m)^\.", b"..", data)  # dot-stuffing, RFC 5321 §4.5.2
        client.send(data + b".\r\n")
        code, text = client.getreply()
        if code != 250:
            return refused("eod", code, text)
        return Observation(True)
    except smtplib.SMTPServerDisconnected as exc:
        return Observation(False, error=f"the server closed the connection: {exc}")
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()


def _client_tls(starttls: bool | str) -> ssl.SSLContext:
    """A client context for the runner's own self-signed receiver, capped at `starttls`'s
    protocol when it names one (a sender stuck on TLS 1.2)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the runner's receiver, on loopback
    if isinstance(starttls, str):
        context.maximum_version = FLOORS[starttls]
    return context


def _play_script(client: smtplib.SMTP, script: list[str]) -> Observation:
    code, text, verb = 0, b"", ""
    for command in script:
        verb = command.split(" ", 1)[0].upper()
        code, text = client.docmd(command)
    at = _VERB_STAGE.get(verb, "unknown")
    if code < 400:
        return Observation(True)
    return Observation(False, at, code, _wire(code, text))


@dataclass
class Check:
    case: Case
    observed: Observation
    problems: list[str]
    #: The journal's verdict whose reply the refusal carried, if a policy sent one.
    sent: dict[str, Any] | None = None
    #: The session as journaled, with its transcript (None if none was recorded).
    session: dict[str, Any] | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.problems


def compare(case: Case, observed: Observation, sent: dict[str, Any] | None) -> Check:
    """Compare an observation (and the journal's sent verdict, if any) with the case."""
    problems: list[str] = []
    if observed.error:
        problems.append(observed.error)
    elif case.result == "accepted":
        if not observed.accepted:
            problems.append(f"expected accepted, was {observed.describe()}")
    else:
        want = case.result.refused
        if observed.accepted:
            problems.append("expected a refusal, the message was accepted")
        else:
            if want.at and want.at != observed.at:
                problems.append(f"refused at {observed.at}, expected at {want.at}")
            if want.code and want.code != observed.code:
                problems.append(f"code {observed.code}, expected {want.code}")
            wire = want.wire()
            if wire is not None and wire != observed.lines:
                problems.append(
                    "reply differs:\n  expected: "
                    + "\n            ".join(wire)
                    + "\n  received: "
                    + "\n            ".join(observed.lines)
                )
            for key in ("policy", "outcome", "stage"):
                expected = getattr(want, key)
                got = (sent or {}).get(key)
                if expected is not None and expected != got:
                    problems.append(f"{key} {got!r}, expected {expected!r}")
    return Check(case, observed, problems, sent)


#: Cases that give `address` connect from a loopback address of their own in this range.
CASE_SOURCES = ipaddress.ip_network("127.88.0.0/16")


def case_source(index: int) -> str:
    return str(CASE_SOURCES.network_address + index + 1)


def scenario_for(scenario: Scenario, case: Case, source: str) -> Scenario:
    """`scenario` with the case's client added to its world: `source` seen as the case's
    address, and the case's PTR names (hermetic and overlay worlds) for that address."""
    if case.address is None:
        return scenario
    world = scenario.world
    clients = {**world.clients, source: ClientSpec(address=case.address)}
    dns = world.dns
    if case.ptr is not None:
        dns = dns.model_copy(update={"ptr": {**dns.ptr, case.address: case.ptr}})
    world = world.model_copy(update={"clients": clients, "dns": dns})
    return dataclasses.replace(scenario, world=world)


def run(scenario: Scenario, base: Path | None = None) -> list[Check]:
    """Serve `scenario` in-process on a free loopback port and play each of its cases.

    Message files are read relative to `base` (default: the scenario file's directory)
    before anything is served; one that cannot be read raises CaseError.
    """
    if base is None:
        base = Path(scenario.source).parent
    loaded = [load_message(case, base) for case in scenario.expect]
    checks: list[Check] = []
    # STARTTLS is offered only when a case uses it: other cases see the scenario's EHLO.
    tls = self_signed_context(scenario.receiver.hostname) if _starts_tls(scenario) else None
    options = ServerOptions(host="127.0.0.1", port=0, db=":memory:", tls_context=tls)
    receiver = Receiver(scenario, options)
    seen: set[str] = set()
    with ReceiverThread(receiver) as running:
        for index, case in enumerate(scenario.expect):
            source = case_source(index) if case.address is not None else case.client
            wanted = scenario_for(scenario, case, source)
            if wanted is not receiver.scenario:
                running.call(_use(receiver, wanted))
            message = message_bytes(case, receiver.world.clock.now(), loaded[index])
            started = time.monotonic()
            observed = play(
                case,
                "127.0.0.1",
                running.port,
                receiver.world.clock.now(),
                source=source,
                message=message,
            )
            seconds = time.monotonic() - started
            running.call(receiver.settle())
            newest = running.call(receiver.journal.sessions(limit=1))
            session = None
            if newest and newest[0]["id"] not in seen:
                seen.add(newest[0]["id"])
                session = running.call(receiver.journal.session(newest[0]["id"]))
            verdicts = session["verdicts"] if session else []
            # The last: earlier commands of the case may have been refused at that stage
            # too (unknown users before the bad-recipient limit), each its own verdict.
            sent = next((v for v in reversed(verdicts) if v.get("replied_at") == observed.at), None)
            check = compare(case, observed, sent)
            check.session, check.seconds = session, seconds
            checks.append(check)
    return checks


def _starts_tls(scenario: Scenario) -> bool:
    return any(case.starttls for case in scenario.expect)


async def _use(receiver: Receiver, scenario: Scenario) -> None:
    receiver.use_scenario(scenario)  # on the receiver's loop: sessions read it there


# -- the command ------------------------------------------------------------------------

EXIT_PASSED, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "run", help="play a scenario's expect: cases over SMTP; exit 1 when one does not hold"
    )
    parser.add_argument("file", metavar="FILE", help="scenario YAML path (or bundled name)")
    parser.add_argument("--junit", type=Path, metavar="PATH", help="write a JUnit XML report")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write a JSON report")


def main(args: argparse.Namespace) -> int:
    try:
        scenario = scenarios.load(args.file)
        if not scenario.expect:
            raise CaseError(f"{scenario.source} has no expect: cases to play")
        checks = run(scenario)
    except (ScenarioError, CaseError) as exc:
        print(f"strictmx: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    sys.stdout.write(table(checks))
    sys.stdout.flush()
    try:
        if args.junit is not None:
            junit.write(args.junit, junit_report(scenario, checks))
        if args.json is not None:
            junit.write(args.json, json_report(scenario, checks).encode())
    except OSError as exc:
        print(f"strictmx: cannot write report: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_PASSED if all(c.passed for c in checks) else EXIT_FAILED


# -- descriptions ------------------------------------------------------------------------


def expected_text(check: Check) -> str:
    result = check.case.result
    if result == "accepted":
        return "accepted"
    return _refusal_text(result.refused)


def _refusal_text(want: Refusal) -> str:
    return _refused(
        want.code,
        want.at,
        want.policy or "",
        want.outcome or "",
        want.stage if want.stage != want.at else None,
    )


def observed_text(check: Check) -> str:
    seen, sent = check.observed, check.sent
    if seen.error:
        return f"error: {seen.error}"
    if seen.accepted:
        return "accepted"
    if sent is None:  # refused by the receiver itself (unknown recipient, ...), not a policy
        return _refused(seen.code, seen.at, "", "", None)
    decided = sent["stage"] if sent["stage"] != seen.at else None
    return _refused(seen.code, seen.at, sent["policy"], sent["outcome"], decided)


def _refused(
    code: int | None, at: str | None, policy: str, outcome: str, decided: str | None
) -> str:
    """`504 at rcpt by helo_syntax/HELO_NOT_FQDN (decided at helo)`, leaving out what is unknown."""
    parts = [str(code) if code else "refused"]
    if at:
        parts.append(f"at {at}")
    if policy or outcome:
        parts.append("by " + "/".join(p for p in (policy, outcome) if p))
    if decided:
        parts.append(f"(decided at {decided})")
    return " ".join(parts)


def transcript_text(check: Check) -> str:
    if check.session is None:
        return ""
    arrows = {"in": "C: ", "out": "S: ", "note": "-- "}
    return "\n".join(
        arrows.get(t["direction"], "   ") + t["line"] for t in check.session["transcript"]
    )


# -- reports -----------------------------------------------------------------------------


def table(checks: list[Check]) -> str:
    rows = [("", "CASE", "EXPECTED", "OBSERVED")]
    rows += [
        ("PASS" if c.passed else "FAIL", _cut(c.case.name), expected_text(c), observed_text(c))
        for c in checks
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in rows
    ]
    for c in checks:
        if not c.passed:
            lines.append("")
            lines.append(f"failed: {c.case.name}")
            lines.extend("  " + line for p in c.problems for line in p.splitlines())
    passed = sum(1 for c in checks if c.passed)
    lines += ["", f"{passed} passed, {len(checks) - passed} failed"]
    return "\n".join(lines) + "\n"


def _cut(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def junit_report(scenario: Scenario, checks: list[Check]) -> bytes:
    cases = []
    for c in checks:
        case = junit.TestCase(c.case.name, f"strictmx.{scenario.name}", c.seconds)
        details = "\n".join(
            [f"expected: {expected_text(c)}", f"observed: {observed_text(c)}", *c.problems]
        )
        if c.observed.error:
            case.error = (c.observed.error, details)
        elif not c.passed:
            case.failure = ("; ".join(p.splitlines()[0] for p in c.problems), details)
        if not c.passed:
            case.output = transcript_text(c)
        cases.append(case)
    return junit.document(scenario.name, cases, timestamp=datetime.now(UTC), file=scenario.source)


def json_report(scenario: Scenario, checks: list[Check]) -> str:
    passed = sum(1 for c in checks if c.passed)
    data = {
        "scenario": scenario.name,
        "source": scenario.source,
        "passed": passed,
        "failed": len(checks) - passed,
        "cases": [_case_json(c) for c in checks],
    }
    return json.dumps(data, indent=2) + "\n"


def _case_json(check: Check) -> dict[str, Any]:
    case, seen, sent = check.case, check.observed, check.sent
    result = case.result
    expected: dict[str, Any] = (
        {"result": "accepted"}
        if result == "accepted"
        else {"result": "refused", **result.refused.model_dump(exclude_none=True)}
    )
    observed: dict[str, Any] = {
        "result": "error" if seen.error else "accepted" if seen.accepted else "refused",
        "at": seen.at,
        "code": seen.code,
        "reply": seen.lines,
        "error": seen.error,
        "policy": sent["policy"] if sent else None,
        "outcome": sent["outcome"] if sent else None,
        "stage": sent["stage"] if sent else None,
    }
    return {
        "name": case.name,
        "seed": case.seed,
        "passed": check.passed,
        "problems": check.problems,
        "expected": expected,
        "observed": observed,
        "session": check.session["id"] if check.session else None,
        "seconds": round(check.seconds, 3),
    }
