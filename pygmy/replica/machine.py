"""The JSON face of a tier's SQLite state machine, and what every tier's machine answers alike.

A tier subclasses `TierMachine` with `command(db, cmd) -> result` and `lookup(db, query) -> answer` over
JSON objects (dicts). This base adds what the replication layer needs of any tier:
- every query answer carries `index`, the log index the state was read at;
- the `index` query (what the leader tells a follower that serves a linearizable read);
- the `digest` command: every replica hashes its state at the same log position and keeps the hash under
  the command's id, so `pygmy check` can compare replicas exactly, even while writes go on;
- a malformed command that reached the log is refused the same way on every replica (`CommandError`);
- `committed_dump()`: the tables as of a committed index, read apart from the applying connection (`pygmy backup`).
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from typing import Any, Iterable

import orjson

from pygmy.raft.driver import CommandRejected
from pygmy.raft.sqlite_machine import SQLiteMachine

Json = dict[str, Any]
DIGESTS_KEPT = 32

_DIGESTS = """
CREATE TABLE IF NOT EXISTS _digests (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL, summary BLOB NOT NULL);
"""


class CommandError(CommandRejected, ValueError):
    """A malformed command: nothing was changed, on any replica."""


class TierMachine(SQLiteMachine):
    def __init__(self, path: Any) -> None:
        super().__init__(path)
        self.db.row_factory = sqlite3.Row
        self.db.executescript(_DIGESTS)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []  # (index, woken once applied that far)

    # -- waiting for an index ----------------------------------------------------------------------

    def applied_at_least(self, index: int) -> asyncio.Future[None]:
        """A future done once this machine has applied `index` (at once if it has)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.applied_index >= index:
            future.set_result(None)
        else:
            self._waiters.append((index, future))
        return future

    def commit_entry(self, index: int, term: int, sessions: bytes) -> None:
        super().commit_entry(index, term, sessions)
        if self._waiters:
            ready = [f for i, f in self._waiters if i <= index]
            self._waiters = [(i, f) for i, f in self._waiters if i > index and not f.done()]
            for future in ready:
                # Commits run on the loop's thread today; call_soon_threadsafe keeps that from mattering.
                future.get_loop().call_soon_threadsafe(_wake, future)

    # -- what a tier writes ------------------------------------------------------------------------

    def command(self, db: sqlite3.Connection, cmd: Json) -> Json:
        raise NotImplementedError

    def lookup(self, db: sqlite3.Connection, query: Json) -> Json:
        raise NotImplementedError

    def state_rows(self, db: sqlite3.Connection) -> Iterable[tuple[Any, ...]]:
        """Every row that makes up the tier's state, in a fixed order (hashed by `digest`)."""
        raise NotImplementedError

    def summary(self, db: sqlite3.Connection) -> Json:
        """A few totals to show beside a digest (books, stock; orders by status)."""
        return {}

    # -- SQLiteMachine ---------------------------------------------------------------------------

    def execute(self, db: sqlite3.Connection, command: bytes) -> bytes:
        cmd = _decode(command)
        if cmd.get("op") == "digest":
            return orjson.dumps(self._digest(db, cmd))
        return orjson.dumps(self.command(db, cmd))

    def read(self, db: sqlite3.Connection, query: bytes) -> bytes:
        q = _decode(query)
        op = q.get("op")
        if op == "index":
            answer: Json = {}
        elif op == "digest":
            row = db.execute("SELECT hash, summary FROM _digests WHERE id = ?", (str(q.get("id")),)).fetchone()
            answer = {"found": False} if row is None else {
                "found": True, "hash": row["hash"], "summary": orjson.loads(row["summary"])
            }
        else:
            answer = self.lookup(db, q)
        answer["index"] = self.applied_index
        return orjson.dumps(answer)

    def committed_dump(self) -> tuple[int, Json, bytes]:
        """(index, summary, `snapshot()` bytes) of the last committed entry, from a connection of its own.

        One read transaction on a second connection sees exactly the state of one committed entry (WAL
        snapshot isolation), so this may run on a thread while the loop applies more entries, and a large
        dump never stalls the loop (a stalled leader misses heartbeats and loses its term).
        """
        copy = type(self)(self.path)
        try:
            copy.db.execute("BEGIN")
            index = copy.durable_state()[0]
            return index, copy.summary(copy.db), copy.snapshot()
        finally:
            copy.db.close()

    def _digest(self, db: sqlite3.Connection, cmd: Json) -> Json:
        digest_id = cmd.get("id")
        if not isinstance(digest_id, str) or not 0 < len(digest_id) <= 64:
            raise CommandError("digest needs an id")
        h = hashlib.blake2b(digest_size=16)
        for row in self.state_rows(db):
            h.update(orjson.dumps(list(row)))
            h.update(b"\n")
        summary = self.summary(db)
        seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM _digests").fetchone()[0]
        db.execute("INSERT OR REPLACE INTO _digests VALUES (?, ?, ?, ?)", (digest_id, seq, h.hexdigest(), orjson.dumps(summary)))
        db.execute("DELETE FROM _digests WHERE seq <= ?", (seq - DIGESTS_KEPT,))
        return {"id": digest_id, "hash": h.hexdigest(), "summary": summary}


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _decode(data: bytes) -> Json:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise CommandError("not JSON") from None
    if not isinstance(value, dict):
        raise CommandError("expected a JSON object")
    return value
