"""Host and port pairs as written in a scenario or on the command line."""

from __future__ import annotations

import ipaddress


def split_nameserver(text: str) -> tuple[str, int]:
    """`IP`, `IP:PORT` or `[IPv6]:PORT` as (address, port)."""
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not an IP address, IP:PORT or [IPv6]:PORT: {text!r}")
    return str(address), int(port)


def split_listen(text: str) -> tuple[str, int]:
    """`IP:PORT`, `[IPv6]:PORT`, or a port alone (`5353`, `:5353`) on 127.0.0.1.

    Port 0 asks for any free port.
    """
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        address = ipaddress.ip_address(host.strip("[]") if bracketed else host or "127.0.0.1")
    except ValueError:
        address = None
    # Unbracketed, an IPv6 address's last group would be read as the port.
    unclear = address is not None and address.version == 6 and not bracketed
    if address is None or unclear or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"not IP:PORT, [IPv6]:PORT or a port alone: {text!r}")
    return str(address), int(port)
