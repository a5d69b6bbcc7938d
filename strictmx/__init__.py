"""strictmx: an SMTP server that behaves like the strictest mail receivers, on purpose.

One import name for everything: the receiver core is `strictmx.receiver`, the built-in
policies `strictmx.policies` (one module each). A third-party policy imports what it
needs from here:

    from strictmx import Policy, PolicyOptions, Verdict
"""

from strictmx.receiver import (
    Action,
    Client,
    Context,
    Counters,
    Decision,
    Engine,
    EngineSettings,
    Journal,
    JournalError,
    Outcome,
    Policy,
    PolicyOptions,
    Reach,
    Reply,
    ReplyError,
    Scenario,
    ScenarioError,
    Session,
    Stage,
    Trust,
    Verdict,
    load_registry,
    reaches,
)

__all__ = [
    "Action",
    "Client",
    "Context",
    "Counters",
    "Decision",
    "Engine",
    "EngineSettings",
    "Journal",
    "JournalError",
    "Outcome",
    "Policy",
    "PolicyOptions",
    "Reach",
    "Reply",
    "ReplyError",
    "Scenario",
    "ScenarioError",
    "Session",
    "Stage",
    "Trust",
    "Verdict",
    "load_registry",
    "reaches",
]
