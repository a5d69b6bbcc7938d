"""Mail log lines that say what became of each recipient: Sendmail's delivery lines, and
Microsoft's logs (Exchange message tracking, the Microsoft 365 message trace, the Exchange
SMTP send protocol log).

Sendmail logs one line per delivery attempt, `QUEUEID: to=..., ctladdr=..., delay=...,
xdelay=..., mailer=..., pri=..., relay=HOST. [IP], dsn=X.Y.Z, stat=STATUS`, and the message's
sender on its own `QUEUEID: from=<...>, size=...` line (Sendmail Installation and Operation
Guide, "The System Log", https://www.sendmail.org/~ca/email/doc8.12/op-sh-2.html; `dsn=` is
the RFC 3463 code). `stat=` is `Sent (...)`, `Deferred: REASON` or the failure's words;
where Sendmail logs the receiver's reply it is in `reply=` (or in the deferral's reason).

Exchange's message tracking log is CSV with a `#Fields:` header (date-time, ...,
event-id, ..., recipient-address, recipient-status, ..., sender-address, ...); event-id FAIL
and DEFER are refusals and delays, DELIVER and SEND deliveries and hand-offs
(https://learn.microsoft.com/exchange/mail-flow/transport-logs/message-tracking). A
refusal by a remote server is in recipient-status as `[{LED=REPLY};{MSG=...};{FQDN=HOST};
{IP=ADDRESS};{LRT=...}]` (LED: the last error description), the shape the Microsoft 365
message trace's details and exports show too. The SMTP send protocol log is CSV too
(date-time, connector-id, session-id, sequence-number, local-endpoint, remote-endpoint,
event, data, context), event `>` a line sent and `<` a line received
(https://learn.microsoft.com/exchange/mail-flow/connectors/protocol-logging): a dialogue,
read as `transcript` reads one, session by session.
"""

from __future__ import annotations

import csv
import re

from .model import MAX_RECIPIENTS, Bounce, Recipient
from .transcript import Turn, dialogue
from .words import ADDRESS, address, made, status_in

# -- Sendmail ---------------------------------------------------------------------------------

#: `sm-mta[1234]: QUEUEID: ` (not Postfix's `postfix/sendmail[...]` compatibility program).
_SENDMAIL = re.compile(r"(?<![\w/-])(?:sm-mta|sendmail)\[[0-9]+\]: (\w+): ")
_SM_FIELD = re.compile(r"(\w+)=")
_SM_DSN = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")
_SM_REPLY = re.compile(r"[245][0-9][0-9][ -]")


def read_sendmail_log(text: str) -> Bounce | None:
    """Every `to=... stat=...` line of a Sendmail log, a recipient each."""
    if "sm-mta[" not in text and "sendmail[" not in text:
        return None
    senders: dict[str, str] = {}
    recipients: list[Recipient] = []
    for line in text.replace("\r", "").split("\n"):
        head = _SENDMAIL.search(line)
        if head is None:
            continue
        fields = _sm_fields(line[head.end() :])
        if "from" in fields:
            senders.setdefault(head.group(1), fields["from"])
        if "to" in fields and "stat" in fields and len(recipients) < MAX_RECIPIENTS:
            for recipient in _sm_recipients(fields):
                recipient.fields["queue-id"] = head.group(1)
                recipients.append(recipient)
    if not recipients:
        return None
    first = recipients[0].fields["queue-id"]
    return Bounce(
        format="sendmail-log",
        recipients=recipients[:MAX_RECIPIENTS],
        sender=address(senders.get(first)),
    )


def _sm_fields(rest: str) -> dict[str, str]:
    """`name=value` pairs separated by `, `; `stat=` and `reply=` run to the line's end (a
    reply has commas of its own), `stat=` up to a `, reply=` after it."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        name = _SM_FIELD.match(rest, pos)
        if name is None:
            cut = rest.find(", ", pos)
            if cut < 0:
                break
            pos = cut + 2
            continue
        key = name.group(1).lower()
        start = name.end()
        if key in ("stat", "reply"):
            end = rest.find(", reply=", start) if key == "stat" else -1
            end = len(rest) if end < 0 else end
        else:
            end = rest.find(", ", start)
            end = len(rest) if end < 0 else end
        out.setdefault(key, rest[start:end].strip())
        pos = end + 2
    return out


def _sm_recipients(fields: dict[str, str]) -> list[Recipient]:
    stat = fields["stat"]
    dsn = fields.get("dsn") if _SM_DSN.fullmatch(fields.get("dsn", "")) else None
    relay = fields.get("relay", "").split(" ", 1)[0].rstrip(".") or ""
    reply = fields.get("reply")
    if reply is None and stat.lower().startswith("deferred: "):
        reason = stat[len("deferred: ") :]
        reply = reason if _SM_REPLY.match(reason) else None
    words = reply or stat
    out: list[Recipient] = []
    for rcpt in ADDRESS.findall(fields["to"])[:MAX_RECIPIENTS] or [None]:
        if stat.lower().startswith("sent"):
            out.append(Recipient(address=rcpt, action="delivered", status=dsn, remote_mta=relay))
            continue
        recipient = made(rcpt, words, None, remote=relay)
        if reply is None:
            recipient.diagnostic_type = "x-sendmail"  # Sendmail's words, not a reply
        recipient.status = status_in(reply) or dsn
        deferred = stat.lower().startswith("deferred") or (dsn or "").startswith("4")
        recipient.action = "delayed" if deferred else "failed"
        out.append(recipient)
    return out


# -- Microsoft ----------------------------------------------------------------------------------

#: Events of the message tracking log that say what became of a recipient.
_EVENTS = {"FAIL": "failed", "DEFER": "delayed", "DELIVER": "delivered", "SEND": "relayed"}
#: A recipient-status that is a reply: `550 5.1.1 RESOLVER.ADR.RecipNotFound; not found`.
_STATUS_REPLY = re.compile(r"[245][0-9][0-9] [245]\.[0-9]{1,3}\.[0-9]{1,3}\b")
_LED = "{LED="
#: Where one recipient's status ends and the next one's begins.
_EACH_STATUS = re.compile(r";(?=\s*[2-5][0-9][0-9][ -])")
#: Columns a message tracking row has at least (Exchange 2013 and later log about thirty).
_ROW_COLUMNS = 12


def _name(column: str) -> str:
    """A column's name without case, dashes, underscores or spaces (the tracking log's
    `recipient-status`, an export's `recipient_status`, PowerShell's `RecipientStatus`)."""
    return re.sub(r"[-_ ]", "", column.strip().strip('"').lower())


def _rows(text: str) -> list[list[str]]:
    lines = [line for line in text.replace("\r", "").split("\n") if line.strip()]
    return [row for row in csv.reader(lines) if row]


def read_microsoft_log(text: str) -> Bounce | None:
    """Exchange message tracking / Microsoft 365 message trace rows, else an Exchange SMTP
    send protocol log."""
    if _LED not in text and "," not in text:
        return None
    lowered = text[:65536].lower()
    if ("recipient" in lowered and "status" in lowered) or _LED in text:
        found = _tracking(text)
        if found is not None:
            return found
    if ",<," in text:
        return _protocol(text)
    return None


def _tracking(text: str) -> Bounce | None:
    header: dict[str, int] | None = None
    recipients: list[Recipient] = []
    sender: str | None = None
    try:
        rows = _rows(text)
    except csv.Error:
        return None
    for row in rows:
        if len(recipients) >= MAX_RECIPIENTS:
            break
        first = row[0].lstrip()
        if first.startswith("#Fields:"):
            names = [first[len("#Fields:") :], *row[1:]]
            header = {_name(n): i for i, n in enumerate(names)}
            continue
        if first.startswith("#"):
            continue  # the log file's other comment lines (#Software, #Version, #Date)
        named = {_name(n): i for i, n in enumerate(row)}
        if "recipientstatus" in named or "recipientaddress" in named:
            header = named  # an export's or PowerShell's header row
            continue
        got = _tracked(row, header)
        if got is not None:
            recipients.extend(got[0])
            sender = sender or got[1]
    if not recipients:
        return None
    return Bounce(format="microsoft-log", recipients=recipients[:MAX_RECIPIENTS], sender=sender)


def _tracked(
    row: list[str], header: dict[str, int] | None
) -> tuple[list[Recipient], str | None] | None:
    """One row: its recipients and sender, when it is a FAIL/DEFER/DELIVER/SEND event or
    has a reply in it."""

    def column(name: str) -> str:
        at = header.get(name) if header is not None else None
        return row[at].strip() if at is not None and at < len(row) else ""

    if header is not None and "recipientstatus" in header:
        event = column("eventid").upper()
        status = column("recipientstatus")
        to = [a for a in column("recipientaddress").split(";") if a.strip()]
        sender = address(column("senderaddress")) or address(column("returnpath"))
        host = column("serverhostname")
    else:
        # A row pasted without its header: the columns by what they hold. A tracking row
        # has some twenty columns; a shorter one is a row only with an LED in it.
        if len(row) < _ROW_COLUMNS and not any(_LED in f for f in row):
            return None
        event = next((f.strip().upper() for f in row if f.strip().upper() in _EVENTS), "")
        at = next((i for i, f in enumerate(row) if _LED in f or _STATUS_REPLY.match(f.strip())), -1)
        # An LED unquoted in a pasted row was cut at its commas: the rest of the row has it.
        status = ",".join(row[at:]) if at >= 0 and _LED in row[at] else row[at] if at >= 0 else ""
        bare = [f.strip() for f in row if _all_addresses(f)]
        to = bare[0].split(";") if bare else []
        sender = address(bare[-1]) if len(bare) > 1 else None
        host = ""
    action = _EVENTS.get(event)
    if (action is None and event) or not (action or status):
        return None  # RECEIVE, SUBMIT, EXPAND...: no word on the delivery
    reply, fqdn = _led(status)
    if action is None:
        action = "delayed" if reply.startswith("4") else "failed"
    # Several recipients have a status each, in the same order, `;` between them.
    each = _EACH_STATUS.split(reply) if len(to) > 1 and _LED not in status else []
    replies = each if each and len(each) == len(to) else [reply] * max(len(to), 1)
    out: list[Recipient] = []
    rcpts = [address(a) for a in to][:MAX_RECIPIENTS] or [None]
    for rcpt, said in zip(rcpts, replies, strict=False):
        if action in ("delivered", "relayed") or said.startswith("2"):
            done = action if action in ("delivered", "relayed") else "delivered"
            out.append(Recipient(address=rcpt, action=done, remote_mta=fqdn or host or None))
            continue
        recipient = made(rcpt, said.strip() or None, None, remote=fqdn or host)
        recipient.action = action
        out.append(recipient)
    return out, sender


def _all_addresses(field: str) -> bool:
    parts = [p.strip() for p in field.split(";")]
    return bool(field.strip()) and all(p and address(p) == p for p in parts)


def _led(status: str) -> tuple[str, str]:
    """(the reply, the remote host) of a recipient-status: `{LED=...}` and `{FQDN=...}`
    of the bracketed form, else the status itself."""
    at = status.find(_LED)
    if at < 0:
        return status.strip(), ""
    end = status.find("}", at)
    reply = status[at + len(_LED) : end if end >= 0 else len(status)]
    fqdn_at = status.find("{FQDN=")
    fqdn = ""
    if fqdn_at >= 0:
        close = status.find("}", fqdn_at)
        fqdn = status[fqdn_at + len("{FQDN=") : close if close >= 0 else len(status)]
    return reply.strip(), fqdn.strip()


def _protocol(text: str) -> Bounce | None:
    """The send protocol log's dialogues, session by session: each session's refusal."""
    sessions: dict[str, list[Turn]] = {}
    remotes: dict[str, str] = {}
    try:
        rows = _rows(text)
    except csv.Error:
        return None
    for row in rows:
        if len(row) < 8 or row[6] not in ("<", ">"):
            continue
        session = row[2]
        sessions.setdefault(session, []).append(("S" if row[6] == "<" else "C", row[7]))
        remotes.setdefault(session, row[5].rsplit(":", 1)[0])
    recipients: list[Recipient] = []
    sender: str | None = None
    for session, found in sessions.items():
        bounce = dialogue(found, "microsoft-protocol-log", remotes.get(session))
        if bounce is not None:
            recipients.extend(bounce.recipients)
            sender = sender or bounce.sender
        if len(recipients) >= MAX_RECIPIENTS:
            break
    if not recipients:
        return None
    return Bounce(
        format="microsoft-protocol-log", recipients=recipients[:MAX_RECIPIENTS], sender=sender
    )
