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
- its YAML is bounded before anything is built from it (size, nesting, aliases, nodes:
  strictmx/receiver/scenario_yaml.py, which also places every error at its file, line
  and key path).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import catalogue, registry
from . import dialect as dialects
from . import trust as trusts
from .dialect import Dialect
from .engine import ALWAYS_ACCEPTED, Engine, EngineSettings
from .expect import Case
from .policy import Policy, PolicyClass, PolicyOptions
from .registry import load_registry
from .scenario_yaml import MAX_SCENARIO_BYTES as MAX_SCENARIO_BYTES  # a public name here
from .scenario_yaml import Issue, KeyPath, LineMap, Located
from .scenario_yaml import ScenarioError as ScenarioError  # a public name here
from .smtp_auth import AuthSettings
from .trust import Trust
from .verdict import Reply, ReplyError, Stage
from .world import WorldConfig

#: The `policies:` keys: one per stage, plus `session` (policies that run first everywhere).
SESSION_KEY = "session"
#: Keys of a policy entry that are not the policy's options.
ENTRY_KEYS = ("policy", "replies", "delay_reject")
#: How a reply override names a reply catalogue entry instead of giving a text.
ENTRY_FORM = "{entry: ID} (an id of strictmx/receiver/data/catalogue.yaml)"
STAGE_KEYS = [SESSION_KEY, *(s.value for s in Stage)]


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
    max_message_size: int = Field(
        10 * 1024 * 1024,
        ge=1,
        description="The SMTP SIZE limit in octets (RFC 1870), advertised in EHLO; larger "
        "messages are refused. The journal keeps at most the receiver's "
        "max_stored_message_bytes of an accepted one.",
    )
    max_recipients: int = Field(
        1000, ge=1, description="Recipients per message (Postfix's default)."
    )
    local_recipients: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Glob patterns of recipients that exist here; others get 550 5.1.1.",
    )
    smtputf8: bool = Field(True, description="Advertise SMTPUTF8 (RFC 6531).")
    helo_required: bool = Field(True, description="Refuse MAIL before HELO/EHLO.")
    dialect: str = Field(
        dialects.DEFAULT,
        min_length=1,
        max_length=100,
        description="The protocol dialect (strictmx/receiver/data/dialects/NAME.yaml): every "
        "reply outside the policies' and what the receiver accepts at the protocol level.",
    )
    timeout: float = Field(300.0, gt=0, description="Idle seconds before the session is closed.")
    tls_min_version: Literal["TLSv1.2", "TLSv1.3"] | None = Field(
        None,
        description="The oldest TLS protocol STARTTLS negotiates (the TLS context's "
        "minimum_version): a client offering only older ones fails the handshake. None: the "
        "TLS library's default (Python's refuses below TLS 1.2).",
    )
    auth: AuthSettings | None = Field(
        None,
        description="SMTP AUTH (RFC 4954) offered: {mechanisms, require_tls, required, "
        "accounts}; null: no AUTH, the default (strictmx/receiver/smtp_auth.py).",
    )
    always_accepted: list[str] = Field(
        default_factory=lambda: list(ALWAYS_ACCEPTED),
        description="Glob patterns of recipients accepted whatever any stage decided "
        "(RFC 5321 §4.5.1 postmaster, RFC 2142 abuse); a pattern without '@' matches an "
        "address without a domain. [] exempts no one; Postfix exempts <postmaster> alone.",
    )

    @field_validator("always_accepted")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern or any(ch.isspace() for ch in pattern):
                raise ValueError(f"a recipient pattern is one word, got {pattern!r}")
        return [p.lower() for p in value]


class ScenarioModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Bounded: both are written to the journal with every session.
    name: str | None = Field(None, min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    receiver: ReceiverSettings = Field(default_factory=ReceiverSettings)
    policies: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    world: WorldConfig = Field(default_factory=WorldConfig)
    expect: list[Case] = Field(default_factory=list)
    #: Overrides of the named dialect's keys, merged over it (strictmx/receiver/dialect.py).
    dialect: dict[str, Any] | None = None


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
    dialect: Dialect = field(default_factory=lambda: dialects.load(dialects.DEFAULT))

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
            always_accepted=tuple(self.receiver.always_accepted),
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
    lines = LineMap.parse(text, source)
    data = lines.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError(
            Located(
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
    lines: LineMap | None = None,
    trust: Trust = trusts.CODE,
) -> Scenario:
    """A scenario from parsed data; `trust` as for `loads`."""
    where = lines or LineMap(source)
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
    _check_requires(entries, where)
    dialect = _dialect(model, where)
    receiver = model.receiver
    if "enhanced_status_codes" not in receiver.model_fields_set:
        # The dialect's habit, unless the scenario says otherwise (Exim sends none).
        receiver = receiver.model_copy(
            update={"enhanced_status_codes": dialect.enhanced_status_codes}
        )
    return Scenario(
        name=model.name or default_name,
        description=model.description,
        source=source,
        receiver=receiver,
        world=model.world,
        entries=entries,
        expect=model.expect,
        dialect=dialect,
    )


def _check_requires(entries: list[PolicyEntry], where: LineMap) -> None:
    """Each policy that reads another's results (`Policy.requires`) runs after it."""

    def position(index: int, entry: PolicyEntry) -> tuple[int, int, int]:
        if entry.listed_under == SESSION_KEY:
            earliest = min(list(Stage).index(s) for s in entry.cls.stages)
            return (earliest, 0, index)
        return (list(Stage).index(Stage(entry.listed_under)), 1, index)

    placed = [(position(i, e), e) for i, e in enumerate(entries)]
    for at, entry in placed:
        missing = [
            name
            for name in entry.cls.requires
            if not any(other.cls.name == name and where_ < at for where_, other in placed)
        ]
        if missing:
            raise ScenarioError(
                where.at(
                    (*entry.path, "policy"),
                    f"{entry.cls.name} reads the results of {' and '.join(entry.cls.requires)}; "
                    f"list {' and '.join(missing)} to run before it (an earlier stage, or "
                    "earlier in the same stage's list)",
                )
            )


def _dialect(model: ScenarioModel, where: LineMap) -> Dialect:
    """The named dialect with the scenario's `dialect:` overrides merged over it."""
    name = model.receiver.dialect
    if name not in dialects.bundled_dialects():
        raise ScenarioError(
            where.at(
                ("receiver", "dialect"),
                f"no dialect named {name!r}; dialects: {', '.join(dialects.bundled_dialects())}",
            )
        )
    base = dialects.load(name)
    if model.dialect is None:
        return base
    return base.override(model.dialect, where, ("dialect",))


def _entry(
    item: Mapping[str, Any],
    listed_under: str,
    path: KeyPath,
    registry: Mapping[str, PolicyClass],
    where: LineMap,
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
    spec: Mapping[str, Any], cls: PolicyClass, outcome_id: str, rpath: KeyPath, where: LineMap
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
        return registry.bundled().entry_for(entry_id, cls.name, outcome_id).template
    except catalogue.CatalogueError as exc:
        raise ScenarioError(where.at((*rpath, "entry"), str(exc))) from None


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
