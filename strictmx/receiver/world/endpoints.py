"""Host and port pairs as written in a scenario or on the command line.

One grammar for every `HOST:PORT` strictmx reads (DNS nameservers, the DNS server's
listen address, `strictmx serve --listen`): `HOST:PORT`, `[IPv6]:PORT`, and, where the
caller has a default, the host alone or the port alone. An IPv6 address followed by a
port must be in brackets (RFC 3986 §3.2.2's IP-literal): unbracketed, `::1:53` is itself
an address and its last group cannot be told from a port.
"""

from __future__ import annotations

import ipaddress
import re

#: A host name: dot-separated LDH labels (RFC 1123 §2.1), an optional final dot.
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


class EndpointError(ValueError):
    """A HOST:PORT that cannot be read; the text says what is wrong with it."""


def split_host_port(
    text: str,
    *,
    default_host: str | None = None,
    default_port: int | None = None,
    names: bool = False,
    port_zero: bool = False,
) -> tuple[str, int]:
    """(host, port) from `HOST:PORT` or `[IPv6]:PORT`; EndpointError naming the problem.

    With `default_port`, the host may stand alone (`192.0.2.1`, `::1`, `[::1]`); with
    `default_host`, the port may (`5353`, `:5353`). The host is an IP address, written
    back in its short form, or with `names` also a host name. `port_zero` admits port 0
    (a listener's "any free port").
    """
    if not text:
        raise EndpointError("empty")
    host: str
    port: str | None
    bracketed = text.startswith("[")
    if bracketed:
        inside, closed, rest = text[1:].partition("]")
        if not closed:
            raise EndpointError("'[' without a closing ']'")
        if rest and not rest.startswith(":"):
            raise EndpointError(f"{rest!r} after ']' (expected ':PORT')")
        host, port = inside, (rest[1:] if rest else None)
    elif text.count(":") > 1:
        # Unbracketed, several colons can only be an IPv6 address alone.
        if default_port is None:
            address, _, last = text.rpartition(":")
            raise EndpointError(f"an IPv6 address before a port needs brackets: [{address}]:{last}")
        host, port = text, None
    else:
        before, colon, after = text.partition(":")
        host, port = before, (after if colon else None)
        if not colon and text.isdigit():
            host, port = "", text

    if port is None:
        if default_port is None:
            raise EndpointError("no port (expected HOST:PORT)")
        number = default_port
    else:
        number = _port(port, port_zero)

    if not host:
        if bracketed:
            raise EndpointError("empty brackets")
        if default_host is None:
            raise EndpointError("no host (expected HOST:PORT)")
        host = default_host
    return _host(host, bracketed, names, port is not None), number


def _port(text: str, zero: bool) -> int:
    if not text:
        raise EndpointError("no port after ':'")
    if not text.isascii() or not text.isdigit():
        raise EndpointError(f"port {text!r} is not a number")
    number = int(text)
    low = 0 if zero else 1
    if not low <= number <= 65535:
        raise EndpointError(f"port {number} is outside {low}-65535")
    return number


def _host(text: str, bracketed: bool, names: bool, with_port: bool) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = None
    if address is None:
        if bracketed:
            raise EndpointError(f"{text!r} in brackets is not an IPv6 address")
        if names and _HOST_NAME.fullmatch(text):
            return text
        what = "an IP address or host name" if names else "an IP address"
        raise EndpointError(f"{text!r} is not {what}")
    if address.version == 4 and bracketed:
        raise EndpointError(f"brackets are for IPv6 addresses, not {text!r}")
    if address.version == 6 and not bracketed and with_port:
        raise EndpointError(f"an IPv6 address before a port needs brackets: [{text}]:PORT")
    return str(address)


def split_nameserver(text: str) -> tuple[str, int]:
    """`IP`, `IP:PORT` or `[IPv6]:PORT` as (address, port); port 53 unless given."""
    try:
        return split_host_port(text, default_port=53)
    except EndpointError as exc:
        raise ValueError(f"not an IP address, IP:PORT or [IPv6]:PORT: {text!r} ({exc})") from None


def split_listen(text: str, *, names: bool = False) -> tuple[str, int]:
    """`IP:PORT`, `[IPv6]:PORT`, or a port alone (`5353`, `:5353`) on 127.0.0.1.

    Port 0 asks for any free port. With `names`, the host may be a host name (the
    command line's `--listen localhost:2525`).
    """
    try:
        return split_host_port(text, default_host="127.0.0.1", names=names, port_zero=True)
    except EndpointError as exc:
        raise ValueError(f"not IP:PORT, [IPv6]:PORT or a port alone: {text!r} ({exc})") from None
