"""Host and port in one string: where to listen, which DNS server to ask.

One parser for every such string (`serve --listen`, `--dns-listen`, `--api-listen`, a
scenario's `world.dns.serve` and `world.dns.nameservers`), so brackets, IPv6 and port
ranges mean the same everywhere; the two grammars below are its two uses.
"""

from __future__ import annotations

import ipaddress
import re

IP = ipaddress.IPv4Address | ipaddress.IPv6Address

_PORT = re.compile(r"[0-9]{1,5}")
#: A host name as a resolver takes it (letters, digits, hyphens, underscores, dots).
_NAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")


def split_host_port(
    text: str,
    *,
    default_port: int | None = None,
    default_host: str | None = None,
    names: bool = False,
    any_port: bool = False,
) -> tuple[str, int]:
    """`IP:PORT` or `[IP]:PORT` as (address, port), the address in its canonical form.

    `default_port`: an address alone (`IP`, a bare IPv6 address, `[IPv6]`) takes it.
    `default_host`: a port alone (`PORT`, `:PORT`) listens there. `names`: `HOST:PORT` with a
    host name. `any_port`: port 0 (any free port) is allowed. An IPv6 address needs its
    brackets before a port, or its last group would read as the port. ValueError names the
    forms this use takes.
    """
    address: IP | None
    port: str | None
    if text.startswith("["):
        inside, close, rest = text[1:].partition("]")
        address = _ip(inside)
        if not close or address is None or (rest and not rest.startswith(":")):
            raise _bad(text, default_port, default_host, names)
        host, port = inside, rest[1:] if rest else None
    else:
        address = _ip(text)
        if address is not None and default_port is not None:
            return str(address), default_port
        host, _, port = text.rpartition(":")
        if not host and default_host is not None:
            host = default_host
        address = _ip(host)
        if ":" in host or (address is None and not (names and _NAME.fullmatch(host))):
            raise _bad(text, default_port, default_host, names)
    if port is None:
        if default_port is None:
            raise _bad(text, default_port, default_host, names)
        return str(address) if address is not None else host, default_port
    if not _PORT.fullmatch(port) or not (0 if any_port else 1) <= int(port) <= 65535:
        raise _bad(text, default_port, default_host, names)
    return str(address) if address is not None else host, int(port)


def split_listen(text: str, *, names: bool = False) -> tuple[str, int]:
    """Where to listen: `IP:PORT`, `[IPv6]:PORT`, or a port alone (`5353`, `:5353`) on
    127.0.0.1; with `names`, `HOST:PORT` too. Port 0 asks for any free port."""
    return split_host_port(text, default_host="127.0.0.1", names=names, any_port=True)


def split_nameserver(text: str) -> tuple[str, int]:
    """A DNS server: `IP`, `IP:PORT`, `[IPv6]` or `[IPv6]:PORT`; port 53 unless given."""
    return split_host_port(text, default_port=53)


def _ip(text: str) -> IP | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _bad(text: str, default_port: int | None, default_host: str | None, names: bool) -> ValueError:
    forms = ["HOST:PORT" if names else "IP:PORT", "[IPv6]:PORT"]
    if default_port is not None:
        forms.insert(0, "an IP address")
    if default_host is not None:
        forms.append("a port alone")
    return ValueError(f"not {', '.join(forms[:-1])} or {forms[-1]}: {text!r}")
