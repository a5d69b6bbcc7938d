"""The header section of a received message, split once for every policy that reads it.

Policies at end of data (headers, content_filter) look at the same message; the split is
remembered for the message last asked about, so the second policy pays nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# field-name = 1*ftext (printable ASCII but ':'); obs-optional allows WSP before the colon.
_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")


@dataclass(frozen=True)
class HeaderField:
    """One field of the header section, unfolded."""

    name: str  # as written
    value: str  # after the colon, continuation lines joined without their line ends
    line: int  # 1-based line number of its first line
    last_line: int


@dataclass
class Header:
    """The header section of a message, parsed once for every check."""

    raw: bytes  # the header section's bytes, line ends included
    fields: list[HeaderField]
    lengths: list[int]  # octets of each header line, line end not counted
    by_name: dict[str, list[HeaderField]] = field(default_factory=dict)

    def get(self, name: str) -> list[HeaderField]:
        return self.by_name.get(name.lower(), [])

    def field_at(self, line: int) -> HeaderField | None:
        return next((f for f in self.fields if f.line <= line <= f.last_line), None)


def header_of(message: bytes) -> Header:
    """`parse_header(message)`, remembered for this very message (by identity)."""
    global _last
    if _last is not None and _last[0] is message:
        return _last[1]
    header = parse_header(message)
    _last = (message, header)
    return header


_last: tuple[bytes, Header] | None = None


def parse_header(message: bytes) -> Header:
    """Split off the header section: fields, unfolded values and exact line lengths."""
    fields: list[HeaderField] = []
    lengths: list[int] = []
    name: str | None = None
    parts: list[bytes] = []
    first = 0
    pos = 0
    end = 0
    size = len(message)

    def close() -> None:
        if name is not None:
            value = b"".join(parts).decode("utf-8", "surrogateescape")
            fields.append(HeaderField(name, value, first, len(lengths)))

    while pos < size:
        nl = message.find(b"\n", pos)
        stop = size if nl < 0 else nl
        line = message[pos : stop - 1 if stop > pos and message[stop - 1] == 13 else stop]
        if not line:
            end = stop + 1
            break
        if line[0] in b" \t" and name is not None:
            parts.append(line)
        else:
            match = _FIELD.match(line)
            if match is None:
                break  # neither field nor continuation: the body starts here
            close()
            name = match.group(1).decode("ascii")
            parts = [line[match.end() :]]
            first = len(lengths) + 1
        lengths.append(len(line))
        pos = end = stop + 1
    close()
    by_name: dict[str, list[HeaderField]] = {}
    for f in fields:
        by_name.setdefault(f.name.lower(), []).append(f)
    return Header(message[: min(end, size)], fields, lengths, by_name)
