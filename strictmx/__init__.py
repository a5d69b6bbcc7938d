"""strictmx: an SMTP server that behaves like the strictest mail receivers, on purpose.

One import name for everything: the receiver core is `strictmx.receiver`, the built-in
policies `strictmx.policies` (one module each). A third-party policy imports what it
needs from here:

    from strictmx import Finding, Policy, PolicyOptions, Verdict

The names are looked up when first used (PEP 562's module `__getattr__`), not when the
package loads: every `strictmx.*` import runs this file first, and importing the engine,
the journal and every policy here cost a second before `strictmx explain` could read its
input, or the pytest plug-in load in a test run that never uses it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from strictmx.receiver.engine import Decision, Engine, EngineSettings
    from strictmx.receiver.finding import Finding
    from strictmx.receiver.journal import Journal, JournalError
    from strictmx.receiver.policy import Context, Outcome, Policy, PolicyOptions
    from strictmx.receiver.registry import load_registry
    from strictmx.receiver.scenario import Scenario, ScenarioError
    from strictmx.receiver.session import Client, Counters, Session
    from strictmx.receiver.trust import Reach, Trust, reaches
    from strictmx.receiver.verdict import Action, Reply, ReplyError, Stage, Verdict

#: Each public name's module: the same imports as above, made on first use.
PUBLIC: dict[str, str] = {
    "Action": "strictmx.receiver.verdict",
    "Client": "strictmx.receiver.session",
    "Context": "strictmx.receiver.policy",
    "Counters": "strictmx.receiver.session",
    "Decision": "strictmx.receiver.engine",
    "Engine": "strictmx.receiver.engine",
    "EngineSettings": "strictmx.receiver.engine",
    "Finding": "strictmx.receiver.finding",
    "Journal": "strictmx.receiver.journal",
    "JournalError": "strictmx.receiver.journal",
    "Outcome": "strictmx.receiver.policy",
    "Policy": "strictmx.receiver.policy",
    "PolicyOptions": "strictmx.receiver.policy",
    "Reach": "strictmx.receiver.trust",
    "Reply": "strictmx.receiver.verdict",
    "ReplyError": "strictmx.receiver.verdict",
    "Scenario": "strictmx.receiver.scenario",
    "ScenarioError": "strictmx.receiver.scenario",
    "Session": "strictmx.receiver.session",
    "Stage": "strictmx.receiver.verdict",
    "Trust": "strictmx.receiver.trust",
    "Verdict": "strictmx.receiver.verdict",
    "load_registry": "strictmx.receiver.registry",
    "reaches": "strictmx.receiver.trust",
}

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


def __getattr__(name: str) -> Any:
    module = PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'strictmx' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # looked up once; later uses are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
