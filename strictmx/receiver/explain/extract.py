"""Finding the SMTP reply in a bounce: a reply line, a bounce e-mail, a Sendmail or
Microsoft log, a raw SMTP dialogue (each recipient of those, read by `bounce`), a Postfix or
Exim log line; with the enhanced status code, the stage it answered, the recipient and the
sender."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..verdict import Reply, ReplyError, Stage
from .bounce import COMMAND_STAGE, LOG_FORMATS, Bounce, Recipient, read_log, stage_from_words
from .bounce import address as _address
from .bounce import read as read_bounce

#: Inputs larger than this are refused: a DSN with its attachments is far smaller.
MAX_INPUT = 10 * 1024 * 1024
#: Only this much of the extracted reply text is matched; replies are at most a few lines.
MAX_REPLY_TEXT = 4096


class ExplainError(ValueError):
    """Input that cannot be explained at all (empty, binary, too large)."""


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

CODE = r"[2-5][0-9][0-9]"
DSN = r"[245]\.[0-9]{1,3}\.[0-9]{1,3}"
DSN_RE = re.compile(rf"\b({DSN})\b")
_REPLY_START = re.compile(rf"^\s*(?:[\"'>]\s*)*(?:smtp\s*;\s*)?({CODE})(?:[ -]|$)", re.I)
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
#: A run of white space with a line break in it (the run is matched from its start only,
#: so a long run without one is read once, not once from each of its characters).
_LINE_BREAK = re.compile(r"(?<!\s)[^\S\n]*+\n\s*")
#: Compiled once: the loops over a pasted bounce's lines use them once per line.
_QUOTED = re.compile(r"^\s*(?:[\"'>]\s*)*(?:smtp\s*;\s*)?", re.I)
_CODE_LINE = re.compile(rf"{CODE}(?:[ -]|$)")
_POSTFIX_TO = re.compile(r"\bto=<")
_POSTFIX_FROM = re.compile(r"\bfrom=<")
_EXIM_FROM = re.compile(r"\bF=<")

_COMMAND_STAGE = COMMAND_STAGE


@dataclass
class Extracted:
    """The reply found in the input, and what the input says around it."""

    #: reply | dsn | bounce-FORMAT | postfix-log | exim-log | sendmail-log | microsoft-log
    #: | microsoft-protocol-log | transcript | text
    kind: str
    text: str  # the reply's text without codes, lines joined by spaces
    code: int | None = None
    dsn: str | None = None
    #: The reply as wire lines, when the input held one (code on every line).
    lines: list[str] = field(default_factory=list)
    stage: Stage | None = None
    recipient: str | None = None
    sender: str | None = None
    remote: str | None = None  # the receiving host, as the input names it
    #: For a recipient of a bounce e-mail: RFC 3464's Action (failed, delayed, delivered,
    #: relayed, expanded) or `complaint` for an ARF report; None for a single reply.
    action: str | None = None
    #: The bounce's format (dsn, arf, exim, sendmail, qmail, exchange, gmail, yahoo,
    #: postfix) when the input was a whole bounce e-mail; of a Sendmail or Microsoft log or
    #: an SMTP dialogue, its kind (they report per recipient as bounces do).
    bounce_format: str | None = None
    #: The returned message's header fields: context for `reproduce`, never evidence.
    original_headers: dict[str, str] = field(default_factory=dict)

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
    """Find the SMTP reply in a bounce, DSN, log line or bare reply.

    For a bounce e-mail with several recipients, the first failed one (`extract_all` gives
    each); a bounce that reports no failure gives its first recipient, with its action.
    """
    return extract_all(text)[0]


def extract_all(text: str) -> list[Extracted]:
    """One Extracted per recipient of a bounce e-mail (failed ones first), else one."""
    stripped = text.strip()
    bounce = read_bounce(stripped) or read_log(stripped)
    if bounce is not None:
        ordered = bounce.failures + [r for r in bounce.recipients if not r.failed]
        return [_from_recipient(bounce, recipient) for recipient in ordered]
    for line in stripped.splitlines():
        detail = _postfix_detail(line)
        if detail is not None:
            return [_from_postfix(stripped, line, detail)]
    exim = _exim(stripped)
    if exim is not None:
        return [_from_exim(stripped, *exim)]
    if _REPLY_START.match(stripped):
        return [_from_reply_lines(stripped.splitlines(), "reply")]
    return [_from_text(stripped)]


def _from_recipient(bounce: Bounce, recipient: Recipient) -> Extracted:
    """What one recipient's part of a bounce says, as explain reads a reply."""
    if bounce.format == "dsn" or bounce.format in LOG_FORMATS:
        kind = bounce.format
    else:
        kind = f"bounce-{bounce.format}"
    reply = recipient.diagnostic or ""
    if recipient.failed and reply and recipient.diagnostic_type in (None, "smtp"):
        found = _from_reply_text(reply, kind)
    else:
        # An MTA's own words (x-postfix; x-unix;), a delivery, or a complaint: no reply.
        found = Extracted(kind=kind, text=_LINE_BREAK.sub(" ", reply).strip()[:MAX_REPLY_TEXT])
        if recipient.failed and reply:
            found = _from_text(reply, kind)
    found.kind = kind
    if recipient.status and (found.dsn is None or not recipient.failed):
        found.dsn = recipient.status
    found.stage = recipient.stage or found.stage
    found.recipient = recipient.address or recipient.original_recipient
    found.sender = bounce.sender
    found.remote = recipient.remote_mta
    found.action = recipient.action
    found.bounce_format = bounce.format
    found.original_headers = bounce.original_headers
    return found


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


def _bracketed(head: re.Pattern[str], text: str) -> str | None:
    """What is between the first `head` (ending in `<`) and the `>` after it.

    Only the first head is tried: when no `>` follows it, none follows a later one.
    """
    found = head.search(text)
    if found is None:
        return None
    close = text.find(">", found.end())
    return text[found.end() : close] if close >= 0 else None


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
    dsn = re.search(rf"\bdsn=({DSN})\b", line)
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
    start = re.match(rf"({CODE})([ -])", text)
    if start is None:
        return _from_text(text, kind)
    code = start.group(1)
    if f"{code}-" not in text:
        return _from_reply_lines([text], kind)
    # Split where the receiver's continuation lines began: ' 550-5.7.1 ', ' 550 5.7.1 '.
    return _from_reply_lines(re.split(rf"\s(?={code}[ -](?:{DSN}\s)?)", text), kind)


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
        inner = re.match(rf"\s*({DSN})\b", text)
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
    code_match = re.search(rf"(?:^|[\s'\"(;:])({CODE})[ -](?:({DSN})\s)?", flat)
    code = int(code_match.group(1)) if code_match else None
    if code is not None and code_match is not None and code < 400:
        code = None  # a 250 in prose is not a refusal's code
    dsn_match = DSN_RE.search(flat)
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
    # Exim's `after X` counts only in an Exim error line: in other prose it is any word.
    return stage_from_words(text, after="SMTP error" in text)
