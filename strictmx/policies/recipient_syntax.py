"""recipient_syntax: a recipient that is not fully qualified is refused at RCPT.

Postfix's `reject_non_fqdn_recipient` (smtpd_check.c, reject_non_fqdn_address;
postconf(5)): a RCPT address without a domain, or whose domain has no dot (one trailing
dot ignored: `bob@localhost.` is not qualified either), gets
`504 5.5.2 <{rcpt}>: Recipient address rejected: need fully-qualified address`
-> RCPT_NOT_FQDN. An address literal (`bob@[192.0.2.1]`) is qualified. A source route
is ignored, as Postfix ignores it (`<@a.example:bob>` is refused as `<bob>`).

Replies recorded live from Postfix 3.7.11 smtpd with smtpd_recipient_restrictions =
reject_non_fqdn_recipient, reject_unauth_destination (no relay restrictions, so that it
runs first): `RCPT TO:<bob>` -> `504 5.5.2 <bob>: Recipient address rejected: need
fully-qualified address`; `<bob@localhost>`, `<bob@localhost.>` and `<bob@strictmx>` the
same; `<bob@[127.0.0.1]>` and `<bob@strictmx.test.>` pass it. Postfix accepts the bare
`<postmaster>` before any restriction (RFC 5321 §4.5.1): the engine's exemption
(`receiver.always_accepted`), not this policy, lets it through.

RFC 5321 §4.1.2 makes the forward-path a Mailbox with a domain, so refusing one without
is allowed; §2.3.5 requires a domain name to be fully qualified.
"""

from __future__ import annotations

from typing import ClassVar

from strictmx.receiver.policy import FROM_CATALOGUE, Context, Outcome, Policy, PolicyOptions
from strictmx.receiver.reproduction import Build, Request
from strictmx.receiver.session import Session
from strictmx.receiver.verdict import Stage, Verdict


class RecipientSyntaxOptions(PolicyOptions):
    """No options: the one check is Postfix's, as it is."""


class RecipientSyntax(Policy[RecipientSyntaxOptions]):
    """Refuse recipients that are not fully qualified (Postfix reject_non_fqdn_recipient)."""

    name = "recipient_syntax"
    summary = "Recipients must be fully qualified (Postfix reject_non_fqdn_recipient)"
    stages = frozenset({Stage.RCPT})
    Options = RecipientSyntaxOptions
    outcomes: ClassVar[tuple[Outcome, ...]] = (
        Outcome(
            "RCPT_NOT_FQDN",
            FROM_CATALOGUE,
            "The recipient has no domain, or a domain without a dot (Postfix "
            "reject_non_fqdn_recipient).",
        ),
    )

    @classmethod
    def reproduce(cls, req: Request) -> Build:
        # The customer's recipient if it is not qualified, else its local part alone.
        rcpt = req.fields.get("rcpt") or req.identity.rcpt
        if not_fqdn(rcpt) is None:
            rcpt = rcpt.rpartition("@")[0] or "bob"
        return Build(case={"rcpt": [rcpt]}, at="rcpt")

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        rcpt = session.rcpt
        if rcpt is None:
            return None
        why = not_fqdn(rcpt)
        if why is None:
            return None
        return self.verdict("RCPT_NOT_FQDN", stage, session, ctx, why)


def not_fqdn(rcpt: str) -> str | None:
    """Why `rcpt` is not fully qualified, or None when it is."""
    address = rcpt.split(":", 1)[1] if rcpt.startswith("@") and ":" in rcpt else rcpt
    _, at, domain = address.rpartition("@")
    if not at or not domain:
        return f"{rcpt} has no domain"
    if domain.startswith("["):
        return None  # an address literal names its host fully
    if "." not in domain.removesuffix("."):
        return f"the domain {domain} of {rcpt} has no dot: it is not fully qualified"
    return None
