"""Every class a bounce can have, named honestly: the strictmx families, and the classes of
bounce that strictmx does not emulate, each with its meaning and the fix on the sending side.

A class that a strictmx policy now emulates (an unknown recipient, relaying, TLS required,
DMARC, DKIM, a message over the size limit) is that policy's family, not a second name for
it: `family_of` maps the class names the issue uses to those families (and `outcome_of` to
the outcome, where the family has several), so explain never reports one thing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Emulated = Literal["no", "not yet"]


@dataclass(frozen=True)
class BounceClass:
    """A class of bounce strictmx does not emulate: what it means and what fixes it."""

    name: str
    meaning: str
    fix: str
    emulated: Emulated

    @property
    def statement(self) -> str:
        """The plain statement explain prints, instead of the nearest strictmx family."""
        if self.emulated == "not yet":
            return "strictmx does not emulate this yet"
        return "strictmx does not emulate this"


#: Classes of bounce that are no refusal by a strict-receiver policy strictmx runs.
NOT_EMULATED: dict[str, BounceClass] = {
    c.name: c
    for c in (
        BounceClass(
            "mailbox_full",
            "The recipient's mailbox exists but is over its storage quota (RFC 3463 X.2.2).",
            "Nothing to change on the sending side: retry later (a 4xx is retried by the MTA); "
            "if it persists, tell the recipient by another channel or stop mailing the address.",
            "no",
        ),
        BounceClass(
            "rate_limited",
            "The receiver limits how fast or how much this client, domain or recipient may "
            "send, or defers for the sender's volume or complaint rate.",
            "Slow down: fewer connections and messages per connection to that receiver, retry "
            "with back-off, warm up new IPs, and keep complaint rates low (feedback loops, "
            "one-click unsubscribe).",
            "not yet",
        ),
        BounceClass(
            "greylisted",
            "The receiver defers the first attempt from an unknown (client, sender, recipient) "
            "triplet and accepts a retry after a few minutes.",
            "Nothing is wrong: let the MTA retry from the same IP and with the same envelope "
            "sender (no per-attempt VERP or rotating IPs); check the retry interval is minutes, "
            "not hours.",
            "not yet",
        ),
        BounceClass(
            "auth_required",
            "The server wants SMTP authentication (or refused the credentials): a submission "
            "server, or a relay that only serves its own users (RFC 4954, X.7.8 and near).",
            "Authenticate: configure the account's user name and password (or app password), "
            "use the submission port with STARTTLS or implicit TLS, and an allowed mechanism.",
            "no",
        ),
        BounceClass(
            "network",
            "No SMTP refusal: the sending MTA could not reach the receiver (no answer, connection "
            "lost, no route; RFC 3463 X.4.x).",
            "Check the receiver's MX and address records, your outbound port 25 (firewall, ISP "
            "block), and that the MX answers; the MTA retries transient failures.",
            "no",
        ),
        BounceClass(
            "expired",
            "The sending MTA gave up: the message stayed in its queue past the maximum "
            "lifetime (RFC 3463 X.4.7); the real cause is the last deferral before it.",
            "Look at the earlier deferral replies for this recipient in the MTA's log and fix "
            "that cause; the queue lifetime itself is rarely the problem.",
            "no",
        ),
    )
}

#: The issue's class names for things a strictmx policy now emulates: that policy's family.
FAMILY_OF_CLASS: dict[str, str] = {
    "recipient_unknown": "local_recipients",
    "relay_denied": "relay",
    "tls_required": "tls_required",
    "dmarc": "dmarc",
    "dkim": "dkim",
    # content_filter's max_size rule: Postfix's "552 5.3.4 Error: message file too big".
    "message_too_big": "content_filter",
}

#: The outcome of the family a class is, where the family has outcomes for other things.
OUTCOME_OF_CLASS: dict[str, str] = {"message_too_big": "MESSAGE_TOO_BIG"}


def family_of(name: str) -> str:
    """The strictmx family a class name is, or the name itself (a family or not emulated)."""
    return FAMILY_OF_CLASS.get(name, name)


def outcome_of(name: str) -> str | None:
    return OUTCOME_OF_CLASS.get(name)


def not_emulated(name: str) -> BounceClass | None:
    return NOT_EMULATED.get(name)
