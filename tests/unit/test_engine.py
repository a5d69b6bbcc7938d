"""Engine semantics: order, first decisive verdict, delay_reject, warn_only, soft_bounce."""

from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic import Field

from strictmx.receiver.engine import Engine, EngineSettings
from strictmx.receiver.policy import ClientHistory, Context, Outcome, Policy, PolicyOptions
from strictmx.receiver.session import Client, Session
from strictmx.receiver.verdict import Action, Stage, Verdict
from strictmx.receiver.world import World


class FixedOptions(PolicyOptions):
    action: str = Field("reject", description="what to answer")


class Fixed(Policy[FixedOptions]):
    """A policy that always answers the same: the engine's behaviour is what is tested."""

    name = "fixed"
    stages: ClassVar = frozenset(Stage)
    Options = FixedOptions
    outcomes = (
        Outcome("NO", "550 5.7.1 no from {ip}", "refuse"),
        Outcome("LATER", "450 4.7.1 later", "defer", action=Action.DEFER),
        Outcome("BYE", "421 4.7.0 {hostname} bye", "close", action=Action.DISCONNECT),
    )

    def __init__(self, options: FixedOptions, replies: object = None, *, tag: str = "") -> None:
        super().__init__(options)
        self.tag = tag
        self.calls = 0

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        self.calls += 1
        kind = self.options.action
        if kind == "dunno":
            return None
        if kind == "permit":
            return Verdict(self.tag or self.name, "OK", Action.PERMIT, stage)
        outcome = {"reject": "NO", "defer": "LATER", "disconnect": "BYE"}[kind]
        verdict = self.verdict(outcome, stage, session, ctx, f"{self.tag} says {kind}")
        verdict.policy = self.tag or self.name
        return verdict


def fixed(action: str, tag: str = "") -> Fixed:
    return Fixed(FixedOptions(action=action), tag=tag)


@pytest.fixture
def ctx() -> Context:
    return Context(world=World.empty(), hostname="mx.strictmx.test", history=ClientHistory())


@pytest.fixture
def session() -> Session:
    return Session(Client("127.0.0.1", address="192.0.2.7"))


async def test_policies_run_in_order_and_first_decisive_wins(
    ctx: Context, session: Session
) -> None:
    a, b, c = fixed("dunno", "a"), fixed("reject", "b"), fixed("defer", "c")
    engine = Engine({Stage.RCPT: [a, b, c]})
    decision = await engine.run(Stage.RCPT, session, ctx)
    assert decision.reply is not None
    assert decision.reply.render() == "550 5.7.1 no from 192.0.2.7"
    assert [v.policy for v in decision.verdicts] == ["b"]
    assert (a.calls, b.calls, c.calls) == (1, 1, 0)


async def test_permit_stops_the_stage_without_a_reply(ctx: Context, session: Session) -> None:
    later = fixed("reject", "later")
    engine = Engine({Stage.RCPT: [fixed("permit", "p"), later]})
    decision = await engine.run(Stage.RCPT, session, ctx)
    assert decision.reply is None
    assert later.calls == 0


async def test_no_policy_no_opinion(ctx: Context, session: Session) -> None:
    decision = await Engine({}).run(Stage.HELO, session, ctx)
    assert decision.reply is None and decision.verdicts == []


async def test_delay_reject_moves_a_helo_rejection_to_rcpt(ctx: Context, session: Session) -> None:
    engine = Engine({Stage.HELO: [fixed("reject", "helo")]}, EngineSettings(delay_reject=True))
    helo = await engine.run(Stage.HELO, session, ctx)
    assert helo.reply is None, "HELO itself is accepted"
    assert helo.verdicts == [], "journaled when a reply carries it"
    mail = await engine.run(Stage.MAIL, session, ctx)
    assert mail.reply is None
    session.rcpt = "user@example.com"
    rcpt = await engine.run(Stage.RCPT, session, ctx)
    assert rcpt.reply is not None and rcpt.reply.code == 550
    assert rcpt.sent is not None
    assert (rcpt.sent.stage, rcpt.sent.replied_at) == (Stage.HELO, Stage.RCPT)


@pytest.mark.parametrize("rcpt", ["postmaster@example.com", "Abuse@example.com", "postmaster"])
async def test_postmaster_and_abuse_are_always_accepted(
    ctx: Context, session: Session, rcpt: str
) -> None:
    rcpt_policy = fixed("reject", "rcpt")
    engine = Engine({Stage.CONNECT: [fixed("reject", "c")], Stage.RCPT: [rcpt_policy]})
    await engine.run(Stage.CONNECT, session, ctx)
    session.rcpt = rcpt
    decision = await engine.run(Stage.RCPT, session, ctx)
    assert decision.reply is None
    assert rcpt_policy.calls == 0


async def test_control_other_recipients_still_get_the_delayed_reply(
    ctx: Context, session: Session
) -> None:
    engine = Engine({Stage.CONNECT: [fixed("reject", "c")]})
    await engine.run(Stage.CONNECT, session, ctx)
    session.rcpt = "postmaster-team@example.com"
    decision = await engine.run(Stage.RCPT, session, ctx)
    assert decision.reply is not None and decision.reply.code == 550


@pytest.mark.parametrize(
    ("patterns", "rcpt", "exempt"),
    [
        # Postfix: the bare <postmaster> alone (RFC 5321 §4.5.1), not postmaster@domain.
        (("postmaster",), "Postmaster", True),
        (("postmaster",), "postmaster@example.com", False),
        (("postmaster",), "abuse", False),
        # A persona that exempts no one.
        ((), "postmaster", False),
        ((), "postmaster@example.com", False),
        # Its own table: one domain's postmaster.
        (("postmaster@example.com",), "POSTMASTER@example.com", True),
        (("postmaster@example.com",), "postmaster@example.org", False),
    ],
)
async def test_the_exemption_is_the_scenarios(
    ctx: Context, session: Session, patterns: tuple[str, ...], rcpt: str, exempt: bool
) -> None:
    rcpt_policy = fixed("reject", "rcpt")
    engine = Engine(
        {Stage.CONNECT: [fixed("reject", "c")], Stage.RCPT: [rcpt_policy]},
        EngineSettings(always_accepted=patterns),
    )
    await engine.run(Stage.CONNECT, session, ctx)
    session.rcpt = rcpt
    decision = await engine.run(Stage.RCPT, session, ctx)
    assert (decision.reply is None) is exempt, decision.reply
    assert rcpt_policy.calls == 0  # exempt: never asked; else the delayed reply came first


async def test_without_delay_reject_the_stage_itself_refuses(
    ctx: Context, session: Session
) -> None:
    engine = Engine({Stage.HELO: [fixed("reject")]}, EngineSettings(delay_reject=False))
    decision = await engine.run(Stage.HELO, session, ctx)
    assert decision.reply is not None and decision.reply.code == 550
    assert decision.verdicts[0].replied_at is Stage.HELO


async def test_disconnect_is_never_delayed(ctx: Context, session: Session) -> None:
    engine = Engine({Stage.CONNECT: [fixed("disconnect")]}, EngineSettings(delay_reject=True))
    decision = await engine.run(Stage.CONNECT, session, ctx)
    assert decision.close
    assert decision.reply is not None
    assert decision.reply.render() == "421 4.7.0 mx.strictmx.test bye"


async def test_mail_stage_rejection_is_forgotten_with_the_transaction(
    ctx: Context, session: Session
) -> None:
    engine = Engine({Stage.MAIL: [fixed("reject")]})
    await engine.run(Stage.MAIL, session, ctx)
    assert Stage.MAIL in session.delayed
    session.reset_transaction()
    session.rcpt = "user@example.com"
    assert (await engine.run(Stage.RCPT, session, ctx)).reply is None


async def test_warn_only_runs_everything_and_refuses_nothing(
    ctx: Context, session: Session
) -> None:
    a, b = fixed("reject", "a"), fixed("defer", "b")
    engine = Engine({Stage.RCPT: [a, b]}, EngineSettings(warn_only=True))
    decision = await engine.run(Stage.RCPT, session, ctx)
    assert decision.reply is None
    assert [(v.policy, v.warned) for v in decision.verdicts] == [("a", True), ("b", True)]
    assert (a.calls, b.calls) == (1, 1)


async def test_warn_only_also_ignores_delayed_objections(ctx: Context, session: Session) -> None:
    engine = Engine({Stage.HELO: [fixed("reject")]}, EngineSettings(warn_only=True))
    helo = await engine.run(Stage.HELO, session, ctx)
    assert helo.verdicts[0].warned
    session.rcpt = "user@example.com"
    assert (await engine.run(Stage.RCPT, session, ctx)).reply is None


async def test_soft_bounce_turns_rejections_into_deferrals(ctx: Context, session: Session) -> None:
    engine = Engine({Stage.RCPT: [fixed("reject")]}, EngineSettings(soft_bounce=True))
    decision = await engine.run(Stage.RCPT, session, ctx)
    assert decision.reply is not None
    assert decision.reply.render() == "450 4.7.1 no from 192.0.2.7"
    assert decision.verdicts[0].action is Action.DEFER


async def test_control_without_soft_bounce_stays_permanent(ctx: Context, session: Session) -> None:
    engine = Engine({Stage.RCPT: [fixed("reject")]}, EngineSettings(soft_bounce=False))
    decision = await engine.run(Stage.RCPT, session, ctx)
    assert decision.reply is not None and decision.reply.code == 550


async def test_an_entry_can_refuse_at_once_while_the_receiver_delays(
    ctx: Context, session: Session
) -> None:
    at_once, delayed = fixed("reject", "syntax"), fixed("reject", "dns")
    at_once.delay_reject = False
    engine = Engine({Stage.HELO: [at_once]}, EngineSettings(delay_reject=True))
    decision = await engine.run(Stage.HELO, session, ctx)
    assert decision.reply is not None and decision.verdicts[0].replied_at is Stage.HELO
    control = Engine({Stage.HELO: [delayed]}, EngineSettings(delay_reject=True))
    assert (await control.run(Stage.HELO, session, ctx)).reply is None


async def test_an_entry_can_delay_while_the_receiver_refuses_at_once(
    ctx: Context, session: Session
) -> None:
    delayed = fixed("reject", "acl")
    delayed.delay_reject = True
    engine = Engine({Stage.MAIL: [delayed]}, EngineSettings(delay_reject=False))
    assert (await engine.run(Stage.MAIL, session, ctx)).reply is None
    session.rcpt = "user@example.com"
    rcpt = await engine.run(Stage.RCPT, session, ctx)
    assert rcpt.reply is not None and rcpt.sent is not None and rcpt.sent.stage is Stage.MAIL
