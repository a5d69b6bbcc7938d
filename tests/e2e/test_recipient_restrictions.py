"""Postfix's recipient restrictions side by side with strictmx's: the same RCPTs to both.

A private Postfix 3.7 receiver (tests/e2e/postfix.py) configured as the postfix-strict
persona's reference is -- mydestination strictmx.test, four local recipients,
reject_unauth_destination and reject_non_fqdn_recipient -- and a strictmx receiver with
the `relay`, `recipient_syntax` and `local_recipients` policies and the bare-<postmaster>
exemption (`receiver.always_accepted`) get the same session over raw sockets. Every RCPT
reply must be the same, code, enhanced code and text: the relay refusals, the non-FQDN
refusals, unknown users, and the recipients both accept (the controls). Two orders are
played: Postfix's relay restrictions before its recipient restrictions (the reference
instance), and reject_non_fqdn_recipient listed first (the only place it can refuse a
recipient that the relay check would refuse too).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any, Final

import pytest

from .conftest import Factory
from .postfix import UNAVAILABLE, Postfix

pytestmark = pytest.mark.e2e

# Missing Postfix is a failure, not a skip: scripts/test installs it (Debian's postfix).
assert UNAVAILABLE is None, f"the Postfix end-to-end tests cannot run: {UNAVAILABLE}"

#: The client's source: not 127.0.0.1, which the reference's mynetworks lists.
SOURCE: Final = "127.0.0.20"
LOCAL: Final = ["postmaster", "abuse", "alice", "bob"]

#: RCPT arguments, in one session (no error limit is reached: both are set above it).
#: strictmx speaks the postfix dialect, whose address grammar takes a domain with a
#: trailing dot as Postfix does (the default grammar refuses it before any policy).
RCPTS: Final = [
    "bob@other.example",  # relay
    "bob",  # relay, or not fully qualified
    "bob@localhost",
    "bob@strictmx",
    "abuse",
    "postmaster",  # accepted by both, before any restriction
    "Postmaster",
    "postmaster@other.example",  # no exemption elsewhere
    "bob@mx.strictmx.test",
    "bob@[192.0.2.1]",
    "bob%other.example@strictmx.test",  # untrusted routing
    "other.example!bob@strictmx.test",
    "nobody@strictmx.test",  # unknown user
    "bob@[127.0.0.1]",  # local (Postfix listens there), unknown user
    "nobody@strictmx.test.",  # unknown, quoted with its dot
    "bob@other.example.",  # relay
    "bob@strictmx.test",  # the controls: accepted
    "BOB@STRICTMX.TEST",
    "alice@strictmx.test",
    "bob@strictmx.test.",  # trivial-rewrite drops one trailing dot
]

ORDERS: Final = {
    "relay-first": (
        {
            "smtpd_relay_restrictions": "reject_unauth_destination",
            "smtpd_recipient_restrictions": "reject_non_fqdn_recipient",
        },
        ["relay", "recipient_syntax"],
    ),
    "fqdn-first": (
        {
            "smtpd_relay_restrictions": "",
            "smtpd_recipient_restrictions": "reject_non_fqdn_recipient, reject_unauth_destination",
        },
        ["recipient_syntax", "relay"],
    ),
}


def reference_settings(restrictions: dict[str, str]) -> dict[str, str]:
    table = ", ".join(f"{{{user}@strictmx.test=ok}}" for user in LOCAL)
    return {
        "myhostname": "mx.strictmx.test",
        "mydomain": "strictmx.test",
        "mydestination": "strictmx.test",
        "local_recipient_maps": f"inline:{{ {table} }}",
        "mynetworks": "127.0.0.1/32",
        "smtpd_banner": "$myhostname ESMTP Postfix",
        "smtpd_helo_required": "yes",
        "smtpd_error_sleep_time": "0",
        "smtpd_soft_error_limit": "100",
        "smtpd_hard_error_limit": "100",
        "transport_maps": "inline:{ {strictmx.test = discard:held by the test} }",
        **restrictions,
    }


def persona(chain: list[str]) -> dict[str, Any]:
    entries: dict[str, dict[str, Any]] = {
        "relay": {"policy": "relay", "domains": ["strictmx.test", "[127.0.0.1]"]},
        "recipient_syntax": {"policy": "recipient_syntax"},
    }
    return {
        "name": "recipients-like-postfix",
        "receiver": {
            "dialect": "postfix",
            "hostname": "mx.strictmx.test",
            "local_recipients": [f"{user}@strictmx.test" for user in LOCAL],
            "always_accepted": ["postmaster"],
        },
        "policies": {"rcpt": [entries[name] for name in chain]},
    }


def rcpt_replies(port: int) -> list[str]:
    """Each RCPT's reply (one line each) in one session after EHLO and MAIL."""
    with socket.create_connection(("127.0.0.1", port), 10, (SOURCE, 0)) as sock:
        replies = sock.makefile("rb")

        def reply() -> str:
            while True:
                line = replies.readline().decode("ascii", "replace").rstrip("\r\n")
                if len(line) < 4 or line[3] != "-":
                    return line

        def say(line: str) -> str:
            sock.sendall(line.encode() + b"\r\n")
            return reply()

        assert reply().startswith("220 ")
        assert say("EHLO mail.example.net").startswith("250 ")
        assert say("MAIL FROM:<alice@example.net>") == "250 2.1.0 Ok"
        got = [say(f"RCPT TO:<{rcpt}>") for rcpt in RCPTS]
        say("QUIT")
        return got


@pytest.fixture(params=list(ORDERS))
def reference(request: pytest.FixtureRequest) -> Iterator[tuple[str, Postfix]]:
    restrictions, _ = ORDERS[request.param]
    # Relays nothing (mydestination is its own), so the relay address is never used.
    instance = Postfix(("127.0.0.1", 9), settings=reference_settings(restrictions))
    try:
        yield request.param, instance.start()
    finally:
        instance.stop()


def test_rcpt_replies_are_postfixs(reference: tuple[str, Postfix], serve: Factory) -> None:
    order, postfix = reference
    rx = serve(persona(ORDERS[order][1]))
    theirs = rcpt_replies(postfix.smtpd_port)
    ours = rcpt_replies(rx.port)
    differing = [
        f"RCPT TO:<{rcpt}>: Postfix {p!r}, strictmx {s!r}"
        for rcpt, p, s in zip(RCPTS, theirs, ours, strict=True)
        if p != s
    ]
    assert not differing, "\n".join(differing)
    # Each outcome was met, and the controls were accepted, on both sides.
    assert any(r.endswith(": Relay access denied") for r in ours)
    assert any(r.startswith("550 5.1.1 ") for r in ours)
    assert sum(r == "250 2.1.5 Ok" for r in ours) == 6
    not_fqdn = [r for r in ours if r.endswith("need fully-qualified address")]
    assert bool(not_fqdn) is (order == "fqdn-first"), not_fqdn
    # strictmx journaled each refusal with the policy that made it.
    outcomes = {(v["policy"], v["outcome"]) for v in rx.last()["verdicts"]}
    assert ("relay", "RELAY_DENIED") in outcomes
    assert ("local_recipients", "UNKNOWN_USER") in outcomes
    assert (("recipient_syntax", "RCPT_NOT_FQDN") in outcomes) is (order == "fqdn-first")
