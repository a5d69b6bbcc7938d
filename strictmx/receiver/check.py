"""`strictmx check`: one envelope and message against a scenario, offline, in warn_only.

No SMTP client and no listening socket: the conversation `serve` runs goes stage by
stage (CONNECT, HELO, MAIL, each RCPT, DATA, EOD) for a client built from the arguments,
with the scenario's world, so DNS, the clock and callouts answer as they would for
`strictmx serve`.
warn_only makes every policy run and every objection count: one run lists everything a
strict receiver would refuse, each with the reply it would send, the stage that reply
would answer, and the fix.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import junit
from . import scenario as scenarios
from .conversation import Conversation
from .expect import as_sent
from .fixes import fix_for
from .persona import Persona
from .scenario import Scenario, ScenarioError
from .session import Client
from .verdict import Stage, Verdict

EXIT_CLEAN, EXIT_OBJECTED, EXIT_BAD_INPUT = 0, 1, 2


class BadInput(Exception):
    """Arguments that cannot be checked: one line on stderr, exit 2."""


#: The protocol names `ssl.SSLSocket.version()` reports, as `--tls` takes them.
TLS_VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")


@dataclass
class Envelope:
    """What the client says: who it is, its greeting, the envelope and the message."""

    client_ip: str
    helo: str
    mail_from: str
    rcpts: list[str]
    #: The message as sent after DATA (lines ending in CRLF); None: EOD is not checked.
    message: bytes | None = None
    message_name: str | None = None
    smtputf8: bool = False
    #: The TLS version the session used after STARTTLS ("TLSv1.3"); None: clear text.
    tls: str | None = None


@dataclass
class Objection:
    verdict: Verdict
    #: The reply's wire lines, as the scenario's persona sends them.
    reply: list[str]
    #: The stage whose reply would carry it when the receiver refuses (delay_reject).
    replied_at: Stage
    fix: str

    def as_dict(self) -> dict[str, Any]:
        v = self.verdict
        return {
            "policy": v.policy,
            "outcome": v.outcome,
            "action": v.action.value,
            "stage": v.stage.value,
            "replied_at": self.replied_at.value,
            "code": v.reply.code if v.reply else None,
            "status": v.reply.status if v.reply else None,
            "reply": self.reply,
            "reason": v.reason,
            "rfc_compliant": v.rfc_compliant,
            "fix": self.fix,
        }


@dataclass
class Report:
    scenario: Scenario
    envelope: Envelope
    #: What the policies saw as the client: its address and name (world.clients applied).
    client: Client
    #: Every (stage, policy) that ran, in order, for one test case each in JUnit.
    ran: list[tuple[Stage, str]] = field(default_factory=list)
    objections: list[Objection] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.objections


async def evaluate(scenario: Scenario, envelope: Envelope) -> Report:
    """Run every stage's policies in warn_only and collect the objections.

    The same `Conversation` as `serve` drives the session, so each objection's stage is
    the one serve would answer with its reply (delay_reject and each entry's override).
    """
    persona = Persona.build(scenario, warn_only=True)
    world, callout = persona.world, persona.callout
    identity = world.clients.lookup(envelope.client_ip)
    client = Client(
        peer=envelope.client_ip,
        address=identity.address,
        name=identity.name,
        via="world" if identity.address != envelope.client_ip or identity.name else "socket",
    )
    report = Report(scenario, envelope, client)
    docs = {(e.cls.name, o.id): o.doc for e in scenario.entries for o in e.cls.outcomes}
    decided: list[Verdict] = []
    conv = Conversation(persona, persona.context.for_session(), record=decided.append)
    conv.open(client, world.clock.now())

    async def stage(at: Stage, event: Awaitable[object]) -> None:
        for policy in persona.engine.policies_at(at):
            if (at, policy.name) not in report.ran:
                report.ran.append((at, policy.name))
        await event
        for verdict in decided:
            if verdict.objection:
                doc = docs.get((verdict.policy, verdict.outcome), "")
                _add(report, verdict, doc, conv.would_reply_at.get(id(verdict), verdict.stage))
        decided.clear()

    if callout is not None:
        await callout.start()
    try:
        await stage(Stage.CONNECT, conv.connect())
        await stage(Stage.HELO, conv.hello("EHLO", envelope.helo))
        conv.hello_done(True)  # warn_only: nothing is refused
        if envelope.tls is not None:
            # STARTTLS after the greeting, as a client does (the second EHLO changes
            # nothing the policies judge).
            conv.tls_started(envelope.tls)
        options = ["SMTPUTF8"] if envelope.smtputf8 else []
        await stage(Stage.MAIL, conv.mail(envelope.mail_from, options))
        for rcpt in envelope.rcpts:
            await stage(Stage.RCPT, conv.rcpt(rcpt))
        await stage(Stage.DATA, conv.data())
        if envelope.message is not None:
            await stage(Stage.EOD, conv.message(envelope.message))
    finally:
        if callout is not None:
            await callout.stop()
    return report


def _add(report: Report, verdict: Verdict, doc: str, replied_at: Stage) -> None:
    settings = report.scenario.receiver
    assert verdict.reply is not None  # an objection always carries its reply
    reply = verdict.reply.wire_lines(enhanced=settings.enhanced_status_codes)
    # A policy listed at two stages (helo_syntax at HELO and MAIL) objects twice to the
    # same thing; a strict receiver sends it once.
    if any(
        (o.verdict.policy, o.verdict.outcome, o.reply) == (verdict.policy, verdict.outcome, reply)
        for o in report.objections
    ):
        return
    fix = fix_for(verdict.policy, verdict.outcome, doc)
    report.objections.append(Objection(verdict, reply, replied_at, fix))


# -- output ----------------------------------------------------------------------------


def render_text(report: Report) -> str:
    e, scenario = report.envelope, report.scenario
    seen_as = report.client.address
    client = seen_as if seen_as == e.client_ip else f"{seen_as} (from {e.client_ip})"
    if report.client.name:
        client += f", name {report.client.name}"
    rcpts = ", ".join(f"<{r}>" for r in e.rcpts)
    out = [
        f"scenario {scenario.name} ({scenario.source}), every policy run (warn_only)",
        f"client {client}; EHLO {e.helo}; "
        + (f"STARTTLS ({e.tls}); " if e.tls else "")
        + f"MAIL FROM:<{e.mail_from}>; RCPT TO: {rcpts}",
        f"message {e.message_name}"
        if e.message is not None
        else "no message given: end-of-data policies (headers, content) not run",
        "",
    ]
    if report.clean:
        out.append(f"no objection: a receiver running {scenario.name} accepts this.")
        return "\n".join(out) + "\n"
    count = len(report.objections)
    out.append(f"{count} objection{'s' if count > 1 else ''}:")
    for n, o in enumerate(report.objections, 1):
        v = o.verdict
        when = f"decided at {v.stage.value}"
        if o.replied_at is not v.stage:
            when += f", sent in reply to {o.replied_at.value.upper()} (delay_reject)"
        out.append("")
        out.append(f"{n}. {v.policy} {v.outcome}, {when}")
        out.append(f"   reply:  {o.reply[0]}")
        out.extend(f"           {line}" for line in o.reply[1:])
        out.append(f"   reason: {v.reason}")
        out.append(f"   fix:    {o.fix}")
        if not v.rfc_compliant:
            out.append(
                "   note:   RFC 5321 does not allow refusing mail for this reason; "
                "strict receivers do it anyway"
            )
    return "\n".join(out) + "\n"


def render_json(report: Report) -> str:
    e = report.envelope
    data = {
        "scenario": report.scenario.name,
        "source": report.scenario.source,
        "client": {
            "given": e.client_ip,
            "address": report.client.address,
            "name": report.client.name,
        },
        "helo": e.helo,
        "tls": e.tls,
        "mail_from": e.mail_from,
        "rcpts": e.rcpts,
        "message": e.message_name,
        "clean": report.clean,
        "objections": [o.as_dict() for o in report.objections],
    }
    return json.dumps(data, indent=2) + "\n"


def render_junit(report: Report) -> bytes:
    """One test case per policy and stage that ran; a failure for each that objected."""
    classname = f"strictmx.check.{report.scenario.name}"
    cases = []
    for at, policy in report.ran:
        found = [
            o for o in report.objections if (o.verdict.stage, o.verdict.policy) == (at, policy)
        ]
        case = junit.TestCase(f"{policy} at {at.value}", classname)
        if found:
            message = "; ".join(o.reply[0] for o in found)
            details = "\n\n".join(
                "\n".join([*o.reply, f"reason: {o.verdict.reason}", f"fix: {o.fix}"]) for o in found
            )
            case.failure = (message, details)
        cases.append(case)
    return junit.document(
        f"strictmx check {report.scenario.name}", cases, timestamp=datetime.now(UTC)
    )


# -- command line ----------------------------------------------------------------------


def add_parser(sub: Any) -> None:
    check = sub.add_parser(
        "check",
        help="evaluate one envelope and message against a scenario, offline, listing every "
        "objection with its reply and fix",
    )
    check.add_argument("--scenario", default="default", help="bundled name or YAML path")
    check.add_argument(
        "--client-ip",
        required=True,
        metavar="IP",
        help="the sending address (world.clients maps a loopback one as serve does)",
    )
    check.add_argument("--helo", required=True, metavar="NAME", help="the HELO/EHLO name")
    check.add_argument(
        "--mail-from", required=True, metavar="ADDRESS", help="the envelope sender ('' for <>)"
    )
    check.add_argument(
        "--rcpt", action="append", required=True, metavar="ADDRESS", help="repeatable"
    )
    check.add_argument(
        "--smtputf8", action="store_true", help="MAIL FROM asks for SMTPUTF8 (RFC 6531)"
    )
    check.add_argument(
        "--tls",
        choices=TLS_VERSIONS,
        metavar="VERSION",
        help="the session used STARTTLS with this protocol (" + ", ".join(TLS_VERSIONS) + "); "
        "without it, clear text",
    )
    check.add_argument(
        "message",
        nargs="?",
        metavar="MESSAGE.eml",
        help="the message ('-': standard input); without it end-of-data policies do not run",
    )
    check.add_argument("--format", choices=("text", "json", "junit"), default="text")


def main(args: argparse.Namespace) -> int:
    try:
        scenario = scenarios.load(args.scenario)
        envelope = envelope_from(args)
    except (BadInput, ScenarioError) as exc:
        print(f"strictmx: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    report = asyncio.run(evaluate(scenario, envelope))
    if args.format == "json":
        sys.stdout.write(render_json(report))
    elif args.format == "junit":
        sys.stdout.write(render_junit(report).decode("utf-8"))
    else:
        sys.stdout.write(render_text(report))
    sys.stdout.flush()
    return EXIT_CLEAN if report.clean else EXIT_OBJECTED


def envelope_from(args: argparse.Namespace) -> Envelope:
    try:
        client_ip = str(ipaddress.ip_address(args.client_ip))
    except ValueError:
        raise BadInput(f"--client-ip: not an IP address: {args.client_ip!r}") from None
    message = name = None
    if args.message is not None:
        path = Path(args.message)
        try:
            raw = sys.stdin.buffer.read() if args.message == "-" else path.read_bytes()
        except OSError as exc:
            raise BadInput(f"cannot read {path}: {exc.strerror or exc}") from None
        message = as_sent(raw)  # an .eml saved with LF line ends goes out with CRLF
        name = "<stdin>" if args.message == "-" else str(path)
    return Envelope(
        client_ip=client_ip,
        helo=args.helo,
        mail_from=args.mail_from,
        rcpts=list(args.rcpt),
        message=message,
        message_name=name,
        smtputf8=args.smtputf8,
        tls=args.tls,
    )
