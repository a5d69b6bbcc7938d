"""The receiver's idea of the time: real, shifted, or standing still.

Date-header checks ("too far in the future", "older than N days") are only reproducible
when the scenario pins the time. Rate windows and timeouts use `monotonic()`, which always
runs at real speed, so a fixed clock cannot freeze them.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, WithJsonSchema, field_validator

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"([+-]?)((?:\d+(?:\.\d+)?[smhdw])+)")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds from '90', '-3h', '90m', '2d', '1h30m' (units s, m, h, d, w)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        try:
            seconds = float(text)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds):
            raise ValueError(f"not a duration: {text!r} (seconds, or e.g. '-3h', '90m', '2d')")
        return seconds
    sign, body = match.groups()
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(body))
    return -seconds if sign == "-" else seconds


class ClockConfig(BaseModel):
    """The `world.clock` section."""

    model_config = ConfigDict(extra="forbid")

    fixed: datetime | None = Field(
        None, description="ISO 8601 instant, with its timezone, at which the clock stands still."
    )
    offset: Annotated[
        float,
        WithJsonSchema(
            {"anyOf": [{"type": "number"}, {"type": "string", "pattern": f"^{_DURATION.pattern}$"}]}
        ),
    ] = Field(
        0.0,
        allow_inf_nan=False,
        description="Added to real time: seconds, or a duration such as '-3h', '90m', '2d'.",
    )

    @field_validator("fixed")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError(
                f"a fixed time needs a timezone, e.g. 'Z' or '+02:00': {value.isoformat()}"
            )
        return value

    @field_validator("offset", mode="before")
    @classmethod
    def _duration(cls, value: Any, info: ValidationInfo) -> Any:
        if info.data.get("fixed") is not None:
            raise ValueError("fixed and offset cannot be combined: a fixed clock stands still")
        if isinstance(value, bool):
            raise ValueError(f"not a duration: {value!r}")
        return parse_duration(value) if isinstance(value, str) else value


class Clock:
    """`now()` is what the receiver believes; `monotonic()` is real elapsed time."""

    def __init__(self, fixed: datetime | None = None, offset: float = 0.0) -> None:
        if fixed is not None and fixed.utcoffset() is None:
            raise ValueError("a fixed time needs a timezone")
        self.fixed = fixed.astimezone(UTC) if fixed is not None else None
        self.offset = timedelta(seconds=offset)

    @classmethod
    def from_config(cls, cfg: ClockConfig) -> Clock:
        return cls(cfg.fixed, cfg.offset)

    def now(self) -> datetime:
        """Aware, in UTC."""
        if self.fixed is not None:
            return self.fixed
        return datetime.now(UTC) + self.offset

    def monotonic(self) -> float:
        return time.monotonic()
