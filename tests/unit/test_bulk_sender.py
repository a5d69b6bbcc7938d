"""bulk_sender, sans-IO: the policy's check called with a session whose authentication
results are set as spf, dkim and dmarc would leave them, in a hermetic test world."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError

from strictmx.policies import BUILTIN
from strictmx.policies.bulk_sender import (
    BulkSender,
    BulkSenderOptions,
    unsubscribe_problem,
)
from strictmx.receiver.alignment import aligned, author_domain
from strictmx.receiver.authentication import AuthResults, DkimAuth, DmarcAuth, SpfAuth
from strictmx.receiver.message import parse_header
from strictmx.receiver.policy import ClientHistory, Context
from strictmx.receiver.session import Client, Session
from strictmx.receiver.verdict import Action, Reply, Stage, Verdict
from strictmx.receiver.world.clock import Clock

from .worlds import make_ctx, objection_by, wire

IP = "203.0.113.9"
PTR_NAME = "out1.news.example.com"
FROM = "news.example.com"
#: A world in which the client has forward-confirmed reverse DNS.
FCRDNS: dict[str, Any] = {"records": {PTR_NAME: {"A": IP}}, "ptr": {IP: PTR_NAME}}
UNSUBSCRIBE = [
    "List-Unsubscribe: <https://news.example.com/u/8f2a>, <mailto:u-8f2a@news.example.com>",
    "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
]
SIGNED = ("from", "to", "subject", "date", "list-unsubscribe", "list-unsubscribe-post")


class MovableClock(Clock):
    """A clock the test moves: the volume window without sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.at = 1000.0

    def monotonic(self) -> float:
        return self.at


def message(*extra: str, sender: str = f"Example News <letter@{FROM}>") -> bytes:
    lines = [
        f"From: {sender}",
        "To: <bob@example.org>",
        "Subject: This week",
        "Date: Fri, 14 Jun 2024 11:58:00 +0000",
        "Message-ID: <20240614115800.42@news.example.com>",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\nHello.\r\n").encode()


def spf(result: str = "pass", domain: str = f"bounces.{FROM}") -> list[SpfAuth]:
    return [SpfAuth("mailfrom", domain, result, f"b-1@{domain}")]  # type: ignore[arg-type]


def dkim(
    result: str = "pass", domain: str = FROM, signed: tuple[str, ...] = SIGNED
) -> list[DkimAuth]:
    return [DkimAuth(result, domain, "s1", "rsa-sha256", signed_headers=signed)]  # type: ignore[arg-type]


def dmarc(record: str = FROM, result: str = "pass") -> DmarcAuth:
    return DmarcAuth(result, FROM, record_domain=record, policy="none" if record else "")  # type: ignore[arg-type]


def compliant() -> AuthResults:
    return AuthResults(spf=spf(), dkim=dkim(), dmarc=dmarc())


def make_session(msg: bytes, auth: AuthResults, *, tls: bool = True, address: str = IP) -> Session:
    session = Session(Client("127.0.0.1", address=address))
    session.helo = PTR_NAME
    session.mail_from = f"b-1@bounces.{FROM}"
    session.rcpts = ["bob@example.org"]
    session.message = msg
    session.auth = auth
    session.tls = tls
    session.tls_version = "TLSv1.3" if tls else None
    return session


def policy(replies: dict[str, str] | None = None, **options: Any) -> BulkSender:
    parsed = {k: Reply.parse(v) for k, v in (replies or {}).items()}
    return BulkSender(BulkSenderOptions(**options), replies=parsed)


def world(dns: dict[str, Any] | None = None) -> Context:
    dns = FCRDNS if dns is None else dns
    return make_ctx(dns.get("records"), dns.get("ptr"))


async def run(
    msg: bytes | None = None,
    auth: AuthResults | None = None,
    *,
    starttls: bool = True,
    address: str = IP,
    ctx: Context | None = None,
    **options: Any,
) -> Verdict | None:
    session = make_session(
        msg if msg is not None else message(*UNSUBSCRIBE),
        auth if auth is not None else compliant(),
        tls=starttls,
        address=address,
    )
    return await policy(**options).check(Stage.EOD, session, ctx or world())


def objection(verdict: Verdict | None, outcome: str) -> Verdict:
    return objection_by("bulk_sender", verdict, outcome)


# -- shape -------------------------------------------------------------------------------


def test_it_is_a_builtin_that_reads_spf_dkim_and_dmarc() -> None:
    assert BulkSender in BUILTIN
    assert BulkSender.requires == ("spf", "dkim", "dmarc")
    assert BulkSender.stages == {Stage.EOD}
    assert len(BulkSender.outcomes) == 10


def test_bad_options_fail_at_load() -> None:
    with pytest.raises(ValidationError, match="not a network"):
        BulkSenderOptions(own_networks=["209.85.128.0/33"])
    with pytest.raises(ValidationError, match="without '@'"):
        BulkSenderOptions(own_domains=["user@gmail.com"])
    with pytest.raises(ValidationError):
        BulkSenderOptions(spf="bounce")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        BulkSenderOptions(bulk_volume=0)


async def test_compliant_bulk_mail_passes_every_rule() -> None:
    assert await run() is None


# -- rules for every message ---------------------------------------------------------------


async def test_neither_spf_nor_dkim_passing_is_refused_with_gmails_words() -> None:
    auth = AuthResults(spf=spf("softfail"), dkim=[], dmarc=dmarc())
    verdict = objection(await run(message(), auth), "SENDER_UNAUTHENTICATED")
    assert wire(verdict) == (
        "550 5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail "
        "requires all senders to authenticate with either SPF or DKIM. Authentication results: "
        f"DKIM = did not pass SPF [bounces.{FROM}] with ip: [{IP}] = did not pass"
    )
    assert verdict.action is Action.REJECT
    assert "SPF softfail" in verdict.reason and "no signature" in verdict.reason


@pytest.mark.parametrize(
    "auth",
    [
        AuthResults(spf=spf(), dkim=[], dmarc=None),
        AuthResults(spf=spf("fail"), dkim=dkim(), dmarc=None),
    ],
    ids=["spf-only", "dkim-only"],
)
async def test_one_of_spf_or_dkim_is_enough_for_ordinary_mail(auth: AuthResults) -> None:
    assert await run(message(), auth, starttls=False, ctx=world({})) is None


async def test_yahoos_reply_is_an_override() -> None:
    text = (
        "550 5.7.9 This mail has been blocked because the sender is unauthenticated. Yahoo "
        "requires all senders to authenticate with either SPF or DKIM."
    )
    session = make_session(message(), AuthResults(spf=spf("none"), dkim=[]))
    verdict = await policy({"SENDER_UNAUTHENTICATED": text}).check(Stage.EOD, session, world())
    assert wire(objection(verdict, "SENDER_UNAUTHENTICATED")) == text


async def test_a_from_at_the_providers_own_domain_from_elsewhere_is_impersonation() -> None:
    options = {"own_domains": ["gmail.com", "googlemail.com"], "own_networks": ["209.85.128.0/17"]}
    msg = message(sender="Jane <jane.doe@gmail.com>")
    verdict = objection(await run(msg, **options), "FROM_IMPERSONATION")
    assert wire(verdict) == (
        "550 5.7.1 Mail with a From: address at gmail.com is accepted only from gmail.com's "
        "own servers"
    )
    # From its own servers, or from another domain: no objection.
    assert await run(msg, address="209.85.220.41", **options) is None
    assert await run(message(*UNSUBSCRIBE), **options) is None
    # A subdomain of an own domain counts as the domain.
    sub = message(sender="x@mail.googlemail.com")
    objection(await run(sub, **options), "FROM_IMPERSONATION")


# -- what makes mail bulk --------------------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    ["List-Id: <news.example.com>", "Precedence: bulk", "Precedence: list", UNSUBSCRIBE[0]],
)
async def test_list_headers_make_mail_bulk(field: str) -> None:
    auth = AuthResults(spf=spf(), dkim=[], dmarc=dmarc())
    objection(await run(message(field), auth), "BULK_DKIM_NOT_PASSING")


async def test_without_list_headers_or_volume_mail_is_not_bulk() -> None:
    auth = AuthResults(spf=spf(), dkim=[], dmarc=dmarc(record=""))
    assert await run(message("Precedence: first-class"), auth, starttls=False) is None
    assert await run(message("List-Id: <x.example>"), auth, bulk_headers=False) is None


async def test_volume_over_the_threshold_within_the_window_makes_mail_bulk() -> None:
    ctx = world()
    clock = MovableClock()
    ctx.world.clock = clock
    bulk_policy = policy(bulk_volume=3, bulk_window=3600)
    auth = AuthResults(spf=spf(), dkim=[], dmarc=dmarc())

    async def send() -> Verdict | None:
        return await bulk_policy.check(Stage.EOD, make_session(message(), replace(auth)), ctx)

    for _ in range(3):
        assert await send() is None  # 1, 2, 3 messages: not over 3
    verdict = objection(await send(), "BULK_DKIM_NOT_PASSING")
    assert "more than 3 messages from news.example.com in 3600 s" in verdict.reason
    # An hour later the earlier messages have left the window.
    clock.at += 3601
    assert await send() is None


def test_the_volume_history_is_bounded_and_counted_in_order() -> None:
    history = ClientHistory()
    for t in range(10_000):  # a day of a large sender, kept to what the threshold needs
        history.add("bulk_sender", FROM, float(t), keep=6)
    assert history.count("bulk_sender", FROM, since=0.0) == 6
    assert history.count("bulk_sender", FROM, since=9_998.0) == 2
    # Times from elsewhere than one monotonic clock still count by value.
    for when in (5.0, 1.0, 3.0):
        history.add("other", FROM, when)
    assert history.count("other", FROM, since=2.0) == 2


async def test_all_bulk_judges_every_message() -> None:
    auth = AuthResults(spf=spf(), dkim=[], dmarc=dmarc())
    objection(await run(message(), auth, all_bulk=True), "BULK_DKIM_NOT_PASSING")


# -- bulk rules: a trigger and a control each ------------------------------------------------


async def test_bulk_mail_whose_spf_does_not_pass() -> None:
    auth = AuthResults(spf=spf("softfail"), dkim=dkim(), dmarc=dmarc())
    verdict = objection(await run(auth=auth), "BULK_SPF_NOT_PASSING")
    assert wire(verdict).startswith("421 4.7.27 Your email has been rate limited because SPF")
    assert f"SPF bounces.{FROM} with IP address: {IP} = Did not pass." in wire(verdict)
    assert verdict.action is Action.DEFER
    assert await run(auth=compliant()) is None


async def test_bulk_mail_without_a_passing_dkim_signature() -> None:
    auth = AuthResults(spf=spf(), dkim=dkim("fail"), dmarc=dmarc())
    verdict = objection(await run(auth=auth), "BULK_DKIM_NOT_PASSING")
    assert wire(verdict).startswith("421 4.7.30 ")
    assert "d=news.example.com fail" in verdict.reason


@pytest.mark.parametrize(
    ("from_domain", "spf_domain", "dkim_domain", "ok"),
    [
        ("news.example.com", "bounces.esp.example", "esp.example", False),
        ("news.example.com", "bounces.esp.example", "mail.example.com", True),
        ("news.example.com", "example.com", "esp.example", True),
        ("shop.example.co.uk", "esp.example", "example.co.uk", True),
        ("shop.example.co.uk", "esp.example", "other.co.uk", False),
    ],
)
async def test_bulk_mail_must_align_by_organisational_domain(
    from_domain: str, spf_domain: str, dkim_domain: str, ok: bool
) -> None:
    auth = AuthResults(spf=spf(domain=spf_domain), dkim=dkim(domain=dkim_domain), dmarc=None)
    msg = message(*UNSUBSCRIBE, sender=f"letter@{from_domain}")
    verdict = await run(msg, auth, unsubscribe_signed="accept")
    if ok:
        assert verdict is None
    else:
        found = objection(verdict, "BULK_NOT_ALIGNED")
        assert wire(found).startswith("421 4.7.32 Your email has been rate limited because the")


def test_alignment_is_relaxed_and_needs_both_domains() -> None:
    assert aligned("a.example.com", "b.example.com")
    assert not aligned("example.co.uk", "other.co.uk")
    assert not aligned("", "example.com")


async def test_bulk_mail_whose_from_domain_publishes_no_dmarc_record() -> None:
    auth = AuthResults(spf=spf(), dkim=dkim(), dmarc=dmarc(record="", result="none"))
    verdict = objection(await run(auth=auth), "BULK_DMARC_MISSING")
    assert wire(verdict) == (
        "421 4.7.40 The From: domain news.example.com publishes no DMARC record. Bulk senders "
        "must publish one (p=none is enough) at _dmarc.news.example.com."
    )
    # A temporary failure is not a missing record.
    temp = AuthResults(spf=spf(), dkim=dkim(), dmarc=dmarc(record="", result="temperror"))
    assert await run(auth=temp) is None


async def test_bulk_mail_from_a_client_without_fcrdns() -> None:
    no_ptr = objection(await run(ctx=world({})), "BULK_NO_FCRDNS")
    assert wire(no_ptr).startswith("421 4.7.23 The sending IP address for this message")
    assert "has no PTR record" in no_ptr.reason
    not_back = world({"records": {PTR_NAME: {"A": "192.0.2.99"}}, "ptr": {IP: PTR_NAME}})
    verdict = objection(await run(ctx=not_back), "BULK_NO_FCRDNS")
    assert "has A 192.0.2.99, not 203.0.113.9" in verdict.reason
    # A temporary failure is not judged.
    failing = make_ctx(ptr={IP: PTR_NAME}, servfail=(PTR_NAME,))
    assert await run(ctx=failing) is None


async def test_bulk_mail_sent_without_tls() -> None:
    verdict = objection(await run(starttls=False), "BULK_NO_TLS")
    assert wire(verdict) == (
        "421 4.7.29 Your email has been rate limited because this message wasn't sent over a "
        "TLS connection. Gmail requires all bulk email senders to use TLS/SSL for SMTP "
        "connections."
    )


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        (["List-Id: <news.example.com>"], "no List-Unsubscribe field"),
        ([UNSUBSCRIBE[0]], "no List-Unsubscribe-Post field"),
        (
            [
                "List-Unsubscribe: <http://news.example.com/u>, <mailto:u@news.example.com>",
                UNSUBSCRIBE[1],
            ],
            "no https URI",
        ),
        ([UNSUBSCRIBE[0], "List-Unsubscribe-Post: yes"], "not List-Unsubscribe=One-Click"),
    ],
)
async def test_bulk_mail_without_one_click_unsubscribe(fields: list[str], problem: str) -> None:
    verdict = objection(await run(message(*fields)), "BULK_UNSUBSCRIBE_MISSING")
    assert problem in verdict.reason
    assert wire(verdict).startswith("450 4.7.1 Bulk mail must offer one-click unsubscription")


@pytest.mark.parametrize(
    "signature",
    [
        dkim(signed=("from", "list-unsubscribe")),
        dkim(signed=("from", "list-unsubscribe")) + dkim(domain="esp.example"),
    ],
    ids=["post-not-signed", "only-unaligned-signature-covers"],
)
async def test_unsubscribe_fields_must_be_signed_by_an_aligned_signature(
    signature: list[DkimAuth],
) -> None:
    auth = AuthResults(spf=spf(), dkim=signature, dmarc=dmarc())
    verdict = objection(await run(auth=auth), "BULK_UNSUBSCRIBE_NOT_SIGNED")
    assert "{from_domain}" not in wire(verdict) and FROM in wire(verdict)


def test_unsubscribe_and_from_helpers() -> None:
    assert unsubscribe_problem(parse_header(message(*UNSUBSCRIBE))) is None
    assert author_domain(message()) == (FROM, "")
    two = message(sender="a@one.example, b@two.example")
    assert author_domain(two)[0] is None


# -- handling options --------------------------------------------------------------------------


async def test_accept_skips_a_rule_and_reject_makes_it_permanent() -> None:
    assert await run(starttls=False, tls="accept") is None
    verdict = objection(await run(starttls=False, tls="reject"), "BULK_NO_TLS")
    assert wire(verdict).startswith("550 5.7.29 Your email has been rate limited")
    assert verdict.action is Action.REJECT
    unauth = AuthResults(spf=spf("fail"), dkim=[], dmarc=dmarc())
    deferred = objection(
        await run(message(), unauth, unauthenticated="defer"), "SENDER_UNAUTHENTICATED"
    )
    assert wire(deferred).startswith("450 4.7.26 This mail has been blocked")
