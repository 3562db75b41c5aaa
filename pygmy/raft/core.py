"""The Raft protocol as a pure state machine: no sockets, clock, disk, asyncio or global randomness.

Inputs are `tick()` (one unit of logical time), `step(message)` and `propose(data)`; the output is one
bundle, `Ready`, saying what to persist, what to send and what may be applied. The runtime drives it:

    while core.has_ready():
        rd = core.ready()
        storage.save(rd.hard_state, rd.snapshot, rd.entries)   # durable (fsynced) first ...
        transport.send(rd.messages)                             # ... only then may anyone hear of it
        state_machine.apply(rd.committed)
        serve(rd.read_states)
        core.advance(rd)

`step`, `tick` and `propose` may be called between `ready()` and `advance()` (e.g. while the fsync
runs); the next `ready()` only holds what is new. Call `ready()` again only after `advance()`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from pygmy.raft.messages import (
    Entry,
    HardState,
    Message,
    Role,
    Snapshot,
)


@dataclass(frozen=True)
class RaftConfig:
    # An election starts after a random timeout in [election_ticks, 2 * election_ticks) ticks.
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    max_entries_per_message: int = 256
    # Optimistic replication: at most this many AppendEntries unacknowledged per follower.
    max_inflight_messages: int = 64


class NotLeader(Exception):
    """Raised by propose/read_index/transfer_leadership on a node that is not the leader."""

    def __init__(self, leader: int | None) -> None:
        super().__init__(f"not the leader; leader is {leader}")
        self.leader = leader


@dataclass(frozen=True)
class ReadState:
    """A linearizable read with context `ctx` may be served once the state machine has applied `index`."""

    ctx: int
    index: int


@dataclass(frozen=True)
class Status:
    id: int
    role: Role
    term: int
    leader: int | None
    commit: int
    applied: int
    last_index: int
    snapshot_index: int


@dataclass
class Ready:
    """Everything the runtime must do next, in this order."""

    hard_state: HardState | None = None  # persist (atomically, fsynced) before sending messages
    snapshot: Snapshot | None = None  # persist, discard every stored entry, restore the state machine from it
    entries: list[Entry] = field(default_factory=list)  # persist: discard stored entries >= entries[0].index, append
    messages: list[Message] = field(default_factory=list)  # send only after the above is durable
    committed: list[Entry] = field(default_factory=list)  # apply in order (only ever committed entries)
    read_states: list[ReadState] = field(default_factory=list)  # serve these reads once applied >= index
    failed_reads: list[int] = field(default_factory=list)  # ctx of reads dropped (leadership lost): retry elsewhere

    def is_empty(self) -> bool:
        return not (
            self.hard_state
            or self.snapshot
            or self.entries
            or self.messages
            or self.committed
            or self.read_states
            or self.failed_reads
        )


class RaftCore:
    """One Raft node's protocol state. Deterministic: the same inputs (and rng seed) give the same outputs."""

    def __init__(
        self,
        node_id: int,
        members: Sequence[int],
        config: RaftConfig,
        rng: random.Random,
        *,
        hard_state: HardState = HardState(),
        snapshot: Snapshot | None = None,
        entries: Sequence[Entry] = (),
        applied: int | None = None,
        bugs: frozenset[str] = frozenset(),
    ) -> None:
        """Start (or restart) from what was persisted.

        `entries` must be contiguous and follow `snapshot`. `applied` is the index the state machine already
        reflects (default: the snapshot's index, i.e. the state machine was restored from the snapshot and
        committed entries after it are handed out again for applying). `bugs` plants known mistakes (tests only).
        """
        raise NotImplementedError

    def tick(self) -> None:
        """Advance logical time by one tick: election timeouts, heartbeats, check-quorum."""
        raise NotImplementedError

    def step(self, message: Message) -> None:
        """Handle one message from a peer."""
        raise NotImplementedError

    def propose(self, data: bytes) -> tuple[int, int]:
        """Append a command; return its (index, term). Raises NotLeader.

        The proposal took effect iff the entry committed at `index` has `term` (the runtime sees that in
        `Ready.committed`). Many proposals before one `ready()` share one Ready (one fsync).
        """
        raise NotImplementedError

    def read_index(self, ctx: int) -> None:
        """Start a linearizable read (ReadIndex). Its ReadState appears in a later Ready. Raises NotLeader."""
        raise NotImplementedError

    def transfer_leadership(self, target: int) -> None:
        """Hand leadership to `target` (catch it up, then TimeoutNow). Raises NotLeader."""
        raise NotImplementedError

    def compact(self, snapshot: Snapshot) -> None:
        """The state machine was snapshotted at an applied index: drop the log up to it."""
        raise NotImplementedError

    def has_ready(self) -> bool:
        raise NotImplementedError

    def ready(self) -> Ready:
        raise NotImplementedError

    def advance(self, ready: Ready) -> None:
        """The runtime has persisted, sent and applied everything that `ready` held."""
        raise NotImplementedError

    def status(self) -> Status:
        raise NotImplementedError

    def term_at(self, index: int) -> int | None:
        """Term of the entry at `index` (the snapshot's term at its index); None if unknown or compacted."""
        raise NotImplementedError
