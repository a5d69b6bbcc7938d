"""`strictmx explain`: from a customer's bounce to the cause, the fix and the reproduction.

Input is whatever a support engineer has: a reply line (`550 5.7.1 ...`, with or without
a `smtp;` prefix, one line or several), a DSN e-mail (multipart/report with a
message/delivery-status part, RFC 3464), a Postfix log line (`status=bounced (host X
said: 550 ... (in reply to RCPT TO command))`) or an Exim log line (`** addr ... SMTP
error from remote mail server after RCPT TO:<...>: 550 ...`). `extract` finds the reply
in it, with what the input says besides: the enhanced status code, the stage it answered,
the recipient, the sender.

Matching is a TF-IDF cosine over word unigrams and bigrams, blended with difflib's
sequence ratio over the same tokens (word order matters in short replies), computed
against every catalogue entry's template. Both sides are normalised first so provider
noise does not count: addresses, IP addresses, host names, URLs, queue and session ids
and numbers become class tokens (`addr`, `ip`, `host`, `url`, `id`, `num`), continuation
codes inside joined lines go, `- gsmtp` style tags go. Words a customer's reply has that
the catalogue never uses still weigh in the cosine, so unknown text scores low instead of
matching on two shared words. The enhanced status code (RFC 3463) and the stage are
signals on top: a detail code that only some families use (X.7.25 reverse DNS, X.7.23
SPF, X.1.8 sender domain, ...) favours them, a code no catalogue entry uses (X.1.1 unknown
user, X.2.2 mailbox full) counts against every match, and a reply given at a stage the
outcome cannot be refused at counts against it.

A match is reported only at `THRESHOLD` or above; below it the answer is "not
recognised", with the nearest families and their scores, never a confident guess.
"""

from __future__ import annotations

import difflib
import email
import email.policy
import functools
import ipaddress
import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from publicsuffixlist import PublicSuffixList

from .catalogue import Catalogue, Entry, bundled
from .outcome import Fields
from .policy import load_registry
from .verdict import Reply, ReplyError, Stage

#: Inputs larger than this are refused: a DSN with its attachments is far smaller.
MAX_INPUT = 10 * 1024 * 1024
#: Only this much of the extracted reply text is matched; replies are at most a few lines.
MAX_REPLY_TEXT = 4096
#: A match at or above this confidence is reported as recognised. Chosen on the labelled
#: corpus (tests/data/explain_corpus.yaml): documented replies score above 0.9, other
#: receivers' words for a check mostly 0.44 to 0.8, and 28 of the corpus's 31 unrelated
#: bounces (unknown user, mailbox full, greylisting, TLS, DKIM, rate limits) 0.39 or less;
#: the three above share a catalogue reply's own phrase ("Access denied", "Recipient
#: address rejected: unverified address", "too many recipients").
THRESHOLD = 0.42
#: Matches within this distance of the best one are listed beside it.
NEAR = 0.12
MAX_MATCHES = 3


class ExplainError(ValueError):
    """Input that cannot be explained at all (empty, binary, too large)."""


# -- reading the input ----------------------------------------------------------------


def decode(data: bytes) -> str:
    """Text from raw input; ExplainError for empty, binary or oversized input."""
    if len(data) > MAX_INPUT:
        raise ExplainError(
            f"input too large: {len(data)} bytes, the limit is {MAX_INPUT} "
            "(give the reply line, the DSN's delivery-status part, or the log line)"
        )
    if not data.strip():
        raise ExplainError("empty input: give a reply line, a DSN e-mail, or a mail log line")
    if b"\x00" in data[:65536]:
        raise ExplainError("binary input (NUL bytes): give the bounce as text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    controls = sum(1 for ch in text[:65536] if ord(ch) < 32 and ch not in "\t\r\n\f")
    if controls > max(8, len(text[:65536]) // 100):
        raise ExplainError("binary input (control characters): give the bounce as text")
    return text


# -- finding the reply ----------------------------------------------------------------

_CODE = r"[2-5][0-9][0-9]"
_DSN = r"[245]\.[0-9]{1,3}\.[0-9]{1,3}"
_DSN_RE = re.compile(rf"\b({_DSN})\b")
_REPLY_START = re.compile(rf"^\s*(?:[\"'>]\s*)*(?:smtp\s*;\s*)?({_CODE})(?:[ -]|$)", re.I)
# Input is up to MAX_INPUT (10 MB) of anyone's text, so every scan below is linear in it.
# A pattern that searches for a head and then runs to a far delimiter (`.*\)$`, `[^:]*:`,
# `[A-Za-z ]+? command`) would run to that delimiter again from every later occurrence of
# the head: `status=a (` or `in reply to ` repeated to 1 MB took minutes. Such searches are
# a head pattern plus a scan of the text after it that is done once (`_Finder`, the run
# skipped in `_in_reply_to`); the results are the ones the single patterns gave.

#: `status=bounced (DETAIL)` in a Postfix log line, DETAIL running to the line's last `)`.
_POSTFIX_HEAD = re.compile(r"\bstatus=(?P<status>\w+) \(")
#: `host NAME[IP] said: REPLY (in reply to COMMAND command)`, Postfix's DETAIL.
_SAID_VERB = re.compile(r"\] (?:said|refused to talk to me): ")
_SAID_COMMAND_HEAD = " (in reply to "
_SAID_COMMAND_TAIL = " command)"
_NON_SPACE = re.compile(r"\S*")
#: Exim's `SMTP error from remote mail server after COMMAND: [host NAME [IP]: ]REPLY`.
_EXIM_HEAD = re.compile(r"SMTP error from remote (?:mail server|mailer) after ")
_EXIM_ENVELOPE = re.compile(r"(?:pipelined )?(?:RCPT TO|MAIL FROM):<")
_EXIM_VERB = re.compile(r"[A-Z]+")
_EXIM_REPLY = re.compile(r"\s*(?:host \S+ \[[^\]]*\]:\s*)?")
#: `in reply to COMMAND command`, COMMAND in letters and spaces.
_IN_REPLY_TO = re.compile(r"in reply to ", re.I)
_COMMAND_WORDS = re.compile(r"[A-Za-z ]*", re.I)
_COMMAND_END = re.compile(r" command", re.I)
#: A run of white space with a line break in it (the run is matched from its start only,
#: so a long run without one is read once, not once from each of its characters).
_LINE_BREAK = re.compile(r"(?<!\s)[^\S\n]*+\n\s*")
#: A folded header's run of white space: a line break followed by more white space.
_FOLD = re.compile(r"(?<!\s)(?=\s*?\n\s)\s+")
#: Compiled once: the loops over a pasted bounce's lines use them once per line.
_QUOTED = re.compile(r"^\s*(?:[\"'>]\s*)*(?:smtp\s*;\s*)?", re.I)
_CODE_LINE = re.compile(rf"{_CODE}(?:[ -]|$)")
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_POSTFIX_TO = re.compile(r"\bto=<")
_POSTFIX_FROM = re.compile(r"\bfrom=<")
_EXIM_FROM = re.compile(r"\bF=<")
_EXIM_AFTER = re.compile(
    r"after (?P<after>initial connection|end of data|(?:pipelined )?RCPT TO|"
    r"(?:pipelined )?MAIL FROM|DATA|[EH]LO)\b",
    re.I,
)

#: What the command a reply answered says about the stage (Postfix and Exim wording).
_COMMAND_STAGE = {
    "initial connection": Stage.CONNECT,
    "connect": Stage.CONNECT,
    "helo": Stage.HELO,
    "ehlo": Stage.HELO,
    "mail from": Stage.MAIL,
    "rcpt to": Stage.RCPT,
    "data": Stage.DATA,
    "end of data": Stage.EOD,
    "rset": Stage.RSET,
}


@dataclass
class Extracted:
    """The reply found in the input, and what the input says around it."""

    kind: str  # reply | dsn | postfix-log | exim-log | text
    text: str  # the reply's text without codes, lines joined by spaces
    code: int | None = None
    dsn: str | None = None
    #: The reply as wire lines, when the input held one (code on every line).
    lines: list[str] = field(default_factory=list)
    stage: Stage | None = None
    recipient: str | None = None
    sender: str | None = None
    remote: str | None = None  # the receiving host, as the input names it

    @property
    def reply(self) -> Reply | None:
        """The reply as strictmx would send it, when the input had a code."""
        if not self.lines:
            return None
        try:
            return Reply.parse(self.lines)
        except ReplyError:
            return None


def extract(text: str) -> Extracted:
    """Find the SMTP reply in a bounce, DSN, log line or bare reply."""
    stripped = text.strip()
    if _looks_like_dsn(stripped):
        found = _from_dsn(stripped)
        if found is not None:
            return found
    for line in stripped.splitlines():
        detail = _postfix_detail(line)
        if detail is not None:
            return _from_postfix(stripped, line, detail)
    exim = _exim(stripped)
    if exim is not None:
        return _from_exim(stripped, *exim)
    if _REPLY_START.match(stripped):
        return _from_reply_lines(stripped.splitlines(), "reply")
    return _from_text(stripped)


class _Finder:
    """`text.find(char, start)` for the scans of one search, reading each character once.

    Remembers the last answer: a later start before it has the same answer, and a start
    before the last start only needs the text up to it read. That covers how the
    searches here ask: rising starts, and starts that fall only after a failed scan.
    """

    def __init__(self, text: str, char: str) -> None:
        self.text, self.char = text, char
        self.start = self.found = len(text)  # nothing known; `found` is len(text) for none

    def find(self, start: int) -> int:
        if not self.start <= start <= self.found:
            if start < self.start:
                hit = self.text.find(self.char, start, self.start)
                self.found = hit if hit >= 0 else self.found
            else:
                hit = self.text.find(self.char, start)
                self.found = hit if hit >= 0 else len(self.text)
            self.start = start
        return self.found if self.found < len(self.text) else -1


def _end(pattern: re.Pattern[str], text: str, pos: int) -> int:
    """Where `pattern`, which matches the empty string too, ends when matched at `pos`."""
    found = pattern.match(text, pos)
    return found.end() if found is not None else pos


def _postfix_detail(line: str) -> str | None:
    """DETAIL of `status=X (DETAIL)` closing the line (white space may follow)."""
    end = len(line.rstrip())
    if not line.endswith(")", 0, end):
        return None
    head = _POSTFIX_HEAD.search(line)
    return line[head.end() : end - 1] if head is not None else None


def _postfix_said(detail: str) -> tuple[str, str, str | None] | None:
    """(host, reply, command) from `host NAME[IP] said: REPLY (in reply to X command)`.

    NAME is the shortest start of the word after `host ` that is followed by `[IP] said: `
    (or `refused to talk to me: `); IP runs to the first `]`.
    """
    if not detail.startswith("host "):
        return None
    start = len("host ")
    word_end = _end(_NON_SPACE, detail, start)
    closing = _Finder(detail, "]")
    bracket = detail.find("[", start + 1, word_end)
    verb = None
    while bracket >= 0 and verb is None:
        close = closing.find(bracket + 1)
        if close < 0:
            return None
        verb = _SAID_VERB.match(detail, close)
        if verb is None:
            bracket = detail.find("[", bracket + 1, word_end)
    if verb is None:
        return None
    reply, command = detail[verb.end() :], None
    if detail.endswith(_SAID_COMMAND_TAIL):
        at = detail.find(_SAID_COMMAND_HEAD, verb.end())
        words = at + len(_SAID_COMMAND_HEAD)
        if at >= 0 and words < len(detail) - len(_SAID_COMMAND_TAIL):
            reply = detail[verb.end() : at]
            command = detail[words : len(detail) - len(_SAID_COMMAND_TAIL)]
    return detail[start:bracket], reply, command


def _exim(text: str) -> tuple[str, str] | None:
    """(COMMAND, REPLY) of the first `SMTP error from remote mail server after COMMAND:`.

    COMMAND is `initial connection`, `end of data`, `RCPT TO:<address>` or `MAIL
    FROM:<address>` with what follows up to the next colon, or a word in capitals with
    what follows up to the next colon; REPLY is the rest of the text.
    """
    colons, closings = _Finder(text, ":"), _Finder(text, ">")
    for head in _EXIM_HEAD.finditer(text):
        at = head.end()
        colon = -1
        if text.startswith("initial connection:", at):
            colon = at + len("initial connection")
        elif text.startswith("end of data:", at):
            colon = at + len("end of data")
        else:
            envelope = _EXIM_ENVELOPE.match(text, at)
            if envelope is not None:
                close = closings.find(envelope.end())
                colon = colons.find(close + 1) if close >= 0 else -1
            if colon < 0:
                verb = _EXIM_VERB.match(text, at)
                if verb is not None and text.startswith(":", verb.end()):
                    colon = verb.end()
                elif verb is not None and text.startswith(" ", verb.end()):
                    colon = colons.find(verb.end() + 1)
        if colon >= 0:
            return text[at:colon], text[_end(_EXIM_REPLY, text, colon + 1) :]
    return None


def _in_reply_to(text: str) -> str | None:
    """COMMAND of the first `in reply to COMMAND command`, COMMAND in letters and spaces."""
    pos = 0
    while (head := _IN_REPLY_TO.search(text, pos)) is not None:
        words_end = _end(_COMMAND_WORDS, text, head.end())
        end = _COMMAND_END.search(text, head.end() + 1, words_end)
        if end is not None:
            return text[head.end() : end.start()]
        # A later head inside these words has no ` command` in them either.
        pos = max(words_end, head.start() + 1)
    return None


def _bracketed(head: re.Pattern[str], text: str) -> str | None:
    """What is between the first `head` (ending in `<`) and the `>` after it.

    Only the first head is tried: when no `>` follows it, none follows a later one.
    """
    found = head.search(text)
    if found is None:
        return None
    close = text.find(">", found.end())
    return text[found.end() : close] if close >= 0 else None


def _looks_like_dsn(text: str) -> bool:
    head = text[:20000].lower()
    return "message/delivery-status" in head or (
        "diagnostic-code:" in head and "status:" in head and "\n\n" in text.replace("\r", "")
    )


def _from_dsn(text: str) -> Extracted | None:
    message = email.message_from_string(text, policy=email.policy.compat32)
    fields: dict[str, str] = {}
    human: list[str] = []
    for part in message.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            fields = _delivery_status(part)
        elif ctype == "text/plain" and not fields:
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                human.append(payload.decode("utf-8", "replace"))
        elif ctype in ("text/rfc822-headers", "message/rfc822") and "sender" not in fields:
            original = _original_sender(part)
            if original:
                fields["sender"] = original
    if not fields:
        # A delivery-status block pasted without its MIME envelope.
        fields = _fields(text)
        if "diagnostic-code" not in fields:
            return None
    diagnostic = fields.get("diagnostic-code", "")
    kind, _, value = diagnostic.partition(";")
    reply = value.strip() if kind.strip().lower() in ("smtp", "x-postfix", "x-unix") else ""
    found = _from_reply_text(reply, "dsn") if reply else _from_text("\n".join(human) or diagnostic)
    found.kind = "dsn"
    status = _DSN_RE.search(fields.get("status", ""))
    if found.dsn is None and status:
        found.dsn = status.group(1)
    found.recipient = _address(fields.get("final-recipient") or fields.get("original-recipient"))
    found.sender = found.sender or _address(fields.get("x-postfix-sender") or fields.get("sender"))
    remote = fields.get("remote-mta", "")
    found.remote = remote.partition(";")[2].strip() or None
    context = " ".join([*human, diagnostic])
    found.stage = found.stage or _stage_from_words(context)
    return found


def _delivery_status(part: Message) -> dict[str, str]:
    """Per-recipient fields of the first recipient with a diagnostic (or the first one)."""
    blocks: list[dict[str, str]] = []
    payload = part.get_payload()
    if isinstance(payload, list):
        for block in payload:
            if isinstance(block, Message):
                blocks.append({k.lower(): _unfold(str(v)) for k, v in block.items()})
    else:
        blocks = [_fields(str(payload))]
    per_message = blocks[0] if blocks else {}
    recipients = [b for b in blocks if "final-recipient" in b or "diagnostic-code" in b]
    chosen = next((b for b in recipients if "diagnostic-code" in b), None)
    chosen = chosen or (recipients[0] if recipients else {})
    return {**per_message, **chosen}


def _fields(text: str) -> dict[str, str]:
    """RFC 822-style fields from text, continuation lines unfolded; first value wins."""
    # Each field's pieces are joined once at the end: adding to the value line by line
    # copies it again for every continuation line.
    out: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.replace("\r", "").split("\n"):
        if line[:1] in (" ", "\t") and current:
            out[current].append(line.strip())
            continue
        name, sep, value = line.partition(":")
        if sep and _FIELD_NAME.fullmatch(name):
            current = name.lower()
            if current in out:
                current = None  # a later recipient's field: keep the first
            else:
                out[current] = [value.strip()]
        else:
            current = None
    return {name: " ".join(pieces) for name, pieces in out.items()}


def _unfold(value: str) -> str:
    return _FOLD.sub(" ", value).strip()


def _original_sender(part: Message) -> str | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        headers: Message | dict[str, str] = payload[0]
    else:
        headers = _fields(str(payload).split("\n\n", 1)[0])
        headers = {k.title(): v for k, v in headers.items()}
    for name in ("Return-Path", "From"):
        value = headers.get(name)
        if value:
            found = _address(str(value))
            if found:
                return found
    return None


#: Tried from the start of a run of local-part characters only: from inside the run it
#: would find the same `@`, after reading the rest of the run once more.
_ADDRESS = re.compile(
    r"(?<![\w.!#$%&'*+/=?^`{|}~-])[\w.!#$%&'*+/=?^`{|}~-]++"
    r"@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
)


def _address(text: str | None) -> str | None:
    if not text:
        return None
    found = _ADDRESS.search(text)
    return found.group(0) if found else None


def _from_postfix(whole: str, line: str, detail: str) -> Extracted:
    said = _postfix_said(detail)
    if said is None:
        # Postfix's own words (connection timed out, host not found): no receiver replied.
        found = Extracted(kind="postfix-log", text=detail[:MAX_REPLY_TEXT])
    else:
        host, reply, command = said
        found = _from_reply_text(reply, "postfix-log")
        if "refused to talk to me" in detail:
            found.stage = Stage.CONNECT
        elif command:
            found.stage = _COMMAND_STAGE.get(command.strip().lower())
        found.remote = host
    found.kind = "postfix-log"
    dsn = re.search(rf"\bdsn=({_DSN})\b", line)
    if found.dsn is None and dsn:
        found.dsn = dsn.group(1)
    found.recipient = _bracketed(_POSTFIX_TO, line)
    found.sender = _bracketed(_POSTFIX_FROM, whole)
    return found


def _from_exim(whole: str, after: str, reply: str) -> Extracted:
    reply = _LINE_BREAK.sub(" ", reply.strip().replace("\\n", "\n"))
    found = _from_reply_text(reply, "exim-log")
    after = after.lower()
    for words, stage in _COMMAND_STAGE.items():
        if after.startswith(words) or after.startswith("pipelined " + words):
            found.stage = stage
            break
    rcpt = re.search(r"(?:^|\s)\*\* (\S+@\S+)", whole)
    found.recipient = (
        rcpt.group(1).strip("<>") if rcpt else _address(after if "rcpt" in after else None)
    )
    sender = _bracketed(_EXIM_FROM, whole)
    found.sender = (
        sender if sender is not None else _address(after if "mail from" in after else None)
    )
    host = re.search(r"\bH=(\S+)", whole)
    found.remote = host.group(1) if host else None
    return found


def _from_reply_text(text: str, kind: str) -> Extracted:
    """A reply whose lines were joined into one (log lines, DSN Diagnostic-Code)."""
    text = _LINE_BREAK.sub(" ", text).strip()  # unfold; keep a receiver's double spaces
    start = re.match(rf"({_CODE})([ -])", text)
    if start is None:
        return _from_text(text, kind)
    code = start.group(1)
    if f"{code}-" not in text:
        return _from_reply_lines([text], kind)
    # Split where the receiver's continuation lines began: ' 550-5.7.1 ', ' 550 5.7.1 '.
    return _from_reply_lines(re.split(rf"\s(?={code}[ -](?:{_DSN}\s)?)", text), kind)


def _from_reply_lines(raw: Sequence[str], kind: str) -> Extracted:
    # A reply line the mail client wrapped is joined to the line before, once at the end:
    # adding to that line piece by piece copies it again for every wrapped line.
    pieces: list[list[str]] = []
    for line in raw:
        clean = line[_end(_QUOTED, line, 0) :].rstrip()
        if not clean:
            continue
        if _CODE_LINE.match(clean) or not pieces:
            pieces.append([clean])
        else:
            pieces[-1].append(clean.strip())
    lines = [" ".join(line) for line in pieces]
    try:
        reply = Reply.parse(lines)
    except ReplyError:
        return _from_text(" ".join(lines), kind)
    text = " ".join(s.strip() for s in reply.lines)
    dsn = reply.status
    if dsn is None:
        inner = re.match(rf"\s*({_DSN})\b", text)
        dsn = inner.group(1) if inner else None
    return Extracted(
        kind=kind,
        text=text[:MAX_REPLY_TEXT],
        code=reply.code,
        dsn=dsn,
        lines=_wire(reply, lines),
        stage=_stage_from_words(" ".join(raw)),
    )


def _wire(reply: Reply, given: list[str]) -> list[str]:
    """The reply's lines as the receiver sent them (the DSN on each line, if it had one)."""
    return reply.wire_lines(enhanced=reply.status is not None) if reply.lines else given


def _from_text(text: str, kind: str = "text") -> Extracted:
    flat = re.sub(r"\s+", " ", text).strip()
    code_match = re.search(rf"(?:^|[\s'\"(;:])({_CODE})[ -](?:({_DSN})\s)?", flat)
    code = int(code_match.group(1)) if code_match else None
    if code is not None and code_match is not None and code < 400:
        code = None  # a 250 in prose is not a refusal's code
    dsn_match = _DSN_RE.search(flat)
    if code_match is not None and code is not None:
        flat = flat[code_match.end() :]
    return Extracted(
        kind=kind,
        text=flat[:MAX_REPLY_TEXT],
        code=code,
        dsn=dsn_match.group(1) if dsn_match else None,
        stage=_stage_from_words(text),
    )


def _stage_from_words(text: str) -> Stage | None:
    text = re.sub(r"\s+", " ", text)
    command = _in_reply_to(text)
    if command is not None:
        return _COMMAND_STAGE.get(command.strip().lower())
    after = _EXIM_AFTER.search(text)
    if after and "SMTP error" in text:
        words = after.group("after").lower().removeprefix("pipelined ")
        return _COMMAND_STAGE.get(words)
    return None


# -- normalising ----------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STOPWORDS = _words(
    "a an the of to is are was be been for and or in on at by with as it its this "
    "that these those from your you we our us please has have had will would can "
    "could may if than then there here into per via so any all"
)
#: Session tags large providers append; they say who sent the reply, not why.
_TAGS = frozenset({"gsmtp", "gcdp"})

_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>\"')\]]+|\bwww\.[^\s<>\"')\]]+", re.I)
_EMAIL = re.compile(r"<?[\w.!#$%&'*+/=?^`{|}~-]+@[\w.-]+\w>?")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]*\w)")
_IPV6 = re.compile(r"(?<![\w:])(?:IPv6:)?[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")
_HOST = re.compile(r"(?<![\w.@-])(?:[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,63}\b")
#: A queue id, session tag or reference: letters and at least three digits, maybe with
#: dots and dashes (k5si1437052qkb.183, 4W0T9k2p4Jz2Abc, AS16012607). The eight characters
#: are asked for first: the digit count reads on to the next space, and would otherwise do
#: so from every character of a run of punctuation.
_ID_RUN = re.compile(
    r"(?<![\w.-])(?=[\w.-]{8})(?=(?:[^\d\s]*\d){3})(?=[\w.-]*[A-Za-z])"
    r"[\w.-]{8,}(?<![.-])(?![\w-])"
)
_RFC = re.compile(r"\brfc[\s.-]?(\d{3,4})\b", re.I)
_CONTINUATION = re.compile(rf"(?:^|\s){_CODE}[- ](?:{_DSN})?(?=\s|$)")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_WORD = re.compile(r"[a-z0-9]+")


#: Spellings of one term that replies use interchangeably.
_SPELLINGS = (
    (re.compile(r"\b(?:black|block)[\s-]?list", re.I), "blacklist"),
    (re.compile(r"\bhost[\s-]name", re.I), "hostname"),
    (re.compile(r"\be-mail", re.I), "email"),
    (re.compile(r"\bre-?verse[\s-]dns\b|\brdns\b", re.I), "rdns"),
)


def _stem(word: str) -> str:
    for suffix in ("ing", "ion", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _is_id(word: str) -> bool:
    digits = sum(ch.isdigit() for ch in word)
    return len(word) >= 8 and digits >= 3 and digits < len(word) and not word.startswith("rfc")


def tokens(
    text: str, known: frozenset[str] | None = None, fields: Fields | None = None
) -> list[str]:
    """Normalised words of a reply: identifiers become class tokens, noise goes.

    A catalogue template's `{placeholders}` become their kind's sample value (`fields`, the
    outcome's), so the template normalises as the same reply with real values would; free
    text and anything not a field of the outcome drop.

    The labels of host names and URLs come out as `@label` tokens. `known` says which
    of them count: a label says something only when it names one kind of check (a block
    list's zone such as spamhaus or spamcop), not a provider that sends every kind of
    reply (google, yahoo) or the customer's own domains. For catalogue texts (`known`
    None) every label comes out.
    """
    text = text[:MAX_REPLY_TEXT]
    text = _CONTINUATION.sub(" ", text)
    text = _DSN_RE.sub(" ", text)

    extra: list[str] = []

    def labels(target: str) -> str:
        host = re.split(r"[/?#:]", target, maxsplit=1)[0]
        words = [w for w in re.split(r"[^a-z0-9]+", host.lower()) if len(w) > 2]
        words = [w for w in words if not w.isdigit()]
        words = [w for w in words if w not in ("www", "com", "net", "org", "http", "https")]
        extra.extend(f"@{w}" for w in words if known is None or f"@{w}" in known)
        return " "

    samples = fields or {}
    text = _PLACEHOLDER.sub(
        lambda m: samples[m.group(1)].sample if m.group(1) in samples else "", text
    )
    text = _URL.sub(lambda m: " xurl " + labels(re.sub(r"^\w+://", "", m.group(0))), text)
    text = _EMAIL.sub(" xaddr ", text)
    text = text.replace("<>", " xaddr ")
    text = _IPV4.sub(" xip ", text)
    text = _IPV6.sub(lambda m: " xip " if _is_ipv6(m.group(0)) else m.group(0), text)
    text = _HOST.sub(
        lambda m: " xhost " + labels(m.group(0)) if _is_host(m.group(0)) else m.group(0), text
    )
    text = _ID_RUN.sub(" xid ", text)
    text = _RFC.sub(r" rfc\1 ", text)
    for pattern, spelling in _SPELLINGS:
        text = pattern.sub(spelling, text)
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        if word in _STOPWORDS or word in _TAGS:
            continue
        if word.isdigit():
            out.append("xnum")
        elif _is_id(word):
            out.append("xid")
        else:
            out.append(_stem(word))
    return out + extra


#: Top-level names that are no public suffix but name hosts in bounces all the same.
_RESERVED_TLDS = _words(
    "test example invalid localhost local lan internal corp home localdomain arpa"
)


@functools.cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList(accept_unknown=False)


def _is_host(text: str) -> bool:
    """A dotted name whose top label is a real or reserved TLD (not `bl.shtml`, not
    `RESOLVER.ADR.RecipNotFound`)."""
    name = text.lower()
    return name.rsplit(".", 1)[-1] in _RESERVED_TLDS or _suffixes().publicsuffix(name) is not None


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text.removeprefix("IPv6:").removeprefix("ipv6:"))
    except ValueError:
        return False
    return True


def _features(words: Sequence[str]) -> Counter[str]:
    grams: Counter[str] = Counter(words)
    grams.update(f"{a} {b}" for a, b in itertools.pairwise(words))
    return grams


# -- matching -------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    entry: Entry
    confidence: float


@dataclass
class Explanation:
    """What `explain` found: the input's reply, and the catalogue entries it matches."""

    input: Extracted
    matches: list[Match]
    #: Best score per family, best first (the nearest families when not recognised).
    families: list[tuple[str, float]]

    @property
    def recognised(self) -> bool:
        return bool(self.matches)

    @property
    def best(self) -> Match | None:
        return self.matches[0] if self.matches else None

    def to_json(self, reproduce_input: str | None = None) -> dict[str, Any]:
        """The issue's JSON shape, plus `recognised`, `text` and `nearest_families`."""
        data: dict[str, Any] = {
            "input_kind": self.input.kind,
            "code": self.input.code,
            "dsn": self.input.dsn,
            "stage": self.input.stage.value if self.input.stage else None,
            "recognised": self.recognised,
            "text": self.input.text,
            "matches": [
                {
                    "family": m.entry.family,
                    "policy": m.entry.policy,
                    "outcome": m.entry.outcome,
                    "confidence": round(m.confidence, 3),
                    "cause": m.entry.cause,
                    "fix": m.entry.fix,
                    "rfc_allows_refusal": m.entry.rfc_allows_refusal,
                    "entry": m.entry.id,
                    "stage": m.entry.stage.value,
                    "rfc_note": m.entry.rfc_note,
                    "reproduce": reproduce_command(reproduce_input, m, n)
                    if reproduce_input is not None
                    else None,
                }
                for n, m in enumerate(self.matches)
            ],
        }
        if not self.recognised:
            data["nearest_families"] = [
                {"family": family, "confidence": round(score, 3)}
                for family, score in self.families[:3]
            ]
        return data

    def render(self, reproduce_input: str | None = None) -> str:
        got = self.input
        head = [f"input: {got.kind}"]
        if got.code is not None or got.dsn:
            head.append(f"code {got.code or '-'} {got.dsn or ''}".rstrip())
        if got.stage:
            head.append(f"answered at {got.stage.value}")
        out = [", ".join(head), f"reply: {_clip(got.text, 300)}", ""]
        if not self.recognised:
            out.append("not recognised: no catalogue reply is close enough to say what this is.")
            if self.families:
                nearest = ", ".join(f"{f} ({s:.2f})" for f, s in self.families[:3])
                out.append(f"nearest families: {nearest}")
            return "\n".join(out)
        for n, match in enumerate(self.matches):
            entry = match.entry
            title = "best match" if n == 0 else "also close"
            rfc = "allows" if entry.rfc_allows_refusal else "does NOT allow"
            what = (
                entry.policy if entry.family == entry.policy else f"{entry.family} / {entry.policy}"
            )
            out += [
                f"{title}: {what} {entry.outcome} "
                f"(confidence {match.confidence:.2f}; catalogue entry {entry.id}"
                + (f", {entry.receiver}" if entry.receiver else "")
                + ")",
                f"  stage:  decided at {entry.stage.value}",
                f"  cause:  {entry.cause}",
                f"  fix:    {entry.fix}",
                f"  RFC:    RFC 5321 {rfc} this refusal. {entry.rfc_note}",
            ]
            if reproduce_input is not None:
                out.append(f"  reproduce: {reproduce_command(reproduce_input, match, n)}")
            out.append("")
        return "\n".join(out).rstrip()


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def reproduce_command(given: str | None, match: Match, rank: int) -> str:
    """The `strictmx reproduce` command line for a match (`given` is how the input came)."""
    import shlex

    source = "-" if given in (None, "-") else shlex.quote(given)
    pin = f" --entry {match.entry.id}" if rank else ""
    return f"strictmx reproduce {source}{pin} -o reproduce-{match.entry.id}.yaml"


@dataclass(frozen=True)
class _Doc:
    """One form of an entry's reply: the template, or the documented text if it differs."""

    entry: Entry
    words: tuple[str, ...]
    vector: dict[str, float]
    norm: float
    detail: str | None  # the enhanced status code's subject.detail ("7.25")
    rclass: str | None  # Postfix's reply class ("sender address"), if the text has one


class Matcher:
    """The catalogue indexed for matching; build once, match many."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        texts = [
            (entry, tokens(" ".join(form.lines), fields=entry.fields))
            for entry in catalogue.entries
            for form in dict.fromkeys((entry.template, entry.reply))
        ]
        df: Counter[str] = Counter()
        for _, words in texts:
            df.update(set(_features(words)))
        n = len(texts)
        self.idf = {term: math.log((n + 1) / (count + 1)) + 1.0 for term, count in df.items()}
        self.unknown_idf = math.log(n + 1) + 1.0
        self.docs = [self._doc(entry, words) for entry, words in texts]
        families_by_detail: dict[str, set[str]] = {}
        families_by_label: dict[str, set[str]] = {}
        for doc in self.docs:
            family = doc.entry.family
            if doc.detail:
                families_by_detail.setdefault(doc.detail, set()).add(family)
            for word in doc.words:
                if word.startswith("@"):
                    families_by_label.setdefault(word, set()).add(family)
        self.families_by_detail = families_by_detail
        self.labels = frozenset(w for w, fams in families_by_label.items() if len(fams) == 1)

    def _doc(self, entry: Entry, words: list[str]) -> _Doc:
        vector = {t: c * self.idf[t] for t, c in _features(words).items()}
        norm = math.sqrt(sum(v * v for v in vector.values())) or 1.0
        text = " ".join(entry.template.lines)
        return _Doc(
            entry, tuple(words), vector, norm, _detail(entry.template.status), _reply_class(text)
        )

    def score(self, found: Extracted) -> list[Match]:
        words = tokens(found.text, self.labels)
        query: dict[str, float] = {}
        for term, count in _features(words).items():
            idf = self.idf.get(term)
            if idf is None:
                if " " in term:
                    continue  # an unseen word pair is how paraphrases differ; skip it
                idf = self.unknown_idf  # an unseen word is content no entry explains
            query[term] = count * idf
        rclass = _reply_class(found.text)
        qnorm = math.sqrt(sum(v * v for v in query.values())) or 1.0
        detail = _detail(found.dsn)
        raw: dict[str, float] = {}
        for doc in self.docs:
            dot = sum(w * doc.vector.get(t, 0.0) for t, w in query.items())
            cosine = dot / (qnorm * doc.norm)
            ratio = difflib.SequenceMatcher(None, words, doc.words, autojunk=False).ratio()
            score = 0.65 * cosine + 0.35 * ratio
            score *= self._signals(found, detail, rclass, doc)
            if score > raw.get(doc.entry.id, -1.0):
                raw[doc.entry.id] = score
        # Ranked by the raw score, so a signal still orders two entries capped at 1.
        ranked = sorted(raw.items(), key=lambda item: item[1], reverse=True)
        return [Match(self.catalogue.get(i), max(0.0, min(1.0, s))) for i, s in ranked]

    def _signals(
        self, found: Extracted, detail: str | None, rclass: str | None, doc: _Doc
    ) -> float:
        factor = 1.0
        if rclass is not None and doc.rclass is not None and rclass != doc.rclass:
            factor *= 0.7  # Postfix names the restriction class that refused; it differs
        if doc.entry.borrowed:
            factor *= 0.97  # the text is another check's: rank its owner first
        if detail is not None:
            families = self.families_by_detail.get(detail)
            if families is None:
                factor *= 0.8  # a code no strict-receiver check uses: likely something else
            elif len(families) <= 2 and detail not in ("7.1", "7.0", "0.0"):
                factor *= 1.12 if doc.entry.family in families else 0.9
            elif doc.detail == detail:
                factor *= 1.03
        if found.stage is not None and not _stage_fits(found.stage, doc.entry):
            factor *= 0.85
        if found.code is not None and str(found.code)[0] != str(doc.entry.template.code)[0]:
            factor *= 0.95
        return factor


#: Postfix's reply classes (smtpd_check.c, smtpd_dsn_fix.h): which restriction list refused.
_CLASS = re.compile(
    r"\b(unverified client host|client host|helo command|sender address|recipient address|"
    r"data command|end-of-data|etrn command) rejected\b",
    re.I,
)


def _reply_class(text: str) -> str | None:
    found = _CLASS.search(text)
    return found.group(1).lower() if found else None


def _detail(status: str | None) -> str | None:
    if not status:
        return None
    return status.split(".", 1)[1]


def _stage_fits(stage: Stage, entry: Entry) -> bool:
    """Could a receiver refusing for this entry's reason answer at `stage`?"""
    decided = entry.stage
    if stage == decided:
        return True
    early = (Stage.CONNECT, Stage.HELO, Stage.MAIL)
    if stage == Stage.RCPT and decided in early:
        return True  # delay_reject: Postfix gives client, HELO and sender refusals at RCPT
    if stage in (Stage.DATA, Stage.EOD) and decided in early:
        return True  # large providers decide client and sender checks after the data
    return stage in early and decided in early and early.index(stage) > early.index(decided)


@dataclass
class Explainer:
    """Explain inputs against a catalogue (the bundled one unless given)."""

    catalogue: Catalogue = field(default_factory=bundled)
    matcher: Matcher = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.matcher = Matcher(self.catalogue)

    def explain_bytes(self, data: bytes) -> Explanation:
        return self.explain(decode(data))

    def explain(self, text: str) -> Explanation:
        if not text.strip():
            raise ExplainError("empty input: give a reply line, a DSN e-mail, or a mail log line")
        found = extract(text)
        if not found.text.strip() and found.code is None:
            raise ExplainError("no SMTP reply found in the input")
        ranked = self.matcher.score(found)
        return Explanation(found, _pick(ranked), _by_family(ranked))


def _pick(ranked: Sequence[Match]) -> list[Match]:
    """The best match per outcome, at the threshold and near the best."""
    if not ranked or ranked[0].confidence < THRESHOLD:
        return []
    floor = max(THRESHOLD, ranked[0].confidence - NEAR)
    out: list[Match] = []
    seen: set[tuple[str, str]] = set()
    for match in ranked:
        if match.confidence < floor or len(out) == MAX_MATCHES:
            break
        key = (match.entry.policy, match.entry.outcome)
        if key not in seen:
            seen.add(key)
            out.append(match)
    return out


def _by_family(ranked: Iterable[Match]) -> list[tuple[str, float]]:
    best: dict[str, float] = {}
    for match in ranked:
        best.setdefault(match.entry.family, match.confidence)
    return sorted(best.items(), key=lambda item: item[1], reverse=True)


@functools.cache
def default_explainer() -> Explainer:
    """The bundled catalogue and the installed plug-ins' outcomes, indexed once."""
    registry = load_registry()
    return Explainer(bundled().with_policies({n: c.outcomes for n, c in registry.items()}))


def explain(text: str) -> Explanation:
    return default_explainer().explain(text)


# -- command line ---------------------------------------------------------------------

EXIT_NOT_RECOGNISED = 1
EXIT_BAD_INPUT = 2


def read_input(given: str | None) -> bytes:
    """TEXT, a FILE's contents, or standard input for '-' (or nothing, when piped)."""
    import os
    import sys

    if given is None or given == "-":
        if given is None and sys.stdin.isatty():
            raise ExplainError("give the bounce as TEXT, a FILE, or '-' to read standard input")
        return sys.stdin.buffer.read(MAX_INPUT + 1)
    if "\n" not in given and len(given) < 4096 and os.path.isfile(given):
        try:
            with open(given, "rb") as handle:
                return handle.read(MAX_INPUT + 1)
        except OSError as exc:
            raise ExplainError(f"cannot read {given}: {exc.strerror or exc}") from None
    if given and not any(ch.isspace() for ch in given) and not re.match(_CODE, given):
        # One word that is no reply: a file name with a typo, not a bounce.
        raise ExplainError(f"{given}: no such file (give the bounce text, a file, or '-')")
    return given.encode("utf-8", "surrogateescape")


def add_input_argument(parser: Any) -> None:
    parser.add_argument(
        "input",
        nargs="?",
        metavar="TEXT|FILE|-",
        help="a reply line, a DSN e-mail, or a Postfix/Exim log line: as text, in a file, "
        "or on standard input ('-')",
    )


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "explain",
        help="explain a bounce (reply, DSN or log line): cause, fix, and how to reproduce it",
    )
    add_input_argument(parser)
    parser.add_argument("--format", choices=("text", "json"), default="text")


def main(args: Any) -> int:
    """`strictmx explain`: exit 0 when recognised, 1 when not, 2 on unusable input."""
    import json
    import sys

    try:
        explanation = default_explainer().explain_bytes(read_input(args.input))
    except ExplainError as exc:
        print(f"strictmx: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    given = args.input if args.input not in (None, "-") else None
    if args.format == "json":
        print(json.dumps(explanation.to_json(given or "-"), indent=2))
    else:
        print(explanation.render(given or "-"))
    return 0 if explanation.recognised else EXIT_NOT_RECOGNISED
