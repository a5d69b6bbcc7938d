"""sender_verify: does the sender domain's own MX accept the envelope sender (a callout)?"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator

from strictmx.receiver.outcome import HOST, IP, TEXT
from strictmx.receiver.policy import FROM_CATALOGUE, Context, Outcome, Policy, PolicyOptions
from strictmx.receiver.reproduction import DEFAULT_SENDER, Build, Request, dns_world, sender_in
from strictmx.receiver.session import Session
from strictmx.receiver.trust import Reach, reaches
from strictmx.receiver.verdict import Action, Reply, Stage, Verdict
from strictmx.receiver.world.callout import Probe, Result, Status
from strictmx.receiver.world.names import normalise_name

log = logging.getLogger(__name__)

#: Entry-point group of custom verifiers: `name = "package.module:callable"`.
VERIFIER_GROUP = "strictmx.sender_verifiers"

#: A custom verifier: given the sender address and the session, a `Result`, or None to
#: leave the decision to the SMTP callout. It may be a coroutine function.
Verifier = Callable[[str, Session], Result | Awaitable[Result | None] | None]

DAY = 86400.0
HOUR = 3600.0
#: (positive, negative) cache TTLs in seconds by probe style: Postfix's
#: address_verify_positive_expire_time 31d / address_verify_negative_expire_time 3d;
#: Exim's callout_positive_expire 24h / callout_negative_expire 2h.
DEFAULT_TTLS: dict[str, tuple[float, float]] = {
    "postfix": (31 * DAY, 3 * DAY),
    "exim": (24 * HOUR, 2 * HOUR),
}
#: MAIL FROM of the probe by style: Postfix's address_verify_sender ($double_bounce_sender
#: at $myorigin), Exim's null sender.
DEFAULT_PROBE_SENDERS = {"postfix": "double-bounce@{hostname}", "exim": ""}

FIELDS = {"why": TEXT, "domain": HOST, "mx": HOST, "mx_ip": IP, "sent": TEXT, "response": TEXT}


class SenderVerifyOptions(PolicyOptions):
    style: Literal["postfix", "exim"] = Field(
        "postfix",
        description="Probe as Postfix (EHLO, MAIL FROM:<double-bounce@...>, RCPT, RSET, QUIT) "
        "or Exim (HELO, MAIL FROM:<>, RCPT, QUIT); also picks the default cache TTLs.",
    )
    port: int = Field(25, ge=1, le=65535, description="TCP port of the MX hosts called.")
    connect_timeout: float = Field(
        30.0, gt=0, description="Seconds to connect to one MX address (Exim's callout 30s)."
    )
    command_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds to wait for the greeting and each reply (Exim's callout 30s).",
    )
    probe_sender: str | None = Field(
        None,
        description="MAIL FROM of the probe ('' for <>, {hostname} is filled in); unset: "
        "double-bounce@{hostname} (postfix) or <> (exim).",
    )
    random: bool = Field(
        False,
        description="Ask for a random local part first; if the MX accepts it, the domain "
        "accepts every address (Exim's callout=random).",
    )
    accept_all: Literal["accept", "defer", "reject"] = Field(
        "accept",
        description="With random: what to do with a domain that accepts every address "
        "(Exim accepts it without asking for the sender).",
    )
    postmaster: bool = Field(
        False,
        description="Also require postmaster@<domain> to be accepted (Exim's callout=postmaster).",
    )
    positive_ttl: float | None = Field(
        None,
        ge=0,
        description="Seconds a verified address stays cached; unset: 31 days (postfix) or "
        "24 hours (exim); 0: not cached.",
    )
    negative_ttl: float | None = Field(
        None,
        ge=0,
        description="Seconds a refused address stays cached; unset: 3 days (postfix) or "
        "2 hours (exim); 0: not cached (address_verify_negative_cache = no).",
    )
    max_addresses: int = Field(
        5, ge=1, description="MX addresses tried per probe (Postfix smtp_mx_address_limit)."
    )
    domains: list[str] = Field(
        default_factory=list,
        description="Verify only senders at these domains ('.example.com' for its "
        "subdomains), as Postfix sites list reject_unverified_sender per domain; empty: all.",
    )
    # Private targets make the callout a probe of the receiver's own networks: only a
    # scenario the operator trusts may turn them on.
    allow_private_targets: Annotated[bool, reaches(Reach.HOST, when=bool)] = Field(
        False,
        description="Let callouts reach domain literals and MX addresses that are not public "
        "(private, loopback, link-local); off: such senders are unroutable, nothing is "
        "connected to. The world's simulated MX hosts are always reachable.",
    )
    # An installed entry point is the operator's choice; a module path is code the
    # scenario picks, so an uploaded scenario may name entry points only.
    verifier: Annotated[str, reaches(Reach.MODULE, when=lambda v: not is_entry_point(v))] | None = (
        Field(
            None,
            description="A Python callable deciding instead of the callout: 'module:function' "
            f"or an entry-point name in group {VERIFIER_GROUP} (the only form a scenario "
            "uploaded through the API may use, unless serve --api-allow-host-access).",
        )
    )

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        out = []
        for text in value:
            dot = "." if text.startswith(".") else ""
            out.append(dot + normalise_name(text.removeprefix(".")))
        return out

    @field_validator("verifier")
    @classmethod
    def _loadable(cls, value: str | None) -> str | None:
        if value is not None:
            load_verifier(value)
        return value

    @field_validator("probe_sender")
    @classmethod
    def _probe_sender(cls, value: str | None) -> str | None:
        if value is not None and any(ch in value for ch in "<> \r\n"):
            raise ValueError(f"write the address without brackets or spaces: {value!r}")
        return value


class SenderVerify(Policy[SenderVerifyOptions]):
    """Refuse a sender that its own domain's MX refuses: a sender-verify callout.

    Runs where it is listed: under `mail` (the default place; with delay_reject the
    refusal is given at RCPT) or under `rcpt`, as Postfix sites put
    reject_unverified_sender in smtpd_recipient_restrictions. The null sender `<>` is
    never verified (RFC 5321 §4.5.5: bounces must be accepted), nor a sender without a
    domain (sender_domain's job), nor the receiver's own probe sender (Postfix exempts
    address_verify_sender). `domains` limits verification to chosen sender domains.

    The callout is a real SMTP session (see strictmx/receiver/world/callout.py) to the sender
    domain's MX hosts in preference order, or its A/AAAA addresses when it has no MX, on
    `port`. Style `postfix` sends EHLO, `MAIL FROM:<double-bounce@hostname>`, RCPT, RSET,
    QUIT; style `exim` sends HELO, `MAIL FROM:<>`, RCPT, QUIT. `random` first asks for a
    random local part ($primary_hostname-$tod_epoch-testing, as Exim), and `postmaster`
    also asks for postmaster@domain. The MX hosts of every domain `world.mailboxes` lists
    (and, in a hermetic world, of every domain) are served by the receiver itself on
    loopback from that table; nothing is sent to the simulated addresses DNS names.
    Other domains' MX hosts are called only at public addresses, and domain literals not
    at all, unless `allow_private_targets` is on; a failed connection is "no answer from
    host ..." in the reply, whatever the cause (the journal has the cause).

    Results are cached for every session of the receiver: verified (and accept-all)
    results for `positive_ttl`, refusals for `negative_ttl`; temporary failures are not
    cached. A refusal before the address was asked (greeting, HELO, MAIL FROM), a
    missing postmaster and an accept-all answer hold for the whole domain, as in Exim's
    domain cache.

    Outcomes:

    - SENDER_UNVERIFIED: the MX answered RCPT with 5xx. Default: Postfix with
      `unverified_sender_reject_code = 550`, `550 5.1.7 <addr>: Sender address rejected:
      undeliverable address: <why>`, <why> being the MX's answer as Postfix's verify(8)
      records it. (Postfix's own default code is 450, with the `unverified address:`
      wording of SENDER_VERIFY_TEMPFAIL; a persona wanting that overrides the reply.)
    - SENDER_UNROUTABLE: no MX host to ask (no MX, A or AAAA; a null MX). Same Postfix text;
      Exim says `550 Sender verify failed` (a routing failure, no callout made).
    - SENDER_CALLOUT_REFUSED: the MX refused the probe itself, at the greeting, HELO or
      `MAIL FROM` (MXs and firewalls that refuse the null sender, seed-66). Postfix counts
      it as undeliverable, same text; Exim sends its "Callback setup failed" reply.
    - SENDER_VERIFY_TEMPFAIL: no final answer (timeouts, refused connections, 4xx, DNS
      failure, a verifier error): `450 4.1.7 <addr>: Sender address rejected: unverified
      address: <why>` (Postfix check_verify(), unverified_sender_defer_code 450). It
      defers; it never refuses permanently unless a reply override says so.
    - SENDER_ACCEPT_ALL: with `random` and `accept_all: reject` (or `defer`, which sends
      the same reply as a 4xx): the MX accepts any local part, so nothing was verified.
    - POSTMASTER_MISSING: with `postmaster`, the MX refused postmaster@domain. Exim's
      text (smtp_in.c), the only receiver that checks it.

    Replies may use {why} (Postfix's detail), {domain}, {mx} (host called), {mx_ip} (its
    address, as DNS gave it), {sent} (the command refused) and {response} (the MX's
    reply), so Exim's multi-line replies ("Called: / Sent: / Response:") can be written.

    A custom verifier (`verifier`) decides for users whose truth lives elsewhere (a
    directory, an API): a callable `f(address, session)` (or a coroutine function)
    returning `strictmx.receiver.world.callout.Result` (e.g. `Result(Status.FAILED, "no such
    user")`), or None to let the SMTP callout decide. Its answers are not cached. An
    exception it raises defers; its text goes to the log, not to the SMTP client. A
    scenario uploaded through the HTTP API may name an installed entry point only, not a
    module, unless the receiver allows it (strictmx/receiver/trust.py).

    RFC 5321 does not forbid refusing a sender whose address cannot receive mail, but
    callouts are contested (they turn receivers into address-verification oracles and
    suffer from MXs that refuse the null sender); every outcome is marked as allowed.
    """

    name = "sender_verify"
    summary = "The envelope sender's own MX must accept it (SMTP callout)"
    stages = frozenset({Stage.MAIL, Stage.RCPT})
    Options = SenderVerifyOptions
    calls_out = True
    outcomes: ClassVar[tuple[Outcome, ...]] = (
        Outcome(
            "SENDER_UNVERIFIED",
            FROM_CATALOGUE,
            "The sender domain's MX refused the sender address with 5xx "
            "(Postfix reject_unverified_sender with unverified_sender_reject_code 550).",
            fields=FIELDS,
            stage=Stage.MAIL,
            also_at=frozenset({Stage.RCPT}),
        ),
        Outcome(
            "SENDER_UNROUTABLE",
            FROM_CATALOGUE,
            "There is no MX host to ask: the sender domain has no MX, A or AAAA record, "
            "or a null MX.",
            fields=FIELDS,
            stage=Stage.MAIL,
            also_at=frozenset({Stage.RCPT}),
        ),
        Outcome(
            "SENDER_CALLOUT_REFUSED",
            FROM_CATALOGUE,
            "The sender domain's MX refused the probe before the address could be asked "
            "(greeting, HELO or MAIL FROM; e.g. it refuses the null sender).",
            fields=FIELDS,
            stage=Stage.MAIL,
            also_at=frozenset({Stage.RCPT}),
        ),
        Outcome(
            "SENDER_VERIFY_TEMPFAIL",
            FROM_CATALOGUE,
            "No MX gave a final answer (timeouts, refused connections, 4xx, DNS failure): "
            "defer (Postfix unverified_sender_defer_code).",
            action=Action.DEFER,
            fields=FIELDS,
            stage=Stage.MAIL,
            also_at=frozenset({Stage.RCPT}),
        ),
        Outcome(
            "SENDER_ACCEPT_ALL",
            FROM_CATALOGUE,
            "The MX accepted a random local part too, so the sender proves nothing "
            "(random probe with accept_all reject or defer).",
            fields=FIELDS,
            stage=Stage.MAIL,
            also_at=frozenset({Stage.RCPT}),
        ),
        Outcome(
            "POSTMASTER_MISSING",
            FROM_CATALOGUE,
            "The sender domain's MX refused postmaster@domain (Exim callout=postmaster).",
            fields=FIELDS,
            stage=Stage.MAIL,
            also_at=frozenset({Stage.RCPT}),
        ),
    )

    @classmethod
    def read_reply(cls, outcome: str, text: str) -> dict[str, str]:
        """Its refusals name the sender, in angle brackets or bare."""
        return sender_in(text)

    @classmethod
    def reproduce(cls, req: Request) -> Build:
        """The sender domain's MX, served by strictmx, answering the callout as the outcome says."""
        sender = req.identity.mail_from or DEFAULT_SENDER
        local, _, domain = sender.rpartition("@")
        mx = f"mx.{domain}"
        records = {domain: {"MX": f"10 {mx}."}, mx: {"A": "192.0.2.225"}}
        outcome = req.entry.outcome
        options: dict[str, Any] = {"style": "exim", "command_timeout": 5}
        mailbox: dict[str, Any] = {"exists": ["postmaster"]}
        if outcome == "SENDER_UNROUTABLE":
            return Build(
                options=options,
                case={"mail_from": sender},
                world=dns_world(),
                bound={"domain": domain},
            )
        if outcome == "SENDER_CALLOUT_REFUSED":
            mailbox = {"exists": ["postmaster", local], "null_sender": "reject"}
        elif outcome == "SENDER_VERIFY_TEMPFAIL":
            mailbox = {"tempfail_all": True}
        elif outcome == "SENDER_ACCEPT_ALL":
            options.update(random=True, accept_all="reject")
            mailbox = {"accept_all": True}
        elif outcome == "POSTMASTER_MISSING":
            options["postmaster"] = True
            mailbox = {"exists": [local]}
        if outcome == "SENDER_UNVERIFIED" and local.lower() == "postmaster":
            mailbox = {"exists": ["abuse"]}
        world = dns_world(records)
        world["mailboxes"] = {domain: mailbox}
        return Build(
            options=options,
            case={"mail_from": sender},
            world=world,
            bound={"domain": domain, "mx": mx, "mx_ip": "192.0.2.225"},
        )

    _OUTCOMES: ClassVar[dict[Status, str]] = {
        Status.FAILED: "SENDER_UNVERIFIED",
        Status.UNROUTABLE: "SENDER_UNROUTABLE",
        Status.REFUSED: "SENDER_CALLOUT_REFUSED",
        Status.TEMPFAIL: "SENDER_VERIFY_TEMPFAIL",
        Status.ACCEPT_ALL: "SENDER_ACCEPT_ALL",
        Status.POSTMASTER_FAILED: "POSTMASTER_MISSING",
    }

    def __init__(
        self, options: SenderVerifyOptions, replies: Mapping[str, Reply] | None = None
    ) -> None:
        super().__init__(options, replies)
        self._verifier = load_verifier(options.verifier) if options.verifier else None
        default_positive, default_negative = DEFAULT_TTLS[options.style]
        self._positive_ttl = (
            default_positive if options.positive_ttl is None else options.positive_ttl
        )
        self._negative_ttl = (
            default_negative if options.negative_ttl is None else options.negative_ttl
        )
        self._domains = frozenset(d for d in options.domains if not d.startswith("."))
        self._parents = tuple(d for d in options.domains if d.startswith("."))
        self._probes: dict[str, Probe] = {}

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        sender = session.mail_from
        if not sender:  # the null sender <>, or no MAIL yet
            return None
        local, at, domain = sender.rpartition("@")
        if not (at and local and domain) or not self._in_scope(domain):
            return None
        probe = self._probe(ctx.hostname)
        if sender.lower() == probe.sender.lower():
            return None  # our own probes' sender, as Postfix exempts address_verify_sender
        result = await self._ask_verifier(sender, session) if self._verifier else None
        if result is None:
            if ctx.callout is None:
                result = Result(Status.TEMPFAIL, "no callout client is running in this receiver")
            else:
                result = await ctx.callout.verify(
                    sender,
                    ctx.dns,
                    probe,
                    positive_ttl=self._positive_ttl,
                    negative_ttl=self._negative_ttl,
                )
        return self._judge(result, sender, domain, stage, session, ctx)

    def _in_scope(self, domain: str) -> bool:
        if not self._domains and not self._parents:
            return True
        name = domain.lower().rstrip(".")
        return name in self._domains or name.endswith(self._parents)

    def _probe(self, hostname: str) -> Probe:
        probe = self._probes.get(hostname)
        if probe is None:
            o = self.options
            sender = DEFAULT_PROBE_SENDERS[o.style] if o.probe_sender is None else o.probe_sender
            probe = Probe(
                style=o.style,
                helo=hostname,
                sender=sender.replace("{hostname}", hostname),
                port=o.port,
                connect_timeout=o.connect_timeout,
                command_timeout=o.command_timeout,
                random=o.random,
                postmaster=o.postmaster,
                max_addresses=o.max_addresses,
                allow_private=o.allow_private_targets,
            )
            self._probes[hostname] = probe
        return probe

    async def _ask_verifier(self, sender: str, session: Session) -> Result | None:
        assert self._verifier is not None
        name = self.options.verifier
        try:
            answer = self._verifier(sender, session)
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception:  # a user's code failing must defer, not refuse or crash
            # Its exception text may say anything (paths, secrets): the log has it, the
            # SMTP client gets only that it failed.
            log.exception("sender_verify: verifier %s failed for <%s>", name, sender)
            return Result(Status.TEMPFAIL, f"verifier {name} failed (logged by the receiver)")
        if answer is not None and not isinstance(answer, Result):
            return Result(
                Status.TEMPFAIL,
                f"verifier {name} returned {type(answer).__name__}, not a Result or None",
            )
        return answer

    def _judge(
        self,
        result: Result,
        sender: str,
        domain: str,
        stage: Stage,
        session: Session,
        ctx: Context,
    ) -> Verdict | None:
        if result.status is Status.VERIFIED:
            return None
        if result.status is Status.ACCEPT_ALL and self.options.accept_all == "accept":
            return None
        outcome = self._OUTCOMES[result.status]
        called = f" (callout to {result.host}[{result.ip}])" if result.host else ""
        cached = " (cached result)" if result.cached else ""
        soften = outcome == "SENDER_ACCEPT_ALL" and self.options.accept_all == "defer"
        return self.verdict(
            outcome,
            stage,
            session,
            ctx,
            f"<{sender}>: {result.full}{called}{cached}",
            refuse_as="defer" if soften else None,
            why=result.detail,
            domain=domain.lower(),
            mx=result.host,
            mx_ip=result.ip,
            sent=result.sent,
            response=result.response,
        )


def is_entry_point(spec: str) -> bool:
    """Whether `spec` is the name of an installed verifier (group VERIFIER_GROUP)."""
    return ":" not in spec and bool(
        importlib.metadata.entry_points(group=VERIFIER_GROUP, name=spec)
    )


def load_verifier(spec: str) -> Verifier:
    """The callable `spec` names: 'module:attr', an entry point, or 'module.attr'.

    ValueError if it cannot be loaded or is not callable (at scenario load).
    """
    found = () if ":" in spec else importlib.metadata.entry_points(group=VERIFIER_GROUP, name=spec)
    if ":" not in spec and "." not in spec and not found:
        raise ValueError(
            f"no entry point {spec!r} in group {VERIFIER_GROUP}, and not a 'module:callable' path"
        )
    try:
        if ":" in spec:
            module, _, attr = spec.partition(":")
            target: object = importlib.import_module(module)
            for part in attr.split("."):
                target = getattr(target, part)
        elif found:
            target = next(iter(found)).load()
        else:
            module, _, attr = spec.rpartition(".")
            target = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load verifier {spec!r}: {exc}") from None
    except Exception as exc:  # a module failing at import: a scenario error, not a crash
        raise ValueError(
            f"cannot load verifier {spec!r}: importing it raised {type(exc).__name__}"
        ) from None
    if not callable(target):
        raise ValueError(f"verifier {spec!r} is {type(target).__name__}, not callable")
    return target
