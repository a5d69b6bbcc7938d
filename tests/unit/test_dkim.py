"""The dkim policy against real signatures: keys made here, messages signed by dkimpy, keys
published in a hermetic world. Each outcome has a trigger and a control that passes."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any

import dkim as dkimpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from strictmx.policies.dkim import Dkim, DkimOptions
from strictmx.receiver.authentication import AuthResults
from strictmx.receiver.dkim_signing import sign
from strictmx.receiver.policy import Context
from strictmx.receiver.session import Client, Session
from strictmx.receiver.verdict import Action, Stage, Verdict
from tests.dkim_signing import MESSAGE, NOW, SIGNED_AT, keys, make_ctx
from tests.unit.worlds import objection_by, wire

#: Every failure refused, so a trigger shows its reply; the controls pass regardless.
STRICT: dict[str, Any] = {"failure": "reject"}


def signed(
    selector: str = "rsa2048",
    message: bytes = MESSAGE,
    *,
    key: str | None = None,
    **options: Any,
) -> bytes:
    options.setdefault("timestamp", SIGNED_AT)
    header = sign(message, selector, "example.com", keys()[key or selector], **options)
    return header + message


async def run(
    message: bytes, ctx: Context | None = None, **options: Any
) -> tuple[Verdict | None, Session]:
    session = Session(Client("127.0.0.1", address="192.0.2.25"))
    session.helo = "mail.example.com"
    session.mail_from = "alice@example.com"
    session.message = message
    policy = Dkim(DkimOptions(**{**STRICT, **options}))
    verdict = await policy.check(Stage.EOD, session, ctx or make_ctx())
    return verdict, session


async def refused(message: bytes, outcome: str, **options: Any) -> Verdict:
    verdict, _ = await run(message, **options)
    return objection_by("dkim", verdict, outcome)


async def passes(message: bytes, ctx: Context | None = None, **options: Any) -> Session:
    verdict, session = await run(message, ctx, **options)
    assert verdict is None, verdict.reason
    assert session.auth.dkim is not None
    assert any(s.result == "pass" for s in session.auth.dkim)
    return session


def altered(message: bytes, old: bytes, new: bytes) -> bytes:
    assert message.count(old) == 1
    return message.replace(old, new)


# -- pass ---------------------------------------------------------------------------------


async def test_rsa_sha256_passes_and_is_recorded() -> None:
    message = signed()
    session = await passes(message)
    assert session.auth.dkim is not None
    (sig,) = session.auth.dkim
    assert (sig.result, sig.domain, sig.selector, sig.algorithm) == (
        "pass",
        "example.com",
        "rsa2048",
        "rsa-sha256",
    )
    assert sig.key_bits == 2048
    assert message.decode().split("b=")[-1].replace("\r\n ", "").startswith(sig.header_b)
    assert len(sig.header_b) == 8
    assert "from" in sig.signed_headers


async def test_ed25519_passes() -> None:
    session = await passes(signed("ed25519"))
    assert session.auth.dkim is not None
    assert session.auth.dkim[0].algorithm == "ed25519-sha256"


async def test_rsa_1024_is_the_minimum_that_passes() -> None:
    await passes(signed("rsa1024"))


async def test_simple_canonicalisation_passes() -> None:
    await passes(signed(canonicalize="simple/simple"))


async def test_one_passing_signature_of_two_is_enough() -> None:
    good = signed("ed25519")
    broken = sign(MESSAGE, "rsa2048", "example.com", keys()["other"], timestamp=SIGNED_AT)
    session = await passes(broken + good)
    assert session.auth.dkim is not None
    assert [s.result for s in session.auth.dkim] == ["fail", "pass"]


async def test_authentication_results_names_the_signature() -> None:
    session = await passes(signed())
    header = session.auth.header(HOST_ID)
    assert "dkim=pass" in header
    assert "header.d=example.com" in header
    assert "header.s=rsa2048" in header
    assert "(2048-bit key)" in header


HOST_ID = "mx.strictmx.test"


# -- none -----------------------------------------------------------------------------------


async def test_none_is_accepted_by_default_and_recorded() -> None:
    verdict, session = await run(MESSAGE, failure="accept")
    assert verdict is None
    assert session.auth.dkim == []
    assert "dkim=none" in session.auth.header(HOST_ID)


async def test_none_refused_with_stalwarts_text() -> None:
    verdict = await refused(MESSAGE, "DKIM_NONE", none="reject")
    assert wire(verdict) == "550 5.7.20 No passing DKIM signatures found."


async def test_none_control_signed() -> None:
    await passes(signed(), none="reject")


# -- body and header changed ----------------------------------------------------------------


async def test_one_changed_body_byte_is_a_body_hash_failure() -> None:
    message = altered(signed(), b"figures are", b"figures were")
    verdict = await refused(message, "DKIM_BODY_HASH")
    assert wire(verdict) == (
        "550 5.7.20 No passing DKIM signature found: body hash did not verify "
        "(d=example.com, s=rsa2048)"
    )
    assert verdict.details["dkim_result"] == "fail"


async def test_one_changed_header_byte_is_a_bad_signature() -> None:
    message = altered(signed(), b"Subject: Quarterly", b"Subject: Quarterlx")
    verdict = await refused(message, "DKIM_BAD_SIGNATURE")
    assert "signature did not verify (d=example.com, s=rsa2048)" in wire(verdict)


async def test_ed25519_changed_header_is_a_bad_signature() -> None:
    message = altered(signed("ed25519"), b"To: Bob", b"To: Rob")
    await refused(message, "DKIM_BAD_SIGNATURE")


async def test_wrong_key_published_is_a_bad_signature() -> None:
    await refused(signed("rsa2048", key="other"), "DKIM_BAD_SIGNATURE")


async def test_unsigned_header_may_change() -> None:
    # Control for the changed header: a field outside h= is not covered.
    message = altered(signed(), b"List-Unsubscribe-Post: List", b"List-Unsubscribe-Post: Lost")
    await passes(message)


async def test_relaxed_body_tolerates_trailing_whitespace() -> None:
    # Control for the changed body: relaxed canonicalisation ignores trailing blanks.
    message = altered(signed(), b"attached.\r\n", b"attached.  \r\n")
    await passes(message)


# -- keys -------------------------------------------------------------------------------------


async def test_key_not_found() -> None:
    verdict = await refused(
        sign(MESSAGE, "missing", "example.com", keys()["rsa2048"]) + MESSAGE, "DKIM_KEY_NOT_FOUND"
    )
    assert wire(verdict) == (
        "550 5.7.20 No passing DKIM signature found: no key for signature at "
        "missing._domainkey.example.com"
    )
    assert verdict.details["dkim_result"] == "permerror"


async def test_key_revoked() -> None:
    message = sign(MESSAGE, "revoked", "example.com", keys()["rsa2048"]) + MESSAGE
    verdict = await refused(message, "DKIM_KEY_REVOKED")
    assert "key revoked at revoked._domainkey.example.com" in wire(verdict)


async def test_key_revoked_control_published_key() -> None:
    await passes(signed("rsa2048"))


@pytest.mark.parametrize("name", ["rsa512", "rsa768"])
async def test_short_key_is_too_weak(name: str) -> None:
    verdict = await refused(signed(name), "DKIM_KEY_TOO_WEAK")
    bits = name.removeprefix("rsa")
    assert wire(verdict) == (
        f"550 5.7.21 No acceptable DKIM signature found: {bits}-bit key under 1024 (RFC 8301) "
        f"(d=example.com, s={name})"
    )
    assert verdict.details["dkim_result"] == "policy"


async def test_min_key_bits_raised_refuses_1024() -> None:
    await refused(signed("rsa1024"), "DKIM_KEY_TOO_WEAK", min_key_bits=2048)
    await passes(signed("rsa2048"), min_key_bits=2048)


async def test_servfail_on_the_key_defers() -> None:
    message = sign(MESSAGE, "broken", "example.com", keys()["rsa2048"]) + MESSAGE
    verdict = await refused(message, "DKIM_TEMPERROR")
    assert verdict.action is Action.DEFER
    assert wire(verdict) == (
        "451 4.7.20 DKIM key lookup failed temporarily for broken._domainkey.example.com"
    )
    assert verdict.details["dkim_result"] == "temperror"


async def test_timeout_on_the_key_defers() -> None:
    message = sign(MESSAGE, "slow", "example.com", keys()["rsa2048"]) + MESSAGE
    verdict = await refused(message, "DKIM_TEMPERROR")
    assert "(timeout)" in verdict.reason


async def test_temperror_accepted_when_failures_are() -> None:
    message = sign(MESSAGE, "broken", "example.com", keys()["rsa2048"]) + MESSAGE
    verdict, session = await run(message, failure="accept")
    assert verdict is None
    assert session.auth.dkim is not None
    assert session.auth.dkim[0].result == "temperror"


async def test_temperror_decides_over_an_earlier_failure() -> None:
    broken = sign(MESSAGE, "broken", "example.com", keys()["rsa2048"])
    bad = sign(MESSAGE, "rsa2048", "example.com", keys()["other"])
    await refused(bad + broken + MESSAGE, "DKIM_TEMPERROR")


async def test_temperror_control_key_answers() -> None:
    await passes(signed("rsa2048"))


async def test_malformed_key_record() -> None:
    message = sign(MESSAGE, "garbled", "example.com", keys()["rsa2048"]) + MESSAGE
    verdict = await refused(message, "DKIM_MALFORMED")
    assert "key record unusable" in verdict.reason


async def test_key_type_not_suiting_the_algorithm() -> None:
    message = sign(MESSAGE, "wrongtype", "example.com", keys()["rsa2048"]) + MESSAGE
    verdict = await refused(message, "DKIM_MALFORMED")
    assert "k=ed25519 does not suit a=rsa-sha256" in verdict.reason


async def test_key_restricted_to_sha1() -> None:
    message = sign(MESSAGE, "sha1only", "example.com", keys()["rsa2048"]) + MESSAGE
    await refused(message, "DKIM_ALGORITHM_REFUSED")


# -- algorithm, expiry, l=, signed headers ------------------------------------------------------


async def test_rsa_sha1_refused() -> None:
    verdict = await refused(signed(algorithm="rsa-sha1"), "DKIM_ALGORITHM_REFUSED")
    assert "rsa-sha1 refused (RFC 8301)" in wire(verdict)
    assert verdict.details["dkim_result"] == "policy"


async def test_unknown_algorithm_refused() -> None:
    message = altered(signed(), b"a=rsa-sha256", b"a=rsa-sha512")
    verdict = await refused(message, "DKIM_ALGORITHM_REFUSED")
    assert verdict.details["dkim_result"] == "permerror"


async def test_rsa_sha1_control_sha256() -> None:
    await passes(signed(algorithm="rsa-sha256"))


async def test_expired_by_the_scenario_clock() -> None:
    expires = SIGNED_AT + 3600
    message = signed(expires=expires)
    later = make_ctx(NOW + timedelta(hours=2))
    verdict, _ = await run(message, later)
    verdict = objection_by("dkim", verdict, "DKIM_EXPIRED")
    assert "signature expired (d=example.com, s=rsa2048)" in wire(verdict)
    # Control: the same signature before its x=, by the scenario clock.
    await passes(message, make_ctx(NOW))


async def test_expiry_follows_the_scenario_clock_not_the_machine() -> None:
    # Expired by the machine's clock (dkimpy's own check would refuse it), not the scenario's.
    past = make_ctx(datetime.fromisoformat("2001-01-01T12:00:00+00:00"))
    message = signed(timestamp=978307200, expires=978393600)  # 2001-01-01, +1 day
    assert time.time() > 978393600
    await passes(message, past)


async def test_body_length_noted_by_default() -> None:
    verdict, session = await run(signed(length=True))
    assert verdict is not None
    assert (verdict.outcome, verdict.action, verdict.reply) == (
        "DKIM_BODY_LENGTH",
        Action.DUNNO,
        None,
    )
    assert "only the first" in verdict.reason
    assert session.auth.dkim is not None
    assert session.auth.dkim[0].result == "pass"
    assert session.auth.dkim[0].body_length is not None
    # Control: a second signature over the whole body leaves nothing to note.
    both = sign(MESSAGE, "ed25519", "example.com", keys()["ed25519"]) + signed(length=True)
    await passes(both)


async def test_body_length_refused_when_asked() -> None:
    verdict = await refused(signed(length=True), "DKIM_BODY_LENGTH", body_length="refuse")
    assert "l= not accepted" in wire(verdict)
    # Control: the same option, a signature over the whole body.
    await passes(signed(), body_length="refuse")


async def test_appended_text_under_l_still_passes_when_noted() -> None:
    # What l= allows (RFC 6376 §8.2): content added after the signed length.
    verdict, session = await run(signed(length=True) + b"Buy now!\r\n")
    assert verdict is not None and verdict.action is Action.DUNNO
    assert session.auth.dkim is not None
    assert session.auth.dkim[0].result == "pass"


async def test_from_not_signed() -> None:
    message = signed(headers=("to", "subject", "date"))
    verdict = await refused(message, "DKIM_HEADER_NOT_SIGNED")
    assert "h= does not cover from" in wire(verdict)


async def test_must_sign_list_unsubscribe() -> None:
    must = ("from", "list-unsubscribe", "list-unsubscribe-post")
    verdict = await refused(signed(), "DKIM_HEADER_NOT_SIGNED", must_sign=must)
    assert "list-unsubscribe, list-unsubscribe-post" in verdict.reason
    covering = signed(
        headers=("from", "to", "subject", "list-unsubscribe", "list-unsubscribe-post")
    )
    await passes(covering, must_sign=must)


# -- malformed ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=rsa2048\r\n",  # no b=, bh=, h=
        b"DKIM-Signature: this is not a tag list\r\n",
        b"DKIM-Signature: v=1; v=1; a=rsa-sha256\r\n",  # a repeated tag
        b"DKIM-Signature: v=2; a=rsa-sha256; d=example.com; s=rsa2048; h=from; bh=AAAA; b=AAAA\r\n",
        b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=rsa2048; h=from; bh=AAAA; b=AAAA;"
        b" t=soon\r\n",
        b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=rsa2048; h=from; bh=AAAA; b=AAAA;"
        b" t=200; x=100\r\n",
    ],
)
async def test_malformed_signature_is_a_result_not_a_crash(header: bytes) -> None:
    verdict = await refused(header + MESSAGE, "DKIM_MALFORMED")
    assert verdict.details["dkim_result"] == "permerror"
    assert wire(verdict).startswith("550 5.7.20 No passing DKIM signature found: ")


async def test_malformed_control_well_formed() -> None:
    await passes(signed())


async def test_one_changed_byte_of_b_is_a_bad_signature() -> None:
    message = signed()
    at = message.index(b" b=") + 3 + 10  # past the 8 characters header.b shows
    flipped = b"B" if message[at : at + 1] != b"B" else b"C"
    verdict = await refused(message[:at] + flipped + message[at + 1 :], "DKIM_BAD_SIGNATURE")
    assert verdict.details["dkim_result"] == "fail"


# -- options -----------------------------------------------------------------------------


async def test_an_outcomes_option_overrides_failure() -> None:
    message = altered(signed(), b"figures are", b"figures were")
    verdict, _ = await run(message, failure="reject", body_hash="accept")
    assert verdict is None
    verdict, _ = await run(message, failure="accept", body_hash="defer")
    verdict = objection_by("dkim", verdict, "DKIM_BODY_HASH")
    assert wire(verdict).startswith("450 4.7.20 ")


async def test_failures_accepted_by_default() -> None:
    message = altered(signed(), b"figures are", b"figures were")
    session = Session(Client("127.0.0.1", address="192.0.2.25"))
    session.message = message
    verdict = await Dkim(DkimOptions()).check(Stage.EOD, session, make_ctx())
    assert verdict is None
    assert session.auth.dkim is not None
    assert session.auth.dkim[0].result == "fail"


def test_bad_options_fail_at_load() -> None:
    with pytest.raises(ValidationError):
        DkimOptions(failure="bounce")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        DkimOptions(body_length="drop")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        DkimOptions(min_key_bits=-1)


async def test_no_message_no_opinion() -> None:
    session = Session(Client("127.0.0.1", address="192.0.2.25"))
    assert await Dkim(DkimOptions()).check(Stage.EOD, session, make_ctx()) is None
    assert session.auth == AuthResults()


async def test_large_message_verified_off_the_loop() -> None:
    body = b"line of a long report\r\n" * 20_000  # ~460 KB, over the thread threshold
    message = MESSAGE + body
    await passes(signed(message=message))
    await refused(altered(signed(message=message), b"Bob,", b"Rob,"), "DKIM_BODY_HASH")


# -- hostile input ------------------------------------------------------------------------------


async def test_unreadable_header_with_a_signature_is_malformed() -> None:
    message = signed().replace(b"To: Bob", b"this line is no field\r\nTo: Bob")
    verdict = await refused(message, "DKIM_MALFORMED")
    assert "message header unreadable" in verdict.reason


async def test_unreadable_header_without_a_signature_is_none() -> None:
    message = MESSAGE.replace(b"To: Bob", b"this line is no field\r\nTo: Bob")
    await refused(message, "DKIM_NONE", none="reject")


_TAG_TEXT = st.text(alphabet=st.sampled_from("abdhlstvx=;: \t-._/+0123456789ABCxyz"), max_size=120)


@settings(max_examples=120, deadline=None)
@given(value=_TAG_TEXT)
def test_any_signature_value_gives_a_result_never_an_exception(value: str) -> None:
    message = f"DKIM-Signature: {value}\r\n".encode() + MESSAGE
    verdict, session = asyncio.run(run(message))
    assert session.auth.dkim is not None
    assert len(session.auth.dkim) == 1
    assert verdict is not None  # nothing random passes
    assert verdict.reply is not None
    assert verdict.reply.code in (451, 550)


@settings(max_examples=60, deadline=None)
@given(record=_TAG_TEXT)
def test_any_key_record_gives_a_result_never_an_exception(record: str) -> None:
    message = sign(MESSAGE, "fuzz", "example.com", keys()["rsa2048"]) + MESSAGE
    ctx = make_ctx(**{"fuzz._domainkey.example.com": {"TXT": record or "x"}})
    verdict, _ = asyncio.run(run(message, ctx))
    assert verdict is not None
    assert verdict.outcome in {
        "DKIM_MALFORMED",
        "DKIM_KEY_REVOKED",
        "DKIM_KEY_NOT_FOUND",
        "DKIM_ALGORITHM_REFUSED",
    }


async def test_signatures_over_the_limit_are_not_looked_up() -> None:
    bad = sign(MESSAGE, "rsa2048", "example.com", keys()["other"], timestamp=SIGNED_AT)
    good = sign(MESSAGE, "ed25519", "example.com", keys()["ed25519"], timestamp=SIGNED_AT)
    verdict, session = await run(bad * 3 + good + MESSAGE, max_signatures=3)
    objection_by("dkim", verdict, "DKIM_BAD_SIGNATURE")
    assert session.auth.dkim is not None
    assert [s.result for s in session.auth.dkim] == ["fail", "fail", "fail", "neutral"]
    assert "over the limit of 3" in session.auth.dkim[3].reason
    # Control: within the limit, the good one counts.
    await passes(bad * 3 + good + MESSAGE, max_signatures=4)


def test_a_long_signed_header_list_folds_between_names_and_verifies_elsewhere() -> None:
    """The signer folds h= at its spaces, never inside a name: dkimpy's own verification
    (not the policy) accepts what it signs when the list is long enough to fold."""
    names = ("from", "to", "subject", "date", "message-id", "list-id", "list-unsubscribe",
             "list-unsubscribe-post")  # fmt: skip
    message = MESSAGE.replace(
        b"\r\n\r\n",
        b"\r\nList-Id: <news.example.com>\r\nList-Unsubscribe: <https://example.com/u>\r\n"
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\n",
        1,
    )
    key = keys()["rsa2048"]
    signed = sign(message, "s1", "example.com", key, headers=names) + message
    header = signed.split(b"\r\n\r\n", 1)[0]
    assert b"\r\n " in header.split(b"h=", 1)[1].split(b";", 1)[0]  # h= is folded
    record = key.record.encode()
    assert dkimpy.verify(signed, dnsfunc=lambda name, timeout=5: record)
