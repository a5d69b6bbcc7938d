"""Regenerate the real swaks transcripts in this folder:
`python tests/data/bounces/transcripts/generate.py [NAME...]`.

Each case starts a strictmx persona, runs the real swaks against it, and keeps what swaks
printed (NAME.txt, its transcript markers and all) beside what strictmx's journal recorded
for the session (NAME.verdicts.json: policy, outcome, stage), the truth the tests hold
`explain` to. Session ids and dates differ from run to run; the tests read the rest.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))

from strictmx.receiver.pytest_plugin import StrictmxFactory  # noqa: E402

SENDER = "alice@example.net"


@dataclass
class Case:
    name: str
    scenario: str
    recipients: Sequence[str]
    helo: str = "mail.example.net"
    bind: str = "127.0.0.10"
    sender: str = SENDER
    extra: Sequence[str] = field(default_factory=list)


CASES = [
    # HELO refused at RCPT (delay_reject), two recipients.
    Case(
        "swaks-helo-localhost",
        "postfix-strict",
        ["bob@strictmx.test", "carol@strictmx.test"],
        helo="localhost",
    ),
    # The same, pipelined (RFC 2920): the replies come back after the commands.
    Case(
        "swaks-helo-pipelined",
        "postfix-strict",
        ["bob@strictmx.test"],
        helo="localhost",
        extra=["--pipeline"],
    ),
    # A message without Date and Message-ID, refused at end of data.
    Case(
        "swaks-headers-missing-eod",
        "headers-classic",
        ["bob@strictmx.test"],
        extra=["--data", "From: alice@example.net\nTo: bob@strictmx.test\nSubject: x\n\nhello\n"],
    ),
    # A client on a DNS blocklist (Spamhaus's text).
    Case("swaks-dnsbl-spamhaus", "dnsbl-spamhaus", ["bob@strictmx.test"], bind="127.0.4.2"),
    # A sender domain that does not exist.
    Case(
        "swaks-sender-domain",
        "sender_domain-not-found",
        ["bob@strictmx.test"],
        sender="alice@parked.example",
    ),
]


def run(case: Case, factory: StrictmxFactory) -> tuple[str, list[dict[str, Any]]]:
    rx = factory(case.scenario)
    try:
        swaks = shutil.which("swaks")
        if swaks is None:
            raise SystemExit("swaks is not installed")
        done = subprocess.run(
            [
                swaks,
                "--server",
                f"{rx.host}:{rx.port}",
                "--from",
                case.sender,
                "--to",
                ",".join(case.recipients),
                "--helo",
                case.helo,
                "--local-interface",
                case.bind,
                "--timeout",
                "10",
                *case.extra,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        verdicts = [
            {"policy": v["policy"], "outcome": v["outcome"], "replied_at": v["replied_at"]}
            for session in rx.sessions()
            for v in session["verdicts"]
        ]
        return done.stdout + done.stderr, verdicts
    finally:
        factory.stop()


def main(names: Sequence[str]) -> int:
    factory = StrictmxFactory("default")
    for case in CASES:
        if names and case.name not in names:
            continue
        transcript, verdicts = run(case, factory)
        (HERE / f"{case.name}.txt").write_text(transcript, encoding="utf-8")
        (HERE / f"{case.name}.verdicts.json").write_text(
            json.dumps(verdicts, indent=2) + "\n", encoding="utf-8"
        )
        print(f"{case.name}: {len(transcript)} characters, {len(verdicts)} verdicts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
