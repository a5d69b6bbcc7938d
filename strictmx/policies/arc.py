"""arc: does the message's ARC chain validate (RFC 8617)?"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import dkim as dkimpy  # untyped: see the mypy override in pyproject
from dkim.util import InvalidTagValueList, parse_tag_value
from pydantic import Field

from strictmx.receiver import dkim_rsa
from strictmx.receiver.authentication import ArcAuth
from strictmx.receiver.message import header_of
from strictmx.receiver.outcome import NUMBER, RESULT, TEXT
from strictmx.receiver.policy import FROM_CATALOGUE, Context, Outcome, Policy, PolicyOptions
from strictmx.receiver.reproduction import Build, Request, domain_of, message
from strictmx.receiver.session import Session
from strictmx.receiver.verdict import Action, Stage, Verdict
from strictmx.receiver.world.dkim_keys import KeyLookup, answering, fetch_keys, key_name

# RSA checked by OpenSSL rather than dkimpy's pure-Python arithmetic (see dkim_rsa).
dkim_rsa.install()

Handling = Literal["reject", "defer", "accept"]

ARC_FIELDS = {"arc_result": RESULT, "arc_reason": TEXT, "arc_instances": NUMBER}
#: See dkim: hashing a large body on the event loop would hold up every session.
_THREAD_ABOVE = 256 * 1024
_ARC_SEAL = b"arc-seal"
#: RFC 8617 §4.2.1: i= is 1 to 50.
_MAX_INSTANCES = 50
_SIGNING_FIELDS = (_ARC_SEAL, b"arc-message-signature")


class ArcOptions(PolicyOptions):
    fail: Handling = Field(
        "accept",
        description="What an invalid chain (cv=fail, a broken seal or message signature) "
        "does; RFC 8617 leaves it to the receiver's local policy, so accept.",
    )
    temperror: Handling = Field(
        "defer",
        description="What a chain whose keys could not be looked up (SERVFAIL, timeout) "
        "does: the chain may rescue a forwarded message's DMARC, so wait for it.",
    )
    min_key_bits: int = Field(
        1024, ge=0, description="Smallest RSA key a seal or message signature may use."
    )


class Arc(Policy[ArcOptions]):
    """Validate the message's ARC chain (RFC 8617 §5.2), at end of data.

    dkimpy validates: every ARC set complete and numbered 1..N, the newest
    ARC-Message-Signature valid, every ARC-Seal valid, cv=none on the first and pass on
    the others. The keys of every seal and message signature are fetched first from the
    world's DNS (`ctx.dns`) and handed to dkimpy from memory, so it opens no socket.
    dkimpy still judges a seal's t= by the machine's clock (a t= more than 10 hours ahead
    of it is refused); ARC seals carry no x=, so the scenario's clock decides nothing here.

    The result goes on `session.auth.arc` (none, pass or fail, the number of instances,
    the sealers' d= oldest first), where dmarc reads it: whether a trusted sealer's valid
    chain overrides a DMARC failure is dmarc's decision, not this policy's. A lookup that
    failed temporarily is recorded as fail, its reason saying so (RFC 8617 §4.4 knows no
    temperror for arc=).

    Outcomes: ARC_FAIL (option `fail`, default accept: RFC 8617 makes the chain's result
    an input to local policy, not a verdict; §5.2.2 says a validator MAY refuse with
    5.7.29 "ARC validation failure") and ARC_TEMPERROR (option `temperror`, default defer,
    since the chain may be what lets a forwarded message pass DMARC). Default replies:
    Stalwart's `550 5.7.29 ARC validation failed.`, and 4.7.29 for the temporary case.
    Replies may name {arc_result}, {arc_reason} and {arc_instances}.
    """

    name = "arc"
    summary = "ARC chain validation (RFC 8617), with keys from the world's DNS"
    stages = frozenset({Stage.EOD})
    Options = ArcOptions
    outcomes: ClassVar[tuple[Outcome, ...]] = (
        Outcome(
            "ARC_FAIL",
            FROM_CATALOGUE,
            "The message has an ARC chain that does not validate (cv=fail, a broken seal "
            "or message signature); refused only when the fail option asks.",
            fields=ARC_FIELDS,
        ),
        Outcome(
            "ARC_TEMPERROR",
            FROM_CATALOGUE,
            "A key of the ARC chain could not be looked up (SERVFAIL, timeout).",
            action=Action.DEFER,
            fields=ARC_FIELDS,
        ),
    )

    @classmethod
    def reproduce(cls, req: Request) -> Build:
        """A message with an ARC-Seal and no complete set (ARC_FAIL), or whose sealer's key
        lookup fails (ARC_TEMPERROR): the chain's own cryptography is not needed for either."""
        domain = domain_of(req.identity.mail_from)
        handling = "reject" if req.entry.template.code >= 500 else "defer"
        seal = (
            f"ARC-Seal: i=1; a=rsa-sha256; cv=none; d={domain}; s=arc; t=1718366280; "
            + "b="
            + "A" * 64
        )
        case = {"message": seal + "\n" + message(req.identity)}
        if req.entry.outcome == "ARC_TEMPERROR":
            dns = {"mode": "hermetic", "servfail": [key_name("arc", domain)]}
            return Build(options={"temperror": handling}, world={"dns": dns}, case=case)
        notes = ["the chain is one ARC-Seal without its message signature and results"]
        return Build(options={"fail": handling}, case=case, notes=notes)

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        if session.message is None:
            return None
        auth, outcome = await self.validate(session.message, ctx)
        session.auth.arc = auth
        if outcome is None:
            return None
        handling: Handling = self.options.fail if outcome == "ARC_FAIL" else self.options.temperror
        if handling == "accept":
            return None
        return self.verdict(
            outcome,
            stage,
            session,
            ctx,
            f"ARC chain of {auth.instances} set(s): {auth.reason}",
            refuse_as=handling,
            arc_result=auth.result,
            arc_reason=auth.reason,
            arc_instances=auth.instances,
        )

    async def validate(self, message: bytes, ctx: Context) -> tuple[ArcAuth, str | None]:
        """The chain's result, and the outcome it gives (None: none or pass)."""
        if not any(f.name.lower().startswith("arc-") for f in header_of(message).fields):
            # Most mail has no chain: no need for dkimpy to read the message.
            return ArcAuth("none"), None
        try:
            verifier = dkimpy.ARC(message, minkey=self.options.min_key_bits)
            instances, headers = verifier.sorted_arc_headers()
        except dkimpy.DKIMException as exc:
            if re.search(rb"(?im)^arc-seal[ \t]*:", message):
                return ArcAuth("fail", reason=f"message header unreadable: {exc}"), "ARC_FAIL"
            return ArcAuth("none"), None
        if not instances:
            return ArcAuth("none"), None
        # Refused before any lookup, so a message cannot make the receiver ask for keys
        # without bound.
        if instances > _MAX_INSTANCES:
            reason = f"i={instances}: more than {_MAX_INSTANCES} ARC sets (RFC 8617 §4.2.1)"
            return ArcAuth("fail", instances, reason=reason), "ARC_FAIL"
        if len(headers) > 3 * instances:
            reason = f"{len(headers)} ARC header fields for {instances} sets"
            return ArcAuth("fail", instances, reason=reason), "ARC_FAIL"
        sealers, names = _sealers_and_keys(headers)
        keys = await fetch_keys(ctx.dns, names)
        failed = [k for k in keys.values() if k.temporary]
        if failed:
            reason = f"key lookup of {failed[0].name} failed temporarily ({failed[0].temporary})"
            return ArcAuth("fail", instances, sealers, reason), "ARC_TEMPERROR"
        if len(message) > _THREAD_ABOVE:
            cv, why = await asyncio.to_thread(_verify, verifier, keys)
        else:
            cv, why = _verify(verifier, keys)
        if cv == "pass":
            return ArcAuth("pass", instances, sealers), None
        return ArcAuth("fail", instances, sealers, why), "ARC_FAIL"


def _sealers_and_keys(
    headers: list[tuple[int, tuple[bytes, bytes]]],
) -> tuple[tuple[str, ...], list[str]]:
    """The sealers' d= by instance, oldest first, and the key names to fetch."""
    sealers: dict[int, str] = {}
    names: list[str] = []
    for instance, (field, value) in sorted(headers, key=lambda h: h[0]):
        if field.lower() not in _SIGNING_FIELDS:
            continue
        try:
            tags = parse_tag_value(value)
        except InvalidTagValueList:
            continue  # dkimpy's validation says what is wrong with it
        domain = tags.get(b"d", b"").decode("ascii", "replace").strip().lower()
        selector = tags.get(b"s", b"").decode("ascii", "replace").strip()
        if field.lower() == _ARC_SEAL and domain:
            sealers.setdefault(instance, domain)
        if domain and selector:
            names.append(key_name(selector, domain))
    return tuple(sealers[i] for i in sorted(sealers)), names


def _verify(verifier: Any, keys: Mapping[str, KeyLookup]) -> tuple[str, str]:
    """dkimpy's chain validation, its keys from `keys`: ("pass" | "fail", why)."""
    try:
        cv, _results, why = verifier.verify(dnsfunc=answering(keys))
    except (dkimpy.DKIMException, ValueError, TypeError, IndexError, KeyError) as exc:
        return "fail", f"chain unreadable: {exc}"
    if cv == dkimpy.CV_Pass:
        return "pass", ""
    return "fail", str(why)
