"""dkim: does a DKIM signature of the message verify (RFC 6376, RFC 8301, RFC 8463)?"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

import dkim as dkimpy  # untyped: see the mypy override in pyproject
from dkim.util import InvalidTagValueList, parse_tag_value
from pydantic import Field

from strictmx.receiver import dkim_rsa
from strictmx.receiver.authentication import DkimAuth, DkimResult
from strictmx.receiver.dkim_signing import ed25519_key, sign
from strictmx.receiver.outcome import HOST, RESULT, TEXT, TOKEN
from strictmx.receiver.policy import FROM_CATALOGUE, Context, Outcome, Policy, PolicyOptions
from strictmx.receiver.reproduction import CLOCK, Build, Identity, Request, domain_of, message
from strictmx.receiver.session import Session
from strictmx.receiver.verdict import Action, Reply, Stage, Verdict
from strictmx.receiver.world.dkim_keys import KeyLookup, fetch_keys, key_name

# RSA checked by OpenSSL rather than dkimpy's pure-Python arithmetic (see dkim_rsa).
dkim_rsa.install()

Handling = Literal["reject", "defer", "accept"]

#: What every DKIM reply may name: the signature that decided (d=, s=), its result
#: keyword (RFC 8601 §2.7.1) and why it did not pass.
DKIM_FIELDS = {
    "dkim_domain": HOST,
    "dkim_selector": TOKEN,
    "dkim_result": RESULT,
    "dkim_reason": TEXT,
}

#: a= values dkimpy verifies; rsa-sha1 is refused by RFC 8301 §3.1 before it is verified.
_ALGORITHMS = {"rsa-sha256": "rsa", "ed25519-sha256": "ed25519"}
_REFUSED_ALGORITHMS = {"rsa-sha1"}
#: Messages larger than this are verified in a worker thread: hashing a body of megabytes
#: would hold up every other session on the event loop.
_THREAD_ABOVE = 256 * 1024
_MANDATORY = (b"v", b"a", b"b", b"bh", b"d", b"h", b"s")
_KEYS_MAX = 1000
#: What a signature over `max_signatures` gets instead of an outcome: it never decides,
#: since the topmost signature (or a temporary failure among those verified) does.
_NOT_VERIFIED = "not verified"


def _handling(description: str) -> Any:
    return Field(None, description=description + " Unset: the `failure` option.")


class DkimOptions(PolicyOptions):
    failure: Handling = Field(
        "accept",
        description="What a message without a passing signature does, for every outcome whose "
        "own option is unset (RFC 6376 §6.3: a failed signature is like none; accept).",
    )
    none: Handling | None = _handling("What a message without any DKIM-Signature does.")
    body_hash: Handling | None = _handling("What a body hash (bh=) mismatch does.")
    bad_signature: Handling | None = _handling("What a header signature (b=) mismatch does.")
    key_not_found: Handling | None = _handling("What a signature whose key is not in DNS does.")
    key_revoked: Handling | None = _handling("What a signature whose key has an empty p= does.")
    key_too_weak: Handling | None = _handling("What an RSA key under min_key_bits does.")
    algorithm_refused: Handling | None = _handling("What rsa-sha1 or an unknown a= does.")
    expired: Handling | None = _handling("What a signature past its x= (scenario clock) does.")
    header_not_signed: Handling | None = _handling(
        "What a signature that does not cover every must_sign header does."
    )
    malformed: Handling | None = _handling("What an unparsable signature or key record does.")
    temperror: Handling | None = Field(
        None,
        description="What a temporary key lookup failure does. Unset: accept while `failure` "
        "is accept, else defer (a later try may find the key).",
    )
    body_length: Literal["note", "refuse"] = Field(
        "note",
        description="A signature with l= (RFC 6376 §8.2: the body may be appended to): note "
        "it and let it pass, or refuse it (the signature does not pass; handled as reject).",
    )
    must_sign: tuple[str, ...] = Field(
        ("from",),
        description="Header fields a passing signature must cover in h= (RFC 6376 §5.4: "
        "From always; add list-unsubscribe, list-unsubscribe-post for bulk mail).",
    )
    min_key_bits: int = Field(
        1024, ge=0, description="Smallest RSA key accepted (RFC 8301 §3.2: at least 1024)."
    )
    max_signatures: int = Field(
        10,
        ge=1,
        description="Signatures verified per message, topmost first; the others are recorded "
        "as neutral, not looked up (RFC 6376 §8.4: limit the verification work).",
    )


@dataclass(frozen=True)
class SignatureCheck:
    """One DKIM-Signature's verification: its outcome (None: it passed) and its result."""

    outcome: str | None
    auth: DkimAuth


@dataclass
class _Pending:
    """A signature that survived the checks made without its key: it waits for the key."""

    index: int
    header: tuple[bytes, bytes]
    tags: dict[bytes, bytes]
    auth: DkimAuth
    name: str


class Dkim(Policy[DkimOptions]):
    """Verify every DKIM-Signature of the message (RFC 6376 §6), at end of data.

    Each signature is verified by dkimpy (canonicalisation, body hash, rsa-sha256 and
    ed25519-sha256 per RFC 8463), with its key fetched first from the world's DNS at
    `<s>._domainkey.<d>` (`ctx.dns`: hermetic, overlay and system modes, scripted SERVFAIL
    and timeouts apply) and handed to dkimpy from memory, so dkimpy opens no socket. x= is
    judged by the scenario's clock (`ctx.clock`), not the machine's; a t= in the future is
    not refused (RFC 6376 §3.5: verifiers MAY ignore it).

    The checks of one signature, in order, the first that fails giving its outcome: the
    tag list parses and has every required tag (DKIM_MALFORMED); a= is rsa-sha256 or
    ed25519-sha256 (DKIM_ALGORITHM_REFUSED: rsa-sha1 per RFC 8301 §3.1, refused without
    verifying it, or an unknown algorithm); x= not past (DKIM_EXPIRED); the key lookup
    (DKIM_TEMPERROR, DKIM_KEY_NOT_FOUND); the key record (DKIM_KEY_REVOKED for `p=`,
    DKIM_MALFORMED for one that cannot be read or does not suit a=, DKIM_ALGORITHM_REFUSED
    when its h= excludes the hash); the RSA key's size (DKIM_KEY_TOO_WEAK under
    `min_key_bits`, RFC 8301 §3.2); the body hash (DKIM_BODY_HASH); the header signature
    (DKIM_BAD_SIGNATURE); then, for a signature that verified, l= (DKIM_BODY_LENGTH when
    `body_length: refuse`) and h= covering every `must_sign` header
    (DKIM_HEADER_NOT_SIGNED).

    The message passes when one signature passes, and gets no verdict; when every passing
    signature has l=, a note (DUNNO) records DKIM_BODY_LENGTH in the journal. At most
    `max_signatures` are verified, topmost first; the rest are recorded as neutral.
    When none passes, the outcome is the first signature's in header order (the topmost,
    normally the last added, by the sender's own signer), except that a temporary failure
    of any signature gives DKIM_TEMPERROR, since a later try could find that signature
    valid. No signature at all is DKIM_NONE. Every signature's result is recorded on
    `session.auth.dkim` (RFC 8601 keywords: pass, fail, policy, neutral, permerror,
    temperror) for dmarc, bulk_sender and the Authentication-Results header.

    Handling: each outcome's option says `accept`, `defer` or `reject`; unset, `failure`
    decides (default accept, as RFC 6376 §6.3 wants a failed signature treated like none:
    refusing is a receiver's own policy, turned on by a persona). temperror, unset, follows
    `failure` but as defer. As in spf, the reply gives the words and the option the class.

    Default replies: RFC 7372's X.7.20 "No passing DKIM signature found" (failures of the
    signature), X.7.21 "No acceptable DKIM signature found" (signatures refused by local
    policy: weak keys, rsa-sha1, l=, unsigned headers), Stalwart's "No passing DKIM
    signatures found." for none. Replies may name {dkim_domain}, {dkim_selector},
    {dkim_result} and {dkim_reason}.

    RFC 5321 does not forbid these refusals; RFC 6376 §6.3 advises treating a failed
    signature as absent, which the defaults follow.
    """

    name = "dkim"
    summary = "DKIM signatures (RFC 6376): verified, with keys from the world's DNS"
    stages = frozenset({Stage.EOD})
    Options = DkimOptions
    outcomes: ClassVar[tuple[Outcome, ...]] = (
        Outcome(
            "DKIM_NONE",
            FROM_CATALOGUE,
            "The message carries no DKIM-Signature; refused only when the none option asks.",
            fields=DKIM_FIELDS,
        ),
        Outcome(
            "DKIM_BODY_HASH",
            FROM_CATALOGUE,
            "The body hash (bh=) does not match the body: the body changed after signing.",
            fields=DKIM_FIELDS,
        ),
        Outcome(
            "DKIM_BAD_SIGNATURE",
            FROM_CATALOGUE,
            "The header signature (b=) does not verify: a signed header changed, or the "
            "key does not match the signing key.",
            fields=DKIM_FIELDS,
        ),
        Outcome(
            "DKIM_KEY_NOT_FOUND",
            FROM_CATALOGUE,
            "No key record at <selector>._domainkey.<domain> (NXDOMAIN or no TXT).",
            fields=DKIM_FIELDS,
        ),
        Outcome(
            "DKIM_KEY_REVOKED",
            FROM_CATALOGUE,
            "The key record has an empty p= (RFC 6376 §3.6.1: the key is revoked).",
            fields=DKIM_FIELDS,
        ),
        Outcome(
            "DKIM_KEY_TOO_WEAK",
            FROM_CATALOGUE,
            "The RSA key is shorter than the minimum (RFC 8301 §3.2: 1024 bits).",
            fields=DKIM_FIELDS,
        ),
        Outcome(
            "DKIM_ALGORITHM_REFUSED",
            FROM_CATALOGUE,
            "The signature uses rsa-sha1 (RFC 8301 §3.1) or an algorithm not known.",
            fields=DKIM_FIELDS,
        ),
        Outcome(
            "DKIM_EXPIRED",
            FROM_CATALOGUE,
            "The signature's x= expiry is in the past by the receiver's clock.",
            fields=DKIM_FIELDS,
        ),
        Outcome(
            "DKIM_BODY_LENGTH",
            FROM_CATALOGUE,
            "The signature covers only part of the body (l=); refused only when the "
            "body_length option asks.",
            fields=DKIM_FIELDS,
        ),
        Outcome(
            "DKIM_HEADER_NOT_SIGNED",
            FROM_CATALOGUE,
            "A header field the receiver requires signed (From, List-Unsubscribe) is not in h=.",
            fields=DKIM_FIELDS,
        ),
        Outcome(
            "DKIM_MALFORMED",
            FROM_CATALOGUE,
            "A DKIM-Signature or its key record cannot be parsed (permerror).",
            fields=DKIM_FIELDS,
        ),
        Outcome(
            "DKIM_TEMPERROR",
            FROM_CATALOGUE,
            "The key lookup failed temporarily (SERVFAIL, timeout).",
            action=Action.DEFER,
            fields=DKIM_FIELDS,
        ),
    )

    @classmethod
    def reproduce(cls, req: Request) -> Build:
        """A message signed by a key of the reproduction's own, changed or published so
        that the outcome fires (see `_reproduction`)."""
        domain = req.fields.get("dkim_domain") or domain_of(req.identity.mail_from)
        selector = req.fields.get("dkim_selector") or "s2024"
        handling = "reject" if req.entry.template.code >= 500 else "defer"
        return _reproduction(req.entry.outcome, req.identity, domain, selector, handling)

    def __init__(self, options: DkimOptions, replies: Mapping[str, Reply] | None = None) -> None:
        super().__init__(options, replies)
        self._must_sign = {h.lower() for h in options.must_sign}
        #: key record text -> (public key, bits, key type, tlsrpt), as dkimpy reads it
        self._keys: dict[str, tuple[Any, int, bytes, bool]] = {}

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        if session.message is None:
            return None
        checks = await self.verify(session.message, ctx)
        session.auth.dkim = [c.auth for c in checks]
        passing = [c.auth for c in checks if c.outcome is None]
        if passing:
            if all(a.body_length is not None for a in passing):
                # body_length: note. Accepted, but the journal says what l= leaves open.
                sig = passing[0]
                return self.note(
                    "DKIM_BODY_LENGTH",
                    stage,
                    f"DKIM passes by a signature covering only the first {sig.body_length} "
                    f"octets of the body (l=, d={sig.domain}, s={sig.selector})",
                    dkim_domain=sig.domain,
                    dkim_selector=sig.selector,
                )
            return None
        if not checks:
            decisive = SignatureCheck("DKIM_NONE", DkimAuth("none", "", reason="no signature"))
        else:
            temporary = [c for c in checks if c.outcome == "DKIM_TEMPERROR"]
            decisive = temporary[0] if temporary else checks[0]
        return self._judge(decisive, checks, stage, session, ctx)

    async def verify(self, message: bytes, ctx: Context) -> list[SignatureCheck]:
        """Every DKIM-Signature's check, in header order ([] when there is none)."""
        try:
            verifier = dkimpy.DKIM(message, minkey=0)
        except dkimpy.DKIMException as exc:
            if re.search(rb"(?im)^dkim-signature[ \t]*:", message):
                auth = DkimAuth("permerror", "", reason=f"message header unreadable: {exc}")
                return [SignatureCheck("DKIM_MALFORMED", auth)]
            return []
        headers = [
            (bytes(n), bytes(v)) for n, v in verifier.headers if n.lower() == b"dkim-signature"
        ]
        now = int(ctx.clock.now().timestamp())
        done: dict[int, SignatureCheck] = {}
        pending: list[_Pending] = []
        limit = self.options.max_signatures
        for index, header in enumerate(headers):
            if index >= limit:
                auth = replace(_described_header(header), result="neutral")
                reason = f"not verified: over the limit of {limit} signatures"
                done[index] = SignatureCheck(_NOT_VERIFIED, replace(auth, reason=reason))
                continue
            first = self._before_key(index, header, now)
            if isinstance(first, SignatureCheck):
                done[index] = first
            else:
                pending.append(first)
        keys = await fetch_keys(ctx.dns, [p.name for p in pending])
        if pending:
            if len(message) > _THREAD_ABOVE:
                after = await asyncio.to_thread(self._with_keys, verifier, pending, keys)
            else:
                after = self._with_keys(verifier, pending, keys)
            done.update(after)
        return [done[i] for i in range(len(headers))]

    # -- one signature ----------------------------------------------------------------------

    def _before_key(
        self, index: int, header: tuple[bytes, bytes], now: int
    ) -> SignatureCheck | _Pending:
        """What can be decided without the key: syntax, algorithm, expiry."""
        try:
            tags = parse_tag_value(header[1])
        except InvalidTagValueList as exc:
            return _failed("DKIM_MALFORMED", DkimAuth("permerror", ""), f"unparsable: {exc}")
        auth = _described(tags)
        missing = [t.decode() for t in _MANDATORY if t not in tags]
        if missing:
            return _failed("DKIM_MALFORMED", auth, "missing " + ", ".join(f"{t}=" for t in missing))
        algorithm = auth.algorithm
        if algorithm in _REFUSED_ALGORITHMS:
            return _failed("DKIM_ALGORITHM_REFUSED", auth, f"{algorithm} refused (RFC 8301)")
        if algorithm not in _ALGORITHMS:
            return _failed("DKIM_ALGORITHM_REFUSED", auth, f"unknown algorithm {algorithm!r}")
        # dkimpy's own field checks, without t= and x=: it judges those by the machine's
        # clock, and the scenario's clock must decide.
        try:
            dkimpy.validate_signature_fields(
                {k: v for k, v in tags.items() if k not in (b"t", b"x")}
            )
        except dkimpy.DKIMException as exc:
            return _failed("DKIM_MALFORMED", auth, str(exc))
        times = {t: tags[t] for t in (b"t", b"x") if t in tags}
        if any(not v.isdigit() for v in times.values()):
            return _failed("DKIM_MALFORMED", auth, "t= or x= is not a decimal number")
        if b"x" in times:
            expires = int(times[b"x"])
            if b"t" in times and expires < int(times[b"t"]):
                return _failed("DKIM_MALFORMED", auth, "x= is before t=")
            if expires < now:
                return _failed("DKIM_EXPIRED", auth, f"signature expired (x={expires})", "fail")
        return _Pending(index, header, tags, auth, key_name(auth.selector, auth.domain))

    def _with_keys(
        self, verifier: Any, pending: Sequence[_Pending], keys: Mapping[str, KeyLookup]
    ) -> dict[int, SignatureCheck]:
        """The checks that need the key and the cryptography; sans-IO, maybe in a thread."""
        return {p.index: self._with_key(verifier, p, keys[p.name]) for p in pending}

    def _with_key(self, verifier: Any, sig: _Pending, key: KeyLookup) -> SignatureCheck:
        auth = sig.auth
        if key.temporary:
            reason = f"key lookup of {key.name} failed temporarily ({key.temporary})"
            return _failed("DKIM_TEMPERROR", auth, reason, "temperror")
        record = key.record
        if record is None:
            return _failed("DKIM_KEY_NOT_FOUND", auth, f"no key record at {key.name}")
        try:
            key_tags = parse_tag_value(record.encode("ascii", "replace"))
        except InvalidTagValueList as exc:
            return _failed("DKIM_MALFORMED", auth, f"key record unparsable: {exc}")
        if b"p" not in key_tags:
            return _failed("DKIM_MALFORMED", auth, f"key record at {key.name} has no p=")
        if not re.sub(rb"\s+", b"", key_tags[b"p"]):
            return _failed("DKIM_KEY_REVOKED", auth, f"key at {key.name} revoked (empty p=)")
        key_type = key_tags.get(b"k", b"rsa").decode("ascii", "replace")
        if key_type != _ALGORITHMS[auth.algorithm]:
            reason = f"key type k={key_type} does not suit a={auth.algorithm}"
            return _failed("DKIM_MALFORMED", auth, reason)
        if b"h" in key_tags:
            allowed = [h.strip() for h in key_tags[b"h"].split(b":")]
            if b"sha256" not in allowed:
                reason = f"the key allows only h={key_tags[b'h'].decode('ascii', 'replace')}"
                return _failed("DKIM_ALGORITHM_REFUSED", auth, reason)
        try:
            public, bits, ktag, tlsrpt = self._public_key(key.name, record)
        except (dkimpy.DKIMException, ValueError, UnicodeError) as exc:
            return _failed("DKIM_MALFORMED", auth, f"key record unusable: {exc}")
        auth = replace(auth, key_bits=bits)
        if ktag == b"rsa" and bits < self.options.min_key_bits:
            reason = f"{bits}-bit key under {self.options.min_key_bits} (RFC 8301)"
            return _failed("DKIM_KEY_TOO_WEAK", auth, reason, "policy")
        verifier.pk, verifier.keysize, verifier.ktag, verifier.seqtlsrpt = (
            public,
            bits,
            ktag,
            tlsrpt,
        )
        included = [h.lower() for h in re.split(rb"\s*:\s*", sig.tags[b"h"].strip())]
        try:
            valid = verifier.verify_sig_process(dict(sig.tags), list(included), sig.header, None)
        except dkimpy.ValidationError as exc:
            if str(exc).startswith("body hash mismatch"):
                return _failed("DKIM_BODY_HASH", auth, "body hash did not verify", "fail")
            return _failed("DKIM_MALFORMED", auth, str(exc))
        except (dkimpy.DKIMException, ValueError, TypeError, IndexError) as exc:
            return _failed("DKIM_MALFORMED", auth, f"cannot verify: {exc}")
        if not valid:
            return _failed("DKIM_BAD_SIGNATURE", auth, "signature did not verify", "fail")
        if auth.body_length is not None and self.options.body_length == "refuse":
            reason = f"l={auth.body_length}: the signature covers part of the body only"
            return _failed("DKIM_BODY_LENGTH", auth, reason, "policy")
        unsigned = sorted(self._must_sign - set(auth.signed_headers))
        if unsigned:
            reason = "h= does not cover " + ", ".join(unsigned)
            return _failed("DKIM_HEADER_NOT_SIGNED", auth, reason, "policy")
        return SignatureCheck(None, replace(auth, result="pass"))

    def _public_key(self, name: str, record: str) -> tuple[Any, int, bytes, bool]:
        """dkimpy's reading of a key record, kept: a staging MTA signs every message with
        the same key, and reading it (ASN.1 in pure Python) costs as much as hashing."""
        found = self._keys.get(record)
        if found is None:
            found = dkimpy.evaluate_pk(name, record.encode("ascii"))
            if len(self._keys) >= _KEYS_MAX:
                self._keys.clear()
            self._keys[record] = found
        return found

    # -- the verdict ------------------------------------------------------------------------

    def _handling(self, outcome: str) -> Handling:
        if outcome == "DKIM_BODY_LENGTH":
            return "reject"  # only reached with body_length: refuse
        own: Handling | None = getattr(self.options, outcome.removeprefix("DKIM_").lower())
        if own is not None:
            return own
        if outcome == "DKIM_TEMPERROR":
            return "accept" if self.options.failure == "accept" else "defer"
        return self.options.failure

    def _judge(
        self,
        decisive: SignatureCheck,
        checks: Sequence[SignatureCheck],
        stage: Stage,
        session: Session,
        ctx: Context,
    ) -> Verdict | None:
        assert decisive.outcome is not None
        handling = self._handling(decisive.outcome)
        if handling == "accept":
            return None
        sig = decisive.auth
        if checks:
            which = f"signature {checks.index(decisive) + 1} of {len(checks)}"
            reason = f"no DKIM signature passed; {which} (d={sig.domain}, s={sig.selector}): "
            reason += sig.reason
        else:
            reason = "the message carries no DKIM-Signature"
        return self.verdict(
            decisive.outcome,
            stage,
            session,
            ctx,
            reason,
            refuse_as=handling,
            dkim_domain=sig.domain,
            dkim_selector=sig.selector,
            dkim_result=sig.result,
            dkim_reason=sig.reason,
        )


def _described_header(header: tuple[bytes, bytes]) -> DkimAuth:
    try:
        return _described(parse_tag_value(header[1]))
    except InvalidTagValueList:
        return DkimAuth("permerror", "")


def _described(tags: Mapping[bytes, bytes]) -> DkimAuth:
    """The signature's identity as Authentication-Results shows it, before any check."""

    def text(tag: bytes) -> str:
        return re.sub(r"\s+", "", tags.get(tag, b"").decode("ascii", "replace"))

    length = text(b"l")
    return DkimAuth(
        "permerror",
        text(b"d").lower(),
        selector=text(b"s"),
        algorithm=text(b"a").lower(),
        header_b=text(b"b")[:8],
        signed_headers=tuple(h for h in text(b"h").lower().split(":") if h),
        body_length=int(length) if length.isdigit() else None,
    )


def _failed(
    outcome: str, auth: DkimAuth, reason: str, result: DkimResult = "permerror"
) -> SignatureCheck:
    if outcome in ("DKIM_ALGORITHM_REFUSED",) and auth.algorithm in _REFUSED_ALGORITHMS:
        result = "policy"
    return SignatureCheck(outcome, replace(auth, result=result, reason=reason))


# -- reproductions ------------------------------------------------------------------------------

#: The reproductions' signing key: Ed25519 from a fixed seed, so a reproduction is the same
#: every time it is written (Ed25519 signatures are deterministic).
_REPRODUCTION_SEED = b"strictmx reproduces a DKIM check"
#: A 512-bit RSA public key, published where a reproduction needs a key too weak: the size
#: is judged before any signature is verified, so no private key goes with it.
_WEAK_KEY = (
    "v=DKIM1; k=rsa; p=MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAL+ZtEu0rX3ex51uZhQ6C0zncbUJc9LvPQtY28"
    "MhcsF+D3LwVtIiAp7x31N+PjZaRB7wlEB9Pd9fnwh/wAoS7aECAwEAAQ=="
)
#: A signature whose b= and bh= are never checked: for outcomes decided before them.
_UNCHECKED = "v=1; a={a}; c=relaxed/relaxed; d={d}; s={s}; t={t}; h=from:to:subject; bh={bh}; b={b}"


def _reproduction(
    outcome: str, identity: Identity, domain: str, selector: str, handling: str
) -> Build:
    key = ed25519_key(_REPRODUCTION_SEED)
    name = key_name(selector, domain)
    text = message(identity)
    raw = text.replace("\n", "\r\n").encode()
    signed_at = int(CLOCK.timestamp()) - 120
    records: dict[str, Any] = {name: {"TXT": key.record}}
    world: dict[str, Any] = {"clock": {"fixed": CLOCK.isoformat()}}
    options: dict[str, Any] = {outcome.removeprefix("DKIM_").lower(): handling}
    notes: list[str] = []

    def signed(**how: Any) -> bytes:
        return sign(raw, selector, domain, key, timestamp=signed_at, **how) + raw

    def unchecked(algorithm: str = "rsa-sha256") -> bytes:
        fake = "A" * 64
        tags = _UNCHECKED.format(a=algorithm, d=domain, s=selector, t=signed_at, bh=fake, b=fake)
        return f"DKIM-Signature: {tags}\r\n".encode() + raw

    if outcome == "DKIM_NONE":
        sent = raw
    elif outcome == "DKIM_BODY_HASH":
        sent = signed() + b"A line added after signing.\r\n"
    elif outcome == "DKIM_BAD_SIGNATURE":
        sent = signed().replace(b"\r\nSubject: ", b"\r\nSubject: Re: ", 1)
    elif outcome == "DKIM_KEY_NOT_FOUND":
        sent, records = signed(), {}
    elif outcome == "DKIM_KEY_REVOKED":
        sent, records = signed(), {name: {"TXT": "v=DKIM1; k=ed25519; p="}}
    elif outcome == "DKIM_KEY_TOO_WEAK":
        sent, records = unchecked(), {name: {"TXT": _WEAK_KEY}}
        notes.append("the published key is a 512-bit RSA key, under RFC 8301's 1024")
    elif outcome == "DKIM_ALGORITHM_REFUSED":
        sent = unchecked("rsa-sha1")
    elif outcome == "DKIM_EXPIRED":
        sent = signed(expires=signed_at + 60)  # a minute before the receiver's clock
    elif outcome == "DKIM_BODY_LENGTH":
        sent = signed(length=True)
        options = {"body_length": "refuse"}
    elif outcome == "DKIM_HEADER_NOT_SIGNED":
        sent = signed(headers=("to", "subject", "date", "message-id"))
    elif outcome == "DKIM_MALFORMED":
        sent = f"DKIM-Signature: v=1; a=rsa-sha256; d={domain}; s={selector}\r\n".encode() + raw
    else:  # DKIM_TEMPERROR
        sent, records = signed(), {}
        world["dns"] = {"mode": "hermetic", "servfail": [name]}
    world.setdefault("dns", {"mode": "hermetic"})
    if records:
        world["dns"]["records"] = records
    return Build(
        options=options,
        world=world,
        case={"message": sent.decode().replace("\r\n", "\n")},
        bound={"dkim_domain": domain, "dkim_selector": selector},
        notes=notes,
    )
