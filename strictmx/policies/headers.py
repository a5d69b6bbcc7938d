"""headers: is the message header what RFC 5322 and the SMTP transaction allow?

Runs at EOD (end of data), on `session.message`: the raw bytes as received, dot-unstuffed.
The header section is parsed once per message, from bytes, so that line lengths and 8-bit
bytes are judged exactly as sent. It ends at the first empty line or, as Postfix's cleanup
and Python's email parser do, at the first line that is neither a field nor a folded
continuation; a message without a blank line is all header.

Checks, in the order they are reported (the first found decides; the verdict's `also`
detail lists the others, so one warn_only run shows every defect):

1. BARE_LF: a line of the message, or a command of the transaction, ended in LF without
   CR (`session.bare_lf`). RFC 5321 §2.3.8 allows CRLF only; a bare LF is how SMTP
   smuggling works. Postfix's `smtpd_forbid_bare_newline = reject` replies
   `550 5.5.2 <myhostname> Error: bare <LF> received` to such a message and keeps the
   session (recorded live from Postfix 3.7.11: QUIT after it gets 221); so does this.
   A persona's dialect may settle a bare LF in the message before this runs
   (`data_bare_lf`: the Postfix dialect refuses it itself; `line_end` takes it for a line
   end, and the message arrives here with CRLF), so this check is for the dialects that
   keep it as sent, and for a bare LF in a command the dialect let through.
2. LINE_TOO_LONG: a header line over `max_line_length` octets, line end not counted
   (RFC 5322 §2.1.1: 998; RFC 5321 §4.5.3.1.6: 1000 with CRLF). Body lines are the SMTP
   layer's: aiosmtpd refuses any data line over 999 octets with `500 Line too long`.
3. HEADER_8BIT: a byte over 0x7F in the header when MAIL FROM did not carry SMTPUTF8
   (RFC 6532 gives UTF-8 headers to SMTPUTF8 transactions only; 8BITMIME covers the body),
   or bytes that are not UTF-8 even with it. Postfix `strict_7bit_headers = yes`:
   `550 5.6.0 improper use of 8-bit data in message header`.
   HEADER_8BIT_SMTPUTF8 (`strict_7bit`): valid UTF-8 in the header of an SMTPUTF8
   transaction, refused all the same, as Postfix's cleanup does: strict_7bit_headers does
   not look at SMTPUTF8 (Postfix 3.7.11, recorded live: MAIL FROM:<alice@example.net>
   SMTPUTF8, then `Subject: Grüße` -> the same 550 5.6.0 reply).
4. FIELD_REPEATED: a field of `singular` more than once. RFC 5322 §3.6 allows Date, From,
   Sender, Reply-To, To, Cc, Bcc, Message-ID, In-Reply-To, References and Subject at most
   once each (Haraka's `singular` list; Gmail refuses duplicate From, Subject, Message-ID).
5. FROM_MISSING, FROM_INVALID, FROM_MULTIPLE: From is required (§3.6); it must parse as a
   mailbox-list with at least one complete address (§3.6.2; parsed by the stdlib's
   `email.headerregistry`, whose defects decide); several addresses need a Sender field
   (§3.6.2), or are always refused as Gmail does (`multiple_from`).
6. DATE_MISSING, DATE_INVALID, DATE_TOO_OLD, DATE_IN_FUTURE: Date is required (§3.6). Its
   value must be RFC 5322 §3.3 date-time: optional day name that agrees with the date, day,
   month name, year of four or more digits from 1900 on, hh:mm[:ss], numeric zone, nothing
   but a trailing comment. With `allow_obsolete` (§4.3, which parsers must accept) also
   two- and three-digit years, zone names (UT, GMT, EST...; military letters count as
   -0000), and comments and optional whitespace between the parts. The date is then
   compared with the world's clock (`ctx.clock.now()`): older than `max_age_days`, or more
   than `max_future_minutes` ahead (Haraka's date_past_days = 15 and date_future_days = 2
   are the defaults).
7. MESSAGE_ID_MISSING, MESSAGE_ID_INVALID: Message-ID SHOULD be present (§3.6; Gmail
   requires it) and must be `"<" dot-atom-text "@" (dot-atom-text / no-fold-literal) ">"`
   (§3.6.4), with the obsolete local-part and domain forms under `allow_obsolete`; under
   SMTPUTF8, atext includes UTF-8 (RFC 6532 §3.2).

Every check has an option that turns it off. Default replies: Postfix's texts for bare LF
and 8-bit headers, Haraka's header plugin texts (with an RFC 3463 status added) for missing,
repeated and out-of-range fields, Gmail's current texts for From and Message-ID; the
catalogue's replies (seed-19 to seed-24, Gmail's multi-line "not RFC 5322 compliant" form)
are reply overrides in scenarios/headers-*.yaml.

RFC 5321 §3.3: servers SHOULD NOT reject messages because of defects in the header section
or body. Refusing for header content (repeated fields, From, Date, Message-ID) is a strict
receiver's choice the RFC does not give it, and those verdicts say so. Bare LF, over-long
lines and 8-bit header bytes without SMTPUTF8 break the transport's own rules (RFC 5321
§2.3.8 and §4.5.3.1.6, RFC 6531/6532), so refusing them is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from email import errors
from email.headerregistry import Address, AddressHeader, HeaderRegistry
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from strictmx.receiver.finding import Finding
from strictmx.receiver.message import Header, header_of
from strictmx.receiver.outcome import NUMBER, TEXT
from strictmx.receiver.policy import FROM_CATALOGUE, Context, Outcome, Policy, PolicyOptions
from strictmx.receiver.reproduction import (
    CLOCK,
    Build,
    Request,
    bare_lf_message,
    header_lines,
    message,
)
from strictmx.receiver.rfc5322 import SIMPLE_MAILBOX, message_id_problem, parse_date
from strictmx.receiver.session import Session
from strictmx.receiver.verdict import Reply, Stage, Verdict

#: RFC 5322 §3.6: the fields a message may carry at most once (Haraka's `singular`).
RFC5322_SINGULAR = (
    "Date",
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Bcc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Subject",
)

_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_HIGH_BYTE = re.compile(rb"[\x80-\xff]")

_REGISTRY = HeaderRegistry()


class HeadersOptions(PolicyOptions):
    forbid_bare_lf: bool = Field(
        True,
        description="Refuse the message when a line of it or a command of the transaction "
        "ended in a bare LF (Postfix smtpd_forbid_bare_newline = reject).",
    )
    max_line_length: int | None = Field(
        998,
        ge=1,
        description="Refuse a header line longer than this many octets, line end not counted "
        "(RFC 5322 section 2.1.1); null: no limit.",
    )
    forbid_8bit: bool = Field(
        True,
        description="Refuse 8-bit header bytes without SMTPUTF8, and non-UTF-8 bytes with it "
        "(Postfix strict_7bit_headers).",
    )
    strict_7bit: bool = Field(
        False,
        description="With forbid_8bit, refuse 8-bit header bytes even when MAIL FROM carried "
        "SMTPUTF8 (Postfix strict_7bit_headers, which ignores SMTPUTF8).",
    )
    singular: tuple[str, ...] = Field(
        RFC5322_SINGULAR,
        description="Fields allowed at most once (RFC 5322 section 3.6); [] turns the check off.",
    )
    require_from: bool = Field(True, description="Refuse a message without a From field.")
    from_syntax: bool = Field(
        True, description="Refuse a From that is not a mailbox list with at least one address."
    )
    multiple_from: Literal["need_sender", "refuse", "allow"] = Field(
        "need_sender",
        description="Several From addresses: refuse without a Sender field (RFC 5322), always "
        "(Gmail), or never.",
    )
    require_date: bool = Field(True, description="Refuse a message without a Date field.")
    date_syntax: bool = Field(
        True, description="Refuse a Date that is not RFC 5322 section 3.3 date-time."
    )
    max_age_days: float | None = Field(
        15.0, gt=0, description="Refuse a Date older than this many days; null: no limit."
    )
    max_future_minutes: float | None = Field(
        2880.0,
        ge=0,
        description="Refuse a Date more than this many minutes ahead of the clock; null: no limit.",
    )
    require_message_id: bool = Field(
        True, description="Refuse a message without a Message-ID field."
    )
    message_id_syntax: bool = Field(
        True, description="Refuse a Message-ID that is not RFC 5322 section 3.6.4 msg-id."
    )
    allow_obsolete: bool = Field(
        True,
        description="Accept the obsolete syntax of RFC 5322 section 4 in Date, Message-ID and "
        "From (zone names, two-digit years, comments, routes).",
    )

    @field_validator("singular")
    @classmethod
    def _field_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if not _FIELD_NAME.fullmatch(name):
                raise ValueError(
                    f"{name!r} is not a header field name (printable ASCII, no ':' or space)"
                )
        return names

    @model_validator(mode="after")
    def _strict_needs_forbid(self) -> HeadersOptions:
        if self.strict_7bit and not self.forbid_8bit:
            raise ValueError("strict_7bit: true needs forbid_8bit: true")
        return self


class Headers(Policy[HeadersOptions]):
    """Refuse a message whose header breaks RFC 5322 or the SMTP transaction's rules.

    See the module docstring for the checks, their order, options and replies.
    """

    name = "headers"
    summary = "Header sanity at end of data: Date, Message-ID, From, repeats, lines, 8-bit, bare LF"
    stages = frozenset({Stage.EOD})
    Options = HeadersOptions
    outcomes: ClassVar[tuple[Outcome, ...]] = (
        Outcome(
            "BARE_LF",
            # Postfix smtpd.c, smtpd_forbid_bare_newline = reject: the message is refused and
            # the session goes on (recorded live from Postfix 3.7.11)
            FROM_CATALOGUE,
            "A line of the message or a command ended in LF without CR (RFC 5321 section 2.3.8).",
        ),
        Outcome(
            "LINE_TOO_LONG",
            FROM_CATALOGUE,
            "A header line is longer than max_line_length (RFC 5322 section 2.1.1: 998).",
            fields={"line": NUMBER, "length": NUMBER, "limit": NUMBER},
        ),
        Outcome(
            "HEADER_8BIT",
            # Postfix cleanup, strict_7bit_headers = yes
            FROM_CATALOGUE,
            "8-bit header bytes without SMTPUTF8, or bytes that are not UTF-8.",
            fields={"field": TEXT},
        ),
        Outcome(
            "HEADER_8BIT_SMTPUTF8",
            # Postfix cleanup, strict_7bit_headers = yes, which ignores SMTPUTF8
            FROM_CATALOGUE,
            "UTF-8 header bytes in an SMTPUTF8 transaction, refused as 8-bit all the same "
            "(strict_7bit; RFC 6532 allows them).",
            rfc_allows=False,
            fields={"field": TEXT},
        ),
        Outcome(
            "FIELD_REPEATED",
            # Haraka headers plugin
            FROM_CATALOGUE,
            "A field of the singular list appears more than once.",
            rfc_allows=False,
            fields={"field": TEXT, "count": NUMBER},
        ),
        Outcome(
            "FROM_MISSING",
            FROM_CATALOGUE,  # Haraka headers plugin
            "No From field (RFC 5322 section 3.6 requires one).",
            rfc_allows=False,
        ),
        Outcome(
            "FROM_INVALID",
            # Gmail (support.google.com/a/answer/3726730)
            FROM_CATALOGUE,
            "From is empty or not a valid mailbox list (RFC 5322 section 3.6.2).",
            rfc_allows=False,
            fields={"value": TEXT},
        ),
        Outcome(
            "FROM_MULTIPLE",
            # Gmail's text survives only as the fragment "multiple addresses in From:
            # header are not accepted"; the opening words follow its From reply.
            FROM_CATALOGUE,
            "From holds several addresses (without a Sender field, or multiple_from = refuse).",
            rfc_allows=False,
            fields={"value": TEXT, "count": NUMBER},
        ),
        Outcome(
            "DATE_MISSING",
            FROM_CATALOGUE,  # Haraka headers plugin
            "No Date field (RFC 5322 section 3.6 requires one).",
            rfc_allows=False,
        ),
        Outcome(
            "DATE_INVALID",
            FROM_CATALOGUE,
            "Date is not RFC 5322 section 3.3 date-time, or names no real time.",
            rfc_allows=False,
            fields={"value": TEXT},
        ),
        Outcome(
            "DATE_TOO_OLD",
            FROM_CATALOGUE,  # Haraka headers plugin
            "Date is more than max_age_days before the receiver's clock.",
            rfc_allows=False,
            fields={"value": TEXT, "days": NUMBER, "limit": NUMBER},
        ),
        Outcome(
            "DATE_IN_FUTURE",
            FROM_CATALOGUE,  # Haraka headers plugin
            "Date is more than max_future_minutes after the receiver's clock.",
            rfc_allows=False,
            fields={"value": TEXT, "minutes": NUMBER, "limit": NUMBER},
        ),
        Outcome(
            "MESSAGE_ID_MISSING",
            # Gmail (support.google.com/a/answer/3726730)
            FROM_CATALOGUE,
            "No Message-ID field (RFC 5322 section 3.6: SHOULD be present).",
            rfc_allows=False,
        ),
        Outcome(
            "MESSAGE_ID_INVALID",
            FROM_CATALOGUE,
            "Message-ID is not RFC 5322 section 3.6.4 msg-id.",
            rfc_allows=False,
            fields={"value": TEXT},
        ),
    )

    @classmethod
    def reproduce(cls, req: Request) -> Build:
        """A message whose header breaks the rule the outcome names."""
        ident = req.identity
        outcome = req.entry.outcome
        clock = {"clock": {"fixed": CLOCK.isoformat()}}
        field_name = req.fields.get("field", "Subject")
        if field_name.lower() not in ("subject", "from", "to", "message-id", "date", "cc"):
            field_name = "Subject"
        cases: dict[str, list[str]] = {
            # Over a 200-octet limit: a line past 1000 octets is refused by the SMTP layer itself.
            "LINE_TOO_LONG": header_lines(ident, Subject="x" * 300),
            "HEADER_8BIT": header_lines(ident, Subject="Grüße aus Köln"),
            "FROM_MISSING": header_lines(ident, From=None),
            "FROM_INVALID": header_lines(ident, From="Alice Example"),
            "FROM_MULTIPLE": header_lines(ident, From="<alice@example.net>, <carol@example.net>"),
            "DATE_MISSING": header_lines(ident, Date=None),
            "DATE_INVALID": header_lines(ident, Date="2024-06-14T11:58:00Z"),
            "DATE_TOO_OLD": header_lines(ident, Date="Tue, 2 Jan 2024 09:00:00 +0000"),
            "DATE_IN_FUTURE": header_lines(ident, Date="Thu, 20 Jun 2024 12:00:00 +0000"),
            "MESSAGE_ID_MISSING": header_lines(ident, Message_ID=None),
            "MESSAGE_ID_INVALID": header_lines(ident, Message_ID="20240614115800.42@example.net"),
        }
        options: dict[str, Any] = {}
        if outcome == "FIELD_REPEATED":
            headers = header_lines(ident)
            headers.append(
                next(h for h in headers if h.lower().startswith(field_name.lower() + ":"))
            )
            return Build(
                case={"message": message(ident, headers)}, world=clock, bound={"field": field_name}
            )
        if outcome == "FROM_MULTIPLE":
            options["multiple_from"] = "refuse"
        elif outcome == "LINE_TOO_LONG":
            options["max_line_length"] = 200
        if outcome == "HEADER_8BIT_SMTPUTF8":
            head = "\r\n".join(header_lines(ident, Subject="Grüße aus Köln"))
            return Build(
                options={"strict_7bit": True},
                world=clock,
                raw=[
                    f"EHLO {ident.helo}\r\n".encode(),
                    f"MAIL FROM:<{ident.mail_from}> SMTPUTF8\r\n".encode(),
                    f"RCPT TO:<{ident.rcpt}>\r\n".encode(),
                    b"DATA\r\n",
                    f"{head}\r\n\r\nA UTF-8 header under SMTPUTF8.\r\n.\r\n".encode(),
                ],
                notes=["an expect case cannot ask for SMTPUTF8, so there is none"],
            )
        if outcome == "BARE_LF":
            return Build(
                world=clock,
                raw=[
                    f"EHLO {ident.helo}\r\n".encode(),
                    f"MAIL FROM:<{ident.mail_from}>\r\n".encode(),
                    f"RCPT TO:<{ident.rcpt}>\r\n".encode(),
                    b"DATA\r\n",
                    bare_lf_message(ident).encode(),
                ],
                notes=["Python's smtplib always sends CRLF, so there is no expect case"],
            )
        return Build(options=options, case={"message": message(ident, cases[outcome])}, world=clock)

    def __init__(self, options: HeadersOptions, replies: Mapping[str, Reply] | None = None) -> None:
        super().__init__(options, replies)
        # Lower-cased name -> the spelling replies use.
        self._singular = {name.lower(): name for name in options.singular}

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        if session.message is None:
            return None
        findings = self.judge(
            session.message,
            smtputf8=session.smtputf8,
            bare_lf=session.bare_lf,
            now=ctx.clock.now(),
        )
        if not findings:
            return None
        first, *rest = findings
        fields = dict(first.fields)
        if rest:
            fields["also"] = [f"{f.outcome}: {f.reason}" for f in rest]
        return self.verdict(first.outcome, stage, session, ctx, first.reason, **fields)

    def judge(
        self, message: bytes, *, smtputf8: bool, bare_lf: bool, now: datetime
    ) -> list[Finding]:
        """Every defect of `message`, in reporting order; sans-IO."""
        o = self.options
        header = header_of(message)
        found: list[Finding] = []
        if o.forbid_bare_lf and bare_lf:
            found.append(_bare_lf(message))
        if o.max_line_length is not None:
            found += _long_line(header, o.max_line_length)
        if o.forbid_8bit:
            found += _eight_bit(header, smtputf8, strict=o.strict_7bit)
        if self._singular:
            found += self._repeated(header)
        found += self._from(header, smtputf8)
        found += self._date(header, now)
        found += self._message_id(header, smtputf8)
        return found

    def _repeated(self, header: Header) -> list[Finding]:
        for f in header.fields:
            key = f.name.lower()
            same = header.by_name[key]
            if key in self._singular and len(same) > 1 and same[0] is f:
                lines = ", ".join(str(s.line) for s in same)
                return [
                    Finding(
                        "FIELD_REPEATED",
                        f"{f.name} appears {len(same)} times (lines {lines}); RFC 5322 "
                        "section 3.6 allows it once",
                        {"field": self._singular[key], "count": len(same)},
                    )
                ]
        return []

    def _from(self, header: Header, smtputf8: bool) -> list[Finding]:
        o = self.options
        froms = header.get("from")
        if not froms:
            if o.require_from:
                return [Finding("FROM_MISSING", "the header has no From field")]
            return []
        f = froms[0]
        if SIMPLE_MAILBOX.fullmatch(f.value):
            return []
        value = f.value.strip()
        try:
            parsed = _REGISTRY("From", f.value)
        except Exception as exc:  # the stdlib parser raises IndexError etc. on some junk
            if o.from_syntax:
                return [_bad_from(value, f"cannot be parsed ({type(exc).__name__})")]
            return []
        assert isinstance(parsed, AddressHeader)
        if o.from_syntax:
            problem = _from_problem(parsed.defects, parsed.addresses, smtputf8, o.allow_obsolete)
            if problem:
                return [_bad_from(value, problem)]
        count = len(parsed.addresses)
        if count > 1 and (
            o.multiple_from == "refuse"
            or (o.multiple_from == "need_sender" and not header.get("sender"))
        ):
            why = (
                "this receiver takes one author only"
                if o.multiple_from == "refuse"
                else "and there is no Sender field (RFC 5322 section 3.6.2 requires one)"
            )
            return [
                Finding(
                    "FROM_MULTIPLE",
                    f"From {value!r} holds {count} addresses {why}",
                    {"value": value, "count": count},
                )
            ]
        return []

    def _date(self, header: Header, now: datetime) -> list[Finding]:
        o = self.options
        dates = header.get("date")
        if not dates:
            if o.require_date:
                return [Finding("DATE_MISSING", "the header has no Date field")]
            return []
        value = dates[0].value.strip()
        try:
            parsed = parse_date(dates[0].value, allow_obsolete=o.allow_obsolete)
        except ValueError as exc:
            if o.date_syntax:
                return [Finding("DATE_INVALID", f"Date {value!r} {exc}", {"value": value})]
            return []
        ahead = parsed - now
        clock = now.isoformat().replace("+00:00", "Z")
        if o.max_age_days is not None and -ahead > timedelta(days=o.max_age_days):
            days = round(-ahead / timedelta(days=1), 1)
            return [
                Finding(
                    "DATE_TOO_OLD",
                    f"Date {value!r} is {days:g} days before the receiver's clock ({clock}), "
                    f"over the limit of {o.max_age_days:g}",
                    {"value": value, "days": days, "limit": o.max_age_days},
                )
            ]
        if o.max_future_minutes is not None and ahead > timedelta(minutes=o.max_future_minutes):
            minutes = round(ahead / timedelta(minutes=1), 1)
            return [
                Finding(
                    "DATE_IN_FUTURE",
                    f"Date {value!r} is {minutes:g} minutes after the receiver's clock "
                    f"({clock}), over the limit of {o.max_future_minutes:g}",
                    {"value": value, "minutes": minutes, "limit": o.max_future_minutes},
                )
            ]
        return []

    def _message_id(self, header: Header, smtputf8: bool) -> list[Finding]:
        o = self.options
        ids = header.get("message-id")
        if not ids:
            if o.require_message_id:
                return [Finding("MESSAGE_ID_MISSING", "the header has no Message-ID field")]
            return []
        if not o.message_id_syntax:
            return []
        problem = message_id_problem(ids[0].value, smtputf8=smtputf8, obsolete=o.allow_obsolete)
        if problem is None:
            return []
        value = ids[0].value.strip()
        return [
            Finding(
                "MESSAGE_ID_INVALID",
                f"Message-ID {value!r} {problem} (RFC 5322 section 3.6.4)",
                {"value": value},
            )
        ]


# -- the checks that need no options beyond their switch --------------------------------------


def _bare_lf(message: bytes) -> Finding:
    match = _BARE_LF.search(message)
    if match is None:
        return Finding(
            "BARE_LF", "a command of this transaction ended in a bare LF instead of CRLF"
        )
    line = message.count(b"\n", 0, match.start()) + 1
    return Finding(
        "BARE_LF",
        f"line {line} of the message ends in a bare LF instead of CRLF (RFC 5321 section 2.3.8)",
        {"line": line},
    )


def _long_line(header: Header, limit: int) -> list[Finding]:
    if max(header.lengths, default=0) <= limit:
        return []
    for n, length in enumerate(header.lengths, 1):
        if length > limit:
            where = header.field_at(n)
            name = f" ({where.name})" if where else ""
            return [
                Finding(
                    "LINE_TOO_LONG",
                    f"header line {n}{name} is {length} octets, over the limit of {limit}",
                    {"line": n, "length": length, "limit": limit},
                )
            ]
    return []


def _eight_bit(header: Header, smtputf8: bool, *, strict: bool) -> list[Finding]:
    raw = header.raw
    if raw.isascii():
        return []
    outcome = "HEADER_8BIT"
    if smtputf8:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            offset, why = exc.start, "is not UTF-8"
        else:
            if not strict:
                return []
            match = _HIGH_BYTE.search(raw)
            assert match is not None
            outcome = "HEADER_8BIT_SMTPUTF8"
            offset, why = match.start(), "is 8-bit: UTF-8 in SMTPUTF8 mail is refused here too"
    else:
        match = _HIGH_BYTE.search(raw)
        assert match is not None
        offset, why = match.start(), "is 8-bit and MAIL FROM did not ask for SMTPUTF8"
    line = raw.count(b"\n", 0, offset) + 1
    where = header.field_at(line)
    name = where.name if where else "?"
    return [
        Finding(
            outcome,
            f"byte 0x{raw[offset]:02x} in header line {line} ({name}) {why}",
            {"field": name, "line": line},
        )
    ]


def _bad_from(value: str, problem: str) -> Finding:
    return Finding("FROM_INVALID", f"From {value!r} {problem}", {"value": value})


def _from_problem(
    defects: Sequence[errors.MessageDefect],
    addresses: Sequence[Address],
    smtputf8: bool,
    obsolete: bool,
) -> str | None:
    for defect in defects:
        if isinstance(defect, errors.ObsoleteHeaderDefect):
            if not obsolete:
                return f"uses obsolete syntax: {defect}"
        elif isinstance(defect, errors.NonASCIILocalPartDefect):
            if not smtputf8:
                return "has a non-ASCII local part without SMTPUTF8"
        else:
            return f"is not a valid mailbox list: {defect}"
    if not addresses:
        return "holds no address"
    for address in addresses:
        if not address.username or not address.domain:
            return f"holds an incomplete address {address.addr_spec!r}"
    return None
