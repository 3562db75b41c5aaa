"""The vocabulary of the Raft protocol: log entries, persistent state and the messages nodes exchange.

Plain, immutable msgspec structs so the I/O-free core, the durable storage, the simulator and the
network transport all speak the same types, and the transport can encode them compactly.
"""

from __future__ import annotations

import enum

import msgspec


class EntryKind(enum.IntEnum):
    COMMAND = 0  # a client command for the state machine
    NOOP = 1  # appended by a new leader so it can commit entries of earlier terms


class Entry(msgspec.Struct, frozen=True, array_like=True):
    term: int
    index: int
    kind: int = EntryKind.COMMAND
    # Opaque to Raft. The runtime encodes client commands (with their session id and sequence
    # number, so a retried command is applied exactly once) into these bytes.
    data: bytes = b""


class HardState(msgspec.Struct, frozen=True, array_like=True):
    """What a node must have on disk before it answers anyone: its term and its vote in that term.

    `catching_up` marks a member that lost its disk and rejoined an existing cluster: it forgot its votes and
    the entries it acknowledged, so it neither votes nor counts toward any quorum until its log reaches
    `catch_up_to` (the leader's last index when it first heard from one; 0 until then). It is persisted so
    that a crash while catching up does not end it.
    """

    term: int = 0
    vote: int | None = None
    commit: int = 0
    catching_up: bool = False
    catch_up_to: int = 0

    def promises(self) -> tuple[int, int | None, bool, int]:
        """What must be fsynced before any message leaves: everything but the commit index (recomputable)."""
        return (self.term, self.vote, self.catching_up, self.catch_up_to)


class Snapshot(msgspec.Struct, frozen=True, array_like=True):
    """The state machine as of `index` (which had `term`); replaces every entry up to and including it."""

    index: int = 0
    term: int = 0
    data: bytes = b""


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


# Messages. Every message carries its sender, its receiver and the sender's term.


class RequestVote(msgspec.Struct, frozen=True, tag=True, array_like=True):
    src: int
    dst: int
    term: int  # for a pre-vote, the term the candidate *would* use (its term + 1)
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    # Set when a leader handed over via TimeoutNow: followers vote even if they heard a leader recently.
    transfer: bool = False


class RequestVoteResponse(msgspec.Struct, frozen=True, tag=True, array_like=True):
    src: int
    dst: int
    term: int
    granted: bool
    pre_vote: bool = False


class AppendEntries(msgspec.Struct, frozen=True, tag=True, array_like=True):
    src: int
    dst: int
    term: int
    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...]
    leader_commit: int
    # Echoed by the follower; lets the leader confirm leadership for ReadIndex requests.
    heartbeat_seq: int = 0
    # The leader's last log index: a member catching up after losing its disk must reach it before it votes.
    leader_last_index: int = 0


class AppendEntriesResponse(msgspec.Struct, frozen=True, tag=True, array_like=True):
    src: int
    dst: int
    term: int
    success: bool
    # On success: the last index this message made match. On failure: hints for fast backtracking.
    match_index: int = 0
    conflict_index: int = 0
    conflict_term: int = 0
    heartbeat_seq: int = 0
    # On failure: the prev_log_index that was rejected, so the leader can tell a stale rejection from a fresh one.
    reject_index: int = 0
    # The member is catching up after losing its disk: its acknowledgements count toward no quorum yet.
    catching_up: bool = False


class InstallSnapshot(msgspec.Struct, frozen=True, tag=True, array_like=True):
    src: int
    dst: int
    term: int
    snapshot: Snapshot
    heartbeat_seq: int = 0


class InstallSnapshotResponse(msgspec.Struct, frozen=True, tag=True, array_like=True):
    src: int
    dst: int
    term: int
    match_index: int
    heartbeat_seq: int = 0


class TimeoutNow(msgspec.Struct, frozen=True, tag=True, array_like=True):
    """Leadership transfer: tells an up-to-date follower to start an election at once."""

    src: int
    dst: int
    term: int


class TermProbe(msgspec.Struct, frozen=True, tag=True, array_like=True):
    """From a member catching up after losing its disk: "what is your term?" Never changes the receiver's term."""

    src: int
    dst: int
    term: int


class TermProbeResponse(msgspec.Struct, frozen=True, tag=True, array_like=True):
    src: int
    dst: int
    term: int  # the responder's current term


Message = (
    RequestVote
    | RequestVoteResponse
    | AppendEntries
    | AppendEntriesResponse
    | InstallSnapshot
    | InstallSnapshotResponse
    | TimeoutNow
    | TermProbe
    | TermProbeResponse
)
