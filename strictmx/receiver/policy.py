"""The policy plug-in contract.

A policy is one class in one module under `policies/` (or a third-party package that
registers it in the `strictmx.policies` entry-point group). It declares:

- `name`: the stable snake_case name used in scenarios, journal rows, the API and logs;
- `stages`: where it may run;
- `Options`: a pydantic model, every field with a default and a one-line description,
  validated when the scenario loads;
- `outcomes`: each UPPER_SNAKE outcome with its default reply, and whether RFC 5321
  allows refusing mail for that reason.

`check()` is a coroutine only so that it can await the world (DNS, callouts); it never
opens sockets itself.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from . import outcome as kinds
from .catalogue import default_reply
from .outcome import FROM_CATALOGUE as FROM_CATALOGUE
from .outcome import Outcome as Outcome
from .reproduction import Build, Request
from .session import Client, Session
from .verdict import Action, Reply, ReplyError, Stage, Verdict
from .world import World
from .world.callout import Callout
from .world.clock import Clock
from .world.dns import TempFail, WorldDNS
from .world.names import reverse_name

log = logging.getLogger(__name__)


class PolicyOptions(BaseModel):
    """Base of every policy's options: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class Context:
    """What a policy may consult: the world, the receiver's settings, cross-session state."""

    world: World
    hostname: str
    history: ClientHistory
    #: The session's cached view of the world's DNS (see `for_session`).
    session_dns: WorldDNS | None = None
    #: The sender-verify callout client and its cache, shared by every session (None when
    #: no policy of the scenario calls out).
    callout: Callout | None = None
    #: The receiver's delay_reject: whether CONNECT/HELO/MAIL refusals wait for a RCPT
    #: (`Policy.delays` adds the entry's own override).
    delay_reject: bool = True
    #: Whether the receiver offers SMTPUTF8 (Postfix smtputf8_enable): how client text is
    #: quoted back.
    smtputf8: bool = True

    @property
    def dns(self) -> WorldDNS:
        return self.session_dns or self.world.dns

    def for_session(self) -> Context:
        """The context one SMTP session sees: DNS answers cached for its duration."""
        return replace(self, session_dns=self.world.dns.for_session())

    @property
    def clock(self) -> Clock:
        return self.world.clock


async def client_names(client: Client, address: str, ctx: Context) -> list[str]:
    """The client's host names as a Postfix-like receiver knows them: the XCLIENT NAME when
    one was given, none after NAME=[UNAVAILABLE], a temporary failure (TempFail) after
    NAME=[TEMPUNAVAIL]; otherwise the PTR names of `address` in the world."""
    status = client.name_status
    if status == "given" and client.name:
        return [client.name]
    if status == "unavailable":
        return []
    if status == "tempunavail":
        raise TempFail(reverse_name(address), "PTR", "servfail", "XCLIENT NAME=[TEMPUNAVAIL]")
    return await ctx.dns.ptr(address)


class ClientHistory:
    """Events per client address across sessions (e.g. errors), for limits over a window."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, str], list[float]] = {}

    def add(
        self, kind: str, address: str, when: float, count: int = 1, *, keep: int | None = None
    ) -> None:
        """Record `count` events at `when`; with `keep`, only the newest `keep` are kept (a
        threshold of N needs no more than N + 1 to be told apart, however many are sent)."""
        times = self._events.setdefault((kind, address), [])
        if times and when < times[-1]:  # not from one monotonic clock: keep the order
            for _ in range(count):
                bisect.insort(times, when)
        else:
            times.extend([when] * count)
        if keep is not None and len(times) > keep:
            del times[: len(times) - keep]

    def count(self, kind: str, address: str, since: float) -> int:
        times = self._events.get((kind, address))
        if not times:
            return 0
        # Kept in order, so what fell out of every window is a prefix: dropping it costs
        # what is dropped, not a pass over thousands of events per message.
        del times[: bisect.bisect_left(times, since)]
        return len(times)


OptionsT = TypeVar("OptionsT", bound=PolicyOptions)


class Policy(Generic[OptionsT]):
    """Base class. Subclasses set the ClassVars and implement `check`."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    stages: ClassVar[frozenset[Stage]]
    Options: ClassVar[type[PolicyOptions]] = PolicyOptions
    outcomes: ClassVar[tuple[Outcome, ...]] = ()

    #: Whether the verdict depends on nothing but the client (address, name), the HELO
    #: (name, verb), the envelope sender with its SMTPUTF8 flag, the receiver's hostname and
    #: the scenario's own DNS records -- no clock, no history, no counters, no side effects
    #: on the session. The engine then remembers a pass for the same inputs (see Engine).
    pure: ClassVar[bool] = False

    #: Whether `check` asks `ctx.callout`: a persona running such a policy gets a callout
    #: client (and simulated MX hosts); one without gets none (ctx.callout is None).
    calls_out: ClassVar[bool] = False

    #: Policies whose results this one reads from `session.auth` (dmarc reads spf's and
    #: dkim's): a scenario must list each to run before it, or it does not load.
    requires: ClassVar[tuple[str, ...]] = ()

    #: Per-entry override of the receiver's delay_reject (None: follow the receiver), so a
    #: persona can refuse one check at once and delay the others (Exim's built-in HELO
    #: syntax check versus its RCPT ACL).
    delay_reject: bool | None = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        declared = cls.__dict__.get("outcomes", ())
        if declared:
            cls.outcomes = tuple(_resolved(cls, o) for o in declared)

    def __init__(self, options: OptionsT, replies: Mapping[str, Reply] | None = None) -> None:
        self.options: OptionsT = options
        self._outcomes = {o.id: o for o in self.outcomes}
        self._replies: dict[str, Reply] = {o.id: o.default_reply() for o in self.outcomes}
        for outcome_id, reply in (replies or {}).items():
            self._replies[outcome_id] = reply
        self._valid: dict[tuple[str, Reply], Reply] = {}

    @classmethod
    def validate_reply(cls, outcome_id: str, reply: Reply) -> None:
        """Raise ReplyError unless `reply` may stand in for `outcome_id`'s default."""
        known = {o.id: o for o in cls.outcomes}
        if outcome_id not in known:
            raise ReplyError(
                f"{cls.name} has no outcome {outcome_id!r}; its outcomes are: "
                + ", ".join(sorted(known))
            )
        outcome = known[outcome_id]
        kinds.check_placeholders(reply, outcome.all_fields)
        if outcome.action is Action.DEFER and reply.code >= 500:
            return  # a persona may refuse permanently where the default defers
        if reply.code < 400:
            raise ReplyError(f"an objection needs a 4xx or 5xx code, not {reply.code}")

    @classmethod
    def reproduce(cls, request: Request) -> Build | None:
        """The options, world and session in which this policy refuses with
        `request.outcome`, for `strictmx reproduce`; None: it does not say."""
        return None

    @classmethod
    def read_reply(cls, outcome: str, text: str) -> dict[str, str]:
        """Identifiers a refusal's text shows outside its template's placeholders (a sender
        in angle brackets, a block list named by its operator), for `strictmx reproduce`."""
        return {}

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        """Return a Verdict, or None for no opinion (DUNNO)."""
        raise NotImplementedError

    def delays(self, ctx: Context) -> bool:
        """Whether this entry's refusals at CONNECT, HELO and MAIL are sent at RCPT: its own
        delay_reject, else the receiver's (as `Engine.delays` decides)."""
        return ctx.delay_reject if self.delay_reject is None else self.delay_reject

    # -- helpers for subclasses -------------------------------------------------------
    def verdict(
        self,
        outcome_id: str,
        stage: Stage,
        session: Session,
        ctx: Context,
        reason: str,
        *,
        action: Action | None = None,
        delay: float = 0.0,
        reply: Reply | None = None,
        refuse_as: Literal["reject", "defer"] | None = None,
        **fields: object,
    ) -> Verdict:
        """Build the verdict for `outcome_id` with its (possibly overridden) reply filled in.

        `reply` stands in for the outcome's reply in this one verdict (a DNSBL zone's or a
        content rule's own text, validated when the options loaded); `refuse_as` sets the
        reply's class where an option says so (SPF's `fail: defer`, sender_verify's
        `accept_all: defer`): "defer" turns a 5xx into its 4xx as soft_bounce does,
        "reject" a 4xx into 550. Either way the reply's text and status detail are kept,
        and the action follows the reply."""
        outcome = self._outcomes[outcome_id]
        template = self._replies[outcome_id] if reply is None else self._checked(outcome_id, reply)
        filled = template.format({**session.fields(ctx.hostname), **fields})
        if refuse_as == "defer":
            filled = filled.soft()
        elif refuse_as == "reject" and filled.code < 500:
            filled = filled.with_code(550)
        if action is None:
            action = outcome.action
            if action is not Action.DISCONNECT:
                action = filled.kind  # an override may turn a defer into a reject
        return Verdict(
            policy=self.name,
            outcome=outcome_id,
            action=action,
            stage=stage,
            reply=filled,
            reason=reason,
            rfc_compliant=outcome.rfc_allows,
            delay=delay,
            details=dict(fields),
        )

    def note(
        self,
        outcome_id: str,
        stage: Stage,
        reason: str,
        *,
        permit: bool = False,
        delay: float = 0.0,
        **details: object,
    ) -> Verdict:
        """A decision without a reply: DUNNO that records why (a lookup not counted, a
        tarpit), or with `permit` PERMIT (an allow list), which ends the stage's checks."""
        return Verdict(
            policy=self.name,
            outcome=outcome_id,
            action=Action.PERMIT if permit else Action.DUNNO,
            stage=stage,
            reason=reason,
            delay=delay,
            details=dict(details),
        )

    def _checked(self, outcome_id: str, reply: Reply) -> Reply:
        """`reply` if it may stand in for the outcome's; else the outcome's own, logged once
        (options validate their replies at load, so this is a policy's own mistake)."""
        key = (outcome_id, reply)
        if key not in self._valid:
            try:
                self.validate_reply(outcome_id, reply)
            except ReplyError as exc:
                log.error("%s: a reply for %s cannot be used (%s)", self.name, outcome_id, exc)
                self._valid[key] = self._replies[outcome_id]
            else:
                self._valid[key] = reply
        return self._valid[key]


PolicyClass = type[Policy[PolicyOptions]]


def _resolved(cls: type[Policy[OptionsT]], outcome: Outcome) -> Outcome:
    """`outcome` as its class holds it: fields checked, stage known, default reply in."""
    where = f"{cls.__module__}.{cls.__qualname__} outcome {outcome.id}"
    checked = kinds.check(where, outcome.fields)
    stages: frozenset[Stage] = getattr(cls, "stages", frozenset())
    stage, also_at = outcome.stage, outcome.also_at
    if stage is None and stages:
        # Not said: any of the policy's stages may decide it, the earliest first.
        stage, *others = sorted(stages, key=list(Stage).index)
        also_at = outcome.also_at or frozenset(others)
    if stage is None:
        raise TypeError(f"{where}: the policy declares no stages")
    for at in {stage, *also_at}:
        if at not in stages:
            raise TypeError(f"{where}: stage {at.value} is not one of the policy's stages")
    reply = outcome.reply
    if reply == FROM_CATALOGUE:
        found = default_reply(cls.name, outcome.id)
        if found is None:
            raise LookupError(
                f"{cls.name}/{outcome.id}: the reply catalogue has no entry marked default for it"
            )
        reply = tuple(found.wire_lines())
    return replace(outcome, reply=reply, fields=checked, stage=stage, also_at=also_at)
