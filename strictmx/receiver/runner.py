"""`strictmx run FILE`: play a scenario's `expect:` cases over real SMTP and report.

Each case is played against an in-process receiver on a free loopback port (see
`strictmx.receiver.expect`). The result is a table on stdout, optionally a JUnit XML file (one test
case per expectation, a failure element naming what differed and the session's
transcript) and a JSON file. Exit 0 when every case holds, 1 when one does not, 2 when the
scenario or a case cannot be used.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import expect, junit
from . import scenario as scenarios
from .expect import CaseError, Check, Refusal
from .scenario import Scenario, ScenarioError

EXIT_PASSED, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def add_parser(sub: Any) -> None:
    run = sub.add_parser(
        "run", help="play a scenario's expect: cases over SMTP; exit 1 when one does not hold"
    )
    run.add_argument("file", metavar="FILE", help="scenario YAML path (or bundled name)")
    run.add_argument("--junit", type=Path, metavar="PATH", help="write a JUnit XML report")
    run.add_argument("--json", type=Path, metavar="PATH", help="write a JSON report")


def main(args: argparse.Namespace) -> int:
    try:
        scenario = scenarios.load(args.file)
        if not scenario.expect:
            raise CaseError(f"{scenario.source} has no expect: cases to play")
        checks = expect.run(scenario)
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
