from __future__ import annotations

import ssl
from typing import Any

import pytest
from pydantic import ValidationError

from strictmx.policies import BUILTIN
from strictmx.policies.tls_required import TlsRequired, TlsRequiredOptions, protocol_rank
from strictmx.receiver import scenario as scenarios
from strictmx.receiver.session import Client, Session
from strictmx.receiver.tls import Floor
from strictmx.receiver.verdict import Action, Reply, Stage, Verdict

from .worlds import make_ctx, objection_by, wire


def make_session(tls_version: str | None = None) -> Session:
    session = Session(Client("127.0.0.1", address="203.0.113.9"))
    session.helo = "mail.example.net"
    session.mail_from = "ann@example.net"
    session.rcpt = "bob@example.org"
    if tls_version is not None:
        session.tls = True
        session.tls_version = tls_version
    return session


async def run(
    tls_version: str | None = None,
    *,
    stage: Stage = Stage.MAIL,
    replies: dict[str, str] | None = None,
    **options: Any,
) -> Verdict | None:
    parsed = {k: Reply.parse(v) for k, v in (replies or {}).items()}
    for outcome_id, reply in parsed.items():
        TlsRequired.validate_reply(outcome_id, reply)
    policy = TlsRequired(TlsRequiredOptions(**options), replies=parsed)
    return await policy.check(stage, make_session(tls_version), make_ctx())


def test_it_is_a_builtin_with_its_outcomes() -> None:
    assert TlsRequired in BUILTIN
    assert {o.id for o in TlsRequired.outcomes} == {"TLS_REQUIRED", "TLS_VERSION_TOO_OLD"}
    assert TlsRequired.stages == {Stage.MAIL, Stage.RCPT, Stage.DATA}


# -- TLS_REQUIRED ------------------------------------------------------------------------


@pytest.mark.parametrize("stage", [Stage.MAIL, Stage.RCPT, Stage.DATA])
async def test_clear_text_is_refused_with_postfixs_words(stage: Stage) -> None:
    verdict = objection_by("tls_required", await run(stage=stage), "TLS_REQUIRED")
    assert wire(verdict) == "450 4.7.1 Session encryption is required"
    assert verdict.action is Action.DEFER
    assert "without STARTTLS" in verdict.reason


async def test_a_starttls_session_passes() -> None:
    assert await run("TLSv1.3") is None
    assert await run("TLSv1.2") is None


async def test_gmails_reply_is_an_override() -> None:
    verdict = objection_by(
        "tls_required",
        await run(
            stage=Stage.RCPT,
            replies={"TLS_REQUIRED": "421 4.7.0 TLS required for RCPT domain, closing connection."},
        ),
        "TLS_REQUIRED",
    )
    assert wire(verdict) == "421 4.7.0 TLS required for RCPT domain, closing connection."


async def test_at_names_the_one_stage_that_refuses() -> None:
    assert await run(stage=Stage.MAIL, at="rcpt") is None
    assert await run(stage=Stage.DATA, at="rcpt") is None
    objection_by("tls_required", await run(stage=Stage.RCPT, at="rcpt"), "TLS_REQUIRED")


# -- TLS_VERSION_TOO_OLD -----------------------------------------------------------------


@pytest.mark.parametrize("old", ["TLSv1", "TLSv1.1", "SSLv3"])
async def test_a_protocol_under_the_default_floor_is_refused(old: str) -> None:
    verdict = objection_by("tls_required", await run(old), "TLS_VERSION_TOO_OLD")
    assert wire(verdict) == f"450 4.7.1 TLS {old} is not accepted, use TLSv1.2 or newer"
    assert verdict.details == {"tls_version": old, "min_version": "TLSv1.2"}


async def test_a_floor_of_tls_1_3_refuses_1_2_and_passes_1_3() -> None:
    verdict = objection_by(
        "tls_required", await run("TLSv1.2", min_version="TLSv1.3"), "TLS_VERSION_TOO_OLD"
    )
    assert "TLSv1.3 or newer" in wire(verdict)
    assert await run("TLSv1.3", min_version="TLSv1.3") is None


async def test_no_floor_accepts_any_protocol_and_an_unknown_name_is_not_judged() -> None:
    assert await run("TLSv1", min_version=None) is None
    assert await run("QUICv9") is None


def test_protocol_names_order_as_their_versions() -> None:
    names = ["SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
    ranks = [protocol_rank(n) for n in names]
    assert ranks == sorted(ranks)  # type: ignore[type-var]
    assert protocol_rank("garbage") is None


def test_bad_options_fail_at_load() -> None:
    with pytest.raises(ValidationError):
        TlsRequiredOptions(min_version="TLSv1.4")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        TlsRequiredOptions(at="connect")  # type: ignore[arg-type]


# -- the receiver's protocol floor (receiver.tls_min_version) ----------------------------


def test_the_floor_is_set_and_given_back_on_the_servers_context() -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    original = context.minimum_version
    floor = Floor(context)
    floor.apply("TLSv1.3")
    assert context.minimum_version is ssl.TLSVersion.TLSv1_3
    floor.apply(None)  # a scenario without a floor after one with TLS 1.3
    assert context.minimum_version == original
    floor.apply("TLSv1.2")  # never below what the context came with
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_a_floor_the_scenario_cannot_name_fails_at_load() -> None:
    with pytest.raises(
        scenarios.ScenarioError, match=r"receiver\.tls_min_version: 'TLSv1\.1' is not"
    ):
        scenarios.from_dict({"receiver": {"tls_min_version": "TLSv1.1"}}, source="<test>")
    loaded = scenarios.from_dict({"receiver": {"tls_min_version": "TLSv1.3"}}, source="<test>")
    assert loaded.receiver.tls_min_version == "TLSv1.3"
