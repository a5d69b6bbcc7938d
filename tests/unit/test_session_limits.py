from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, cast

import pytest
from pydantic import ValidationError

from strictmx.policies.session_limits import SessionLimits, SessionLimitsOptions
from strictmx.receiver.policy import ClientHistory, Context
from strictmx.receiver.session import Client, Session
from strictmx.receiver.verdict import Action, Reply, Stage, Verdict

HOST = "mx.strictmx.test"
CLIENT = "203.0.113.9"


class StepClock:
    """Test clock: monotonic time moves only when the test says so."""

    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t


def make_ctx(clock: StepClock | None = None, history: ClientHistory | None = None) -> Context:
    world = SimpleNamespace(clock=clock or StepClock())
    return Context(world=cast(Any, world), hostname=HOST, history=history or ClientHistory())


def make_session(address: str = CLIENT) -> Session:
    return Session(Client("127.0.0.1", address=address))


def policy(**options: Any) -> SessionLimits:
    return SessionLimits(SessionLimitsOptions(**options))


async def run(
    p: SessionLimits, stage: Stage, s: Session, ctx: Context | None = None
) -> Verdict | None:
    return await p.check(stage, s, ctx or make_ctx())


def objection(v: Verdict | None, outcome: str, action: Action) -> Verdict:
    assert v is not None
    assert v.policy == "session_limits"
    assert v.outcome == outcome
    assert v.action is action
    return v


def test_stages_are_the_handled_ones() -> None:
    assert SessionLimits.stages == {
        Stage.CONNECT,
        Stage.HELO,
        Stage.RCPT,
        Stage.RSET,
        Stage.NOOP,
        Stage.VRFY,
        Stage.UNKNOWN,
        Stage.ERROR,
    }


def test_options_are_validated() -> None:
    with pytest.raises(ValidationError):
        SessionLimitsOptions(max_rsets=-1)
    with pytest.raises(ValidationError):
        SessionLimitsOptions(hard_error_limit=0)
    with pytest.raises(ValidationError):
        SessionLimitsOptions.model_validate({"max_rset": 3})
    for name, field in SessionLimitsOptions.model_fields.items():
        assert field.description, name


# -- RSET ------------------------------------------------------------------------------


async def test_too_many_rsets() -> None:
    s = make_session()
    s.counters.rsets = 4
    v = objection(await run(policy(max_rsets=3), Stage.RSET, s), "TOO_MANY_RSETS", Action.REJECT)
    assert v.reply is not None
    assert v.reply.render() == "550 Too many RSETs"
    assert v.rfc_compliant is False
    assert v.reason == "4 RSET commands in this session, limit 3"


async def test_rsets_at_limit_pass() -> None:
    s = make_session()
    s.counters.rsets = 3
    assert await run(policy(max_rsets=3), Stage.RSET, s) is None


async def test_rset_limit_off_by_default() -> None:
    s = make_session()
    s.counters.rsets = 100
    assert await run(policy(), Stage.RSET, s) is None


# -- bad recipients --------------------------------------------------------------------


async def test_too_many_bad_rcpts_refuses_every_later_rcpt() -> None:
    s = make_session()
    s.rcpt = "valid@strictmx.test"
    s.counters.bad_rcpts = 10
    s.counters.rcpts_tried = 11
    v = objection(await run(policy(), Stage.RCPT, s), "TOO_MANY_BAD_RCPTS", Action.REJECT)
    assert v.reply is not None
    assert v.reply.render() == "550 Too many bad addresses"
    assert v.reason == "10 recipients already rejected in this session, limit 10"


async def test_bad_rcpts_under_limit_pass() -> None:
    s = make_session()
    s.counters.bad_rcpts = 9
    s.counters.rcpts_tried = 10
    assert await run(policy(), Stage.RCPT, s) is None


async def test_bad_rcpt_limit_disabled() -> None:
    s = make_session()
    s.counters.bad_rcpts = 500
    s.counters.rcpts_tried = 501
    assert await run(policy(max_bad_rcpts=None), Stage.RCPT, s) is None
    assert await run(policy(max_bad_rcpts=None, bad_rcpt_ratio=True), Stage.RCPT, s) is None


async def test_exim_ratio_rule_triggers() -> None:
    # 11th RCPT, 6 rejected before it, so 4 accepted: fewer than 11 // 2.
    s = make_session()
    s.counters.rcpts_tried = 11
    s.counters.bad_rcpts = 6
    p = policy(bad_rcpt_ratio=True)
    v = objection(await run(p, Stage.RCPT, s), "TOO_MANY_BAD_RCPTS", Action.REJECT)
    assert v.reason == (
        "11 RCPT commands in this session (more than 10) "
        "and only 4 recipients accepted, fewer than half"
    )


async def test_exim_ratio_rule_controls() -> None:
    p = policy(bad_rcpt_ratio=True)
    half_good = make_session()
    half_good.counters.rcpts_tried = 11
    half_good.counters.bad_rcpts = 5  # 5 accepted, not fewer than 11 // 2
    assert await run(p, Stage.RCPT, half_good) is None
    few_tried = make_session()
    few_tried.counters.rcpts_tried = 10
    few_tried.counters.bad_rcpts = 9  # 10 is not more than the limit
    assert await run(p, Stage.RCPT, few_tried) is None


async def test_reply_override() -> None:
    exim = Reply.parse("550 Rejected for too many bad recipients")
    SessionLimits.validate_reply("TOO_MANY_BAD_RCPTS", exim)
    p = SessionLimits(SessionLimitsOptions(), replies={"TOO_MANY_BAD_RCPTS": exim})
    s = make_session()
    s.counters.bad_rcpts = 10
    v = objection(await run(p, Stage.RCPT, s), "TOO_MANY_BAD_RCPTS", Action.REJECT)
    assert v.reply is not None
    assert v.reply.render() == "550 Rejected for too many bad recipients"


async def test_override_may_use_the_counts() -> None:
    reply = Reply.parse("451 4.3.0 Too many errors ({count} of {limit}), disconnecting.")
    SessionLimits.validate_reply("TOO_MANY_ERRORS", reply)
    p = SessionLimits(SessionLimitsOptions(), replies={"TOO_MANY_ERRORS": reply})
    s = make_session()
    s.counters.errors = 20
    v = objection(await run(p, Stage.ERROR, s), "TOO_MANY_ERRORS", Action.DISCONNECT)
    assert v.reply is not None
    assert v.reply.render() == "451 4.3.0 Too many errors (20 of 20), disconnecting."


# -- HELO change -----------------------------------------------------------------------


async def test_helo_change_refused() -> None:
    s = make_session()
    s.helo_history = ["mail.example.com", "relay.example.com"]
    s.helo = "other.example.net"
    v = objection(
        await run(policy(forbid_helo_change=True), Stage.HELO, s), "HELO_CHANGED", Action.REJECT
    )
    assert v.reply is not None
    assert v.reply.render() == "550 Sending system changed during session"
    assert v.rfc_compliant is False
    assert "'relay.example.com'" in v.reason
    assert "'other.example.net'" in v.reason
    assert v.details["previous"] == "relay.example.com"


async def test_helo_same_name_any_case_passes() -> None:
    s = make_session()
    s.helo_history = ["Mail.Example.COM"]
    s.helo = "mail.example.com"
    assert await run(policy(forbid_helo_change=True), Stage.HELO, s) is None


async def test_helo_compared_with_the_previous_name_only() -> None:
    s = make_session()
    s.helo_history = ["first.example.com", "second.example.com"]
    s.helo = "second.example.com"
    assert await run(policy(forbid_helo_change=True), Stage.HELO, s) is None


async def test_first_helo_passes() -> None:
    s = make_session()
    s.helo = "mail.example.com"
    assert await run(policy(forbid_helo_change=True), Stage.HELO, s) is None


async def test_helo_change_allowed_by_default() -> None:
    s = make_session()
    s.helo_history = ["mail.example.com"]
    s.helo = "other.example.net"
    assert await run(policy(), Stage.HELO, s) is None


# -- error limits ----------------------------------------------------------------------


async def test_hard_error_limit_disconnects() -> None:
    s = make_session()
    s.counters.errors = 20
    v = objection(await run(policy(), Stage.ERROR, s), "TOO_MANY_ERRORS", Action.DISCONNECT)
    assert v.reply is not None
    assert v.reply.render() == "421 4.7.0 mx.strictmx.test Error: too many errors"
    assert v.reason == "20 errors in this session, hard limit 20"
    assert v.rfc_compliant is True


async def test_soft_error_limit_tarpits() -> None:
    s = make_session()
    s.counters.errors = 10
    v = await run(policy(), Stage.ERROR, s)
    assert v is not None
    assert v.outcome == "ERROR_TARPIT"
    assert v.action is Action.DUNNO
    assert v.objection is False
    assert v.reply is None
    assert v.delay == 1.0
    assert v.reason == (
        "10 errors in this session, soft limit 10: every later reply is delayed by 1 seconds"
    )


async def test_tarpit_delay_is_the_sleep_time() -> None:
    s = make_session()
    s.counters.errors = 3
    v = await run(policy(soft_error_limit=3, error_sleep_time=2.5), Stage.ERROR, s)
    assert v is not None
    assert v.delay == 2.5


async def test_one_below_the_hard_limit_only_tarpits() -> None:
    s = make_session()
    s.counters.errors = 19
    v = await run(policy(), Stage.ERROR, s)
    assert v is not None
    assert v.outcome == "ERROR_TARPIT"


async def test_below_the_soft_limit_passes() -> None:
    s = make_session()
    s.counters.errors = 9
    assert await run(policy(), Stage.ERROR, s) is None


async def test_error_limits_disabled() -> None:
    s = make_session()
    s.counters.errors = 1000
    assert await run(policy(soft_error_limit=None, hard_error_limit=None), Stage.ERROR, s) is None


# -- junk commands ---------------------------------------------------------------------


async def test_junk_beyond_the_limit_counts_as_errors() -> None:
    # As Postfix: 101 junk commands are free under the default limit of 100; the 102nd
    # and later each add an error.
    p = policy()
    s = make_session()
    s.counters.junk = 101
    assert await run(p, Stage.NOOP, s) is None
    assert s.counters.errors == 0
    s.counters.junk = 102
    assert await run(p, Stage.VRFY, s) is None
    assert s.counters.errors == 1


@pytest.mark.parametrize("stage", [Stage.NOOP, Stage.VRFY, Stage.RSET])
async def test_junk_reaching_the_hard_limit_disconnects(stage: Stage) -> None:
    s = make_session()
    s.counters.junk = 6
    s.counters.errors = 19
    v = objection(
        await run(policy(junk_command_limit=4), stage, s), "TOO_MANY_ERRORS", Action.DISCONNECT
    )
    assert s.counters.errors == 20
    assert v.stage is stage
    assert v.reply is not None
    assert v.reply.render() == "421 4.7.0 mx.strictmx.test Error: too many errors"
    assert v.reason == (
        "6 junk commands (NOOP/VRFY/RSET) in this session, over the junk limit of 4, "
        "so each counts as an error: 20 errors in this session, hard limit 20"
    )


async def test_junk_limit_disabled() -> None:
    s = make_session()
    s.counters.junk = 10_000
    s.counters.errors = 19
    assert await run(policy(junk_command_limit=None), Stage.NOOP, s) is None
    assert s.counters.errors == 19


# -- unknown commands ------------------------------------------------------------------


async def test_too_many_unknown_commands() -> None:
    s = make_session()
    s.counters.unknown_commands = 4
    v = objection(
        await run(policy(max_unknown_commands=3), Stage.UNKNOWN, s),
        "TOO_MANY_UNKNOWN_COMMANDS",
        Action.DISCONNECT,
    )
    assert v.reply is not None
    assert v.reply.render() == "500 5.5.1 Too many unrecognized commands"
    assert v.rfc_compliant is False
    assert v.reason == "4 unrecognized commands in this session, limit 3"


async def test_unknown_commands_at_limit_pass() -> None:
    s = make_session()
    s.counters.unknown_commands = 3
    assert await run(policy(max_unknown_commands=3), Stage.UNKNOWN, s) is None


async def test_unknown_command_limit_off_by_default() -> None:
    s = make_session()
    s.counters.unknown_commands = 100
    assert await run(policy(), Stage.UNKNOWN, s) is None


# -- errors across sessions ------------------------------------------------------------


async def error_session(p: SessionLimits, ctx: Context, errors: int, address: str = CLIENT) -> None:
    s = make_session(address)
    for _ in range(errors):
        s.counters.errors += 1
        await p.check(Stage.ERROR, s, ctx)


async def test_too_many_errors_from_ip() -> None:
    clock = StepClock()
    ctx = make_ctx(clock)
    p = policy(max_errors_per_client=3, error_window=60)
    await error_session(p, ctx, 2)
    clock.t += 5
    await error_session(p, ctx, 1)
    clock.t += 5
    v = objection(
        await run(p, Stage.CONNECT, make_session(), ctx),
        "TOO_MANY_ERRORS_FROM_IP",
        Action.REJECT,
    )
    assert v.reply is not None
    assert v.reply.render() == "550 Too many errors from your IP"
    assert v.reason == "3 errors from 203.0.113.9 in the last 60 seconds, limit 3"


async def test_errors_from_ip_under_limit_or_other_ip_pass() -> None:
    ctx = make_ctx()
    p = policy(max_errors_per_client=3, error_window=60)
    await error_session(p, ctx, 2)
    await error_session(p, ctx, 5, address="198.51.100.7")
    assert await run(p, Stage.CONNECT, make_session(), ctx) is None


async def test_errors_from_ip_expire_after_the_window() -> None:
    clock = StepClock()
    ctx = make_ctx(clock)
    p = policy(max_errors_per_client=3, error_window=60)
    await error_session(p, ctx, 3)
    clock.t += 59
    assert await run(p, Stage.CONNECT, make_session(), ctx) is not None
    clock.t += 2
    assert await run(p, Stage.CONNECT, make_session(), ctx) is None


async def test_junk_errors_count_for_the_client() -> None:
    ctx = make_ctx()
    p = policy(max_errors_per_client=2, junk_command_limit=0)
    s = make_session()
    for junk in (1, 2, 3):
        s.counters.junk = junk
        await p.check(Stage.NOOP, s, ctx)
    assert s.counters.errors == 2
    assert await run(p, Stage.CONNECT, make_session(), ctx) is not None


async def test_no_history_without_the_per_client_limit() -> None:
    history = ClientHistory()
    ctx = make_ctx(history=history)
    await error_session(policy(), ctx, 5)
    assert history.count("error", CLIENT, since=-math.inf) == 0
    assert await run(policy(), Stage.CONNECT, make_session(), ctx) is None
