"""Scenario YAML: read it within bounds, and say where each problem is.

Every error a scenario gives is a `ScenarioError` whose text reads
`scenarios/x.yaml:14 policies.helo[2].mode: 'rfc9999' is not one of: 'rfc1035', ...`; its
`issues` hold the same in parts (the HTTP API answers with those). `LineMap` keeps the
line of every key path of the parsed YAML for those messages.

A scenario may come from someone who should not run code on the receiver's host
(`PUT /api/v1/scenario`), so its YAML is bounded before anything is built from it: at most
MAX_SCENARIO_BYTES, MAX_DEPTH levels of nesting, MAX_ALIASES aliases, MAX_NODES nodes and
MAX_SCENARIO_BYTES of values with aliases expanded (so a few hundred bytes of nested
aliases cannot stand for billions of nodes). Parsing is blocking CPU work: the API runs it
in a thread. Errors list at most MAX_ISSUES problems and cut long values short.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import yaml
from pydantic import ValidationError

KeyPath = tuple[str | int, ...]

#: The largest scenario read, in bytes of UTF-8 (whole DNS zones fit many times over).
MAX_SCENARIO_BYTES: Final = 4 * 1024 * 1024
#: Nesting levels of YAML collections; a scenario needs about ten.
MAX_DEPTH: Final = 64
#: Aliases (`*name`) in one scenario.
MAX_ALIASES: Final = 1000
#: Nodes (scalars and collections) in one scenario, aliases expanded where they are used;
#: the largest bundled scenario has under 700, and each node costs work up to validation.
MAX_NODES: Final = 50_000
#: Problems listed in one error; the rest are counted.
MAX_ISSUES: Final = 20
#: How much of a bad value an error message repeats.
SHOWN_VALUE_CHARS: Final = 80


@dataclass(frozen=True)
class Issue:
    """One problem of a scenario in parts, for tools (the HTTP API answers with these)."""

    file: str | None
    line: int | None
    #: Dotted key path such as `policies.helo[2].mode`; "" for the document as a whole.
    path: str
    message: str

    def __str__(self) -> str:
        loc = f"{self.file}:{self.line}" if self.line else (self.file or "")
        return f"{loc} {self.path}: {self.message}" if self.path else f"{loc} {self.message}"


class ScenarioError(Exception):
    """A scenario that cannot be used; the message names file, line and key path.

    `issues` holds the same in parts, one per problem (a single issue with only a message
    for errors that have no place in a file, such as an unknown scenario name).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        located: tuple[Issue, ...] = getattr(message, "issues", ())
        self.issues: list[Issue] = list(located) or [Issue(None, None, "", message)]


class Located(str):
    """Error text that keeps its parts, so `raise ScenarioError(where.at(...))` carries
    `issues` without every raise site building them."""

    issues: tuple[Issue, ...]

    def __new__(cls, issues: Sequence[Issue]) -> Located:
        located = super().__new__(cls, "\n".join(map(str, issues)))
        located.issues = tuple(issues)
        return located


class LineMap:
    """Parsed YAML plus the line of every key path, for error messages."""

    def __init__(self, source: str, data: Any = None, lines: dict[KeyPath, int] | None = None):
        self.source = source
        self.data = data
        self.lines = lines or {}

    @classmethod
    def parse(cls, text: str, source: str) -> LineMap:
        """Check the YAML's size and shape, then compose it once and build the data from
        that one node tree (aliases stay shared there; only the checked walks expand them)."""
        size = len(text) if len(text) * 4 <= MAX_SCENARIO_BYTES else len(text.encode())
        if size > MAX_SCENARIO_BYTES:
            raise ScenarioError(
                Located(
                    [
                        Issue(
                            source,
                            None,
                            "",
                            f"the scenario is {size} bytes; the limit is {MAX_SCENARIO_BYTES}",
                        )
                    ]
                )
            )
        try:
            _check_shape(text, source)
            loader = _Loader(text)
            try:
                node = loader.get_single_node()
                data = loader.construct_document(node) if node is not None else None
            finally:
                loader.dispose()
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            problem = getattr(exc, "problem", None) or str(exc)
            raise ScenarioError(
                Located([Issue(source, line, "", f"invalid YAML: {problem}")])
            ) from None
        except (ValueError, OverflowError) as exc:
            # A scalar the safe constructor cannot build: a date such as 2024-13-45, an
            # integer of more digits than Python converts.
            raise ScenarioError(
                Located([Issue(source, None, "", f"invalid YAML value: {exc}")])
            ) from None
        lines: dict[KeyPath, int] = {}
        if node is not None:
            _index(node, (), lines)
        return cls(source, data, lines)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), None)

    def at(self, path: Sequence[str | int], message: str) -> str:
        return Located([self.issue(path, message)])

    def issue(self, path: Sequence[str | int], message: str) -> Issue:
        return Issue(self.source, self.line_of(path), _dotted(path), message)

    def describe_validation(
        self, exc: ValidationError, prefix: KeyPath, unknown: str = "unknown key"
    ) -> str:
        issues = []
        errors = exc.errors()
        for err in errors[:MAX_ISSUES]:
            path = (*prefix, *(p for p in err["loc"] if not _is_pydantic_tag(p)))
            text = unknown if err.get("type") == "extra_forbidden" else _message(err)
            issues.append(self.issue(path, text))
        if len(errors) > MAX_ISSUES:
            more = len(errors) - MAX_ISSUES
            issues.append(Issue(self.source, None, "", f"... and {more} more problems"))
        return Located(issues)


#: libyaml's parser where PyYAML was built with it: the same documents, parsed in C.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class _Frame:
    """An open YAML collection during the shape check."""

    anchor: str | None
    mapping: bool
    #: Nodes and scalar characters under it so far, aliases expanded, itself included.
    nodes: int = 1
    chars: int = 0
    #: Mapping: the next child is a key; its last key. Sequence: the next child's index.
    at_key: bool = True
    key: str | int = ""
    index: int = 0

    def place(self) -> str | int | None:
        if not self.mapping:
            return self.index
        return None if self.at_key else self.key

    def advance(self, event: yaml.Event) -> None:
        if not self.mapping:
            self.index += 1
        elif self.at_key:
            self.key = event.value if isinstance(event, yaml.ScalarEvent) else "?"
            self.at_key = False
        else:
            self.at_key = True


def _check_shape(text: str, source: str) -> None:
    """Refuse YAML nested deeper than MAX_DEPTH, with more than MAX_ALIASES aliases, more
    than MAX_NODES nodes or MAX_SCENARIO_BYTES characters of scalars once aliases are
    expanded, or an alias inside the collection it names (a cycle no scenario means),
    from the parser's events alone.

    The events come one at a time from a parser that keeps its own stack, so neither a
    deep document nor an alias bomb costs more here than its length in events; the check
    stops at the first limit passed, before anything is composed or constructed.
    """
    frames: list[_Frame] = []
    # anchor -> (nodes, scalar characters) its node stands for, aliases expanded
    expanded: dict[str, tuple[int, int]] = {}
    aliases = 0
    total_nodes = 0
    total_chars = 0

    def refuse(event: yaml.Event, message: str) -> ScenarioError:
        path = tuple(p for p in (f.place() for f in frames) if p is not None)
        line = event.start_mark.line + 1 if event.start_mark is not None else None
        return ScenarioError(Located([Issue(source, line, _dotted(path), message)]))

    def count(event: yaml.Event, nodes: int, chars: int) -> None:
        nonlocal total_nodes, total_chars
        total_nodes += nodes
        total_chars += chars
        if total_nodes > MAX_NODES:
            raise refuse(event, f"more than {MAX_NODES} nodes, aliases expanded")
        if total_chars > MAX_SCENARIO_BYTES:
            raise refuse(
                event, f"more than {MAX_SCENARIO_BYTES} characters of values, aliases expanded"
            )

    def done(event: yaml.Event, nodes: int, chars: int, anchor: str | None) -> None:
        if anchor is not None:
            expanded[anchor] = (nodes, chars)
        if frames:
            frames[-1].nodes += nodes
            frames[-1].chars += chars
            frames[-1].advance(event)

    events = yaml.parse(text, Loader=_Loader)
    while True:
        try:
            event = next(events)
        except StopIteration:
            return
        except yaml.YAMLError as exc:
            # Said here, where the open collections give the key path it happened under.
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or str(exc)
            if "nesting depth" in problem:  # libyaml's own limit, met while scanning ahead
                problem = f"nested deeper than {MAX_DEPTH} levels"
            else:
                problem = f"invalid YAML: {problem}"
            path = tuple(p for p in (f.place() for f in frames) if p is not None)
            line = mark.line + 1 if mark is not None else None
            raise ScenarioError(Located([Issue(source, line, _dotted(path), problem)])) from None
        if isinstance(event, yaml.CollectionStartEvent):
            if len(frames) >= MAX_DEPTH:
                raise refuse(event, f"nested deeper than {MAX_DEPTH} levels")
            count(event, 1, 0)
            frames.append(_Frame(event.anchor, isinstance(event, yaml.MappingStartEvent)))
        elif isinstance(event, yaml.CollectionEndEvent):
            frame = frames.pop()
            done(event, frame.nodes, frame.chars, frame.anchor)
        elif isinstance(event, yaml.ScalarEvent):
            count(event, 1, len(event.value))
            done(event, 1, len(event.value), event.anchor)
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise refuse(event, f"more than {MAX_ALIASES} aliases")
            if any(f.anchor == event.anchor for f in frames):
                raise refuse(event, f"*{_shown(event.anchor)} refers to a collection it is in")
            # An unknown anchor counts as one node here and fails when composed.
            nodes, chars = expanded.get(event.anchor or "", (1, 0))
            count(event, nodes, chars)
            done(event, nodes, chars, None)


def _shown(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    if len(text) > SHOWN_VALUE_CHARS:
        return text[:SHOWN_VALUE_CHARS] + "..."
    return text


def _is_pydantic_tag(part: object) -> bool:
    # Union members and function validators show up in `loc` as tags, not keys.
    return isinstance(part, str) and (part.startswith("function-") or "[" in part)


def _index(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            sub = (*path, key)
            _index(value_node, sub, lines)
            lines[sub] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*path, i), lines)


def _dotted(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{_shown(part)}" if out else _shown(part)
    return out


def _message(err: Mapping[str, Any]) -> str:
    kind = err.get("type", "")
    value = err.get("input")
    ctx = err.get("ctx") or {}
    # Values are shown cut short: a 4 MB scalar is not repeated back in full.
    if kind == "literal_error" and "expected" in ctx:
        return f"{_shown(repr(value))} is not one of: {ctx['expected']}"
    if kind == "missing":
        return "required"
    msg = str(err.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ")
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"{_shown(repr(value))}: {msg}"
    return msg
