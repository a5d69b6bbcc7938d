"""The policy plug-in contract and registry.

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

import importlib.metadata
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from .verdict import Action, Reply, ReplyError, Stage, Verdict, placeholders
from .world.dns import TempFail, reverse_name

if TYPE_CHECKING:
    from .session import Client, Session
    from .world import World
    from .world.callout import Callout
    from .world.clock import Clock
    from .world.dns import WorldDNS

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "strictmx.policies"


class PolicyOptions(BaseModel):
    """Base of every policy's options: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


#: An outcome whose default reply is the reply catalogue's entry marked `default: true`
#: for it (strictmx/receiver/data/catalogue.yaml): the built-in policies keep no text of their own.
FROM_CATALOGUE = "<from the reply catalogue>"


@dataclass(frozen=True)
class Outcome:
    """One way a policy can object, with its default reply.

    A third-party policy writes its reply here; a built-in one writes FROM_CATALOGUE and
    its text comes from the reply catalogue when the class is defined.
    """

    id: str
    reply: str | tuple[str, ...]
    doc: str
    action: Action = Action.REJECT
    #: RFC 5321 permits refusing mail for this reason (§4.1.4 forbids it for HELO/DNS mismatch).
    rfc_allows: bool = True
    #: Extra `{placeholders}` this outcome fills in besides `session.BASE_FIELDS`.
    fields: tuple[str, ...] = ()

    def default_reply(self) -> Reply:
        return Reply.parse(self.reply)


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

    @property
    def dns(self) -> WorldDNS:
        return self.session_dns or self.world.dns

    def for_session(self) -> Context:
        """The context one SMTP session sees: DNS answers cached for its duration."""
        return Context(
            self.world, self.hostname, self.history, self.world.dns.for_session(), self.callout
        )

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

    def add(self, kind: str, address: str, when: float, count: int = 1) -> None:
        self._events.setdefault((kind, address), []).extend([when] * count)

    def count(self, kind: str, address: str, since: float) -> int:
        times = self._events.get((kind, address))
        if not times:
            return 0
        # Drop what fell out of every window; the oldest are at the front.
        keep = [t for t in times if t >= since]
        self._events[(kind, address)] = keep
        return len(keep)


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

    #: Per-entry override of the receiver's delay_reject (None: follow the receiver), so a
    #: persona can refuse one check at once and delay the others (Exim's built-in HELO
    #: syntax check versus its RCPT ACL).
    delay_reject: bool | None = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if any(o.reply == FROM_CATALOGUE for o in cls.__dict__.get("outcomes", ())):
            cls.outcomes = tuple(_from_catalogue(cls.name, o) for o in cls.outcomes)

    def __init__(self, options: OptionsT, replies: Mapping[str, Reply] | None = None) -> None:
        self.options: OptionsT = options
        self._outcomes = {o.id: o for o in self.outcomes}
        self._replies: dict[str, Reply] = {o.id: o.default_reply() for o in self.outcomes}
        for outcome_id, reply in (replies or {}).items():
            self._replies[outcome_id] = reply

    @classmethod
    def validate_reply(cls, outcome_id: str, reply: Reply) -> None:
        """Raise ReplyError unless `reply` may stand in for `outcome_id`'s default."""
        from .session import BASE_FIELDS

        known = {o.id: o for o in cls.outcomes}
        if outcome_id not in known:
            raise ReplyError(
                f"{cls.name} has no outcome {outcome_id!r}; its outcomes are: "
                + ", ".join(sorted(known))
            )
        outcome = known[outcome_id]
        allowed = BASE_FIELDS | set(outcome.fields)
        unknown = placeholders(reply) - allowed
        if unknown:
            raise ReplyError(
                f"unknown placeholder {{{sorted(unknown)[0]}}}; this reply may use: "
                + ", ".join("{" + f + "}" for f in sorted(allowed))
            )
        if outcome.action is Action.DEFER and reply.code >= 500:
            return  # a persona may refuse permanently where the default defers
        if reply.code < 400:
            raise ReplyError(f"an objection needs a 4xx or 5xx code, not {reply.code}")

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        """Return a Verdict, or None for no opinion (DUNNO)."""
        raise NotImplementedError

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
        **fields: object,
    ) -> Verdict:
        """Build the verdict for `outcome_id` with its (possibly overridden) reply filled in."""
        outcome = self._outcomes[outcome_id]
        reply = self._replies[outcome_id].format({**session.fields(ctx.hostname), **fields})
        if action is None:
            action = outcome.action
            if action is not Action.DISCONNECT:
                action = reply.kind  # an override may turn a defer into a reject
        return Verdict(
            policy=self.name,
            outcome=outcome_id,
            action=action,
            stage=stage,
            reply=reply,
            reason=reason,
            rfc_compliant=outcome.rfc_allows,
            delay=delay,
            details=dict(fields),
        )


PolicyClass = type[Policy[PolicyOptions]]


def _from_catalogue(policy: str, outcome: Outcome) -> Outcome:
    if outcome.reply != FROM_CATALOGUE:
        return outcome
    from .catalogue import bundled

    entry = bundled().default_for(policy, outcome.id)
    if entry is None:
        raise LookupError(
            f"{policy}/{outcome.id}: the reply catalogue has no entry marked default for it"
        )
    return replace(outcome, reply=tuple(entry.template.wire_lines()))


def builtin_policies() -> dict[str, PolicyClass]:
    from strictmx.policies import BUILTIN

    return {cls.name: cls for cls in BUILTIN}


def load_registry() -> dict[str, PolicyClass]:
    """Built-in policies plus those registered by installed packages."""
    registry = builtin_policies()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plug-in must not take the server down
            log.warning("cannot load policy plug-in %s (%s): %s", ep.name, ep.value, exc)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Policy)):
            log.warning("plug-in %s (%s) is not a strictmx Policy class", ep.name, ep.value)
            continue
        if cls.name in registry:
            log.warning("plug-in %s redefines policy %r; the built-in is kept", ep.value, cls.name)
            continue
        registry[cls.name] = cls
    return registry
