"""Scenario files: load YAML safely, validate everything at load, name file, line and key path.

A scenario is a receiver persona plus the world it lives in:

```yaml
name: default
description: one line for `strictmx scenarios`
receiver: {hostname: mx.strictmx.test, delay_reject: true, ...}
policies:
  session: [{policy: session_limits, hard_error_limit: 20}]   # run first at every stage they handle
  helo:
    - policy: helo_syntax
      mode: rfc1035
      replies:                                     # override an outcome's default reply
        HELO_NOT_FQDN: {entry: seed-13}            # a reply catalogue entry, by id
        HELO_INVALID: "550 Bad HELO name {helo}"   # or a text of one's own
world: {dns: {...}, clients: {...}, clock: {...}, mailboxes: {...}}
expect: []   # cases for `strictmx run` (see strictmx/receiver/expect.py)
```

An `{entry: ID}` reply must be one of the policy outcome's catalogue entries
(strictmx/receiver/data/catalogue.yaml); the bundled scenarios name entries only, so every text
strictmx ships lives in the catalogue.

Every error raised here is a `ScenarioError` whose text reads
`scenarios/x.yaml:14 policies.helo[2].mode: 'rfc9999' is not one of: 'rfc1035', ...`.

A scenario is data, and may come from someone who should not run code on the receiver's
host (`PUT /api/v1/scenario`). So:

- what it may reach outside the process (files, modules, URLs, listen addresses, real
  DNS) depends on a `Trust` (strictmx/receiver/trust.py): a file from disk may, with relative
  files read beside it, and so may Python code's own text and dicts; an upload through
  the API may not unless the receiver was started to allow it;
- its YAML is bounded before anything is built from it: at most MAX_SCENARIO_BYTES,
  MAX_DEPTH levels of nesting, MAX_ALIASES aliases, MAX_NODES nodes and
  MAX_SCENARIO_BYTES of values with aliases expanded (so a few hundred bytes of nested
  aliases cannot stand for billions of nodes). Parsing is blocking CPU work: the API
  runs it in a thread. Errors list at most MAX_ISSUES problems and cut long values short.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import catalogue
from . import trust as trusts
from .engine import Engine, EngineSettings
from .expect import Case
from .policy import Policy, PolicyClass, PolicyOptions, load_registry
from .trust import Trust
from .verdict import Reply, ReplyError, Stage
from .world import WorldConfig

KeyPath = tuple[str | int, ...]

#: The `policies:` keys: one per stage, plus `session` (policies that run first everywhere).
SESSION_KEY = "session"
#: Keys of a policy entry that are not the policy's options.
ENTRY_KEYS = ("policy", "replies", "delay_reject")
#: How a reply override names a reply catalogue entry instead of giving a text.
ENTRY_FORM = "{entry: ID} (an id of strictmx/receiver/data/catalogue.yaml)"
STAGE_KEYS = [SESSION_KEY, *(s.value for s in Stage)]

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


class _Located(str):
    """Error text that keeps its parts, so `raise ScenarioError(where.at(...))` carries
    `issues` without every raise site building them."""

    issues: tuple[Issue, ...]

    def __new__(cls, issues: Sequence[Issue]) -> _Located:
        located = super().__new__(cls, "\n".join(map(str, issues)))
        located.issues = tuple(issues)
        return located


class ReceiverSettings(BaseModel):
    """The `receiver:` section: the persona's identity and global switches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hostname: str = Field(
        "mx.strictmx.test",
        min_length=1,
        max_length=253,  # a DNS name's longest text (RFC 1035)
        description="The receiver's own name (greeting, replies).",
    )
    banner: str = Field(
        "{hostname} ESMTP",
        max_length=200,  # with the hostname, still well within a 512-octet reply line
        description="Greeting text after 220; {hostname} is filled in.",
    )
    delay_reject: bool = Field(
        True, description="Give CONNECT/HELO/MAIL rejections at RCPT, as Postfix."
    )
    warn_only: bool = Field(
        False, description="Run every policy, record objections, refuse nothing."
    )
    soft_bounce: bool = Field(
        False, description="Turn every 5xx into 4xx, as Postfix's soft_bounce."
    )
    enhanced_status_codes: bool = Field(
        True,
        description="Send RFC 3463 codes (x.y.z); off for personas such as Exim that send none.",
    )
    max_message_size: int = Field(10 * 1024 * 1024, ge=1, description="SIZE limit in octets.")
    max_recipients: int = Field(
        1000, ge=1, description="Recipients per message (Postfix's default)."
    )
    local_recipients: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Glob patterns of recipients that exist here; others get 550 5.1.1.",
    )
    smtputf8: bool = Field(True, description="Advertise SMTPUTF8 (RFC 6531).")
    helo_required: bool = Field(True, description="Refuse MAIL before HELO/EHLO.")
    timeout: float = Field(300.0, gt=0, description="Idle seconds before the session is closed.")


class ScenarioModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Bounded: both are written to the journal with every session.
    name: str | None = Field(None, min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    receiver: ReceiverSettings = Field(default_factory=ReceiverSettings)
    policies: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    world: WorldConfig = Field(default_factory=WorldConfig)
    expect: list[Case] = Field(default_factory=list)


@dataclass
class PolicyEntry:
    """One configured policy as listed in the scenario."""

    cls: PolicyClass
    options: PolicyOptions
    replies: dict[str, Reply]
    listed_under: str
    path: KeyPath
    delay_reject: bool | None = None

    def instantiate(self) -> Policy[PolicyOptions]:
        policy = self.cls(self.options, self.replies)
        policy.delay_reject = self.delay_reject
        return policy


@dataclass
class Scenario:
    name: str
    description: str
    source: str
    receiver: ReceiverSettings
    world: WorldConfig
    entries: list[PolicyEntry] = field(default_factory=list)
    expect: list[Case] = field(default_factory=list)

    def chains(self) -> dict[Stage, list[Policy[PolicyOptions]]]:
        """Per stage: `session:` policies that handle it first, then the stage's own list."""
        chains: dict[Stage, list[Policy[PolicyOptions]]] = {}
        instances = [(e, e.instantiate()) for e in self.entries]
        for stage in Stage:
            chain = [
                p for e, p in instances if e.listed_under == SESSION_KEY and stage in e.cls.stages
            ]
            chain += [p for e, p in instances if e.listed_under == stage.value]
            if chain:
                chains[stage] = chain
        return chains

    def engine(self) -> Engine:
        settings = EngineSettings(
            delay_reject=self.receiver.delay_reject,
            warn_only=self.receiver.warn_only,
            soft_bounce=self.receiver.soft_bounce,
        )
        return Engine(self.chains(), settings)

    def describe_chains(self) -> list[tuple[str, list[str]]]:
        """`[(stage, [policy names])]` in stage order, for `serve`'s start-up lines."""
        return [(stage.value, [p.name for p in chain]) for stage, chain in self.chains().items()]


# -- loading ------------------------------------------------------------------------------


def bundled_dir() -> Path:
    """Where the bundled scenarios are: inside the wheel, or at the top of a checkout."""
    packaged = Path(str(importlib.resources.files("strictmx"))) / "scenarios"
    if packaged.is_dir():
        return packaged
    # A checkout: strictmx/receiver/scenario.py, with scenarios/ beside strictmx/.
    return Path(__file__).resolve().parents[2] / "scenarios"


def bundled_names() -> list[str]:
    return sorted(p.stem for p in bundled_dir().glob("*.yaml"))


def resolve(name_or_path: str) -> Path:
    """A bundled scenario's name, or a path to a YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists() or "/" in name_or_path:
        return candidate
    bundled = bundled_dir() / f"{name_or_path}.yaml"
    if bundled.exists():
        return bundled
    raise ScenarioError(
        f"no scenario named {name_or_path!r}; bundled scenarios: {', '.join(bundled_names())}"
    )


def load(name_or_path: str, registry: Mapping[str, PolicyClass] | None = None) -> Scenario:
    """A bundled scenario or a scenario file: trusted, its relative files read beside it.

    The file itself must be a regular file of at most MAX_SCENARIO_BYTES (a FIFO or a
    device is refused, not opened).
    """
    path = resolve(name_or_path)
    try:
        text = trusts.read_text_file(path, MAX_SCENARIO_BYTES, "scenario file")
    except trusts.MissingFile:
        raise ScenarioError(f"{path}: no such scenario file") from None
    except trusts.UnreadableFile as exc:
        raise ScenarioError(f"{path}: cannot read scenario: {exc}") from None
    return loads(
        text,
        source=_display(path),
        registry=registry,
        default_name=path.stem,
        trust=trusts.from_file(path),
    )


def loads(
    text: str,
    *,
    source: str = "<scenario>",
    registry: Mapping[str, PolicyClass] | None = None,
    default_name: str = "scenario",
    trust: Trust = trusts.CODE,
) -> Scenario:
    """A scenario from YAML text. The caller's own text by default, which may reach what
    it names; text from elsewhere passes a `trust` that says so (strictmx/receiver/trust.py)."""
    lines = _LineMap.parse(text, source)
    data = lines.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError(
            _Located(
                [Issue(source, 1, "", f"the scenario must be a mapping, not {type(data).__name__}")]
            )
        )
    return from_dict(
        data,
        source=source,
        registry=registry,
        default_name=default_name,
        lines=lines,
        trust=trust,
    )


def from_dict(
    data: Mapping[str, Any],
    *,
    source: str = "<scenario>",
    registry: Mapping[str, PolicyClass] | None = None,
    default_name: str = "scenario",
    lines: _LineMap | None = None,
    trust: Trust = trusts.CODE,
) -> Scenario:
    """A scenario from parsed data; `trust` as for `loads`."""
    where = lines or _LineMap(source)
    context = trusts.context(trust)
    try:
        model = ScenarioModel.model_validate(data, context=context)
    except ValidationError as exc:
        raise ScenarioError(where.describe_validation(exc, ())) from None
    registry = registry if registry is not None else load_registry()
    entries: list[PolicyEntry] = []
    for key, items in model.policies.items():
        if key not in STAGE_KEYS:
            raise ScenarioError(
                where.at(
                    ("policies", key), f"unknown stage {key!r}; stages are: {', '.join(STAGE_KEYS)}"
                )
            )
        for index, item in enumerate(items):
            entries.append(_entry(item, key, ("policies", key, index), registry, where, context))
    return Scenario(
        name=model.name or default_name,
        description=model.description,
        source=source,
        receiver=model.receiver,
        world=model.world,
        entries=entries,
        expect=model.expect,
    )


def _entry(
    item: Mapping[str, Any],
    listed_under: str,
    path: KeyPath,
    registry: Mapping[str, PolicyClass],
    where: _LineMap,
    context: dict[str, Any],
) -> PolicyEntry:
    if not isinstance(item, Mapping) or "policy" not in item:
        raise ScenarioError(where.at(path, "each entry needs 'policy: <name>'"))
    name = item["policy"]
    cls = registry.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ScenarioError(
            where.at(
                (*path, "policy"),
                f"unknown policy {name!r}; known policies: {', '.join(sorted(registry))}",
            )
        )
    if listed_under != SESSION_KEY and Stage(listed_under) not in cls.stages:
        raise ScenarioError(
            where.at(
                (*path, "policy"),
                f"{name} cannot run at {listed_under}; it runs at: "
                + ", ".join(s.value for s in Stage if s in cls.stages),
            )
        )
    raw_options = {k: v for k, v in item.items() if k not in ENTRY_KEYS}
    delay = item.get("delay_reject")
    if delay is not None and not isinstance(delay, bool):
        raise ScenarioError(where.at((*path, "delay_reject"), f"{delay!r}: expected true or false"))
    try:
        options = cls.Options.model_validate(raw_options, context=context)
    except ValidationError as exc:
        known = ", ".join(cls.Options.model_fields) or "(none)"
        raise ScenarioError(
            where.describe_validation(exc, path, unknown=f"unknown option; {name} options: {known}")
        ) from None
    replies: dict[str, Reply] = {}
    raw_replies = item.get("replies") or {}
    if not isinstance(raw_replies, Mapping):
        raise ScenarioError(where.at((*path, "replies"), "replies must map outcome ids to replies"))
    for outcome_id, spec in raw_replies.items():
        rpath = (*path, "replies", outcome_id)
        try:
            if isinstance(spec, Mapping):
                reply = _catalogue_reply(spec, cls, str(outcome_id), rpath, where)
            elif isinstance(spec, str) or (
                isinstance(spec, list) and all(isinstance(s, str) for s in spec)
            ):
                reply = Reply.parse(spec)
            else:
                raise ReplyError(f"a reply is a string, a list of lines or {ENTRY_FORM}")
            # Catalogue texts too: the registry in use need not be the one the catalogue's
            # tests hold them to.
            cls.validate_reply(str(outcome_id), reply)
        except ReplyError as exc:
            raise ScenarioError(where.at(rpath, str(exc))) from None
        replies[str(outcome_id)] = reply
    return PolicyEntry(cls, options, replies, listed_under, path, delay)


def _catalogue_reply(
    spec: Mapping[str, Any], cls: PolicyClass, outcome_id: str, rpath: KeyPath, where: _LineMap
) -> Reply:
    """`{entry: ID}`: the reply catalogue's text, so a persona's reply has one source."""
    entry_id = spec.get("entry")
    if set(spec) != {"entry"} or not isinstance(entry_id, str):
        raise ReplyError(f"a reply from the catalogue is {ENTRY_FORM}, nothing else")
    known = sorted(o.id for o in cls.outcomes)
    if outcome_id not in known:
        # Said before the entry is looked up: no entry can fit an outcome that is not there.
        raise ReplyError(
            f"{cls.name} has no outcome {outcome_id!r}; its outcomes are: " + ", ".join(known)
        )
    try:
        return catalogue.bundled().entry_for(entry_id, cls.name, outcome_id).template
    except catalogue.CatalogueError as exc:
        raise ScenarioError(where.at((*rpath, "entry"), str(exc))) from None


class _LineMap:
    """Parsed YAML plus the line of every key path, for error messages."""

    def __init__(self, source: str, data: Any = None, lines: dict[KeyPath, int] | None = None):
        self.source = source
        self.data = data
        self.lines = lines or {}

    @classmethod
    def parse(cls, text: str, source: str) -> _LineMap:
        """Check the YAML's size and shape, then compose it once and build the data from
        that one node tree (aliases stay shared there; only the checked walks expand them)."""
        size = len(text) if len(text) * 4 <= MAX_SCENARIO_BYTES else len(text.encode())
        if size > MAX_SCENARIO_BYTES:
            raise ScenarioError(
                _Located(
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
                _Located([Issue(source, line, "", f"invalid YAML: {problem}")])
            ) from None
        except (ValueError, OverflowError) as exc:
            # A scalar the safe constructor cannot build: a date such as 2024-13-45, an
            # integer of more digits than Python converts.
            raise ScenarioError(
                _Located([Issue(source, None, "", f"invalid YAML value: {exc}")])
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
        return _Located([self.issue(path, message)])

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
        return _Located(issues)


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
        return ScenarioError(_Located([Issue(source, line, _dotted(path), message)]))

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
            raise ScenarioError(_Located([Issue(source, line, _dotted(path), problem)])) from None
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


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
