"""A snapshot in transit, in chunks: the leader's side (`OutgoingSnapshot`) and the follower's (`IncomingSnapshot`).

Both are pure bookkeeping for `RaftCore`, which turns them into `InstallSnapshot` and
`InstallSnapshotResponse` messages. The transfer is stop-and-wait: the leader has at most one chunk
unacknowledged per follower, sends the next only when the follower acknowledges (by naming the offset it
expects next), and after a timeout re-sends only the chunk in flight. So a large snapshot costs the
network one chunk per round trip, never a burst of the whole thing, and a lost chunk costs one chunk.

The follower buffers chunks only in order and only up to the size the transfer declared, so what it holds
is bounded by the snapshot it is receiving; it hands the snapshot to the runtime only once it is whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pygmy.raft.messages import InstallSnapshot, Snapshot


@dataclass
class OutgoingSnapshot:
    """The leader's transfer of `snapshot` to follower `peer`, one chunk of `chunk_bytes` at a time.

    The snapshot is pinned for the whole transfer: a leader that compacts again meanwhile carries on
    with this one rather than starting over, so frequent compaction cannot starve a slow follower.
    """

    peer: int
    snapshot: Snapshot
    chunk_bytes: int
    offset: int = 0  # where the chunk in flight (or the next one to send) starts
    in_flight: bool = False
    ticks: int = 0  # ticks since the chunk in flight left

    def next_chunk(self) -> tuple[int, bytes]:
        """The chunk at `offset`, now counted as in flight."""
        self.in_flight = True
        self.ticks = 0
        return self.offset, self.snapshot.data[self.offset : self.offset + self.chunk_bytes]

    def on_ack(self, next_offset: int) -> bool:
        """The follower expects `next_offset` next; True if a chunk should leave now.

        Asking for the chunk already in flight says nothing new (it is a duplicated or delayed answer): the
        timeout re-sends that chunk if it is lost. Any other offset within the snapshot is where the
        follower's buffer really is (e.g. 0 after it restarted), so the transfer resumes from there.
        """
        if self.in_flight and next_offset == self.offset:
            return False
        if not 0 <= next_offset < max(1, len(self.snapshot.data)):
            return False  # beyond the data: no chunk starts there
        self.offset = next_offset
        return True

    def tick(self, patience: int) -> bool:
        """One tick passed; True if the chunk in flight went unanswered for `patience` ticks (re-send it)."""
        if not self.in_flight:
            return False
        self.ticks += 1
        return self.ticks >= patience


@dataclass
class IncomingSnapshot:
    """A follower's partial copy of the snapshot at (`index`, `snapshot_term`) from the leader of `term`."""

    term: int
    index: int
    snapshot_term: int
    total: int
    received: bytearray = field(default_factory=bytearray)

    @classmethod
    def start(cls, m: InstallSnapshot) -> IncomingSnapshot:
        return cls(m.term, m.index, m.snapshot_term, m.total)

    def is_for(self, m: InstallSnapshot) -> bool:
        """Whether `m` is a chunk of this transfer (same leader term, same snapshot)."""
        return (m.term, m.index, m.snapshot_term) == (self.term, self.index, self.snapshot_term)

    def is_superseded_by(self, m: InstallSnapshot) -> bool:
        """Whether `m` belongs to a later transfer, so this partial copy is to be dropped.

        Within one term the leader only ever moves to newer snapshots, so a chunk of an older one is a
        delayed duplicate of a finished or abandoned transfer; anything else different is a new transfer.
        """
        return not self.is_for(m) and not (m.term == self.term and m.index < self.index)

    @property
    def next_offset(self) -> int:
        return len(self.received)

    def accept(self, m: InstallSnapshot) -> bool:
        """Append `m`'s data if it is the chunk expected next and stays within the size declared at the start."""
        if m.offset != self.next_offset:
            return False  # out of order: a duplicate, or one after a lost chunk
        if m.total != self.total or m.offset + len(m.data) > self.total:
            return False  # more than was declared: never buffered
        self.received += m.data
        return True

    @property
    def complete(self) -> bool:
        return len(self.received) == self.total

    def snapshot(self) -> Snapshot:
        return Snapshot(index=self.index, term=self.snapshot_term, data=bytes(self.received))
