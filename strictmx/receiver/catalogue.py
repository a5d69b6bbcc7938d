"""The reply catalogue: every reply strictmx knows, tied to a policy outcome, as data.

`strictmx/receiver/data/catalogue.yaml` lists each policy outcome once (family, cause, fix,
the RFC text behind the refusal) and the reply texts that stand for it: the documented
replies of seed-replies.yaml, real receivers' replies from receivers.md and the project's
own defaults. Policies take their default replies from it and scenarios name its entries
(`replies: {OUTCOME: {entry: ID}}`, see `entry_for`); `explain` matches bounces against it
and `reproduce` builds scenarios from it.

What the policy already says about an outcome is not repeated here: the stage that decides
it, whether RFC 5321 allows the refusal and the kinds of its placeholders come from the
policy's `Outcome` when the catalogue is loaded against the policies, so the two cannot
disagree. Loading validates everything and names the entry at fault:
`catalogue.yaml replies[12] (seed-13) outcome: no outcome helo_syntax/HELO_NOPE ...`.

A loaded catalogue is plain frozen dataclasses (`Entry`, `OutcomeInfo`) in a `Catalogue`:
`strictmx explain` reads a built one back from its cache on every run (explain/cache.py),
and unpickling it imports this module and nothing heavy. The file's format, with PyYAML
and pydantic, is catalogue_schema.py, imported only when a file is parsed.
"""

from __future__ import annotations

import difflib
import functools
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from .outcome import Fields, Outcome
from .verdict import Reply, Stage, placeholders

if TYPE_CHECKING:
    from .catalogue_schema import CatalogueFile, Kind

#: The file format (PyYAML and pydantic), imported by name when a file is parsed: not when a
#: built catalogue is read back (`strictmx explain` unpickles one on every run, and those
#: two imports were a third of its time).
SCHEMA = "strictmx.receiver.catalogue_schema"


class CatalogueError(ValueError):
    """A catalogue file that cannot be used; the message names the entry."""


@dataclass(frozen=True)
class OutcomeInfo:
    """What one policy outcome means, whichever text a receiver sends for it (validated as
    catalogue_schema.OutcomeSpec when read)."""

    policy: str
    outcome: str
    #: The check family; the policy name if unset.
    family: str | None
    #: The RFC text behind that answer.
    rfc_note: str
    #: What is wrong, on the sending side.
    cause: str
    #: What to change on the sending side.
    fix: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.policy, self.outcome)


@dataclass(frozen=True)
class Entry:
    """One catalogue reply with everything its outcome says filled in."""

    id: str
    kind: Kind
    default: bool
    #: The text belongs to another check (a PBL listing answered with Postfix's RBL reply):
    #: explain ranks the owner first and lists this one beside it.
    borrowed: bool
    receiver: str | None
    source: str | None
    family: str
    policy: str
    outcome: str
    #: Where this reply's receiver decides (the outcome's stage unless the entry says).
    stage: Stage
    cause: str
    fix: str
    #: From the policy's outcome: RFC 5321 allows refusing mail for this reason.
    rfc_allows_refusal: bool
    rfc_note: str
    #: From the policy's outcome: the placeholders its reply may name, with their kinds.
    fields: Fields = field(hash=False, compare=False)
    #: The reply exactly as documented.
    documented: tuple[str, ...]
    #: The reply with the project's {placeholders}: what explain matches, what a policy
    #: can be told to send.
    template: Reply
    scenario: str | None
    case: str | None

    @property
    def reply(self) -> Reply:
        return Reply.parse(self.documented)


class Catalogue:
    """The loaded catalogue: entries in file order, outcome descriptions by key."""

    def __init__(self, outcomes: Sequence[OutcomeInfo], entries: Sequence[Entry]) -> None:
        self.outcomes: dict[tuple[str, str], OutcomeInfo] = {o.key: o for o in outcomes}
        self.entries: tuple[Entry, ...] = tuple(entries)
        self._by_id = {e.id: e for e in self.entries}

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, entry_id: str) -> Entry:
        try:
            return self._by_id[entry_id]
        except KeyError:
            raise KeyError(f"no catalogue entry {entry_id!r}") from None

    def for_outcome(self, policy: str, outcome: str) -> list[Entry]:
        return [e for e in self.entries if (e.policy, e.outcome) == (policy, outcome)]

    def default_for(self, policy: str, outcome: str) -> Entry | None:
        return next((e for e in self.for_outcome(policy, outcome) if e.default), None)

    def entry_for(self, entry_id: str, policy: str, outcome: str) -> Entry:
        """The entry a scenario names as `policy`'s reply for `outcome`.

        Raises CatalogueError for an unknown id or an entry of another outcome; the message
        lists the ids that would fit, so a typo or a mix-up is fixed in one go.
        """
        entry = self._by_id.get(entry_id)
        if entry is None:
            near = difflib.get_close_matches(entry_id, self._by_id, n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise CatalogueError(
                f"no catalogue entry {entry_id!r}{hint} ({self._fitting(policy, outcome)})"
            )
        if (entry.policy, entry.outcome) != (policy, outcome):
            raise CatalogueError(
                f"{entry_id} is a reply for {entry.policy}/{entry.outcome}, not "
                f"{policy}/{outcome} ({self._fitting(policy, outcome)})"
            )
        return entry

    def _fitting(self, policy: str, outcome: str) -> str:
        ids = [e.id for e in self.for_outcome(policy, outcome)]
        if ids:
            return f"entries for {policy}/{outcome}: {', '.join(ids)}"
        if (policy, outcome) in self.outcomes:
            return f"the catalogue has no entry for {policy}/{outcome}"
        return f"the catalogue knows no outcome {policy}/{outcome}"

    def with_policies(self, policies: Outcomes) -> Catalogue:
        """This catalogue and, for each outcome it does not describe (a third-party
        policy's), an entry made from the outcome itself: its default reply, its doc as the
        cause. So explain and reproduce know a plug-in's refusals without an edit here."""
        infos: list[dict[str, Any]] = []
        specs: list[dict[str, Any]] = []
        for policy, declared in sorted(policies.items()):
            for outcome in declared:
                if (policy, outcome.id) in self.outcomes:
                    continue
                infos.append(
                    {
                        "policy": policy,
                        "outcome": outcome.id,
                        "rfc_note": f"As the {policy} policy declares; the catalogue has no entry.",
                        "cause": outcome.doc or f"{policy} refused with {outcome.id}.",
                        "fix": f"See `strictmx policies` ({policy}): {outcome.doc}".rstrip(": "),
                    }
                )
                specs.append(
                    {
                        "id": f"{policy}-{outcome.id}".lower().replace("_", "-"),
                        "kind": "project",
                        "default": True,
                        "policy": policy,
                        "outcome": outcome.id,
                        "reply": outcome.default_reply().wire_lines(),
                    }
                )
        if not specs:
            return self
        # The made entries are checked as the file's are: ids, replies, fields.
        source = "<policies>"
        try:
            parsed: CatalogueFile = _schema().made(infos, specs, source)
        except ValueError as exc:  # the schema's SchemaError
            raise CatalogueError(str(exc)) from None
        more = _resolve(parsed, source, policies)
        return Catalogue(
            [*self.outcomes.values(), *more.outcomes.values()], [*self.entries, *more.entries]
        )

    @property
    def families(self) -> list[str]:
        return sorted({e.family for e in self.entries})


#: The policies' outcomes by policy name, as the catalogue is checked against them.
Outcomes: TypeAlias = Mapping[str, Sequence[Outcome]]


def default_path() -> Path:
    return Path(str(resources.files("strictmx.receiver") / "data" / "catalogue.yaml"))


@functools.cache
def _bundled_file() -> CatalogueFile:
    path = default_path()
    try:
        return _parse(path.read_text(encoding="utf-8"), path.name)
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogueError(f"{path}: cannot read the catalogue: {exc}") from None


def default_reply(policy: str, outcome: str) -> Reply | None:
    """The bundled catalogue's default text for an outcome, read before any policy exists
    (a built-in policy's outcomes take their text from here as its class is defined)."""
    for spec in _bundled_file().replies:
        if spec.default and (spec.policy, spec.outcome) == (policy, outcome):
            return Reply.parse(spec.template if spec.template is not None else spec.reply)
    return None


def bundled_for(outcomes: Outcomes) -> Catalogue:
    """The catalogue shipped with strictmx, checked against `outcomes` (the built-in
    policies', from strictmx/receiver/registry.py: this module sits below the policies,
    which take their default texts from it as they are defined)."""
    return _resolve(_bundled_file(), default_path().name, outcomes)


def load(path: Path, outcomes: Outcomes) -> Catalogue:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogueError(f"{path}: cannot read the catalogue: {exc}") from None
    return loads(text, source=path.name, outcomes=outcomes)


def loads(text: str, *, outcomes: Outcomes, source: str = "catalogue.yaml") -> Catalogue:
    """A catalogue from YAML, checked against `outcomes` (policy name -> its outcomes)."""
    parsed = _parse(text, source)
    return _resolve(parsed, source, outcomes)


def _schema() -> Any:
    return importlib.import_module(SCHEMA)


def _parse(text: str, source: str) -> CatalogueFile:
    try:
        parsed: CatalogueFile = _schema().parse(text, source)
    except ValueError as exc:  # the schema's SchemaError, which names the entry
        raise CatalogueError(str(exc)) from None
    return parsed


def _policy_outcome(policies: Outcomes, policy: str, outcome: str) -> Outcome | str:
    """The policy's outcome, or why there is none."""
    declared = policies.get(policy)
    if declared is None:
        return f"no policy {policy!r} (policies: {', '.join(sorted(policies))})"
    found = next((o for o in declared if o.id == outcome), None)
    if found is None:
        return (
            f"policy {policy} has no outcome {outcome!r} (its outcomes: "
            + ", ".join(o.id for o in declared)
            + ")"
        )
    return found


def _resolve(parsed: CatalogueFile, source: str, policies: Outcomes) -> Catalogue:
    outcomes: dict[tuple[str, str], OutcomeInfo] = {}
    declared: dict[tuple[str, str], Outcome] = {}
    for n, written in enumerate(parsed.outcomes):
        described = OutcomeInfo(
            policy=written.policy,
            outcome=written.outcome,
            family=written.family,
            rfc_note=written.rfc_note,
            cause=written.cause,
            fix=written.fix,
        )
        where = f"{source} outcomes[{n}] ({described.policy}/{described.outcome})"
        if described.key in outcomes:
            raise CatalogueError(
                f"{source} outcomes[{n}]: {described.policy}/{described.outcome} is described twice"
            )
        found = _policy_outcome(policies, described.policy, described.outcome)
        if isinstance(found, str):
            raise CatalogueError(f"{where} outcome: {found}")
        outcomes[described.key] = described
        declared[described.key] = found
    entries: list[Entry] = []
    seen: set[str] = set()
    defaults: dict[tuple[str, str], str] = {}
    for n, spec in enumerate(parsed.replies):
        where = f"{source} replies[{n}] ({spec.id})"
        if spec.id in seen:
            raise CatalogueError(f"{where} id: {spec.id!r} is used twice")
        seen.add(spec.id)
        info = outcomes.get((spec.policy, spec.outcome))
        if info is None:
            raise CatalogueError(
                f"{where} outcome: no outcome {spec.policy}/{spec.outcome} under `outcomes`"
            )
        outcome = declared[info.key]
        if spec.default:
            if info.key in defaults:
                raise CatalogueError(
                    f"{where} default: {spec.policy}/{spec.outcome} already has its default "
                    f"in {defaults[info.key]}"
                )
            defaults[info.key] = spec.id
        if spec.kind == "seed" and not (spec.scenario and spec.case):
            raise CatalogueError(f"{where}: a seed names the scenario and case that reproduce it")
        if spec.kind == "persona" and not (spec.source and spec.receiver):
            raise CatalogueError(f"{where}: a persona reply names its receiver and source")
        if (spec.scenario is None) != (spec.case is None):
            raise CatalogueError(f"{where}: give both scenario and case, or neither")
        documented = Reply.parse(spec.reply)
        template = Reply.parse(spec.template) if spec.template is not None else documented
        if template.code != documented.code or template.status != documented.status:
            raise CatalogueError(
                f"{where} template: its code and status must be the documented reply's "
                f"({documented.code} {documented.status or ''})".rstrip()
            )
        fields = outcome.all_fields
        unknown = sorted(placeholders(template) - set(fields))
        if unknown:
            raise CatalogueError(
                f"{where} {'template' if spec.template is not None else 'reply'}: "
                f"{spec.policy}/{spec.outcome} has no field {{{unknown[0]}}}; its reply may use: "
                + ", ".join("{" + f + "}" for f in sorted(fields))
            )
        entries.append(
            Entry(
                id=spec.id,
                kind=spec.kind,
                default=spec.default,
                borrowed=spec.borrowed,
                receiver=spec.receiver,
                source=spec.source,
                family=info.family or info.policy,
                policy=spec.policy,
                outcome=spec.outcome,
                stage=spec.stage or outcome.decided_at,
                cause=spec.cause or info.cause,
                fix=spec.fix or info.fix,
                rfc_allows_refusal=outcome.rfc_allows,
                rfc_note=info.rfc_note,
                fields=fields,
                documented=tuple(_lines(spec.reply)),
                template=template,
                scenario=spec.scenario,
                case=spec.case,
            )
        )
    return Catalogue(list(outcomes.values()), entries)


def _lines(spec: str | list[str]) -> list[str]:
    return spec.splitlines() if isinstance(spec, str) else list(spec)
