"""The engine remembers passes of pure policies (as postscreen remembers clients that
passed), never objections, never a pass that rested on a volatile DNS answer."""

from __future__ import annotations

import contextlib
from typing import ClassVar

from strictmx.receiver.engine import Engine, EngineSettings
from strictmx.receiver.policy import Context, Outcome, Policy, PolicyOptions
from strictmx.receiver.session import Client, Session
from strictmx.receiver.verdict import Stage, Verdict
from tests.unit.worlds import make_ctx


class HeloResolves(Policy[PolicyOptions]):
    """Refuses a HELO name without an A record; counts how often it is asked."""

    name = "helo_resolves"
    stages: ClassVar = frozenset({Stage.HELO})
    pure = True
    outcomes = (Outcome("NO_A", "450 4.7.1 <{helo}>: no address", "refuse"),)

    def __init__(self) -> None:
        super().__init__(PolicyOptions())
        self.calls = 0

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        self.calls += 1
        try:
            found = await ctx.dns.resolve(session.helo or "", "A")
        except Exception:
            found = []
        if found:
            return None
        return self.verdict("NO_A", stage, session, ctx, f"{session.helo} has no A record")


class Impure(HeloResolves):
    pure = False


class Lenient(HeloResolves):
    """Looks the HELO name up and passes whatever the answer, failures included."""

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        self.calls += 1
        with contextlib.suppress(Exception):
            await ctx.dns.resolve(session.helo or "", "A")
        return None


def session(helo: str, address: str = "192.0.2.7") -> Session:
    state = Session(Client("127.0.0.1", address=address))
    state.helo, state.helo_verb = helo, "EHLO"
    return state


RECORDS = {"mail.example.net": {"A": "192.0.2.7"}, "flaky.example.net": {"A": "192.0.2.8"}}


async def helo(engine: Engine, state: Session, base: Context) -> Verdict | None:
    decision = await engine.run(Stage.HELO, state, base.for_session())
    return decision.verdicts[0] if decision.verdicts else None


async def test_a_pass_is_remembered_for_the_same_client_and_helo() -> None:
    base = make_ctx(RECORDS)
    policy = HeloResolves()
    engine = Engine({Stage.HELO: [policy]})
    for _ in range(3):
        assert await helo(engine, session("mail.example.net"), base) is None
    assert policy.calls == 1
    # Controls: another HELO name, another client address: asked again.
    assert await helo(engine, session("MAIL.example.net"), base) is None
    assert await helo(engine, session("mail.example.net", "192.0.2.9"), base) is None
    assert policy.calls == 3


async def test_a_pass_is_not_shared_between_xclient_name_statuses() -> None:
    # XCLIENT NAME=[UNAVAILABLE] changes what the name-reading policies decide for the
    # same address (strictmx/receiver/session.py): a pass with a looked-up name is not one for it.
    base = make_ctx(RECORDS)
    policy = HeloResolves()
    engine = Engine({Stage.HELO: [policy]})
    assert await helo(engine, session("mail.example.net"), base) is None
    unavailable = session("mail.example.net")
    unavailable.client.name_status = "unavailable"
    assert await helo(engine, unavailable, base) is None
    assert policy.calls == 2
    assert await helo(engine, session("mail.example.net"), base) is None
    assert policy.calls == 2  # the control: the first one was remembered


async def test_an_objection_is_worked_out_every_time() -> None:
    base = make_ctx(RECORDS)
    policy = HeloResolves()
    # Refused at once (no delay_reject), so the verdict is in the decision.
    engine = Engine({Stage.HELO: [policy]}, EngineSettings(delay_reject=False))
    for _ in range(3):
        verdict = await helo(engine, session("nowhere.example.net"), base)
        assert verdict is not None and verdict.outcome == "NO_A"
    assert policy.calls == 3


async def test_a_pass_after_a_scripted_failure_is_not_remembered() -> None:
    # The lookup fails (SERVFAIL, scripted): the check passes it over, but its answer is
    # not the records' alone, so the pass is not kept.
    base = make_ctx(RECORDS, servfail=("flaky.example.net",))
    policy = Lenient()
    engine = Engine({Stage.HELO: [policy]})
    for _ in range(2):
        assert await helo(engine, session("flaky.example.net"), base) is None
    assert policy.calls == 2
    # Control: the same lenient check on a name from the records is remembered.
    for _ in range(2):
        assert await helo(engine, session("mail.example.net"), base) is None
    assert policy.calls == 3


async def test_a_volatile_answer_cached_earlier_in_the_session_still_counts() -> None:
    base = make_ctx(RECORDS, servfail=("flaky.example.net",))
    ctx = base.for_session()
    with contextlib.suppress(Exception):
        await ctx.dns.resolve("flaky.example.net", "A")
    assert ctx.dns.volatile
    ctx.dns.volatile = False
    with contextlib.suppress(Exception):  # from the session's cache this time
        await ctx.dns.resolve("flaky.example.net", "A")
    assert ctx.dns.volatile
    ctx.dns.volatile = False
    await ctx.dns.resolve("mail.example.net", "A")
    assert not ctx.dns.volatile


async def test_impure_policies_are_always_asked() -> None:
    base = make_ctx(RECORDS)
    policy = Impure()
    engine = Engine({Stage.HELO: [policy]})
    for _ in range(3):
        assert await helo(engine, session("mail.example.net"), base) is None
    assert policy.calls == 3


async def test_a_context_without_a_session_view_is_never_remembered() -> None:
    base = make_ctx(RECORDS)
    shared = Context(world=base.world, hostname=base.hostname, history=base.history)
    policy = HeloResolves()
    engine = Engine({Stage.HELO: [policy]})
    for _ in range(2):
        await engine.run(Stage.HELO, session("mail.example.net"), shared)
    assert policy.calls == 2
