"""The plain-text bounces of MTAs and providers that send no delivery-status part:
Postfix's human part, Exim, Sendmail, qmail, Exchange / Microsoft 365, Gmail and Yahoo.

Each is recognised by the fixed lines its software writes (RFC 3464 §1 leaves the human
part's wording to the MTA; these lines are the formats' facts, quoted only to recognise
them). The copy of the original message below a "this is a copy of the message" line is
context only.
"""

from __future__ import annotations

import re

from ...verdict import Stage
from .model import MAX_RECIPIENTS, Bounce, Recipient
from .parts import original_sender
from .words import (
    ADDRESS,
    ANGLED,
    COMMAND_STAGE,
    REPLY_CODE,
    address,
    fields,
    made,
    paragraphs,
    reply_in,
    stage_from_words,
)

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
FORMATS: list[tuple[str, re.Pattern[str]]] = [
    ("exim", re.compile(r"This message was created automatically by mail delivery software")),
    ("qmail", re.compile(r"Hi\. This is the qmail-send program")),
    ("sendmail", re.compile(r"-{3,} ?Transcript of session follows ?-{3,}")),
    ("exchange", re.compile(r"Diagnostic information for administrators", re.I)),
    ("gmail", re.compile(r"The response (?:from the remote server )?was:")),
    ("yahoo", re.compile(r"Sorry, we were unable to deliver your message")),
    ("postfix", re.compile(r"This is the mail system at host ")),
]

#: Sendmail's transcript: `>>> RCPT To:<bob@example.org>` is the command the next `<<<`
#: reply answered; `>>> DATA` then `<<<` after the dot is end of data.
_SENT = re.compile(r"^>>> (?P<verb>MAIL From|RCPT To|DATA|\.|EHLO|HELO)\b", re.I)


def _split_copy(body: str) -> tuple[str, str]:
    """(the bounce's own words, the returned copy) split at the first copy line."""
    lines = body.replace("\r", "").split("\n")
    for n, line in enumerate(lines):
        if _COPY.match(line):
            return "\n".join(lines[:n]), "\n".join(lines[n + 1 :])
    return body.replace("\r", ""), ""


def read_informal(name: str, body: str, attached: dict[str, str]) -> Bounce | None:
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
        "postfix": postfix_paragraphs,
    }[name]
    recipients = reader(words)[:MAX_RECIPIENTS]
    if not recipients:
        return None
    return Bounce(
        format=name,
        recipients=recipients,
        sender=original_sender(original),
        original_headers=original,
    )


_POSTFIX_SAID = re.compile(r"^<([^>]+)>(?: \([^)]*\))?: (?:host (\S+?)\[[^\]]*\] said: )?")


def postfix_paragraphs(words: str) -> list[Recipient]:
    out = []
    for paragraph in paragraphs(words):
        head = _POSTFIX_SAID.match(paragraph[0])
        if head is None:
            continue
        text = " ".join(" ".join(line.split()) for line in paragraph)[head.end() :]
        stage = stage_from_words(text)
        command = text.rfind(" (in reply to ")
        reply = text[:command] if command >= 0 and text.endswith(" command)") else text
        out.append(made(head.group(1), reply, stage, remote=head.group(2) or ""))
    return out


_EXIM_AFTER = re.compile(r"SMTP error from remote (?:mail server|mailer) after ")
_EXIM_HOST = re.compile(r"\bhost (\S+) \[[^\]\s]*\]")


def _exim(words: str) -> list[Recipient]:
    """Exim: the recipient indented on its own line, then its reason indented below it."""
    out: list[Recipient] = []
    for paragraph in paragraphs(words):
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
        out.append(made(first.strip("<>"), reply_in(flat), stage, remote=host or ""))
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
        if line.startswith("<<< ") and REPLY_CODE.match(line[4:]):
            reply = line[4:].strip()
            if reply[:1] in "45":
                stage = COMMAND_STAGE.get(command or "")
                who = rcpt if command == "rcpt to" else None
                if out and out[-1].address == who and out[-1].stage == stage:
                    out[-1].diagnostic = f"{out[-1].diagnostic} {reply}"
                else:
                    out.append(made(who, reply, stage))
    talking = re.search(r"^\.\.\. while talking to ([^\s:]+?)\.?:", words, re.M)
    for recipient in out:
        recipient.remote_mta = talking.group(1) if talking else None
    if not out:
        # No transcript: `----- The following addresses had permanent fatal errors -----`
        # then `<bob@example.org>` and `(reason: 550 ...)`.
        for found in re.finditer(r"^<([^>\s]+)>[ \t]*\n[ \t]*\(reason: ([^)\n]*)\)", words, re.M):
            out.append(made(found.group(1), found.group(2), None))
    if any(recipient.address is None for recipient in out):
        # A refusal before RCPT applies to the recipients the bounce lists.
        listed = ANGLED.search(words)
        for recipient in out:
            recipient.address = recipient.address or (listed.group(1) if listed else None)
    return out[:MAX_RECIPIENTS]


def _qmail(words: str) -> list[Recipient]:
    """qmail (and Yahoo): `<bob@example.org>:` then the remote's words."""
    out: list[Recipient] = []
    for paragraph in paragraphs(words):
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
        out.append(made(head.group(1), reply_in(reply), stage))
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
            out.append(made(last, reply_in(reply), stage_from_words(reply, after=True)))
    if not out:
        # Newer Microsoft 365 NDRs: `Remote server returned` is gone; the reply follows
        # the recipient in the administrators' section.
        for paragraph in paragraphs(section):
            text = " ".join(line.strip() for line in paragraph)
            if REPLY_CODE.search(text):
                out.append(made(last or address(text), reply_in(text), None))
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
            named = [a for a in ADDRESS.findall(line) if "mailer-daemon" not in a.lower()]
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
        reply = reply_in(" ".join(reply_lines))
        out.append(made(who, reply, stage_from_words(" ".join(reply_lines), after=True)))
    return out
