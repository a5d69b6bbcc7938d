"""content_filter: refuse messages by rules on headers, body text, size and attachments."""

from __future__ import annotations

import email.policy
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from strictmx.receiver.message import header_of
from strictmx.receiver.outcome import NUMBER, TEXT
from strictmx.receiver.policy import FROM_CATALOGUE, Context, Outcome, Policy, PolicyOptions
from strictmx.receiver.reproduction import Build, Request, header_lines, message
from strictmx.receiver.session import Session
from strictmx.receiver.verdict import Reply, ReplyError, Stage, Verdict

# RFC 5322 §3.6.8: a field name is printable US-ASCII except ':'.
_FIELD_NAME = re.compile(r"[!-9;-~]+")
# RFC 6838 §4.2 restricted-name, for type/subtype; 'type/*' takes every subtype.
_NAME = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
_MIME_TYPE = re.compile(rf"{_NAME}/(?:\*|{_NAME})")
_EXTENSION = re.compile(r"\.[^./\\\s]+")
#: How much of a matched value a reason quotes.
_QUOTE = 80

CONTENT_REJECTED = "CONTENT_REJECTED"
MESSAGE_TOO_BIG = "MESSAGE_TOO_BIG"


class ContentRule(BaseModel):
    """One rule: exactly one test (regex, max_size or attachment_types) and its reply."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Names the rule in verdicts and as {rule}.")
    header: str | None = Field(
        None, description="regex: search every value of this header (decoded, unfolded)."
    )
    body: bool = Field(False, description="regex: search the decoded text of the body parts.")
    regex: str | None = Field(
        None,
        description="A Python regular expression, searched (not anchored); '^' and '$' "
        "match at line ends; case-insensitive unless case_sensitive.",
    )
    case_sensitive: bool = Field(False, description="regex: match letter case exactly.")
    max_size: int | None = Field(
        None, ge=1, description="Refuse a message larger than this many octets."
    )
    attachment_types: list[str] = Field(
        default_factory=list,
        description="Refuse a part of one of these MIME types ('application/x-msdownload', "
        "'image/*') or with one of these filename extensions ('.exe').",
    )
    reply: str | list[str] | None = Field(
        None,
        description="This rule's reply, instead of its outcome's; {rule} and the "
        "outcome's fields may be used.",
    )

    _pattern: re.Pattern[str] | None = PrivateAttr(None)
    _types: frozenset[str] = PrivateAttr(frozenset())
    _extensions: tuple[str, ...] = PrivateAttr(())
    _reply: Reply | None = PrivateAttr(None)

    @field_validator("header")
    @classmethod
    def _field_name(cls, value: str | None) -> str | None:
        if value is not None and not _FIELD_NAME.fullmatch(value):
            raise ValueError(f"not a header field name (RFC 5322 §3.6.8): {value!r}")
        return value

    @model_validator(mode="after")
    def _compile(self) -> Self:
        def bad(why: str) -> ValueError:
            return ValueError(f"rule {self.name!r}: {why}")

        kinds = [
            k
            for k, given in (
                ("regex", self.regex is not None),
                ("max_size", self.max_size is not None),
                ("attachment_types", bool(self.attachment_types)),
            )
            if given
        ]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise bad(f"give exactly one of regex, max_size, attachment_types (found: {found})")
        if self.regex is not None:
            if self.header is None and not self.body:
                raise bad("a regex needs a header to search, or body: true")
            flags = re.MULTILINE | (0 if self.case_sensitive else re.IGNORECASE)
            try:
                self._pattern = re.compile(self.regex, flags)
            except re.error as exc:
                raise bad(f"bad regex {self.regex!r}: {exc}") from None
        elif self.header is not None or self.body:
            raise bad("header and body say where a regex searches; this rule has no regex")
        types, extensions = set(), []
        for entry in self.attachment_types:
            text = entry.strip().lower()
            if _MIME_TYPE.fullmatch(text):
                types.add(text)
            elif _EXTENSION.fullmatch(text):
                extensions.append(text)
            else:
                raise bad(
                    f"{entry!r} is neither a MIME type (type/subtype or type/*) nor a "
                    "filename extension ('.exe')"
                )
        self._types, self._extensions = frozenset(types), tuple(extensions)
        if self.reply is not None:
            try:
                reply = Reply.parse(self.reply)
                ContentFilter.validate_reply(self.outcome, reply)
            except ReplyError as exc:
                raise bad(f"reply: {exc}") from None
            self._reply = reply
        return self

    @property
    def outcome(self) -> str:
        return MESSAGE_TOO_BIG if self.max_size is not None else CONTENT_REJECTED

    @property
    def pattern(self) -> re.Pattern[str] | None:
        return self._pattern

    @property
    def types(self) -> frozenset[str]:
        """MIME types refused, lowercase; 'type/*' entries take a whole type."""
        return self._types

    @property
    def extensions(self) -> tuple[str, ...]:
        """Filename extensions refused, lowercase with their dot."""
        return self._extensions

    @property
    def rule_reply(self) -> Reply | None:
        return self._reply


class ContentFilterOptions(PolicyOptions):
    rules: list[ContentRule] = Field(
        default_factory=list,
        description="Checked in order, the first match refuses: {name, regex with header: "
        "NAME and/or body: true, or max_size, or attachment_types; case_sensitive, reply}.",
    )

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[ContentRule]) -> list[ContentRule]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"two rules are named {rule.name!r}")
            seen.add(rule.name)
        return rules


@dataclass(frozen=True)
class Hit:
    """What a rule found: a sentence for the verdict and the reply's fields."""

    reason: str
    fields: dict[str, Any] = field(default_factory=dict)


class ContentFilter(Policy[ContentFilterOptions]):
    """Refuse a message whose headers, body text, size or attachments break a rule.

    Runs at end of data, on the message as received. Rules (option `rules`) are checked
    in order and the first that matches decides; each rule makes exactly one test:

    - `regex` with `header: NAME`: searched in every value of that header of the message
      (not of its MIME parts), as the stdlib `email` package reads it: folded lines
      unfolded, RFC 2047 encoded-words decoded. A value the package cannot parse is
      searched as sent, unfolded.
    - `regex` with `body: true`: searched in the decoded text (base64 and
      quoted-printable undone, charset applied) of every text/* part that is not an
      attachment. Both targets may be given.
    - `max_size`: the message is larger than this many octets -> MESSAGE_TOO_BIG.
    - `attachment_types`: a part whose Content-Type is listed (`type/*` takes a whole
      type), or whose filename (Content-Disposition filename or Content-Type name, RFC
      2231 and RFC 2047 encodings decoded) ends with a listed extension. Trailing dots and
      spaces are ignored, as Windows ignores them. Parts of attached messages count.

    Regexes are Python `re` syntax, case-insensitive by default as in Postfix's regexp
    tables, with '^' and '$' matching at line breaks. Every option is checked and
    compiled when the scenario loads; an error names the rule.

    Default replies are Postfix's cleanup(8) replies as smtpd sends them
    (cleanup_strerror.c, smtpd.c): `550 5.7.1 Error: message content rejected` (a
    header_checks/body_checks REJECT without text) and `552 5.3.4 Error: message file
    too big` (message_size_limit). A rule's `reply` replaces its outcome's reply for that
    rule only; the {rule} placeholder names the rule. Yahoo's "554 Message not allowed -
    [PH01] Email not accepted for policy reasons" (seed-58) is such a reply.

    RFC 5321 leaves what a receiver accepts to its policy (§7.9), so every outcome is
    allowed.
    """

    name = "content_filter"
    summary = "Message headers, body, size and attachments must pass the scenario's rules"
    stages = frozenset({Stage.EOD})
    Options = ContentFilterOptions
    outcomes = (
        Outcome(
            CONTENT_REJECTED,
            FROM_CATALOGUE,
            "A header or body regex rule matched, or a part has a refused type or extension.",
            fields={"rule": TEXT, "what": TEXT},
        ),
        Outcome(
            MESSAGE_TOO_BIG,
            FROM_CATALOGUE,
            "The message is larger than a rule's max_size (Postfix message_size_limit).",
            fields={"rule": TEXT, "size": NUMBER, "limit": NUMBER},
        ),
    )

    @classmethod
    def reproduce(cls, req: Request) -> Build:
        """A rule the customer's message breaks: a size limit, or a subject pattern."""
        ident = req.identity
        if req.entry.outcome == "MESSAGE_TOO_BIG":
            body = "\n".join(
                "A line of a message larger than the receiver takes." for _ in range(60)
            )
            return Build(
                options={"rules": [{"name": "size", "max_size": 2000}]},
                case={"message": message(ident, body=body)},
            )
        return Build(
            options={
                "rules": [{"name": "policy", "header": "Subject", "regex": r"\byou have won\b"}]
            },
            case={"message": message(ident, header_lines(ident, Subject="You have won a prize"))},
        )

    def __init__(
        self, options: ContentFilterOptions, replies: Mapping[str, Reply] | None = None
    ) -> None:
        super().__init__(options, replies)

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        if session.message is None or not self.options.rules:
            return None
        message = _Message(session.message)
        for rule in self.options.rules:
            hit = _match(rule, message)
            if hit is None:
                continue
            fields = {"rule": rule.name, **hit.fields}
            return self.verdict(
                rule.outcome, stage, session, ctx, hit.reason, reply=rule.rule_reply, **fields
            )
        return None


class _HeaderClasses(HeaderRegistry):
    """The stdlib's registry makes a new class for every header it parses; one per field
    name is enough, and saves most of the cost of decoding a header."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


#: How a header rule sees a field: decoded as email.policy.default does.
_DECODING = email.policy.default.clone(header_factory=_HeaderClasses())


class _Message:
    """One message as received, parsed at most once whatever the number of rules."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    @functools.cached_property
    def parsed(self) -> EmailMessage:
        """The whole message, MIME parts and all (body and attachment rules)."""
        return BytesParser(EmailMessage, policy=email.policy.default).parsebytes(self.raw)

    def header_values(self, name: str) -> Iterator[str]:
        # The header split the headers policy made of this message, when it ran first.
        for found in header_of(self.raw).get(name):
            raw = found.value.lstrip(" \t")
            try:
                # Decoded (RFC 2047 words, folding) only for the field a rule asks about.
                yield str(_DECODING.header_fetch_parse(found.name, raw))
            except Exception:
                # The stdlib's structured-header parsers raise on some malformed values
                # ("Message-ID: <<a@b" raises IndexError); a rule still sees the text.
                yield _unfold(raw)

    def body_texts(self) -> Iterator[tuple[str, str]]:
        """(content type, decoded text) of each text part that is not an attachment."""
        for part in self.parsed.walk():
            if part.is_multipart() or part.get_content_maintype() != "text":
                continue
            if part.is_attachment():
                continue
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                continue
            yield part.get_content_type(), _decode(payload, part.get_content_charset())

    def parts(self) -> Iterator[tuple[str, str | None]]:
        """(content type, filename) of every leaf part, in attached messages too."""
        # Most mail is one part without a file name: the header block alone says so, and
        # that spares a full MIME parse of every message.
        head = header_of(self.raw)
        types = [f.value for f in head.get("Content-Type")]
        content_type = _content_type(types[0] if types else None)
        if not content_type.startswith("multipart/") and not any(
            "name" in f.value.lower()
            for f in head.get("Content-Type") + head.get("Content-Disposition")
        ):
            yield content_type, None
            return
        for part in self.parsed.walk():
            if not part.is_multipart():
                yield part.get_content_type(), part.get_filename()


def _content_type(value: str | None) -> str:
    """The type/subtype a Content-Type value names, text/plain when missing or malformed
    (RFC 2045 §5.2), as the stdlib's get_content_type() reads it."""
    if value is None:
        return "text/plain"
    content_type = value.split(";", 1)[0].strip().lower()
    return content_type if content_type.count("/") == 1 else "text/plain"


def _unfold(raw: str) -> str:
    text = re.sub(r"\r?\n(?=[ \t])", "", raw).strip()
    # Undecodable octets arrive as surrogate escapes; show them as U+FFFD.
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _decode(payload: bytes, charset: str | None) -> str:
    try:
        return payload.decode(charset or "utf-8", "replace")
    except LookupError:  # a charset Python does not know
        return payload.decode("utf-8", "replace")


def _quote(text: str) -> str:
    return repr(text if len(text) <= _QUOTE else text[:_QUOTE] + "...")


def _match(rule: ContentRule, message: _Message) -> Hit | None:
    prefix = f"rule {rule.name!r}: "
    if rule.max_size is not None:
        size = len(message.raw)
        if size <= rule.max_size:
            return None
        return Hit(
            f"{prefix}the message is {size} octets, over the limit of {rule.max_size}",
            {"size": size, "limit": rule.max_size},
        )
    if rule.pattern is not None:
        return _match_regex(rule, rule.pattern, message, prefix)
    return _match_attachment(rule, message, prefix)


def _match_regex(
    rule: ContentRule, pattern: re.Pattern[str], message: _Message, prefix: str
) -> Hit | None:
    if rule.header is not None:
        for value in message.header_values(rule.header):
            found = pattern.search(value)
            if found:
                what = f"the {rule.header} header"
                return Hit(
                    f"{prefix}{what} {_quote(value)} matches {rule.regex!r} "
                    f"at {_quote(found.group(0))}",
                    {"what": what},
                )
    if rule.body:
        for content_type, text in message.body_texts():
            found = pattern.search(text)
            if found:
                what = f"the body ({content_type} part)"
                return Hit(
                    f"{prefix}{what} matches {rule.regex!r} at {_quote(found.group(0))}",
                    {"what": what},
                )
    return None


def _match_attachment(rule: ContentRule, message: _Message, prefix: str) -> Hit | None:
    for content_type, filename in message.parts():
        major = content_type.partition("/")[0]
        if content_type in rule.types or f"{major}/*" in rule.types:
            why = f"type {content_type} is refused"
        elif filename is not None and (
            ext := next(
                (e for e in rule.extensions if filename.lower().rstrip(". ").endswith(e)), None
            )
        ):
            why = f"extension {ext} is refused"
        else:
            continue
        what = f"attachment {filename!r} ({content_type})" if filename else f"a {content_type} part"
        return Hit(f"{prefix}{what}: {why}", {"what": what})
    return None
