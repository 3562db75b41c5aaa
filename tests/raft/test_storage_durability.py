"""Nothing is acknowledged before it is durable: each save syncs its data, each new name its directory.

A kill -9 cannot show a missing fsync (the page cache survives it), so these tests watch the file calls
themselves, and lose power on the in-memory file system, which forgets what was never synced.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Callable
from pathlib import Path

from pygmy.raft.files import OsFiles
from pygmy.raft.messages import Entry, HardState, Snapshot
from pygmy.raft.sim.files import MemoryFiles
from pygmy.raft.storage import RaftStorage


def entries(first: int, last: int, term: int = 1) -> list[Entry]:
    return [Entry(term=term, index=i, data=f"cmd{i}".encode()) for i in range(first, last + 1)]


class RecordingFiles(OsFiles):
    """The real file system, with every mutating call logged as (operation, path)."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Path]] = []
        self._paths: dict[int, Path] = {}

    def mkdir(self, path: Path) -> None:
        super().mkdir(path)
        self.log.append(("mkdir", path))

    def create(self, path: Path) -> int:
        handle = super().create(path)
        self._paths[handle] = path
        self.log.append(("create", path))
        return handle

    def open_append(self, path: Path) -> int:
        handle = super().open_append(path)
        self._paths[handle] = path
        return handle

    def write(self, handle: int, data: bytes) -> None:
        super().write(handle, data)
        self.log.append(("write", self._paths[handle]))

    def truncate(self, handle: int, size: int) -> None:
        super().truncate(handle, size)
        self.log.append(("write", self._paths[handle]))

    def fdatasync(self, handle: int) -> None:
        super().fdatasync(handle)
        self.log.append(("fdatasync", self._paths[handle]))

    def rename(self, source: Path, target: Path) -> None:
        if ("write", source) in self.log[self._last("fdatasync", source) + 1 :]:
            self.log.append(("rename-before-sync", source))
        super().rename(source, target)
        self._paths = {h: (target if p == source else p) for h, p in self._paths.items()}
        self.log.append(("rename", target))

    def fsync_dir(self, path: Path) -> None:
        super().fsync_dir(path)
        self.log.append(("fsync_dir", path))

    def acknowledge(self, what: str) -> None:
        self.log.append(("ack", Path(what)))

    def _last(self, operation: str, path: Path) -> int:
        return max((i for i, entry in enumerate(self.log) if entry == (operation, path)), default=-1)


def unsynced_at_acks(log: list[tuple[str, Path]]) -> list[str]:
    """Every acknowledgement that came while a write, a new name or a rename was not yet durable."""
    problems: list[str] = []
    dirty: set[tuple[str, Path]] = set()
    for operation, path in log:
        if operation == "write":
            dirty.add(("data", path))
        elif operation == "fdatasync":
            dirty.discard(("data", path))
        elif operation in ("mkdir", "create", "rename"):
            dirty.add(("name", path.parent))
        elif operation == "fsync_dir":
            dirty.discard(("name", path))
        elif operation == "rename-before-sync":
            problems.append(f"{path} renamed before its data was synced")
        elif operation == "ack" and dirty:
            problems.append(f"{path} acknowledged with {sorted(dirty)} not durable")
    return problems


def test_every_save_and_every_new_file_is_durable_before_it_returns(tmp_path: Path) -> None:
    files = RecordingFiles()
    directory = tmp_path / "data" / "node1"  # neither exists yet
    s = RaftStorage(directory, files=files)
    files.acknowledge("open")
    steps: list[tuple[str, Callable[[], None]]] = [
        ("term", lambda: s.save(HardState(term=1), [])),
        ("vote", lambda: s.save(HardState(term=1, vote=1), [])),
        ("entries", lambda: s.save(None, entries(1, 10))),
        ("commit", lambda: s.save(HardState(term=1, vote=1, commit=8), [])),
        ("suffix", lambda: s.save(HardState(term=2), entries(9, 11, term=2))),
        ("compact", lambda: s.compact(Snapshot(index=8, term=1, data=b"state@8"))),
        ("install", lambda: s.save(HardState(term=3, commit=20), entries(21, 22, term=3), Snapshot(20, 3, b"s"))),
        ("close", s.close),
    ]
    for name, step in steps:
        step()
        files.acknowledge(name)
    with (directory / "wal").open("ab") as f:
        f.write(b"torn")
    RaftStorage(directory, files=files).close()  # cuts the torn tail, durably
    files.acknowledge("reopen")
    assert unsynced_at_acks(files.log) == []
    kinds = {operation for operation, _ in files.log}
    assert {"mkdir", "create", "write", "fdatasync", "rename", "fsync_dir"} <= kinds  # the check saw them all
    assert ("fsync_dir", tmp_path) in files.log and ("fsync_dir", tmp_path / "data") in files.log


def test_the_check_sees_a_save_acknowledged_before_its_sync(tmp_path: Path) -> None:
    log = [("write", tmp_path / "wal"), ("ack", Path("save")), ("fdatasync", tmp_path / "wal")]
    assert unsynced_at_acks(log) != []
    log = [("create", tmp_path / "wal"), ("ack", Path("open")), ("fsync_dir", tmp_path)]
    assert unsynced_at_acks(log) != []


def test_a_new_wal_and_its_directories_survive_a_power_loss() -> None:
    files = MemoryFiles(random.Random(1))
    s = RaftStorage("/data/node1", files=files)
    s.save(HardState(term=2, vote=1), entries(1, 2, term=2))
    files.crash()
    state = RaftStorage("/data/node1", files=files).state()
    assert state.hard_state == HardState(term=2, vote=1)
    assert state.entries == tuple(entries(1, 2, term=2))


def test_a_compaction_survives_a_power_loss_right_after_it() -> None:
    files = MemoryFiles(random.Random(2))
    s = RaftStorage("/node", files=files)
    s.save(HardState(term=1, vote=1), entries(1, 10))
    s.compact(Snapshot(index=6, term=1, data=b"state@6"))
    s.save(None, entries(11, 12))
    files.crash()
    state = RaftStorage("/node", files=files).state()
    assert state.snapshot == Snapshot(index=6, term=1, data=b"state@6")
    assert state.entries == tuple(entries(7, 12))
    assert state.hard_state == HardState(term=1, vote=1, commit=6)


def test_storage_holds_no_log_entries_after_handing_them_over(tmp_path: Path) -> None:
    s = RaftStorage(tmp_path)
    s.save(HardState(term=1), entries(1, 50))
    s.close()
    s = RaftStorage(tmp_path)
    assert len(s.state().entries) == 50  # read once at open, handed over
    s.save(None, entries(51, 60))
    s.save(HardState(term=2), entries(55, 56, term=2))
    s.compact(Snapshot(index=40, term=1, data=b"state@40"))
    assert s.last_index == 56
    assert not any(isinstance(o, Entry) for o in reachable(vars(s)))
    assert s.state().entries == tuple(entries(41, 54) + entries(55, 56, term=2))  # read back from the WAL
    s.save(None, entries(57, 57, term=2))
    assert s.last_index == 57
    assert not any(isinstance(o, Entry) for o in reachable(vars(s)))


def reachable(root: object, limit: int = 100_000) -> list[object]:
    """The objects reachable from `root` through containers and instances (not through classes or modules)."""
    seen: dict[int, object] = {}
    todo = [root]
    while todo and len(seen) < limit:
        o = todo.pop()
        if id(o) in seen or isinstance(o, type) or type(o).__name__ == "module":
            continue
        seen[id(o)] = o
        todo.extend(gc.get_referents(o))
    return list(seen.values())
