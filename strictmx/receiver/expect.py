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
  - name: a sender whose public address has a PTR, with a message from a file
    address: 198.51.100.7             # who the session is seen as (a dedicated loopback
    ptr: mail.example.net             # source is mapped to it), and its PTR name(s)
    message_file: messages/bad-date.eml   # relative to the scenario file
    result:
      refused: {policy: headers, outcome: DATE_INVALID, at: eod}
```
"""

from __future__ import annotations

import dataclasses
import email.utils
import ipaddress
import re
import smtplib
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from .trust import Reach, UnreadableFile, reaches, read_regular_file
from .world.clients import ClientSpec
from .world.dns import DnsName, IPText, one_or_many

if TYPE_CHECKING:
    from .scenario import Scenario
    from .server import Receiver

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


def _wire(code: int, text: bytes | str) -> list[str]:
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    parts = raw.split("\n") if raw else [""]
    lines = [f"{code}-{p}" for p in parts[:-1]]
    lines.append(f"{code} {parts[-1]}".rstrip() if parts[-1] == "" else f"{code} {parts[-1]}")
    return lines


def play(
    case: Case,
    host: str,
    port: int,
    now: datetime,
    timeout: float = 30.0,
    *,
    source: str | None = None,
    message: bytes | None = None,
) -> Observation:
    """Play one case over SMTP and report the first refusal (or acceptance).

    `source` overrides the case's loopback address; `message` is the message as
    `message_bytes` gives it (when None, a message file is read from the working directory).
    """
    source = source or case.client

    def refused(at: Command, code: int, text: bytes | str) -> Observation:
        return Observation(False, at, code, _wire(code, text))

    client = smtplib.SMTP(timeout=timeout)
    try:
        try:
            client.sock = socket.create_connection((host, port), timeout, (source, 0))
            client.file = None
            code, text = client.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            return Observation(False, error=f"cannot connect from {source}: {exc}")
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
        if message is None:
            message = message_bytes(case, now, load_message(case, Path.cwd()))
        data = message
        data = re.sub(rb"(?m)^\.", b"..", data)  # dot-stuffing, RFC 5321 §4.5.2
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
    #: The journal's verdict whose reply the refusal carried, if a policy sent one.
    sent: dict[str, Any] | None = None
    #: The session as journaled, with its transcript (None if none was recorded).
    session: dict[str, Any] | None = None
    seconds: float = 0.0

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
    return Check(case, observed, problems, sent)


#: Cases that give `address` connect from a loopback address of their own in this range.
CASE_SOURCES = ipaddress.ip_network("127.88.0.0/16")


def case_source(index: int) -> str:
    return str(CASE_SOURCES.network_address + index + 1)


def scenario_for(scenario: Scenario, case: Case, source: str) -> Scenario:
    """`scenario` with the case's client added to its world: `source` seen as the case's
    address, and the case's PTR names (hermetic and overlay worlds) for that address."""
    if case.address is None:
        return scenario
    world = scenario.world
    clients = {**world.clients, source: ClientSpec(address=case.address)}
    dns = world.dns
    if case.ptr is not None:
        dns = dns.model_copy(update={"ptr": {**dns.ptr, case.address: case.ptr}})
    world = world.model_copy(update={"clients": clients, "dns": dns})
    return dataclasses.replace(scenario, world=world)


def run(scenario: Scenario, base: Path | None = None) -> list[Check]:
    """Serve `scenario` in-process on a free loopback port and play each of its cases.

    Message files are read relative to `base` (default: the scenario file's directory)
    before anything is served; one that cannot be read raises CaseError.
    """
    from .server import Receiver, ReceiverThread, ServerOptions

    if base is None:
        base = Path(scenario.source).parent
    loaded = [load_message(case, base) for case in scenario.expect]
    checks: list[Check] = []
    receiver = Receiver(scenario, ServerOptions(host="127.0.0.1", port=0, db=":memory:"))
    seen: set[str] = set()
    with ReceiverThread(receiver) as running:
        for index, case in enumerate(scenario.expect):
            source = case_source(index) if case.address is not None else case.client
            wanted = scenario_for(scenario, case, source)
            if wanted is not receiver.scenario:
                running.call(_use(receiver, wanted))
            message = message_bytes(case, receiver.world.clock.now(), loaded[index])
            started = time.monotonic()
            observed = play(
                case,
                "127.0.0.1",
                running.port,
                receiver.world.clock.now(),
                source=source,
                message=message,
            )
            seconds = time.monotonic() - started
            running.call(receiver.settle())
            newest = running.call(receiver.journal.sessions(limit=1))
            session = None
            if newest and newest[0]["id"] not in seen:
                seen.add(newest[0]["id"])
                session = running.call(receiver.journal.session(newest[0]["id"]))
            verdicts = session["verdicts"] if session else []
            # The last: earlier commands of the case may have been refused at that stage
            # too (unknown users before the bad-recipient limit), each its own verdict.
            sent = next((v for v in reversed(verdicts) if v.get("replied_at") == observed.at), None)
            check = compare(case, observed, sent)
            check.session, check.seconds = session, seconds
            checks.append(check)
    return checks


async def _use(receiver: Receiver, scenario: Scenario) -> None:
    receiver.use_scenario(scenario)  # on the receiver's loop: sessions read it there
