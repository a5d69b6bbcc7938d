"""Built-in policies: one module per policy, one class each, named as the policy."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .helo_syntax import HeloSyntax
from .session_limits import SessionLimits

if TYPE_CHECKING:
    from receiver.policy import PolicyClass

BUILTIN: tuple[PolicyClass, ...] = (HeloSyntax, SessionLimits)  # type: ignore[assignment]

__all__ = ["BUILTIN", "HeloSyntax", "SessionLimits"]
