"""What a bounce says became of each recipient: the `Recipient` and `Bounce` records every
reader of the package fills in."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...verdict import Stage

#: RFC 3464 §2.3.3 actions that mean the message did not reach the recipient.
FAILED_ACTIONS = frozenset({"failed", "delayed"})
#: Recipients read from one bounce at most: a bounce to more is a mailing list's, and
#: each recipient is explained on its own.
MAX_RECIPIENTS = 1000
#: RFC 3464 §2.3.3 actions that report a delivery (or its hand-off): never a refusal.
DELIVERED_ACTIONS = frozenset({"delivered", "relayed", "expanded"})


@dataclass
class Recipient:
    """What the bounce says became of one recipient."""

    address: str | None
    #: RFC 3464 `Action`: failed, delayed, delivered, relayed, expanded; `complaint` for
    #: an ARF report's subject.
    action: str
    status: str | None = None  # the enhanced status code (RFC 3463)
    #: The receiver's reply (a Diagnostic-Code's text after `smtp;`), or the MTA's words.
    diagnostic: str | None = None
    #: The Diagnostic-Code's type (`smtp`, `x-postfix`, `x-unix`), when one was given.
    diagnostic_type: str | None = None
    remote_mta: str | None = None
    stage: Stage | None = None
    original_recipient: str | None = None
    #: Every per-recipient field as given, lower-cased names (X-Postfix-*, Last-Attempt-Date).
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.action in FAILED_ACTIONS


@dataclass
class Bounce:
    """A bounce e-mail read: its format, the recipients, and the returned message."""

    #: dsn, arf, postfix, exim, sendmail, qmail, exchange, gmail, yahoo
    format: str
    recipients: list[Recipient]
    #: Per-message fields of a DSN (Reporting-MTA, Arrival-Date, X-Postfix-Sender...) or
    #: of an ARF report (Feedback-Type, User-Agent, Source-IP...).
    fields: dict[str, str] = field(default_factory=dict)
    reporting_mta: str | None = None
    #: The envelope sender the bounce went back to (X-Postfix-Sender, else the returned
    #: message's Return-Path or From).
    sender: str | None = None
    #: The returned message's header fields, as context only.
    original_headers: dict[str, str] = field(default_factory=dict)
    #: An ARF report's Feedback-Type (abuse, fraud, virus, other, not-spam).
    feedback_type: str | None = None

    @property
    def failures(self) -> list[Recipient]:
        return [r for r in self.recipients if r.failed]

    @property
    def complaint(self) -> bool:
        return self.format == "arf"
