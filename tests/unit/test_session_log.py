"""The line per session: escaping of what a client chose to send, clipping, both formats."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from strictmx.receiver.session_log import (
    JSON_KEYS,
    SessionEnd,
    as_json,
    as_text,
    clip,
    safe_text,
    safe_token,
)

WHEN = datetime(2026, 12, 3, 20, 0, 1, 250000, tzinfo=UTC)


def end(**changes: object) -> SessionEnd:
    values: dict[str, object] = {
        "session": "s1",
        "ended": WHEN,
        "peer": "127.0.0.1",
        "peer_port": 40000,
        "client": "127.0.0.1",
        "client_name": None,
        "helo": "mail.example.net",
        "mail_from": "alice@example.net",
        "rcpts": ("bob@example.org",),
        "rcpt_count": 1,
        "outcome": "accepted",
    }
    values.update(changes)
    return SessionEnd(**values)  # type: ignore[arg-type]


def test_a_plain_session() -> None:
    assert as_text(end()) == (
        "2026-12-03T20:00:01Z 127.0.0.1 helo=mail.example.net"
        " <alice@example.net> -> <bob@example.org> accepted"
    )


def test_the_null_sender_no_helo_and_no_recipients() -> None:
    assert as_text(end(helo=None, mail_from="", rcpts=(), rcpt_count=0, outcome="idle")) == (
        "2026-12-03T20:00:01Z 127.0.0.1 helo=- <> idle"
    )


def test_a_refusal_with_its_reply_clipped() -> None:
    line = as_text(
        end(outcome="rejected", policy="dnsbl", code=554, status="5.7.1", text="x" * 300)
    )
    assert line.endswith(' rejected dnsbl 554 5.7.1 "' + "x" * 117 + '..."')


def test_control_characters_and_escapes_are_escaped() -> None:
    assert safe_token("a\x1b[31mb\r\nc") == r"a\x1b[31mb\x0d\x0ac"
    assert safe_token("a b\u202ec\\") == r"a\x20b\u202ec\\"
    assert safe_token("\udce9") == r"\udce9"  # a byte that was not UTF-8
    assert safe_text('said "hi" \x07') == r"said \"hi\" \x07"
    # Controls: printable text, IDN letters included, passes as it is.
    assert safe_token("mail.bücher.example") == "mail.bücher.example"
    assert safe_text("550 5.7.1 Blocked, see https://example.net/x") == (
        "550 5.7.1 Blocked, see https://example.net/x"
    )


def test_a_multi_line_reply_is_one_line() -> None:
    assert clip("first\nsecond") == "first | second"


def test_json_keys_are_stable_and_escaped() -> None:
    text = as_json(end(helo="evil\x1b[2J\u202e"))
    assert text.isascii() and "\x1b" not in text
    fields = json.loads(text)
    assert tuple(fields) == JSON_KEYS
    assert fields["helo"] == "evil\x1b[2J\u202e"
    assert fields["time"] == "2026-12-03T20:00:01.250+00:00"
