"""A state machine kept in SQLite, durable entry by entry, for the services that replicate through Raft.

`SQLiteMachine` owns one database file. The commands of a log entry run in one transaction, which commits
in `commit_entry` together with the entry's index and term and the session table (`pygmy.raft.sessions`):
state, de-duplication and "how far applied" can never disagree after a crash. A restart then resumes after
`durable_state()`'s index instead of replaying the log from the snapshot (which would make a second order
or double a restock); a replica whose database was lost is rebuilt from the snapshot and the log.

Each command runs inside a savepoint, so one refused with `CommandRejected` leaves no trace while the other
commands of its entry stand. Any other exception leaves the transaction open and uncommitted: the runtime
stops the replica (fail-stop), and the restart rolls the unfinished entry back and applies it again.

A subclass supplies the schema (`SCHEMA`), `execute(db, command) -> bytes`, `read(db, query) -> bytes` and
a snapshot of its own tables (`dump(db)`/`load(db, data)`); this module keeps its bookkeeping in `_raft`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pygmy.raft.driver import CommandRejected

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS _raft (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 0),
    applied_index INTEGER NOT NULL,
    applied_term INTEGER NOT NULL,
    sessions BLOB NOT NULL
);
"""


class SQLiteMachine:
    """Base class: a deterministic state machine over one SQLite file (WAL mode, synchronous=FULL)."""

    SCHEMA = ""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a commit is on disk before the next entry is acknowledged
        self.db.executescript(_BOOKKEEPING + self.SCHEMA)
        self._in_entry = False
        # The log index the tables reflect, so that every read can say which state it was served from.
        self.applied_index = self.durable_state()[0]

    # -- what a subclass writes -----------------------------------------------------------------------------

    def execute(self, db: sqlite3.Connection, command: bytes) -> bytes:
        raise NotImplementedError

    def read(self, db: sqlite3.Connection, query: bytes) -> bytes:
        raise NotImplementedError

    def dump(self, db: sqlite3.Connection) -> bytes:
        raise NotImplementedError

    def load(self, db: sqlite3.Connection, data: bytes) -> None:
        """Replace the subclass's tables with `data` (inside the open transaction)."""
        raise NotImplementedError

    # -- the state machine --------------------------------------------------------------------------------

    def apply(self, command: bytes) -> bytes:
        self._begin()
        self.db.execute("SAVEPOINT command")
        try:
            result = self.execute(self.db, command)
        except CommandRejected:
            self.db.execute("ROLLBACK TO command")
            self.db.execute("RELEASE command")
            raise
        self.db.execute("RELEASE command")
        return result

    def commit_entry(self, index: int, term: int, sessions: bytes) -> None:
        self._begin()
        self.db.execute(
            "INSERT INTO _raft (singleton, applied_index, applied_term, sessions) VALUES (0, ?, ?, ?) "
            "ON CONFLICT (singleton) DO UPDATE SET applied_index = excluded.applied_index, "
            "applied_term = excluded.applied_term, sessions = excluded.sessions",
            (index, term, sessions),
        )
        self.db.execute("COMMIT")
        self._in_entry = False
        self.applied_index = index

    def durable_state(self) -> tuple[int, int, bytes]:
        row = self.db.execute("SELECT applied_index, applied_term, sessions FROM _raft").fetchone()
        return (row[0], row[1], bytes(row[2])) if row else (0, 0, b"")

    def query(self, query: bytes) -> bytes:
        return self.read(self.db, query)

    def snapshot(self) -> bytes:
        return self.dump(self.db)

    def restore(self, data: bytes) -> None:
        self._begin()  # committed with the snapshot's index by the commit_entry that follows
        self.load(self.db, data)

    def close(self) -> None:
        if self._in_entry:
            self.db.execute("ROLLBACK")  # an entry cut short is applied again after the restart
            self._in_entry = False
        self.db.close()

    def _begin(self) -> None:
        if not self._in_entry:
            self.db.execute("BEGIN IMMEDIATE")
            self._in_entry = True
