"""SMTP AUTH (RFC 4954) for applications that insist on logging in: PLAIN and LOGIN, sans-IO.

A scenario offers it in `receiver.auth` (`AuthSettings`); without that section strictmx
offers no AUTH, as before. strictmx is a test receiver: it checks credentials only against
the accounts a scenario lists (none listed: any user name and password is accepted), and it
never keeps a password -- the journal records the user name alone.

The exchange is a small state machine (`Exchange`): the SMTP layer (strictmx/receiver/smtp.py)
writes each `334` challenge it asks for, reads the client's line and feeds it back, until the
exchange has a final reply. aiosmtpd has AUTH machinery of its own (`authenticator`,
`auth_require_tls`), but it runs inside aiosmtpd's command loop and writes aiosmtpd's reply
texts; strictmx's loop replaces that one, so the exchange is done here, in the persona's words.

Replies (`AuthReplies`): RFC 4954's texts (§4 for the exchange, §6 for the status codes), or
Postfix's own for a Postfix persona (Postfix smtpd/smtpd_sasl_proto.c and smtpd.c), each with
its source in `_SOURCES`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from .verdict import Reply

Mechanism = Literal["PLAIN", "LOGIN"]
MECHANISMS: tuple[Mechanism, ...] = ("PLAIN", "LOGIN")
#: LOGIN's challenges (draft-murchison-sasl-login §2.1): base64 of "Username:" and "Password:".
USERNAME_CHALLENGE = base64.b64encode(b"Username:").decode("ascii")
PASSWORD_CHALLENGE = base64.b64encode(b"Password:").decode("ascii")
#: What the transcript shows for a line carrying credentials (an AUTH initial response, a
#: response to a challenge): base64 is not secrecy, and the journal is readable by the API.
HIDDEN = "<credentials hidden>"


class Account(BaseModel):
    """One user a scenario accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user: str = Field(min_length=1, max_length=255, description="The user name (authcid).")
    # SecretStr: the scenario is served back by the API (GET /scenario) and printed in
    # reprs; the password must show as stars there.
    password: SecretStr = Field(min_length=1, max_length=255, description="Its password.")


class AuthSettings(BaseModel):
    """The `receiver.auth:` section: SMTP AUTH offered (absent: no AUTH, the default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mechanisms: list[Mechanism] = Field(
        default_factory=lambda: list(MECHANISMS),
        min_length=1,
        description="SASL mechanisms offered in EHLO, in this order: PLAIN (RFC 4616), LOGIN.",
    )
    require_tls: bool = Field(
        True,
        description="AUTH is offered only after STARTTLS (or on the SMTPS listener); AUTH "
        "in clear text gets 538 5.7.11 (RFC 4954 §6).",
    )
    required: bool = Field(
        False,
        description="MAIL before a successful AUTH gets 530 5.7.0 Authentication required "
        "(RFC 4954 §6), as a submission server (port 587) answers.",
    )
    accounts: list[Account] | None = Field(
        None,
        description="The users accepted ({user, password}); null: any user name and "
        "password is accepted.",
    )

    @field_validator("mechanisms", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        # Mechanism names are case-insensitive on the wire (RFC 4422 §3.1).
        if isinstance(value, list):
            return [v.upper() if isinstance(v, str) else v for v in value]
        return value

    @field_validator("mechanisms")
    @classmethod
    def _unique(cls, value: list[Mechanism]) -> list[Mechanism]:
        if len(set(value)) != len(value):
            raise ValueError("each mechanism may be listed once")
        return value

    def keyword(self) -> str:
        """EHLO's keyword: `AUTH PLAIN LOGIN` (RFC 4954 §3)."""
        return " ".join(["AUTH", *self.mechanisms])

    def check(self, user: str, password: str) -> bool:
        """Whether these credentials log in."""
        if not user:
            return False
        if self.accounts is None:
            return True
        found = False
        for account in self.accounts:
            # Every account compared in constant time, so timing tells nothing.
            same_user = hmac.compare_digest(account.user.encode(), user.encode())
            secret = account.password.get_secret_value().encode()
            same_password = hmac.compare_digest(secret, password.encode())
            found |= same_user and same_password
        return found


@dataclass(frozen=True)
class AuthReplies:
    ok: Reply
    invalid: Reply
    encryption_required: Reply
    required: Reply
    cannot_decode: Reply
    cancelled: Reply
    unsupported: Reply
    already: Reply
    in_transaction: Reply
    syntax: Reply
    too_long: Reply


_RFC = {
    "ok": "235 2.7.0 Authentication successful",
    "invalid": "535 5.7.8 Authentication credentials invalid",
    "encryption_required": "538 5.7.11 Encryption required for requested authentication mechanism",
    "required": "530 5.7.0 Authentication required",
    "cannot_decode": "501 5.5.2 Cannot decode response",
    "cancelled": "501 5.7.0 Authentication cancelled",
    "unsupported": "504 5.5.4 Unrecognized authentication type",
    "already": "503 5.5.1 Already authenticated",
    "in_transaction": "503 5.5.1 AUTH not permitted during a mail transaction",
    "syntax": "501 5.5.4 Syntax: AUTH mechanism",
    "too_long": "500 5.5.6 Authentication Exchange line is too long",
}
#: Postfix's texts where it has its own (the rest: as RFC 4954). The reason after
#: "authentication failed:" is the SASL library's; Cyrus SASL's for a wrong password
#: (SASL_BADAUTH) is "authentication failure".
_POSTFIX = {
    **_RFC,
    "ok": "235 2.7.0 Authentication successful",
    "invalid": "535 5.7.8 Error: authentication failed: authentication failure",
    "cancelled": "501 5.7.0 Authentication aborted",
    "already": "503 5.5.1 Error: already authenticated",
}
#: Where each text comes from.
_SOURCES = {
    "ok": "RFC 4954 §6 (235 2.7.0); Postfix smtpd_sasl_proto.c smtpd_sasl_authenticate",
    "invalid": "RFC 4954 §6 (535 5.7.8 Authentication credentials invalid); Postfix "
    "smtpd_sasl_proto.c: 535 5.7.8 Error: authentication failed: <SASL reason>",
    "encryption_required": "RFC 4954 §6 (538 5.7.11); RFC 5248 registry X.7.11",
    "required": "RFC 4954 §6 (530 5.7.0 Authentication required)",
    "cannot_decode": "RFC 4954 §4: a response that cannot be decoded as base64 gets 501; "
    "RFC 3463 X.5.2 (syntax error); the text is strictmx's",
    "cancelled": "RFC 4954 §4: '*' cancels the exchange, answered 501; Postfix "
    "smtpd_sasl_proto.c: 501 5.7.0 Authentication aborted",
    "unsupported": "RFC 4954 §4: an unsupported mechanism gets 504; aiosmtpd 1.4 smtp_AUTH's text",
    "already": "RFC 4954 §4: AUTH after a successful AUTH gets 503; Postfix smtpd.c auth_cmd",
    "in_transaction": "RFC 4954 §4: AUTH during a mail transaction gets 503",
    "syntax": "RFC 4954 §4 (AUTH mechanism [initial-response]); RFC 3463 X.5.4",
    "too_long": "RFC 4954 §6 (500 5.5.6 Authentication Exchange line is too long)",
}


def _replies(texts: dict[str, str]) -> AuthReplies:
    return AuthReplies(**{key: Reply.parse(text) for key, text in texts.items()})


RFC_REPLIES = _replies(_RFC)
POSTFIX_REPLIES = _replies(_POSTFIX)


def replies_for(dialect: str) -> AuthReplies:
    """AUTH's replies in a dialect's words: Postfix's own; RFC 4954's for the others (no
    other dialect's AUTH replies were recorded)."""
    return POSTFIX_REPLIES if dialect == "postfix" else RFC_REPLIES


def source(key: str) -> str:
    """Where the reply `key` of `AuthReplies` comes from."""
    return _SOURCES[key]


def shown(command: str) -> str:
    """An AUTH command line as the transcript keeps it: an initial response (credentials
    in base64) hidden."""
    words = command.split(" ")
    return " ".join([*words[:2], HIDDEN]) if len(words) > 2 else command


def _decode(line: str) -> str | None:
    """A response's text: base64 (RFC 4648 §4, strictly), then UTF-8 (RFC 4616 §2)."""
    try:
        return base64.b64decode(line.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None


class Exchange:
    """One AUTH exchange. After `start` and each `feed`: either `challenge` is set (send
    `334 <challenge>`, then feed the client's next line) or `reply` is (the final reply;
    `user` is the user logged in when it is a success)."""

    def __init__(self, settings: AuthSettings, replies: AuthReplies, mechanism: str) -> None:
        self.settings = settings
        self.replies = replies
        self.mechanism = mechanism
        self.challenge: str | None = None
        self.reply: Reply | None = None
        self.user: str | None = None
        self._login_user: str | None = None

    def start(self, initial: str | None) -> None:
        """The AUTH command's optional initial response (RFC 4954 §4; `=` is an empty one)."""
        if initial is None:
            self.challenge = "" if self.mechanism == "PLAIN" else USERNAME_CHALLENGE
            return
        self.feed("" if initial == "=" else initial)

    def feed(self, line: str) -> None:
        self.challenge = None
        if line.strip() == "*":  # the client gives up (RFC 4954 §4)
            self.reply = self.replies.cancelled
            return
        text = _decode(line)
        if text is None:
            self.reply = self.replies.cannot_decode
            return
        if self.mechanism == "PLAIN":
            self._plain(text)
        elif self._login_user is None:
            self._login_user = text
            self.challenge = PASSWORD_CHALLENGE
        else:
            self._finish(self._login_user, text)

    def _plain(self, text: str) -> None:
        # message = [authzid] NUL authcid NUL passwd (RFC 4616 §2)
        parts = text.split("\0")
        if len(parts) != 3:
            self.reply = self.replies.invalid
            return
        authzid, user, password = parts
        if authzid and authzid != user:  # no one may act as another user here
            self.reply = self.replies.invalid
            return
        self._finish(user, password)

    def _finish(self, user: str, password: str) -> None:
        # A user name goes to the journal, the API and the viewer: control characters
        # (a LOGIN user may hold any octet) never log in.
        if self.settings.check(user, password) and user.isprintable():
            self.user = user
            self.reply = self.replies.ok
        else:
            self.reply = self.replies.invalid


def begin(
    arg: str | None,
    settings: AuthSettings,
    replies: AuthReplies,
    *,
    tls: bool,
    authenticated: bool,
    in_transaction: bool,
) -> Exchange | Reply:
    """The AUTH command: an exchange under way, or the reply that refuses it at once."""
    if authenticated:
        return replies.already
    if in_transaction:
        return replies.in_transaction
    words = (arg or "").split()
    if not words or len(words) > 2:
        return replies.syntax
    mechanism = words[0].upper()
    if mechanism not in settings.mechanisms:
        return replies.unsupported
    if settings.require_tls and not tls:
        return replies.encryption_required
    exchange = Exchange(settings, replies, mechanism)
    exchange.start(words[1] if len(words) == 2 else None)
    return exchange
