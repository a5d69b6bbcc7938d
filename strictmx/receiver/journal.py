"""The journal: every SMTP session of the receiver, in SQLite.

What is kept: sessions (who connected, what they said about themselves, how it ended),
transcript lines, policy verdicts, recipients tried, and accepted messages (raw bytes
up to a size cap).

A writer process (`strictmx/receiver/journal_writer.py`) owns the SQLite connection. Loop-side
writes are staged and handed to it in bulk, one pipe write per hand-over; it runs all
that has arrived as one transaction, so a burst of transcript lines costs one commit, not
thousands. The event loop never waits on the disk, and, being another process, the writer
runs on another core without taking the interpreter lock from the loop. Reads are named
operations run by the writer in order with the writes, which gives read-your-writes.
`add_message` resolves only after the transaction holding its row has committed, so the
server says 250 only for a message really stored.

A failed write (disk full, a constraint, an I/O error) never ends the writer: it is
logged once per kind and reported by `healthy` and `last_error`. A failed row fails its
own session only: `add_message` fails with `JournalError` (the server then answers 451
rather than a false 250) exactly when that message's row did not go in, whatever else
shared its transaction; a whole transaction lost (a failed commit) fails every
`add_message`, `flush`, `mark_open_aborted` or `clear` waiting on it. A session whose
row did not go in gets it again from the writer before its next batch. Text holding
bytes that are not UTF-8 (8-bit SMTP input, decoded with surrogateescape) is stored as
those bytes and read back with `\\xNN` escapes.

Should the writer process die, it is started again (at most MAX_RESTARTS times in
RESTART_WINDOW seconds, each logged): messages it had not answered are replayed so that
each is stored exactly once, open sessions' rows are given to it again, and flushes
and reads it had not answered fail, as may transcript lines and verdicts it had not
committed. A new writer that cannot open the database (its storage made read-only, say)
is tried again every RETRY_DELAY seconds; until one opens, the journal is down: what
waits fails at once (a message in flight then is refused, not replayed) and plain
writes are dropped. Past either bound, everything waiting and everything after fails.

Times are stored as ISO 8601 UTC text with microseconds, so they sort as text.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from . import journal_writer
from .journal_writer import (
    HEADER,
    MESSAGE_INSERT,
    MESSAGE_REPLAY,
    SCHEMA_VERSION,
    SESSION_INSERT,
    SESSION_RESTORE,
    as_stored,
)
from .verdict import Verdict

__all__ = ["DEFAULT_MAX_STORED_MESSAGE_BYTES", "SCHEMA_VERSION", "Journal", "JournalError"]

log = logging.getLogger(__name__)

#: How much of each accepted message the journal keeps. Not the SMTP SIZE limit: that is
#: the scenario's `receiver.max_message_size`, which decides what is accepted at all; a
#: scenario may accept more than is stored (the rest is counted in `size`, not kept).
DEFAULT_MAX_STORED_MESSAGE_BYTES: Final = 10 * 1024 * 1024
SESSION_OUTCOMES: Final = frozenset({"accepted", "rejected", "deferred", "aborted", "idle"})
DIRECTIONS: Final = frozenset({"in", "out", "note"})
#: Session columns `session_updated` may change (after HELO, MAIL, XCLIENT/PROXY, STARTTLS).
UPDATABLE_FIELDS: Final = frozenset(
    {"helo", "mail_from", "client_address", "client_name", "tls", "auth_user"}
)

#: Seconds a plain write may wait on the loop side before it is handed to the writer.
_LINGER: Final = 0.05
#: A writer that dies is started again, at most MAX_RESTARTS times in RESTART_WINDOW
#: seconds; a writer dying more often than that (its database unusable, say) is left
#: dead, and every later write fails.
MAX_RESTARTS: Final = 5
RESTART_WINDOW: Final = 60.0
#: A restarted writer that cannot open the database (its storage gone read-only, say)
#: is tried again every RETRY_DELAY seconds, at most OPEN_RETRIES times; meanwhile the
#: journal is down: what waits for the writer fails at once, plain writes are dropped.
RETRY_DELAY: Final = 1.0
OPEN_RETRIES: Final = 300
#: Adds a recipient of a message only if the message's row is stored: a message that
#: failed to go in leaves no recipients. (The recipients are bound one by one rather
#: than read back with json_each, which would turn 8-bit bytes into invalid text.)
_RCPTS_OF_MESSAGE: Final = (
    "INSERT OR IGNORE INTO rcpts (session_id, rcpt) SELECT ?, ?"
    " WHERE EXISTS (SELECT 1 FROM messages WHERE session_id = ? AND n = ?)"
)
#: Seconds close() waits for the writer process to exit after it answered the stop.
_EXIT_TIMEOUT: Final = 10.0
_WRITER_SCRIPT: Final = journal_writer.__file__


class JournalError(Exception):
    """The journal could not do what was asked: not open, closed, or SQLite failed."""


#: One operation for the writer (see strictmx/receiver/journal_writer.py for the kinds).
_Op = tuple[Any, ...]


class Journal:
    """Sessions, transcripts, verdicts and messages of the receiver, in SQLite (WAL).

    All methods are called from the event loop. Plain writes return at once; the `async`
    ones await the writer process. `path` may be `":memory:"` (no WAL then; for tests):
    the database then lives in the writer process until `close()`.
    """

    def __init__(
        self,
        path: str | Path = "strictmx.db",
        *,
        max_stored_message_bytes: int = DEFAULT_MAX_STORED_MESSAGE_BYTES,
        max_restarts: int = MAX_RESTARTS,
    ) -> None:
        if max_stored_message_bytes < 0:
            raise ValueError(
                f"max_stored_message_bytes must be >= 0, got {max_stored_message_bytes}"
            )
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {max_restarts}")
        self._path = ":memory:" if path == ":memory:" else str(Path(path))
        self._max_stored_message_bytes = max_stored_message_bytes
        # Loop-side writes wait here and go to the writer in bulk: with the next barrier
        # or task, or after _LINGER seconds. Each hand-over is one pipe write.
        self._staged: list[_Op] = []
        # Session column changes merged per session until the hand-over: one UPDATE each.
        self._updates: dict[str, dict[str, object]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._messages: dict[str, int] = {}  # messages stored per open session
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state: Literal["new", "open", "closed"] = "new"
        self._process: subprocess.Popen[bytes] | None = None
        self._pipe: asyncio.WriteTransport | None = None
        self._replies: _Replies | None = None
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 1
        # Set when the writer process is gone for good while the journal is open.
        self._broken: str | None = None
        # A dead writer is replaced, at most `max_restarts` times in RESTART_WINDOW.
        self._max_restarts = max_restarts
        self._restarts: list[float] = []
        self._restarting: asyncio.Task[None] | None = None
        # Why the journal is down while a restarted writer cannot open the database.
        self._down: str | None = None
        # Open sessions' rows and changed fields, and messages not yet answered: what a
        # restarted writer is given again, since the dead one may not have stored it.
        self._open_sessions: dict[str, tuple[tuple[object, ...], dict[str, object]]] = {}
        self._in_flight: dict[asyncio.Future[Any], tuple[tuple[object, ...], list[Any]]] = {}
        self._healthy = True
        self._last_error: str | None = None
        self._subscribers: list[Callable[[str], None]] = []

    @property
    def path(self) -> str:
        return self._path

    @property
    def healthy(self) -> bool:
        """False from a failed write until a later batch of writes commits cleanly."""
        return self._healthy

    @property
    def last_error(self) -> str | None:
        """The most recent write error; kept after recovery so a health check can show it."""
        return self._last_error

    @property
    def writer_pid(self) -> int | None:
        """The process id of the writer that owns the database, once open."""
        return None if self._process is None else self._process.pid

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Start the writer process, which opens the database and creates the schema."""
        if self._state != "new":
            raise JournalError(f"journal {self._path} is already {self._state}")
        self._loop = asyncio.get_running_loop()
        try:
            error = await self._spawn()
        except BaseException:
            self._state = "closed"
            await self._reap(kill=True)
            raise
        if error is not None:
            await self._reap(kill=False)
            self._process = self._pipe = self._replies = None
            raise JournalError(error)  # still "new": open() may be tried again
        self._state = "open"

    async def _spawn(self) -> str | None:
        """Start a writer process; None once its database is open, else why not."""
        loop = asyncio.get_running_loop()
        # -I -S: the writer needs the standard library only; no user site, no .pth files.
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", _WRITER_SCRIPT, self._path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert process.stdin is not None and process.stdout is not None
        self._process = process
        self._pipe = self._replies = None
        ready = self._waiting[0] = loop.create_future()
        _, replies = await loop.connect_read_pipe(lambda: _Replies(self), process.stdout)
        self._replies = replies
        pipe, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, process.stdin)
        self._pipe = pipe
        error: str | None = await ready
        return error

    async def flush(self) -> None:
        """Wait until everything queued so far is committed (JournalError if the commit
        itself failed; a single failed write shows in `healthy` instead)."""
        await self._barrier(strict=False)

    async def close(self) -> None:
        """Commit what is queued, stop the writer, close the database. Idempotent.

        A failure of that last commit is logged and reported by `healthy`, not raised:
        call `flush()` first to learn of it.
        """
        if self._state != "open":
            self._state = "closed"
            return
        if self._restarting is not None and self._down is not None:
            # Down, between two tries: no writer to stop, none to wait for.
            self._restarting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restarting
            self._broken = self._down
        elif self._restarting is not None:
            # The stop goes to the new writer; the restart's own failure is reported.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._restarting)
        if self._broken is None:
            stop = self._ask(("stop",))
            self._state = "closed"  # nothing can be queued after the stop
            with contextlib.suppress(JournalError):  # the writer died: reported already
                await stop
        self._state = "closed"
        await self._reap(kill=False)

    # -- writes (return at once) -----------------------------------------------------

    def session_started(
        self,
        session_id: str,
        *,
        started: datetime,
        peer: str,
        peer_port: int,
        client_address: str,
        client_name: str | None,
        scenario: str,
    ) -> None:
        row = (session_id, _iso(started), scenario, peer, peer_port, client_address, client_name)
        self._write(SESSION_INSERT, row, session_id)
        # Kept while the session is open: a restarted writer gets it again.
        self._open_sessions[session_id] = (row, {})

    def session_updated(self, session_id: str, **fields: str | bool | None) -> None:
        """Set any of `UPDATABLE_FIELDS` (helo, mail_from, client_address, client_name, tls,
        auth_user)."""
        unknown = set(fields) - UPDATABLE_FIELDS
        if unknown:
            raise TypeError(
                f"session_updated() got unknown fields {sorted(unknown)}; "
                f"allowed: {sorted(UPDATABLE_FIELDS)}"
            )
        if fields:
            self._update(session_id, fields)
            known = self._open_sessions.get(session_id)
            if known is not None:
                known[1].update(fields)

    def transcript_many(self, session_id: str, rows: Sequence[tuple[float, str, str]]) -> None:
        """Several lines at once, each `(epoch seconds, direction, text)`: one statement.

        The SMTP layer buffers a session's lines and hands them over at a few points
        (a message about to be committed, the session's end), which keeps the event
        loop's share of journaling small under load.
        """
        if not rows:
            return
        for _, direction, _ in rows:
            if direction not in DIRECTIONS:
                raise ValueError(f"transcript direction must be in/out/note, got {direction!r}")
        chunk = json.dumps(rows)  # times as epoch seconds; made ISO 8601 when read
        self._write(
            "INSERT INTO transcript (session_id, lines) VALUES (?, ?)",
            (session_id, chunk),
            session_id,
        )

    def rcpts_tried(self, session_id: str, rcpts: Sequence[str]) -> None:
        """RCPT TOs the client tried, accepted or not (`sessions(rcpt=...)` finds them)."""
        if rcpts:
            self._write(
                "INSERT OR IGNORE INTO rcpts (session_id, rcpt) VALUES (?, ?)",
                [(session_id, rcpt) for rcpt in rcpts],
                session_id,
            )

    def verdict(self, session_id: str, verdict: Verdict, when: datetime) -> None:
        reply = verdict.reply
        self._write(
            "INSERT INTO verdicts (session_id, at, policy, outcome, action, stage, replied_at,"
            " code, status, text, reason, rfc_compliant, warned, delay, details)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                session_id,
                _iso(when),
                verdict.policy,
                verdict.outcome,
                verdict.action.value,
                verdict.stage.value,
                verdict.replied_at.value if verdict.replied_at else None,
                reply.code if reply else None,
                reply.status if reply else None,
                reply.text if reply else None,
                verdict.reason,
                verdict.rfc_compliant,
                verdict.warned,
                verdict.delay,
                # Details are free-form diagnostics; whatever JSON cannot hold is kept as text.
                json.dumps(verdict.details, default=str, sort_keys=True),
            ),
            session_id,
        )

    def session_ended(self, session_id: str, *, outcome: str, ended: datetime) -> None:
        if outcome not in SESSION_OUTCOMES:
            raise ValueError(
                f"session outcome must be one of {sorted(SESSION_OUTCOMES)}, got {outcome!r}"
            )
        self._update(session_id, {"outcome": outcome, "ended": _iso(ended)})
        self._messages.pop(session_id, None)
        self._open_sessions.pop(session_id, None)
        # Told after the end is staged: reads run after the writes before them, so a
        # subscriber that reads the session sees it ended (the viewer's live list).
        for subscriber in list(self._subscribers):
            try:
                subscriber(session_id)
            except Exception:  # a viewer's bug must not end an SMTP session
                log.exception("journal subscriber %r failed", subscriber)

    def subscribe(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call `callback(session_id)` in the loop as each session ends; returns the
        function that stops it."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    # -- writes that wait for the commit ---------------------------------------------

    async def add_message(
        self,
        session_id: str,
        *,
        mail_from: str,
        rcpts: Iterable[str],
        raw: bytes,
        when: datetime,
    ) -> int:
        """Store an accepted message; return its number in the session (1, 2, ...).

        Returns only once the row is committed. Above `max_stored_message_bytes` only the first
        that many bytes are kept, with `truncated` set and `size` the size received.
        """
        at = _iso(when)
        rcpts = list(rcpts)
        rcpt_list = json.dumps(rcpts)
        cap = self._max_stored_message_bytes
        # Numbered here: messages of one session are added one after the other.
        n = self._messages.get(session_id, 0) + 1

        row = (session_id, n, at, mail_from, rcpt_list, len(raw), len(raw) > cap, raw[:cap])
        self._write(MESSAGE_INSERT, row, session_id)
        # Taken from the stored row: a message that failed to go in leaves no recipients.
        rcpt_rows = [(session_id, rcpt, session_id, n) for rcpt in rcpts]
        if rcpt_rows:
            self._write(_RCPTS_OF_MESSAGE, rcpt_rows, session_id)
        self._check_open()
        barrier = self._ask(("barrier", True, session_id))
        # Kept until answered: should the writer die first, a new one gets it again.
        self._in_flight[barrier] = (row, rcpt_rows)
        try:
            await barrier
        finally:
            self._in_flight.pop(barrier, None)
        self._messages[session_id] = n
        return n

    async def mark_open_aborted(self, ended: datetime) -> int:
        """End every session that never ended as `aborted` (at shutdown); return how many."""
        count: int = await self._task("mark_open_aborted", _iso(ended), durable=True)
        return count

    async def clear(self) -> None:
        """Delete every session and everything recorded about it."""
        await self._task("clear", durable=True)
        self._messages.clear()

    # -- reads -----------------------------------------------------------------------

    async def sessions(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        client: str | None = None,
        helo: str | None = None,
        sender: str | None = None,
        rcpt: str | None = None,
        outcome: str | None = None,
        policy: str | None = None,
        since: datetime | None = None,
        text: str | None = None,
        before: tuple[str, str] | None = None,
        after: tuple[str, str] | None = None,
        oldest: tuple[str, str] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Sessions, newest first, each with its `verdicts` and `rcpts`.

        Filters combine with AND. `client` is an address (the simulated one or the
        socket peer) or a client name, matched exactly (names without regard to case);
        `helo`, `sender` (a session's MAIL FROM or a message's) and `rcpt` match any part
        of the value, without regard to case; `outcome` and `policy` (a policy that
        gave any verdict) match exactly; `since` keeps sessions started at or after it.
        `text` matches any part of the HELO, a sender, a recipient, the client's addresses
        or name, or a verdict's policy, outcome, reply or reason. `before` and `after`
        are keyset cursors, a session's `(started, id)`: only sessions listed below (older
        than) or above it, so that a page costs the same however deep it is; `oldest` keeps
        that session and those above it (see `cursor_at`). `ids` keeps only those sessions.
        """
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must be >= 0, got {limit} and {offset}")
        where: list[str] = []
        params: list[object] = []
        if client is not None:
            where.append("(? IN (s.client_address, s.peer) OR s.client_name = ? COLLATE NOCASE)")
            params += [client, client]
        if helo is not None:
            where.append("CAST(s.helo AS TEXT) LIKE CAST(? AS TEXT) ESCAPE '\\'")
            params.append(_contains(helo))
        if sender is not None:
            where.append(
                "(CAST(s.mail_from AS TEXT) LIKE CAST(? AS TEXT) ESCAPE '\\'"
                " OR EXISTS (SELECT 1 FROM messages m WHERE m.session_id = s.id"
                " AND CAST(m.mail_from AS TEXT) LIKE CAST(? AS TEXT) ESCAPE '\\'))"
            )
            params += [_contains(sender), _contains(sender)]
        if rcpt is not None:
            where.append(
                "EXISTS (SELECT 1 FROM rcpts r WHERE r.session_id = s.id"
                " AND CAST(r.rcpt AS TEXT) LIKE CAST(? AS TEXT) ESCAPE '\\')"
            )
            params.append(_contains(rcpt))
        if outcome is not None:
            where.append("s.outcome = ?")
            params.append(outcome)
        if policy is not None:
            where.append(
                "EXISTS (SELECT 1 FROM verdicts v WHERE v.session_id = s.id AND v.policy = ?)"
            )
            params.append(policy)
        if since is not None:
            where.append("s.started >= ?")
            params.append(_iso(since))
        if text is not None:
            like = _contains(text)
            where.append(
                "(CAST(s.helo AS TEXT) LIKE CAST(? AS TEXT) ESCAPE '\\'"
                " OR CAST(s.mail_from AS TEXT) LIKE CAST(? AS TEXT) ESCAPE '\\'"
                " OR s.client_address LIKE ? ESCAPE '\\' OR s.peer LIKE ? ESCAPE '\\'"
                " OR CAST(s.client_name AS TEXT) LIKE CAST(? AS TEXT) ESCAPE '\\'"
                # Correlated: only the sessions the page reads are looked up, which with
                # `oldest=` (the viewer's window) is far cheaper than searching every
                # recipient and verdict of the journal first.
                " OR EXISTS (SELECT 1 FROM rcpts r WHERE r.session_id = s.id"
                " AND CAST(r.rcpt AS TEXT) LIKE CAST(? AS TEXT) ESCAPE '\\')"
                " OR EXISTS (SELECT 1 FROM verdicts v WHERE v.session_id = s.id"
                " AND (v.policy LIKE ? ESCAPE '\\' OR v.outcome LIKE ? ESCAPE '\\'"
                " OR CAST(v.text AS TEXT) LIKE CAST(? AS TEXT) ESCAPE '\\'"
                " OR CAST(v.reason AS TEXT) LIKE CAST(? AS TEXT) ESCAPE '\\')))"
            )
            params += [like] * 10
        # The list's order is (started, rowid) descending: a cursor's id is turned into
        # its rowid, so ties in `started` page exactly too.
        if before is not None:
            # The plain `started <=` repeats what the OR says in a form SQLite can use
            # as a range of the started index; the OR alone is checked row by row.
            where.append(
                "s.started <= ? AND (s.started < ? OR (s.started = ? AND s.rowid <"
                " (SELECT rowid FROM sessions WHERE id = ?)))"
            )
            params += [before[0], before[0], before[0], before[1]]
        if after is not None:
            where.append(
                "s.started >= ? AND (s.started > ? OR (s.started = ? AND s.rowid >"
                " (SELECT rowid FROM sessions WHERE id = ?)))"
            )
            params += [after[0], after[0], after[0], after[1]]
        if oldest is not None:
            where.append(
                "s.started >= ? AND (s.started > ? OR (s.started = ? AND s.rowid >="
                " (SELECT rowid FROM sessions WHERE id = ?)))"
            )
            params += [oldest[0], oldest[0], oldest[0], oldest[1]]
        if ids is not None:
            where.append("s.id IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(list(ids)))
        params += [limit, offset]
        # The condition is made of the fixed fragments above; values are bound.
        found: list[dict[str, Any]] = await self._task(
            "sessions", " AND ".join(where) or "1", params
        )
        return found

    async def cursor_at(self, before: tuple[str, str] | None, n: int) -> tuple[str, str] | None:
        """The cursor `(started, id)` of the n-th session (1: the newest) below `before`,
        or None if there are fewer: with `oldest=` it bounds how many sessions a filter
        that cannot use an index (a text search) reads for one page."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        found: tuple[str, str] | None = await self._task("cursor_at", before, n)
        return found

    async def counts(self, bucket: Literal["minute", "hour", "day"]) -> dict[str, Any]:
        """Sessions per time bucket (by the UTC start time, as ISO text cut at the
        minute, hour or day) by outcome, and refusals (reject, defer, disconnect
        verdicts that were sent) per bucket by policy: `{"outcomes": [(bucket,
        outcome, n)], "policies": [(bucket, policy, n)]}`, oldest first."""
        width = {"minute": 16, "hour": 13, "day": 10}[bucket]
        found: dict[str, Any] = await self._task("counts", width)
        return found

    async def session(self, session_id: str) -> dict[str, Any] | None:
        """One session with its `verdicts`, `rcpts`, `transcript` and `messages`."""
        found: dict[str, Any] | None = await self._task("session", session_id)
        return found

    async def message_raw(self, session_id: str, n: int) -> bytes | None:
        """The stored bytes of message `n` (truncated at `max_stored_message_bytes`), or None."""
        raw: bytes | None = await self._task("message_raw", session_id, n)
        return raw

    # -- loop side plumbing ----------------------------------------------------------

    def _check_open(self) -> None:
        if self._state == "closed":
            raise JournalError(f"journal {self._path} is closed")
        if self._state != "open":
            raise JournalError(f"journal {self._path} is not open")

    def _write(
        self, sql: str, params: tuple[object, ...] | list[tuple[Any, ...]], session_id: str
    ) -> None:
        self._check_open()
        if self._down is not None:
            # No writer to take it, and the message it may belong to is refused now:
            # kept, it would reach the next writer and store what was refused.
            return
        self._staged.append(("write", sql, params, session_id))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(_LINGER, self._hand_over)

    def _update(self, session_id: str, fields: Mapping[str, object]) -> None:
        self._check_open()
        if self._down is not None:
            return  # no writer to take it (see _write)
        self._updates.setdefault(session_id, {}).update(fields)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(_LINGER, self._hand_over)

    def _hand_over(self) -> None:
        """Send the staged writes (and barriers, tasks) to the writer in one frame."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._stage_updates()
        if self._down is not None:
            self._staged = []  # no writer to take it; what waits has failed already
            return
        if self._restarting is not None:
            return  # kept staged for the new writer
        staged, self._staged = self._staged, []
        if not staged or self._broken is not None:
            return  # the writer is gone: nothing can be stored, barriers fail at once
        assert self._pipe is not None
        payload = pickle.dumps(staged, protocol=pickle.HIGHEST_PROTOCOL)
        self._pipe.write(HEADER.pack(len(payload)) + payload)

    def _stage_updates(self) -> None:
        for session_id, fields in self._updates.items():
            names = tuple(sorted(fields))
            sql = _update_sql(names)
            self._staged.append(
                ("write", sql, (*(fields[n] for n in names), session_id), session_id)
            )
        self._updates = {}

    def _ask(self, op: _Op) -> asyncio.Future[Any]:
        """Hand over the staged writes and `op` (its id filled in); its answer, later."""
        assert self._loop is not None
        future: asyncio.Future[Any] = self._loop.create_future()
        if self._broken is not None or self._down is not None:
            future.set_exception(JournalError(self._broken or self._down or ""))
            return future
        op_id = self._next_id
        self._next_id += 1
        self._waiting[op_id] = future
        self._stage_updates()  # the operation sees every earlier write
        self._staged.append((op[0], op_id, *op[1:]))
        # Handed over at once: a session waits for this answer before its 250, and under
        # load that wait is a large share of a session's life (holding barriers back to
        # share pipe writes measured slower). Frames that arrive while the writer is busy
        # still go into one transaction.
        self._hand_over()
        return future

    async def _barrier(self, *, strict: bool) -> None:
        self._check_open()
        await self._ask(("barrier", strict, None))

    async def _task(self, name: str, *args: object, durable: bool = False) -> Any:
        self._check_open()
        return await self._ask(("task", name, args, durable))

    # -- answers from the writer -----------------------------------------------------

    def _answered(self, message: tuple[Any, ...]) -> None:
        if message[0] == "ready":
            self._settle(0, message[1], None)
            return
        _, healthy, last_error, logs, answers = message
        for level, text in logs:
            log.log(level, "journal %s: %s", self._path, text)
        # Health first: whoever is answered next may look at it.
        self._healthy = healthy
        self._last_error = last_error
        for op_id, error, result in answers:
            self._settle(op_id, None if error is None else f"journal {self._path}: {error}", result)

    def _settle(self, op_id: int, error: str | None, result: Any) -> None:
        future = self._waiting.pop(op_id, None)
        if future is None or future.done():
            return  # the awaiting task was cancelled
        if op_id == 0:  # open() judges the writer's ready answer itself
            future.set_result(error)
        elif error is None:
            future.set_result(result)
        else:
            future.set_exception(JournalError(error))

    def _writer_gone(self) -> None:
        """The writer's output ended: after a stop, or because the process died."""
        if self._state == "open" and self._broken is None and self._restarting is None:
            code = None if self._process is None else self._process.poll()
            reason = f"journal {self._path}: the writer process exited (code {code})"
            self._healthy = False
            self._last_error = reason
            assert self._loop is not None
            now = self._loop.time()
            self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW]
            if len(self._restarts) < self._max_restarts:
                self._restarts.append(now)
                # Taken now, before anything else is asked: these were handed to the
                # dead writer; what is asked from here on waits for the new one.
                in_flight, self._waiting = self._waiting, {}
                self._restarting = self._loop.create_task(self._restart(in_flight))
                return
            self._broken = reason
            log.error(
                "%s; not restarted (%d restarts in %gs already); nothing more is stored",
                reason,
                len(self._restarts),
                RESTART_WINDOW,
            )
        if self._restarting is not None:
            # A new writer that could not open the database; the restart answers what
            # waits, only its start-up must learn that the process is gone.
            ready = self._waiting.pop(0, None)
            if ready is not None and not ready.done():
                ready.set_result(f"journal {self._path}: the writer exited while starting")
            return
        self._fail_waiting(self._broken or f"journal {self._path}: the writer process exited")

    def _fail_waiting(self, reason: str) -> None:
        waiting, self._waiting = self._waiting, {}
        for op_id, future in waiting.items():
            if not future.done():
                future.set_result(reason) if op_id == 0 else future.set_exception(
                    JournalError(reason)
                )

    async def _restart(self, in_flight: dict[int, asyncio.Future[Any]]) -> None:
        """Replace a dead writer; replay the messages it had not answered, fail the rest.

        What was handed to the dead writer and not answered may or may not be committed.
        A message is replayed as INSERT OR IGNORE, so it ends up stored exactly once and
        its 250 stays true; open sessions' rows are inserted again (OR IGNORE) with
        their known fields, so their later writes have a parent row. Flushes and reads in
        flight fail: nobody can vouch for the transcript lines and verdicts that were on
        their way, and those may be lost.
        """
        old = self._process
        await self._reap(kill=True)  # the dead one, for its exit code
        code = None if old is None else old.returncode
        reason = f"journal {self._path}: the writer process exited (code {code})"
        self._last_error = reason
        log.error(
            "%s; restarting it (%d of at most %d restarts in %gs)",
            reason,
            len(self._restarts),
            self._max_restarts,
            RESTART_WINDOW,
        )
        replay: list[_Op] = []
        replayed = 0
        lost: list[asyncio.Future[Any]] = []
        for op_id, future in in_flight.items():
            message = self._in_flight.get(future)
            if message is not None and not future.done() and op_id != 0:
                self._waiting[op_id] = future
                row, rcpt_rows = message
                session_id = str(row[0])
                replay.append(("write", MESSAGE_REPLAY, row, session_id))
                if rcpt_rows:
                    replay.append(("write", _RCPTS_OF_MESSAGE, rcpt_rows, session_id))
                replay.append(("barrier", op_id, True, session_id))
                replayed += 1
            else:
                lost.append(future)
        for future in lost:
            if not future.done():
                future.set_exception(JournalError(f"{reason}; this was not answered"))
        for attempt in range(1, OPEN_RETRIES + 1):
            try:
                error = await self._spawn()
            except Exception as exc:  # cannot start a process at all (no memory, no fds)
                error = f"cannot start a writer: {type(exc).__name__}: {exc}"
            if error is None:
                break
            await self._reap(kill=True)  # the one that could not open the database
            down = f"{reason}; restart failed: {error}"
            if self._down is None:
                log.error("%s; trying again every %gs", down, RETRY_DELAY)
            self._down = self._last_error = down
            # Nobody waits RETRY_DELAY for an answer: replayed messages fail now (451),
            # and are not replayed later.
            replay.clear()
            replayed = 0
            self._fail_waiting(down)
            self._staged = []
            self._updates = {}
            if attempt == OPEN_RETRIES:
                self._broken, self._down, self._restarting = down, None, None
                log.error("%s; gave up after %d tries; nothing more is stored", down, attempt)
                return
            await asyncio.sleep(RETRY_DELAY)
        self._down = None
        log.warning(
            "journal %s: writer restarted (pid %s); %d unanswered messages replayed",
            self._path,
            self.writer_pid,
            replayed,
        )
        restore: list[_Op] = []
        for session_id, (row, fields) in self._open_sessions.items():
            restore.append(("write", SESSION_RESTORE, row, session_id))
            if fields:
                names = tuple(sorted(fields))
                values = (*(fields[n] for n in names), session_id)
                restore.append(("write", _update_sql(names), values, session_id))
        # Before what was staged meanwhile: those rows may need the restored sessions.
        self._staged = restore + replay + self._staged
        self._restarting = None
        self._hand_over()

    async def _reap(self, *, kill: bool) -> None:
        process = self._process
        if self._pipe is not None:
            self._pipe.close()  # end of input: a writer still running commits and exits
        if process is None:
            return
        if kill:
            process.kill()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _EXIT_TIMEOUT
        while process.poll() is None:
            if loop.time() > deadline:
                log.error("journal %s: the writer did not exit; killing it", self._path)
                process.kill()
            await asyncio.sleep(0.005)
        if self._replies is not None:
            await self._replies.finished
        if process.stdout is not None:
            process.stdout.close()


class _Replies(asyncio.Protocol):
    """Reads the writer's answer frames and hands each to the journal."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._buffer = bytearray()
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(buffer)
            end = HEADER.size + size
            if len(buffer) < end:
                return
            message = pickle.loads(buffer[HEADER.size : end])
            del buffer[:end]
            self._journal._answered(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self._journal._writer_gone()
        if not self.finished.done():
            self.finished.set_result(None)


@functools.lru_cache(maxsize=64)
def _update_sql(names: tuple[str, ...]) -> str:
    # Names come from UPDATABLE_FIELDS and the end columns only: safe to format. A few
    # sets of names recur (HELO, MAIL, the end): each statement is made once.
    return f"UPDATE sessions SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?"


def _iso(when: datetime) -> str:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"journal times must be timezone-aware, got {when!r}")
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def _contains(text: str) -> object:
    """A LIKE pattern (ESCAPE '\\') matching `text` anywhere, its % and _ taken literally.

    Columns that may hold 8-bit bytes (stored as BLOBs) are compared as CAST(... AS TEXT),
    and so is the pattern, so that a pattern with such bytes finds them too.
    """
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return as_stored(f"%{escaped}%")
