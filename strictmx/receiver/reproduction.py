"""What a policy needs to say how it is reproduced: the request, its answer, world helpers.

`strictmx reproduce` turns a customer's bounce into a scenario in which strictmx refuses the
same way. The part that depends on the policy -- the options, the world (DNS records, a
clock, mailboxes) and the session that make it decide the matched outcome -- is the
policy's own: `Policy.reproduce(Request) -> Build`, beside the checks it reproduces. This
module holds the types of that exchange and the small helpers the built-in policies share
(reverse names, DNSBL query names, hermetic DNS, a compliant message). It sits below the
policies; `reproduce` (a surface at the top) asks each policy and assembles the scenario.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dns.reversename

from .catalogue import Entry
from .world.names import name_text, normalise_name

#: Who the customer's server is, when the reply does not say.
DEFAULT_CLIENT_IP = "203.0.113.25"
DEFAULT_HELO = "mail.example.net"
DEFAULT_SENDER = "alice@example.net"
DEFAULT_RCPT = "bob@example.org"
RECEIVER_HOSTNAME = "mx.strictmx.test"
#: The loopback address the expect case (and swaks) connects from; world.clients maps it.
LOOPBACK_SOURCE = "127.0.0.25"
#: The receiver's clock in reproductions that read the Date header.
CLOCK = datetime.fromisoformat("2024-06-14T12:00:00+00:00")


@dataclass(frozen=True)
class Identity:
    """The session the customer's server held: who it was and what it sent."""

    client_ip: str
    helo: str
    mail_from: str
    rcpt: str


@dataclass
class Request:
    """What a policy's reproduction works from."""

    #: The catalogue entry the customer's reply matched (its policy is the one asked).
    entry: Entry
    #: Values the reply shows for its placeholders (ip, helo, sender, zone, ptr, ...).
    fields: dict[str, str]
    identity: Identity

    @property
    def outcome(self) -> str:
        """The outcome to make the policy decide."""
        return self.entry.outcome


@dataclass
class Build:
    """A policy's answer: its options, the world and the session in which it refuses."""

    options: dict[str, Any] = field(default_factory=dict)
    world: dict[str, Any] = field(default_factory=dict)
    receiver: dict[str, Any] = field(default_factory=dict)
    #: Changes to the expect case: helo, ehlo, mail_from, rcpt, message, script.
    case: dict[str, Any] = field(default_factory=dict)
    #: Cases to play first (errors that a later connection is refused for).
    before: list[dict[str, Any]] = field(default_factory=list)
    #: The command whose reply carries the refusal, when it is not the policy's stage.
    at: str | None = None
    #: Where the policy is listed, when it is not the stage (session_limits: `session`).
    listed_under: str | None = None
    #: Options of the policies whose results this one reads (`Policy.requires`), by name:
    #: each is listed before it, at its own earliest stage (dmarc needs spf and dkim); one
    #: not named here gets its defaults.
    requires: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Placeholder values this reproduction guarantees, beside ip, helo and sender.
    bound: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: For sessions Python's smtplib cannot send (bare LF, a UTF-8 HELO): the lines to
    #: send as bytes, without an expect case.
    raw: list[bytes] | None = None
    #: swaks cannot send this session (a command script); say how to play it instead.
    swaks_cannot: str | None = None


# -- world helpers ---------------------------------------------------------------------


def reverse(ip: str) -> str:
    return name_text(dns.reversename.from_address(ip))


def dnsbl_query(ip: str, zone: str) -> str:
    """`1.2.0.192.zone` or 32 reversed nibbles, as DNSBL clients ask (RFC 5782 §2.1, §2.4)."""
    name = reverse(ip)
    suffix = ".in-addr.arpa" if ipaddress.ip_address(ip).version == 4 else ".ip6.arpa"
    return name.removesuffix(suffix) + "." + zone


def literal(ip: str) -> str:
    return f"[{ip}]" if ipaddress.ip_address(ip).version == 4 else f"[IPv6:{ip}]"


def other_ip(ip: str) -> str:
    """An address of the same family that is not `ip` (where a name resolves instead)."""
    if ipaddress.ip_address(ip).version == 6:
        return "2001:db8:ffff::99" if ip != "2001:db8:ffff::99" else "2001:db8:ffff::98"
    return "192.0.2.99" if ip != "192.0.2.99" else "192.0.2.98"


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower() or "example.net"


def is_name(text: str) -> bool:
    try:
        normalise_name(text)
    except ValueError:
        return False
    return "." in text.strip(".") and not is_ip(text)


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def dns_world(
    records: Mapping[str, Any] | None = None,
    ptr: Mapping[str, str] | None = None,
    servfail: list[str] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": "hermetic"}
    if records:
        out["records"] = dict(records)
    if ptr:
        out["ptr"] = dict(ptr)
    if servfail:
        out["servfail"] = list(servfail)
    return {"dns": out}


def message(identity: Identity, headers: list[str] | None = None, body: str = "") -> str:
    """A compliant message, or one with `headers` instead of the usual ones."""
    if headers is None:
        headers = header_lines(identity)
    return "\n".join(headers) + "\n\n" + (body or "A message to reproduce a refusal.") + "\n"


def header_lines(identity: Identity, **replace: str | None) -> list[str]:
    """A compliant header dated just before `CLOCK`; `Message_ID=None` drops a field."""
    fields: dict[str, str | None] = {
        "From": f"<{identity.mail_from or 'mailer-daemon@example.net'}>",
        "To": f"<{identity.rcpt}>",
        "Subject": "Reproduction",
        "Date": "Fri, 14 Jun 2024 11:58:00 +0000",
        "Message-ID": "<20240614115800.42@example.net>",
    }
    for name, value in replace.items():
        fields[name.replace("_", "-")] = value
    return [f"{k}: {v}" for k, v in fields.items() if v is not None]


def bare_lf_message(identity: Identity) -> str:
    """DATA with one line ending in a bare LF, then the end-of-data line."""
    head = "\r\n".join(header_lines(identity))
    return head + "\r\n\r\nA line that ends in a bare LF\nand one in CRLF\r\n.\r\n"


# -- reading identifiers a reply shows outside its template ---------------------------------

#: An address outside angle brackets, from the first word character of a run of address
#: characters (where `\b` first holds in it). Tried from the start of the run only: from
#: inside it, the run would be read to its `@` again for each of its characters.
BARE_SENDER = re.compile(r"(?<![\w.+=-])[.+=-]*+(\w[\w.+=-]*+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})\b")

_ZONE_NAMED = re.compile(
    r"\b(?:blocked using|black ?list at|listed (?:on|in|at|by)|using)\s+"
    r"([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+\.[A-Za-z]{2,})",
    re.I,
)
_ANGLED_SENDER = re.compile(r"<([^<>\s@]+@[^<>\s]+)>")


def sender_in(text: str) -> dict[str, str]:
    """`{"sender": address}` for the sender a refusal names (not postmaster@), or nothing."""
    sender = _ANGLED_SENDER.search(text) or BARE_SENDER.search(text)
    if sender and not sender.group(1).lower().startswith("postmaster@"):
        return {"sender": sender.group(1)}
    return {}


def zone_in(text: str, operators: Mapping[str, str]) -> dict[str, str]:
    """`{"zone": zone}` for the block list a refusal names: by its zone, or by a word of
    `operators` (operator word -> zone) for replies that name the operator only."""
    zone = _ZONE_NAMED.search(text)
    if zone:
        return {"zone": zone.group(1).lower()}
    lowered = text.lower()
    known = next((z for word, z in operators.items() if word in lowered), None)
    return {"zone": known} if known else {}
