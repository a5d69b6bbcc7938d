"""strictmx: an SMTP server that behaves like the strictest mail receivers, on purpose.

One import name for everything: the receiver core is `strictmx.receiver`, the built-in
policies `strictmx.policies` (one module each). A third-party policy imports what it
needs from here:

    from strictmx import Finding, Policy, PolicyOptions, Verdict
"""

from strictmx.receiver.engine import Decision, Engine, EngineSettings
from strictmx.receiver.finding import Finding
from strictmx.receiver.journal import Journal, JournalError
from strictmx.receiver.policy import Context, Outcome, Policy, PolicyOptions
from strictmx.receiver.registry import load_registry
from strictmx.receiver.scenario import Scenario, ScenarioError
from strictmx.receiver.session import Client, Counters, Session
from strictmx.receiver.trust import Reach, Trust, reaches
from strictmx.receiver.verdict import Action, Reply, ReplyError, Stage, Verdict

__all__ = [
    "Action",
    "Client",
    "Context",
    "Counters",
    "Decision",
    "Engine",
    "EngineSettings",
    "Finding",
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
