"""strictmx's postfix-strict against a live Postfix: one test per session of sessions.yaml.

Each test plays its session against strictmx and compares every reply with the one the
reference Postfix gave (recorded once per run): code, enhanced status code and full text,
with only queue ids and the receiver's host name normalised, and how the session ended.
A reply listed in differences.yaml must be, on both sides, exactly as listed there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from . import reference, suite
from .player import SILENT, Played, Turn

SESSIONS = suite.load_sessions()
DIFFERENCES = suite.load_differences(SESSIONS)


def _report(session: suite.Session, outcome: suite.Outcome, theirs: Played, ours: Played) -> str:
    return "\n".join(
        [
            f"strictmx does not answer session {session.name!r} as Postfix does:",
            *(f"- {problem}" for problem in outcome.problems),
            "Postfix:",
            suite.transcript(session, theirs),
            "strictmx:",
            suite.transcript(session, ours),
        ]
    )


@pytest.mark.parametrize("session", SESSIONS, ids=[s.name for s in SESSIONS])
def test_strictmx_answers_as_postfix(
    session: suite.Session,
    postfix_replies: dict[str, Played],
    strictmx_receivers: suite.Receivers,
) -> None:
    theirs = postfix_replies[session.name]
    rx = strictmx_receivers.get(session.config)
    ours = suite.play_strictmx(rx, session)
    outcome = suite.compare(
        session,
        theirs,
        ours,
        DIFFERENCES,
        postfix_hostname=reference.HOSTNAME,
        strictmx_hostname=rx.scenario.receiver.hostname,
    )
    if outcome.problems:
        # The report is the assertion: both transcripts in full, without pytest's repr.
        pytest.fail(_report(session, outcome, theirs, ours), pytrace=False)


# -- the suite's own machinery -----------------------------------------------------------


def test_the_reference_answered_every_session(postfix_replies: dict[str, Played]) -> None:
    """A suite compared against a silent or absent Postfix would prove nothing."""
    assert set(postfix_replies) == {s.name for s in SESSIONS}
    for name, played in postfix_replies.items():
        assert played.turns[0].reply == ("220 mx.strictmx.test ESMTP Postfix",), name
        assert all(t.reply != (SILENT,) for t in played.turns), name


def test_the_player_stops_where_the_server_closed(postfix_replies: dict[str, Played]) -> None:
    # Postfix closes after refusing a bare LF: the next step's turn shows the close.
    closed = postfix_replies["lf-noop-after-ehlo"]
    assert [t.reply for t in closed.turns[2:]] == [
        ("550 5.5.2 mx.strictmx.test Error: bare <LF> received",),
        None,
    ]
    assert closed.ended == "server"
    # Control: a 221 ends the session without sending the steps after it.
    junk = postfix_replies["junk-get"]
    assert junk.turns[-1].reply == ("221 2.7.0 Error: I can break rules, too. Goodbye.",)
    assert junk.ended == "server"
    # And a session the client ends is recorded as such.
    assert postfix_replies["disconnect-after-ehlo"].ended == "client"


def test_only_queue_ids_and_the_host_name_are_normalised() -> None:
    assert suite.normalise("250 2.0.0 Ok: queued as 4F2A1C0E3B", "mx.example") == (
        "250 2.0.0 Ok: queued as QUEUE-ID"
    )
    assert suite.normalise("421 4.7.0 mx.example Error: too many errors", "mx.example") == (
        "421 4.7.0 HOSTNAME Error: too many errors"
    )
    # Control: everything else stays as sent, case and spacing included.
    text = "554 5.7.1 <bob@example.org>: Relay access  denied"
    assert suite.normalise(text, "mx.example") == text


def test_replies_agree_level_by_level() -> None:
    postfix = suite.Seen(("503 5.5.1 Error: need MAIL command",))
    assert postfix.agrees(suite.Seen(("503 5.5.1 Error: need MAIL command",)), 2)
    other_text = suite.Seen(("503 5.5.1 Error: need MAIL first",))
    assert postfix.agrees(other_text, 1) and not postfix.agrees(other_text, 2)
    no_enhanced = suite.Seen(("503 Error: need MAIL command",))
    assert postfix.agrees(no_enhanced, 0) and not postfix.agrees(no_enhanced, 1)
    assert not postfix.agrees(suite.Seen(None), 0)


def _played(*replies: str, ended: str = "server") -> Played:
    turns = [Turn(i - 1, "x", (r,)) for i, r in enumerate(replies)]
    return Played(turns=turns, ended="server" if ended == "server" else "client")


def test_a_documented_difference_still_fails_when_either_side_changes() -> None:
    session = suite.Session("example", "test", ())
    documented = [suite.Difference("example", 1, "250 2.0.0 Ok", "250 Ok", "a reason")]

    def problems(postfix: str, strictmx: str) -> list[str]:
        return suite.compare(
            session,
            _played("220 a", postfix),
            _played("220 a", strictmx),
            documented,
            postfix_hostname="a",
            strictmx_hostname="a",
        ).problems

    assert problems("250 2.0.0 Ok", "250 Ok") == []
    assert problems("250 2.0.0 Ok", "250 2.0.0 Ok") != []  # strictmx changed
    assert problems("250 2.0.1 Ok", "250 Ok") != []  # Postfix changed
    # Control: without the entry the same difference is a failure.
    plain = suite.compare(
        session,
        _played("220 a", "250 2.0.0 Ok"),
        _played("220 a", "250 Ok"),
        [],
        postfix_hostname="a",
        strictmx_hostname="a",
    )
    assert plain.problems and not plain.agrees(1) and plain.agrees(0)


def test_differences_name_real_sessions(tmp_path: Path) -> None:
    listed = tmp_path / "differences.yaml"
    listed.write_text(
        "differences:\n  - {session: no-such-session, turn: 1, postfix: a, strictmx: b,"
        " reason: c}\n"
    )
    with pytest.raises(ValueError, match="no session named 'no-such-session'"):
        suite.load_differences(SESSIONS, listed)
    listed.write_text(
        "differences:\n  - {session: greeting-quit, turn: 1, postfix: a, strictmx: b}\n"
    )
    with pytest.raises(ValueError, match="missing reason"):
        suite.load_differences(SESSIONS, listed)
    # Control: the suite's own list loads.
    assert suite.load_differences(SESSIONS) == DIFFERENCES


def test_the_docs_list_the_deliberate_differences(tmp_path: Path) -> None:
    assert suite.documented_table() == suite.differences_table(DIFFERENCES), (
        "docs/dialects.md's list differs from differences.yaml: paste the output of "
        "python -m tests.differential --differences-table"
    )
    # Control: an entry in differences.yaml changes the table the docs must show.
    listed = tmp_path / "differences.yaml"
    listed.write_text(
        "differences:\n  - {session: greeting-quit, turn: 1, postfix: '221 2.0.0 Bye',"
        " strictmx: '221 Bye', reason: 'an example | with a bar'}\n"
    )
    table = suite.differences_table(suite.load_differences(SESSIONS, listed))
    assert table.splitlines()[-1] == (
        "| greeting-quit | 1 | 221 2.0.0 Bye | 221 Bye | an example \\| with a bar |"
    )
    assert table != suite.documented_table()
