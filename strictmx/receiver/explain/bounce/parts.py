"""The MIME parts of a bounce e-mail: its human-readable text, and the returned original
message's headers (context for `reproduce`, never evidence for a refusal)."""

from __future__ import annotations

import html as htmllib
import re
from email.message import Message

from .words import FIELD_NAME, address, fields, unfold

#: An HTML tag (a `<` without its `>` is text; the scan from each `<` stops at the next).
_TAG = re.compile(r"<[^<>]*>")


def has_headers(text: str) -> bool:
    first = text.lstrip().split("\n", 1)[0]
    name, sep, _ = first.partition(":")
    return bool(sep) and FIELD_NAME.fullmatch(name) is not None and "\n\n" in text.replace("\r", "")


def body_text(message: Message) -> tuple[str, dict[str, str]]:
    """The human-readable text of a message (its text/plain parts, or the text of its HTML
    part when it has no plain one) and the headers of a returned message/rfc822 part."""
    parts: list[str] = []
    html: list[str] = []
    original: dict[str, str] = {}
    for part in message.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "text/rfc822-headers"):
            original = original_headers(part)
            break  # the returned message: context, not the bounce's words
        if ctype in ("text/plain", "text/html"):
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                (parts if ctype == "text/plain" else html).append(charset_text(part, payload))
    if not parts and html:
        # Microsoft 365 sends some NDRs as HTML only: its text, a line per element.
        parts = [htmllib.unescape(_TAG.sub("\n", page)) for page in html]
    return "\n".join(parts), original


def charset_text(part: Message, payload: bytes) -> str:
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def original_headers(part: Message) -> dict[str, str]:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return {k.lower(): unfold(str(v)) for k, v in payload[0].items()}
    raw = payload if isinstance(payload, str) else ""
    return fields(raw.replace("\r", "").split("\n\n", 1)[0])


def original_sender(headers: dict[str, str]) -> str | None:
    for name in ("return-path", "from"):
        found = address(headers.get(name))
        if found:
            return found
    return None
