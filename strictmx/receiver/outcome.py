"""A policy's outcomes and what their replies' `{placeholders}` hold, typed.

An `Outcome` is one way a policy can object: its default reply, the stage that decides it,
whether RFC 5321 allows the refusal, and its fields. This module sits below the policies,
the catalogue, explain and reproduce, which all read outcomes and import nothing above it.

Each outcome of a policy declares the fields its reply may name (`Outcome.fields`), each
with one kind from the closed set below; every reply may also name the session's own
fields (`BASE`). A kind knows how its value looks in a reply's text (what `reproduce`
reads the customer's identifiers with) and gives a sample value (what `explain`
normalises a template with, so it compares like the same reply with real values). So
neither explain nor reproduce keeps a table of placeholder names of its own, and a
third-party policy's fields are read the same way as the built-ins'.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from .verdict import Action, Reply, ReplyError, Stage, placeholders

_HOSTLIKE = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"


@dataclass(frozen=True)
class FieldKind:
    """One kind of placeholder value: how it reads in a reply, and a sample of it."""

    name: str
    #: A regular expression for the value inside a reply's text (no groups of its own).
    pattern: str
    #: A value of this kind; empty for free text, which says nothing about the reply.
    sample: str
    doc: str

    def __str__(self) -> str:
        return self.name


IP = FieldKind("ip", r"[0-9A-Fa-f:.]+", "192.0.2.1", "an IPv4 or IPv6 address")
HOST = FieldKind("host", _HOSTLIKE, "host.example.net", "a host or domain name")
ZONE = FieldKind("zone", _HOSTLIKE, "host.example.net", "a DNS zone (a DNSBL, an RHSBL)")
ADDRESS = FieldKind("address", r"[^\s<>]*", "user@example.net", "a mail address, maybe empty")
HELO = FieldKind("helo", r"[^\s<>]+", "host.example.net", "a HELO/EHLO argument as sent")
VERB = FieldKind("verb", r"[HE][EH]LO", "EHLO", "HELO or EHLO")
NUMBER = FieldKind("number", r"\d+", "10", "a count, limit, size or age")
TOKEN = FieldKind("token", r"\S+", "a1b2c3d4e5f6", "an identifier without spaces")
RESULT = FieldKind("result", r"[\w-]+", "fail", "a check's result keyword (pass, fail, ...)")
TEXT = FieldKind("text", r".*?", "", "free text (a TXT record, a remote server's reply)")

#: The closed set of kinds.
KINDS: tuple[FieldKind, ...] = (IP, HOST, ZONE, ADDRESS, HELO, VERB, NUMBER, TOKEN, RESULT, TEXT)

Fields = Mapping[str, FieldKind]

#: The fields every reply may name, from the session (see `session.Session.fields`).
BASE: Fields = MappingProxyType(
    {
        "ip": IP,
        "client_name": HOST,
        "helo": HELO,
        "verb": VERB,
        "sender": ADDRESS,
        "rcpt": ADDRESS,
        "hostname": HOST,
        "myhostname": HOST,
        "tag": TOKEN,
        "session": TOKEN,
    }
)


def check(owner: str, fields: Mapping[str, object] | Sequence[str]) -> Fields:
    """`fields` as declared by `owner`, refused unless every kind is one of `KINDS`.

    Bare names (a tuple, as policies wrote before fields had kinds) are free text: they
    still validate replies, but explain and reproduce cannot read or sample them."""
    named = dict.fromkeys(fields, TEXT) if not isinstance(fields, Mapping) else dict(fields)
    for name, kind in named.items():
        if not (isinstance(name, str) and name.isidentifier()):
            raise TypeError(f"{owner}: field {name!r} is not a placeholder name")
        if kind not in KINDS:
            raise TypeError(
                f"{owner}: field {name!r} has kind {kind!r}; use one of strictmx's field kinds ("
                + ", ".join(k.name.upper() for k in KINDS)
                + ")"
            )
    return MappingProxyType(named)  # type: ignore[arg-type]


def check_placeholders(reply: Reply, fields: Iterable[str]) -> None:
    """Raise ReplyError naming the first `{placeholder}` of `reply` that is not in `fields`."""
    allowed = set(fields)
    unknown = placeholders(reply) - allowed
    if unknown:
        raise ReplyError(
            f"unknown placeholder {{{sorted(unknown)[0]}}}; this reply may use: "
            + ", ".join("{" + f + "}" for f in sorted(allowed))
        )


#: An outcome whose default reply is the reply catalogue's entry marked `default: true`
#: for it (strictmx/receiver/data/catalogue.yaml): the built-in policies keep no text of their own.
FROM_CATALOGUE = "<from the reply catalogue>"


@dataclass(frozen=True)
class Outcome:
    """One way a policy can object, with its default reply.

    A third-party policy writes its reply here; a built-in one writes FROM_CATALOGUE and
    its text comes from the reply catalogue when the class is defined.
    """

    id: str
    reply: str | tuple[str, ...]
    doc: str
    action: Action = Action.REJECT
    #: RFC 5321 permits refusing mail for this reason (§4.1.4 forbids it for HELO/DNS mismatch).
    rfc_allows: bool = True
    #: The `{placeholders}` this outcome fills in besides the session's (`fields.BASE`),
    #: each with its kind, so explain and reproduce can read and sample them. The class
    #: holding the outcome checks them; bare names are free text (see `check`).
    fields: Fields | Sequence[str] = field(default_factory=dict, hash=False)
    #: The stage that decides it; None: any of the policy's stages (the earliest first).
    stage: Stage | None = None
    #: Other stages a receiver may decide it at, the policy listed there (reverse DNS at
    #: MAIL or after the data, as Stalwart and Gmail do; a callout at RCPT).
    also_at: frozenset[Stage] = frozenset()

    def default_reply(self) -> Reply:
        return Reply.parse(self.reply)

    @property
    def decided_at(self) -> Stage:
        """The stage that decides it (set on every outcome of a defined Policy class)."""
        if self.stage is None:
            raise LookupError(f"outcome {self.id} belongs to no Policy class yet")
        return self.stage

    @property
    def all_fields(self) -> Fields:
        """Every placeholder its reply may name: the session's and its own."""
        own = self.fields if isinstance(self.fields, Mapping) else dict.fromkeys(self.fields, TEXT)
        return {**BASE, **own}
