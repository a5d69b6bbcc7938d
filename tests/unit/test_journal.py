"""The SQLite journal: round trips, filters, the size cap, commit-before-answer, errors."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from strictmx.receiver import journal_writer
from strictmx.receiver.journal import SCHEMA_VERSION, Journal, JournalError
from strictmx.receiver.verdict import Action, Reply, Stage, Verdict

T0 = datetime(2026, 5, 9, 7, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def write_line(
    journal: Journal, session_id: str, direction: str, text: str, when: datetime
) -> None:
    """One transcript line, written as the SMTP layer writes them (in a batch)."""
    journal.transcript_many(session_id, [(when.timestamp(), direction, text)])


def start(journal: Journal, session_id: str, when: datetime, **overrides: Any) -> None:
    fields: dict[str, Any] = {
        "started": when,
        "peer": "127.0.0.1",
        "peer_port": 40000,
        "client_address": "127.0.0.1",
        "client_name": None,
        "scenario": "postfix-strict",
    }
    fields.update(overrides)
    journal.session_started(session_id, **fields)


def helo_verdict() -> Verdict:
    return Verdict(
        policy="helo_syntax",
        outcome="HELO_INVALID",
        action=Action.REJECT,
        stage=Stage.HELO,
        reply=Reply.parse("501 5.5.2 <x>: Helo command rejected: Invalid name"),
        reason="HELO argument 'x' is not a domain name or address literal",
        replied_at=Stage.RCPT,
    )


def count(path: Path, table: str) -> int:
    """Rows committed to `table`, as another process would see them."""
    with sqlite3.connect(path) as other:
        n: int = other.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    other.close()
    return n


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"


@pytest.fixture
async def journal(db: Path) -> AsyncIterator[Journal]:
    j = Journal(db)
    await j.open()
    yield j
    await j.close()


async def test_session_round_trip(journal: Journal) -> None:
    raw_one = b"Subject: one\r\n\r\nhello\r\n"
    raw_two = b"Subject: two, a little longer\r\n\r\nagain\r\n"
    start(journal, "s1", at(0), peer_port=40001, client_address="203.0.113.9")
    write_line(journal, "s1", "out", "220 mx.example ESMTP", at(0))
    write_line(journal, "s1", "in", "EHLO x", at(1))
    journal.session_updated("s1", helo="x", client_name="mail.sender.example", tls=True)
    journal.verdict("s1", helo_verdict(), at(1))
    write_line(journal, "s1", "note", "helo_syntax: rejection delayed to RCPT", at(1))
    journal.session_updated("s1", mail_from="alice@sender.example")
    journal.rcpts_tried("s1", ["postmaster@mx.example"])
    first = await journal.add_message(
        "s1",
        mail_from="alice@sender.example",
        rcpts=["postmaster@mx.example"],
        raw=raw_one,
        when=at(2),
    )
    second = await journal.add_message(
        "s1",
        mail_from="alice@sender.example",
        rcpts=["abuse@mx.example", "postmaster@mx.example"],
        raw=raw_two,
        when=at(3),
    )
    journal.session_ended("s1", outcome="accepted", ended=at(4))

    assert (first, second) == (1, 2)
    s = await journal.session("s1")
    assert s is not None
    verdicts = s.pop("verdicts")
    transcript = s.pop("transcript")
    messages = s.pop("messages")
    assert s == {
        "id": "s1",
        "started": "2026-05-09T07:00:00.000000+00:00",
        "ended": "2026-05-09T07:00:04.000000+00:00",
        "outcome": "accepted",
        "scenario": "postfix-strict",
        "peer": "127.0.0.1",
        "peer_port": 40001,
        "client_address": "203.0.113.9",
        "client_name": "mail.sender.example",
        "helo": "x",
        "mail_from": "alice@sender.example",
        "tls": True,
        "auth_user": None,  # no SMTP AUTH in this session
        "rcpts": ["postmaster@mx.example", "abuse@mx.example"],
    }
    assert verdicts == [
        {
            "when": "2026-05-09T07:00:01.000000+00:00",
            "policy": "helo_syntax",
            "outcome": "HELO_INVALID",
            "action": "reject",
            "stage": "helo",
            "replied_at": "rcpt",
            "code": 501,
            "status": "5.5.2",
            "text": "<x>: Helo command rejected: Invalid name",
            "reason": "HELO argument 'x' is not a domain name or address literal",
            "rfc_compliant": True,
            "warned": False,
            "delay": 0.0,
            "details": {},
        }
    ]
    assert [(t["direction"], t["line"]) for t in transcript] == [
        ("out", "220 mx.example ESMTP"),
        ("in", "EHLO x"),
        ("note", "helo_syntax: rejection delayed to RCPT"),
    ]
    assert transcript[1]["when"] == "2026-05-09T07:00:01.000000+00:00"
    assert messages == [
        {
            "n": 1,
            "when": "2026-05-09T07:00:02.000000+00:00",
            "mail_from": "alice@sender.example",
            "rcpts": ["postmaster@mx.example"],
            "size": len(raw_one),
            "truncated": False,
        },
        {
            "n": 2,
            "when": "2026-05-09T07:00:03.000000+00:00",
            "mail_from": "alice@sender.example",
            "rcpts": ["abuse@mx.example", "postmaster@mx.example"],
            "size": len(raw_two),
            "truncated": False,
        },
    ]
    assert await journal.message_raw("s1", 2) == raw_two
    assert await journal.message_raw("s1", 3) is None
    assert await journal.session("nope") is None


async def test_multi_line_reply_and_details_round_trip(journal: Journal) -> None:
    start(journal, "s1", at(0))
    verdict = Verdict(
        policy="dnsbl",
        outcome="LISTED",
        action=Action.DEFER,
        stage=Stage.CONNECT,
        reply=Reply.parse(["450-4.7.1 Client host blocked", "450 4.7.1 try later"]),
        rfc_compliant=False,
        warned=True,
        delay=2.5,
        details={"zone": "zen.example", "at": T0},
    )
    journal.verdict("s1", verdict, at(0))
    s = await journal.session("s1")
    assert s is not None
    [v] = s["verdicts"]
    assert (v["code"], v["status"], v["text"]) == (
        450,
        "4.7.1",
        "Client host blocked\ntry later",
    )
    assert v["replied_at"] is None
    assert (v["rfc_compliant"], v["warned"], v["delay"]) == (False, True, 2.5)
    # Whatever JSON cannot hold is kept as its text.
    assert v["details"] == {"zone": "zen.example", "at": str(T0)}


async def test_times_are_stored_as_utc(journal: Journal) -> None:
    paris = timezone(timedelta(hours=2))
    start(journal, "s1", datetime(2026, 5, 9, 9, 0, 0, tzinfo=paris))
    s = await journal.session("s1")
    assert s is not None
    assert s["started"] == "2026-05-09T07:00:00.000000+00:00"


async def test_naive_times_are_refused(journal: Journal) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        start(journal, "s1", datetime(2026, 5, 9, 7, 0, 0))
    start(journal, "s1", at(0))


async def test_bad_arguments_are_refused_at_the_call(journal: Journal) -> None:
    start(journal, "s1", at(0))
    with pytest.raises(TypeError, match="unknown fields \\['helo_name'\\]"):
        journal.session_updated("s1", helo_name="x")
    with pytest.raises(ValueError, match="direction"):
        write_line(journal, "s1", "sideways", "x", at(0))
    with pytest.raises(ValueError, match="session outcome"):
        journal.session_ended("s1", outcome="bounced", ended=at(1))
    journal.session_updated("s1", helo="ok.example")
    write_line(journal, "s1", "in", "EHLO ok.example", at(0))
    journal.session_ended("s1", outcome="idle", ended=at(1))
    s = await journal.session("s1")
    assert s is not None
    assert (s["helo"], s["outcome"], len(s["transcript"])) == ("ok.example", "idle", 1)


@pytest.fixture
async def two_sessions(journal: Journal) -> Journal:
    """`a` matches every filter case below; `b` (older) differs in each field."""
    start(
        journal,
        "a",
        at(3600),
        peer="127.0.0.10",
        client_address="203.0.113.9",
        client_name="mail.a.example",
    )
    journal.session_updated("a", helo="mail.a.example", mail_from="alice@a.example")
    journal.rcpts_tried("a", ["bob@b.example"])
    journal.verdict("a", helo_verdict(), at(3601))
    journal.session_ended("a", outcome="rejected", ended=at(3602))

    start(journal, "b", at(0), peer="127.0.0.11", client_address="198.51.100.7")
    journal.session_updated("b", helo="relay.c.example")
    await journal.add_message(
        "b", mail_from="carol@c.example", rcpts=["dave@d.example"], raw=b"x\r\n", when=at(1)
    )
    journal.verdict(
        "b",
        Verdict(policy="dnsbl", outcome="NOT_LISTED", action=Action.DUNNO, stage=Stage.CONNECT),
        at(0),
    )
    journal.session_ended("b", outcome="accepted", ended=at(2))
    return journal


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["a", "b"]),
        ({"client": "203.0.113.9"}, ["a"]),
        ({"client": "127.0.0.10"}, ["a"]),
        ({"client": "MAIL.A.example"}, ["a"]),
        ({"client": "203.0.113.90"}, []),
        ({"client": "203.0.113"}, []),
        ({"helo": "A.EXAMPLE"}, ["a"]),
        ({"helo": "b.example"}, []),
        ({"sender": "alice@"}, ["a"]),
        ({"sender": "carol@c.example"}, ["b"]),  # from its message: no session MAIL FROM
        ({"sender": "alice_a.example"}, []),  # _ and % are literal, not wildcards
        ({"sender": "%"}, []),
        ({"rcpt": "bob@B.example"}, ["a"]),
        ({"rcpt": "dave@d"}, ["b"]),  # from its message
        ({"rcpt": "carol"}, []),
        ({"outcome": "rejected"}, ["a"]),
        ({"outcome": "deferred"}, []),
        ({"policy": "helo_syntax"}, ["a"]),
        ({"policy": "dnsbl"}, ["b"]),
        ({"policy": "spf"}, []),
        ({"since": at(3600)}, ["a"]),
        ({"since": at(3600.000001)}, []),
        ({"helo": "example", "outcome": "accepted"}, ["b"]),
        ({"helo": "mail", "outcome": "accepted"}, []),
    ],
)
async def test_session_filters(
    two_sessions: Journal, filters: dict[str, Any], expected: list[str]
) -> None:
    found = await two_sessions.sessions(**filters)
    assert [s["id"] for s in found] == expected


async def test_session_list_carries_verdicts_and_rcpts(two_sessions: Journal) -> None:
    a, b = await two_sessions.sessions()
    assert [v["policy"] for v in a["verdicts"]] == ["helo_syntax"]
    assert a["verdicts"][0]["code"] == 501
    assert a["rcpts"] == ["bob@b.example"]
    assert [v["outcome"] for v in b["verdicts"]] == ["NOT_LISTED"]
    assert b["verdicts"][0]["code"] is None
    assert b["rcpts"] == ["dave@d.example"]
    assert "transcript" not in a


async def test_newest_first_and_paging(journal: Journal) -> None:
    # Started out of order; of s2 and s2b (same start time) the later written comes first.
    for n in (3, 0, 5, 1, 4, 6, 2):
        start(journal, f"s{n}", at(n))
    start(journal, "s2b", at(2))
    page = await journal.sessions(limit=3)
    assert [s["id"] for s in page] == ["s6", "s5", "s4"]
    page = await journal.sessions(limit=3, offset=3)
    assert [s["id"] for s in page] == ["s3", "s2b", "s2"]
    page = await journal.sessions(limit=3, offset=6)
    assert [s["id"] for s in page] == ["s1", "s0"]
    assert await journal.sessions(offset=8) == []
    assert await journal.sessions(limit=0) == []
    page = await journal.sessions(limit=2, offset=1, since=at(3))
    assert [s["id"] for s in page] == ["s5", "s4"]
    with pytest.raises(ValueError, match="limit and offset"):
        await journal.sessions(limit=-1)


async def test_message_size_cap(db: Path) -> None:
    journal = Journal(db, max_stored_message_bytes=100)
    await journal.open()
    try:
        start(journal, "s1", at(0))
        big = bytes(range(250))
        exact = b"y" * 100
        assert await journal.add_message("s1", mail_from="", rcpts=["r@x"], raw=big, when=at(1))
        assert await journal.add_message("s1", mail_from="", rcpts=["r@x"], raw=exact, when=at(2))
        s = await journal.session("s1")
        assert s is not None
        assert [(m["size"], m["truncated"]) for m in s["messages"]] == [(250, True), (100, False)]
        assert await journal.message_raw("s1", 1) == big[:100]
        assert await journal.message_raw("s1", 2) == exact
    finally:
        await journal.close()


async def test_add_message_returns_after_commit(journal: Journal, db: Path) -> None:
    start(journal, "s1", at(0))
    other = sqlite3.connect(db)
    try:
        n = await journal.add_message(
            "s1", mail_from="a@x.example", rcpts=["b@y.example"], raw=b"body\r\n", when=at(1)
        )
        # No flush: the second connection sees the row the moment add_message returns.
        row = other.execute(
            "SELECT mail_from, size, raw FROM messages WHERE session_id = 's1' AND n = ?", (n,)
        ).fetchone()
        assert row == ("a@x.example", 6, b"body\r\n")
    finally:
        other.close()


async def test_file_is_in_wal_mode_with_a_schema_version(journal: Journal, db: Path) -> None:
    other = sqlite3.connect(db)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert other.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    finally:
        other.close()


async def test_reopening_keeps_the_data(db: Path) -> None:
    first = Journal(db)
    await first.open()
    start(first, "s1", at(0))
    await first.close()
    second = Journal(db)
    await second.open()
    try:
        assert [s["id"] for s in await second.sessions()] == ["s1"]
    finally:
        await second.close()


async def test_in_memory_journal() -> None:
    journal = Journal(":memory:")
    await journal.open()
    try:
        start(journal, "s1", at(0))
        assert await journal.add_message("s1", mail_from="", rcpts=[], raw=b"", when=at(1)) == 1
        assert [s["id"] for s in await journal.sessions()] == ["s1"]
    finally:
        await journal.close()


async def test_mark_open_aborted(journal: Journal) -> None:
    for sid in ("open1", "open2", "done"):
        start(journal, sid, at(0))
    journal.session_ended("done", outcome="accepted", ended=at(1))
    assert await journal.mark_open_aborted(at(9)) == 2
    by_id = {s["id"]: s for s in await journal.sessions()}
    assert {sid: (s["outcome"], s["ended"]) for sid, s in by_id.items()} == {
        "open1": ("aborted", "2026-05-09T07:00:09.000000+00:00"),
        "open2": ("aborted", "2026-05-09T07:00:09.000000+00:00"),
        "done": ("accepted", "2026-05-09T07:00:01.000000+00:00"),
    }
    assert await journal.mark_open_aborted(at(10)) == 0


async def test_clear(journal: Journal, db: Path) -> None:
    start(journal, "s1", at(0))
    write_line(journal, "s1", "in", "EHLO x", at(0))
    journal.verdict("s1", helo_verdict(), at(0))
    journal.rcpts_tried("s1", ["a@b"])
    await journal.add_message("s1", mail_from="", rcpts=["a@b"], raw=b"x", when=at(1))
    await journal.clear()
    for table in ("sessions", "transcript", "verdicts", "rcpts", "messages"):
        assert count(db, table) == 0, table
    assert await journal.sessions() == []
    # Usable afterwards, numbering starts again.
    start(journal, "s1", at(2))
    assert await journal.add_message("s1", mail_from="", rcpts=[], raw=b"x", when=at(3)) == 1


async def test_unwritable_path_names_the_path(tmp_path: Path) -> None:
    # A path under a regular file cannot be created, even by root.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    path = blocker / "journal.db"
    journal = Journal(path)
    with pytest.raises(JournalError, match=f"cannot open journal {path}"):
        await journal.open()
    with pytest.raises(JournalError, match="not open"):
        start(journal, "s1", at(0))


async def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not a database, it is a shopping list\n" * 100)
    with pytest.raises(JournalError, match=f"cannot open journal {path}"):
        await Journal(path).open()


async def test_a_newer_schema_is_refused(db: Path) -> None:
    with sqlite3.connect(db) as other:
        other.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    other.close()
    with pytest.raises(JournalError, match=f"schema version {SCHEMA_VERSION + 1} is newer"):
        await Journal(db).open()


async def test_writes_run_in_the_writer_process(journal: Journal, db: Path) -> None:
    start(journal, "s1", at(0))
    await journal.flush()
    assert journal.writer_pid is not None
    assert journal.writer_pid != os.getpid()

    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # hold the write lock: nobody can commit now
    try:
        # Were these written on the loop's thread, the first would block on the lock.
        for i in range(2000):
            write_line(journal, "s1", "in", f"NOOP {i}", at(1))
        flushed = asyncio.ensure_future(journal.flush())
        await asyncio.sleep(0)  # the loop keeps running while the writer waits
        assert not flushed.done()
    finally:
        other.execute("ROLLBACK")
        other.close()
    await flushed
    assert count(db, "transcript") == 2000


async def test_writes_before_open_and_after_close_raise(db: Path) -> None:
    journal = Journal(db)
    with pytest.raises(JournalError, match="not open"):
        write_line(journal, "s1", "in", "x", at(0))
    await journal.open()
    start(journal, "s1", at(0))
    await journal.close()
    await journal.close()  # idempotent
    assert count(db, "sessions") == 1  # close committed what was queued
    with pytest.raises(JournalError, match="closed"):
        write_line(journal, "s1", "in", "x", at(0))
    with pytest.raises(JournalError, match="closed"):
        await journal.add_message("s1", mail_from="", rcpts=[], raw=b"", when=at(1))
    with pytest.raises(JournalError, match="closed"):
        await journal.sessions()
    with pytest.raises(JournalError, match="closed"):
        await journal.open()


@pytest.mark.parametrize("raise_kind", ["ABORT", "ROLLBACK"])
async def test_failed_message_write_fails_add_message_and_recovers(
    journal: Journal, db: Path, raise_kind: str
) -> None:
    start(journal, "s1", at(0))
    await journal.flush()
    assert journal.healthy
    assert journal.last_error is None
    # Another connection makes message inserts fail the way a full disk would: inside
    # SQLite, at the journal's own INSERT. ROLLBACK also undoes the whole transaction.
    with sqlite3.connect(db) as other:
        other.execute(
            "CREATE TRIGGER no_room BEFORE INSERT ON messages"
            f" BEGIN SELECT RAISE({raise_kind}, 'no room for messages'); END"
        )
    other.close()

    with pytest.raises(JournalError, match="no room for messages"):
        await journal.add_message("s1", mail_from="", rcpts=["a@b"], raw=b"x", when=at(1))
    assert not journal.healthy
    assert journal.last_error is not None
    assert "no room for messages" in journal.last_error
    assert count(db, "messages") == 0
    assert count(db, "rcpts") == 0  # the failed message left nothing half-written

    with sqlite3.connect(db) as other:
        other.execute("DROP TRIGGER no_room")
    other.close()
    # The writer thread lived through it: the next message is stored, as number 1.
    n = await journal.add_message("s1", mail_from="", rcpts=["a@b"], raw=b"x", when=at(2))
    assert n == 1
    assert journal.healthy
    assert journal.last_error is not None  # kept for the health report
    assert count(db, "messages") == 1


async def test_failed_plain_write_marks_unhealthy_without_stopping(
    journal: Journal, db: Path
) -> None:
    write_line(journal, "ghost", "in", "EHLO x", at(0))  # no such session
    await journal.flush()
    assert not journal.healthy
    assert journal.last_error is not None
    assert "FOREIGN KEY" in journal.last_error
    start(journal, "s1", at(1))
    await journal.flush()
    assert journal.healthy
    assert count(db, "sessions") == 1
    assert count(db, "transcript") == 0


async def test_many_sessions(journal: Journal, db: Path) -> None:
    for s in range(5000):
        sid = f"s{s:04}"
        start(journal, sid, at(s))
        for line in range(10):
            write_line(journal, sid, "in", f"NOOP {line}", at(s))
        journal.session_ended(sid, outcome="idle", ended=at(s + 1))
    await journal.flush()
    assert journal.healthy
    assert count(db, "sessions") == 5000
    assert count(db, "transcript") == 50_000
    assert [s["id"] for s in await journal.sessions(limit=2)] == ["s4999", "s4998"]
    assert len(await journal.sessions(outcome="idle", limit=10_000)) == 5000


async def test_a_killed_writer_is_restarted_and_replays_what_was_in_flight(
    journal: Journal, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    start(journal, "s1", at(0))
    await journal.flush()
    pid = journal.writer_pid
    assert pid is not None
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the writer waits on this lock: nothing commits
    try:
        start(journal, "s2", at(1))  # its row is in flight when the writer dies
        journal.session_updated("s2", helo="mail.example.net")
        stored = asyncio.ensure_future(
            journal.add_message("s1", mail_from="a@b", rcpts=["c@d"], raw=b"x", when=at(2))
        )
        flushed = asyncio.ensure_future(journal.flush())
        await asyncio.sleep(0.1)
        assert not stored.done()
        os.kill(pid, signal.SIGKILL)  # the writer this journal started
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await stored == 1  # replayed to the new writer, so the 250 would be true
    with pytest.raises(JournalError, match="writer process exited"):
        await flushed  # nobody can vouch for the plain writes that were in flight
    assert journal.writer_pid not in (None, pid)
    assert "restarting it (1 of at most 5" in caplog.text
    # The session whose row was in flight has it again, with its fields: its writes go in.
    assert await journal.add_message("s2", mail_from="", rcpts=[], raw=b"y", when=at(3)) == 1
    assert journal.healthy
    await journal.close()
    assert count(db, "messages") == 2
    with sqlite3.connect(db) as other:
        assert other.execute("SELECT helo FROM sessions WHERE id = 's2'").fetchone() == (
            "mail.example.net",
        )
    other.close()


async def test_restarts_are_bounded(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    journal = Journal(db, max_restarts=1)
    await journal.open()
    start(journal, "s1", at(0))
    await journal.flush()
    first = journal.writer_pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    assert await journal.add_message("s1", mail_from="", rcpts=[], raw=b"x", when=at(1)) == 1
    second = journal.writer_pid
    assert second not in (None, first)
    assert second is not None
    os.kill(second, signal.SIGKILL)  # one restart in the window already: this one stays dead
    with pytest.raises(JournalError, match="writer process exited"):
        await journal.add_message("s1", mail_from="", rcpts=[], raw=b"y", when=at(2))
    assert not journal.healthy
    assert journal.last_error is not None and "writer process exited" in journal.last_error
    assert "not restarted" in caplog.text
    # Plain writes are dropped (nothing can store them), reads and flushes fail at once.
    write_line(journal, "s1", "in", "NOOP", at(3))
    with pytest.raises(JournalError, match="writer process exited"):
        await journal.flush()
    with pytest.raises(JournalError, match="writer process exited"):
        await journal.sessions()
    await journal.close()
    assert count(db, "sessions") == 1
    assert count(db, "messages") == 1


def hide(db: Path) -> Path:
    """Move the database and its WAL files into a directory beside it; that directory."""
    away = db.with_name("away")
    away.mkdir()
    for name in db.parent.glob(db.name + "*"):
        name.rename(away / name.name)
    return away


async def noticed_dead(journal: Journal) -> None:
    """Wait (10 s at most) until the journal has seen its writer die."""
    deadline = asyncio.get_running_loop().time() + 10
    while journal.healthy:
        assert asyncio.get_running_loop().time() < deadline, "the writer's death went unseen"
        await asyncio.sleep(0.01)


async def test_a_writer_that_cannot_reopen_is_tried_again(
    journal: Journal, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    start(journal, "s1", at(0))
    await journal.flush()
    pid = journal.writer_pid
    assert pid is not None
    away = hide(db)
    db.write_bytes(b"not a database" * 100)  # what the restarted writer finds
    os.kill(pid, signal.SIGKILL)
    await noticed_dead(journal)
    # Down: nothing waits for a writer that may never come; a message fails at once.
    with pytest.raises(JournalError, match=r"restart failed: .*not a database"):
        await journal.add_message("s1", mail_from="", rcpts=[], raw=b"x", when=at(1))
    assert not journal.healthy
    assert "trying again every 1s" in caplog.text
    for name in away.iterdir():  # the database is back: the next try opens it
        name.replace(db.with_name(name.name))
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        try:
            n = await journal.add_message("s1", mail_from="", rcpts=[], raw=b"y", when=at(2))
            break
        except JournalError:
            assert asyncio.get_running_loop().time() < deadline, "not reopened in 10s"
            await asyncio.sleep(0.1)
    assert n == 1
    # Only the message that got its answer is stored: none refused while down came in.
    assert await journal.message_raw("s1", 1) == b"y"
    assert journal.healthy
    await journal.close()
    assert count(db, "messages") == 1


async def test_closing_while_down_does_not_wait_for_a_writer(db: Path) -> None:
    journal = Journal(db)
    await journal.open()
    start(journal, "s1", at(0))
    await journal.flush()
    pid = journal.writer_pid
    assert pid is not None
    hide(db)
    db.write_bytes(b"not a database" * 100)
    os.kill(pid, signal.SIGKILL)
    await noticed_dead(journal)
    with pytest.raises(JournalError, match="restart failed"):
        await journal.flush()
    started = asyncio.get_running_loop().time()
    await journal.close()
    assert asyncio.get_running_loop().time() - started < 1.0
    with pytest.raises(JournalError, match="closed"):
        await journal.flush()


async def test_8bit_text_is_stored_as_its_bytes_and_read_escaped(
    journal: Journal, db: Path
) -> None:
    # The SMTP layer decodes 8-bit input with surrogateescape: "\udcff" stands for 0xFF.
    start(journal, "s1", at(0))
    journal.session_updated("s1", helo="h\udce9lo.example", mail_from="\udcff@example.org")
    journal.rcpts_tried("s1", ["\udcff@example.org"])
    start(journal, "s2", at(0))  # a control: its plain rows go in beside the 8-bit ones
    journal.rcpts_tried("s2", ["bob@example.org"])
    n = await journal.add_message(
        "s1", mail_from="\udcff@example.org", rcpts=["\udcff@example.org"], raw=b"x", when=at(1)
    )
    assert n == 1
    await journal.flush()
    assert journal.healthy
    with sqlite3.connect(db) as other:
        rows = other.execute("SELECT session_id, rcpt FROM rcpts ORDER BY id").fetchall()
        helo, mail_from = other.execute(
            "SELECT helo, mail_from FROM sessions WHERE id = 's1'"
        ).fetchone()
    other.close()
    assert ("s1", b"\xff@example.org") in rows
    assert ("s2", "bob@example.org") in rows
    assert helo == b"h\xe9lo.example"
    assert mail_from == b"\xff@example.org"
    found = await journal.session("s1")
    assert found is not None
    assert found["helo"] == "h\\xe9lo.example"
    assert "\\xff@example.org" in found["rcpts"]
    assert found["messages"][0]["mail_from"] == "\\xff@example.org"
    assert {s["id"] for s in await journal.sessions(rcpt="example.org")} == {"s1", "s2"}
    assert [s["id"] for s in await journal.sessions(rcpt="\udcff@")] == ["s1"]
    assert [s["id"] for s in await journal.sessions(sender="\udcff@")] == ["s1"]
    assert [s["id"] for s in await journal.sessions(helo="h\udce9lo")] == ["s1"]


async def test_a_lost_session_row_is_stored_again(
    journal: Journal, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A trigger refuses the row the way a full disk would, inside SQLite's INSERT.
    with sqlite3.connect(db) as other:
        other.execute(
            "CREATE TRIGGER no_room BEFORE INSERT ON sessions WHEN NEW.id = 's1'"
            " BEGIN SELECT RAISE(ABORT, 'no room for sessions'); END"
        )
    other.close()
    start(journal, "s1", at(0))
    start(journal, "s2", at(0))  # the control, in the same batch
    with pytest.raises(JournalError, match="FOREIGN KEY"):
        await journal.add_message("s1", mail_from="", rcpts=[], raw=b"x", when=at(1))
    assert await journal.add_message("s2", mail_from="", rcpts=[], raw=b"x", when=at(1)) == 1
    with sqlite3.connect(db) as other:
        other.execute("DROP TRIGGER no_room")
    other.close()
    # Room again: the writer inserts the row before the next batch, so s1 stores again.
    assert await journal.add_message("s1", mail_from="", rcpts=[], raw=b"y", when=at(2)) == 1
    assert journal.healthy
    assert caplog.text.count("stored 1 lost session rows") == 1  # once it is committed
    assert count(db, "sessions") == 2
    assert count(db, "messages") == 2


async def test_the_writer_ignores_sigint_and_commits_on_close(db: Path) -> None:
    # Ctrl-C in a terminal reaches the whole process group; the receiver decides when
    # the journal closes, so the writer must outlive the signal and commit the rest.
    journal = Journal(db)
    await journal.open()
    start(journal, "s1", at(0))
    await journal.flush()
    assert journal.writer_pid is not None
    os.kill(journal.writer_pid, signal.SIGINT)
    start(journal, "s2", at(1))
    await journal.add_message("s2", mail_from="", rcpts=[], raw=b"x", when=at(2))
    await journal.close()
    assert count(db, "sessions") == 2
    assert count(db, "messages") == 1


# -- the writer process, driven over its pipe ------------------------------------------


class WriterPipe:
    """A journal_writer.py process this test started, spoken to in its own frames."""

    def __init__(self, db: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", journal_writer.__file__, str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.read() == ("ready", None)
        self.logs: list[str] = []

    def send(self, ops: list[tuple[Any, ...]]) -> None:
        assert self.process.stdin is not None
        payload = pickle.dumps(ops, protocol=pickle.HIGHEST_PROTOCOL)
        self.process.stdin.write(journal_writer.HEADER.pack(len(payload)) + payload)
        self.process.stdin.flush()

    def read(self) -> tuple[Any, ...]:
        assert self.process.stdout is not None
        header = self.process.stdout.read(journal_writer.HEADER.size)
        assert len(header) == journal_writer.HEADER.size, "the writer ended"
        (size,) = journal_writer.HEADER.unpack(header)
        message: tuple[Any, ...] = pickle.loads(self.process.stdout.read(size))
        return message

    def answers(self, expected: int) -> dict[int, str | None]:
        """Read done frames until `expected` answers have come: id -> error."""
        found: dict[int, str | None] = {}
        while len(found) < expected:
            message = self.read()
            assert message[0] == "done"
            self.logs += [text for _, text in message[3]]
            found.update((op_id, error) for op_id, error, _ in message[4])
        return found

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()  # end of input: the writer commits and exits
        assert self.process.wait(timeout=30) == 0
        assert self.process.stdout is not None
        self.process.stdout.close()


def session_row(session_id: str) -> tuple[Any, ...]:
    row = (session_id, "2026-05-09T07:00:00.000000+00:00", "t", "127.0.0.1", 1, "127.0.0.1", None)
    return ("write", journal_writer.SESSION_INSERT, row, session_id)


def message_row(
    session_id: str, n: int, sql: str = journal_writer.MESSAGE_INSERT
) -> tuple[Any, ...]:
    row = (session_id, n, "2026-05-09T07:00:01.000000+00:00", "", "[]", 1, False, b"x")
    return ("write", sql, row, session_id)


def transcript_row(session_id: str, i: int) -> tuple[Any, ...]:
    sql = "INSERT INTO transcript (session_id, lines) VALUES (?, ?)"
    return ("write", sql, (session_id, f'[[0, "in", "NOOP {i}"]]'), session_id)


@pytest.mark.parametrize("conflict", [True, False])
def test_a_barrier_covers_its_message_across_the_batch_split(db: Path, conflict: bool) -> None:
    writer = WriterPipe(db)
    try:
        writer.send([session_row("s1"), session_row("s2")])
        if conflict:  # message 1 of s1 is there already: the INSERT below fails
            writer.send([message_row("s1", 1), ("barrier", 1, True, "s1")])
            assert writer.answers(1) == {1: None}
        # One frame, so one read: the INSERT is op BATCH_MAX - 1 of it, the barrier that
        # stands for it op BATCH_MAX + 1, in the next transaction of the split.
        filler = [transcript_row("s2", i) for i in range(journal_writer.BATCH_MAX - 2)]
        ops = [
            message_row("s2", 1),
            *filler,
            message_row("s1", 1),
            transcript_row("s2", -1),
            ("barrier", 2, True, "s1"),
            ("barrier", 3, True, "s2"),  # a message in the first part, stored
            ("barrier", 4, False, None),
        ]
        assert ops.index(("barrier", 2, True, "s1")) == journal_writer.BATCH_MAX + 1
        writer.send(ops)
        answers = writer.answers(3)
    finally:
        writer.close()
    if conflict:
        assert answers[2] is not None and "UNIQUE constraint failed" in answers[2]
    else:
        assert answers[2] is None
    assert answers[3] is None  # the other session's message is not charged with it
    assert answers[4] is None  # a flush: every write before it that could go in, went in
    assert count(db, "messages") == 2
    assert count(db, "transcript") == journal_writer.BATCH_MAX - 1


def test_a_failing_row_fails_its_own_session_only(db: Path) -> None:
    writer = WriterPipe(db)
    try:
        ops: list[tuple[Any, ...]] = [session_row(f"s{i}") for i in range(50)]
        ops += [message_row(f"s{i}", 1) for i in range(50)]
        ops.insert(75, message_row("ghost", 1))  # no such session: a foreign key fails
        ops += [("barrier", i, True, f"s{i}") for i in range(50)]
        ops += [("barrier", 50, True, "ghost")]
        writer.send(ops)
        answers = writer.answers(51)
    finally:
        writer.close()
    assert [i for i, error in answers.items() if error is not None] == [50]
    assert "FOREIGN KEY" in str(answers[50])
    assert count(db, "messages") == 50
    # Run again with savepoints after the failure, the batch failed nothing else.
    assert writer.logs == ["write failed: IntegrityError: FOREIGN KEY constraint failed"]


def test_a_replayed_message_is_stored_once(db: Path) -> None:
    # After a restart the journal sends again what the dead writer had not answered;
    # had it committed the message already, the replay keeps that row and succeeds.
    writer = WriterPipe(db)
    try:
        writer.send([session_row("s1"), message_row("s1", 1), ("barrier", 1, True, "s1")])
        assert writer.answers(1) == {1: None}
        replay = journal_writer.MESSAGE_REPLAY
        writer.send([message_row("s1", 1, replay), ("barrier", 2, True, "s1")])
        writer.send([message_row("s1", 2, replay), ("barrier", 3, True, "s1")])
        assert writer.answers(2) == {2: None, 3: None}
    finally:
        writer.close()
    assert count(db, "messages") == 2


async def test_a_version_1_journal_gains_auth_user_and_keeps_its_sessions(db: Path) -> None:
    # A journal as strictmx wrote it before SMTP AUTH: schema 1, no auth_user column.
    with sqlite3.connect(db) as old:
        old.execute(
            "CREATE TABLE sessions (id TEXT PRIMARY KEY, started TEXT NOT NULL, ended TEXT,"
            " outcome TEXT, scenario TEXT NOT NULL, peer TEXT NOT NULL,"
            " peer_port INTEGER NOT NULL, client_address TEXT NOT NULL, client_name TEXT,"
            " helo TEXT, mail_from TEXT, tls INTEGER NOT NULL DEFAULT 0)"
        )
        old.execute(
            "INSERT INTO sessions (id, started, scenario, peer, peer_port, client_address)"
            " VALUES ('old', '2026-05-09T07:00:00.000000+00:00', 'default', '127.0.0.1', 1,"
            " '127.0.0.1')"
        )
        old.execute("PRAGMA user_version = 1")
    old.close()
    journal = Journal(db)
    await journal.open()
    try:
        kept = await journal.session("old")
        assert kept is not None and kept["auth_user"] is None
        start(journal, "new", at(1))
        journal.session_updated("new", auth_user="app@example.net")
        await journal.flush()
        fresh = await journal.session("new")
        assert fresh is not None and fresh["auth_user"] == "app@example.net"
    finally:
        await journal.close()
    with sqlite3.connect(db) as after:
        assert after.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    after.close()
