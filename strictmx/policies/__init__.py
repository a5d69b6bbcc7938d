"""Built-in policies: one module per policy, one class each, named as the policy.

Every module in this package is a policy: a new one is found without being listed here,
and a module that does not hold exactly one Policy class named after it is an error.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from strictmx.receiver.policy import Policy, PolicyClass


def _discover() -> tuple[PolicyClass, ...]:
    found: list[PolicyClass] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        classes = [
            cls
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, Policy) and cls.__module__ == module.__name__
        ]
        if len(classes) != 1 or getattr(classes[0], "name", None) != info.name:
            raise ImportError(
                f"strictmx/policies/{info.name}.py must define exactly one Policy class whose"
                f" name is {info.name!r};"
                f" found: {[getattr(c, 'name', c.__name__) for c in classes]}"
            )
        found.append(classes[0])
    return tuple(found)


BUILTIN: tuple[PolicyClass, ...] = _discover()

__all__ = ["BUILTIN"]
