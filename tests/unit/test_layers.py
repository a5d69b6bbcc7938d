"""strictmx's imports point one way: data types at the bottom, the policy contract and the
policies above them, the engine and the conversation above those, I/O and the surfaces on
top; no import cycles, and no imports hidden inside functions to dodge one.

The tree is read with `ast` (tests/import_graph.py; nothing is imported). Each rule is
checked on the real tree (it must hold) and on a small tree written for the test that
breaks it (the check must see that).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests import import_graph
from tests.import_graph import Graph, Import

#: The layers, bottom first. A module may import modules of its own layer or below.
LAYERS = (
    "data",  # replies, verdicts, sessions, messages, the world, trust, the reply catalogue
    "contract",  # what a policy is and may consult
    "policies",  # the built-in policies, one module each
    "registry",  # which policies exist: built-ins and entry points
    "engine",  # runs a stage's policy list
    "scenario",  # scenario files and their expect: cases, validated at load
    "conversation",  # a scenario made runnable (persona) and the sans-IO conversation
    "io",  # SMTP transport, the journal, the receiver process
    "surfaces",  # HTTP API, CLI, pytest plugin, run, check, explain, reproduce
    "package",  # strictmx's public names, for third-party policies
)

#: Every module's layer. `pkg.*` places every module under `pkg` (not `pkg` itself): any
#: new policy is a policy, any new world module part of the world. A name may be here
#: before its module exists (modules other branches of #12 add).
PLACES: dict[str, str] = {
    "strictmx.receiver": "data",
    "strictmx.receiver.verdict": "data",
    "strictmx.receiver.trust": "data",
    "strictmx.receiver.message": "data",
    "strictmx.receiver.rfc5322": "data",
    "strictmx.receiver.session": "data",
    "strictmx.receiver.authentication": "data",
    "strictmx.receiver.alignment": "data",
    "strictmx.receiver.dkim_signing": "data",
    "strictmx.receiver.dkim_rsa": "data",
    "strictmx.receiver.catalogue": "data",
    "strictmx.receiver.catalogue_schema": "data",
    "strictmx.receiver.outcome": "data",
    "strictmx.receiver.reproduction": "data",
    "strictmx.receiver.finding": "data",
    "strictmx.receiver.session_log": "data",
    "strictmx.receiver.smtp_auth": "data",
    # Pure command grammar: the dialect, the conversation and policies (helo_syntax's
    # printable) all read it.
    "strictmx.receiver.grammar": "data",
    "strictmx.receiver.grammar.*": "data",
    "strictmx.receiver.world": "data",
    "strictmx.receiver.world.*": "data",
    "strictmx.receiver.policy": "contract",
    "strictmx.policies": "policies",
    "strictmx.policies.*": "policies",
    "strictmx.receiver.registry": "registry",
    "strictmx.receiver.fixes": "registry",
    "strictmx.receiver.engine": "engine",
    "strictmx.receiver.expect": "scenario",
    "strictmx.receiver.scenario": "scenario",
    "strictmx.receiver.scenario_yaml": "scenario",
    "strictmx.receiver.dialect": "scenario",
    "strictmx.receiver.persona": "conversation",
    "strictmx.receiver.conversation": "conversation",
    "strictmx.receiver.smtp": "io",
    "strictmx.receiver.smtp_data": "io",
    "strictmx.receiver.smtp_commands": "io",
    "strictmx.receiver.tls": "io",
    "strictmx.receiver.journal": "io",
    "strictmx.receiver.journal_writer": "io",
    "strictmx.receiver.server": "io",
    "strictmx.receiver.api": "surfaces",
    "strictmx.receiver.api_contract": "surfaces",
    "strictmx.receiver.api_listener": "surfaces",
    "strictmx.receiver.api_openapi": "surfaces",
    "strictmx.receiver.cli": "surfaces",
    "strictmx.receiver.serve_command": "surfaces",
    "strictmx.receiver.scenarios_command": "surfaces",
    "strictmx.receiver.pytest_plugin": "surfaces",
    "strictmx.receiver.runner": "surfaces",
    "strictmx.receiver.junit": "surfaces",
    "strictmx.receiver.check": "surfaces",
    "strictmx.receiver.explain": "surfaces",
    "strictmx.receiver.explain.*": "surfaces",
    "strictmx.receiver.reproduce": "surfaces",
    "strictmx.receiver.viewer": "surfaces",
    "strictmx.receiver.viewer.*": "surfaces",
    "strictmx": "package",
}

#: Imports that still break a rule here and that another branch of issue #12 removes,
#: (importer, imported) -> who and why. Exempt from the in-function and layer rules, never
#: from the cycle rule; an entry whose import is gone fails too, so the list empties as
#: the branches are merged.
PENDING: dict[tuple[str, str], str] = {}


def place(module: str, places: Mapping[str, str] = PLACES) -> str | None:
    """The module's layer: its own entry, else the nearest `pkg.*` above it."""
    if module in places:
        return places[module]
    parts = module.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        found = places.get(".".join(parts[:cut]) + ".*")
        if found is not None:
            return found
    return None


def cycle_problems(graph: Graph) -> list[str]:
    return [
        "import cycle: "
        + " <-> ".join(group)
        + "".join(f"\n  {imp.where}: {imp.importer} imports {imp.target}" for imp in edges)
        for group in graph.cycles()
        for edges in [graph.cycle_edges(group)]
    ]


def in_function_problems(graph: Graph, pending: Mapping[tuple[str, str], str]) -> list[str]:
    return [
        f"{imp.where}: {imp.target} is imported inside a function; import it at the top"
        " (if that makes a cycle, the module is in the wrong layer)"
        for imp in graph.in_function()
        if (imp.importer, imp.target) not in pending
    ]


def unplaced_problems(graph: Graph, places: Mapping[str, str]) -> list[str]:
    return [
        f"{graph.modules[name].relative_to(graph.root)}: module {name} has no layer;"
        " add it to PLACES in tests/unit/test_layers.py"
        for name in sorted(graph.modules)
        if place(name, places) is None
    ]


def upward(imp: Import, places: Mapping[str, str]) -> tuple[str, str] | None:
    """(importer's layer, imported's layer) when `imp` imports a higher layer."""
    low, high = place(imp.target, places), place(imp.importer, places)
    if low is None or high is None or LAYERS.index(low) <= LAYERS.index(high):
        return None
    return high, low


def layer_problems(
    graph: Graph, places: Mapping[str, str], pending: Mapping[tuple[str, str], str]
) -> list[str]:
    """Imports of a higher layer, TYPE_CHECKING ones included: a type that points up is a
    dependency that points up."""
    problems = []
    for imp in graph.imports:
        layers = upward(imp, places)
        if layers is not None and (imp.importer, imp.target) not in pending:
            problems.append(
                f"{imp.where}: {imp.importer} ({layers[0]}) imports {imp.target} ({layers[1]}),"
                f" a higher layer; layers, bottom first: {', '.join(LAYERS)}"
            )
    return problems


def stale_pending(
    graph: Graph, places: Mapping[str, str], pending: Mapping[tuple[str, str], str]
) -> list[str]:
    """Entries no import needs any more: none of that pair is inside a function or upward."""
    breaking = {
        (imp.importer, imp.target)
        for imp in graph.imports
        if imp.in_function or upward(imp, places) is not None
    }
    return [
        f"PENDING names {importer} -> {target}, which breaks no rule any more: remove the entry"
        for importer, target in pending
        if (importer, target) not in breaking
    ]


# -- the real tree ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tree() -> Graph:
    return import_graph.read()


def test_the_tree_is_read(tree: Graph) -> None:
    assert "strictmx.receiver.verdict" in tree.modules
    assert "strictmx.policies.helo_syntax" in tree.modules
    # The engine imports the contract: the reader sees relative imports.
    assert any(
        i.importer == "strictmx.receiver.engine" and i.target == "strictmx.receiver.policy"
        for i in tree.imports
    )


def test_no_import_cycles(tree: Graph) -> None:
    assert cycle_problems(tree) == []


def test_no_imports_inside_functions(tree: Graph) -> None:
    assert in_function_problems(tree, PENDING) == []


def test_every_module_has_a_layer(tree: Graph) -> None:
    assert unplaced_problems(tree, PLACES) == []


def test_imports_point_down(tree: Graph) -> None:
    assert layer_problems(tree, PLACES, PENDING) == []


def test_pending_exemptions_are_still_needed(tree: Graph) -> None:
    assert stale_pending(tree, PLACES, PENDING) == []


# -- a tree that breaks each rule ------------------------------------------------------------


def write_tree(root: Path, files: Mapping[str, str]) -> Graph:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return import_graph.read(root)


SMALL_PLACES = {
    "strictmx": "package",
    "strictmx.receiver": "data",
    "strictmx.receiver.verdict": "data",
    "strictmx.receiver.policy": "contract",
    "strictmx.policies": "policies",
    "strictmx.policies.*": "policies",
    "strictmx.receiver.server": "io",
    "strictmx.receiver.api": "surfaces",
    "strictmx.receiver.api_contract": "surfaces",
    "strictmx.receiver.api_listener": "surfaces",
    "strictmx.receiver.api_openapi": "surfaces",
}


def clean_tree() -> dict[str, str]:
    return {
        "strictmx/__init__.py": "from strictmx.receiver.policy import Policy\n",
        "strictmx/receiver/__init__.py": "",
        "strictmx/receiver/verdict.py": "class Verdict: ...\n",
        "strictmx/receiver/policy.py": textwrap.dedent(
            """\
            from __future__ import annotations
            from typing import TYPE_CHECKING
            from .verdict import Verdict
            if TYPE_CHECKING:
                from . import verdict
            class Policy: ...
            """
        ),
        "strictmx/policies/__init__.py": "from strictmx.receiver.policy import Policy\n",
        "strictmx/policies/one.py": "from ..receiver import policy\nimport json\n",
        "strictmx/receiver/server.py": "from .policy import Policy\n",
        "strictmx/receiver/api.py": "from . import server, verdict\n",
    }


def test_a_clean_small_tree_breaks_no_rule(tmp_path: Path) -> None:
    graph = write_tree(tmp_path, clean_tree())
    assert graph.runtime_edges()["strictmx.receiver.api"] == {
        "strictmx.receiver.server",
        "strictmx.receiver.verdict",
    }
    assert graph.runtime_edges()["strictmx.policies.one"] == {"strictmx.receiver.policy"}
    assert [i.target for i in graph.type_checking()] == ["strictmx.receiver.verdict"]
    assert cycle_problems(graph) == []
    assert in_function_problems(graph, {}) == []
    assert unplaced_problems(graph, SMALL_PLACES) == []
    assert layer_problems(graph, SMALL_PLACES, {}) == []


def test_a_cycle_through_an_import_inside_a_function_is_a_cycle(tmp_path: Path) -> None:
    files = clean_tree()
    files["strictmx/receiver/policy.py"] += (
        "def builtins():\n    from strictmx.policies import one\n    return one\n"
    )
    graph = write_tree(tmp_path, files)
    (cycle,) = cycle_problems(graph)
    assert cycle.startswith("import cycle: strictmx.policies.one <-> strictmx.receiver.policy\n"), (
        cycle
    )
    assert "strictmx/receiver/policy.py:8: strictmx.receiver.policy imports" in cycle
    assert in_function_problems(graph, {}) == [
        "strictmx/receiver/policy.py:8: strictmx.policies.one is imported inside a function;"
        " import it at the top (if that makes a cycle, the module is in the wrong layer)"
    ]
    # The pending list exempts it from the in-function rule, never from the cycle rule.
    pending = {("strictmx.receiver.policy", "strictmx.policies.one"): "later"}
    assert in_function_problems(graph, pending) == []
    assert stale_pending(graph, SMALL_PLACES, pending) == []
    assert len(cycle_problems(graph)) == 1


def test_a_type_checking_import_is_no_cycle_but_must_point_down(tmp_path: Path) -> None:
    files = clean_tree()
    files["strictmx/receiver/server.py"] += (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .api import Api\n"
    )
    graph = write_tree(tmp_path, files)
    assert cycle_problems(graph) == []
    assert layer_problems(graph, SMALL_PLACES, {}) == [
        "strictmx/receiver/server.py:4: strictmx.receiver.server (io) imports"
        " strictmx.receiver.api (surfaces), a higher layer; layers, bottom first: "
        + ", ".join(LAYERS)
    ]


def test_an_upward_import_names_its_file_and_line(tmp_path: Path) -> None:
    files = clean_tree()
    files["strictmx/receiver/verdict.py"] = "import json\n\nfrom strictmx.policies import one\n"
    graph = write_tree(tmp_path, files)
    (problem,) = layer_problems(graph, SMALL_PLACES, {})
    assert problem.startswith(
        "strictmx/receiver/verdict.py:3: strictmx.receiver.verdict (data) imports"
        " strictmx.policies.one (policies), a higher layer"
    ), problem


def test_a_module_without_a_layer_is_named(tmp_path: Path) -> None:
    files = clean_tree()
    files["strictmx/receiver/newcomer.py"] = ""
    files["strictmx/policies/two.py"] = ""  # placed by strictmx.policies.*
    graph = write_tree(tmp_path, files)
    assert unplaced_problems(graph, SMALL_PLACES) == [
        "strictmx/receiver/newcomer.py: module strictmx.receiver.newcomer has no layer;"
        " add it to PLACES in tests/unit/test_layers.py"
    ]


def test_a_pending_entry_that_breaks_no_rule_any_more_is_named(tmp_path: Path) -> None:
    files = clean_tree()
    # Still imported, but at the top and downward: the exemption is no longer needed.
    files["strictmx/receiver/server.py"] += "def later():\n    from . import api\n"
    graph = write_tree(tmp_path, files)
    pending = {
        ("strictmx.receiver.api", "strictmx.receiver.verdict"): "was in a function",
        ("strictmx.receiver.verdict", "strictmx.policies.one"): "no longer imported at all",
        ("strictmx.receiver.server", "strictmx.receiver.api"): "in a function, still needed",
    }
    assert stale_pending(graph, SMALL_PLACES, pending) == [
        "PENDING names strictmx.receiver.api -> strictmx.receiver.verdict, which breaks no"
        " rule any more: remove the entry",
        "PENDING names strictmx.receiver.verdict -> strictmx.policies.one, which breaks no"
        " rule any more: remove the entry",
    ]
