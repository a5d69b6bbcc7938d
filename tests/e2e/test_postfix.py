"""Postfix as the staging MTA: a real MTA, written by no one here, relaying to strictmx.

Each test starts strictmx with a scenario and a private Postfix instance whose relayhost
is that receiver (tests/e2e/postfix.py), injects a message into Postfix with swaks, and
asserts what Postfix itself logged: `status=sent`, or `status=bounced`/`deferred` with
strictmx's exact reply and the command it answered. Postfix binds its outgoing
connections to a 127.0.0.x address; the scenario's `world.clients` says which public
address (with or without a PTR, listed or not) strictmx judges for it. The journal is
checked too, so a pass means both sides agree on what happened.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from .conftest import Factory, Running
from .postfix import UNAVAILABLE, Delivery, Postfix

pytestmark = pytest.mark.e2e

# Missing Postfix is a failure, not a skip: scripts/test installs it (Debian's postfix).
assert UNAVAILABLE is None, f"the Postfix end-to-end tests cannot run: {UNAVAILABLE}"

MTA = Callable[..., Postfix]

SENDER = "alice@example.net"
RCPT = "bob@strictmx.test"


@pytest.fixture
def postfix() -> Iterator[MTA]:
    """`postfix(rx, helo_name=..., bind_address=..., settings={...})`: a started instance
    relaying to the receiver `rx`, stopped (by its own master's pid) after the test."""
    made: list[Postfix] = []

    def start(rx: Running, **options: Any) -> Postfix:
        instance = Postfix((rx.host, rx.port), **options)
        made.append(instance)
        return instance.start()

    yield start
    for instance in made:
        instance.stop()


def said(reply: str, command: str = "RCPT TO") -> str:
    """How Postfix's smtp client words a refusal from the relayhost."""
    return f"host 127.0.0.1[127.0.0.1] said: {reply} (in reply to {command} command)"


def outcome(pf: Postfix, queue_id: str, recipient: str, status: str, detail: str) -> Delivery:
    """Postfix's first verdict on `recipient`, which must be `status` with `detail`."""
    seen = pf.outcome(queue_id, recipient)
    assert (seen.status, seen.detail) == (status, detail), pf.excerpt(queue_id)
    return seen


def sent(pf: Postfix, rx: Running, queue_id: str, recipient: str = RCPT) -> dict[str, Any]:
    """Postfix relayed the message and strictmx queued it; strictmx's session."""
    seen = pf.outcome(queue_id, recipient)
    assert seen.status == "sent", pf.excerpt(queue_id)
    session = rx.last()
    queued = f"Ok: queued as {session['id']}-1"
    assert seen.detail in (f"250 2.0.0 {queued}", f"250 {queued}"), pf.excerpt(queue_id)
    return session


def verdicts(session: dict[str, Any]) -> list[tuple[str, str]]:
    return [(v["policy"], v["outcome"]) for v in session["verdicts"]]


# -- HELO ------------------------------------------------------------------------------


def test_a_compliant_postfix_is_relayed_through(serve: Factory, postfix: MTA) -> None:
    rx = serve("postfix-strict")
    pf = postfix(rx, helo_name="mail.example.net", bind_address="127.0.0.10")
    queue_id = pf.submit(SENDER, [RCPT], headers=["Subject: staging"])
    session = sent(pf, rx, queue_id)
    assert (session["peer"], session["client_address"]) == ("127.0.0.10", "203.0.113.10")
    assert (session["helo"], session["mail_from"]) == ("mail.example.net", SENDER)
    assert session["verdicts"] == []
    raw = rx.message(session["id"], 1)
    assert raw is not None
    assert b"Subject: staging\r\n" in raw
    assert b"by staging.strictmx.test (Postfix)" in raw, "Postfix's own Received field"
    assert pf.wait_queue(lambda queue: queue == [], "an empty queue") == []


@pytest.mark.parametrize(
    ("helo_name", "reply"),
    [
        (
            "localhost",
            "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname",
        ),
        ("mail..example.net", "501 5.5.2 <mail..example.net>: Helo command rejected: Invalid name"),
    ],
)
def test_a_helo_that_is_not_a_valid_name_is_bounced(
    serve: Factory, postfix: MTA, helo_name: str, reply: str
) -> None:
    rx = serve("postfix-strict")
    pf = postfix(rx, helo_name=helo_name, bind_address="127.0.0.10")
    queue_id = pf.submit(SENDER, [RCPT])
    seen = outcome(pf, queue_id, RCPT, "bounced", said(reply))
    assert seen.dsn == "5.5.2"
    session = rx.last()
    assert session["helo"] == helo_name
    assert [v["replied_at"] for v in session["verdicts"]] == ["rcpt"], "smtpd_delay_reject"


# Postfix's reject_unknown_helo_hostname, plus a forward-confirmation that the name is
# the client's: the name must resolve, and to the address strictmx sees.
HELO_DNS = {
    "name": "postfix-helo-dns",
    "receiver": {"banner": "{hostname} ESMTP Postfix"},
    "policies": {
        "helo": [
            {"policy": "helo_syntax", "mode": "postfix"},
            {"policy": "helo_dns", "resolve": True, "forward_confirm": True},
        ]
    },
    "world": {
        "dns": {
            "mode": "hermetic",
            "records": {"mail.example.net": {"A": "203.0.113.10"}},
            "ptr": {"203.0.113.10": "mail.example.net"},
        },
        "clients": {
            "127.0.0.10": {"address": "203.0.113.10"},
            "127.0.0.11": {"address": "203.0.113.11"},
        },
    },
}


@pytest.mark.parametrize(
    ("bind_address", "helo_name", "status", "reply"),
    [
        (
            "127.0.0.11",
            "mail.example.net",
            "bounced",
            "550 5.7.1 <mail.example.net>: Helo command rejected: "
            "HELO host has no forward DNS match",
        ),
        (
            "127.0.0.10",
            "nosuchhost.example.net",
            "deferred",
            "450 4.7.1 <nosuchhost.example.net>: Helo command rejected: Host not found",
        ),
    ],
    ids=["resolves-elsewhere", "does-not-resolve"],
)
def test_a_helo_that_does_not_match_dns_is_refused(
    serve: Factory, postfix: MTA, bind_address: str, helo_name: str, status: str, reply: str
) -> None:
    rx = serve(HELO_DNS)
    pf = postfix(rx, helo_name=helo_name, bind_address=bind_address)
    queue_id = pf.submit(SENDER, [RCPT])
    outcome(pf, queue_id, RCPT, status, said(reply))


def test_a_helo_that_matches_dns_is_relayed(serve: Factory, postfix: MTA) -> None:
    rx = serve(HELO_DNS)
    pf = postfix(rx, helo_name="mail.example.net", bind_address="127.0.0.10")
    session = sent(pf, rx, pf.submit(SENDER, [RCPT]))
    assert session["client_address"] == "203.0.113.10"


# -- the client's address ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("bind_address", "reply"),
    [
        ("127.0.2.11", "450 4.7.1 Client host rejected: cannot find your reverse hostname, "
         "[203.0.113.11]"),
        ("127.0.2.20", "450 4.7.25 Client host rejected: cannot find your hostname, "
         "[203.0.113.20]"),
    ],
    ids=["no-ptr", "ptr-not-confirmed"],
)  # fmt: skip
def test_a_client_without_good_reverse_dns_is_deferred(
    serve: Factory, postfix: MTA, bind_address: str, reply: str
) -> None:
    rx = serve("reverse_dns-postfix")
    pf = postfix(rx, bind_address=bind_address)
    queue_id = pf.submit(SENDER, [RCPT])
    seen = outcome(pf, queue_id, RCPT, "deferred", said(reply))
    assert seen.dsn.startswith("4."), pf.excerpt(queue_id)
    # The message waits in Postfix's deferred queue with strictmx's reply as the reason.
    (queued,) = pf.wait_queue(
        lambda queue: [m["queue_name"] for m in queue] == ["deferred"], "the message deferred"
    )
    assert queued["queue_id"] == queue_id
    assert queued["recipients"] == [{"address": RCPT, "delay_reason": said(reply)}]


def test_a_client_with_forward_confirmed_reverse_dns_is_relayed(
    serve: Factory, postfix: MTA
) -> None:
    rx = serve("reverse_dns-postfix")
    pf = postfix(rx, bind_address="127.0.2.10")
    session = sent(pf, rx, pf.submit(SENDER, [RCPT]))
    assert session["client_address"] == "203.0.113.10"
    assert session["verdicts"] == []


def test_a_client_on_a_dnsbl_still_reaches_postmaster(serve: Factory, postfix: MTA) -> None:
    rx = serve("dnsbl-spamhaus")
    pf = postfix(rx, bind_address="127.0.4.2")  # 203.0.113.2, on SBL
    queue_id = pf.submit(SENDER, [RCPT, "postmaster@strictmx.test"])
    outcome(
        pf,
        queue_id,
        RCPT,
        "bounced",
        said(
            "554 5.7.1 Service unavailable; Client host [203.0.113.2] blocked using "
            "zen.spamhaus.org; https://www.spamhaus.org/sbl/query/SBL000002"
        ),
    )
    # One message, one session: the other recipient of the same message got through.
    session = sent(pf, rx, queue_id, "postmaster@strictmx.test")
    assert session["client_address"] == "203.0.113.2"
    assert verdicts(session) == [("dnsbl", "DNSBL_LISTED")]
    (stored,) = session["messages"]
    assert stored["rcpts"] == ["postmaster@strictmx.test"]


def test_a_client_on_no_dnsbl_is_relayed(serve: Factory, postfix: MTA) -> None:
    rx = serve("dnsbl-spamhaus")
    pf = postfix(rx, bind_address="127.0.0.1")  # RFC 5782's "never listed" test point
    session = sent(pf, rx, pf.submit(SENDER, [RCPT]))
    assert session["verdicts"] == []


# -- the sender -------------------------------------------------------------------------


def test_a_sender_that_fails_the_callout_is_bounced(serve: Factory, postfix: MTA) -> None:
    # strictmx calls the sender domain's MX (which it serves itself, on loopback) and
    # relays that MX's refusal in its own reply.
    rx = serve("sender_verify-postfix")
    pf = postfix(rx, bind_address="127.0.0.70")
    queue_id = pf.submit("nobody@example.net", [RCPT])
    callout = (
        "host mail.example.net[203.0.113.10] said: 550 5.1.1 <nobody@example.net>: "
        "Recipient address rejected: User unknown in virtual mailbox table "
        "(in reply to RCPT TO command)"
    )
    outcome(
        pf,
        queue_id,
        RCPT,
        "bounced",
        said(
            "550 5.1.7 <nobody@example.net>: Sender address rejected: "
            f"undeliverable address: {callout}"
        ),
    )
    assert verdicts(rx.last()) == [("sender_verify", "SENDER_UNVERIFIED")]


def test_a_sender_that_passes_the_callout_is_relayed(serve: Factory, postfix: MTA) -> None:
    rx = serve("sender_verify-postfix")
    pf = postfix(rx, bind_address="127.0.0.70")
    session = sent(pf, rx, pf.submit(SENDER, [RCPT]))
    assert session["mail_from"] == SENDER


# -- the message ------------------------------------------------------------------------

# headers-classic's clock stands at Fri, 14 Jun 2024 12:00:00 UTC.


def test_a_message_dated_in_the_future_is_bounced_at_end_of_data(
    serve: Factory, postfix: MTA
) -> None:
    rx = serve("headers-classic")
    pf = postfix(rx, bind_address="127.0.0.19")
    queue_id = pf.submit(SENDER, [RCPT], headers=["Date: Thu, 20 Jun 2024 12:00:00 +0000"])
    seen = outcome(
        pf,
        queue_id,
        RCPT,
        "bounced",
        said("550 Senders clock is broken - fix and resend", "end of DATA"),
    )
    assert seen.dsn == "5.0.0", "the persona sends no enhanced status code"
    assert verdicts(rx.last()) == [("headers", "DATE_IN_FUTURE")]


def test_a_message_dated_now_is_relayed(serve: Factory, postfix: MTA) -> None:
    rx = serve("headers-classic")
    pf = postfix(rx, bind_address="127.0.0.19")
    queue_id = pf.submit(SENDER, [RCPT], headers=["Date: Fri, 14 Jun 2024 13:58:00 +0200"])
    sent(pf, rx, queue_id)


def test_too_many_bad_recipients_refuse_the_next_good_one(serve: Factory, postfix: MTA) -> None:
    # session-limits: three unknown recipients per session, then every RCPT is refused.
    # Postfix sends one message's recipients in address order: the good one comes last.
    rx = serve("session-limits")
    pf = postfix(rx)
    unknown = [f"nobody{n}@elsewhere.example" for n in (1, 2, 3)]
    good = "zoe@strictmx.test"
    queue_id = pf.submit(SENDER, [*unknown, good])
    for address in unknown:
        outcome(
            pf,
            queue_id,
            address,
            "bounced",
            said(f"550 <{address}>: Recipient address rejected: User unknown in local "
                 "recipient table"),
        )  # fmt: skip
    outcome(pf, queue_id, good, "bounced", said("550 Too many bad addresses"))
    session = rx.last()
    assert session["rcpts"] == [*unknown, good]
    # Each unknown user is a verdict of its own now (local_recipients), then the limit.
    assert verdicts(session) == [
        *[("local_recipients", "UNKNOWN_USER")] * 3,
        ("session_limits", "TOO_MANY_BAD_RCPTS"),
    ]


# -- a temporary failure, retried --------------------------------------------------------

# The HELO name's lookup fails (SERVFAIL): Postfix's reject_unknown_helo_hostname
# defers. Once the world is fixed, Postfix's next retry goes through.
BROKEN_DNS: dict[str, Any] = {
    "name": "postfix-helo-servfail",
    "receiver": {"banner": "{hostname} ESMTP Postfix"},
    "policies": {"helo": [{"policy": "helo_dns", "resolve": True}]},
    "world": {
        "dns": {"mode": "hermetic", "servfail": ["mail.example.net"]},
        "clients": {"127.0.0.10": {"address": "203.0.113.10"}},
    },
}
FIXED_DNS: dict[str, Any] = {
    **BROKEN_DNS,
    "name": "postfix-helo-fixed",
    "world": {
        "dns": {"mode": "hermetic", "records": {"mail.example.net": {"A": "203.0.113.10"}}},
        "clients": {"127.0.0.10": {"address": "203.0.113.10"}},
    },
}


def put_scenario(api: str, scenario: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{api}/scenario",
        data=yaml.safe_dump(scenario).encode(),
        method="PUT",
        headers={"Content-Type": "application/yaml"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.load(response)
        return answer


def test_a_temporary_dns_failure_is_retried_and_delivered_once_fixed(
    serve: Factory, postfix: MTA
) -> None:
    rx = serve(BROKEN_DNS, api_listen=("127.0.0.1", 0))
    assert rx.api is not None
    # Retries within seconds rather than Postfix's minutes.
    retry_soon = {
        "queue_run_delay": "1s",
        "minimal_backoff_time": "1s",
        "maximal_backoff_time": "2s",
    }
    pf = postfix(rx, helo_name="mail.example.net", bind_address="127.0.0.10", settings=retry_soon)
    queue_id = pf.submit(SENDER, [RCPT])
    reply = "450 4.7.1 <mail.example.net>: Helo command rejected: Host not found"
    outcome(pf, queue_id, RCPT, "deferred", said(reply))

    assert put_scenario(rx.api.url, FIXED_DNS)["name"] == "postfix-helo-fixed"

    delivered = pf.outcome(queue_id, RCPT, "sent")
    history = pf.deliveries(queue_id)
    statuses = [d.status for d in history]
    assert statuses[-1] == "sent" and set(statuses[:-1]) == {"deferred"}, pf.excerpt(queue_id)
    assert all(d.detail == said(reply) for d in history[:-1]), pf.excerpt(queue_id)
    sessions = rx.sessions()  # newest first
    queued = f"250 2.0.0 Ok: queued as {sessions[0]['id']}-1"
    assert delivered.detail == queued, pf.excerpt(queue_id)
    assert sessions[0]["scenario"] == "postfix-helo-fixed"
    assert sessions[0]["outcome"] == "accepted"
    first = rx.session(sessions[-1]["id"])
    assert first["scenario"] == "postfix-helo-servfail"
    assert verdicts(first) == [("helo_dns", "HELO_DNS_TEMPFAIL")]
    pf.wait_queue(lambda queue: queue == [], "an empty queue")
