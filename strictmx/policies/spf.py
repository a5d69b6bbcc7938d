"""spf: does the sender's domain authorize the client to send its mail (SPF, RFC 7208)?"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

import spf as pyspf  # untyped: see the mypy override in pyproject
from dns.rdata import Rdata
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA
from dns.rdtypes.txtbase import TXTBase
from pydantic import Field

from strictmx.receiver.authentication import SpfAuth
from strictmx.receiver.outcome import HOST, RESULT, TEXT
from strictmx.receiver.policy import FROM_CATALOGUE, Context, Outcome, Policy, PolicyOptions
from strictmx.receiver.reproduction import Build, Request, dns_world, domain_of, sender_in
from strictmx.receiver.session import Session
from strictmx.receiver.verdict import Action, Reply, Stage, Verdict
from strictmx.receiver.world.dns import NoData, NXDomain, TempFail, WorldDNS
from strictmx.receiver.world.names import name_text

Handling = Literal["reject", "defer", "accept"]
Identity = Literal["mailfrom", "helo"]

#: RFC 7208 §4.6.4: "at least 20 seconds" before a check may give up with temperror.
DEFAULT_TIMEOUT = 20.0
#: What every SPF reply may name: the result, the domain's explanation, the domain checked
#: and which identity it was ("MAIL FROM" or "HELO").
SPF_FIELDS = {
    "spf_result": RESULT,
    "spf_explanation": TEXT,
    "spf_domain": HOST,
    "spf_identity": TEXT,
}

#: The outcome each refusable result maps to (pass never refuses).
_OUTCOMES = {
    "fail": "SPF_FAIL",
    "softfail": "SPF_SOFTFAIL",
    "neutral": "SPF_NEUTRAL",
    "none": "SPF_NONE",
    "temperror": "SPF_TEMPERROR",
    "permerror": "SPF_PERMERROR",
}
#: How the Received-SPF comment (RFC 7208 §9.1) names each identity, and how replies do.
_IDENTITY_TEXT: dict[Identity, str] = {"mailfrom": "MAIL FROM", "helo": "HELO"}


class SpfOptions(PolicyOptions):
    fail: Handling = Field(
        "reject", description="What a fail result does (RFC 7208 §8.4: reject with 550 5.7.1)."
    )
    softfail: Handling = Field(
        "accept",
        description="What a softfail result does (RFC 7208 §8.5: SHOULD NOT reject on it alone).",
    )
    neutral: Handling = Field(
        "accept", description="What a neutral result does (RFC 7208 §8.2: treat it as none)."
    )
    none: Handling = Field(
        "accept", description="What a none result (no SPF record) does; reject to require SPF."
    )
    temperror: Handling = Field(
        "defer", description="What a temperror (DNS failure) does (RFC 7208 §8.6: 451 4.4.3)."
    )
    permerror: Handling = Field(
        "reject",
        description="What a permerror (unusable record) does (RFC 7208 §8.7: 550 5.5.2).",
    )
    check_helo: bool = Field(
        False,
        description="Check the HELO identity first (RFC 7208 §2.3); its fail refuses, any "
        "other result goes on to MAIL FROM.",
    )
    header: bool = Field(
        True, description="Prepend a Received-SPF header (RFC 7208 §9.1) to accepted mail."
    )
    timeout: float = Field(
        DEFAULT_TIMEOUT,
        gt=0,
        description="Seconds one identity's check may take in all before it is a temperror.",
    )
    cache_ttl: float = Field(
        300.0,
        ge=0,
        description="Seconds a result for the same client address, sender and HELO is reused "
        "by later sessions (0: never); a temperror is never reused.",
    )


_RESULTS_MAX = 10_000


@dataclass(frozen=True)
class SpfCheck:
    """One identity's check_host() result, with what a reply and the header need."""

    identity: Identity
    domain: str
    result: str
    explanation: str
    mechanism: str | None
    header: str

    @property
    def identity_text(self) -> str:
        return _IDENTITY_TEXT[self.identity]


class Spf(Policy[SpfOptions]):
    """Evaluate SPF (RFC 7208) for the client address, at MAIL.

    The identity is the MAIL FROM domain; for the null sender `<>` it is the HELO name,
    checked as `postmaster@<helo>` (RFC 7208 §2.4). With `check_helo` the HELO identity is
    checked first for every sender (RFC 7208 §2.3 RECOMMENDED): a `fail` there decides
    (under the `fail` option), any other HELO result leaves the decision to MAIL FROM. An
    identity that is not a multi-label domain (an address literal, `localhost`) gives
    `none` without a lookup (§4.3).

    Evaluation is pyspf's (check_host(), macros, include/redirect, the 10-lookup and
    2-void-lookup limits of §4.6.4), with every DNS question put to the world (`ctx.dns`)
    from a worker thread, so scripted SERVFAILs and timeouts give `temperror` and a
    scenario's TXT records are the SPF policies. The `%{t}` macro follows the scenario's
    clock, `%{r}` is the receiver's hostname.

    Each result other than pass is handled by its option: `accept`, `defer` or `reject`.
    The outcome's reply supplies the words; the option decides the class, so `defer`
    sends a 5xx reply as 4xx (as soft_bounce does) and `reject` sends a 4xx reply as 550.
    Defaults follow RFC 7208 §8: fail and permerror refuse, temperror defers, softfail,
    neutral and none are accepted. With `header`, accepted mail gets
    `Received-SPF: <result> (<hostname>: <comment>) client-ip=...; envelope-from=...;
    helo=...; receiver=...; mechanism=...; identity=...` (§9.1; pyspf's rendering), one per
    identity checked.

    Default replies (RFC 7208 §8.4, §8.6, §8.7 codes): `550 5.7.1 SPF MAIL FROM check
    failed: <explanation>`, `451 4.4.3 ... temporarily failed`, `550 5.5.2 ... failed
    permanently`. The explanation is the domain's own `exp=` text when it publishes one
    ("The domain example.com explains: ..."), otherwise the Received-SPF comment. Replies
    may use {spf_result}, {spf_explanation}, {spf_domain} and {spf_identity} ("MAIL FROM"
    or "HELO"). seed-76 ("550 Rejecting spoofed message") is an override of SPF_FAIL.

    RFC 5321 forbids none of these refusals. RFC 7208 advises against refusing a softfail
    (§8.5: "SHOULD NOT reject ... based solely on this result") and wants neutral handled
    as none (§8.2); the defaults follow it.
    """

    name = "spf"
    summary = "SPF (RFC 7208) for the MAIL FROM identity, or HELO for the null sender"
    stages = frozenset({Stage.MAIL})
    Options = SpfOptions
    outcomes: ClassVar[tuple[Outcome, ...]] = (
        Outcome(
            "SPF_FAIL",
            FROM_CATALOGUE,
            "The domain's SPF record says the client may not send its mail (result fail).",
            fields={
                "spf_result": RESULT,
                "spf_explanation": TEXT,
                "spf_domain": HOST,
                "spf_identity": TEXT,
            },
        ),
        Outcome(
            "SPF_SOFTFAIL",
            FROM_CATALOGUE,
            "The domain's SPF record says the client is probably not allowed (softfail); "
            "refused only when the softfail option asks, against RFC 7208 §8.5's advice.",
            fields={
                "spf_result": RESULT,
                "spf_explanation": TEXT,
                "spf_domain": HOST,
                "spf_identity": TEXT,
            },
        ),
        Outcome(
            "SPF_NEUTRAL",
            FROM_CATALOGUE,
            "The domain's SPF record asserts nothing about the client (neutral); refused "
            "only when the neutral option asks.",
            fields={
                "spf_result": RESULT,
                "spf_explanation": TEXT,
                "spf_domain": HOST,
                "spf_identity": TEXT,
            },
        ),
        Outcome(
            "SPF_NONE",
            FROM_CATALOGUE,
            "The domain publishes no SPF record (none); refused only when the none option "
            "asks, as receivers that require SPF do.",
            fields={
                "spf_result": RESULT,
                "spf_explanation": TEXT,
                "spf_domain": HOST,
                "spf_identity": TEXT,
            },
        ),
        Outcome(
            "SPF_TEMPERROR",
            FROM_CATALOGUE,
            "A DNS lookup failed temporarily (SERVFAIL, timeout) during the check.",
            action=Action.DEFER,
            fields={
                "spf_result": RESULT,
                "spf_explanation": TEXT,
                "spf_domain": HOST,
                "spf_identity": TEXT,
            },
        ),
        Outcome(
            "SPF_PERMERROR",
            FROM_CATALOGUE,
            "The domain's SPF record cannot be used: a syntax error, two records, or over "
            "10 DNS-querying terms or 2 void lookups (RFC 7208 §4.6).",
            fields={
                "spf_result": RESULT,
                "spf_explanation": TEXT,
                "spf_domain": HOST,
                "spf_identity": TEXT,
            },
        ),
    )

    @classmethod
    def read_reply(cls, outcome: str, text: str) -> dict[str, str]:
        """Its refusals name the sender, in angle brackets or bare."""
        return sender_in(text)

    @classmethod
    def reproduce(cls, req: Request) -> Build:
        """The sender domain's SPF record giving the outcome's result."""
        domain = domain_of(req.identity.mail_from)
        outcome = req.entry.outcome
        record = {
            "SPF_FAIL": "v=spf1 -all",
            "SPF_SOFTFAIL": "v=spf1 ~all",
            "SPF_NEUTRAL": "v=spf1 ?all",
            "SPF_PERMERROR": "v=spf1 ip4:192.0.2.1 inlcude:_spf.example.net -all",
        }.get(outcome)
        options: dict[str, Any] = {}
        if outcome in ("SPF_SOFTFAIL", "SPF_NEUTRAL", "SPF_NONE"):
            options[outcome.removeprefix("SPF_").lower()] = "reject"
        if outcome == "SPF_TEMPERROR":
            world = dns_world(servfail=[domain])
        else:
            world = dns_world({domain: {"TXT": record}} if record else None)
        return Build(options=options, world=world, bound={"spf_domain": domain})

    def __init__(self, options: SpfOptions, replies: Mapping[str, Reply] | None = None) -> None:
        super().__init__(options, replies)
        # (client address, sender, HELO) -> (expiry on ctx.clock.monotonic(), result)
        self._results: dict[tuple[str, str, str], tuple[float, SpfCheck]] = {}

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        helo = session.helo or ""
        sender = session.mail_from or ""
        checks: list[SpfCheck] = []
        if self.options.check_helo and sender:
            helo_check = await self.evaluate(session.client.address, "", helo, ctx)
            if helo_check.result == "fail":
                session.auth.spf = [_auth(helo_check, sender, helo)]
                verdict = self._judge(helo_check, stage, session, ctx)
                if verdict is not None:
                    return verdict
            checks.append(helo_check)
        mail_check = await self.evaluate(session.client.address, sender, helo, ctx)
        checks.append(mail_check)
        # DMARC and the bulk-sender rules read these rather than evaluate SPF again.
        session.auth.spf = [_auth(c, sender, helo) for c in checks]
        verdict = self._judge(mail_check, stage, session, ctx)
        if verdict is not None:
            return verdict
        if self.options.header:
            session.add_headers.extend(f"Received-SPF: {c.header}" for c in checks)
        return None

    async def evaluate(self, ip: str, sender: str, helo: str, ctx: Context) -> SpfCheck:
        """check_host() for `sender` (or, when empty, the HELO identity) from `ip`.

        A staging MTA sends many messages from one address and sender: a result is reused
        for `cache_ttl` seconds rather than evaluated (in a thread) for every message.
        """
        key = (ip, sender.lower(), helo.lower())
        now = ctx.clock.monotonic()
        cached = self._results.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.options.timeout
        check = await asyncio.to_thread(
            _evaluate, ip, sender, helo, ctx.hostname, ctx.clock.now(), ctx.dns, loop, deadline
        )
        if self.options.cache_ttl and check.result != "temperror":
            if len(self._results) >= _RESULTS_MAX:
                self._results.clear()
            self._results[key] = (now + self.options.cache_ttl, check)
        return check

    def _judge(
        self, check: SpfCheck, stage: Stage, session: Session, ctx: Context
    ) -> Verdict | None:
        outcome = _OUTCOMES.get(check.result)
        handling: Handling = getattr(self.options, check.result) if outcome else "accept"
        if outcome is None or handling == "accept":
            return None
        reason = (
            f"SPF {check.identity_text} check of {check.domain} for {session.client.address}: "
            f"{check.result} ({check.explanation}"
            + (f"; matched {check.mechanism}" if check.mechanism else "")
            + ")"
        )
        # The option sets the reply's class; its words and status detail are kept.
        return self.verdict(
            outcome,
            stage,
            session,
            ctx,
            reason,
            refuse_as=handling,
            spf_result=check.result,
            spf_explanation=check.explanation,
            spf_domain=check.domain,
            spf_identity=check.identity_text,
        )


def _auth(check: SpfCheck, sender: str, helo: str) -> SpfAuth:
    """The result as Authentication-Results names it: smtp.mailfrom, or smtp.helo (the
    null sender's identity too, RFC 7208 §2.4)."""
    value = sender if check.identity == "mailfrom" else helo
    return SpfAuth(check.identity, check.domain, check.result, value)  # type: ignore[arg-type]


# -- evaluation, in a worker thread ---------------------------------------------------------


def _evaluate(
    ip: str,
    sender: str,
    helo: str,
    hostname: str,
    now: datetime,
    world_dns: WorldDNS,
    loop: asyncio.AbstractEventLoop,
    deadline: float,
) -> SpfCheck:
    query = _WorldQuery(ip, sender, helo, hostname, world_dns, loop, deadline)
    query.t = str(int(now.timestamp()))  # the %{t} macro: the scenario's time
    identity: Identity = query.ident
    domain: str = query.d
    if _checkable(domain):
        result, _code, text = query.check()
    else:
        # RFC 7208 §4.3: not a multi-label domain name -> none, no lookup.
        result, text = "none", ""
    comment: str = query.get_header_comment(result)
    if result in ("fail", "softfail") and text and text != pyspf.EXPLANATIONS[result]:
        explanation = f"The domain {domain} explains: {text}"
    elif result == "temperror":
        explanation = query.prob
    elif result == "permerror" and query.mech:
        explanation = f"{comment}: {' '.join(query.mech)}"
    elif result == "none":
        explanation = (
            f"{domain} publishes no SPF record"
            if _checkable(domain)
            else f"{domain!r} is not a multi-label domain name (RFC 7208 §4.3)"
        )
    else:
        explanation = comment
    return SpfCheck(
        identity=identity,
        domain=domain,
        result=result,
        explanation=explanation,
        mechanism=query.mechanism if result != "permerror" else None,
        header=query.get_header(result, receiver=hostname),
    )


def _checkable(domain: str) -> bool:
    labels = domain.rstrip(".").split(".")
    return len(labels) > 1 and all(0 < len(label) < 64 for label in labels) and "[" not in domain


class _WorldQuery(pyspf.query):  # type: ignore[misc]  # pyspf's classes are untyped
    """pyspf's check_host() whose every DNS question goes to the world, one at a time.

    Runs in a worker thread: each lookup is a coroutine on the session's event loop,
    waited for here. pyspf follows no CNAMEs of its own this way: the world does.
    """

    def __init__(
        self,
        ip: str,
        sender: str,
        helo: str,
        hostname: str,
        world_dns: WorldDNS,
        loop: asyncio.AbstractEventLoop,
        deadline: float,
    ) -> None:
        super().__init__(i=ip, s=sender, h=helo, receiver=hostname)
        # Set by check(), read by get_header(): a check skipped under §4.3 needs them too.
        self.prob = ""
        self.mech: list[str] = []
        self.mechanism: str | None = None
        # pyspf takes an empty sender as HELO's only when there is a HELO name to use.
        self.ident: Identity = "mailfrom" if sender else "helo"
        self.world_dns = world_dns
        self.world_loop = loop
        self.world_deadline = deadline

    def dns(
        self, name: str, qtype: str, cnames: object = None, ignore_void: bool = False
    ) -> list[Any]:
        name = str(name).rstrip(".").lower()
        if not name or not all(0 < len(label) < 64 for label in name.split(".")):
            return []  # a name that cannot be asked has no data, as in pyspf
        result = [_pyspf_value(rdata) for rdata in self._ask(name, qtype)]
        # RFC 7208 §4.6.4: more than two lookups with no answer (NODATA or NXDOMAIN) is a
        # permerror; pyspf counts them here, so this override must too.
        if not result and not ignore_void:
            self.void_lookups += 1
            if self.void_lookups > pyspf.MAX_VOID_LOOKUPS:
                raise pyspf.PermError(f"Void lookup limit of {pyspf.MAX_VOID_LOOKUPS} exceeded")
        return result

    def _ask(self, name: str, qtype: str) -> list[Rdata]:
        remaining = self.world_deadline - time.monotonic()
        if remaining <= 0:
            raise pyspf.TempError(f"the check ran out of time before looking up {name} {qtype}")
        lookup = self.world_dns.resolve(name, qtype)
        try:
            future = asyncio.run_coroutine_threadsafe(lookup, self.world_loop)
        except RuntimeError as exc:  # the loop is closed: the receiver is stopping
            lookup.close()
            raise pyspf.TempError(f"DNS lookup of {name} {qtype} impossible: {exc}") from None
        try:
            return future.result(remaining)
        except (NXDomain, NoData):
            return []
        except TempFail as exc:
            kind = "SERVFAIL" if exc.kind == "servfail" else exc.kind
            raise pyspf.TempError(
                f"DNS lookup of {name} {qtype} failed temporarily ({kind})"
            ) from None
        except TimeoutError:
            future.cancel()
            raise pyspf.TempError(
                f"DNS lookup of {name} {qtype} failed temporarily (timeout)"
            ) from None


def _pyspf_value(rdata: Rdata) -> object:
    """One answer in the shape pyspf's dnspython driver gives it."""
    if isinstance(rdata, A | AAAA):
        return rdata.address
    if isinstance(rdata, MX):
        return (rdata.preference, name_text(rdata.exchange))
    if isinstance(rdata, PTR):
        return name_text(rdata.target)
    if isinstance(rdata, TXTBase):
        return list(rdata.strings)
    return rdata.to_text()
