"""Built-in policies and third-party ones from the `strictmx.policies` entry-point group."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from strictmx.receiver import scenario as scenarios
from strictmx.receiver.registry import ENTRY_POINT_GROUP, load_registry


@pytest.fixture
def plugin_dist(tmp_path: Path) -> Iterator[Path]:
    """An installed distribution (dist-info + module) that registers two entry points."""
    (tmp_path / "acme_policies.py").write_text(
        textwrap.dedent(
            """
            from typing import ClassVar
            from strictmx import Outcome, Policy, PolicyOptions, Stage

            class Greylist(Policy[PolicyOptions]):
                name = "acme_greylist"
                summary = "defer first attempts"
                stages: ClassVar = frozenset({Stage.RCPT})
                outcomes = (Outcome("GREYLISTED", "450 4.2.0 greylisted", "first attempt"),)

                async def check(self, stage, session, ctx):
                    return self.verdict("GREYLISTED", stage, session, ctx, "first attempt")

            NOT_A_POLICY = object()
            """
        )
    )
    info = tmp_path / "acme_policies-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-policies\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n"
        "acme_greylist = acme_policies:Greylist\n"
        "broken = acme_policies:NOT_A_POLICY\n"
        "missing = acme_policies_nope:Thing\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("acme_policies", None)


def test_builtins_are_registered_by_name() -> None:
    registry = load_registry()
    assert {"helo_syntax", "session_limits"} <= set(registry)
    for name, cls in registry.items():
        assert cls.name == name
        assert cls.stages, f"{name} declares its stages"
        assert cls.summary, f"{name} has a one-line summary"
        for outcome in cls.outcomes:
            assert outcome.id.isupper()
            outcome.default_reply()  # parses
        for key, info in cls.Options.model_fields.items():
            assert info.description, f"{name}.{key} has a one-line doc"


def test_entry_point_policies_join_and_broken_ones_are_skipped(
    plugin_dist: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = load_registry()
    assert registry["acme_greylist"].__name__ == "Greylist"
    assert "broken" not in registry and "missing" not in registry
    assert "is not a strictmx Policy class" in caplog.text
    assert "cannot load policy plug-in missing" in caplog.text


def test_a_scenario_can_use_an_entry_point_policy(plugin_dist: Path) -> None:
    scenario = scenarios.loads("policies:\n  rcpt:\n    - policy: acme_greylist\n")
    assert [e.cls.name for e in scenario.entries] == ["acme_greylist"]
