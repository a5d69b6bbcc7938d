"""The real DSN fixtures can be made again: tests/data/bounces/generate.py still works.

One case of the generator runs against a fresh strictmx and Postfix, and the DSN Postfix
writes now is read exactly as the committed one is (queue ids and dates aside).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from strictmx.receiver.explain import read_bounce
from strictmx.receiver.pytest_plugin import StrictmxFactory

from .postfix import UNAVAILABLE

pytestmark = pytest.mark.e2e

assert UNAVAILABLE is None, f"the Postfix end-to-end tests cannot run: {UNAVAILABLE}"

BOUNCES = Path(__file__).resolve().parent.parent / "data" / "bounces"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bounce_generate", BOUNCES / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_a_regenerated_dsn_reads_as_the_committed_one() -> None:
    generate = generator()
    case = next(c for c in generate.CASES if c.name == "postfix-helo-two-recipients")
    messages, verdicts = generate.run(case, StrictmxFactory("default"))
    fresh = read_bounce(messages[0].decode())
    kept = read_bounce((BOUNCES / f"{case.name}.eml").read_text())
    assert fresh is not None and kept is not None
    assert [r.fields.get("diagnostic-code") for r in fresh.recipients] == [
        r.fields.get("diagnostic-code") for r in kept.recipients
    ]
    assert [(r.address, r.status, r.stage) for r in fresh.recipients] == [
        (r.address, r.status, r.stage) for r in kept.recipients
    ]
    assert verdicts == [{"policy": "helo_syntax", "outcome": "HELO_NOT_FQDN", "replied_at": "rcpt"}]
