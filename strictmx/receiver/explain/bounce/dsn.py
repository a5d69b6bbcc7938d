"""RFC 3464 delivery status notifications (multipart/report; report-type=delivery-status)
and RFC 5965 abuse feedback reports (report-type=feedback-report).

A DSN has a per-message block (Reporting-MTA, Arrival-Date, Postfix's X-Postfix-Sender) and
one block per recipient (Final-Recipient, Action, Status, Remote-MTA, Diagnostic-Code). A
feedback report is a complaint about a message that was delivered, never a refusal.
"""

from __future__ import annotations

import email
import email.policy
from email.message import Message

from .informal import postfix_paragraphs
from .model import MAX_RECIPIENTS, Bounce, Recipient
from .parts import charset_text, original_headers, original_sender
from .words import address, fields, stage_from_words, unfold


def read_mime(text: str) -> Bounce | None:
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
            original = original_headers(part)
        elif ctype == "text/plain" and status_part is None and feedback_part is None:
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                human.append(charset_text(part, payload))
    if feedback_part is not None:
        return _read_feedback(feedback_part, original)
    if status_part is None:
        # The content type named in prose or a broken MIME structure: the block may follow.
        return read_delivery_status(text, "", None) if "diagnostic-code:" in text.lower() else None
    payload = status_part.get_payload()
    if isinstance(payload, list):
        blocks = "\n\n".join(
            "\n".join(f"{k}: {v}" for k, v in block.items())
            for block in payload
            if isinstance(block, Message)
        )
    else:
        blocks = str(payload)
    bounce = read_delivery_status(blocks, "\n".join(human), original)
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


def read_delivery_status(text: str, human: str, original: dict[str, str] | None) -> Bounce | None:
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
    sender = address(per_message.get("x-postfix-sender")) or original_sender(original)
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
    for recipient in postfix_paragraphs(human) if human else []:
        if recipient.address:
            out.setdefault(recipient.address.lower(), recipient)
    return out


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
        sender=address(report.get("original-mail-from")) or original_sender(original),
        original_headers=original,
        feedback_type=report.get("feedback-type", "").strip().lower() or None,
    )
