"""The AUTH exchange without a socket (strictmx/receiver/smtp_auth.py): each mechanism's
steps, the credentials check, and the replies of each refusal, with a control for each."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from strictmx.receiver.smtp_auth import (
    HIDDEN,
    PASSWORD_CHALLENGE,
    POSTFIX_REPLIES,
    RFC_REPLIES,
    USERNAME_CHALLENGE,
    AuthSettings,
    Exchange,
    begin,
    replies_for,
    shown,
    source,
)
from strictmx.receiver.verdict import Reply

ACCOUNTS = AuthSettings.model_validate({"accounts": [{"user": "app", "password": "pw"}]})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def start(arg: str, settings: AuthSettings = ACCOUNTS, **state: bool) -> Exchange | Reply:
    flags = {"tls": True, "authenticated": False, "in_transaction": False, **state}
    return begin(arg, settings, RFC_REPLIES, **flags)


def done(exchange: Exchange | Reply) -> Exchange:
    assert isinstance(exchange, Exchange)
    return exchange


def test_plain_with_an_initial_response_logs_in_at_once() -> None:
    exchange = done(start("PLAIN " + b64(b"\0app\0pw")))
    assert (exchange.challenge, exchange.reply, exchange.user) == (None, RFC_REPLIES.ok, "app")


def test_plain_with_a_wrong_password_or_another_authzid_is_refused() -> None:
    assert done(start("PLAIN " + b64(b"\0app\0nope"))).reply == RFC_REPLIES.invalid
    # Acting as another user (authzid) is not allowed; as oneself, it is.
    assert done(start("PLAIN " + b64(b"root\0app\0pw"))).reply == RFC_REPLIES.invalid
    assert done(start("PLAIN " + b64(b"app\0app\0pw"))).user == "app"
    assert done(start("PLAIN " + b64(b"app-pw"))).reply == RFC_REPLIES.invalid  # no NULs


def test_plain_without_an_initial_response_asks_with_an_empty_challenge() -> None:
    exchange = done(start("plain"))  # mechanism names are case-insensitive
    assert exchange.challenge == ""
    exchange.feed(b64(b"\0app\0pw"))
    assert exchange.user == "app"


def test_an_empty_initial_response_is_an_equals_sign() -> None:
    exchange = done(start("PLAIN ="))
    # An empty PLAIN message has no NUL-separated user and password (RFC 4616 §2).
    assert (exchange.reply, exchange.user) == (RFC_REPLIES.invalid, None)


def test_login_asks_for_user_then_password() -> None:
    exchange = done(start("LOGIN"))
    assert exchange.challenge == USERNAME_CHALLENGE == "VXNlcm5hbWU6"
    exchange.feed(b64(b"app"))
    assert exchange.challenge == PASSWORD_CHALLENGE == "UGFzc3dvcmQ6"
    exchange.feed(b64(b"pw"))
    assert (exchange.reply, exchange.user) == (RFC_REPLIES.ok, "app")


def test_a_user_name_with_control_characters_never_logs_in() -> None:
    exchange = done(start("LOGIN", AuthSettings()))  # any credentials...
    exchange.feed(b64(b"app\r\nX"))
    exchange.feed(b64(b"pw"))
    assert (exchange.reply, exchange.user) == (RFC_REPLIES.invalid, None)  # ...but these


def test_login_with_the_user_as_initial_response_asks_for_the_password() -> None:
    exchange = done(start("LOGIN " + b64(b"app")))
    assert exchange.challenge == PASSWORD_CHALLENGE


def test_bad_base64_non_utf8_and_a_star_end_the_exchange() -> None:
    for line, reply in (
        ("%%%", RFC_REPLIES.cannot_decode),
        (b64(b"\xff\xfe"), RFC_REPLIES.cannot_decode),
        ("*", RFC_REPLIES.cancelled),
    ):
        exchange = done(start("LOGIN"))
        exchange.feed(line)
        assert (exchange.challenge, exchange.reply, exchange.user) == (None, reply, None)


def test_refusals_before_any_exchange() -> None:
    assert start("PLAIN", tls=False) == RFC_REPLIES.encryption_required
    clear = AuthSettings(require_tls=False)
    assert isinstance(start("PLAIN", clear, tls=False), Exchange)  # the control
    assert start("PLAIN", authenticated=True) == RFC_REPLIES.already
    assert start("PLAIN", in_transaction=True) == RFC_REPLIES.in_transaction
    assert start("") == RFC_REPLIES.syntax
    assert start("PLAIN a b") == RFC_REPLIES.syntax
    assert start("CRAM-MD5") == RFC_REPLIES.unsupported
    only_plain = AuthSettings(mechanisms=["PLAIN"])
    assert start("LOGIN", only_plain) == RFC_REPLIES.unsupported


def test_any_credentials_without_accounts_but_an_empty_user() -> None:
    anyone = AuthSettings()
    assert anyone.check("whoever", "whatever")
    assert not anyone.check("", "whatever")
    assert ACCOUNTS.check("app", "pw") and not ACCOUNTS.check("App", "pw")


def test_the_keyword_and_the_dialects_words() -> None:
    assert AuthSettings().keyword() == "AUTH PLAIN LOGIN"
    assert AuthSettings(mechanisms=["LOGIN"]).keyword() == "AUTH LOGIN"
    assert replies_for("postfix") is POSTFIX_REPLIES
    assert replies_for("exim") is RFC_REPLIES
    assert POSTFIX_REPLIES.invalid.code == RFC_REPLIES.invalid.code == 535
    assert POSTFIX_REPLIES.invalid.status == RFC_REPLIES.invalid.status == "5.7.8"
    assert RFC_REPLIES.encryption_required.status == "5.7.11"
    for key in RFC_REPLIES.__dataclass_fields__:
        assert source(key)  # every text has its source


def test_settings_are_validated() -> None:
    for bad in ({"mechanisms": []}, {"mechanisms": ["PLAIN", "plain"]}, {"mechanisms": ["X"]}):
        with pytest.raises(ValidationError):
            AuthSettings.model_validate(bad)
    with pytest.raises(ValidationError):
        AuthSettings.model_validate({"accounts": [{"user": "app", "password": ""}]})
    assert "pw" not in repr(ACCOUNTS)  # the password never shows in a repr


def test_an_auth_line_keeps_its_mechanism_and_hides_the_response() -> None:
    assert shown("AUTH PLAIN AGFwcABwdw==") == f"AUTH PLAIN {HIDDEN}"
    assert shown("AUTH LOGIN") == "AUTH LOGIN"
