"""Reading a whole bounce, recipient by recipient.

A bounce says, for each recipient, what became of the message: refused for good, delayed,
delivered or relayed onward, with the receiver's reply and the command it answered. The
package, one module per job:

- `model`: the `Bounce` and `Recipient` records every reader fills in;
- `words`: what the formats share (addresses, RFC 822-style fields, the stage a bounce's
  words name);
- `parts`: a bounce e-mail's MIME parts (its text, the returned message's headers);
- `dsn`: RFC 3464 delivery status notifications and RFC 5965 feedback reports;
- `informal`: the plain-text bounces of Postfix, Exim, Sendmail, qmail, Exchange /
  Microsoft 365, Gmail and Yahoo;
- `logs`: Sendmail's delivery log lines and Microsoft's logs (Exchange message tracking,
  Microsoft 365 message trace, the Exchange SMTP send protocol log);
- `transcript`: raw SMTP dialogues (swaks, `S:`/`C:`, `>>>`/`<<<`).

`read` takes bounce e-mails; `read_log` takes the log lines and transcripts, which report
the same per-recipient facts. The returned original message (a message/rfc822 or
text/rfc822-headers part, or the copy below a "this is a copy of the message" line) is
context: its sender, recipients and headers are kept for `reproduce`, and its text is never
read as a receiver's reply.

Every scan is line by line or a single pass of a simple pattern, so 10 MB of anyone's text
is read in linear time (see tests/hostile/test_explain.py).
"""

from __future__ import annotations

import email
import email.policy

from .dsn import read_delivery_status, read_mime
from .informal import FORMATS, read_informal
from .logs import read_microsoft_log, read_sendmail_log
from .model import DELIVERED_ACTIONS, FAILED_ACTIONS, MAX_RECIPIENTS, Bounce, Recipient
from .parts import body_text, has_headers
from .transcript import read_transcript
from .words import COMMAND_STAGE, address, fields, in_reply_to, stage_from_words, unfold

__all__ = [
    "COMMAND_STAGE",
    "DELIVERED_ACTIONS",
    "FAILED_ACTIONS",
    "LOG_FORMATS",
    "MAX_RECIPIENTS",
    "Bounce",
    "Recipient",
    "address",
    "fields",
    "in_reply_to",
    "read",
    "read_log",
    "stage_from_words",
    "unfold",
]

#: The formats `read_log` gives: log lines and dialogues, not bounce e-mails.
LOG_FORMATS = frozenset({"sendmail-log", "microsoft-log", "microsoft-protocol-log", "transcript"})


def read(text: str) -> Bounce | None:
    """The bounce in `text`, recipient by recipient; None when it is no bounce e-mail."""
    head = text[:20000].lower()
    if "message/delivery-status" in head or "message/feedback-report" in head:
        return read_mime(text)
    if "diagnostic-code:" in head and "status:" in head and "multipart/" not in head:
        # A delivery-status block pasted on its own (no MIME around it).
        found = read_delivery_status(text, "", None)
        if found is not None:
            return found
    original: dict[str, str] = {}
    if has_headers(text):
        message = email.message_from_string(text, policy=email.policy.compat32)
        body, original = body_text(message)
    else:
        body = text  # a bounce's text pasted from a mail client, without its header
    for name, pattern in FORMATS:
        if pattern.search(body):
            return read_informal(name, body, original)
    return None


def read_log(text: str) -> Bounce | None:
    """The recipients a Sendmail or Microsoft log, or a raw SMTP dialogue, reports; None
    when `text` is none of these (Postfix and Exim log lines are `extract`'s)."""
    return read_sendmail_log(text) or read_microsoft_log(text) or read_transcript(text)
