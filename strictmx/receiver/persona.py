"""A persona: a scenario made runnable, built once.

A `Scenario` is what a file says; a `Persona` is what a receiver runs: the world built
from it, the engine with its policy chains, the callout client those policies use (with
the simulated MX hosts it serves), the context every session starts from, and the
receiver settings. `serve`, `check` and a scenario swap through the API all build one
here, so the three cannot drift apart in how they assemble it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from strictmx.policies.local_recipients import LocalRecipients, LocalRecipientsOptions
from strictmx.policies.smtpd import Smtpd

from .dialect import Dialect
from .engine import Engine, EngineSettings
from .policy import ClientHistory, Context, Policy, PolicyOptions
from .scenario import ReceiverSettings, Scenario
from .verdict import Reply, Stage
from .world import World
from .world.callout import Callout


@dataclass
class Persona:
    scenario: Scenario
    world: World
    engine: Engine
    #: None when no policy of the scenario calls out.
    callout: Callout | None
    context: Context
    #: The server's own refusals (recipient limit, queue write), as the scenario words them.
    smtpd: Smtpd
    #: The scenario's dialect with the receiver's hostname filled in, and its greeting
    #: the scenario's banner if it sets one.
    dialect: Dialect

    @property
    def settings(self) -> ReceiverSettings:
        return self.scenario.receiver

    @property
    def name(self) -> str:
        return self.scenario.name

    @classmethod
    def build(
        cls,
        scenario: Scenario,
        *,
        history: ClientHistory | None = None,
        callout: Callout | None = None,
        warn_only: bool | None = None,
    ) -> Persona:
        """Assemble `scenario`'s persona.

        `history` is shared across personas of one receiver (a swap keeps what clients
        did); `callout` is a running client to reuse when the scenario calls out and it can
        serve the new world (the caller points it at this world when it takes the persona
        into use, `Receiver.use_persona`; otherwise a new one is made, not started:
        `persona.callout is not callout` tells the caller to start it);
        `warn_only` overrides the scenario's (`check`).
        """
        world = World.from_config(scenario.world)
        settings = scenario.receiver
        chains = scenario.chains()
        engine = Engine(
            _with_builtins(chains, settings),
            EngineSettings(
                delay_reject=settings.delay_reject,
                warn_only=settings.warn_only if warn_only is None else warn_only,
                soft_bounce=settings.soft_bounce,
                always_accepted=tuple(settings.always_accepted),
            ),
        )
        if not calls_out(scenario):
            callout = None
        else:
            fresh = Callout.for_world(world)
            if callout is None or (callout.responder is None and fresh.responder is not None):
                # None running, or one that cannot serve this world's simulated MX hosts.
                callout = fresh
        context = Context(
            world=world,
            hostname=settings.hostname,
            history=history if history is not None else ClientHistory(),
            callout=callout,
            delay_reject=settings.delay_reject,
            smtputf8=settings.smtputf8,
        )
        smtpd = next((p for p in _listed(chains) if isinstance(p, Smtpd)), None)
        return cls(
            scenario,
            world,
            engine,
            callout,
            context,
            smtpd or Smtpd(PolicyOptions()),
            _resolved(scenario.dialect, settings),
        )


def _resolved(dialect: Dialect, settings: ReceiverSettings) -> Dialect:
    dialect = dialect.for_host(settings.hostname)
    if "banner" not in settings.model_fields_set:
        return dialect
    banner = Reply(220, None, (settings.banner.format(hostname=settings.hostname),))
    return replace(dialect, replies={**dialect.replies, "greeting_default": banner})


def calls_out(scenario: Scenario) -> bool:
    """Whether some policy of `scenario` asks the callout client (`Policy.calls_out`)."""
    return any(entry.cls.calls_out for entry in scenario.entries)


Chains = dict[Stage, list[Policy[PolicyOptions]]]


def _with_builtins(chains: Chains, settings: ReceiverSettings) -> Chains:
    """The chains with Postfix's implicit reject_unlisted_recipient: `local_recipients`
    at the end of RCPT unless the scenario lists it where it wants it; every entry that
    names no table of its own uses the receiver's `local_recipients`. A table of `*`
    alone (the default) lets every address in: then there is nothing to add."""
    rcpt = chains.get(Stage.RCPT, [])
    listed = any(isinstance(p, LocalRecipients) for p in rcpt)
    if not listed and list(settings.local_recipients) != ["*"]:
        rcpt = chains.setdefault(Stage.RCPT, rcpt)
        implicit: Policy[PolicyOptions] = LocalRecipients(LocalRecipientsOptions())  # type: ignore[assignment]
        rcpt.append(implicit)
    for policy in rcpt:
        if isinstance(policy, LocalRecipients):
            policy.use_table(settings.local_recipients)
    return chains


def _listed(chains: Chains) -> Iterator[Policy[PolicyOptions]]:
    for chain in chains.values():
        yield from chain
