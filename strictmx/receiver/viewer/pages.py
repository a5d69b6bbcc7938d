"""What the viewer's pages show, as plain data: filters and cursors read from a query,
verdicts placed beside the replies that carried them, stored messages taken apart, the
commands that reproduce a session, and the dashboard's chart.

No I/O and no HTML here (the templates escape everything they are given); every input is
attacker-controlled text and nothing in it is trusted to be well formed.
"""

from __future__ import annotations

import email
import email.errors
import email.header
import email.message
import email.policy
import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from ..catalogue import CatalogueError
from ..registry import bundled

#: The list's filters: query parameter -> the journal's `sessions()` keyword.
FILTERS: Final = {
    "outcome": "outcome",
    "policy": "policy",
    "client": "client",
    "sender": "sender",
    "rcpt": "rcpt",
    "helo": "helo",
    "q": "text",
}
OUTCOMES: Final = ("accepted", "rejected", "deferred", "aborted", "idle")
PAGE_SIZE: Final = 50
#: Sessions a page reads at most when a filter cannot use an index (text, HELO, sender,
#: recipient, client): a rare term would otherwise read the whole journal for one page.
#: A page that runs out of them offers to search on below them.
SCAN_WINDOW: Final = 10_000
SCANNING: Final = frozenset({"q", "helo", "sender", "rcpt", "client"})
#: Longest filter value taken; longer ones are cut (nobody types more, LIKE gets slower).
MAX_FILTER: Final = 500
#: Characters of one message part shown on the page; the raw download has it all.
MAX_PART_SHOWN: Final = 200_000
REFUSING: Final = frozenset({"reject", "defer", "disconnect"})


class BadQuery(ValueError):
    """A query parameter the viewer cannot use; the text names it."""


def filters_of(query: Mapping[str, str]) -> dict[str, str]:
    """The active filters, by query parameter name (empty values dropped)."""
    found: dict[str, str] = {}
    for name in FILTERS:
        value = query.get(name, "").strip()
        if value:
            if name == "outcome" and value not in OUTCOMES:
                raise BadQuery(f"outcome must be one of {', '.join(OUTCOMES)}, not {value!r}")
            found[name] = value[:MAX_FILTER]
    return found


def journal_filters(filters: Mapping[str, str]) -> dict[str, Any]:
    return {FILTERS[name]: value for name, value in filters.items()}


def cursor_of(text: str | None, name: str) -> tuple[str, str] | None:
    """A keyset cursor `started|id` from the query (the id may not hold '|'-free text,
    so only the first '|' splits)."""
    if not text:
        return None
    started, bar, session_id = text.partition("|")
    if not bar or not started or not session_id:
        raise BadQuery(f"{name} must be a cursor 'started|id', not {text[:80]!r}")
    try:
        datetime.fromisoformat(started)
    except ValueError:
        raise BadQuery(f"{name}: {started[:40]!r} is not an ISO 8601 time") from None
    return started, session_id


def cursor(row: Mapping[str, Any]) -> str:
    return f"{row['started']}|{row['id']}"


# -- the session list ----------------------------------------------------------------------


def deciding(verdicts: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The verdict that decided the session: the last refusal that was sent, else the
    last refusal recorded (warn_only), else the last decisive one."""
    sent = [v for v in verdicts if v["action"] in REFUSING and v["replied_at"] is not None]
    if sent:
        return sent[-1]
    refusing = [v for v in verdicts if v["action"] in REFUSING]
    if refusing:
        return refusing[-1]
    decisive = [v for v in verdicts if v["action"] != "dunno"]
    return decisive[-1] if decisive else None


def reply_of(verdict: Mapping[str, Any]) -> str:
    parts = [str(verdict["code"]) if verdict["code"] is not None else "", verdict["status"] or ""]
    text = (verdict["text"] or "").replace("\r\n", " / ").replace("\n", " / ")
    return " ".join(p for p in (*parts, text) if p)


# -- the session page ----------------------------------------------------------------------


@dataclass
class Explained:
    """A verdict with what the catalogue says of its outcome."""

    verdict: Mapping[str, Any]
    reply: str
    cause: str | None
    fix: str | None
    rfc_note: str | None


@dataclass
class Line:
    when: str
    offset_ms: float
    direction: str
    text: str
    verdicts: list[Explained] = field(default_factory=list)


def explained(verdict: Mapping[str, Any]) -> Explained:
    try:
        info = bundled().outcomes.get((verdict["policy"], verdict["outcome"]))
    except CatalogueError:
        info = None  # a broken catalogue still leaves the verdict's own reason to show
    return Explained(
        verdict=verdict,
        reply=reply_of(verdict),
        cause=info.cause if info else None,
        fix=info.fix if info else None,
        rfc_note=info.rfc_note if info else None,
    )


def _seconds(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return None


def transcript(
    lines: Sequence[Mapping[str, Any]], verdicts: Sequence[Mapping[str, Any]]
) -> tuple[list[Line], list[Explained]]:
    """The transcript's lines, each sent reply with the verdicts it carried; and the
    verdicts no reply carried (no opinion, recorded only, or never sent).

    Verdict times come from the scenario's clock (which may be fixed), not the wire's, so
    a verdict is placed by its reply: the k-th verdict with a given code and text goes
    beside the k-th sent reply that starts with that code and holds that text.
    """
    start = _seconds(lines[0]["when"]) if lines else None
    shown = []
    for line in lines:
        at = _seconds(line["when"])
        offset = (at - start) * 1000 if at is not None and start is not None else 0.0
        shown.append(Line(line["when"], offset, line["direction"], line["line"]))
    unplaced: list[Explained] = []
    used: dict[tuple[int, str], int] = {}
    for verdict in verdicts:
        item = explained(verdict)
        code = verdict["code"]
        if code is None or verdict["replied_at"] is None:
            unplaced.append(item)
            continue
        first = (verdict["text"] or "").splitlines()[0] if verdict["text"] else ""
        key = (code, first)
        wanted = used.get(key, 0)
        seen = 0
        placed = False
        for i, sent in enumerate(shown):
            if sent.direction != "out" or not sent.text.startswith(str(code)):
                continue
            if first and first[:60] not in sent.text:
                continue
            if seen == wanted:
                # A multi-line reply ends at its first "code " line (RFC 5321 4.2).
                end = i
                while end + 1 < len(shown) and shown[end].text[3:4] == "-":
                    end += 1
                shown[end].verdicts.append(item)
                placed = True
                break
            seen += 1
        if placed:
            used[key] = wanted + 1
        else:
            unplaced.append(item)
    return shown, unplaced


@dataclass
class Part:
    content_type: str
    text: str | None  # text/* parts, decoded
    filename: str | None
    size: int
    cut: bool = False


@dataclass
class Parsed:
    headers: list[tuple[str, str]]
    parts: list[Part]
    problem: str | None = None


def _header_text(value: str) -> str:
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
        return value


def parse_message(raw: bytes) -> Parsed:
    """Headers (RFC 2047 decoded where that works) and leaf parts of a stored message."""
    try:
        message = email.message_from_bytes(raw, policy=email.policy.compat32)
    except Exception as exc:  # the parser is lenient; anything left is shown, not raised
        return Parsed([], [], f"cannot parse the message: {type(exc).__name__}: {exc}")
    headers = [(str(k), _header_text(str(v))) for k, v in message.items()]
    parts: list[Part] = []
    try:
        for part in message.walk():
            if part.is_multipart():
                continue
            parts.append(_part(part))
    except Exception as exc:  # a malformed MIME tree shows what was read before the fault
        return Parsed(headers, parts, f"cannot read the MIME parts: {type(exc).__name__}")
    return Parsed(headers, parts)


def _part(part: email.message.Message) -> Part:
    kind = part.get_content_type()
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    filename = part.get_filename()
    text: str | None = None
    cut = False
    if part.get_content_maintype() == "text" and part.get_content_disposition() != "attachment":
        charset = part.get_content_charset() or "utf-8"
        try:
            text = data.decode(charset, "replace")
        except LookupError:  # an unknown charset name
            text = data.decode("utf-8", "replace")
        if len(text) > MAX_PART_SHOWN:
            text, cut = text[:MAX_PART_SHOWN], True
    return Part(kind, text, None if filename is None else str(filename), len(data), cut)


def swaks_command(session: Mapping[str, Any], server: str) -> str:
    """swaks replaying the session's envelope; XCLIENT sets the simulated client (strictmx
    trusts XCLIENT from loopback by default)."""
    words = ["swaks", "--server", server]
    if session.get("helo"):
        words += ["--helo", session["helo"]]
    if session.get("mail_from") is not None:
        words += ["--from", session["mail_from"]]
    for rcpt in session.get("rcpts") or []:
        words += ["--to", rcpt]
    if session.get("client_address") and session["client_address"] != session.get("peer"):
        xclient = f"ADDR={session['client_address']}"
        if session.get("client_name"):
            xclient += f" NAME={session['client_name']}"
        words += ["--xclient", xclient]
    return " ".join(shlex.quote(w) for w in words)


def reproduce_command(session: Mapping[str, Any], verdict: Mapping[str, Any] | None) -> str:
    """`strictmx reproduce` for the deciding reply, with the session's envelope."""
    reply = "" if verdict is None else reply_of(verdict)
    words = ["strictmx", "reproduce", reply or "REPLY", "-o", "reproduce.yaml"]
    words += ["--client-ip", session["client_address"]]
    if session.get("helo"):
        words += ["--helo", session["helo"]]
    if session.get("mail_from"):
        words += ["--mail-from", session["mail_from"]]
    if session.get("rcpts"):
        words += ["--rcpt", session["rcpts"][0]]
    return " ".join(shlex.quote(w) for w in words)


# -- the dashboard -------------------------------------------------------------------------

#: Colours by outcome, and for policies in turn; chosen to read on white.
OUTCOME_COLOURS: Final = {
    "accepted": "#2e7d32",
    "rejected": "#c62828",
    "deferred": "#ef6c00",
    "aborted": "#6a1b9a",
    "idle": "#757575",
    "open": "#1565c0",
}
PALETTE: Final = (
    "#1565c0",
    "#c62828",
    "#2e7d32",
    "#ef6c00",
    "#6a1b9a",
    "#00838f",
    "#ad1457",
    "#4e342e",
)
#: Series drawn separately; the rest of the policies are summed as "other".
MAX_SERIES: Final = 8
MAX_BARS: Final = 60


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass
class Chart:
    width: int
    height: int
    bars: list[Bar]
    legend: list[tuple[str, str, int]]  # label, colour, total
    labels: list[tuple[float, str]]  # x, bucket shown under the axis
    ticks: list[tuple[float, int]]  # y, value
    empty: bool


#: A bucket's text (the start time cut short) -> its datetime format and length.
BUCKETS: Final = {
    "minute": ("%Y-%m-%dT%H:%M", timedelta(minutes=1)),
    "hour": ("%Y-%m-%dT%H", timedelta(hours=1)),
    "day": ("%Y-%m-%d", timedelta(days=1)),
}
#: Widest bar in pixels: a few buckets stay bars, not walls.
MAX_BAR_WIDTH: Final = 36


def bucket_range(found: Sequence[str], bucket: str) -> list[str]:
    """The last MAX_BARS buckets up to the newest found, empty ones included, so that the
    x axis is time; texts that do not parse are kept as they are."""
    if not found:
        return []
    form, step = BUCKETS[bucket]
    try:
        first, last = (datetime.strptime(found[0], form), datetime.strptime(found[-1], form))
    except ValueError:
        return list(found[-MAX_BARS:])
    start = max(first, last - step * (MAX_BARS - 1))
    count = int((last - start) / step) + 1
    return [(start + step * i).strftime(form) for i in range(count)]


def chart(
    rows: Sequence[Sequence[Any]],
    colours: Mapping[str, str] | None = None,
    bucket: str = "hour",
) -> Chart:
    """A stacked bar chart of `(bucket, series, count)` rows: the last MAX_BARS buckets
    (empty ones too), the MAX_SERIES largest series (others summed)."""
    width, height, left, bottom, top = 760, 260, 48, 40, 10
    buckets = bucket_range(sorted({str(r[0]) for r in rows}), bucket)
    totals: dict[str, int] = {}
    for _, series, n in rows:
        totals[str(series)] = totals.get(str(series), 0) + int(n)
    ranked = sorted(totals, key=lambda s: (-totals[s], s))
    kept = ranked[:MAX_SERIES]
    other = sum(totals[s] for s in ranked[MAX_SERIES:])
    names = [*kept, *(["other"] if other else [])]
    colour = {
        name: (colours or {}).get(name, PALETTE[i % len(PALETTE)]) for i, name in enumerate(names)
    }
    counts: dict[str, dict[str, int]] = {b: {} for b in buckets}
    for bucket, series, n in rows:
        b = str(bucket)
        if b not in counts:
            continue
        name = str(series) if str(series) in kept else "other"
        counts[b][name] = counts[b].get(name, 0) + int(n)
    peak = max((sum(c.values()) for c in counts.values()), default=0)
    plot_w, plot_h = width - left - 10, height - bottom - top
    step = min(plot_w / max(len(buckets), 1), MAX_BAR_WIDTH + 4)
    bars: list[Bar] = []
    labels: list[tuple[float, str]] = []
    every = max(1, math.ceil(72 / step))  # a label is about 70 pixels wide
    for i, shown in enumerate(buckets):
        x = left + i * step
        y = float(top + plot_h)
        for name in names:
            n = counts.get(shown, {}).get(name, 0)
            if not n:
                continue
            h = plot_h * n / peak
            y -= h
            bars.append(Bar(x + 1, y, max(step - 2, 1), h, colour[name], f"{shown}: {name} {n}"))
        if i % every == 0:
            labels.append((x + step / 2, shown[5:].replace("T", " ")))
    ticks = [(top + plot_h - plot_h * f, round(peak * f)) for f in (0, 0.5, 1)] if peak else []
    legend = [(name, colour[name], totals.get(name, other)) for name in names]
    return Chart(width, height, bars, legend, labels, ticks, empty=not rows)
