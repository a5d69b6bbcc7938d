"""Pydantic types and validators shared by the `world:` sections of a scenario."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ValidatorFunctionWrapHandler, WrapValidator

from ..trust import Reach, reaches
from .names import normalise_ip, normalise_name

#: Where a world section's answers come from: the scenario alone (hermetic), the scenario
#: then the real thing (overlay), or the real thing only (system).
Mode = Literal["hermetic", "overlay", "system"]


def distinct_keys(normalise: Callable[[str], str]) -> WrapValidator:
    """A mapping validator that refuses two keys meaning the same thing once normalised.

    Without it, `Example.com` and `example.com.` would silently overwrite each other.
    """

    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        result = handler(value)
        if isinstance(value, dict) and len(result) < len(value):
            seen: dict[str, str] = {}
            for key in value:
                canonical = normalise(key)
                if canonical in seen:
                    raise ValueError(
                        f"{seen[canonical]!r} and {key!r} are the same entry ({canonical})"
                    )
                seen[canonical] = key
        return result

    return WrapValidator(check)


def one_or_many(value: Any) -> Any:
    return value if value is None or isinstance(value, list) else [value]


DnsName = Annotated[str, AfterValidator(normalise_name)]
IPText = Annotated[str, AfterValidator(normalise_ip)]


def beyond_hermetic(reach: Reach) -> AfterValidator:
    """Mark a section's `mode`: overlay and system reach outside the process."""
    return reaches(reach, when=lambda mode: mode != "hermetic")
