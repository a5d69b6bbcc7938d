"""`python -m tests.differential`: the agreement table between strictmx's postfix-strict and
a live reference Postfix over every session in sessions.yaml, then each difference.

    python -m tests.differential                   # table and differences
    python -m tests.differential --record FILE     # also Postfix's replies, human-readable
    python -m tests.differential --only NAME ...   # just these sessions
    python -m tests.differential --differences-table   # the list for docs/dialects.md

Exit status 0 when every reply agrees in full text or is a documented difference.
Postfix starts as root (as in the end-to-end tests).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import reference, suite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.differential")
    parser.add_argument("--record", type=Path, help="write Postfix's replies to this file")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="play only these sessions")
    parser.add_argument(
        "--differences-table",
        action="store_true",
        help="print differences.yaml as docs/dialects.md lists it, and stop",
    )
    args = parser.parse_args(argv)
    if args.differences_table:
        print(suite.differences_table(suite.load_differences(suite.load_sessions())))
        return 0

    sessions = suite.load_sessions()
    if args.only:
        unknown = set(args.only) - {s.name for s in sessions}
        if unknown:
            parser.error(f"no such session: {', '.join(sorted(unknown))}")
        sessions = [s for s in sessions if s.name in args.only]
    differences = suite.load_differences(suite.load_sessions())
    version = reference.version()

    started = time.monotonic()
    theirs = suite.record_reference(sessions)
    recorded = time.monotonic() - started
    if args.record:
        header = (
            f"# Postfix {version} (tests/differential/reference.py), every session of "
            f"tests/differential/sessions.yaml from {reference.CLIENT}.\n"
            "# [n] is the turn's index: 0 is the greeting.\n\n"
        )
        body = "\n\n".join(suite.transcript(s, theirs[s.name]) for s in sessions)
        args.record.write_text(header + body + "\n", encoding="utf-8")

    receivers = suite.Receivers(suite.load_configs())
    outcomes = []
    try:
        for s in sessions:
            try:
                rx = receivers.get(s.config)
            except AssertionError as exc:
                outcome = suite.Outcome(s, problems=[str(exc)])
            else:
                outcome = suite.compare(
                    s,
                    theirs[s.name],
                    suite.play_strictmx(rx, s),
                    differences,
                    postfix_hostname=reference.HOSTNAME,
                    strictmx_hostname=rx.scenario.receiver.hostname,
                )
            outcomes.append(outcome)
    finally:
        receivers.close()
    elapsed = time.monotonic() - started

    print(suite.table(outcomes, f"{suite.SCENARIO} vs Postfix {version} (reference)"))
    print(f"Postfix recorded in {recorded:.1f} s; both sides played in {elapsed:.1f} s\n")
    return suite.print_differences(outcomes)


if __name__ == "__main__":
    sys.exit(main())
