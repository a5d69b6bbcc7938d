"""Reading a whole bounce e-mail, recipient by recipient.

A bounce says, for each recipient, what became of the message: refused for good, delayed,
delivered or relayed onward, with the receiver's reply and the command it answered. The
formats:

- RFC 3464 delivery status notifications (multipart/report; report-type=delivery-status):
  a per-message block (Reporting-MTA, Arrival-Date, Postfix's X-Postfix-Sender) and one
  block per recipient (Final-Recipient, Action, Status, Remote-MTA, Diagnostic-Code).
- RFC 5965 abuse feedback reports (report-type=feedback-report): a complaint about a
  message that was delivered, never a refusal.
- The plain-text bounces of MTAs and providers that send no delivery-status part: Postfix's
  human part, Exim, Sendmail, qmail, Exchange / Microsoft 365, Gmail and Yahoo. Each is
  recognised by the fixed lines its software writes (RFC 3464 §1 leaves the human part's
  wording to the MTA; these lines are the formats' facts, quoted only to recognise them).

The returned original message (a message/rfc822 or text/rfc822-headers part, or the copy
below a "this is a copy of the message" line) is context: its sender, recipients and headers
are kept for `reproduce`, and its text is never read as a receiver's reply.

Every scan is line by line or a single pass of a simple pattern, so 10 MB of anyone's text
is read in linear time (see tests/hostile/test_explain.py).
"""

from __future__ import annotations

import email
import email.policy
import html as htmllib
import re
from dataclasses import dataclass, field
from email.message import Message

from ..verdict import Stage

#: RFC 3464 §2.3.3 actions that mean the message did not reach the recipient.
FAILED_ACTIONS = frozenset({"failed", "delayed"})
#: Recipients read from one bounce at most: a bounce to more is a mailing list's, and
#: each recipient is explained on its own.
MAX_RECIPIENTS = 1000
#: RFC 3464 §2.3.3 actions that report a delivery (or its hand-off): never a refusal.
DELIVERED_ACTIONS = frozenset({"delivered", "relayed", "expanded"})

#: What the command a reply answered says about the stage (Postfix, Exim, Sendmail,
#: qmail wording).
COMMAND_STAGE = {
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

_FOLD = re.compile(r"(?<!\s)(?=\s*?\n\s)\s+")
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
#: An HTML tag (a `<` without its `>` is text; the scan from each `<` stops at the next).
_TAG = re.compile(r"<[^<>]*>")
#: Tried from the start of a run of local-part characters only: from inside the run it
#: would find the same `@`, after reading the rest of the run once more.
_ADDRESS = re.compile(
    r"(?<![\w.!#$%&'*+/=?^`{|}~-])[\w.!#$%&'*+/=?^`{|}~-]++"
    r"@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
)
_IN_REPLY_TO = re.compile(r"in reply to ", re.I)
_COMMAND_WORDS = re.compile(r"[A-Za-z ]*", re.I)
_COMMAND_END = re.compile(r" command", re.I)
_AFTER = re.compile(
    r"\bafter (?P<after>initial connection|end of data|(?:pipelined )?RCPT TO|"
    r"(?:pipelined )?MAIL FROM|DATA|EHLO|HELO)\b",
    re.I,
)
#: Sendmail's transcript: `>>> RCPT To:<bob@example.org>` is the command the next `<<<`
#: reply answered; `>>> DATA` then `<<<` after the dot is end of data.
_SENT = re.compile(r"^>>> (?P<verb>MAIL From|RCPT To|DATA|\.|EHLO|HELO)\b", re.I)


def end_of(pattern: re.Pattern[str], text: str, pos: int) -> int:
    """Where `pattern`, which matches the empty string too, ends when matched at `pos`."""
    found = pattern.match(text, pos)
    return found.end() if found is not None else pos


def address(text: str | None) -> str | None:
    """The first e-mail address in `text`."""
    if not text:
        return None
    found = _ADDRESS.search(text)
    return found.group(0) if found else None


def unfold(value: str) -> str:
    return _FOLD.sub(" ", value).strip()


def fields(text: str) -> dict[str, str]:
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


def in_reply_to(text: str) -> str | None:
    """COMMAND of the first `in reply to COMMAND command`, COMMAND in letters and spaces."""
    pos = 0
    while (head := _IN_REPLY_TO.search(text, pos)) is not None:
        words_end = end_of(_COMMAND_WORDS, text, head.end())
        end = _COMMAND_END.search(text, head.end() + 1, words_end)
        if end is not None:
            return text[head.end() : end.start()]
        # A later head inside these words has no ` command` in them either.
        pos = max(words_end, head.start() + 1)
    return None


def stage_from_words(text: str, *, after: bool = False) -> Stage | None:
    """The stage a bounce's words name: `in reply to X command` (Postfix), or `after X`
    (Exim's `SMTP error ... after RCPT TO`, Microsoft's and others' prose) when `after`."""
    text = re.sub(r"\s+", " ", text)
    command = in_reply_to(text)
    if command is not None:
        return COMMAND_STAGE.get(command.strip().lower())
    found = _AFTER.search(text) if after else None
    if found is not None:
        return COMMAND_STAGE.get(found.group("after").lower().removeprefix("pipelined "))
    return None


@dataclass
class Recipient:
    """What the bounce says became of one recipient."""

    address: str | None
    #: RFC 3464 `Action`: failed, delayed, delivered, relayed, expanded; `complaint` for
    #: an ARF report's subject.
    action: str
    status: str | None = None  # the enhanced status code (RFC 3463)
    #: The receiver's reply (a Diagnostic-Code's text after `smtp;`), or the MTA's words.
    diagnostic: str | None = None
    #: The Diagnostic-Code's type (`smtp`, `x-postfix`, `x-unix`), when one was given.
    diagnostic_type: str | None = None
    remote_mta: str | None = None
    stage: Stage | None = None
    original_recipient: str | None = None
    #: Every per-recipient field as given, lower-cased names (X-Postfix-*, Last-Attempt-Date).
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.action in FAILED_ACTIONS


@dataclass
class Bounce:
    """A bounce e-mail read: its format, the recipients, and the returned message."""

    #: dsn, arf, postfix, exim, sendmail, qmail, exchange, gmail, yahoo
    format: str
    recipients: list[Recipient]
    #: Per-message fields of a DSN (Reporting-MTA, Arrival-Date, X-Postfix-Sender...) or
    #: of an ARF report (Feedback-Type, User-Agent, Source-IP...).
    fields: dict[str, str] = field(default_factory=dict)
    reporting_mta: str | None = None
    #: The envelope sender the bounce went back to (X-Postfix-Sender, else the returned
    #: message's Return-Path or From).
    sender: str | None = None
    #: The returned message's header fields, as context only.
    original_headers: dict[str, str] = field(default_factory=dict)
    #: An ARF report's Feedback-Type (abuse, fraud, virus, other, not-spam).
    feedback_type: str | None = None

    @property
    def failures(self) -> list[Recipient]:
        return [r for r in self.recipients if r.failed]

    @property
    def complaint(self) -> bool:
        return self.format == "arf"


# -- reading -------------------------------------------------------------------------------

#: Lines above which a bounce returns the original message (or its headers): everything
#: from such a line on is the copy, context only. Exim, Sendmail, qmail, Exchange, Gmail
#: and common MTAs' wording.
_COPY = re.compile(
    r"^\s*-*\s*(?:this is a copy of the message|original message|"
    r"below this line is a copy of the message|message headers? follows?|"
    r"original message headers|returned message|undelivered message|"
    r"headers of the original message|the header of the original message)",
    re.I,
)
#: Plain-text formats, by a line only that software writes (first match wins). Where the
#: lines come from:
#: - Exim: its built-in bounce text, "This message was created automatically by mail
#:   delivery software." (Exim specification, ch. "Customizing bounce and warning
#:   messages", https://www.exim.org/exim-html-current/doc/html/spec_html/ch-customizing_bounce_and_warning_messages.html).
#: - qmail: the qmail-send Bounce Message Format, "Hi. This is the qmail-send program",
#:   "<address>:" paragraphs, "--- Below this line is a copy of the message."
#:   (https://cr.yp.to/proto/qsbmf.txt).
#: - Sendmail: "----- Transcript of session follows -----" and "----- The following
#:   addresses had permanent fatal errors -----", `>>>` commands and `<<<` replies
#:   (sendmail's savemail.c; the HP-UX Mailing Services Administrator's Guide, "How
#:   Sendmail Handles Errors").
#: - Exchange / Microsoft 365: "Diagnostic information for administrators", "Remote
#:   Server returned '...'", "Original message headers" (Microsoft Learn, "Email
#:   non-delivery reports and SMTP errors in Exchange Online",
#:   https://learn.microsoft.com/exchange/troubleshoot/email-delivery/ndr/non-delivery-reports-in-exchange-online).
#: - Gmail: "The response from the remote server was:" (current) and "The response was:"
#:   (older "Delivery to the following recipient failed permanently" notices).
#: - Yahoo: "Sorry, we were unable to deliver your message to the following address.",
#:   then qmail's "<address>:" / "Remote host said:" shape (Yahoo's mail ran on qmail).
#: - Postfix: "This is the mail system at host NAME." (bounce(8)'s default template,
#:   bounce_template_file; https://www.postfix.org/bounce.5.html).
_FORMATS: list[tuple[str, re.Pattern[str]]] = [
    ("exim", re.compile(r"This message was created automatically by mail delivery software")),
    ("qmail", re.compile(r"Hi\. This is the qmail-send program")),
    ("sendmail", re.compile(r"-{3,} ?Transcript of session follows ?-{3,}")),
    ("exchange", re.compile(r"Diagnostic information for administrators", re.I)),
    ("gmail", re.compile(r"The response (?:from the remote server )?was:")),
    ("yahoo", re.compile(r"Sorry, we were unable to deliver your message")),
    ("postfix", re.compile(r"This is the mail system at host ")),
]


def read(text: str) -> Bounce | None:
    """The bounce in `text`, recipient by recipient; None when it is no bounce e-mail."""
    head = text[:20000].lower()
    if "message/delivery-status" in head or "message/feedback-report" in head:
        return _read_mime(text)
    if "diagnostic-code:" in head and "status:" in head and "multipart/" not in head:
        # A delivery-status block pasted on its own (no MIME around it).
        found = _read_delivery_status(text, "", None)
        if found is not None:
            return found
    original: dict[str, str] = {}
    if _has_headers(text):
        message = email.message_from_string(text, policy=email.policy.compat32)
        body, original = _body_text(message)
    else:
        body = text  # a bounce's text pasted from a mail client, without its header
    for name, pattern in _FORMATS:
        if pattern.search(body):
            return _read_informal(name, body, original)
    return None


def _has_headers(text: str) -> bool:
    first = text.lstrip().split("\n", 1)[0]
    name, sep, _ = first.partition(":")
    return (
        bool(sep) and _FIELD_NAME.fullmatch(name) is not None and "\n\n" in text.replace("\r", "")
    )


def _body_text(message: Message) -> tuple[str, dict[str, str]]:
    """The human-readable text of a message (its text/plain parts, or the text of its HTML
    part when it has no plain one) and the headers of a returned message/rfc822 part."""
    parts: list[str] = []
    html: list[str] = []
    original: dict[str, str] = {}
    for part in message.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "text/rfc822-headers"):
            original = _original_headers(part)
            break  # the returned message: context, not the bounce's words
        if ctype in ("text/plain", "text/html"):
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                (parts if ctype == "text/plain" else html).append(_charset_text(part, payload))
    if not parts and html:
        # Microsoft 365 sends some NDRs as HTML only: its text, a line per element.
        parts = [htmllib.unescape(_TAG.sub("\n", page)) for page in html]
    return "\n".join(parts), original


def _charset_text(part: Message, payload: bytes) -> str:
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def _read_mime(text: str) -> Bounce | None:
    message = email.message_from_string(text, policy=email.policy.compat32)
    status_part: Message | None = None
    feedback_part: Message | None = None
    human: list[str] = []
    original: dict[str, str] = {}
    for part in message.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status" and status_part is None:
            status_part = part
        elif ctype == "message/feedback-report" and feedback_part is None:
            feedback_part = part
        elif ctype in ("message/rfc822", "text/rfc822-headers") and not original:
            original = _original_headers(part)
        elif ctype == "text/plain" and status_part is None and feedback_part is None:
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                human.append(_charset_text(part, payload))
    if feedback_part is not None:
        return _read_feedback(feedback_part, original)
    if status_part is None:
        # The content type named in prose or a broken MIME structure: the block may follow.
        return _read_delivery_status(text, "", None) if "diagnostic-code:" in text.lower() else None
    payload = status_part.get_payload()
    if isinstance(payload, list):
        blocks = "\n\n".join(
            "\n".join(f"{k}: {v}" for k, v in block.items())
            for block in payload
            if isinstance(block, Message)
        )
    else:
        blocks = str(payload)
    bounce = _read_delivery_status(blocks, "\n".join(human), original)
    return bounce


def _blocks(text: str) -> list[dict[str, str]]:
    """The RFC 822-style blocks of a delivery-status part, separated by blank lines."""
    out: list[dict[str, str]] = []
    current: list[str] = []
    for line in [*text.replace("\r", "").split("\n"), ""]:
        if line.strip():
            current.append(line)
        elif current:
            block = fields("\n".join(current))
            if block:
                out.append(block)
            current = []
    return out


def _read_delivery_status(text: str, human: str, original: dict[str, str] | None) -> Bounce | None:
    blocks = _blocks(text)
    if not blocks:
        return None
    per_message: dict[str, str] = {}
    if not _is_recipient_block(blocks[0]):
        per_message = blocks.pop(0)
    said = _human_replies(human)
    recipients = [
        _recipient(block, said) for block in blocks[:MAX_RECIPIENTS] if _is_recipient_block(block)
    ]
    if not recipients:
        return None
    original = original or {}
    sender = address(per_message.get("x-postfix-sender")) or _original_sender(original)
    return Bounce(
        format="dsn",
        recipients=recipients,
        fields=per_message,
        reporting_mta=_typed(per_message.get("reporting-mta")),
        sender=sender,
        original_headers=original,
    )


def _is_recipient_block(block: dict[str, str]) -> bool:
    return any(k in block for k in ("final-recipient", "action", "diagnostic-code", "status"))


def _typed(value: str | None) -> str | None:
    """The value of a typed DSN field (`dns; mx.example.org` -> `mx.example.org`)."""
    if not value:
        return None
    kind, sep, rest = value.partition(";")
    return (rest if sep else kind).strip() or None


def _recipient(block: dict[str, str], said: dict[str, Recipient]) -> Recipient:
    diagnostic = block.get("diagnostic-code", "")
    kind, sep, value = diagnostic.partition(";")
    dtype = kind.strip().lower() if sep else None
    reply = unfold(value if sep else diagnostic) or None
    final = address(block.get("final-recipient"))
    human = said.get(final.lower()) if final else None
    if reply is None and human is not None:
        reply = human.diagnostic  # no Diagnostic-Code: the human part's words for it
    status = block.get("status", "").strip() or None
    action = block.get("action", "").strip().lower()
    if not action:
        # RFC 3464 §2.3.3 requires Action; without it the status class says it.
        action = "failed" if status and status[:1] in "45" else "unknown"
        action = "delayed" if status and status.startswith("4") else action
    return Recipient(
        address=final,
        action=action,
        status=status.split()[0] if status else None,
        diagnostic=reply,
        diagnostic_type=dtype,
        remote_mta=_typed(block.get("remote-mta")),
        stage=(human.stage if human else None)
        or (stage_from_words(reply, after=True) if reply else None),
        original_recipient=address(block.get("original-recipient")),
        fields=block,
    )


def _human_replies(human: str) -> dict[str, Recipient]:
    """What the human part says per recipient, read once (Postfix's `<bob@...>: host X
    said: ... (in reply to RCPT TO command)` paragraphs), by lower-cased address."""
    out: dict[str, Recipient] = {}
    for recipient in _postfix(human) if human else []:
        if recipient.address:
            out.setdefault(recipient.address.lower(), recipient)
    return out


def _original_headers(part: Message) -> dict[str, str]:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return {k.lower(): unfold(str(v)) for k, v in payload[0].items()}
    raw = payload if isinstance(payload, str) else ""
    return fields(raw.replace("\r", "").split("\n\n", 1)[0])


def _original_sender(headers: dict[str, str]) -> str | None:
    for name in ("return-path", "from"):
        found = address(headers.get(name))
        if found:
            return found
    return None


def _read_feedback(part: Message, original: dict[str, str]) -> Bounce:
    payload = part.get_payload()
    if isinstance(payload, list):
        report: dict[str, str] = {}
        for block in payload:
            if isinstance(block, Message):
                report.update({k.lower(): unfold(str(v)) for k, v in block.items()})
    else:
        report = fields(str(payload))
    subject = address(report.get("original-rcpt-to")) or address(original.get("to"))
    return Bounce(
        format="arf",
        recipients=[Recipient(address=subject, action="complaint", fields=report)],
        fields=report,
        reporting_mta=_typed(report.get("reporting-mta")),
        sender=address(report.get("original-mail-from")) or _original_sender(original),
        original_headers=original,
        feedback_type=report.get("feedback-type", "").strip().lower() or None,
    )


# -- plain-text bounces ----------------------------------------------------------------------

_REPLY_CODE = re.compile(r"(?<![\w.])[245][0-9][0-9](?:[ -]|$)")
_ANGLED = re.compile(r"<([^<>\s]+@[^<>\s]+)>")


def _split_copy(body: str) -> tuple[str, str]:
    """(the bounce's own words, the returned copy) split at the first copy line."""
    lines = body.replace("\r", "").split("\n")
    for n, line in enumerate(lines):
        if _COPY.match(line):
            return "\n".join(lines[:n]), "\n".join(lines[n + 1 :])
    return body.replace("\r", ""), ""


def _read_informal(name: str, body: str, attached: dict[str, str]) -> Bounce | None:
    words, copy = _split_copy(body)
    original = fields(copy.lstrip("\n").split("\n\n", 1)[0]) if copy else {}
    original = original or attached
    reader = {
        "exim": _exim,
        "sendmail": _sendmail,
        "qmail": _qmail,
        "exchange": _exchange,
        "gmail": _gmail,
        "yahoo": _qmail,  # Yahoo's bounces keep qmail's `addr:` / `Remote host said:` shape
        "postfix": _postfix,
    }[name]
    recipients = reader(words)[:MAX_RECIPIENTS]
    if not recipients:
        return None
    return Bounce(
        format=name,
        recipients=recipients,
        sender=_original_sender(original),
        original_headers=original,
    )


def _paragraphs(text: str) -> list[list[str]]:
    out: list[list[str]] = [[]]
    for line in text.split("\n"):
        if line.strip():
            out[-1].append(line)
        elif out[-1]:
            out.append([])
    return [p for p in out if p]


def _reply_in(text: str) -> str | None:
    """The reply in a run of text: from its first reply code on, lines joined."""
    flat = " ".join(text.split())
    found = _REPLY_CODE.search(flat)
    return flat[found.start() :] if found else (flat or None)


def _status_in(reply: str | None) -> str | None:
    found = re.search(r"\b([245]\.[0-9]{1,3}\.[0-9]{1,3})\b", reply or "")
    return found.group(1) if found else None


def _made(address_: str | None, reply: str | None, stage: Stage | None, **extra: str) -> Recipient:
    status = _status_in(reply)
    code = _REPLY_CODE.match(reply or "")
    temporary = (status or (code.group(0) if code else "5")).startswith("4")
    return Recipient(
        address=address_,
        action="delayed" if temporary else "failed",
        status=status,
        diagnostic=reply,
        diagnostic_type="smtp" if code else None,
        stage=stage,
        remote_mta=extra.get("remote") or None,
    )


_POSTFIX_SAID = re.compile(r"^<([^>]+)>(?: \([^)]*\))?: (?:host (\S+?)\[[^\]]*\] said: )?")


def _postfix(words: str) -> list[Recipient]:
    out = []
    for paragraph in _paragraphs(words):
        head = _POSTFIX_SAID.match(paragraph[0])
        if head is None:
            continue
        text = " ".join(" ".join(line.split()) for line in paragraph)[head.end() :]
        stage = stage_from_words(text)
        command = text.rfind(" (in reply to ")
        reply = text[:command] if command >= 0 and text.endswith(" command)") else text
        out.append(_made(head.group(1), reply, stage, remote=head.group(2) or ""))
    return out


_EXIM_AFTER = re.compile(r"SMTP error from remote (?:mail server|mailer) after ")
_EXIM_HOST = re.compile(r"\bhost (\S+) \[[^\]\s]*\]")


def _exim(words: str) -> list[Recipient]:
    """Exim: the recipient indented on its own line, then its reason indented below it."""
    out: list[Recipient] = []
    for paragraph in _paragraphs(words):
        first = paragraph[0].strip()
        if not paragraph[0][:1].isspace() or address(first) != first.strip("<>"):
            continue
        reason = "\n".join(paragraph[1:])
        if not reason.strip():
            continue
        flat = " ".join(reason.split())
        stage = None
        after = _EXIM_AFTER.search(flat)
        # Exim 4.8x+ names the host on its own line above the error; older ones after it.
        named = _EXIM_HOST.search(flat, 0, after.start() if after is not None else len(flat))
        host = named.group(1) if named is not None else None
        if after is not None:
            stage = stage_from_words(flat[after.start() :], after=True)
            rest = flat[after.end() :]
            # `RCPT TO:<bob@example.org>:` then `host NAME [IP]: REPLY`
            colon = (
                rest.find(">:") + 2
                if rest.startswith(("RCPT", "MAIL", "pipelined"))
                else (rest.find(":") + 1)
            )
            flat = rest[colon:].strip()
            found = re.match(r"host (\S+) \[[^\]]*\]:\s*", flat)
            if found:
                host, flat = found.group(1), flat[found.end() :]
        out.append(_made(first.strip("<>"), _reply_in(flat), stage, remote=host or ""))
    return out


def _sendmail(words: str) -> list[Recipient]:
    """Sendmail: the transcript pairs each `>>> COMMAND` with the `<<<` replies after it."""
    out: list[Recipient] = []
    command: str | None = None
    rcpt: str | None = None
    for line in words.split("\n"):
        sent = _SENT.match(line)
        if sent:
            verb = sent.group("verb").lower()
            command = {"mail from": "mail from", "rcpt to": "rcpt to", ".": "end of data"}.get(
                verb, verb
            )
            rcpt = address(line) if verb == "rcpt to" else rcpt
            continue
        if line.startswith("<<< ") and _REPLY_CODE.match(line[4:]):
            reply = line[4:].strip()
            if reply[:1] in "45":
                stage = COMMAND_STAGE.get(command or "")
                who = rcpt if command == "rcpt to" else None
                if out and out[-1].address == who and out[-1].stage == stage:
                    out[-1].diagnostic = f"{out[-1].diagnostic} {reply}"
                else:
                    out.append(_made(who, reply, stage))
    talking = re.search(r"^\.\.\. while talking to ([^\s:]+?)\.?:", words, re.M)
    for recipient in out:
        recipient.remote_mta = talking.group(1) if talking else None
    if not out:
        # No transcript: `----- The following addresses had permanent fatal errors -----`
        # then `<bob@example.org>` and `(reason: 550 ...)`.
        for found in re.finditer(r"^<([^>\s]+)>[ \t]*\n[ \t]*\(reason: ([^)\n]*)\)", words, re.M):
            out.append(_made(found.group(1), found.group(2), None))
    if any(recipient.address is None for recipient in out):
        # A refusal before RCPT applies to the recipients the bounce lists.
        listed = _ANGLED.search(words)
        for recipient in out:
            recipient.address = recipient.address or (listed.group(1) if listed else None)
    return out[:MAX_RECIPIENTS]


def _qmail(words: str) -> list[Recipient]:
    """qmail (and Yahoo): `<bob@example.org>:` then the remote's words."""
    out: list[Recipient] = []
    for paragraph in _paragraphs(words):
        head = re.match(r"^<([^>]+)>:\s*(.*)$", paragraph[0].strip())
        if head is None:
            continue
        text = " ".join([head.group(2), *(line.strip() for line in paragraph[1:])]).strip()
        stage = None
        if "does not like recipient" in text:
            stage = Stage.RCPT
        elif "does not like sender" in text:
            stage = Stage.MAIL
        elif "failed after I sent the message" in text:
            stage = Stage.EOD
        said = text.find("Remote host said:")
        reply = text[said + len("Remote host said:") :] if said >= 0 else text
        reply = reply.split(" Giving up on ")[0].strip()
        out.append(_made(head.group(1), _reply_in(reply), stage))
    return out


_EXCHANGE_REPLY = re.compile(r"Remote Server returned '([^']*)'", re.I)
#: Older Exchange: `#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##` and
#: `#< #5.5.0 smtp;554 ...> #SMTP#` under the recipient.
_EXCHANGE_HASHED = re.compile(r"#<? ?#?([245][^#]*?)>? ?#(?:#|SMTP#)")


def _exchange(words: str) -> list[Recipient]:
    """Exchange / Microsoft 365: under `Diagnostic information for administrators`, each
    recipient on a line, then `Remote Server returned '550 5.7.1 ...'`."""
    at = re.search(r"Diagnostic information for administrators", words, re.I)
    section = words[at.end() :] if at else words
    out: list[Recipient] = []
    last: str | None = None
    for line in section.split("\n"):
        stripped = line.strip()
        if address(stripped) == stripped.strip("<>") and stripped:
            last = stripped.strip("<>")
            continue
        found = _EXCHANGE_REPLY.search(line)
        older = _EXCHANGE_HASHED.match(stripped) if found is None else None
        if found or older:
            reply = found.group(1) if found else older.group(1).strip() if older else ""
            out.append(_made(last, _reply_in(reply), stage_from_words(reply, after=True)))
    if not out:
        # Newer Microsoft 365 NDRs: `Remote server returned` is gone; the reply follows
        # the recipient in the administrators' section.
        for paragraph in _paragraphs(section):
            text = " ".join(line.strip() for line in paragraph)
            if _REPLY_CODE.search(text):
                out.append(_made(last or address(text), _reply_in(text), None))
                break
    return out


#: The most lines of a reply read after a `The response was:` line.
REPLY_LINES = 40
_GMAIL_REPLY = re.compile(r"The response (?:from the remote server )?was:")


def _gmail(words: str) -> list[Recipient]:
    """Gmail: `The response (from the remote server) was:` then the reply; the recipient
    is named in the sentence above (`wasn't delivered to bob@...`, or indented alone)."""
    out: list[Recipient] = []
    lines = words.split("\n")
    # The last address named above the reply, kept while reading: looking back from each
    # reply would read the text again for every one of them.
    who: str | None = None
    for n, line in enumerate(lines):
        if len(out) == MAX_RECIPIENTS:
            break
        if not _GMAIL_REPLY.search(line):
            named = [a for a in _ADDRESS.findall(line) if "mailer-daemon" not in a.lower()]
            who = named[-1] if named else who
            continue
        reply_lines: list[str] = []
        # A reply is a few lines: reading at most REPLY_LINES keeps many replies linear.
        for more in lines[n + 1 : n + 1 + REPLY_LINES]:
            if not more.strip():
                if reply_lines:
                    break
                continue
            reply_lines.append(more.strip())
        reply = _reply_in(" ".join(reply_lines))
        out.append(_made(who, reply, stage_from_words(" ".join(reply_lines), after=True)))
    return out
