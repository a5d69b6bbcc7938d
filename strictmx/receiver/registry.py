"""Which policies a scenario may name: the built-ins and those installed packages register.

Above both the policy contract (strictmx/receiver/policy.py) and the built-in policies
(strictmx/policies/), which import the contract: the registry is what joins them, so
neither has to import the other's side.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging

from strictmx.policies import BUILTIN

from .catalogue import Catalogue, Outcomes, bundled_for
from .policy import Policy, PolicyClass

log = logging.getLogger(__name__)

#: Third-party policies register here: `name = "package.module:PolicyClass"`.
ENTRY_POINT_GROUP = "strictmx.policies"


def builtin_policies() -> dict[str, PolicyClass]:
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


def builtin_outcomes() -> Outcomes:
    """Each built-in policy's outcomes, by policy name."""
    return {cls.name: cls.outcomes for cls in BUILTIN}


@functools.cache
def bundled() -> Catalogue:
    """The reply catalogue shipped with strictmx, checked against the built-in policies
    once: an entry naming an outcome no policy has is an error at first use."""
    return bundled_for(builtin_outcomes())
