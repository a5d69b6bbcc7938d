"""smtpd: a refusal the SMTP server makes itself, outside any restriction list.

Postfix's smtpd refuses some things in its own code before or after its restriction
lists run (smtpd.c; postconf(5)); strictmx's conversation does the same at the same
points and makes it a verdict of this policy, so it goes through the one reply builder,
is journaled, follows soft_bounce and warn_only, and a persona can reword it:

- RCPT beyond `max_recipients` (Postfix's smtpd_recipient_limit, 1000) ->
  TOO_MANY_RECIPIENTS, `452 4.5.3 Error: too many recipients`; checked before the RCPT
  policies, as Postfix checks it before smtpd_recipient_restrictions.

(A message the journal cannot keep gets `451 4.3.0 Error: queue file write error` from the
conversation; it is not an outcome here, because every outcome's reply is in the reply
catalogue and every catalogue entry is reproduced by a scenario, and no scenario can make
the journal fail.)

The conversation (strictmx/receiver/conversation.py) decides when; `check` never runs:
listing `smtpd` in a scenario (at rcpt, or under session) only overrides its
replies, e.g. `{policy: smtpd, replies: {TOO_MANY_RECIPIENTS: "452 4.5.3 Your message has
too many recipients."}}` for Gmail's text (receivers.md, SIS-G). RFC 5321 allows it
(§4.5.3.1.8: a server must accept at least 100 recipients and may answer 452 beyond its
limit).
"""

from __future__ import annotations

from typing import ClassVar

from strictmx.receiver.policy import FROM_CATALOGUE, Context, Outcome, Policy, PolicyOptions
from strictmx.receiver.reproduction import Build, Request, domain_of
from strictmx.receiver.session import Session
from strictmx.receiver.verdict import Action, Stage, Verdict


class Smtpd(Policy[PolicyOptions]):
    """The SMTP server's own refusal: the recipient limit."""

    name = "smtpd"
    summary = "The server's own refusal: too many recipients (smtpd_recipient_limit)"
    stages = frozenset({Stage.RCPT})
    outcomes: ClassVar[tuple[Outcome, ...]] = (
        Outcome(
            "TOO_MANY_RECIPIENTS",
            FROM_CATALOGUE,
            "More recipients than the receiver's max_recipients (Postfix smtpd_recipient_limit).",
            action=Action.DEFER,
        ),
    )

    @classmethod
    def reproduce(cls, req: Request) -> Build:
        # TOO_MANY_RECIPIENTS: one recipient allowed, the customer's is the second.
        ident = req.identity
        return Build(
            receiver={"max_recipients": 1},
            case={
                "script": [
                    f"EHLO {ident.helo}",
                    f"MAIL FROM:<{ident.mail_from}>",
                    f"RCPT TO:<first@{domain_of(ident.rcpt)}>",
                    f"RCPT TO:<{ident.rcpt}>",
                ]
            },
            at="rcpt",
            swaks_cannot="swaks sends one recipient list; play the scenario's expect case",
        )

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        return None  # decided by the conversation at its points, not in a chain
