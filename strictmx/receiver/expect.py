"""Scenario `expect:` cases: who connects, what they send, and what a strict receiver answers.

This is the case model, validated when the scenario loads, and the message a case sends.
Playing the cases against a receiver over real SMTP is `strictmx run`'s
(strictmx/receiver/runner.py), which compares what the client saw, and what the journal
recorded, with the expectation:

```yaml
expect:
  - name: a client with no PTR is refused at RCPT
    seed: seed-67                     # the documented reply it reproduces (optional)
    client: 127.0.0.11                # loopback source address; world.clients maps it
    helo: mail.example.net
    mail_from: alice@example.net
    rcpt: [bob@example.org]
    result:
      refused:
        policy: reverse_dns
        at: rcpt                      # the command whose reply carried the refusal
        code: 550
        reply: "550 Not sent - no reverse lookup"
  - name: the compliant path
    result: accepted
  - name: a sender whose public address has a PTR, with a message from a file
    address: 198.51.100.7             # who the session is seen as (a dedicated loopback
    ptr: mail.example.net             # source is mapped to it), and its PTR name(s)
    message_file: messages/bad-date.eml   # relative to the scenario file
    result:
      refused: {policy: headers, outcome: DATE_INVALID, at: eod}
```
"""

from __future__ import annotations

import email.utils
import ipaddress
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from .trust import Reach, UnreadableFile, reaches, read_regular_file
from .world.config_types import DnsName, IPText, one_or_many

Command = Literal[
    "connect", "helo", "mail", "rcpt", "data", "eod", "rset", "noop", "vrfy", "unknown"
]


class Refusal(BaseModel):
    """What the refusal must look like; fields left out are not checked."""

    model_config = ConfigDict(extra="forbid")

    policy: str | None = Field(None, description="The policy whose verdict was sent.")
    outcome: str | None = Field(None, description="Its outcome id.")
    stage: str | None = Field(None, description="The stage that decided it.")
    at: Command | None = Field(None, description="The command whose reply carried it.")
    code: int | None = Field(None, ge=400, le=599, description="The reply code.")
    reply: str | list[str] | None = Field(
        None, description="The exact reply as sent: one line, or a list of wire lines."
    )

    def wire(self) -> list[str] | None:
        if self.reply is None:
            return None
        return self.reply.splitlines() if isinstance(self.reply, str) else list(self.reply)


class Expected(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refused: Refusal


class Case(BaseModel):
    """One session to play and the result a strict receiver must give."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="What this case shows.")
    seed: str | None = Field(None, description="Id of the documented reply it reproduces.")
    client: str = Field("127.0.0.1", description="Loopback address the session comes from.")
    address: IPText | None = Field(
        None,
        description="The public address the session is seen as: the runner connects from a "
        "loopback address of its own and maps it to this one (instead of `client`).",
    )
    ptr: Annotated[list[DnsName], BeforeValidator(one_or_many)] | None = Field(
        None,
        description="PTR name(s) of `address` for this case, replacing the world's; unset: "
        "the world's DNS decides.",
    )
    helo: str = Field("mail.example.net", description="The HELO/EHLO argument.")
    ehlo: bool = Field(True, description="Greet with EHLO (else HELO).")
    mail_from: str = Field("alice@example.net", description="Envelope sender ('' for <>).")
    rcpt: list[str] = Field(default_factory=lambda: ["bob@example.org"], min_length=1)
    message: str | None = Field(
        None, description="The message (headers, blank line, body); a compliant one if unset."
    )
    message_file: Annotated[str, reaches(Reach.FILE)] | None = Field(
        None, description="A file holding the message, relative to the scenario file."
    )
    starttls: bool | Literal["TLSv1.2", "TLSv1.3"] = Field(
        False,
        description="Start TLS after EHLO (the runner's receiver then offers STARTTLS with a "
        "generated certificate); a protocol name: the client offers nothing newer.",
    )
    script: list[str] | None = Field(
        None,
        description="Raw commands to send instead of the usual session, in order; the result "
        "is the reply to the last one (for RSET floods, HELO changes, bad-recipient runs).",
    )
    result: Literal["accepted"] | Expected = Field(description="accepted, or {refused: ...}.")

    @field_validator("client")
    @classmethod
    def _loopback(cls, value: str) -> str:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"not an IP address: {value!r}") from None
        if not address.is_loopback:
            raise ValueError(
                f"{value} is not a loopback address; cases connect from 127.0.0.0/8 or ::1 "
                "and world.clients says who that address is"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Case:
        if self.message is not None and self.message_file is not None:
            raise ValueError("give message or message_file, not both")
        if self.ptr is not None and self.address is None:
            raise ValueError("ptr names the PTR of `address`; give the address too")
        if self.address is not None and "client" in self.model_fields_set:
            raise ValueError(
                "give client (a loopback address world.clients maps) or address (the public "
                "address itself), not both"
            )
        return self


class CaseError(Exception):
    """A case that cannot be played as written (its message file cannot be read)."""


def default_message(case: Case, now: datetime) -> str:
    return (
        f"From: <{case.mail_from or 'mailer-daemon@example.net'}>\r\n"
        f"To: <{case.rcpt[0]}>\r\n"
        f"Subject: {case.name}\r\n"
        f"Date: {email.utils.format_datetime(now)}\r\n"
        f"Message-ID: {email.utils.make_msgid(domain='example.net')}\r\n"
        "\r\n"
        "A message from a strictmx expectation.\r\n"
    )


#: The largest message file a case sends (a message larger than this is no test message).
MAX_MESSAGE_FILE = 64 * 1024 * 1024


def load_message(case: Case, base: Path) -> bytes | None:
    """The bytes of the case's message file (relative to `base`), None if it names none."""
    if case.message_file is None:
        return None
    path = base / case.message_file
    try:
        # Regular files only, bounded: a FIFO or a device named here must not hang `run`.
        return read_regular_file(path, MAX_MESSAGE_FILE)
    except UnreadableFile as exc:
        raise CaseError(f"case {case.name!r}: cannot read message_file: {exc}") from None


def message_bytes(case: Case, now: datetime, loaded: bytes | None = None) -> bytes:
    """What the case sends after DATA, lines ending in CRLF, not yet dot-stuffed.

    `loaded` is the message file's content. Files are normalised like inline text: an .eml
    saved on Unix has LF line ends, which an MTA turns into CRLF on the wire.
    """
    if loaded is not None:
        return as_sent(loaded)
    text = case.message if case.message is not None else default_message(case, now)
    return as_sent(text.encode("utf-8"))


def as_sent(raw: bytes) -> bytes:
    """A message as an MTA sends it after DATA: every line ending in CRLF."""
    data = re.sub(rb"\r?\n", b"\r\n", raw)
    return data if data.endswith(b"\r\n") else data + b"\r\n"
