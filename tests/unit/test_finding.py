"""One `Finding` type: policies that collect defects share it, and third parties can too."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import strictmx
from strictmx.receiver.finding import Finding

PACKAGE = Path(strictmx.__file__).parent


def test_no_module_defines_its_own_finding() -> None:
    defining = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef) and node.name == "Finding"
    )
    assert defining == ["receiver/finding.py"]


@pytest.mark.parametrize(
    "module", ["headers", "dynamic_client", "helo_syntax", "sender_domain", "helo_dns"]
)
def test_policies_use_the_shared_finding(module: str) -> None:
    assert importlib.import_module(f"strictmx.policies.{module}").Finding is Finding


def test_exported_for_third_party_policies() -> None:
    assert strictmx.Finding is Finding
    assert "Finding" in strictmx.__all__


def test_a_finding_is_a_value() -> None:
    first = Finding("HELO_MISSING", "no name")
    assert first == Finding("HELO_MISSING", "no name", {})
    assert first != Finding("HELO_MISSING", "no name", {"helo": ""})
    with pytest.raises(AttributeError):
        first.outcome = "OTHER"  # type: ignore[misc]
