"""The journal's writer process: it owns the SQLite connection and does all of its work.

`strictmx.receiver.journal.Journal` starts this file as a script (`python -I -S journal_writer.py
PATH`) and talks to it over its stdin and stdout in frames: a 4-byte big-endian length
and a pickled list of operations. Running in its own process, the writer uses the
machine's other core and never competes with the event loop for the interpreter lock;
it imports the standard library only, so it starts in a few milliseconds.

Operations the receiver sends, in one frame's list:

    ("write", sql, params, session)  params: a tuple, or a list of tuples (executemany);
                                    session: the id of the session the rows belong to
    ("barrier", id, strict, session)  answered once everything before it is committed;
                                    a strict one (a message about to be claimed stored)
                                    fails when that session's message row did not go in
    ("task", id, name, args, durable)  a named operation of TASKS below
    ("stop", id)                    commit, close the database, answer, exit

Whatever has arrived is run as one transaction; then one frame answers it:

    ("ready", error | None)                     once, after the database is open
    ("done", healthy, last_error, logs, answers)  answers: [(id, error | None, result)]

`logs` carries (level, message) pairs for the receiver's logger: a write failure is
logged once per kind, and the recovery after it. A failed write never ends the writer,
and a failed row fails its own session only, never the batch it shares (see `Writer`).
Text that is not valid UTF-8 (8-bit bytes the SMTP layer decoded with surrogateescape)
is stored as its bytes, a BLOB in that TEXT column; reads show such a value as text
with each undecodable byte written `\\xNN`.
SIGINT and SIGTERM are ignored (Ctrl-C reaches the whole process group; the receiver
decides when the journal closes); end of input, the receiver gone, commits and exits.

Times are stored as ISO 8601 UTC text with microseconds, so they sort as text.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import sqlite3
import struct
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

#: PRAGMA user_version of the schema below; a later version migrates from this number.
#: 2: sessions.auth_user (SMTP AUTH), added to a version 1 journal by `MIGRATIONS`.
SCHEMA_VERSION: Final = 2
HEADER: Final = struct.Struct("!I")
#: Most operations one transaction takes: large enough that a burst costs few commits,
#: small enough that a message queued behind a burst is answered soon.
BATCH_MAX: Final = 10_000
#: Seconds the writer waits for a lock held by another process (the sqlite3 shell, a
#: backup) before that batch fails.
BUSY_TIMEOUT: Final = 5.0
_READ_SIZE: Final = 1 << 20
#: Most session rows kept to insert again (see `Writer`): each is tried before every
#: batch, so a long outage must not make every batch slower without end.
MISSING_MAX: Final = 10_000

SCHEMA: Final = (
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
        tls INTEGER NOT NULL DEFAULT 0,
        auth_user TEXT  -- the user an SMTP AUTH logged in as (never a password)
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
    # The viewer's list filtered by outcome or policy, newest first, without a full scan
    # when the outcome or policy is rare.
    "CREATE INDEX IF NOT EXISTS sessions_outcome ON sessions (outcome, started)",
    "CREATE INDEX IF NOT EXISTS verdicts_policy ON verdicts (policy, session_id)",
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
        raw BLOB NOT NULL,  -- the first max_stored_message_bytes of it
        PRIMARY KEY (session_id, n)
    )""",
)

#: Statements that bring a journal of the version before each to that version.
MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    2: ("ALTER TABLE sessions ADD COLUMN auth_user TEXT",),
}

_SESSION_COLUMNS: Final = (
    "s.id, s.started, s.ended, s.outcome, s.scenario, s.peer, s.peer_port, "
    "s.client_address, s.client_name, s.helo, s.mail_from, s.tls, s.auth_user"
)
_VERDICT_COLUMNS: Final = (
    'session_id, at AS "when", policy, outcome, action, stage, replied_at, code, status, '
    "text, reason, rfc_compliant, warned, delay, details"
)


class OpenError(Exception):
    """The database cannot be opened as a journal; the text says why."""


def connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: the writer issues BEGIN/COMMIT itself, one pair per batch.
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
    except sqlite3.Error as exc:
        raise OpenError(f"cannot open journal {path}: {exc}") from None
    try:
        conn.row_factory = sqlite3.Row
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if path != ":memory:" and mode != "wal":
            raise OpenError(
                f"cannot open journal {path}: SQLite refused WAL mode"
                f" (journal_mode stays {mode!r}; is it on a network filesystem?)"
            )
        # In WAL mode NORMAL cannot corrupt the database and survives a process crash;
        # only a power loss may drop the last commits, acceptable for a test receiver
        # and it spares an fsync per batch.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise OpenError(
                f"cannot open journal {path}: its schema version {version} is newer"
                f" than this strictmx supports ({SCHEMA_VERSION})"
            )
        # IMMEDIATE takes the write lock now, so a read-only file fails at open rather
        # than at the first session.
        conn.execute("BEGIN IMMEDIATE")
        # A journal with tables (version 0 is a new, empty file) is brought up to date
        # before CREATE ... IF NOT EXISTS, which leaves existing tables as they are.
        for target in range(version + 1, SCHEMA_VERSION + 1) if version else ():
            for statement in MIGRATIONS[target]:
                conn.execute(statement)
        for statement in SCHEMA:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        conn.close()
        raise OpenError(f"cannot open journal {path}: {exc}") from None
    except BaseException:
        conn.close()
        raise
    return conn


# -- named operations -----------------------------------------------------------------


def mark_open_aborted(conn: sqlite3.Connection, at: str) -> int:
    cur = conn.execute(
        "UPDATE sessions SET outcome = 'aborted', ended = ? WHERE outcome IS NULL", (at,)
    )
    return cur.rowcount


def clear(conn: sqlite3.Connection) -> None:
    for table in ("messages", "rcpts", "verdicts", "transcript", "sessions"):
        conn.execute(f"DELETE FROM {table}")


def sessions(conn: sqlite3.Connection, where: str, params: list[object]) -> list[dict[str, Any]]:
    """Sessions matching `where` (built by the receiver from fixed fragments and bound
    parameters), newest first, each with its `verdicts` and `rcpts`."""
    sql = (
        f"SELECT {_SESSION_COLUMNS} FROM sessions s WHERE {where}"
        " ORDER BY s.started DESC, s.rowid DESC LIMIT ? OFFSET ?"
    )
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
        rcpts[row["session_id"]].append(_shown(row["rcpt"]))
    for s in found:
        s["verdicts"] = verdicts[s["id"]]
        s["rcpts"] = rcpts[s["id"]]
    return found


def session(conn: sqlite3.Connection, session_id: str) -> dict[str, Any] | None:
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
        _shown(r["rcpt"])
        for r in conn.execute(
            "SELECT rcpt FROM rcpts WHERE session_id = ? ORDER BY id", (session_id,)
        )
    ]
    found["transcript"] = [
        {"when": _iso_epoch(when), "direction": direction, "line": _unescaped(line)}
        for (chunk,) in conn.execute(
            "SELECT lines FROM transcript WHERE session_id = ? ORDER BY id", (session_id,)
        )
        for when, direction, line in json.loads(chunk)
    ]
    found["messages"] = [
        {
            **dict(m),
            "mail_from": _shown(m["mail_from"]),
            "rcpts": _unescaped(json.loads(m["rcpts"])),
            "truncated": bool(m["truncated"]),
        }
        for m in conn.execute(
            'SELECT n, at AS "when", mail_from, rcpts, size, truncated FROM messages'
            " WHERE session_id = ? ORDER BY n",
            (session_id,),
        )
    ]
    return found


def cursor_at(
    conn: sqlite3.Connection, before: tuple[str, str] | None, n: int
) -> tuple[str, str] | None:
    """The n-th session below `before` in the list's order (newest first)."""
    where, params = "1", []
    if before is not None:
        # `started <=` first: a range of the started index (see Journal.sessions).
        where = (
            "started <= ? AND (started < ? OR (started = ? AND rowid <"
            " (SELECT rowid FROM sessions WHERE id = ?)))"
        )
        params = [before[0], before[0], before[0], before[1]]
    row = conn.execute(
        f"SELECT started, id FROM sessions WHERE {where}"
        " ORDER BY started DESC, rowid DESC LIMIT 1 OFFSET ?",
        [*params, n - 1],
    ).fetchone()
    return None if row is None else (row[0], row[1])


def counts(conn: sqlite3.Connection, width: int) -> dict[str, Any]:
    """Sessions by outcome and sent refusals by policy per bucket: the start time's ISO
    text cut to `width` characters (16 a minute, 13 an hour, 10 a day)."""
    outcomes = conn.execute(
        "SELECT substr(started, 1, ?) AS b, coalesce(outcome, 'open'), count(*) FROM sessions"
        " GROUP BY b, outcome ORDER BY b",
        (width,),
    ).fetchall()
    policies = conn.execute(
        "SELECT substr(s.started, 1, ?) AS b, v.policy, count(*) FROM verdicts v"
        " JOIN sessions s ON s.id = v.session_id"
        " WHERE v.action IN ('reject', 'defer', 'disconnect') AND v.warned = 0"
        " AND v.replied_at IS NOT NULL"
        " GROUP BY b, v.policy ORDER BY b",
        (width,),
    ).fetchall()
    return {
        "outcomes": [tuple(row) for row in outcomes],
        "policies": [tuple(row) for row in policies],
    }


def message_raw(conn: sqlite3.Connection, session_id: str, n: int) -> bytes | None:
    row = conn.execute(
        "SELECT raw FROM messages WHERE session_id = ? AND n = ?", (session_id, n)
    ).fetchone()
    return None if row is None else bytes(row["raw"])


TASKS: Final[dict[str, Callable[..., Any]]] = {
    "mark_open_aborted": mark_open_aborted,
    "clear": clear,
    "sessions": sessions,
    "session": session,
    "message_raw": message_raw,
    "counts": counts,
    "cursor_at": cursor_at,
}


def _session_dict(row: sqlite3.Row) -> dict[str, Any]:
    found = {k: _shown(v) for k, v in zip(row.keys(), row, strict=True)}
    found["tls"] = bool(found["tls"])
    return found


def _verdict_dict(row: sqlite3.Row) -> dict[str, Any]:
    found = {k: _shown(v) for k, v in zip(row.keys(), row, strict=True)}
    del found["session_id"]
    found["rfc_compliant"] = bool(found["rfc_compliant"])
    found["warned"] = bool(found["warned"])
    found["details"] = _unescaped(json.loads(found["details"]))
    return found


def _shown(value: Any) -> Any:
    """A text column's value as text: bytes stored for text that was not UTF-8 (see
    `as_stored`) are shown with each undecodable byte as `\\xNN`."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return value


def _unescaped(value: Any) -> Any:
    """Strings in JSON read back as `_shown` shows them: JSON keeps 8-bit input as lone
    surrogates, which no UTF-8 output can carry."""
    if isinstance(value, str):
        return _shown(as_stored(value))
    if isinstance(value, list):
        return [_unescaped(v) for v in value]
    if isinstance(value, dict):
        return {k: _unescaped(v) for k, v in value.items()}
    return value


def _iso_epoch(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds")


# -- running a batch ------------------------------------------------------------------

#: One answer: the operation's id, an error text (None on success) and its result.
Answer = tuple[int, str | None, Any]

#: The statements the writer must recognise: a session's row (re-inserted when it was
#: lost), a message's row (its loss fails that session's next strict barrier) and a
#: message replayed after a writer restart (kept if the dead writer had committed it).
SESSION_INSERT: Final = (
    "INSERT INTO sessions (id, started, scenario, peer, peer_port, client_address,"
    " client_name) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
SESSION_RESTORE: Final = SESSION_INSERT.replace("INSERT INTO", "INSERT OR IGNORE INTO", 1)
MESSAGE_INSERT: Final = (
    "INSERT INTO messages (session_id, n, at, mail_from, rcpts, size, truncated, raw)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
MESSAGE_REPLAY: Final = MESSAGE_INSERT.replace("INSERT INTO", "INSERT OR IGNORE INTO", 1)
_MESSAGE_WRITES: Final = frozenset({MESSAGE_INSERT, MESSAGE_REPLAY})
_SESSION_WRITES: Final = frozenset({SESSION_INSERT, SESSION_RESTORE})


class _Careful(Exception):
    """A group of rows failed in a batch run without savepoints: run it again, with."""


class Writer:
    """Runs batches of operations against one connection; keeps the health report.

    A failed row fails its own session only. Each group of rows runs as one
    executemany; should one fail, the batch is rolled back and run again with each
    group under a savepoint, and a failing group is rolled back to its savepoint and
    run row by row, so every other session's rows still go in. (Savepoints cost two
    statements per group: only a batch that needs them pays for them.) What a
    session lost is remembered across batches until the barrier that stands for it is
    answered: a message row in `_lost` (its session's next strict barrier fails, in
    whichever batch it runs), a session row in `_missing` (inserted again at the start
    of every batch until it goes in, so the session's later rows have their parent).
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.healthy = True
        self.last_error: str | None = None
        self.logs: list[tuple[int, str]] = []
        self._logged_kinds: set[str] = set()
        #: session id -> why its last message row is not stored (until its barrier).
        self._lost: dict[str, str] = {}
        #: session id -> its sessions row, not in the database (yet).
        self._missing: dict[str, tuple[object, ...]] = {}
        #: Why writes of this read's earlier batches were lost: a non-strict barrier
        #: answered later in the same read covers them too (see `serve`).
        self.carry: str | None = None
        # Rows the open transaction holds that matter should it be lost.
        self._txn_sessions: list[tuple[object, ...]] = []
        self._txn_messages: list[str] = []
        self._failed_rows = 0
        self._restored = 0  # session rows inserted again in the open transaction
        self._restoring: dict[str, tuple[object, ...]] = {}  # ... and which they were

    def run(self, batch: list[tuple[Any, ...]]) -> list[Answer]:
        """Run `batch` as one transaction; answer its barriers and tasks."""
        try:
            return self._run(batch)
        except Exception as exc:
            # BEGIN, COMMIT or ROLLBACK failed: fail whatever waits, keep serving.
            error = self.failed(exc)
            if self.conn.in_transaction:
                try:
                    self.conn.execute("ROLLBACK")
                except sqlite3.Error as rollback_exc:
                    self.failed(rollback_exc)
            self._transaction_lost(error)
            answers: list[Answer] = []
            for op in batch:
                if op[0] == "barrier" and op[3] is not None:
                    self._lost.pop(op[3], None)  # answered now, with the batch's error
                if op[0] in ("barrier", "task"):
                    answers.append((op[1], error, None))
            return answers

    def _run(self, batch: list[tuple[Any, ...]]) -> list[Answer]:
        grouped = _grouped(batch)
        try:
            return self._run_grouped(grouped, careful=False)
        except _Careful:
            return self._run_grouped(grouped, careful=True)

    def _run_grouped(self, grouped: list[tuple[Any, ...]], *, careful: bool) -> list[Answer]:
        conn = self.conn
        answers: list[Answer] = []
        committed: list[Answer] = []  # durable results, answered only after COMMIT
        barriers: list[tuple[int, bool, str | None]] = []
        self._failed_rows = 0
        changes = conn.total_changes
        conn.execute("BEGIN")
        if self._missing:
            self._restore_sessions()
        for op in grouped:
            kind = op[0]
            if kind == "barrier":
                barriers.append((op[1], op[2], op[3]))
            elif kind == "write":
                self._write(op[1], op[2], op[3], careful=careful)
            else:
                _, op_id, name, args, durable = op
                try:
                    result = self._task(name, args)
                except Exception as exc:
                    error = self.failed(exc)
                    answers.append((op_id, error, None))
                    if not conn.in_transaction:
                        # What ran before in this batch is gone too.
                        self._transaction_lost(error)
                        answers.extend((i, error, None) for i, _, _ in committed)
                        committed.clear()
                        conn.execute("BEGIN")
                else:
                    (committed if durable else answers).append((op_id, None, result))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            error = self.failed(exc)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._transaction_lost(error)
            answers.extend((op_id, error, None) for op_id, _, _ in committed)
            for op_id, _, session_id in barriers:
                if session_id is not None:
                    self._lost.pop(session_id, None)
                answers.append((op_id, error, None))
            return answers
        self._txn_sessions.clear()
        self._txn_messages.clear()
        if self._restored:
            self.logs.append((logging.WARNING, f"stored {self._restored} lost session rows"))
            self._restored = 0
        self._restoring = {}
        for op_id, strict, session_id in barriers:
            if strict:
                # A message barrier answers for its session's message row alone.
                answers.append((op_id, self._lost.pop(session_id or "", None), None))
            else:
                answers.append((op_id, self.carry, None))
        # Only rows really committed prove writes work again (a flush or a read does not).
        if not self._failed_rows and conn.total_changes > changes and not self.healthy:
            self.logs.append((logging.WARNING, "writes succeed again"))
            self.healthy = True
        answers.extend(committed)
        return answers

    def _write(
        self, sql: str, rows: list[tuple[object, ...]], sessions: list[str], *, careful: bool
    ) -> None:
        """Run one statement for many rows; a failing row fails its own session only."""
        conn = self.conn
        if not careful:
            try:
                conn.executemany(sql, rows)
            except Exception:
                self._undo_batch()
                raise _Careful from None
            if sql in _SESSION_WRITES:
                self._txn_sessions.extend(rows)
            elif sql in _MESSAGE_WRITES:
                self._txn_messages.extend(sessions)
            return
        conn.execute("SAVEPOINT rows")
        try:
            conn.executemany(sql, rows)
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK TO rows")
                conn.execute("RELEASE rows")
            else:
                # Rolled back whole (disk full, I/O error): the rows of this batch
                # that ran before are lost too, and their sessions learn of it.
                self._failed_rows += 1
                self._transaction_lost(self.failed(exc))
                conn.execute("BEGIN")
            self._write_each(sql, rows, sessions)
            return
        conn.execute("RELEASE rows")
        if sql in _SESSION_WRITES:
            self._txn_sessions.extend(rows)
        elif sql in _MESSAGE_WRITES:
            self._txn_messages.extend(sessions)

    def _write_each(self, sql: str, rows: list[tuple[object, ...]], sessions: list[str]) -> None:
        conn = self.conn
        for params, session_id in zip(rows, sessions, strict=True):
            try:
                try:
                    conn.execute(sql, params)
                except UnicodeEncodeError:
                    # Text holding bytes that are not UTF-8 (the SMTP layer decodes 8-bit
                    # input with surrogateescape) is stored as those very bytes, a BLOB.
                    params = tuple(as_stored(v) for v in params)
                    conn.execute(sql, params)
            except Exception as exc:
                self._row_failed(exc, sql, params, session_id)
                if not conn.in_transaction:
                    self._transaction_lost(self.last_error or "the transaction was rolled back")
                    conn.execute("BEGIN")
                continue
            if sql in _SESSION_WRITES:
                self._txn_sessions.append(params)
            elif sql in _MESSAGE_WRITES:
                self._txn_messages.append(session_id)

    def _row_failed(
        self, exc: Exception, sql: str, params: tuple[object, ...], session_id: str
    ) -> None:
        self._failed_rows += 1
        error = self.failed(exc)
        if sql in _MESSAGE_WRITES:
            self._lost[session_id] = error
        elif sql in _SESSION_WRITES:
            self._keep_missing(session_id, params)

    def _keep_missing(self, session_id: str, params: tuple[object, ...]) -> None:
        if len(self._missing) < MISSING_MAX or session_id in self._missing:
            self._missing[session_id] = params
        elif "missing" not in self._logged_kinds:
            self._logged_kinds.add("missing")
            self.logs.append(
                (logging.ERROR, f"over {MISSING_MAX} session rows lost; later ones stay lost")
            )

    def _restore_sessions(self) -> None:
        """Insert again the sessions rows that did not go in, before anything else."""
        missing, self._missing = self._missing, {}
        self._restoring = missing
        self._write_each(SESSION_RESTORE, list(missing.values()), list(missing))
        # Logged once committed: while the disk is full, the commit loses them again.
        self._restored = len(missing) - len(self._missing)

    def _undo_batch(self) -> None:
        """Roll back a batch that is to run again: as if it had not begun."""
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        for session_id, params in self._restoring.items():  # to be inserted again
            self._keep_missing(session_id, params)
        self._restoring = {}
        self._txn_sessions.clear()
        self._txn_messages.clear()  # each runs again
        self._restored = 0

    def _transaction_lost(self, error: str) -> None:
        for params in self._txn_sessions:
            self._keep_missing(str(params[0]), params)
        for session_id in self._txn_messages:
            self._lost[session_id] = error
        self._txn_sessions.clear()
        self._txn_messages.clear()
        self._restored = 0
        self._restoring = {}
        self.carry = error

    def _task(self, name: str, args: tuple[Any, ...]) -> Any:
        fn = TASKS[name]
        # A savepoint makes a task of several statements all-or-nothing inside the batch.
        self.conn.execute("SAVEPOINT task")
        try:
            result = fn(self.conn, *args)
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK TO task")
                self.conn.execute("RELEASE task")
            raise
        self.conn.execute("RELEASE task")
        return result

    def failed(self, exc: BaseException) -> str:
        kind = f"{type(exc).__name__}: {exc}"
        self.healthy = False
        self.last_error = kind
        if kind not in self._logged_kinds:
            self._logged_kinds.add(kind)
            self.logs.append((logging.ERROR, f"write failed: {kind}"))
        return kind


def as_stored(value: object) -> object:
    """`value`, with text that cannot be UTF-8 encoded turned into its bytes."""
    if not isinstance(value, str):
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        try:
            return value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate that no byte decoded to
            return value.encode("utf-8", "surrogatepass")
    return value


def _grouped(batch: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Writes between two tasks, as few statements as possible: one executemany per SQL.

    Within such a run, new sessions are inserted first and session updates come last;
    everything else only adds rows under existing sessions, so grouping by statement
    keeps every row's meaning. Tasks and barriers keep their place: they see (and a
    barrier covers) every earlier write. Each group carries the session id of each of
    its rows, so that a failing row is charged to its own session.
    """
    out: list[tuple[Any, ...]] = []
    run: dict[str, tuple[list[tuple[object, ...]], list[str]]] = {}

    def close_run() -> None:
        ranked = sorted(run, key=_rank)  # stable: first appearance within a rank
        out.extend(("write", sql, *run[sql]) for sql in ranked)
        run.clear()

    for op in batch:
        if op[0] == "write":
            _, sql, params, session_id = op
            group = run.get(sql)
            if group is None:
                group = run[sql] = ([], [])
            rows, sessions = group
            if isinstance(params, list):
                rows.extend(params)
                sessions.extend([session_id] * len(params))
            else:
                rows.append(params)
                sessions.append(session_id)
        else:
            close_run()
            out.append(op)
    close_run()
    return out


def _rank(sql: str) -> int:
    if sql.startswith("INSERT INTO sessions") or sql.startswith("INSERT OR IGNORE INTO sessions"):
        return 0
    return 2 if sql.startswith("UPDATE") else 1


# -- the process ----------------------------------------------------------------------


def _send(out: int, message: tuple[Any, ...]) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    data = memoryview(HEADER.pack(len(payload)) + payload)
    while data:
        written = os.write(out, data)
        data = data[written:]


def _report(out: int, writer: Writer, answers: list[Answer]) -> None:
    _send(out, ("done", writer.healthy, writer.last_error, writer.logs, answers))
    writer.logs = []


def serve(writer: Writer, inp: int, out: int) -> None:
    """Run frames from `inp` until a stop or end of input; answer each batch on `out`."""
    buffer = bytearray()
    while True:
        chunk = os.read(inp, _READ_SIZE)
        if not chunk:
            return  # the receiver is gone; every complete frame has been committed
        buffer += chunk
        # A loss in one batch of this read fails the flushes of its later batches too:
        # a flush stands for every write before it, wherever BATCH_MAX split them.
        writer.carry = None
        batch: list[tuple[Any, ...]] = []
        while len(buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(buffer)
            if len(buffer) < HEADER.size + size:
                break
            batch.extend(pickle.loads(buffer[HEADER.size : HEADER.size + size]))
            del buffer[: HEADER.size + size]
        if not batch:
            continue
        stop = batch.pop() if batch[-1][0] == "stop" else None
        for start in range(0, len(batch), BATCH_MAX):
            _report(out, writer, writer.run(batch[start : start + BATCH_MAX]))
        if stop is not None:
            # Closed before the stop is answered: the last connection's close checkpoints
            # the WAL, which the receiver then need not wait for.
            try:
                writer.conn.close()
            except sqlite3.Error as exc:
                writer.failed(exc)
            _send(
                out,
                ("done", writer.healthy, writer.last_error, writer.logs, [(stop[1], None, None)]),
            )
            return


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if len(argv) != 1:
        print("usage: journal_writer.py PATH  (started by strictmx's journal)", file=sys.stderr)
        return 2
    inp, out = sys.stdin.fileno(), sys.stdout.fileno()
    try:
        conn = connect(argv[0])
    except OpenError as exc:
        _send(out, ("ready", str(exc)))
        return 1
    _send(out, ("ready", None))
    serve(Writer(conn), inp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
