"""A simulated node's disk: the real `RaftStorage` over `MemoryFiles`, and a model of what it acknowledged.

The simulator runs the storage code that ships: every save and compaction goes through `RaftStorage` on an
in-memory file system that, on a power loss, keeps exactly what a real disk may keep (what was fsynced, and
perhaps a torn or zero-filled tail). Beside it, `SimDisk` models what storage *acknowledged* (a save that
returned): the safety checker reads the model, and every reopen after a power loss checks the real storage
against it — nothing acknowledged may be missing, nothing may come back that was not written. A save cut
short by the power loss may be there wholly or not at all.

Faults: `power_loss()` (every simulated crash is one), `cut_write()` (the power fails a few file operations
into the next write), `flip_bit()` (a failing disk damages a record that has others after it: the node must
refuse to start, never silently absorb it).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import PurePosixPath

from pygmy.raft.messages import Entry, HardState, Snapshot
from pygmy.raft.sim.files import MemoryFiles
from pygmy.raft.sim.invariants import Violation
from pygmy.raft.storage import PersistedState, RaftStorage, read_frames

_DIRECTORY = PurePosixPath("/raft")
_WAL = _DIRECTORY / "wal"
_RECORD_HEADER = 12  # bytes before a WAL record's payload (see pygmy.raft.storage)


class SimDisk:
    """The model of what a node's storage acknowledged: a snapshot, the entries after it, the hard state."""

    def __init__(self, state: PersistedState | None = None) -> None:
        self.hard_state = state.hard_state if state else HardState()
        self.snapshot = state.snapshot if state else Snapshot()
        self.entries: list[Entry] = list(state.entries) if state else []

    def copy(self) -> SimDisk:
        return SimDisk(PersistedState(self.hard_state, self.snapshot, tuple(self.entries)))

    def save(self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None = None) -> None:
        if snapshot is not None and snapshot.index > self.snapshot.index:
            self.snapshot = snapshot
            self.entries = []
        if hard_state is not None:
            self.hard_state = hard_state
        entries = [e for e in entries if e.index > self.snapshot.index]
        if entries:
            first = entries[0].index
            del self.entries[max(0, first - self.snapshot.index - 1) :]
            if first != self.snapshot.index + len(self.entries) + 1:
                raise AssertionError(f"gap on disk: appending {first} after {self.last_index}")
            self.entries.extend(entries)

    def compact(self, snapshot: Snapshot) -> None:
        if snapshot.index <= self.snapshot.index:
            return
        agrees = self.term_at(snapshot.index) == snapshot.term
        self.entries = [e for e in self.entries if e.index > snapshot.index] if agrees else []
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

    def durable_view(self) -> tuple[tuple[int, int | None, bool, int], tuple[int, int], list[tuple[int, int, bytes]]]:
        """What must survive a power loss: the hard state's promises, the snapshot, the entries."""
        return (
            self.hard_state.promises(),
            (self.snapshot.index, self.snapshot.term),
            [(e.index, e.term, e.data) for e in self.entries],
        )


class NodeDisk:
    """One node's disk: the shipped `RaftStorage` on `MemoryFiles`, checked against the model after each power loss."""

    def __init__(self, rng: random.Random, *, catching_up: bool = False) -> None:
        self.files = MemoryFiles(rng)
        self.rng = rng
        self.model = SimDisk()
        self.storage: RaftStorage | None = RaftStorage(_DIRECTORY, files=self.files)
        self._in_flight: SimDisk | None = None  # the model as it would be if the write under way completes
        self.damaged = False  # a bit was flipped: the next open must refuse to start
        if catching_up:
            # Bootstrapping a member that joins an existing cluster empty: the mark is durable before it starts.
            self.save(HardState(catching_up=True), [])

    # -- what the driver and the checker read ----------------------------------------------------------------

    @property
    def hard_state(self) -> HardState:
        return self.model.hard_state

    @property
    def snapshot(self) -> Snapshot:
        return self.model.snapshot

    @property
    def entries(self) -> list[Entry]:
        return self.model.entries

    @property
    def last_index(self) -> int:
        return self.model.last_index  # the same as the open storage's, and known while the node is down

    def last_term(self) -> int:
        return self.model.last_term()

    def term_at(self, index: int) -> int | None:
        return self.model.term_at(index)

    # -- what the driver writes ------------------------------------------------------------------------------

    def will_sync(self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None = None) -> bool:
        assert self.storage is not None
        return self.storage.will_sync(hard_state, entries, snapshot)

    def save(self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None = None) -> None:
        assert self.storage is not None
        after = self.model.copy()
        after.save(hard_state, entries, snapshot)
        self._in_flight = after
        self.storage.save(hard_state, entries, snapshot)
        self.model, self._in_flight = after, None

    def compact(self, snapshot: Snapshot) -> None:
        assert self.storage is not None
        after = self.model.copy()
        after.compact(snapshot)
        self._in_flight = after
        self.storage.compact(snapshot)
        self.model, self._in_flight = after, None

    # -- faults ----------------------------------------------------------------------------------------------

    def cut_write(self) -> None:
        """Make the power fail a few file operations into the next write (then `PowerLoss` is raised)."""
        self.files.fail_at(self.files.operations + self.rng.randint(1, 4), power_loss=True)

    def power_loss(self) -> None:
        self.files.clear_faults()
        self.files.crash(torn=True)
        self.storage = None

    def flip_bit(self) -> bool:
        """Damage a WAL record that has another after it (the node must be down); False if there is none."""
        data = self.files.durable(_WAL) if self.files.exists(_WAL) else b""
        records, _ = read_frames(data, _WAL)
        if len(records) < 2:
            return False
        offset, payload = self.rng.choice(records[:-1])
        position = offset + self.rng.randrange(_RECORD_HEADER + len(payload))  # header or payload
        self.files.flip_bit(_WAL, position, self.rng.randrange(8))
        self.damaged = True
        return True

    def open_state(self) -> PersistedState:
        """What the node boots from: the open storage's state, or, after a power loss, the reopened one's."""
        if self.storage is not None:
            return self.storage.state()
        return self.reopen()

    def reopen(self) -> PersistedState:
        """Open the storage after a power loss; check it against what was acknowledged. StorageCorrupt if damaged."""
        self.storage = RaftStorage(_DIRECTORY, files=self.files)  # raises StorageCorrupt for damage
        if self.damaged:
            raise Violation("a damaged record in the middle of the WAL was silently absorbed instead of refused")
        state = self.storage.state()
        real = SimDisk(state)
        allowed = [self.model] + ([self._in_flight] if self._in_flight is not None else [])
        if not any(real.durable_view() == m.durable_view() for m in allowed) and not self._partial_install(real):
            raise Violation(
                f"storage lost or invented an acknowledged write: reopened {real.durable_view()[:2]} with "
                f"{len(real.entries)} entries, acknowledged {self.model.durable_view()[:2]} with {len(self.model.entries)}"
            )
        self.model, self._in_flight = real, None
        return state

    def _partial_install(self, real: SimDisk) -> bool:
        """An install of the leader's snapshot cut short: the new snapshot, the old hard state (a documented,
        safe intermediate: the entries kept are only those that agree with the snapshot)."""
        pending = self._in_flight
        return (
            pending is not None
            and pending.snapshot.index > self.model.snapshot.index
            and (real.snapshot.index, real.snapshot.term) == (pending.snapshot.index, pending.snapshot.term)
            and real.hard_state.promises() == self.model.hard_state.promises()
        )

