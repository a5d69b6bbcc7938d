"""One-line fixes: what the sending side changes so that an outcome no longer happens.

The texts are the reply catalogue's (strictmx/receiver/data/catalogue.yaml, each outcome's `fix`),
the one place that says what an outcome means; an outcome the catalogue does not
describe (a third-party policy's) falls back to its documentation.
"""

from __future__ import annotations

from .registry import bundled


def fix_for(policy: str, outcome: str, doc: str = "") -> str:
    """The one-line fix for an outcome; its documentation when the catalogue has none."""
    info = bundled().outcomes.get((policy, outcome))
    if info is not None:
        return info.fix
    return f"See `strictmx policies` ({policy}): {doc}" if doc else "See `strictmx policies`."
