"""The journal: every SMTP session of the receiver, in SQLite.

What is kept: sessions (who connected, what they said about themselves, how it ended),
transcript lines, policy verdicts, recipients tried, and accepted messages (raw bytes
up to a size cap).

One writer thread owns the SQLite connection. Loop-side writes only put an operation on a
queue and return; the thread drains whatever is queued and commits it as one transaction,
so a burst of transcript lines costs one commit, not thousands, and the event loop never
waits on the disk. Reads run on the same thread and are awaited through futures, which
also gives read-your-writes ordering. `add_message` resolves only after the transaction
holding its row has committed, so the server says 250 only for a message really stored.

A failed write (disk full, a constraint, an I/O error) never ends the thread: it is
logged once per kind, reported by `healthy` and `last_error`, and any `add_message`,
`flush`, `mark_open_aborted` or `clear` waiting on that transaction fails with
`JournalError` (the server then answers 451 rather than a false 250).

Times are stored as ISO 8601 UTC text with microseconds, so they sort as text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from .verdict import Verdict

log = logging.getLogger(__name__)

#: PRAGMA user_version of the schema below; a later version migrates from this number.
SCHEMA_VERSION: Final = 1
DEFAULT_MAX_MESSAGE_BYTES: Final = 10 * 1024 * 1024
SESSION_OUTCOMES: Final = frozenset({"accepted", "rejected", "deferred", "aborted", "idle"})
DIRECTIONS: Final = frozenset({"in", "out", "note"})
#: Session columns `session_updated` may change (after HELO, MAIL, XCLIENT/PROXY, STARTTLS).
UPDATABLE_FIELDS: Final = frozenset({"helo", "mail_from", "client_address", "client_name", "tls"})

#: Most operations one transaction takes: large enough that a burst costs few commits,
#: small enough that an add_message queued behind a burst is answered soon.
_BATCH_MAX: Final = 10_000
#: Seconds a plain write may wait on the loop side before it is handed to the thread.
_LINGER: Final = 0.05
#: Seconds the writer waits for a lock held by another process (the sqlite3 shell, a
#: backup) before that batch fails.
_BUSY_TIMEOUT: Final = 5.0

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS sessions (
        id TEXT PRIMARY KEY,
        started TEXT NOT NULL,
        ended TEXT,
        outcome TEXT,  -- NULL while the session is open
        scenario TEXT NOT NULL,
        peer TEXT NOT NULL,
        peer_port INTEGER NOT NULL,
        client_address TEXT NOT NULL,
        client_name TEXT,
        helo TEXT,
        mail_from TEXT,
        tls INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS sessions_started ON sessions (started)",
    # Lines are stored in chunks, a JSON list of [at, direction, line] per row, as the
    # SMTP layer hands them over: one row per hand-over, not per line, keeps the writer's
    # work per message small (each row is a separate step into SQLite).
    """CREATE TABLE IF NOT EXISTS transcript (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        lines TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS transcript_session ON transcript (session_id)",
    """CREATE TABLE IF NOT EXISTS verdicts (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        at TEXT NOT NULL,
        policy TEXT NOT NULL,
        outcome TEXT NOT NULL,
        action TEXT NOT NULL,
        stage TEXT NOT NULL,
        replied_at TEXT,
        code INTEGER,
        status TEXT,
        text TEXT,
        reason TEXT NOT NULL,
        rfc_compliant INTEGER NOT NULL,
        warned INTEGER NOT NULL,
        delay REAL NOT NULL,
        details TEXT NOT NULL  -- JSON object
    )""",
    "CREATE INDEX IF NOT EXISTS verdicts_session ON verdicts (session_id)",
    """CREATE TABLE IF NOT EXISTS rcpts (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        rcpt TEXT NOT NULL,
        UNIQUE (session_id, rcpt)
    )""",
    """CREATE TABLE IF NOT EXISTS messages (
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        n INTEGER NOT NULL,
        at TEXT NOT NULL,
        mail_from TEXT NOT NULL,
        rcpts TEXT NOT NULL,  -- JSON list
        size INTEGER NOT NULL,  -- as received
        truncated INTEGER NOT NULL,
        raw BLOB NOT NULL,  -- the first max_message_bytes of it
        PRIMARY KEY (session_id, n)
    )""",
)

_SESSION_COLUMNS: Final = (
    "s.id, s.started, s.ended, s.outcome, s.scenario, s.peer, s.peer_port, "
    "s.client_address, s.client_name, s.helo, s.mail_from, s.tls"
)
_VERDICT_COLUMNS: Final = (
    'session_id, at AS "when", policy, outcome, action, stage, replied_at, code, status, '
    "text, reason, rfc_compliant, warned, delay, details"
)


class JournalError(Exception):
    """The journal could not do what was asked: not open, closed, or SQLite failed."""


#: One statement: parameters as a tuple, or a list of tuples for executemany.
_Write = tuple[str, tuple[object, ...] | list[tuple[object, ...]]]


@dataclass(eq=False)
class _Task:
    fn: Callable[[sqlite3.Connection], Any]
    future: Future[Any]
    #: Answer only once the transaction holding it has committed (writes, barriers);
    #: reads answer as soon as they ran.
    durable: bool
    #: Wrap it in a savepoint (all-or-nothing); off for tasks ordered to need none.
    atomic: bool = True


@dataclass(eq=False)
class _Barrier:
    """Answered once everything handed over before it is committed (an asyncio future:
    the writer answers all of a batch's barriers with one wake-up of the loop)."""

    future: asyncio.Future[None]
    #: Fail if any write of its batch failed (a message must not be claimed stored).
    strict: bool


@dataclass(eq=False)
class _Stop:
    future: Future[None]


_Item = _Write | list[_Write] | _Task | _Barrier | _Stop


class Journal:
    """Sessions, transcripts, verdicts and messages of the receiver, in SQLite (WAL).

    All methods are called from the event loop. Plain writes return at once; the `async`
    ones await the writer thread. `path` may be `":memory:"` (no WAL then; for tests).
    """

    def __init__(
        self,
        path: str | Path = "strictmx.db",
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        if max_message_bytes < 0:
            raise ValueError(f"max_message_bytes must be >= 0, got {max_message_bytes}")
        self._path = ":memory:" if path == ":memory:" else str(Path(path))
        self._max_message_bytes = max_message_bytes
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        # Loop-side writes wait here and go to the thread in bulk: with the next task
        # (add_message, a read, flush) or after _LINGER seconds. Each hand-over wakes the
        # thread once, however many rows it carries.
        self._staged: list[_Write] = []
        # Session column changes merged per session until the hand-over: one UPDATE each.
        self._updates: dict[str, dict[str, object]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._messages: dict[str, int] = {}  # messages stored per open session
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state: Literal["new", "open", "closed"] = "new"
        self._thread: threading.Thread | None = None
        self._writer_ident: int | None = None
        # Written by the writer thread only; single assignments, read from the loop.
        self._healthy = True
        self._last_error: str | None = None
        self._logged_kinds: set[str] = set()

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
    def writer_thread_id(self) -> int | None:
        """`threading.get_ident()` of the thread that owns the connection, once open."""
        return self._writer_ident

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Start the writer thread, open the database and create the schema."""
        if self._state != "new":
            raise JournalError(f"journal {self._path} is already {self._state}")
        self._loop = asyncio.get_running_loop()
        ready: Future[None] = Future()
        thread = threading.Thread(
            target=self._main, args=(ready,), name="strictmx-journal", daemon=True
        )
        thread.start()
        try:
            await asyncio.wrap_future(ready)
        except JournalError:
            thread.join()  # it has returned already
            raise
        except asyncio.CancelledError:
            # The thread may still open the file; the stop ends it once it serves.
            self._state = "closed"
            self._queue.put(_Stop(Future()))
            raise
        self._thread = thread
        self._state = "open"

    async def flush(self) -> None:
        """Wait until everything queued so far is committed (JournalError if the commit
        itself failed; a single failed write shows in `healthy` instead)."""
        await self._barrier(strict=False)

    async def close(self) -> None:
        """Commit what is queued, stop the thread, close the connection. Idempotent.

        A failure of that last commit is logged and reported by `healthy`, not raised:
        call `flush()` first to learn of it.
        """
        if self._state != "open":
            self._state = "closed"
            return
        self._hand_over()
        self._state = "closed"
        stop = _Stop(Future())
        # Nothing can be queued after the stop: every write checks the state first.
        self._queue.put(stop)
        await asyncio.wrap_future(stop.future)
        if self._thread is not None:
            self._thread.join()

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
        self._write(
            "INSERT INTO sessions (id, started, scenario, peer, peer_port, client_address,"
            " client_name) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (session_id, _iso(started), scenario, peer, peer_port, client_address, client_name),
        )

    def session_updated(self, session_id: str, **fields: str | bool | None) -> None:
        """Set any of `UPDATABLE_FIELDS` (helo, mail_from, client_address, client_name, tls)."""
        unknown = set(fields) - UPDATABLE_FIELDS
        if unknown:
            raise TypeError(
                f"session_updated() got unknown fields {sorted(unknown)}; "
                f"allowed: {sorted(UPDATABLE_FIELDS)}"
            )
        if fields:
            self._update(session_id, fields)

    def session_rcpt(self, session_id: str, rcpt: str) -> None:
        """A RCPT TO the client tried, accepted or not (`sessions(rcpt=...)` finds it)."""
        self._write(
            "INSERT OR IGNORE INTO rcpts (session_id, rcpt) VALUES (?, ?)", (session_id, rcpt)
        )

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
        self._write("INSERT INTO transcript (session_id, lines) VALUES (?, ?)", (session_id, chunk))

    def rcpts_tried(self, session_id: str, rcpts: Sequence[str]) -> None:
        """Several RCPT TOs at once (see `session_rcpt`)."""
        if rcpts:
            self._write(
                "INSERT OR IGNORE INTO rcpts (session_id, rcpt) VALUES (?, ?)",
                [(session_id, rcpt) for rcpt in rcpts],
            )

    def transcript(
        self,
        session_id: str,
        direction: Literal["in", "out", "note"],
        line: str,
        when: datetime,
    ) -> None:
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"journal times must be timezone-aware, got {when!r}")
        self.transcript_many(session_id, [(when.timestamp(), direction, line)])

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
        )

    def session_ended(self, session_id: str, *, outcome: str, ended: datetime) -> None:
        if outcome not in SESSION_OUTCOMES:
            raise ValueError(
                f"session outcome must be one of {sorted(SESSION_OUTCOMES)}, got {outcome!r}"
            )
        self._update(session_id, {"outcome": outcome, "ended": _iso(ended)})
        self._messages.pop(session_id, None)

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

        Returns only once the row is committed. Above `max_message_bytes` only the first
        that many bytes are kept, with `truncated` set and `size` the size received.
        """
        at = _iso(when)
        rcpt_list = json.dumps(list(rcpts))
        cap = self._max_message_bytes
        # Numbered here: messages of one session are added one after the other.
        n = self._messages.get(session_id, 0) + 1

        self._write(
            "INSERT INTO messages (session_id, n, at, mail_from, rcpts, size, truncated, raw)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (session_id, n, at, mail_from, rcpt_list, len(raw), len(raw) > cap, raw[:cap]),
        )
        # Taken from the stored row: a message that failed to go in leaves no recipients.
        self._write(
            "INSERT OR IGNORE INTO rcpts (session_id, rcpt) SELECT m.session_id, j.value"
            " FROM messages m, json_each(m.rcpts) j WHERE m.session_id = ? AND m.n = ?",
            (session_id, n),
        )
        await self._barrier(strict=True)
        self._messages[session_id] = n
        return n

    async def mark_open_aborted(self, ended: datetime) -> int:
        """End every session that never ended as `aborted` (at shutdown); return how many."""
        at = _iso(ended)

        def mark(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "UPDATE sessions SET outcome = 'aborted', ended = ? WHERE outcome IS NULL",
                (at,),
            )
            return cur.rowcount

        count: int = await self._call(mark, durable=True)
        return count

    async def clear(self) -> None:
        """Delete every session and everything recorded about it."""

        def delete_all(conn: sqlite3.Connection) -> None:
            for table in ("messages", "rcpts", "verdicts", "transcript", "sessions"):
                conn.execute(f"DELETE FROM {table}")

        await self._call(delete_all, durable=True)
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
    ) -> list[dict[str, Any]]:
        """Sessions, newest first, each with its `verdicts` and `rcpts`.

        Filters combine with AND. `client` is an address (the simulated one or the
        socket peer) or a client name, matched exactly (names without regard to case);
        `helo`, `sender` (a session's MAIL FROM or a message's) and `rcpt` match any part
        of the value, without regard to case; `outcome` and `policy` (a policy that
        gave any verdict) match exactly; `since` keeps sessions started at or after it.
        """
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must be >= 0, got {limit} and {offset}")
        where: list[str] = []
        params: list[object] = []
        if client is not None:
            where.append("(? IN (s.client_address, s.peer) OR s.client_name = ? COLLATE NOCASE)")
            params += [client, client]
        if helo is not None:
            where.append("s.helo LIKE ? ESCAPE '\\'")
            params.append(_contains(helo))
        if sender is not None:
            where.append(
                "(s.mail_from LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM messages m"
                " WHERE m.session_id = s.id AND m.mail_from LIKE ? ESCAPE '\\'))"
            )
            params += [_contains(sender), _contains(sender)]
        if rcpt is not None:
            where.append(
                "EXISTS (SELECT 1 FROM rcpts r WHERE r.session_id = s.id"
                " AND r.rcpt LIKE ? ESCAPE '\\')"
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
        sql = (
            f"SELECT {_SESSION_COLUMNS} FROM sessions s"
            f" WHERE {' AND '.join(where) or '1'}"
            " ORDER BY s.started DESC, s.rowid DESC LIMIT ? OFFSET ?"
        )
        params += [limit, offset]

        def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            found = [_session_dict(row) for row in conn.execute(sql, params)]
            ids = json.dumps([s["id"] for s in found])
            verdicts: dict[str, list[dict[str, Any]]] = {s["id"]: [] for s in found}
            rcpts: dict[str, list[str]] = {s["id"]: [] for s in found}
            # json_each takes any number of ids, where "IN (?, ?, ...)" has a variable limit.
            for row in conn.execute(
                f"SELECT {_VERDICT_COLUMNS} FROM verdicts"
                " WHERE session_id IN (SELECT value FROM json_each(?)) ORDER BY id",
                (ids,),
            ):
                verdicts[row["session_id"]].append(_verdict_dict(row))
            for row in conn.execute(
                "SELECT session_id, rcpt FROM rcpts"
                " WHERE session_id IN (SELECT value FROM json_each(?)) ORDER BY id",
                (ids,),
            ):
                rcpts[row["session_id"]].append(row["rcpt"])
            for s in found:
                s["verdicts"] = verdicts[s["id"]]
                s["rcpts"] = rcpts[s["id"]]
            return found

        result: list[dict[str, Any]] = await self._call(read, durable=False)
        return result

    async def session(self, session_id: str) -> dict[str, Any] | None:
        """One session with its `verdicts`, `rcpts`, `transcript` and `messages`."""

        def read(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM sessions s WHERE s.id = ?", (session_id,)
            ).fetchone()
            if row is None:
                return None
            found = _session_dict(row)
            found["verdicts"] = [
                _verdict_dict(v)
                for v in conn.execute(
                    f"SELECT {_VERDICT_COLUMNS} FROM verdicts WHERE session_id = ? ORDER BY id",
                    (session_id,),
                )
            ]
            found["rcpts"] = [
                r["rcpt"]
                for r in conn.execute(
                    "SELECT rcpt FROM rcpts WHERE session_id = ? ORDER BY id", (session_id,)
                )
            ]
            found["transcript"] = [
                {"when": _iso_epoch(when), "direction": direction, "line": line}
                for (chunk,) in conn.execute(
                    "SELECT lines FROM transcript WHERE session_id = ? ORDER BY id", (session_id,)
                )
                for when, direction, line in json.loads(chunk)
            ]
            found["messages"] = [
                {**dict(m), "rcpts": json.loads(m["rcpts"]), "truncated": bool(m["truncated"])}
                for m in conn.execute(
                    'SELECT n, at AS "when", mail_from, rcpts, size, truncated FROM messages'
                    " WHERE session_id = ? ORDER BY n",
                    (session_id,),
                )
            ]
            return found

        result: dict[str, Any] | None = await self._call(read, durable=False)
        return result

    async def message_raw(self, session_id: str, n: int) -> bytes | None:
        """The stored bytes of message `n` (truncated at `max_message_bytes`), or None."""

        def read(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT raw FROM messages WHERE session_id = ? AND n = ?", (session_id, n)
            ).fetchone()
            return None if row is None else bytes(row["raw"])

        result: bytes | None = await self._call(read, durable=False)
        return result

    # -- loop side plumbing ----------------------------------------------------------

    def _check_open(self) -> None:
        if self._state == "closed":
            raise JournalError(f"journal {self._path} is closed")
        if self._state != "open":
            raise JournalError(f"journal {self._path} is not open")

    def _write(self, sql: str, params: tuple[object, ...] | list[tuple[object, ...]]) -> None:
        self._check_open()
        self._staged.append((sql, params))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(_LINGER, self._hand_over)

    def _update(self, session_id: str, fields: Mapping[str, object]) -> None:
        self._check_open()
        self._updates.setdefault(session_id, {}).update(fields)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(_LINGER, self._hand_over)

    def _hand_over(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for session_id, fields in self._updates.items():
            # Names come from UPDATABLE_FIELDS and the end columns only: safe to format.
            names = sorted(fields)
            sql = f"UPDATE sessions SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?"
            self._staged.append((sql, (*(fields[n] for n in names), session_id)))
        self._updates = {}
        if self._staged:
            self._queue.put(self._staged)
            self._staged = []

    async def _barrier(self, *, strict: bool) -> None:
        self._check_open()
        self._hand_over()
        assert self._loop is not None
        barrier = _Barrier(self._loop.create_future(), strict)
        self._queue.put(barrier)
        await barrier.future

    async def _call(
        self, fn: Callable[[sqlite3.Connection], Any], *, durable: bool, atomic: bool = True
    ) -> Any:
        self._check_open()
        self._hand_over()  # a task sees (and a durable one commits) every earlier write
        future: Future[Any] = Future()
        self._queue.put(_Task(fn, future, durable, atomic))
        return await asyncio.wrap_future(future)

    # -- the writer thread -----------------------------------------------------------

    def _main(self, ready: Future[None]) -> None:
        try:
            conn = self._connect()
        except JournalError as exc:
            _settle(ready, error=exc)
            return
        except Exception as exc:
            _settle(ready, error=JournalError(f"cannot open journal {self._path}: {exc}"))
            return
        self._writer_ident = threading.get_ident()
        _settle(ready, None)
        stop = self._serve(conn)
        # Closed before close() is answered: the last connection's close checkpoints the
        # WAL, which close() must not wait for on the loop's thread.
        try:
            conn.close()
        except sqlite3.Error as exc:
            self._failed(exc)
        _settle(stop.future, None)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: the writer issues BEGIN/COMMIT itself, one pair per batch.
        conn = sqlite3.connect(self._path, timeout=_BUSY_TIMEOUT, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if self._path != ":memory:" and mode != "wal":
                raise JournalError(
                    f"cannot open journal {self._path}: SQLite refused WAL mode"
                    f" (journal_mode stays {mode!r}; is it on a network filesystem?)"
                )
            # In WAL mode NORMAL cannot corrupt the database and survives a process crash;
            # only a power loss may drop the last commits, acceptable for a test receiver
            # and it spares an fsync per batch.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise JournalError(
                    f"cannot open journal {self._path}: its schema version {version} is newer"
                    f" than this strictmx supports ({SCHEMA_VERSION})"
                )
            # IMMEDIATE takes the write lock now, so a read-only file fails at open rather
            # than at the first session.
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        return conn

    def _serve(self, conn: sqlite3.Connection) -> _Stop:
        while True:
            batch: list[_Item] = []
            item = self._queue.get()
            while True:
                if isinstance(item, list):
                    batch.extend(item)
                else:
                    batch.append(item)
                if len(batch) >= _BATCH_MAX:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            # close() queues the stop last and nothing after it, so it ends a batch.
            stop = batch.pop() if isinstance(batch[-1], _Stop) else None
            if batch:
                self._run_batch_safely(conn, batch)
            if isinstance(stop, _Stop):
                return stop

    def _answer(self, barriers: list[_Barrier], failure: BaseException | None) -> None:
        """Answer a batch's barriers with one call into the loop."""
        if not barriers:
            return
        answers: list[tuple[asyncio.Future[None], BaseException | None]] = [
            (b.future, self._journal_error(failure) if failure and b.strict else None)
            for b in barriers
        ]
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            self._loop.call_soon_threadsafe(_answer_barriers, answers)

    def _run_batch_safely(self, conn: sqlite3.Connection, batch: list[_Item]) -> None:
        try:
            self._run_batch(conn, batch)
        except Exception as exc:
            # BEGIN or ROLLBACK failed: fail whatever is still waiting, keep serving.
            self._failed(exc)
            self._answer([item for item in batch if isinstance(item, _Barrier)], exc)
            for item in batch:
                if isinstance(item, _Task):
                    _settle(item.future, error=self._journal_error(exc))
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error as rollback_exc:
                    self._failed(rollback_exc)

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Item]) -> None:
        committed: list[tuple[Future[Any], Any]] = []  # durable results awaiting COMMIT
        barriers = [item for item in batch if isinstance(item, _Barrier)]
        clean = True
        failure: BaseException | None = None
        changes = conn.total_changes
        conn.execute("BEGIN")
        for item in _grouped([item for item in batch if not isinstance(item, _Barrier)]):
            assert not isinstance(item, _Stop | list | _Barrier)
            try:
                if isinstance(item, tuple):
                    sql, params = item
                    if isinstance(params, list):
                        conn.executemany(sql, params)
                    else:
                        conn.execute(sql, params)
                elif item.durable:
                    committed.append((item.future, self._run_task(conn, item)))
                else:
                    _settle(item.future, self._run_task(conn, item))
            except Exception as exc:
                clean = False
                failure = exc
                self._failed(exc)
                if isinstance(item, _Task):
                    _settle(item.future, error=self._journal_error(exc))
                if not conn.in_transaction:
                    # SQLite rolled the whole transaction back (disk full, I/O error), so
                    # what ran before in this batch is gone too.
                    for future, _ in committed:
                        _settle(future, error=self._journal_error(exc))
                    committed.clear()
                    conn.execute("BEGIN")
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._failed(exc)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for future, _ in committed:
                _settle(future, error=self._journal_error(exc))
            self._answer(barriers, exc)
            return
        self._answer(barriers, failure)
        # Only rows really committed prove writes work again (a flush or a read does not).
        # Health first: whoever is answered next may look at it.
        if clean and conn.total_changes > changes and not self._healthy:
            log.warning("journal %s: writes succeed again", self._path)
            self._healthy = True
        for future, result in committed:
            _settle(future, result)

    @staticmethod
    def _run_task(conn: sqlite3.Connection, task: _Task) -> Any:
        if not task.atomic:
            return task.fn(conn)
        # A savepoint makes a task of several statements all-or-nothing inside the batch.
        conn.execute("SAVEPOINT task")
        try:
            result = task.fn(conn)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK TO task")
                conn.execute("RELEASE task")
            raise
        conn.execute("RELEASE task")
        return result

    def _failed(self, exc: BaseException) -> None:
        kind = f"{type(exc).__name__}: {exc}"
        self._healthy = False
        self._last_error = kind
        if kind not in self._logged_kinds:
            self._logged_kinds.add(kind)
            log.error("journal %s: write failed: %s", self._path, kind)

    def _journal_error(self, exc: BaseException) -> JournalError:
        error = JournalError(f"journal {self._path}: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error


def _grouped(batch: list[_Item]) -> list[_Item]:
    """Writes between two tasks, as few statements as possible: one executemany per SQL.

    Within such a run, new sessions are inserted first and session updates come last;
    everything else only adds rows under existing sessions, so grouping by statement
    keeps every row's meaning. Tasks keep their place: they see every earlier write.
    """
    out: list[_Item] = []
    run: dict[str, list[tuple[object, ...]]] = {}

    def close_run() -> None:
        ranked = sorted(run, key=_rank)  # stable: first appearance within a rank
        out.extend((sql, run[sql]) for sql in ranked)
        run.clear()

    for item in batch:
        if isinstance(item, tuple):
            sql, params = item
            rows = run.setdefault(sql, [])
            if isinstance(params, list):
                rows.extend(params)
            else:
                rows.append(params)
        else:
            close_run()
            out.append(item)
    close_run()
    return out


def _rank(sql: str) -> int:
    if sql.startswith("INSERT INTO sessions"):
        return 0
    return 2 if sql.startswith("UPDATE") else 1


def _answer_barriers(answers: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    for future, error in answers:
        if future.done():
            continue  # the awaiting task was cancelled
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def _settle(future: Future[Any], result: Any = None, *, error: BaseException | None = None) -> None:
    try:
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
    except InvalidStateError:
        pass  # the awaiting task was cancelled, or a failure already answered it


def _iso_epoch(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds")


def _iso(when: datetime) -> str:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"journal times must be timezone-aware, got {when!r}")
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def _contains(text: str) -> str:
    """A LIKE pattern (ESCAPE '\\') matching `text` anywhere, its % and _ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _session_dict(row: sqlite3.Row) -> dict[str, Any]:
    found = dict(row)
    found["tls"] = bool(found["tls"])
    return found


def _verdict_dict(row: sqlite3.Row) -> dict[str, Any]:
    found = dict(row)
    del found["session_id"]
    found["rfc_compliant"] = bool(found["rfc_compliant"])
    found["warned"] = bool(found["warned"])
    found["details"] = json.loads(found["details"])
    return found
