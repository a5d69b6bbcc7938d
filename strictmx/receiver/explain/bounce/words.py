"""The small readers every bounce format shares: addresses, RFC 822-style fields, the
stage a bounce's words name, and one recipient made from a reply's text.

Every scan is line by line or a single pass of a simple pattern, so 10 MB of anyone's text
is read in linear time (see tests/hostile/test_explain.py).
"""

from __future__ import annotations

import re

from ...verdict import Stage
from .model import Recipient

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
FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
#: Tried from the start of a run of local-part characters only: from inside the run it
#: would find the same `@`, after reading the rest of the run once more.
ADDRESS = re.compile(
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


def end_of(pattern: re.Pattern[str], text: str, pos: int) -> int:
    """Where `pattern`, which matches the empty string too, ends when matched at `pos`."""
    found = pattern.match(text, pos)
    return found.end() if found is not None else pos


def address(text: str | None) -> str | None:
    """The first e-mail address in `text`."""
    if not text:
        return None
    found = ADDRESS.search(text)
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
        if sep and FIELD_NAME.fullmatch(name):
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


REPLY_CODE = re.compile(r"(?<![\w.])[245][0-9][0-9](?:[ -]|$)")
ANGLED = re.compile(r"<([^<>\s]+@[^<>\s]+)>")


def paragraphs(text: str) -> list[list[str]]:
    out: list[list[str]] = [[]]
    for line in text.split("\n"):
        if line.strip():
            out[-1].append(line)
        elif out[-1]:
            out.append([])
    return [p for p in out if p]


def reply_in(text: str) -> str | None:
    """The reply in a run of text: from its first reply code on, lines joined."""
    flat = " ".join(text.split())
    found = REPLY_CODE.search(flat)
    return flat[found.start() :] if found else (flat or None)


def status_in(reply: str | None) -> str | None:
    found = re.search(r"\b([245]\.[0-9]{1,3}\.[0-9]{1,3})\b", reply or "")
    return found.group(1) if found else None


def made(address_: str | None, reply: str | None, stage: Stage | None, **extra: str) -> Recipient:
    status = status_in(reply)
    code = REPLY_CODE.match(reply or "")
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
