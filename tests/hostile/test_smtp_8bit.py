"""8-bit bytes in every command, over a real socket, then a clean session after them.

A byte that is not UTF-8 reaches strictmx as a lone surrogate (the SMTP layer decodes
arguments with surrogateescape). Everything that handles client text must take it: the
policies (an encode of such text raised, and the wire got an exception's reply), the
reply builder (printable only), and the journal, whose writer shares one transaction
between sessions (a value it cannot store must fail its own row, never a later clean
session's message with `451 4.3.0 Error: queue file write error`).

Each hostile session sends every command with the byte in it: HELO, EHLO, XCLIENT,
NOOP, VRFY, RSET, HELP, unknown verbs, a lone byte, MAIL (address and parameter), RCPT
(address and parameter), DATA's argument, header lines sent as commands, a message whose
header names, values and body hold it, and QUIT's argument. Then a clean session must
get its message stored; the hostile session's transcript must hold every line it sent,
its bytes written `\\xNN`, and its message must be stored byte for byte.
"""

from __future__ import annotations

import re
import time
from typing import Any, Final

import pytest

from strictmx.receiver.pytest_plugin import StrictmxFactory, StrictmxReceiver
from strictmx.receiver.scenario import bundled_names

from ._smtp import Closed, Hung, Peer
from .conftest import Tally

#: Bytes that are not UTF-8: a lone high byte, a lone continuation byte, and the UTF-8
#: form of a lone surrogate (which UTF-8 forbids).
STRAYS: Final = (b"\xff", b"\x80", b"\xed\xa0\x80")
QUEUED: Final = re.compile(rb"^250 (?:2\.0\.0 )?Ok: queued as ([0-9a-f]+)-([0-9]+)$")

#: Every 8-bit value gets as far as it can: no policy refuses at HELO, MAIL or RCPT,
#: and the error limits are out of the way so that one session sends every command.
OPEN: Final[dict[str, Any]] = {
    "name": "hostile-8bit-open",
    "receiver": {"hostname": "mx.strictmx.test"},
    "policies": {
        "session": [
            {
                "policy": "session_limits",
                "soft_error_limit": None,
                "hard_error_limit": None,
                "max_unknown_commands": None,
            }
        ],
    },
}
#: The same with the checks that read the 8-bit text: HELO syntax, and sender_domain's
#: syntax check (an 8-bit MAIL FROM once answered `500 Error: (UnicodeEncodeError) ...`).
CHECKED: Final[dict[str, Any]] = {
    **OPEN,
    "name": "hostile-8bit-checked",
    "receiver": {"hostname": "mx.strictmx.test", "delay_reject": False},
    "policies": {
        **OPEN["policies"],
        "helo": [{"policy": "helo_syntax", "mode": "rfc1035"}],
        "mail": [{"policy": "sender_domain", "check_syntax": True}],
    },
    "world": {"dns": {"mode": "hermetic", "records": {"example.net": {"A": "192.0.2.25"}}}},
}


def commands(stray: bytes) -> list[bytes]:
    """Every command of a session with `stray` in it, in an order that gets each one
    as far as it goes (a clean EHLO and MAIL where a later command needs them)."""
    b = stray
    return [
        b"HELO mail" + b + b".example.net",
        b"EHLO mail" + b + b".example.net",
        b"XCLIENT NAME=mail" + b + b".example.net",
        b"EHLO mail.example.net",
        b"NOOP " + b,
        b"VRFY bob" + b + b"@example.net",
        b"RSET " + b,
        b"HELP " + b,
        b"X" + b + b"VERB",
        b,
        b"MAIL FROM:<alice@example.net> SIZE=1" + b,
        b"MAIL FROM:<a" + b + b"@example.net>",
        b"RCPT TO:<bob@example.net>",  # a callout for the 8-bit sender happens here
        b"RSET",
        b"MAIL FROM:<alice@example.net>",
        b"RCPT TO:<bob" + b + b"@example.net>",
        b"RCPT TO:<bob@example.net> NOTIFY=" + b,
        b"RCPT TO:<bob@example.net>",
        b"DATA " + b,
        b"Subject: " + b,
    ]


def message(stray: bytes) -> bytes:
    b = stray
    return (
        b"From: <alice@example.net>\r\nTo: <bob@example.net>\r\nSubject: caf" + b + b"\r\n"
        b"X-" + b + b": v" + b + b"\r\n\r\nbody " + b + b"\r\n"
    )


#: The dialect replies after which a persona closes the line on purpose (besides 421/221).
CLOSING_KEYS = ("too_many_unknown", "forbidden_command", "bare_lf", "internal_error_close")


def closing(rx: StrictmxReceiver, line: bytes) -> bool:
    """`line` is the persona's own reply that ends a session (Exim's cut-off after
    smtp_max_unknown_commands, Postfix's forbidden command, ...)."""
    dialect = rx.scenario.dialect
    for key in CLOSING_KEYS:
        reply = dialect.replies[key]
        pattern = re.escape(str(reply)).replace(r"\{", "{").replace(r"\}", "}")
        pattern = re.sub(r"\{\w+\}", ".*", pattern)
        if re.fullmatch(pattern.encode(), line):
            return True
    return False


def hostile_session(rx: StrictmxReceiver, stray: bytes, tally: Tally) -> tuple[list[bytes], bool]:
    """One session with `stray` in every command; the lines sent, whether the 8-bit
    message was queued. A persona may end the session (its error limits): a close right
    after a 421 or 221 ends the session here too, any other close is a crash."""
    sent: list[bytes] = []
    queued = False
    with Peer(rx) as peer:
        last = peer.reply()[-1]

        def talk(line: bytes) -> list[bytes]:
            nonlocal last
            if peer.closed:
                return []
            tally.tried()
            sent.append(line)
            try:
                reply = peer.command(line)
            except Hung as hung:
                tally.add("hangs", example=f"{line!r}: {hung}")
                peer.closed = True
                return []
            except Closed:
                if last[:3] not in (b"421", b"221") and not closing(rx, last):
                    tally.add("crashes", example=f"connection dropped after {line!r}")
                return []
            last = reply[-1]
            return reply

        for line in commands(stray):
            talk(line)
        if talk(b"DATA") and last.startswith(b"354 "):
            tally.tried()
            peer.send(message(stray) + b".\r\n")
            last = peer.reply()[-1]
            queued = bool(QUEUED.match(last))
        talk(b"QUIT " + stray)
        talk(b"QUIT")
        for why, line in peer.bad:
            tally.add("wrong_replies", example=f"{why}: {line!r}")
    return sent, queued


def clean_session(rx: StrictmxReceiver, tally: Tally) -> tuple[str, int] | None:
    """A clean message; where it was queued, or None."""
    with Peer(rx) as peer:
        peer.reply()
        for line in (b"EHLO mail.example.net", b"MAIL FROM:<alice@example.net>"):
            peer.command(line)
        peer.command(b"RCPT TO:<bob@example.net>")
        peer.command(b"DATA")
        tally.tried()
        peer.send(b"Subject: clean\r\n\r\nafter the 8-bit session\r\n.\r\n")
        reply = peer.reply()[-1]
        peer.command(b"QUIT")
        for why, line in peer.bad:
            tally.add("wrong_replies", example=f"{why}: {line!r}")
    found = QUEUED.match(reply)
    if found is None:
        tally.add("lost", example=f"the clean message after the 8-bit session got {reply!r}")
        return None
    return found.group(1).decode(), int(found.group(2))


@pytest.mark.parametrize("scenario", [OPEN, CHECKED], ids=["open", "checked"])
@pytest.mark.parametrize("stray", STRAYS, ids=["ff", "80", "surrogate"])
def test_8bit_bytes_in_every_command_then_a_clean_session(
    strictmx: StrictmxFactory, tmp_path: Any, tally: Tally, stray: bytes, scenario: dict[str, Any]
) -> None:
    rx = strictmx(scenario, db=str(tmp_path / "journal.db"))
    sent, queued = hostile_session(rx, stray, tally)
    hostile = rx.last()
    where = clean_session(rx, tally)
    tally.assert_clean()

    # The clean message is stored, byte for byte.
    assert where is not None
    assert rx.message(*where) == b"Subject: clean\r\n\r\nafter the 8-bit session\r\n"
    # The hostile session's transcript holds every line it sent, bytes written \xNN.
    session = rx.session(hostile["id"])
    said = [t["line"] for t in session["transcript"] if t["direction"] == "in"]
    shown = [line.decode("utf-8", "backslashreplace") for line in sent]
    assert [s for s in said if s in shown] == shown, said
    assert all("\\x" in s for s in shown if stray in s.encode("utf-8", "backslashreplace"))
    if scenario is OPEN:
        # The 8-bit message and envelope go in as their very bytes.
        assert queued
        assert rx.message(hostile["id"], 1) == message(stray)
        escaped = stray.decode("utf-8", "backslashreplace")
        assert session["helo"] == "mail.example.net"
        assert session["client_name"] == f"mail{escaped}.example.net"
    else:
        # The checks refused the 8-bit HELO and sender with their own replies.
        replies = [t["line"] for t in session["transcript"] if t["direction"] == "out"]
        assert "501 5.1.7 Bad sender address syntax" in replies, replies
        assert queued  # the clean EHLO and MAIL after them still get a message through


#: Rounds of the shared-batch test, and the most seconds they may take in all.
ROUNDS: Final = 20
ROUNDS_SECONDS: Final = 30.0


def _at_end_of_data(rx: StrictmxReceiver, helo: bytes, sender: bytes, rcpt: bytes) -> Peer:
    """A session that said everything but the message's final dot."""
    peer = Peer(rx)
    peer.reply()
    for line in (b"EHLO " + helo, b"MAIL FROM:<" + sender + b">", b"RCPT TO:<" + rcpt + b">"):
        peer.command(line)
    assert peer.command(b"DATA")[-1].startswith(b"354"), "DATA refused"
    return peer


def test_a_clean_message_committed_beside_8bit_rows_is_stored(
    strictmx: StrictmxFactory, tmp_path: Any, tally: Tally
) -> None:
    # The journal's writer runs whatever has arrived as one transaction: both messages
    # end at the same instant, so their rows (the 8-bit HELO, sender and recipient of
    # one, the clean message of the other) are committed together. A value SQLite cannot
    # bind must fail its own row, which is then stored as its bytes; the clean message
    # must get 250 and be stored (a writer that failed the whole batch answered it 451).
    rx = strictmx(OPEN, db=str(tmp_path / "journal.db"))
    deadline = time.monotonic() + ROUNDS_SECONDS
    rounds = 0
    while rounds < ROUNDS and time.monotonic() < deadline:
        stray = STRAYS[rounds % len(STRAYS)]
        hostile = _at_end_of_data(
            rx,
            b"mail" + stray + b".example.net",
            b"a" + stray + b"@example.net",
            b"bob" + stray + b"@example.net",
        )
        clean = _at_end_of_data(rx, b"mail.example.net", b"alice@example.net", b"bob@example.net")
        body = b"Subject: round %d\r\n\r\n" % rounds
        with hostile, clean:
            hostile.send(body + stray + b"\r\n.\r\n")
            clean.send(body + b"clean\r\n.\r\n")
            replies = [hostile.reply()[-1], clean.reply()[-1]]
            for peer in (hostile, clean):
                for why, line in peer.bad:
                    tally.add("wrong_replies", example=f"{why}: {line!r}")
        tally.tried(2)
        for kind, reply, raw in (
            ("8-bit", replies[0], body + stray),
            ("clean", replies[1], body + b"clean"),
        ):
            found = QUEUED.match(reply)
            if found is None:
                tally.add("lost", example=f"round {rounds}: the {kind} message got {reply!r}")
            elif rx.message(found.group(1).decode(), int(found.group(2))) != raw + b"\r\n":
                tally.add("lost", example=f"round {rounds}: the {kind} message is not stored")
        rounds += 1
    assert rounds >= 3, f"only {rounds} rounds in {ROUNDS_SECONDS}s"
    assert rx.receiver.journal.healthy, rx.receiver.journal.last_error
    tally.assert_clean()


#: An exception's name in a verdict's reason: a check that failed on the 8-bit text, which
#: the engine or a policy then turned into a refusal (a callout's `local error`, say).
EXCEPTION_NAME: Final = re.compile(r"\b[A-Z][A-Za-z]*(?:Error|Exception)\b|local error")


@pytest.mark.parametrize("name", bundled_names())
def test_every_bundled_persona_takes_8bit_bytes_in_every_command(
    strictmx: StrictmxFactory, tally: Tally, name: str
) -> None:
    # Each persona's own policies read the 8-bit HELO, sender and recipient: DNS lookups,
    # IDNA, blocklists, SPF, callouts to the world's MX. Whatever they answer, it is a
    # reply of theirs: no internal error on the wire, none behind a verdict.
    rx = strictmx(name)
    for stray in STRAYS:
        hostile_session(rx, stray, tally)
    for session in rx.sessions():
        for verdict in session["verdicts"]:
            if EXCEPTION_NAME.search(verdict["reason"]):
                tally.add("wrong_replies", example=f"{verdict['policy']}: {verdict['reason']}")
    tally.assert_clean()
