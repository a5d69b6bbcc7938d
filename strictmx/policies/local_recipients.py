"""local_recipients: a recipient this receiver has no mailbox for is refused at RCPT.

Postfix's `reject_unlisted_recipient` (smtpd_check.c; postconf(5)): a RCPT whose address
is not in the local recipient table gets
`550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in local recipient table`
-> UNKNOWN_USER. The table is the receiver's `local_recipients` glob patterns unless the
entry gives its own `recipients`.

Postfix applies it implicitly, after smtpd_recipient_restrictions, whether or not it is
listed ("smtpd_reject_unlisted_recipient = yes"); so does strictmx: a scenario that does
not list it gets it at the end of its RCPT chain (strictmx/receiver/persona.py), and one
that lists it decides where it runs and may override its reply, e.g. with Exim's or a
large provider's text. An address is looked up as Postfix's trivial-rewrite resolves it
(rewrite.c rewrite_tree): one trailing dot of its domain is dropped, so
`<bob@strictmx.test.>` is bob@strictmx.test (Postfix 3.7.11, recorded live: 250), while the
reply quotes the address as sent. The recipients of `receiver.always_accepted` (by default
postmaster@ and abuse@, RFC 5321 §4.5.1) are accepted by the engine before any RCPT
policy, so they are never unknown. In a receiver that has domains of its own, list
`relay` before it: a recipient in another domain is then "Relay access denied", and
this policy judges the local domains' users alone. As a policy it is journaled as a
verdict, warned in warn_only, and turned into 450 by soft_bounce, like any refusal.

RFC 5321 §3.3 allows refusing a recipient the server does not know (550).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import ClassVar

from pydantic import Field

from strictmx.receiver.policy import FROM_CATALOGUE, Context, Outcome, Policy, PolicyOptions
from strictmx.receiver.reproduction import Build, Request
from strictmx.receiver.session import Session
from strictmx.receiver.verdict import Reply, Stage, Verdict


class LocalRecipientsOptions(PolicyOptions):
    recipients: tuple[str, ...] | None = Field(
        default=None,
        description="Glob patterns of addresses that exist here; default: the receiver's "
        "local_recipients.",
    )


class LocalRecipients(Policy[LocalRecipientsOptions]):
    """Refuse recipients not in the local recipient table (Postfix reject_unlisted_recipient)."""

    name = "local_recipients"
    summary = "Recipients must exist here (Postfix reject_unlisted_recipient)"
    stages = frozenset({Stage.RCPT})
    Options = LocalRecipientsOptions
    outcomes: ClassVar[tuple[Outcome, ...]] = (
        Outcome(
            "UNKNOWN_USER",
            FROM_CATALOGUE,
            "The recipient is not in the local recipient table (Postfix "
            "reject_unlisted_recipient).",
        ),
    )

    def __init__(
        self, options: LocalRecipientsOptions, replies: Mapping[str, Reply] | None = None
    ) -> None:
        super().__init__(options, replies)
        self._patterns: tuple[str, ...] = tuple(p.lower() for p in options.recipients or ("*",))

    @classmethod
    def reproduce(cls, req: Request) -> Build:
        # Only postmaster@ exists (and is always accepted anyway): the customer's recipient
        # is unknown, unless it is postmaster@ itself.
        return Build(receiver={"local_recipients": ["postmaster@*"]}, at="rcpt")

    def use_table(self, patterns: tuple[str, ...] | list[str]) -> None:
        """The receiver's table, for an entry that names none of its own (the persona)."""
        if self.options.recipients is None:
            self._patterns = tuple(p.lower() for p in patterns)

    def exists(self, address: str) -> bool:
        if self._patterns == ("*",):  # the default table: every address exists
            return True
        addr = without_root_dot(address).lower()
        return any(fnmatch.fnmatchcase(addr, p) for p in self._patterns)

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        rcpt = session.rcpt
        if rcpt is None or self.exists(rcpt):
            return None
        return self.verdict(
            "UNKNOWN_USER", stage, session, ctx, f"{rcpt} is not in the local recipient table"
        )


def without_root_dot(address: str) -> str:
    """`address` as Postfix's trivial-rewrite resolves it (rewrite.c rewrite_tree): one
    trailing dot of the domain dropped, but not that of `..` or `@.`, which stay bogus."""
    local, at, domain = address.rpartition("@")
    if at and len(domain) > 1 and domain.endswith(".") and not domain.endswith(".."):
        return f"{local}@{domain[:-1]}"
    return address
