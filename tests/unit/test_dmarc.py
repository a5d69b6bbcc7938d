"""dmarc, sans-IO: the policy called with SPF and DKIM results on the session and a world
holding the DMARC records; each row asserts the reply that would go on the wire."""

from __future__ import annotations

import smtplib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from strictmx.policies import BUILTIN
from strictmx.policies.dmarc import (
    Dmarc,
    DmarcOptions,
    DmarcRecord,
    RecordError,
    parse_record,
    sample,
)
from strictmx.receiver import runner
from strictmx.receiver import scenario as scenarios
from strictmx.receiver.alignment import aligned
from strictmx.receiver.authentication import ArcAuth, DkimAuth, SpfAuth
from strictmx.receiver.catalogue import Entry
from strictmx.receiver.explain import Explainer
from strictmx.receiver.policy import Context
from strictmx.receiver.registry import bundled, load_registry
from strictmx.receiver.reproduce import ReproduceError, reproduce
from strictmx.receiver.session import Client, Session
from strictmx.receiver.verdict import Action, Reply, Stage, Verdict

from .worlds import make_ctx, wire

RECORDS: dict[str, Any] = {
    "_dmarc.example.com": {"TXT": ["v=DMARC1; p=reject; rua=mailto:d@example.com", "other"]},
    "example.com": {"A": "192.0.2.10"},
    "mail.example.com": {"A": "192.0.2.11"},
    "_dmarc.example.co.uk": {"TXT": "v=DMARC1; p=reject; sp=quarantine"},
    "mail.example.co.uk": {"A": "192.0.2.12"},
    "_dmarc.strict.example": {"TXT": "v=DMARC1; p=reject; adkim=s; aspf=s"},
    "_dmarc.none.example": {"TXT": "v=DMARC1; p=none"},
    "_dmarc.quar.example": {"TXT": "v=DMARC1;p=quarantine"},
    # a record at the organisational domain only
    "_dmarc.orgonly.example": {"TXT": "v=DMARC1; p=reject"},
    "a.orgonly.example": {"A": "192.0.2.13"},
    # the subdomain's own record wins over the organisational domain's
    "_dmarc.own.orgonly.example": {"TXT": "v=DMARC1; p=none"},
    "_dmarc.two.example": {"TXT": ["v=DMARC1; p=reject", "v=DMARC1; p=none"]},
    "_dmarc.bad.example": {"TXT": "v=DMARC1; p=block"},
    "_dmarc.badrua.example": {"TXT": "v=DMARC1; p=block; rua=mailto:d@badrua.example"},
    "_dmarc.junk.example": {"TXT": "v=DMARC1; p=reject; this is not a tag"},
    "_dmarc.notdmarc.example": {
        "TXT": ["v=spf1 -all", "v=DMARC2; p=reject", "v=dmarc1; p=reject", "p=reject; v=DMARC1"]
    },
    "_dmarc.upper.example": {"TXT": "V = DMARC1 ;P=REJECT"},
    "_dmarc.pct0.example": {"TXT": "v=DMARC1; p=reject; pct=0"},
    "_dmarc.pct100.example": {"TXT": "v=DMARC1; p=reject; pct=100"},
    "_dmarc.pct50.example": {"TXT": "v=DMARC1; p=reject; pct=50"},
    "_dmarc.testing.example": {"TXT": "v=DMARC1; p=reject; t=y"},
    "_dmarc.np.example": {"TXT": "v=DMARC1; p=reject; sp=none; np=quarantine"},
    "www.np.example": {"MX": "10 mx.np.example."},
}
SERVFAIL = ("_dmarc.tempfail.example", "ghost.slow.example")
# ghost.slow.example's existence check fails; its organisational domain has np=.
RECORDS["_dmarc.slow.example"] = {"TXT": "v=DMARC1; p=reject; np=reject"}

#: Message-IDs on either side of pct=50 (sample() is SHA-256 modulo 100; see the test).
SAMPLED = "<sampled-1@pct50.example>"
NOT_SAMPLED = "<sampled-0@pct50.example>"


def ctx() -> Context:
    return make_ctx(RECORDS, servfail=SERVFAIL)


def gmail_reject(domain: str) -> str:
    return (
        f"550 5.7.26 Unauthenticated email from {domain} is not accepted due to domain's DMARC "
        f"policy. Please contact the administrator of {domain} domain. If this was a legitimate "
        "mail please visit https://support.google.com/mail/?p=DmarcRejection to learn about the "
        "DMARC initiative. If the messages are valid and aren't spam, contact the administrator "
        "of the receiving mail server to determine why your outgoing messages don't pass "
        "authentication checks."
    )


def gmail_temperror(domain: str) -> str:
    return (
        f"451 4.7.26 Unauthenticated email from {domain} is not accepted due to domain's DMARC "
        "policy, but temporary DNS failures prevent authentication. Please contact the "
        f"administrator of {domain} domain if this was a legitimate mail. To learn about the "
        "DMARC initiative, go to https://support.google.com/mail/?p=DmarcRejection"
    )


def message(from_field: str | None, message_id: str = "<m1@example.net>") -> bytes:
    lines = [f"From: {from_field}"] if from_field is not None else []
    lines += ["To: <bob@example.org>", "Subject: hi", f"Message-ID: {message_id}"]
    return ("\r\n".join(lines) + "\r\n\r\nbody\r\n").encode()


def make_session(
    author: str | None,
    *,
    spf: str | None = None,
    dkim: tuple[str, ...] = (),
    mail_from: str = "bounce@sender.example",
    spf_result: str = "pass",
    dkim_result: str = "pass",
    message_id: str = "<m1@example.net>",
    arc: ArcAuth | None = None,
    from_field: str | None = None,
) -> Session:
    session = Session(Client("127.0.0.1", address="192.0.2.25"))
    session.helo = "mail.sender.example"
    session.helo_verb = "EHLO"
    session.mail_from = mail_from
    session.rcpt_to = ["bob@example.org"]
    field = from_field if from_field is not None else (f"<{author}>" if author else None)
    session.message = message(field, message_id)
    if spf is not None:
        identity = "mailfrom" if mail_from else "helo"
        value = mail_from or session.helo
        session.auth.spf = [SpfAuth(identity, spf, spf_result, value)]  # type: ignore[arg-type]
    session.auth.dkim = [DkimAuth(dkim_result, d) for d in dkim]  # type: ignore[arg-type]
    session.auth.arc = arc
    return session


async def run(
    session: Session, replies: dict[str, Reply] | None = None, **options: Any
) -> Verdict | None:
    policy = Dmarc(DmarcOptions(**options), replies=replies)
    return await policy.check(Stage.EOD, session, ctx())


def test_registered_with_its_outcomes_and_requirements() -> None:
    assert Dmarc in BUILTIN
    assert Dmarc.requires == ("spf", "dkim")
    assert Dmarc.stages == frozenset({Stage.EOD})
    assert {o.id for o in Dmarc.outcomes} == {
        "DMARC_REJECT",
        "DMARC_QUARANTINE",
        "DMARC_NOT_ALIGNED",
        "DMARC_RECORD_MISSING",
        "DMARC_RECORD_INVALID",
        "DMARC_TEMPERROR",
    }


# -- alignment: SPF and DKIM, relaxed and strict, under multi-label public suffixes --------

#: (From address, SPF pass domain, DKIM pass d=, passes): every failing row is p=reject's
#: refusal with Gmail's text, every passing row its control.
ALIGNMENT = [
    # SPF, relaxed (the default): same organisational domain
    ("a@example.com", "example.com", (), True),
    ("a@example.com", "bounces.example.com", (), True),
    ("a@mail.example.com", "example.com", (), True),
    ("a@example.com", "example.net", (), False),
    ("a@example.com", "notexample.com", (), False),
    # DKIM, relaxed
    ("a@example.com", None, ("example.com",), True),
    ("a@example.com", None, ("mail.example.com",), True),
    ("a@mail.example.com", None, ("example.com",), True),
    ("a@example.com", None, ("example.net",), False),
    ("a@example.com", None, ("esp.example", "example.com"), True),
    ("a@example.com", None, (), False),
    # multi-label public suffix: co.uk is the suffix, example.co.uk the organisation
    ("a@mail.example.co.uk", "example.co.uk", (), True),
    ("a@example.co.uk", "a.example.co.uk", (), True),
    ("a@example.co.uk", None, ("b.example.co.uk",), True),
    ("a@example.co.uk", "other.co.uk", (), False),
    ("a@example.co.uk", None, ("co.uk",), False),
    # strict (adkim=s, aspf=s): the very name
    ("a@strict.example", "strict.example", (), True),
    ("a@strict.example", None, ("strict.example",), True),
    ("a@strict.example", "mail.strict.example", (), False),
    ("a@strict.example", None, ("mail.strict.example",), False),
    ("a@strict.example", "mail.strict.example", ("sel.strict.example",), False),
]


@pytest.mark.parametrize(("author", "spf", "dkim", "passes"), ALIGNMENT)
async def test_alignment_table(
    author: str, spf: str | None, dkim: tuple[str, ...], passes: bool
) -> None:
    session = make_session(author, spf=spf, dkim=dkim)
    verdict = await run(session)
    domain = author.partition("@")[2]
    result = session.auth.dmarc
    assert result is not None and result.from_domain == domain
    if passes:
        assert verdict is None
        assert result.result == "pass" and result.aligned
        return
    assert verdict is not None and verdict.outcome in ("DMARC_REJECT", "DMARC_QUARANTINE")
    assert result.result == "fail" and not result.aligned
    if verdict.outcome == "DMARC_REJECT":
        assert verdict.action is Action.REJECT
        assert wire(verdict) == gmail_reject(domain)
    else:  # a subdomain of example.co.uk: its sp=quarantine, accepted with a note
        assert verdict.action is Action.DUNNO and verdict.reply is None


@pytest.mark.parametrize(
    ("spf_result", "dkim_result"),
    [("fail", "fail"), ("softfail", "permerror"), ("neutral", "temperror"), ("none", "policy")],
)
async def test_only_a_pass_aligns(spf_result: str, dkim_result: str) -> None:
    session = make_session(
        "a@example.com",
        spf="example.com",
        dkim=("example.com",),
        spf_result=spf_result,
        dkim_result=dkim_result,
    )
    verdict = await run(session)
    assert verdict is not None and verdict.outcome == "DMARC_REJECT"
    assert wire(verdict) == gmail_reject("example.com")


async def test_the_null_sender_aligns_by_its_helo_identity() -> None:
    session = make_session("a@example.com", spf="mail.example.com", mail_from="")
    assert session.auth.spf[0].identity == "helo"
    assert await run(session) is None
    assert session.auth.dmarc is not None and session.auth.dmarc.aligned == "spf"


async def test_a_passing_helo_identity_does_not_stand_for_mail_from() -> None:
    session = make_session("a@example.com")
    session.auth.spf = [
        SpfAuth("helo", "mail.example.com", "pass", "mail.example.com"),
        SpfAuth("mailfrom", "sender.example", "pass", "bounce@sender.example"),
    ]
    verdict = await run(session)
    assert verdict is not None and verdict.outcome == "DMARC_REJECT"


async def test_the_result_goes_into_authentication_results() -> None:
    session = make_session("a@example.com", spf="sender.example", dkim=("esp.example",))
    await run(session)
    header = session.auth.header("mx.strictmx.test")
    assert "dmarc=fail" in header and "header.from=example.com" in header
    assert "policy.dmarc=reject" in header
    assert 'reason="SPF passes for sender.example, not aligned (relaxed), and DKIM passes ' in (
        header.replace("\r\n\t", " ")
    )


async def test_both_aligned_are_recorded() -> None:
    session = make_session("a@example.com", spf="example.com", dkim=("example.com",))
    assert await run(session) is None
    assert session.auth.dmarc is not None and session.auth.dmarc.aligned == "spf,dkim"


# -- disposition: p, sp, np, pct, t ------------------------------------------------------

#: (From address, options, outcome or None for pass/none, wire or None for accepted,
#: dmarc= result, the policy recorded, the disposition recorded). Nothing aligns.
DISPOSITION: list[tuple[str, dict[str, Any], str | None, str | None, str, str, str]] = [
    # p=reject at the From domain, and the organisational domain's p= for a subdomain
    ("a@example.com", {}, "DMARC_REJECT", gmail_reject("example.com"), "fail", "reject", "reject"),
    (
        "a@mail.example.com",
        {},
        "DMARC_REJECT",
        gmail_reject("mail.example.com"),
        "fail",
        "reject",
        "reject",
    ),
    # record at the organisational domain only; a subdomain's own record wins
    (
        "a@a.orgonly.example",
        {},
        "DMARC_REJECT",
        gmail_reject("a.orgonly.example"),
        "fail",
        "reject",
        "reject",
    ),
    ("a@own.orgonly.example", {}, "DMARC_NOT_ALIGNED", None, "fail", "none", "none"),
    # sp= for a subdomain, p= for the organisational domain itself
    ("a@mail.example.co.uk", {}, "DMARC_QUARANTINE", None, "fail", "quarantine", "quarantine"),
    (
        "a@example.co.uk",
        {},
        "DMARC_REJECT",
        gmail_reject("example.co.uk"),
        "fail",
        "reject",
        "reject",
    ),
    # quarantine: accepted with a note by default, refused or deferred when asked
    ("a@quar.example", {}, "DMARC_QUARANTINE", None, "fail", "quarantine", "quarantine"),
    (
        "a@quar.example",
        {"quarantine": "reject"},
        "DMARC_QUARANTINE",
        "550 5.7.1 Message from quar.example fails DMARC and the domain's policy is quarantine",
        "fail",
        "quarantine",
        "quarantine",
    ),
    (
        "a@quar.example",
        {"quarantine": "defer"},
        "DMARC_QUARANTINE",
        "450 4.7.1 Message from quar.example fails DMARC and the domain's policy is quarantine",
        "fail",
        "quarantine",
        "quarantine",
    ),
    # reject deferred or accepted when asked
    (
        "a@example.com",
        {"reject": "defer"},
        "DMARC_REJECT",
        gmail_reject("example.com").replace("550 5.7.26", "450 4.7.26", 1),
        "fail",
        "reject",
        "reject",
    ),
    ("a@example.com", {"reject": "accept"}, "DMARC_REJECT", None, "fail", "reject", "reject"),
    # p=none: not aligned, accepted with a note unless refused
    ("a@none.example", {}, "DMARC_NOT_ALIGNED", None, "fail", "none", "none"),
    (
        "a@none.example",
        {"not_aligned": "reject"},
        "DMARC_NOT_ALIGNED",
        "550 5.7.1 The From: domain none.example is not aligned with a passing SPF or DKIM "
        "domain (DMARC fails under p=none)",
        "fail",
        "none",
        "none",
    ),
    # pct=: 0 and 100; a message not sampled gets the next policy down (RFC 7489 §6.6.4)
    ("a@pct0.example", {}, "DMARC_QUARANTINE", None, "fail", "reject", "quarantine"),
    (
        "a@pct100.example",
        {},
        "DMARC_REJECT",
        gmail_reject("pct100.example"),
        "fail",
        "reject",
        "reject",
    ),
    # DMARCbis ignores pct=
    (
        "a@pct0.example",
        {"follows": "dmarcbis"},
        "DMARC_REJECT",
        gmail_reject("pct0.example"),
        "fail",
        "reject",
        "reject",
    ),
    # t=y (DMARCbis): one level down; RFC 7489 does not know t=
    (
        "a@testing.example",
        {"follows": "dmarcbis"},
        "DMARC_QUARANTINE",
        None,
        "fail",
        "reject",
        "quarantine",
    ),
    (
        "a@testing.example",
        {},
        "DMARC_REJECT",
        gmail_reject("testing.example"),
        "fail",
        "reject",
        "reject",
    ),
    # np= (DMARCbis) for a subdomain that does not exist; sp= for one that does (an MX)
    (
        "a@ghost.np.example",
        {"follows": "dmarcbis"},
        "DMARC_QUARANTINE",
        None,
        "fail",
        "quarantine",
        "quarantine",
    ),
    (
        "a@ghost.np.example",
        {"follows": "dmarcbis", "quarantine": "reject"},
        "DMARC_QUARANTINE",
        "550 5.7.1 Message from ghost.np.example fails DMARC and the domain's policy is quarantine",
        "fail",
        "quarantine",
        "quarantine",
    ),
    (
        "a@www.np.example",
        {"follows": "dmarcbis"},
        "DMARC_NOT_ALIGNED",
        None,
        "fail",
        "none",
        "none",
    ),
    ("a@ghost.np.example", {}, "DMARC_NOT_ALIGNED", None, "fail", "none", "none"),
    # the organisational domain itself: p=, never np=
    (
        "a@np.example",
        {"follows": "dmarcbis"},
        "DMARC_REJECT",
        gmail_reject("np.example"),
        "fail",
        "reject",
        "reject",
    ),
    # no record: accepted with a note unless refused (Gmail's bulk rule)
    ("a@missing.example", {}, "DMARC_RECORD_MISSING", None, "none", "", ""),
    (
        "a@missing.example",
        {"record_missing": "reject"},
        "DMARC_RECORD_MISSING",
        "550 5.7.1 The From: domain missing.example publishes no DMARC record",
        "none",
        "",
        "",
    ),
    # tag names are case-insensitive, the DMARC1 value is not (RFC 7489 §6.4's ABNF)
    (
        "a@upper.example",
        {},
        "DMARC_REJECT",
        gmail_reject("upper.example"),
        "fail",
        "reject",
        "reject",
    ),
    # records that are not v=DMARC1 first (another version, dmarc1) are ignored
    ("a@notdmarc.example", {}, "DMARC_RECORD_MISSING", None, "none", "", ""),
    # two records, or no usable p= without a valid rua=: no DMARC (RFC 7489 §6.6.3)
    ("a@two.example", {}, "DMARC_RECORD_INVALID", None, "permerror", "", ""),
    ("a@bad.example", {}, "DMARC_RECORD_INVALID", None, "permerror", "", ""),
    ("a@junk.example", {}, "DMARC_RECORD_INVALID", None, "permerror", "", ""),
    (
        "a@two.example",
        {"record_invalid": "reject"},
        "DMARC_RECORD_INVALID",
        "550 5.7.1 The DMARC record of the From: domain two.example cannot be used",
        "permerror",
        "",
        "",
    ),
    # an invalid p= with a valid rua= is p=none
    ("a@badrua.example", {}, "DMARC_NOT_ALIGNED", None, "fail", "none", "none"),
    # SERVFAIL: 4xx; the existence check for np= failing is a temperror too
    (
        "a@tempfail.example",
        {},
        "DMARC_TEMPERROR",
        gmail_temperror("tempfail.example"),
        "temperror",
        "",
        "",
    ),
    (
        "a@tempfail.example",
        {"temperror": "reject"},
        "DMARC_TEMPERROR",
        gmail_temperror("tempfail.example").replace("451 4.7.26", "550 5.7.26", 1),
        "temperror",
        "",
        "",
    ),
    ("a@tempfail.example", {"temperror": "accept"}, "DMARC_TEMPERROR", None, "temperror", "", ""),
    (
        "a@ghost.slow.example",
        {"follows": "dmarcbis"},
        "DMARC_TEMPERROR",
        gmail_temperror("ghost.slow.example"),
        "temperror",
        "",
        "",
    ),
]


@pytest.mark.parametrize(
    ("author", "options", "outcome", "on_wire", "result", "policy", "disposition"), DISPOSITION
)
async def test_disposition_table(
    author: str,
    options: dict[str, Any],
    outcome: str | None,
    on_wire: str | None,
    result: str,
    policy: str,
    disposition: str,
) -> None:
    session = make_session(author, spf="sender.example", dkim=("esp.example",))
    verdict = await run(session, **options)
    recorded = session.auth.dmarc
    assert recorded is not None
    assert (recorded.result, recorded.policy, recorded.disposition) == (
        result,
        policy,
        disposition,
    )
    assert verdict is not None and verdict.policy == "dmarc" and verdict.outcome == outcome
    assert verdict.reason
    if on_wire is None:
        # accepted: a note in the journal, nothing on the wire
        assert verdict.action is Action.DUNNO and verdict.reply is None
        assert "accepted" in verdict.reason
    else:
        assert wire(verdict) == on_wire
        assert verdict.action is (Action.DEFER if on_wire[0] == "4" else Action.REJECT)


@pytest.mark.parametrize("author", ["a@pct0.example", "a@pct100.example", "a@pct50.example"])
async def test_pct_controls_pass_whatever_the_sample(author: str) -> None:
    session = make_session(author, dkim=(author.partition("@")[2],))
    assert await run(session) is None


def test_sampling_is_reproducible() -> None:
    assert sample(SAMPLED) == sample(SAMPLED) < 50 <= sample(NOT_SAMPLED)


@pytest.mark.parametrize(
    ("message_id", "outcome", "disposition"),
    [(SAMPLED, "DMARC_REJECT", "reject"), (NOT_SAMPLED, "DMARC_QUARANTINE", "quarantine")],
)
async def test_pct_50_samples_by_message_id(
    message_id: str, outcome: str, disposition: str
) -> None:
    session = make_session("a@pct50.example", message_id=message_id)
    verdict = await run(session)
    assert verdict is not None and verdict.outcome == outcome
    assert session.auth.dmarc is not None and session.auth.dmarc.disposition == disposition
    if outcome == "DMARC_REJECT":
        assert wire(verdict) == gmail_reject("pct50.example")
        assert f"{sample(message_id)} < pct=50" in verdict.reason
    else:
        assert verdict.reply is None and "not sampled" in verdict.reason


# -- ARC override --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arc", "trusted", "refused"),
    [
        (ArcAuth("pass", 2, ("forwarder.example", "lists.example")), ("lists.example",), False),
        (ArcAuth("pass", 2, ("lists.example", "forwarder.example")), ("lists.example",), True),
        (ArcAuth("fail", 1, ("lists.example",)), ("lists.example",), True),
        (ArcAuth("pass", 1, ("lists.example",)), (), True),
        (None, ("lists.example",), True),
    ],
)
async def test_a_trusted_arc_sealer_overrides_a_failure(
    arc: ArcAuth | None, trusted: tuple[str, ...], refused: bool
) -> None:
    session = make_session("a@example.com", arc=arc)
    verdict = await run(session, trusted_arc_sealers=list(trusted))
    assert verdict is not None and verdict.outcome == "DMARC_REJECT"
    assert session.auth.dmarc is not None and session.auth.dmarc.result == "fail"
    if refused:
        assert wire(verdict) == gmail_reject("example.com")
    else:
        assert verdict.action is Action.DUNNO and verdict.reply is None
        assert "lists.example, a trusted sealer" in verdict.reason
        assert session.auth.dmarc.disposition == "none"


# -- exactly one From address ------------------------------------------------------------


@pytest.mark.parametrize(
    ("from_field", "why"),
    [
        (None, "0 From fields"),
        ("<a@example.com>, <b@example.com>", "holds 2 addresses"),
        ("undisclosed-recipients:;", "holds 0 addresses"),
        ("<a@[192.0.2.1]>", "is not a domain name"),
    ],
)
async def test_not_exactly_one_from_address_is_left_to_headers(
    from_field: str | None, why: str
) -> None:
    session = make_session(None, from_field=from_field or "")
    if from_field is None:
        session.message = message(None)
    assert await run(session, record_missing="reject") is None
    recorded = session.auth.dmarc
    assert recorded is not None and recorded.result == "permerror"
    assert why in recorded.reason


async def test_two_from_fields_are_left_to_headers() -> None:
    session = make_session("a@example.com")
    assert session.message is not None
    session.message = b"From: <b@example.com>\r\n" + session.message
    assert await run(session) is None
    assert session.auth.dmarc is not None and "2 From fields" in session.auth.dmarc.reason


async def test_a_from_with_a_display_name_control() -> None:
    session = make_session(None, from_field='"Ann Example" <a@Example.COM>', spf="example.com")
    assert await run(session) is None
    assert session.auth.dmarc is not None and session.auth.dmarc.from_domain == "example.com"


async def test_no_message_no_opinion() -> None:
    session = make_session("a@example.com")
    session.message = None
    assert await run(session) is None
    assert session.auth.dmarc is None


# -- the record parser ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v=DMARC1; p=reject", DmarcRecord("reject")),
        (
            "v=DMARC1 ; P = Quarantine ; sp=none; np=reject; pct=20; adkim=s; aspf=S; t=y; x=1",
            DmarcRecord("quarantine", "none", "reject", 20, "s", "s", True),
        ),
        (
            "v=DMARC1; p=none; pct=101",
            DmarcRecord("none", notes=("pct='101' is not 0-100; read as 100",)),
        ),
        (
            "v=DMARC1; p=none; adkim=x",
            DmarcRecord("none", notes=("adkim='x' is not r or s; read as r",)),
        ),
        ("v=DMARC1; p=reject; p=none", DmarcRecord("reject")),
        ("v=DMARC1; p=reject;", DmarcRecord("reject")),
    ],
)
def test_parse_record(text: str, expected: DmarcRecord) -> None:
    assert parse_record(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("v=DMARC1", "no p= tag"),
        ("v=DMARC1; p=block", "p='block' is not none, quarantine or reject"),
        ("v=DMARC1; p=reject; sp=maybe", "sp='maybe'"),
        ("v=DMARC1; p=reject; rua=not a uri; sp=x", "sp='x'"),
        ("v=DMARC1; p=reject; junk", "'junk' is not a tag=value pair"),
    ],
)
def test_parse_record_errors(text: str, message: str) -> None:
    with pytest.raises(RecordError, match=message.replace("(", r"\(")):
        parse_record(text)


#: Record-shaped text: tags, separators, digits of other scripts, stray bytes.
_RECORD_PARTS = st.sampled_from(
    [
        "v=DMARC1",
        ";",
        " ",
        "=",
        "p",
        "sp",
        "np",
        "pct",
        "adkim",
        "t",
        "rua",
        "reject",
        "none",
        "quarantine",
        "mailto:a@b",
        "s",
        "r",
        "y",
        "100",
        "²",
        "٣",
        "-1",
        ",",
        "\x00",
        "é",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_RECORD_PARTS | st.text(max_size=5), max_size=24))
def test_any_record_text_is_a_record_or_a_record_error(parts: list[str]) -> None:
    text = "v=DMARC1;" + "".join(parts)
    try:
        record = parse_record(text)
    except RecordError as exc:
        assert str(exc)
    else:
        assert record.p in ("none", "quarantine", "reject") and 0 <= record.pct <= 100


def test_an_invalid_sp_with_a_valid_rua_is_p_none() -> None:
    record = parse_record("v=DMARC1; p=reject; sp=maybe; rua=mailto:d@example.com")
    assert (record.p, record.sp) == ("none", None)
    assert "read as p=none" in record.notes[0]


@pytest.mark.parametrize(
    ("identifier", "author", "mode", "expected"),
    [
        ("EXAMPLE.com.", "example.com", "s", True),
        ("a.example.co.uk", "b.example.co.uk", "r", True),
        ("a.example.co.uk", "b.example.co.uk", "s", False),
        ("example.co.uk", "other.co.uk", "r", False),
        ("a.blogspot.com", "b.blogspot.com", "r", False),  # a private-section suffix
    ],
)
def test_aligned(identifier: str, author: str, mode: Any, expected: bool) -> None:
    assert aligned(identifier, author, mode) is expected


# -- options and replies -----------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"reject": "drop"},
        {"follows": "rfc9999"},
        {"trusted_arc_sealers": ["not a name!"]},
        {"x": 1},
    ],
)
def test_bad_options_fail_at_load(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        DmarcOptions(**options)


async def test_a_persona_reply_override() -> None:
    session = make_session("a@example.com")
    replies = {
        "DMARC_REJECT": Reply.parse(
            "550 5.7.509 Access denied, sending domain {domain} does not pass DMARC "
            "verification and has a DMARC policy of reject."
        )
    }
    verdict = await run(session, replies=replies)
    assert verdict is not None
    assert wire(verdict) == (
        "550 5.7.509 Access denied, sending domain example.com does not pass DMARC "
        "verification and has a DMARC policy of reject."
    )


# -- strictmx reproduce ------------------------------------------------------------------


REGISTRY = load_registry()
CATALOGUE = bundled()
EXPLAINER = Explainer(CATALOGUE)
SAMPLE_FIELDS = {"domain": "example.net", "tag": "k5si1437052qkb.183"}


@pytest.mark.parametrize(
    "entry", [e for e in CATALOGUE.entries if e.policy == "dmarc"], ids=lambda e: e.id
)
def test_every_dmarc_entry_is_reproduced_over_smtp(entry: Entry) -> None:
    reply = entry.template.format(SAMPLE_FIELDS)
    bounce = reply.wire_lines(enhanced=reply.status is not None)
    found = reproduce("\n".join(bounce), entry_id=entry.id, explainer=EXPLAINER, registry=REGISTRY)
    policies = found.scenario["policies"]
    assert [p["policy"] for p in policies["mail"]] == ["spf"]
    assert [p["policy"] for p in policies["eod"]] == ["dkim", "dmarc"]
    assert found.scenario["world"]["dns"]["records"]["example.net"] == {"TXT": "v=spf1 -all"}
    scenario = scenarios.from_dict(found.scenario, source="<reproduction>", registry=REGISTRY)
    checks = runner.run(scenario)
    assert [c.problems for c in checks if not c.passed] == []
    assert checks[-1].observed.lines == bounce == found.expected


def test_reproduce_takes_the_from_domain_the_bounce_names() -> None:
    bounce = (
        "550 5.7.509 Access denied, sending domain news.example.com does not pass DMARC "
        "verification and has a DMARC policy of reject."
    )
    found = reproduce(bounce, explainer=EXPLAINER, registry=REGISTRY)
    assert found.entry.id == "microsoft-dmarc-reject"
    records = found.scenario["world"]["dns"]["records"]
    assert records["_dmarc.news.example.com"] == {"TXT": "v=DMARC1; p=reject"}
    assert "From: <alice@news.example.com>" in found.scenario["expect"][-1]["message"]
    scenario = scenarios.from_dict(found.scenario, source="<reproduction>", registry=REGISTRY)
    checks = runner.run(scenario)
    assert [c.problems for c in checks if not c.passed] == []
    assert checks[-1].observed.lines == [bounce]


def test_reproduce_names_a_required_policy_that_is_not_installed() -> None:
    registry = {k: v for k, v in REGISTRY.items() if k != "dkim"}
    with pytest.raises(
        ReproduceError, match="policy 'dmarc' reads the results of 'dkim', which is not installed"
    ):
        reproduce(
            "550 5.7.1 Email rejected per DMARC policy.",
            entry_id="stalwart-dmarc-reject",
            explainer=EXPLAINER,
            registry=registry,
        )


# -- over SMTP, with spf's own evaluation ------------------------------------------------

WIRE_SCENARIO = {
    "name": "dmarc-wire",
    "receiver": {"hostname": "mx.strictmx.test", "delay_reject": False},
    "policies": {
        "mail": [{"policy": "spf", "fail": "accept"}],
        "eod": [{"policy": "dkim"}, {"policy": "dmarc"}],
    },
    "world": {
        "dns": {
            "mode": "hermetic",
            "records": {
                "example.com": {"TXT": "v=spf1 ip4:192.0.2.25 -all"},
                "_dmarc.example.com": {"TXT": "v=DMARC1; p=reject"},
            },
        },
        "clients": {"127.0.0.1": {"address": "192.0.2.25"}, "127.0.0.2": {"address": "192.0.2.99"}},
    },
}


@pytest.mark.parametrize("client", ["127.0.0.1", "127.0.0.2"])
def test_over_smtp_spf_decides_alignment_and_the_header_tells(strictmx: Any, client: str) -> None:
    """127.0.0.1 is 192.0.2.25, which example.com's SPF lists: aligned, accepted, and the
    stored message says spf=pass and dmarc=pass. 127.0.0.2 is not listed: the same
    message is refused at end of data with Gmail's text (its control)."""
    rx = strictmx(scenarios.from_dict(WIRE_SCENARIO, source="<test>", registry=REGISTRY))
    with smtplib.SMTP(
        rx.host, rx.port, local_hostname="mail.example.com", source_address=(client, 0)
    ) as smtp:
        smtp.ehlo()
        assert smtp.mail("news@example.com")[0] == 250
        assert smtp.rcpt("bob@example.org")[0] == 250
        code, text = smtp.data(message("<ann@example.com>"))
    if client == "127.0.0.1":
        assert code == 250
        session = rx.assert_accepted()
        stored = rx.message(session["id"])
        assert stored is not None
        head = stored.split(b"\r\n\r\n", 1)[0].decode().replace("\r\n\t", " ")
        assert "spf=pass smtp.mailfrom=news@example.com" in head
        assert "dmarc=pass header.from=example.com" in head
    else:
        assert (code, text.decode().replace("\n", " ")) == (
            550,
            gmail_reject("example.com").removeprefix("550 "),
        )
        rx.assert_rejected(policy="dmarc", outcome="DMARC_REJECT", stage="eod", code=550)
