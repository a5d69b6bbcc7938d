"""In-memory worlds for policy tests: records, PTRs and scripted DNS failures."""

from __future__ import annotations

from typing import Any

from receiver.policy import ClientHistory, Context
from receiver.world import World, WorldConfig

HOST = "mx.strictmx.test"


def make_ctx(
    records: dict[str, Any] | None = None,
    ptr: dict[str, Any] | None = None,
    *,
    servfail: tuple[str, ...] = (),
    timeout: tuple[str, ...] = (),
) -> Context:
    """A session's context in a hermetic world holding just these records."""
    cfg = WorldConfig.model_validate(
        {
            "dns": {
                "records": records or {},
                "ptr": ptr or {},
                "servfail": list(servfail),
                "timeout": list(timeout),
            }
        }
    )
    return Context(
        world=World.from_config(cfg), hostname=HOST, history=ClientHistory()
    ).for_session()
