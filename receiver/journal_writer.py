"""The journal's writer process: it owns the SQLite connection and does all of its work.

`receiver.journal.Journal` starts this file as a script (`python -I -S journal_writer.py
PATH`) and talks to it over its stdin and stdout in frames: a 4-byte big-endian length
and a pickled list of operations. Running in its own process, the writer uses the
machine's other core and never competes with the event loop for the interpreter lock;
it imports the standard library only, so it starts in a few milliseconds.

Operations the receiver sends, in one frame's list:

    ("write", sql, params)          params: a tuple, or a list of tuples (executemany)
    ("barrier", id, strict)         answered once everything before it is committed
    ("task", id, name, args, durable)  a named operation of TASKS below
    ("stop", id)                    commit, close the database, answer, exit

Whatever has arrived is run as one transaction; then one frame answers it:

    ("ready", error | None)                     once, after the database is open
    ("done", healthy, last_error, logs, answers)  answers: [(id, error | None, result)]

`logs` carries (level, message) pairs for the receiver's logger: a write failure is
logged once per kind, and the recovery after it. A failed write never ends the writer.
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
SCHEMA_VERSION: Final = 1
HEADER: Final = struct.Struct("!I")
#: Most operations one transaction takes: large enough that a burst costs few commits,
#: small enough that a message queued behind a burst is answered soon.
BATCH_MAX: Final = 10_000
#: Seconds the writer waits for a lock held by another process (the sqlite3 shell, a
#: backup) before that batch fails.
BUSY_TIMEOUT: Final = 5.0
_READ_SIZE: Final = 1 << 20

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
        rcpts[row["session_id"]].append(row["rcpt"])
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
}


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


def _iso_epoch(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds")


# -- running a batch ------------------------------------------------------------------

#: One answer: the operation's id, an error text (None on success) and its result.
Answer = tuple[int, str | None, Any]


class Writer:
    """Runs batches of operations against one connection; keeps the health report."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.healthy = True
        self.last_error: str | None = None
        self.logs: list[tuple[int, str]] = []
        self._logged_kinds: set[str] = set()

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
            return [(op[1], error, None) for op in batch if op[0] in ("barrier", "task")]

    def _run(self, batch: list[tuple[Any, ...]]) -> list[Answer]:
        conn = self.conn
        answers: list[Answer] = []
        committed: list[Answer] = []  # durable results, answered only after COMMIT
        barriers: list[tuple[int, bool]] = []
        failure: str | None = None
        changes = conn.total_changes
        conn.execute("BEGIN")
        for op in _grouped(batch):
            kind = op[0]
            if kind == "barrier":
                barriers.append((op[1], op[2]))
                continue
            try:
                if kind == "write":
                    _, sql, params = op
                    if isinstance(params, list):
                        conn.executemany(sql, params)
                    else:
                        conn.execute(sql, params)
                else:
                    _, op_id, name, args, durable = op
                    result = self._task(name, args)
                    (committed if durable else answers).append((op_id, None, result))
            except Exception as exc:
                failure = self.failed(exc)
                if kind == "task":
                    answers.append((op[1], failure, None))
                if not conn.in_transaction:
                    # SQLite rolled the whole transaction back (disk full, I/O error), so
                    # what ran before in this batch is gone too.
                    answers.extend((op_id, failure, None) for op_id, _, _ in committed)
                    committed.clear()
                    conn.execute("BEGIN")
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            error = self.failed(exc)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            answers.extend((op_id, error, None) for op_id, _, _ in committed)
            answers.extend((op_id, error, None) for op_id, _ in barriers)
            return answers
        # A strict barrier (a message about to be claimed stored) fails with its batch.
        answers.extend((op_id, failure if strict else None, None) for op_id, strict in barriers)
        # Only rows really committed prove writes work again (a flush or a read does not).
        if failure is None and conn.total_changes > changes and not self.healthy:
            self.logs.append((logging.WARNING, "writes succeed again"))
            self.healthy = True
        answers.extend(committed)
        return answers

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


def _grouped(batch: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Writes between two tasks, as few statements as possible: one executemany per SQL.

    Within such a run, new sessions are inserted first and session updates come last;
    everything else only adds rows under existing sessions, so grouping by statement
    keeps every row's meaning. Tasks and barriers keep their place: they see (and a
    barrier covers) every earlier write.
    """
    out: list[tuple[Any, ...]] = []
    run: dict[str, list[tuple[object, ...]]] = {}

    def close_run() -> None:
        ranked = sorted(run, key=_rank)  # stable: first appearance within a rank
        out.extend(("write", sql, run[sql]) for sql in ranked)
        run.clear()

    for op in batch:
        if op[0] == "write":
            _, sql, params = op
            rows = run.setdefault(sql, [])
            if isinstance(params, list):
                rows.extend(params)
            else:
                rows.append(params)
        else:
            close_run()
            out.append(op)
    close_run()
    return out


def _rank(sql: str) -> int:
    if sql.startswith("INSERT INTO sessions"):
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
