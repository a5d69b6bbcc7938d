"""Scenario `expect:` cases: who connects, what they send, and what a strict receiver answers.

A case is played over real SMTP (Python's smtplib) against a running receiver, and the
observation is compared with the expectation using both the wire and the journal:

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
```
"""

from __future__ import annotations

import email.utils
import re
import smtplib
import socket
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from .scenario import Scenario

Command = Literal[
    "connect", "helo", "mail", "rcpt", "data", "eod", "rset", "noop", "vrfy", "unknown"
]
_VERB_STAGE: dict[str, Command] = {
    "HELO": "helo",
    "EHLO": "helo",
    "MAIL": "mail",
    "RCPT": "rcpt",
    "DATA": "data",
    "RSET": "rset",
    "NOOP": "noop",
    "VRFY": "vrfy",
}


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
    helo: str = Field("mail.example.net", description="The HELO/EHLO argument.")
    ehlo: bool = Field(True, description="Greet with EHLO (else HELO).")
    mail_from: str = Field("alice@example.net", description="Envelope sender ('' for <>).")
    rcpt: list[str] = Field(default_factory=lambda: ["bob@example.org"], min_length=1)
    message: str | None = Field(
        None, description="The message (headers, blank line, body); a compliant one if unset."
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
        import ipaddress

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


@dataclass
class Observation:
    """What the client saw: accepted, or the first refusal with its wire lines."""

    accepted: bool
    at: Command | None = None
    code: int | None = None
    lines: list[str] = field(default_factory=list)
    error: str | None = None  # the session could not be played (connection refused, ...)

    def describe(self) -> str:
        if self.error:
            return f"error: {self.error}"
        if self.accepted:
            return "accepted"
        return f"refused at {self.at}: " + " | ".join(self.lines)


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


def _wire(code: int, text: bytes | str) -> list[str]:
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    parts = raw.split("\n") if raw else [""]
    lines = [f"{code}-{p}" for p in parts[:-1]]
    lines.append(f"{code} {parts[-1]}".rstrip() if parts[-1] == "" else f"{code} {parts[-1]}")
    return lines


def play(case: Case, host: str, port: int, now: datetime, timeout: float = 30.0) -> Observation:
    """Play one case over SMTP and report the first refusal (or acceptance)."""

    def refused(at: Command, code: int, text: bytes | str) -> Observation:
        return Observation(False, at, code, _wire(code, text))

    client = smtplib.SMTP(timeout=timeout)
    try:
        try:
            client.sock = socket.create_connection((host, port), timeout, (case.client, 0))
            client.file = None
            code, text = client.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            return Observation(False, error=f"cannot connect from {case.client}: {exc}")
        if code != 220:
            return refused("connect", code, text)
        if case.script is not None:
            return _play_script(client, case.script)
        code, text = client.ehlo(case.helo) if case.ehlo else client.helo(case.helo)
        if code != 250:
            return refused("helo", code, text)
        sender = case.mail_from
        code, text = client.mail(sender if sender else "<>")
        if code != 250:
            return refused("mail", code, text)
        for rcpt in case.rcpt:
            code, text = client.rcpt(rcpt)
            if code not in (250, 251):
                return refused("rcpt", code, text)
        code, text = client.docmd("DATA")
        if code != 354:
            return refused("data", code, text)
        body = case.message if case.message is not None else default_message(case, now)
        data = re.sub(rb"\r?\n", b"\r\n", body.encode("utf-8"))
        data = re.sub(rb"(?m)^\.", b"..", data)  # dot-stuffing, RFC 5321 §4.5.2
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        client.send(data + b".\r\n")
        code, text = client.getreply()
        if code != 250:
            return refused("eod", code, text)
        return Observation(True)
    except smtplib.SMTPServerDisconnected as exc:
        return Observation(False, error=f"the server closed the connection: {exc}")
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()


def _play_script(client: smtplib.SMTP, script: list[str]) -> Observation:
    code, text, verb = 0, b"", ""
    for command in script:
        verb = command.split(" ", 1)[0].upper()
        code, text = client.docmd(command)
    at = _VERB_STAGE.get(verb, "unknown")
    if code < 400:
        return Observation(True)
    return Observation(False, at, code, _wire(code, text))


@dataclass
class Check:
    case: Case
    observed: Observation
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems


def compare(case: Case, observed: Observation, sent: dict[str, Any] | None) -> Check:
    """Compare an observation (and the journal's sent verdict, if any) with the case."""
    problems: list[str] = []
    if observed.error:
        problems.append(observed.error)
    elif case.result == "accepted":
        if not observed.accepted:
            problems.append(f"expected accepted, was {observed.describe()}")
    else:
        want = case.result.refused
        if observed.accepted:
            problems.append("expected a refusal, the message was accepted")
        else:
            if want.at and want.at != observed.at:
                problems.append(f"refused at {observed.at}, expected at {want.at}")
            if want.code and want.code != observed.code:
                problems.append(f"code {observed.code}, expected {want.code}")
            wire = want.wire()
            if wire is not None and wire != observed.lines:
                problems.append(
                    "reply differs:\n  expected: "
                    + "\n            ".join(wire)
                    + "\n  received: "
                    + "\n            ".join(observed.lines)
                )
            for key in ("policy", "outcome", "stage"):
                expected = getattr(want, key)
                got = (sent or {}).get(key)
                if expected is not None and expected != got:
                    problems.append(f"{key} {got!r}, expected {expected!r}")
    return Check(case, observed, problems)


def run(scenario: Scenario) -> list[Check]:
    """Serve `scenario` in-process on a free loopback port and play each of its cases."""
    from .server import Receiver, ReceiverThread, ServerOptions

    checks: list[Check] = []
    receiver = Receiver(scenario, ServerOptions(host="127.0.0.1", port=0, db=":memory:"))
    with ReceiverThread(receiver) as running:
        for case in scenario.expect:
            observed = play(case, "127.0.0.1", running.port, receiver.world.clock.now())
            running.call(receiver.settle())
            newest = running.call(receiver.journal.sessions(limit=1))
            verdicts = newest[0]["verdicts"] if newest else []
            sent = next((v for v in verdicts if v.get("replied_at") == observed.at), None)
            checks.append(compare(case, observed, sent))
    return checks
