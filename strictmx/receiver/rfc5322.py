"""RFC 5322 syntax the header checks need: date-time (§3.3, with the obsolete forms of
§4.3), msg-id (§3.6.4, RFC 6532's UTF-8 atext under SMTPUTF8), comments (§3.2.2), and the
everyday mailbox forms that spare most From fields the stdlib parser.

Pure functions of text: no policy options, no session. The headers policy
(strictmx/policies/headers.py) decides what a defect costs.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

# -- RFC 5322 §3.3 date-time, strict and with the obsolete forms of §4.3 -----------------------
_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAY_NAME = r"(?P<dow>Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_MONTH = r"(?P<month>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_STRICT_DATE = re.compile(
    rf"[ \t]*(?:{_DAY_NAME},)?[ \t]*(?P<day>[0-9]{{1,2}})[ \t]+{_MONTH}[ \t]+"
    r"(?P<year>[0-9]{4,})[ \t]+(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})(?::(?P<second>[0-9]{2}))?"
    r"[ \t]+(?P<zone>[+-][0-9]{4})[ \t]*",
    re.IGNORECASE,
)
# CFWS may surround every part; whitespace may go, except between year and hour, where
# two digit runs would merge, and before a numeric zone (zone = FWS sign 4DIGIT).
_OBS_DATE = re.compile(
    rf"[ \t]*(?:{_DAY_NAME}[ \t]*,)?[ \t]*(?P<day>[0-9]{{1,2}})[ \t]*{_MONTH}[ \t]*"
    r"(?P<year>[0-9]{2,})[ \t]+(?P<hour>[0-9]{2})[ \t]*:[ \t]*(?P<minute>[0-9]{2})"
    r"(?:[ \t]*:[ \t]*(?P<second>[0-9]{2}))?"
    r"(?:[ \t]+(?P<zone>[+-][0-9]{4})|[ \t]*(?P<obszone>UT|GMT|[ECMP][SD]T|[A-IK-Z]))[ \t]*",
    re.IGNORECASE,
)
_ZONE_HOURS = {"ut": 0, "gmt": 0, "est": -5, "edt": -4, "cst": -6, "cdt": -5}
_ZONE_HOURS |= {"mst": -7, "mdt": -6, "pst": -8, "pdt": -7}

# -- RFC 5322 §3.6.4 msg-id ------------------------------------------------------------------
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_ATEXT_UTF8 = _ATEXT + "\u0080-\U0010ffff"  # RFC 6532 §3.2: atext =/ UTF8-non-ascii
_DTEXT = r"\x21-\x5a\x5e-\x7e"
_QUOTED = r'"(?:[^"\\]|\\.)*"'


def _msg_id_patterns(atext: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    atom = f"[{atext}]+"
    dot_atom = rf"{atom}(?:\.{atom})*"
    strict = rf"[ \t]*<{dot_atom}@(?:{dot_atom}|\[[{_DTEXT}]*\])>[ \t]*"
    word = rf"(?:{atom}|{_QUOTED})"
    left = rf"{word}(?:[ \t]*\.[ \t]*{word})*"
    right = rf"(?:{atom}(?:[ \t]*\.[ \t]*{atom})*|\[[ \t{_DTEXT}]*\])"
    obsolete = rf"[ \t]*<[ \t]*{left}[ \t]*@[ \t]*{right}[ \t]*>[ \t]*"
    return re.compile(strict), re.compile(obsolete)


_MSG_ID = {False: _msg_id_patterns(_ATEXT), True: _msg_id_patterns(_ATEXT_UTF8)}

# One mailbox in its everyday forms, `addr@dom` or `Phrase <addr@dom>`: a strict subset of
# RFC 5322 §3.4 that spares most messages the stdlib parser (~100 us a From field).
_ATOM = f"[{_ATEXT}]+"
_ADDR_SPEC = rf"{_ATOM}(?:\.{_ATOM})*@{_ATOM}(?:\.{_ATOM})*"
_WORD = rf'(?:{_ATOM}|"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*")'
SIMPLE_MAILBOX = re.compile(
    rf"[ \t]*(?:{_ADDR_SPEC}|(?:{_WORD}(?:[ \t]+{_WORD})*[ \t]*)?<{_ADDR_SPEC}>)[ \t]*"
)


# -- Date ---------------------------------------------------------------------------------


def strip_comments(text: str) -> tuple[str, bool]:
    """`text` with each (comment) made one space, and whether any text follows a comment.

    Comments nest and take backslash quoted-pairs (RFC 5322 §3.2.2); a quoted-string is
    copied as it is. ValueError names the defect when the parentheses do not balance.
    """
    if "(" not in text and ")" not in text:
        return text, False
    out: list[str] = []
    depth = 0
    commented = inner = quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
            if not depth:
                out.append(ch)
            continue
        if ch == "\\" and (depth or quoted):
            escaped = True
            if not depth:
                out.append(ch)
            continue
        if quoted:
            quoted = ch != '"'
            out.append(ch)
            continue
        if ch == "(":
            if not depth:
                out.append(" ")
            depth += 1
            commented = True
        elif ch == ")":
            if not depth:
                raise ValueError("has a ')' without its '('")
            depth -= 1
        elif not depth:
            quoted = ch == '"'
            if commented and ch not in " \t":
                inner = True
            out.append(ch)
    if depth or quoted:
        raise ValueError("has an unclosed comment or quoted string")
    return "".join(out), inner


def parse_date(value: str, *, allow_obsolete: bool) -> datetime:
    """The instant an RFC 5322 §3.3 date-time names; ValueError says why `value` is not one.

    Not `email.utils.parsedate_to_datetime`: it accepts what the RFC does not (no zone,
    a missing year, tokens in any order) and maps two-digit years by its own rule
    (69 -> 1969), where RFC 5322 §4.3 says 00-49 -> 20xx, 50-99 -> 19xx and a
    three-digit year + 1900. The regexes below already hold every part, so the instant is
    built from them.
    """
    text, inner_comment = strip_comments(value)
    if not text.strip():
        raise ValueError("is empty")
    match = _STRICT_DATE.fullmatch(text)
    if match is None or inner_comment:
        obsolete = _OBS_DATE.fullmatch(text)
        if obsolete is None:
            raise ValueError(
                "is not [day-name ','] day month year hh:mm[:ss] zone (RFC 5322 section 3.3)"
            )
        if not allow_obsolete:
            raise ValueError("uses the obsolete syntax of RFC 5322 section 4.3")
        match = obsolete
    return _instant(match)


def _instant(match: re.Match[str]) -> datetime:
    year_text = match["year"]
    year = int(year_text)
    if len(year_text) == 2:
        year += 2000 if year < 50 else 1900
    elif len(year_text) == 3:
        year += 1900
    if year < 1900:
        raise ValueError(f"has year {year}, before 1900")
    hour, minute = int(match["hour"]), int(match["minute"])
    second = int(match["second"] or 0)
    if hour > 23 or minute > 59 or second > 60:
        time = f"{match['hour']}:{match['minute']}:{match['second'] or '00'}"
        raise ValueError(f"has {time}, not a time of day")
    if match["zone"]:
        sign = -1 if match["zone"][0] == "-" else 1
        zone_h, zone_m = int(match["zone"][1:3]), int(match["zone"][3:])
        if zone_h > 23 or zone_m > 59:
            raise ValueError(f"has zone {match['zone']}, not an offset from UTC")
        offset = sign * timedelta(hours=zone_h, minutes=zone_m)
    else:
        # RFC 5322 §4.3: the military letters were defined wrongly; read them as -0000.
        offset = timedelta(hours=_ZONE_HOURS.get(match["obszone"].lower(), 0))
    month = _MONTHS.index(match["month"].lower()) + 1
    try:
        when = datetime(year, month, int(match["day"]), hour, minute, min(second, 59))
    except ValueError:
        raise ValueError(f"names {match['day']} {match['month']} {year}, not a date") from None
    if match["dow"] and _DAY_NAMES.index(match["dow"].lower()) != when.weekday():
        written = f"{when.day} {_MONTHS[month - 1].title()} {year}"
        raise ValueError(f"says {match['dow']} but {written} is a {_WEEKDAYS[when.weekday()]}")
    # A leap second (:60) is the instant one second after :59.
    when += timedelta(seconds=second - when.second)
    return when.replace(tzinfo=timezone(offset)).astimezone(UTC)


# -- Message-ID ---------------------------------------------------------------------------


def message_id_problem(value: str, *, smtputf8: bool, obsolete: bool) -> str | None:
    """Why `value` is not an RFC 5322 §3.6.4 msg-id, or None when it is one."""
    try:
        text = strip_comments(value)[0]
    except ValueError as exc:
        return str(exc)
    if not text.strip():
        return "is empty"
    strict, obs = _MSG_ID[smtputf8]
    if strict.fullmatch(text):
        return None
    if obs.fullmatch(text):
        return None if obsolete else "uses the obsolete syntax of RFC 5322 section 4.5.4"
    inner = text.strip()
    if not (inner.startswith("<") and inner.endswith(">")):
        return "is not enclosed in angle brackets"
    if "@" not in inner:
        return "has no '@' between its left and right parts"
    if inner.count("<") > 1:
        return "holds more than one id"
    if not inner.isascii() and not smtputf8:
        return "has non-ASCII characters without SMTPUTF8"
    return "is not '<' dot-atom-text '@' dot-atom-text or [literal] '>'"
