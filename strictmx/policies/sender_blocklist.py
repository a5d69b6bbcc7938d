"""sender_blocklist: is the envelope sender on the receiver's own list of refused senders?"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, ClassVar, Final, Literal, Self

from pydantic import AfterValidator, Field, PrivateAttr, ValidationInfo, model_validator

from strictmx.receiver.outcome import TEXT
from strictmx.receiver.policy import FROM_CATALOGUE, Context, Outcome, Policy, PolicyOptions
from strictmx.receiver.reproduction import Build, Request, sender_in
from strictmx.receiver.session import Session
from strictmx.receiver.trust import Reach, Trust, UnreadableFile, reaches, read_text_file, trust_of
from strictmx.receiver.verdict import Stage, Verdict
from strictmx.receiver.world.names import a_label

EntryKind = Literal["address", "domain", "subdomains", "pattern", "regex"]

#: How the null sender is written in a list (it matches nothing else, nor does anything
#: else match it).
NULL_SENDER = "<>"
_GLOB_CHARS = frozenset("*?[")
#: The largest blocklist file read, in bytes (Postfix access maps of this size are rare;
#: a larger one is more likely a mistake, such as a path to a device or a log).
MAX_FILE_BYTES: Final = 4 * 1024 * 1024


@dataclass(frozen=True)
class Entry:
    """One list entry, as written and where (`regex[2]`, `blocked.txt:14`)."""

    kind: EntryKind
    text: str
    origin: str


@dataclass
class Blocklist:
    """Every entry of the options, indexed for one lookup per sender."""

    addresses: dict[str, Entry] = field(default_factory=dict)
    domains: dict[str, Entry] = field(default_factory=dict)
    parents: dict[str, Entry] = field(default_factory=dict)
    patterns: list[tuple[re.Pattern[str], Entry]] = field(default_factory=list)
    regexes: list[tuple[re.Pattern[str], Entry]] = field(default_factory=list)

    def add(self, kind: EntryKind, text: str, origin: str, *, quote: bool = True) -> None:
        """Add one entry of a known kind; ValueError naming `origin` if it is malformed
        (quoting the entry unless `quote` is false)."""
        entry = Entry(kind, text, origin)
        value = text.strip()
        if not value:
            raise ValueError(f"{origin}: empty entry")
        shown = repr(value) if quote else "the line"
        if kind == "address":
            self.addresses.setdefault(_address_key(value, origin, shown), entry)
        elif kind in ("domain", "subdomains"):
            key = _domain_entry(value, origin, shown)
            target = self.parents if kind == "subdomains" else self.domains
            target.setdefault(key, entry)
        elif kind == "pattern":
            self.patterns.append((re.compile(fnmatch.translate(value.lower())), entry))
        else:
            try:
                compiled = re.compile(value, re.IGNORECASE)
            except re.error as exc:
                why = f": {exc}" if quote else f" (at position {exc.pos})"
                raise ValueError(
                    f"{origin}: {shown} is not a valid regular expression{why}"
                ) from None
            self.regexes.append((compiled, entry))

    def extend(self, other: Blocklist) -> None:
        """Add `other`'s entries after these (an entry listed here first keeps its origin)."""
        for key, entry in other.addresses.items():
            self.addresses.setdefault(key, entry)
        for key, entry in other.domains.items():
            self.domains.setdefault(key, entry)
        for key, entry in other.parents.items():
            self.parents.setdefault(key, entry)
        self.patterns.extend(other.patterns)
        self.regexes.extend(other.regexes)

    def add_line(self, line: str, origin: str, *, quote: bool = True) -> None:
        """A file line: `/regex/`, `<>`, a glob, an address, or a (`.`-prefixed) domain."""
        if len(line) > 1 and line.startswith("/") and line.endswith("/"):
            self.add("regex", line[1:-1], origin, quote=quote)
        elif line == NULL_SENDER:
            self.add("address", line, origin, quote=quote)
        elif _GLOB_CHARS & set(line):
            self.add("pattern", line, origin, quote=quote)
        elif "@" in line:
            self.add("address", line, origin, quote=quote)
        else:
            kind: EntryKind = "subdomains" if line.startswith(".") else "domain"
            self.add(kind, line, origin, quote=quote)

    def match(self, sender: str) -> Entry | None:
        """The entry that lists `sender` ("" for the null sender), or None."""
        if not sender:
            return self.addresses.get(NULL_SENDER)
        local, at, domain = sender.rpartition("@")
        domain = _domain_key(domain) if at else ""
        key = f"{local.lower()}@{domain}" if at else sender.lower()
        hit = self.addresses.get(key) or self._listed_domain(domain)
        if hit is not None:
            return hit
        for pattern, entry in self.patterns:
            if pattern.match(key):
                return entry
        for regex, entry in self.regexes:
            if regex.search(sender):
                return entry
        return None

    def _listed_domain(self, domain: str) -> Entry | None:
        if not domain:
            return None
        hit = self.domains.get(domain)
        parent = domain
        while hit is None and "." in parent:
            parent = parent.split(".", 1)[1]
            hit = self.parents.get(parent)
        return hit


def _domain_key(domain: str) -> str:
    """A domain as compared: lowercase, no root dot, A-labels for non-ASCII labels."""
    domain = domain.strip().rstrip(".").lower()
    if domain.isascii():
        return domain
    try:
        return ".".join(a_label(label) for label in domain.split("."))
    except UnicodeError:
        return domain  # not a valid IDN: compared as written


def _address_key(value: str, origin: str, shown: str) -> str:
    if value == NULL_SENDER:
        return value
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain.strip(".") or " " in value:
        raise ValueError(
            f"{origin}: {shown} is not an address: write local@domain, or <> for the "
            "null sender (domains go under domains, wildcards under patterns)"
        )
    return f"{local.lower()}@{_domain_key(domain)}"


def _domain_entry(value: str, origin: str, shown: str) -> str:
    key = _domain_key(value.removeprefix("."))
    if not key or "@" in value or " " in value or ".." in key or key.startswith("."):
        raise ValueError(
            f"{origin}: {shown} is not a domain: write example.com for that domain, "
            ".example.com for its subdomains"
        )
    return key


class ListFile(str):
    """The `file` option's name, carrying the entries read from it at load."""

    blocklist: Blocklist


def _load_file(value: str, info: ValidationInfo) -> str:
    # A field validator, so an unreadable file or a bad line is reported at `.file`.
    blocklist = Blocklist()
    _read_file(value, trust_of(info), blocklist)
    loaded = ListFile(value)
    loaded.blocklist = blocklist
    return loaded


class SenderBlocklistOptions(PolicyOptions):
    addresses: list[str] = Field(
        default_factory=list,
        description="Sender addresses to refuse, case-insensitively; <> is the null sender.",
    )
    domains: list[str] = Field(
        default_factory=list,
        description="Sender domains to refuse: example.com is that domain only, "
        ".example.com its subdomains (Postfix access(5)).",
    )
    patterns: list[str] = Field(
        default_factory=list,
        description="Shell globs (*, ?, [...]) matched against the whole address, "
        "case-insensitively.",
    )
    regex: list[str] = Field(
        default_factory=list,
        description="Python regular expressions searched for in the address, "
        "case-insensitively; anchor them with ^ and $ (as Postfix regexp tables).",
    )
    file: Annotated[str, reaches(Reach.FILE), AfterValidator(_load_file)] | None = Field(
        None,
        description="A file of entries, one a line, # comments; read at load, a relative "
        "path from the scenario file's directory; a regular file of at most 4 MiB. Not in "
        "a scenario uploaded through the API, unless serve --api-allow-host-access.",
    )

    _blocklist: Blocklist = PrivateAttr(default_factory=Blocklist)

    @model_validator(mode="after")
    def _build(self) -> Self:
        blocklist = Blocklist()
        lists: tuple[tuple[str, EntryKind, list[str]], ...] = (
            ("addresses", "address", self.addresses),
            ("patterns", "pattern", self.patterns),
            ("regex", "regex", self.regex),
        )
        for key, kind, values in lists:
            for n, value in enumerate(values):
                blocklist.add(kind, value, f"{key}[{n}]")
        for n, value in enumerate(self.domains):
            scope: EntryKind = "subdomains" if value.strip().startswith(".") else "domain"
            blocklist.add(scope, value, f"domains[{n}]")
        if isinstance(self.file, ListFile):
            blocklist.extend(self.file.blocklist)
        self._blocklist = blocklist
        return self

    @property
    def blocklist(self) -> Blocklist:
        return self._blocklist


def _read_file(name: str, trust: Trust, blocklist: Blocklist) -> None:
    """Read `name`'s entries into `blocklist`; ValueError naming the file and line."""
    path = trust.resolve(name)
    try:
        text = read_text_file(path, MAX_FILE_BYTES, "blocklist file")
    except UnreadableFile as exc:
        where = trust.base or Path.cwd()
        relative = "" if Path(name).is_absolute() else f" (a relative path is read from {where})"
        raise ValueError(f"{exc}{relative}") from None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            # The line is not quoted in errors: the file may be one the scenario's author
            # should not see (an uploaded scenario naming a secret, if the receiver allows).
            blocklist.add_line(line, f"{path}:{number}", quote=False)


class SenderBlocklist(Policy[SenderBlocklistOptions]):
    """Refuse an envelope sender that the receiver's own lists name, at MAIL.

    Lists (all case-insensitive, all may be combined):

    - `addresses`: whole addresses, `user@example.com`; `<>` lists the null sender.
    - `domains`: `example.com` matches senders at that domain only; `.example.com`
      matches senders at any subdomain of it (`mail.example.com`), not at example.com
      itself: list both to refuse both. This is Postfix access(5) with
      `parent_domain_matches_subdomains` not covering access maps. Non-ASCII domains are
      compared in their A-label form.
    - `patterns`: shell globs over the whole address (`*@*.example.com`, `spam*@*`).
    - `regex`: Python regular expressions, searched for in the address as sent (so
      anchor them, as in Postfix regexp tables); a bad one fails at load, named.
    - `file`: a text file read at load (a relative path from the scenario file's
      directory; a missing file, or one that is not a regular file of at most 4 MiB of
      UTF-8, fails at load, named, its content never quoted), one entry a line, blank
      lines and lines starting with `#` ignored. A line `/.../` is a regex; `<>` the null
      sender; one holding `*`, `?` or `[` a glob; one holding `@` an address; anything
      else a domain (`.`-prefixed: its subdomains). A scenario uploaded through the HTTP
      API may name no file unless the receiver allows it (strictmx/receiver/trust.py).

    The null sender matches only an explicit `<>`: no domain, glob or regex ever lists it.

    Default reply: Postfix's for an access-map REJECT (smtpd_check.c),
    `554 5.7.1 <{sender}>: Sender address rejected: Access denied`. The documented
    texts are overrides of SENDER_BLOCKED: seed-59 "550 Rejected mail from address",
    seed-60's two lines "Sender envelope address is locally blacklisted here." / "If you
    think this is wrong get in touch with postmaster.", seed-73 "550 Sender address
    rejected: Blocked", seed-74 "550 Sending address not accepted due to spam filter".
    Replies may use {entry} (the list entry as written) and {origin} (where it is listed:
    `domains[0]`, `blocked.txt:14`). Refusing a sender by local policy is the receiver's
    right under RFC 5321.
    """

    name = "sender_blocklist"
    summary = "Envelope sender on the receiver's own address, domain or pattern list"
    stages = frozenset({Stage.MAIL})
    pure = True  # judged from client, HELO, sender and DNS records alone
    Options = SenderBlocklistOptions
    outcomes: ClassVar[tuple[Outcome, ...]] = (
        Outcome(
            "SENDER_BLOCKED",
            FROM_CATALOGUE,
            "The envelope sender matches an entry of the receiver's lists "
            "(Postfix check_sender_access with REJECT).",
            fields={"entry": TEXT, "origin": TEXT},
        ),
    )

    @classmethod
    def read_reply(cls, outcome: str, text: str) -> dict[str, str]:
        """Its refusals name the sender, in angle brackets or bare."""
        return sender_in(text)

    @classmethod
    def reproduce(cls, req: Request) -> Build:
        """The customer's sender on the block list."""
        return Build(options={"addresses": [req.identity.mail_from or "<>"]})

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        sender = session.mail_from or ""
        entry = self.options.blocklist.match(sender)
        if entry is None:
            return None
        shown = f"<{sender}>" if sender else "the null sender <>"
        return self.verdict(
            "SENDER_BLOCKED",
            stage,
            session,
            ctx,
            f"{shown} is listed by {entry.kind} entry {entry.text!r} ({entry.origin})",
            entry=entry.text,
            origin=entry.origin,
        )
