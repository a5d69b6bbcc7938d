"""Every bundled scenario's `expect:` cases, played over real SMTP; every documented reply
of an implemented family is reproduced by one of them."""

from __future__ import annotations

import re
from importlib import resources

import pytest
import yaml

from strictmx.receiver import expect, runner
from strictmx.receiver import scenario as scenarios
from strictmx.receiver.registry import load_registry

pytestmark = pytest.mark.e2e

WITH_CASES = [name for name in scenarios.bundled_names() if scenarios.load(name).expect]


@pytest.mark.parametrize("name", WITH_CASES)
def test_bundled_expectations_hold_on_the_wire(name: str) -> None:
    checks = runner.run(scenarios.load(name))
    failures = [f"{c.case.name}: " + "; ".join(c.problems) for c in checks if not c.passed]
    assert not failures, "\n".join(failures)


def seed_replies() -> list[dict[str, object]]:
    text = (resources.files("strictmx.receiver") / "data" / "seed-replies.yaml").read_text()
    replies: list[dict[str, object]] = yaml.safe_load(text)["replies"]
    return replies


# The documented texts keep their authors' placeholders; a reproduction fills them in.
_PLACEHOLDERS = [
    (re.escape("%s"), r".+?"),
    (re.escape("[IPaddress]"), r"\[[0-9A-Fa-f.:]+\]"),
    (re.escape("NNNNN"), r"\d+"),
    (re.escape("kxxxxxxxxxxxxxxx.183"), r"\S+"),
    (re.escape("(some web page link)"), r".+?"),
    (re.escape("[number]"), r"\S+"),
    (re.escape("someURLofaRBL"), r"\S+"),
]


def seed_pattern(reply: str | list[str]) -> re.Pattern[str]:
    text = "\n".join(reply) if isinstance(reply, list) else reply
    pattern = re.escape(text)
    for placeholder, regex in _PLACEHOLDERS:
        pattern = pattern.replace(placeholder, regex)
    return re.compile(pattern)


def bundled_cases() -> dict[str, list[tuple[str, expect.Case]]]:
    found: dict[str, list[tuple[str, expect.Case]]] = {}
    for name in scenarios.bundled_names():
        for case in scenarios.load(name).expect:
            if case.seed:
                found.setdefault(case.seed, []).append((name, case))
    return found


IMPLEMENTED = set(load_registry())
SEEDS = [s for s in seed_replies() if s["family"] in IMPLEMENTED]


def test_some_families_are_implemented() -> None:
    assert SEEDS, "the seed catalogue and the registry share family names"


@pytest.mark.parametrize("seed", SEEDS, ids=[str(s["id"]) for s in SEEDS])
def test_every_documented_reply_is_reproduced(seed: dict[str, object]) -> None:
    cases = bundled_cases().get(str(seed["id"]), [])
    assert cases, f"no bundled expect case reproduces {seed['id']}: {seed['reply']}"
    pattern = seed_pattern(seed["reply"])  # type: ignore[arg-type]
    for scenario_name, case in cases:
        assert case.result != "accepted", f"{scenario_name}: {case.name} expects acceptance"
        wire = case.result.refused.wire()
        assert wire is not None, f"{scenario_name}: {case.name} does not pin the reply text"
        assert pattern.fullmatch("\n".join(wire)), (
            f"{scenario_name}: {case.name} expects {wire}, which is not {seed['reply']!r}"
        )
        assert case.result.refused.policy == seed["family"]
