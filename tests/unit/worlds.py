"""In-memory worlds for policy tests: records, PTRs and scripted DNS failures."""

from __future__ import annotations

from typing import Any

from strictmx.receiver.policy import ClientHistory, Context
from strictmx.receiver.verdict import Verdict
from strictmx.receiver.world import World, WorldConfig

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


def objection_by(policy: str, verdict: Verdict | None, outcome: str) -> Verdict:
    """`verdict` is `policy`'s `outcome`, with a reason and a reply."""
    assert verdict is not None, "expected an objection, the client passed"
    assert verdict.policy == policy
    assert verdict.outcome == outcome, verdict.reason
    assert verdict.reason
    assert verdict.reply is not None
    return verdict


def wire(verdict: Verdict) -> str:
    assert verdict.reply is not None
    return verdict.reply.render()
