"""strictmx's import graph, read from the source with `ast` (nothing is imported).

Shared by tests/unit/test_layers.py (which asserts on it) and scripts/layers.py (which prints
the figures), so that the figures a closing note quotes and the rules the tests enforce come
from one reading of the tree.

An edge is one import statement naming a strictmx module. `from pkg import name` is an edge
to `pkg.name` when that is a module of the tree, otherwise to `pkg`. Importing a module also
runs its parent packages' `__init__`, but those implicit imports are not edges: every module
would otherwise depend on `strictmx/__init__.py`, which re-exports the public names.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "strictmx"


@dataclass(frozen=True)
class Import:
    """One import of a strictmx module by a strictmx module."""

    importer: str
    target: str
    #: The importer's file, relative to the tree's root.
    file: str
    line: int
    #: Inside a function or method body: runs at call time, not when the module loads.
    in_function: bool
    #: Under `if TYPE_CHECKING:`: seen by the type checker only.
    type_checking: bool

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Graph:
    root: Path
    #: module name -> its source file
    modules: dict[str, Path]
    imports: list[Import]

    def runtime_edges(self) -> dict[str, set[str]]:
        """importer -> targets, for imports that run (top-level and in-function)."""
        edges: dict[str, set[str]] = {name: set() for name in self.modules}
        for imp in self.imports:
            if not imp.type_checking:
                edges[imp.importer].add(imp.target)
        return edges

    def cycles(self) -> list[list[str]]:
        """The import cycles: groups of modules that import each other, each sorted."""
        return [sorted(group) for group in _strongly_connected(self.runtime_edges()) if group]

    def cycle_edges(self, group: Iterable[str]) -> list[Import]:
        members = set(group)
        return [
            imp
            for imp in self.imports
            if not imp.type_checking and imp.importer in members and imp.target in members
        ]

    def in_function(self) -> list[Import]:
        return [imp for imp in self.imports if imp.in_function]

    def type_checking(self) -> list[Import]:
        return [imp for imp in self.imports if imp.type_checking]

    def line_counts(self) -> dict[str, int]:
        return {
            name: len(path.read_text(encoding="utf-8").splitlines())
            for name, path in self.modules.items()
        }


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read(root: Path = ROOT) -> Graph:
    modules = {module_name(path, root): path for path in sorted((root / PACKAGE).rglob("*.py"))}
    imports: list[Import] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        file = path.relative_to(root).as_posix()
        for node, in_function, type_checking in _walk(tree):
            for target in _targets(node, name, is_package, modules):
                imports.append(Import(name, target, file, node.lineno, in_function, type_checking))
    return Graph(root, modules, imports)


def _walk(
    node: ast.AST, in_function: bool = False, type_checking: bool = False
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, in_function, type_checking
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(child, True, type_checking)
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), in_function, True)
            for stmt in child.orelse:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), in_function, False)
        else:
            yield from _walk(child, in_function, type_checking)


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _targets(
    node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, modules: dict[str, Path]
) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if _ours(alias.name)]
    if node.level:
        # A relative import counts from the importer's package (itself, for an __init__).
        package = importer.split(".")
        if not is_package:
            package.pop()
        if node.level > 1:
            package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([node.module] if node.module else [])])
    else:
        base = node.module or ""
    if not _ours(base):
        return []
    found: list[str] = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        target = sub if sub in modules else base
        if target not in found:
            found.append(target)
    return found


def _ours(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; returns only groups that form a cycle (more than one
    module, or one that imports itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in edges:
                    continue  # a name that is no module of the tree
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1 or node in edges[node]:
                    groups.append(group)
    return groups
