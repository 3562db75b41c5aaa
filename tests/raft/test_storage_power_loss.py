"""Power loss at any step, even mid-save, loses nothing a save acknowledged, and never stops a node from starting.

Each seed drives the real RaftStorage over MemoryFiles through random saves (entries, term and vote
changes, conflicting suffixes, commit-only changes), compactions and installed snapshots, with power
lost between operations or during the n-th file call, and injected I/O errors. After every restart the
log, term and vote must equal what was acknowledged, or that plus the one operation in flight (wholly,
or for an installed snapshot also the snapshot alone, which a crash between its two files leaves).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from pygmy.raft.messages import Entry, HardState, Snapshot
from pygmy.raft.sim.files import MemoryFiles, PowerLoss
from pygmy.raft.storage import RaftStorage, StorageCorrupt

DIRECTORY = "/raft/node1"
SEEDS = 1000
STEPS = 60


@dataclass(frozen=True)
class Durable:
    """What a restarted node must find: the model of everything acknowledged."""

    term: int = 0
    vote: int | None = None
    snapshot: Snapshot = Snapshot()
    log: tuple[Entry, ...] = ()  # after the snapshot

    @property
    def last(self) -> int:
        return self.log[-1].index if self.log else self.snapshot.index

    def term_at(self, index: int) -> int:
        return self.snapshot.term if index == self.snapshot.index else self.log[index - self.snapshot.index - 1].term

    def with_entries(self, entries: list[Entry]) -> tuple[Entry, ...]:
        entries = [e for e in entries if e.index > self.snapshot.index]
        if not entries:
            return self.log
        return tuple(e for e in self.log if e.index < entries[0].index) + tuple(entries)

    def after(self, snapshot: Snapshot) -> tuple[Entry, ...]:
        """The log entries that survive `snapshot`: those after it, if the log agrees with it there."""
        if snapshot.index > self.last or self.term_at(snapshot.index) != snapshot.term:
            return ()
        return tuple(e for e in self.log if e.index > snapshot.index)


@dataclass
class Operation:
    name: str
    run: Callable[[RaftStorage], None]
    after: Durable
    also: list[Durable] = field(default_factory=list)  # other outcomes a crash during it may leave


def run_of(entries: range, term: int) -> list[Entry]:
    return [Entry(term=term, index=i, data=f"{term}:{i}".encode()) for i in entries]


def next_operation(m: Durable, rng: random.Random) -> Operation:
    kinds = ["append"] * 4 + ["elect", "vote", "conflict", "commit", "compact", "install"]
    kind = "elect" if m.term == 0 else rng.choice(kinds)
    if kind == "append":
        new = run_of(range(m.last + 1, m.last + rng.randint(2, 5)), m.term)
        return Operation(kind, lambda s: s.save(None, new), Durable(m.term, m.vote, m.snapshot, m.with_entries(new)))
    if kind == "elect" or (kind == "vote" and m.vote is not None):
        term, vote = m.term + 1, rng.choice([None, 1, 2, 3])
        elect = HardState(term, vote, m.snapshot.index)
        return Operation("elect", lambda s: s.save(elect, []), Durable(term, vote, m.snapshot, m.log))
    if kind == "vote":
        vote = rng.randint(1, 3)
        cast = HardState(m.term, vote, m.snapshot.index)
        return Operation(kind, lambda s: s.save(cast, []), Durable(m.term, vote, m.snapshot, m.log))
    if kind == "conflict":  # a new leader's entries replace a suffix (some may be covered by the snapshot)
        term, vote = m.term + 1, rng.choice([None, 1, 2])
        first = rng.randint(max(1, m.snapshot.index - 2), m.last + 1)
        new = run_of(range(first, first + rng.randint(1, 3)), term)
        hard_state = HardState(term, vote, m.snapshot.index)
        return Operation(kind, lambda s: s.save(hard_state, new), Durable(term, vote, m.snapshot, m.with_entries(new)))
    if kind == "commit" or (kind == "compact" and m.last == m.snapshot.index):
        hard_state = HardState(m.term, m.vote, rng.randint(m.snapshot.index, m.last))
        return Operation("commit", lambda s: s.save(hard_state, []), m)
    if kind == "compact":
        index = rng.randint(m.snapshot.index + 1, m.last)
        snapshot = Snapshot(index, m.term_at(index), f"state@{index}".encode())
        return Operation(kind, lambda s: s.compact(snapshot), Durable(m.term, m.vote, snapshot, m.after(snapshot)))
    index = rng.randint(m.snapshot.index + 1, m.last + 3)  # install a snapshot from the leader
    matching = index <= m.last and rng.random() < 0.5
    snapshot = Snapshot(index, m.term_at(index) if matching else m.term, f"leader@{index}".encode())
    term = m.term + rng.randint(0, 1)
    vote = m.vote if term == m.term else None
    new = run_of(range(index + 1, index + 1 + rng.randint(0, 3)), term)
    return Operation(
        "install",
        lambda s: s.save(HardState(term, vote, index), new, snapshot),
        Durable(term, vote, snapshot, tuple(new)),
        [Durable(m.term, m.vote, snapshot, m.after(snapshot))],  # the snapshot file replaced, not yet the WAL
    )


def restart(files: MemoryFiles, allowed: list[Durable], history: list[str]) -> tuple[RaftStorage, Durable]:
    """Open the storage again (power may fail during that too) and check it holds one allowed state."""
    for _ in range(10):
        try:
            storage = RaftStorage(DIRECTORY, files=files)
            break
        except PowerLoss:
            history.append("power lost while opening")
        except OSError:
            history.append("I/O error while opening")
        except StorageCorrupt as exc:
            raise AssertionError(f"after {history}: a crash made the storage refuse to open: {exc}") from exc
    else:
        raise AssertionError("could not open in 10 tries")
    state = storage.state()
    found = Durable(state.hard_state.term, state.hard_state.vote, state.snapshot, state.entries)
    assert found in allowed, f"after {history}:\nfound   {found}\nallowed {allowed}"
    assert storage.last_index == found.last
    assert state.hard_state.commit >= state.snapshot.index
    return storage, found


def run_seed(seed: int) -> None:
    rng = random.Random(seed)
    files = MemoryFiles(random.Random(seed + 1_000_000))
    history: list[str] = []
    storage, model = restart(files, [Durable()], history)
    for _ in range(STEPS):
        roll = rng.random()
        if roll < 0.1:
            history.append("power lost between operations")
            files.crash()
            storage, model = restart(files, [model], history)
            continue
        if roll < 0.15:
            history.append("clean restart")
            try:
                storage.close()
            except OSError:  # a fault meant for a later call hit the close: restart all the same
                pass
            storage, model = restart(files, [model], history)
            continue
        if roll < 0.45:
            files.fail_at(files.operations + rng.randint(1, 10), power_loss=rng.random() < 0.8)
        operation = next_operation(model, rng)
        history.append(operation.name)
        try:
            operation.run(storage)
        except PowerLoss:
            history.append("power lost during it")
            storage, model = restart(files, [model, operation.after, *operation.also], history)
        except OSError:
            history.append("I/O error during it; the process restarts")
            storage, model = restart(files, [model, operation.after, *operation.also], history)
        else:
            model = operation.after
            assert (storage.hard_state.term, storage.hard_state.vote) == (model.term, model.vote)
            assert storage.last_index == model.last
    files.crash()
    history.append("final power loss")
    restart(files, [model], history)


@pytest.mark.parametrize("first", range(0, SEEDS, 50))
def test_power_loss_anywhere_keeps_every_acknowledged_save(first: int) -> None:
    for seed in range(first, first + 50):
        try:
            run_seed(seed)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}: {exc}") from exc
