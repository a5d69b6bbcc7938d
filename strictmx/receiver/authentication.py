"""What a message's authentication checks concluded, kept on the session for the others.

SPF is judged at MAIL (`spf`), DKIM and ARC at end of data (`dkim`, `arc`), and DMARC and
the bulk-sender rules (`dmarc`, `bulk_sender`) read what those concluded instead of
evaluating anything a second time. Each policy writes its result here; the policies that
read them declare so (`Policy.requires`), and a scenario that lists a reader without its
writers before it fails to load.

On an accepted message the results become one `Authentication-Results` header
(RFC 8601), formatted by authres, so a CI job reads exactly what the receiver concluded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import authres  # untyped: see the mypy override in pyproject
import authres.arc
import authres.dmarc

#: RFC 8601 §2.7.1 and RFC 7208 §2.6: the result keywords of SPF.
SpfResult = Literal["none", "neutral", "pass", "fail", "softfail", "temperror", "permerror"]
#: RFC 8601 §2.7.1: the result keywords of DKIM (`policy`: valid, but refused by local
#: policy, e.g. rsa-sha1 or a short key under RFC 8301).
DkimResult = Literal["none", "pass", "fail", "policy", "neutral", "temperror", "permerror"]
#: RFC 8617 §4.4 (arc=) and RFC 7489 §11.2 (dmarc=).
ArcResult = Literal["none", "pass", "fail"]
DmarcResult = Literal["none", "pass", "fail", "temperror", "permerror"]


@dataclass(frozen=True)
class SpfAuth:
    """One SPF identity's result, as the `spf` policy evaluated it."""

    identity: Literal["mailfrom", "helo"]
    #: The domain checked: the MAIL FROM domain, or the HELO name.
    domain: str
    result: SpfResult
    #: The identity as the header names it: the MAIL FROM address or the HELO name.
    value: str


@dataclass(frozen=True)
class DkimAuth:
    """One DKIM-Signature's verification (RFC 6376 §6), as the `dkim` policy found it."""

    result: DkimResult
    #: The signing domain (d=), selector (s=) and algorithm (a=); empty when unreadable.
    domain: str
    selector: str = ""
    algorithm: str = ""
    #: Why it did not pass, in words (empty for pass).
    reason: str = ""
    #: The first characters of b= (RFC 6008), to tell signatures of one domain apart.
    header_b: str = ""
    #: Lower-cased names of the header fields the signature covers (h=).
    signed_headers: tuple[str, ...] = ()
    #: The l= body length, when the signature has one.
    body_length: int | None = None
    #: The public key's size in bits, when the key was found and read.
    key_bits: int | None = None


@dataclass(frozen=True)
class ArcAuth:
    """An ARC chain's validation (RFC 8617 §5.2), as the `arc` policy found it."""

    result: ArcResult
    #: Number of ARC sets in the chain (i= of the newest), 0 for none.
    instances: int = 0
    #: The sealing domains (d= of each ARC-Seal), oldest first.
    sealers: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class DmarcAuth:
    """A DMARC evaluation (RFC 7489 §6.6), as the `dmarc` policy found it."""

    result: DmarcResult
    #: The RFC5322.From domain evaluated.
    from_domain: str
    #: The domain the policy record was found at (the From domain or its organisational
    #: domain); empty when none was found.
    record_domain: str = ""
    #: The policy that applies (p=, or sp=/np= for a subdomain), "" when there is no record.
    policy: str = ""
    #: What the receiver does with a failing message: none, quarantine or reject (after
    #: pct= sampling), "" for pass and none.
    disposition: str = ""
    #: Which authenticated identifier aligned ("spf", "dkim", both as "spf,dkim"), "".
    aligned: str = ""
    reason: str = ""


@dataclass
class AuthResults:
    """Every authentication result of the message being received."""

    spf: list[SpfAuth] = field(default_factory=list)
    #: None: the `dkim` policy did not run; [] : it ran and found no signature.
    dkim: list[DkimAuth] | None = None
    arc: ArcAuth | None = None
    dmarc: DmarcAuth | None = None

    def any(self) -> bool:
        return bool(self.spf) or self.dkim is not None or self.arc is not None or bool(self.dmarc)

    def header(self, authserv_id: str) -> str:
        """The `Authentication-Results` header field, folded, without its final CRLF
        (RFC 8601 §2.2)."""
        results: list[object] = []
        for spf in self.spf:
            if spf.identity == "helo":
                results.append(
                    authres.SPFAuthenticationResult(result=spf.result, smtp_helo=spf.value)
                )
            else:
                results.append(
                    authres.SPFAuthenticationResult(result=spf.result, smtp_mailfrom=spf.value)
                )
        if self.dkim is not None:
            if not self.dkim:
                results.append(authres.DKIMAuthenticationResult(result="none"))
            for sig in self.dkim:
                properties = []
                if sig.header_b:
                    properties.append(
                        authres.core.AuthenticationResultProperty("header", "b", sig.header_b)
                    )
                results.append(
                    authres.DKIMAuthenticationResult(
                        result=sig.result,
                        result_comment=_comment(sig),
                        reason=sig.reason or None,
                        header_d=sig.domain or None,
                        header_s=sig.selector or None,
                        header_a=sig.algorithm or None,
                        properties=properties,
                    )
                )
        if self.dmarc is not None:
            results.append(
                authres.dmarc.DMARCAuthenticationResult(
                    result=self.dmarc.result,
                    reason=self.dmarc.reason or None,
                    header_from=self.dmarc.from_domain or None,
                    policy=self.dmarc.disposition or self.dmarc.policy or None,
                )
            )
        if self.arc is not None:
            results.append(
                authres.arc.ARCAuthenticationResult(
                    result=self.arc.result,
                    reason=self.arc.reason or None,
                )
            )
        if not results:
            # RFC 8601 §2.2: "none" when no method was applied.
            return f"Authentication-Results: {authserv_id}; none"
        text = str(authres.AuthenticationResultsHeader(authserv_id=authserv_id, results=results))
        # One result a line (folded, RFC 5322 §2.2.3): several signatures stay under the
        # 998-octet line limit.
        return text.replace("; ", ";\r\n\t")


def _comment(sig: DkimAuth) -> str | None:
    return f"{sig.key_bits}-bit key" if sig.key_bits else None
