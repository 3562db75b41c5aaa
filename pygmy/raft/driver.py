"""The one Ready driver: in what order a replica persists, sends and applies what its `RaftCore` hands out.

The asyncio runtime (`pygmy.raft.node.RaftGroup`) and the simulator's node (`pygmy.raft.sim.node.SimNode`)
both drive their core with this class, so the simulation checks the ordering that ships. What differs
between the two is injected: the storage, how a message is sent, how a write that fsyncs is run (a disk
thread, or a simulated disk latency), and a listener that hears what happened (answer callers, check
invariants, or crash the node at a step).

Each Ready is handled in this order:

    1. send the leader's AppendEntries, unless the Ready changes term or vote
    2. apply the committed entries this replica's log already holds durably
    3. persist hard state, snapshot and entries (one write, one fsync; maybe on another thread)
    4. restore a snapshot received from the leader; apply the remaining committed entries
    5. send every other message (votes, acknowledgements, everything of a new term)
    6. serve the reads whose index is applied; advance the core

Why each liberty is safe:
- (1) A leader's AppendEntries may leave before its own fsync (Ongaro's thesis 10.2.1; etcd does the
  same): the core counts the leader towards a commit only once `advance` reports its entries durable, so
  followers' writes overlap the leader's at no risk. Nothing of a new term or vote leaves before the term
  and vote are on disk.
- (2) A committed entry is on a quorum's disks, so applying it while this node writes its new entries is
  safe for the cluster; but a state machine that keeps its applied index on disk (SQLite) must never get
  ahead of the local log, or a crash leaves it holding entries the log has lost. So only entries already
  durable here are applied before the write; those that arrive in the same Ready wait for it.
- (4) A snapshot from the leader replaces the state machine only once it is durable in storage, for the
  same reason.
- (5) Votes and acknowledgements promise what is on disk: they leave only after the write.

A step between any two of these may be interrupted by a crash. The simulator's listener raises `Crash`
at `checkpoint(step)` to kill the node exactly there; the runtime's checkpoints do nothing.

Errors: a state machine raises `CommandRejected` (or a subclass) to refuse a command deterministically;
the caller gets that error and the log moves on. Any other exception while applying (an I/O error, a full
disk, a bug) propagates out of the driver, and the runtime stops the replica (fail-stop): carrying on
after a partial apply would let this replica silently diverge from the others.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

import msgspec

from pygmy.raft.core import RaftCore, Ready
from pygmy.raft.messages import AppendEntries, Entry, EntryKind, HardState, Message, Snapshot
from pygmy.raft.storage import PersistedState, StorageCorrupt

__all__ = ["CommandRejected", "Crash", "DriverListener", "Machine", "ReadyDriver", "Storage", "encode_batch"]

# The steps between which the simulator may crash a node (see `DriverListener.checkpoint`).
STEPS = ("ready", "sent-early", "applied-early", "persisted", "applied", "sent", "advanced")

_encode = msgspec.msgpack.Encoder().encode
_decode_batch = msgspec.msgpack.Decoder(list[bytes]).decode


def encode_batch(commands: Sequence[bytes]) -> bytes:
    """The data of a COMMAND entry: the commands proposed together, applied in this order."""
    return _encode(list(commands))


def decode_batch(data: bytes) -> list[bytes]:
    return _decode_batch(data)


class CommandRejected(Exception):
    """A state machine refused a command, as every replica will for the same command: the caller's error."""


class Crash(Exception):
    """Raised by a simulator's listener to kill the node at a step (never raised by the runtime)."""


class Storage(Protocol):
    """What the driver needs of durable storage (`pygmy.raft.storage.RaftStorage` in both worlds)."""

    @property
    def hard_state(self) -> HardState: ...

    @property
    def last_index(self) -> int: ...

    def will_sync(self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None = None) -> bool: ...

    def save(self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None = None) -> None: ...

    def compact(self, snapshot: Snapshot) -> None: ...


class Machine(Protocol):
    """The replicated state machine as the driver sees it (the session layer included).

    A machine kept in memory restarts empty and is rebuilt from the snapshot and the log. A machine kept on
    disk (SQLite) makes each entry durable in `applied`, in one transaction with the entry's index, and
    reports that index from `durable_index`, so that a restart neither re-applies what it holds (a second
    order, a doubled restock) nor skips what it lacks.
    """

    def apply(self, index: int, command: bytes) -> bytes: ...

    def applied(self, index: int, term: int) -> None:
        """Every command of the entry at `index` is applied (or the state restored to a snapshot there)."""

    def durable_index(self) -> tuple[int, int]:
        """(index, term) of the last entry the machine holds durably; (0, 0) for a machine kept in memory."""

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...


class DriverListener(Protocol):
    """What the owner of a driver hears. Every method may be a no-op."""

    def checkpoint(self, step: str, ready: Ready) -> None:
        """The driver is between two steps (one of `STEPS`) of `ready`; the simulator may raise `Crash` here."""

    def on_persisted(self, ready: Ready) -> None:
        """`ready`'s hard state, snapshot and entries are durable."""

    def on_applied(self, entry: Entry, results: list[bytes | Exception]) -> None:
        """`entry` was applied; for a COMMAND entry, one result (or CommandRejected) per command in it."""

    def on_snapshot(self, snapshot: Snapshot) -> None:
        """The state machine's state at `snapshot.index` is `snapshot.data` (installed from the leader, or taken here)."""

    def on_read_ready(self, ctx: int) -> None:
        """The ReadIndex read `ctx` may be served: the state machine reflects its read index."""

    def on_reads_failed(self, ctxs: list[int]) -> None:
        """These reads were dropped by the core (leadership lost): retry elsewhere."""


# Run a write that fsyncs, then call `then` on the driver's thread; None: run it inline.
WriteRunner = Callable[[Callable[[], None], Callable[[], None]], None]


class ReadyDriver:
    """Drives one `RaftCore` through its Readys against `storage`, `machine`, `send` and `listener`."""

    def __init__(
        self,
        core: RaftCore,
        storage: Storage,
        machine: Machine,
        send: Callable[[list[Message]], None],
        listener: DriverListener,
        *,
        run_write: WriteRunner | None = None,
        snapshot_every: int = 10_000,
        applied: int = 0,
        applied_term: int = 0,
    ) -> None:
        self.core = core
        self.storage = storage
        self.machine = machine
        self.send = send
        self.listener = listener
        self.run_write = run_write
        self.snapshot_every = snapshot_every
        self.applied, self.applied_term = applied, applied_term  # what the state machine reflects
        self.snapshot_index = core.log.snapshot.index
        self.writing = False  # a write runs elsewhere; the next Ready waits for it
        self._confirmed_reads: list[tuple[int, int]] = []  # (read index, ctx), sorted: waiting to be applied

    # -- driving -------------------------------------------------------------------------------------

    def pump(self) -> None:
        """Handle every Ready the core has, until one needs a write that runs elsewhere."""
        while not self.writing and self.core.has_ready():
            if self.handle(self.core.ready()):
                return
        if not self.writing:
            self._maybe_compact()

    def handle(self, ready: Ready) -> bool:
        """Steps 1-6 for one Ready; True if its write now runs elsewhere (steps 4-6 follow it)."""
        checkpoint = partial(self.listener.checkpoint, ready=ready)
        checkpoint("ready")
        early = self.early_messages(ready)
        self._send(early)
        checkpoint("sent-early")
        now, later = self.split_committed(ready)
        self._apply(now)
        checkpoint("applied-early")

        def finish() -> None:
            self.listener.on_persisted(ready)
            checkpoint("persisted")
            self.after_persist(ready, later, early)

        return self._write(lambda: self.storage.save(ready.hard_state, ready.entries, ready.snapshot),
                           finish, self.storage.will_sync(ready.hard_state, ready.entries, ready.snapshot))

    def early_messages(self, ready: Ready) -> list[Message]:
        """Step 1: what may leave before this Ready is durable: a leader's AppendEntries of an unchanged term."""
        if _changes_vote(ready.hard_state, self.storage.hard_state):
            return []
        return [m for m in ready.messages if isinstance(m, AppendEntries)]

    def split_committed(self, ready: Ready) -> tuple[list[Entry], list[Entry]]:
        """Step 2: the committed entries this log already holds durably, and those that must wait for the write."""
        if ready.snapshot is not None:
            return [], ready.committed  # they follow a snapshot the state machine does not hold yet
        durable = self.storage.last_index
        if ready.entries:
            durable = min(durable, ready.entries[0].index - 1)  # a suffix this Ready replaces is not kept
        if not ready.committed:
            return [], []
        # Committed entries are consecutive: where the durable ones end follows from the first index alone.
        cut = max(0, min(len(ready.committed), durable - ready.committed[0].index + 1))
        return ready.committed[:cut], ready.committed[cut:]

    def after_persist(self, ready: Ready, committed: list[Entry], sent: list[Message]) -> None:
        """Steps 4-6, once `ready` is durable."""
        if ready.snapshot is not None:
            self._restore(ready.snapshot)
        self._apply(committed)
        self.listener.checkpoint("applied", ready)
        self._send(_unsent(ready.messages, sent))
        self.listener.checkpoint("sent", ready)
        if ready.failed_reads:
            self.listener.on_reads_failed(ready.failed_reads)
        for read in ready.read_states:
            bisect.insort(self._confirmed_reads, (read.index, read.ctx))
        self._serve_reads()
        self.core.advance(ready)
        self.listener.checkpoint("advanced", ready)

    def forget_read(self, ctx: int) -> None:
        """A read nobody waits for any more: drop it here and in the core."""
        self._confirmed_reads = [(index, c) for index, c in self._confirmed_reads if c != ctx]
        self.core.cancel_read(ctx)

    # -- steps ---------------------------------------------------------------------------------------

    def _write(self, write: Callable[[], None], then: Callable[[], None], syncs: bool) -> bool:
        if self.run_write is None or not syncs:
            write()
            then()
            return False
        self.writing = True

        def written() -> None:
            self.writing = False
            then()

        self.run_write(write, written)
        return True

    def _send(self, messages: list[Message]) -> None:
        if messages:
            self.send(messages)

    def _apply(self, entries: list[Entry]) -> None:
        for entry in entries:
            if entry.index <= self.applied:
                continue
            results = self._apply_entry(entry) if entry.kind == EntryKind.COMMAND else []
            self.machine.applied(entry.index, entry.term)
            self.applied, self.applied_term = entry.index, entry.term
            self.listener.on_applied(entry, results)

    def _apply_entry(self, entry: Entry) -> list[bytes | Exception]:
        results: list[bytes | Exception] = []
        for command in decode_batch(entry.data):
            try:
                results.append(self.machine.apply(entry.index, command))
            except CommandRejected as exc:
                results.append(exc)  # declared and deterministic: every replica answers the same
        return results

    def _restore(self, snapshot: Snapshot) -> None:
        self.machine.restore(snapshot.data)
        self.machine.applied(snapshot.index, snapshot.term)
        self.applied, self.applied_term = snapshot.index, snapshot.term
        self.snapshot_index = snapshot.index
        self.listener.on_snapshot(snapshot)

    def _serve_reads(self) -> None:
        served = 0
        for index, ctx in self._confirmed_reads:
            if index > self.applied:
                break
            served += 1
            self.listener.on_read_ready(ctx)
        del self._confirmed_reads[:served]

    def _maybe_compact(self) -> None:
        """Snapshot the state machine every `snapshot_every` applied entries and drop the log it covers."""
        if self.applied - self.snapshot_index < self.snapshot_every or self.applied > self.core.applied:
            return
        index, term = self.applied, self.applied_term
        self.snapshot_index = index
        taken: list[Snapshot] = []

        def write() -> None:
            # Encoding a large state and rewriting the WAL (several fsyncs) happen where the disk writes run,
            # off the runtime's loop. Nothing applies meanwhile: the next Ready waits for this write.
            taken.append(Snapshot(index=index, term=term, data=self.machine.snapshot()))
            self.storage.compact(taken[0])

        def then() -> None:
            self.listener.on_snapshot(taken[0])
            self.core.compact(taken[0])

        self._write(write, then, True)


def resume(machine: Machine, persisted: PersistedState) -> tuple[int, int, HardState]:
    """Bring `machine` to where this replica resumes after a start: (applied index, its term, hard state).

    A machine that holds entries durably resumes after them (re-applying them would apply twice); one that
    holds less than the snapshot (kept in memory, or its database lost) is restored from the snapshot and
    gets the rest from the log. A machine ahead of the log cannot be: its log was lost or replaced, and no
    entry it applied can be checked any more, so the replica refuses to start (`StorageCorrupt`).
    """
    index, term = machine.durable_index()
    snapshot = persisted.snapshot
    last = persisted.entries[-1].index if persisted.entries else snapshot.index
    if index > last:
        raise StorageCorrupt(
            f"the state machine has applied up to index {index} but the log ends at {last}: the log was lost "
            "or replaced; wipe this member (log and state machine) and let it rejoin"
        )
    if index < snapshot.index or index == 0:
        if snapshot.index:
            machine.restore(snapshot.data)
            machine.applied(snapshot.index, snapshot.term)
        index, term = snapshot.index, snapshot.term
    hard_state = persisted.hard_state
    if hard_state.commit < index:  # what was applied was committed (the commit index is not always synced)
        hard_state = msgspec.structs.replace(hard_state, commit=index)
    return index, term, hard_state


def _unsent(messages: list[Message], sent: list[Message]) -> list[Message]:
    if not sent:
        return messages
    ids = {id(m) for m in sent}
    return [m for m in messages if id(m) not in ids]


def _changes_vote(new: HardState | None, durable: HardState) -> bool:
    return new is not None and new.promises() != durable.promises()
