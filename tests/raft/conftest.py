"""Helpers for driving RaftCore by hand: a tiny in-memory cluster whose messages move only when told to."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

import pytest

from pygmy.raft.core import RaftConfig, RaftCore, Ready, ReadState
from pygmy.raft.messages import Entry, HardState, Message, Role, Snapshot
from pygmy.raft.sim.bugs import planted_core

CONFIG = RaftConfig(election_ticks=10, heartbeat_ticks=1, pre_vote=True, check_quorum=True)


def make_core(
    node_id: int, members: Iterable[int] = (1, 2, 3), config: RaftConfig = CONFIG, bugs: Iterable[str] = (), **kwargs
) -> RaftCore:
    """The shipped RaftCore; with `bugs`, the simulator's core with those known mistakes planted."""
    return planted_core(node_id, list(members), config, random.Random(node_id), bugs=bugs, **kwargs)


def drain(core: RaftCore) -> Ready:
    """Take everything the core has for the runtime (as one merged Ready) and acknowledge it."""
    merged = Ready()
    while core.has_ready():
        rd = core.ready()
        merged.hard_state = rd.hard_state or merged.hard_state
        merged.snapshot = rd.snapshot or merged.snapshot
        merged.entries += rd.entries
        merged.messages += rd.messages
        merged.committed += rd.committed
        merged.read_states += rd.read_states
        merged.failed_reads += rd.failed_reads
        core.advance(rd)
    return merged


class Cluster:
    """Cores wired by a queue of messages; `run()` delivers until quiet, dropping what `cut` rejects."""

    def __init__(self, ids: Iterable[int] = (1, 2, 3), config: RaftConfig = CONFIG) -> None:
        ids = list(ids)
        self.cores = {i: make_core(i, ids, config) for i in ids}
        self.queue: list[Message] = []
        self.applied: dict[int, list[Entry]] = {i: [] for i in ids}
        self.read_states: dict[int, list[ReadState]] = {i: [] for i in ids}
        self.cut: Callable[[Message], bool] = lambda m: False

    def __getitem__(self, node: int) -> RaftCore:
        return self.cores[node]

    def flush(self, node: int) -> Ready:
        rd = drain(self.cores[node])
        self.queue += rd.messages
        self.applied[node] += rd.committed
        self.read_states[node] += rd.read_states
        return rd

    def run(self, limit: int = 10_000) -> None:
        for node in self.cores:
            self.flush(node)
        for _ in range(limit):
            if not self.queue:
                return
            m = self.queue.pop(0)
            if not self.cut(m) and m.dst in self.cores:
                self.cores[m.dst].step(m)
                self.flush(m.dst)
        raise AssertionError("cluster did not go quiet")

    def elect(self, node: int) -> None:
        """Make `node` time out and win an election."""
        core = self.cores[node]
        for _ in range(core.config.election_ticks * 2):
            core.tick()
            if core.role is not Role.FOLLOWER:
                break
        self.run()
        assert core.role is Role.LEADER, core.status()

    def tick_all(self, ticks: int = 1) -> None:
        for _ in range(ticks):
            for core in self.cores.values():
                core.tick()
            self.run()


@pytest.fixture
def three() -> Cluster:
    """Three fresh nodes, 1, 2 and 3, nobody leading yet."""
    return Cluster()


def entries(*terms: int, start: int = 1) -> list[Entry]:
    """A log whose entry at start+i has terms[i]."""
    return [Entry(term, start + i, data=f"{start + i}".encode()) for i, term in enumerate(terms)]


__all__ = ["CONFIG", "Cluster", "HardState", "Snapshot", "drain", "entries", "make_core"]
