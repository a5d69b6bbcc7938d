"""One line per ended session, as `strictmx serve` prints it: text for people, JSON for
machines.

Most of a line is what the client chose to send (its HELO name, its addresses, reply text
quoting them), so nothing is printed as received: control characters, ANSI escapes,
Unicode format characters (bidirectional overrides) and backslashes are escaped, so a HELO
name can neither start a second, forged line nor recolour the operator's terminal.
In the text format, the fields a client chooses also have their spaces and quotes
escaped, so one field cannot pass for several.

The JSON keys (`JSON_KEYS`) are stable: they are documented in `serve --help` and the
README, and a key is only ever added.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

#: Recipients a line names; the others are counted.
SHOWN_RCPTS: Final = 3
#: Characters of reply text a text line shows (a reply line may have 512 octets).
TEXT_CLIP: Final = 120

#: The keys of a `--log-format json` line, in order.
JSON_KEYS: Final = (
    "time",
    "session",
    "peer",
    "peer_port",
    "client",
    "client_name",
    "helo",
    "mail_from",
    "rcpts",
    "rcpt_count",
    "outcome",
    "policy",
    "policy_outcome",
    "code",
    "status",
    "text",
)

#: What each key holds (`serve --help` prints this).
JSON_DOC: Final = (
    "time (ISO 8601, UTC, when the session ended), session (its journal id), peer and"
    " peer_port (the socket's source), client (the address policies judged: simulated,"
    " XCLIENT or PROXY), client_name, helo (the HELO/EHLO name accepted, else the last one"
    " sent),"
    " mail_from (the last MAIL FROM sent; '' is <>), rcpts (the first"
    f" {SHOWN_RCPTS} RCPT TO tried), rcpt_count (all of them), outcome (accepted, rejected,"
    " deferred, aborted or idle), policy and policy_outcome (the policy whose refusal was"
    " sent last, and its outcome id), code, status and text (that refusal's reply); null"
    " where there is none"
)


@dataclass(frozen=True)
class SessionEnd:
    """What the line says about a session that ended."""

    session: str
    ended: datetime
    peer: str
    peer_port: int
    client: str
    client_name: str | None
    helo: str | None
    mail_from: str | None
    #: The first SHOWN_RCPTS recipients tried.
    rcpts: tuple[str, ...]
    rcpt_count: int
    outcome: str
    policy: str | None = None
    policy_outcome: str | None = None
    code: int | None = None
    status: str | None = None
    text: str | None = None


def as_json(end: SessionEnd) -> str:
    """One JSON object on one line; json escapes every control character itself, and
    ensure_ascii keeps format characters and lone surrogates out of the output too."""
    values: dict[str, Any] = {
        "time": end.ended.isoformat(timespec="milliseconds"),
        "session": end.session,
        "peer": end.peer,
        "peer_port": end.peer_port,
        "client": end.client,
        "client_name": end.client_name,
        "helo": end.helo,
        "mail_from": end.mail_from,
        "rcpts": list(end.rcpts),
        "rcpt_count": end.rcpt_count,
        "outcome": end.outcome,
        "policy": end.policy,
        "policy_outcome": end.policy_outcome,
        "code": end.code,
        "status": end.status,
        "text": end.text,
    }
    return json.dumps(values, ensure_ascii=True, separators=(",", ":"))


def as_text(end: SessionEnd) -> str:
    """`TIME CLIENT helo=NAME <FROM> -> <TO>[ +N] OUTCOME [POLICY CODE X.Y.Z "TEXT"]`."""
    client = safe_token(end.client)
    if end.peer != end.client:
        client += f" (peer {safe_token(end.peer)})"
    if end.client_name:
        client += f" name={safe_token(end.client_name)}"
    parts = [end.ended.strftime("%Y-%m-%dT%H:%M:%SZ"), client]
    parts.append("helo=" + (safe_token(end.helo) if end.helo else "-"))
    parts.append(_envelope(end.mail_from, end.rcpts, end.rcpt_count))
    parts.append(end.outcome)
    if end.policy is not None:
        parts.append(end.policy)
    if end.code is not None:
        reply = str(end.code) + (f" {end.status}" if end.status else "")
        parts.append(reply + f' "{safe_text(clip(end.text or ""))}"')
    return " ".join(parts)


def _envelope(mail_from: str | None, rcpts: Sequence[str], count: int) -> str:
    sender = "-" if mail_from is None else f"<{safe_token(mail_from)}>"
    if not count:
        return sender
    shown = ",".join(f"<{safe_token(r)}>" for r in rcpts)
    more = count - len(rcpts)
    return f"{sender} -> {shown}" + (f" +{more}" if more > 0 else "")


def clip(text: str, limit: int = TEXT_CLIP) -> str:
    """A reply's text on one line, at most `limit` characters (a multi-line reply's lines
    joined with ' | ')."""
    flat = " | ".join(text.splitlines())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def safe_text(text: str) -> str:
    """`text` with every character that is not printable, a backslash or a double quote
    escaped (`\\x1b`, `\\u202e`, `\\\\`, `\\"`); spaces kept."""
    return "".join(_escaped(ch) if ch in '\\"' or not _shows(ch) else ch for ch in text)


def safe_token(text: str) -> str:
    """`safe_text`, and spaces and other quotes escaped too: one field stays one field."""
    return "".join(_escaped(ch) if ch in "\\\"' <>," or not ch.isprintable() else ch for ch in text)


def _shows(ch: str) -> bool:
    return ch == " " or ch.isprintable()


def _escaped(ch: str) -> str:
    if ch in '\\"':
        return "\\" + ch
    point = ord(ch)
    if point < 0x100:
        return f"\\x{point:02x}"
    if point < 0x10000:
        return f"\\u{point:04x}"
    return f"\\U{point:08x}"
