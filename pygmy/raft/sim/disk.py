"""A simulated node's disk: only what a Ready asked to persist, and only once its "fsync" completed.

Follows the storage contract of `pygmy.raft.core.Ready`: a snapshot replaces the whole log, entries replace
any stored suffix from their first index, the hard state is overwritten. Whatever a node held in memory, or
had handed to the disk but not yet synced, is gone after a crash.
"""

from __future__ import annotations

from collections.abc import Sequence

from pygmy.raft.messages import Entry, HardState, Snapshot


class SimDisk:
    """The storage of a simulated node, with the calls of `pygmy.raft.storage.RaftStorage` the driver makes."""

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.snapshot = Snapshot()
        self.entries: list[Entry] = []

    def will_sync(self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None = None) -> bool:
        if snapshot is not None or entries:
            return True
        return hard_state is not None and hard_state.promises() != self.hard_state.promises()

    def save(self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None = None) -> None:
        if snapshot is not None:
            self.snapshot = snapshot
            self.entries = []
        if hard_state is not None:
            self.hard_state = hard_state
        if entries:
            first = entries[0].index
            del self.entries[max(0, first - self.snapshot.index - 1) :]
            if first != self.snapshot.index + len(self.entries) + 1:
                raise AssertionError(f"gap on disk: appending {first} after {self.last_index}")
            self.entries.extend(entries)

    def compact(self, snapshot: Snapshot) -> None:
        if snapshot.index <= self.snapshot.index:
            return
        self.entries = [e for e in self.entries if e.index > snapshot.index]
        self.snapshot = snapshot

    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot.term

    @property
    def last_index(self) -> int:
        return self.snapshot.index + len(self.entries)

    def term_at(self, index: int) -> int | None:
        if index == self.snapshot.index:
            return self.snapshot.term
        offset = index - self.snapshot.index - 1
        return self.entries[offset].term if 0 <= offset < len(self.entries) else None
