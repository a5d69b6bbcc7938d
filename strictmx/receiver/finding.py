"""What a policy found wrong, before it becomes a verdict.

Policies that run several checks keep what the first failing check found as a `Finding`
and turn it into a verdict in one place (`Policy.verdict(f.outcome, ..., f.reason,
**f.fields)`). It sits apart from `verdict` because it is not a decision yet: the policy
may still drop it (an option says to ignore it) or merge several into one reply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Finding:
    """One defect: the outcome's name, a sentence naming it exactly, and the reply fields."""

    outcome: str
    reason: str
    # Any: they travel as keyword arguments of Policy.verdict, next to action and delay.
    fields: dict[str, Any] = field(default_factory=dict)
