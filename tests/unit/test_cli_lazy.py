"""The imports the CLI and the `strictmx` package make by name (importlib), checked as if
they were import statements: strictmx/receiver/cli.py loads a subcommand's module only when
it runs, and strictmx/__init__.py its public names only when used, so the ast-read import
graph (tests/import_graph.py) does not see those edges. Here they are added to it and the
layer and cycle rules of tests/unit/test_layers.py hold on the result."""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import strictmx
from strictmx.receiver import catalogue, cli
from strictmx.receiver.explain import cache
from tests import import_graph
from tests.import_graph import Graph, Import
from tests.unit.test_layers import PLACES, cycle_problems, layer_problems


def with_named_imports(graph: Graph) -> Graph:
    named = [
        Import("strictmx.receiver.cli", spec.module, "strictmx/receiver/cli.py", 1, False, False)
        for spec in cli.COMMANDS.values()
    ] + [
        Import("strictmx", module, "strictmx/__init__.py", 1, False, False)
        for module in strictmx.PUBLIC.values()
    ]
    named.append(
        Import(
            "strictmx.receiver.explain.cache",
            cache.REGISTRY,
            "strictmx/receiver/explain/cache.py",
            1,
            True,
            False,
        )
    )
    named.append(
        Import(
            "strictmx.receiver.catalogue",
            catalogue.SCHEMA,
            "strictmx/receiver/catalogue.py",
            1,
            True,
            False,
        )
    )
    return replace(graph, imports=[*graph.imports, *named])


def test_the_named_imports_are_modules_of_the_tree_that_point_down() -> None:
    graph = with_named_imports(import_graph.read())
    for spec in cli.COMMANDS.values():
        assert spec.module in graph.modules, spec.module
    assert set(strictmx.PUBLIC.values()) <= set(graph.modules)
    assert cache.REGISTRY in graph.modules
    assert catalogue.SCHEMA in graph.modules
    assert layer_problems(graph, PLACES, {}) == []
    assert cycle_problems(graph) == []


def test_a_named_import_of_a_higher_layer_is_seen() -> None:
    graph = import_graph.read()
    up = Import("strictmx.receiver.verdict", "strictmx.receiver.cli", "x.py", 1, False, False)
    (problem,) = layer_problems(replace(graph, imports=[*graph.imports, up]), PLACES, {})
    assert "strictmx.receiver.verdict (data) imports strictmx.receiver.cli (surfaces)" in problem


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_each_stub_says_what_its_command_says(name: str) -> None:
    real = cli.build_parser([name])
    stub = cli.build_parser([])
    assert _help(real, name) == _help(stub, name) == cli.COMMANDS[name].help


def _help(parser: argparse.ArgumentParser, name: str) -> str | None:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return next(c.help for c in sub._choices_actions if c.dest == name)


def test_the_package_exports_each_public_name_from_its_module() -> None:
    assert sorted(strictmx.PUBLIC) == sorted(strictmx.__all__)
    for name, module in strictmx.PUBLIC.items():
        assert getattr(strictmx, name) is getattr(importlib.import_module(module), name)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = strictmx.Nope  # type: ignore[attr-defined]


def loaded_by(*code: str, env: dict[str, str] | None = None) -> set[str]:
    """The strictmx modules a fresh interpreter has loaded after running `code`."""
    show = "print('\\n'.join(m for m in sys.modules if m.startswith('strictmx')))"
    program = "\n".join([*code, "import sys", show])
    out = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    ).stdout
    return set(out.split())


EXPLAIN = (
    "from strictmx.receiver import cli",
    "import contextlib, io",
    "with contextlib.redirect_stdout(io.StringIO()): cli.main(['explain', '550 5.7.1 x'])",
)


def test_explain_loads_neither_the_server_nor_the_policies_once_cached(tmp_path: Path) -> None:
    env = {"STRICTMX_CACHE_DIR": str(tmp_path)}
    first = loaded_by(*EXPLAIN, env=env)
    # The control: the first run builds the explainer, with every policy.
    assert {"strictmx.receiver.registry", "strictmx.policies.dnsbl"} <= first
    loaded = loaded_by(*EXPLAIN, env=env)
    assert "strictmx.receiver.explain.command" in loaded  # explain did run
    assert not any(m.startswith("strictmx.policies") for m in loaded), sorted(loaded)
    for heavy in (
        "strictmx.receiver.registry",
        "strictmx.receiver.serve_command",
        "strictmx.receiver.server",
        "strictmx.receiver.api",
        "strictmx.receiver.journal",
        "strictmx.receiver.runner",
        "strictmx.receiver.check",
        "strictmx.receiver.reproduce",
    ):
        assert heavy not in loaded, heavy


def test_serve_loads_its_module() -> None:
    loaded = loaded_by(
        "from strictmx.receiver import cli",
        "import contextlib, io",
        # `scenarios` has its own module now (scenarios_command); `policies` is still here.
        "with contextlib.redirect_stdout(io.StringIO()): cli.main(['policies'])",
    )
    assert "strictmx.receiver.serve_command" in loaded


def test_importing_the_package_loads_no_module_of_it() -> None:
    assert loaded_by("import strictmx") == {"strictmx"}
