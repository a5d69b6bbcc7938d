"""DNS names and IP addresses as text: parsed, normalised, reversed.

Every name strictmx compares or shows has one form: lowercase, A-labels, no final dot
(`name_text`). Addresses are parsed once and remembered (`ip_of`), since the same client,
HELO and DNS answers come back in every session.
"""

from __future__ import annotations

import functools
import ipaddress
import string
from collections.abc import Callable
from typing import TypeVar

import dns.exception
import dns.name
import dns.rdata
import dns.reversename
import idna


def parse_name(text: str) -> dns.name.Name:
    """An absolute name from text, with or without the final dot; ValueError if malformed."""
    if not text:
        raise ValueError("empty domain name")
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException as exc:  # empty or long labels, bad IDNA, ...
        raise ValueError(f"not a domain name: {text!r} ({exc})") from None


def name_text(name: dns.name.Name) -> str:
    """The form every name takes here: lowercase, no final dot (the root stays '.')."""
    return _remembered(name, _name_text)


def _name_text(name: dns.name.Name) -> str:
    return name.canonicalize().to_text(omit_final_dot=True)


#: Texts of DNS objects by the object's identity, the object kept beside its text.
_TEXTS: dict[int, tuple[object, str]] = {}
_TEXTS_MAX = 16384
_T = TypeVar("_T")


def _remembered(thing: _T, convert: Callable[[_T], str]) -> str:
    """`convert(thing)`, remembered for this very object.

    The scenario's answers are the same Name and Rdata objects in every session, and
    dnspython's conversions to text are among the dearest steps of a cached lookup. By
    identity, not by value: hashing a Name or an Rdata costs about as much as converting
    it. Keeping the object in the entry keeps its id from being reused while remembered.
    """
    hit = _TEXTS.get(id(thing))
    if hit is not None and hit[0] is thing:
        return hit[1]
    text = convert(thing)
    if len(_TEXTS) >= _TEXTS_MAX:  # answers of real DNS are new objects: start over
        _TEXTS.clear()
    _TEXTS[id(thing)] = (thing, text)
    return text


def normalise_name(text: str) -> str:
    return name_text(parse_name(text))


def ip_of(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """`ipaddress.ip_address`, remembered: the same client, HELO and DNS answers come back
    in every session and several policies parse them (ValueError for a non-address)."""
    ip = _parsed_ip(text)
    if ip is None:
        raise ValueError(f"{text!r} does not appear to be an IPv4 or IPv6 address")
    return ip


@functools.lru_cache(maxsize=8192)
def _parsed_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # Host names are asked about as often as addresses ("is this HELO an IP?"): the
    # answer "no" is kept too.
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def public_ip(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address as DNS knows it: a dual-stack listener's ::ffff:a.b.c.d is a.b.c.d."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@functools.lru_cache(maxsize=8192)
def dnsbl_prefix(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """A DNS list's query prefix: reversed octets, or 32 reversed nibbles (RFC 5782 §2.1,
    §2.4): `192.0.2.1` -> `1.2.0.192`. Remembered: asked at every stage of a session."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ".".join(reversed(str(ip).split(".")))
    return ".".join(reversed(f"{int(ip):032x}"))


@functools.lru_cache(maxsize=8192)
def reverse_name(address: str) -> str:
    """`address`'s name under in-addr.arpa or ip6.arpa (clients repeat: kept)."""
    return name_text(dns.reversename.from_address(normalise_ip(address)))


def rdata_text(rdata: dns.rdata.Rdata) -> str:
    return _remembered(rdata, dns.rdata.Rdata.to_text)


def normalise_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"not an IP address: {text!r}") from None


#: ASCII that IDNA 2008 lets stand in a U-label; other ASCII is the caller's business.
_LDH = frozenset(string.ascii_lowercase + string.digits + "-")


@functools.lru_cache(maxsize=8192)
def a_label(label: str) -> str:
    """One label as DNS carries it: ASCII as given, else its IDNA 2008 A-label.

    The UTS 46 mapping first (case and width folded, non-transitional: `straße` is
    `xn--strae-oqa`, not IDNA 2003's `strasse`), then IDNA 2008's rules for the non-ASCII
    code points (RFC 5891 §5.4: code points, joiners, bidi; the `idna` package), so
    symbols and stray joiners are refused rather than mapped away. ASCII characters other
    than letters, digits and '-' are left to the caller's own host-name rules, as UTS 46
    does with UseSTD3ASCIIRules off and Postfix's ICU call does: `bü_cher` is a
    question for the policy's mode, not for IDNA. ASCII labels are not touched at all.
    `idna.IDNAError` (a UnicodeError) names what is wrong; labels repeat, answers are kept.
    """
    if label.isascii():
        return label
    mapped: str = idna.uts46_remap(label, std3_rules=False, transitional=False)
    if "." in mapped:  # a full-width or ideographic stop maps to '.'
        raise idna.IDNAError(f"label {label!r} maps to more than one label")
    if mapped.isascii():  # full-width letters, say
        return mapped
    idna.check_label("".join("0" if c.isascii() and c not in _LDH else c for c in mapped))
    encoded = "xn--" + mapped.encode("punycode").decode("ascii")
    if len(encoded) > 63:  # RFC 1035 §2.3.4
        raise idna.IDNAError("Label too long")
    return encoded
