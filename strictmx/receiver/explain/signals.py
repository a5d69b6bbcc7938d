"""The strongest signals in a reply, as facts: the enhanced status code's registry meaning
(data/enhanced-status-codes.yaml, the IANA registry) and the providers' own codes and links
(data/provider-codes.yaml), each with its source; and the class they say unambiguously.

`read` finds the signals in an extracted reply; `decide` says which class they name, if
any, and why. The rules are facts (a registry meaning, a provider's documented code), not
weights: a code that several classes share (X.7.1, X.7.26 outside Gmail) decides nothing.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from .classes import family_of
from .extract import Extracted


class SignalDataError(ValueError):
    """A bundled signal table that does not load: names the file and the row."""


@dataclass(frozen=True)
class StatusMeaning:
    """What an enhanced status code means by the IANA registry (and by Gmail, for Gmail)."""

    code: str  # as the reply gave it: "5.7.25"
    key: str  # the registry row: "X.7.25", or "X.7.YYY" when only the subject is registered
    summary: str
    description: str
    reference: str
    registered: bool  # False: the detail is not in the registry, only class and subject are
    source: str  # the registry's URL and last-updated date
    gmail: str | None = None  # Gmail's own meaning of the code, when the reply is Gmail's
    gmail_source: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "registry": self.key,
            "summary": self.summary,
            "description": self.description,
            "reference": self.reference,
            "registered": self.registered,
            "source": self.source,
            "gmail_meaning": self.gmail,
            "gmail_source": self.gmail_source,
        }

    def render(self) -> str:
        line = f"enhanced status {self.code}: {self.key} {self.summary} ({self.reference})"
        if self.gmail:
            line += f"; Gmail uses it for: {self.gmail}"
        return line


@dataclass(frozen=True)
class ProviderCode:
    """One row of the providers' table."""

    id: str
    provider: str
    code: str
    meaning: str
    cls: str | None  # a strictmx family or a not-emulated class; None: names no class
    source: str
    pattern: re.Pattern[str] | None
    #: Enhanced status code ranges the reply's code must fall in: (class, subject, lo, hi).
    status: tuple[tuple[int, int, int, int], ...] = ()

    def seen_in(self, text: str, dsn: str | None) -> str | None:
        """The text of this code in the reply, or None when the reply does not carry it."""
        if self.pattern is not None:
            found = self.pattern.search(text)
            return found.group(0) if found else None
        parts = _status_parts(dsn)
        if parts is None:
            return None
        klass, subject, detail = parts
        for k, s, lo, hi in self.status:
            if (klass, subject) == (k, s) and lo <= detail <= hi:
                return dsn
        return None


@dataclass(frozen=True)
class ProviderHit:
    row: ProviderCode
    seen: str  # the code or link as the reply has it

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.row.provider,
            "code": self.row.code,
            "seen": self.seen,
            "meaning": self.row.meaning,
            "class": self.row.cls,
            "source": self.row.source,
        }

    def render(self) -> str:
        says = f" -> {self.row.cls}" if self.row.cls else ""
        return (
            f"{self.row.provider} {self.row.code} ({self.seen!r}): {self.row.meaning}{says} "
            f"[source: {self.row.source}]"
        )


@dataclass(frozen=True)
class Signals:
    status: StatusMeaning | None
    providers: tuple[ProviderHit, ...]
    gmail: bool  # the reply is Gmail's (its tag, its help links or its name)

    def to_json(self) -> dict[str, Any]:
        return {
            "enhanced_status": self.status.to_json() if self.status else None,
            "provider_codes": [hit.to_json() for hit in self.providers],
        }


@dataclass(frozen=True)
class Fact:
    """A class the signals name unambiguously, and why."""

    cls: str  # a strictmx family or a not-emulated class name
    because: str
    source: str
    detail: str | None = None  # the status code's subject.detail when the code decided

    @property
    def family(self) -> str:
        return family_of(self.cls)

    def to_json(self) -> dict[str, Any]:
        return {"class": self.cls, "because": self.because, "source": self.source}


# -- the tables --------------------------------------------------------------------------

_DATA = "strictmx.receiver"


#: libyaml's loader when PyYAML has it: the two tables load in a few milliseconds instead of
#: tens, which counts for a command that answers one bounce and exits.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load(name: str) -> Any:
    path = resources.files(_DATA) / "data" / name
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
    except (OSError, yaml.YAMLError) as exc:
        raise SignalDataError(f"{name}: cannot load: {exc}") from None


@dataclass(frozen=True)
class Registry:
    url: str
    updated: str
    classes: dict[str, dict[str, str]]
    subjects: dict[str, dict[str, str]]
    codes: dict[str, dict[str, str]]
    gmail: dict[str, dict[str, str]]

    @property
    def source(self) -> str:
        return f"IANA SMTP Enhanced Status Codes Registry, {self.url} (updated {self.updated})"


@functools.cache
def registry() -> Registry:
    name = "enhanced-status-codes.yaml"
    data = _load(name)
    try:
        head = data["registry"]
        reg = Registry(
            url=str(head["url"]),
            updated=str(head["last_updated"]),
            classes={str(k): v for k, v in data["classes"].items()},
            subjects={str(k): v for k, v in data["subjects"].items()},
            codes={str(k): v for k, v in data["codes"].items()},
            gmail={str(k): v for k, v in data.get("gmail", {}).items()},
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise SignalDataError(f"{name}: missing or malformed {exc}") from None
    for key, row in reg.codes.items():
        if not re.fullmatch(r"X\.\d{1,3}\.\d{1,3}", key) or not row.get("reference"):
            raise SignalDataError(f"{name}: codes.{key}: needs an X.s.d key and a reference")
    return reg


@functools.cache
def provider_codes() -> tuple[ProviderCode, ...]:
    name = "provider-codes.yaml"
    return parse_provider_codes(_load(name), name)


def parse_provider_codes(data: Any, name: str) -> tuple[ProviderCode, ...]:
    """The providers' table from its YAML data; SignalDataError names the row at fault."""
    if not isinstance(data, dict) or not isinstance(data.get("codes"), list):
        raise SignalDataError(f"{name}: needs a `codes` list")
    rows: list[ProviderCode] = []
    for n, row in enumerate(data["codes"]):
        where = f"{name}: codes[{n}] ({row.get('id', '?') if isinstance(row, dict) else '?'})"
        try:
            if not row["source"]:
                raise KeyError("source")
            pattern = re.compile(row["pattern"], re.I) if row.get("pattern") else None
            status = tuple(_status_range(s) for s in row.get("status", []))
            if pattern is None and not status:
                raise KeyError("pattern or status")
            rows.append(
                ProviderCode(
                    id=str(row["id"]),
                    provider=str(row["provider"]),
                    code=str(row["code"]),
                    meaning=str(row["meaning"]),
                    cls=row.get("class"),
                    source=str(row["source"]),
                    pattern=pattern,
                    status=status,
                )
            )
        except (KeyError, TypeError, ValueError, re.error) as exc:
            raise SignalDataError(f"{where}: missing or malformed {exc}") from None
    return tuple(rows)


def _status_parts(dsn: str | None) -> tuple[int, int, int] | None:
    if not dsn:
        return None
    found = re.fullmatch(r"([245])\.(\d{1,3})\.(\d{1,3})", dsn.strip())
    if found is None:
        return None
    return int(found.group(1)), int(found.group(2)), int(found.group(3))


def _status_range(text: str) -> tuple[int, int, int, int]:
    low, _, high = str(text).partition("-")
    a, b = _status_parts(low), _status_parts(high or low)
    if a is None or b is None or a[:2] != b[:2]:
        raise ValueError(f"status range {text!r}")
    return a[0], a[1], a[2], b[2]


# -- reading the signals -------------------------------------------------------------------

#: What says a reply is Gmail's: its session tag, its help links, its name.
_GMAIL = re.compile(r"\bgsmtp\b|support\.google\.com|\bGmail\b|\bgoogle\.com\b", re.I)


def is_gmail(found: Extracted) -> bool:
    return bool(_GMAIL.search(found.text) or (found.remote and _GMAIL.search(found.remote)))


def status_meaning(dsn: str | None, gmail: bool = False) -> StatusMeaning | None:
    """The registry's meaning of an enhanced status code (and Gmail's, for Gmail)."""
    parts = _status_parts(dsn)
    if parts is None or dsn is None:
        return None
    reg = registry()
    klass, subject, detail = parts
    key = f"X.{subject}.{detail}"
    row = reg.codes.get(key)
    gm = reg.gmail.get(key) if gmail else None
    gmail_meaning = gm.get("meaning") if gm else None
    gmail_source = gm.get("source") if gm else None
    if row is not None:
        return StatusMeaning(
            dsn,
            key,
            row["summary"],
            row.get("description", ""),
            row["reference"],
            True,
            reg.source,
            gmail_meaning,
            gmail_source,
        )
    sub = reg.subjects.get(str(subject))
    cls = reg.classes.get(str(klass), {})
    if sub is None:
        return StatusMeaning(
            dsn,
            f"{klass}.XXX.YYY",
            cls.get("summary", "unregistered"),
            "The subject is not in the registry.",
            cls.get("reference", "RFC 3463"),
            False,
            reg.source,
        )
    return StatusMeaning(
        dsn,
        f"X.{subject}.YYY",
        f"{sub['summary']} ({cls.get('summary', '')}; detail {detail} not registered)",
        "Only the class and subject are registered; the detail is the receiver's own.",
        sub.get("reference", "RFC 3463"),
        False,
        reg.source,
        gmail_meaning,
        gmail_source,
    )


def read(found: Extracted) -> Signals:
    gmail = is_gmail(found)
    hits: list[ProviderHit] = []
    for row in provider_codes():
        seen = row.seen_in(found.text, found.dsn)
        if seen is not None:
            hits.append(ProviderHit(row, seen))
    return Signals(status_meaning(found.dsn, gmail), tuple(hits), gmail)


# -- deciding the class ------------------------------------------------------------------------

#: Registry rows whose meaning is one class by itself. Keyed by "subject.detail"; the value
#: is the class and whether only a permanent (5) code says it: RFC 3463 calls X.1.1, X.1.2,
#: X.1.6 "only useful for permanent failures", and a 4.1.1 is Postfix's recipient address
#: verification still in progress, not an unknown user.
BY_STATUS: dict[str, tuple[str, bool]] = {
    "1.1": ("recipient_unknown", True),  # Bad destination mailbox address
    "1.6": ("recipient_unknown", True),  # Destination mailbox has moved, no forwarding
    "1.10": ("recipient_unknown", False),  # Recipient address has null MX
    "1.8": ("sender_domain", False),  # Bad sender's system address
    "2.2": ("mailbox_full", False),  # Mailbox full
    "2.3": ("message_too_big", False),  # Message length exceeds administrative limit
    "3.4": ("message_too_big", False),  # Message too big for system
    "4.1": ("network", False),  # No answer from host
    "4.2": ("network", False),  # Bad connection
    "4.4": ("network", False),  # Unable to route
    "4.7": ("expired", False),  # Delivery time expired
    "7.8": ("auth_required", False),  # Authentication credentials invalid
    "7.9": ("auth_required", False),  # Authentication mechanism is too weak
    "7.10": ("auth_required", False),  # Encryption needed (for the AUTH mechanism)
    "7.11": ("auth_required", False),  # Encryption required for requested auth mechanism
    "7.20": ("dkim", False),  # No passing DKIM signature found
    "7.21": ("dkim", False),  # No acceptable DKIM signature found
    "7.22": ("dkim", False),  # No valid author-matched DKIM signature found
    "7.23": ("spf", False),  # SPF validation failed
    "7.24": ("spf", False),  # SPF validation error
    "7.25": ("reverse_dns", False),  # Reverse DNS validation failed
    "7.27": ("sender_domain", False),  # Sender address has null MX
    "7.28": ("rate_limited", False),  # Mail flood detected
    "7.29": ("arc", False),  # ARC validation failure
}

#: Gmail's own meanings of the codes it reuses (receivers.md 7.1, 8.2): these win for Gmail.
#: None: Gmail's meaning is more than one class (X.7.26: no SPF/DKIM pass, or DMARC).
BY_GMAIL_STATUS: dict[str, str | None] = {
    "7.26": None,
    "7.27": "bulk_sender",  # bulk sender, SPF not passing
    "7.28": "rate_limited",  # unusual rate of mail
    "7.29": "bulk_sender",  # bulk sender, no TLS
    "7.30": "bulk_sender",  # bulk sender, DKIM not passing
}


def decide(signals: Signals) -> Fact | None:
    """The class the signals name unambiguously: a provider's code first (it is the more
    specific), then the enhanced status code's registry (or Gmail's) meaning."""
    classes = {hit.row.cls for hit in signals.providers if hit.row.cls}
    if len(classes) == 1:
        hit = next(h for h in signals.providers if h.row.cls)
        return Fact(
            str(hit.row.cls),
            f"{hit.row.provider} code {hit.row.code} ({hit.seen}): {hit.row.meaning}",
            hit.row.source,
        )
    status = signals.status
    if status is None or not status.registered:
        return None
    detail = status.code.split(".", 1)[1]
    if signals.gmail and detail in BY_GMAIL_STATUS:
        gmail_class = BY_GMAIL_STATUS[detail]
        if gmail_class is None:
            return None
        return Fact(
            gmail_class,
            f"Gmail's {status.code}: {status.gmail}",
            status.gmail_source or status.source,
            detail,
        )
    rule = BY_STATUS.get(detail)
    if rule is None:
        return None
    cls, permanent_only = rule
    if permanent_only and not status.code.startswith("5"):
        return None
    return Fact(
        cls,
        f"enhanced status {status.code}: {status.summary} ({status.reference})",
        status.source,
        detail,
    )
