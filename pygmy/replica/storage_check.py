"""A replica's SQLite database is checked before it is used: damage stops the node, it is never absorbed.

A replica's state lives in two places in its directory: the Raft log (`raft/`, checked record by record by
`pygmy.raft.storage`) and the SQLite database the state machine applies the log to. A database that is
damaged, or that went back in time, would otherwise be served as if it were the group's state: lost
orders, stock that came back up. So before the machine opens it:

- a database that is missing or empty while the Raft storage shows this member has run before is damage,
  not a fresh start: the member would otherwise quietly rebuild or re-seed itself from whatever its log
  still holds. "Has run" is the Raft identity file, written at the first start right after the database
  is created (a directory `pygmy restore` filled has a snapshot but no identity and no database yet: its
  database is built from the snapshot);
- a database whose write-ahead log (`-wal`) is gone after an unclean stop lost its latest commits, and
  its main file may hold half of a checkpoint; a clean stop checkpoints and removes the WAL itself, so a
  marker file (`<db>.open`), present from open to clean close, tells the two apart, and the database's
  applied index against the commit index in the Raft log tells a deleted WAL from one that a later
  `sqlite3` session checkpointed and removed cleanly;
- `PRAGMA quick_check` must answer `ok` (it finds a truncated file and broken pages, not changed values:
  SQLite keeps no checksums of row contents), and a file that is not a database at all is refused too.

Each raises `StorageCorrupt` with one line saying what is wrong; the node exits 78 and `pygmy up` leaves it
stopped. The fix is the same as for a damaged Raft log: wipe the node's directory, and the member rejoins
and is rebuilt from its peers. The check that the database has not applied more than the log holds is
`pygmy.raft.driver.resume`'s.
"""

from __future__ import annotations

import atexit
import os
import sqlite3
from pathlib import Path
from typing import Callable, TypeVar

from pygmy.raft.sqlite_machine import SQLiteMachine
from pygmy.raft.storage import RaftStorage, StorageCorrupt

M = TypeVar("M", bound=SQLiteMachine)

_RAFT_IDENTITY = "identity"  # pygmy.raft.identity's file, written by every member at its first start
_QUICK_CHECK_ROWS = 3  # enough of quick_check's report to say what is wrong in one line


def open_checked(factory: Callable[[Path], M], path: Path, raft_dir: Path) -> M:
    """Check the database at `path` against `raft_dir`, then open it with `factory` and mark it open."""
    check_database(path, raft_dir)
    try:
        machine = factory(path)
    except sqlite3.DatabaseError as exc:
        raise StorageCorrupt(f"{path} cannot be opened as a database ({exc})") from exc
    mark_open(path)
    # Any exit that runs Python's exit handlers (a clean stop, an error at start, sys.exit) closes the
    # database here, so the marker goes with the WAL; only a kill or a crash leaves both behind.
    atexit.register(_close, machine)
    return machine


def _close(machine: SQLiteMachine) -> None:
    machine.close()  # a second close is harmless: the runtime may have closed it on a clean stop
    mark_closed(machine.path)


def check_database(path: Path, raft_dir: Path) -> None:
    """StorageCorrupt if the database at `path` is missing, rolled back or damaged (see the module docstring)."""
    if not path.exists() or path.stat().st_size == 0:
        if raft_has_run(raft_dir):
            state = "missing" if not path.exists() else "empty"
            raise StorageCorrupt(
                f"{path} is {state}, but this member's Raft storage in {raft_dir} shows it has run before: "
                f"its state was lost, and it is not rebuilt from a partial copy"
            )
        return
    if _marker(path).exists() and not _wal(path).exists():
        _check_not_rolled_back(path, raft_dir)
    problems = quick_check(path)
    if problems:
        raise StorageCorrupt(f"{path} fails SQLite's quick_check: {'; '.join(problems)}")


def _check_not_rolled_back(path: Path, raft_dir: Path) -> None:
    """After an unclean stop without a WAL: refuse if the database is behind what the log had committed.

    Someone may have opened the database in between (the sqlite3 shell, a test), which checkpoints and
    removes the WAL cleanly; then nothing is lost and the database is at least as far as the commit index
    the log recorded. A deleted WAL takes the database back to its last checkpoint, usually far behind.
    """
    applied = applied_index(path)
    storage = RaftStorage(raft_dir)
    try:
        state = storage.state()
    finally:
        storage.close()
    committed = max(state.hard_state.commit, state.snapshot.index)
    if applied < committed:
        raise StorageCorrupt(
            f"{_wal(path)} is missing after an unclean stop: the database went back to index {applied}, "
            f"but the log had committed up to {committed} (its latest commits are lost, and it may hold "
            f"half a checkpoint)"
        )


def applied_index(path: Path) -> int:
    """The log index the database says it has applied (0 if it has none)."""
    try:
        db = sqlite3.connect(path, isolation_level=None)
        try:
            row = db.execute("SELECT applied_index FROM _raft").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError:
        return 0  # no bookkeeping table: nothing applied; quick_check speaks of any damage
    return int(row[0]) if row else 0


def quick_check(path: Path) -> list[str]:
    """What `PRAGMA quick_check` finds wrong with the database at `path` (empty if it is sound)."""
    try:
        db = sqlite3.connect(path, isolation_level=None)
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    try:
        rows = [str(row[0]) for row in db.execute(f"PRAGMA quick_check({_QUICK_CHECK_ROWS})")]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    finally:
        db.close()
    return [] if rows == ["ok"] else rows


def raft_has_run(raft_dir: Path) -> bool:
    """Whether this member's Raft storage has been started (not merely written by `pygmy restore`)."""
    return (raft_dir / _RAFT_IDENTITY).exists()


def mark_open(path: Path) -> None:
    """Record that the database is open; a clean close removes the marker (`mark_closed`)."""
    marker = _marker(path)
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(path.parent)


def mark_closed(path: Path) -> None:
    """After the last connection closed cleanly (SQLite then checkpoints and removes the WAL itself)."""
    _marker(path).unlink(missing_ok=True)


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".open")


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
