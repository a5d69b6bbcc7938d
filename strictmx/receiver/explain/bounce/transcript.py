"""Raw SMTP dialogues: what the client sent and what the server answered, line by line.

The forms read (their markers are the formats' facts):

- swaks (https://jetmore.org/john/code/swaks/latest/doc/ref.txt, its transcript output):
  ` -> ` a line the client sent, `<- ` a reply it expected, `<** ` a reply it did not
  (an error), ` ~> `, `<~ ` and `<~* ` the same inside TLS; `=== ` and `*** ` are swaks'
  own notes (`=== Connected to HOST.`).
- `C:` / `S:` lines, as RFC 5321's scenarios write a session (RFC 5321 Appendix D).
- `>>> ` / `<<< `, the client and server lines of Sendmail's "Transcript of session"
  (a transcript pasted without the bounce around it).

Each reply answers the oldest command still waiting for one (RFC 5321 §4.3, and RFC 2920
§3.1 for pipelined commands, whose replies come back in order), so a pipelined
MAIL/RCPT/DATA gets each reply right. The refusal is the first 4xx/5xx reply; its stage is
the command it answered; the recipients are those of the RCPT lines (the one refused at
RCPT; the ones accepted, at DATA or end of data).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Sequence

from ...verdict import Stage
from .model import MAX_RECIPIENTS, Bounce, Recipient
from .words import address, made

#: Which side wrote a line, by its marker; `<~*` before `<~` (alternatives tried in order).
_LINE = re.compile(
    r"[ \t]*(?:(?P<client>->|~>|\*\*>|C:|>>>)|(?P<server><\*\*|<~\*|<-|<~|S:|<<<))[ \t]?"
)
#: A reply line: its code, then a space, a hyphen (more lines follow) or the line's end.
_CODE = re.compile(r"[ \t]*([2-5][0-9][0-9])(?:([ -])|$)")
#: swaks' note naming the server it reached.
_CONNECTED = re.compile(r"[ \t]*=== Connected to (\S+?)\.?\s*$")

#: The stage a command's reply answers, by its verb.
VERB_STAGE = {
    "EHLO": Stage.HELO,
    "HELO": Stage.HELO,
    "LHLO": Stage.HELO,
    "MAIL": Stage.MAIL,
    "RCPT": Stage.RCPT,
    "DATA": Stage.DATA,
    ".": Stage.EOD,
    "RSET": Stage.RSET,
    "NOOP": Stage.NOOP,
    "VRFY": Stage.VRFY,
}

Turn = tuple[str, str]  # ("C" or "S", the line without its marker)


def turns(text: str) -> tuple[list[Turn], str | None]:
    """The marked lines of a transcript, and the server swaks says it reached."""
    out: list[Turn] = []
    remote: str | None = None
    for line in text.replace("\r", "").split("\n"):
        marked = _LINE.match(line)
        if marked is not None:
            out.append(("C" if marked.group("client") else "S", line[marked.end() :]))
        elif remote is None and (connected := _CONNECTED.match(line)) is not None:
            remote = connected.group(1)
    return out, remote


def read_transcript(text: str) -> Bounce | None:
    """The dialogue in `text`, when it has both sides and a server reply with a code."""
    found, remote = turns(text)
    return dialogue(found, "transcript", remote)


def _verb(command: str) -> str:
    """The command's verb, upper-cased (`.` for the end of the message text)."""
    word = command.strip().split(" ", 1)[0].split(":", 1)[0].upper()
    if word == "BDAT" and command.strip().upper().endswith(" LAST"):
        return "."  # RFC 3030: the reply to the last chunk is the reply to the message
    return word


def dialogue(found: Iterable[Turn], name: str, remote: str | None = None) -> Bounce | None:
    """The first refusal of a dialogue, recipient by recipient; every RCPT's recipient as
    delivered when the message text was accepted; None when neither happened."""
    pending: deque[str] = deque()
    reply: list[str] = []
    rcpts: list[str] = []
    accepted: list[str] = []
    sender: str | None = None
    in_text = client_seen = server_seen = False
    refusal: tuple[str, Stage | None, str | None] | None = None  # reply, stage, its rcpt
    delivered = False
    for side, line in found:
        if side == "C":
            client_seen = True
            if in_text:
                # The message text, line by line, until the lone dot that ends it.
                if line.strip() == ".":
                    pending.append(".")
                    in_text = False
                continue
            pending.append(line)
            verb = _verb(line)
            if verb == "MAIL" and sender is None:
                sender = address(line)
            elif verb == "RCPT" and (rcpt := address(line)) is not None:
                rcpts.append(rcpt)
            continue
        code = _CODE.match(line)
        if code is None or refusal is not None or delivered:
            continue  # not a reply line, or after the answer (kept reading for RCPT lines)
        reply.append(line.strip())
        if code.group(2) == "-":
            continue  # more lines of this reply follow
        lines, reply = reply, []
        first_reply = not server_seen
        server_seen = True
        if pending:
            command: str | None = pending.popleft()
        elif in_text:
            command, in_text = ".", False  # a log that leaves the message text out
        else:
            command = None
        answered = _verb(command) if command is not None else None
        number = int(code.group(1))
        if answered == "DATA" and number == 354:
            in_text = True
        elif number >= 400:
            if answered is None:
                stage = Stage.CONNECT if first_reply and not client_seen else None
            else:
                stage = VERB_STAGE.get(answered)
            rcpt = address(command) if answered == "RCPT" and command else None
            refusal = (" ".join(lines), stage, rcpt)
        elif answered == "RCPT" and command is not None and (rcpt := address(command)):
            accepted.append(rcpt)
        elif answered == ".":
            delivered = True
    if not (client_seen and server_seen) or (refusal is None and not delivered):
        return None
    recipients: list[Recipient] = []
    if refusal is not None:
        text, stage, rcpt = refusal
        if rcpt is not None:
            who: list[str | None] = [rcpt]
        elif stage in (Stage.DATA, Stage.EOD):
            who = list(accepted or rcpts) or [None]
        else:
            who = list(rcpts) or [None]
        for one in _unique(who)[:MAX_RECIPIENTS]:
            recipients.append(made(one, text, stage, remote=remote or ""))
    else:
        for one in _unique(accepted or rcpts)[:MAX_RECIPIENTS]:
            recipients.append(Recipient(address=one, action="delivered", remote_mta=remote))
    if not recipients:
        return None
    return Bounce(format=name, recipients=recipients, sender=sender)


def _unique(items: Sequence[str | None]) -> list[str | None]:
    seen: set[str] = set()
    out: list[str | None] = []
    for item in items:
        key = item.lower() if item else ""
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out
