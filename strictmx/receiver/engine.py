"""The engine: runs a stage's ordered policy list and decides what goes on the wire.

Sans-IO: given the session and the world (through `Context`), it returns a `Decision`;
`strictmx.receiver.smtp` sends it. Semantics, as in Postfix's restriction lists:

- policies run in scenario order; the first decisive verdict (PERMIT, REJECT, DEFER,
  DISCONNECT) ends the stage; DUNNO goes on;
- delay_reject: a REJECT/DEFER at CONNECT, HELO or MAIL is remembered and given in reply
  to each RCPT instead, so postmaster@ and abuse@ can still be reached (RFC 5321 §4.5.1
  requires postmaster; abuse@ by RFC 2142 convention) and the wire matches real receivers;
  which recipients are exempt is the scenario's (`receiver.always_accepted`): by default
  postmaster and abuse at any domain, for Postfix the bare `<postmaster>` alone;
- warn_only: every policy runs, every objection is recorded as warned, nothing is refused;
- soft_bounce: every 5xx becomes 4xx (Postfix's soft_bounce).

Passes are remembered, as postscreen remembers clients that passed its tests: when a
`pure` policy finds nothing against a session, judging only from the scenario's own DNS
records, the engine does not ask it again about the same client, HELO and sender. Only
passes: an objection is worked out (and its reply filled in) for every session, and a
pass that rested on a real lookup or a scripted DNS failure is not kept.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .policy import Context, Policy, PolicyOptions
from .session import Session
from .verdict import DELAYABLE_STAGES, Action, Reply, Stage, Verdict

log = logging.getLogger(__name__)

#: Passes remembered at most; a flood of new clients starts the memory over.
PASSES_MAX = 65_536

#: Recipients accepted whatever the other stages decided, unless the scenario says
#: otherwise (receiver.always_accepted): postmaster and abuse at any domain or none.
ALWAYS_ACCEPTED = ("postmaster", "abuse", "postmaster@*", "abuse@*")


@dataclass(frozen=True)
class EngineSettings:
    delay_reject: bool = True
    warn_only: bool = False
    soft_bounce: bool = False
    #: Glob patterns (lower case) of recipients the RCPT stage accepts without asking a
    #: policy; a pattern without '@' matches an address without a domain.
    always_accepted: tuple[str, ...] = ALWAYS_ACCEPTED


@dataclass
class Decision:
    """What the SMTP layer does after a stage: send `reply` (None: its normal reply)."""

    reply: Reply | None = None
    close: bool = False
    #: Every verdict this stage produced (decisive, warned, tarpit), for the journal.
    verdicts: list[Verdict] = field(default_factory=list)
    #: The verdict whose reply is sent now, if any.
    sent: Verdict | None = None
    #: warn_only: the stage each objection's reply would be sent at were the receiver to
    #: refuse, by id(verdict) -- delay_reject and each entry's override applied.
    would_reply_at: dict[int, Stage] | None = None  # made only in warn_only (hot path)

    def would_reply(self, verdict: Verdict, stage: Stage) -> None:
        if self.would_reply_at is None:
            self.would_reply_at = {}
        self.would_reply_at[id(verdict)] = stage


def is_always_accepted(rcpt: str | None, patterns: Sequence[str] = ALWAYS_ACCEPTED) -> bool:
    if not rcpt or not patterns:
        return False
    address = rcpt.lower()
    return any(fnmatch.fnmatchcase(address, p) for p in patterns)


class Engine:
    def __init__(
        self,
        chains: Mapping[Stage, Sequence[Policy[PolicyOptions]]],
        settings: EngineSettings | None = None,
    ) -> None:
        self.chains = {stage: tuple(chain) for stage, chain in chains.items()}
        self.settings = settings or EngineSettings()
        self._passes: set[tuple[object, ...]] = set()

    def policies_at(self, stage: Stage) -> tuple[Policy[PolicyOptions], ...]:
        return self.chains.get(stage, ())

    async def run(self, stage: Stage, session: Session, ctx: Context) -> Decision:
        decision = Decision()
        if stage is Stage.RCPT and is_always_accepted(session.rcpt, self.settings.always_accepted):
            return decision
        if stage is Stage.RCPT and session.delayed and not self.settings.warn_only:
            delayed = _first_delayed(session)
            self._send(decision, delayed, Stage.RCPT)
            return decision

        for policy in self.policies_at(stage):
            verdict = await self._check(policy, stage, session, ctx)
            if verdict is None:
                continue
            if verdict.delay and not self.settings.warn_only:
                session.tarpit = max(session.tarpit, verdict.delay)
            if not verdict.action.decisive:
                decision.verdicts.append(verdict)
                continue
            if self.settings.warn_only:
                if verdict.objection:
                    verdict.warned = True
                    waits = self.delays(policy, verdict)
                    decision.would_reply(verdict, Stage.RCPT if waits else stage)
                decision.verdicts.append(verdict)
                continue
            decision.verdicts.append(verdict)
            if verdict.action is Action.PERMIT:
                break
            if self.delays(policy, verdict):
                # Journaled when a RCPT carries it (or at the end, as never sent).
                decision.verdicts.remove(verdict)
                session.delayed.setdefault(stage, verdict)
                break
            self._send(decision, verdict, stage)
            break
        return decision

    def refuse(
        self,
        policy: Policy[PolicyOptions],
        outcome_id: str,
        stage: Stage,
        session: Session,
        ctx: Context,
        reason: str,
    ) -> Decision:
        """A refusal the conversation decides itself (the `smtpd` policy's outcomes),
        made like any verdict: the entry's reply, soft_bounce, warn_only."""
        verdict = policy.verdict(outcome_id, stage, session, ctx, reason)
        self._soften(verdict)
        decision = Decision()
        if self.settings.warn_only:
            verdict.warned = True
            decision.verdicts.append(verdict)
            decision.would_reply(verdict, stage)
            return decision
        self._send(decision, verdict, stage)
        return decision

    def delays(self, policy: Policy[PolicyOptions], verdict: Verdict) -> bool:
        """Whether `verdict` waits for a RCPT (delay_reject, or the entry's own override)."""
        delay = policy.delay_reject
        return (
            (self.settings.delay_reject if delay is None else delay)
            and verdict.stage in DELAYABLE_STAGES
            and verdict.action is not Action.DISCONNECT
        )

    async def _check(
        self, policy: Policy[PolicyOptions], stage: Stage, session: Session, ctx: Context
    ) -> Verdict | None:
        key = _pass_key(policy, stage, session) if policy.pure and ctx.session_dns else None
        if key is not None:
            if key in self._passes:
                return None
            ctx.dns.volatile = False
        verdict = await policy.check(stage, session, ctx)
        if key is not None and verdict is None and not ctx.dns.volatile:
            if len(self._passes) >= PASSES_MAX:
                self._passes.clear()
            self._passes.add(key)
        if verdict is not None:
            self._soften(verdict)
        return verdict

    def _soften(self, verdict: Verdict) -> None:
        if verdict.reply is not None and self.settings.soft_bounce:
            verdict.reply = verdict.reply.soft()
            if verdict.action is Action.REJECT:
                verdict.action = Action.DEFER

    @staticmethod
    def _send(decision: Decision, verdict: Verdict, stage: Stage) -> None:
        verdict.replied_at = stage
        decision.reply = verdict.reply
        decision.sent = verdict
        decision.close = verdict.action is Action.DISCONNECT
        if verdict not in decision.verdicts:
            decision.verdicts.append(verdict)


def _pass_key(policy: Policy[PolicyOptions], stage: Stage, session: Session) -> tuple[object, ...]:
    """Everything a pure policy may judge from (the hostname and world are the engine's)."""
    client = session.client
    return (
        policy,
        stage,
        client.address,
        client.name,
        client.name_status,
        session.helo,
        session.helo_verb,
        session.mail_from,
        session.smtputf8,
    )


def _first_delayed(session: Session) -> Verdict:
    for stage in (Stage.CONNECT, Stage.HELO, Stage.MAIL):
        if stage in session.delayed:
            return session.delayed[stage]
    raise LookupError("no delayed verdict")
