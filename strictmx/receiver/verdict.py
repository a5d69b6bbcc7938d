"""Verdicts and the one reply builder.

Every reply strictmx sends on a policy's behalf is a `Reply`, and `Reply.wire_lines`
is the only place that turns one into bytes-to-be: code, enhanced status code (RFC 3463),
text, `code-` continuation lines, the DSN class digit forced to agree with the reply code
(as Postfix's smtpd_dsn_fix does: "All 5xx replies must have a 5.xx.xx detail code"),
at most 512 octets a line including CRLF (RFC 5321 §4.5.3.1.5) and printable ASCII only.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum


class Stage(StrEnum):
    """Where in the session a policy runs (a command, or an event that feeds counters)."""

    CONNECT = "connect"
    HELO = "helo"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"  # the DATA command, before the 354
    EOD = "eod"  # end of data, before the final reply to the message
    RSET = "rset"
    NOOP = "noop"
    VRFY = "vrfy"
    UNKNOWN = "unknown"  # a command the server does not know
    ERROR = "error"  # after any 4xx/5xx reply was sent, aiosmtpd's own included


#: Stages whose rejection delay_reject postpones to RCPT, as Postfix's smtpd_delay_reject.
DELAYABLE_STAGES = frozenset({Stage.CONNECT, Stage.HELO, Stage.MAIL})


class Action(StrEnum):
    DUNNO = "dunno"  # no opinion
    PERMIT = "permit"  # stop evaluating this stage, accept it
    REJECT = "reject"  # 5xx
    DEFER = "defer"  # 4xx
    DISCONNECT = "disconnect"  # reply, then close the connection

    @property
    def decisive(self) -> bool:
        return self is not Action.DUNNO


class ReplyError(ValueError):
    """A reply template that cannot be sent (bad code, bad DSN, unknown placeholder)."""


_CODE_RE = re.compile(r"^([2-5][0-9][0-9])([ -])?(.*)$", re.DOTALL)
# One space after the DSN is the separator; more are text (Gmail sends "5.7.1  RFC 5322").
_DSN_RE = re.compile(r"^([245])\.([0-9]{1,3})\.([0-9]{1,3})(?: |$)")
#: A wire line is at most 512 octets including CRLF (RFC 5321 §4.5.3.1.5).
MAX_LINE = 510
_PRINTABLE = re.compile(r"[ -~]*")
_UNPRINTABLE = re.compile(r"[^ -~]")


@dataclass(frozen=True)
class Reply:
    """An SMTP reply: a three-digit code, an optional enhanced status, one or more text lines."""

    code: int
    status: str | None
    lines: tuple[str, ...]

    @classmethod
    def parse(cls, spec: str | Sequence[str]) -> Reply:
        """Parse `"550 5.7.1 text"`, a multi-line string, or a list of wire lines.

        Continuation prefixes (`550-5.7.1 `) on the second and later lines are stripped, so a
        reply copied from a transcript or from the catalogue parses to the same value.
        """
        raw = spec.splitlines() if isinstance(spec, str) else list(spec)
        raw = [line.rstrip("\r\n") for line in raw]
        if not raw or not raw[0].strip():
            raise ReplyError("a reply needs a code and text, got an empty reply")
        first = _CODE_RE.match(raw[0].strip())
        if not first:
            raise ReplyError(f"a reply must start with a 2xx-5xx code: {raw[0]!r}")
        code = int(first.group(1))
        status: str | None = None
        lines: list[str] = []
        for n, line in enumerate(raw):
            text = line
            m = _CODE_RE.match(line.strip())
            if m:
                if int(m.group(1)) != code:
                    raise ReplyError(
                        f"line {n + 1} of a multi-line reply has code {m.group(1)}, "
                        f"the first line has {code}"
                    )
                text = m.group(3)
            elif n == 0:
                raise ReplyError(f"a reply must start with a code: {line!r}")
            d = _DSN_RE.match(text)
            if d:
                dsn = f"{d.group(1)}.{d.group(2)}.{d.group(3)}"
                if status is None and n == 0:
                    status = dsn
                if dsn == status:
                    text = text[d.end() :]
            lines.append(text)
        if status is not None and status[0] != str(code)[0] and code >= 400:
            raise ReplyError(
                f"enhanced status {status} disagrees with reply code {code}: "
                f"the class digit must be {str(code)[0]}"
            )
        return cls(code, status, tuple(lines))

    @property
    def kind(self) -> Action:
        if self.code >= 500:
            return Action.REJECT
        if self.code >= 400:
            return Action.DEFER
        return Action.PERMIT

    def soft(self) -> Reply:
        """soft_bounce: every 5xx becomes 4xx, as Postfix's soft_bounce does."""
        if self.code < 500:
            return self
        status = "4" + self.status[1:] if self.status else None
        return replace(self, code=self.code - 100, status=status)

    def with_code(self, code: int) -> Reply:
        return replace(self, code=code)

    def format(self, fields: Mapping[str, object]) -> Reply:
        """Fill `{placeholder}`s; placeholders not in `fields` are left as written."""
        return replace(self, lines=tuple(_fill(line, fields) for line in self.lines))

    def wire_lines(self, *, enhanced: bool = True) -> list[str]:
        """The lines exactly as sent, without CRLF."""
        status = self._agreeing_status() if enhanced else None
        out: list[str] = []
        last = len(self.lines) - 1
        for n, text in enumerate(self.lines or ("",)):
            sep = " " if n == last or not self.lines else "-"
            head = f"{self.code}{sep}{status} " if status else f"{self.code}{sep}"
            out.append(wire_safe(head + text))
        return out

    def render(self, *, enhanced: bool = True) -> str:
        return "\r\n".join(self.wire_lines(enhanced=enhanced))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def _agreeing_status(self) -> str | None:
        if not self.status:
            return None
        cls = str(self.code)[0]
        if cls not in "45":
            return self.status if cls == "2" else None
        return cls + self.status[1:]

    def __str__(self) -> str:
        return self.render()


def printable(text: str) -> str:
    """Reply text as RFC 5321 §4.2 allows it: SP and printable US-ASCII, '?' for the rest
    (CR and LF included, so no text can end a line or start a reply of its own)."""
    return text if _PRINTABLE.fullmatch(text) else _UNPRINTABLE.sub("?", text)


def wire_safe(line: str) -> str:
    """One wire line as it may be sent: printable, at most 512 octets with its CRLF."""
    line = printable(line)
    return line[:MAX_LINE].rstrip() if len(line) > MAX_LINE else line


class _Keep(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _fill(line: str, fields: Mapping[str, object]) -> str:
    try:
        return line.format_map(_Keep(fields))
    except (ValueError, IndexError, AttributeError):
        return line


def placeholders(reply: Reply) -> set[str]:
    """The `{names}` a reply template uses, for validation at load."""
    names: set[str] = set()
    for line in reply.lines:
        try:
            for _, name, _, _ in string.Formatter().parse(line):
                if name:
                    names.add(name.split(".")[0].split("[")[0])
        except ValueError as exc:
            raise ReplyError(f"bad placeholder in reply text {line!r}: {exc}") from None
    return names


@dataclass
class Verdict:
    """One policy's decision, as journaled and as shown by every surface."""

    policy: str
    outcome: str  # UPPER_SNAKE outcome id, e.g. HELO_NOT_FQDN
    action: Action
    stage: Stage  # stage decided
    reply: Reply | None = None
    reason: str = ""
    rfc_compliant: bool = True  # does RFC 5321 allow refusing for this reason?
    delay: float = 0.0  # tarpit: seconds to wait before each later reply
    replied_at: Stage | None = None  # stage whose reply carried it (None: not sent)
    warned: bool = False  # recorded in warn_only, nothing refused
    details: dict[str, object] = field(default_factory=dict)

    @property
    def objection(self) -> bool:
        return self.action in (Action.REJECT, Action.DEFER, Action.DISCONNECT)
