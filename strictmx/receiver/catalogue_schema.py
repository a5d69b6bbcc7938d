"""The reply catalogue's file format: catalogue.yaml as written, parsed and validated.

Kept apart from strictmx/receiver/catalogue.py, which holds what a loaded catalogue is (plain
dataclasses) and checks a parsed file against the policies: this module imports PyYAML and
pydantic, and `strictmx explain` unpickles a built catalogue on every run without needing
either. catalogue.py imports this module by name (`catalogue.SCHEMA`) when it parses a file;
tests/unit/test_cli_lazy.py checks that edge as an import.

Errors name the file, the entry (index and id) and the key path:
`catalogue.yaml replies[3] (seed-4) reply: ...`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .verdict import Reply, ReplyError, Stage

Kind = Literal["seed", "persona", "project"]

_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class SchemaError(ValueError):
    """A catalogue file that does not parse or validate; the message names the entry.
    catalogue.py raises it again as its CatalogueError."""


class OutcomeSpec(BaseModel):
    """What one policy outcome means, as written under `outcomes:`."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    policy: str = Field(description="The policy's name.")
    outcome: str = Field(description="The outcome id, UPPER_SNAKE.")
    family: str | None = Field(None, description="The check family; the policy name if unset.")
    rfc_note: str = Field(min_length=1, description="The RFC text behind that answer.")
    cause: str = Field(min_length=1, description="What is wrong, on the sending side.")
    fix: str = Field(min_length=1, description="What to change on the sending side.")


class ReplySpec(BaseModel):
    """One catalogue reply as written in the file."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    id: str = Field(description="Unique: the seed id, or a short name.")
    kind: Kind
    default: bool = Field(False, description="The policy sends this text by default.")
    borrowed: bool = Field(
        False, description="The text is another check's reply that this outcome reuses."
    )
    receiver: str | None = Field(None, description="Who sends it (persona replies).")
    source: str | None = Field(None, description="Source key in receivers.md (personas).")
    policy: str
    outcome: str
    reply: str | list[str] = Field(description="The reply as documented (wire lines).")
    template: str | list[str] | None = Field(
        None,
        description="The reply with {placeholders} where the documented one has others.",
    )
    stage: Stage | None = Field(None, description="Overrides the outcome's stage.")
    cause: str | None = Field(None, description="Overrides the outcome's cause.")
    fix: str | None = Field(None, description="Overrides the outcome's fix.")
    scenario: str | None = Field(None, description="Bundled scenario that reproduces it.")
    case: str | None = Field(None, description="Name of the expect case there.")

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(f"ids are lowercase letters, digits and '-': {value!r}")
        return value

    @field_validator("reply", "template")
    @classmethod
    def _parses(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is not None:
            try:
                Reply.parse(value)
            except ReplyError as exc:
                raise ValueError(str(exc)) from None
        return value


class CatalogueFile(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    outcomes: list[OutcomeSpec]
    replies: list[ReplySpec]


def parse(text: str, source: str) -> CatalogueFile:
    """catalogue.yaml's text, validated; SchemaError names the entry at fault."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SchemaError(f"{source}: invalid YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise SchemaError(f"{source}: the catalogue must be a mapping with outcomes and replies")
    try:
        return CatalogueFile.model_validate(data)
    except ValidationError as exc:
        raise SchemaError(_describe(exc, data, source)) from None


def made(
    outcomes: list[dict[str, Any]], replies: list[dict[str, Any]], source: str
) -> CatalogueFile:
    """Outcomes and replies made in code (a plug-in's, see `Catalogue.with_policies`),
    validated as the file's are."""
    data = {"outcomes": outcomes, "replies": replies}
    try:
        return CatalogueFile.model_validate(data)
    except ValidationError as exc:
        raise SchemaError(_describe(exc, data, source)) from None


def _describe(exc: ValidationError, data: Mapping[str, Any], source: str) -> str:
    """Pydantic's errors with the entry's id next to its index."""
    messages = []
    for err in exc.errors():
        loc = list(err["loc"])
        where = source
        if len(loc) >= 2 and loc[0] in ("outcomes", "replies") and isinstance(loc[1], int):
            section, index = str(loc[0]), loc[1]
            items = data.get(section)
            item = items[index] if isinstance(items, list) and index < len(items) else None
            label = ""
            if isinstance(item, Mapping):
                if section == "replies" and "id" in item:
                    label = f" ({item['id']})"
                elif section == "outcomes" and "outcome" in item:
                    label = f" ({item.get('policy')}/{item['outcome']})"
            where = f"{source} {section}[{index}]{label}"
            loc = loc[2:]
        key = ".".join(str(p) for p in loc if not (isinstance(p, str) and "[" in p))
        text = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        messages.append(f"{where} {key}: {text}" if key else f"{where}: {text}")
    return "\n".join(messages)
