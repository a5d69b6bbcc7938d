"""The receiver core: everything of strictmx that is not a single policy."""

from .engine import Decision, Engine, EngineSettings
from .journal import Journal, JournalError
from .policy import Context, Outcome, Policy, PolicyOptions, load_registry
from .scenario import Scenario, ScenarioError
from .session import Client, Counters, Session
from .trust import Reach, Trust, reaches
from .verdict import Action, Reply, ReplyError, Stage, Verdict

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
