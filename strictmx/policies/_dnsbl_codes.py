"""DNSBL return codes: which A answers of a block list count, as inclusive intervals.

A helper of the dnsbl policy (a module whose name starts with `_` is no policy of its own).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

_POSTFIX_FORM = re.compile(r"^(\d{1,3}\.\d{1,3}\.\d{1,3})\.\[([0-9;.]+)\]$")


@dataclass(frozen=True)
class CodeSet:
    """IPv4 answers as inclusive integer intervals."""

    intervals: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, specs: Iterable[str]) -> CodeSet:
        """ValueError naming the bad spec if one is not an address, range, network or
        Postfix `a.b.c.[x;y..z]` form."""
        intervals: list[tuple[int, int]] = []
        for spec in specs:
            try:
                intervals += _intervals(spec.strip())
            except ValueError as exc:
                raise ValueError(
                    f"bad return code {spec!r}: {exc}; write 127.0.0.2, 127.0.0.2-127.0.0.11, "
                    "127.0.0.0/24 or 127.0.0.[2..11]"
                ) from None
        return cls(tuple(sorted(intervals)))

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, ipaddress.IPv4Address):
            return False
        value = int(address)
        return any(lo <= value <= hi for lo, hi in self.intervals)


def _intervals(spec: str) -> list[tuple[int, int]]:
    postfix = _POSTFIX_FORM.match(spec)
    if postfix:
        base = int(ipaddress.IPv4Address(postfix.group(1) + ".0"))
        out = []
        for item in postfix.group(2).split(";"):
            low, dots, high = item.partition("..")
            start, end = int(low), int(high) if dots else int(low)
            if not 0 <= start <= end <= 255:
                raise ValueError(f"{item!r} is not an octet or an ascending octet range")
            out.append((base + start, base + end))
        return out
    if "[" in spec:
        raise ValueError("Postfix's [x;y..z] form is read in the last octet only")
    if "/" in spec:
        net = ipaddress.IPv4Network(spec)
        return [(int(net.network_address), int(net.broadcast_address))]
    low, dash, high = spec.partition("-")
    first = ipaddress.IPv4Address(low.strip())
    last = ipaddress.IPv4Address(high.strip()) if dash else first
    if last < first:
        raise ValueError(f"the range ends before it starts ({last} < {first})")
    return [(int(first), int(last))]
