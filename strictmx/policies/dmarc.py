"""dmarc: does the From: domain's DMARC policy accept this message (RFC 7489, DMARCbis)?"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from strictmx.receiver.alignment import aligned, author_domain, domain_name, organisational_domain
from strictmx.receiver.authentication import DmarcAuth, DmarcResult
from strictmx.receiver.message import header_of
from strictmx.receiver.outcome import HOST
from strictmx.receiver.policy import FROM_CATALOGUE, Context, Outcome, Policy, PolicyOptions
from strictmx.receiver.reproduction import (
    Build,
    Request,
    dns_world,
    domain_of,
    header_lines,
    is_name,
    message,
)
from strictmx.receiver.session import Session
from strictmx.receiver.verdict import Action, Stage, Verdict
from strictmx.receiver.world.dns import NoData, NXDomain, TempFail

Handling = Literal["reject", "defer", "accept"]
Disposition = Literal["none", "quarantine", "reject"]
Spec = Literal["rfc7489", "dmarcbis"]

#: What every DMARC reply may name: the RFC5322.From domain.
DMARC_FIELDS = {"domain": HOST}

#: RFC 7489 §6.4: the version tag first in the record; its name is an ABNF string
#: (case-insensitive, RFC 5234 §2.3), its value is %x44 %x4d ... (case-sensitive DMARC1).
_VERSION = re.compile(r"[vV][ \t]*=[ \t]*DMARC1[ \t]*(?:;|$)")
#: RFC 3986 §3.1: a URI starts with its scheme and a colon (rua's syntactic validity, §6.3).
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")
_REQUESTS: tuple[Disposition, ...] = ("none", "quarantine", "reject")
#: RFC 7489 §6.6.4: a message not sampled by pct= gets the next policy down.
_LOWER: dict[Disposition, Disposition] = {
    "reject": "quarantine",
    "quarantine": "none",
    "none": "none",
}


class DmarcOptions(PolicyOptions):
    reject: Handling = Field(
        "reject", description="What a failure under an applied p=reject does (DMARC_REJECT)."
    )
    quarantine: Handling = Field(
        "accept",
        description="What a failure under an applied p=quarantine does (DMARC_QUARANTINE); "
        "accept records a note (the message would go to the spam folder).",
    )
    not_aligned: Handling = Field(
        "accept",
        description="What a failure under p=none does (DMARC_NOT_ALIGNED): neither SPF nor "
        "DKIM passes aligned with the From: domain.",
    )
    record_missing: Handling = Field(
        "accept",
        description="What a From: domain without a DMARC record (nor at its organisational "
        "domain) does (DMARC_RECORD_MISSING); reject as Gmail's bulk rule.",
    )
    record_invalid: Handling = Field(
        "accept",
        description="What an unusable DMARC record does (DMARC_RECORD_INVALID: two v=DMARC1 "
        "records, or no valid p= and no valid rua=); RFC 7489 §6.6.3 applies no DMARC then.",
    )
    temperror: Handling = Field(
        "defer", description="What a temporary DNS failure of the record lookup does."
    )
    follows: Spec = Field(
        "rfc7489",
        description="Where the specifications differ: rfc7489 samples by pct= and ignores "
        "np= and t=; dmarcbis (RFC 9989) ignores pct=, honours t=y and np=.",
    )
    trusted_arc_sealers: tuple[str, ...] = Field(
        (),
        description="Domains whose ARC seal on a passing chain (the newest set) turns a DMARC "
        "failure into an acceptance with a note (RFC 8617 §7.2), as large providers do.",
    )

    @field_validator("trusted_arc_sealers")
    @classmethod
    def _sealer_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(domain_name(name) for name in names)


@dataclass(frozen=True)
class DmarcRecord:
    """A DMARC policy record as RFC 7489 §6.3 reads it (only what a receiver acts on)."""

    p: Disposition
    sp: Disposition | None = None
    np: Disposition | None = None
    pct: int = 100
    adkim: Literal["r", "s"] = "r"
    aspf: Literal["r", "s"] = "r"
    testing: bool = False
    #: Where parsing fell back to a default (an invalid pct=, p= read as none ...).
    notes: tuple[str, ...] = ()


class RecordError(ValueError):
    """A v=DMARC1 record no policy can be read from (RFC 7489 §6.6.3 step 6)."""


def parse_record(text: str) -> DmarcRecord:
    """The record `text` (one TXT record's strings joined), which starts with v=DMARC1.

    RFC 7489 §6.3: tags are `name=value` separated by `;`, unknown tags are ignored. A
    missing or invalid p= (or an invalid sp=) makes the record p=none when a syntactically
    valid rua= is present, else unusable (RecordError). An invalid pct=, adkim= or aspf=
    takes the default. np= and t= are DMARCbis's (RFC 9989): read here, honoured only when
    the policy follows it.
    """
    tags: dict[str, str] = {}
    for part in text.split(";")[1:]:
        name, eq, value = part.partition("=")
        name = name.strip().lower()
        if not eq or not name:
            if part.strip():
                raise RecordError(f"{part.strip()!r} is not a tag=value pair")
            continue
        tags.setdefault(name, value.strip())
    notes: list[str] = []
    rua_valid = any(_URI.fullmatch(uri.strip()) for uri in tags.get("rua", "").split(","))

    def request(tag: str) -> Disposition | None:
        value = tags.get(tag)
        if value is None:
            return None
        lowered = value.lower()
        if lowered in _REQUESTS:
            return lowered
        raise RecordError(f"{tag}={value!r} is not none, quarantine or reject")

    try:
        p = request("p")
        sp = request("sp")
        np = request("np")
        if p is None:
            raise RecordError("the record has no p= tag")
    except RecordError as exc:
        if not rua_valid:
            raise
        notes.append(f"{exc}; read as p=none for its valid rua= (RFC 7489 section 6.6.3)")
        p, sp, np = "none", None, None
    pct = 100
    if "pct" in tags:
        raw = tags["pct"]
        if raw.isascii() and raw.isdigit() and int(raw) <= 100:
            pct = int(raw)
        else:
            notes.append(f"pct={raw!r} is not 0-100; read as 100")
    modes: dict[str, Literal["r", "s"]] = {}
    for tag in ("adkim", "aspf"):
        value = tags.get(tag, "r").lower()
        if value not in ("r", "s"):
            notes.append(f"{tag}={tags[tag]!r} is not r or s; read as r")
            value = "r"
        modes[tag] = value  # type: ignore[assignment]
    testing = tags.get("t", "n").lower() == "y"
    return DmarcRecord(
        p=p,
        sp=sp,
        np=np,
        pct=pct,
        adkim=modes["adkim"],
        aspf=modes["aspf"],
        testing=testing,
        notes=tuple(notes),
    )


def sample(key: str) -> int:
    """0-99 from `key` (the Message-ID, or the session id without one): pct= sampling that
    gives the same answer for the same message in every run and every test."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()[:4]) % 100


class _Failure(Exception):
    """Policy discovery ended in a result other than a record (see `Dmarc._discover`)."""

    def __init__(self, outcome: str, result: DmarcResult, reason: str, at: str = "") -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.result = result
        self.reason = reason
        self.at = at


class Dmarc(Policy[DmarcOptions]):
    """Apply the RFC5322.From domain's DMARC policy (RFC 7489) at end of data.

    The From domain (RFC 7489 §6.6.1) must be one: a message whose From holds no address or
    several, or that has several From fields, is recorded as dmarc=permerror and left to
    `headers` (FROM_MISSING, FROM_INVALID, FROM_MULTIPLE) to refuse.

    Policy discovery (§6.6.3): TXT at `_dmarc.<From domain>`; records that do not start
    with `v=DMARC1` are dropped; when none is left, the same at the organisational domain
    (the Public Suffix List, §3.2). Several records left (or none) end discovery: two are
    DMARC_RECORD_INVALID, none DMARC_RECORD_MISSING. A lookup that fails temporarily is
    DMARC_TEMPERROR (deferred by default). A record without a valid p= (or with an invalid
    sp=) counts as p=none when it has a valid rua= (§6.6.3 step 6), else it is unusable
    (DMARC_RECORD_INVALID, result permerror). DMARCbis's DNS tree walk is not done: both
    specifications find the organisational domain by the Public Suffix List here.

    Alignment (§3.1): SPF's identifier is the MAIL FROM domain (the HELO name for the null
    sender) as the `spf` policy evaluated it (`session.auth.spf`, result pass), never a
    second evaluation; DKIM's is d= of each passing signature (`session.auth.dkim`).
    `aspf=`/`adkim=` choose relaxed (same organisational domain, the default) or strict
    (the same name). One aligned pass is a DMARC pass.

    The policy that applies: p= at the From domain's own record; sp= (else p=) when the
    record is the organisational domain's. With `follows: dmarcbis` (RFC 9989), np= (else
    sp=, else p=) for a From domain that does not exist (NXDOMAIN or no data for A, AAAA
    and MX), and t=y applies the policy one level down (reject as quarantine, quarantine
    as none); pct= is ignored. With `follows: rfc7489` (the default) np= and t= are
    ignored and pct= samples (§6.6.4): a message not sampled gets the next policy down.
    Sampling is reproducible: the SHA-256 of the Message-ID (the session id when there is
    none) modulo 100, compared with pct=.

    A failure is DMARC_REJECT (p=reject; refused by default, Gmail's 550 5.7.26 text),
    DMARC_QUARANTINE (accepted with a note by default; `quarantine: reject` refuses) or
    DMARC_NOT_ALIGNED (p=none; accepted with a note). Each outcome has its option
    (accept/defer/reject) as in `spf`: the option sets the reply's class, the catalogue
    its words. With `trusted_arc_sealers`, a failure of a message whose ARC chain passes
    (`session.auth.arc`) and whose newest seal is by a trusted domain is accepted with a
    note (RFC 7489 §6.7 local policy, RFC 8617 §7.2). Every evaluated message gets
    `session.auth.dmarc` (the Authentication-Results dmarc= result).

    RFC 5321 does not forbid these refusals; RFC 7489 §6.7 leaves them to the receiver,
    who "SHOULD" follow the published policy. Replies may use {domain} (the From domain).
    """

    name = "dmarc"
    summary = "DMARC (RFC 7489 / DMARCbis) policy of the From: domain, at end of data"
    stages = frozenset({Stage.EOD})
    Options = DmarcOptions
    requires: ClassVar[tuple[str, ...]] = ("spf", "dkim")
    outcomes: ClassVar[tuple[Outcome, ...]] = (
        Outcome(
            "DMARC_REJECT",
            FROM_CATALOGUE,
            "Neither SPF nor DKIM passes aligned with the From: domain, whose DMARC policy "
            "that applies is reject.",
            fields=DMARC_FIELDS,
        ),
        Outcome(
            "DMARC_QUARANTINE",
            FROM_CATALOGUE,
            "DMARC fails and the policy that applies is quarantine; accepted with a note "
            "unless the quarantine option refuses.",
            fields=DMARC_FIELDS,
        ),
        Outcome(
            "DMARC_NOT_ALIGNED",
            FROM_CATALOGUE,
            "DMARC fails under p=none: neither SPF nor DKIM passes aligned with the From: "
            "domain; accepted with a note unless the not_aligned option refuses.",
            fields=DMARC_FIELDS,
        ),
        Outcome(
            "DMARC_RECORD_MISSING",
            FROM_CATALOGUE,
            "Neither the From: domain nor its organisational domain publishes a DMARC "
            "record; accepted with a note unless the record_missing option refuses.",
            fields=DMARC_FIELDS,
        ),
        Outcome(
            "DMARC_RECORD_INVALID",
            FROM_CATALOGUE,
            "The From: domain's DMARC record cannot be used (two records, no valid p= and "
            "no valid rua=); accepted with a note unless the record_invalid option refuses.",
            fields=DMARC_FIELDS,
        ),
        Outcome(
            "DMARC_TEMPERROR",
            FROM_CATALOGUE,
            "The DMARC record lookup failed temporarily (SERVFAIL, timeout).",
            action=Action.DEFER,
            fields=DMARC_FIELDS,
        ),
    )

    @classmethod
    def reproduce(cls, req: Request) -> Build:
        """The From domain's DMARC record (and an SPF record that fails) giving the outcome;
        the message is unsigned, so DKIM cannot align. The From domain is the one the reply
        names, else the sender's; the MAIL FROM domain's SPF record fails either way."""
        sender_domain = domain_of(req.identity.mail_from)
        named = req.fields.get("domain", "").lower().rstrip(".")
        domain = named if is_name(named) else sender_domain
        outcome = req.outcome
        record = {
            "DMARC_REJECT": "v=DMARC1; p=reject",
            "DMARC_QUARANTINE": "v=DMARC1; p=quarantine",
            "DMARC_NOT_ALIGNED": "v=DMARC1; p=none",
            "DMARC_RECORD_INVALID": "v=DMARC1; p=block",
        }.get(outcome)
        records: dict[str, Any] = {sender_domain: {"TXT": "v=spf1 -all"}}
        if record is not None:
            records[f"_dmarc.{domain}"] = {"TXT": record}
        options: dict[str, Any] = {}
        option = {
            "DMARC_QUARANTINE": "quarantine",
            "DMARC_NOT_ALIGNED": "not_aligned",
            "DMARC_RECORD_MISSING": "record_missing",
            "DMARC_RECORD_INVALID": "record_invalid",
        }.get(outcome)
        if option is not None:
            options[option] = "reject"
        world = dns_world(records, servfail=[f"_dmarc.{domain}"])
        if outcome != "DMARC_TEMPERROR":
            world["dns"].pop("servfail")
        case: dict[str, Any] = {}
        if domain != sender_domain:
            local = req.identity.mail_from.rpartition("@")[0] or "alice"
            case["message"] = message(
                req.identity, header_lines(req.identity, From=f"<{local}@{domain}>")
            )
        return Build(
            options=options,
            world=world,
            case=case,
            # SPF fails but must not refuse at MAIL: DMARC is to decide, at end of data.
            requires={"spf": {"fail": "accept"}, "dkim": {}},
            bound={"domain": domain},
            notes=["spf runs with fail: accept, so its failure reaches dmarc unrefused"],
        )

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        if session.message is None:
            return None
        from_domain, problem = author_domain(session.message)
        if from_domain is None:
            session.auth.dmarc = DmarcAuth("permerror", "", reason=problem)
            return None
        try:
            record, at = await self._discover(from_domain, ctx)
        except _Failure as failure:
            session.auth.dmarc = DmarcAuth(
                failure.result, from_domain, record_domain=failure.at, reason=failure.reason
            )
            return self._judge(failure.outcome, failure.reason, stage, session, ctx, from_domain)
        spf_id, dkim_ids = _identifiers(session)
        spf_ok = spf_id is not None and aligned(spf_id, from_domain, record.aspf)
        dkim_ok = [d for d in dkim_ids if aligned(d, from_domain, record.adkim)]
        if spf_ok or dkim_ok:
            session.auth.dmarc = DmarcAuth(
                "pass",
                from_domain,
                record_domain=at,
                policy=record.p,
                aligned=",".join(n for n, ok in (("spf", spf_ok), ("dkim", dkim_ok)) if ok),
            )
            return None
        try:
            policy, which = await self._applicable(record, from_domain, at, ctx)
        except TempFail as exc:
            reason = f"checking whether {from_domain} exists failed temporarily ({exc.kind})"
            session.auth.dmarc = DmarcAuth("temperror", from_domain, at, reason=reason)
            return self._judge("DMARC_TEMPERROR", reason, stage, session, ctx, from_domain)
        disposition, how = self._sampled(record, policy, session)
        why = _why_not(spf_id, dkim_ids, from_domain, record)
        reason = (
            f"DMARC of {from_domain} fails ({why}); the record at _dmarc.{at} asks "
            f"{which}={policy}{how}"
        )
        if record.notes:
            reason += " [" + "; ".join(record.notes) + "]"
        sealer = self._trusted_sealer(session)
        session.auth.dmarc = DmarcAuth(
            "fail",
            from_domain,
            record_domain=at,
            policy=policy,
            disposition="none" if sealer else disposition,
            reason=why,
        )
        outcome = {
            "reject": "DMARC_REJECT",
            "quarantine": "DMARC_QUARANTINE",
            "none": "DMARC_NOT_ALIGNED",
        }[disposition]
        if sealer:
            return self.note(
                outcome,
                stage,
                f"{reason}; accepted: the ARC chain passes and its newest seal is by "
                f"{sealer}, a trusted sealer",
                domain=from_domain,
                arc_sealer=sealer,
            )
        return self._judge(outcome, reason, stage, session, ctx, from_domain)

    async def _discover(self, from_domain: str, ctx: Context) -> tuple[DmarcRecord, str]:
        """(record, the domain it was found at) by RFC 7489 §6.6.3; _Failure otherwise."""
        org = organisational_domain(from_domain)
        for at in dict.fromkeys((from_domain, org)):
            name = f"_dmarc.{at}"
            try:
                texts = await ctx.dns.txt(name)
            except TempFail as exc:
                raise _Failure(
                    "DMARC_TEMPERROR",
                    "temperror",
                    f"the DMARC record lookup of {name} failed temporarily ({exc.kind})",
                    at,
                ) from None
            records = [t.strip() for t in texts if _VERSION.match(t.strip())]
            if not records:
                continue
            if len(records) > 1:
                raise _Failure(
                    "DMARC_RECORD_INVALID",
                    "permerror",
                    f"{name} has {len(records)} v=DMARC1 records, so RFC 7489 section 6.6.3 "
                    "applies no DMARC policy then",
                    at,
                )
            try:
                return parse_record(records[0]), at
            except RecordError as exc:
                raise _Failure(
                    "DMARC_RECORD_INVALID",
                    "permerror",
                    f"the DMARC record at {name} cannot be used: {exc} (and it has no valid rua=)",
                    at,
                ) from None
        where = f"_dmarc.{from_domain}" + (f" nor _dmarc.{org}" if org != from_domain else "")
        raise _Failure("DMARC_RECORD_MISSING", "none", f"no DMARC record at {where}")

    async def _applicable(
        self, record: DmarcRecord, from_domain: str, at: str, ctx: Context
    ) -> tuple[Disposition, str]:
        """(the policy, the tag it came from) for `from_domain` under the record at `at`."""
        if at == from_domain:
            return record.p, "p"
        if (
            self.options.follows == "dmarcbis"
            and record.np is not None
            and not await _exists(from_domain, ctx)
        ):
            return record.np, "np"
        if record.sp is not None:
            return record.sp, "sp"
        return record.p, "p"

    def _sampled(
        self, record: DmarcRecord, policy: Disposition, session: Session
    ) -> tuple[Disposition, str]:
        """The disposition after pct= (RFC 7489) or t= (DMARCbis), and how it was reached."""
        if self.options.follows == "dmarcbis":
            if record.testing and policy != "none":
                return _LOWER[policy], f", in testing mode (t=y): applied as {_LOWER[policy]}"
            return policy, ""
        if record.pct >= 100 or policy == "none":
            return policy, ""
        key = _message_id(session) or session.id
        drawn = sample(key)
        if drawn < record.pct:
            return policy, f" (sampled: {drawn} < pct={record.pct})"
        lower = _LOWER[policy]
        return lower, f", not sampled ({drawn} >= pct={record.pct}): applied as {lower}"

    def _trusted_sealer(self, session: Session) -> str | None:
        arc = session.auth.arc
        trusted = self.options.trusted_arc_sealers
        if not trusted or arc is None or arc.result != "pass" or not arc.sealers:
            return None
        newest = arc.sealers[-1].lower().rstrip(".")
        return newest if newest in trusted else None

    def _judge(
        self,
        outcome: str,
        reason: str,
        stage: Stage,
        session: Session,
        ctx: Context,
        from_domain: str,
    ) -> Verdict | None:
        option = {
            "DMARC_REJECT": self.options.reject,
            "DMARC_QUARANTINE": self.options.quarantine,
            "DMARC_NOT_ALIGNED": self.options.not_aligned,
            "DMARC_RECORD_MISSING": self.options.record_missing,
            "DMARC_RECORD_INVALID": self.options.record_invalid,
            "DMARC_TEMPERROR": self.options.temperror,
        }[outcome]
        if option == "accept":
            return self.note(outcome, stage, f"{reason}; accepted", domain=from_domain)
        return self.verdict(
            outcome, stage, session, ctx, reason, refuse_as=option, domain=from_domain
        )


# -- reading the message and the other policies' results --------------------------------


def _identifiers(session: Session) -> tuple[str | None, list[str]]:
    """(SPF's passing identifier, the d= of each passing DKIM signature)."""
    identity = "mailfrom" if session.mail_from else "helo"
    spf = next(
        (s.domain for s in session.auth.spf if s.identity == identity and s.result == "pass"),
        None,
    )
    dkim = [s.domain for s in session.auth.dkim or () if s.result == "pass" and s.domain]
    return spf, dkim


def _why_not(spf: str | None, dkim: list[str], from_domain: str, record: DmarcRecord) -> str:
    spf_text = (
        f"SPF passes for {spf}, not aligned ({'strict' if record.aspf == 's' else 'relaxed'})"
        if spf
        else "SPF does not pass"
    )
    dkim_text = (
        f"DKIM passes for d={', d='.join(dkim)}, not aligned "
        f"({'strict' if record.adkim == 's' else 'relaxed'})"
        if dkim
        else "no DKIM signature passes"
    )
    # No "; " in it: it becomes the Authentication-Results reason, folded at "; ".
    return f"{spf_text}, and {dkim_text} with {from_domain}"


def _message_id(session: Session) -> str:
    if session.message is None:
        return ""
    ids = header_of(session.message).get("message-id")
    return ids[0].value.strip() if ids else ""


async def _exists(domain: str, ctx: Context) -> bool:
    """DMARCbis: a domain exists unless A, AAAA and MX all answer NXDOMAIN or no data."""
    for rdtype in ("A", "AAAA", "MX"):
        try:
            await ctx.dns.resolve(domain, rdtype)
        except NXDomain:
            return False
        except NoData:
            continue
        return True
    return False
