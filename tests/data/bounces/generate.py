"""Regenerate the real Postfix DSNs in this folder: `python tests/data/bounces/generate.py`.

Each case starts a strictmx persona and a private Postfix instance relaying to it
(tests/e2e/postfix.py), submits one message, and keeps the delivery status notification
Postfix itself writes back to the sender. The sender's domain (example.net) is routed by
`transport_maps` to a small SMTP sink on loopback, so Postfix delivers its DSN there over
SMTP like to any other domain: no local mailbox, no system user, no master.cf change.

Runs as root (Postfix starts as root), as the end-to-end tests do. NAME.eml is what
Postfix wrote, byte for byte (the sink adds no Received line); NAME.verdicts.json is what
strictmx's journal recorded for the session (policy, outcome, stage), the truth the tests
hold `explain` to. Queue ids and dates differ from run to run; the tests read the rest.
"""

from __future__ import annotations

import json
import smtplib
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from strictmx.receiver.pytest_plugin import StrictmxFactory  # noqa: E402
from tests.e2e.postfix import UNAVAILABLE, Postfix, free_port  # noqa: E402

SENDER = "alice@example.net"


class Sink:
    """Keeps every message delivered to it (the DSNs Postfix sends to the sender)."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.arrived = threading.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.messages.append(content)
        self.arrived.set()
        return "250 2.0.0 kept"


@dataclass
class Case:
    """One bounce: the persona, how Postfix is set up, and the message it relays."""

    name: str
    scenario: str | Mapping[str, Any]
    recipients: Sequence[str]
    helo: str = "mail.example.net"
    bind: str = "127.0.0.10"
    #: NOTIFY per recipient (RFC 3461): SUCCESS too makes Postfix report relayed ones.
    notify: str = "FAILURE"
    headers: Sequence[str] = (
        "Subject: quarterly report",
        "Message-ID: <q1@example.net>",
        "Date: Thu, 03 Dec 2026 12:00:00 +0000",
    )
    settings: Mapping[str, str] = field(default_factory=dict)
    sender: str = SENDER


LOCAL_ONLY = {
    "name": "local-recipients",
    "receiver": {
        "dialect": "postfix",
        "hostname": "mx.strictmx.test",
        "local_recipients": ["bob@strictmx.test"],
    },
    "policies": {"rcpt": [{"policy": "relay", "domains": ["strictmx.test"]}]},
}

CASES = [
    # HELO refused at RCPT (delay_reject): two recipients, each refused on its own.
    Case(
        "postfix-helo-two-recipients",
        "postfix-strict",
        ["bob@strictmx.test", "carol@strictmx.test"],
        helo="localhost",
    ),
    # No PTR for the client: 450, tried once (maximal_queue_lifetime 0), then returned.
    Case(
        "postfix-reverse-dns-expired",
        "reverse_dns-postfix",
        ["bob@strictmx.test"],
        bind="127.0.2.11",
        settings={"maximal_queue_lifetime": "0", "bounce_queue_lifetime": "0"},
    ),
    # Gmail's 5.7.26 SPF hard fail (judged at MAIL, answered at RCPT) for an address
    # outside example.net's SPF record.
    Case("gmail-spf-fail", "gmail", ["bob@gmail.strictmx.test"], bind="127.0.0.99"),
    # One recipient relayed, one unknown: the DSN names only the unknown one.
    Case("local-recipients-mixed", LOCAL_ONLY, ["bob@strictmx.test", "nobody@strictmx.test"]),
    # The other recipient of that message, asking for a success notice too: strictmx
    # offers DSN, so Postfix is told to ignore that and report the hand-off as `relayed`.
    Case(
        "local-recipients-relayed",
        LOCAL_ONLY,
        ["bob@strictmx.test"],
        notify="SUCCESS,FAILURE",
        settings={"smtp_discard_ehlo_keywords": "dsn"},
    ),
    # The headers persona refuses a message without Message-ID and Date at end of data.
    Case(
        "headers-missing-eod",
        "headers-classic",
        ["bob@strictmx.test"],
        headers=["Subject: x"],
        settings={"local_header_rewrite_clients": ""},
    ),
    # A sender domain that does not exist, refused at RCPT.
    Case(
        "sender-domain-not-found",
        "sender_domain-not-found",
        ["bob@strictmx.test"],
        sender="alice@parked.example",
    ),
    # A client on a DNS blocklist (Spamhaus's text).
    Case("dnsbl-spamhaus", "dnsbl-spamhaus", ["bob@strictmx.test"], bind="127.0.4.2"),
]


def submit(pf: Postfix, case: Case) -> None:
    body = "\r\n".join(
        [
            f"From: {case.sender}",
            f"To: {', '.join(case.recipients)}",
            *case.headers,
            "",
            "Figures for the quarter are attached.",
            "",
        ]
    )
    with smtplib.SMTP(
        "127.0.0.1", pf.smtpd_port, local_hostname="app.example.net", timeout=10
    ) as client:
        client.ehlo()
        client.mail(case.sender, ["RET=HDRS", "ENVID=q1-envid"])
        for rcpt in case.recipients:
            code, reply = client.rcpt(rcpt, [f"NOTIFY={case.notify}"])
            if code != 250:
                raise AssertionError(f"Postfix refused {rcpt}: {code} {reply!r}")
        client.data(body.encode())


def run(case: Case, factory: StrictmxFactory) -> tuple[list[bytes], list[dict[str, Any]]]:
    sink = Sink()
    sink_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink_port)
    controller.start()
    rx = factory(case.scenario)
    domain = case.sender.rpartition("@")[2]
    settings = {
        "transport_maps": f"inline:{{ {{{domain} = smtp:[127.0.0.1]:{sink_port}}} }}",
        **case.settings,
    }
    pf = Postfix((rx.host, rx.port), helo_name=case.helo, bind_address=case.bind, settings=settings)
    try:
        pf.start()
        submit(pf, case)
        deadline = time.monotonic() + 60
        expected = 1
        while len(sink.messages) < expected and time.monotonic() < deadline:
            sink.arrived.wait(1)
            sink.arrived.clear()
        if len(sink.messages) < expected:
            raise AssertionError(f"{case.name}: no DSN within 60 s\n{pf.excerpt()}")
        # What strictmx itself decided, per refusal: the truth the tests hold explain to.
        verdicts = [
            {"policy": v["policy"], "outcome": v["outcome"], "replied_at": v["replied_at"]}
            for session in rx.sessions()
            for v in session["verdicts"]
        ]
        return sink.messages, verdicts
    finally:
        pf.stop()
        factory.stop()
        controller.stop()


def main(names: Sequence[str]) -> int:
    if UNAVAILABLE is not None:
        print(f"cannot run Postfix here: {UNAVAILABLE}", file=sys.stderr)
        return 2
    factory = StrictmxFactory("default")
    for case in CASES:
        if names and case.name not in names:
            continue
        messages, verdicts = run(case, factory)
        dsn = messages[0]
        (HERE / f"{case.name}.eml").write_bytes(dsn)
        (HERE / f"{case.name}.verdicts.json").write_text(json.dumps(verdicts, indent=2) + "\n")
        print(f"wrote {case.name}.eml ({len(dsn)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
