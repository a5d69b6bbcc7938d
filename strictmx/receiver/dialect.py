"""Dialects: what a persona family says and accepts at the protocol level.

A dialect is data, one YAML file per family in strictmx/receiver/data/dialects/ (`aiosmtpd`,
`postfix`, ...): the reply to every protocol situation (sequence errors, QUIT, NOOP,
unknown commands, limits, junk), each with the source it was taken from; the commands it
knows; the EHLO keywords it offers, in order; its line and unknown-command limits; its
address grammar (strictmx/receiver/grammar/, one module per grammar); what it does with
forbidden commands (by name and by pattern), header lines sent as commands, a NUL octet and
a bare LF in a command, and a bare LF in a message; whether VRFY runs the recipient checks.

A scenario names one (`receiver.dialect: postfix`; `aiosmtpd` by default, the wire
strictmx always had) and may override any part of it in a top-level `dialect:` section,
merged over the named file. Both are validated at load; every error names the file, line
and key path (`postfix.yaml:40 replies.quit.reply: ...`), as scenario errors do.

Every dialect file defines every key of REPLY_KEYS: a dialect that has no such situation
still says what it would answer, so no reply is ever missing at run time.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .grammar import Grammar
from .scenario_yaml import KeyPath, LineMap, ScenarioError
from .verdict import Reply, ReplyError, placeholders, printable

#: The situations every dialect answers (the key of each reply in a dialect file).
REPLY_KEYS: tuple[str, ...] = (
    "greeting_default",
    "helo_ok",
    "ehlo_ok",
    "helo_syntax",
    "ehlo_syntax",
    "helo_first",
    "mail_ok",
    "mail_syntax",
    "mail_syntax_esmtp",
    "mail_nested",
    "mail_bad_address",
    "rcpt_ok",
    "rcpt_syntax",
    "rcpt_syntax_esmtp",
    "rcpt_need_mail",
    "rcpt_no_helo",
    "rcpt_after_bdat",
    "rcpt_bad_address",
    "data_ok",
    "data_syntax",
    "data_need_rcpt",
    "data_no_helo",
    "data_after_bdat",
    "data_no_valid_rcpt",
    "queued",
    "message_too_big",
    "size_too_big",
    "size_overflow",
    "size_syntax",
    "body_syntax",
    "smtputf8_disabled",
    "smtputf8_syntax",
    "param_unknown",
    "rcpt_param_unknown",
    "param_syntax",
    "dsn_ret_syntax",
    "dsn_envid_syntax",
    "dsn_notify_syntax",
    "dsn_orcpt_syntax",
    "dsn_disabled",
    "rset_ok",
    "rset_syntax",
    "noop_ok",
    "noop_arg",
    "quit",
    "quit_syntax",
    "unknown_command",
    "bad_syntax",
    "not_ascii",
    "too_many_unknown",
    "line_too_long",
    "data_line_too_long",
    "vrfy_disabled",
    "vrfy_syntax",
    "vrfy_syntax_smtputf8",
    "vrfy_bad_address",
    "vrfy_ok",
    "expn",
    "help",
    "etrn_helo_first",
    "etrn_syntax",
    "etrn_reply",
    "etrn_in_mail",
    "bdat_syntax",
    "bdat_need_rcpt",
    "bdat_ok",
    "bdat_queued",
    "bdat_too_big",
    "bdat_discarded",
    "starttls_ready",
    "starttls_unavailable",
    "starttls_active",
    "starttls_syntax",
    "starttls_active_syntax",
    "auth_unavailable",
    "xforward_syntax",
    "xforward_denied",
    "forbidden_command",
    "bare_lf",
    "timeout",
    "queue_error",
    "internal_error",
    "internal_error_close",
)

#: The placeholders a reply template may use; the caller fills them (made printable).
PLACEHOLDERS = frozenset(
    {
        "hostname",
        "verb",
        "arg",
        "address",
        "param",
        "size",
        "queue_id",
        "helo",
        "client_ip",
        "commands",
        "detail",
    }
)

DEFAULT = "aiosmtpd"
#: A reply line as a dialect writes it: the code, then a space (or nothing).
_REPLY_LINE = re.compile(r"[2-5][0-9][0-9]( |$)")


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reply: str = Field(min_length=1, description="One `code [x.y.z] text` line; \\n: next line.")
    source: str = Field(min_length=1, description="Where the text was taken from.")


class _Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command_line: int | None = Field(
        ge=1, description="Octets of a command line before line_too_long; null: none."
    )
    data_line: int | None = Field(
        ge=1, description="Octets of a message line before data_line_too_long; null: none."
    )
    unknown_commands: int | None = Field(
        ge=1, description="Unknown verbs before too_many_unknown and the close; null: none."
    )


class DialectFile(BaseModel):
    """A dialect file, and a dialect merged with a scenario's overrides: every key given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    description: str = Field(max_length=2000)
    enhanced_status_codes: bool
    commands: list[str]
    ehlo_keywords: list[str]
    limits: _Limits
    address_grammar: Grammar
    forbidden_commands: list[str]
    forbidden_pattern: str | None = Field(
        description="A regular expression: an unknown verb it matches (as sent, ASCII letters "
        "in either case alike, as Postfix's regexp tables) is a forbidden command; null: none."
    )
    header_commands_forbidden: bool
    bare_lf: Literal["accept", "reject"]
    data_bare_lf: Literal["reject", "line_end", "keep"] = Field(
        description="A bare LF in a message: reject (the reply bare_lf, the session goes on; "
        "only CRLF.CRLF ends the data), line_end (a line end: LF.LF ends the data too), "
        "keep (part of the line, kept as sent)."
    )
    vrfy: bool
    vrfy_checks_recipient: bool = Field(
        description="VRFY runs the RCPT stage's policies on its address before the vrfy_ok "
        "reply (Postfix smtpd.c vrfy_cmd: smtpd_check_rcpt)."
    )
    replies: dict[str, _Entry]

    @field_validator("forbidden_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                _pattern(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value


@dataclass(frozen=True, eq=False)
class Dialect:
    """A dialect made runnable: replies parsed once, lists made sets."""

    name: str
    description: str
    enhanced_status_codes: bool
    commands: frozenset[str]
    ehlo_keywords: tuple[str, ...]
    command_line: int | None
    data_line: int | None
    unknown_commands: int | None
    address_grammar: Grammar
    forbidden_commands: frozenset[str]
    #: Matched with `search` against an unknown verb as sent (None: no pattern).
    forbidden_pattern: re.Pattern[str] | None
    header_commands_forbidden: bool
    bare_lf: Literal["accept", "reject"]
    data_bare_lf: Literal["reject", "line_end", "keep"]
    vrfy: bool
    vrfy_checks_recipient: bool
    replies: Mapping[str, Reply]
    sources: Mapping[str, str]
    #: The data it was built from, for merging a scenario's overrides over it.
    data: Mapping[str, Any]

    def reply(self, key: str, **fields: object) -> Reply:
        """The reply for situation `key`, its placeholders filled with `fields` made
        printable (client text quoted in a reply can never end a line)."""
        reply = self.replies[key]
        if not fields or not _templated(reply):
            return reply
        return reply.format({k: printable(str(v)) for k, v in fields.items()})

    def for_host(self, hostname: str) -> Dialect:
        """This dialect with `{hostname}` filled in once (the receiver's own name)."""
        return _for_host(self, hostname)

    def override(self, data: Any, where: LineMap, path: KeyPath) -> Dialect:
        """This dialect with a scenario's `dialect:` section merged over it; errors name
        the scenario's file, line and key path under `path`."""
        if not isinstance(data, Mapping):
            raise ScenarioError(where.at(path, "the dialect section must be a mapping"))
        replies = data.get("replies")
        if isinstance(replies, Mapping):
            # An override of a text need not repeat where the base text came from; it
            # is the scenario's own text then.
            data = dict(data)
            data["replies"] = {
                k: ({"source": "scenario override", **v} if isinstance(v, Mapping) else v)
                for k, v in replies.items()
            }
        return _build(_merge(self.data, data), where, path)


@functools.lru_cache(maxsize=64)
@functools.lru_cache(maxsize=1024)
def _templated(reply: Reply) -> bool:
    """The reply has placeholders left to fill (most have none: no copy is made then)."""
    return any("{" in line for line in reply.lines)


def _for_host(dialect: Dialect, hostname: str) -> Dialect:
    fields = {"hostname": hostname}
    replies = {k: r.format(fields) for k, r in dialect.replies.items()}
    return replace(dialect, replies=replies)


@functools.lru_cache(maxsize=64)
def _pattern(text: str) -> re.Pattern[str]:
    # Postfix's regexp tables ignore case by default, ASCII letters only (REG_ICASE).
    return re.compile(text, re.IGNORECASE | re.ASCII)


def bundled_dialects() -> list[str]:
    return sorted(p.name[:-5] for p in _dir().iterdir() if p.name.endswith(".yaml"))


@functools.lru_cache(maxsize=32)
def load(name: str) -> Dialect:
    """A bundled dialect by name (ScenarioError if there is none)."""
    if name not in bundled_dialects():
        raise ScenarioError(
            f"no dialect named {name!r}; bundled dialects: {', '.join(bundled_dialects())}"
        )
    text = (_dir() / f"{name}.yaml").read_text(encoding="utf-8")
    return loads(text, source=f"dialects/{name}.yaml")


def loads(text: str, *, source: str = "<dialect>") -> Dialect:
    """A dialect from YAML text; every key must be there."""
    lines = LineMap.parse(text, source)
    return _build(lines.data, lines, ())


def _dir() -> Any:
    return importlib.resources.files("strictmx.receiver") / "data" / "dialects"


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        old = merged.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = _merge(old, value)
        else:
            merged[key] = value
    return merged


def _build(data: Any, where: LineMap, path: KeyPath) -> Dialect:
    if not isinstance(data, Mapping):
        raise ScenarioError(where.at(path, "a dialect must be a mapping"))
    try:
        model = DialectFile.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(where.describe_validation(exc, path)) from None
    missing = [k for k in REPLY_KEYS if k not in model.replies]
    if missing:
        raise ScenarioError(where.at((*path, "replies"), "missing replies: " + ", ".join(missing)))
    replies: dict[str, Reply] = {}
    for key, entry in model.replies.items():
        at = (*path, "replies", key)
        if key not in REPLY_KEYS:
            raise ScenarioError(
                where.at(at, f"unknown reply key; keys are: {', '.join(REPLY_KEYS)}")
            )
        try:
            if not _REPLY_LINE.match(entry.reply):
                raise ReplyError(f"a reply must start with a code and a space: {entry.reply!r}")
            reply = Reply.parse(entry.reply.replace("\\n", "\n"))
            unknown = placeholders(reply) - PLACEHOLDERS
        except ReplyError as exc:
            raise ScenarioError(where.at((*at, "reply"), str(exc))) from None
        if unknown:
            raise ScenarioError(
                where.at(
                    (*at, "reply"),
                    f"unknown placeholder {{{sorted(unknown)[0]}}}; placeholders are: "
                    + ", ".join(sorted(PLACEHOLDERS)),
                )
            )
        replies[key] = reply
    limits = model.limits
    return Dialect(
        name=model.name,
        description=model.description,
        enhanced_status_codes=model.enhanced_status_codes,
        commands=frozenset(c.upper() for c in model.commands),
        ehlo_keywords=tuple(model.ehlo_keywords),
        command_line=limits.command_line,
        data_line=limits.data_line,
        unknown_commands=limits.unknown_commands,
        address_grammar=model.address_grammar,
        forbidden_commands=frozenset(c.upper() for c in model.forbidden_commands),
        forbidden_pattern=(
            None if model.forbidden_pattern is None else _pattern(model.forbidden_pattern)
        ),
        header_commands_forbidden=model.header_commands_forbidden,
        bare_lf=model.bare_lf,
        data_bare_lf=model.data_bare_lf,
        vrfy=model.vrfy,
        vrfy_checks_recipient=model.vrfy_checks_recipient,
        replies=replies,
        sources={k: e.source for k, e in model.replies.items()},
        data=dict(data),
    )
