"""Who a message says it is from, and whether an authenticated domain speaks for it.

DMARC (RFC 7489 §3.1) and the providers' bulk-sender rules ask the same two questions of a
message: the domain of its one From: address (the author domain, §6.6.1), and whether an
SPF or DKIM domain is *aligned* with it: the same name (strict), or the same
organisational domain by the Public Suffix List (relaxed). Both policies answer them
here, so they cannot disagree.
"""

from __future__ import annotations

import re
from email.headerregistry import AddressHeader, HeaderRegistry
from typing import Literal

from .message import header_of
from .rfc5322 import SIMPLE_MAILBOX
from .world.names import normalise_name
from .world.suffixes import owner_domain

Mode = Literal["r", "s"]

_REGISTRY = HeaderRegistry()
#: A host name's LDH labels (RFC 1123 §2.1), in the lower case normalise_name gives.
_HOST_NAME = re.compile(
    r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)*[a-z][a-z0-9-]{0,61}[a-z0-9]"
)


def domain_name(text: str) -> str:
    """`text` as a lower-case A-label domain name; ValueError unless it is a host name
    (an address literal or an address is not: DMARC has no policy for them)."""
    name = normalise_name(text) if text and not text.startswith("[") else ""
    if not _HOST_NAME.fullmatch(name):
        raise ValueError(f"{text!r} is not a domain name")
    return name


def organisational_domain(domain: str) -> str:
    """RFC 7489 §3.2: the public suffix (the Public Suffix List, private section too) plus
    one label; a name that is itself a public suffix is its own."""
    return owner_domain(domain) or domain


def aligned(identifier: str, from_domain: str, mode: Mode = "r") -> bool:
    """RFC 7489 §3.1.1/§3.1.2: strict is the same name, relaxed the same organisational
    domain. An empty identifier or From domain aligns with nothing."""
    a, b = identifier.lower().rstrip("."), from_domain.lower().rstrip(".")
    if not a or not b:
        return False
    if a == b:
        return True
    return mode == "r" and organisational_domain(a) == organisational_domain(b)


def author_domain(message: bytes) -> tuple[str | None, str]:
    """(the domain of the message's one From: address, "") or (None, why there is not
    exactly one): no From: field or several, none or several addresses, or a domain that
    is not a host name (RFC 7489 §6.6.1).

    Remembered for the message last asked about: dmarc and bulk_sender ask of the same one.
    """
    global _last
    if _last is not None and _last[0] is message:
        return _last[1]
    found = _author_domain(message)
    _last = (message, found)
    return found


_last: tuple[bytes, tuple[str | None, str]] | None = None


def _author_domain(message: bytes) -> tuple[str | None, str]:
    froms = header_of(message).get("from")
    if len(froms) != 1:
        return None, f"the message has {len(froms)} From fields; DMARC needs one"
    value = froms[0].value
    if SIMPLE_MAILBOX.fullmatch(value):
        # `addr@dom` or `Phrase <addr@dom>` (most mail): the domain follows the last "@",
        # which no atom of the phrase or the domain may hold; the stdlib parser costs
        # ten times as much for the same answer.
        domain = value.rpartition("@")[2].strip().rstrip(">").strip()
    else:
        try:
            parsed = _REGISTRY("From", value)
        except Exception:  # the stdlib parser raises IndexError etc. on some junk
            return None, "From cannot be parsed"
        assert isinstance(parsed, AddressHeader)
        addresses = parsed.addresses
        if len(addresses) != 1:
            return None, f"From holds {len(addresses)} addresses; DMARC needs one"
        domain = addresses[0].domain
    try:
        return domain_name(domain), ""
    except ValueError:
        return None, f"the From domain {domain!r} is not a domain name"
