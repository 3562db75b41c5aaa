"""One owner per data directory: an exclusive `flock` on a lock file, held for the life of the process.

Two processes on one directory corrupt each other quietly: two replicas of catalog-0 append to one Raft
log and one SQLite file, and two `pygmy up` on one data directory overwrite each other's `cluster.toml`
while each cluster's settler finishes the other's buys. So a backend node locks its node directory and
`pygmy up` locks the data directory before touching anything in them, and a second owner is refused.

The kernel drops a `flock` when its holder exits, however it exits (kill -9 included), so a stale lock
file never blocks a restart; the PID written into it is only there to name the holder in the refusal.
The descriptor is not inherited by child processes (Python opens files close-on-exec), so a node that
`pygmy up` starts does not hold its parent's lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "lock"

# Locks this process holds, by directory: a lock lasts as long as its descriptor stays open.
_HELD: dict[Path, int] = {}


class DirectoryInUse(Exception):
    """Another live process holds the directory's lock."""


def lock_directory(directory: Path, owner: str) -> None:
    """Take `directory`'s lock for this process (creating the directory), or raise DirectoryInUse.

    `owner` says who holds it (e.g. "catalog-0" or "pygmy up"), for the message a second owner gets.
    """
    directory = directory.resolve()
    if directory in _HELD:
        return
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise DirectoryInUse(
            f"{directory} is in use by another process ({holder}); stop it first, or give this one "
            f"another data directory"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {owner}\n".encode())
    _HELD[directory] = fd


def in_use(directory: Path) -> bool:
    """Whether a live process holds `directory`'s lock (a probe that takes and at once drops a shared lock;
    an owner starting in that instant is refused as if the directory were in use, and can simply retry)."""
    try:
        fd = os.open(directory / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's lock
    return False


def unlock_directory(directory: Path) -> None:
    """Give the lock up before the process ends (a clean stop; an exit releases it anyway)."""
    fd = _HELD.pop(directory.resolve(), None)
    if fd is not None:
        os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    pid, _, owner = text.partition(" ")
    return f"PID {pid}, {owner}" if pid.isdigit() else "its PID is not recorded"
